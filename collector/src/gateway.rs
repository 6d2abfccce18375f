//! Oblivious HTTP (RFC 9458): the gateway half. A product sends its report
//! encapsulated to one of our keys through a relay the vendor hosts (or
//! someone else does); the relay sees the product's address but not the
//! report, the collector sees the report but only the relay's address.
//!
//! Keys: X25519 (DHKEM, HKDF-SHA256) with HKDF-SHA256 and AES-128-GCM or
//! ChaCha20Poly1305. What is stored per key is the 32-byte secret the key
//! pair is derived from (HPKE DeriveKeyPair); retiring a key deletes it.
//! Several keys are live at once so that products in the field keep working
//! through a rotation.
//!
//! A request is decapsulated with the live key its key id names; its inner
//! Binary HTTP (RFC 9292) request must be a `POST` to the ingest path, and
//! its content goes through exactly what `/v1/report` runs
//! ([`crate::http`]: the same header checks, validator, dedup, quarantine
//! and answers). The answer is encapsulated back as Binary HTTP.

use crate::storage::{OhttpKeyRow, Store};
use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{KeyConfig, SymmetricSuite};
use std::collections::HashMap;

/// Where a relay forwards requests, and where the keys are served (GET).
pub const PATH: &str = "/.well-known/ohttp-gateway";
pub const REQUEST_TYPE: &str = "message/ohttp-req";
pub const RESPONSE_TYPE: &str = "message/ohttp-res";
pub const KEYS_TYPE: &str = "application/ohttp-keys";

/// Length of a key's stored secret.
pub const IKM_LEN: usize = 32;

/// What encapsulation adds to the Binary HTTP request: the header (key id
/// 1, KEM 2, KDF 2, AEAD 2 bytes), the X25519 encapsulated key (32) and the
/// AEAD tag (16).
pub const CRYPTO_OVERHEAD: usize = 7 + 32 + 16;

/// Room for the Binary HTTP framing around the report: framing indicator,
/// method, scheme, authority, path, header fields, length prefixes and an
/// empty trailer. A product sends well under 200 bytes of it.
pub const BHTTP_ALLOWANCE: usize = 1024;

/// The largest encapsulated request accepted for a body limit of `max_body`.
pub fn max_encapsulated(max_body: usize) -> usize {
    max_body + CRYPTO_OVERHEAD + BHTTP_ALLOWANCE
}

/// Why a request to the gateway was refused before anything reached the
/// ingest path; counted in /metrics by these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Shorter than an encapsulation header and key, or cut short.
    Malformed,
    /// The key id names no live key (retired, or never made), or the
    /// KEM/KDF/AEAD is not one of the key's.
    KeyUnknown,
    /// A live key, but the ciphertext does not open.
    Undecryptable,
    /// Decrypted, but not a Binary HTTP `POST` to the ingest path
    /// (answered inside the encapsulation).
    InnerRequest,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [Refusal::Malformed, Refusal::KeyUnknown, Refusal::Undecryptable, Refusal::InnerRequest];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::KeyUnknown => "key_unknown",
            Refusal::Undecryptable => "undecryptable",
            Refusal::InnerRequest => "inner_request",
        }
    }
}

const SUITES: [SymmetricSuite; 2] =
    [SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm), SymmetricSuite::new(Kdf::HkdfSha256, Aead::ChaCha20Poly1305)];

/// The key configuration (with its private key) of a stored key.
pub fn key_config(key_id: u8, ikm: &[u8]) -> Result<KeyConfig, String> {
    KeyConfig::derive(key_id, Kem::X25519Sha256, SUITES.to_vec(), ikm).map_err(|e| format!("OHTTP key {key_id}: {e}"))
}

/// application/ohttp-keys (RFC 9540): the configurations, each prefixed by
/// its 2-byte length.
pub fn encode_list(configs: &[KeyConfig]) -> Vec<u8> {
    KeyConfig::encode_list(configs).unwrap_or_default()
}

/// The live keys, as the gateway uses them.
#[derive(Default)]
pub struct Keys {
    servers: HashMap<u8, ohttp::Server>,
    list: Vec<u8>,
    /// (key id, whether live) of every stored key, to tell when to rebuild.
    seen: Vec<(u8, bool)>,
}

