//! Configuration in layers: defaults, a TOML file, `QUILLDB_<SECTION>__<KEY>` environment
//! variables, then command-line flags. docs/configuration.md lists every key.

use std::path::PathBuf;

use clap::Args;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[auth]`
    pub auth: AuthConfig,
    /// `[storage]`
    pub storage: StorageConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[query]`
    pub query: QueryConfig,
    /// `[jobs]`
    pub jobs: JobsConfig,
    /// `[live]`
    pub live: LiveConfig,
}

/// `[live]`: live queries (subscriptions over DoExchange).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveConfig {
    /// Seconds of silence after which a subscription gets a HEARTBEAT.
    pub heartbeat_seconds: u64,
    /// Change rows one subscription may have waiting; beyond, it is closed with `lagged`.
    pub buffer_rows: usize,
    /// Open subscriptions per user.
    pub max_per_user: usize,
    /// Open subscriptions per server.
    pub max_subscriptions: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            heartbeat_seconds: 15,
            buffer_rows: 10_000,
            max_per_user: 100,
            max_subscriptions: 100_000,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Where everything is stored.
    pub data_dir: PathBuf,
    /// Flight SQL listen address (port 0 picks a free port).
    pub flight_addr: String,
    /// HTTP listen address for /health, /ready and /metrics.
    pub http_addr: String,
    /// Node id written into every `_seq` (0 to 1023).
    pub node_id: u16,
    /// Seconds that running calls get to finish at shutdown.
    pub shutdown_grace_seconds: u64,
    /// PEM certificate chain: with `tls_key`, both ports serve TLS only (re-read on SIGHUP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: when set, every client must present a certificate they signed.
    pub tls_client_ca: Option<PathBuf>,
    /// Origins (`https://app.example.com`) whose pages may call the browser API; empty: only
    /// the console served by this server.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            flight_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:9051".into(),
            node_id: 1,
            shutdown_grace_seconds: 30,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// root's password; none lets root in with an empty password from loopback only.
    pub root_password: Option<String>,
    /// Lifetime of bearer tokens.
    pub token_ttl_seconds: u64,
    /// Wrong passwords in a row that lock an account.
    pub max_failed_logins: u32,
    /// Seconds an account stays locked.
    pub lockout_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            root_password: None,
            token_ttl_seconds: 12 * 3600,
            max_failed_logins: 5,
            lockout_seconds: 300,
        }
    }
}

/// Durability of acknowledged writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync before the acknowledgement (group commit).
    Sync,
    /// write before the acknowledgement, fsync at least once a second.
    Async,
}

