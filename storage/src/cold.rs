//! The cold store: Parquet segments and their manifest in one folder per table (and per user for
//! USER tables), on any `object_store` backend. Manifests and Parquet footers are cached in
//! memory; reads never list a folder.

mod manifest;
mod reader;
mod segment;
mod template;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::PageIndexPolicy;

pub use manifest::{ColumnStats, MANIFEST_FILE, Manifest, SegmentMeta};
pub use reader::SegmentFileReader;
pub use segment::{SegmentRead, SegmentStream, SegmentWriter};
pub use template::{PathTemplate, SHARED_DEFAULT, USER_DEFAULT};

use crate::{Error, Result};

/// A manifest as cached: `None` when the folder has none yet.
pub type CachedManifest = Option<Arc<Manifest>>;

/// One storage: an object store with cached manifests and footers.
pub struct ColdStore {
    /// The storage's name, in every error about its objects.
    name: String,
    store: Arc<dyn ObjectStore>,
    manifests: Mutex<HashMap<Path, CachedManifest>>,
    footers: Mutex<HashMap<Path, ArrowReaderMetadata>>,
    locks: Mutex<HashMap<Path, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ColdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ColdStore({}: {})", self.name, self.store)
    }
}

impl ColdStore {
    /// A store over an object store, named `name` in its errors.
    pub fn new(name: impl Into<String>, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            name: name.into(),
            store,
            manifests: Mutex::new(HashMap::new()),
            footers: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// A store in a local folder (created if missing).
    pub fn local(name: impl Into<String>, root: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::object("create folder", root.display(), e))?;
        // Emptied folders go with their last file: a dropped table leaves nothing behind.
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|e| Error::object("open", root.display(), e))?
            .with_automatic_cleanup(true);
        Ok(Self::new(name, Arc::new(fs)))
    }

    /// The storage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An error of the object store about `path`, naming the storage.
    fn err(&self, op: &'static str, path: &Path, e: object_store::Error) -> Error {
        Error::object(op, format!("{} in storage {}", path, self.name), e)
    }

    /// The object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Serializes the jobs that rewrite one folder's manifest (flush, compaction, clean-up).
    pub async fn folder_lock(&self, folder: &Path) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.locks.lock().entry(folder.clone()).or_default().clone();
        lock.lock_owned().await
    }

    /// The folder's manifest from the cache; `None` if it was never loaded.
    pub fn cached(&self, folder: &Path) -> Option<CachedManifest> {
        self.manifests.lock().get(folder).cloned()
    }

    /// The folder's manifest, loaded once and then served from memory.
    pub async fn manifest(&self, folder: &Path) -> Result<CachedManifest> {
        if let Some(m) = self.cached(folder) {
            return Ok(m);
        }
        let path = folder.clone().join(MANIFEST_FILE);
        let loaded = match self.store.get(&path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| self.err("read", &path, e))?;
                Some(Arc::new(Manifest::from_json(&bytes)?))
            }
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(self.err("read", &path, e)),
        };
        // A concurrent load or commit may have won: keep what is there.
        Ok(self
            .manifests
            .lock()
            .entry(folder.clone())
            .or_insert(loaded)
            .clone())
    }

    /// Writes a new manifest (a single put: the old one or the new one is there, never a mix)
    /// and makes it the cached one.
    pub async fn commit_manifest(&self, folder: &Path, m: Manifest) -> Result<Arc<Manifest>> {
        let path = folder.clone().join(MANIFEST_FILE);
        self.store
            .put(&path, PutPayload::from(m.to_json()))
            .await
            .map_err(|e| self.err("write", &path, e))?;
        let m = Arc::new(m);
        self.manifests
            .lock()
            .insert(folder.clone(), Some(m.clone()));
        Ok(m)
    }

    /// Stores a finished segment file.
    pub async fn put_file(&self, folder: &Path, name: &str, bytes: Bytes) -> Result<()> {
        let path = folder.clone().join(name);
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| self.err("write", &path, e))?;
        Ok(())
    }

    /// Copies one file of a folder to a folder of another store (a table moving between
    /// storages); returns its size.
    pub async fn copy_file(
        &self,
        folder: &Path,
        name: &str,
        to: &ColdStore,
        to_folder: &Path,
    ) -> Result<u64> {
        let path = folder.clone().join(name);
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.err("read", &path, e))?
            .bytes()
            .await
            .map_err(|e| self.err("read", &path, e))?;
        let size = bytes.len() as u64;
        to.put_file(to_folder, name, bytes).await?;
        Ok(size)
    }

    /// The Parquet footer of a segment, read once.
    pub async fn footer(&self, folder: &Path, seg: &SegmentMeta) -> Result<ArrowReaderMetadata> {
        let path = folder.clone().join(seg.path.as_str());
        if let Some(m) = self.footers.lock().get(&path) {
            return Ok(m.clone());
        }
        let mut reader = reader::ObjectReader::new(self.store.clone(), path.clone(), seg.bytes);
        // With the page index: point lookups read only the pages that can hold their version.
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load_async(&mut reader, options)
            .await
            .map_err(|e| Error::parquet(format!("{} in storage {}", path, self.name), e))?;
        self.footers.lock().insert(path, meta.clone());
        Ok(meta)
    }

    /// A segment opened for DataFusion's Parquet scan: its footer from the cache.
    pub async fn segment_file(
        &self,
        folder: &Path,
        seg: &SegmentMeta,
    ) -> Result<reader::SegmentFileReader> {
        let footer = self.footer(folder, seg).await?;
        let path = folder.clone().join(seg.path.as_str());
        Ok(reader::SegmentFileReader::new(
            reader::ObjectReader::new(self.store.clone(), path, seg.bytes),
            footer.metadata().clone(),
        ))
    }

    /// The files in a folder (flush and compaction tidy up with it; reads never list).
    pub async fn list(&self, folder: &Path) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut it = self.store.list(Some(folder));
        while let Some(item) = it.next().await {
            let meta = item.map_err(|e| self.err("list", folder, e))?;
            if let Some(name) = meta.location.filename()
                && meta
                    .location
                    .prefix_match(folder)
                    .is_some_and(|mut r| r.next().is_some() && r.next().is_none())
            {
                out.push((name.to_string(), meta.size));
            }
        }
        Ok(out)
    }

    /// The names of the folders directly under `prefix` (a USER table's user folders).
    pub async fn subfolders(&self, prefix: &Path) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|e| self.err("list", prefix, e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Deletes one file of a folder; a missing file is not an error.
    pub async fn delete(&self, folder: &Path, name: &str) -> Result<()> {
        let path = folder.clone().join(name);
        self.footers.lock().remove(&path);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", &path, e)),
        }
    }

    /// Deletes everything under `prefix` (a dropped table) and forgets it; returns the bytes
    /// freed.
    pub async fn delete_all(&self, prefix: &Path) -> Result<u64> {
        self.forget(prefix);
        let mut freed = 0;
        let mut it = self.store.list(Some(prefix));
        let mut paths = Vec::new();
        while let Some(item) = it.next().await {
            let meta = item.map_err(|e| self.err("list", prefix, e))?;
            freed += meta.size;
            paths.push(meta.location);
        }
        for p in paths {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete", &p, e)),
            }
        }
        Ok(freed)
    }

    /// Drops cached manifests and footers under `prefix`.
    pub fn forget(&self, prefix: &Path) {
        self.locks
            .lock()
            .retain(|k, _| k.prefix_match(prefix).is_none());
        self.manifests
            .lock()
            .retain(|k, _| k.prefix_match(prefix).is_none());
        self.footers
            .lock()
            .retain(|k, _| k.prefix_match(prefix).is_none());
    }
}

/// Whether two cached manifests are the same version.
pub fn same_manifest(a: &CachedManifest, b: &CachedManifest) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}
