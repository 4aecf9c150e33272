//! Seed inputs of each target: valid inputs of every shape, for the fuzzer to start from.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionEndTransactionRequest, Any, CommandGetCatalogs,
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::utils::batches_to_flight_data;
use prost::Message;
use quilldb_storage::cold::{ColumnStats, Manifest, SegmentMeta};

use crate::frame_messages;

/// The seeds of `target`.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "sql_front_end" => SQL.iter().map(|s| s.as_bytes().to_vec()).collect(),
        "flight_commands" => flight_commands(),
        "parameter_batches" => parameter_batches(),
        "row_decoder" => row_decoder(),
        "manifest" => manifests(),
        _ => Vec::new(),
    }
}

const SQL: &[&str] = &[
    "SELECT * FROM app.t WHERE id = 1",
    "SELECT v, count(*) AS n, sum(f) FROM app.t GROUP BY v HAVING count(*) > 0 ORDER BY n DESC LIMIT 10",
    "SELECT a.id, b.body FROM app.t a LEFT JOIN app.notes b ON a.id = b.id WHERE a.v LIKE 'o%'",
    "WITH x AS (SELECT id FROM app.t) SELECT * FROM x WHERE id IN (SELECT id FROM app.pub)",
    "SELECT CAST(at AS TIMESTAMP(9)), date_bin(interval '60 second', at, timestamp '1970-01-01T00:00:00Z') FROM app.t",
    "SELECT * FROM app.v UNION ALL SELECT id, name FROM app.pub",
    "SELECT row_number() OVER (PARTITION BY v ORDER BY id) FROM app.t",
    "SELECT * FROM system.tables",
    "SELECT * FROM information_schema.columns WHERE table_name = 't'",
    "SELECT $1 + $2, $3 || 'x'",
    "EXPLAIN SELECT * FROM app.t WHERE n BETWEEN 1 AND 5",
    "INSERT INTO app.t (id, v) VALUES (3, 'three'), ($1, $2)",
    "INSERT INTO app.t (id, v) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET v = excluded.v",
    "UPDATE app.t SET v = upper(v), n = n + 1 WHERE id = $1",
    "DELETE FROM app.notes WHERE id > 10",
    "CREATE TABLE app.x (id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(), s TEXT NOT NULL DEFAULT 'a')",
    "CREATE OR REPLACE VIEW app.w (a, b) AS SELECT id, v FROM app.t",
    "DROP VIEW IF EXISTS app.w",
    "ALTER TABLE app.t ADD COLUMN extra INT DEFAULT 5",
    "SUBSCRIBE TO app.t WHERE n > 1 OPTIONS (last_rows = 5)",
    "EXECUTE AS USER 'alice' (SELECT * FROM app.notes)",
    "BEGIN",
    "SHOW TABLES IN app",
    "DESCRIBE TABLE app.t",
    "STORAGE FLUSH TABLE app.t",
    "CREATE USER bob WITH PASSWORD 'password-bob' ROLE user",
    "SELECT ((((((1))))))",
    "SELECT CASE WHEN n = 1 THEN 'a' ELSE 'b' END, coalesce(d, 0.0), regexp_replace(v, 'o', '0') FROM app.t",
];

fn any(message: impl ProstMessageExt) -> Vec<u8> {
    message.as_any().encode_to_vec()
}

fn flight_commands() -> Vec<Vec<u8>> {
    let query = |q: &str| CommandStatementQuery {
        query: q.into(),
        transaction_id: None,
    };
    let mut out = vec![
        any(query("SELECT * FROM app.t")),
        any(query("SELECT $1 AS p")),
        any(CommandStatementUpdate {
            query: "DELETE FROM app.t".into(),
            transaction_id: None,
        }),
        any(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("app".into()),
            table_name_filter_pattern: Some("%".into()),
            table_types: vec!["VIEW".into()],
            include_schema: true,
        }),
        any(CommandGetDbSchemas {
            catalog: Some("quill".into()),
            db_schema_filter_pattern: None,
        }),
        any(CommandGetCatalogs {}),
        any(CommandGetSqlInfo { info: vec![] }),
        any(CommandGetSqlInfo {
            info: vec![0, 508, 9999],
        }),
        any(CommandGetXdbcTypeInfo {
            data_type: Some(12),
        }),
        any(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("app".into()),
            table: "t".into(),
        }),
        any(CommandPreparedStatementQuery {
            prepared_statement_handle: vec![1, 2, 3].into(),
        }),
        any(CommandStatementIngest {
            table: "t".into(),
            schema: Some("app".into()),
            ..Default::default()
        }),
        any(TicketStatementQuery {
            statement_handle: vec![0; 16].into(),
        }),
        ActionCreatePreparedStatementRequest {
            query: "SELECT * FROM app.t WHERE id = $1".into(),
            transaction_id: None,
        }
        .encode_to_vec(),
        ActionClosePreparedStatementRequest {
            prepared_statement_handle: vec![9; 8].into(),
        }
        .encode_to_vec(),
        ActionBeginTransactionRequest {}.encode_to_vec(),
        ActionEndTransactionRequest {
            transaction_id: vec![1; 16].into(),
            action: 2,
        }
        .encode_to_vec(),
        Any {
            type_url: "type.googleapis.com/arrow.flight.protocol.sql.Unknown".into(),
            value: vec![1, 2, 3].into(),
        }
        .encode_to_vec(),
    ];
    // The first byte picks the caller and the action.
    for (i, body) in out.iter_mut().enumerate() {
        body.insert(0, i as u8);
    }
    out
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    match RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays) {
        Ok(b) => b,
        Err(e) => panic!("a seed batch: {e}"),
    }
}

