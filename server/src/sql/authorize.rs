//! Which role may run which statement (spec/security.md); the table-level checks are in
//! `authz`, applied where each statement resolves its tables.

use super::parser::{Command, UserChange};
use crate::authz;
use crate::error::{Error, Result};
use crate::session::{Caller, Role};

/// The matrix row of one statement: the role it needs before anything is looked up.
pub fn authorize(caller: &Caller, cmd: &Command) -> Result<()> {
    let role = caller.role;
    let (min, what) = match cmd {
        // Table-dependent (access levels, own rows): checked again on the table.
        Command::Query(_)
        | Command::Subscribe { .. }
        | Command::ShowNamespaces
        | Command::ShowTables(_)
        | Command::Use(_)
        | Command::Describe(_)
        | Command::ShowManifest(_) => (Role::Anonymous, "run queries"),
        Command::Insert(_) | Command::Update(_) | Command::Delete(_) => (Role::User, "write rows"),
        Command::Begin | Command::Commit | Command::Rollback => (
            Role::User,
            "use transactions: they need a signed-in session",
        ),
        Command::CreateTable { .. } => (Role::Service, "create tables"),
        Command::AlterTable(_) => (Role::Service, "alter tables"),
        Command::DropTable { .. } => (Role::Dba, "drop tables"),
        Command::CreateNamespace { .. } => (Role::Dba, "create namespaces"),
        Command::DropNamespace { .. } => (Role::Dba, "drop namespaces"),
        Command::CreateStorage { .. } => (Role::Dba, "create storages"),
        Command::DropStorage { .. } => (Role::Dba, "drop storages"),
        Command::ShowStorages => (Role::Dba, "list storages"),
        Command::FlushTable(_) | Command::FlushAll(_) => (Role::Service, "flush tables"),
        Command::CompactTable(_) => (Role::Service, "compact tables"),
        Command::KillJob(_) => (Role::Dba, "kill jobs"),
        // Own live queries; dba and up any (checked on the live query).
        Command::KillLiveQuery(_) => (Role::User, "kill live queries"),
        // Another user's data: checked against the name (dba and up).
        Command::ExportUserData(_) => (Role::User, "export user data"),
        Command::CreateUser { role: given, .. } => {
            let Some(limit) = authz::grantable(role) else {
                return Err(authz::denied(role, "create users"));
            };
            // An unknown role name is the statement's own error, reported after this check.
            if let Some(wanted) = given.as_deref().and_then(Role::parse)
                && wanted > limit
            {
                return Err(Error::PermissionDenied(format!(
                    "role {role} may create users up to role {limit}, not {wanted}"
                )));
            }
            return Ok(());
        }
        Command::AlterUser { name, change } => {
            let own = *name == caller.user;
            match change {
                UserChange::Password(_) | UserChange::Email(_) if own => {
                    (Role::User, "change their own password")
                }
                _ => (Role::Dba, "alter other users"),
            }
        }
        Command::DropUser { .. } => (Role::Dba, "drop users"),
        Command::ExecuteAs { .. } => (Role::Service, "execute as another user"),
        Command::CreateView { .. } => (Role::Service, "create views"),
        Command::DropView { .. } => (Role::Service, "drop views"),
        Command::Unsupported(_) => (Role::User, "run this statement"),
    };
    authz::require(role, min, what)
}
