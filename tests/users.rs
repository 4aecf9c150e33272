//! Users, roles and tokens: CREATE / ALTER / DROP USER by the rules of the permission matrix,
//! password hashes never shown, tokens that survive a restart and die with their credentials,
//! lockout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quilldb_tests::{TestServer, column, count};
use tonic::Code;

#[tokio::test]
async fn users_are_created_listed_and_log_in() {
    let server = TestServer::start().await;
    let mut root = server.client().await;
    root.ok("CREATE USER alice WITH PASSWORD 'alice-pass-1' EMAIL 'a@x.io'")
        .await;
    root.ok("CREATE USER svc WITH PASSWORD 'service-pass' ROLE service")
        .await;
    root.ok("CREATE USER IF NOT EXISTS svc WITH PASSWORD 'other-pass'")
        .await;
    assert_eq!(
        root.err("CREATE USER alice WITH PASSWORD 'alice-pass-2'")
            .await
            .0,
        Code::AlreadyExists
    );
    let users = root
        .rows("SELECT * FROM system.users ORDER BY user_id")
        .await;
    assert_eq!(column(&users, "user_id"), vec!["alice", "root", "svc"]);
    assert_eq!(column(&users, "role"), vec!["user", "system", "service"]);
    let names: Vec<String> = users[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("password") || n.contains("hash")),
        "{names:?}"
    );
    // Stored hashes are salted Argon2id, never the password.
    let (code, msg) = root.err("CREATE USER bob WITH PASSWORD 'short'").await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert_eq!(
        root.err("CREATE USER bob WITH PASSWORD 'long-enough' ROLE wizard")
            .await
            .0,
        Code::InvalidArgument
    );
    assert!(server.login("alice", "alice-pass-1").await.is_ok());
    let wrong = server.login("alice", "nope-nope-nope").await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let unknown = server.login("nobody", "alice-pass-1").await.unwrap_err();
    assert_eq!(
        unknown.message(),
        wrong.message(),
        "no hint which names exist"
    );
    let mut alice = server.client_as("alice", "alice-pass-1").await.unwrap();
    let me = alice.rows("SELECT CURRENT_USER() AS u").await;
    assert_eq!(column(&me, "u"), vec!["alice"]);
    let log = server.log();
    assert!(!log.contains("alice-pass-1"), "a password reached the log");
    let seen = root
        .rows("SELECT last_login_at FROM system.users WHERE user_id = 'alice'")
        .await;
    assert_ne!(column(&seen, "last_login_at"), vec![""]);
}

#[tokio::test]
async fn nobody_grants_above_their_own_role() {
    let server = TestServer::start().await;
    let mut root = server.client().await;
    for (u, r) in [("usr", "user"), ("svc", "service"), ("adm", "dba")] {
        root.ok(&format!(
            "CREATE USER {u} WITH PASSWORD 'password-{u}' ROLE {r}"
        ))
        .await;
    }
    // 0 anonymous, 1 user, 2 service, 3 dba.
    let mut clients = [
        server.anonymous().await,
        server.client_as("usr", "password-usr").await.unwrap(),
        server.client_as("svc", "password-svc").await.unwrap(),
        server.client_as("adm", "password-adm").await.unwrap(),
    ];
    let denied = Some(Code::PermissionDenied);
    let cases: Vec<(usize, &str, Option<Code>)> = vec![
        (0, "CREATE USER a1 WITH PASSWORD 'password-a1'", denied),
        (1, "CREATE USER a2 WITH PASSWORD 'password-a2'", denied),
        (2, "CREATE USER a3 WITH PASSWORD 'password-a3'", None),
        (
            2,
            "CREATE USER a4 WITH PASSWORD 'password-a4' ROLE service",
            denied,
        ),
        (
            3,
            "CREATE USER a5 WITH PASSWORD 'password-a5' ROLE dba",
            None,
        ),
        (
            3,
            "CREATE USER a6 WITH PASSWORD 'password-a6' ROLE system",
            denied,
        ),
        // Rights come before lookups: no hint whether the user exists.
        (1, "DROP USER ghost", denied),
        (1, "ALTER USER ghost SET ROLE dba", denied),
        (2, "DROP USER a3", denied),
        (3, "DROP USER ghost", Some(Code::NotFound)),
        (3, "ALTER USER svc SET ROLE system", denied),
        (3, "ALTER USER svc SET ROLE dba", None),
        (1, "ALTER USER usr SET ROLE service", denied),
        (1, "ALTER USER usr SET PASSWORD 'new-password'", None),
        (1, "ALTER USER svc SET PASSWORD 'new-password'", denied),
        (3, "DROP USER root", Some(Code::InvalidArgument)),
        (3, "DROP USER a3", None),
    ];
    for (who, sql, want) in cases {
        match (clients[who].exec(sql).await, want) {
            (Ok(_), None) => {}
            (Err(e), Some(code)) => assert_eq!(e.code(), code, "{sql}: {e}"),
            (r, want) => panic!("{sql}: got {r:?}, wanted {want:?}"),
        }
    }
    let dropped = root
        .rows("SELECT deleted_at FROM system.users WHERE user_id = 'a3'")
        .await;
    assert_ne!(column(&dropped, "deleted_at"), vec![""]);
    assert!(server.login("a3", "password-a3").await.is_err());
    assert_eq!(
        column(
            &root
                .rows("SELECT role FROM system.users WHERE user_id = 'svc'")
                .await,
            "role"
        ),
        vec!["dba"]
    );
}

