//! Opaque handles for tickets and prepared statements: random ids bound to the caller that got
//! them, expiring after a while. Replaying another caller's handle answers "unknown", which is
//! also what an expired one answers, so a handle reveals nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use bytes::Bytes;
use parking_lot::Mutex;
use rand::RngCore;
use tonic::Status;

const HANDLE_LEN: usize = 16;

struct Entry<T> {
    principal: String,
    expires: Instant,
    value: Arc<T>,
}

/// A map from opaque handles to values.
pub struct HandleStore<T> {
    what: &'static str,
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<[u8; HANDLE_LEN], Entry<T>>>,
}

impl<T> HandleStore<T> {
    /// A store of `what` (named in errors) whose entries live `ttl`; at most `max` are kept.
    pub fn new(what: &'static str, ttl: Duration, max: usize) -> Self {
        Self {
            what,
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `value` for `principal` and answers its handle.
    pub fn insert(&self, principal: &str, value: T) -> Result<Bytes, Status> {
        let mut id = [0u8; HANDLE_LEN];
        rand::rng().fill_bytes(&mut id);
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= self.max {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.max {
                return Err(Status::from(Error::ResourceExhausted(format!(
                    "too many open {}s (limit {})",
                    self.what, self.max
                ))));
            }
        }
        entries.insert(
            id,
            Entry {
                principal: principal.to_owned(),
                expires: now + self.ttl,
                value: Arc::new(value),
            },
        );
        Ok(Bytes::copy_from_slice(&id))
    }

    fn key(&self, handle: &[u8]) -> Result<[u8; HANDLE_LEN], Status> {
        handle.try_into().map_err(|_| self.unknown())
    }

    fn unknown(&self) -> Status {
        Status::from(Error::NotFound(format!("unknown or expired {}", self.what)))
    }

    /// The value of `handle`, if it exists, has not expired and belongs to `principal`.
    pub fn get(&self, principal: &str, handle: &[u8]) -> Result<Arc<T>, Status> {
        let key = self.key(handle)?;
        let entries = self.entries.lock();
        match entries.get(&key) {
            Some(e) if e.principal == principal && e.expires > Instant::now() => {
                Ok(e.value.clone())
            }
            _ => Err(self.unknown()),
        }
    }

    /// Removes and answers the value of `handle` (single-use handles such as tickets).
    pub fn take(&self, principal: &str, handle: &[u8]) -> Result<Arc<T>, Status> {
        let key = self.key(handle)?;
        let mut entries = self.entries.lock();
        match entries.get(&key) {
            Some(e) if e.principal == principal && e.expires > Instant::now() => entries
                .remove(&key)
                .map(|e| e.value)
                .ok_or_else(|| self.unknown()),
            _ => Err(self.unknown()),
        }
    }

    /// Forgets `handle`.
    pub fn remove(&self, principal: &str, handle: &[u8]) -> Result<(), Status> {
        let key = self.key(handle)?;
        let mut entries = self.entries.lock();
        match entries.get(&key) {
            Some(e) if e.principal == principal => {
                entries.remove(&key);
                Ok(())
            }
            _ => Err(self.unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_bound_to_their_principal() {
        let s = HandleStore::new("ticket", Duration::from_secs(60), 10);
        let h = s.insert("alice", 5).unwrap();
        assert_eq!(*s.get("alice", &h).unwrap(), 5);
        assert_eq!(
            s.get("bob", &h).err().map(|e| e.code()),
            Some(tonic::Code::NotFound)
        );
        assert!(s.get("alice", b"garbage").is_err());
        s.remove("alice", &h).unwrap();
        assert!(s.get("alice", &h).is_err());
        let h = s.insert("alice", 6).unwrap();
        assert_eq!(*s.take("alice", &h).unwrap(), 6);
        assert!(s.take("alice", &h).is_err(), "tickets are single use");
    }

    #[test]
    fn expired_handles_are_gone() {
        let s = HandleStore::new("ticket", Duration::from_millis(0), 10);
        let h = s.insert("a", 1).unwrap();
        assert!(s.get("a", &h).is_err());
    }
}
