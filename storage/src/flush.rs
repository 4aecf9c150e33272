//! Flush and compaction of one folder (a SHARED table, or one user's part of a USER table).
//!
//! ```text
//! flush:   BeginFlush (writer: horizon H = newest committed _seq; from now on replacing a
//!          version <= H marks it deleted in the dv family)
//!      ->  versions in (cold max, H], tombstones included, newest per key (the hot store keeps
//!          only the newest) -> batch-<n>.parquet
//!      ->  manifest.json (one put)
//!      ->  Trim (writer: delete hot versions <= segment max)
//! ```
//! A crash between any two steps loses nothing: until the manifest names the file it is not
//! read, and once it does, reads skip hot versions at or below the manifest's newest `_seq`, so
//! a version present in both places is read once. The next flush trims them first.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::Field;
use object_store::path::Path;

use crate::cold::{ColdStore, Manifest, SegmentMeta, SegmentRead, SegmentWriter};
use crate::hot::{HotStore, Maintenance, ScanSpec, WriteRequest};
use crate::keys::PartitionKey;
use crate::{Error, Result};

/// Most row versions per segment: a larger flush writes several segments, one after another.
pub const MAX_SEGMENT_ROWS: usize = 1 << 20;

/// One folder and what its rows look like now.
#[derive(Debug, Clone)]
pub struct FolderSpec {
    /// The hot partition.
    pub partition: Arc<PartitionKey>,
    /// The cold folder.
    pub folder: Path,
    /// Current columns: stable id and field.
    pub columns: Vec<(u32, Field)>,
    /// Index of the primary-key column in `columns` (`None`: a table without one).
    pub pk_column: Option<usize>,
    /// `namespace.table`, for the manifest.
    pub table: String,
    /// The table's internal id.
    pub table_id: u64,
    /// The owner of a USER table folder.
    pub user_id: Option<String>,
    /// The table's schema version.
    pub schema_version: u32,
}

/// What a flush or compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderOutcome {
    /// Row versions written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Segments written.
    pub segments: u64,
    /// Segments removed (compaction).
    pub removed: u64,
}

