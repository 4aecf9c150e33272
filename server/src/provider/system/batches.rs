//! The rows of the system tables that SHOW statements also answer, built from engine data.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::auth::{ROOT, UserDef};
use crate::catalog::StorageDef;
use crate::engine::{Database, LiveQueryInfo};
use crate::error::Result;
use crate::jobs::record::Job;
use crate::session::Role;

/// A UTC millisecond timestamp field.
pub fn ts(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        nullable,
    )
}

/// UTC millisecond timestamps.
pub fn millis(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
}

/// SHOW STORAGES and system.storages: never a credential.
pub fn storages_batch(db: &Database) -> Result<RecordBatch> {
    let all = db.storages.all();
    let schema = Arc::new(Schema::new(vec![
        Field::new("storage_id", DataType::Utf8, false),
        Field::new("storage_type", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("shared_tables_template", DataType::Utf8, false),
        Field::new("user_tables_template", DataType::Utf8, false),
        ts("created_at", false),
        Field::new("bucket", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("endpoint", DataType::Utf8, true),
        Field::new("credentials", DataType::Utf8, true),
    ]));
    let opt = |f: &dyn Fn(&StorageDef) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            all.iter().map(|x| f(&x.def)).collect::<Vec<_>>(),
        ))
    };
    let s3 = |v: &String, d: &StorageDef| (d.kind == "s3" && !v.is_empty()).then(|| v.clone());
    let s = |f: &dyn Fn(&StorageDef) -> String| -> ArrayRef {
        Arc::new(StringArray::from(
            all.iter().map(|x| f(&x.def)).collect::<Vec<_>>(),
        ))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            s(&|d| d.id.clone()),
            s(&|d| d.kind.clone()),
            s(&|d| d.path.clone()),
            s(&|d| d.shared_template.clone()),
            s(&|d| d.user_template.clone()),
            millis(all.iter().map(|x| Some(x.def.created_at)).collect()),
            opt(&|d| s3(&d.bucket, d)),
            opt(&|d| s3(&d.region, d)),
            opt(&|d| s3(&d.endpoint, d)),
            opt(&|d| db.storages.access.credentials_source(d)),
        ],
    )?)
}

/// system.jobs.
pub fn jobs_batch(jobs: &[Job]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("job_id", DataType::Utf8, false),
        Field::new("job_type", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("namespace", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("message", DataType::Utf8, false),
        ts("created_at", false),
        ts("started_at", true),
        ts("finished_at", true),
    ]));
    let s = |f: &dyn Fn(&Job) -> String| -> ArrayRef {
        Arc::new(StringArray::from(jobs.iter().map(f).collect::<Vec<_>>()))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            s(&|j| j.id.clone()),
            s(&|j| j.kind.to_string()),
            s(&|j| j.status.to_string()),
            s(&|j| j.namespace.clone()),
            s(&|j| j.table_name.clone()),
            Arc::new(StringArray::from(
                jobs.iter().map(|j| j.user_id.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                jobs.iter().map(|j| j.rows as i64).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                jobs.iter().map(|j| j.bytes as i64).collect::<Vec<_>>(),
            )),
            s(&|j| j.message.clone()),
            millis(jobs.iter().map(|j| Some(j.created_at)).collect()),
            millis(jobs.iter().map(|j| j.started_at).collect()),
            millis(jobs.iter().map(|j| j.finished_at).collect()),
        ],
    )?)
}

/// system.users: never a password hash.
pub fn users_batch(db: &Database) -> Result<RecordBatch> {
    let mut users = db.auth.users();
    users.insert(
        0,
        UserDef {
            user_id: ROOT.into(),
            role: Role::System,
            email: None,
            password_hash: String::new(),
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
            deleted_at: None,
            credentials: 0,
        },
    );
    let ts = |name: &str, nullable: bool| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            nullable,
        )
    };
    let millis = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, true),
        ts("created_at", false),
        ts("updated_at", false),
        ts("last_login_at", true),
        ts("deleted_at", true),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                users.iter().map(|u| u.user_id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                users.iter().map(|u| u.role.to_string()),
            )),
            Arc::new(StringArray::from(
                users.iter().map(|u| u.email.clone()).collect::<Vec<_>>(),
            )),
            millis(users.iter().map(|u| Some(u.created_at)).collect()),
            millis(users.iter().map(|u| Some(u.updated_at)).collect()),
            millis(users.iter().map(|u| u.last_login_at).collect()),
            millis(users.iter().map(|u| u.deleted_at).collect()),
        ],
    )?)
}

/// system.live_queries: one row per open subscription.
pub fn live_queries_batch(entries: &[LiveQueryInfo]) -> Result<RecordBatch> {
    let utf8 = |v: Vec<String>| Arc::new(StringArray::from(v)) as ArrayRef;
    let schema = Arc::new(Schema::new(vec![
        Field::new("live_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("query", DataType::Utf8, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("last_seq", DataType::Int64, false),
        Field::new("rows_sent", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            utf8(entries.iter().map(|e| e.id.clone()).collect()),
            utf8(entries.iter().map(|e| e.user.clone()).collect()),
            utf8(entries.iter().map(|e| e.table.clone()).collect()),
            utf8(entries.iter().map(|e| e.query.clone()).collect()),
            Arc::new(
                arrow::array::TimestampMillisecondArray::from(
                    entries.iter().map(|e| e.created_at).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from(
                entries.iter().map(|e| e.last_seq).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                entries
                    .iter()
                    .map(|e| e.rows_sent as i64)
                    .collect::<Vec<_>>(),
            )),
            utf8(entries.iter().map(|e| e.status.clone()).collect()),
        ],
    )?)
}
