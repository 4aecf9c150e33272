//! Storage statements: STORAGE FLUSH / COMPACT, SHOW MANIFEST, KILL JOB, CREATE / DROP / SHOW
//! STORAGE; and the rows of system.jobs and system.storages.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::ObjectName;
use quilldb_storage::keys::PartitionKey;

use crate::authz::Access;
use crate::catalog::{StorageDef, TableType, now_millis};
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::jobs::JobKind;
use crate::provider::system::batches::{millis, ts};
use crate::session::Caller;

/// The one-column `job_id` answer of statements that start jobs.
pub(crate) fn job_ids(ids: Vec<String>) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "job_id",
        DataType::Utf8,
        false,
    )]));
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(ids))],
    )?)
}

/// STORAGE FLUSH TABLE: one row with the job id.
pub async fn flush_table(
    db: &Arc<Database>,
    caller: &Caller,
    name: &ObjectName,
) -> Result<RecordBatch> {
    let def = db.table_for(caller, name, Access::Read)?;
    if def.table_type == TableType::Stream {
        return Err(Error::InvalidArgument(format!(
            "{} is a STREAM table: stream tables are never flushed",
            def.qualified()
        )));
    }
    let id = db.jobs.submit(JobKind::Flush, &def).await?;
    job_ids(vec![id])
}

/// STORAGE FLUSH ALL [IN ns]: one flush job per table with unflushed rows.
pub async fn flush_all(db: &Arc<Database>, ns: Option<&str>) -> Result<RecordBatch> {
    if let Some(ns) = ns
        && !db.catalog.has_namespace(ns)
    {
        return Err(Error::NotFound(format!("namespace {ns} does not exist")));
    }
    let mut ids = Vec::new();
    for def in db.catalog.tables(ns) {
        if def.table_type == TableType::Stream || db.hot.partitions(def.id)?.is_empty() {
            continue;
        }
        ids.push(db.jobs.submit(JobKind::Flush, &def).await?);
    }
    job_ids(ids)
}

/// STORAGE COMPACT TABLE: one row with the job id.
pub async fn compact_table(
    db: &Arc<Database>,
    caller: &Caller,
    name: &ObjectName,
) -> Result<RecordBatch> {
    let def = db.table_for(caller, name, Access::Read)?;
    if def.table_type == TableType::Stream {
        return Err(Error::InvalidArgument(format!(
            "{} is a STREAM table: it has no cold segments to compact",
            def.qualified()
        )));
    }
    let id = db.jobs.submit(JobKind::Compact, &def).await?;
    job_ids(vec![id])
}

/// KILL JOB.
pub async fn kill_job(db: &Arc<Database>, id: &str) -> Result<()> {
    db.jobs.kill(id).await?;
    Ok(())
}

/// SHOW MANIFEST: one row per cold segment of the caller's folder of the table.
pub async fn show_manifest(
    db: &Arc<Database>,
    caller: &Caller,
    name: &ObjectName,
) -> Result<RecordBatch> {
    let def = db.table_for(caller, name, Access::Read)?;
    let partition = PartitionKey::new(def.id, &db.partition_of(&def, caller)?)?;
    let m = db.manifest(&def, &partition).await?;
    let segs = m.as_ref().map(|m| m.segments.clone()).unwrap_or_default();
    let version = m.as_ref().map_or(0, |m| m.version as i64);
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("min_seq", DataType::Int64, false),
        Field::new("max_seq", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("deleted", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("schema_version", DataType::Int64, false),
        ts("created_at", false),
        Field::new("manifest_version", DataType::Int64, false),
    ]));
    let col = |f: &dyn Fn(&quilldb_storage::cold::SegmentMeta) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from(segs.iter().map(f).collect::<Vec<_>>()))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                segs.iter().map(|s| s.path.as_str()),
            )),
            col(&|s| s.min_seq as i64),
            col(&|s| s.max_seq as i64),
            col(&|s| s.rows as i64),
            col(&|s| s.deleted as i64),
            col(&|s| s.bytes as i64),
            col(&|s| i64::from(s.schema_version)),
            millis(segs.iter().map(|s| Some(s.created_at * 1000)).collect()),
            Arc::new(Int64Array::from(vec![version; segs.len()])),
        ],
    )?)
}

