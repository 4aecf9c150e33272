//! What the metadata calls answer: SqlInfo, primary and foreign keys, type info.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, StringArray, UInt8Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{SqlInfo, SqlSupportedCaseSensitivity, SqlSupportedTransaction};
use tonic::Status;

use crate::CATALOG;
use crate::backend::{ServerInfo, TableEntry};
use crate::error::Error;

/// The SqlInfo values of the server, ready to answer GetSqlInfo.
pub struct ServerSqlInfo {
    /// Every value, by id, for replies to a list of ids.
    data: SqlInfoData,
    /// The reply to a request with no ids, in the order Grafana reads it.
    everything: RecordBatch,
}

/// The ids of the keyword and function lists (508..=512).
const GRAFANA_LISTS: std::ops::RangeInclusive<u32> =
    SqlInfo::SqlKeywords as u32..=SqlInfo::SqlDatetimeFunctions as u32;
/// The row at which Grafana's Flight SQL editor reads the keyword list of a
/// no-ids reply: it reads `value` by position, rows 17 to 21, as laid out by
/// the servers it was written against.
const GRAFANA_FIRST_LIST_ROW: usize = 17;

impl ServerSqlInfo {
    /// The values of the server described by `info`.
    pub fn new(info: &ServerInfo) -> Result<Self, Status> {
        let data = sql_info(info)?;
        let everything = grafana_order(&data.record_batch([]).map_err(internal)?)?;
        Ok(Self { data, everything })
    }

    /// The schema of every reply.
    pub fn schema(&self) -> SchemaRef {
        self.data.schema()
    }

    /// The reply to GetSqlInfo for `ids`: those ids in id order, or, with no
    /// ids, every value with the keyword and function lists at rows 17 to 21.
    /// A client that reads by id finds the same values either way.
    pub fn reply(&self, ids: Vec<u32>) -> Result<RecordBatch, Status> {
        if ids.is_empty() {
            return Ok(self.everything.clone());
        }
        self.data.record_batch(ids).map_err(internal)
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::from(Error::Internal(format!("building SqlInfo: {e}")))
}

/// `all` (sorted by id) with the rows of the keyword and function lists
/// moved to row 17, the other rows keeping their order around them.
fn grafana_order(all: &RecordBatch) -> Result<RecordBatch, Status> {
    let ids = all
        .column(0)
        .as_any()
        .downcast_ref::<UInt32Array>()
        .ok_or_else(|| internal("info_name is not UInt32"))?;
    let (lists, others): (Vec<u32>, Vec<u32>) =
        (0..ids.len() as u32).partition(|&row| GRAFANA_LISTS.contains(&ids.value(row as usize)));
    let split = GRAFANA_FIRST_LIST_ROW.min(others.len());
    let order: Vec<u32> = others[..split]
        .iter()
        .chain(&lists)
        .chain(&others[split..])
        .copied()
        .collect();
    take_record_batch(all, &UInt32Array::from(order)).map_err(internal)
}

/// The SqlInfo values of the server.
fn sql_info(info: &ServerInfo) -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, info.name.as_str());
    b.append(SqlInfo::FlightSqlServerVersion, info.version.as_str());
    b.append(SqlInfo::FlightSqlServerArrowVersion, arrow::ARROW_VERSION);
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::Transaction as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, true);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    // Unquoted identifiers fold to lower case; quoted ones keep their case.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, false);
    b.append(SqlInfo::SqlTransactionsSupported, true);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    b.append(SqlInfo::SqlMaxColumnNameLength, 64i64);
    b.append(SqlInfo::SqlDbSchemaNameLength, 32i64);
    b.append(SqlInfo::SqlMaxTableNameLength, 64i64);
    b.append(SqlInfo::SqlMaxUsernameLength, 64i64);
    b.append(SqlInfo::SqlMaxCatalogNameLength, 5i64);
    b.append(SqlInfo::SqlSchemaTerm, "namespace");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(SqlInfo::SqlSystemFunctions, SYSTEM_FUNCTIONS);
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.build().map_err(internal)
}

/// The schema of GetPrimaryKeys.
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The primary keys of the tables that match the filters.
pub fn primary_keys(
    tables: &[TableEntry],
    catalog: Option<&str>,
    db_schema: Option<&str>,
    table: &str,
) -> Result<RecordBatch, Status> {
    let rows: Vec<&TableEntry> = tables
        .iter()
        .filter(|_| catalog.is_none_or(|c| c == CATALOG))
        .filter(|t| db_schema.is_none_or(|s| s == t.schema_name))
        .filter(|t| t.table_name == table)
        .filter(|t| t.primary_key.is_some())
        .collect();
    let n = rows.len();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![Some(CATALOG); n])),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|t| Some(t.schema_name.as_str())),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|t| t.table_name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter()
                .map(|t| t.primary_key.as_deref().unwrap_or_default()),
        )),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        Arc::new(Int32Array::from(vec![1; n])),
    ];
    RecordBatch::try_new(primary_keys_schema(), cols)
        .map_err(|e| Status::from(Error::Internal(e.to_string())))
}

/// The schema of GetExportedKeys, GetImportedKeys and GetCrossReference.
pub fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// QuillDB has no foreign keys: an empty batch of the right schema.
pub fn foreign_keys() -> Result<RecordBatch, Status> {
    let schema = foreign_keys_schema();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int32 => Arc::new(Int32Array::from(Vec::<i32>::new())) as ArrayRef,
            DataType::UInt8 => Arc::new(UInt8Array::from(Vec::<u8>::new())),
            _ => Arc::new(StringArray::from(Vec::<&str>::new())),
        })
        .collect();
    RecordBatch::try_new(schema, cols).map_err(|e| Status::from(Error::Internal(e.to_string())))
}

const KEYWORDS: &[&str] = &[
    "NAMESPACE",
    "STORAGE",
    "FLUSH",
    "COMPACT",
    "MANIFEST",
    "SUBSCRIBE",
    "LIVE",
    "STREAM",
    "SHARED",
    "TTL_SECONDS",
    "FLUSH_POLICY",
    "ACCESS_LEVEL",
    "STORAGE_ID",
    "IMPERSONATE",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "ceil", "floor", "round", "trunc", "sqrt", "power", "exp", "ln", "log", "log10", "mod",
    "random", "sin", "cos", "tan", "pi", "signum",
];
const STRING_FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "length",
    "char_length",
    "concat",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "replace",
    "split_part",
    "starts_with",
    "strpos",
    "lpad",
    "rpad",
    "left",
    "right",
    "regexp_replace",
    "regexp_match",
    "md5",
    "sha256",
];
const SYSTEM_FUNCTIONS: &[&str] = &[
    "snowflake_id",
    "uuid_v7",
    "current_user",
    "current_role",
    "arrow_typeof",
    "version",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "date_trunc",
    "date_part",
    "extract",
    "to_timestamp",
    "to_date",
    "from_unixtime",
    "date_bin",
];
