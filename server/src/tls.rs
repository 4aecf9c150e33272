//! TLS for the Flight SQL and HTTP ports (rustls): certificate and key from PEM files, client
//! certificates required when a client CA is configured, and the files read again on SIGHUP.
//! A reload changes what new connections are offered; open connections keep their session, so
//! nothing is dropped. A reload that fails (a missing file, a key that does not match) is
//! logged and the previous certificate stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio_rustls::server::TlsStream;

use crate::config::ServerConfig as Settings;
use crate::error::{Error, Result};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose handshake is done, waiting to be served.
const ACCEPTED_QUEUE: usize = 128;

/// The files TLS is made of.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// The TLS settings of both ports, replaced as a whole on reload.
pub struct Tls {
    files: Files,
    current: RwLock<Arc<Current>>,
}

/// What the files make.
struct Current {
    /// One configuration per port: they differ in the protocols offered by ALPN.
    flight: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    /// The check of client certificates, run once the handshake is done.
    clients: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// Which port a configuration is for.
#[derive(Debug, Clone, Copy)]
pub enum Port {
    /// gRPC: HTTP/2 only.
    Flight,
    /// /health, /ready, /metrics: HTTP/1.1.
    Http,
}

impl Tls {
    /// TLS as `settings` configure it: `None` without a certificate; an error when only one of
    /// certificate and key is given or the files do not make a valid configuration.
    pub fn load(settings: &Settings) -> Result<Option<Arc<Self>>> {
        let files = match (&settings.tls_cert, &settings.tls_key) {
            (None, None) => {
                if settings.tls_client_ca.is_some() {
                    return Err(Error::InvalidArgument(
                        "server.tls_client_ca needs server.tls_cert and server.tls_key".into(),
                    ));
                }
                return Ok(None);
            }
            (Some(cert), Some(key)) => Files {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: settings.tls_client_ca.clone(),
            },
            _ => {
                return Err(Error::InvalidArgument(
                    "TLS needs both server.tls_cert and server.tls_key".into(),
                ));
            }
        };
        let current = RwLock::new(Arc::new(Current::load(&files)?));
        Ok(Some(Arc::new(Self { files, current })))
    }

    /// Reads the files again; new connections get the new configuration. On error the old
    /// one stays.
    pub fn reload(&self) -> Result<()> {
        *self.current.write() = Arc::new(Current::load(&self.files)?);
        Ok(())
    }

    /// Accepts on `listener` and hands on the connections whose handshake succeeded, each
    /// handshake on a task of its own (a slow client delays nobody else). Ends when the
    /// receiver is dropped.
    pub fn accept(
        self: &Arc<Self>,
        listener: TcpListener,
        port: Port,
    ) -> mpsc::Receiver<std::io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
        let tls = self.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a connection");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = tx.closed() => return,
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!(error = %e, "setting TCP_NODELAY");
                }
                let current = tls.current.read().clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(stream) = handshake(stream, peer, port, &current).await {
                        let _ = tx.send(Ok(stream)).await;
                    }
                });
            }
        });
        rx
    }
}

/// The TLS side of one connection: the stream to serve, or `None` when the client was refused
/// (told why in its own protocol) or went away.
async fn handshake(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    port: Port,
    current: &Current,
) -> Option<TlsStream<TcpStream>> {
    // A TLS connection starts with a handshake record; anything else is a plain-text client.
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE_RECORD => {
            tracing::info!(%peer, ?port, "plain-text client on the TLS port");
            refuse(stream, port, Refusal::PlainText, NEEDS_TLS).await;
            return None;
        }
        Ok(Ok(1)) => {}
        _ => return None,
    }
    let config = match port {
        Port::Flight => current.flight.clone(),
        Port::Http => current.http.clone(),
    };
    let tls =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream))
            .await
        {
            Ok(Ok(tls)) => tls,
            // An untrusted server certificate, a scanner: the client sees the handshake fail.
            Ok(Err(e)) => {
                tracing::info!(%peer, ?port, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::info!(%peer, ?port, "TLS handshake timed out");
                return None;
            }
        };
    if let Some(verifier) = &current.clients
        && let Err(why) = check_client(verifier.as_ref(), tls.get_ref().1)
    {
        tracing::info!(%peer, ?port, reason = %why, "client certificate refused");
        refuse(tls, port, Refusal::ClientCertificate, &why).await;
        return None;
    }
    Some(tls)
}

