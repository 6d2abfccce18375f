//! The Windows transport: one HTTPS POST through WinHTTP, the HTTP stack of
//! Windows itself. It brings what a company network expects of a Windows
//! program and what a TLS library of our own could not: the system proxy (the
//! WinHTTP machine setting that services use, the user's Internet Options,
//! PAC scripts and WPAD), proxy authentication with the process's Windows
//! identity (Negotiate/NTLM), SChannel with the Windows certificate store
//! (enterprise roots; revocation is not asked for, see docs/windows.md) — and
//! a DLL without rustls and its roots.
//! docs/windows.md says why and what could not be tested under Wine.
//!
//! Same promises as the ureq transport (src/transport.rs): https only (plain
//! http only to loopback, checked by `check_endpoint`), no redirects, 10 s to
//! connect and 30 s in all, at most 8 KiB of the answer read, and nothing kept
//! between reports: every send opens its own WinHTTP session with keep-alive
//! disabled and closes it before returning, so no connection or TLS session
//! outlives the report.

use crate::transport::{check_endpoint, parse_retry_after, Answer, Delivery, CONNECT_TIMEOUT, MAX_RESPONSE_BODY, OVERALL_TIMEOUT, PROXY_NONE};
use http::Uri;
use std::ffi::c_void;
use std::ptr::{null, null_mut};
use std::time::Instant;

type Hinternet = *mut c_void;
type Bool = i32;

#[repr(C)]
struct ProxyInfo {
    access_type: u32,
    proxy: *mut u16,
    bypass: *mut u16,
}

#[repr(C)]
struct IeProxyConfig {
    auto_detect: Bool,
    auto_config_url: *mut u16,
    proxy: *mut u16,
    bypass: *mut u16,
}

#[repr(C)]
struct AutoProxyOptions {
    flags: u32,
    auto_detect_flags: u32,
    auto_config_url: *const u16,
    reserved: *mut c_void,
    reserved2: u32,
    auto_logon_if_challenged: Bool,
}

#[repr(C)]
struct CertContext {
    encoding: u32,
    encoded: *const u8,
    encoded_len: u32,
    info: *mut c_void,
    store: *mut c_void,
}

#[repr(C)]
struct TrustStatus {
    error: u32,
    info: u32,
}

#[repr(C)]
struct ChainPara {
    size: u32,
    usage_type: u32,
    usage_count: u32,
    usage_ids: *const *const u8,
}

#[repr(C)]
struct ChainContext {
    size: u32,
    trust: TrustStatus,
    chain_count: u32,
    chains: *const *const SimpleChain,
}

#[repr(C)]
struct SimpleChain {
    size: u32,
    trust: TrustStatus,
    element_count: u32,
    elements: *const *const ChainElement,
}

#[repr(C)]
struct ChainElement {
    size: u32,
    cert: *const CertContext,
    trust: TrustStatus,
}

#[link(name = "winhttp")]
extern "system" {
    fn WinHttpOpen(agent: *const u16, access: u32, proxy: *const u16, bypass: *const u16, flags: u32) -> Hinternet;
    fn WinHttpConnect(session: Hinternet, server: *const u16, port: u16, reserved: u32) -> Hinternet;
    fn WinHttpOpenRequest(connect: Hinternet, verb: *const u16, object: *const u16, version: *const u16, referrer: *const u16, accept: *const *const u16, flags: u32) -> Hinternet;
    fn WinHttpSetTimeouts(h: Hinternet, resolve: i32, connect: i32, send: i32, receive: i32) -> Bool;
    fn WinHttpSetOption(h: Hinternet, option: u32, buffer: *const c_void, len: u32) -> Bool;
    fn WinHttpQueryOption(h: Hinternet, option: u32, buffer: *mut c_void, len: *mut u32) -> Bool;
    fn WinHttpSendRequest(req: Hinternet, headers: *const u16, headers_len: u32, optional: *const c_void, optional_len: u32, total_len: u32, context: usize) -> Bool;
    fn WinHttpWriteData(req: Hinternet, data: *const c_void, len: u32, written: *mut u32) -> Bool;
    fn WinHttpReceiveResponse(req: Hinternet, reserved: *mut c_void) -> Bool;
    fn WinHttpQueryHeaders(req: Hinternet, info: u32, name: *const u16, buffer: *mut c_void, len: *mut u32, index: *mut u32) -> Bool;
    fn WinHttpReadData(req: Hinternet, buffer: *mut c_void, len: u32, read: *mut u32) -> Bool;
    fn WinHttpQueryAuthSchemes(req: Hinternet, supported: *mut u32, first: *mut u32, target: *mut u32) -> Bool;
    fn WinHttpSetCredentials(req: Hinternet, target: u32, scheme: u32, user: *const u16, password: *const u16, params: *mut c_void) -> Bool;
    fn WinHttpCloseHandle(h: Hinternet) -> Bool;
    fn WinHttpGetIEProxyConfigForCurrentUser(config: *mut IeProxyConfig) -> Bool;
    fn WinHttpGetProxyForUrl(session: Hinternet, url: *const u16, options: *const AutoProxyOptions, info: *mut ProxyInfo) -> Bool;
    fn WinHttpGetDefaultProxyConfiguration(info: *mut ProxyInfo) -> Bool;
}

#[link(name = "kernel32")]
extern "system" {
    fn GlobalFree(mem: *mut c_void) -> *mut c_void;
    fn GetLastError() -> u32;
}

#[link(name = "crypt32")]
extern "system" {
    fn CertCreateCertificateContext(encoding: u32, data: *const u8, len: u32) -> *const CertContext;
    fn CertFreeCertificateContext(cert: *const CertContext) -> Bool;
    fn CertOpenStore(provider: *const u8, encoding: u32, crypt_prov: usize, flags: u32, para: *const c_void) -> *mut c_void;
    fn CertCloseStore(store: *mut c_void, flags: u32) -> Bool;
    fn CertAddEncodedCertificateToStore(store: *mut c_void, encoding: u32, data: *const u8, len: u32, disposition: u32, out: *mut *const CertContext) -> Bool;
    fn CertAddCertificateContextToStore(store: *mut c_void, cert: *const CertContext, disposition: u32, out: *mut *const CertContext) -> Bool;
    fn CertEnumCertificatesInStore(store: *mut c_void, previous: *const CertContext) -> *const CertContext;
    fn CertGetCertificateChain(engine: *mut c_void, cert: *const CertContext, time: *const c_void, additional: *mut c_void, para: *const ChainPara, flags: u32, reserved: *mut c_void, out: *mut *const ChainContext) -> Bool;
    fn CertFreeCertificateChain(chain: *const ChainContext);
}

