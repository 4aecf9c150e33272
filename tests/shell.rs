//! `quilldb sql`: scripts (-c, -f, stdin), formats and exit codes, and the interactive shell
//! driven through a pseudo-terminal (completion, history, Ctrl-C, a live subscription).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use quilldb_tests::{TestServer, binary};

/// Runs `quilldb sql` against `server` with `args`, HOME in `home`.
fn sql(server: &TestServer, home: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("sql")
        .arg("--url")
        .arg(&server.flight_url)
        .args(args)
        .env("HOME", home)
        .env_remove("QUILLDB_PASSWORD")
        .env_remove("QUILLDB_USER")
        .env_remove("QUILLDB_URL")
        .output()
        .expect("run quilldb sql")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[tokio::test]
async fn scripts_print_tables_csv_and_json_and_stop_at_the_first_error() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let out = sql(
        &server,
        home.path(),
        &[
            "-c",
            "CREATE NAMESPACE app; CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT);\
             INSERT INTO app.t VALUES (1, 'semi;colon'), (2, NULL); SELECT id, v FROM app.t ORDER BY id",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("OK, 2 rows affected ("), "{stdout}");
    assert!(stdout.contains("| 1  | semi;colon |"), "{stdout}");
    assert!(
        regex_like(&stdout, "(2 rows, ", " s)\n"),
        "the row count and the elapsed time: {stdout}"
    );

    let csv = sql(
        &server,
        home.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT id, v FROM app.t ORDER BY id",
        ],
    );
    assert_eq!(text(&csv.stdout), "id,v\n1,semi;colon\n2,\n");
    let json = sql(
        &server,
        home.path(),
        &[
            "--format",
            "json",
            "-c",
            "SELECT id, v FROM app.t ORDER BY id",
        ],
    );
    assert_eq!(
        text(&json.stdout),
        "[{\"id\":1,\"v\":\"semi;colon\"},{\"id\":2}]\n"
    );

    // A file: comments, statements over several lines, a `;` inside a string and a comment.
    let script = home.path().join("script.sql");
    std::fs::write(
        &script,
        "-- the first statement; not a real end\n\
         INSERT INTO app.t (id, v)\n  VALUES (3, 'a -- b; /* c */');\n\
         /* a block; comment */\n\
         SELEC broken;\n\
         INSERT INTO app.t VALUES (4, 'after the error');\n",
    )
    .unwrap();
    let f = script.to_str().unwrap();
    let out = sql(&server, home.path(), &["-f", f]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line per error: {err}");
    assert!(
        err.starts_with("ERROR INVALID_ARGUMENT: ") && err.contains("(statement 2)"),
        "{err}"
    );
    let check = sql(
        &server,
        home.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT v FROM app.t WHERE id >= 3 ORDER BY id",
        ],
    );
    assert_eq!(
        text(&check.stdout),
        "v\na -- b; /* c */\n",
        "stopped at the error"
    );

    let out = sql(&server, home.path(), &["--continue-on-error", "-f", f]);
    assert_eq!(out.status.code(), Some(1), "an error still fails the run");
    assert!(
        text(&out.stderr).contains("(statement 1)"),
        "row 3 exists now: {}",
        text(&out.stderr)
    );
    let check = sql(
        &server,
        home.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM app.t WHERE id = 4",
        ],
    );
    assert_eq!(text(&check.stdout), "n\n1\n", "went on after the errors");

    // Meta commands in scripts, and statements from stdin.
    let out = sql(&server, home.path(), &["-c", "\\dt app"]);
    assert!(
        text(&out.stdout).contains("| app       | t          | SHARED     |"),
        "{}",
        text(&out.stdout)
    );
    let mut child = Command::new(binary())
        .args(["sql", "--url", &server.flight_url, "--format", "csv"])
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 40 + 2 AS answer;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "answer\n42\n");

    // Wrong credentials and an unreachable server: status 2 and one clear line.
    let out = sql(
        &server,
        home.path(),
        &["-u", "root", "-p", "wrong", "-c", "SELECT 1"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("UNAUTHENTICATED"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(binary())
        .args(["sql", "--url", "grpc://127.0.0.1:9", "-c", "SELECT 1"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot connect to grpc://127.0.0.1:9"));
}

#[tokio::test]
async fn stored_credentials_are_used_only_when_private() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE USER carol WITH PASSWORD 'carol-pass-1' ROLE user")
        .await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".quilldb")).unwrap();
    let creds = home.path().join(".quilldb/credentials");
    std::fs::write(&creds, "user = carol\npassword = carol-pass-1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sql(
        &server,
        home.path(),
        &["-c", "SELECT current_user() AS u", "--format", "csv"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = sql(
        &server,
        home.path(),
        &["-c", "SELECT current_user() AS u", "--format", "csv"],
    );
    assert_eq!(text(&out.stdout), "u\ncarol\n", "{}", text(&out.stderr));
}

/// Whether `s` has `head`, then anything, then `tail` on one line.
fn regex_like(s: &str, head: &str, tail: &str) -> bool {
    s.lines()
        .any(|l| l.starts_with(head) && format!("{l}\n").ends_with(tail))
}

/// Types `keys` (no Enter) and waits for `shown`.
fn typed(p: &mut rexpect::session::PtySession, keys: &str, shown: &str) {
    p.send(keys).unwrap();
    p.flush().unwrap();
    p.exp_string(shown).unwrap();
}

fn shell(server: &TestServer, home: &Path) -> rexpect::session::PtySession {
    let mut cmd = Command::new(binary());
    cmd.args(["sql", "--url", &server.flight_url])
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env_remove("QUILLDB_PASSWORD");
    let mut p = rexpect::spawn_with_options(
        cmd,
        rexpect::reader::Options::new()
            .timeout_ms(Some(30_000))
            .strip_ansi_escape_codes(true),
    )
    .unwrap();
    p.exp_string("\\help for help").unwrap();
    p.exp_string("quilldb> ").unwrap();
    p
}

#[tokio::test]
async fn the_interactive_shell_completes_keeps_history_cancels_and_follows_a_subscription() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE shopfloor").await;
    c.ok("CREATE TABLE shopfloor.orders (id BIGINT PRIMARY KEY, quantity BIGINT, item TEXT)")
        .await;
    c.ok("INSERT INTO shopfloor.orders VALUES (1, 5, 'bolt')")
        .await;
    let home = tempfile::tempdir().unwrap();
    let mut p = shell(&server, home.path());

    // A statement over two lines runs once the `;` comes.
    p.send_line("SELECT 40 +").unwrap();
    p.send_line("2 AS answer;").unwrap();
    p.exp_string("| 42     |").unwrap();
    p.exp_regex(r"\(1 row, \d+\.\d{3} s\)").unwrap();

    // Completion of a namespace, a table and a column from the catalog.
    typed(&mut p, "SELECT shopfloor.orders.quan\t", "quantity");
    typed(&mut p, " FROM shopf\t", "shopfloor");
    typed(&mut p, ".ord\t", "orders");
    p.send_line(";").unwrap();
    p.exp_string("| 5        |").unwrap();

    // Errors are one line with their code; the shell goes on.
    p.send_line("SELECT * FROM shopfloor.nope;").unwrap();
    p.exp_regex("ERROR NOT_FOUND: [^\n]*nope").unwrap();

    // A password typed in a statement does not reach the history file.
    p.send_line("CREATE USER dave WITH PASSWORD 'very-secret-9' ROLE user;")
        .unwrap();
    p.exp_string("OK, ").unwrap();

    // Ctrl-C cancels a long query and keeps the shell.
    p.send_line("SELECT count(*) FROM generate_series(1, 50000000000);")
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    p.send_control('c').unwrap();
    p.exp_string("ERROR cancelled").unwrap();
    p.send_line("SELECT 'still here' AS s;").unwrap();
    p.exp_string("still here").unwrap();

    // A subscription prints its snapshot, then a row another client inserts.
    p.send_line("SUBSCRIBE TO shopfloor.orders WHERE quantity > 1;")
        .unwrap();
    p.exp_string("live: LQ-").unwrap();
    c.ok("INSERT INTO shopfloor.orders VALUES (2, 7, 'nut')")
        .await;
    p.exp_regex(r"\+ \d\d:\d\d:\d\d\.\d{3}  id=2, quantity=7, item=nut")
        .unwrap();
    c.ok("DELETE FROM shopfloor.orders WHERE id = 1").await;
    p.exp_regex(r"- \d\d:\d\d:\d\d\.\d{3}  id=1, quantity=5, item=bolt")
        .unwrap();
    p.send_control('c').unwrap();
    p.exp_string("subscription ended").unwrap();

    // \use sets the prompt's namespace; \q leaves.
    p.send_line("\\use shopfloor").unwrap();
    p.exp_string("quilldb:shopfloor> ").unwrap();
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();

    let history = std::fs::read_to_string(home.path().join(".quilldb_history")).unwrap();
    assert!(history.contains("SELECT 40 +"), "{history}");
    assert!(history.contains("PASSWORD '***'"), "{history}");
    assert!(!history.contains("very-secret-9"), "{history}");

    // The next session finds the history: Up recalls `\q`, then `\use shopfloor`.
    let mut p = shell(&server, home.path());
    typed(&mut p, "\x1b[A", "\\q");
    typed(&mut p, "\x1b[A", "\\use shopfloor");
    p.send_line("").unwrap();
    p.exp_string("quilldb:shopfloor> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}