#[tokio::test]
async fn tokens_survive_a_restart_and_die_with_their_credentials() {
    let mut server = TestServer::start().await;
    let mut root = server.client().await;
    root.ok("CREATE USER alice WITH PASSWORD 'alice-pass-1'")
        .await;
    root.ok("CREATE USER bob WITH PASSWORD 'bob-pass-12'").await;
    let alice = server.client_as("alice", "alice-pass-1").await.unwrap();
    let bob = server.client_as("bob", "bob-pass-12").await.unwrap();
    let (alice_token, bob_token) = (
        alice.inner.token().cloned().unwrap(),
        bob.inner.token().cloned().unwrap(),
    );
    drop((alice, bob, root));
    server.stop();
    server.launch(&[]);
    let mut a = server.client_with_token(&alice_token).await;
    assert_eq!(
        column(&a.rows("SELECT CURRENT_USER() AS u").await, "u"),
        vec!["alice"]
    );
    // A password change or a drop ends the tokens at once.
    let mut root = server.client().await;
    root.ok("ALTER USER alice SET PASSWORD 'alice-pass-2'")
        .await;
    assert_eq!(a.err("SELECT 1").await.0, Code::Unauthenticated);
    let mut b = server.client_with_token(&bob_token).await;
    assert_eq!(count(&b.rows("SELECT 1").await), 1);
    root.ok("DROP USER bob").await;
    assert_eq!(b.err("SELECT 1").await.0, Code::Unauthenticated);
    assert!(server.login("alice", "alice-pass-2").await.is_ok());
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_account() {
    let server = TestServer::start_with(&[("QUILLDB_AUTH__MAX_FAILED_LOGINS", "3")]).await;
    let mut root = server.client().await;
    root.ok("CREATE USER carol WITH PASSWORD 'carol-pass-1'")
        .await;
    for _ in 0..3 {
        assert!(server.login("carol", "wrong-password").await.is_err());
    }
    let locked = server.login("carol", "carol-pass-1").await.unwrap_err();
    assert_eq!(locked.code(), Code::Unauthenticated);
    assert!(locked.message().contains("locked"), "{}", locked.message());
}

#[tokio::test]
async fn names_never_leave_their_folder() {
    let server = TestServer::start().await;
    let mut root = server.client().await;
    for name in ["\"../evil\"", "\"a/b\"", "\"..\"", "\"a\\\\b\"", "\"Root\""] {
        let (code, msg) = root
            .err(&format!("CREATE USER {name} WITH PASSWORD 'long-enough'"))
            .await;
        assert_eq!(code, Code::InvalidArgument, "{name}: {msg}");
    }
    // The folder is allowed (inside the data folder): each statement fails for its name or
    // its template.
    let x = server.data_dir().join("x");
    let x = x.display();
    for sql in [
        "CREATE NAMESPACE \"../up\"".to_string(),
        format!("CREATE STORAGE \"../s\" TYPE 'filesystem' PATH '{x}'"),
        format!(
            "CREATE STORAGE s1 TYPE 'filesystem' PATH '{x}' USER_TABLES_TEMPLATE '{{namespace}}/../{{user_id}}'"
        ),
        format!(
            "CREATE STORAGE s2 TYPE 'filesystem' PATH '{x}' SHARED_TABLES_TEMPLATE '../{{namespace}}/{{table}}'"
        ),
        format!(
            "CREATE STORAGE s3 TYPE 'filesystem' PATH '{x}' USER_TABLES_TEMPLATE '{{namespace}}/{{table}}'"
        ),
    ] {
        let (code, msg) = root.err(&sql).await;
        assert_eq!(code, Code::InvalidArgument, "{sql}: {msg}");
        assert!(!msg.contains("PATH"), "{sql} failed for its folder: {msg}");
    }
    // A login name is only ever looked up, never used as a path.
    let err = server
        .login("../../etc/passwd", "long-enough")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // A user's cold rows land in their own folder under the table's.
    root.ok("CREATE NAMESPACE app").await;
    root.ok("CREATE USER TABLE app.n (id BIGINT PRIMARY KEY)")
        .await;
    root.ok("CREATE USER alice WITH PASSWORD 'password-alice'")
        .await;
    let mut alice = server.client_as("alice", "password-alice").await.unwrap();
    alice.ok("INSERT INTO app.n VALUES (1)").await;
    root.flush("app.n").await;
    let manifest = server.data_dir().join("storage/app/n/alice/manifest.json");
    assert!(manifest.exists(), "{manifest:?}");
    assert_eq!(count(&root.rows("SELECT * FROM app.n").await), 0);
    assert_eq!(count(&alice.rows("SELECT * FROM app.n").await), 1);
}

#[tokio::test]
async fn basic_credentials_work_on_any_call_and_answer_a_bearer_token() {
    use arrow_flight::FlightDescriptor;
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
    use base64::Engine;
    use prost::Message;

    let server = TestServer::start().await;
    let mut root = server.client().await;
    root.ok("CREATE USER alice WITH PASSWORD 'password-alice'")
        .await;
    let mut raw = server.raw_client().await;
    let cmd = CommandStatementQuery {
        query: "SELECT CURRENT_USER() AS u".into(),
        transaction_id: None,
    };
    let mut req = tonic::Request::new(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec()));
    let creds = base64::engine::general_purpose::STANDARD.encode("alice:password-alice");
    req.metadata_mut()
        .insert("authorization", format!("Basic {creds}").parse().unwrap());
    let resp = raw.get_flight_info(req).await.unwrap();
    let bearer = resp
        .metadata()
        .get("authorization")
        .expect("a Bearer header")
        .to_str()
        .unwrap()
        .to_string();
    let token = bearer.strip_prefix("Bearer ").expect("Bearer");
    let mut alice = server.client_with_token(token).await;
    assert_eq!(
        column(&alice.rows("SELECT CURRENT_USER() AS u").await, "u"),
        vec!["alice"]
    );
    // Wrong Basic credentials on a plain call are UNAUTHENTICATED, never anonymous.
    let mut req = tonic::Request::new(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec()));
    let creds = base64::engine::general_purpose::STANDARD.encode("alice:wrong-password");
    req.metadata_mut()
        .insert("authorization", format!("Basic {creds}").parse().unwrap());
    assert_eq!(
        raw.get_flight_info(req).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn tokens_expire_and_a_role_change_ends_them() {
    let server = TestServer::start_with(&[("QUILLDB_AUTH__TOKEN_TTL_SECONDS", "1")]).await;
    let mut root = server.client().await;
    root.ok("CREATE USER carol WITH PASSWORD 'password-carol'")
        .await;
    let mut carol = server.client_as("carol", "password-carol").await.unwrap();
    assert_eq!(count(&carol.rows("SELECT 1").await), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(carol.err("SELECT 1").await.0, Code::Unauthenticated);
    // A fresh login works until the role changes.
    let mut carol = server.client_as("carol", "password-carol").await.unwrap();
    let mut root = server.client().await;
    root.ok("ALTER USER carol SET ROLE service").await;
    assert_eq!(carol.err("SELECT 1").await.0, Code::Unauthenticated);
    let mut carol = server.client_as("carol", "password-carol").await.unwrap();
    assert_eq!(
        column(&carol.rows("SELECT CURRENT_ROLE() AS r").await, "r"),
        vec!["service"]
    );
}
