//! Scalar functions with a bounded result: every function DataFusion offers is registered
//! wrapped, so that no single call can make a value larger than one query may hold
//! (`limits.max_query_memory_mb`).
//!
//! DataFusion's memory pool sees what operators reserve (sorts, joins, aggregates), not what a
//! function allocates for its result: `repeat('x', 2000000000)` or `range(0, 2000000000)`
//! allocate gigabytes in one call, before anything could be accounted. So the functions whose
//! result can be far larger than their arguments (`repeat`, `lpad`, `rpad`, `replace`,
//! `regexp_replace`, `array_repeat`, `array_resize`, `range`, `generate_series`) have their
//! result's size worked out from the argument values and are refused before they allocate;
//! every other function's result, at most a few times its arguments, is measured after the
//! call, which stops chains such as nested `concat` at the first step past the limit.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};

/// How the size of a function's result follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// At most a small multiple of the arguments: measured after the call.
    Measured,
    /// `repeat(s, n)`
    Repeat,
    /// `lpad(s, n [, fill])`, `rpad(...)`
    Pad,
    /// `replace(s, from, to)`
    Replace,
    /// `regexp_replace(s, pattern, replacement [, flags])`
    RegexpReplace,
    /// `array_repeat(element, n)`
    ArrayRepeat,
    /// `array_resize(array, n [, value])`
    ArrayResize,
    /// `range(...)`, `generate_series(...)`
    Series,
}

impl Growth {
    fn of(name: &str) -> Self {
        match name {
            "repeat" => Self::Repeat,
            "lpad" | "rpad" => Self::Pad,
            "replace" => Self::Replace,
            "regexp_replace" => Self::RegexpReplace,
            "array_repeat" => Self::ArrayRepeat,
            "array_resize" => Self::ArrayResize,
            "range" | "generate_series" => Self::Series,
            _ => Self::Measured,
        }
    }
}

/// A function whose every call is held to `limit` bytes of result.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    growth: Growth,
    limit: usize,
}

/// `udf`, its calls held to results of at most `limit` bytes.
pub fn bounded(udf: &ScalarUDF, limit: usize) -> ScalarUDF {
    wrap(udf.inner().clone(), limit)
}

fn wrap(inner: Arc<dyn ScalarUDFImpl>, limit: usize) -> ScalarUDF {
    if inner.is::<Bounded>() {
        return ScalarUDF::new_from_shared_impl(inner);
    }
    let growth = Growth::of(inner.name());
    ScalarUDF::new_from_impl(Bounded {
        inner: inner.into(),
        growth,
        limit,
    })
}

fn too_large(name: &str, bytes: u128, limit: usize) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{name} would make a result of {bytes} bytes; one query may hold {limit} bytes \
         (limits.max_query_memory_mb)"
    ))
}

/// One argument as whole numbers, row by row (a scalar is the same in every row).
enum Numbers {
    Same(Option<i64>),
    Rows(Int64Array),
}

impl Numbers {
    fn get(&self, row: usize) -> Option<i64> {
        match self {
            Self::Same(v) => *v,
            Self::Rows(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }

    /// Byte lengths of a string or binary argument; for other types, the memory of one row.
    fn lengths(arg: &ColumnarValue) -> DfResult<Self> {
        Ok(match arg {
            ColumnarValue::Scalar(s) => Self::Same(Some(scalar_bytes(s) as i64)),
            ColumnarValue::Array(a) => match a.data_type() {
                DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView => {
                    let lengths = arrow::compute::kernels::length::length(a.as_ref())?;
                    Self::Rows(int64(&lengths)?)
                }
                _ => {
                    let per_row = a.get_array_memory_size().div_ceil(a.len().max(1));
                    Self::Same(Some(per_row as i64))
                }
            },
        })
    }

    fn ints(arg: &ColumnarValue) -> DfResult<Self> {
        Ok(match arg {
            ColumnarValue::Scalar(s) if s.is_null() => Self::Same(None),
            ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(v) => Self::Same(v),
                _ => Self::Same(None),
            },
            ColumnarValue::Array(a) => Self::Rows(int64(a)?),
        })
    }
}

fn int64(a: &ArrayRef) -> DfResult<Int64Array> {
    let cast = arrow::compute::cast(a, &DataType::Int64)?;
    Ok(cast.as_primitive::<arrow::datatypes::Int64Type>().clone())
}

/// The bytes of a string or binary scalar; for other scalars, their memory.
fn scalar_bytes(s: &ScalarValue) -> usize {
    match s {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            v.as_ref().map_or(0, String::len)
        }
        ScalarValue::Binary(v) | ScalarValue::LargeBinary(v) | ScalarValue::BinaryView(v) => {
            v.as_ref().map_or(0, Vec::len)
        }
        other => other.size(),
    }
}

