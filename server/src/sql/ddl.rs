//! Namespaces and tables: CREATE, DROP, SHOW, USE, DESCRIBE.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, CreateTableOptions, Expr, SqlOption, TableConstraint, UnaryOperator,
    Value,
};

use crate::authz::{self, Access};
use crate::catalog::names::{NameKind, validate};
use crate::catalog::types::SqlType;
use crate::catalog::{AccessLevel, ColumnDef, DefaultExpr, FlushPolicy, TableDef, TableType};
use crate::engine::{CatalogEvent, Database};
use crate::error::{Error, Result};
use crate::session::Caller;
use crate::sql::parser::normalize;

/// Why a composite primary key is refused, and what to do instead.
const COMPOSITE_KEY: &str = "composite primary keys are not supported: declare one PRIMARY KEY \
     column, or none (a table without a primary key identifies its rows by _seq)";

pub use crate::catalog::DEFAULT_STORAGE;

/// CREATE NAMESPACE.
pub async fn create_namespace(db: &Database, name: &str, if_not_exists: bool) -> Result<()> {
    validate(NameKind::Namespace, name)?;
    db.catalog.create_namespace(name, if_not_exists).await?;
    Ok(())
}

/// DROP NAMESPACE: every table in it goes too.
pub async fn drop_namespace(
    db: &Database,
    caller: &Caller,
    name: &str,
    if_exists: bool,
) -> Result<()> {
    for def in db.catalog.tables(Some(name)) {
        db.jobs.cancel_table(def.id).await;
        db.events
            .publish(CatalogEvent::TableChanged {
                table_id: def.id,
                code: "table_dropped",
                message: format!("namespace {name} was dropped"),
            })
            .await;
    }
    let dropped = db.catalog.drop_namespace(name, if_exists).await?;
    for def in &dropped {
        remove_cold_files(db, def).await;
    }
    if caller.namespace().as_deref() == Some(name) {
        caller.set_namespace(None);
    }
    tracing::info!(
        namespace = name,
        tables = dropped.len(),
        "namespace dropped"
    );
    Ok(())
}

/// USE ns.
pub fn use_namespace(db: &Database, caller: &Caller, name: &str) -> Result<()> {
    db.require_namespace(caller, name)?;
    caller.set_namespace(Some(name.to_string()));
    Ok(())
}

fn literal_text(e: &Expr) -> Option<Option<String>> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(Some(n.clone())),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(Some(s.clone())),
            Value::Boolean(b) => Some(Some(b.to_string())),
            Value::Null => Some(None),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal_text(expr) {
            Some(Some(n)) => Some(Some(format!("-{n}"))),
            _ => None,
        },
        Expr::Nested(inner) => literal_text(inner),
        _ => None,
    }
}

fn parse_default(e: &Expr, column: &str, ty: SqlType) -> Result<DefaultExpr> {
    let function = match e {
        Expr::Function(f) => Some(f.name.to_string().to_ascii_lowercase()),
        Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        _ => None,
    };
    let bad_fit = |what: &str| {
        Error::InvalidArgument(format!(
            "column {column}: default {what} does not fit type {ty}"
        ))
    };
    let d = match function.as_deref() {
        Some("snowflake_id") => {
            if !matches!(ty, SqlType::BigInt) {
                return Err(bad_fit("SNOWFLAKE_ID()"));
            }
            DefaultExpr::SnowflakeId
        }
        Some("uuid_v7") => {
            if !matches!(ty, SqlType::Uuid | SqlType::Text) {
                return Err(bad_fit("UUID_V7()"));
            }
            DefaultExpr::UuidV7
        }
        Some("now" | "current_timestamp") => {
            if !matches!(
                ty,
                SqlType::Timestamp | SqlType::TimestampTz | SqlType::Date | SqlType::Text
            ) {
                return Err(bad_fit("NOW()"));
            }
            DefaultExpr::Now
        }
        Some("current_user") => {
            if !matches!(ty, SqlType::Text) {
                return Err(bad_fit("CURRENT_USER()"));
            }
            DefaultExpr::CurrentUser
        }
        _ => {
            let text = literal_text(e).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "column {column}: unsupported default {e}; use a constant, SNOWFLAKE_ID(), \
                     UUID_V7(), NOW() or CURRENT_USER()"
                ))
            })?;
            if let Some(t) = &text {
                ScalarValue::Utf8(Some(t.clone()))
                    .cast_to(&ty.arrow())
                    .map_err(|_| bad_fit(&format!("'{t}'")))?;
            }
            DefaultExpr::Literal(text)
        }
    };
    Ok(d)
}

