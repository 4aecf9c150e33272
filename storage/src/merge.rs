//! Reads that merge a partition's cold segments and hot versions into one stream in `_seq`
//! order, keeping only live versions.
//!
//! ```text
//!   manifest (cached) ──┐        hot snapshot ──┬── dv: versions replaced after their flush
//!                       ▼                       │
//!   segments in _seq order, pruned ─► drop tombstones and dv ─► batches
//!   then hot versions with _seq > manifest max (older hot copies are already in a segment)
//! ```
//! The manifest is read before the snapshot and checked again after it: a flush that committed
//! in between makes the read start over, so a read never misses the versions a flush moved.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use tokio::runtime::Handle;

use crate::cold::{CachedManifest, ColdStore, Manifest, SegmentMeta, SegmentRead, same_manifest};
use crate::hot::{HotStore, HotView, ScanSpec};
use crate::{Error, Result};

/// Statistics-based pruning the query layer supplies.
pub trait SegmentPruner: Send + Sync + std::fmt::Debug {
    /// Which segments of `manifest` may hold matching rows.
    fn segments(&self, manifest: &Manifest) -> Vec<bool>;
    /// Which row groups of a segment may hold matching rows (`None`: all).
    fn row_groups(&self, seg: &SegmentMeta, footer: &ArrowReaderMetadata) -> Option<Vec<usize>>;
}

/// Told what a read's snapshot holds before the read produces anything: a scan that reads
/// the older segments elsewhere (DataFusion's Parquet scan) filters them with the same dv
/// marks as this read's hot versions, so no row is seen twice or missed.
pub trait SnapshotObserver: Send + Sync + std::fmt::Debug {
    /// The partition's versions replaced or deleted after their flush (the dv marks).
    fn deleted(&self, deleted: Arc<HashSet<u64>>);
}

/// Where a partition's cold rows are.
#[derive(Debug, Clone)]
pub struct ColdSource {
    /// The storage.
    pub store: Arc<ColdStore>,
    /// The folder.
    pub folder: Path,
    /// The table's id: a manifest of another table (dropped, same name) is not read.
    pub table_id: u64,
}

impl ColdSource {
    /// The flushed versions `seqs` of the partition, live or since replaced: batches of
    /// `columns` then `_seq`. A version compaction has dropped since is missing from the answer.
    pub async fn versions(
        &self,
        columns: &[(u32, arrow::datatypes::Field)],
        seqs: &HashSet<u64>,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let Some(manifest) = self.store.manifest(&self.folder).await? else {
            return Ok(out);
        };
        if manifest.table_id != self.table_id {
            return Ok(out);
        }
        let mut by_segment: BTreeMap<usize, HashSet<u64>> = BTreeMap::new();
        for seq in seqs {
            if let Some(i) = manifest.segment_of(*seq) {
                by_segment.entry(i).or_default().insert(*seq);
            }
        }
        let none = HashSet::new();
        for (i, wanted) in &by_segment {
            let read = SegmentRead {
                columns,
                with_seq: true,
                min_seq: wanted.iter().copied().min().unwrap_or(0),
                max_seq: wanted.iter().copied().max().unwrap_or(0),
                seqs: Some(wanted),
                deleted: &none,
                row_groups: None,
                overlay: None,
                batch_size: 8192,
                tombstones_from: None,
            };
            let seg = &manifest.segments[*i];
            let Some(mut stream) = self.store.open_segment(&self.folder, seg, &read).await? else {
                continue;
            };
            while let Some(b) = stream.next(&read).await? {
                out.push(b);
            }
        }
        Ok(out)
    }
}

