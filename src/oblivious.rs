//! Oblivious HTTP (RFC 9458) through a relay, when the configuration has
//! `"ohttp"`: the report is the content of a Binary HTTP (RFC 9292,
//! known-length) `POST` to the endpoint's path on the endpoint's authority,
//! encapsulated to the gateway's public key and POSTed to the relay as
//! `message/ohttp-req`. The relay sees the address but not the content; the
//! gateway (the vendor) the content but not the address.
//!
//! The client is our own, on the `hpke` crate (RFC 9180) with one KEM and
//! one KDF: the `ohttp` crate compiles every KEM hpke has (the NIST curves,
//! ML-KEM, X-Wing), which took the Windows DLL over its 2 MB budget
//! (README "Size"). What this file adds to HPKE is RFC 9458's framing: the
//! key configuration, the request header and `info`, and the response key
//! schedule (§4.4), which hpke does not know about.
//!
//! Independent of the transport: each transport only POSTs bytes with a
//! content type to a URL and returns status, Retry-After and body.

use crate::binary_http;
use crate::error::{Error, Result};
use crate::transport::{Answer, Delivery};
use serde_json::Value;
use zeroize::Zeroize;

pub const REQUEST_TYPE: &str = "message/ohttp-req";
pub const RESPONSE_TYPE: &str = "message/ohttp-res";
/// The error word a gateway answers for a key it does not know, and the
/// prefix of `last_error` while a report waits for a new key configuration.
pub const KEY_CONFIG_OUTDATED: &str = "key_config_outdated";
const KEYS: &[&str] = &["relay", "key_config"];

/// DHKEM(X25519, HKDF-SHA256), the one KEM this client speaks (RFC 9180
/// §7.1), with its public key and encapsulated key length Npk = Nenc = 32.
const KEM_X25519: u16 = 0x0020;
const NPK: usize = 32;
/// HKDF-SHA256 (RFC 9180 §7.2), the one KDF.
const KDF_HKDF_SHA256: u16 = 0x0001;
type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::AesGcm128;
/// AES-128-GCM (RFC 9180 §7.3), the one AEAD: key Nk = 16, nonce Nn = 12,
/// tag 16 bytes. ChaCha20-Poly1305 (0x0003) would cost the DLL 34,816 bytes
/// more (README "Size"); AES-128-GCM is the suite of RFC 9458's example and
/// the one the reference collector's gateway lists first.
const AEAD_AES_128_GCM: u16 = 0x0001;
const NK: usize = 16;
const NN: usize = 12;
const TAG_LEN: usize = 16;
/// max(Nn, Nk): the length of the response's secret and nonce (§4.4).
const SECRET_LEN: usize = if NK > NN { NK } else { NN };

/// The labels RFC 9458 §4.3 and §4.4 put into `info` and the exporter.
const REQUEST_LABEL: &[u8] = b"message/bhttp request";
const RESPONSE_LABEL: &[u8] = b"message/bhttp response";

/// One key configuration (RFC 9458 §3.1) this client can use: X25519, and
/// HKDF-SHA256 with AES-128-GCM among its (KDF, AEAD) pairs.
#[derive(Debug, Clone)]
struct KeyConfig {
    id: u8,
    public_key: [u8; NPK],
    /// The configuration's bytes as given (alone or as one entry of a
    /// list): what the consent is bound to.
    encoded: Vec<u8>,
}

