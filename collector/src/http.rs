//! HTTP: the ingest and admin routers and the connection loop (connection
//! cap with eviction of idle connections, head size and time limits,
//! optional TLS). The peer address returned by `accept` is dropped on the
//! spot; no handler can ask for it, and no limit is keyed on it.

use crate::gateway;
use crate::report::{receive, Outcome, Route};
use crate::storage::Store;
use crate::AppState;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

pub fn ingest_router<S: Store>(state: Arc<AppState<S>>) -> Router {
    let path = state.options.ingest_path.clone();
    Router::new()
        .route(&path, post(ingest::<S>))
        .route(gateway::PATH, get(gateway_keys::<S>).post(gateway_post::<S>))
        .with_state(state)
}

/// Admin: health, metrics, the releases API and the dashboard. With a
/// token configured every route needs it, except that `--public` opens the
/// released figures and the dashboard to everyone.
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
    let published = published.layer(axum::middleware::from_fn_with_state(ReadGate::new(state.options.request_timeout), read_gate));
    let published = if state.options.public { published } else { published.layer(auth) };
    private.merge(published).with_state(state)
}

/// Admin requests served at once by the aggregates API and the dashboard;
/// more wait their turn (in order) for up to `request_timeout`, then get 429.
/// Their database reads and the figures computed from them then take at
/// most one core and one database connection, whatever the number of
/// readers, and never the ingest path's (see storage: ingest has a
/// connection of its own).
pub const ADMIN_READS: usize = 1;

#[derive(Clone)]
struct ReadGate {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl ReadGate {
    fn new(wait: Duration) -> ReadGate {
        ReadGate { slots: Arc::new(Semaphore::new(ADMIN_READS)), wait }
    }
}

async fn read_gate(State(gate): State<ReadGate>, req: Request, next: axum::middleware::Next) -> Response {
    let conn = req.extensions().get::<ConnHandle>().cloned();
    let Ok(Ok(_slot)) = tokio::time::timeout(gate.wait, gate.slots.acquire_owned()).await else {
        return too_many(gate.wait.as_secs().max(1), "busy");
    };
    if let Some(conn) = conn {
        conn.working();
    }
    next.run(req).await
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
/// and time limits, and then a slot of the global limiter. The slot is taken
/// only once the whole body is here, so a client that stalls its body holds
/// a connection (which the accept loop can take back, see [`serve_http`]),
/// never a slot. Only Content-Type and Content-Length are looked at; the
/// rest of the request (other headers, URI, peer) is dropped here.
pub struct IngestBody {
    bytes: axum::body::Bytes,
    _slot: OwnedSemaphorePermit,
}

impl<S: Store> FromRequest<Arc<AppState<S>>> for IngestBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState<S>>) -> Result<Self, Response> {
        let (bytes, slot) = read_body(req, state, "application/json", state.options.max_body).await?;
        Ok(IngestBody { bytes, _slot: slot })
    }
}

/// The header checks of an ingest request, shared by `/v1/report` and the
/// requests inside Oblivious HTTP: the media type (parameters ignored), no
/// content coding, and a declared length within `max`.
/// A refusal as (status, reason), answered by [`status`].
type Refused = (StatusCode, &'static str);

pub(crate) fn check_head<S>(headers: &axum::http::HeaderMap, state: &AppState<S>, media: &str, max: usize) -> Result<(), Refused> {
    let media_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media));
    // Nothing here decodes gzip and the like; a coded body is refused
    // rather than read as if it were the report (RFC 9110 8.4.1).
    let coded = headers.get_all(header::CONTENT_ENCODING).iter().any(|v| {
        v.to_str().map_or(true, |v| v.split(',').any(|c| !c.trim().eq_ignore_ascii_case("identity")))
    });
    let declared: Option<u64> = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if declared.is_some_and(|n| n > max as u64) {
        state.metrics.too_large.fetch_add(1, Ordering::Relaxed);
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    }
    if !media_ok || coded {
        state.metrics.unsupported_media_type.fetch_add(1, Ordering::Relaxed);
        let reason = if coded {
            "content_encoding"
        } else if media == "application/json" {
            "not_json"
        } else {
            "media_type"
        };
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, reason));
    }
    Ok(())
}

