//! The browser API on the HTTP port (docs/browser-api.md): what the web console, or any program
//! that speaks HTTP, uses instead of gRPC. It is a second door to the same [`QuillFlightSql`]
//! service, so authentication, roles, query limits, timeouts and the statement log are Flight's.
//!
//! ```text
//!  POST /v1/login          Basic ──► Backend::login ──► the Bearer token (as Flight's handshake)
//!  POST /v1/statements     SQL text ──► QuillFlightSql::statement ──► Arrow IPC stream
//!  GET  /v1/catalog        Backend::tables ──► namespaces, tables, columns: one Arrow IPC stream
//!  GET  /v1/subscriptions  WebSocket ──► QuillFlightSql::subscribe ──► DoExchange's frames
//!  POST /v1/logout         Backend::close_session
//! ```
//!
//! Errors answer the HTTP status of their gRPC code, the code's name in `x-quilldb-code` and
//! the message as plain text. Rows are never JSON. Cross-origin requests are refused unless
//! their origin is configured.

/// Arrow IPC bodies: results, the catalog, the error stream.
mod ipc;
/// Subscriptions over a WebSocket.
mod live;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use tonic::{Code, Status};

use crate::auth::{CallObserver, Credentials, credentials};
use crate::backend::Backend;
use crate::error::Error;
use crate::service::QuillFlightSql;

/// The header naming an error's gRPC code (`PERMISSION_DENIED`, ...).
pub const CODE_HEADER: &str = "x-quilldb-code";

/// The media type of results.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// How the browser API is served.
#[derive(Default)]
pub struct WebOptions {
    /// Origins (`https://app.example.com`) whose pages may call the API; none by default, so
    /// only pages served by QuillDB itself (the console) can.
    pub allowed_origins: Vec<String>,
    /// Told of every finished call (method `WebLogin`, `WebStatement`, `WebCatalog`,
    /// `WebSubscribe`, `WebLogout`), as Flight calls are.
    pub observer: Option<CallObserver>,
}

impl std::fmt::Debug for WebOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebOptions")
            .field("allowed_origins", &self.allowed_origins)
            .finish_non_exhaustive()
    }
}

/// The state every handler shares.
struct Web<B: Backend> {
    sql: Arc<QuillFlightSql<B>>,
    options: Arc<WebOptions>,
}

impl<B: Backend> Clone for Web<B> {
    fn clone(&self) -> Self {
        Self {
            sql: self.sql.clone(),
            options: self.options.clone(),
        }
    }
}

impl<B: Backend> Web<B> {
    /// The caller of a request: its Bearer token, resolved.
    async fn caller(&self, headers: &HeaderMap) -> Result<B::Caller, Status> {
        match credentials(headers)? {
            Credentials::Bearer(token) => self.sql.backend().resume(&token).await,
            Credentials::Basic(..) => Err(Status::from(Error::Unauthenticated(
                "Basic credentials log in at POST /v1/login only; send the token it answers as \
                 authorization: Bearer <token>"
                    .into(),
            ))),
            Credentials::None => Err(Status::from(Error::Unauthenticated(
                "log in first: POST /v1/login with Basic credentials answers a token to send \
                 as authorization: Bearer <token>"
                    .into(),
            ))),
        }
    }

    fn observe(&self, method: &str, code: Code, started: Instant) {
        if let Some(observer) = &self.options.observer {
            observer(method, code, started.elapsed());
        }
    }

    /// Whether a request comes from a page this server may answer: no `Origin` (not a
    /// browser), the server's own origin, or a configured one.
    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
            return true;
        };
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let own = origin
            .split_once("://")
            .is_some_and(|(_, authority)| Some(authority) == host);
        own || allowed(&self.options.allowed_origins, origin)
    }
}

fn allowed(origins: &[String], origin: &str) -> bool {
    origins.iter().any(|o| o == origin || o == "*")
}

/// The name of a gRPC code as spec/flight.md writes it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The HTTP status of a gRPC code.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error as the browser API answers it.
pub fn refuse(status: &Status) -> Response {
    (
        http_status(status.code()),
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::HeaderName::from_static(CODE_HEADER),
                code_name(status.code()),
            ),
        ],
        format!("{}\n", status.message()),
    )
        .into_response()
}

/// POST /v1/login: Basic credentials, answered with the token (body and `authorization`
/// header), as Flight's handshake answers it.
async fn login<B: Backend>(State(web): State<Web<B>>, request: Request) -> Response {
    let started = Instant::now();
    let peer: Option<SocketAddr> = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let result = match credentials(request.headers()) {
        Ok(Credentials::Basic(user, password)) => {
            web.sql.backend().login(&user, &password, peer).await
        }
        Ok(_) => Err(Status::from(Error::Unauthenticated(
            "POST /v1/login takes authorization: Basic <base64 of user:password>".into(),
        ))),
        Err(e) => Err(e),
    };
    let response = match result {
        Ok((_, token)) => match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(bearer) => (
                [
                    (header::AUTHORIZATION, bearer),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    ),
                ],
                token,
            )
                .into_response(),
            Err(e) => refuse(&Status::from(Error::Internal(format!(
                "the token is not a header value: {e}"
            )))),
        },
        Err(status) => {
            web.observe("WebLogin", status.code(), started);
            return refuse(&status);
        }
    };
    web.observe("WebLogin", Code::Ok, started);
    response
}