/// The `"ohttp"` object of the configuration.
#[derive(Debug, Clone)]
pub struct Ohttp {
    pub relay: String,
    /// The one supported key configuration chosen from what was given
    /// (a single configuration or an RFC 9540 list).
    key_config: KeyConfig,
    /// `sha256:` of the relay and the chosen key configuration: bound to the
    /// consent (a new relay or key needs a new answer; the same key given
    /// alone or in a list is the same).
    pub digest: String,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// The public key length Npk of the KEMs registered for HPKE (RFC 9180
/// §7.1; ML-KEM and X-Wing from their HPKE drafts): enough to read (and
/// check) a configuration this client cannot use, and say what it offers.
fn npk(kem: u16) -> Option<usize> {
    Some(match kem {
        0x0010 => 65,   // P-256
        0x0011 => 97,   // P-384
        0x0012 => 133,  // P-521
        KEM_X25519 => NPK,
        0x0021 => 56,   // X448
        0x0040 => 800,  // ML-KEM-512
        0x0041 => 1184, // ML-KEM-768
        0x0042 => 1568, // ML-KEM-1024
        0x647a => 1216, // X-Wing
        _ => return None,
    })
}

/// Reads one key configuration: key id (1 byte), KEM (2), public key (Npk),
/// then the length (2) and list of (KDF, AEAD) pairs (4 bytes each), which
/// must end exactly where `b` does. `Ok(None)`: well-formed, but not
/// X25519 with the (HKDF-SHA256, AES-128-GCM) pair.
fn parse_config(b: &[u8]) -> std::result::Result<Option<KeyConfig>, String> {
    if b.len() < 3 {
        return Err("shorter than a key configuration (key id and KEM)".into());
    }
    let kem = be16(&b[1..3]);
    let n = npk(kem).ok_or_else(|| format!("KEM 0x{kem:04x} is not an HPKE KEM this library knows"))?;
    let rest = &b[3..];
    if rest.len() < n + 2 {
        return Err(format!("shorter than a key configuration with KEM 0x{kem:04x} ({n}-byte public key)"));
    }
    let (public_key, rest) = rest.split_at(n);
    let (len, pairs) = rest.split_at(2);
    let len = usize::from(be16(len));
    if len == 0 || len % 4 != 0 || len != pairs.len() {
        return Err("the list of (KDF, AEAD) pairs is malformed: its length must be a non-zero multiple of 4 equal to the bytes that follow".into());
    }
    if kem != KEM_X25519 || !pairs.chunks_exact(4).any(|p| be16(&p[..2]) == KDF_HKDF_SHA256 && be16(&p[2..]) == AEAD_AES_128_GCM) {
        return Ok(None);
    }
    let mut key = [0u8; NPK];
    key.copy_from_slice(public_key);
    Ok(Some(KeyConfig { id: b[0], public_key: key, encoded: b.to_vec() }))
}

/// The entries of an RFC 9540 list (`application/ohttp-keys`): each
/// configuration prefixed by its 2-byte length, covering the input exactly.
fn split_list(mut b: &[u8]) -> std::result::Result<Vec<&[u8]>, &'static str> {
    let mut entries = Vec::new();
    while !b.is_empty() {
        if b.len() < 2 {
            return Err("a list entry's length is cut off");
        }
        let n = usize::from(be16(b));
        let entry = b.get(2..2 + n).ok_or("a list entry is longer than the bytes that follow")?;
        entries.push(entry);
        b = &b[2 + n..];
    }
    if entries.is_empty() {
        return Err("empty");
    }
    Ok(entries)
}

/// What a configuration offers, for the error that says none is usable.
fn offered(b: &[u8]) -> String {
    let Some(kem) = b.get(1..3).map(be16) else {
        return "?".into();
    };
    match npk(kem).and_then(|n| b.get(3 + n + 2..)) {
        Some(pairs) => {
            let pairs: Vec<String> = pairs.chunks_exact(4).map(|p| format!("0x{:04x}/0x{:04x}", be16(&p[..2]), be16(&p[2..]))).collect();
            format!("KEM 0x{kem:04x} with KDF/AEAD {}", pairs.join(", "))
        }
        None => format!("KEM 0x{kem:04x}"),
    }
}

fn unsupported(found: &[&[u8]]) -> String {
    let found: Vec<String> = found.iter().map(|b| offered(b)).collect();
    format!(
        "no supported suite: the key configuration needs KEM X25519 (0x0020) with KDF HKDF-SHA256 (0x0001) and AEAD AES-128-GCM (0x0001); other KEMs (P-256 among them) and AEADs are not supported; found {}",
        found.join("; ")
    )
}

