//! One HTTPS POST per attempt, with every limit set explicitly (ureq's
//! defaults have no timeouts, follow redirects and read 10 MB bodies).
//!
//! Nothing links two reports at the transport level: every attempt builds a
//! fresh agent (its own connection pool and its own TLS configuration: with
//! `system-tls` a new OpenSSL `SSL_CTX`, with `bundled-tls` a new rustls
//! configuration, so its own TLS session cache), asks for `Connection: close`, keeps no idle
//! connection, and drops the agent with its socket when the outcome is known.
//! No TLS session or ticket from one report is offered in the next.
//!
//! A gate runs once the connection (and, for https, the TLS handshake) is
//! established and before the first byte of the request is written: the
//! caller re-reads consent, policy and ownership there, so a "no" given
//! during a slow connect or handshake stops the report.

use http::Uri;
#[cfg(not(windows))]
use std::fmt;
use std::net::IpAddr;
#[cfg(not(windows))]
use std::sync::Arc;
use std::time::Duration;
#[cfg(not(windows))]
use ureq::unversioned::resolver::DefaultResolver;
#[cfg(not(windows))]
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport as Wire};
#[cfg(not(windows))]
use ureq::tls::{parse_pem, Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

// On Windows the transport is WinHTTP (system proxy, PAC, proxy
// authentication, certificate store); this file keeps the pure helpers both
// share and the ureq transport everywhere else.
#[cfg(windows)]
pub use crate::transport_winhttp::{parse_ca, Transport};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const OVERALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The collector's answer is not used; read a little for the error message.
pub const MAX_RESPONSE_BODY: u64 = 8 * 1024;

/// Result of one attempt, as the schedule needs it.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered { status: u16 },
    /// A 4xx other than 408/429, or a redirect: this report is dropped.
    Refused { status: u16, error: String },
    /// Network error, 408, 429 or 5xx: retried later.
    Failed { status: Option<u16>, retry_after: Option<i64>, error: String },
    /// The gate said no once the connection was up, or the attempt was
    /// interrupted (see [`Abort`]) before the gate let it write: not a byte
    /// of the request was written.
    Stopped,
    /// [`Abort::abort`] interrupted the attempt after bytes of the request
    /// may have been written and before the answer's status arrived: the
    /// collector may or may not have the report.
    Interrupted { error: String },
    /// Through a relay: the gateway does not know the key configuration (its
    /// answer named `key_config_outdated`, or did not open). The report
    /// waits for a new configuration instead of being retried.
    KeyOutdated { status: Option<u16>, error: String },
}

/// A server's answer as every transport returns it: the status, the
/// Retry-After delay, and the body (`None` when it could not be read in
/// full within `MAX_RESPONSE_BODY`).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<i64>,
    pub body: Option<Vec<u8>>,
}

/// What an answer of `who` (the collector, or the relay) means for the report.
pub fn classify(a: Answer, who: &str) -> Delivery {
    let status = a.status;
    let text: String = a.body.as_deref().map(|b| String::from_utf8_lossy(b).chars().take(200).collect()).unwrap_or_default();
    let detail = if text.trim().is_empty() { String::new() } else { format!(": {}", text.trim()) };
    let from = if who == WHO_COLLECTOR { String::new() } else { format!(" from {who}") };
    match status {
        200..=299 => Delivery::Delivered { status },
        // 407: a proxy wants credentials, which never come from the
        // configuration; retried like a network error, not dropped.
        407 | 408 | 429 | 500..=599 => Delivery::Failed { status: Some(status), retry_after: a.retry_after, error: format!("HTTP {status}{from}{detail}") },
        300..=399 => Delivery::Refused { status, error: format!("HTTP {status}{from}: redirects are not followed") },
        _ => Delivery::Refused { status, error: format!("HTTP {status}{from}{detail}; report dropped") },
    }
}

pub const WHO_COLLECTOR: &str = "the collector";

/// The sending half every platform shares: a direct POST of the report, or
/// through an Oblivious HTTP relay. Only "POST these bytes with this content
/// type and return the answer" (`Transport::exchange`) differs per platform.
pub struct Sender {
    transport: Transport,
    endpoint: String,
    ohttp: Option<crate::oblivious::Ohttp>,
}

