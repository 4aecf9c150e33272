//! QuillDB storage: where rows live on disk.
//!
//! This crate knows Arrow and bytes, not SQL or users. The server hands it encoded rows keyed by a
//! table partition and a primary key; it hands back Arrow record batches.
//!
//! ```text
//!  write path                                   read path
//!  RecordBatch ──codec::encode_rows──┐          scan(partition, seq range)
//!                                    ▼                    │
//!  WriteRequest ─► writer thread (one at a time,          ▼
//!                  group commit, _seq assigned)  rows CF (key order = _seq order)
//!                    │  validate keys against pk CF       │
//!                    ▼                                    ▼
//!        one RocksDB WriteBatch: rows CF + pk CF   codec::RowDecoder ─► RecordBatch
//!        + seq high-water mark, WAL fsync
//! ```
//!
//! The hot store keeps only the newest version of each key: a write of an existing key removes the
//! previous version in the same atomic batch, and a delete leaves a tombstone version, so that a scan
//! resolves versions without a second lookup and cold files can never resurrect a deleted row.

/// Row codec: the compact binary form of a row and its decoder into Arrow arrays.
pub mod codec;
/// The cold store: Parquet segments and manifests on an object store.
pub mod cold;
/// Error type of the storage crate.
pub mod error;
/// Flush and compaction: moving versions from the hot store into segments.
pub mod flush;
/// The hot RocksDB store: layout, group-committing writer, scans and point lookups.
pub mod hot;
/// Key layout shared by every table kind.
pub mod keys;
/// Reads that merge hot versions and cold segments.
pub mod merge;
/// `_seq`: time-ordered unique version ids.
pub mod seq;

pub use error::{Error, Result};

#[cfg(test)]
mod testing;