/// The first usable configuration of `bytes`: one configuration, or an
/// RFC 9540 list (each prefixed by its 2-byte length).
fn choose(bytes: &[u8]) -> std::result::Result<KeyConfig, String> {
    let single = parse_config(bytes);
    if let Ok(Some(c)) = single {
        return Ok(c);
    }
    match split_list(bytes) {
        Ok(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                match parse_config(entry) {
                    Ok(Some(c)) => return Ok(c),
                    Ok(None) => {}
                    // A KEM registered after this library: skipped, like one it does not speak.
                    Err(_) if entry.len() >= 3 && npk(be16(&entry[1..3])).is_none() => {}
                    Err(why) => return Err(format!("configuration {} of the list: {why}", i + 1)),
                }
            }
            Err(unsupported(&entries))
        }
        Err(list) => match single {
            Ok(_) => Err(unsupported(&[bytes])),
            Err(why) => Err(format!("not a key configuration (application/ohttp-keys): as one configuration: {why}; as a list: {list}")),
        },
    }
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
        let mut bound = Vec::with_capacity(relay.len() + 1 + key_config.encoded.len());
        bound.extend_from_slice(relay.as_bytes());
        bound.push(b'\n');
        bound.extend_from_slice(&key_config.encoded);
        Ok(Ohttp { relay: relay.to_string(), key_config, digest: format!("sha256:{}", crate::store::sha256_hex(&bound)) })
    }

    /// The encapsulated request for `body` to `endpoint`, and the context
    /// that opens its one response.
    pub fn encapsulate(&self, endpoint: &str, body: &[u8]) -> std::result::Result<(Vec<u8>, Context), String> {
        let uri: http::Uri = endpoint.parse().map_err(|e| format!("endpoint: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or("https");
        let authority = uri.authority().map_or("", |a| a.as_str());
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        let inner = binary_http::request("POST", scheme, authority, path, &[("content-type", b"application/json")], body)
            .ok_or("binary HTTP: the report is too long")?;
        // The ephemeral key's seed comes from the system before hpke runs,
        // so that a failing random source is an error here, not a panic
        // inside hpke (which can only take an infallible generator).
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness for the ephemeral key: {e}"))?;
        let sealed = self.key_config.seal(&inner, &seed);
        seed.zeroize();
        sealed
    }
}

/// The request header (RFC 9458 §4.1): key id, KEM, KDF and AEAD.
fn header(c: &KeyConfig) -> [u8; 7] {
    let [k0, k1] = KEM_X25519.to_be_bytes();
    let [d0, d1] = KDF_HKDF_SHA256.to_be_bytes();
    let [a0, a1] = AEAD_AES_128_GCM.to_be_bytes();
    [c.id, k0, k1, d0, d1, a0, a1]
}

/// HPKE's `info` for a request: "message/bhttp request", a zero byte, the header.
fn request_info(hdr: &[u8; 7]) -> Vec<u8> {
    [REQUEST_LABEL, &[0], hdr].concat()
}

/// A random generator that hands out one seed and nothing more: hpke draws
/// exactly Nsk = 32 bytes for an X25519 ephemeral key (DeriveKeyPair of that
/// seed). Should a later hpke ask for more, the extra bytes are zeros and
/// `overdrawn` says so: the request is then refused, never sent.
struct Seed<'a> {
    seed: &'a [u8; 32],
    used: usize,
    overdrawn: bool,
}

impl hpke::rand_core::TryRng for Seed<'_> {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> std::result::Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> std::result::Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Self::Error> {
        match self.seed.get(self.used..self.used + dst.len()) {
            Some(s) => {
                dst.copy_from_slice(s);
                self.used += dst.len();
            }
            None => {
                dst.fill(0);
                self.overdrawn = true;
            }
        }
        Ok(())
    }
}

impl hpke::rand_core::TryCryptoRng for Seed<'_> {}

impl KeyConfig {
    /// RFC 9458 §4.3: `hdr || enc || Seal("", request)` with an HPKE sender
    /// context for `info` = "message/bhttp request" 0x00 `hdr`; the context
    /// exports the response's secret. `seed` makes the ephemeral key.
    fn seal(&self, request: &[u8], seed: &[u8; 32]) -> std::result::Result<(Vec<u8>, Context), String> {
        use hpke::{Deserializable, Serializable};
        let hdr = header(self);
        let public_key = <Kem as hpke::Kem>::PublicKey::from_bytes(&self.public_key).map_err(|e| format!("the gateway's public key: {e}"))?;
        let mut rng = Seed { seed, used: 0, overdrawn: false };
        let (enc, mut sender) = hpke::setup_sender_with_rng::<Aead, Kdf, Kem>(&hpke::OpModeS::Base, &public_key, &request_info(&hdr), &mut rng)
            .map_err(|e| format!("HPKE with the gateway's public key: {e}"))?;
        if rng.overdrawn {
            return Err("HPKE asked for more randomness than an X25519 key needs".into());
        }
        let enc = enc.to_bytes();
        let mut out = Vec::with_capacity(hdr.len() + enc.len() + request.len() + TAG_LEN);
        out.extend_from_slice(&hdr);
        out.extend_from_slice(&enc);
        let start = out.len();
        out.extend_from_slice(request);
        let tag = sender.seal_inout_detached(hpke::inout::InOutBuf::from(&mut out[start..]), b"").map_err(|e| format!("HPKE seal: {e}"))?;
        out.extend_from_slice(&tag.to_bytes());
        let mut context = Context { enc: [0; NPK], secret: [0; SECRET_LEN] };
        context.enc.copy_from_slice(&enc);
        sender.export(RESPONSE_LABEL, &mut context.secret).map_err(|e| format!("HPKE export: {e}"))?;
        Ok((out, context))
    }
}

/// What opens the one response of an encapsulated request: the request's
/// encapsulated key and the secret its HPKE context exported (§4.4).
pub struct Context {
    enc: [u8; NPK],
    secret: [u8; SECRET_LEN],
}

