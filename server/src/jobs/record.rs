//! A job as system.jobs shows it, and its protobuf record under `jobs/<id>`.

use std::fmt;

use prost::Message;
use rand::Rng;

use crate::error::{Error, Result};

/// Metadata key prefix of job records.
pub(crate) const PREFIX: &str = "jobs/";

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Move hot rows to Parquet.
    Flush,
    /// Merge small segments.
    Compact,
    /// Delete expired STREAM rows.
    StreamEviction,
    /// Remove the files of a dropped table.
    Cleanup,
    /// Move a table's cold files to another storage.
    Move,
    /// Write one user's rows of every USER table into a zip (EXPORT USER DATA).
    Export,
}

impl JobKind {
    fn code(self) -> i32 {
        self as i32
    }

    fn from_code(c: i32) -> Result<Self> {
        Ok(match c {
            0 => Self::Flush,
            1 => Self::Compact,
            2 => Self::StreamEviction,
            3 => Self::Cleanup,
            4 => Self::Move,
            5 => Self::Export,
            _ => return Err(Error::Internal(format!("unknown job kind {c}"))),
        })
    }

    /// The two letters a job id starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Flush => "FL",
            Self::Compact => "CO",
            Self::StreamEviction => "SE",
            Self::Cleanup => "CL",
            Self::Move => "MV",
            Self::Export => "EX",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flush => "flush",
            Self::Compact => "compact",
            Self::StreamEviction => "stream_eviction",
            Self::Cleanup => "cleanup",
            Self::Move => "move",
            Self::Export => "export",
        })
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Running.
    Running,
    /// Done.
    Completed,
    /// Stopped by an error (or by the server stopping).
    Failed,
    /// Stopped by KILL JOB or DROP TABLE.
    Cancelled,
    /// Had nothing to do.
    Skipped,
}

impl JobStatus {
    fn code(self) -> i32 {
        self as i32
    }

    fn from_code(c: i32) -> Result<Self> {
        Ok(match c {
            0 => Self::Queued,
            1 => Self::Running,
            2 => Self::Completed,
            3 => Self::Failed,
            4 => Self::Cancelled,
            5 => Self::Skipped,
            _ => return Err(Error::Internal(format!("unknown job status {c}"))),
        })
    }

    /// Whether the job has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
        })
    }
}

/// What a job that did something reports.
#[derive(Debug, Default)]
pub(super) struct Done {
    pub rows: u64,
    pub bytes: u64,
    pub message: String,
    /// A flush left a folder with enough small segments to compact.
    pub compact_due: bool,
}

/// One job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Short id such as `FL-3k9x2a`.
    pub id: String,
    /// Kind.
    pub kind: JobKind,
    /// State.
    pub status: JobStatus,
    /// The table's namespace.
    pub namespace: String,
    /// The table.
    pub table_name: String,
    /// The table's internal id.
    pub table_id: u64,
    /// The user whose folder it works on (USER tables), if only one.
    pub user_id: Option<String>,
    /// Rows written (flush, compaction) or deleted.
    pub rows: u64,
    /// Bytes written or freed.
    pub bytes: u64,
    /// What happened, in words.
    pub message: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub started_at: Option<i64>,
    /// Unix milliseconds.
    pub finished_at: Option<i64>,
    /// Cleanup: the storage and folder to remove.
    pub target: Option<(String, String)>,
    /// Stopped by the server's shutdown: its work is submitted again at the next start.
    pub retry_at_start: bool,
}

/// A fresh short id: the kind's prefix and six base-36 characters.
pub fn new_id(kind: JobKind) -> String {
    short_id(kind.prefix())
}

/// `prefix`, a dash and six random base-36 characters (jobs, live queries).
pub fn short_id(prefix: &str) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..6)
        .map(|_| char::from(DIGITS[rng.random_range(0..DIGITS.len())]))
        .collect();
    format!("{prefix}-{tail}")
}

#[derive(Clone, PartialEq, Message)]
struct JobRecord {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(int32, tag = "2")]
    kind: i32,
    #[prost(int32, tag = "3")]
    status: i32,
    #[prost(string, tag = "4")]
    namespace: String,
    #[prost(string, tag = "5")]
    table_name: String,
    #[prost(uint64, tag = "6")]
    table_id: u64,
    #[prost(string, optional, tag = "7")]
    user_id: Option<String>,
    #[prost(uint64, tag = "8")]
    rows: u64,
    #[prost(uint64, tag = "9")]
    bytes: u64,
    #[prost(string, tag = "10")]
    message: String,
    #[prost(int64, tag = "11")]
    created_at: i64,
    #[prost(int64, optional, tag = "12")]
    started_at: Option<i64>,
    #[prost(int64, optional, tag = "13")]
    finished_at: Option<i64>,
    #[prost(string, optional, tag = "14")]
    target_storage: Option<String>,
    #[prost(string, optional, tag = "15")]
    target_folder: Option<String>,
    #[prost(bool, tag = "16")]
    retry_at_start: bool,
}

/// The record's key.
pub(crate) fn key(id: &str) -> Vec<u8> {
    format!("{PREFIX}{id}").into_bytes()
}

/// Encodes a job.
pub(crate) fn encode(j: &Job) -> Vec<u8> {
    JobRecord {
        id: j.id.clone(),
        kind: j.kind.code(),
        status: j.status.code(),
        namespace: j.namespace.clone(),
        table_name: j.table_name.clone(),
        table_id: j.table_id,
        user_id: j.user_id.clone(),
        rows: j.rows,
        bytes: j.bytes,
        message: j.message.clone(),
        created_at: j.created_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
        target_storage: j.target.as_ref().map(|t| t.0.clone()),
        target_folder: j.target.as_ref().map(|t| t.1.clone()),
        retry_at_start: j.retry_at_start,
    }
    .encode_to_vec()
}

/// Decodes a job.
pub(crate) fn decode(b: &[u8]) -> Result<Job> {
    let r =
        JobRecord::decode(b).map_err(|e| Error::Internal(format!("corrupt job record: {e}")))?;
    Ok(Job {
        id: r.id,
        kind: JobKind::from_code(r.kind)?,
        status: JobStatus::from_code(r.status)?,
        namespace: r.namespace,
        table_name: r.table_name,
        table_id: r.table_id,
        user_id: r.user_id,
        rows: r.rows,
        bytes: r.bytes,
        message: r.message,
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        target: r.target_storage.zip(r.target_folder),
        retry_at_start: r.retry_at_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_records_round_trip() {
        let id = new_id(JobKind::Flush);
        assert!(id.starts_with("FL-") && id.len() == 9, "{id}");
        let j = Job {
            id,
            kind: JobKind::Cleanup,
            status: JobStatus::Skipped,
            namespace: "a".into(),
            table_name: "b".into(),
            table_id: 3,
            user_id: None,
            rows: 1,
            bytes: 2,
            message: "m".into(),
            created_at: 4,
            started_at: Some(5),
            finished_at: None,
            target: Some(("local".into(), "a/b".into())),
            retry_at_start: true,
        };
        assert_eq!(decode(&encode(&j)).unwrap(), j);
    }
}