const WINHTTP_ACCESS_TYPE_DEFAULT_PROXY: u32 = 0;
const WINHTTP_ACCESS_TYPE_NO_PROXY: u32 = 1;
const WINHTTP_ACCESS_TYPE_NAMED_PROXY: u32 = 3;
const WINHTTP_FLAG_SECURE: u32 = 0x0080_0000;
const WINHTTP_OPTION_SECURITY_FLAGS: u32 = 31;
const WINHTTP_OPTION_DISABLE_FEATURE: u32 = 63;
const WINHTTP_OPTION_SERVER_CERT_CONTEXT: u32 = 78;
const WINHTTP_OPTION_REDIRECT_POLICY: u32 = 88;
const WINHTTP_OPTION_SEND_TIMEOUT: u32 = 5;
/// Each receive (6) and the wait for the whole response header (7): both
/// are narrowed to what is left of the 30 s, or one slow read could block
/// for the session's full 30 s after most of them had gone.
const WINHTTP_OPTION_RECEIVE_TIMEOUT: u32 = 6;
const WINHTTP_OPTION_RECEIVE_RESPONSE_TIMEOUT: u32 = 7;
const WINHTTP_OPTION_REDIRECT_POLICY_NEVER: u32 = 0;
const WINHTTP_OPTION_AUTOLOGON_POLICY: u32 = 77;
const WINHTTP_AUTOLOGON_SECURITY_LEVEL_MEDIUM: u32 = 0;
const WINHTTP_AUTOLOGON_SECURITY_LEVEL_HIGH: u32 = 2;
const WINHTTP_DISABLE_COOKIES: u32 = 0x1;
const WINHTTP_DISABLE_REDIRECTS: u32 = 0x2;
const WINHTTP_DISABLE_KEEP_ALIVE: u32 = 0x8;
const SECURITY_FLAG_IGNORE_UNKNOWN_CA: u32 = 0x100;
const WINHTTP_QUERY_STATUS_CODE: u32 = 19;
const WINHTTP_QUERY_CUSTOM: u32 = 65535;
const WINHTTP_QUERY_FLAG_NUMBER: u32 = 0x2000_0000;
const WINHTTP_AUTH_TARGET_PROXY: u32 = 1;
const WINHTTP_AUTH_SCHEME_BASIC: u32 = 0x1;
const WINHTTP_AUTH_SCHEME_NTLM: u32 = 0x2;
const WINHTTP_AUTH_SCHEME_DIGEST: u32 = 0x8;
const WINHTTP_AUTH_SCHEME_NEGOTIATE: u32 = 0x10;
const WINHTTP_AUTOPROXY_AUTO_DETECT: u32 = 0x1;
const WINHTTP_AUTOPROXY_CONFIG_URL: u32 = 0x2;
const WINHTTP_AUTO_DETECT_TYPE_DHCP: u32 = 0x1;
const WINHTTP_AUTO_DETECT_TYPE_DNS_A: u32 = 0x2;
const X509_AND_PKCS7_ENCODING: u32 = 0x0001_0001;
const CERT_STORE_PROV_MEMORY: usize = 2;
const CERT_STORE_ADD_USE_EXISTING: u32 = 2;
/// Chain errors that do not matter when the chain reaches a `ca_cert_pem`
/// certificate: that certificate is the trust anchor, whether or not Windows
/// trusts it, and revocation is not asked for.
const CERT_TRUST_IGNORED: u32 = 0x20 /* untrusted root */ | 0x40 /* revocation unknown */ | 0x1_0000 /* partial chain */ | 0x100_0000 /* offline revocation */;
const PROXY_AUTH_REQUIRED: u32 = 407;

use crate::platform::wide;

/// Takes a string WinHTTP allocated with GlobalAlloc and frees it.
fn take_global(p: *mut u16) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: WinHTTP returns NUL-terminated strings it allocated with GlobalAlloc.
    let s = unsafe {
        let len = (0..).take_while(|&i| *p.add(i) != 0).count();
        String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
    };
    // SAFETY: allocated by WinHTTP with GlobalAlloc, freed once.
    unsafe { GlobalFree(p.cast()) };
    Some(s).filter(|s| !s.trim().is_empty())
}

fn last_error() -> u32 {
    // SAFETY: no arguments.
    unsafe { GetLastError() }
}

/// A WinHTTP error code with the words for the common ones.
fn describe(code: u32) -> String {
    let what = match code {
        12002 => "timed out",
        12005 => "invalid URL",
        12007 => "the name could not be resolved",
        12029 => "cannot connect",
        12030 => "the connection was aborted",
        12037 | 12038 | 12045 | 12057 | 12169 | 12175 | 12179 => "the server's certificate is not trusted or not valid for it",
        12152 => "invalid answer from the server",
        // Wine also reports a failed certificate check or a CONNECT refused by the proxy this way.
        12157 => "the TLS connection failed or the server's certificate was not accepted",
        12166 | 12167 => "the proxy auto-configuration script failed",
        12178 | 12180 => "no proxy auto-configuration found",
        _ => "",
    };
    if what.is_empty() {
        format!("WinHTTP error {code}")
    } else {
        format!("{what} (WinHTTP error {code})")
    }
}

/// A WinHTTP handle, closed when dropped.
struct Handle(Hinternet);

impl Handle {
    fn new(h: Hinternet, what: &str) -> Result<Handle, String> {
        if h.is_null() {
            Err(format!("{what}: {}", describe(last_error())))
        } else {
            Ok(Handle(h))
        }
    }

    fn set_u32(&self, option: u32, value: u32) -> bool {
        // SAFETY: a valid handle and a DWORD option value of the size given.
        unsafe { WinHttpSetOption(self.0, option, (&value as *const u32).cast(), 4) != 0 }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle WinHTTP gave us, closed exactly once.
        unsafe { WinHttpCloseHandle(self.0) };
    }
}

/// The `proxy` configuration value as WinHTTP wants it: `host:port` (an
/// `http://` prefix is removed; WinHTTP speaks only to HTTP proxies).
pub fn named_proxy(p: &str) -> Result<String, String> {
    let rest = match p.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => return Err(format!("\"{scheme}://\" proxies are not supported on Windows; use an http:// proxy")),
        None => p,
    };
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    let ok = !hostport.is_empty()
        && !hostport.starts_with(':')
        && hostport.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']' | b'_'));
    if !ok {
        return Err(format!("\"{}\" is not a proxy address such as http://proxy.example.com:8080", crate::schema::truncate(p, 80)));
    }
    Ok(hostport.to_string())
}