impl From<Durability> for quilldb_storage::hot::Durability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Sync => Self::Sync,
            Durability::Async => Self::Async,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// `sync` or `async`.
    pub durability: Durability,
    /// RocksDB block cache in MiB.
    pub block_cache_mb: usize,
    /// Seconds a deletion is remembered in cold storage: compaction drops older tombstones.
    pub deletion_retention_seconds: u64,
    /// Compaction merges adjacent segments into runs of at most this many row versions.
    pub compact_target_rows: u64,
    /// A flush that leaves a folder with this many small segments (under a quarter of
    /// `compact_target_rows`), or with a tenth of its cold versions replaced, queues a
    /// compaction; 0 turns that off.
    pub auto_compact_segments: usize,
    /// Folders under which `CREATE STORAGE ... PATH` may place cold files; empty means the data
    /// folder only.
    pub allowed_roots: Vec<PathBuf>,
    /// Credentials of S3 storages, by storage name (`[storage.s3.archive]`, or
    /// `QUILLDB_STORAGE__S3__ARCHIVE__ACCESS_KEY_ID`); a storage without an entry uses
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_REGION`.
    pub s3: std::collections::BTreeMap<String, S3Credentials>,
    /// The storage of tables whose CREATE TABLE names no STORAGE_ID (`local` unless set; a
    /// storage made with CREATE STORAGE must exist before such a table is created).
    pub default_storage: String,
    /// Seconds one request to an object store may take (each try).
    pub object_timeout_seconds: u64,
    /// Tries of a failed object-store request after the first.
    pub object_retries: usize,
    /// An ingest call of more rows than this into a table without a primary key writes new
    /// cold segments directly (after flushing the partition's hot rows) instead of hot rows;
    /// 0 turns that off.
    pub direct_ingest_rows: usize,
}

/// `[storage.s3.<name>]`: never shown (its Debug hides the secrets), never in SQL.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// A session token (temporary credentials).
    pub session_token: Option<String>,
    /// The region, when the storage's REGION does not say.
    pub region: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<hidden>");
        f.debug_struct("S3Credentials")
            .field("access_key_id", &hidden(&self.access_key_id))
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("region", &self.region)
            .finish()
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            block_cache_mb: 256,
            deletion_retention_seconds: 7 * 24 * 3600,
            compact_target_rows: 1 << 20,
            auto_compact_segments: 16,
            allowed_roots: Vec::new(),
            s3: std::collections::BTreeMap::new(),
            default_storage: "local".into(),
            object_timeout_seconds: 30,
            object_retries: 3,
            direct_ingest_rows: 100_000,
        }
    }
}

/// `[jobs]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JobsConfig {
    /// Jobs that run at once.
    pub workers: usize,
    /// Seconds finished jobs stay in system.jobs.
    pub retention_seconds: u64,
    /// Seconds shutdown waits for running jobs.
    pub shutdown_wait_seconds: u64,
    /// Milliseconds between two looks at the flush policies.
    pub policy_check_ms: u64,
    /// Seconds an EXPORT USER DATA file stays downloadable.
    pub export_retention_seconds: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            retention_seconds: 7 * 24 * 3600,
            shutdown_wait_seconds: 60,
            policy_check_ms: 1000,
            export_retention_seconds: 24 * 3600,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Largest SQL text in bytes.
    pub max_sql_bytes: usize,
    /// Largest gRPC message either way, in bytes.
    pub max_message_bytes: usize,
    /// Most rows in one INSERT or ingest call.
    pub max_rows_per_insert: usize,
    /// Queries streaming results at once, server-wide.
    pub max_concurrent_queries: usize,
    /// Seconds one query may run, from GetFlightInfo to the end of its stream.
    pub query_timeout_seconds: u64,
    /// Transactions open at once, server-wide.
    pub max_open_transactions: usize,
    /// Seconds a transaction may stay idle before it is rolled back.
    pub transaction_idle_seconds: u64,
    /// Memory one query may hold, in MiB; beyond it operators spill to disk or the query fails
    /// with RESOURCE_EXHAUSTED. A function call whose result alone would pass it (`repeat`,
    /// `range`, `lpad`, ...) is refused before it allocates.
    pub max_query_memory_mb: usize,
    /// Deepest nesting of operators, brackets, CASE and subqueries in one statement.
    pub max_expression_depth: usize,
    /// Per-role time limits in seconds; a role left out gets `query_timeout_seconds`.
    pub role_query_timeout_seconds: RoleTimeouts,
}

/// `[limits.role_query_timeout_seconds]`: seconds a statement of each role may run. Unset
/// roles take `limits.query_timeout_seconds`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RoleTimeouts {
    /// Callers without credentials.
    pub anonymous: Option<u64>,
    /// Role `user`.
    pub user: Option<u64>,
    /// Role `service`.
    pub service: Option<u64>,
    /// Role `dba`.
    pub dba: Option<u64>,
    /// Role `system`.
    pub system: Option<u64>,
}

impl Default for RoleTimeouts {
    fn default() -> Self {
        Self {
            anonymous: Some(30),
            user: Some(60),
            service: None,
            dba: None,
            system: None,
        }
    }
}

