//! Authentication on the wire, in front of every Flight call: `Basic` credentials log in and are
//! answered with a fresh `Bearer` token header, `Bearer` tokens are resolved, no header is the
//! anonymous caller, and anything else is UNAUTHENTICATED. The caller reaches the handlers as a
//! request extension. A request's `x-request-id` is echoed and logged.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use base64::Engine;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderValue};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::backend::Backend;
use crate::error::Error;

/// What the auth layer learnt about a call, as a request extension.
#[derive(Clone)]
pub struct CallAuth<C> {
    /// The caller.
    pub caller: C,
    /// A token issued by this call (Basic credentials), to hand back to the client.
    pub issued_token: Option<String>,
}

/// Counts the calls whose response has not finished, so that shutdown waits for running calls
/// and not for idle connections.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Calls running now (a streaming response counts until its last message).
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }
}

struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Told of every finished call: the Flight method, its gRPC status and its duration (for
/// metrics; the method names are a fixed set).
pub type CallObserver = Arc<dyn Fn(&str, tonic::Code, std::time::Duration) + Send + Sync>;

/// The Flight method of a request path: its last segment when it is a Flight method.
fn method_name(path: &str) -> &'static str {
    const METHODS: [&str; 10] = [
        "Handshake",
        "ListFlights",
        "GetFlightInfo",
        "PollFlightInfo",
        "GetSchema",
        "DoGet",
        "DoPut",
        "DoExchange",
        "DoAction",
        "ListActions",
    ];
    let last = path.rsplit('/').next().unwrap_or_default();
    METHODS.into_iter().find(|m| *m == last).unwrap_or("other")
}

fn grpc_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// A response body that keeps its call counted until it is done or dropped, and reports the
/// call's outcome when it ends.
struct CountedBody {
    inner: Pin<Box<Body>>,
    _guard: InFlightGuard,
    method: &'static str,
    code: Option<tonic::Code>,
    started: std::time::Instant,
    observer: Option<CallObserver>,
    /// The body panicked: it is not polled again.
    failed: bool,
}

/// What a panic said, for the log and the client's INTERNAL error.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The answer to a call whose handler panicked: the bug stays with this call, the process and
/// every other call go on.
fn panicked(method: &str, panic: &(dyn std::any::Any + Send)) -> Status {
    let message = panic_message(panic);
    tracing::error!(method, panic = %message, "a call panicked");
    Status::from(Error::Internal(format!(
        "internal error while serving {method}: {message} (a bug: the server keeps running)"
    )))
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        if let Some(observe) = &self.observer {
            // A body dropped before its trailers is a call the client gave up on.
            let code = self.code.unwrap_or(tonic::Code::Cancelled);
            observe(self.method, code, self.started.elapsed());
        }
    }
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let inner = &mut self.inner;
        let polled = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inner.as_mut().poll_frame(cx)
        })) {
            Ok(polled) => polled,
            Err(panic) => {
                self.failed = true;
                self.code = Some(tonic::Code::Internal);
                return Poll::Ready(Some(Err(panicked(self.method, panic.as_ref()))));
            }
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_code) {
                    self.code = Some(code);
                }
            }
            Poll::Ready(None) if self.code.is_none() => self.code = Some(tonic::Code::Ok),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps a Flight service with authentication.
pub struct AuthLayer<B> {
    backend: Arc<B>,
    in_flight: InFlight,
    observer: Option<CallObserver>,
}

impl<B> AuthLayer<B> {
    /// A layer resolving callers with `backend` and counting running calls in `in_flight`.
    pub fn new(backend: Arc<B>, in_flight: InFlight) -> Self {
        Self {
            backend,
            in_flight,
            observer: None,
        }
    }

    /// Reports every finished call to `observer`.
    pub fn with_observer(mut self, observer: CallObserver) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl<S, B> Layer<S> for AuthLayer<B> {
    type Service = AuthService<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            backend: self.backend.clone(),
            in_flight: self.in_flight.clone(),
            observer: self.observer.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
pub struct AuthService<S, B> {
    inner: S,
    backend: Arc<B>,
    in_flight: InFlight,
    observer: Option<CallObserver>,
}

impl<S: Clone, B> Clone for AuthService<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            backend: self.backend.clone(),
            in_flight: self.in_flight.clone(),
            observer: self.observer.clone(),
        }
    }
}

impl<S: NamedService, B> NamedService for AuthService<S, B> {
    const NAME: &'static str = S::NAME;
}

