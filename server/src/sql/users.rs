//! CREATE / ALTER / DROP USER and EXECUTE AS USER. Who may do what is `authz`'s: its statement
//! check runs before any user is looked up, its target checks here once the user is known.

use std::sync::Arc;

use super::parser::UserChange;
use crate::auth::records::{check_password, hash_password};
use crate::auth::{ROOT, UserDef};
use crate::authz;
use crate::catalog::names::{NameKind, validate};
use crate::catalog::now_millis;
use crate::engine::{CatalogEvent, Database};
use crate::error::{Error, Result};
use crate::session::{Caller, Role};

fn parse_role(r: &str) -> Result<Role> {
    Role::parse(r).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "unknown role {r:?}: expected user, service, dba or system"
        ))
    })
}

async fn hashed(password: String) -> Result<String> {
    check_password(&password)?;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| Error::Internal(format!("hashing a password: {e}")))?
}

/// CREATE USER.
pub async fn create_user(
    db: &Arc<Database>,
    caller: &Caller,
    name: &str,
    if_not_exists: bool,
    password: String,
    role: Option<&str>,
    email: Option<String>,
) -> Result<()> {
    let role = role.map(parse_role).transpose()?.unwrap_or(Role::User);
    authz::require_grant(caller, name, Role::Anonymous, role)?;
    validate(NameKind::User, name)?;
    if name == ROOT || db.auth.user(name).is_some() {
        return if if_not_exists {
            Ok(())
        } else {
            Err(Error::AlreadyExists(format!("user {name} already exists")))
        };
    }
    let password_hash = hashed(password).await?;
    let now = now_millis();
    // A dropped user's name can be taken again: its old tokens stay dead.
    let previous = db
        .auth
        .users()
        .into_iter()
        .find(|u| u.user_id == name)
        .map_or(0, |u| u.credentials);
    db.auth
        .save(UserDef {
            user_id: name.to_string(),
            role,
            email,
            password_hash,
            created_at: now,
            updated_at: now,
            last_login_at: None,
            deleted_at: None,
            credentials: previous + 1,
        })
        .await?;
    tracing::info!(user = name, %role, by = %caller.user, "user created");
    Ok(())
}

/// ALTER USER.
pub async fn alter_user(
    db: &Arc<Database>,
    caller: &Caller,
    name: &str,
    change: UserChange,
) -> Result<()> {
    let own = caller.user == name;
    if name == ROOT {
        return Err(Error::InvalidArgument(
            "root is configured, not altered: its password comes from QUILLDB_ROOT_PASSWORD \
             (or auth.root_password)"
                .into(),
        ));
    }
    let Some(mut user) = db.auth.user(name) else {
        return Err(Error::NotFound(format!("user {name} does not exist")));
    };
    if !own {
        authz::require_manage(caller.role, user.role, "alter")?;
    }
    match change {
        UserChange::Password(p) => {
            user.password_hash = hashed(p).await?;
            user.credentials += 1;
        }
        UserChange::Email(e) => user.email = Some(e),
        UserChange::Role(r) => {
            let role = parse_role(&r)?;
            authz::require_grant(caller, name, user.role, role)?;
            user.role = role;
            user.credentials += 1;
        }
    }
    user.updated_at = now_millis();
    let credentials = user.credentials;
    let role = user.role;
    db.auth.save(user).await?;
    db.events
        .publish(CatalogEvent::RoleChanged {
            user: name.to_string(),
            role,
        })
        .await;
    if own {
        db.auth.keep_session(caller.session(), credentials).await?;
    }
    tracing::info!(user = name, by = %caller.user, "user altered");
    Ok(())
}

/// DROP USER: the account stays in system.users with `deleted_at`; its tokens stop working.
pub async fn drop_user(
    db: &Arc<Database>,
    caller: &Caller,
    name: &str,
    if_exists: bool,
) -> Result<()> {
    if name == ROOT {
        return Err(Error::InvalidArgument("root cannot be dropped".into()));
    }
    let Some(mut user) = db.auth.user(name) else {
        return if if_exists {
            Ok(())
        } else {
            Err(Error::NotFound(format!("user {name} does not exist")))
        };
    };
    authz::require_manage(caller.role, user.role, "drop")?;
    let now = now_millis();
    user.deleted_at = Some(now);
    user.updated_at = now;
    user.credentials += 1;
    db.auth.save(user).await?;
    db.events
        .publish(CatalogEvent::UserDropped {
            user: name.to_string(),
        })
        .await;
    tracing::info!(user = name, by = %caller.user, "user dropped");
    Ok(())
}

/// EXECUTE AS USER: one statement as another user (service: users; dba: users and services;
/// system: anyone). The caller's rights are checked before the user is looked up.
pub fn impersonate(db: &Database, caller: &Caller, name: &str) -> Result<Caller> {
    let target = if name == ROOT {
        Some((ROOT.to_string(), Role::System))
    } else {
        db.auth.user(name).map(|u| (u.user_id, u.role))
    };
    let Some((user, role)) = target else {
        return Err(Error::NotFound(format!("user {name} does not exist")));
    };
    authz::require_impersonate(caller.role, role)?;
    let session = Arc::new(crate::session::Session::new(user, role));
    session.set_namespace(caller.namespace());
    tracing::info!(user = name, by = %caller.user, "execute as");
    Ok(Caller::new(session))
}
