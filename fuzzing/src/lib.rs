//! QuillDB's fuzz targets. Each takes arbitrary bytes and must return without panicking,
//! hanging or allocating without bound, whatever the bytes; a wrong input is a clean error.
//! `fuzz/` drives them with libFuzzer (`cargo fuzz run <target>`); the test suite replays their
//! corpora and regression inputs, and mutates the corpora for a few seconds (`tests/`).

use std::sync::{Arc, OnceLock};

/// Seed inputs.
pub mod seeds;

use arrow::datatypes::{DataType, TimeUnit};
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{Action, FlightData, FlightDescriptor, Ticket};
use futures::StreamExt;
use quilldb_flight::{CallAuth, Outcome, QuillFlightService, QuillFlightSql, ServiceOptions};
use quilldb_server::backend::QuillBackend;
use quilldb_server::config::Config;
use quilldb_server::engine::Database;
use quilldb_server::live::LiveHub;
use quilldb_server::metrics::Metrics;
use quilldb_server::session::{Caller, Role, Session};
use quilldb_server::sql::authorize;
use quilldb_server::sql::parser::{self, Command};
use quilldb_server::sql::prepare::{self, PreparedStatement};
use quilldb_storage::codec::RowDecoder;
use quilldb_storage::cold::Manifest;

/// A fuzz target: arbitrary bytes in, nothing out; it must not panic.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (the names of `fuzz/fuzz_targets/*.rs` and of the corpora).
pub const TARGETS: &[(&str, Target)] = &[
    ("sql_front_end", sql_front_end),
    ("flight_commands", flight_commands),
    ("parameter_batches", parameter_batches),
    ("row_decoder", row_decoder),
    ("manifest", manifest),
];

/// A database in a temporary folder, with a few tables, a view and prepared queries, made once
/// per process; the targets plan and bind against it and never write to it.
struct Harness {
    runtime: tokio::runtime::Runtime,
    db: Arc<Database>,
    flight: QuillFlightService<QuillBackend>,
    /// root, a user, and an anonymous caller.
    callers: Vec<Caller>,
    /// Prepared queries that parameter batches are bound to.
    prepared: Vec<PreparedStatement>,
    _dir: tempfile::TempDir,
}

const SETUP: &[&str] = &[
    "CREATE NAMESPACE app",
    "CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT, n INT, f DOUBLE, at TIMESTAMPTZ, d DECIMAL(10,2), ok BOOLEAN)",
    "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT)",
    "CREATE STREAM TABLE app.events (id BIGINT PRIMARY KEY, kind TEXT) WITH (TTL_SECONDS = 60)",
    "CREATE TABLE app.pub (id INT PRIMARY KEY, name TEXT) WITH (ACCESS_LEVEL = 'PUBLIC')",
    "INSERT INTO app.t VALUES (1, 'one', 1, 1.5, '2026-01-01T00:00:00Z', 1.25, true), (2, 'two', 2, 2.5, NULL, NULL, false)",
    "CREATE VIEW app.v AS SELECT id, v FROM app.t WHERE n > 0",
];

const PREPARED: &[&str] = &[
    "SELECT * FROM app.t WHERE id = $1",
    "SELECT v, n FROM app.t WHERE v = $1 AND n > $2",
    "SELECT $1 + 1 AS x",
    "SELECT * FROM app.t WHERE at < $1 AND d > $2 AND ok = $3 AND f <> $4",
    "SELECT body FROM app.notes WHERE id IN ($1, $2)",
];

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| match Harness::open() {
        Ok(h) => h,
        Err(e) => panic!("the fuzz harness did not start: {e}"),
    })
}

