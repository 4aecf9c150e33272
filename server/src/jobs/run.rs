//! What each kind of job does. Flush and compaction go folder by folder through the storage
//! crate's one implementation, whatever the table type.

use std::sync::Arc;

use quilldb_storage::flush::{self, CompactOptions, FolderOutcome, FolderSpec, Steps};
use quilldb_storage::keys::PartitionKey;
use tokio_util::sync::CancellationToken;

use super::record::Done;
use super::{Job, JobKind, Jobs};
use crate::catalog::{TableDef, TableType};
use crate::error::{Error, Result};

struct JobSteps<'a> {
    token: &'a CancellationToken,
    failpoint: Option<&'a str>,
}

impl Steps for JobSteps<'_> {
    fn cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    fn reached(&self, step: &'static str) {
        // Crash tests: QUILLDB_FAILPOINT=<step> kills the process right after that step.
        if self.failpoint == Some(step) {
            tracing::error!(step, "failpoint reached: aborting the process");
            std::process::abort();
        }
    }
}

/// The folder of one partition of `def`, with its current columns.
pub fn folder_spec(
    storages: &crate::catalog::Storages,
    def: &TableDef,
    partition: &PartitionKey,
) -> Result<(Arc<quilldb_storage::cold::ColdStore>, FolderSpec)> {
    let storage = storages.get(&def.storage_id)?;
    let (folder, user) = storage.partition_folder(def, partition);
    let pk_column = def.key().map(|(at, _)| at);
    Ok((
        storage.cold.clone(),
        FolderSpec {
            partition: Arc::new(partition.clone()),
            folder,
            columns: def.columns.iter().map(|c| (c.id, c.field(def))).collect(),
            pk_column,
            table: def.qualified(),
            table_id: def.id,
            user_id: user,
            schema_version: def.schema_version,
        },
    ))
}

