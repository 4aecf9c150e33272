//! DataFusion's view of QuillDB: a catalog provider per query, table providers over the hot
//! store, system tables, and QuillDB's SQL functions.

/// The `quill` catalog and its schemas.
pub mod catalog;
/// Segment and row-group pruning with manifest and Parquet statistics.
pub mod prune;
/// Cold segments as DataFusion's Parquet scan, filtered to live versions.
pub mod scan;
/// System tables.
pub mod system;
/// The table provider over the hot store.
pub mod table;
