//! USER tables: one logical table, every user's rows private, hot and cold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quilldb_tests::{Client, TestServer, column, count};
use tonic::Code;

/// A server with `chat.notes`, a USER table, and the users `(name, role)`.
async fn setup(users: &[(&str, &str)]) -> (TestServer, Client) {
    let server = TestServer::start().await;
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE chat").await;
    root.ok(
        "CREATE USER TABLE chat.notes (id BIGINT PRIMARY KEY, body TEXT, \
         owner TEXT DEFAULT CURRENT_USER())",
    )
    .await;
    for (u, r) in users {
        root.ok(&format!(
            "CREATE USER {u} WITH PASSWORD 'password-{u}' ROLE {r}"
        ))
        .await;
    }
    (server, root)
}

#[tokio::test]
async fn users_write_the_same_keys_and_see_only_their_rows() {
    let (server, mut root) = setup(&[("alice", "user"), ("bob", "user")]).await;
    let mut alice = server.client_as("alice", "password-alice").await.unwrap();
    let mut bob = server.client_as("bob", "password-bob").await.unwrap();
    alice
        .ok("INSERT INTO chat.notes (id, body) VALUES (1, 'a1'), (2, 'a2')")
        .await;
    // The same keys in another user's rows are no duplicates.
    bob.ok("INSERT INTO chat.notes (id, body) VALUES (1, 'b1')")
        .await;
    assert_eq!(
        alice
            .err("INSERT INTO chat.notes (id, body) VALUES (1, 'again')")
            .await
            .0,
        Code::AlreadyExists
    );
    let check = |rows: &[arrow::record_batch::RecordBatch], bodies: &[&str]| {
        assert_eq!(column(rows, "body"), bodies);
    };
    // The flush writes one folder per user; reads merge each user's own folder only.
    root.flush("chat.notes").await;
    for u in ["alice", "bob"] {
        let m = server
            .data_dir()
            .join(format!("storage/chat/notes/{u}/manifest.json"));
        let text = std::fs::read_to_string(&m).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(manifest["user_id"], u);
    }
    check(
        &alice.rows("SELECT body FROM chat.notes ORDER BY id").await,
        &["a1", "a2"],
    );
    check(
        &bob.rows("SELECT body FROM chat.notes ORDER BY id").await,
        &["b1"],
    );
    assert_eq!(
        column(
            &alice.rows("SELECT DISTINCT owner FROM chat.notes").await,
            "owner"
        ),
        vec!["alice"]
    );
    // Updates and deletes stay inside the caller's rows, cold or hot.
    assert_eq!(
        bob.ok("UPDATE chat.notes SET body = 'B1' WHERE id = 1")
            .await,
        1
    );
    assert_eq!(bob.ok("DELETE FROM chat.notes WHERE id = 2").await, 0);
    check(
        &alice.rows("SELECT body FROM chat.notes WHERE id = 1").await,
        &["a1"],
    );
    check(
        &bob.rows("SELECT body FROM chat.notes WHERE id = 1").await,
        &["B1"],
    );
    // Even root sees only its own rows; anonymous callers see none.
    assert_eq!(count(&root.rows("SELECT * FROM chat.notes").await), 0);
    let mut anon = server.anonymous().await;
    assert_eq!(
        anon.err("SELECT * FROM chat.notes").await.0,
        Code::PermissionDenied
    );
    // Compaction visits every user's folder, even with no hot rows.
    root.flush("chat.notes").await;
    let (status, message) = root.compact("chat.notes").await;
    assert!(
        status == "completed" || status == "skipped",
        "{status}: {message}"
    );
    check(&bob.rows("SELECT body FROM chat.notes").await, &["B1"]);
    check(
        &alice.rows("SELECT body FROM chat.notes ORDER BY id").await,
        &["a1", "a2"],
    );
    // DROP TABLE removes every user's folder.
    root.ok("DROP TABLE chat.notes").await;
    assert!(!server.data_dir().join("storage/chat/notes/alice").exists());
}

#[tokio::test]
async fn execute_as_user_follows_the_impersonation_rules() {
    let (server, mut root) = setup(&[
        ("alice", "user"),
        ("bob", "user"),
        ("svc", "service"),
        ("adm", "dba"),
    ])
    .await;
    let mut svc = server.client_as("svc", "password-svc").await.unwrap();
    let mut adm = server.client_as("adm", "password-adm").await.unwrap();
    let mut alice = server.client_as("alice", "password-alice").await.unwrap();
    assert_eq!(
        svc.ok(
            "EXECUTE AS USER 'alice' ( INSERT INTO chat.notes (id, body) VALUES (5, 'from (svc)') )"
        )
        .await,
        1
    );
    let mine = alice.rows("SELECT body, owner FROM chat.notes").await;
    assert_eq!(column(&mine, "body"), vec!["from (svc)"]);
    assert_eq!(column(&mine, "owner"), vec!["alice"]);
    let who = svc
        .rows("EXECUTE AS USER alice (SELECT CURRENT_USER() AS u, CURRENT_ROLE() AS r, count(*) AS n FROM chat.notes)")
        .await;
    assert_eq!(column(&who, "u"), vec!["alice"]);
    assert_eq!(column(&who, "r"), vec!["user"]);
    assert_eq!(column(&who, "n"), vec!["1"]);
    // The service's own rows are not alice's.
    assert_eq!(count(&svc.rows("SELECT * FROM chat.notes").await), 0);
    let cases = [
        (
            "svc",
            "EXECUTE AS USER 'adm' (SELECT 1)",
            Code::PermissionDenied,
        ),
        ("svc", "EXECUTE AS USER 'ghost' (SELECT 1)", Code::NotFound),
        (
            "alice",
            "EXECUTE AS USER 'ghost' (SELECT 1)",
            Code::PermissionDenied,
        ),
        (
            "alice",
            "EXECUTE AS USER 'bob' (SELECT 1)",
            Code::PermissionDenied,
        ),
        (
            "adm",
            "EXECUTE AS USER 'root' (SELECT 1)",
            Code::PermissionDenied,
        ),
        (
            "adm",
            "EXECUTE AS USER 'svc' (EXECUTE AS USER 'alice' (SELECT 1))",
            Code::InvalidArgument,
        ),
    ];
    for (who, sql, code) in cases {
        let client = match who {
            "svc" => &mut svc,
            "alice" => &mut alice,
            _ => &mut adm,
        };
        assert_eq!(client.err(sql).await.0, code, "{sql}");
    }
    assert_eq!(
        count(
            &adm.rows("EXECUTE AS USER 'svc' (SELECT CURRENT_ROLE() AS r)")
                .await
        ),
        1
    );
    assert_eq!(
        root.ok("EXECUTE AS USER 'bob' ( DELETE FROM chat.notes WHERE id = 5 )")
            .await,
        0,
        "bob has no row 5"
    );
}