/// Hooks a job gives a flush: cancellation between steps and (for crash tests) named points.
pub trait Steps: Send + Sync {
    /// Whether the job was cancelled; checked before each commit.
    fn cancelled(&self) -> bool;
    /// Called after each named step.
    fn reached(&self, _step: &'static str) {}
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Flushes one folder. Returns `None` when there was nothing to flush.
pub async fn flush(
    hot: &Arc<HotStore>,
    cold: &ColdStore,
    spec: &FolderSpec,
    steps: &dyn Steps,
) -> Result<Option<FolderOutcome>> {
    let _guard = cold.folder_lock(&spec.folder).await;
    let (manifest, cold_max) = settled_manifest(hot, cold, spec).await?;
    let horizon = hot
        .write(WriteRequest {
            maintenance: vec![Maintenance::BeginFlush(spec.partition.clone())],
            ..Default::default()
        })
        .await?
        .last_seq;
    steps.reached("flush:begin");
    if !has_versions(hot, &spec.partition, cold_max, horizon).await? {
        // Nothing to move; the trim (a no-op range) settles the partition's unflushed count
        // so that its flush policy does not fire again.
        trim(hot, &spec.partition, cold_max).await?;
        return Ok(None);
    }
    let (_, out) = move_hot(hot, cold, spec, steps, manifest, cold_max, horizon).await?;
    Ok(Some(out))
}

/// The folder's manifest (its own table's) and its newest `_seq`, with the hot copies a flush
/// that stopped after its manifest left behind dropped. Called under the folder lock.
async fn settled_manifest(
    hot: &Arc<HotStore>,
    cold: &ColdStore,
    spec: &FolderSpec,
) -> Result<(Option<Arc<Manifest>>, u64)> {
    let manifest = own_manifest(cold, spec).await?;
    let cold_max = manifest.as_ref().map_or(0, |m| m.max_seq());
    if cold_max > 0 && has_versions(hot, &spec.partition, 0, cold_max).await? {
        trim(hot, &spec.partition, cold_max).await?;
    }
    Ok((manifest, cold_max))
}

/// A copy of the folder's manifest to change, or a new empty one.
fn editable(manifest: Option<Arc<Manifest>>, spec: &FolderSpec) -> Manifest {
    manifest.map(|m| (*m).clone()).unwrap_or_else(|| {
        Manifest::empty(
            spec.table.clone(),
            spec.table_id,
            spec.user_id.clone(),
            spec.schema_version,
            now_secs(),
        )
    })
}

/// Moves the hot versions in `(cold_max, horizon]` into new segments, one manifest commit and
/// one trim per segment; answers the manifest as committed last.
async fn move_hot(
    hot: &Arc<HotStore>,
    cold: &ColdStore,
    spec: &FolderSpec,
    steps: &dyn Steps,
    manifest: Option<Arc<Manifest>>,
    mut cold_max: u64,
    horizon: u64,
) -> Result<(Manifest, FolderOutcome)> {
    let mut out = FolderOutcome::default();
    let mut manifest = editable(manifest, spec);
    while cold_max < horizon {
        if steps.cancelled() {
            return Err(Error::Cancelled);
        }
        let name = Manifest::batch_file(manifest.next_batch);
        let (bytes, seg, read_upto) = {
            let hot = hot.clone();
            let spec = spec.clone();
            let name = name.clone();
            let now = now_secs();
            tokio::task::spawn_blocking(move || {
                write_chunk(&hot, &spec, cold_max, horizon, name, now)
            })
            .await
            .map_err(|e| Error::Thread {
                thread: "flush",
                detail: e.to_string(),
            })??
        };
        let Some(seg) = seg else {
            // Only tombstones of a table without a primary key (never flushed) were read:
            // they have served, the versions they deleted are marked.
            if read_upto > cold_max {
                trim(hot, &spec.partition, read_upto).await?;
                cold_max = read_upto;
                continue;
            }
            break;
        };
        cold.put_file(&spec.folder, &name, bytes).await?;
        steps.reached("flush:parquet");
        if steps.cancelled() {
            cold.delete(&spec.folder, &name).await?;
            return Err(Error::Cancelled);
        }
        out.rows += seg.rows;
        out.bytes += seg.bytes;
        out.segments += 1;
        let upto = seg.max_seq;
        manifest.version += 1;
        manifest.next_batch += 1;
        manifest.updated_at = now_secs();
        manifest.schema_version = spec.schema_version;
        manifest.segments.push(seg);
        cold.commit_manifest(&spec.folder, manifest.clone()).await?;
        steps.reached("flush:manifest");
        trim(hot, &spec.partition, upto).await?;
        steps.reached("flush:trim");
        cold_max = upto;
    }
    Ok((manifest, out))
}

/// Rows per segment a direct load encodes on one thread at least: below, one segment.
const DIRECT_SPLIT_MIN: usize = 1 << 17;

/// Loads `batches` (rows of `spec.columns`, in that order and of those types) straight into
/// new segments of the folder: the partition's hot versions are flushed first, the loaded rows
/// take the `_seq`s reserved after them (see [`Maintenance::BeginDirect`]), the segments are
/// encoded on every core and named by one manifest commit, so the rows appear all at once,
/// never twice, and survive a crash once the call answers. Answers the first and last `_seq`
/// given, with what was written. A table without a primary key only: nothing is checked.
pub async fn load_direct(
    hot: &Arc<HotStore>,
    cold: &ColdStore,
    spec: &FolderSpec,
    batches: Vec<arrow::record_batch::RecordBatch>,
    steps: &dyn Steps,
) -> Result<DirectOutcome> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let _guard = cold.folder_lock(&spec.folder).await;
    let (manifest, cold_max) = settled_manifest(hot, cold, spec).await?;
    let begun = hot
        .write(WriteRequest {
            maintenance: vec![Maintenance::BeginDirect {
                partition: spec.partition.clone(),
                rows: rows.max(1) as u64,
            }],
            ..Default::default()
        })
        .await?;
    let (first, horizon) = (begun.first_seq, begun.last_seq);
    steps.reached("direct:begin");
    let (mut manifest, mut out) = if has_versions(hot, &spec.partition, cold_max, horizon).await? {
        move_hot(hot, cold, spec, steps, manifest, cold_max, horizon).await?
    } else {
        (editable(manifest, spec), FolderOutcome::default())
    };
    let flushed = out.rows;
    // Pieces of at most a segment each, and at least one per core when there is enough.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_piece = rows
        .div_ceil(cores)
        .clamp(DIRECT_SPLIT_MIN, MAX_SEGMENT_ROWS);
    let pieces = split_rows(batches, per_piece);
    let mut encodes = Vec::with_capacity(pieces.len());
    let mut offset = 0u64;
    for (i, piece) in pieces.into_iter().enumerate() {
        let n: usize = piece.iter().map(|b| b.num_rows()).sum();
        let name = Manifest::batch_file(manifest.next_batch + i as u64);
        let spec = spec.clone();
        let start = crate::seq::advance(first, offset);
        offset += n as u64;
        encodes.push(tokio::task::spawn_blocking(move || {
            encode_loaded(&spec, piece, start, name, now_secs())
        }));
    }
    let mut segments = Vec::with_capacity(encodes.len());
    for e in encodes {
        let (name, bytes, seg) = e.await.map_err(|e| Error::Thread {
            thread: "direct load",
            detail: e.to_string(),
        })??;
        if steps.cancelled() {
            return Err(Error::Cancelled);
        }
        cold.put_file(&spec.folder, &name, bytes).await?;
        segments.push(seg);
    }
    steps.reached("direct:parquet");
    if steps.cancelled() {
        return Err(Error::Cancelled);
    }
    for seg in segments {
        out.rows += seg.rows;
        out.bytes += seg.bytes;
        out.segments += 1;
        manifest.next_batch += 1;
        manifest.segments.push(seg);
    }
    manifest.version += 1;
    manifest.updated_at = now_secs();
    manifest.schema_version = spec.schema_version;
    cold.commit_manifest(&spec.folder, manifest).await?;
    steps.reached("direct:manifest");
    // Nothing hot is left at or below the horizon: this settles the unflushed count.
    trim(hot, &spec.partition, horizon).await?;
    Ok(DirectOutcome {
        first_seq: first,
        last_seq: horizon,
        loaded: rows as u64,
        flushed,
        written: out,
    })
}

/// What a direct load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectOutcome {
    /// The first loaded row's `_seq`.
    pub first_seq: u64,
    /// The last loaded row's `_seq`.
    pub last_seq: u64,
    /// Rows loaded.
    pub loaded: u64,
    /// Hot versions flushed before them.
    pub flushed: u64,
    /// Everything written (flushed and loaded).
    pub written: FolderOutcome,
}