/// Checks the client's certificate chain against the client CA.
fn check_client(
    verifier: &dyn ClientCertVerifier,
    conn: &tokio_rustls::rustls::ServerConnection,
) -> std::result::Result<(), String> {
    match conn.peer_certificates() {
        Some([end_entity, intermediates @ ..]) => verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "the client certificate was refused ({e}): this server accepts \
                     certificates signed by its server.tls_client_ca"
                )
            }),
        _ => Err("this server requires a client certificate signed by its \
                  server.tls_client_ca"
            .into()),
    }
}

/// Client certificates are checked once the handshake is done (`check_client`), so that a
/// refused client is told why in its own protocol rather than by a TLS alert its library
/// reports as a corrupt connection. The handshake still proves the client holds the key of
/// the certificate it shows.
#[derive(Debug)]
struct AfterHandshake(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for AfterHandshake {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain-text client on a TLS port is told.
const NEEDS_TLS: &str = "this QuillDB port accepts TLS connections only: connect with \
                         grpc+tls:// (Flight SQL) or https:// (HTTP)";

/// Why a connection is refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    PlainText,
    ClientCertificate,
}

/// Tells a refused client why, in its own protocol: a gRPC client gets every call failed with
/// the message (UNAVAILABLE for plain text, UNAUTHENTICATED for a certificate), an HTTP client
/// a 400 or 403 with it; then the connection closes.
async fn refuse<IO>(mut io: IO, port: Port, why: Refusal, message: &str)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // gRPC messages are percent-encoded outside printable ASCII; ours are plain ASCII.
    let message: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .replace('%', "%25");
    match port {
        Port::Flight => {
            let code = match why {
                Refusal::PlainText => tonic::Code::Unavailable,
                Refusal::ClientCertificate => tonic::Code::Unauthenticated,
            };
            let answer = hyper::service::service_fn(move |_req| {
                let response = hyper::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", (code as i32).to_string())
                    .header("grpc-message", message.clone())
                    .body(axum::body::Body::empty());
                async move { response.map_err(|e| std::io::Error::other(e.to_string())) }
            });
            let served =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(io), answer);
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, served).await;
        }
        Port::Http => {
            use tokio::io::AsyncWriteExt;
            let status = match why {
                Refusal::PlainText => "400 Bad Request",
                Refusal::ClientCertificate => "403 Forbidden",
            };
            let body = format!("{message}\n");
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = io.write_all(reply.as_bytes()).await;
            let _ = io.shutdown().await;
        }
    }
}

impl Current {
    fn load(files: &Files) -> Result<Self> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let clients = match &files.client_ca {
            None => None,
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path, "server.tls_client_ca")? {
                    roots.add(cert).map_err(|e| {
                        Error::InvalidArgument(format!(
                            "server.tls_client_ca {}: {e}",
                            path.display()
                        ))
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| {
                            Error::InvalidArgument(format!(
                                "server.tls_client_ca {}: {e}",
                                path.display()
                            ))
                        })?;
                Some(verifier)
            }
        };
        let make = |alpn: &[u8]| -> Result<Arc<ServerConfig>> {
            let mut c = server_config(files, provider.clone(), clients.clone())?;
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        Ok(Self {
            flight: make(b"h2")?,
            http: make(b"http/1.1")?,
            clients,
        })
    }
}

fn server_config(
    files: &Files,
    provider: Arc<CryptoProvider>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig> {
    let certs = read_certs(&files.cert, "server.tls_cert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        Error::InvalidArgument(format!(
            "server.tls_key {}: no PEM private key read: {e}",
            files.key.display()
        ))
    })?;
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS protocol versions: {e}")))?;
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(Arc::new(AfterHandshake(verifier))),
    };
    builder.with_single_cert(certs, key).map_err(|e| {
        Error::InvalidArgument(format!(
            "server.tls_cert {} and server.tls_key {} do not make a certificate: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })
}

fn read_certs(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::InvalidArgument(format!("{setting} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{setting} {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}