/// Reads a request's body of type `media` within `max` bytes and the
/// request timeout, then takes a slot of the global limiter. The rest of the
/// request (other headers, URI, peer) is dropped here.
async fn read_body<S: Store>(
    req: Request,
    state: &Arc<AppState<S>>,
    media: &str,
    max: usize,
) -> Result<(axum::body::Bytes, OwnedSemaphorePermit), Response> {
    let (parts, body) = req.into_parts();
    let conn = parts.extensions.get::<ConnHandle>().cloned();
    check_head(&parts.headers, state, media, max).map_err(|(code, reason)| status(code, reason))?;
    drop(parts);
    // A client dripping its body a byte at a time holds its connection
    // for at most request_timeout (and less when connections run short).
    let bytes = match tokio::time::timeout(state.options.request_timeout, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let over = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Err(if over {
                state.metrics.too_large.fetch_add(1, Ordering::Relaxed);
                status(StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            } else {
                status(StatusCode::BAD_REQUEST, "body")
            });
        }
        Err(_) => {
            state.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(status(StatusCode::REQUEST_TIMEOUT, "timeout"));
        }
    };
    let Ok(slot) = state.inflight.clone().try_acquire_owned() else {
        state.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err(too_many(state.options.retry_after_s, "overloaded"));
    };
    if let Some(conn) = conn {
        conn.working();
    }
    Ok((bytes, slot))
}

async fn ingest<S: Store>(State(state): State<Arc<AppState<S>>>, body: IngestBody) -> Response {
    answer(&state, receive(&state, &body.bytes, Route::Direct).await)
}