/// `batches` cut into pieces of about `rows` rows (whole batches, sliced where a piece ends).
fn split_rows(
    batches: Vec<arrow::record_batch::RecordBatch>,
    rows: usize,
) -> Vec<Vec<arrow::record_batch::RecordBatch>> {
    let mut pieces = vec![Vec::new()];
    let mut filled = 0;
    for b in batches {
        let mut at = 0;
        while at < b.num_rows() {
            if filled == rows {
                pieces.push(Vec::new());
                filled = 0;
            }
            let take = (rows - filled).min(b.num_rows() - at);
            if let Some(p) = pieces.last_mut() {
                p.push(b.slice(at, take));
            }
            filled += take;
            at += take;
        }
    }
    pieces.retain(|p| !p.is_empty());
    pieces
}

/// One segment of loaded rows: the columns, `_seq` from `start` on, `_deleted` false.
fn encode_loaded(
    spec: &FolderSpec,
    piece: Vec<arrow::record_batch::RecordBatch>,
    start: u64,
    name: String,
    now: i64,
) -> Result<(String, bytes::Bytes, SegmentMeta)> {
    use arrow::array::{ArrayRef, BooleanArray, Int64Array};
    use arrow::datatypes::{DataType, Schema};

    let mut fields: Vec<Field> = spec
        .columns
        .iter()
        .map(|(_, f)| f.clone().with_nullable(true))
        .collect();
    fields.push(Field::new(crate::hot::SEQ_COLUMN, DataType::Int64, false));
    fields.push(Field::new(
        crate::hot::DELETED_COLUMN,
        DataType::Boolean,
        false,
    ));
    let schema = Arc::new(Schema::new(fields));
    let ids: Vec<u32> = spec.columns.iter().map(|(id, _)| *id).collect();
    let mut writer = SegmentWriter::new(&schema, &ids)?;
    let mut seq = start;
    for b in piece {
        let n = b.num_rows();
        let mut seqs = Vec::with_capacity(n);
        for _ in 0..n {
            seqs.push(seq as i64);
            seq = crate::seq::successor(seq);
        }
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols.push(Arc::new(Int64Array::from(seqs)));
        cols.push(Arc::new(BooleanArray::from(vec![false; n])));
        let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), cols)?;
        writer.write(&batch)?;
    }
    let (bytes, seg) = writer.finish(name.clone(), spec.schema_version, now)?;
    Ok((name, bytes, seg))
}

/// The folder's manifest if it belongs to this table; files a dropped table of the same name
/// left behind are removed.
async fn own_manifest(cold: &ColdStore, spec: &FolderSpec) -> Result<Option<Arc<Manifest>>> {
    match cold.manifest(&spec.folder).await? {
        Some(m) if m.table_id != spec.table_id => {
            tracing::warn!(folder = %spec.folder, "removing files of a dropped table");
            cold.delete_all(&spec.folder).await?;
            Ok(None)
        }
        other => Ok(other),
    }
}

