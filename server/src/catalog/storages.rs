//! Storages: where cold files go. `local` (`<data_dir>/storage`) always exists; others are
//! created with CREATE STORAGE and persisted as protobuf records under `catalog/storage/<id>`.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::path::Path;
use parking_lot::RwLock;
use prost::Message;
use quilldb_storage::cold::{ColdStore, PathTemplate, SHARED_DEFAULT, USER_DEFAULT};
use quilldb_storage::hot::{HotStore, WriteRequest};
use quilldb_storage::keys::PartitionKey;

use super::model::{TableDef, TableType};
use crate::error::{Error, Result};

/// The storage every table uses unless it names another.
pub const DEFAULT_STORAGE: &str = "local";
const PREFIX: &str = "catalog/storage/";

/// What a storage is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageDef {
    /// Name.
    pub id: String,
    /// `filesystem` (S3 comes later).
    pub kind: String,
    /// The folder (filesystem).
    pub path: String,
    /// Folder template of SHARED tables.
    pub shared_template: String,
    /// Folder template of USER tables.
    pub user_template: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StorageRecord {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    kind: String,
    #[prost(string, tag = "3")]
    path: String,
    #[prost(string, tag = "4")]
    shared_template: String,
    #[prost(string, tag = "5")]
    user_template: String,
    #[prost(int64, tag = "6")]
    created_at: i64,
}

/// An open storage: its object store and compiled templates.
#[derive(Debug)]
pub struct Storage {
    /// The definition.
    pub def: StorageDef,
    /// The cold store.
    pub cold: Arc<ColdStore>,
    shared: PathTemplate,
    user: PathTemplate,
}

impl Storage {
    fn open(def: StorageDef, data_dir: &FsPath) -> Result<Self> {
        let shared = PathTemplate::compile(&def.shared_template, false)?;
        let user = PathTemplate::compile(&def.user_template, true)?;
        let root = resolve(data_dir, &def.path);
        let cold = Arc::new(ColdStore::local(&root)?);
        Ok(Self {
            def,
            cold,
            shared,
            user,
        })
    }

    /// The folder of one table partition (`user` for USER tables).
    pub fn folder(&self, def: &TableDef, user: Option<&str>) -> Path {
        match def.table_type {
            TableType::Shared => self.shared.folder(&def.namespace, &def.name, None),
            TableType::User | TableType::Stream => {
                self.user.folder(&def.namespace, &def.name, user)
            }
        }
    }

    /// The folder of one partition of `def` and, for USER and STREAM tables, its user.
    pub fn partition_folder(
        &self,
        def: &TableDef,
        partition: &PartitionKey,
    ) -> (Path, Option<String>) {
        let user = match def.table_type {
            TableType::Shared => None,
            TableType::User | TableType::Stream => {
                Some(String::from_utf8_lossy(partition.name()).into_owned())
            }
        };
        (self.folder(def, user.as_deref()), user)
    }

    /// The folder holding every partition of a table (what DROP TABLE removes).
    pub fn table_root(&self, def: &TableDef) -> Path {
        let full = self.folder(def, Some("_"));
        match def.table_type {
            TableType::Shared => full,
            // A USER template ends with the folder {user_id} (checked when it is compiled):
            // the table's folders are the children of its parent.
            _ => {
                let mut parts: Vec<_> = full.parts().collect();
                parts.pop();
                Path::from_iter(parts)
            }
        }
    }
}

fn resolve(data_dir: &FsPath, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() { p } else { data_dir.join(p) }
}

/// Every storage, by id.
pub struct Storages {
    hot: Arc<HotStore>,
    data_dir: PathBuf,
    /// Folders new storages may use (`storage.allowed_roots`; the data folder when empty).
    allowed_roots: Vec<PathBuf>,
    map: RwLock<BTreeMap<String, Arc<Storage>>>,
}

/// `path` with its symbolic links resolved, also where its last parts do not exist yet: the
/// deepest existing folder is resolved and the rest appended (no part is `..`).
fn real_path(path: &FsPath) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

impl std::fmt::Debug for Storages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storages").finish_non_exhaustive()
    }
}