/// The answer to a report, whichever way it came.
fn answer<S>(state: &AppState<S>, outcome: Result<Outcome, crate::storage::StoreError>) -> Response {
    match outcome {
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

/// `GET /.well-known/ohttp-gateway`: the live key configurations.
async fn gateway_keys<S: Store>(State(state): State<Arc<AppState<S>>>) -> Response {
    let keys = state.ohttp_keys();
    if keys.is_empty() {
        return status(StatusCode::NOT_FOUND, "no_keys");
    }
    ([(header::CONTENT_TYPE, gateway::KEYS_TYPE), (header::CACHE_CONTROL, "max-age=3600")], keys.encoded().to_vec()).into_response()
}

/// The key problem of RFC 9458 (problem type `ohttp-key`): the client
/// should fetch the keys again.
fn key_problem() -> Response {
    let body = r#"{"type":"https://iana.org/assignments/http-problem-types#ohttp-key","title":"key identifier unknown"}"#;
    (StatusCode::UNPROCESSABLE_ENTITY, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
}

/// `POST /.well-known/ohttp-gateway` (`message/ohttp-req`): decapsulates
/// with the live key the request names, runs the inner request through the
/// ingest path, and encapsulates its answer (`message/ohttp-res`). Nothing
/// of a refused request is kept; it is counted by reason.
async fn gateway_post<S: Store>(State(state): State<Arc<AppState<S>>>, req: Request) -> Response {
    use gateway::Refusal;
    let max = gateway::max_encapsulated(state.options.max_body);
    let (enc, _slot) = match read_body(req, &state, gateway::REQUEST_TYPE, max).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let refuse = |why: Refusal| {
        state.metrics.gateway_refuse(why);
        match why {
            Refusal::KeyUnknown => key_problem(),
            Refusal::Undecryptable => status(StatusCode::BAD_REQUEST, "undecryptable"),
            _ => status(StatusCode::BAD_REQUEST, "malformed_encapsulation"),
        }
    };
    // Key id, KEM, KDF, AEAD, the encapsulated key and at least a tag.
    if enc.len() < gateway::CRYPTO_OVERHEAD {
        return refuse(Refusal::Malformed);
    }
    let keys = state.ohttp_keys();
    let Some(server) = keys.server(enc[0]) else { return refuse(Refusal::KeyUnknown) };
    let (inner, response) = match server.decapsulate(&enc) {
        Ok(x) => x,
        Err(e) => return refuse(gateway::refusal_of(&e)),
    };
    drop(enc);
    let answer = match inner_request(&state, &inner) {
        Ok(body) => answer(&state, receive(&state, &body, Route::Gateway).await),
        Err((code, reason)) => {
            state.metrics.gateway_refuse(Refusal::InnerRequest);
            status(code, reason)
        }
    };
    let Some(bhttp) = to_bhttp(answer).await else {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "internal");
    };
    match response.encapsulate(&bhttp) {
        Ok(bytes) => ([(header::CONTENT_TYPE, gateway::RESPONSE_TYPE), (header::CACHE_CONTROL, "no-store")], bytes).into_response(),
        Err(e) => {
            eprintln!("OHTTP: cannot encapsulate an answer: {e}");
            status(StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

/// The report inside a decapsulated Binary HTTP request: a `POST` to the
/// ingest path passing the same header checks as `/v1/report`; otherwise the
/// answer to send back (encapsulated).
fn inner_request<S>(state: &AppState<S>, inner: &[u8]) -> Result<Vec<u8>, Refused> {
    let Ok(msg) = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(inner)) else {
        return Err((StatusCode::BAD_REQUEST, "bhttp"));
    };
    let control = msg.control();
    if control.status().is_some() {
        return Err((StatusCode::BAD_REQUEST, "bhttp"));
    }
    if control.path() != Some(state.options.ingest_path.as_bytes()) {
        return Err((StatusCode::NOT_FOUND, "not_found"));
    }
    if control.method() != Some(b"POST".as_slice()) {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "method"));
    }
    let mut headers = axum::http::HeaderMap::new();
    for field in msg.header().iter() {
        if let (Ok(name), Ok(value)) =
            (header::HeaderName::from_bytes(field.name()), HeaderValue::from_bytes(field.value()))
        {
            headers.append(name, value);
        }
    }
    check_head(&headers, state, "application/json", state.options.max_body)?;
    if msg.content().len() > state.options.max_body {
        state.metrics.too_large.fetch_add(1, Ordering::Relaxed);
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    }
    Ok(msg.content().to_vec())
}

/// An answer as a Binary HTTP response: status, Content-Type and
/// Retry-After when present, and the body.
async fn to_bhttp(r: Response) -> Option<Vec<u8>> {
    let (parts, body) = r.into_parts();
    let code = bhttp::StatusCode::try_from(parts.status.as_u16()).ok()?;
    let mut msg = bhttp::Message::response(code);
    for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            msg.put_header(name.as_str(), v.as_bytes());
        }
    }
    msg.write_content(axum::body::to_bytes(body, 64 * 1024).await.ok()?);
    let mut out = vec![];
    msg.write_bhttp(bhttp::Mode::KnownLength, &mut out).ok()?;
    Some(out)
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

/// The largest request head (request line, header lines and the blank line
/// after them), exactly: one byte more is answered 431 and the connection
/// closed. A client needs well under 1 KiB. It is also the read buffer per
/// connection (hyper's default, ~400 KiB, would let each of the 1024
/// connections hold that much); bodies stream through it.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Connections that may still be closing after being taken back (see
/// [`serve_http`]): the most a listener holds is its cap plus these.
pub const EVICTION_SLACK: usize = 16;

#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// Time allowed for a request's head (and a TLS handshake), and for an
    /// idle kept-alive connection to start its next request.
    pub header_timeout: Duration,
}

/// What a connection is doing, as far as the accept loop and the
/// connection's own deadline care.
const IDLE: u64 = 0; // waiting for a request head: new, or kept alive between requests
const READING: u64 = 1; // head received; body arriving, or waiting for a work slot
const WORKING: u64 = 2; // holding a work slot (ingest in flight, admin read): never taken back
const MS_BITS: u64 = (1 << 62) - 1;

struct Conn {
    /// Phase in the top two bits, and the milliseconds since `epoch` at
    /// which it began.
    phase: AtomicU64,
    epoch: Instant,
    closed: Notify,
}

impl Conn {
    fn set(&self, phase: u64) {
        self.phase.store(phase << 62 | (self.epoch.elapsed().as_millis() as u64 & MS_BITS), Ordering::Relaxed);
    }

    /// (phase, milliseconds since the epoch when it began)
    fn get(&self) -> (u64, u64) {
        let w = self.phase.load(Ordering::Relaxed);
        (w >> 62, w & MS_BITS)
    }

    /// How long the connection may stay in its phase from now; None when
    /// its time is up. A request past its head gets the body timeout plus a
    /// second, so that the handler's own 408 (or the admin's 429) goes out
    /// first; a working request is looked at again later.
    fn time_left(&self, limit: Duration) -> Option<Duration> {
        let (phase, since) = self.get();
        let allowed = match phase {
            IDLE => limit,
            READING => limit + Duration::from_secs(1),
            _ => return Some(limit),
        };
        let elapsed = Duration::from_millis((self.epoch.elapsed().as_millis() as u64).saturating_sub(since));
        allowed.checked_sub(elapsed).filter(|d| !d.is_zero())
    }
}

/// A connection's handle in its requests' extensions: handlers mark the
/// moment they take a work slot. Says nothing about the peer.
#[derive(Clone)]
pub struct ConnHandle(Arc<Conn>);

impl ConnHandle {
    /// The request now holds a work slot: its connection is not taken back.
    pub fn working(&self) {
        self.0.set(WORKING);
    }
}

/// A listener's open connections, so that the oldest idle one can be closed
/// when a new one arrives at the cap.
struct Conns {
    cap: usize,
    epoch: Instant,
    live: std::sync::Mutex<(u64, HashMap<u64, Arc<Conn>>)>,
}

impl Conns {
    /// Registers a new connection; at the cap, closes the one that has been
    /// idle or reading the longest (a connection whose request holds a work
    /// slot is never closed). Nothing is kept about the peer.
    fn admit(self: &Arc<Self>) -> (Arc<Conn>, Registered) {
        let conn = Arc::new(Conn { phase: AtomicU64::new(0), epoch: self.epoch, closed: Notify::new() });
        conn.set(IDLE);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let id = live.0;
        live.0 += 1;
        if live.1.len() >= self.cap {
            let oldest = live.1.iter().filter(|(_, c)| c.get().0 != WORKING).min_by_key(|(_, c)| c.get().1).map(|(id, _)| *id);
            if let Some(c) = oldest.and_then(|id| live.1.remove(&id)) {
                c.closed.notify_one();
            }
        }
        live.1.insert(id, conn.clone());
        (conn, Registered { conns: self.clone(), id })
    }
}

/// Removes a connection from its listener's table when its task ends.
struct Registered {
    conns: Arc<Conns>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.conns.live.lock().unwrap_or_else(|p| p.into_inner()).1.remove(&self.id);
    }
}

