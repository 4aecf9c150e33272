//! What the catalog holds: namespaces, tables and their columns.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use quilldb_storage::hot::SEQ_COLUMN;

use super::types::SqlType;
use crate::error::{Error, Result};

/// Schema metadata key carrying the QuillDB table kind.
pub const TABLE_TYPE_METADATA: &str = "quill.table_type";

/// The kind of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableType {
    /// Per-user rows.
    User,
    /// One set of rows for everybody.
    Shared,
    /// Per-user, ephemeral rows with a TTL.
    Stream,
}

impl TableType {
    /// Parses `USER`, `SHARED` or `STREAM` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "USER" => Some(Self::User),
            "SHARED" => Some(Self::Shared),
            "STREAM" => Some(Self::Stream),
            _ => None,
        }
    }

    pub(crate) fn code(self) -> i32 {
        match self {
            Self::User => 0,
            Self::Shared => 1,
            Self::Stream => 2,
        }
    }

    pub(crate) fn from_code(c: i32) -> Result<Self> {
        match c {
            0 => Ok(Self::User),
            1 => Ok(Self::Shared),
            2 => Ok(Self::Stream),
            _ => Err(Error::Internal(format!("unknown table type code {c}"))),
        }
    }
}

impl fmt::Display for TableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::User => "USER",
            Self::Shared => "SHARED",
            Self::Stream => "STREAM",
        })
    }
}

/// Who may read a SHARED table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLevel {
    /// Everybody, anonymous included.
    Public,
    /// Every authenticated user.
    Protected,
    /// Services, dbas and the system only.
    Private,
}

impl AccessLevel {
    /// Parses `PUBLIC`, `PROTECTED` or `PRIVATE`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PUBLIC" => Some(Self::Public),
            "PROTECTED" => Some(Self::Protected),
            "PRIVATE" => Some(Self::Private),
            _ => None,
        }
    }

    pub(crate) fn code(self) -> i32 {
        match self {
            Self::Public => 0,
            Self::Protected => 1,
            Self::Private => 2,
        }
    }

    pub(crate) fn from_code(c: i32) -> Self {
        match c {
            0 => Self::Public,
            1 => Self::Protected,
            _ => Self::Private,
        }
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "PUBLIC",
            Self::Protected => "PROTECTED",
            Self::Private => "PRIVATE",
        })
    }
}

/// When a table's hot rows are flushed to Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// After this many hot rows.
    pub rows: Option<u64>,
    /// After this many seconds.
    pub interval_secs: Option<u64>,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self {
            rows: Some(10_000),
            interval_secs: Some(300),
        }
    }
}

impl FlushPolicy {
    /// Parses `rows:N`, `interval:S` or both, comma separated.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "FLUSH_POLICY {s:?}: {why}; expected 'rows:N', 'interval:SECONDS' or both, comma separated"
            ))
        };
        let mut p = Self {
            rows: None,
            interval_secs: None,
        };
        for part in s.split(',') {
            let (k, v) = part
                .trim()
                .split_once(':')
                .ok_or_else(|| bad("missing ':'"))?;
            let n: u64 = v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("the value must be a positive whole number"))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "rows" if p.rows.is_none() => p.rows = Some(n),
                "interval" if p.interval_secs.is_none() => p.interval_secs = Some(n),
                "rows" | "interval" => return Err(bad("a part is given twice")),
                other => return Err(bad(&format!("unknown part {other:?}"))),
            }
        }
        Ok(p)
    }
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.rows, self.interval_secs) {
            (Some(r), Some(i)) => write!(f, "rows:{r},interval:{i}"),
            (Some(r), None) => write!(f, "rows:{r}"),
            (None, Some(i)) => write!(f, "interval:{i}"),
            (None, None) => Ok(()),
        }
    }
}

