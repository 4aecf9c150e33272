//! The shared fixture of the integration tests and benchmarks: starts the real `quilldb` binary
//! on port 0 in its own temp dir, and talks to it with arrow-flight's `FlightSqlServiceClient`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::{Channel, Endpoint};

pub mod s3;

/// The `quilldb` binary: `QUILLDB_BIN`, or the one cargo built next to the running test.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("QUILLDB_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("quilldb");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p quilldb-server --bin quilldb)",
        bin.display()
    );
    bin
}

/// A running server. Killed when dropped.
pub struct TestServer {
    child: Option<Child>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    /// `grpc://127.0.0.1:PORT`
    pub flight_url: String,
    /// `http://127.0.0.1:PORT`
    pub http_url: String,
}

impl TestServer {
    /// Starts a server in a fresh temp dir.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server in a fresh temp dir with extra environment variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut s = Self {
            child: None,
            dir,
            _tmp: Some(tmp),
            env,
            flight_url: String::new(),
            http_url: String::new(),
        };
        s.launch(&[]);
        s
    }

    /// The key prefix of this server's storage on the shared test S3 server (see
    /// [`Backend::server`]): the name of its temp dir.
    pub fn s3_prefix(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Starts the binary on the same data folder; `args` are added to `serve`.
    pub fn launch(&mut self, args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log file");
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--flight-addr")
            .arg("127.0.0.1:0")
            .arg("--http-addr")
            .arg("127.0.0.1:0")
            .args(args)
            .env_remove("QUILLDB_ROOT_PASSWORD")
            // The keys of the test S3 server, for a storage named s3::STORAGE.
            .envs(s3::S3Server::env())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("start quilldb");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("quilldb ready: ") {
                        let mut flight = None;
                        let mut http = None;
                        for part in rest.split_whitespace() {
                            if let Some(v) = part.strip_prefix("flight=") {
                                flight = Some(v.to_string());
                            } else if let Some(v) = part.strip_prefix("http=") {
                                http = Some(v.to_string());
                            }
                        }
                        self.flight_url = flight.expect("flight url in the ready line");
                        self.http_url = http.expect("http url in the ready line");
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("the server did not get ready; log:\n{}", self.log());
                }
            }
        }
        self.child = Some(child);
    }

    /// A client logged in as root.
    pub async fn client(&self) -> Client {
        let mut c = self.anonymous().await;
        c.inner.handshake("root", "").await.expect("root handshake");
        c
    }

    /// A client logged in as `user`.
    pub async fn client_as(&self, user: &str, password: &str) -> Result<Client, tonic::Status> {
        let mut c = self.anonymous().await;
        c.inner.handshake(user, password).await.map_err(to_status)?;
        Ok(c)
    }

    /// A client that presents `token` as its bearer token.
    pub async fn client_with_token(&self, token: &str) -> Client {
        let mut c = self.anonymous().await;
        c.inner.set_token(token.to_string());
        c
    }

    /// The outcome of a Basic-auth Handshake, with the server's own status on failure.
    pub async fn login(&self, user: &str, password: &str) -> Result<(), tonic::Status> {
        use base64::Engine;
        let mut raw = self.raw_client().await;
        let mut req = tonic::Request::new(futures::stream::iter(vec![
            arrow_flight::HandshakeRequest::default(),
        ]));
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req.metadata_mut().insert(
            "authorization",
            format!("Basic {creds}").parse().expect("header"),
        );
        let resp = raw.handshake(req).await?;
        assert!(
            resp.metadata().get("authorization").is_some(),
            "no Bearer header"
        );
        Ok(())
    }

    /// A new connection to the Flight port.
    pub async fn channel(&self) -> Channel {
        let url = self.flight_url.replace("grpc://", "http://");
        Endpoint::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    /// arrow-flight's plain Flight client on a new connection.
    pub async fn raw_client(
        &self,
    ) -> arrow_flight::flight_service_client::FlightServiceClient<Channel> {
        arrow_flight::flight_service_client::FlightServiceClient::new(self.channel().await)
    }

    /// A client without credentials.
    pub async fn anonymous(&self) -> Client {
        Client {
            inner: FlightSqlServiceClient::new(self.channel().await),
        }
    }

    /// Sends SIGINT and waits for the exit.
    pub fn interrupt(&mut self) -> ExitStatus {
        self.signal_and_wait("INT")
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal_and_wait("TERM")
    }

    /// SIGTERM twice, `gap` apart: the second signal must end the process at once.
    pub fn stop_twice(&mut self, gap: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(&child, "TERM");
        std::thread::sleep(gap);
        signal(&child, "TERM");
        wait(&mut child, Duration::from_secs(60))
    }

    fn signal_and_wait(&mut self, name: &str) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(&child, name);
        wait(&mut child, Duration::from_secs(60))
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "KILL");
            let _ = child.wait();
        }
    }

    /// Sets (or with `None` removes) an environment variable for the next [`Self::launch`].
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Waits for the process to end on its own (a crash test's abort).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        wait(&mut child, limit)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Client {
    /// `STORAGE FLUSH TABLE t`: the job id.
    pub async fn flush_job(&mut self, table: &str) -> String {
        let b = self.rows(&format!("STORAGE FLUSH TABLE {table}")).await;
        column(&b, "job_id").pop().expect("a job id")
    }

    /// Waits until a job has finished; returns its status and message.
    pub async fn wait_job(&mut self, id: &str) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let b = self
                .rows(&format!(
                    "SELECT status, message FROM system.jobs WHERE job_id = '{id}'"
                ))
                .await;
            let status = column(&b, "status").pop().unwrap_or_default();
            if !matches!(status.as_str(), "queued" | "running" | "") {
                let message = column(&b, "message").pop().unwrap_or_default();
                return (status, message);
            }
            assert!(Instant::now() < deadline, "job {id} did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Flushes a table and waits: the job must complete or have had nothing to do.
    pub async fn flush(&mut self, table: &str) {
        let id = self.flush_job(table).await;
        let (status, message) = self.wait_job(&id).await;
        assert!(
            status == "completed" || status == "skipped",
            "flush {id} of {table}: {status}: {message}"
        );
    }

    /// Compacts a table and waits for the job.
    pub async fn compact(&mut self, table: &str) -> (String, String) {
        let b = self.rows(&format!("STORAGE COMPACT TABLE {table}")).await;
        let id = column(&b, "job_id").pop().expect("a job id");
        self.wait_job(&id).await
    }
}

/// Sends a signal by name (TERM, KILL, INT) through the `kill` command: the crate forbids
/// `unsafe`, which a direct libc call would need.
fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A Flight SQL client with helpers.
pub struct Client {
    /// arrow-flight's client.
    pub inner: FlightSqlServiceClient<Channel>,
}

impl Client {
    /// Runs a statement through CommandStatementQuery and collects its batches.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, tonic::Status> {
        let info = self
            .inner
            .execute(sql.to_string(), None)
            .await
            .map_err(to_status)?;
        self.fetch(info).await
    }

    /// GetTables of namespace `ns`, of one table type, with or without the schemas.
    pub async fn tables(
        &mut self,
        ns: &str,
        table_type: &str,
        include_schema: bool,
    ) -> Vec<RecordBatch> {
        let info = self
            .inner
            .get_tables(arrow_flight::sql::CommandGetTables {
                catalog: None,
                db_schema_filter_pattern: Some(ns.into()),
                table_name_filter_pattern: None,
                table_types: vec![table_type.into()],
                include_schema,
            })
            .await
            .expect("GetTables");
        self.fetch(info).await.expect("GetTables' batches")
    }

    /// Collects the batches of every endpoint of a FlightInfo.
    pub async fn fetch(
        &mut self,
        info: arrow_flight::FlightInfo,
    ) -> Result<Vec<RecordBatch>, tonic::Status> {
        let mut out = Vec::new();
        for ep in info.endpoint {
            let ticket = ep.ticket.expect("ticket");
            let stream = self.inner.do_get(ticket).await.map_err(to_status)?;
            let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(to_status)?;
            out.extend(batches);
        }
        Ok(out)
    }

    /// Appends `(id, v)` rows to `ns.table` through CommandStatementIngest (append mode), in
    /// the transaction `txn` if given.
    pub async fn ingest(
        &mut self,
        ns: &str,
        table: &str,
        batches: Vec<RecordBatch>,
        txn: Option<bytes::Bytes>,
    ) -> Result<i64, tonic::Status> {
        let cmd = arrow_flight::sql::CommandStatementIngest {
            table_definition_options: Some(arrow_flight::sql::TableDefinitionOptions {
                if_not_exist: 2,
                if_exists: 2,
            }),
            table: table.into(),
            schema: Some(ns.into()),
            transaction_id: txn,
            ..Default::default()
        };
        self.inner
            .execute_ingest(cmd, futures::stream::iter(batches.into_iter().map(Ok)))
            .await
            .map_err(to_status)
    }

    /// Runs a statement and answers its `rows_affected`.
    pub async fn exec(&mut self, sql: &str) -> Result<i64, tonic::Status> {
        let batches = self.query(sql).await?;
        let b = batches.first().expect("one batch");
        let a = b
            .column_by_name("rows_affected")
            .expect("rows_affected")
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("Int64");
        Ok(a.value(0))
    }

    /// Runs a statement, panicking with its error.
    pub async fn ok(&mut self, sql: &str) -> i64 {
        match self.exec(sql).await {
            Ok(n) => n,
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// Runs a query, panicking with its error.
    pub async fn rows(&mut self, sql: &str) -> Vec<RecordBatch> {
        match self.query(sql).await {
            Ok(b) => b,
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// The error code and message of a statement that must fail.
    pub async fn err(&mut self, sql: &str) -> (tonic::Code, String) {
        match self.query(sql).await {
            Ok(_) => panic!("{sql}: expected an error"),
            Err(e) => (e.code(), e.message().to_string()),
        }
    }
}

/// The Status the server sent, from the client's error.
pub fn to_status(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => tonic::Status::unknown(other.to_string()),
    }
}

/// One unlabelled figure of the server's `/metrics` (0 when absent).
pub fn metric(server: &TestServer, name: &str) -> f64 {
    let (_, text) = http_get(&server.http_url, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A batch of `id BIGINT NOT NULL, v TEXT` rows.
pub fn id_v_batch(ids: &[i64], v: impl Fn(i64) -> String) -> RecordBatch {
    use std::sync::Arc;

    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|i| v(*i)))),
        ],
    )
    .expect("batch")
}

