//! A caller's session: who they are, their role, and their default namespace.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use quilldb_flight::CallerInfo;

use crate::txn::Transaction;

/// Roles, weakest first (spec/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// No credentials.
    Anonymous,
    /// An app user.
    User,
    /// An app backend or agent.
    Service,
    /// An administrator.
    Dba,
    /// root.
    System,
}

impl Role {
    /// Parses a role name (any case); `anonymous` is not a role one can be given.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "user" => Some(Self::User),
            "service" => Some(Self::Service),
            "dba" => Some(Self::Dba),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Anonymous => "anonymous",
            Self::User => "user",
            Self::Service => "service",
            Self::Dba => "dba",
            Self::System => "system",
        })
    }
}

/// One session: a logged-in token, or one anonymous call.
#[derive(Debug)]
pub struct Session {
    /// The user id (empty for anonymous).
    pub user: String,
    /// The role.
    pub role: Role,
    namespace: Mutex<Option<String>>,
    /// The transaction opened by SQL `BEGIN`.
    transaction: Mutex<Option<Arc<Transaction>>>,
}

impl Session {
    /// A new session with no default namespace.
    pub fn new(user: impl Into<String>, role: Role) -> Self {
        Self {
            user: user.into(),
            role,
            namespace: Mutex::new(None),
            transaction: Mutex::new(None),
        }
    }

    /// The default namespace set by `USE`.
    pub fn namespace(&self) -> Option<String> {
        self.namespace.lock().clone()
    }

    /// Sets the default namespace.
    pub fn set_namespace(&self, ns: Option<String>) {
        *self.namespace.lock() = ns;
    }
}

impl Session {
    /// The transaction opened by SQL `BEGIN`, if any.
    pub fn sql_transaction(&self) -> Option<Arc<Transaction>> {
        self.transaction.lock().clone()
    }

    /// Sets (or clears) the transaction opened by SQL `BEGIN`.
    pub fn set_sql_transaction(&self, t: Option<Arc<Transaction>>) {
        *self.transaction.lock() = t;
    }
}

/// The caller handed through the Flight layer: a session, and the transaction its call names.
#[derive(Debug, Clone)]
pub struct Caller {
    session: Arc<Session>,
    transaction: Option<Arc<Transaction>>,
}

impl Caller {
    /// A caller outside any Flight SQL transaction.
    pub fn new(session: Arc<Session>) -> Self {
        Self {
            session,
            transaction: None,
        }
    }

    /// The same caller with its statements routed into `t`.
    pub fn in_transaction(&self, t: Arc<Transaction>) -> Self {
        Self {
            session: self.session.clone(),
            transaction: Some(t),
        }
    }

    /// The transaction the call runs in: the one it names, or the session's SQL `BEGIN`.
    pub fn transaction(&self) -> Option<Arc<Transaction>> {
        self.transaction
            .clone()
            .or_else(|| self.session.sql_transaction())
    }

    /// The session.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }
}

impl CallerInfo for Caller {
    fn principal(&self) -> &str {
        &self.session.user
    }
}

impl std::ops::Deref for Caller {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}
