//! What authentication persists in the hot store's metadata family: users under
//! `auth/user/<id>` and bearer tokens under `auth/token/<sha256 of the token, hex>` (a token is
//! never stored in clear). Both are protobuf records.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::session::Role;

pub(crate) const USER_PREFIX: &str = "auth/user/";
pub(crate) const TOKEN_PREFIX: &str = "auth/token/";

/// Shortest and longest password (root's may be empty, see security.md).
const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=72;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDef {
    /// Name.
    pub user_id: String,
    /// Role.
    pub role: Role,
    /// Email, if given.
    pub email: Option<String>,
    /// Argon2id PHC string: salted and slow. Never shown.
    pub password_hash: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Unix milliseconds.
    pub last_login_at: Option<i64>,
    /// Set by DROP USER.
    pub deleted_at: Option<i64>,
    /// Bumped by every change of password or role: tokens of an older version stop working.
    pub credentials: u64,
}

#[derive(Clone, PartialEq, Message)]
struct UserRecord {
    #[prost(string, tag = "1")]
    user_id: String,
    #[prost(string, tag = "2")]
    role: String,
    #[prost(string, optional, tag = "3")]
    email: Option<String>,
    #[prost(string, tag = "4")]
    password_hash: String,
    #[prost(int64, tag = "5")]
    created_at: i64,
    #[prost(int64, tag = "6")]
    updated_at: i64,
    #[prost(int64, optional, tag = "7")]
    last_login_at: Option<i64>,
    #[prost(int64, optional, tag = "8")]
    deleted_at: Option<i64>,
    #[prost(uint64, tag = "9")]
    credentials: u64,
}

/// A persisted bearer token.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TokenRecord {
    #[prost(string, tag = "1")]
    pub user_id: String,
    #[prost(uint64, tag = "2")]
    pub credentials: u64,
    #[prost(int64, tag = "3")]
    pub expires_at: i64,
}

pub(crate) fn user_key(id: &str) -> Vec<u8> {
    format!("{USER_PREFIX}{id}").into_bytes()
}

/// The key of a token: its SHA-256, so verifying a token costs a fast hash, never a password
/// hash, and the store never holds a usable token.
pub(crate) fn token_key(token: &str) -> Vec<u8> {
    let digest = Sha256::digest(token.as_bytes());
    let mut k = TOKEN_PREFIX.as_bytes().to_vec();
    for b in digest {
        k.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    k
}

pub(crate) fn encode_user(u: &UserDef) -> Vec<u8> {
    UserRecord {
        user_id: u.user_id.clone(),
        role: u.role.to_string(),
        email: u.email.clone(),
        password_hash: u.password_hash.clone(),
        created_at: u.created_at,
        updated_at: u.updated_at,
        last_login_at: u.last_login_at,
        deleted_at: u.deleted_at,
        credentials: u.credentials,
    }
    .encode_to_vec()
}

pub(crate) fn decode_user(b: &[u8]) -> Result<UserDef> {
    let r =
        UserRecord::decode(b).map_err(|e| Error::Internal(format!("corrupt user record: {e}")))?;
    Ok(UserDef {
        role: Role::parse(&r.role)
            .ok_or_else(|| Error::Internal(format!("corrupt user record: role {}", r.role)))?,
        user_id: r.user_id,
        email: r.email,
        password_hash: r.password_hash,
        created_at: r.created_at,
        updated_at: r.updated_at,
        last_login_at: r.last_login_at,
        deleted_at: r.deleted_at,
        credentials: r.credentials,
    })
}

/// Checks the password policy: 8 to 72 characters.
pub fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if PASSWORD_LEN.contains(&n) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "a password has {} to {} characters, not {n}",
            PASSWORD_LEN.start(),
            PASSWORD_LEN.end()
        )))
    }
}

/// A salted Argon2id hash (PHC string). Slow on purpose: call it off the async workers.
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches a stored hash. Slow on purpose.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_records_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert_ne!(
            h,
            hash_password("correct horse").unwrap_or_default(),
            "salted"
        );
        let u = UserDef {
            user_id: "alice".into(),
            role: Role::Service,
            email: Some("a@x.io".into()),
            password_hash: h,
            created_at: 1,
            updated_at: 2,
            last_login_at: None,
            deleted_at: Some(3),
            credentials: 4,
        };
        assert_eq!(decode_user(&encode_user(&u)).unwrap(), u);
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(73)).is_err());
        assert!(check_password("eight ch").is_ok());
        assert_ne!(token_key("a"), token_key("b"));
    }
}