impl Sender {
    /// The connection goes to the relay when `ohttp` is given (its URL
    /// decides about loopback and proxy), else to the endpoint.
    pub fn new(endpoint: &str, proxy: Option<&str>, ca_cert_pem: Option<&str>, ohttp: Option<crate::oblivious::Ohttp>) -> Result<Sender, String> {
        let url = ohttp.as_ref().map_or(endpoint, |o| o.relay.as_str());
        Ok(Sender { transport: Transport::new(url, proxy, ca_cert_pem)?, endpoint: endpoint.to_string(), ohttp })
    }

    pub fn via_relay(&self) -> bool {
        self.ohttp.is_some()
    }

    /// One attempt on a connection of its own: `gate` is asked after the
    /// connection is established and before the first byte is written;
    /// `abort` interrupts it from another thread (see [`Abort`]).
    pub fn send(&self, body: &str, gate: impl Fn() -> bool + Send + Sync + 'static, abort: &Abort) -> Delivery {
        match &self.ohttp {
            None => self.transport.exchange("application/json", body.as_bytes().to_vec(), |a| classify(a, WHO_COLLECTOR), gate, abort),
            Some(o) => match o.encapsulate(&self.endpoint, body.as_bytes()) {
                Ok((request, context)) => self.transport.exchange(crate::oblivious::REQUEST_TYPE, request, move |a| crate::oblivious::open(context, a), gate, abort),
                Err(e) => Delivery::Failed { status: None, retry_after: None, error: format!("cannot encapsulate the report for the relay: {e}") },
            },
        }
    }
}

/// Lets another thread (`tel_close`) interrupt the attempt in flight. Once
/// aborted it stays so: every later attempt stops before its first byte.
#[derive(Default)]
pub struct Abort {
    aborted: std::sync::atomic::AtomicBool,
    /// The running attempt's agent: `Agent::shutdown` shuts its socket down,
    /// which wakes a read or write blocked on it with an error at once.
    #[cfg(not(windows))]
    agent: std::sync::Mutex<Option<ureq::Agent>>,
    /// Where the sending thread waits for the WinHTTP worker of the
    /// running attempt, or for this abort (see `transport_winhttp`).
    #[cfg(windows)]
    pub(crate) wait: std::sync::Arc<crate::transport_winhttp::Wait>,
}

impl Abort {
    /// Interrupts the attempt in flight, if any, and every later one.
    /// Returns whether this platform's transport can interrupt an attempt
    /// blocked on the network (both can: ureq's socket is shut down; on
    /// Windows the sending thread stops waiting for the WinHTTP worker,
    /// which ends on its own, see `transport_winhttp`).
    pub fn abort(&self) -> bool {
        self.aborted.store(true, std::sync::atomic::Ordering::SeqCst);
        #[cfg(not(windows))]
        {
            // Taken under the lock the attempt stores it under, after the flag
            // is set: an attempt that stores its agent later sees the flag.
            let agent = self.agent.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(agent) = agent {
                agent.shutdown();
            }
            true
        }
        #[cfg(windows)]
        {
            self.wait.abort();
            true
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(not(windows))]
/// Asked once per attempt, after connect and TLS handshake, before the first
/// byte of the request: may it still be sent?
type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

#[cfg(not(windows))]
/// The last link of the connector chain: wraps the finished (TCP or TLS)
/// transport so that its first write asks the gate.
struct GateConnector {
    gate: Gate,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    /// Set once the gate let the first byte be written.
    passed: Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(not(windows))]
impl fmt::Debug for GateConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GateConnector")
    }
}

#[cfg(not(windows))]
impl<In: Wire> Connector<In> for GateConnector {
    type Out = GatedWire<In>;

    fn connect(&self, _details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| GatedWire { inner, gate: Some(self.gate.clone()), stopped: self.stopped.clone(), passed: self.passed.clone() }))
    }
}

#[cfg(not(windows))]
struct GatedWire<T> {
    inner: T,
    /// Taken by the first write.
    gate: Option<Gate>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    passed: Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(not(windows))]
impl<T> fmt::Debug for GatedWire<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatedWire")
    }
}