/// The text of a string scalar argument, if it is one.
fn scalar_text(arg: Option<&ColumnarValue>) -> Option<&str> {
    match arg {
        Some(ColumnarValue::Scalar(s)) => s.try_as_str().flatten(),
        _ => None,
    }
}

/// Rows the result has: one when every argument is a scalar.
fn rows(args: &ScalarFunctionArgs) -> usize {
    if args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)))
    {
        1
    } else {
        args.number_rows
    }
}

fn nonneg(v: Option<i64>) -> u128 {
    v.unwrap_or(0).max(0) as u128
}

impl Bounded {
    /// An upper bound of the result's bytes, for the functions that can grow.
    fn estimate(&self, args: &ScalarFunctionArgs) -> DfResult<u128> {
        let a = &args.args;
        let n = rows(args);
        let sum = |f: &dyn Fn(usize) -> u128| -> u128 {
            (0..n).fold(0u128, |acc, r| acc.saturating_add(f(r)))
        };
        Ok(match self.growth {
            Growth::Measured => 0,
            Growth::Repeat if a.len() >= 2 => {
                let (text, times) = (Numbers::lengths(&a[0])?, Numbers::ints(&a[1])?);
                sum(&|r| nonneg(text.get(r)).saturating_mul(nonneg(times.get(r))))
            }
            Growth::Pad if a.len() >= 2 => {
                let (text, width) = (Numbers::lengths(&a[0])?, Numbers::ints(&a[1])?);
                // Each padding character takes up to four bytes; a fill of known text, its
                // widest character.
                let char_bytes = match a.get(2) {
                    None => 1,
                    Some(_) => scalar_text(a.get(2))
                        .map_or(4, |f| f.chars().map(char::len_utf8).max().unwrap_or(1)),
                } as u128;
                sum(&|r| {
                    nonneg(width.get(r))
                        .saturating_mul(char_bytes.max(1))
                        .saturating_add(nonneg(text.get(r)))
                })
            }
            Growth::Replace if a.len() >= 3 => {
                let text = Numbers::lengths(&a[0])?;
                let from = Numbers::lengths(&a[1])?;
                let to = Numbers::lengths(&a[2])?;
                sum(&|r| {
                    let s = nonneg(text.get(r));
                    let matches = s / nonneg(from.get(r)).max(1) + 1;
                    s.saturating_add(matches.saturating_mul(nonneg(to.get(r))))
                })
            }
            Growth::RegexpReplace if a.len() >= 3 => {
                let text = Numbers::lengths(&a[0])?;
                let replacement = Numbers::lengths(&a[2])?;
                // Each `$n` or `\n` of the replacement copies a group of the match: at most the
                // whole text once per reference.
                let references =
                    scalar_text(a.get(2)).map(|t| t.matches(['$', '\\']).count() as u128);
                let global = match a.get(3) {
                    None => false,
                    Some(ColumnarValue::Scalar(_)) => {
                        scalar_text(a.get(3)).is_some_and(|f| f.contains('g'))
                    }
                    Some(_) => true,
                };
                sum(&|r| {
                    let s = nonneg(text.get(r));
                    let repl = nonneg(replacement.get(r));
                    let refs = references.unwrap_or(repl);
                    let matches = if global { s + 2 } else { 1 };
                    s.saturating_mul(refs + 1)
                        .saturating_add(matches.saturating_mul(repl))
                })
            }
            Growth::ArrayRepeat if a.len() >= 2 => {
                let (element, times) = (Numbers::lengths(&a[0])?, Numbers::ints(&a[1])?);
                sum(&|r| (nonneg(element.get(r)) + 8).saturating_mul(nonneg(times.get(r))))
            }
            Growth::ArrayResize if a.len() >= 2 => {
                let size = Numbers::ints(&a[1])?;
                let value = match a.get(2) {
                    Some(v) => Numbers::lengths(v)?,
                    None => Numbers::Same(Some(0)),
                };
                sum(&|r| (nonneg(value.get(r)) + 16).saturating_mul(nonneg(size.get(r))))
            }
            Growth::Series => {
                let mut total = 0u128;
                for r in 0..n {
                    let values: Vec<ScalarValue> = a
                        .iter()
                        .map(|v| match v {
                            ColumnarValue::Scalar(s) => Ok(s.clone()),
                            ColumnarValue::Array(arr) => ScalarValue::try_from_array(arr, r),
                        })
                        .collect::<DfResult<_>>()?;
                    total = total.saturating_add(series_len(&values).saturating_mul(8));
                }
                total
            }
            _ => 0,
        })
    }
}

