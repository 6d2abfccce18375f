//! Oblivious HTTP (RFC 9458) through a relay, when the configuration has
//! `"ohttp"`: the report is the content of a Binary HTTP (RFC 9292,
//! known-length) `POST` to the endpoint's path on the endpoint's authority,
//! encapsulated to the gateway's public key and POSTed to the relay as
//! `message/ohttp-req`. The relay sees the address but not the content; the
//! gateway (the vendor) the content but not the address.
//!
//! Independent of the transport: each transport only POSTs bytes with a
//! content type to a URL and returns status, Retry-After and body.

use crate::error::{Error, Result};
use crate::transport::{Answer, Delivery};
use serde_json::Value;

pub const REQUEST_TYPE: &str = "message/ohttp-req";
pub const RESPONSE_TYPE: &str = "message/ohttp-res";
/// The error word a gateway answers for a key it does not know, and the
/// prefix of `last_error` while a report waits for a new key configuration.
pub const KEY_CONFIG_OUTDATED: &str = "key_config_outdated";
const KEYS: &[&str] = &["relay", "key_config"];

/// The `"ohttp"` object of the configuration.
#[derive(Debug, Clone)]
pub struct Ohttp {
    pub relay: String,
    /// The one supported key configuration chosen from what was given
    /// (a single configuration or an RFC 9540 list), encoded.
    #[cfg_attr(windows, allow(dead_code))] // never parsed there (see Context)
    key_config: Vec<u8>,
    /// `sha256:` of the relay and the chosen key configuration: bound to the
    /// consent (a new relay or key needs a new answer; the same key given
    /// alone or in a list is the same).
    pub digest: String,
}

/// What opens the one response of an encapsulated request.
#[cfg(not(windows))]
pub type Context = ohttp::ClientResponse;
/// The Windows build has no OHTTP yet: [`Ohttp::parse`] refuses the
/// configuration there, so no request is encapsulated and no context exists.
#[cfg(windows)]
pub enum Context {}

/// Why the Windows build refuses `"ohttp"` (README "Oblivious HTTP").
#[cfg(windows)]
const NOT_IN_THIS_BUILD: &str = "not available in the Windows build yet (the OHTTP crates would take the DLL over its 2 MB budget); send directly, or from Linux";

#[cfg(windows)]
fn choose(_bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    Err(NOT_IN_THIS_BUILD.into())
}

/// A configuration `ohttp::ClientRequest` can use: a supported KEM and at
/// least one supported symmetric suite. The crate silently drops the suites
/// it does not support (and would index an empty list): encoded again, a
/// configuration without suites no longer decodes.
#[cfg(not(windows))]
fn usable(c: &ohttp::KeyConfig) -> bool {
    c.encode().ok().and_then(|b| ohttp::KeyConfig::decode(&b).ok()).is_some()
}

/// The first usable configuration of `bytes`: one configuration, or an
/// RFC 9540 list (each prefixed by its 2-byte length).
#[cfg(not(windows))]
fn choose(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use ohttp::KeyConfig;
    let single = KeyConfig::decode(bytes);
    if let Ok(c) = &single {
        if usable(c) {
            return Ok(bytes.to_vec());
        }
    }
    let list = KeyConfig::decode_list(bytes);
    match (&single, &list) {
        (_, Ok(l)) if !l.is_empty() => {
            for c in l {
                if usable(c) {
                    return c.encode().map_err(|e| format!("cannot encode the key configuration: {e}"));
                }
            }
            Err(unsupported())
        }
        (Ok(_), _) | (_, Ok(_)) => Err(unsupported()),
        (Err(ohttp::Error::Unsupported), _) => Err(unsupported()),
        (Err(e), Err(_)) => Err(format!("not a key configuration (application/ohttp-keys): {e}")),
    }
}