/// A column default.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultExpr {
    /// `SNOWFLAKE_ID()`: a time-ordered unique BIGINT.
    SnowflakeId,
    /// `UUID_V7()`.
    UuidV7,
    /// `NOW()` / `CURRENT_TIMESTAMP`: the statement's time.
    Now,
    /// `CURRENT_USER()`.
    CurrentUser,
    /// A constant, kept as its text and cast to the column type on use.
    Literal(Option<String>),
}

impl DefaultExpr {
    /// The SQL text of the default, as DESCRIBE shows it and the catalog stores it.
    pub fn sql(&self) -> String {
        match self {
            Self::SnowflakeId => "SNOWFLAKE_ID()".into(),
            Self::UuidV7 => "UUID_V7()".into(),
            Self::Now => "NOW()".into(),
            Self::CurrentUser => "CURRENT_USER()".into(),
            Self::Literal(None) => "NULL".into(),
            Self::Literal(Some(v)) => format!("'{}'", v.replace('\'', "''")),
        }
    }
}

/// A column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    /// Stable id: never reused in its table, so old rows decode after ALTER.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Type.
    pub ty: SqlType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Default value.
    pub default: Option<DefaultExpr>,
    /// Whether this is the primary key.
    pub primary_key: bool,
    /// Set when the column was added with a constant default by ALTER TABLE: row versions at or
    /// below this `_seq` were written before it existed and read the default instead of NULL.
    pub fill_before: Option<u64>,
}

impl ColumnDef {
    /// The Arrow field, with the Flight SQL column metadata.
    pub fn field(&self, table: &TableDef) -> Field {
        let mut md = HashMap::new();
        md.insert(
            "ARROW:FLIGHT:SQL:TYPE_NAME".to_string(),
            self.ty.to_string(),
        );
        md.insert(
            "ARROW:FLIGHT:SQL:CATALOG_NAME".to_string(),
            quilldb_flight::CATALOG.to_string(),
        );
        md.insert(
            "ARROW:FLIGHT:SQL:SCHEMA_NAME".to_string(),
            table.namespace.clone(),
        );
        md.insert(
            "ARROW:FLIGHT:SQL:TABLE_NAME".to_string(),
            table.name.clone(),
        );
        if let SqlType::Decimal(p, s) = self.ty {
            md.insert("ARROW:FLIGHT:SQL:PRECISION".to_string(), p.to_string());
            md.insert("ARROW:FLIGHT:SQL:SCALE".to_string(), s.to_string());
        }
        let auto = matches!(self.default, Some(DefaultExpr::SnowflakeId));
        md.insert(
            "ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT".to_string(),
            bool_md(auto),
        );
        md.insert("ARROW:FLIGHT:SQL:IS_READ_ONLY".to_string(), bool_md(false));
        md.insert("ARROW:FLIGHT:SQL:IS_SEARCHABLE".to_string(), bool_md(true));
        if self.primary_key {
            md.insert(
                "ARROW:FLIGHT:SQL:REMARKS".to_string(),
                "primary key".to_string(),
            );
        }
        Field::new(&self.name, self.ty.arrow(), self.nullable).with_metadata(md)
    }
}

fn bool_md(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

/// A table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    /// Internal id: the key prefix of its rows. Never reused.
    pub id: u64,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub table_type: TableType,
    /// Columns in order.
    pub columns: Vec<ColumnDef>,
    /// Access level (SHARED tables).
    pub access_level: AccessLevel,
    /// Flush policy.
    pub flush_policy: FlushPolicy,
    /// TTL (STREAM tables).
    pub ttl_seconds: Option<u64>,
    /// Which storage holds its cold files.
    pub storage_id: String,
    /// Bumped by each ALTER.
    pub schema_version: u32,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// The next column id to hand out.
    pub next_column_id: u32,
}

impl TableDef {
    /// The first `_seq` alive now: a STREAM table's rows older than its TTL have expired and
    /// are invisible (and insertable again); 0 for other tables.
    pub fn live_from(&self) -> u64 {
        self.expiry()
            .map_or(0, |(cutoff, _)| quilldb_storage::seq::first_id_at(cutoff))
    }

