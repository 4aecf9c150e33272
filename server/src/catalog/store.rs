//! The catalog's records on disk: protobuf messages (prost) in the hot store's metadata family.
//! Keys: `catalog/ns/<name>`, `catalog/table/<id, 16 hex digits>`, `catalog/next_table_id`,
//! `catalog/view/<namespace>/<name>`.

use prost::Message;

use super::model::{
    AccessLevel, ColumnDef, DefaultExpr, FlushPolicy, NamespaceDef, TableDef, TableType, ViewDef,
};
use super::types::SqlType;
use crate::error::{Error, Result};

pub(crate) const NS_PREFIX: &str = "catalog/ns/";
pub(crate) const TABLE_PREFIX: &str = "catalog/table/";
pub(crate) const NEXT_TABLE_ID: &str = "catalog/next_table_id";
pub(crate) const VIEW_PREFIX: &str = "catalog/view/";

#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamespaceRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "2")]
    pub created_at: i64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct ColumnRecord {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub sql_type: String,
    #[prost(bool, tag = "4")]
    pub nullable: bool,
    /// 0 none, 1 snowflake, 2 uuid v7, 3 now, 4 current user, 5 literal, 6 NULL literal.
    #[prost(int32, tag = "5")]
    pub default_kind: i32,
    #[prost(string, tag = "6")]
    pub default_value: String,
    #[prost(bool, tag = "7")]
    pub primary_key: bool,
    #[prost(uint64, optional, tag = "8")]
    pub fill_before: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct TableRecord {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(int32, tag = "4")]
    pub table_type: i32,
    #[prost(message, repeated, tag = "5")]
    pub columns: Vec<ColumnRecord>,
    #[prost(int32, tag = "6")]
    pub access_level: i32,
    #[prost(string, tag = "7")]
    pub flush_policy: String,
    #[prost(uint64, optional, tag = "8")]
    pub ttl_seconds: Option<u64>,
    #[prost(string, tag = "9")]
    pub storage_id: String,
    #[prost(uint32, tag = "10")]
    pub schema_version: u32,
    #[prost(int64, tag = "11")]
    pub created_at: i64,
    #[prost(uint32, tag = "12")]
    pub next_column_id: u32,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct ViewRecord {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub query: String,
    #[prost(string, tag = "4")]
    pub default_namespace: String,
    #[prost(string, repeated, tag = "5")]
    pub columns: Vec<String>,
    #[prost(string, tag = "6")]
    pub owner: String,
    #[prost(int64, tag = "7")]
    pub created_at: i64,
}

pub(crate) fn view_key(namespace: &str, name: &str) -> Vec<u8> {
    format!("{VIEW_PREFIX}{namespace}/{name}").into_bytes()
}

pub(crate) fn encode_view(v: &ViewDef) -> Vec<u8> {
    ViewRecord {
        namespace: v.namespace.clone(),
        name: v.name.clone(),
        query: v.query.clone(),
        default_namespace: v.default_namespace.clone(),
        columns: v.columns.clone(),
        owner: v.owner.clone(),
        created_at: v.created_at,
    }
    .encode_to_vec()
}

pub(crate) fn decode_view(bytes: &[u8]) -> Result<ViewDef> {
    let r = ViewRecord::decode(bytes)
        .map_err(|e| Error::Internal(format!("corrupt view record: {e}")))?;
    Ok(ViewDef {
        namespace: r.namespace,
        name: r.name,
        query: r.query,
        default_namespace: r.default_namespace,
        columns: r.columns,
        owner: r.owner,
        created_at: r.created_at,
    })
}

pub(crate) fn ns_key(name: &str) -> Vec<u8> {
    format!("{NS_PREFIX}{name}").into_bytes()
}

pub(crate) fn table_key(id: u64) -> Vec<u8> {
    format!("{TABLE_PREFIX}{id:016x}").into_bytes()
}

pub(crate) fn encode_namespace(ns: &NamespaceDef) -> Vec<u8> {
    NamespaceRecord {
        name: ns.name.clone(),
        created_at: ns.created_at,
    }
    .encode_to_vec()
}

pub(crate) fn decode_namespace(bytes: &[u8]) -> Result<NamespaceDef> {
    let r = NamespaceRecord::decode(bytes)
        .map_err(|e| Error::Internal(format!("corrupt namespace record: {e}")))?;
    Ok(NamespaceDef {
        name: r.name,
        created_at: r.created_at,
    })
}

fn encode_default(d: &Option<DefaultExpr>) -> (i32, String) {
    match d {
        None => (0, String::new()),
        Some(DefaultExpr::SnowflakeId) => (1, String::new()),
        Some(DefaultExpr::UuidV7) => (2, String::new()),
        Some(DefaultExpr::Now) => (3, String::new()),
        Some(DefaultExpr::CurrentUser) => (4, String::new()),
        Some(DefaultExpr::Literal(Some(v))) => (5, v.clone()),
        Some(DefaultExpr::Literal(None)) => (6, String::new()),
    }
}

fn decode_default(kind: i32, value: String) -> Result<Option<DefaultExpr>> {
    Ok(match kind {
        0 => None,
        1 => Some(DefaultExpr::SnowflakeId),
        2 => Some(DefaultExpr::UuidV7),
        3 => Some(DefaultExpr::Now),
        4 => Some(DefaultExpr::CurrentUser),
        5 => Some(DefaultExpr::Literal(Some(value))),
        6 => Some(DefaultExpr::Literal(None)),
        other => return Err(Error::Internal(format!("unknown default kind {other}"))),
    })
}

pub(crate) fn encode_table(t: &TableDef) -> Vec<u8> {
    TableRecord {
        id: t.id,
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        table_type: t.table_type.code(),
        columns: t
            .columns
            .iter()
            .map(|c| {
                let (default_kind, default_value) = encode_default(&c.default);
                ColumnRecord {
                    id: c.id,
                    name: c.name.clone(),
                    sql_type: c.ty.to_string(),
                    nullable: c.nullable,
                    default_kind,
                    default_value,
                    primary_key: c.primary_key,
                    fill_before: c.fill_before,
                }
            })
            .collect(),
        access_level: t.access_level.code(),
        flush_policy: t.flush_policy.to_string(),
        ttl_seconds: t.ttl_seconds,
        storage_id: t.storage_id.clone(),
        schema_version: t.schema_version,
        created_at: t.created_at,
        next_column_id: t.next_column_id,
    }
    .encode_to_vec()
}

pub(crate) fn decode_table(bytes: &[u8]) -> Result<TableDef> {
    let r = TableRecord::decode(bytes)
        .map_err(|e| Error::Internal(format!("corrupt table record: {e}")))?;
    let columns = r
        .columns
        .into_iter()
        .map(|c| {
            Ok(ColumnDef {
                id: c.id,
                name: c.name,
                ty: SqlType::from_name(&c.sql_type)?,
                nullable: c.nullable,
                default: decode_default(c.default_kind, c.default_value)?,
                primary_key: c.primary_key,
                fill_before: c.fill_before,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TableDef {
        id: r.id,
        namespace: r.namespace,
        name: r.name,
        table_type: TableType::from_code(r.table_type)?,
        columns,
        access_level: AccessLevel::from_code(r.access_level),
        flush_policy: if r.flush_policy.is_empty() {
            FlushPolicy {
                rows: None,
                interval_secs: None,
            }
        } else {
            FlushPolicy::parse(&r.flush_policy)?
        },
        ttl_seconds: r.ttl_seconds,
        storage_id: r.storage_id,
        schema_version: r.schema_version,
        created_at: r.created_at,
        next_column_id: r.next_column_id,
    })
}