/// PEM certificates to DER, each checked by Windows' own certificate parser.
pub fn parse_ca(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = vec![];
    let mut block: Option<(String, String)> = None;
    for line in pem.lines().map(str::trim) {
        if let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
            if block.is_some() {
                return Err("not valid PEM: BEGIN inside a block".into());
            }
            block = Some((label.to_string(), String::new()));
        } else if let Some(label) = line.strip_prefix("-----END ").and_then(|l| l.strip_suffix("-----")) {
            let (begin, body) = block.take().ok_or("not valid PEM: END without BEGIN")?;
            if begin != label {
                return Err("not valid PEM: BEGIN and END do not match".into());
            }
            if begin != "CERTIFICATE" {
                return Err("must contain certificates only".into());
            }
            let der = crate::base64::decode(&body).filter(|d| !d.is_empty()).ok_or("not valid PEM: bad base64")?;
            // SAFETY: a buffer and its length; the context is freed at once.
            let ctx = unsafe { CertCreateCertificateContext(X509_AND_PKCS7_ENCODING, der.as_ptr(), der.len() as u32) };
            if ctx.is_null() {
                return Err(format!("not valid PEM: a certificate Windows cannot read (error {})", last_error()));
            }
            // SAFETY: created above.
            unsafe { CertFreeCertificateContext(ctx) };
            certs.push(der);
        } else if let Some((_, body)) = block.as_mut() {
            body.push_str(line);
        }
    }
    if block.is_some() {
        return Err("not valid PEM: a block has no END line".into());
    }
    if certs.is_empty() {
        return Err("contains no certificate".into());
    }
    Ok(certs)
}

/// How one send reaches the collector, and how to say so in an error.
enum Route {
    Direct(String),
    Proxy { proxy: String, bypass: Option<String>, source: String },
    /// The system's default WinHTTP proxy, as WinHTTP resolves it.
    Default(String),
    Unusable(String),
}

impl Route {
    fn describe(&self) -> String {
        match self {
            Route::Direct(why) => format!("direct connection, {why}"),
            Route::Proxy { proxy, bypass: Some(b), source } => format!("proxy {proxy} from {source}, bypass list \"{b}\""),
            Route::Proxy { proxy, source, .. } => format!("proxy {proxy} from {source}"),
            Route::Default(why) => why.clone(),
            Route::Unusable(why) => why.clone(),
        }
    }
}

/// Proxy from the usual environment variables, unless NO_PROXY names the host.
fn env_route(host: &str) -> Option<Route> {
    let (name, value) = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))?;
    let no_proxy = std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let excluded = no_proxy.split(',').map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase()).any(|e| {
        e == "*" || (!e.is_empty() && (host == e || host.ends_with(&format!(".{e}"))))
    });
    if excluded {
        return Some(Route::Direct(format!("the host is in NO_PROXY (proxy {name} not used)")));
    }
    Some(match named_proxy(value.trim()) {
        Ok(proxy) if !value.contains('@') => Route::Proxy { proxy, bypass: None, source: format!("the environment variable {name}") },
        Ok(_) => Route::Unusable(format!("the proxy in {name} carries credentials, which are never used; not sent")),
        Err(e) => Route::Unusable(format!("the proxy in {name} is unusable ({e}); not sent")),
    })
}

/// The current user's Internet Options (PAC URL, WPAD, static proxy), then
/// the WinHTTP machine proxy (`netsh winhttp set proxy`, what services see).
fn system_route(url: &str) -> Route {
    let mut ie = IeProxyConfig { auto_detect: 0, auto_config_url: null_mut(), proxy: null_mut(), bypass: null_mut() };
    // SAFETY: a writable struct; the strings it returns are freed by take_global.
    let have_ie = unsafe { WinHttpGetIEProxyConfigForCurrentUser(&mut ie) } != 0;
    let (auto_detect, pac_url, ie_proxy, ie_bypass) = if have_ie {
        (ie.auto_detect != 0, take_global(ie.auto_config_url), take_global(ie.proxy), take_global(ie.bypass))
    } else {
        (false, None, None, None)
    };
    if auto_detect || pac_url.is_some() {
        let source = match &pac_url {
            Some(u) => format!("the proxy script {u} (Internet Options)"),
            None => "WPAD auto-detection (Internet Options)".to_string(),
        };
        match pac_route(url, auto_detect, pac_url.as_deref()) {
            Ok(Some((proxy, bypass))) => return Route::Proxy { proxy, bypass, source },
            Ok(None) => return Route::Direct(format!("as {source} says")),
            Err(_) => {} // no script found or it failed: the static settings below apply
        }
    }
    if let Some(proxy) = ie_proxy {
        return Route::Proxy { proxy, bypass: ie_bypass, source: "Internet Options".into() };
    }
    let mut info = ProxyInfo { access_type: 0, proxy: null_mut(), bypass: null_mut() };
    // SAFETY: a writable struct; the strings it returns are freed by take_global.
    if unsafe { WinHttpGetDefaultProxyConfiguration(&mut info) } != 0 {
        let (proxy, bypass) = (take_global(info.proxy), take_global(info.bypass));
        if info.access_type == WINHTTP_ACCESS_TYPE_NAMED_PROXY {
            if let Some(proxy) = proxy {
                return Route::Proxy { proxy, bypass, source: "the WinHTTP machine setting".into() };
            }
        }
        return Route::Direct("no system proxy is configured".into());
    }
    Route::Default("the WinHTTP default proxy".into())
}

/// Runs the PAC script (given or found by WPAD) for `url`: Ok(Some(proxy)),
/// Ok(None) for DIRECT, Err when there is no usable script.
fn pac_route(url: &str, auto_detect: bool, pac_url: Option<&str>) -> Result<Option<(String, Option<String>)>, String> {
    let agent = wide(concat!("optin-telemetry/", env!("CARGO_PKG_VERSION")));
    // SAFETY: a NUL-terminated agent string; no proxy strings for NO_PROXY.
    let session = Handle::new(unsafe { WinHttpOpen(agent.as_ptr(), WINHTTP_ACCESS_TYPE_NO_PROXY, null(), null(), 0) }, "WinHttpOpen")?;
    let ms = CONNECT_TIMEOUT.as_millis() as i32;
    // SAFETY: a valid session handle.
    unsafe { WinHttpSetTimeouts(session.0, ms, ms, ms, ms) };
    let pac_wide = pac_url.map(wide);
    let mut flags = 0;
    if auto_detect {
        flags |= WINHTTP_AUTOPROXY_AUTO_DETECT;
    }
    if pac_wide.is_some() {
        flags |= WINHTTP_AUTOPROXY_CONFIG_URL;
    }
    let options = AutoProxyOptions {
        flags,
        auto_detect_flags: if auto_detect { WINHTTP_AUTO_DETECT_TYPE_DHCP | WINHTTP_AUTO_DETECT_TYPE_DNS_A } else { 0 },
        auto_config_url: pac_wide.as_ref().map_or(null(), |w| w.as_ptr()),
        reserved: null_mut(),
        reserved2: 0,
        // A PAC file behind an authenticating server may use the process identity.
        auto_logon_if_challenged: 1,
    };
    let target = wide(url);
    let mut info = ProxyInfo { access_type: 0, proxy: null_mut(), bypass: null_mut() };
    // SAFETY: valid handle, NUL-terminated URL, initialised options, writable result.
    let ok = unsafe { WinHttpGetProxyForUrl(session.0, target.as_ptr(), &options, &mut info) } != 0;
    if !ok {
        return Err(describe(last_error()));
    }
    let (proxy, bypass) = (take_global(info.proxy), take_global(info.bypass));
    Ok(match (info.access_type, proxy) {
        (WINHTTP_ACCESS_TYPE_NAMED_PROXY, Some(p)) => Some((p, bypass)),
        _ => None,
    })
}