fn parameter_batches() -> Vec<Vec<u8>> {
    let int64 = |v: Vec<i64>| Arc::new(Int64Array::from(v)) as ArrayRef;
    let text = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
    let Ok(decimal) = Decimal128Array::from(vec![125]).with_precision_and_scale(10, 2) else {
        return Vec::new();
    };
    let by_prepared: Vec<RecordBatch> = vec![
        batch(vec![("$1", int64(vec![1]))]),
        batch(vec![
            ("$1", text(vec!["one"])),
            ("$2", Arc::new(Int32Array::from(vec![0])) as ArrayRef),
        ]),
        batch(vec![("$1", int64(vec![41, 42]))]),
        batch(vec![
            (
                "$1",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_767_225_600_000_000])
                        .with_timezone("UTC"),
                ) as ArrayRef,
            ),
            ("$2", Arc::new(decimal) as ArrayRef),
            ("$3", Arc::new(BooleanArray::from(vec![true])) as ArrayRef),
            ("$4", Arc::new(Float64Array::from(vec![0.5])) as ArrayRef),
        ]),
        batch(vec![("$1", int64(vec![1])), ("$2", int64(vec![2]))]),
    ];
    by_prepared
        .into_iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let messages = batches_to_flight_data(&b.schema(), vec![b]).ok()?;
            let mut out = vec![i as u8];
            out.extend(frame_messages(&messages));
            Some(out)
        })
        .collect()
}

fn row_decoder() -> Vec<Vec<u8>> {
    // Columns: (id 1, Int64), (id 2, Utf8), (id 5, Float64), (id 7, Boolean).
    let b = batch(vec![
        (
            "a",
            Arc::new(Int64Array::from(vec![Some(1), None, Some(-7)])) as ArrayRef,
        ),
        (
            "b",
            Arc::new(StringArray::from(vec![Some("x"), Some(""), None])) as ArrayRef,
        ),
        (
            "c",
            Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN), None])) as ArrayRef,
        ),
        (
            "d",
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])) as ArrayRef,
        ),
    ]);
    let type_index = |dt: &DataType| {
        crate::ROW_TYPES
            .iter()
            .position(|t| t == dt)
            .unwrap_or_default() as u8
    };
    let ids = [1u32, 2, 5, 7];
    let Ok(rows) = quilldb_storage::codec::encode_rows(&b, &ids) else {
        return Vec::new();
    };
    let mut out = vec![3u8];
    for (id, f) in ids.iter().zip(b.schema().fields()) {
        out.push(*id as u8);
        out.push(type_index(f.data_type()));
    }
    for row in rows {
        out.push(row.len().min(255) as u8);
        out.extend_from_slice(&row[..row.len().min(255)]);
    }
    vec![out]
}

fn manifests() -> Vec<Vec<u8>> {
    let mut m = Manifest::empty(
        "app.t".into(),
        7,
        Some("alice".into()),
        2,
        1_767_225_600_000,
    );
    let empty = m.to_json();
    let mut stats = BTreeMap::new();
    stats.insert(
        "v".to_string(),
        ColumnStats {
            id: 2,
            min: "a".into(),
            max: "z".into(),
            nulls: 1,
        },
    );
    for (i, (min, max)) in [(1u64, 10u64), (11, 40)].into_iter().enumerate() {
        m.segments.push(SegmentMeta {
            path: Manifest::batch_file(i as u64),
            min_seq: min,
            max_seq: max,
            rows: max - min + 1,
            deleted: 1,
            bytes: 4096,
            schema_version: 2,
            created_at: 1_767_225_600_000,
            stats: stats.clone(),
        });
    }
    m.next_batch = 2;
    vec![empty, m.to_json()]
}
