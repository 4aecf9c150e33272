//! `manifest.json`: the list of a folder's Parquet segments with their `_seq` ranges and column
//! statistics. It is the only thing a read consults to find files: folders are never listed on
//! the read path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Name of the manifest inside its folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One folder's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Bumped by every change.
    pub version: u64,
    /// `namespace.table`.
    pub table: String,
    /// The table's internal id: a folder left by a dropped table of the same name is not
    /// mistaken for the new table's.
    #[serde(default)]
    pub table_id: u64,
    /// The owner of a USER table folder (`null` for SHARED tables).
    #[serde(default)]
    pub user_id: Option<String>,
    /// The table's schema version when the manifest was last written.
    pub schema_version: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// The number of the next `batch-<n>.parquet`.
    pub next_batch: u64,
    /// Segments in `_seq` order: their ranges never overlap.
    pub segments: Vec<SegmentMeta>,
}

/// One Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// File name inside the folder.
    pub path: String,
    /// Smallest `_seq` in the file.
    pub min_seq: u64,
    /// Greatest `_seq` in the file.
    pub max_seq: u64,
    /// Row versions in the file (tombstones included).
    pub rows: u64,
    /// Tombstones among them.
    #[serde(default)]
    pub deleted: u64,
    /// File size.
    pub bytes: u64,
    /// The table schema version the file was written under.
    pub schema_version: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Per column (by name when written): min, max and null count.
    #[serde(default)]
    pub stats: BTreeMap<String, ColumnStats>,
}

/// Statistics of one column in one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// The column's stable id (names change with RENAME COLUMN, ids do not).
    pub id: u32,
    /// Smallest non-null value (`null` when unknown or all null).
    pub min: serde_json::Value,
    /// Greatest non-null value.
    pub max: serde_json::Value,
    /// NULL count.
    pub nulls: u64,
}

impl Manifest {
    /// An empty manifest for a new folder.
    pub fn empty(
        table: String,
        table_id: u64,
        user_id: Option<String>,
        schema_version: u32,
        now: i64,
    ) -> Self {
        Self {
            version: 0,
            table,
            table_id,
            user_id,
            schema_version,
            created_at: now,
            updated_at: now,
            next_batch: 0,
            segments: Vec::new(),
        }
    }

    /// The greatest `_seq` held in cold storage: hot versions at or below it are already in a
    /// segment (a flush writes its file and manifest before it trims the hot store).
    pub fn max_seq(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.max_seq)
    }

    /// Rows in every segment (versions, tombstones included).
    pub fn rows(&self) -> u64 {
        self.segments.iter().map(|s| s.rows).sum()
    }

    /// The index of the segment whose `_seq` range holds `seq`.
    pub fn segment_of(&self, seq: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.max_seq < seq);
        (i < self.segments.len() && self.segments[i].min_seq <= seq).then_some(i)
    }

    /// The file name of batch `n`.
    pub fn batch_file(n: u64) -> String {
        format!("batch-{n}.parquet")
    }

    /// Serialized form.
    pub fn to_json(&self) -> Vec<u8> {
        // A manifest holds only strings, numbers and maps: serialization cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a stored manifest.
    pub fn from_json(bytes: &[u8]) -> crate::Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| crate::Error::corrupt("manifest", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(min: u64, max: u64) -> SegmentMeta {
        SegmentMeta {
            path: Manifest::batch_file(min),
            min_seq: min,
            max_seq: max,
            rows: 1,
            deleted: 0,
            bytes: 1,
            schema_version: 1,
            created_at: 0,
            stats: BTreeMap::new(),
        }
    }

    #[test]
    fn finds_the_segment_of_a_seq() {
        let mut m = Manifest::empty("a.b".into(), 9, None, 1, 0);
        m.segments = vec![seg(1, 10), seg(20, 30), seg(31, 40)];
        assert_eq!(m.segment_of(5), Some(0));
        assert_eq!(m.segment_of(15), None);
        assert_eq!(m.segment_of(31), Some(2));
        assert_eq!(m.segment_of(41), None);
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.max_seq(), 40);
    }
}