/// CREATE STORAGE.
pub async fn create_storage(
    db: &Arc<Database>,
    name: &str,
    if_not_exists: bool,
    kind: &str,
    options: &[(String, String)],
) -> Result<()> {
    crate::catalog::names::validate(crate::catalog::names::NameKind::Storage, name)?;
    let mut def = StorageDef {
        id: name.to_string(),
        kind: kind.to_string(),
        shared_template: quilldb_storage::cold::SHARED_DEFAULT.into(),
        user_template: quilldb_storage::cold::USER_DEFAULT.into(),
        created_at: now_millis(),
        ..StorageDef::default()
    };
    let allowed: &[&str] = match kind {
        "filesystem" => &["PATH", "SHARED_TABLES_TEMPLATE", "USER_TABLES_TEMPLATE"],
        "s3" => &[
            "BUCKET",
            "REGION",
            "ENDPOINT",
            "PATH",
            "SHARED_TABLES_TEMPLATE",
            "USER_TABLES_TEMPLATE",
        ],
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown storage TYPE '{other}': expected 'filesystem' or 's3'"
            )));
        }
    };
    for (key, value) in options {
        match key.as_str() {
            "PATH" => def.path = value.clone(),
            "SHARED_TABLES_TEMPLATE" => def.shared_template = value.clone(),
            "USER_TABLES_TEMPLATE" => def.user_template = value.clone(),
            "BUCKET" if kind == "s3" => def.bucket = value.clone(),
            "REGION" if kind == "s3" => def.region = value.clone(),
            "ENDPOINT" if kind == "s3" => def.endpoint = value.clone(),
            k if k.contains("KEY") || k.contains("SECRET") || k.contains("TOKEN") => {
                return Err(Error::InvalidArgument(format!(
                    "credentials are never written in SQL (anyone who can list statements would \
                     read them): put them under [storage.s3.{name}] in the configuration, or \
                     in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                )));
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {other} for a {kind} storage: expected {}",
                    allowed.join(", ")
                )));
            }
        }
    }
    if kind == "s3" {
        if def.bucket.is_empty() {
            return Err(Error::InvalidArgument(
                "an s3 storage needs BUCKET 'name'".into(),
            ));
        }
        let is_url = ["http://", "https://"]
            .iter()
            .any(|p| def.endpoint.starts_with(p));
        if !def.endpoint.is_empty() && !is_url {
            return Err(Error::InvalidArgument(format!(
                "ENDPOINT '{}' is not a URL: write e.g. 'http://127.0.0.1:9000'",
                def.endpoint
            )));
        }
        if def.path.split('/').any(|p| p == ".." || p == ".") {
            return Err(Error::InvalidArgument(
                "an s3 storage's PATH is a key prefix without '.' or '..'".into(),
            ));
        }
    } else {
        if def.path.is_empty() {
            return Err(Error::InvalidArgument(
                "a filesystem storage needs PATH '/folder'".into(),
            ));
        }
        db.storages.check_path(&def.path)?;
    }
    let _ddl = db.catalog.ddl_lock().await;
    db.storages.create(def, if_not_exists).await
}

/// DROP STORAGE: refused while a table uses it.
pub async fn drop_storage(db: &Arc<Database>, name: &str, if_exists: bool) -> Result<()> {
    let _ddl = db.catalog.ddl_lock().await;
    let in_use = db
        .catalog
        .tables(None)
        .into_iter()
        .find(|t| t.storage_id == name)
        .map(|t| t.qualified());
    db.storages.remove(name, if_exists, in_use).await
}