#[derive(Clone)]
pub struct Transport {
    endpoint: String,
    host: Vec<u16>,
    host_text: String,
    port: u16,
    path: Vec<u16>,
    secure: bool,
    loopback: bool,
    proxy: Option<String>,
    /// DER certificates of `ca_cert_pem`: the only trust anchors when given.
    roots: Option<Vec<Vec<u8>>>,
}

impl Transport {
    pub fn new(endpoint: &str, proxy: Option<&str>, ca_cert_pem: Option<&str>) -> Result<Transport, String> {
        let loopback = check_endpoint(endpoint)?;
        if let Some(p) = proxy {
            crate::transport::check_proxy(p)?;
        }
        let uri: Uri = endpoint.parse().map_err(|e| format!("not a URL: {e}"))?;
        let secure = uri.scheme_str() == Some("https");
        let host_text = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let roots = ca_cert_pem.map(parse_ca).transpose()?;
        Ok(Transport {
            endpoint: endpoint.to_string(),
            host: wide(&host_text),
            host_text,
            port,
            path: wide(if path.is_empty() { "/" } else { path }),
            secure,
            loopback,
            proxy: proxy.map(str::to_string),
            roots,
        })
    }

    /// Where this send goes: `"proxy": "none"` (*fixed*) forces a direct
    /// connection; a configured proxy (never used for a loopback endpoint,
    /// as on other systems); the environment variables; else the system's
    /// settings (whose bypass list decides for a loopback endpoint too:
    /// `<local>` or the address).
    fn route(&self) -> Route {
        match self.proxy.as_deref() {
            Some(PROXY_NONE) => Route::Direct("\"proxy\": \"none\" in the configuration".into()),
            Some(_) if self.loopback => Route::Direct("loopback endpoint (the configured proxy is not used)".into()),
            Some(p) => match named_proxy(p) {
                Ok(proxy) => Route::Proxy { proxy, bypass: None, source: "the configuration".into() },
                Err(e) => Route::Unusable(format!("configured proxy unusable: {e}")),
            },
            None => match env_route(&self.host_text) {
                Some(_) if self.loopback => Route::Direct("loopback endpoint (the environment's proxy is not used)".into()),
                Some(r) => r,
                None => system_route(&self.endpoint),
            },
        }
    }

    /// One attempt. Connects (through the proxy, TLS handshake included)
    /// and sends the request headers, then asks `gate` right before the first
    /// byte of the report is written; `false` closes the connection with
    /// nothing of the report sent (`Delivery::Stopped`).
    ///
    /// `abort` interrupts it from another thread (`tel_close`). WinHTTP's
    /// synchronous calls cannot be interrupted (closing a handle another
    /// thread is blocked on is documented for asynchronous requests only,
    /// and under Wine 8 the blocked call ran on to its timeout), so the
    /// attempt runs on a worker thread of its own, which alone opens and
    /// closes its handles, and this thread waits for its outcome or for
    /// `abort`, whichever comes first (see [`Wait`]). Aborted before the
    /// gate let the report go, the result is `Delivery::Stopped` (the
    /// worker's gate then says no: nothing of the report is written);
    /// after it and before the answer's status, `Delivery::Interrupted`.
    /// The worker ends on its own within the timeouts, sending nothing more.
    ///
    /// `bytes` go as `content_type`; the answer is handed to `interpret` on
    /// the worker (the part shared by both transports, `transport::Sender`).
    pub fn exchange(
        &self,
        content_type: &str,
        bytes: Vec<u8>,
        interpret: impl FnOnce(Answer) -> Delivery + Send + 'static,
        gate: impl Fn() -> bool + Send + Sync + 'static,
        abort: &crate::transport::Abort,
    ) -> Delivery {
        let wait = abort.wait.clone();
        let Some(run) = wait.start() else { return Delivery::Stopped };
        let worker = {
            let (t, content_type, wait) = (self.clone(), content_type.to_string(), wait.clone());
            move || {
                let gate = || wait.gate(run, &gate);
                let stop = || wait.is_aborted();
                let delivery = match t.send_here(&content_type, &bytes, &gate, &stop) {
                    Ok(answer) => interpret(answer),
                    Err(d) => d,
                };
                wait.finish(run, delivery);
            }
        };
        if let Err(e) = std::thread::Builder::new().name("optin-telemetry-winhttp".into()).spawn(worker) {
            return Delivery::Failed { status: None, retry_after: None, error: format!("cannot start the WinHTTP thread: {e}") };
        }
        wait.outcome(run)
    }

    /// The attempt itself, on the calling thread. `stop` says that nobody
    /// waits for the outcome any more: the attempt ends early.
    /// A direct send of a report, as `transport::Sender` makes it (tests).
    #[cfg(test)]
    pub fn send(&self, body: &str, gate: impl Fn() -> bool + Send + Sync + 'static, abort: &crate::transport::Abort) -> Delivery {
        let collector = crate::transport::WHO_COLLECTOR;
        self.exchange("application/json", body.as_bytes().to_vec(), move |a| crate::transport::classify(a, collector), gate, abort)
    }

    /// The answer, or what ended the attempt before one came.
    fn send_here(&self, content_type: &str, body: &[u8], gate: &dyn Fn() -> bool, stop: &dyn Fn() -> bool) -> Result<Answer, Delivery> {
        let route = self.route();
        if stop() {
            return Err(Delivery::Stopped);
        }
        match self.attempt(content_type, body, gate, &route, stop) {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(Delivery::Stopped),
            Err(e) => Err(Delivery::Failed { status: None, retry_after: None, error: format!("network error ({}): {e}", route.describe()) }),
        }
    }