pub(super) async fn execute(
    jobs: &Jobs,
    job: &Job,
    token: &CancellationToken,
) -> Result<Option<Done>> {
    let steps = JobSteps {
        token,
        failpoint: jobs.failpoint.as_deref(),
    };
    if job.kind == JobKind::Cleanup {
        let Some((storage, folder)) = &job.target else {
            return Ok(None);
        };
        let storage = jobs.storages.get(storage)?;
        let folder = object_store::path::Path::from(folder.as_str());
        let freed = {
            let _guard = storage.cold.folder_lock(&folder).await;
            storage.cold.delete_all(&folder).await?
        };
        return Ok(Some(Done {
            rows: 0,
            bytes: freed,
            message: format!(
                "removed the files of {}.{} ({freed} bytes)",
                job.namespace, job.table_name
            ),
            compact_due: false,
        }));
    }
    if job.kind == JobKind::Export {
        return super::export::run(jobs, job, token).await.map(Some);
    }
    // A move has the table to itself; the other jobs share it. The definition is read once the
    // lock is held, so a flush that waited for a move writes to the new storage.
    let lock = jobs.table_lock(job.table_id);
    if job.kind == JobKind::Move {
        let alone = lock.write_owned().await;
        let Some(def) = jobs.catalog.table_by_id(job.table_id) else {
            return Err(Error::Cancelled("the table was dropped".into()));
        };
        return move_table(jobs, job, &def, &steps, alone).await.map(Some);
    }
    let _shared = lock.read().await;
    let Some(def) = jobs.catalog.table_by_id(job.table_id) else {
        return Err(Error::Cancelled("the table was dropped".into()));
    };
    let mut partitions = jobs.hot.partitions(def.id)?;
    match job.kind {
        JobKind::Flush => {
            if def.table_type == TableType::Stream {
                return Err(Error::InvalidArgument(
                    "STREAM tables are never flushed".into(),
                ));
            }
            let mut total = FolderOutcome::default();
            let mut any = false;
            let mut compact_due = false;
            for p in partitions {
                let (cold, spec) = folder_spec(&jobs.storages, &def, &p)?;
                if let Some(o) = flush::flush(&jobs.hot, &cold, &spec, &steps)
                    .await
                    .map_err(cancelled)?
                {
                    any = true;
                    add(&mut total, &o);
                    compact_due |= small_segments(jobs, &cold, &spec)
                        || dead_versions(jobs, &cold, &spec).await?;
                }
            }
            Ok(any.then(|| Done {
                rows: total.rows,
                bytes: total.bytes,
                message: format!("{} rows in {} new segment(s)", total.rows, total.segments),
                compact_due,
            }))
        }
        JobKind::Compact => {
            if def.table_type == TableType::Shared && partitions.is_empty() {
                partitions.push(PartitionKey::new(def.id, b"")?);
            }
            if def.table_type == TableType::User {
                // Users whose rows are all cold have a folder but no hot partition.
                let storage = jobs.storages.get(&def.storage_id)?;
                for user in storage.cold.subfolders(&storage.table_root(&def)).await? {
                    let p = PartitionKey::new(def.id, user.as_bytes())?;
                    if !partitions.contains(&p) {
                        partitions.push(p);
                    }
                }
            }
            let retention = jobs.storage.deletion_retention_seconds;
            let floor_ms = (crate::catalog::now_millis().max(0) as u64)
                .saturating_sub(retention.saturating_mul(1000));
            let opts = CompactOptions {
                target_rows: jobs.storage.compact_target_rows,
                tombstone_floor: quilldb_storage::seq::first_id_at(floor_ms),
            };
            let mut total = FolderOutcome::default();
            let mut any = false;
            for p in partitions {
                let (cold, spec) = folder_spec(&jobs.storages, &def, &p)?;
                if let Some(o) = flush::compact(&jobs.hot, &cold, &spec, opts, &steps)
                    .await
                    .map_err(cancelled)?
                {
                    any = true;
                    add(&mut total, &o);
                }
                flush::remove_orphans(&cold, &spec).await?;
            }
            Ok(any.then(|| Done {
                rows: total.rows,
                bytes: total.bytes,
                message: format!(
                    "{} segment(s) rewritten into {}",
                    total.removed, total.segments
                ),
                compact_due: false,
            }))
        }
        JobKind::StreamEviction => {
            let Some(before) = def.evict_before() else {
                return Err(Error::InvalidArgument(
                    "only STREAM tables have rows to evict".into(),
                ));
            };
            let mut rows = 0;
            let mut users = 0;
            for (p, oldest) in jobs.hot.partitions_oldest(def.id)? {
                if oldest < before {
                    rows += jobs.hot.evict(Arc::new(p), before).await?;
                    users += 1;
                }
            }
            Ok((rows > 0).then(|| Done {
                rows,
                bytes: 0,
                message: format!("{rows} expired row version(s) of {users} user(s) evicted"),
                compact_due: false,
            }))
        }
        JobKind::Cleanup | JobKind::Move | JobKind::Export => Ok(None),
    }
}

/// The folders of a table in a storage: (user, folder) for each user folder of a USER table,
/// the one folder of a SHARED table.
async fn table_folders(
    storage: &crate::catalog::Storage,
    def: &TableDef,
) -> Result<Vec<(Option<String>, object_store::path::Path)>> {
    Ok(match def.table_type {
        TableType::Shared => vec![(None, storage.folder(def, None))],
        _ => storage
            .cold
            .subfolders(&storage.table_root(def))
            .await?
            .into_iter()
            .map(|user| {
                let folder = storage.folder(def, Some(&user));
                (Some(user), folder)
            })
            .collect(),
    })
}

