//! Start and stop: stores, the Flight and HTTP listeners, the ready line, signals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use futures::TryStreamExt;
use quilldb_flight::{
    AuthLayer, InFlight, QueryLimits, QuillFlightService, QuillFlightSql, ServiceOptions,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tower::Layer;

use crate::backend::QuillBackend;
use crate::config::Config;
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::http;
use crate::live::LiveHub;
use crate::metrics::Metrics;
use crate::tls::{Port, Tls};

async fn bind(addr: &str, what: &str) -> Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Internal(format!("binding the {what} address {addr}: {e}")))?;
    let local = l
        .local_addr()
        .map_err(|e| Error::Internal(format!("reading the {what} address: {e}")))?;
    Ok((l, local))
}

/// SIGINT and SIGTERM, listened to from the moment this is made: a signal that arrives before
/// the first `recv` is kept, so one sent right after the ready line is not lost.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind| {
                signal(kind).map_err(|e| Error::Internal(format!("listening for signals: {e}")))
            };
            Ok(Self {
                int: listen(SignalKind::interrupt())?,
                term: listen(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The HTTP port's connections once their TLS handshake is done.
struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<std::io::Result<TlsStream<TcpStream>>>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.accepted.recv().await {
                Some(Ok(stream)) => {
                    let Ok(peer) = stream.get_ref().0.peer_addr() else {
                        continue;
                    };
                    return (stream, peer);
                }
                Some(Err(_)) => continue,
                // The acceptor stopped: no more connections, until shutdown ends the server.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The peer of a TLS connection, as axum's `ConnectInfo` (which knows plain TCP listeners only).
#[derive(Clone, Copy)]
struct TlsPeer(SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Gives handlers the TLS peer as `ConnectInfo<SocketAddr>`, as on a plain TCP port.
async fn tls_peer(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::ConnectInfo;
    if let Some(ConnectInfo(TlsPeer(peer))) = request.extensions().get().copied() {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    next.run(request).await
}

/// SIGHUP reads the TLS files again (the process would otherwise end on it).
fn reload_on_hangup(tls: Option<Arc<Tls>>) -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup())
            .map_err(|e| Error::Internal(format!("listening for SIGHUP: {e}")))?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match &tls {
                    Some(tls) => match tls.reload() {
                        Ok(()) => tracing::info!("SIGHUP: TLS certificate and key read again"),
                        Err(e) => tracing::error!(
                            error = %e,
                            "SIGHUP: TLS files not reloaded; the previous certificate stays"
                        ),
                    },
                    None => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(tls);
    Ok(())
}

/// Runs the server until a signal; returns after a clean shutdown.
pub async fn serve(config: Config) -> Result<()> {
    let tls = Tls::load(&config.server)?;
    let metrics = Arc::new(Metrics::new().map_err(|e| Error::Internal(format!("metrics: {e}")))?);
    let db = Database::open(&config, metrics.clone())?;
    let live = Arc::new(LiveHub::new(
        config.live.clone(),
        config.storage.deletion_retention_seconds,
        metrics.clone(),
    ));
    db.attach_live(live.clone(), live.clone());
    if let Some(events) = db.events.follow() {
        live.follow(events, db.catalog.clone());
    }
    db.jobs.start().await?;
    let (flight_listener, flight_addr) = bind(&config.server.flight_addr, "Flight").await?;
    let (http_listener, http_addr) = bind(&config.server.http_addr, "HTTP").await?;

    let backend = Arc::new(QuillBackend::new(db.clone(), live.clone()));
    let options = ServiceOptions {
        ticket_ttl: Duration::from_secs(config.query.ticket_ttl_seconds),
        limits: QueryLimits {
            max_concurrent: config.limits.max_concurrent_queries,
            timeout: Duration::from_secs(config.limits.query_timeout_seconds),
        },
        ..ServiceOptions::default()
    };
    let service = QuillFlightSql::new(backend.clone(), options)
        .map_err(|e| Error::Internal(format!("starting the Flight service: {}", e.message())))?;
    let service = Arc::new(service);
    let observer = metrics.clone();
    let web = quilldb_flight::web::router(
        service.clone(),
        quilldb_flight::web::WebOptions {
            allowed_origins: config.server.cors_allowed_origins.clone(),
            observer: Some(Arc::new(move |method, code, elapsed| {
                observer.observe_call(method, code, elapsed)
            })),
        },
    );
    let max = config.limits.max_message_bytes;
    let flight = FlightServiceServer::new(QuillFlightService::new(service))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let in_flight = InFlight::default();
    let observer = metrics.clone();
    let flight = AuthLayer::new(backend, in_flight.clone())
        .with_observer(Arc::new(move |method, code, elapsed| {
            observer.observe_call(method, code, elapsed)
        }))
        .layer(flight);

    let shutdown = CancellationToken::new();
    let ready = Arc::new(AtomicBool::new(false));
    // Large windows let a bulk upload or a big result stream without waiting for window
    // updates every 64 KiB; adaptive sizing keeps small calls cheap.
    let router = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(32 << 20))
        .http2_adaptive_window(Some(true))
        .add_service(flight);
    let stop = shutdown.clone().cancelled_owned();
    let flight_task = match &tls {
        Some(tls) => {
            let incoming = ReceiverStream::new(tls.accept(flight_listener, Port::Flight));
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
        }
        None => {
            // Small request/response exchanges must not wait for delayed ACKs (Nagle): every
            // accepted connection gets TCP_NODELAY, as tonic's own `serve` would set.
            let incoming = TcpListenerStream::new(flight_listener).map_ok(|stream| {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!(error = %e, "setting TCP_NODELAY");
                }
                stream
            });
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
        }
    };
    let app = http::router(ready.clone(), metrics, db.clone(), web);
    let stop = shutdown.clone().cancelled_owned();
    let http_task = match &tls {
        Some(tls) => {
            let listener = TlsListener {
                accepted: tls.accept(http_listener, Port::Http),
                local: http_addr,
            };
            let app = app
                .layer(axum::middleware::from_fn(tls_peer))
                .into_make_service_with_connect_info::<TlsPeer>();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            })
        }
        None => tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(http_listener, app)
                .with_graceful_shutdown(stop)
                .await
        }),
    };
    reload_on_hangup(tls.clone())?;

    let mut signals = Signals::new()?;
    ready.store(true, Ordering::Release);
    tracing::info!(%flight_addr, %http_addr, "ready");
    let (grpc, web) = match tls {
        Some(_) => ("grpc+tls", "https"),
        None => ("grpc", "http"),
    };
    println!("quilldb ready: flight={grpc}://{flight_addr} http={web}://{http_addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    signals.recv().await;
    tracing::info!("shutting down: no new calls; waiting for running ones");
    ready.store(false, Ordering::Release);
    // Subscriptions end first (CLOSED shutdown), so they do not hold the grace period.
    live.shutdown(Duration::from_secs(2)).await;
    let jobs = db.jobs.clone();
    tokio::spawn(async move {
        signals.recv().await;
        tracing::warn!("second signal: exiting at once");
        jobs.fail_running("a second signal stopped the server")
            .await;
        std::process::exit(1);
    });
    shutdown.cancel();
    // Running calls get the grace period; idle client connections do not hold the shutdown.
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    let deadline = tokio::time::Instant::now() + grace;
    let flight_abort = flight_task.abort_handle();
    let mut logged = false;
    loop {
        if flight_task.is_finished() {
            match flight_task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "Flight server failed"),
                Err(e) => tracing::error!(error = %e, "Flight server task failed"),
            }
            break;
        }
        let running = in_flight.count();
        if running == 0 {
            flight_abort.abort();
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                running,
                "calls still running after the grace period: ending them"
            );
            flight_abort.abort();
            break;
        }
        if !logged {
            tracing::info!(running, "waiting for running calls");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), http_task).await {
        tracing::error!(error = %e, "HTTP server failed");
    }
    db.jobs.shutdown().await;
    let closing = db.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .map_err(|e| Error::Internal(format!("closing the stores: {e}")))?;
    tracing::info!("stopped cleanly");
    Ok(())
}