#[cfg(not(windows))]
fn unsupported() -> String {
    "no supported suite: the key configuration needs KEM X25519 (0x0020) or P-256 (0x0010) with KDF HKDF-SHA256 and AEAD AES-128-GCM or ChaCha20-Poly1305".into()
}

impl Ohttp {
    /// The `"ohttp"` object: `relay` (https; plain http only to loopback)
    /// and `key_config` (base64). *fixed* keys; unknown keys are errors.
    pub fn parse(v: &Value) -> Result<Ohttp> {
        let o = v.as_object().ok_or_else(|| Error::config("config.ohttp: must be an object {\"relay\": ..., \"key_config\": ...}"))?;
        if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::config(format!("config.ohttp: unknown key \"{}\" (allowed: {})", crate::schema::truncate(k, 64), KEYS.join(", "))));
        }
        let text = |k: &str| -> Result<&str> {
            match o.get(k) {
                Some(Value::String(s)) => Ok(s),
                None | Some(Value::Null) => Err(Error::config(format!("config.ohttp.{k}: missing"))),
                Some(_) => Err(Error::config(format!("config.ohttp.{k}: must be a string"))),
            }
        };
        let relay = text("relay")?;
        crate::config::check_url_parts("config.ohttp.relay", relay)?;
        crate::transport::check_endpoint(relay).map_err(|m| Error::config(format!("config.ohttp.relay: {m}")))?;
        let given = crate::base64::decode(text("key_config")?)
            .ok_or_else(|| Error::config("config.ohttp.key_config: not base64 (standard alphabet A-Z a-z 0-9 + /, padding optional)"))?;
        let key_config = choose(&given).map_err(|m| Error::config(format!("config.ohttp.key_config: {m}")))?;
        let mut bound = Vec::with_capacity(relay.len() + 1 + key_config.len());
        bound.extend_from_slice(relay.as_bytes());
        bound.push(b'\n');
        bound.extend_from_slice(&key_config);
        Ok(Ohttp { relay: relay.to_string(), key_config, digest: format!("sha256:{}", crate::store::sha256_hex(&bound)) })
    }

    /// Windows: never called (`parse` refused the configuration).
    #[cfg(windows)]
    pub fn encapsulate(&self, _endpoint: &str, _body: &[u8]) -> std::result::Result<(Vec<u8>, Context), String> {
        Err(NOT_IN_THIS_BUILD.into())
    }

    /// The encapsulated request for `body` to `endpoint`, and the context
    /// that opens its one response.
    #[cfg(not(windows))]
    pub fn encapsulate(&self, endpoint: &str, body: &[u8]) -> std::result::Result<(Vec<u8>, Context), String> {
        let uri: http::Uri = endpoint.parse().map_err(|e| format!("endpoint: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or("https");
        let authority = uri.authority().map_or("", |a| a.as_str());
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        let mut m = bhttp::Message::request(b"POST".to_vec(), scheme.as_bytes().to_vec(), authority.as_bytes().to_vec(), path.as_bytes().to_vec());
        m.put_header("content-type", "application/json");
        m.write_content(body);
        let mut inner = Vec::with_capacity(body.len() + 64);
        m.write_bhttp(bhttp::Mode::KnownLength, &mut inner).map_err(|e| format!("binary HTTP: {e}"))?;
        let request = ohttp::ClientRequest::from_encoded_config(&self.key_config).map_err(|e| format!("key configuration: {e}"))?;
        request.encapsulate(&inner).map_err(|e| format!("encapsulation: {e}"))
    }
}

/// The problem type (RFC 9457) RFC 9458 registers for a key the gateway
/// does not know; the reference collector answers it (README "Oblivious
/// HTTP (gateway)").
#[cfg(not(windows))]
const OHTTP_KEY_PROBLEM: &str = "https://iana.org/assignments/http-problem-types#ohttp-key";

/// Whether a gateway's (or relay's) error body names an outdated key: the
/// `ohttp-key` problem type, or `{"error": "key_config_outdated"}`.
#[cfg(not(windows))]
fn says_key_outdated(body: Option<&[u8]>) -> bool {
    body.and_then(|b| serde_json::from_slice::<Value>(b).ok()).is_some_and(|v| {
        v.get("error").and_then(Value::as_str) == Some(KEY_CONFIG_OUTDATED)
            || v.get("type").and_then(Value::as_str) == Some(OHTTP_KEY_PROBLEM)
    })
}

/// What the relay's answer means for the report: a 2xx carries the
/// encapsulated answer of the collector, handled like a direct answer;
/// an answer that does not open, or a 401/403/422 naming
/// `key_config_outdated`, means the gateway does not know the key.
#[cfg(windows)]
pub fn open(context: Context, _outer: Answer) -> Delivery {
    match context {}
}

/// What the relay's answer means for the report (see the Windows twin).
#[cfg(not(windows))]
pub fn open(context: Context, outer: Answer) -> Delivery {
    let outdated = |status: Option<u16>, why: &str| Delivery::KeyOutdated {
        status,
        error: format!("{KEY_CONFIG_OUTDATED}: {why}; nothing more is sent until the product ships a new ohttp.key_config"),
    };
    if !(200..=299).contains(&outer.status) {
        if matches!(outer.status, 401 | 403 | 422) && says_key_outdated(outer.body.as_deref()) {
            return outdated(Some(outer.status), &format!("the gateway answered HTTP {} for the key configuration", outer.status));
        }
        return crate::transport::classify(outer, "the relay");
    }
    let Some(bytes) = outer.body else {
        return Delivery::Failed { status: Some(outer.status), retry_after: None, error: "the relay's answer could not be read in full".into() };
    };
    let Ok(inner) = context.decapsulate(&bytes) else {
        return outdated(Some(outer.status), "the gateway's answer does not open with the key configuration");
    };
    let Ok(m) = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&inner[..])) else {
        return Delivery::Failed { status: Some(outer.status), retry_after: None, error: "the gateway's answer is not a Binary HTTP response".into() };
    };
    let Some(status) = m.control().status().map(|s| s.code()) else {
        return Delivery::Failed { status: Some(outer.status), retry_after: None, error: "the gateway's answer is not a Binary HTTP response".into() };
    };
    let retry_after = m.header().get(b"retry-after").and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| crate::transport::parse_retry_after(v, crate::now_unix()));
    let body = m.content();
    if matches!(status, 401 | 403 | 422) && says_key_outdated(Some(body)) {
        return outdated(Some(status), &format!("the gateway answered HTTP {status} for the key configuration"));
    }
    crate::transport::classify(Answer { status, retry_after, body: Some(body.to_vec()) }, "the collector")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Until the DLL has room for it, the Windows build says so at tel_open
    /// instead of sending directly what the host meant to relay.
    #[cfg(windows)]
    #[test]
    fn the_windows_build_refuses_ohttp() {
        let v = serde_json::json!({"relay": "https://relay.example/", "key_config": "AAAA"});
        let e = Ohttp::parse(&v).unwrap_err();
        assert!(e.message.contains("not available in the Windows build yet"), "{}", e.message);
    }

    /// The collector's gateway answers an unknown or retired key with the
    /// registered problem type; other gateways with a plain error word.
    #[cfg(not(windows))]
    #[test]
    fn both_spellings_of_an_unknown_key_are_recognised() {
        let problem = br#"{"type":"https://iana.org/assignments/http-problem-types#ohttp-key","title":"key identifier unknown"}"#;
        assert!(says_key_outdated(Some(problem)));
        assert!(says_key_outdated(Some(br#"{"error":"key_config_outdated"}"#)));
        assert!(!says_key_outdated(Some(br#"{"error":"product_version"}"#)));
        assert!(!says_key_outdated(Some(b"not json")));
        assert!(!says_key_outdated(None));
    }
}
