//! The HTTP port: `/health`, `/ready`, `/metrics`, the browser API of
//! [`quilldb_flight::web`] (`/v1/login`, `/v1/statements`, `/v1/catalog`, `/v1/subscriptions`),
//! `/v1/exports/{job_id}` (the zip of an EXPORT USER DATA job), `/v1/parquet` (a result turned
//! into a Parquet file) and the web console at `/console/`.

/// The web console's embedded files.
mod console;
/// Per-user export downloads.
mod export;
/// Arrow IPC to Parquet, for the console's downloads.
mod parquet;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use tonic::Status;

use crate::engine::Database;
use crate::metrics::Metrics;
use crate::session::Caller;

#[derive(Clone)]
struct HttpState {
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    db: Arc<Database>,
}

/// The caller of a request that carries the Flight login's token as `Bearer`.
fn bearer(s: &HttpState, headers: &HeaderMap) -> Result<Caller, Status> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) => s.db.auth.resume(t.trim()).map_err(Status::from),
        None => Err(Status::unauthenticated(
            "send the login's token as authorization: Bearer <token> (POST /v1/login or \
             Flight's handshake answers one)",
        )),
    }
}

/// The router; `ready` turns true once the server accepts queries; `web` is the browser API.
pub fn router(
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    db: Arc<Database>,
    web: Router,
) -> Router {
    let own = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/ready",
            get(|State(s): State<HttpState>| async move {
                if s.ready.load(Ordering::Acquire) {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting or stopping\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<HttpState>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    s.metrics.render(),
                )
            }),
        )
        .route("/v1/exports/{job_id}", get(export::export))
        .route(
            "/v1/parquet",
            post(parquet::convert).layer(axum::extract::DefaultBodyLimit::max(
                parquet::MAX_UPLOAD_BYTES,
            )),
        )
        .with_state(HttpState { ready, metrics, db });
    own.merge(console::router()).merge(web)
}