    /// `None`: the gate said no, nothing of the body was written.
    fn attempt(&self, content_type: &str, body: &[u8], may_send: &dyn Fn() -> bool, route: &Route, stop: &dyn Fn() -> bool) -> Result<Option<Answer>, String> {
        let deadline = Instant::now() + OVERALL_TIMEOUT;
        let left = || -> Result<i32, String> {
            let ms = deadline.saturating_duration_since(Instant::now()).as_millis() as i32;
            if ms <= 0 {
                Err(describe(12002))
            } else {
                Ok(ms)
            }
        };
        let (access, proxy, bypass) = match route {
            Route::Direct(_) => (WINHTTP_ACCESS_TYPE_NO_PROXY, None, None),
            Route::Proxy { proxy, bypass, .. } => (WINHTTP_ACCESS_TYPE_NAMED_PROXY, Some(wide(proxy)), bypass.as_deref().map(wide)),
            Route::Default(_) => (WINHTTP_ACCESS_TYPE_DEFAULT_PROXY, None, None),
            Route::Unusable(why) => return Err(why.clone()),
        };
        let agent = wide(concat!("optin-telemetry/", env!("CARGO_PKG_VERSION")));
        // SAFETY: NUL-terminated strings (or NULL) that outlive the call.
        let session = Handle::new(
            unsafe {
                WinHttpOpen(agent.as_ptr(), access, proxy.as_ref().map_or(null(), |p| p.as_ptr()), bypass.as_ref().map_or(null(), |b| b.as_ptr()), 0)
            },
            "WinHttpOpen",
        )?;
        let connect_ms = CONNECT_TIMEOUT.as_millis() as i32;
        let all_ms = OVERALL_TIMEOUT.as_millis() as i32;
        // SAFETY: a valid session handle.
        if unsafe { WinHttpSetTimeouts(session.0, connect_ms, connect_ms, all_ms, all_ms) } == 0 {
            return Err(format!("WinHttpSetTimeouts: {}", describe(last_error())));
        }
        // SAFETY: valid handle, NUL-terminated host.
        let connection = Handle::new(unsafe { WinHttpConnect(session.0, self.host.as_ptr(), self.port, 0) }, "WinHttpConnect")?;
        let verb = wide("POST");
        // SAFETY: valid handle, NUL-terminated strings; NULL version/referrer/types are allowed.
        let request = Handle::new(
            unsafe { WinHttpOpenRequest(connection.0, verb.as_ptr(), self.path.as_ptr(), null(), null(), null(), if self.secure { WINHTTP_FLAG_SECURE } else { 0 }) },
            "WinHttpOpenRequest",
        )?;
        // No redirects, no cookies, and no connection kept for a later report.
        if !request.set_u32(WINHTTP_OPTION_DISABLE_FEATURE, WINHTTP_DISABLE_REDIRECTS | WINHTTP_DISABLE_KEEP_ALIVE | WINHTTP_DISABLE_COOKIES) {
            return Err(format!("cannot disable redirects and keep-alive: {}", describe(last_error())));
        }
        // Belt and braces; older WinHTTP versions know only the feature flag above.
        let _ = request.set_u32(WINHTTP_OPTION_REDIRECT_POLICY, WINHTTP_OPTION_REDIRECT_POLICY_NEVER);
        // The Windows identity is for the proxy only, and only once it asks
        // (below): never log on to the collector with it.
        let _ = request.set_u32(WINHTTP_OPTION_AUTOLOGON_POLICY, WINHTTP_AUTOLOGON_SECURITY_LEVEL_HIGH);
        if self.roots.is_some() && self.secure {
            // The private CA is not in the Windows store: let the handshake
            // finish without a trusted root, then check the chain against
            // `ca_cert_pem` below, before any byte of the report is written.
            // Name and validity period are still checked by WinHTTP.
            if !request.set_u32(WINHTTP_OPTION_SECURITY_FLAGS, SECURITY_FLAG_IGNORE_UNKNOWN_CA) {
                return Err(format!("cannot set the certificate check for ca_cert_pem: {}", describe(last_error())));
            }
        }
        let headers = wide(&format!("Content-Type: {content_type}\r\n"));
        let len = u32::try_from(body.len()).map_err(|_| "the report is too large")?;
        let mut answered_challenge = false;
        loop {
            narrow_timeouts(&request, left()?);
            // Connection, proxy CONNECT, TLS handshake and the request headers;
            // the body follows only after the checks below.
            // SAFETY: valid handle; NUL-terminated headers (length -1); no optional data.
            if unsafe { WinHttpSendRequest(request.0, headers.as_ptr(), u32::MAX, null(), 0, len, 0) } == 0 {
                return Err(describe(last_error()));
            }
            if let (Some(roots), true) = (&self.roots, self.secure) {
                verify_chain(&request, roots)?;
            }
            if !may_send() {
                return Ok(None);
            }
            let mut written = 0u32;
            while written < len {
                let mut n = 0u32;
                let rest = &body[written as usize..];
                // SAFETY: valid handle; the slice outlives the synchronous call.
                if unsafe { WinHttpWriteData(request.0, rest.as_ptr().cast(), rest.len() as u32, &mut n) } == 0 || n == 0 {
                    return Err(describe(last_error()));
                }
                written += n;
            }
            if stop() {
                return Err("interrupted by close".into());
            }
            narrow_timeouts(&request, left()?);
            // SAFETY: valid handle.
            if unsafe { WinHttpReceiveResponse(request.0, null_mut()) } == 0 {
                return Err(describe(last_error()));
            }
            let status = query_status(&request)?;
            if status != PROXY_AUTH_REQUIRED {
                return Ok(Some(self.finish(&request, status as u16, &left)));
            }
            // A 407 on a direct connection comes from the collector (or
            // whoever answers in its place), not from a proxy: the Windows
            // identity is never offered to it.
            if let Route::Direct(_) = route {
                return Err("the server answered HTTP 407 (proxy authentication required) although no proxy is used; not answered".into());
            }
            // The proxy wants authentication. Only Negotiate and NTLM are
            // answered, with the identity of this process; never a user name
            // or password (none is taken from the configuration).
            let (mut supported, mut first, mut target) = (0u32, 0u32, 0u32);
            // SAFETY: valid handle, writable out-parameters.
            let known = unsafe { WinHttpQueryAuthSchemes(request.0, &mut supported, &mut first, &mut target) } != 0;
            let scheme = [WINHTTP_AUTH_SCHEME_NEGOTIATE, WINHTTP_AUTH_SCHEME_NTLM].into_iter().find(|s| known && supported & s != 0);
            match scheme {
                Some(s) if !answered_challenge => {
                    // The default policy, which lets the logged-on identity answer a proxy.
                    let _ = request.set_u32(WINHTTP_OPTION_AUTOLOGON_POLICY, WINHTTP_AUTOLOGON_SECURITY_LEVEL_MEDIUM);
                    // SAFETY: valid handle; NULL user and password mean "the logged-on identity".
                    if unsafe { WinHttpSetCredentials(request.0, WINHTTP_AUTH_TARGET_PROXY, s, null(), null(), null_mut()) } == 0 {
                        return Err(format!("proxy authentication: {}", describe(last_error())));
                    }
                    answered_challenge = true;
                }
                _ => {
                    let offered = scheme_names(if known { supported } else { 0 });
                    let why = if answered_challenge { "refused this process's Windows identity" } else { "asks for credentials this library never sends" };
                    return Err(format!("the proxy answered HTTP 407 (authentication required; offers {offered}) and {why}"));
                }
            }
        }
    }