/// Refuses options given to a table type they do not apply to, naming the option.
pub fn check_options_apply(
    table_type: TableType,
    ttl: bool,
    access: bool,
    flush_policy: bool,
) -> Result<()> {
    if ttl && table_type != TableType::Stream {
        return Err(Error::InvalidArgument(format!(
            "option TTL_SECONDS applies to STREAM tables only, not {table_type}"
        )));
    }
    if access && table_type != TableType::Shared {
        return Err(Error::InvalidArgument(format!(
            "option ACCESS_LEVEL applies to SHARED tables only, not {table_type}"
        )));
    }
    if flush_policy && table_type == TableType::Stream {
        return Err(Error::InvalidArgument(
            "option FLUSH_POLICY does not apply to STREAM tables: they are never flushed".into(),
        ));
    }
    Ok(())
}

/// One `KEY = value` table option (CREATE TABLE ... WITH, ALTER TABLE ... SET).
pub enum TableOption {
    /// TYPE
    Type(TableType),
    /// FLUSH_POLICY
    FlushPolicy(FlushPolicy),
    /// TTL_SECONDS
    Ttl(u64),
    /// ACCESS_LEVEL
    Access(AccessLevel),
    /// STORAGE_ID
    Storage(String),
}

/// Parses one table option; an unknown key is an error that lists the known ones.
pub fn table_option(opt: &SqlOption) -> Result<TableOption> {
    let SqlOption::KeyValue { key, value } = opt else {
        return Err(Error::InvalidArgument(format!(
            "unsupported table option {opt}"
        )));
    };
    let k = key.value.to_ascii_uppercase();
    let v = option_text(&k, value)?;
    Ok(match k.as_str() {
        "TYPE" => TableOption::Type(TableType::parse(&v).ok_or_else(|| {
            Error::InvalidArgument(format!("TYPE {v:?}: expected 'USER', 'SHARED' or 'STREAM'"))
        })?),
        "FLUSH_POLICY" => TableOption::FlushPolicy(FlushPolicy::parse(&v)?),
        "TTL_SECONDS" => {
            TableOption::Ttl(v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "TTL_SECONDS {v:?}: expected a positive whole number"
                ))
            })?)
        }
        "ACCESS_LEVEL" => TableOption::Access(AccessLevel::parse(&v).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "ACCESS_LEVEL {v:?}: expected 'PUBLIC', 'PROTECTED' or 'PRIVATE'"
            ))
        })?),
        "STORAGE_ID" => TableOption::Storage(v.to_lowercase()),
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown table option {other}; known: TYPE, FLUSH_POLICY, TTL_SECONDS, ACCESS_LEVEL, STORAGE_ID"
            )));
        }
    })
}

fn option_text(key: &str, value: &Expr) -> Result<String> {
    literal_text(value).flatten().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "table option {key} needs a constant value, got {value}"
        ))
    })
}

/// One column of CREATE TABLE or ALTER TABLE ADD COLUMN, with stable id `id`.
pub fn column_def(c: &datafusion::sql::sqlparser::ast::ColumnDef, id: u32) -> Result<ColumnDef> {
    let col_name = normalize(&c.name);
    validate(NameKind::Column, &col_name)?;
    let type_name = c.data_type.to_string().to_ascii_uppercase();
    let serial = matches!(type_name.as_str(), "SERIAL" | "BIGSERIAL");
    let ty = if serial {
        SqlType::BigInt
    } else {
        SqlType::from_sql(&c.data_type)?
    };
    let mut col = ColumnDef {
        id,
        name: col_name.clone(),
        ty,
        nullable: true,
        default: serial.then_some(DefaultExpr::SnowflakeId),
        primary_key: false,
        fill_before: None,
    };
    for opt in &c.options {
        match &opt.option {
            ColumnOption::NotNull => col.nullable = false,
            ColumnOption::Null => {}
            ColumnOption::Default(e) => col.default = Some(parse_default(e, &col_name, ty)?),
            ColumnOption::PrimaryKey(_) => col.primary_key = true,
            ColumnOption::DialectSpecific(tokens)
                if tokens
                    .iter()
                    .any(|t| t.to_string().eq_ignore_ascii_case("AUTO_INCREMENT")) =>
            {
                if ty != SqlType::BigInt {
                    return Err(Error::InvalidArgument(format!(
                        "column {col_name}: AUTO_INCREMENT needs BIGINT"
                    )));
                }
                col.default = Some(DefaultExpr::SnowflakeId);
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "column {col_name}: unsupported column option {other}"
                )));
            }
        }
    }
    Ok(col)
}

