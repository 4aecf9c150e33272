//! A real S3-compatible server for the tests and benchmarks: `s3s-fs` (buckets are folders of
//! a temp dir) behind hyper on 127.0.0.1, with SigV4 authentication. It runs on its own thread
//! and runtime, so it outlives any one test's runtime, and can be stopped (connections refused),
//! started again on the same port with the same objects, and slowed down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

/// The access key the test server accepts (the server under test gets it through its
/// configuration: see [`S3Server::env`]).
pub const ACCESS_KEY: &str = "quilltest";
/// Its secret key.
pub const SECRET_KEY: &str = "quilltest-secret-key";
/// The bucket every test server has.
pub const BUCKET: &str = "quill";
/// The storage name the tests give the test server.
pub const STORAGE: &str = "s3test";

/// A running (or stopped) S3 server.
pub struct S3Server {
    addr: SocketAddr,
    root: PathBuf,
    _tmp: tempfile::TempDir,
    delay_ms: Arc<AtomicU64>,
    runtime: tokio::runtime::Handle,
    serving: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl S3Server {
    /// Starts a server with an empty bucket [`BUCKET`] on a free port.
    pub fn start() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket folder");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-s3".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                tx.send(rt.handle().clone()).expect("handle");
                rt.block_on(std::future::pending::<()>());
            })
            .expect("thread");
        let runtime = rx.recv().expect("runtime handle");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let s = Self {
            addr,
            root,
            _tmp: tmp,
            delay_ms: Arc::new(AtomicU64::new(0)),
            runtime,
            serving: Mutex::new(None),
        };
        s.serve(listener);
        s
    }

    /// One server for the whole test process (the backend matrix's S3 variants share it:
    /// every test uses its own folder in the bucket through a fresh data dir... and table).
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// Serves on `listener` (a std listener: the callers may be inside another runtime).
    fn serve(&self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = {
            let _in = self.runtime.enter();
            TcpListener::from_std(listener).expect("listener")
        };
        let fs = s3s_fs::FileSystem::new(&self.root).expect("s3s-fs");
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let delay = self.delay_ms.clone();
        let task = self.runtime.spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            // Dropped with the task: every open connection ends with it.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // As a real S3 endpoint answers: no Nagle delay on small responses (without it
                // every ranged GET of a Parquet footer waits for a delayed ACK, 40 ms).
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                let delay = delay.clone();
                let slowed = service_fn(move |req| {
                    let service = service.clone();
                    let ms = delay.load(Ordering::Relaxed);
                    async move {
                        if ms > 0 {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        hyper::service::Service::call(&service, req).await
                    }
                });
                let conn = http
                    .serve_connection(TokioIo::new(socket), slowed)
                    .into_owned();
                connections.spawn(async move {
                    let _ = conn.await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        *self.serving.lock().expect("lock") = Some(task);
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The folder holding the buckets (each bucket a folder, each object a file).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The objects under `prefix` in [`BUCKET`], as paths relative to the bucket.
    pub fn objects(&self, prefix: &str) -> Vec<String> {
        let bucket = self.root.join(BUCKET);
        let mut out = Vec::new();
        let mut stack = vec![bucket.join(prefix)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&bucket) {
                    let rel = rel.to_string_lossy().into_owned();
                    // s3s-fs keeps its own bookkeeping beside the objects.
                    if !rel.contains(".upload") && !rel.ends_with(".json.tmp") {
                        out.push(rel);
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Stops answering: new connections are refused, open ones are cut.
    pub fn stop(&self) {
        if let Some(task) = self.serving.lock().expect("lock").take() {
            task.abort();
            // Its listener and connections close as the task ends.
            while !task.is_finished() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Serves again on the same port, with the same objects.
    pub fn resume(&self) {
        let mut tries = 0;
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(_) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("binding {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Answers every request only after `delay` (zero: at once).
    pub fn slow_down(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// The server configuration that gives the storage [`STORAGE`] this server's keys.
    pub fn env() -> Vec<(String, String)> {
        let key = |k: &str| format!("QUILLDB_STORAGE__S3__{}__{k}", STORAGE.to_uppercase());
        vec![
            (key("ACCESS_KEY_ID"), ACCESS_KEY.into()),
            (key("SECRET_ACCESS_KEY"), SECRET_KEY.into()),
        ]
    }

    /// `CREATE STORAGE` of [`STORAGE`] on this server, its objects under `prefix`.
    pub fn create_storage_sql(&self, prefix: &str) -> String {
        format!(
            "CREATE STORAGE {STORAGE} TYPE 's3' BUCKET '{BUCKET}' REGION 'us-east-1' \
             ENDPOINT '{}' PATH '{prefix}'",
            self.endpoint()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Ok(mut s) = self.serving.lock()
            && let Some(task) = s.take()
        {
            task.abort();
        }
    }
}
