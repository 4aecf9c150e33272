//! Storages: where cold files go. `local` (`<data_dir>/storage`) always exists; others are
//! created with CREATE STORAGE and persisted as protobuf records under `catalog/storage/<id>`.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use parking_lot::RwLock;
use prost::Message;
use quilldb_storage::cold::{ColdStore, PathTemplate, SHARED_DEFAULT, USER_DEFAULT};
use quilldb_storage::hot::{HotStore, WriteRequest};
use quilldb_storage::keys::PartitionKey;

use super::model::{TableDef, TableType};
use crate::config::{S3Credentials, StorageConfig};
use crate::error::{Error, Result};

/// The storage every table uses unless it names another.
pub const DEFAULT_STORAGE: &str = "local";
const PREFIX: &str = "catalog/storage/";

/// What a storage is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageDef {
    /// Name.
    pub id: String,
    /// `filesystem` or `s3`.
    pub kind: String,
    /// The folder (filesystem), or the key prefix inside the bucket (s3; may be empty).
    pub path: String,
    /// The bucket (s3).
    pub bucket: String,
    /// The region (s3; empty: from the credentials' settings, the environment, or us-east-1).
    pub region: String,
    /// The endpoint URL (s3; empty: AWS).
    pub endpoint: String,
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
    #[prost(string, tag = "7")]
    bucket: String,
    #[prost(string, tag = "8")]
    region: String,
    #[prost(string, tag = "9")]
    endpoint: String,
}

impl From<&StorageDef> for StorageRecord {
    fn from(d: &StorageDef) -> Self {
        Self {
            id: d.id.clone(),
            kind: d.kind.clone(),
            path: d.path.clone(),
            shared_template: d.shared_template.clone(),
            user_template: d.user_template.clone(),
            created_at: d.created_at,
            bucket: d.bucket.clone(),
            region: d.region.clone(),
            endpoint: d.endpoint.clone(),
        }
    }
}

impl From<StorageRecord> for StorageDef {
    fn from(r: StorageRecord) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            path: r.path,
            shared_template: r.shared_template,
            user_template: r.user_template,
            created_at: r.created_at,
            bucket: r.bucket,
            region: r.region,
            endpoint: r.endpoint,
        }
    }
}

/// How storages reach object stores: the S3 credentials by storage, and the request limits.
#[derive(Debug, Clone, Default)]
pub struct ObjectAccess {
    /// `storage.s3`.
    pub s3: BTreeMap<String, S3Credentials>,
    /// Each try of a request.
    pub timeout: Duration,
    /// Tries after the first.
    pub retries: usize,
}

impl ObjectAccess {
    /// From the `[storage]` settings.
    pub fn new(config: &StorageConfig) -> Self {
        Self {
            s3: config.s3.clone(),
            timeout: Duration::from_secs(config.object_timeout_seconds.max(1)),
            retries: config.object_retries,
        }
    }

    /// Where an S3 storage's credentials come from (never the credentials).
    pub fn credentials_source(&self, def: &StorageDef) -> Option<String> {
        (def.kind == "s3").then(|| match self.s3.get(&def.id) {
            Some(_) => format!("configuration (storage.s3.{})", def.id),
            None => "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)".into(),
        })
    }

    /// The object store of an S3 storage. Nothing is sent yet: a bucket that cannot be
    /// reached fails the first request, with the storage's name.
    fn s3_store(&self, def: &StorageDef) -> Result<Arc<dyn ObjectStore>> {
        let creds = self.s3.get(&def.id);
        let has_key = creds.is_some_and(|c| c.access_key_id.is_some())
            || [
                "AWS_ACCESS_KEY_ID",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if !has_key {
            // Without this, the client would wait on the EC2 metadata service.
            return Err(Error::FailedPrecondition(format!(
                "storage {id} has no credentials: set access_key_id and secret_access_key under \
                 [storage.s3.{id}] in the configuration (or QUILLDB_STORAGE__S3__{upper}__ACCESS_KEY_ID \
                 and ..._SECRET_ACCESS_KEY), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                id = def.id,
                upper = def.id.to_ascii_uppercase(),
            )));
        }
        // The standard variables first; the storage's own settings win over them.
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&def.bucket);
        let region = Some(def.region.clone())
            .filter(|r| !r.is_empty())
            .or_else(|| creds.and_then(|c| c.region.clone()))
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        b = b.with_region(region);
        if let Some(c) = creds {
            if let Some(v) = &c.access_key_id {
                b = b.with_access_key_id(v);
            }
            if let Some(v) = &c.secret_access_key {
                b = b.with_secret_access_key(v);
            }
            if let Some(v) = &c.session_token {
                b = b.with_token(v);
            }
        }
        // The client options first: they replace every HTTP setting, plain HTTP included.
        b = b.with_client_options(
            ClientOptions::new()
                .with_timeout(self.timeout)
                .with_connect_timeout(self.timeout.min(Duration::from_secs(5))),
        );
        if !def.endpoint.is_empty() {
            // S3-compatible servers: path-style addressing, plain HTTP when the URL says so.
            b = b
                .with_endpoint(&def.endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(def.endpoint.starts_with("http://"));
        }

        let retry = RetryConfig {
            max_retries: self.retries,
            retry_timeout: self.timeout * (self.retries as u32 + 1),
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
        };
        let store = b.with_retry(retry).build().map_err(|e| {
            Error::InvalidArgument(format!("storage {}: {}", def.id, scrub(&e.to_string())))
        })?;
        Ok(if def.path.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, def.path.trim_matches('/')))
        })
    }
}