/// Pretty text of batches, for assertions.
pub fn pretty(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .expect("format")
        .to_string()
}

/// Total rows.
pub fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// One column of all batches as strings.
pub fn column(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("column {name}"));
        for i in 0..c.len() {
            out.push(arrow::util::display::array_value_to_string(c, i).expect("display"));
        }
    }
    out
}

/// Checks a path exists (for data folder assertions).
pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Runs a blocking HTTP GET against the server's HTTP port: (status, body).
pub fn http_get(base: &str, path: &str) -> (u16, String) {
    http_get_with(base, path, None)
}

/// [`http_get`] with `Authorization: Bearer <token>`; the body as text (lossy for binaries).
pub fn http_get_with(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let hostport = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).expect("connect http");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let resp = String::from_utf8_lossy(&raw).into_owned();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub use quilldb_flight::client::LiveEvent;

/// An open subscription (the Flight crate's client), read message by message; a message that
/// does not come in time or does not decode fails the test.
pub struct Live(quilldb_flight::client::LiveStream);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Live {
    /// The next message, waiting at most `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Option<LiveEvent> {
        self.0.next_within(limit).await.expect("a valid message")
    }

    /// The next message (10 s at most).
    pub async fn next(&mut self) -> LiveEvent {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("a message within 10 s")
    }

    /// The schema sent first.
    pub async fn schema(&mut self) -> arrow::datatypes::SchemaRef {
        self.0
            .schema_within(Duration::from_secs(10))
            .await
            .expect("a valid message")
            .expect("the schema message first")
    }
}