/// One merged read of a partition.
#[derive(Debug, Clone)]
pub struct MergedRead {
    /// The hot store.
    pub hot: Arc<HotStore>,
    /// The cold folder, if the table is ever flushed.
    pub cold: Option<ColdSource>,
    /// Columns, `_seq` range, limit, overlay.
    pub spec: ScanSpec,
    /// Point lookups by primary-key bytes instead of a scan.
    pub keys: Option<Vec<Vec<u8>>>,
    /// The primary-key column's stable id (to skip cold rows a transaction overrides).
    pub pk_column_id: u32,
    /// Statistics pruning.
    pub pruner: Option<Arc<dyn SegmentPruner>>,
    /// Told the snapshot's dv marks before anything is read.
    pub observer: Option<Arc<dyn SnapshotObserver>>,
}

/// What a read touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Segments in the manifest.
    pub segments_total: u64,
    /// Segments whose rows were read.
    pub segments_read: u64,
    /// Rows produced.
    pub rows: u64,
    /// The snapshot's `_seq` high-water mark (see `HotView::committed_seq`).
    pub snapshot_seq: u64,
}

impl MergedRead {
    /// Runs the read on the calling (blocking) thread; cold files are read through `handle`.
    /// `sink` returns `false` to stop.
    pub fn run(
        &self,
        handle: &Handle,
        mut sink: impl FnMut(RecordBatch) -> bool + Send,
    ) -> Result<ReadStats> {
        loop {
            let before: CachedManifest = match &self.cold {
                Some(c) => handle.block_on(c.store.manifest(&c.folder))?,
                None => None,
            };
            let done = self.hot.view(|v| {
                let mut table_id = 0;
                if let Some(c) = &self.cold {
                    let now = c.store.cached(&c.folder);
                    if !now.is_some_and(|n| same_manifest(&n, &before)) {
                        return Ok(None);
                    }
                    table_id = c.table_id;
                }
                let own = before.as_deref().filter(|m| m.table_id == table_id);
                let mut stats = self.read_in(v, own, handle, &mut sink)?;
                stats.snapshot_seq = v.committed_seq()?;
                Ok::<_, crate::Error>(Some(stats))
            })?;
            if let Some(stats) = done {
                return Ok(stats);
            }
        }
    }

    /// The deletes of the partition with `after < _seq <= upto`, flushed ones then hot ones:
    /// batches of the spec's columns (the key filled, the others as stored, usually null) then
    /// `_seq`. What a resumed subscription sends as deletes.
    ///
    /// A table without a primary key (`pk_column` `None`) keeps its tombstones hot only: each
    /// comes back with the deleted version's `_seq`, and `None` says that a flush after
    /// `after` may have trimmed some (the subscriber starts over).
    pub fn deletes(
        &self,
        handle: &Handle,
        after: u64,
        upto: u64,
        pk_column: Option<usize>,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let spec = &self.spec;
        if pk_column.is_none() {
            return self.hot.view(|v| {
                if v.flush_horizon(&spec.partition)? > after {
                    return Ok(None);
                }
                let mut out = Vec::new();
                v.versions(spec, None, after, upto, |b| {
                    out.push(only_deleted(&b)?);
                    Ok(())
                })?;
                out.retain(|b| b.num_rows() > 0);
                Ok(Some(out))
            });
        }
        loop {
            let before: CachedManifest = match &self.cold {
                Some(c) => handle.block_on(c.store.manifest(&c.folder))?,
                None => None,
            };
            let done = self.hot.view(|v| {
                if let Some(c) = &self.cold {
                    let now = c.store.cached(&c.folder);
                    if !now.is_some_and(|n| same_manifest(&n, &before)) {
                        return Ok(None);
                    }
                }
                let own = before
                    .as_deref()
                    .filter(|m| self.cold.as_ref().is_some_and(|c| m.table_id == c.table_id));
                let mut out = Vec::new();
                let horizon = own.map_or(0, Manifest::max_seq);
                if let (Some(c), Some(m)) = (&self.cold, own) {
                    let deleted = v.deleted(&spec.partition)?;
                    let read = SegmentRead {
                        columns: &spec.columns,
                        with_seq: true,
                        min_seq: after.saturating_add(1),
                        max_seq: upto,
                        seqs: None,
                        deleted: &deleted,
                        row_groups: None,
                        overlay: None,
                        batch_size: spec.batch_size,
                        tombstones_from: Some(after.saturating_add(1)),
                    };
                    for seg in m
                        .segments
                        .iter()
                        .filter(|s| s.max_seq > after && s.min_seq <= upto)
                    {
                        let Some(mut stream) =
                            handle.block_on(c.store.open_segment(&c.folder, seg, &read))?
                        else {
                            continue;
                        };
                        while let Some(b) = handle.block_on(stream.next(&read))? {
                            out.push(only_deleted(&b)?);
                        }
                    }
                }
                v.versions(spec, pk_column, after.max(horizon), upto, |b| {
                    out.push(only_deleted(&b)?);
                    Ok(())
                })?;
                out.retain(|b| b.num_rows() > 0);
                Ok::<_, crate::Error>(Some(out))
            })?;
            if let Some(out) = done {
                return Ok(Some(out));
            }
        }
    }