impl Drop for Context {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl Context {
    /// RFC 9458 §4.4: the response is `response_nonce || ct`, the nonce
    /// max(Nn, Nk) bytes; salt = enc || response_nonce, prk =
    /// Extract(salt, secret), key = Expand(prk, "key", Nk), nonce =
    /// Expand(prk, "nonce", Nn). `None` when it does not open.
    fn open(&self, response: &[u8]) -> Option<Vec<u8>> {
        use aes_gcm::aead::{AeadInOut, KeyInit};
        if response.len() < SECRET_LEN + TAG_LEN {
            return None;
        }
        let (response_nonce, sealed) = response.split_at(SECRET_LEN);
        let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut salt = [0u8; NPK + SECRET_LEN];
        salt[..NPK].copy_from_slice(&self.enc);
        salt[NPK..].copy_from_slice(response_nonce);
        let prk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), &self.secret);
        let mut key = [0u8; NK];
        let mut nonce = [0u8; NN];
        prk.expand(b"key", &mut key).ok()?;
        prk.expand(b"nonce", &mut nonce).ok()?;
        let cipher = aes_gcm::Aes128Gcm::new_from_slice(&key).ok();
        key.zeroize();
        let nonce = aes_gcm::Nonce::<aes_gcm::aead::consts::U12>::try_from(&nonce[..]).ok()?;
        let tag = aes_gcm::Tag::<aes_gcm::aead::consts::U16>::try_from(tag).ok()?;
        let mut plain = ciphertext.to_vec();
        cipher?.decrypt_inout_detached(&nonce, b"", plain.as_mut_slice().into(), &tag).ok()?;
        Some(plain)
    }
}

/// The problem type (RFC 9457) RFC 9458 registers for a key the gateway
/// does not know; the reference collector answers it (README "Oblivious
/// HTTP (gateway)").
const OHTTP_KEY_PROBLEM: &str = "https://iana.org/assignments/http-problem-types#ohttp-key";