/// How many values `range`/`generate_series` makes for one row of arguments (one more than
/// `range` does, for the inclusive end of `generate_series`).
fn series_len(values: &[ScalarValue]) -> u128 {
    let (start, stop, step) = match values {
        [stop] => (Some(0), position(stop), Some(1)),
        [start, stop] => (position(start), position(stop), Some(1)),
        [start, stop, step] => (position(start), position(stop), step_of(step)),
        _ => return 0,
    };
    let (Some(start), Some(stop), Some(step)) = (start, stop, step) else {
        return 0;
    };
    if step == 0 {
        return 0;
    }
    let span = stop - start;
    if span.signum() != step.signum() && span != 0 {
        return 0;
    }
    (span / step).unsigned_abs() + 1
}

/// A point of a series: an integer, or nanoseconds for dates and timestamps.
fn position(v: &ScalarValue) -> Option<i128> {
    const DAY: i128 = 86_400_000_000_000;
    match v {
        ScalarValue::Date32(d) => d.map(|d| d as i128 * DAY),
        ScalarValue::Date64(ms) => ms.map(|ms| ms as i128 * 1_000_000),
        ScalarValue::TimestampSecond(t, _) => t.map(|t| t as i128 * 1_000_000_000),
        ScalarValue::TimestampMillisecond(t, _) => t.map(|t| t as i128 * 1_000_000),
        ScalarValue::TimestampMicrosecond(t, _) => t.map(|t| t as i128 * 1_000),
        ScalarValue::TimestampNanosecond(t, _) => t.map(i128::from),
        other => match other.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(i)) => i.map(i128::from),
            _ => None,
        },
    }
}