    fn read_in(
        &self,
        v: &HotView<'_>,
        manifest: Option<&Manifest>,
        handle: &Handle,
        sink: &mut (dyn FnMut(RecordBatch) -> bool + Send),
    ) -> Result<ReadStats> {
        let spec = &self.spec;
        let horizon = manifest.map_or(0, Manifest::max_seq);
        let mut stats = ReadStats {
            segments_total: manifest.map_or(0, |m| m.segments.len() as u64),
            ..Default::default()
        };
        let mut out = Emitter {
            remaining: spec.limit.unwrap_or(usize::MAX),
            sink,
        };
        let mut stopped = false;
        let none = HashSet::new();
        let mut observed = None;
        if let Some(o) = &self.observer {
            let deleted = Arc::new(v.deleted(&spec.partition)?);
            o.deleted(deleted.clone());
            observed = Some(deleted);
        }

        if let Some(keys) = &self.keys {
            let mut hot_seqs = Vec::new();
            let mut pending = Vec::new();
            let mut cold_seqs: BTreeMap<usize, HashSet<u64>> = BTreeMap::new();
            for pk in keys {
                if let Some((seq, row)) = spec.overlay.as_ref().and_then(|o| o.rows.get(pk)) {
                    if let Some(row) = row
                        && *seq >= spec.min_seq
                        && *seq <= spec.max_seq
                    {
                        pending.push((*seq, row.clone()));
                    }
                    continue;
                }
                let Some((seq, true)) = v.index(&spec.partition, pk)? else {
                    continue;
                };
                if seq < spec.min_seq || seq > spec.max_seq {
                    continue;
                }
                if seq > horizon {
                    hot_seqs.push(seq);
                } else if let Some(i) = manifest.and_then(|m| m.segment_of(seq)) {
                    cold_seqs.entry(i).or_default().insert(seq);
                }
            }
            if let (Some(c), Some(m)) = (&self.cold, manifest) {
                for (i, seqs) in &cold_seqs {
                    let read = self.segment_read(Some(seqs), &none, None);
                    if !drain(
                        handle,
                        &c.store,
                        &c.folder,
                        &m.segments[*i],
                        &read,
                        &mut out,
                        &mut stats,
                    )? {
                        return Ok(stats);
                    }
                }
            }
            let b = v.rows(spec, &mut hot_seqs, pending)?;
            if b.num_rows() > 0 {
                out.emit(b, &mut stats);
            }
            return Ok(stats);
        }

        if let (Some(c), Some(m)) = (&self.cold, manifest)
            && !m.segments.is_empty()
            && spec.min_seq <= horizon
        {
            let keep = self
                .pruner
                .as_ref()
                .map_or_else(|| vec![true; m.segments.len()], |p| p.segments(m));
            let deleted = match observed {
                Some(d) => d,
                None => Arc::new(v.deleted(&spec.partition)?),
            };
            for (i, seg) in m.segments.iter().enumerate() {
                if !keep.get(i).copied().unwrap_or(true)
                    || seg.max_seq < spec.min_seq
                    || seg.min_seq > spec.max_seq
                {
                    continue;
                }
                let groups = match &self.pruner {
                    Some(p) => {
                        let footer = handle.block_on(c.store.footer(&c.folder, seg))?;
                        p.row_groups(seg, &footer)
                    }
                    None => None,
                };
                if groups.as_ref().is_some_and(Vec::is_empty) {
                    continue;
                }
                let read = self.segment_read(None, &deleted, groups);
                if !drain(
                    handle, &c.store, &c.folder, seg, &read, &mut out, &mut stats,
                )? {
                    stopped = true;
                    break;
                }
            }
        }
        if stopped || out.remaining == 0 {
            return Ok(stats);
        }
        let mut hot = spec.clone();
        hot.min_seq = hot.min_seq.max(horizon.saturating_add(1));
        hot.limit = spec.limit.map(|_| out.remaining);
        v.scan(&hot, |b| out.emit(b, &mut stats))?;
        Ok(stats)
    }