/// Accepts connections until `shutdown` turns true.
///
/// New connections are always accepted: at `max_connections`, the oldest
/// connection that is idle (no request, or between requests) or still
/// sending its request is closed to make room, so that idle or stalling
/// clients cannot keep new ones waiting in the kernel's backlog. A
/// connection's phase has a deadline of its own too (`header_timeout`,
/// plus a second past the head), which also ends a kept-alive connection
/// idle for that long.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let conns = Arc::new(Conns { cap: limits.max_connections.max(1), epoch: Instant::now(), live: Default::default() });
    // Bounds the sockets held while closed connections wind down.
    let sockets = Arc::new(Semaphore::new(limits.max_connections.max(1) + EVICTION_SLACK));
    loop {
        let socket = tokio::select! {
            s = sockets.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => return },
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
        let (conn, registered) = conns.admit();
        let (router, tls) = (router.clone(), tls.clone());
        tokio::spawn(async move {
            let _held = (socket, registered);
            let inner = TowerToHyperService::new(router.into_service::<hyper::body::Incoming>());
            let in_service = conn.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                in_service.set(READING);
                req.extensions_mut().insert(ConnHandle(in_service.clone()));
                let answer = hyper::service::Service::call(&inner, req);
                let conn = in_service.clone();
                async move {
                    let r = answer.await;
                    conn.set(IDLE);
                    r
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            // max_buf_size alone let heads of up to ~48 KiB through (a read
            // may fill more than the buffer's limit); max_header_size counts
            // the parsed head itself.
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_header_size(MAX_HEAD_BYTES);
            let work = async move {
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
            };
            tokio::pin!(work);
            // Dropping `work` closes the connection.
            while let Some(left) = conn.time_left(limits.header_timeout) {
                tokio::select! {
                    _ = &mut work => break,
                    _ = conn.closed.notified() => break,
                    _ = tokio::time::sleep(left) => {}
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