impl Harness {
    fn open() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = Config::default();
        config.server.data_dir = dir.path().join("data");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let _guard = runtime.enter();
        let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
        let db = Database::open(&config, metrics.clone()).map_err(|e| e.to_string())?;
        let live = Arc::new(LiveHub::new(
            config.live.clone(),
            config.storage.deletion_retention_seconds,
            metrics,
        ));
        db.attach_live(live.clone(), live.clone());
        let caller = |user: &str, role| Caller::new(Arc::new(Session::new(user, role)));
        let callers = vec![
            caller("root", Role::System),
            caller("alice", Role::User),
            caller("anonymous", Role::Anonymous),
        ];
        runtime.block_on(async {
            for sql in SETUP {
                quilldb_server::sql::run(&db, &callers[0], sql, None)
                    .await
                    .map_err(|e| format!("{sql}: {e}"))?;
            }
            Ok::<_, String>(())
        })?;
        let prepared = runtime.block_on(async {
            let mut out = Vec::new();
            for sql in PREPARED {
                let (_, p) = prepare::prepare(&db, &callers[0], sql)
                    .await
                    .map_err(|e| format!("{sql}: {e}"))?;
                out.push(p);
            }
            Ok::<_, String>(out)
        })?;
        let backend = Arc::new(QuillBackend::new(db.clone(), live));
        let service = QuillFlightSql::new(backend, ServiceOptions::default())
            .map_err(|e| e.message().to_string())?;
        Ok(Self {
            flight: QuillFlightService::new(std::sync::Arc::new(service)),
            runtime,
            db,
            callers,
            prepared,
            _dir: dir,
        })
    }

    fn request<T>(&self, message: T, caller: usize) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.extensions_mut().insert(CallAuth {
            caller: self.callers[caller % self.callers.len()].clone(),
            issued_token: None,
        });
        req
    }
}

/// The SQL front end: any text is parsed, authorized for root, a user and an anonymous caller,
/// and planned (prepared) for those it is allowed to; nothing is executed.
pub fn sql_front_end(data: &[u8]) {
    let h = harness();
    let sql = String::from_utf8_lossy(data);
    let Ok(cmd) = parser::parse(&sql, &h.db.limits.text) else {
        return;
    };
    for caller in &h.callers {
        if authorize::authorize(caller, &cmd).is_err() {
            continue;
        }
        // Preparing plans a query and types a DML statement's parameters: no writes.
        if matches!(
            cmd,
            Command::Query(_) | Command::Insert(_) | Command::Update(_) | Command::Delete(_)
        ) {
            let _ = h.runtime.block_on(prepare::prepare(&h.db, caller, &sql));
        }
    }
}

/// The Flight SQL commands and actions: the bytes as a GetFlightInfo command (an `Any`), a
/// DoGet ticket, and the body of each action, as the service receives them.
pub fn flight_commands(data: &[u8]) {
    const ACTIONS: &[&str] = &[
        "CreatePreparedStatement",
        "ClosePreparedStatement",
        "BeginTransaction",
        "EndTransaction",
        "CancelQuery",
        "CancelFlightInfo",
        "SetSessionOptions",
        "GetSessionOptions",
        "CloseSession",
        "RenewFlightEndpoint",
        "CreatePreparedSubstraitPlan",
        "BeginSavepoint",
        "EndSavepoint",
    ];
    let h = harness();
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let caller = usize::from(selector >> 4);
    let bytes = bytes::Bytes::copy_from_slice(body);
    h.runtime.block_on(async {
        let f = &h.flight;
        let _ = f
            .get_flight_info(h.request(FlightDescriptor::new_cmd(bytes.clone()), caller))
            .await;
        let _ = f
            .get_schema(h.request(FlightDescriptor::new_cmd(bytes.clone()), caller))
            .await;
        if let Ok(stream) = f
            .do_get(h.request(Ticket::new(bytes.clone()), caller))
            .await
        {
            // A ticket that names a query runs it: read at most a few batches.
            let _ = stream.into_inner().take(4).collect::<Vec<_>>().await;
        }
        let action = Action::new(
            ACTIONS[usize::from(selector) % ACTIONS.len()],
            bytes.clone(),
        );
        if let Ok(stream) = f.do_action(h.request(action, caller)).await {
            let _ = stream.into_inner().take(4).collect::<Vec<_>>().await;
        }
    });
}