/// What a request's `authorization` header carries.
pub(crate) enum Credentials {
    None,
    Basic(String, String),
    Bearer(String),
}

/// Reads the `authorization` header: Basic, Bearer or none.
pub(crate) fn credentials(headers: &http::HeaderMap) -> Result<Credentials, Status> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(Credentials::None);
    };
    let value = value.to_str().map_err(|_| {
        Status::from(Error::Unauthenticated(
            "the authorization header is not ASCII".into(),
        ))
    })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        // Some clients (Go's Flight client among them) send base64 without padding.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = engine.decode(rest.trim()).map_err(|_| {
            Status::from(Error::Unauthenticated(
                "Basic credentials are not valid base64".into(),
            ))
        })?;
        let text = String::from_utf8(decoded).map_err(|_| {
            Status::from(Error::Unauthenticated(
                "Basic credentials are not UTF-8".into(),
            ))
        })?;
        let (user, password) = text.split_once(':').ok_or_else(|| {
            Status::from(Error::Unauthenticated(
                "Basic credentials need user:password".into(),
            ))
        })?;
        Ok(Credentials::Basic(user.to_owned(), password.to_owned()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials::Bearer(rest.trim().to_owned()))
    } else {
        Err(Status::from(Error::Unauthenticated(format!(
            "unsupported authorization scheme {scheme:?}: use Basic or Bearer"
        ))))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<Body>> for AuthService<S, B>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Backend,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let backend = self.backend.clone();
        let guard = self.in_flight.enter();
        let observer = self.observer.clone();
        let method = method_name(req.uri().path());
        let started = std::time::Instant::now();
        let request_id = req.headers().get("x-request-id").cloned();
        // A request id is an explicit wish to find this call in the log: its call gets a span
        // at INFO. Other calls get one at DEBUG, which costs nothing unless DEBUG is on (an INFO
        // span's fields are formatted for every call: a tenth of a small call's CPU).
        let span = match request_id.as_ref().and_then(|v| v.to_str().ok()) {
            Some(id) => tracing::info_span!("flight", path = %req.uri().path(), request_id = id),
            None => tracing::debug_span!("flight", path = %req.uri().path()),
        };
        Box::pin(
            async move {
                let peer: Option<SocketAddr> = req
                    .extensions()
                    .get::<TcpConnectInfo>()
                    .or_else(|| {
                        req.extensions()
                            .get::<TlsConnectInfo<TcpConnectInfo>>()
                            .map(|i| i.get_ref())
                    })
                    .and_then(|i| i.remote_addr());
                let resolved = match credentials(req.headers()) {
                    Ok(Credentials::None) => Ok((backend.anonymous(), None)),
                    Ok(Credentials::Basic(user, password)) => backend
                        .login(&user, &password, peer)
                        .await
                        .map(|(caller, token)| (caller, Some(token))),
                    Ok(Credentials::Bearer(token)) => {
                        backend.resume(&token).await.map(|c| (c, None))
                    }
                    Err(e) => Err(e),
                };
                let mut response = match resolved {
                    Ok((caller, issued_token)) => {
                        req.extensions_mut().insert(CallAuth {
                            caller,
                            issued_token: issued_token.clone(),
                        });
                        let call = std::panic::AssertUnwindSafe(inner.call(req));
                        let mut resp = match futures::FutureExt::catch_unwind(call).await {
                            Ok(resp) => resp?,
                            Err(panic) => panicked(method, panic.as_ref()).into_http::<Body>(),
                        };
                        if let Some(token) = issued_token
                            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
                        {
                            resp.headers_mut().insert(http::header::AUTHORIZATION, v);
                        }
                        resp
                    }
                    Err(status) => {
                        tracing::info!(method, code = ?status.code(), "call refused: {}", status.message());
                        status.into_http::<Body>()
                    }
                };
                // A request id is an explicit wish to find this call in the log.
                if let Some(id) = request_id {
                    tracing::info!(status = %response.status(), "call answered");
                    response.headers_mut().insert("x-request-id", id);
                } else {
                    tracing::debug!(status = %response.status(), "call answered");
                }
                let code = grpc_code(response.headers());
                let (parts, body) = response.into_parts();
                let body = Body::new(CountedBody {
                    inner: Box::pin(body),
                    _guard: guard,
                    method,
                    code,
                    started,
                    observer,
                    failed: false,
                });
                Ok(http::Response::from_parts(parts, body))
            }
            .instrument(span),
        )
    }
}
