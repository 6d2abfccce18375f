//! HTTP: the ingest and admin routers and the connection loop (connection
//! cap, header timeout, optional TLS). The peer address returned by
//! `accept` is dropped on the spot; no handler can ask for it.

use crate::report::{receive, Outcome};
use crate::storage::Store;
use crate::AppState;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

pub fn ingest_router<S: Store>(state: Arc<AppState<S>>) -> Router {
    let path = state.options.ingest_path.clone();
    Router::new().route(&path, post(ingest::<S>)).with_state(state)
}

/// Admin: health, metrics, the aggregates API and the dashboard. With a
/// token configured every route needs it, except that `--public` opens the
/// (suppressed) aggregates and dashboard to everyone.
pub fn admin_router<S: Store>(state: Arc<AppState<S>>) -> Router {
    use crate::api;
    let auth = axum::middleware::from_fn_with_state(state.clone(), api::require_token::<S>);
    let private = Router::new().route("/healthz", get(healthz::<S>)).route("/metrics", get(metrics::<S>)).layer(auth.clone());
    let published = Router::new()
        .route("/", get(api::dashboard::<S>))
        .route("/dashboard.css", get(api::stylesheet))
        .route("/favicon.ico", get(api::no_icon))
        .route("/api/v1/products", get(api::products::<S>))
        .route("/api/v1/weeks", get(api::weeks::<S>))
        .route("/api/v1/fields", get(api::fields::<S>))
        .route("/api/v1/crosstab", get(api::crosstab::<S>))
        .route("/api/v1/mean", get(api::mean::<S>))
        .route("/api/v1/release", get(api::release::<S>));
    let published = if state.options.public { published } else { published.layer(auth) };
    private.merge(published).with_state(state)
}

/// An answer with a short machine-readable reason; never an internal detail.
fn status(code: StatusCode, reason: &str) -> Response {
    let body = format!("{{\"error\":\"{reason}\"}}");
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn too_many(retry_after_s: u64, reason: &str) -> Response {
    let mut r = status(StatusCode::TOO_MANY_REQUESTS, reason);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    r
}

/// What the ingest handler gets of a request: the body, read within the size
/// and time limits while holding a slot of the global limiter. Only
/// Content-Type and Content-Length are looked at; the rest of the request
/// (other headers, URI, peer) is dropped here.
pub struct IngestBody {
    bytes: axum::body::Bytes,
    _slot: OwnedSemaphorePermit,
}

impl<S: Store> FromRequest<Arc<AppState<S>>> for IngestBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState<S>>) -> Result<Self, Response> {
        let Ok(slot) = state.inflight.clone().try_acquire_owned() else {
            state.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(too_many(state.options.retry_after_s, "overloaded"));
        };
        let (parts, body) = req.into_parts();
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        // Nothing here decodes gzip and the like; a coded body is refused
        // rather than read as if it were the report (RFC 9110 8.4.1).
        let coded = parts.headers.get_all(header::CONTENT_ENCODING).iter().any(|v| {
            v.to_str().map_or(true, |v| v.split(',').any(|c| !c.trim().eq_ignore_ascii_case("identity")))
        });
        let declared: Option<u64> =
            parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        drop(parts);
        let max = state.options.max_body;
        if declared.is_some_and(|n| n > max as u64) {
            state.metrics.too_large.fetch_add(1, Ordering::Relaxed);
            return Err(status(StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
        }
        if !json || coded {
            state.metrics.unsupported_media_type.fetch_add(1, Ordering::Relaxed);
            return Err(status(StatusCode::UNSUPPORTED_MEDIA_TYPE, if coded { "content_encoding" } else { "not_json" }));
        }
        // A client dripping its body a byte at a time holds this slot for at
        // most request_timeout.
        match tokio::time::timeout(state.options.request_timeout, axum::body::to_bytes(body, max)).await {
            Ok(Ok(bytes)) => Ok(IngestBody { bytes, _slot: slot }),
            Ok(Err(e)) => {
                let over = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if over {
                    state.metrics.too_large.fetch_add(1, Ordering::Relaxed);
                    Err(status(StatusCode::PAYLOAD_TOO_LARGE, "too_large"))
                } else {
                    Err(status(StatusCode::BAD_REQUEST, "body"))
                }
            }
            Err(_) => {
                state.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(status(StatusCode::REQUEST_TIMEOUT, "timeout"))
            }
        }
    }
}

async fn ingest<S: Store>(State(state): State<Arc<AppState<S>>>, body: IngestBody) -> Response {
    match receive(&state, &body.bytes).await {
        Ok(Outcome::Stored) | Ok(Outcome::Duplicate) => StatusCode::NO_CONTENT.into_response(),
        Ok(Outcome::Quarantined) => StatusCode::ACCEPTED.into_response(),
        // Retry later: the report is not lost, and by then the vendor may
        // have registered the schema.
        Ok(Outcome::QuarantineFull) => too_many(3600, "quarantine_full"),
        Ok(Outcome::Rejected(reason)) if reason.is_malformed() => status(StatusCode::BAD_REQUEST, reason.name()),
        Ok(Outcome::Rejected(reason)) => status(StatusCode::UNPROCESSABLE_ENTITY, reason.name()),
        Err(e) => {
            state.metrics.storage_errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("storage error: {e}");
            status(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    }
}

async fn healthz<S: Store>(State(state): State<Arc<AppState<S>>>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            eprintln!("health check: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable\n").into_response()
        }
    }
}

async fn metrics<S: Store>(State(state): State<Arc<AppState<S>>>) -> Response {
    let text = state.metrics.render(state.schemas().by_digest.len());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Read buffer per connection, and so the largest request head: a client
/// needs well under 1 KiB; hyper's default (~400 KiB) would let each of
/// the 1024 connections hold that much in headers. Bodies stream through it.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// Time allowed for a request's head (and a TLS handshake).
    pub header_timeout: Duration,
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // At the cap, further connections wait in the kernel's backlog.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                // The peer address is discarded here and never stored or logged.
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors and the like: back off briefly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let (router, tls) = (router.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let service = TowerToHyperService::new(router.into_service::<hyper::body::Incoming>());
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_HEAD_BYTES);
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await else {
                        return;
                    };
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

/// A rustls server configuration from PEM files.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("--tls-cert {}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session tickets or resumption state kept across connections.
    config.session_storage = Arc::new(tokio_rustls::rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
