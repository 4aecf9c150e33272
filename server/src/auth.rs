//! Authentication: credentials to sessions and bearer tokens.
//!
//! Today the one account is `root` (role system); users and roles plug in behind
//! [`Authenticator::login`] without changing its callers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;

use crate::error::{Error, Result};
use crate::session::{Caller, Role, Session};

/// The system account.
pub const ROOT: &str = "root";

struct TokenEntry {
    session: Arc<Session>,
    expires: Instant,
}

/// Checks credentials and keeps the bearer tokens.
pub struct Authenticator {
    root_password: Option<String>,
    token_ttl: Duration,
    tokens: Mutex<HashMap<String, TokenEntry>>,
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

impl Authenticator {
    /// `root_password`: None lets root in with an empty password from loopback only.
    pub fn new(root_password: Option<String>, token_ttl: Duration) -> Self {
        Self {
            root_password: root_password.filter(|p| !p.is_empty()),
            token_ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a user name and password; answers a new session and its token.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        peer: Option<SocketAddr>,
    ) -> Result<(Caller, String)> {
        if user != ROOT {
            return Err(bad_credentials());
        }
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
        let token = self.issue(session.clone());
        Ok((Caller::new(session), token))
    }

    fn issue(&self, session: Arc<Session>) -> String {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, e| e.expires > now);
        tokens.insert(
            token.clone(),
            TokenEntry {
                session,
                expires: now + self.token_ttl,
            },
        );
        token
    }

    /// Resolves a bearer token.
    pub fn resume(&self, token: &str) -> Result<Caller> {
        let tokens = self.tokens.lock();
        match tokens.get(token) {
            Some(e) if e.expires > Instant::now() => Ok(Caller::new(e.session.clone())),
            _ => Err(Error::Unauthenticated("invalid or expired token".into())),
        }
    }

    /// A session for a call without credentials.
    pub fn anonymous(&self) -> Caller {
        Caller::new(Arc::new(Session::new("", Role::Anonymous)))
    }

    /// Ends a session: every token that leads to it stops working.
    pub fn close(&self, session: &Arc<Session>) {
        self.tokens
            .lock()
            .retain(|_, e| !Arc::ptr_eq(&e.session, session));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Option<SocketAddr> {
        "127.0.0.1:5000".parse().ok()
    }

    #[test]
    fn root_without_password_only_from_loopback() {
        let a = Authenticator::new(None, Duration::from_secs(60));
        assert!(a.login("root", "", loopback()).is_ok());
        assert!(a.login("root", "", "10.1.2.3:5000".parse().ok()).is_err());
        assert!(a.login("root", "x", loopback()).is_err());
        assert!(a.login("alice", "", loopback()).is_err());
    }

    #[test]
    fn configured_password_and_tokens() {
        let a = Authenticator::new(Some("s3cret-pass".into()), Duration::from_secs(60));
        assert!(a.login("root", "", loopback()).is_err());
        let (_, token) = a
            .login("root", "s3cret-pass", "10.1.2.3:5000".parse().ok())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.resume(&token).map(|c| c.role).ok(), Some(Role::System));
        assert!(a.resume("nope").is_err());
    }
}