async fn has_versions(
    hot: &Arc<HotStore>,
    p: &Arc<PartitionKey>,
    after: u64,
    upto: u64,
) -> Result<bool> {
    let hot = hot.clone();
    let p = p.clone();
    tokio::task::spawn_blocking(move || hot.view(|v| v.has_versions(&p, after, upto)))
        .await
        .map_err(|e| Error::Thread {
            thread: "flush",
            detail: e.to_string(),
        })?
}

async fn trim(hot: &HotStore, partition: &Arc<PartitionKey>, upto: u64) -> Result<()> {
    hot.write(WriteRequest {
        maintenance: vec![Maintenance::Trim {
            partition: partition.clone(),
            upto,
        }],
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Encodes up to [`MAX_SEGMENT_ROWS`] versions after `after` into one segment; also says up
/// to which `_seq` it read.
fn write_chunk(
    hot: &HotStore,
    spec: &FolderSpec,
    after: u64,
    horizon: u64,
    name: String,
    now: i64,
) -> Result<(bytes::Bytes, Option<SegmentMeta>, u64)> {
    let scan = ScanSpec {
        partition: (*spec.partition).clone(),
        columns: spec.columns.clone(),
        with_seq: true,
        min_seq: after.saturating_add(1),
        max_seq: horizon,
        batch_size: 8192,
        limit: Some(MAX_SEGMENT_ROWS),
        overlay: None,
    };
    let ids: Vec<u32> = spec.columns.iter().map(|(id, _)| *id).collect();
    let mut writer: Option<SegmentWriter> = None;
    let read_upto = hot.view(|v| {
        v.versions(&scan, spec.pk_column, after, horizon, |batch| {
            // A table without a primary key keeps its tombstones hot only: the dv marks
            // already hide the versions they name.
            let batch = if spec.pk_column.is_none() {
                live_only(&batch)?
            } else {
                batch
            };
            if batch.num_rows() == 0 {
                return Ok(());
            }
            if writer.is_none() {
                writer = Some(SegmentWriter::new(&batch.schema(), &ids)?);
            }
            if let Some(w) = writer.as_mut() {
                w.write(&batch)?;
            }
            Ok(())
        })
    })?;
    match writer {
        Some(w) if w.rows() > 0 => {
            let (bytes, seg) = w.finish(name, spec.schema_version, now)?;
            Ok((bytes, Some(seg), read_upto))
        }
        _ => Ok((bytes::Bytes::new(), None, read_upto)),
    }
}

/// The live versions of a batch of [`crate::hot::HotView::versions`].
fn live_only(b: &arrow::record_batch::RecordBatch) -> Result<arrow::record_batch::RecordBatch> {
    let deleted = b
        .column(b.num_columns() - 1)
        .as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .ok_or_else(|| Error::corrupt("versions", "_deleted is not boolean"))?;
    let live =
        arrow::compute::not(deleted).map_err(|e| Error::corrupt("versions", e.to_string()))?;
    arrow::compute::filter_record_batch(b, &live)
        .map_err(|e| Error::corrupt("versions", e.to_string()))
}

/// Compaction settings.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// Segments are merged into runs of at most this many row versions.
    pub target_rows: u64,
    /// Tombstones with a `_seq` below this are dropped (older than the deletion retention).
    pub tombstone_floor: u64,
}

/// How long compaction waits for reads of the manifest it replaced before it deletes their
/// files anyway: longer than any query may run.
const RETIRED_SEGMENT_GRACE: Duration = Duration::from_secs(30 * 60);

/// Rewrites runs of adjacent small segments (and segments holding dead versions) into one
/// segment each: only the newest version of each key stays, and tombstones older than the
/// retention go.
pub async fn compact(
    hot: &Arc<HotStore>,
    cold: &ColdStore,
    spec: &FolderSpec,
    opts: CompactOptions,
    steps: &dyn Steps,
) -> Result<Option<FolderOutcome>> {
    let guard = cold.folder_lock(&spec.folder).await;
    let Some(current) = own_manifest(cold, spec).await? else {
        return Ok(None);
    };
    let deleted: HashSet<u64> = {
        let hot = hot.clone();
        let p = spec.partition.clone();
        tokio::task::spawn_blocking(move || hot.view(|v| v.deleted(&p)))
            .await
            .map_err(|e| Error::Thread {
                thread: "compaction",
                detail: e.to_string(),
            })??
    };
    let dead_in = |s: &SegmentMeta| {
        s.deleted > 0 || deleted.iter().any(|q| *q >= s.min_seq && *q <= s.max_seq)
    };
    // Runs of adjacent segments, each within the target size.
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut rows = 0;
    for (i, s) in current.segments.iter().enumerate() {
        if i > start && rows + s.rows > opts.target_rows {
            runs.push(start..i);
            start = i;
            rows = 0;
        }
        rows += s.rows;
    }
    if start < current.segments.len() {
        runs.push(start..current.segments.len());
    }
    runs.retain(|r| r.len() > 1 || current.segments[r.start..r.end].iter().any(&dead_in));
    if runs.is_empty() {
        return Ok(None);
    }
    let mut manifest = (*current).clone();
    let mut out = FolderOutcome::default();
    let mut new_segments: Vec<SegmentMeta> = Vec::new();
    let mut retired = Vec::new();
    let mut forget = Vec::new();
    let ids: Vec<u32> = spec.columns.iter().map(|(id, _)| *id).collect();
    // Tombstones carry only their key: every column is nullable in a segment.
    let columns: Vec<(u32, Field)> = spec
        .columns
        .iter()
        .map(|(id, f)| (*id, f.clone().with_nullable(true)))
        .collect();
    let mut next = 0;
    for run in runs {
        new_segments.extend(current.segments[next..run.start].iter().cloned());
        next = run.end;
        let name = Manifest::batch_file(manifest.next_batch);
        manifest.next_batch += 1;
        let mut writer: Option<SegmentWriter> = None;
        for seg in &current.segments[run.clone()] {
            if steps.cancelled() {
                return Err(Error::Cancelled);
            }
            let read = SegmentRead {
                columns: &columns,
                with_seq: true,
                min_seq: 0,
                max_seq: u64::MAX,
                seqs: None,
                deleted: &deleted,
                row_groups: None,
                overlay: None,
                batch_size: 8192,
                tombstones_from: Some(opts.tombstone_floor),
            };
            if let Some(mut stream) = cold.open_segment(&spec.folder, seg, &read).await? {
                while let Some(b) = stream.next(&read).await? {
                    if writer.is_none() {
                        writer = Some(SegmentWriter::new(&b.schema(), &ids)?);
                    }
                    if let Some(w) = writer.as_mut() {
                        w.write(&b)?;
                    }
                }
            }
            forget.extend(
                deleted
                    .iter()
                    .filter(|q| **q >= seg.min_seq && **q <= seg.max_seq),
            );
            retired.push(seg.path.clone());
            out.removed += 1;
        }
        if let Some(w) = writer.filter(|w| w.rows() > 0) {
            let (bytes, seg) = w.finish(name.clone(), spec.schema_version, now_secs())?;
            cold.put_file(&spec.folder, &name, bytes).await?;
            out.rows += seg.rows;
            out.bytes += seg.bytes;
            out.segments += 1;
            new_segments.push(seg);
        }
    }
    new_segments.extend(current.segments[next..].iter().cloned());
    if steps.cancelled() {
        return Err(Error::Cancelled);
    }
    manifest.segments = new_segments;
    manifest.version += 1;
    manifest.updated_at = now_secs();
    manifest.schema_version = spec.schema_version;
    cold.commit_manifest(&spec.folder, manifest).await?;
    steps.reached("compact:manifest");
    drop(guard);
    // Reads that started on the old manifest may still be reading its files: wait for them
    // (they hold the old manifest) before deleting the files, and before forgetting the dv
    // marks of the versions those files still hold (a scan filters them by the marks it
    // reads when it starts).
    let deadline = tokio::time::Instant::now() + RETIRED_SEGMENT_GRACE;
    while Arc::strong_count(&current) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !forget.is_empty() {
        hot.write(WriteRequest {
            maintenance: vec![Maintenance::ForgetDeleted {
                partition: spec.partition.clone(),
                seqs: forget,
            }],
            ..Default::default()
        })
        .await?;
    }
    for name in retired {
        cold.delete(&spec.folder, &name).await?;
    }
    Ok(Some(out))
}

/// Deletes files of a folder that its manifest does not name (left by a flush or compaction
/// that stopped before its manifest was written, or after it but before its clean-up).
pub async fn remove_orphans(cold: &ColdStore, spec: &FolderSpec) -> Result<u64> {
    let folder = &spec.folder;
    let _guard = cold.folder_lock(folder).await;
    let Some(m) = own_manifest(cold, spec).await? else {
        return Ok(0);
    };
    let named: HashSet<&str> = m.segments.iter().map(|s| s.path.as_str()).collect();
    let mut removed = 0;
    for (name, _) in cold.list(folder).await? {
        if name.ends_with(".parquet") && !named.contains(name.as_str()) {
            cold.delete(folder, &name).await?;
            removed += 1;
        }
    }
    Ok(removed)
}