/// Builds the table definition from CREATE TABLE, validating names, types and options.
pub fn table_def(
    namespace: &str,
    prefix: Option<TableType>,
    stmt: &CreateTable,
    default_storage: &str,
) -> Result<TableDef> {
    let name_parts = crate::sql::parser::name_parts(&stmt.name)?;
    let name = name_parts.last().cloned().unwrap_or_default();
    validate(NameKind::Table, &name)?;
    if stmt.query.is_some() {
        return Err(Error::Unsupported("CREATE TABLE ... AS SELECT".into()));
    }
    if stmt.columns.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "table {name} needs at least one column"
        )));
    }
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(stmt.columns.len());
    for (i, c) in stmt.columns.iter().enumerate() {
        let col = column_def(c, i as u32 + 1)?;
        if columns.iter().any(|x| x.name == col.name) {
            return Err(Error::InvalidArgument(format!(
                "column {} is defined twice",
                col.name
            )));
        }
        columns.push(col);
    }
    for constraint in &stmt.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                if pk.columns.len() != 1 {
                    return Err(Error::InvalidArgument(COMPOSITE_KEY.into()));
                }
                let key = pk.columns[0]
                    .column
                    .expr
                    .to_string()
                    .trim_matches('"')
                    .to_lowercase();
                let col = columns.iter_mut().find(|c| c.name == key).ok_or_else(|| {
                    Error::NotFound(format!(
                        "PRIMARY KEY names column {key}, which is not defined"
                    ))
                })?;
                col.primary_key = true;
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unsupported table constraint {other}"
                )));
            }
        }
    }
    // No key: an append-oriented table whose rows are identified by `_seq`.
    if columns.iter().filter(|c| c.primary_key).count() > 1 {
        return Err(Error::InvalidArgument(COMPOSITE_KEY.into()));
    }
    for c in columns.iter_mut().filter(|c| c.primary_key) {
        if !c.ty.can_be_key() {
            return Err(Error::InvalidArgument(format!(
                "column {}: a primary key must be SMALLINT, INT, BIGINT, TEXT, UUID or BYTEA, not {}",
                c.name, c.ty
            )));
        }
        c.nullable = false;
    }

    let mut declared_type: Option<TableType> = None;
    let mut flush_policy = None;
    let mut ttl = None;
    let mut access = None;
    let mut storage = None;
    let options: &[SqlOption] = match &stmt.table_options {
        CreateTableOptions::None => &[],
        CreateTableOptions::With(o) | CreateTableOptions::Options(o) => o,
        other => {
            return Err(Error::InvalidArgument(format!(
                "unsupported table options {other}: use WITH (KEY = 'value', ...)"
            )));
        }
    };
    for opt in options {
        match table_option(opt)? {
            TableOption::Type(t) => declared_type = Some(t),
            TableOption::FlushPolicy(p) => flush_policy = Some(p),
            TableOption::Ttl(t) => ttl = Some(t),
            TableOption::Access(a) => access = Some(a),
            TableOption::Storage(id) => storage = Some(id),
        }
    }
    let table_type = match (prefix, declared_type) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::InvalidArgument(format!(
                "option TYPE = '{b}' conflicts with CREATE {a} TABLE"
            )));
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => TableType::Shared,
    };
    check_options_apply(
        table_type,
        ttl.is_some(),
        access.is_some(),
        flush_policy.is_some(),
    )?;
    if table_type == TableType::Stream && ttl.is_none() {
        return Err(Error::InvalidArgument(
            "option TTL_SECONDS is required for STREAM tables".into(),
        ));
    }
    // Whether the storage exists is checked by CREATE TABLE against the registry.
    let storage_id = storage.unwrap_or_else(|| default_storage.to_string());
    let next_column_id = columns.len() as u32 + 1;
    Ok(TableDef {
        id: 0,
        namespace: namespace.to_string(),
        name,
        table_type,
        columns,
        access_level: access.unwrap_or(AccessLevel::Private),
        flush_policy: flush_policy.unwrap_or_default(),
        ttl_seconds: ttl,
        storage_id,
        schema_version: 1,
        created_at: 0,
        next_column_id,
    })
}