impl TestServer {
    /// Opens `SUBSCRIBE ...` over DoExchange with `token` (anonymous if `None`), sending
    /// `params` as the parameter batch.
    pub async fn subscribe(
        &self,
        token: Option<&str>,
        sql: &str,
        params: Option<RecordBatch>,
    ) -> Result<Live, tonic::Status> {
        self.subscribe_on(self.channel().await, token, sql, params)
            .await
    }

    /// [`Self::subscribe`] on an existing connection (many subscriptions can share one).
    pub async fn subscribe_on(
        &self,
        channel: Channel,
        token: Option<&str>,
        sql: &str,
        params: Option<RecordBatch>,
    ) -> Result<Live, tonic::Status> {
        quilldb_flight::client::subscribe(channel, token, sql, params)
            .await
            .map(Live)
    }
}

/// Where a scenario's rows are when it reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Never flushed.
    Hot,
    /// Flushed after every batch of writes.
    Cold,
    /// Flushed after every other batch: some versions cold, newer ones hot.
    Mixed,
    /// As `Cold`, the cold files in a bucket of the test S3 server.
    S3Cold,
    /// As `Mixed`, the cold files in a bucket of the test S3 server.
    S3Mixed,
}

impl Backend {
    /// A server for this backend: for the S3 ones, tables that name no storage go to a
    /// storage on the test S3 server (its own prefix in the bucket).
    pub async fn server(self) -> TestServer {
        self.server_with(&[]).await
    }

    /// [`Backend::server`] with extra environment variables.
    pub async fn server_with(self, env: &[(&str, &str)]) -> TestServer {
        if !matches!(self, Self::S3Cold | Self::S3Mixed) {
            return TestServer::start_with(env).await;
        }
        let s3 = s3::S3Server::shared();
        let mut env = env.to_vec();
        env.push(("QUILLDB_STORAGE__DEFAULT_STORAGE", s3::STORAGE));
        let server = TestServer::start_with(&env).await;
        server
            .client()
            .await
            .ok(&s3.create_storage_sql(&server.s3_prefix()))
            .await;
        server
    }

    /// Called after each batch of writes.
    pub async fn settle(self, c: &mut Client, table: &str, step: usize) {
        match self {
            Self::Hot => {}
            Self::Cold | Self::S3Cold => c.flush(table).await,
            Self::Mixed | Self::S3Mixed if step.is_multiple_of(2) => c.flush(table).await,
            Self::Mixed | Self::S3Mixed => {}
        }
    }
}

/// Runs a scenario (an `async fn(Backend)`) against the three backends: flushed data must
/// answer exactly like unflushed data.
#[macro_export]
macro_rules! backend_matrix {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test]
                async fn hot() {
                    super::$name($crate::Backend::Hot).await
                }

                #[tokio::test]
                async fn cold() {
                    super::$name($crate::Backend::Cold).await
                }

                #[tokio::test]
                async fn mixed() {
                    super::$name($crate::Backend::Mixed).await
                }

                #[tokio::test]
                async fn s3_cold() {
                    super::$name($crate::Backend::S3Cold).await
                }

                #[tokio::test]
                async fn s3_mixed() {
                    super::$name($crate::Backend::S3Mixed).await
                }
            }
        )*
    };
}