#[cfg(not(windows))]
impl<T: Wire> Wire for GatedWire<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if let Some(gate) = self.gate.take() {
            if !gate() {
                self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(ureq::Error::Io(std::io::Error::other("stopped before the first byte: consent, policy or ownership changed")));
            }
            self.passed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// https anywhere; plain http only to a loopback address. Returns whether the
/// endpoint is on loopback (then no proxy is used).
pub fn check_endpoint(url: &str) -> Result<bool, String> {
    if url.len() > 2048 {
        return Err("longer than 2048 bytes".into());
    }
    let uri: Uri = url.parse().map_err(|e| format!("\"{}\" is not a URL: {e}", crate::schema::truncate(url, 80)))?;
    let host = uri.host().filter(|h| !h.is_empty()).ok_or("has no host")?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("must not carry credentials".into());
    }
    let loopback = is_loopback_host(host);
    match uri.scheme_str() {
        Some("https") => Ok(loopback),
        Some("http") if loopback => Ok(true),
        Some("http") => Err("plain http is allowed only to a loopback address; use https".into()),
        _ => Err("must be an https:// URL (plain http:// only to a loopback address)".into()),
    }
}

#[cfg(not(windows))]
pub fn parse_ca(pem: &str) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = vec![];
    for item in parse_pem(pem.as_bytes()) {
        match item.map_err(|e| format!("not valid PEM: {e}"))? {
            PemItem::Certificate(c) => certs.push(c),
            _ => return Err("must contain certificates only".into()),
        }
    }
    if certs.is_empty() {
        return Err("contains no certificate".into());
    }
    Ok(certs)
}

/// The `proxy` key: `"none"` (*fixed*: always a direct connection) or a proxy
/// URL without credentials (proxy credentials never come from the
/// configuration; on Windows the process identity answers a challenge).
pub fn check_proxy(p: &str) -> Result<(), String> {
    if p == PROXY_NONE {
        return Ok(());
    }
    if p.contains('@') {
        return Err("must not carry credentials".into());
    }
    #[cfg(not(windows))]
    ureq::Proxy::new(p).map_err(|e| e.to_string())?;
    #[cfg(windows)]
    crate::transport_winhttp::named_proxy(p)?;
    Ok(())
}

/// The `proxy` value that forces a direct connection. *fixed*
pub const PROXY_NONE: &str = "none";

/// `system-tls` (the default): the platform's TLS library through native-tls,
/// on Linux the system's OpenSSL 3 (a fresh `SSL_CTX` per attempt, so no
/// session cache survives it; `ca_cert_pem` replaces the default verify
/// paths). `bundled-tls`: rustls (ring) with the platform verifier, on Linux
/// the system's CA bundle as OpenSSL would find it. Exactly one of the two:
/// with both, native-tls would still be linked and the build would need
/// OpenSSL 3 after all.
#[cfg(all(not(windows), feature = "bundled-tls", not(feature = "system-tls")))]
const TLS_PROVIDER: TlsProvider = TlsProvider::Rustls;
#[cfg(all(not(windows), feature = "system-tls", not(feature = "bundled-tls")))]
const TLS_PROVIDER: TlsProvider = TlsProvider::NativeTls;
#[cfg(all(not(windows), feature = "system-tls", feature = "bundled-tls"))]
compile_error!("features `system-tls` and `bundled-tls` exclude each other: build the bundled one with --no-default-features --features bundled-tls");
#[cfg(all(not(windows), not(feature = "system-tls"), not(feature = "bundled-tls")))]
compile_error!("a Unix build needs a TLS stack: feature `system-tls` (the default) or `bundled-tls`");

#[cfg(not(windows))]
pub struct Transport {
    /// The configuration each attempt's fresh agent is built from.
    config: ureq::config::Config,
    endpoint: String,
}

