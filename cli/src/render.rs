//! Printing results: aligned tables, CSV, JSON, and the lines of a live subscription.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int8Array, RecordBatch};
use arrow::datatypes::Schema;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::args::Format;
use crate::error::Result;

/// The elapsed time as the shell prints it: seconds with 3 decimals.
pub fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// The count of a statement that answers `rows_affected`, if it is one.
fn affected(schema: &Schema, batches: &[RecordBatch]) -> Option<i64> {
    if schema.fields().len() != 1 || schema.field(0).name() != "rows_affected" {
        return None;
    }
    let b = batches.first()?;
    b.column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .filter(|a| !a.is_empty())
        .map(|a| a.value(0))
}

/// Prints one statement's result in `format`; `elapsed` is shown with a table when given.
pub fn result(
    out: &mut dyn Write,
    format: Format,
    schema: &Schema,
    batches: &[RecordBatch],
    elapsed: Option<Duration>,
) -> Result<()> {
    let time = elapsed
        .map(|d| format!(", {}", seconds(d)))
        .unwrap_or_default();
    if let Some(n) = affected(schema, batches) {
        if format == Format::Table {
            let rows = if n == 1 { "row" } else { "rows" };
            let time = elapsed
                .map(|d| format!(" ({})", seconds(d)))
                .unwrap_or_default();
            writeln!(out, "OK, {n} {rows} affected{time}")?;
        }
        return Ok(());
    }
    let schema = Arc::new(schema.clone());
    match format {
        Format::Table => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let table = arrow::util::pretty::pretty_format_batches_with_schema(schema, batches)?;
            writeln!(out, "{table}")?;
            let noun = if rows == 1 { "row" } else { "rows" };
            writeln!(out, "({rows} {noun}{time})")?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema))?;
            }
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            // The writer prints `[]` for no rows.
            w.finish()?;
            drop(w);
            writeln!(out)?;
        }
    }
    Ok(())
}

/// The marks of a change row by its `_op`: insert, update, delete (0, a snapshot row, is blank).
fn mark(op: i8) -> char {
    match op {
        1 => '+',
        2 => '~',
        3 => '-',
        _ => ' ',
    }
}

/// Prints each row of a CHANGE batch as `+ HH:MM:SS.mmm  col=value, ...`, arrival time first.
pub fn changes(out: &mut dyn Write, batch: &RecordBatch, arrived: &str) -> Result<()> {
    let schema = batch.schema();
    let ops = batch
        .column_by_name("_op")
        .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
        .cloned();
    let options = FormatOptions::default().with_null("NULL");
    let shown: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != "_op")
        .collect();
    let formatters = shown
        .iter()
        .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for row in 0..batch.num_rows() {
        let op = ops.as_ref().map_or(0, |o| o.value(row));
        let values: Vec<String> = shown
            .iter()
            .zip(&formatters)
            .map(|(&i, f)| format!("{}={}", schema.field(i).name(), f.value(row)))
            .collect();
        writeln!(out, "{} {arrived}  {}", mark(op), values.join(", "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
            Field::new("_op", DataType::Int8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int8Array::from(vec![1, 3])),
            ],
        )
        .unwrap()
    }

    fn text(format: Format, batches: &[RecordBatch]) -> String {
        let mut out = Vec::new();
        let b = batch();
        result(
            &mut out,
            format,
            &b.schema(),
            batches,
            Some(Duration::from_millis(12)),
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tables_show_rows_count_and_time() {
        let t = text(Format::Table, &[batch()]);
        assert!(t.contains("| id | v | _op |"), "{t}");
        assert!(t.ends_with("(2 rows, 0.012 s)\n"), "{t}");
        let empty = text(Format::Table, &[]);
        assert!(empty.contains("| id | v | _op |") && empty.ends_with("(0 rows, 0.012 s)\n"));
    }

    #[test]
    fn csv_and_json_carry_only_the_data() {
        assert_eq!(text(Format::Csv, &[batch()]), "id,v,_op\n1,a,1\n2,,3\n");
        assert_eq!(text(Format::Csv, &[]), "id,v,_op\n");
        assert_eq!(
            text(Format::Json, &[batch()]),
            "[{\"id\":1,\"v\":\"a\",\"_op\":1},{\"id\":2,\"_op\":3}]\n"
        );
        assert_eq!(text(Format::Json, &[]), "[]\n");
    }

    #[test]
    fn change_rows_are_marked_by_their_op() {
        let mut out = Vec::new();
        changes(&mut out, &batch(), "12:00:00.000").unwrap();
        let t = String::from_utf8(out).unwrap();
        assert_eq!(
            t,
            "+ 12:00:00.000  id=1, v=a\n- 12:00:00.000  id=2, v=NULL\n"
        );
    }
}