/// CREATE TABLE.
pub async fn create_table(
    db: &Database,
    caller: &Caller,
    prefix: Option<TableType>,
    stmt: &CreateTable,
) -> Result<()> {
    let (namespace, _) = db.resolve_table_name(caller, &stmt.name)?;
    let def = table_def(&namespace, prefix, stmt, &db.storages.default_id)?;
    db.storages.get(&def.storage_id).map_err(|e| match e {
        Error::NotFound(m) if def.storage_id == db.storages.default_id => {
            Error::FailedPrecondition(format!(
                "{m}: storage.default_storage names it; create it first or name STORAGE_ID"
            ))
        }
        e => e,
    })?;
    db.catalog.create_table(def, stmt.if_not_exists).await?;
    Ok(())
}

/// DROP TABLE.
pub async fn drop_table(
    db: &Database,
    caller: &Caller,
    name: &datafusion::sql::sqlparser::ast::ObjectName,
    if_exists: bool,
) -> Result<()> {
    let (ns, table) = db.resolve_table_name(caller, name)?;
    // Jobs of the table stop first, so none writes into its folder after the clean-up.
    if let Some(def) = db.catalog.table(&ns, &table) {
        db.jobs.cancel_table(def.id).await;
        db.events
            .publish(CatalogEvent::TableChanged {
                table_id: def.id,
                code: "table_dropped",
                message: format!("{} was dropped", def.qualified()),
            })
            .await;
    }
    if let Some(def) = db.catalog.drop_table(&ns, &table, if_exists).await? {
        remove_cold_files(db, &def).await;
    }
    Ok(())
}

/// Removes a dropped table's cold files through a clean-up job, waiting (bounded) for it so
/// that a table created again under the name starts from an empty folder. Were it to fail, the
/// manifest's table id keeps the old files from being read, and the next flush removes them.
async fn remove_cold_files(db: &Database, def: &TableDef) {
    db.hot
        .pending()
        .forget_table(&quilldb_storage::keys::PartitionKey::table_prefix(def.id));
    let Ok(storage) = db.storages.get(&def.storage_id) else {
        return;
    };
    let root = storage.table_root(def);
    match db
        .jobs
        .submit_cleanup(
            def.namespace.clone(),
            def.name.clone(),
            def.id,
            Some((def.storage_id.clone(), root.to_string())),
        )
        .await
    {
        Ok(id) => {
            db.jobs.wait(&id, std::time::Duration::from_secs(30)).await;
        }
        Err(e) => tracing::warn!(table = %def.qualified(), error = %e, "cannot queue the clean-up"),
    }
}

fn millis(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
}

/// SHOW NAMESPACES.
pub fn show_namespaces(db: &Database, caller: &Caller) -> Result<RecordBatch> {
    let visible = db.schema_names(caller);
    let mut ns = db.catalog.namespaces();
    ns.retain(|n| visible.contains(&n.name));
    let schema = Arc::new(Schema::new(vec![
        Field::new("namespace", DataType::Utf8, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                ns.iter().map(|n| n.name.as_str()),
            )),
            millis(ns.iter().map(|n| n.created_at).collect()),
        ],
    )?)
}

