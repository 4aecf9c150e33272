//! A caller's session: who they are, their role, and their default namespace.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use quilldb_flight::CallerInfo;

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
}

impl Session {
    /// A new session with no default namespace.
    pub fn new(user: impl Into<String>, role: Role) -> Self {
        Self {
            user: user.into(),
            role,
            namespace: Mutex::new(None),
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

/// The caller handed through the Flight layer.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Session>);

impl CallerInfo for Caller {
    fn principal(&self) -> &str {
        &self.0.user
    }
}

impl std::ops::Deref for Caller {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.0
    }
}