    fn finish(&self, request: &Handle, status: u16, left: &dyn Fn() -> Result<i32, String>) -> Answer {
        let retry_after = query_custom(request, "Retry-After").and_then(|v| parse_retry_after(&v, crate::now_unix()));
        // Read a bounded amount so a hostile server cannot make us buffer
        // much; one byte more tells that the body did not fit.
        let mut buf = vec![0u8; MAX_RESPONSE_BODY as usize + 1];
        let mut have = 0usize;
        let mut complete = false;
        while have < buf.len() {
            let Ok(ms) = left() else { break };
            narrow_timeouts(request, ms);
            let mut n = 0u32;
            // SAFETY: valid handle; the buffer's free part and its length.
            let ok = unsafe { WinHttpReadData(request.0, buf[have..].as_mut_ptr().cast(), (buf.len() - have) as u32, &mut n) } != 0;
            if !ok {
                break;
            }
            if n == 0 {
                complete = true;
                break;
            }
            have += n as usize;
        }
        buf.truncate(have);
        Answer { status, retry_after, body: (complete && have <= MAX_RESPONSE_BODY as usize).then_some(buf) }
    }
}

/// What the sending thread, the WinHTTP worker of its attempt and
/// `Abort::abort` (the thread in `tel_close`) share. The worker alone owns
/// the attempt's WinHTTP handles (each closed exactly once, by it); the
/// sending thread only waits here.
#[derive(Default)]
pub struct Wait {
    state: std::sync::Mutex<WaitState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct WaitState {
    aborted: bool,
    /// The number of the attempt being waited for.
    run: u64,
    /// That attempt's gate let the report go.
    passed: bool,
    /// That attempt's outcome, once its worker has it.
    outcome: Option<Delivery>,
}

impl Wait {
    fn lock(&self) -> std::sync::MutexGuard<'_, WaitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by `Abort::abort`: wakes the sending thread; the worker's
    /// gate says no from now on.
    pub(crate) fn abort(&self) {
        self.lock().aborted = true;
        self.changed.notify_all();
    }

    fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    /// A new attempt's number, or None once aborted.
    fn start(&self) -> Option<u64> {
        let mut s = self.lock();
        if s.aborted {
            return None;
        }
        s.run += 1;
        s.passed = false;
        s.outcome = None;
        Some(s.run)
    }

    /// The worker's gate: the caller's (not under the lock: it may wait for
    /// the state lock), then, under the lock, not aborted meanwhile. Once
    /// it said yes, an abort counts the attempt as interrupted.
    fn gate(&self, run: u64, gate: &dyn Fn() -> bool) -> bool {
        if self.is_aborted() || !gate() {
            return false;
        }
        let mut s = self.lock();
        if s.aborted || s.run != run {
            return false;
        }
        s.passed = true;
        true
    }