    /// A STREAM table's time buckets: a quarter of its TTL, between 1 s and 1 h. `_seq` starts
    /// with its write time, so a bucket is one `_seq` range of each user's partition.
    pub fn stream_bucket_ms(&self) -> Option<u64> {
        self.expiry().map(|(_, bucket)| bucket)
    }

    /// The first `_seq` the eviction keeps: every version in a bucket that ended before the TTL
    /// cutoff goes; the bucket holding the cutoff stays whole until it has expired too.
    pub fn evict_before(&self) -> Option<u64> {
        self.expiry()
            .map(|(cutoff, bucket)| quilldb_storage::seq::first_id_at(cutoff - cutoff % bucket))
    }

    /// `(TTL cutoff in Unix ms, bucket width in ms)` of a STREAM table.
    fn expiry(&self) -> Option<(u64, u64)> {
        let ttl_ms = match (self.table_type, self.ttl_seconds) {
            (TableType::Stream, Some(ttl)) => ttl.saturating_mul(1000),
            _ => return None,
        };
        let now = now_millis().max(0) as u64;
        Some((
            now.saturating_sub(ttl_ms),
            (ttl_ms / 4).clamp(1000, 3_600_000),
        ))
    }

    /// `namespace.name`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The primary-key column, if the table has one (at most one, checked at CREATE). A
    /// table without one is append-oriented: its rows are identified by `_seq`.
    pub fn key(&self) -> Option<(usize, &ColumnDef)> {
        self.columns.iter().enumerate().find(|(_, c)| c.primary_key)
    }

    /// The primary-key column, where the statement needs one: an error naming the table
    /// otherwise.
    pub fn pk(&self) -> Result<(usize, &ColumnDef)> {
        self.key().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "table {} has no primary key: its rows are identified by _seq",
                self.qualified()
            ))
        })
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<(usize, &ColumnDef)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// The table's columns only, as Arrow.
    pub fn data_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| c.field(self))
                .collect::<Vec<_>>(),
        ))
    }

    /// The schema queries see: the columns, then `_seq`; the kind in the metadata.
    pub fn query_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(|c| c.field(self)).collect();
        let mut seq_md = HashMap::new();
        seq_md.insert(
            "ARROW:FLIGHT:SQL:TYPE_NAME".to_string(),
            "BIGINT".to_string(),
        );
        seq_md.insert("ARROW:FLIGHT:SQL:IS_READ_ONLY".to_string(), "1".to_string());
        seq_md.insert(
            "ARROW:FLIGHT:SQL:REMARKS".to_string(),
            "system column: version id".to_string(),
        );
        for (key, value) in [
            ("ARROW:FLIGHT:SQL:CATALOG_NAME", quilldb_flight::CATALOG),
            ("ARROW:FLIGHT:SQL:SCHEMA_NAME", self.namespace.as_str()),
            ("ARROW:FLIGHT:SQL:TABLE_NAME", self.name.as_str()),
        ] {
            seq_md.insert(key.to_string(), value.to_string());
        }
        fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false).with_metadata(seq_md));
        let mut md = HashMap::new();
        md.insert(TABLE_TYPE_METADATA.to_string(), self.table_type.to_string());
        Arc::new(Schema::new_with_metadata(fields, md))
    }
}

/// A namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceDef {
    /// Name.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

/// A view: a stored query, planned anew at every read with the reader's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The query, as canonical SQL text.
    pub query: String,
    /// The namespace its unqualified table names mean: the creator's current one at CREATE.
    pub default_namespace: String,
    /// Names given to its columns (`CREATE VIEW v (a, b) AS ...`); empty keeps the query's.
    pub columns: Vec<String>,
    /// Who created (or last replaced) it.
    pub owner: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

impl ViewDef {
    /// `namespace.name`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The statement that makes it again.
    pub fn definition(&self) -> String {
        let columns = if self.columns.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.columns.join(", "))
        };
        format!(
            "CREATE VIEW {}{columns} AS {}",
            self.qualified(),
            self.query
        )
    }
}

/// Unix milliseconds now.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