impl Storages {
    /// Opens `local` and every stored storage.
    pub fn load(hot: Arc<HotStore>, data_dir: &FsPath, allowed_roots: &[PathBuf]) -> Result<Self> {
        let mut map = BTreeMap::new();
        let local = StorageDef {
            id: DEFAULT_STORAGE.into(),
            kind: "filesystem".into(),
            path: "storage".into(),
            shared_template: SHARED_DEFAULT.into(),
            user_template: USER_DEFAULT.into(),
            created_at: 0,
        };
        map.insert(local.id.clone(), Arc::new(Storage::open(local, data_dir)?));
        for (_, v) in hot.scan_meta(PREFIX.as_bytes())? {
            let r = StorageRecord::decode(v.as_slice())
                .map_err(|e| Error::Internal(format!("corrupt storage record: {e}")))?;
            let def = StorageDef {
                id: r.id,
                kind: r.kind,
                path: r.path,
                shared_template: r.shared_template,
                user_template: r.user_template,
                created_at: r.created_at,
            };
            match Storage::open(def.clone(), data_dir) {
                Ok(s) => {
                    map.insert(def.id.clone(), Arc::new(s));
                }
                Err(e) => tracing::error!(storage = %def.id, error = %e, "cannot open storage"),
            }
        }
        Ok(Self {
            hot,
            data_dir: data_dir.to_path_buf(),
            allowed_roots: allowed_roots.to_vec(),
            map: RwLock::new(map),
        })
    }

    /// Checks the folder of a new filesystem storage: absolute, without `..`, and (symbolic
    /// links resolved) inside one of `storage.allowed_roots`, but neither the data folder itself
    /// nor inside its hot store or the built-in storage.
    pub fn check_path(&self, path: &str) -> Result<()> {
        let refuse = |why: String| Err(Error::InvalidArgument(format!("PATH '{path}' {why}")));
        let p = FsPath::new(path);
        if !p.is_absolute() {
            return refuse(
                "is not an absolute folder: write the full path, e.g. '/mnt/cold'".into(),
            );
        }
        if p.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::CurDir
            )
        }) {
            return refuse("may not contain '.' or '..'".into());
        }
        let real = real_path(p);
        let data = real_path(&self.data_dir);
        let roots: Vec<PathBuf> = if self.allowed_roots.is_empty() {
            vec![data.clone()]
        } else {
            self.allowed_roots.iter().map(|r| real_path(r)).collect()
        };
        if !roots.iter().any(|r| real.starts_with(r)) {
            let list = roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return refuse(format!(
                "is outside the folders storages may use ({list}); an administrator can add \
                 folders to storage.allowed_roots"
            ));
        }
        if real == data {
            return refuse("is the data folder itself: name a folder inside it".into());
        }
        for own in ["hot", "storage"] {
            if real.starts_with(data.join(own)) {
                return refuse(format!(
                    "is inside the server's own folder {}",
                    data.join(own).display()
                ));
            }
        }
        Ok(())
    }

    /// One storage.
    pub fn get(&self, id: &str) -> Result<Arc<Storage>> {
        self.map
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("storage {id} does not exist")))
    }

    /// Every storage.
    pub fn all(&self) -> Vec<Arc<Storage>> {
        self.map.read().values().cloned().collect()
    }

    /// CREATE STORAGE (the caller holds the catalog's DDL lock).
    pub async fn create(&self, def: StorageDef, if_not_exists: bool) -> Result<()> {
        if self.map.read().contains_key(&def.id) {
            return if if_not_exists {
                Ok(())
            } else {
                Err(Error::AlreadyExists(format!(
                    "storage {} already exists",
                    def.id
                )))
            };
        }
        let storage = Storage::open(def.clone(), &self.data_dir)?;
        let record = StorageRecord {
            id: def.id.clone(),
            kind: def.kind.clone(),
            path: def.path.clone(),
            shared_template: def.shared_template.clone(),
            user_template: def.user_template.clone(),
            created_at: def.created_at,
        };
        self.hot
            .write(WriteRequest {
                meta: vec![(key(&def.id), Some(record.encode_to_vec()))],
                ..Default::default()
            })
            .await?;
        self.map.write().insert(def.id, Arc::new(storage));
        Ok(())
    }

    /// DROP STORAGE; `in_use` names a table that still uses it.
    pub async fn remove(&self, id: &str, if_exists: bool, in_use: Option<String>) -> Result<()> {
        if id == DEFAULT_STORAGE {
            return Err(Error::InvalidArgument(
                "the storage local is built in and cannot be dropped".into(),
            ));
        }
        if !self.map.read().contains_key(id) {
            return if if_exists {
                Ok(())
            } else {
                Err(Error::NotFound(format!("storage {id} does not exist")))
            };
        }
        if let Some(t) = in_use {
            return Err(Error::FailedPrecondition(format!(
                "storage {id} is used by table {t}: drop the table or move it first"
            )));
        }
        self.hot
            .write(WriteRequest {
                meta: vec![(key(id), None)],
                ..Default::default()
            })
            .await?;
        self.map.write().remove(id);
        Ok(())
    }
}

fn key(id: &str) -> Vec<u8> {
    format!("{PREFIX}{id}").into_bytes()
}
