//! The SQL types of spec/sql.md and their Arrow types.

use std::fmt;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::sql::sqlparser::ast::{DataType as SqlDataType, ExactNumberInfo, TimezoneInfo};

use crate::error::{Error, Result};

/// A column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// BOOLEAN
    Boolean,
    /// SMALLINT
    SmallInt,
    /// INT
    Int,
    /// BIGINT
    BigInt,
    /// REAL
    Real,
    /// DOUBLE
    Double,
    /// DECIMAL(p, s)
    Decimal(u8, i8),
    /// TEXT
    Text,
    /// BYTEA
    Bytes,
    /// DATE
    Date,
    /// TIME (µs)
    Time,
    /// TIMESTAMP (µs, no zone)
    Timestamp,
    /// TIMESTAMPTZ (µs, UTC)
    TimestampTz,
    /// JSON, validated on write
    Json,
    /// UUID in canonical text form, validated on write
    Uuid,
}

impl SqlType {
    /// The Arrow type of a column of this type.
    pub fn arrow(self) -> DataType {
        match self {
            Self::Boolean => DataType::Boolean,
            Self::SmallInt => DataType::Int16,
            Self::Int => DataType::Int32,
            Self::BigInt => DataType::Int64,
            Self::Real => DataType::Float32,
            Self::Double => DataType::Float64,
            Self::Decimal(p, s) => DataType::Decimal128(p, s),
            Self::Text | Self::Json | Self::Uuid => DataType::Utf8,
            Self::Bytes => DataType::Binary,
            Self::Date => DataType::Date32,
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// Whether a primary key may have this type.
    pub fn can_be_key(self) -> bool {
        matches!(
            self,
            Self::SmallInt | Self::Int | Self::BigInt | Self::Text | Self::Uuid | Self::Bytes
        )
    }

    /// Maps a parsed SQL type.
    pub fn from_sql(dt: &SqlDataType) -> Result<Self> {
        use SqlDataType as D;
        Ok(match dt {
            D::Boolean | D::Bool => Self::Boolean,
            D::SmallInt(_) | D::Int2(_) | D::Int16 | D::TinyInt(_) => Self::SmallInt,
            D::Int(_) | D::Integer(_) | D::Int4(_) | D::Int32 | D::MediumInt(_) => Self::Int,
            D::BigInt(_) | D::Int8(_) | D::Int64 => Self::BigInt,
            D::Real | D::Float4 | D::Float32 => Self::Real,
            // FLOAT(p) with p <= 24 is single precision, as in PostgreSQL.
            D::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => Self::Real,
            D::Double(_) | D::DoublePrecision | D::Float8 | D::Float64 | D::Float(_) => {
                Self::Double
            }
            D::Decimal(info) | D::Numeric(info) | D::Dec(info) => match info {
                ExactNumberInfo::None => Self::Decimal(38, 10),
                ExactNumberInfo::Precision(p) => Self::Decimal(precision(*p)?, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => {
                    let p = precision(*p)?;
                    let s = i8::try_from(*s)
                        .ok()
                        .filter(|s| *s >= 0 && (*s as u8) <= p)
                        .ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "DECIMAL scale {s} must be between 0 and the precision {p}"
                            ))
                        })?;
                    Self::Decimal(p, s)
                }
            },
            // CHAR(n) is text as stored, not blank-padded (see the SQL reference's type table).
            D::Text
            | D::Varchar(_)
            | D::Nvarchar(_)
            | D::String(_)
            | D::CharVarying(_)
            | D::CharacterVarying(_)
            | D::Char(_)
            | D::Character(_)
            | D::Clob(_)
            | D::CharacterLargeObject(_)
            | D::CharLargeObject(_) => Self::Text,
            D::Bytea | D::Blob(_) | D::Bytes(_) | D::Varbinary(_) | D::Binary(_) => Self::Bytes,
            D::Date => Self::Date,
            D::Time(_, _) => Self::Time,
            D::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => Self::TimestampTz,
            D::Timestamp(_, _) | D::Datetime(_) => Self::Timestamp,
            D::JSON | D::JSONB => Self::Json,
            D::Uuid => Self::Uuid,
            D::Custom(name, args) if args.is_empty() => Self::from_name(&name.to_string())?,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unsupported column type {other}; see the type table in the SQL reference"
                )));
            }
        })
    }

    /// Parses the canonical name written by [`fmt::Display`] (and a few aliases).
    pub fn from_name(name: &str) -> Result<Self> {
        let upper = name.trim().to_ascii_uppercase();
        if let Some(args) = upper
            .strip_prefix("DECIMAL(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (p, s) = args.split_once(',').unwrap_or((args, "0"));
            let p: u8 = p.trim().parse().map_err(|_| bad_type(name))?;
            let s: i8 = s.trim().parse().map_err(|_| bad_type(name))?;
            return Ok(Self::Decimal(p, s));
        }
        Ok(match upper.as_str() {
            "BOOLEAN" | "BOOL" => Self::Boolean,
            "SMALLINT" | "INT2" => Self::SmallInt,
            "INT" | "INTEGER" | "INT4" => Self::Int,
            "BIGINT" | "INT8" => Self::BigInt,
            "REAL" | "FLOAT4" => Self::Real,
            "DOUBLE" | "FLOAT8" | "FLOAT" => Self::Double,
            "TEXT" | "VARCHAR" | "STRING" | "CHAR" | "CHARACTER" | "BPCHAR" => Self::Text,
            "BYTEA" | "BYTES" | "BLOB" => Self::Bytes,
            "DATE" => Self::Date,
            "TIME" => Self::Time,
            "TIMESTAMP" => Self::Timestamp,
            "TIMESTAMPTZ" => Self::TimestampTz,
            "JSON" | "JSONB" => Self::Json,
            "UUID" => Self::Uuid,
            _ => return Err(bad_type(name)),
        })
    }
}

