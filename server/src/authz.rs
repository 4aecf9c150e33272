//! Authorization: what a role may do (spec/security.md). Checked before anything is looked up,
//! so a refused caller learns nothing about what exists.

use crate::catalog::{AccessLevel, TableDef, TableType};
use crate::error::{Error, Result};
use crate::session::Role;

/// Requires at least `min` for `what`.
pub fn require(role: Role, min: Role, what: &str) -> Result<()> {
    if role >= min {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "role {role} may not {what}"
        )))
    }
}

/// May `role` read `table`?
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

/// Requires read access to `table`.
pub fn require_read(role: Role, table: &TableDef) -> Result<()> {
    if can_read(role, table) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "role {role} may not read {}",
            table.qualified()
        )))
    }
}

/// Requires write access to `table`.
pub fn require_write(role: Role, table: &TableDef) -> Result<()> {
    let min = match table.table_type {
        TableType::Shared => Role::Service,
        TableType::User | TableType::Stream => Role::User,
    };
    require(role, min, &format!("write to {}", table.qualified()))
}