impl LimitsConfig {
    /// The time limit of a statement of `role`.
    pub fn query_timeout(&self, role: crate::session::Role) -> std::time::Duration {
        use crate::session::Role;
        let t = &self.role_query_timeout_seconds;
        let seconds = match role {
            Role::Anonymous => t.anonymous,
            Role::User => t.user,
            Role::Service => t.service,
            Role::Dba => t.dba,
            Role::System => t.system,
        };
        // A role's limit never exceeds the server-wide one.
        let seconds = seconds.map_or(self.query_timeout_seconds, |s| {
            s.min(self.query_timeout_seconds)
        });
        std::time::Duration::from_secs(seconds.max(1))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_sql_bytes: 1 << 20,
            max_message_bytes: 64 << 20,
            max_rows_per_insert: 1_000_000,
            max_concurrent_queries: 64,
            query_timeout_seconds: 300,
            max_open_transactions: 10_000,
            transaction_idle_seconds: 300,
            max_query_memory_mb: 1024,
            max_expression_depth: 1000,
            role_query_timeout_seconds: RoleTimeouts::default(),
        }
    }
}

/// `[query]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryConfig {
    /// DataFusion's target partitions (parallelism of one query).
    pub target_partitions: usize,
    /// Seconds a FlightInfo ticket stays valid.
    pub ticket_ttl_seconds: u64,
    /// The least bytes of segments one partition of a scan reads: a smaller table is read by
    /// fewer partitions (DataFusion's `repartition_file_min_size`).
    pub scan_partition_min_bytes: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            ticket_ttl_seconds: 300,
            scan_partition_min_bytes: 1024 * 1024,
        }
    }
}

/// Flags of `quilldb serve`; each overrides the file and the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "QUILLDB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data folder [default: ./data].
    #[arg(long, env = "QUILLDB_SERVER__DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Flight SQL listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "QUILLDB_SERVER__FLIGHT_ADDR")]
    pub flight_addr: Option<String>,
    /// HTTP listen address [default: 127.0.0.1:9051].
    #[arg(long, env = "QUILLDB_SERVER__HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// PEM certificate chain: with --tls-key, both ports serve TLS (re-read on SIGHUP).
    #[arg(long, env = "QUILLDB_SERVER__TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "QUILLDB_SERVER__TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must be signed by (required when set).
    #[arg(long, env = "QUILLDB_SERVER__TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Node id in every `_seq` [default: 1].
    #[arg(long, env = "QUILLDB_SERVER__NODE_ID")]
    pub node_id: Option<u16>,
    /// Durability of writes [default: sync].
    #[arg(long, value_enum, env = "QUILLDB_STORAGE__DURABILITY")]
    pub durability: Option<Durability>,
    /// Log level [default: info].
    #[arg(long, env = "QUILLDB_LOG__LEVEL")]
    pub log_level: Option<String>,
}

impl Config {
    /// Loads the layers for `quilldb serve`.
    pub fn load(args: &ServeArgs) -> Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &args.config {
            if !path.exists() {
                return Err(Error::InvalidArgument(format!(
                    "configuration file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("QUILLDB_").split("__").ignore(&[
            "config",
            "root_password",
            "password",
        ]));
        let mut config: Config = fig
            .extract()
            .map_err(|e| Error::InvalidArgument(format!("configuration: {e}")))?;
        if let Ok(p) = std::env::var("QUILLDB_ROOT_PASSWORD") {
            config.auth.root_password = Some(p);
        }
        if let Some(v) = &args.data_dir {
            config.server.data_dir = v.clone();
        }
        if let Some(v) = &args.flight_addr {
            config.server.flight_addr = v.clone();
        }
        if let Some(v) = &args.http_addr {
            config.server.http_addr = v.clone();
        }
        for (flag, field) in [
            (&args.tls_cert, &mut config.server.tls_cert),
            (&args.tls_key, &mut config.server.tls_key),
            (&args.tls_client_ca, &mut config.server.tls_client_ca),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
        if let Some(v) = args.node_id {
            config.server.node_id = v;
        }
        if let Some(v) = args.durability {
            config.storage.durability = v;
        }
        if let Some(v) = &args.log_level {
            config.log.level = v.clone();
        }
        if config.server.node_id > quilldb_storage::seq::MAX_NODE_ID {
            return Err(Error::InvalidArgument(format!(
                "server.node_id {} is above {}",
                config.server.node_id,
                quilldb_storage::seq::MAX_NODE_ID
            )));
        }
        Ok(config)
    }
}