/// An object-store message without anything that could be a credential: the builder's
/// messages quote at most option names, but a URL may carry a query string.
pub fn scrub(message: &str) -> String {
    message
        .split_whitespace()
        .map(|w| match w.find('?') {
            Some(i) if w.contains("://") => &w[..i],
            _ => w,
        })
        .collect::<Vec<_>>()
        .join(" ")
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
    fn open(def: StorageDef, data_dir: &FsPath, access: &ObjectAccess) -> Result<Self> {
        let shared = PathTemplate::compile(&def.shared_template, false)?;
        let user = PathTemplate::compile(&def.user_template, true)?;
        let cold = Arc::new(match def.kind.as_str() {
            "s3" => ColdStore::new(def.id.clone(), access.s3_store(&def)?),
            _ => ColdStore::local(def.id.clone(), &resolve(data_dir, &def.path))?,
        });
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
    /// Credentials and request limits of object stores.
    pub access: ObjectAccess,
    /// Where tables go that name no storage (`storage.default_storage`).
    pub default_id: String,
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
    pub fn load(
        hot: Arc<HotStore>,
        data_dir: &FsPath,
        allowed_roots: &[PathBuf],
        access: ObjectAccess,
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        let local = StorageDef {
            id: DEFAULT_STORAGE.into(),
            kind: "filesystem".into(),
            path: "storage".into(),
            shared_template: SHARED_DEFAULT.into(),
            user_template: USER_DEFAULT.into(),
            ..StorageDef::default()
        };
        map.insert(
            local.id.clone(),
            Arc::new(Storage::open(local, data_dir, &access)?),
        );
        for (_, v) in hot.scan_meta(PREFIX.as_bytes())? {
            let r = StorageRecord::decode(v.as_slice())
                .map_err(|e| Error::Internal(format!("corrupt storage record: {e}")))?;
            let def = StorageDef::from(r);
            match Storage::open(def.clone(), data_dir, &access) {
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
            access,
            default_id: DEFAULT_STORAGE.into(),
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
        let storage = Storage::open(def.clone(), &self.data_dir, &self.access)?;
        if def.kind == "s3" {
            probe(&storage, &self.access).await?;
        }
        let record = StorageRecord::from(&def);
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

/// Lists, writes and deletes a small object: a new S3 storage must answer, with the
/// credentials it will use, before it is kept.
async fn probe(storage: &Storage, access: &ObjectAccess) -> Result<()> {
    let cold = &storage.cold;
    let folder = Path::from(".quilldb");
    let name = format!("probe-{}", crate::jobs::record::short_id("P"));
    let def = &storage.def;
    let refuse = |e: quilldb_storage::Error| {
        let detail = scrub(&e.to_string());
        let hint = if detail.contains("NoSuchBucket") || detail.contains("does not exist") {
            format!(" (does bucket '{}' exist?)", def.bucket)
        } else if detail.contains("InvalidAccessKeyId")
            || detail.contains("SignatureDoesNotMatch")
            || detail.contains("AccessDenied")
            || detail.contains("403")
        {
            format!(
                " (check the credentials: {})",
                access.credentials_source(def).unwrap_or_default()
            )
        } else if detail.contains("error sending request") || detail.contains("timed out") {
            " (is the endpoint reachable from the server?)".to_string()
        } else {
            String::new()
        };
        Error::FailedPrecondition(format!(
            "storage {} cannot be used: bucket '{}' at {}: {detail}{hint}",
            def.id,
            def.bucket,
            if def.endpoint.is_empty() {
                "AWS"
            } else {
                def.endpoint.as_str()
            },
        ))
    };
    // A listing first: it is what answers NoSuchBucket everywhere (some servers create a
    // missing bucket's folder on a PUT).
    cold.subfolders(&folder).await.map_err(refuse)?;
    cold.put_file(&folder, &name, bytes::Bytes::from_static(b"quilldb"))
        .await
        .map_err(refuse)?;
    cold.delete(&folder, &name).await.map_err(refuse)?;
    Ok(())
}

fn key(id: &str) -> Vec<u8> {
    format!("{PREFIX}{id}").into_bytes()
}