    fn segment_read<'a>(
        &'a self,
        seqs: Option<&'a HashSet<u64>>,
        deleted: &'a HashSet<u64>,
        row_groups: Option<Vec<usize>>,
    ) -> SegmentRead<'a> {
        SegmentRead {
            columns: &self.spec.columns,
            with_seq: self.spec.with_seq,
            min_seq: self.spec.min_seq,
            max_seq: self.spec.max_seq,
            seqs,
            deleted,
            row_groups,
            overlay: self
                .spec
                .overlay
                .as_deref()
                .filter(|o| !o.rows.is_empty())
                .map(|o| (self.pk_column_id, o)),
            batch_size: self.spec.batch_size,
            tombstones_from: None,
        }
    }
}

/// The rows of a batch ending in `_seq, _deleted` that are deletes, without `_deleted`.
fn only_deleted(b: &RecordBatch) -> Result<RecordBatch> {
    let last = b.num_columns() - 1;
    let mask = b
        .column(last)
        .as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .ok_or_else(|| Error::corrupt("versions", "_deleted is not boolean"))?
        .clone();
    let kept = arrow::compute::filter_record_batch(b, &mask)
        .map_err(|e| Error::corrupt("versions", e.to_string()))?;
    kept.project(&(0..last).collect::<Vec<_>>())
        .map_err(|e| Error::corrupt("versions", e.to_string()))
}

