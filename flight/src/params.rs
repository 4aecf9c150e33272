//! Parameter batches from clients: the Arrow IPC decoder accepts any type a schema message
//! names, but not every type is one the planner can take. A decimal with a precision or scale
//! out of range overflows DataFusion's type coercion (a panic in the planner, found by the
//! `parameter_batches` fuzz target); it is refused here, for every way parameters arrive.

use arrow::datatypes::{
    DataType, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, DecimalType,
};
use arrow::record_batch::RecordBatch;
use tonic::Status;

use crate::error::Error;

fn decimal<T: DecimalType>(precision: u8, scale: i8) -> Result<(), String> {
    arrow::datatypes::validate_decimal_precision_and_scale::<T>(precision, scale)
        .map_err(|e| e.to_string())?;
    if scale < 0 {
        return Err(format!("scale {scale} is negative"));
    }
    Ok(())
}

fn check_type(dt: &DataType) -> Result<(), String> {
    match dt {
        DataType::Decimal32(p, s) => decimal::<Decimal32Type>(*p, *s),
        DataType::Decimal64(p, s) => decimal::<Decimal64Type>(*p, *s),
        DataType::Decimal128(p, s) => decimal::<Decimal128Type>(*p, *s),
        DataType::Decimal256(p, s) => decimal::<Decimal256Type>(*p, *s),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => check_type(f.data_type()),
        DataType::Struct(fields) => fields.iter().try_for_each(|f| check_type(f.data_type())),
        DataType::Union(fields, _) => fields
            .iter()
            .try_for_each(|(_, f)| check_type(f.data_type())),
        DataType::Dictionary(_, v) => check_type(v),
        DataType::RunEndEncoded(_, v) => check_type(v.data_type()),
        _ => Ok(()),
    }
}

/// Refuses a parameter batch whose columns have types the planner cannot take.
pub fn check(batch: &RecordBatch) -> Result<(), Status> {
    for field in batch.schema().fields() {
        check_type(field.data_type()).map_err(|why| {
            Status::from(Error::InvalidArgument(format!(
                "parameter {} has type {}: {why}",
                field.name(),
                field.data_type()
            )))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_out_of_range_are_refused() {
        assert!(check_type(&DataType::Decimal128(38, 10)).is_ok());
        assert!(check_type(&DataType::Decimal128(200, 10)).is_err());
        assert!(check_type(&DataType::Decimal128(10, -100)).is_err());
        assert!(check_type(&DataType::Decimal256(0, 0)).is_err());
        let nested = DataType::List(std::sync::Arc::new(arrow::datatypes::Field::new(
            "item",
            DataType::Decimal128(90, 3),
            true,
        )));
        assert!(check_type(&nested).is_err());
    }
}
