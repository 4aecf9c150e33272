//! Authentication: users, their salted password hashes, and bearer tokens that survive a
//! restart.
//!
//! ```text
//!  Basic user:password ─► login ─► Argon2id verify (blocking pool; lockout after failures)
//!                                   └─► token: 32 random bytes; SHA-256 of it persisted with the
//!                                       user and its credentials version
//!  Bearer token ─► resume ─► SHA-256 ─► cache or auth/token/<hash> ─► user still there, same
//!                                       credentials version, not expired ─► session
//! ```
//! A password or role change bumps the user's credentials version and DROP USER marks it
//! deleted, so every older token stops working at the next call; resuming never hashes a
//! password.

/// Persisted records and password hashing.
pub mod records;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::{Mutex, RwLock};
use quilldb_storage::hot::{HotStore, WriteRequest};
use rand::RngCore;

use records::TokenRecord;
pub use records::UserDef;

use crate::catalog::now_millis;
use crate::config::AuthConfig;
use crate::error::{Error, Result};
use crate::session::{Caller, Role, Session};

/// The system account.
pub const ROOT: &str = "root";

struct TokenEntry {
    session: Arc<Session>,
    credentials: u64,
    expires_at: i64,
}

#[derive(Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// Checks credentials, keeps users and bearer tokens.
pub struct Authenticator {
    hot: Arc<HotStore>,
    root_password: Option<String>,
    config: AuthConfig,
    users: RwLock<HashMap<String, UserDef>>,
    failures: Mutex<HashMap<String, Failures>>,
    tokens: Mutex<HashMap<Vec<u8>, TokenEntry>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

fn bad_credentials() -> Error {
    // One message for every failure, so a caller cannot probe which user names exist.
    Error::Unauthenticated("invalid user name or password".into())
}

/// Compares without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// root's credentials version: changes when its configured password changes, so root tokens
/// from before stop working.
fn root_credentials(password: &Option<String>) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(password.as_deref().unwrap_or("").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

impl Authenticator {
    /// Loads the users. `root_password` None lets root in with an empty password from loopback
    /// only.
    pub fn load(hot: Arc<HotStore>, config: &AuthConfig) -> Result<Self> {
        let mut users = HashMap::new();
        for (_, v) in hot.scan_meta(records::USER_PREFIX.as_bytes())? {
            let u = records::decode_user(&v)?;
            users.insert(u.user_id.clone(), u);
        }
        Ok(Self {
            hot,
            root_password: config.root_password.clone().filter(|p| !p.is_empty()),
            config: config.clone(),
            users: RwLock::new(users),
            failures: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Checks a user name and password; answers a new session and its token.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        peer: Option<SocketAddr>,
    ) -> Result<(Caller, String)> {
        if user == ROOT {
            let ok = match &self.root_password {
                Some(expected) => same(expected.as_bytes(), password.as_bytes()),
                None => password.is_empty() && peer.is_some_and(|p| p.ip().is_loopback()),
            };
            if !ok {
                if self.root_password.is_none() && password.is_empty() {
                    return Err(Error::Unauthenticated(
                        "root has no password yet: it may log in only from a loopback address \
                         (set QUILLDB_ROOT_PASSWORD to allow remote logins)"
                            .into(),
                    ));
                }
                return Err(bad_credentials());
            }
            let session = Arc::new(Session::new(ROOT, Role::System));
            let token = self
                .issue(session.clone(), root_credentials(&self.root_password))
                .await?;
            return Ok((Caller::new(session), token));
        }
        self.check_lock(user)?;
        let Some(u) = self.user(user) else {
            self.note_failure(user);
            return Err(bad_credentials());
        };
        let (pw, hash) = (password.to_string(), u.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || records::verify_password(&pw, &hash))
            .await
            .map_err(|e| Error::Internal(format!("password check: {e}")))?;
        if !ok {
            self.note_failure(user);
            return Err(bad_credentials());
        }
        self.failures.lock().remove(user);
        let mut seen = u.clone();
        seen.last_login_at = Some(now_millis());
        self.save(seen).await?;
        let session = Arc::new(Session::new(&u.user_id, u.role));
        let token = self.issue(session.clone(), u.credentials).await?;
        Ok((Caller::new(session), token))
    }

    fn check_lock(&self, user: &str) -> Result<()> {
        let failures = self.failures.lock();
        match failures.get(user).and_then(|f| f.locked_until) {
            Some(until) if until > Instant::now() => Err(Error::Unauthenticated(format!(
                "too many failed logins: the account is locked for {} more seconds",
                (until - Instant::now()).as_secs() + 1
            ))),
            _ => Ok(()),
        }
    }

    fn note_failure(&self, user: &str) {
        let mut failures = self.failures.lock();
        let f = failures.entry(user.to_string()).or_default();
        if f.locked_until.is_some_and(|t| t <= Instant::now()) {
            *f = Failures::default();
        }
        f.count += 1;
        if f.count >= self.config.max_failed_logins.max(1) {
            f.locked_until =
                Some(Instant::now() + Duration::from_secs(self.config.lockout_seconds));
            tracing::warn!(user, "account locked after repeated failed logins");
        }
    }

    async fn issue(&self, session: Arc<Session>, credentials: u64) -> Result<String> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let ttl_ms =
            i64::try_from(self.config.token_ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        let expires_at = now_millis().saturating_add(ttl_ms);
        let key = records::token_key(&token);
        let record = TokenRecord {
            user_id: session.user.clone(),
            credentials,
            expires_at,
        };
        self.hot
            .write(WriteRequest {
                meta: vec![(key.clone(), Some(prost::Message::encode_to_vec(&record)))],
                ..Default::default()
            })
            .await?;
        let now = now_millis();
        let mut tokens = self.tokens.lock();
        // Expired entries go; revoked ones (expires_at 0) stay until their records are gone.
        tokens.retain(|_, e| e.expires_at > now || e.expires_at == 0);
        tokens.insert(
            key,
            TokenEntry {
                session,
                credentials,
                expires_at,
            },
        );
        Ok(token)
    }

    /// The credentials version tokens of `user` must carry, if the user can log in.
    fn current_credentials(&self, user: &str) -> Option<(u64, Role)> {
        if user == ROOT {
            return Some((root_credentials(&self.root_password), Role::System));
        }
        self.user(user).map(|u| (u.credentials, u.role))
    }

    /// Resolves a bearer token: a fast hash and a lookup, never a password hash.
    pub fn resume(&self, token: &str) -> Result<Caller> {
        let expired = || Error::Unauthenticated("invalid or expired token".into());
        let key = records::token_key(token);
        let now = now_millis();
        {
            let tokens = self.tokens.lock();
            if let Some(e) = tokens.get(&key) {
                let valid = e.expires_at > now
                    && self
                        .current_credentials(&e.session.user)
                        .is_some_and(|(c, _)| c == e.credentials);
                return if valid {
                    Ok(Caller::new(e.session.clone()))
                } else {
                    Err(expired())
                };
            }
        }
        // Not seen since the start: the persisted record.
        let Some(v) = self.hot.get_meta(&key)? else {
            return Err(expired());
        };
        let r: TokenRecord = prost::Message::decode(v.as_slice())
            .map_err(|e| Error::Internal(format!("corrupt token record: {e}")))?;
        let Some((credentials, role)) = self.current_credentials(&r.user_id) else {
            return Err(expired());
        };
        if r.expires_at <= now || r.credentials != credentials {
            return Err(expired());
        }
        let session = Arc::new(Session::new(&r.user_id, role));
        self.tokens.lock().insert(
            key,
            TokenEntry {
                session: session.clone(),
                credentials,
                expires_at: r.expires_at,
            },
        );
        Ok(Caller::new(session))
    }

    /// A session for a call without credentials.
    pub fn anonymous(&self) -> Caller {
        Caller::new(Arc::new(Session::new("", Role::Anonymous)))
    }

    /// Ends a session: every token that leads to it stops working at once; the persisted
    /// records go in the background (the cache keeps them revoked until then).
    pub fn close(self: &Arc<Self>, session: &Arc<Session>) {
        let keys: Vec<Vec<u8>> = {
            let mut tokens = self.tokens.lock();
            let mut keys = Vec::new();
            for (k, e) in tokens.iter_mut() {
                if Arc::ptr_eq(&e.session, session) {
                    e.expires_at = 0;
                    keys.push(k.clone());
                }
            }
            keys
        };
        if keys.is_empty() {
            return;
        }
        let auth = self.clone();
        tokio::spawn(async move {
            let req = WriteRequest {
                meta: keys.into_iter().map(|k| (k, None)).collect(),
                ..Default::default()
            };
            if let Err(e) = auth.hot.write(req).await {
                tracing::warn!(error = %e, "removing the tokens of a closed session");
            }
        });
    }

    /// Keeps `session`'s own tokens valid across its user's credentials change (a user who
    /// changes their own password stays logged in; every other session of theirs ends).
    pub async fn keep_session(&self, session: &Arc<Session>, credentials: u64) -> Result<()> {
        let mut updates = Vec::new();
        {
            let mut tokens = self.tokens.lock();
            for (k, e) in tokens.iter_mut() {
                if Arc::ptr_eq(&e.session, session) && e.expires_at > 0 {
                    e.credentials = credentials;
                    let record = TokenRecord {
                        user_id: session.user.clone(),
                        credentials,
                        expires_at: e.expires_at,
                    };
                    updates.push((k.clone(), Some(prost::Message::encode_to_vec(&record))));
                }
            }
        }
        if !updates.is_empty() {
            self.hot
                .write(WriteRequest {
                    meta: updates,
                    ..Default::default()
                })
                .await?;
        }
        Ok(())
    }

    /// A user that can log in (not dropped).
    pub fn user(&self, id: &str) -> Option<UserDef> {
        self.users
            .read()
            .get(id)
            .filter(|u| u.deleted_at.is_none())
            .cloned()
    }

    /// Every user record, dropped ones included (system.users).
    pub fn users(&self) -> Vec<UserDef> {
        let mut v: Vec<UserDef> = self.users.read().values().cloned().collect();
        v.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        v
    }

    /// Persists a user record and makes it current.
    pub async fn save(&self, user: UserDef) -> Result<()> {
        self.hot
            .write(WriteRequest {
                meta: vec![(
                    records::user_key(&user.user_id),
                    Some(records::encode_user(&user)),
                )],
                ..Default::default()
            })
            .await?;
        self.users.write().insert(user.user_id.clone(), user);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Option<SocketAddr> {
        "127.0.0.1:5000".parse().ok()
    }

    fn open(dir: &std::path::Path, root_password: Option<&str>) -> Authenticator {
        let hot = Arc::new(
            HotStore::open(&quilldb_storage::hot::HotOptions {
                path: dir.join("hot"),
                node_id: 1,
                durability: quilldb_storage::hot::Durability::Async,
                block_cache_bytes: 8 << 20,
            })
            .unwrap(),
        );
        let config = AuthConfig {
            root_password: root_password.map(Into::into),
            max_failed_logins: 2,
            ..AuthConfig::default()
        };
        Authenticator::load(hot, &config).unwrap()
    }

    #[tokio::test]
    async fn root_without_password_only_from_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path(), None);
        assert!(a.login("root", "", loopback()).await.is_ok());
        assert!(
            a.login("root", "", "10.1.2.3:5000".parse().ok())
                .await
                .is_err()
        );
        assert!(a.login("root", "x", loopback()).await.is_err());
        assert!(a.login("alice", "", loopback()).await.is_err());
    }

    #[tokio::test]
    async fn users_tokens_revocation_and_lockout() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path(), Some("s3cret-pass"));
        let (_, root_token) = a
            .login("root", "s3cret-pass", "10.1.2.3:5000".parse().ok())
            .await
            .unwrap();
        assert_eq!(
            a.resume(&root_token).map(|c| c.role).ok(),
            Some(Role::System)
        );
        assert!(a.resume("nope").is_err());
        let alice = UserDef {
            user_id: "alice".into(),
            role: Role::User,
            email: None,
            password_hash: records::hash_password("alice-pass-1").unwrap_or_default(),
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
            deleted_at: None,
            credentials: 1,
        };
        a.save(alice.clone()).await.unwrap();
        let (_, token) = a.login("alice", "alice-pass-1", loopback()).await.unwrap();
        assert_eq!(a.resume(&token).map(|c| c.role).ok(), Some(Role::User));
        // A token survives a restart (a new authenticator over the same store).
        let hot = a.hot.clone();
        let b = Authenticator::load(hot, &a.config).unwrap();
        assert_eq!(
            b.resume(&token).map(|c| c.user.clone()).ok(),
            Some("alice".into())
        );
        assert!(b.resume(&root_token).is_ok());
        // A credentials change revokes it at once.
        let mut changed = alice.clone();
        changed.credentials = 2;
        b.save(changed).await.unwrap();
        assert!(b.resume(&token).is_err());
        // Two wrong passwords lock the account, even for the right one.
        assert!(b.login("alice", "wrong-pass-1", loopback()).await.is_err());
        assert!(b.login("alice", "wrong-pass-2", loopback()).await.is_err());
        let locked = b.login("alice", "alice-pass-1", loopback()).await;
        assert!(
            locked
                .as_ref()
                .err()
                .is_some_and(|e| e.to_string().contains("locked")),
            "{:?}",
            locked.err()
        );
    }
}
