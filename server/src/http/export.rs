//! `GET /v1/exports/{job_id}`: the zip of an EXPORT USER DATA job, for its user or a dba.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{HttpState, bearer};
use crate::jobs::{JobKind, JobStatus};
use crate::session::Role;

/// GET /v1/exports/{job_id}: 401 without a valid token, 404 for a job that is not an export
/// of the caller's (dba and system: of anyone), 409 while it runs, 410 once it expired.
pub(super) async fn export(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let refuse = |code: StatusCode, why: String| (code, format!("{why}\n")).into_response();
    let caller = match bearer(&s, &headers) {
        Ok(c) => c,
        Err(status) => return quilldb_flight::web::refuse(&status),
    };
    let job = s.db.jobs.get(&id).filter(|j| {
        j.kind == JobKind::Export
            && (j.user_id.as_deref() == Some(caller.user.as_str()) || caller.role >= Role::Dba)
    });
    let Some(job) = job else {
        return refuse(StatusCode::NOT_FOUND, format!("no export {id} of yours"));
    };
    match job.status {
        JobStatus::Completed => {}
        JobStatus::Queued | JobStatus::Running => {
            return refuse(
                StatusCode::CONFLICT,
                format!("export {id} is {}: try again when it completed", job.status),
            );
        }
        other => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("export {id} {other}: {}", job.message),
            );
        }
    }
    let file = match tokio::fs::File::open(s.db.jobs.export_file(&id)).await {
        Ok(f) => f,
        Err(_) => {
            return refuse(
                StatusCode::GONE,
                format!("export {id} expired (jobs.export_retention_seconds): export again"),
            );
        }
    };
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let user = job.user_id.unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"quilldb-export-{user}-{id}.zip\""),
            ),
        ],
        Body::from_stream(chunks(file)),
    )
        .into_response()
}

/// A file as a stream of 64 KiB chunks.
fn chunks(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 << 10];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((bytes::Bytes::from(buf), file)))
    })
}