/// A step: an integer, or the shortest length in nanoseconds an interval can have (a month
/// counts 28 days, so the count is an upper bound).
fn step_of(v: &ScalarValue) -> Option<i128> {
    const DAY: i128 = 86_400_000_000_000;
    match v {
        ScalarValue::IntervalMonthDayNano(i) => {
            i.map(|i| i.months as i128 * 28 * DAY + i.days as i128 * DAY + i.nanoseconds as i128)
        }
        ScalarValue::IntervalDayTime(i) => {
            i.map(|i| i.days as i128 * DAY + i.milliseconds as i128 * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(m) => m.map(|m| m as i128 * 28 * DAY),
        other => position(other),
    }
}

/// The bytes a result holds.
fn result_bytes(v: &ColumnarValue) -> usize {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size(),
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn display_name(&self, args: &[Expr]) -> DfResult<String> {
        #[expect(deprecated)]
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn datafusion::common::ExprSchema) -> bool {
        #[expect(deprecated)]
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let expected = self.estimate(&args)?;
        if expected > self.limit as u128 {
            return Err(too_large(self.name(), expected, self.limit));
        }
        let out = self.inner.invoke_with_args(args)?;
        let bytes = result_bytes(&out);
        if bytes > self.limit {
            return Err(too_large(self.name(), bytes as u128, self.limit));
        }
        Ok(out)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        self.inner
            .with_updated_config(config)
            .map(|u| wrap(u.inner().clone(), self.limit))
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> DfResult<datafusion::logical_expr::preimage::PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn evaluate_bounds(
        &self,
        input: &[&datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> DfResult<datafusion::logical_expr::interval_arithmetic::Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &datafusion::logical_expr::interval_arithmetic::Interval,
        inputs: &[&datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> DfResult<Option<Vec<datafusion::logical_expr::interval_arithmetic::Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<datafusion::logical_expr::StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> DfResult<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> DfResult<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> DfResult<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(
        &self,
        args: &[datafusion::logical_expr::ExpressionPlacement],
    ) -> datafusion::logical_expr::ExpressionPlacement {
        self.inner.placement(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(udf: &ScalarUDF, args: Vec<ScalarValue>) -> DfResult<ColumnarValue> {
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(arrow::datatypes::Field::new("a", a.data_type(), true)))
            .collect::<Vec<_>>();
        let return_field = udf.return_field_from_args(ReturnFieldArgs {
            arg_fields: &arg_fields,
            scalar_arguments: &args.iter().map(Some).collect::<Vec<_>>(),
        })?;
        udf.invoke_with_args(ScalarFunctionArgs {
            args: args.into_iter().map(ColumnarValue::Scalar).collect(),
            arg_fields,
            number_rows: 1,
            return_field,
            config_options: Arc::new(ConfigOptions::default()),
        })
    }

    fn exhausted(r: DfResult<ColumnarValue>) -> bool {
        matches!(r, Err(DataFusionError::ResourcesExhausted(m)) if m.contains("limits.max_query_memory_mb"))
    }

    #[test]
    fn growing_functions_are_refused_before_they_allocate() {
        let limit = 1 << 20;
        let repeat = bounded(&datafusion::functions::string::repeat(), limit);
        assert!(
            call(
                &repeat,
                vec![ScalarValue::from("ab"), ScalarValue::Int64(Some(1000))]
            )
            .is_ok()
        );
        // Two billion bytes would be allocated by the plain function.
        assert!(exhausted(call(
            &repeat,
            vec![
                ScalarValue::from("x"),
                ScalarValue::Int64(Some(2_000_000_000))
            ]
        )));
        let range = bounded(&datafusion::functions_nested::range::range_udf(), limit);
        assert!(call(&range, vec![ScalarValue::Int64(Some(100))]).is_ok());
        assert!(exhausted(call(
            &range,
            vec![
                ScalarValue::Int64(Some(0)),
                ScalarValue::Int64(Some(2_000_000_000))
            ]
        )));
        let lpad = bounded(&datafusion::functions::unicode::lpad(), limit);
        assert!(exhausted(call(
            &lpad,
            vec![
                ScalarValue::from("x"),
                ScalarValue::Int64(Some(1_000_000_000))
            ]
        )));
        let array_repeat = bounded(
            &datafusion::functions_nested::repeat::array_repeat_udf(),
            limit,
        );
        assert!(exhausted(call(
            &array_repeat,
            vec![
                ScalarValue::Int64(Some(1)),
                ScalarValue::Int64(Some(1_000_000_000))
            ]
        )));
    }

    #[test]
    fn other_functions_are_measured_after_the_call() {
        let concat = bounded(&datafusion::functions::string::concat(), 1000);
        let small = ScalarValue::from("x".repeat(100));
        assert!(call(&concat, vec![small.clone(), small]).is_ok());
        let big = ScalarValue::from("x".repeat(600));
        assert!(exhausted(call(&concat, vec![big.clone(), big])));
    }

    #[test]
    fn series_lengths() {
        let i = |v: i64| ScalarValue::Int64(Some(v));
        assert_eq!(series_len(&[i(10)]), 11);
        assert_eq!(series_len(&[i(5), i(1), i(-1)]), 5);
        assert_eq!(series_len(&[i(1), i(5), i(-1)]), 0);
        assert_eq!(series_len(&[i(0), i(2_000_000_000)]), 2_000_000_001);
    }
}
