//! DataFusion's view of QuillDB: a catalog provider per query, table providers over the hot
//! store, system tables, and QuillDB's SQL functions.

/// Function results held to the query memory limit.
pub mod bounded;
/// The `quill` catalog and its schemas.
pub mod catalog;
/// QuillDB's scalar functions.
pub mod functions;
/// Segment and row-group pruning with manifest and Parquet statistics.
pub mod prune;
/// System tables.
pub mod system;
/// The table provider over the hot store.
pub mod table;