#[cfg(not(windows))]
impl Transport {
    pub fn new(endpoint: &str, proxy: Option<&str>, ca_cert_pem: Option<&str>) -> Result<Transport, String> {
        let loopback = check_endpoint(endpoint)?;
        let proxy = match proxy {
            _ if loopback => None,
            Some(PROXY_NONE) => None,
            Some(p) => Some(ureq::Proxy::new(p).map_err(|e| e.to_string())?),
            None => ureq::Proxy::try_from_env(),
        };
        let roots = match ca_cert_pem {
            Some(pem) => RootCerts::new_with_certs(&parse_ca(pem)?),
            None => RootCerts::PlatformVerifier,
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(OVERALL_TIMEOUT))
            .proxy(proxy)
            .user_agent(concat!("optin-telemetry/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().provider(TLS_PROVIDER).root_certs(roots).build())
            // Nothing outlives the attempt (see the module docs).
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build();
        Ok(Transport { config, endpoint: endpoint.to_string() })
    }

    /// POSTs `bytes` as `content_type` on a connection of its own and
    /// hands the answer to `interpret`. `gate` is asked after the connection
    /// is established and before the first byte is written. `abort`
    /// interrupts it from another thread (see [`Abort`]).
    pub fn exchange(
        &self,
        content_type: &str,
        bytes: Vec<u8>,
        interpret: impl FnOnce(Answer) -> Delivery + Send + 'static,
        gate: impl Fn() -> bool + Send + Sync + 'static,
        abort: &Abort,
    ) -> Delivery {
        use std::sync::atomic::Ordering::SeqCst;
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let passed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connector = DefaultConnector::new().chain(GateConnector { gate: Arc::new(gate), stopped: stopped.clone(), passed: passed.clone() });
        let agent = ureq::Agent::with_parts(self.config.clone(), connector, DefaultResolver::default());
        {
            let mut slot = abort.agent.lock().unwrap_or_else(|e| e.into_inner());
            if abort.is_aborted() {
                return Delivery::Stopped;
            }
            *slot = Some(agent.clone());
        }
        struct Clear<'a>(&'a Abort);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0.agent.lock().unwrap_or_else(|e| e.into_inner()).take();
            }
        }
        let _clear = Clear(abort);
        let response = agent
            .post(&self.endpoint)
            .header("Content-Type", content_type)
            .header("Connection", "close")
            .send(&bytes[..]);
        let mut response = match response {
            Ok(r) => r,
            Err(_) if stopped.load(SeqCst) => return Delivery::Stopped,
            // Interrupted during the connect, the handshake or the gate:
            // nothing of the request was written.
            Err(_) if abort.is_aborted() && !passed.load(SeqCst) => return Delivery::Stopped,
            Err(e) if abort.is_aborted() => return Delivery::Interrupted { error: format!("interrupted by close before the collector answered ({e})") },
            Err(e) => return Delivery::Failed { status: None, retry_after: None, error: format!("network error: {e}") },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, crate::now_unix()));
        // Read a bounded amount so a hostile server cannot make us buffer much.
        let body = response.body_mut().with_config().limit(MAX_RESPONSE_BODY).read_to_vec().ok();
        interpret(Answer { status, retry_after, body })
    }
}

/// Retry-After as delay-seconds or an HTTP date (IMF-fixdate), in seconds
/// from `now`. Returns None for anything else.
pub fn parse_retry_after(v: &str, now: i64) -> Option<i64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.min(i64::MAX as u64) as i64);
    }
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4].split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) {
        return None;
    }
    let at = days_from_civil(year, month, day) * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some((at - now).max(0))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(check_endpoint("https://telemetry.example.com/v1/report"), Ok(false));
        assert_eq!(check_endpoint("http://127.0.0.1:8080/r"), Ok(true));
        assert_eq!(check_endpoint("http://127.8.9.10/r"), Ok(true));
        assert_eq!(check_endpoint("http://[::1]:9/r"), Ok(true));
        assert_eq!(check_endpoint("http://localhost/r"), Ok(true));
        for bad in ["http://example.com/r", "ftp://x/", "https://user:pw@example.com/", "not a url", "/relative", "http://10.0.0.1/"] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[cfg(not(windows))]
    #[test]
    fn proxy_none_means_no_proxy_at_all() {
        let remote = "https://telemetry.example.com/r";
        let none = Transport::new(remote, Some(PROXY_NONE), None).unwrap();
        assert!(none.config.proxy().is_none());
        let named = Transport::new(remote, Some("http://proxy.example.com:3128"), None).unwrap();
        assert!(named.config.proxy().is_some());
        assert!(check_proxy("http://user:pw@proxy.example.com:3128").unwrap_err().contains("credentials"));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 60), Some(60));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 + 60), Some(0));
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
    }
}
