//! DataFusion's view of QuillDB: a catalog provider per query, table providers over the hot
//! store, system tables, and QuillDB's SQL functions.

/// The `quill` catalog and its schemas.
pub mod catalog;
/// Segment and row-group pruning with manifest and Parquet statistics.
pub mod prune;
/// Cold segments filtered to live versions, beside the newer ones.
pub mod scan;
/// The flushed segments as DataFusion's Parquet scan.
pub mod segments;
/// System tables.
pub mod system;
/// The table provider over the hot store.
pub mod table;
