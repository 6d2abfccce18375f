//! Consent as a state machine bound to the schema digest.
//!
//! What is stored is the user's last answer with its receipt. What the library
//! reports is derived from that answer and the digest of the schema in use:
//! a "yes" covers only the exact schema it was given for; a "no" stays a "no"
//! whatever the schema (a user who declined is not asked again).

use crate::schema::Schema;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentState {
    Undecided = 0,
    Granted = 1,
    Denied = 2,
    /// Granted for another schema than the one in use: nothing is sent.
    Outdated = 3,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Undecided => "undecided",
            ConsentState::Granted => "granted",
            ConsentState::Denied => "denied",
            ConsentState::Outdated => "outdated",
        }
    }
}

/// The user's answer and what it was given for.
#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    pub granted: bool,
    /// Unix seconds when the answer was given.
    pub at: i64,
    pub schema_version: u32,
    pub schema_digest: String,
    pub product_version: String,
    /// Canonical schema the answer covered, so a later schema can be diffed.
    pub schema: Value,
}

impl Receipt {
    pub fn new(granted: bool, at: i64, schema: &Schema, product_version: &str) -> Receipt {
        Receipt {
            granted,
            at,
            schema_version: schema.version,
            schema_digest: schema.digest.clone(),
            product_version: product_version.to_string(),
            schema: schema.canonical.clone(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "decision": if self.granted { "granted" } else { "denied" },
            "at": self.at,
            "schema_version": self.schema_version,
            "schema_digest": self.schema_digest,
            "product_version": self.product_version,
            "schema": self.schema,
        })
    }

    /// Strict: anything unexpected is `None`, and the caller treats the whole
    /// state as unreadable rather than guess at a consent.
    pub fn from_json(v: &Value) -> Option<Receipt> {
        let o = v.as_object()?;
        if o.len() != 6 {
            return None;
        }
        let granted = match o.get("decision")?.as_str()? {
            "granted" => true,
            "denied" => false,
            _ => return None,
        };
        let digest = o.get("schema_digest")?.as_str()?;
        if !digest.starts_with("sha256:") {
            return None;
        }
        Some(Receipt {
            granted,
            at: o.get("at")?.as_i64()?,
            schema_version: u32::try_from(o.get("schema_version")?.as_u64()?).ok()?,
            schema_digest: digest.to_string(),
            product_version: o.get("product_version")?.as_str()?.to_string(),
            schema: o.get("schema").filter(|s| s.is_object())?.clone(),
        })
    }
}

/// The consent in force for the schema with `digest`.
pub fn effective(receipt: Option<&Receipt>, digest: &str) -> ConsentState {
    match receipt {
        None => ConsentState::Undecided,
        Some(r) if !r.granted => ConsentState::Denied,
        Some(r) if r.schema_digest == digest => ConsentState::Granted,
        Some(_) => ConsentState::Outdated,
    }
}

/// The receipt after the user answers `granted`. Repeating the answer in force
/// keeps the original receipt (so a second "yes" does not restart anything).
pub fn answer(previous: Option<&Receipt>, granted: bool, now: i64, schema: &Schema, product_version: &str) -> Receipt {
    match previous {
        Some(r) if r.granted == granted && (!granted || r.schema_digest == schema.digest) => r.clone(),
        _ => Receipt::new(granted, now, schema, product_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsentState::*;

    fn schema(fields: Value) -> Schema {
        Schema::from_json(&json!({"version": 1, "fields": fields})).unwrap()
    }

    #[test]
    fn transitions() {
        let v1 = schema(json!([{"name": "a", "type": "bool", "description": {"en": "a"}}]));
        let v2 = schema(json!([{"name": "a", "type": "count", "description": {"en": "a"}}]));
        assert_eq!(effective(None, &v1.digest), Undecided);
        assert_eq!(effective(None, &v2.digest), Undecided, "undecided stays undecided across schemas");

        let yes = answer(None, true, 10, &v1, "1.0");
        assert_eq!(effective(Some(&yes), &v1.digest), Granted);
        assert_eq!(effective(Some(&yes), &v2.digest), Outdated, "a yes covers only its schema");

        let again = answer(Some(&yes), true, 20, &v1, "1.1");
        assert_eq!(again, yes, "repeating yes keeps the original receipt");

        let yes2 = answer(Some(&yes), true, 30, &v2, "2.0");
        assert_eq!((effective(Some(&yes2), &v2.digest), yes2.at, yes2.schema_digest.as_str()), (Granted, 30, v2.digest.as_str()));

        let no = answer(Some(&yes2), false, 40, &v2, "2.0");
        assert_eq!(effective(Some(&no), &v2.digest), Denied);
        assert_eq!(effective(Some(&no), &v1.digest), Denied, "a no stays a no across schema changes");

        let yes3 = answer(Some(&no), true, 50, &v2, "2.0");
        assert_eq!(effective(Some(&yes3), &v2.digest), Granted, "the user may change their mind");
    }

    #[test]
    fn receipt_round_trips_and_rejects_tampering() {
        let v1 = schema(json!([{"name": "a", "type": "bool", "description": {"en": "a"}}]));
        let r = answer(None, true, 10, &v1, "1.0");
        assert_eq!(Receipt::from_json(&r.to_json()), Some(r.clone()));
        for (k, bad) in [("decision", json!("yes")), ("at", json!("10")), ("schema_digest", json!("md5:x")), ("schema", json!(null))] {
            let mut v = r.to_json();
            v[k] = bad;
            assert_eq!(Receipt::from_json(&v), None, "{k}");
        }
    }
}
