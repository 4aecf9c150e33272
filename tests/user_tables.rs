//! USER tables: one logical table, every user's rows private, hot and cold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quilldb_tests::{TestServer, column, count};
use tonic::Code;

#[tokio::test]
async fn users_write_the_same_keys_and_see_only_their_rows() {
    let server = TestServer::start().await;
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE chat").await;
    root.ok("CREATE USER TABLE chat.notes (id BIGINT PRIMARY KEY, body TEXT, owner TEXT DEFAULT CURRENT_USER())")
        .await;
    for u in ["alice", "bob"] {
        root.ok(&format!("CREATE USER {u} WITH PASSWORD 'password-{u}'"))
            .await;
    }
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
