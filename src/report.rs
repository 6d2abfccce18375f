//! The report: one JSON object, built the same way for the preview and for
//! the send, so the bytes the user was shown are the bytes that go out.
//!
//! Keys are emitted in sorted order (serde_json's default map), compact, UTF-8.

use crate::platform;
use crate::schema::{FieldValue, Schema, REPORT_FORMAT};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Who the next report is: its public id and a secret key its rounded counts
/// are drawn from. Both are created together and replaced together, so one
/// report always shows the same drawn values (preview, describe, body) and
/// the next report draws again. The key never leaves the library: a draw
/// derived from the public id would let a collector recompute it and learn on
/// which side of the rounding threshold the true value lies.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportIdentity {
    /// 32 lowercase hex characters, sent as `report_id`.
    pub id: String,
    /// Secret; never shown, sent or logged.
    pub draw_key: [u8; 32],
}

impl std::fmt::Debug for ReportIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportIdentity").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ReportIdentity {
    /// A fresh random identity from the operating system's generator.
    pub fn new() -> ReportIdentity {
        let mut draw_key = [0u8; 32];
        crate::random_bytes(&mut draw_key);
        ReportIdentity { id: crate::random_hex(16), draw_key }
    }

    /// Uniform draw from 0..n (n > 0) for `field` holding `value`, fixed by
    /// the key: SHA-256(draw_key || len(field) || field || value || counter),
    /// with rejection of the top partial range so no residue is favoured.
    pub fn below(&self, field: &str, value: u64, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        for counter in 0u32.. {
            let h = Sha256::new()
                .chain_update(self.draw_key)
                .chain_update((field.len() as u64).to_le_bytes())
                .chain_update(field.as_bytes())
                .chain_update(value.to_le_bytes())
                .chain_update(counter.to_le_bytes())
                .finalize();
            let x = u64::from_le_bytes(h[..8].try_into().expect("SHA-256 has 32 bytes"));
            if x < zone {
                return x % n;
            }
        }
        unreachable!("each try succeeds with probability above 1/2")
    }
}

impl Default for ReportIdentity {
    fn default() -> Self {
        Self::new()
    }
}

/// Values of the built-in fields, fixed for the life of a client.
#[derive(Clone, Debug)]
pub struct Builtins {
    pub os_family: String,
    pub os_version: String,
    pub arch: String,
    pub product: String,
    pub product_version: String,
    pub library_version: String,
}

impl Builtins {
    pub fn detect(product: &str, product_version: &str) -> Builtins {
        Builtins {
            os_family: platform::os_family().into(),
            os_version: platform::os_version(),
            arch: platform::arch().into(),
            product: product.into(),
            product_version: product_version.into(),
            library_version: crate::VERSION.into(),
        }
    }

    /// In the order of `schema::BUILTIN_FIELDS`.
    pub fn values(&self) -> [(&'static str, &str); 6] {
        [
            ("os_family", &self.os_family),
            ("os_version", &self.os_version),
            ("arch", &self.arch),
            ("product", &self.product),
            ("product_version", &self.product_version),
            ("library_version", &self.library_version),
        ]
    }
}

/// Field `i`'s value as this report sends it.
pub fn encode(schema: &Schema, i: usize, v: &FieldValue, report: &ReportIdentity) -> Value {
    let name = &schema.fields[i].name;
    let n = match v {
        FieldValue::Count(n) => *n,
        _ => 0,
    };
    schema.encode(i, v, &mut |range| report.below(name, n, range))
}

pub fn build(schema: &Schema, values: &[Option<FieldValue>], builtins: &Builtins, identity: &ReportIdentity) -> String {
    let mut fields = Map::new();
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            fields.insert(schema.fields[i].name.clone(), encode(schema, i, v, identity));
        }
    }
    let mut report = Map::new();
    for (name, value) in builtins.values() {
        report.insert(name.into(), Value::String(value.into()));
    }
    report.insert("fields".into(), Value::Object(fields));
    report.insert("format".into(), REPORT_FORMAT.into());
    report.insert("report_id".into(), identity.id.as_str().into());
    report.insert("schema_digest".into(), schema.digest.clone().into());
    report.insert("schema_version".into(), schema.version.into());
    serde_json::to_string(&Value::Object(report)).expect("a Value always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_identity_draws_the_same_and_a_new_one_draws_again() {
        let schema = Schema::from_json(&json!({"version": 1, "fields": (0..64).map(|i| json!(
            {"name": format!("c{i}"), "type": "count", "rounding": "1-2-5", "description": {"en": "x"}})).collect::<Vec<_>>()}))
        .unwrap();
        let values = vec![Some(FieldValue::Count(3)); 64];
        let builtins = Builtins::detect("P", "1.0");
        let (a, b) = (ReportIdentity::new(), ReportIdentity::new());
        assert_ne!(a.draw_key, b.draw_key);
        let first = build(&schema, &values, &builtins, &a);
        assert_eq!(first, build(&schema, &values, &builtins, &a.clone()), "same identity, same bytes");
        let sent = |body: &str| -> Vec<u64> {
            let v: Value = serde_json::from_str(body).unwrap();
            v["fields"].as_object().unwrap().values().map(|x| x.as_u64().unwrap()).collect()
        };
        let (da, db) = (sent(&first), sent(&build(&schema, &values, &builtins, &b)));
        assert!(da.iter().chain(&db).all(|&x| x == 2 || x == 5), "only the two neighbours");
        // 64 independent draws per identity: equal by chance with p < 2^-40.
        assert_ne!(da, db, "a new identity draws again");
        assert!(!format!("{a:?}").contains(&crate::schema::hex(&a.draw_key)), "the key is not in Debug output");
    }

    #[test]
    fn draws_are_uniform_below_n() {
        let id = ReportIdentity { id: "0".repeat(32), draw_key: [7; 32] };
        let mut hist = [0u32; 3];
        for v in 0..30_000u64 {
            let x = id.below("f", v, 3);
            hist[x as usize] += 1;
        }
        // Fixed key, so this is deterministic; a bias would show as a skew.
        assert!(hist.iter().all(|&h| (9_500..10_500).contains(&h)), "{hist:?}");
        assert_eq!(id.below("f", 1, 1), 0);
        assert!(id.below("f", 1, u64::MAX) < u64::MAX);
    }
}
