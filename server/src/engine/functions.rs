//! QuillDB's SQL functions: `SNOWFLAKE_ID()`, `UUID_V7()`, `CURRENT_USER()`, `CURRENT_ROLE()`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use quilldb_storage::hot::HotStore;

/// Snowflake ids come from the hot store's generator, so they share `_seq`'s guarantees.
#[derive(Debug, Clone)]
struct IdSource(Arc<HotStore>);

impl PartialEq for IdSource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for IdSource {}
impl Hash for IdSource {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state);
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SnowflakeId {
    ids: IdSource,
    signature: Signature,
}

impl ScalarUDFImpl for SnowflakeId {
    fn name(&self) -> &str {
        "snowflake_id"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let seq = self.ids.0.seq();
        let ids: Int64Array = (0..args.number_rows.max(1))
            .map(|_| seq.next_id() as i64)
            .collect();
        Ok(ColumnarValue::Array(Arc::new(ids)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct UuidV7 {
    signature: Signature,
}

impl ScalarUDFImpl for UuidV7 {
    fn name(&self) -> &str {
        "uuid_v7"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let ids: StringArray = (0..args.number_rows.max(1))
            .map(|_| Some(uuid::Uuid::now_v7().to_string()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(ids)))
    }
}

/// A per-session constant such as the current user.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionValue {
    name: &'static str,
    value: String,
    signature: Signature,
}

impl ScalarUDFImpl for SessionValue {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            self.value.clone(),
        ))))
    }
}

/// The functions that do not depend on the session.
pub fn global(hot: Arc<HotStore>) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(SnowflakeId {
            ids: IdSource(hot),
            signature: Signature::nullary(Volatility::Volatile),
        }),
        ScalarUDF::new_from_impl(UuidV7 {
            signature: Signature::nullary(Volatility::Volatile),
        }),
    ]
}

/// `current_user()` and `current_role()` for one session.
pub fn session(user: &str, role: &str) -> Vec<ScalarUDF> {
    [("current_user", user), ("current_role", role)]
        .into_iter()
        .map(|(name, value)| {
            ScalarUDF::new_from_impl(SessionValue {
                name,
                value: value.to_string(),
                signature: Signature::nullary(Volatility::Stable),
            })
        })
        .collect()
}
