//! Bulk ingest (CommandStatementIngest): Arrow batches appended to an existing table, decoded
//! and encoded batch by batch as they arrive, then written in one atomic request.

use std::sync::Arc;

use futures::StreamExt;
use quilldb_flight::{BatchStream, IngestTarget};
use quilldb_storage::hot::WriteMode;
use quilldb_storage::keys::PartitionKey;

use crate::authz::{self, Access};
use crate::catalog::TableDef;
use crate::catalog::types::cast_column;
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::session::{Caller, Role};
use crate::sql::dml::{Planned, default_column, ops_for, validate_rows};

/// Appends every batch of `data` to the target table, all rows or none; answers the row count.
pub async fn ingest(
    db: &Arc<Database>,
    caller: &Caller,
    target: &IngestTarget,
    mut data: BatchStream,
) -> Result<i64> {
    let ns = match &target.schema {
        Some(ns) => ns.clone(),
        None => caller.namespace().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "no namespace for table {}: name the db_schema or run USE ns first",
                target.table
            ))
        })?,
    };
    // Authorization comes before existence: a caller who may not write learns nothing.
    authz::require(caller.role, Role::User, "ingest rows")?;
    let Some(def) = db.catalog.table(&ns, &target.table) else {
        let what = format!(
            "table {ns}.{} does not exist: ingest appends to existing tables only; create it \
             with CREATE TABLE first",
            target.table
        );
        let name = format!("{ns}.{}", target.table);
        return Err(authz::missing_table(
            caller.role,
            Access::Write,
            &name,
            &what,
        ));
    };
    authz::require_table(caller.role, &def, Access::Write)?;
    let partition = Arc::new(PartitionKey::new(def.id, &db.partition_of(&def, caller)?)?);
    let started = std::time::Instant::now();
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let now_us = chrono::Utc::now().timestamp_micros();
    while let Some(batch) = data.next().await {
        let batch = batch.map_err(|s| Error::InvalidArgument(s.message().to_string()))?;
        rows += batch.num_rows();
        if rows > db.limits.max_rows_per_insert {
            return Err(Error::ResourceExhausted(format!(
                "more than {} rows in one ingest call (limits.max_rows_per_insert); nothing \
                 was written",
                db.limits.max_rows_per_insert
            )));
        }
        if batch.num_rows() == 0 {
            continue;
        }
        let columns = table_columns(db, caller, &def, &batch, now_us)?;
        batches.push(validate_rows(&def, columns)?);
    }
    if rows == 0 {
        return Ok(0);
    }
    if direct(db, caller, &def, rows) {
        let received = started.elapsed();
        let (cold, spec) = crate::jobs::run::folder_spec(&db.storages, &def, &partition)?;
        let done =
            quilldb_storage::flush::load_direct(&db.hot, &cold, &spec, batches, &Uninterrupted)
                .await?;
        db.metrics.rows_written.inc_by(done.loaded);
        tracing::info!(
            table = %def.qualified(),
            rows = done.loaded,
            flushed_first = done.flushed,
            segments = done.written.segments,
            receive_ms = received.as_millis() as u64,
            load_ms = (started.elapsed() - received).as_millis() as u64,
            "ingest straight to cold segments"
        );
        return Ok(done.loaded as i64);
    }
    let mut planned = Planned::default();
    for batch in &batches {
        ops_for(
            &def,
            &partition,
            batch,
            |_| WriteMode::InsertNew,
            false,
            &mut planned,
        )?;
    }
    drop(batches);
    let received = started.elapsed();
    let n = crate::sql::apply(db, caller, planned.ops, &planned.keys).await?;
    db.metrics.rows_written.inc_by(n as u64);
    tracing::info!(
        table = %def.qualified(),
        rows = n,
        receive_ms = received.as_millis() as u64,
        commit_ms = (started.elapsed() - received).as_millis() as u64,
        "ingest"
    );
    Ok(n)
}

/// Whether an ingest of `rows` rows goes straight to new cold segments: a large one, into a
/// table without a primary key (nothing to check) that is flushed at all (not STREAM), outside
/// a transaction (its rows must stay pending until COMMIT), with no subscription on the table
/// (subscribers get change batches from hot writes).
fn direct(db: &Database, caller: &Caller, def: &TableDef, rows: usize) -> bool {
    db.limits.direct_ingest_rows > 0
        && rows > db.limits.direct_ingest_rows
        && def.key().is_none()
        && def.table_type != crate::catalog::TableType::Stream
        && caller.transaction().is_none()
        && !db.hot.listened(def.id)
}

/// A direct load runs within its call: nothing cancels it half way.
struct Uninterrupted;

impl quilldb_storage::flush::Steps for Uninterrupted {
    fn cancelled(&self) -> bool {
        false
    }
}

/// The batch's columns in table order, cast to the column types; absent columns take their
/// defaults.
fn table_columns(
    db: &Database,
    caller: &Caller,
    def: &TableDef,
    batch: &arrow::record_batch::RecordBatch,
    now_us: i64,
) -> Result<Vec<arrow::array::ArrayRef>> {
    let schema = batch.schema();
    for f in schema.fields() {
        if def.column(f.name()).is_none() {
            let hint = if f.name().starts_with('_') {
                "system columns cannot be written"
            } else {
                "the table has no such column"
            };
            return Err(Error::InvalidArgument(format!(
                "ingest column {} into {}: {hint}",
                f.name(),
                def.qualified()
            )));
        }
    }
    def.columns
        .iter()
        .enumerate()
        .map(|(i, c)| match schema.index_of(&c.name) {
            Ok(j) => cast_column(batch.column(j), &c.name, c.ty),
            Err(_) => default_column(db, caller, def, i, batch.num_rows(), now_us),
        })
        .collect()
}
