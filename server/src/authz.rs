//! Authorization: the permission matrix of spec/security.md, in this one module.
//!
//! Every statement passes [`statement`] before anything is looked up, so a refused caller learns
//! nothing about what exists. The rules that depend on the object (a table's type and access
//! level, the role of the user being altered or impersonated) are the other functions here,
//! called once the object is known; a missing object answers PERMISSION_DENIED to a role that
//! could be refused an existing one ([`missing_table`]).

use crate::catalog::{AccessLevel, TableDef, TableType};
use crate::error::{Error, Result};
use crate::session::{Caller, Role};

/// What a caller wants of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// SELECT, SUBSCRIBE, DESCRIBE.
    Read,
    /// INSERT, UPDATE, DELETE, ingest.
    Write,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write to",
        }
    }
}

/// The error of a role below what an action needs.
pub fn denied(role: Role, what: &str) -> Error {
    Error::PermissionDenied(format!("role {role} may not {what}"))
}

/// Requires at least `min` for `what`.
pub fn require(role: Role, min: Role, what: &str) -> Result<()> {
    if role >= min {
        Ok(())
    } else {
        Err(denied(role, what))
    }
}

/// Requires the right to read system.* (dba and up).
pub fn require_system(role: Role) -> Result<()> {
    require(role, Role::Dba, "read system tables")
}

/// Requires the right to read system table `table`; answers whether the caller sees only its
/// own rows (users and services in system.live_queries).
pub fn require_system_table(role: Role, table: &str) -> Result<bool> {
    if table == "live_queries" && role >= Role::User {
        return Ok(role < Role::Dba);
    }
    require_system(role).map(|()| false)
}

/// The highest role `caller` may give to a user, if any.
pub fn grantable(caller: Role) -> Option<Role> {
    match caller {
        Role::Service => Some(Role::User),
        Role::Dba => Some(Role::Dba),
        Role::System => Some(Role::System),
        Role::Anonymous | Role::User => None,
    }
}

/// Requires that `caller` may give `role` (to a new user or by ALTER USER SET ROLE); nobody
/// raises their own role.
pub fn require_grant(caller: &Caller, target: &str, current: Role, role: Role) -> Result<()> {
    let limit = grantable(caller.role).unwrap_or(Role::Anonymous);
    if role > limit || (caller.user == target && role > current) {
        return Err(Error::PermissionDenied(format!(
            "role {} may not give role {role}",
            caller.role
        )));
    }
    Ok(())
}

/// Requires that `caller` may alter or drop a user of role `target` (dba: up to dba; system:
/// anyone).
pub fn require_manage(caller: Role, target: Role, what: &str) -> Result<()> {
    let ok = match caller {
        Role::System => true,
        Role::Dba => target <= Role::Dba,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "role {caller} may not {what} a user of role {target}"
        )))
    }
}

/// Requires that `caller` may run statements as a user of role `target` (service: users; dba:
/// users and services; system: anyone).
pub fn require_impersonate(caller: Role, target: Role) -> Result<()> {
    let limit = match caller {
        Role::Service => Role::User,
        Role::Dba => Role::Service,
        Role::System => Role::System,
        _ => return Err(denied(caller, "execute as another user")),
    };
    if target > limit {
        return Err(Error::PermissionDenied(format!(
            "role {caller} may not execute as a user of role {target}"
        )));
    }
    Ok(())
}

/// May `role` read `table`? USER and STREAM tables: every signed-in role, each its own rows.
pub fn can_read(role: Role, table: &TableDef) -> bool {
    match table.table_type {
        TableType::Shared => match table.access_level {
            AccessLevel::Public => true,
            AccessLevel::Protected => role >= Role::User,
            AccessLevel::Private => role >= Role::Service,
        },
        TableType::User | TableType::Stream => role >= Role::User,
    }
}

/// May `role` write to `table`? SHARED: service and up; USER and STREAM: own rows, signed in.
pub fn can_write(role: Role, table: &TableDef) -> bool {
    match table.table_type {
        TableType::Shared => role >= Role::Service,
        TableType::User | TableType::Stream => role >= Role::User,
    }
}

/// Requires `access` to `table`.
pub fn require_table(role: Role, table: &TableDef, access: Access) -> Result<()> {
    let ok = match access {
        Access::Read => can_read(role, table),
        Access::Write => can_write(role, table),
    };
    if ok {
        Ok(())
    } else {
        Err(denied(
            role,
            &format!("{} {}", access.verb(), table.qualified()),
        ))
    }
}

/// The error for a table (or its namespace) that does not exist. A role that may be refused an
/// existing table hears PERMISSION_DENIED, the same answer as for a table it may not touch, so
/// it cannot probe what exists; service and up, who may touch every table, hear NOT_FOUND.
pub fn missing_table(role: Role, access: Access, name: &str, what: &str) -> Error {
    if role >= Role::Service {
        Error::NotFound(what.to_string())
    } else {
        Error::PermissionDenied(format!(
            "role {role} may not {} {name}, or it does not exist",
            access.verb()
        ))
    }
}

/// May `role` see the namespace holding `tables` in listings? Service and up see every
/// namespace; others see those holding a table they may read.
pub fn can_list_namespace<'a>(role: Role, mut tables: impl Iterator<Item = &'a TableDef>) -> bool {
    role >= Role::Service || tables.any(|t| can_read(role, t))
}
