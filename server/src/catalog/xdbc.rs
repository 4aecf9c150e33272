//! GetXdbcTypeInfo: one row per SQL type of spec/sql.md.

use arrow_flight::sql::metadata::XdbcTypeInfo;
use arrow_flight::sql::{Nullable, Searchable, XdbcDataType, XdbcDatetimeSubcode};

/// The SQL types, as ODBC/JDBC type info.
pub fn type_info() -> Vec<XdbcTypeInfo> {
    use XdbcDataType as T;
    let quoted = |s: &str| Some(s.to_string());
    // (name, xdbc type, column size, literal quote, datetime subcode, numeric, scales)
    let rows: Vec<(
        &str,
        T,
        Option<i32>,
        Option<String>,
        Option<XdbcDatetimeSubcode>,
        bool,
    )> = vec![
        ("BOOLEAN", T::XdbcBit, Some(1), None, None, false),
        ("SMALLINT", T::XdbcSmallint, Some(5), None, None, true),
        ("INT", T::XdbcInteger, Some(10), None, None, true),
        ("BIGINT", T::XdbcBigint, Some(19), None, None, true),
        ("REAL", T::XdbcReal, Some(7), None, None, true),
        ("DOUBLE", T::XdbcDouble, Some(15), None, None, true),
        ("DECIMAL", T::XdbcDecimal, Some(38), None, None, true),
        ("TEXT", T::XdbcVarchar, None, quoted("'"), None, false),
        ("BYTEA", T::XdbcVarbinary, None, quoted("'\\x"), None, false),
        (
            "DATE",
            T::XdbcDate,
            Some(10),
            quoted("DATE '"),
            // ODBC SQL_CODE_DATE is 1, which the generated enum calls Year.
            Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
            false,
        ),
        (
            "TIME",
            T::XdbcTime,
            Some(15),
            quoted("TIME '"),
            Some(XdbcDatetimeSubcode::XdbcSubcodeTime),
            false,
        ),
        (
            "TIMESTAMP",
            T::XdbcTimestamp,
            Some(26),
            quoted("TIMESTAMP '"),
            Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
            false,
        ),
        (
            "TIMESTAMPTZ",
            T::XdbcTimestamp,
            Some(32),
            quoted("TIMESTAMPTZ '"),
            Some(XdbcDatetimeSubcode::XdbcSubcodeTimestampWithTimezone),
            false,
        ),
        ("JSON", T::XdbcVarchar, None, quoted("'"), None, false),
        ("UUID", T::XdbcChar, Some(36), quoted("'"), None, false),
    ];
    rows.into_iter()
        .map(|(name, ty, size, prefix, subcode, numeric)| {
            let is_text = prefix.is_some();
            let suffix = prefix.as_ref().map(|_| "'".to_string());
            XdbcTypeInfo {
                type_name: name.to_string(),
                data_type: ty,
                column_size: size,
                literal_prefix: prefix,
                literal_suffix: suffix,
                create_params: (name == "DECIMAL")
                    .then(|| vec!["precision".to_string(), "scale".to_string()]),
                nullable: Nullable::NullabilityNullable,
                case_sensitive: is_text && subcode.is_none(),
                searchable: Searchable::Full,
                unsigned_attribute: numeric.then_some(false),
                fixed_prec_scale: name == "DECIMAL",
                auto_increment: numeric.then_some(false),
                local_type_name: Some(name.to_string()),
                minimum_scale: (name == "DECIMAL").then_some(0),
                maximum_scale: (name == "DECIMAL").then_some(38),
                sql_data_type: ty,
                datetime_subcode: subcode,
                num_prec_radix: numeric.then_some(10),
                interval_precision: None,
            }
        })
        .collect()
}