/// SHOW TABLES [IN ns].
pub fn show_tables(db: &Database, caller: &Caller, ns: Option<&str>) -> Result<RecordBatch> {
    let ns = match ns {
        Some(n) => Some(n.to_string()),
        None => caller.namespace(),
    };
    if let Some(n) = &ns {
        db.require_namespace(caller, n)?;
    }
    let mut rows: Vec<(String, String, String)> = db
        .catalog
        .tables(ns.as_deref())
        .into_iter()
        .filter(|t| authz::can_read(caller.role, t))
        .map(|t| {
            (
                t.namespace.clone(),
                t.name.clone(),
                t.table_type.to_string(),
            )
        })
        .collect();
    // Views: anyone may read one (the rights apply to the tables under it).
    rows.extend(
        db.catalog
            .views(ns.as_deref())
            .into_iter()
            .map(|v| (v.namespace.clone(), v.name.clone(), "VIEW".to_string())),
    );
    rows.sort();
    let schema = Arc::new(Schema::new(vec![
        Field::new("namespace", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("table_type", DataType::Utf8, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.2))),
        ],
    )?)
}

/// DESCRIBE TABLE: one row per column, with the table's facts on every row.
pub async fn describe(
    db: &Database,
    caller: &Caller,
    name: &datafusion::sql::sqlparser::ast::ObjectName,
) -> Result<RecordBatch> {
    let def = db.table_for(caller, name, Access::Read)?;
    let partition =
        quilldb_storage::keys::PartitionKey::new(def.id, &db.partition_of(&def, caller)?)?;
    let manifest = db.manifest(&def, &partition).await?;
    let cold_max = manifest.as_ref().map_or(0, |m| m.max_seq());
    let hot_rows = db.hot.count_live(&partition, cold_max)? as i64;
    let (cold_rows, segments) = match &manifest {
        Some(m) => {
            let superseded = {
                let p = partition.clone();
                let hot = db.hot.clone();
                tokio::task::spawn_blocking(move || hot.view(|v| v.deleted(&p)))
                    .await
                    .map_err(|e| Error::Internal(format!("describe: {e}")))??
            };
            let dead = m.segments.iter().map(|s| s.deleted).sum::<u64>()
                + superseded.iter().filter(|s| **s <= cold_max).count() as u64;
            (
                m.rows().saturating_sub(dead) as i64,
                m.segments.len() as i64,
            )
        }
        None => (0, 0),
    };
    let n = def.columns.len();
    let repeat = |s: String| -> ArrayRef { Arc::new(StringArray::from(vec![s; n])) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("column_name", DataType::Utf8, false),
        Field::new("data_type", DataType::Utf8, false),
        Field::new("is_nullable", DataType::Boolean, false),
        Field::new("column_default", DataType::Utf8, true),
        Field::new("is_primary_key", DataType::Boolean, false),
        Field::new("table_type", DataType::Utf8, false),
        Field::new("options", DataType::Utf8, false),
        Field::new("storage_id", DataType::Utf8, false),
        Field::new("hot_rows", DataType::Int64, false),
        Field::new("cold_rows", DataType::Int64, false),
        Field::new("segments", DataType::Int64, false),
        Field::new("schema_version", DataType::Int64, false),
    ]));
    let mut options = vec![format!("FLUSH_POLICY='{}'", def.flush_policy)];
    if def.table_type == TableType::Shared {
        options.push(format!("ACCESS_LEVEL='{}'", def.access_level));
    }
    if let Some(t) = def.ttl_seconds {
        options.push(format!("TTL_SECONDS={t}"));
    }
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                def.columns.iter().map(|c| c.name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                def.columns.iter().map(|c| c.ty.to_string()),
            )),
            Arc::new(BooleanArray::from(
                def.columns.iter().map(|c| c.nullable).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                def.columns
                    .iter()
                    .map(|c| c.default.as_ref().map(|d| d.sql()))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                def.columns
                    .iter()
                    .map(|c| c.primary_key)
                    .collect::<Vec<_>>(),
            )),
            repeat(def.table_type.to_string()),
            repeat(options.join(", ")),
            repeat(def.storage_id.clone()),
            Arc::new(Int64Array::from(vec![hot_rows; n])),
            Arc::new(Int64Array::from(vec![cold_rows; n])),
            Arc::new(Int64Array::from(vec![segments; n])),
            Arc::new(Int64Array::from(vec![i64::from(def.schema_version); n])),
        ],
    )?)
}