impl Keys {
    pub fn from_rows(rows: &[OhttpKeyRow]) -> Keys {
        let mut servers = HashMap::new();
        let mut configs = vec![];
        for row in rows {
            let Some(ikm) = &row.ikm else { continue };
            match key_config(row.key_id, ikm).and_then(|c| ohttp::Server::new(c.clone()).map(|s| (c, s)).map_err(|e| e.to_string())) {
                Ok((config, server)) => {
                    configs.push(config);
                    servers.insert(row.key_id, server);
                }
                Err(e) => eprintln!("{e}"),
            }
        }
        Keys { servers, list: encode_list(&configs), seen: Self::state_of(rows) }
    }

    fn state_of(rows: &[OhttpKeyRow]) -> Vec<(u8, bool)> {
        rows.iter().map(|r| (r.key_id, r.ikm.is_some())).collect()
    }

    /// True when `rows` differ from what these keys were built from.
    pub fn changed(&self, rows: &[OhttpKeyRow]) -> bool {
        self.seen != Self::state_of(rows)
    }

    /// The live configurations as application/ohttp-keys.
    pub fn encoded(&self) -> &[u8] {
        &self.list
    }

    pub fn server(&self, key_id: u8) -> Option<&ohttp::Server> {
        self.servers.get(&key_id)
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

/// The refusal an `ohttp` decapsulation error stands for.
pub fn refusal_of(e: &ohttp::Error) -> Refusal {
    match e {
        ohttp::Error::KeyId | ohttp::Error::InvalidKem | ohttp::Error::Unsupported => Refusal::KeyUnknown,
        ohttp::Error::Aead(_) | ohttp::Error::Hpke(_) => Refusal::Undecryptable,
        _ => Refusal::Malformed,
    }
}

/// `ohttp keygen`: a new live key; returns its id and its configuration as
/// standard base64 of application/ohttp-keys (a list of one).
pub async fn keygen<S: Store>(store: &S, now: i64) -> Result<(u8, String), String> {
    use base64::Engine;
    let mut ikm = [0u8; IKM_LEN];
    getrandom::getrandom(&mut ikm).map_err(|e| format!("no randomness: {e}"))?;
    let week = crate::privacy::Week::of_unix(now).to_string();
    let id = store
        .add_ohttp_key(&week, &ikm)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("all 256 key ids are used (key ids are never reused); start a new database for the gateway keys")?;
    let config = key_config(id, &ikm)?;
    Ok((id, base64::engine::general_purpose::STANDARD.encode(encode_list(&[config]))))
}

/// `ohttp list`: one line per key.
pub async fn list_text<S: Store>(store: &S) -> Result<String, String> {
    let rows = store.ohttp_keys().await.map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Ok("no OHTTP keys (make one with: optin-collector ohttp keygen)\n".into());
    }
    let mut out = String::from("key_id  created   state\n");
    for r in rows {
        out.push_str(&format!("{:<6}  {}  {}\n", r.key_id, r.created_week, if r.ikm.is_some() { "live" } else { "retired" }));
    }
    Ok(out)
}

/// `ohttp retire KEYID`.
pub async fn retire<S: Store>(store: &S, key_id: u8) -> Result<(), String> {
    if store.retire_ohttp_key(key_id).await.map_err(|e| e.to_string())? {
        Ok(())
    } else {
        Err(format!("no live OHTTP key with id {key_id} (see: optin-collector ohttp list)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_config_round_trips() {
        let c = key_config(7, &[9u8; IKM_LEN]).unwrap();
        let list = encode_list(std::slice::from_ref(&c));
        // 2-byte length, key id, KEM 0x0020, 32-byte key, suites length 8, two suites.
        assert_eq!(list.len(), 2 + 1 + 2 + 32 + 2 + 8);
        assert_eq!(&list[..5], &[0, 45, 7, 0, 0x20]);
        assert_eq!(&list[list.len() - 10..], &[0, 8, 0, 1, 0, 1, 0, 1, 0, 3]);
        let decoded = KeyConfig::decode_list(&list).unwrap();
        assert_eq!(decoded.len(), 1);
        // The same secret gives the same public key.
        assert_eq!(encode_list(&[key_config(7, &[9u8; IKM_LEN]).unwrap()]), list);
    }
}