/// Parameter batches as DoPut carries them: the bytes are cut into Flight messages (a
/// 2-byte header length, the header, a 4-byte body length, the body, again and again), decoded
/// by the server's own path, and bound to a prepared query.
pub fn parameter_batches(data: &[u8]) {
    let h = harness();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let messages = flight_messages(rest);
    h.runtime.block_on(async {
        let stream = futures::stream::iter(messages.into_iter().map(Ok));
        let Ok(Some(batch)) = quilldb_flight::service::decode_parameters(stream).await else {
            return;
        };
        let prepared = &h.prepared[usize::from(selector) % h.prepared.len()];
        // Binding plans; a point query reads one row. Neither writes.
        let outcome = prepare::run(&h.db, &h.callers[0], prepared, Some(batch)).await;
        if let Ok(Outcome::Query { plan, .. }) = outcome {
            let _ = h.db.planner.collect(&plan).await;
        }
    });
}

/// Cuts `data` into Flight messages: `[u16 header length][header][u32 body length][body]`...
pub fn flight_messages(mut data: &[u8]) -> Vec<FlightData> {
    let mut out = Vec::new();
    let take = |data: &mut &[u8], n: usize| -> Vec<u8> {
        let n = n.min(data.len());
        let (head, tail) = data.split_at(n);
        *data = tail;
        head.to_vec()
    };
    while data.len() >= 2 && out.len() < 64 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        data = &data[2..];
        let header = take(&mut data, len);
        let len = match data {
            [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
            _ => 0,
        };
        data = data.get(4..).unwrap_or_default();
        let body = take(&mut data, len);
        out.push(FlightData {
            data_header: header.into(),
            data_body: body.into(),
            ..Default::default()
        });
    }
    out
}

/// The inverse of [`flight_messages`], for seeds.
pub fn frame_messages(messages: &[FlightData]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        let header_len = u16::try_from(m.data_header.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&header_len.to_le_bytes());
        out.extend_from_slice(&m.data_header[..usize::from(header_len)]);
        let body_len = u32::try_from(m.data_body.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&body_len.to_le_bytes());
        out.extend_from_slice(&m.data_body);
    }
    out
}

/// The types the row codec stores.
const ROW_TYPES: &[DataType] = &[
    DataType::Boolean,
    DataType::Int8,
    DataType::Int16,
    DataType::Int32,
    DataType::Int64,
    DataType::Float32,
    DataType::Float64,
    DataType::Decimal128(10, 2),
    DataType::Utf8,
    DataType::LargeUtf8,
    DataType::Binary,
    DataType::LargeBinary,
    DataType::Date32,
    DataType::Time64(TimeUnit::Microsecond),
    DataType::Timestamp(TimeUnit::Microsecond, None),
];

/// The row codec's decoder on arbitrary bytes: the first byte picks how many columns, the next
/// ones their ids and types; the rest are rows, each after a one-byte length.
pub fn row_decoder(data: &[u8]) {
    let Some((&n, mut rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8) + 1;
    if rest.len() < 2 * n {
        return;
    }
    let columns: Vec<(u32, DataType)> = rest[..2 * n]
        .chunks(2)
        .map(|c| {
            (
                u32::from(c[0]),
                ROW_TYPES[usize::from(c[1]) % ROW_TYPES.len()].clone(),
            )
        })
        .collect();
    rest = &rest[2 * n..];
    let Ok(mut decoder) = RowDecoder::new(&columns, 4) else {
        return;
    };
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (row, tail) = tail.split_at(len);
        if decoder.push(row).is_err() {
            break;
        }
        rest = tail;
    }
    let _ = decoder.finish();
}

/// Manifest parsing: a manifest that parses writes out and parses back to itself, and its
/// accessors answer.
pub fn manifest(data: &[u8]) {
    let Ok(m) = Manifest::from_json(data) else {
        return;
    };
    let again = Manifest::from_json(&m.to_json());
    assert!(
        again.is_ok(),
        "a written manifest does not parse: {again:?}"
    );
    let _ = m.max_seq();
    let _ = m.rows();
    let _ = m.segment_of(m.max_seq());
    let _ = m.segment_of(0);
}