/// ALTER TABLE ... SET STORAGE_ID: copies every segment and manifest of the table to the new
/// storage (manifests last, so a folder there is complete once its manifest is), points the
/// table at it in one catalog write, then removes the old copies once no query planned before
/// the switch can still be reading them (the query timeout later; flushes and compactions go on
/// meanwhile, to the new storage). Reads use the old copies until the switch and the new ones
/// after; writes only touch the hot store. Interrupted, the job is run again: before the switch
/// it copies again (over what it copied), after it only removes.
async fn move_table(
    jobs: &Jobs,
    job: &Job,
    def: &TableDef,
    steps: &JobSteps<'_>,
    alone: tokio::sync::OwnedRwLockWriteGuard<()>,
) -> Result<Done> {
    let Some((to_id, from_id)) = &job.target else {
        return Err(Error::Internal("a move job without its storages".into()));
    };
    let from = jobs.storages.get(from_id)?;
    let to = jobs.storages.get(to_id)?;
    let (mut files, mut bytes) = (0u64, 0u64);
    if def.storage_id == *from_id {
        for (user, old) in table_folders(&from, def).await? {
            let Some(manifest) = from.cold.manifest(&old).await? else {
                continue;
            };
            let new = to.folder(def, user.as_deref());
            for seg in &manifest.segments {
                if steps.cancelled() {
                    return Err(Error::Cancelled("the move was cancelled".into()));
                }
                bytes += from.cold.copy_file(&old, &seg.path, &to.cold, &new).await?;
                files += 1;
            }
            // Copied as read, then loaded into the new store's cache from there.
            to.cold.forget(&new);
            bytes += from
                .cold
                .copy_file(&old, quilldb_storage::cold::MANIFEST_FILE, &to.cold, &new)
                .await?;
            files += 1;
        }
        steps.reached("move:copied");
        jobs.catalog.set_storage(def.id, to_id).await?;
        tracing::info!(table = %def.qualified(), from = %from_id, to = %to_id, "table moved");
        steps.reached("move:switched");
    } else if def.storage_id != *to_id {
        return Err(Error::FailedPrecondition(format!(
            "{} is on storage {} now, neither {from_id} nor {to_id}",
            def.qualified(),
            def.storage_id
        )));
    }
    drop(alone);
    // Cancelled (KILL JOB, DROP TABLE, shutdown) while it waits: remove them now rather than
    // leave them behind for good.
    tokio::select! {
        _ = tokio::time::sleep(jobs.move_grace) => {}
        _ = steps.token.cancelled() => {}
    }
    let freed = from.cold.delete_all(&from.table_root(def)).await?;
    Ok(Done {
        rows: 0,
        bytes,
        message: format!(
            "moved {files} file(s), {bytes} bytes, from storage {from_id} to {to_id}; \
             {freed} bytes removed from {from_id}"
        ),
        compact_due: false,
    })
}

/// Whether the folder now holds `storage.auto_compact_segments` small segments.
fn small_segments(jobs: &Jobs, cold: &quilldb_storage::cold::ColdStore, spec: &FolderSpec) -> bool {
    let want = jobs.storage.auto_compact_segments;
    if want == 0 {
        return false;
    }
    let small = jobs.storage.compact_target_rows / 4;
    cold.cached(&spec.folder)
        .flatten()
        .is_some_and(|m| m.segments.iter().filter(|s| s.rows < small).count() >= want)
}

/// Whether a tenth or more of the folder's cold versions were replaced since their flush.
async fn dead_versions(
    jobs: &Jobs,
    cold: &quilldb_storage::cold::ColdStore,
    spec: &FolderSpec,
) -> Result<bool> {
    if jobs.storage.auto_compact_segments == 0 {
        return Ok(false);
    }
    let Some(m) = cold.cached(&spec.folder).flatten() else {
        return Ok(false);
    };
    let hot = jobs.hot.clone();
    let p = spec.partition.clone();
    let marks = tokio::task::spawn_blocking(move || hot.view(|v| v.deleted(&p)))
        .await
        .map_err(|e| Error::Internal(format!("counting replaced versions: {e}")))??
        .len() as u64;
    Ok(marks > 0 && marks * 10 >= m.rows())
}

fn add(total: &mut FolderOutcome, o: &FolderOutcome) {
    total.rows += o.rows;
    total.bytes += o.bytes;
    total.segments += o.segments;
    total.removed += o.removed;
}

fn cancelled(e: quilldb_storage::Error) -> Error {
    match e {
        quilldb_storage::Error::Cancelled => Error::Cancelled("cancelled".into()),
        other => other.into(),
    }
}