fn bad_type(name: &str) -> Error {
    Error::InvalidArgument(format!(
        "unsupported column type {name}; see the type table in the SQL reference"
    ))
}

fn precision(p: u64) -> Result<u8> {
    u8::try_from(p)
        .ok()
        .filter(|p| (1..=38).contains(p))
        .ok_or_else(|| Error::InvalidArgument(format!("DECIMAL precision {p} must be 1 to 38")))
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Boolean => f.write_str("BOOLEAN"),
            Self::SmallInt => f.write_str("SMALLINT"),
            Self::Int => f.write_str("INT"),
            Self::BigInt => f.write_str("BIGINT"),
            Self::Real => f.write_str("REAL"),
            Self::Double => f.write_str("DOUBLE"),
            Self::Decimal(p, s) => write!(f, "DECIMAL({p},{s})"),
            Self::Text => f.write_str("TEXT"),
            Self::Bytes => f.write_str("BYTEA"),
            Self::Date => f.write_str("DATE"),
            Self::Time => f.write_str("TIME"),
            Self::Timestamp => f.write_str("TIMESTAMP"),
            Self::TimestampTz => f.write_str("TIMESTAMPTZ"),
            Self::Json => f.write_str("JSON"),
            Self::Uuid => f.write_str("UUID"),
        }
    }
}

/// Casts that fail on values that do not fit instead of making them NULL.
pub const STRICT: arrow::compute::CastOptions<'static> = arrow::compute::CastOptions {
    safe: false,
    format_options: arrow::util::display::FormatOptions::new(),
};

/// `a` as column `column` of type `ty` stores it; a value that does not fit is an error naming
/// the column.
pub fn cast_column(
    a: &arrow::array::ArrayRef,
    column: &str,
    ty: SqlType,
) -> Result<arrow::array::ArrayRef> {
    let target = ty.arrow();
    if a.data_type() == &target {
        return Ok(a.clone());
    }
    arrow::compute::cast_with_options(a, &target, &STRICT).map_err(|e| {
        Error::InvalidArgument(format!("column {column}: value does not fit {ty}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_round_trip() {
        for t in [
            SqlType::Boolean,
            SqlType::SmallInt,
            SqlType::Int,
            SqlType::BigInt,
            SqlType::Real,
            SqlType::Double,
            SqlType::Decimal(12, 3),
            SqlType::Text,
            SqlType::Bytes,
            SqlType::Date,
            SqlType::Time,
            SqlType::Timestamp,
            SqlType::TimestampTz,
            SqlType::Json,
            SqlType::Uuid,
        ] {
            assert_eq!(SqlType::from_name(&t.to_string()).ok(), Some(t));
        }
    }

    /// The column types `pg_dump` writes (and TPC-H's schema) map as the type table says.
    #[test]
    fn pg_dump_types_are_accepted() {
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        let cases = [
            ("character(25)", SqlType::Text),
            ("char(1)", SqlType::Text),
            ("character varying(152)", SqlType::Text),
            ("varchar", SqlType::Text),
            ("numeric(15,2)", SqlType::Decimal(15, 2)),
            ("numeric", SqlType::Decimal(38, 10)),
            ("double precision", SqlType::Double),
            ("real", SqlType::Real),
            ("float(24)", SqlType::Real),
            ("float(53)", SqlType::Double),
            ("smallint", SqlType::SmallInt),
            ("integer", SqlType::Int),
            ("bigint", SqlType::BigInt),
            ("boolean", SqlType::Boolean),
            ("bytea", SqlType::Bytes),
            ("date", SqlType::Date),
            ("time without time zone", SqlType::Time),
            ("timestamp without time zone", SqlType::Timestamp),
            ("timestamp with time zone", SqlType::TimestampTz),
            ("timestamptz", SqlType::TimestampTz),
            ("jsonb", SqlType::Json),
            ("uuid", SqlType::Uuid),
        ];
        for (text, want) in cases {
            let dt = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(text)
                .and_then(|mut p| p.parse_data_type())
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(SqlType::from_sql(&dt).ok(), Some(want), "{text}");
        }
    }
}