/// Reads one segment into the consumer. The async reads run under `block_on`; the consumer
/// (which may block on a full channel) is called outside it. Returns whether to go on.
fn drain(
    handle: &Handle,
    store: &ColdStore,
    folder: &Path,
    seg: &SegmentMeta,
    read: &SegmentRead<'_>,
    out: &mut Emitter<'_>,
    stats: &mut ReadStats,
) -> Result<bool> {
    let Some(mut stream) = handle.block_on(store.open_segment(folder, seg, read))? else {
        return Ok(true);
    };
    stats.segments_read += 1;
    while let Some(b) = handle.block_on(stream.next(read))? {
        if !out.emit(b, stats) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Hands batches to the consumer, cutting them at the limit.
struct Emitter<'a> {
    remaining: usize,
    sink: &'a mut (dyn FnMut(RecordBatch) -> bool + Send),
}

impl Emitter<'_> {
    /// Whether to go on.
    fn emit(&mut self, b: RecordBatch, stats: &mut ReadStats) -> bool {
        if self.remaining == 0 {
            return false;
        }
        let b = if b.num_rows() > self.remaining {
            b.slice(0, self.remaining)
        } else {
            b
        };
        self.remaining -= b.num_rows();
        stats.rows += b.num_rows() as u64;
        (self.sink)(b) && self.remaining > 0
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Thread {
            thread: "blocking task",
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::{FolderSpec, Steps, flush};
    use crate::hot::{RowOp, WriteMode, WriteRequest};
    use crate::keys::{PartitionKey, pk};
    use crate::testing::{fields, writes};
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    struct NoSteps;
    impl Steps for NoSteps {
        fn cancelled(&self) -> bool {
            false
        }
    }

    fn delete(part: &Arc<PartitionKey>, id: i64) -> WriteRequest {
        WriteRequest {
            rows: vec![RowOp {
                partition: part.clone(),
                pk: pk::int(id),
                row: None,
                mode: WriteMode::Upsert,
                live_from: 0,
            }],
            ..Default::default()
        }
    }

    fn rows(read: &MergedRead) -> Vec<(i64, String)> {
        let handle = Handle::current();
        let read = read.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            read.run(&handle, |b| {
                let ids = b.column(0).as_primitive::<Int64Type>().clone();
                let vs = b.column(1).as_string::<i32>().clone();
                for i in 0..b.num_rows() {
                    out.push((ids.value(i), vs.value(i).to_string()));
                }
                true
            })
            .unwrap();
            out
        })
        .join()
        .expect("read thread")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flushed_and_hot_versions_merge() {
        let dir = tempfile::tempdir().unwrap();
        let hot = Arc::new(crate::testing::open_hot(dir.path()));
        let cold = Arc::new(ColdStore::local("test", &dir.path().join("cold")).unwrap());
        let part = Arc::new(PartitionKey::new(5, b"").unwrap());
        let spec = FolderSpec {
            partition: part.clone(),
            folder: Path::from("ns/t"),
            columns: fields(),
            pk_column: Some(0),
            table: "ns.t".into(),
            table_id: 5,
            user_id: None,
            schema_version: 1,
        };
        let read = MergedRead {
            hot: hot.clone(),
            cold: Some(ColdSource {
                store: cold.clone(),
                folder: spec.folder.clone(),
                table_id: 5,
            }),
            spec: ScanSpec {
                partition: (*part).clone(),
                columns: fields(),
                with_seq: true,
                min_seq: 0,
                max_seq: u64::MAX,
                batch_size: 2,
                limit: None,
                overlay: None,
            },
            keys: None,
            pk_column_id: 1,
            pruner: None,
            observer: None,
        };
        let ok = |r: Result<crate::hot::WriteOutcome>| r.unwrap();
        ok(hot
            .write(writes(&part, &[1, 2, 3, 4], "a", WriteMode::InsertNew))
            .await);
        let out = flush(&hot, &cold, &spec, &NoSteps).await.unwrap();
        assert_eq!(out.map(|o| o.rows), Some(4));
        assert_eq!(rows(&read).len(), 4, "cold rows are read");
        // Replace a cold row, delete another, add a hot one; a cold duplicate insert fails.
        ok(hot.write(writes(&part, &[2], "b", WriteMode::Upsert)).await);
        ok(hot.write(delete(&part, 3)).await);
        ok(hot
            .write(writes(&part, &[5], "a", WriteMode::InsertNew))
            .await);
        assert!(matches!(
            hot.write(writes(&part, &[1], "x", WriteMode::InsertNew))
                .await,
            Err(Error::DuplicateKey { .. })
        ));
        let want = vec![
            (1, "a1".to_string()),
            (4, "a4".into()),
            (2, "b2".into()),
            (5, "a5".into()),
        ];
        assert_eq!(rows(&read), want);
        // After a second flush the same answer comes from two segments.
        flush(&hot, &cold, &spec, &NoSteps).await.unwrap();
        assert_eq!(rows(&read), want);
        let mut lookup = read.clone();
        lookup.keys = Some(vec![pk::int(2), pk::int(3), pk::int(4)]);
        assert_eq!(rows(&lookup), vec![(4, "a4".to_string()), (2, "b2".into())]);
        // Compaction keeps the answer and leaves one segment.
        let opts = crate::flush::CompactOptions {
            target_rows: 1000,
            tombstone_floor: 0,
        };
        crate::flush::compact(&hot, &cold, &spec, opts, &NoSteps)
            .await
            .unwrap();
        assert_eq!(rows(&read), want);
        let m = cold.manifest(&spec.folder).await.unwrap();
        assert_eq!(m.map(|m| m.segments.len()), Some(1));
    }
}
