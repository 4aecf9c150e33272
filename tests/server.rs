//! The binary: ready line, HTTP endpoints, signals, configuration layers, log level.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use quilldb_tests::{TestServer, binary, http_get, http_get_with};

#[tokio::test]
async fn health_ready_and_metrics() {
    let server = TestServer::start().await;
    assert!(server.flight_url.starts_with("grpc://127.0.0.1:"));
    assert!(!server.flight_url.ends_with(":0"));
    let (status, body) = http_get(&server.http_url, "/health");
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(&server.http_url, "/ready");
    assert_eq!(status, 200);
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    let _ = c.query("SELEC oops").await;
    let (status, metrics) = http_get(&server.http_url, "/metrics");
    assert_eq!(status, 200);
    // Every line of the exposition is a quill_ metric; labels come from fixed sets.
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("quill_"), "{line}");
    }
    assert!(
        metrics.contains(
            "quill_flight_requests_total{method=\"GetFlightInfo\",status=\"InvalidArgument\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("quill_flight_requests_total{method=\"Handshake\",status=\"Ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("quill_flight_request_duration_seconds_bucket{method=\"GetFlightInfo\"")
    );
    assert!(metrics.contains("quill_statements_total{kind=\"statement\",status=\"ok\"}"));
    assert!(metrics.contains("quill_statement_duration_seconds"));
    assert!(metrics.contains("quill_process_resident_memory_bytes"));
    assert!(metrics.contains("quill_process_open_fds"));
    assert!(metrics.contains("quill_rocksdb{property=\"estimated_keys\"}"));
}

#[tokio::test]
async fn sigterm_and_sigint_stop_cleanly() {
    let mut server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    drop(c);
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    assert!(server.log().contains("stopped cleanly"));
    server.launch(&[]);
    let status = server.interrupt();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn version_prints_commit_and_date() {
    let out = Command::new(binary()).arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.starts_with("quilldb "), "{text}");
    assert!(text.contains("commit") && text.contains("built"), "{text}");
}

#[tokio::test]
async fn configuration_layers_and_log_level() {
    // The file sets debug logging and a node id; the environment overrides the node id.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quill.toml");
    std::fs::write(
        &file,
        "[log]\nlevel = \"debug\"\n[server]\nnode_id = 7\n[storage]\ndurability = \"async\"\n",
    )
    .unwrap();
    let mut server = TestServer::start_with(&[
        ("QUILLDB_CONFIG", file.to_str().unwrap()),
        ("QUILLDB_SERVER__NODE_ID", "9"),
    ])
    .await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY)").await;
    c.ok("INSERT INTO app.t VALUES (1)").await;
    let seq: i64 = quilldb_tests::column(&c.rows("SELECT _seq FROM app.t").await, "_seq")[0]
        .parse()
        .unwrap();
    assert_eq!((seq >> 12) & 1023, 9, "node id from the environment");
    assert!(server.log().contains("DEBUG"), "debug level from the file");
    drop(c);
    server.stop();

    // At info level no debug lines are written.
    let quiet = TestServer::start_with(&[("QUILLDB_LOG__LEVEL", "info")]).await;
    let mut c = quiet.client().await;
    c.ok("CREATE NAMESPACE app").await;
    assert!(!quiet.log().contains("DEBUG"));

    // A bad configuration is a clear error, not a panic.
    let out = Command::new(binary())
        .args(["serve", "--config", "/nonexistent/quill.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[tokio::test]
async fn an_export_is_downloaded_by_its_user_and_expires() {
    let server = TestServer::start_with(&[("QUILLDB_JOBS__EXPORT_RETENTION_SECONDS", "2")]).await;
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok("CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    root.ok("CREATE USER alice PASSWORD 'pw-alice-1' ROLE user")
        .await;
    let mut alice = server.client_as("alice", "pw-alice-1").await.unwrap();
    alice.ok("INSERT INTO app.notes VALUES (1, 'mine')").await;
    let job = quilldb_tests::column(&alice.rows("EXPORT USER DATA").await, "job_id")
        .pop()
        .unwrap();
    let (status, message) = root.wait_job(&job).await;
    assert_eq!(status, "completed", "{message}");
    assert!(
        message.contains("1 rows of 1 table(s) for alice"),
        "{message}"
    );
    let token = alice.inner.token().cloned().unwrap();
    let path = format!("/v1/exports/{job}");
    let (code, body) = http_get_with(&server.http_url, &path, Some(&token));
    assert_eq!(code, 200);
    assert!(body.starts_with("PK"), "a zip");
    assert_eq!(http_get_with(&server.http_url, &path, None).0, 401);
    assert_eq!(
        http_get_with(&server.http_url, "/v1/exports/EX-nothing", Some(&token)).0,
        404
    );
    // Past jobs.export_retention_seconds the file is gone: 410, and the job stays listed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, _) = http_get_with(&server.http_url, &path, Some(&token));
        if code == 410 {
            break;
        }
        assert_eq!(code, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "the export never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        !server
            .data_dir()
            .join(format!("exports/{job}.zip"))
            .exists()
    );
    let jobs = root
        .rows(&format!(
            "SELECT job_type, user_id FROM system.jobs WHERE job_id = '{job}'"
        ))
        .await;
    assert_eq!(quilldb_tests::column(&jobs, "user_id"), vec!["alice"]);
}