    fn finish(&self, run: u64, delivery: Delivery) {
        let mut s = self.lock();
        if s.run == run {
            s.outcome = Some(delivery);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// The worker's outcome, or what an abort makes of the attempt.
    fn outcome(&self, run: u64) -> Delivery {
        let mut s = self.lock();
        loop {
            if let Some(d) = s.outcome.take().filter(|_| s.run == run) {
                return d;
            }
            if s.aborted {
                return if s.passed {
                    Delivery::Interrupted { error: "interrupted by close before the collector answered (the WinHTTP request is left to end on its own thread)".into() }
                } else {
                    Delivery::Stopped
                };
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Every blocking step of `request` gets at most what is left of the
/// attempt's 30 s.
fn narrow_timeouts(request: &Handle, ms: i32) {
    for option in [WINHTTP_OPTION_SEND_TIMEOUT, WINHTTP_OPTION_RECEIVE_TIMEOUT, WINHTTP_OPTION_RECEIVE_RESPONSE_TIMEOUT] {
        let _ = request.set_u32(option, ms as u32);
    }
}

fn scheme_names(bits: u32) -> String {
    let names: Vec<&str> = [(WINHTTP_AUTH_SCHEME_BASIC, "Basic"), (WINHTTP_AUTH_SCHEME_NTLM, "NTLM"), (WINHTTP_AUTH_SCHEME_DIGEST, "Digest"), (WINHTTP_AUTH_SCHEME_NEGOTIATE, "Negotiate")]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "no known scheme".into()
    } else {
        names.join(", ")
    }
}

fn query_status(request: &Handle) -> Result<u32, String> {
    let mut status = 0u32;
    let mut size = 4u32;
    // SAFETY: valid handle; a DWORD buffer with its size.
    let ok = unsafe { WinHttpQueryHeaders(request.0, WINHTTP_QUERY_STATUS_CODE | WINHTTP_QUERY_FLAG_NUMBER, null(), (&mut status as *mut u32).cast(), &mut size, null_mut()) } != 0;
    if ok {
        Ok(status)
    } else {
        Err(format!("no HTTP status: {}", describe(last_error())))
    }
}

fn query_custom(request: &Handle, name: &str) -> Option<String> {
    let name = wide(name);
    let mut buf = [0u16; 128];
    let mut size = (buf.len() * 2) as u32;
    // SAFETY: valid handle, NUL-terminated name, a buffer with its size in bytes.
    let ok = unsafe { WinHttpQueryHeaders(request.0, WINHTTP_QUERY_CUSTOM, name.as_ptr(), buf.as_mut_ptr().cast(), &mut size, null_mut()) } != 0;
    ok.then(|| String::from_utf16_lossy(&buf[..(size as usize / 2).min(buf.len())]))
}

/// The server's chain must lead to one of `roots` with no error on the way
/// (an untrusted or missing root above that certificate does not matter).
fn verify_chain(request: &Handle, roots: &[Vec<u8>]) -> Result<(), String> {
    let mut cert: *const CertContext = null();
    let mut size = std::mem::size_of::<*const CertContext>() as u32;
    // SAFETY: valid handle; a pointer-sized buffer receives a context we free below.
    if unsafe { WinHttpQueryOption(request.0, WINHTTP_OPTION_SERVER_CERT_CONTEXT, (&mut cert as *mut *const CertContext).cast(), &mut size) } == 0 || cert.is_null() {
        return Err(format!("no server certificate to check against ca_cert_pem: {}", describe(last_error())));
    }
    struct Cleanup(*const CertContext, *mut c_void, *const ChainContext);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // SAFETY: each was created by the calls below and is freed once.
            unsafe {
                if !self.2.is_null() {
                    CertFreeCertificateChain(self.2);
                }
                if !self.1.is_null() {
                    CertCloseStore(self.1, 0);
                }
                CertFreeCertificateContext(self.0);
            }
        }
    }
    let mut c = Cleanup(cert, null_mut(), null());
    // SAFETY: a memory store; the certificates added are copied into it.
    unsafe {
        c.1 = CertOpenStore(CERT_STORE_PROV_MEMORY as *const u8, 0, 0, 0, null());
        if c.1.is_null() {
            return Err(format!("cannot open a certificate store: error {}", last_error()));
        }
        for der in roots {
            CertAddEncodedCertificateToStore(c.1, X509_AND_PKCS7_ENCODING, der.as_ptr(), der.len() as u32, CERT_STORE_ADD_USE_EXISTING, null_mut());
        }
        // The intermediates the server sent.
        let mut prev = null();
        while !(*cert).store.is_null() {
            prev = CertEnumCertificatesInStore((*cert).store, prev);
            if prev.is_null() {
                break;
            }
            CertAddCertificateContextToStore(c.1, prev, CERT_STORE_ADD_USE_EXISTING, null_mut());
        }
        let para = ChainPara { size: std::mem::size_of::<ChainPara>() as u32, usage_type: 0, usage_count: 0, usage_ids: null() };
        if CertGetCertificateChain(null_mut(), cert, null(), c.1, &para, 0, null_mut(), &mut c.2) == 0 || c.2.is_null() {
            return Err(format!("cannot build the server's certificate chain: error {}", last_error()));
        }
        let chain = &*c.2;
        if chain.chain_count == 0 {
            return Err("the server sent no certificate chain".into());
        }
        let simple = &**chain.chains;
        let mut errors = 0u32;
        for i in 0..simple.element_count as usize {
            let element = &**simple.elements.add(i);
            errors |= element.trust.error;
            let ctx = &*element.cert;
            let der = std::slice::from_raw_parts(ctx.encoded, ctx.encoded_len as usize);
            if roots.iter().any(|r| r.as_slice() == der) {
                return if errors & !CERT_TRUST_IGNORED == 0 {
                    Ok(())
                } else {
                    Err(format!("the server's certificate chain has errors (0x{:x})", errors & !CERT_TRUST_IGNORED))
                };
            }
        }
    }
    Err("the server's certificate is not issued by a certificate in ca_cert_pem; not sent".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_values_for_winhttp() {
        assert_eq!(named_proxy("http://proxy.example.com:8080"), Ok("proxy.example.com:8080".into()));
        assert_eq!(named_proxy("http://127.0.0.2:3128/"), Ok("127.0.0.2:3128".into()));
        assert_eq!(named_proxy("proxy:80"), Ok("proxy:80".into()));
        assert!(named_proxy("socks5://proxy:1080").is_err());
        assert!(named_proxy("http://").is_err());
        assert!(named_proxy("http://a b:1").is_err());
        assert!(crate::transport::check_proxy("http://user:pw@proxy:8080").is_err());
        assert!(crate::transport::check_proxy("none").is_ok());
    }

    #[test]
    fn pem_rejects_keys_and_garbage() {
        assert!(parse_ca("").is_err());
        assert!(parse_ca("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap_err().contains("certificates only"));
        assert!(parse_ca("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err(), "not a certificate");
        assert!(parse_ca("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n").is_err());
    }

    /// A one-request HTTP server on 127.0.0.1: returns everything it
    /// received (headers and as much body as arrived before the client
    /// closed), answering `reply` once the whole body is in.
    fn serve_once(reply: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
            let mut got = vec![];
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    return got; // the client closed
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end].lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
                    if got.len() >= end + 4 + len {
                        let _ = s.write_all(reply);
                        return got;
                    }
                }
            }
        });
        (port, server)
    }

    #[test]
    fn send_writes_no_byte_of_the_report_when_may_send_says_no() {
        let (port, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let t = Transport::new(&format!("http://127.0.0.1:{port}/v1/report"), Some("none"), None).unwrap();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let d = t.send("{\"secret\":1}", {
            let asked = asked.clone();
            move || {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                false
            }
        }, &Default::default());
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(d, Delivery::Stopped);
        let got = String::from_utf8(server.join().unwrap()).unwrap();
        // The connection was made and the headers went out; the body did not.
        assert!(got.starts_with("POST /v1/report HTTP/1.1\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\n") && !got.contains("secret"), "{got}");
    }

    #[test]
    fn send_sends_the_body_after_may_send_says_yes() {
        let (port, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let t = Transport::new(&format!("http://127.0.0.1:{port}/v1/report"), Some("none"), None).unwrap();
        assert_eq!(t.send("{\"a\":1}", || true, &Default::default()), Delivery::Delivered { status: 200 });
        let got = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(got.ends_with("\r\n\r\n{\"a\":1}") && got.to_ascii_lowercase().contains("content-type: application/json"), "{got}");
        assert!(got.contains("User-Agent: optin-telemetry/"), "{got}");
    }

    #[test]
    fn at_most_8_kib_of_the_answer_is_read_and_the_connection_is_not_kept() {
        use std::io::{Read, Write};
        const HUGE: usize = 100 << 20;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
            s.set_write_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
            let mut got = vec![];
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"{}") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed before sending the body");
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n").as_bytes()).unwrap();
            let chunk = [b'x'; 65536];
            let mut sent = 0;
            while sent < HUGE {
                match s.write(&chunk) {
                    Ok(n) if n > 0 => sent += n,
                    _ => break, // the client closed the connection
                }
            }
            sent
        });
        let t = Transport::new(&format!("http://127.0.0.1:{port}/v1/report"), Some("none"), None).unwrap();
        assert_eq!(t.send("{}", || true, &Default::default()), Delivery::Delivered { status: 200 });
        // send() has returned: the connection must be closed, not kept for
        // the rest of the answer or for a next report.
        let sent = server.join().unwrap();
        assert!(sent < HUGE, "the server could write the whole {HUGE} bytes: the answer was read or the connection kept");
    }

    /// A server reached directly that answers 407 is the collector (or
    /// whoever answers in its place), not a proxy: the Windows identity
    /// must not be offered to it. (Under Wine an answered challenge shows
    /// as a second request; real Windows would send a Negotiate/NTLM token.)
    #[test]
    fn a_407_on_a_direct_connection_is_not_answered_with_the_windows_identity() {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (done, requests, with_auth) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let server = {
            let (done, requests, with_auth) = (done.clone(), requests.clone(), with_auth.clone());
            std::thread::spawn(move || {
                while !done.load(SeqCst) {
                    let mut s = match listener.accept() {
                        Ok((s, _)) => s,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(std::time::Duration::from_millis(10));
                            continue;
                        }
                        Err(e) => panic!("accept: {e}"),
                    };
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
                    let mut got = vec![];
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = s.read(&mut buf).unwrap_or(0);
                        got.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                        let complete = text.find("\r\n\r\n").is_some_and(|end| {
                            let len: usize = text[..end].lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
                            got.len() >= end + 4 + len
                        });
                        if n == 0 || complete {
                            break;
                        }
                    }
                    if got.is_empty() {
                        continue;
                    }
                    requests.fetch_add(1, SeqCst);
                    if String::from_utf8_lossy(&got).to_ascii_lowercase().contains("proxy-authorization:") {
                        with_auth.fetch_add(1, SeqCst);
                    }
                    let _ = s.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            })
        };
        let t = Transport::new(&format!("http://127.0.0.1:{port}/v1/report"), Some("none"), None).unwrap();
        let d = t.send("{}", || true, &Default::default());
        done.store(true, SeqCst);
        server.join().unwrap();
        assert!(matches!(d, Delivery::Failed { ref error, .. } if error.contains("407")), "{d:?}");
        assert_eq!((requests.load(SeqCst), with_auth.load(SeqCst)), (1, 0), "the 407 of a server reached directly was answered ({d:?})");
    }

    /// What is left of the 30 s bounds sending, each receive (a server
    /// that sends its answer slowly) and the wait for the whole header.
    #[test]
    fn every_blocking_step_gets_only_what_is_left_of_the_30_s() {
        let agent = wide("test");
        // SAFETY: NUL-terminated strings; no connection is made by these calls.
        let session = Handle::new(unsafe { WinHttpOpen(agent.as_ptr(), WINHTTP_ACCESS_TYPE_NO_PROXY, null(), null(), 0) }, "WinHttpOpen").unwrap();
        let host = wide("127.0.0.1");
        // SAFETY: as above.
        let connection = Handle::new(unsafe { WinHttpConnect(session.0, host.as_ptr(), 9, 0) }, "WinHttpConnect").unwrap();
        let (verb, path) = (wide("POST"), wide("/r"));
        // SAFETY: as above.
        let request = Handle::new(unsafe { WinHttpOpenRequest(connection.0, verb.as_ptr(), path.as_ptr(), null(), null(), null(), 0) }, "WinHttpOpenRequest").unwrap();
        narrow_timeouts(&request, 1234);
        for (option, name) in [(5u32, "send"), (6, "receive"), (7, "receive response")] {
            let (mut value, mut size) = (0u32, 4u32);
            // SAFETY: valid handle, a DWORD buffer with its size.
            let ok = unsafe { WinHttpQueryOption(request.0, option, (&mut value as *mut u32).cast(), &mut size) } != 0;
            assert!(ok, "WinHttpQueryOption({option}): error {}", last_error());
            assert_eq!(value, 1234, "the {name} timeout (option {option})");
        }
    }

    /// `tel_close` during a send stalled on the server (it reads the whole
    /// request and never answers): `Abort::abort` wakes the sending thread
    /// at once and the attempt counts as interrupted (not failed, not
    /// stopped); the WinHTTP worker, blocked in WinHttpReceiveResponse,
    /// ends on its own once the server lets the connection go.
    #[test]
    fn abort_interrupts_a_send_blocked_on_a_silent_server() {
        use std::io::Read;
        use std::sync::{mpsc, Arc};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (got_body, body_in) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
            let mut got = vec![];
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"{\"a\":1}") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed before sending the body");
                got.extend_from_slice(&buf[..n]);
            }
            got_body.send(()).unwrap();
            // Never answers; lets the connection go when told.
            let _ = released.recv_timeout(std::time::Duration::from_secs(20));
        });
        let t = Transport::new(&format!("http://127.0.0.1:{port}/v1/report"), Some("none"), None).unwrap();
        let abort = Arc::new(crate::transport::Abort::default());
        let sender = {
            let abort = abort.clone();
            std::thread::spawn(move || {
                let d = t.send("{\"a\":1}", || true, &abort);
                (d, std::time::Instant::now())
            })
        };
        body_in.recv_timeout(std::time::Duration::from_secs(20)).expect("the request reached the server");
        std::thread::sleep(std::time::Duration::from_millis(200)); // in WinHttpReceiveResponse
        let start = std::time::Instant::now();
        assert!(abort.abort(), "WinHTTP sends are interruptible");
        let (d, ended) = sender.join().unwrap();
        let took = ended.saturating_duration_since(start);
        eprintln!("send returned {} ms after abort: {d:?}", took.as_millis());
        assert!(took < std::time::Duration::from_millis(500), "the send returned {} ms after abort", took.as_millis());
        assert!(matches!(d, Delivery::Interrupted { .. }), "{d:?}");
        release.send(()).unwrap();
        server.join().unwrap();
        // Aborted for good: a later attempt stops before it connects.
        let t = Transport::new("http://127.0.0.1:9/v1/report", Some("none"), None).unwrap();
        assert_eq!(t.send("{}", || true, &abort), Delivery::Stopped);
    }

    /// An abort while the gate is being asked (connection up, headers
    /// sent): the attempt is stopped and not a byte of the report leaves,
    /// even though the caller's gate then says yes.
    #[test]
    fn abort_during_the_gate_stops_the_send_before_its_first_byte() {
        use std::sync::{mpsc, Arc, Mutex};
        let (port, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let t = Transport::new(&format!("http://127.0.0.1:{port}/v1/report"), Some("none"), None).unwrap();
        let abort = Arc::new(crate::transport::Abort::default());
        let (asking, asked) = mpsc::channel();
        let asking = Mutex::new(asking);
        let sender = {
            let abort = abort.clone();
            std::thread::spawn(move || {
                t.send("{\"secret\":1}", move || {
                    asking.lock().unwrap().send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    true
                }, &abort)
            })
        };
        asked.recv_timeout(std::time::Duration::from_secs(20)).expect("the gate was asked");
        let start = std::time::Instant::now();
        abort.abort();
        let d = sender.join().unwrap();
        assert!(start.elapsed() < std::time::Duration::from_millis(250), "{} ms", start.elapsed().as_millis());
        assert_eq!(d, Delivery::Stopped);
        let got = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(got.ends_with("\r\n\r\n") && !got.contains("secret"), "{got}");
    }

    #[test]
    fn a_redirect_is_not_followed() {
        let (port, server) = serve_once(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\n\r\n");
        let t = Transport::new(&format!("http://127.0.0.1:{port}/v1/report"), Some("none"), None).unwrap();
        let d = t.send("{}", || true, &Default::default());
        assert!(matches!(d, Delivery::Refused { status: 302, .. }), "{d:?}");
        server.join().unwrap();
    }

    #[test]
    fn proxy_none_goes_direct_and_loopback_ignores_a_configured_proxy() {
        let t = Transport::new("https://telemetry.example.com/r", Some("none"), None).unwrap();
        assert!(matches!(t.route(), Route::Direct(ref why) if why.contains("none")));
        let t = Transport::new("http://127.0.0.1:9/r", Some("http://proxy:8080"), None).unwrap();
        assert!(matches!(t.route(), Route::Direct(_)));
        let t = Transport::new("https://telemetry.example.com/r", Some("http://proxy:8080"), None).unwrap();
        assert!(matches!(t.route(), Route::Proxy { ref proxy, .. } if proxy == "proxy:8080"));
    }
}