/// Whether a gateway's (or relay's) error body names an outdated key: the
/// `ohttp-key` problem type, or `{"error": "key_config_outdated"}`.
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
    let Some(inner) = context.open(&bytes) else {
        return outdated(Some(outer.status), "the gateway's answer does not open with the key configuration");
    };
    let m = match binary_http::response(&inner) {
        Ok(m) => m,
        Err(e) => return Delivery::Failed { status: Some(outer.status), retry_after: None, error: format!("the gateway's answer is not a Binary HTTP response: {e}") },
    };
    let retry_after = m.headers.get("retry-after").and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| crate::transport::parse_retry_after(v, crate::now_unix()));
    if matches!(m.status, 401 | 403 | 422) && says_key_outdated(Some(m.content)) {
        return outdated(Some(m.status), &format!("the gateway answered HTTP {} for the key configuration", m.status));
    }
    crate::transport::classify(Answer { status: m.status, retry_after, body: Some(m.content.to_vec()) }, "the collector")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::binary_http::tests::hex;

    /// The collector's gateway answers an unknown or retired key with the
    /// registered problem type; other gateways with a plain error word.
    #[test]
    fn both_spellings_of_an_unknown_key_are_recognised() {
        let problem = br#"{"type":"https://iana.org/assignments/http-problem-types#ohttp-key","title":"key identifier unknown"}"#;
        assert!(says_key_outdated(Some(problem)));
        assert!(says_key_outdated(Some(br#"{"error":"key_config_outdated"}"#)));
        assert!(!says_key_outdated(Some(br#"{"error":"product_version"}"#)));
        assert!(!says_key_outdated(Some(b"not json")));
        assert!(!says_key_outdated(None));
    }

    /// The gateway's side of HPKE: opens `ct || tag` with empty AAD.
    fn gateway_open(ctx: &mut hpke::aead::AeadCtxR<Aead, Kdf, Kem>, sealed: &[u8]) -> Vec<u8> {
        use hpke::Deserializable;
        let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut plain = ct.to_vec();
        let tag = hpke::aead::AeadTag::<Aead>::from_bytes(tag).unwrap();
        ctx.open_inout_detached(hpke::inout::InOutBuf::from(&mut plain[..]), b"", &tag).unwrap();
        plain
    }

    /// RFC 9458 Appendix A, "Complete Example of a Request and Response".
    mod rfc {
        pub const SK_R: &str = "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a";
        pub const KEY_CONFIG: &str = "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003";
        pub const REQUEST: &str = "00034745540568747470730b6578616d706c652e636f6d012f";
        pub const PK_E: &str = "4b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472";
        pub const INFO: &str = "6d6573736167652f626874747020726571756573740001002000010001";
        pub const ENC_REQUEST: &str = "010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad1
            9dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e796
            5e7d86b83dd440b2c0185204b4d63525";
        pub const RESPONSE: &str = "0140c8";
        pub const SECRET: &str = "62d87a6ba569ee81014c2641f52bea36";
        pub const ENC_RESPONSE: &str = "c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd";
    }

    /// Everything of Appendix A that does not depend on the client's
    /// ephemeral key is reproduced byte for byte: the chosen configuration,
    /// the request header and `info`, the exported secret (through the
    /// gateway's side of HPKE, which proves our `info`), and the response
    /// opened with our §4.4 key schedule. The encapsulated request itself
    /// cannot be: the RFC gives the ephemeral private key skE, while hpke
    /// only makes ephemeral keys as DeriveKeyPair(seed) and has no way to
    /// take skE as it is.
    #[test]
    fn rfc_9458_appendix_a() {
        use hpke::{Deserializable, Serializable};
        let config = choose(&hex(rfc::KEY_CONFIG)).unwrap();
        assert_eq!((config.id, &config.public_key[..]), (1, &hex(rfc::KEY_CONFIG)[3..35]));
        let hdr = header(&config);
        let enc_request = hex(rfc::ENC_REQUEST);
        assert_eq!(&hdr[..], &enc_request[..7]);
        assert_eq!(request_info(&hdr), hex(rfc::INFO));
        assert_eq!(&enc_request[7..39], &hex(rfc::PK_E)[..]);

        let sk_r = <Kem as hpke::Kem>::PrivateKey::from_bytes(&hex(rfc::SK_R)).unwrap();
        assert_eq!(<Kem as hpke::Kem>::sk_to_pk(&sk_r).to_bytes().as_slice(), &config.public_key[..], "the RFC's key pair");
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&hex(rfc::PK_E)).unwrap();
        let mut gateway = hpke::setup_receiver::<Aead, Kdf, Kem>(&hpke::OpModeR::Base, &sk_r, &enc, &request_info(&hdr)).unwrap();
        assert_eq!(gateway_open(&mut gateway, &enc_request[39..]), hex(rfc::REQUEST));
        let mut secret = [0u8; SECRET_LEN];
        gateway.export(RESPONSE_LABEL, &mut secret).unwrap();
        assert_eq!(&secret[..], &hex(rfc::SECRET)[..]);

        let mut context = Context { enc: [0; NPK], secret };
        context.enc.copy_from_slice(&hex(rfc::PK_E));
        let response = context.open(&hex(rfc::ENC_RESPONSE)).expect("the RFC's response opens");
        assert_eq!(response, hex(rfc::RESPONSE));
        assert_eq!(binary_http::response(&response).unwrap().status, 200);
    }

    /// hpke draws exactly one 32-byte seed for the ephemeral key (`Seed`
    /// would say otherwise), the key is DeriveKeyPair(seed), and the same
    /// seed gives the same bytes: the encapsulation can be driven
    /// deterministically, and it opens on the gateway's side of HPKE.
    #[test]
    fn a_fixed_seed_gives_a_fixed_request_that_the_gateway_opens() {
        use hpke::{Deserializable, Serializable};
        let config = choose(&hex(rfc::KEY_CONFIG)).unwrap();
        let seed = [7u8; 32];
        let (a, _) = config.seal(b"inner request", &seed).unwrap();
        let (b, _) = config.seal(b"inner request", &seed).unwrap();
        let (c, _) = config.seal(b"inner request", &[8u8; 32]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a[7..39], c[7..39]);
        let (_, pk_e) = <Kem as hpke::Kem>::derive_keypair(&seed);
        assert_eq!(&a[7..39], pk_e.to_bytes().as_slice());
        assert_eq!(a.len(), 7 + 32 + b"inner request".len() + 16, "the encapsulation adds 55 bytes");
        let sk_r = <Kem as hpke::Kem>::PrivateKey::from_bytes(&hex(rfc::SK_R)).unwrap();
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&a[7..39]).unwrap();
        let mut gateway = hpke::setup_receiver::<Aead, Kdf, Kem>(&hpke::OpModeR::Base, &sk_r, &enc, &request_info(&header(&config))).unwrap();
        assert_eq!(gateway_open(&mut gateway, &a[39..]), b"inner request");
    }

    fn ohttp_config(id: u8, suites: &[(ohttp::hpke::Kdf, ohttp::hpke::Aead)]) -> ohttp::KeyConfig {
        let suites = suites.iter().map(|(k, a)| ohttp::SymmetricSuite::new(*k, *a)).collect();
        ohttp::KeyConfig::new(id, ohttp::hpke::Kem::X25519Sha256, suites).unwrap()
    }

    fn relayed(config: &[u8]) -> Ohttp {
        Ohttp { relay: "https://relay.example/".into(), key_config: choose(config).unwrap(), digest: String::new() }
    }

    /// A Binary HTTP response as the bhttp crate writes it.
    fn bhttp_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut m = bhttp::Message::response(bhttp::StatusCode::try_from(status).unwrap());
        for (k, v) in headers {
            m.put_header(*k, *v);
        }
        m.write_content(body);
        let mut out = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
        out
    }

    /// Interoperability both ways with the ohttp/bhttp crates (the
    /// collector's gateway is built on them): our request opens on their
    /// server as the Binary HTTP request we meant, with the same bytes
    /// their client would have sealed; their answer opens with ours.
    #[test]
    fn our_request_opens_on_the_ohttp_crates_server_and_its_answer_with_ours() {
        use ohttp::hpke::{Aead as A, Kdf as K};
        // The gateway lists ChaCha20-Poly1305 first: AES-128-GCM is chosen.
        let config = ohttp_config(3, &[(K::HkdfSha256, A::ChaCha20Poly1305), (K::HkdfSha256, A::Aes128Gcm)]);
        let o = relayed(&config.encode().unwrap());
        let server = ohttp::Server::new(config).unwrap();
        let body = br#"{"report_id":"x","edition":"enterprise"}"#;
        let (request, context) = o.encapsulate("https://collector.example:8443/v1/report", body).unwrap();
        assert_eq!(&request[..7], &[3, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01]);
        assert!(!request.windows(10).any(|w| w == b"enterprise"), "nothing in clear");
        let (inner, answer) = server.decapsulate(&request).unwrap();
        let expected = {
            let mut m = bhttp::Message::request(b"POST".to_vec(), b"https".to_vec(), b"collector.example:8443".to_vec(), b"/v1/report".to_vec());
            m.put_header("content-type", "application/json");
            m.write_content(body);
            let mut out = Vec::new();
            m.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
            out
        };
        assert_eq!(inner, expected, "the bhttp crate writes the same Binary HTTP request");
        let m = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&inner[..])).unwrap();
        assert_eq!(m.control().method(), Some(&b"POST"[..]));
        assert_eq!(m.header().get(b"content-type"), Some(&b"application/json"[..]));
        assert_eq!(m.content(), body);

        let sealed = answer.encapsulate(&bhttp_response(201, &[("content-type", "application/json")], b"{\"stored\":true}")).unwrap();
        assert_eq!(open(context, Answer { status: 200, retry_after: None, body: Some(sealed) }), Delivery::Delivered { status: 201 });
    }

    /// The inner answer decides, as for a direct send: a 429 with
    /// Retry-After is retried then, a 400 drops the report, the ohttp-key
    /// problem inside means the key is outdated.
    #[test]
    fn the_inner_answer_is_handled_like_a_direct_one() {
        let config = ohttp_config(1, &[(ohttp::hpke::Kdf::HkdfSha256, ohttp::hpke::Aead::Aes128Gcm)]);
        let o = relayed(&config.encode().unwrap());
        let server = ohttp::Server::new(config).unwrap();
        let exchange = |inner: Vec<u8>| {
            let (request, context) = o.encapsulate("https://c.example/v1/report", b"{}").unwrap();
            let (_, answer) = server.decapsulate(&request).unwrap();
            open(context, Answer { status: 200, retry_after: None, body: Some(answer.encapsulate(&inner).unwrap()) })
        };
        match exchange(bhttp_response(429, &[("retry-after", "7200")], b"")) {
            Delivery::Failed { status: Some(429), retry_after: Some(r), .. } => assert_eq!(r, 7200),
            d => panic!("{d:?}"),
        }
        assert!(matches!(exchange(bhttp_response(400, &[], b"{\"error\":\"schema\"}")), Delivery::Refused { status: 400, .. }));
        let problem = br#"{"type":"https://iana.org/assignments/http-problem-types#ohttp-key"}"#;
        assert!(matches!(exchange(bhttp_response(422, &[], problem)), Delivery::KeyOutdated { status: Some(422), .. }));
        // 1xx before the final answer, built by hand: skipped.
        let informational = hex("01 4067 00 40c9 00 00 00");
        assert_eq!(exchange(informational), Delivery::Delivered { status: 201 });
        // Sealed properly but not Binary HTTP: a failed attempt, retried.
        match exchange(b"HTTP/1.1 201 Created\r\n\r\n".to_vec()) {
            Delivery::Failed { error, .. } => assert!(error.contains("not a Binary HTTP response"), "{error}"),
            d => panic!("{d:?}"),
        }
    }

    /// A hostile or broken relay: whatever bytes it answers, no panic; what
    /// does not open is the gateway not knowing the key, never a delivery.
    #[test]
    fn an_answer_that_does_not_open_is_never_a_delivery() {
        let config = ohttp_config(1, &[(ohttp::hpke::Kdf::HkdfSha256, ohttp::hpke::Aead::Aes128Gcm)]);
        let o = relayed(&config.encode().unwrap());
        let server = ohttp::Server::new(config).unwrap();
        let (request, context) = o.encapsulate("https://c.example/v1/report", b"{}").unwrap();
        let (_, answer) = server.decapsulate(&request).unwrap();
        let good = answer.encapsulate(&bhttp_response(201, &[], b"")).unwrap();
        assert!(context.open(&good).is_some());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(context.open(&bad).is_none(), "byte {i} flipped");
        }
        for cut in 0..good.len() {
            assert!(context.open(&good[..cut]).is_none(), "cut at {cut}");
        }
        // Another request's answer does not open with this context.
        let (request2, _) = o.encapsulate("https://c.example/v1/report", b"{}").unwrap();
        let (_, answer2) = server.decapsulate(&request2).unwrap();
        let other = answer2.encapsulate(&bhttp_response(201, &[], b"")).unwrap();
        assert!(context.open(&other).is_none());
        assert!(matches!(open(context, Answer { status: 200, retry_after: None, body: Some(other) }), Delivery::KeyOutdated { status: Some(200), .. }));
        let (_, context) = o.encapsulate("https://c.example/v1/report", b"{}").unwrap();
        assert!(matches!(open(context, Answer { status: 200, retry_after: None, body: Some(vec![0; 5000]) }), Delivery::KeyOutdated { .. }));
        let (_, context) = o.encapsulate("https://c.example/v1/report", b"{}").unwrap();
        assert!(matches!(open(context, Answer { status: 200, retry_after: None, body: None }), Delivery::Failed { .. }));
    }

    /// An X25519 configuration with the given (KDF, AEAD) pairs, by hand.
    fn x25519_config(id: u8, pairs: &[(u16, u16)]) -> Vec<u8> {
        let mut c = vec![id, 0x00, 0x20];
        c.extend_from_slice(&[id; 32]);
        c.extend_from_slice(&((pairs.len() * 4) as u16).to_be_bytes());
        for (k, a) in pairs {
            c.extend_from_slice(&k.to_be_bytes());
            c.extend_from_slice(&a.to_be_bytes());
        }
        c
    }

    fn list(configs: &[&[u8]]) -> Vec<u8> {
        configs.iter().flat_map(|c| [&(c.len() as u16).to_be_bytes()[..], c].concat()).collect()
    }

    /// A P-256 configuration (KEM 0x0010, a 65-byte key) with key id `id`:
    /// well-formed, but not a KEM this client speaks.
    fn p256_config(id: u8) -> Vec<u8> {
        let mut c = vec![id, 0x00, 0x10, 0x04];
        c.extend_from_slice(&[1; 64]);
        c.extend_from_slice(&[0, 4, 0, 1, 0, 1]);
        c
    }

    #[test]
    fn the_first_usable_configuration_of_a_list_is_chosen() {
        // Not ours; skipped by its length prefix.
        let p256 = p256_config(9);
        let chacha_only = x25519_config(2, &[(1, 3)]);
        let sha384 = x25519_config(3, &[(2, 1)]);
        let good = x25519_config(4, &[(1, 3), (1, 1)]);
        let later = x25519_config(5, &[(1, 1)]);
        // A KEM this library does not know (registered later): skipped too.
        let future = [&[8u8, 0x12, 0x34][..], &[5; 40]].concat();
        let chosen = choose(&list(&[&p256, &future, &chacha_only, &sha384, &good, &later])).unwrap();
        assert_eq!((chosen.id, &chosen.encoded), (4, &good));
        // The same configuration alone: the same bytes, so the same consent digest.
        assert_eq!(choose(&good).unwrap().encoded, good);
        assert_eq!(choose(&list(&[&good])).unwrap().encoded, good);
    }

    #[test]
    fn configurations_without_a_supported_suite_are_refused_with_what_they_offer() {
        let p256 = p256_config(1);
        for (given, found) in [
            (p256.clone(), "found KEM 0x0010 with KDF/AEAD 0x0001/0x0001"),
            (x25519_config(1, &[(1, 3)]), "KEM 0x0020 with KDF/AEAD 0x0001/0x0003"),
            (x25519_config(1, &[(1, 0x99), (3, 1)]), "KEM 0x0020 with KDF/AEAD 0x0001/0x0099, 0x0003/0x0001"),
            (list(&[&p256, &x25519_config(2, &[(1, 2)])]), "KEM 0x0010 with KDF/AEAD 0x0001/0x0001; KEM 0x0020 with KDF/AEAD 0x0001/0x0002"),
        ] {
            let e = choose(&given).unwrap_err();
            assert!(e.starts_with("no supported suite") && e.contains("P-256") && e.contains(found), "{e}");
        }
    }

    /// Truncated, oversized or inconsistent lengths: an error, no panic, and
    /// never a configuration read past its end.
    #[test]
    fn malformed_key_configurations_are_errors() {
        let good = x25519_config(1, &[(1, 1)]);
        for (given, part) in [
            (vec![], "not a key configuration"),
            (vec![1, 0], "not a key configuration"),
            (good[..20].to_vec(), "not a key configuration"),
            (good[..good.len() - 1].to_vec(), "not a key configuration"),
            ([&good[..], &[0]].concat(), "not a key configuration"),
            ({ let mut c = good.clone(); c[36] = 3; c }, "not a key configuration"),   // pairs length 3
            ({ let mut c = good.clone(); c[36] = 8; c }, "not a key configuration"),   // longer than what follows
            ({ let mut c = good.clone(); c[36] = 0; c.truncate(37); c }, "not a key configuration"), // no pairs
            (list(&[&good[..30]]), "configuration 1 of the list"),
            ([&list(&[&good])[..], &[0]].concat(), "not a key configuration"),
            ([&[0xff, 0xff][..], &good[..]].concat(), "not a key configuration"),
            ([&[8u8, 0x12, 0x34][..], &[5; 40]].concat(), "KEM 0x1234 is not an HPKE KEM this library knows"),
            ({ let mut c = good.clone(); c[36] = 8; c.extend_from_slice(&[0, 1]); c }, "not a key configuration"), // half a pair
        ] {
            let e = choose(&given).err().unwrap_or_else(|| panic!("accepted {given:?}"));
            assert!(e.contains(part), "{given:?}: {e}");
        }
        // Random bytes, alone and as list entries: a configuration or an error, never a panic.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in 0..20_000 {
            let mut b = Vec::new();
            for _ in 0..(n % 80) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(x as u8);
            }
            if n % 2 == 0 && b.len() >= 3 {
                b[1] = 0x00; // often X25519, so that the pairs get read
                b[2] = 0x20;
            }
            let _ = choose(&b);
            let _ = choose(&list(&[&b, &good[..n % good.len()]]));
        }
        for cut in 0..good.len() {
            assert!(choose(&good[..cut]).is_err());
            let l = list(&[&x25519_config(7, &[(2, 2)]), &good]);
            let _ = choose(&l[..cut]);
        }
    }

    /// tel_open takes `"ohttp"` in every build: the Windows DLL refused it
    /// while the ohttp crate did not fit (scripts/test-windows checks that
    /// this ran under Wine).
    #[test]
    fn every_build_accepts_ohttp_at_open() {
        // key_config: RFC 9458 Appendix A's, in base64.
        let dir = std::env::temp_dir().join(format!("optin-ohttp-open-{}", std::process::id()));
        let config = serde_json::json!({"product": "P", "product_version": "1.0", "endpoint": "https://collector.example/v1/report",
            "state_dir": dir.join("s"),
            "schema": {"version": 1, "fields": [{"name": "t", "type": "bool", "description": {"en": "x"}}]},
            "ohttp": {"relay": "https://relay.example/ohttp", "key_config": "AQAgMeHwWnQBAhFSIOmvkY9zhnSuyV9U224E63Baro55gVUACAABAAEAAQAD"}});
        let c = crate::Client::open(&config.to_string()).unwrap_or_else(|e| panic!("{}", e.message));
        let d: Value = serde_json::from_str(&c.describe("en").unwrap()).unwrap();
        assert_eq!(d["relay"]["host"], "relay.example", "{d}");
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The `"ohttp"` object through `parse`: base64 of a list, the digest
    /// binds relay and the chosen configuration.
    #[test]
    fn parse_binds_the_relay_and_the_chosen_configuration() {
        fn b64(b: &[u8]) -> String {
            const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            b.chunks(3)
                .flat_map(|c| {
                    let n = c.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
                    (0..4).map(move |i| if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' })
                })
                .collect()
        }
        let good = x25519_config(4, &[(1, 1)]);
        let parse = |relay: &str, key: &[u8]| Ohttp::parse(&serde_json::json!({"relay": relay, "key_config": b64(key)}));
        let a = parse("https://relay.example/", &good).unwrap();
        assert_eq!(a.digest, parse("https://relay.example/", &list(&[&x25519_config(1, &[(1, 3)]), &good])).unwrap().digest);
        assert_ne!(a.digest, parse("https://other.example/", &good).unwrap().digest);
        assert_ne!(a.digest, parse("https://relay.example/", &x25519_config(5, &[(1, 1)])).unwrap().digest);
        let e = parse("https://relay.example/", &x25519_config(1, &[(1, 3)])).unwrap_err();
        assert!(e.message.starts_with("config.ohttp.key_config: no supported suite"), "{}", e.message);
    }
}