/// POST /v1/logout: the token stops working (its transaction, if any, rolls back).
async fn logout<B: Backend>(State(web): State<Web<B>>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let result = match web.caller(&headers).await {
        Ok(caller) => web.sql.backend().close_session(&caller),
        Err(e) => Err(e),
    };
    let code = result.as_ref().err().map_or(Code::Ok, Status::code);
    web.observe("WebLogout", code, started);
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(status) => refuse(&status),
    }
}

/// POST /v1/statements: the body is one statement's SQL text; the answer its result as an
/// Arrow IPC stream (a statement that changes rows answers `rows_affected`). The status waits
/// for the first batch, so an error before any row is an HTTP error; one after rows came ends
/// the stream with an error stream (see [`ipc`]) and breaks the body off.
async fn statement<B: Backend>(
    State(web): State<Web<B>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let caller = web.caller(&headers).await?;
        let body = body.map_err(|e| {
            let why = format!("the statement could not be read: {e}");
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Status::from(Error::ResourceExhausted(why))
            } else {
                Status::from(Error::InvalidArgument(why))
            }
        })?;
        let sql = std::str::from_utf8(&body).map_err(|_| {
            Status::from(Error::InvalidArgument(
                "the statement must be UTF-8 SQL text".into(),
            ))
        })?;
        let (schema, mut batches) = web.sql.statement(&caller, sql).await?;
        let first = match batches.next().await {
            Some(Err(e)) => return Err(e),
            first => first,
        };
        Ok(ipc::body(schema, first, batches))
    }
    .await;
    let code = result.as_ref().err().map_or(Code::Ok, Status::code);
    web.observe("WebStatement", code, started);
    match result {
        Ok(body) => ipc::response(body),
        Err(status) => refuse(&status),
    }
}

/// GET /v1/catalog: every namespace, table and column the caller may see, in one answer.
async fn catalog<B: Backend>(State(web): State<Web<B>>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let result = async {
        let caller = web.caller(&headers).await?;
        let tables = web.sql.backend().tables(&caller).await?;
        ipc::catalog(&tables)
    }
    .await;
    let code = result.as_ref().err().map_or(Code::Ok, Status::code);
    web.observe("WebCatalog", code, started);
    match result {
        Ok(batch) => ipc::response(ipc::body(
            batch.schema(),
            Some(Ok(batch)),
            futures::stream::empty().boxed(),
        )),
        Err(status) => refuse(&status),
    }
}

/// Closed CORS: a cross-origin request gets no CORS headers (so the browser keeps the answer
/// from the page) and a preflight is refused, unless the origin is configured.
async fn cors(State(origins): State<Arc<WebOptions>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| allowed(&origins.allowed_origins, o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    if request.method() == Method::OPTIONS {
        let Some(origin) = origin else {
            return refuse(&Status::permission_denied(
                "cross-origin calls are refused: list the page's origin in \
                 server.cors_allowed_origins",
            ));
        };
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST"),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("authorization, content-type"),
                ),
                (
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                ),
                (header::VARY, HeaderValue::from_static("origin")),
            ],
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("authorization, x-quilldb-code"),
        );
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// The browser API's routes, to merge into the HTTP port's router (served with
/// `ConnectInfo<SocketAddr>`, which root's loopback-only login needs).
pub fn router<B: Backend>(sql: Arc<QuillFlightSql<B>>, options: WebOptions) -> Router {
    let options = Arc::new(options);
    let web = Web {
        sql,
        options: options.clone(),
    };
    Router::new()
        .route("/v1/login", post(login::<B>))
        .route("/v1/logout", post(logout::<B>))
        .route("/v1/statements", post(statement::<B>))
        .route("/v1/catalog", get(catalog::<B>))
        .route("/v1/subscriptions", get(live::subscribe::<B>))
        .with_state(web)
        .layer(axum::middleware::from_fn_with_state(options, cors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_name_and_a_status() {
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(
            http_status(Code::DeadlineExceeded),
            StatusCode::GATEWAY_TIMEOUT
        );
    }

    #[test]
    fn origins_are_closed_unless_listed() {
        assert!(!allowed(&[], "https://evil.example"));
        assert!(allowed(
            &["https://app.example".into()],
            "https://app.example"
        ));
        assert!(!allowed(
            &["https://app.example".into()],
            "https://app.example.evil"
        ));
    }
}
