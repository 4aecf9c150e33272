//! GetXdbcTypeInfo: one row per SQL type of spec/sql.md.

use arrow_flight::sql::metadata::XdbcTypeInfo;
use arrow_flight::sql::{Nullable, Searchable, XdbcDataType, XdbcDatetimeSubcode};

/// One SQL type as the type-info rows describe it.
struct TypeRow {
    name: &'static str,
    ty: XdbcDataType,
    size: Option<i32>,
    /// The literal's opening quote (the closing one is `'`).
    quote: Option<&'static str>,
    subcode: Option<XdbcDatetimeSubcode>,
    numeric: bool,
}

const fn row(
    name: &'static str,
    ty: XdbcDataType,
    size: Option<i32>,
    quote: Option<&'static str>,
    subcode: Option<XdbcDatetimeSubcode>,
    numeric: bool,
) -> TypeRow {
    TypeRow {
        name,
        ty,
        size,
        quote,
        subcode,
        numeric,
    }
}

/// The SQL types, as ODBC/JDBC type info.
pub fn type_info() -> Vec<XdbcTypeInfo> {
    use XdbcDataType as T;
    use XdbcDatetimeSubcode as D;
    let rows = [
        row("BOOLEAN", T::XdbcBit, Some(1), None, None, false),
        row("SMALLINT", T::XdbcSmallint, Some(5), None, None, true),
        row("INT", T::XdbcInteger, Some(10), None, None, true),
        row("BIGINT", T::XdbcBigint, Some(19), None, None, true),
        row("REAL", T::XdbcReal, Some(7), None, None, true),
        row("DOUBLE", T::XdbcDouble, Some(15), None, None, true),
        row("DECIMAL", T::XdbcDecimal, Some(38), None, None, true),
        row("TEXT", T::XdbcVarchar, None, Some("'"), None, false),
        row("BYTEA", T::XdbcVarbinary, None, Some("'\\x"), None, false),
        // ODBC's SQL_CODE_DATE is 1, which the generated enum calls Year.
        row(
            "DATE",
            T::XdbcDate,
            Some(10),
            Some("DATE '"),
            Some(D::XdbcSubcodeYear),
            false,
        ),
        row(
            "TIME",
            T::XdbcTime,
            Some(15),
            Some("TIME '"),
            Some(D::XdbcSubcodeTime),
            false,
        ),
        row(
            "TIMESTAMP",
            T::XdbcTimestamp,
            Some(26),
            Some("TIMESTAMP '"),
            Some(D::XdbcSubcodeTimestamp),
            false,
        ),
        row(
            "TIMESTAMPTZ",
            T::XdbcTimestamp,
            Some(32),
            Some("TIMESTAMPTZ '"),
            Some(D::XdbcSubcodeTimestampWithTimezone),
            false,
        ),
        row("JSON", T::XdbcVarchar, None, Some("'"), None, false),
        row("UUID", T::XdbcChar, Some(36), Some("'"), None, false),
    ];
    rows.into_iter()
        .map(|r| {
            let decimal = r.name == "DECIMAL";
            XdbcTypeInfo {
                type_name: r.name.to_string(),
                data_type: r.ty,
                column_size: r.size,
                literal_prefix: r.quote.map(str::to_string),
                literal_suffix: r.quote.map(|_| "'".to_string()),
                create_params: decimal.then(|| vec!["precision".to_string(), "scale".to_string()]),
                nullable: Nullable::NullabilityNullable,
                case_sensitive: r.quote.is_some() && r.subcode.is_none(),
                searchable: Searchable::Full,
                unsigned_attribute: r.numeric.then_some(false),
                fixed_prec_scale: decimal,
                auto_increment: r.numeric.then_some(false),
                local_type_name: Some(r.name.to_string()),
                minimum_scale: decimal.then_some(0),
                maximum_scale: decimal.then_some(38),
                sql_data_type: r.ty,
                datetime_subcode: r.subcode,
                num_prec_radix: r.numeric.then_some(10),
                interval_precision: None,
            }
        })
        .collect()
}
