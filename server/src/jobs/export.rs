//! EXPORT USER DATA: one user's rows of every USER table (hot and cold, current versions, as
//! `SELECT *` returns them to that user: the columns then `_seq`) as one Parquet file per table,
//! with a small `manifest.json` of tables, row counts and columns, in one zip under
//! `<data_dir>/exports/<job_id>.zip`, downloadable over HTTP at `/v1/exports/<job_id>`.

use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use quilldb_storage::keys::PartitionKey;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use zip::write::SimpleFileOptions;

use super::record::Done;
use super::{Job, Jobs};
use crate::catalog::TableType;
use crate::engine::read::TableRead;
use crate::error::{Error, Result};

type Zip = zip::ZipWriter<std::fs::File>;

fn zip_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("writing the export: {e}"))
}

/// Writes the zip; returns what the job reports.
pub(super) async fn run(jobs: &Jobs, job: &Job, token: &CancellationToken) -> Result<Done> {
    let Some(user) = job.user_id.clone() else {
        return Err(Error::Internal("an export job without its user".into()));
    };
    std::fs::create_dir_all(&jobs.exports).map_err(zip_err)?;
    let done = jobs.export_file(&job.id);
    let part = done.with_extension("zip.part");
    let file = std::fs::File::create(&part).map_err(zip_err)?;
    let zip = Arc::new(Mutex::new(Some(zip::ZipWriter::new(file))));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut tables = Vec::new();
    let mut total = 0u64;
    let mut defs: Vec<_> = jobs
        .catalog
        .tables(None)
        .into_iter()
        .filter(|d| d.table_type == TableType::User)
        .collect();
    defs.sort_by_key(|d| d.qualified());
    for def in defs {
        if token.is_cancelled() {
            let _ = std::fs::remove_file(&part);
            return Err(Error::Cancelled("the export was cancelled".into()));
        }
        let partition = PartitionKey::new(def.id, user.as_bytes())?;
        let read = TableRead::new(&jobs.hot, &jobs.storages, def.clone(), partition)?;
        let schema = read.schema();
        let name = format!("{}/{}.parquet", def.namespace, def.name);
        zip.lock()
            .as_mut()
            .ok_or_else(|| zip_err("closed"))?
            .start_file(name.as_str(), stored)
            .map_err(zip_err)?;
        let rows = write_table(&zip, read, schema.clone()).await?;
        total += rows;
        tables.push(json!({
            "table": def.qualified(),
            "file": name,
            "rows": rows,
            "schema_version": def.schema_version,
            "columns": schema.fields().iter().map(|f| json!({
                "name": f.name(),
                "type": f.data_type().to_string(),
                "nullable": f.is_nullable(),
            })).collect::<Vec<_>>(),
        }));
    }
    let manifest = json!({
        "user": user,
        "job_id": job.id,
        "created_at": crate::catalog::now_millis(),
        "tables": tables,
    });
    let mut guard = zip.lock();
    let mut writer = guard.take().ok_or_else(|| zip_err("closed"))?;
    writer
        .start_file("manifest.json", stored)
        .map_err(zip_err)?;
    writer
        .write_all(
            serde_json::to_string_pretty(&manifest)
                .map_err(zip_err)?
                .as_bytes(),
        )
        .map_err(zip_err)?;
    let file = writer.finish().map_err(zip_err)?;
    file.sync_all().map_err(zip_err)?;
    drop(guard);
    std::fs::rename(&part, &done).map_err(zip_err)?;
    let bytes = std::fs::metadata(&done).map_err(zip_err)?.len();
    let count = tables.len();
    Ok(Done {
        rows: total,
        bytes,
        message: format!(
            "{total} rows of {count} table(s) for {user}: GET /v1/exports/{}",
            job.id
        ),
        compact_due: false,
    })
}

/// One table's rows as a Parquet file, written into the zip's open entry.
async fn write_table(
    zip: &Arc<Mutex<Option<Zip>>>,
    read: TableRead,
    schema: arrow::datatypes::SchemaRef,
) -> Result<u64> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(zip_err)?))
        .build();
    // The Parquet writer buffers row groups in memory and writes each as it fills.
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer =
        ArrowWriter::try_new(SharedBuf(buffer.clone()), schema, Some(props)).map_err(zip_err)?;
    let writer = Arc::new(Mutex::new(Some(writer)));
    let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (w, n, z, b) = (writer.clone(), rows.clone(), zip.clone(), buffer.clone());
    read.for_each(move |batch| {
        n.fetch_add(
            batch.num_rows() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        w.lock()
            .as_mut()
            .ok_or_else(|| zip_err("closed"))?
            .write(&batch)
            .map_err(zip_err)?;
        drain(&b, &z)?;
        Ok(true)
    })
    .await?;
    let w = writer.lock().take().ok_or_else(|| zip_err("closed"))?;
    w.close().map_err(zip_err)?;
    drain(&buffer, zip)?;
    Ok(rows.load(std::sync::atomic::Ordering::Relaxed))
}

/// Moves what the Parquet writer produced so far into the zip entry.
fn drain(buffer: &Mutex<Vec<u8>>, zip: &Mutex<Option<Zip>>) -> Result<()> {
    let bytes = std::mem::take(&mut *buffer.lock());
    if !bytes.is_empty() {
        zip.lock()
            .as_mut()
            .ok_or_else(|| zip_err("closed"))?
            .write_all(&bytes)
            .map_err(zip_err)?;
    }
    Ok(())
}

/// A byte sink the Parquet writer owns and the export empties.
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
