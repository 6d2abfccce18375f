//! Consent as a state machine bound to what is sent, who sends it and where.
//!
//! What is stored is the user's last answer with its receipt. What the library
//! reports is derived from that answer and the [`Scope`] in use: a "yes"
//! covers only the exact schema digest, product name and endpoint it was
//! given for; a "no" stays a "no" whatever changes (a user who declined is
//! not asked again).

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

/// What a "yes" is given for. The schema digest decides what is sent; the
/// product name is sent in every report and the endpoint is where it goes, so
/// a change of either needs a new answer as much as a new field does.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub schema: &'a Schema,
    pub product: &'a str,
    pub product_version: &'a str,
    pub endpoint: &'a str,
    /// Digest of the `"ohttp"` configuration (relay and key configuration)
    /// when reports go through a relay: who sees the address is bound too.
    pub ohttp: Option<&'a str>,
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
    /// `None` in a receipt written before product and endpoint were bound:
    /// such a "yes" covers neither, so it reads as outdated.
    pub product: Option<String>,
    pub endpoint: Option<String>,
    /// Digest of the `"ohttp"` configuration the answer was given under;
    /// `None` for a direct send (and in every receipt written before relays
    /// were bound, which therefore covers a direct send only).
    pub ohttp: Option<String>,
    /// Canonical schema the answer covered, so a later schema can be diffed.
    pub schema: Value,
}

impl Receipt {
    pub fn new(granted: bool, at: i64, scope: &Scope) -> Receipt {
        Receipt {
            granted,
            at,
            schema_version: scope.schema.version,
            schema_digest: scope.schema.digest.clone(),
            product_version: scope.product_version.to_string(),
            product: Some(scope.product.to_string()),
            endpoint: Some(scope.endpoint.to_string()),
            ohttp: scope.ohttp.map(str::to_string),
            schema: scope.schema.canonical.clone(),
        }
    }

    /// Whether this receipt was given for exactly `scope` (answer aside).
    pub fn covers(&self, scope: &Scope) -> bool {
        self.schema_digest == scope.schema.digest
            && self.product.as_deref() == Some(scope.product)
            && self.endpoint.as_deref() == Some(scope.endpoint)
            && self.ohttp.as_deref() == scope.ohttp
    }

    /// `"ohttp"` is written only when bound, so a receipt for a direct send
    /// stays exactly as before.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "decision": if self.granted { "granted" } else { "denied" },
            "at": self.at,
            "schema_version": self.schema_version,
            "schema_digest": self.schema_digest,
            "product_version": self.product_version,
            "product": self.product,
            "endpoint": self.endpoint,
            "schema": self.schema,
        });
        if let Some(d) = &self.ohttp {
            v["ohttp"] = json!(d);
        }
        v
    }

    /// Strict: anything unexpected is `None`, and the caller treats the whole
    /// state as unreadable rather than guess at a consent.
    /// A receipt from before product and endpoint were bound (6 keys) reads
    /// with both `None`; one without `"ohttp"` with `ohttp` `None`.
    pub fn from_json(v: &Value) -> Option<Receipt> {
        let o = v.as_object()?;
        let ohttp = match o.get("ohttp") {
            None => None,
            Some(d) => Some(d.as_str().filter(|d| d.starts_with("sha256:"))?.to_string()),
        };
        let bound = match o.len() - usize::from(ohttp.is_some()) {
            6 if ohttp.is_none() => false,
            8 => true,
            _ => return None,
        };
        let text = |k: &str| -> Option<Option<String>> {
            if bound {
                Some(Some(o.get(k)?.as_str()?.to_string()))
            } else {
                Some(None)
            }
        };
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
            product: text("product")?,
            endpoint: text("endpoint")?,
            ohttp,
            schema: o.get("schema").filter(|s| s.is_object())?.clone(),
        })
    }
}

/// The consent in force for `scope`.
pub fn effective(receipt: Option<&Receipt>, scope: &Scope) -> ConsentState {
    match receipt {
        None => ConsentState::Undecided,
        Some(r) if !r.granted => ConsentState::Denied,
        Some(r) if r.covers(scope) => ConsentState::Granted,
        Some(_) => ConsentState::Outdated,
    }
}

/// The receipt after the user answers `granted`. Repeating the answer in force
/// keeps the original receipt (so a second "yes" does not restart anything).
pub fn answer(previous: Option<&Receipt>, granted: bool, now: i64, scope: &Scope) -> Receipt {
    match previous {
        Some(r) if r.granted == granted && (!granted || r.covers(scope)) => r.clone(),
        _ => Receipt::new(granted, now, scope),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsentState::*;

    fn schema(fields: Value) -> Schema {
        Schema::from_json(&json!({"version": 1, "fields": fields})).unwrap()
    }

    fn scope<'a>(schema: &'a Schema, product_version: &'a str) -> Scope<'a> {
        Scope { schema, product: "Mock Archiver", product_version, endpoint: "https://t.example/v1/report", ohttp: None }
    }

    #[test]
    fn transitions() {
        let v1 = schema(json!([{"name": "a", "type": "bool", "description": {"en": "a"}}]));
        let v2 = schema(json!([{"name": "a", "type": "count", "rounding": "1-2-5", "description": {"en": "a"}}]));
        let (s1, s2) = (scope(&v1, "1.0"), scope(&v2, "2.0"));
        assert_eq!(effective(None, &s1), Undecided);
        assert_eq!(effective(None, &s2), Undecided, "undecided stays undecided across schemas");

        let yes = answer(None, true, 10, &s1);
        assert_eq!(effective(Some(&yes), &s1), Granted);
        assert_eq!(effective(Some(&yes), &s2), Outdated, "a yes covers only its schema");

        let again = answer(Some(&yes), true, 20, &scope(&v1, "1.1"));
        assert_eq!(again, yes, "repeating yes keeps the original receipt");

        let yes2 = answer(Some(&yes), true, 30, &s2);
        assert_eq!((effective(Some(&yes2), &s2), yes2.at, yes2.schema_digest.as_str()), (Granted, 30, v2.digest.as_str()));

        let no = answer(Some(&yes2), false, 40, &s2);
        assert_eq!(effective(Some(&no), &s2), Denied);
        assert_eq!(effective(Some(&no), &s1), Denied, "a no stays a no across schema changes");

        let yes3 = answer(Some(&no), true, 50, &s2);
        assert_eq!(effective(Some(&yes3), &s2), Granted, "the user may change their mind");
    }

    #[test]
    fn a_yes_covers_product_and_endpoint_too() {
        let v1 = schema(json!([{"name": "a", "type": "bool", "description": {"en": "a"}}]));
        let s = scope(&v1, "1.0");
        let yes = answer(None, true, 10, &s);
        assert_eq!(effective(Some(&yes), &Scope { product_version: "9.9", ..s }), Granted, "the version is not bound");
        assert_eq!(effective(Some(&yes), &Scope { product: "Other", ..s }), Outdated);
        assert_eq!(effective(Some(&yes), &Scope { endpoint: "https://t.example/v2", ..s }), Outdated);
        let renewed = answer(Some(&yes), true, 20, &Scope { endpoint: "https://t.example/v2", ..s });
        assert_eq!((renewed.at, renewed.endpoint.as_deref()), (20, Some("https://t.example/v2")), "a yes for a new endpoint is a new receipt");
    }

    #[test]
    fn a_yes_covers_the_relay_too() {
        let v1 = schema(json!([{"name": "a", "type": "bool", "description": {"en": "a"}}]));
        let direct = scope(&v1, "1.0");
        let relayed = Scope { ohttp: Some("sha256:aa"), ..direct };
        let yes = answer(None, true, 10, &direct);
        assert_eq!(effective(Some(&yes), &relayed), Outdated, "a yes for a direct send does not cover a relay");
        let yes_r = answer(Some(&yes), true, 20, &relayed);
        assert_eq!((effective(Some(&yes_r), &relayed), yes_r.at), (Granted, 20));
        assert_eq!(effective(Some(&yes_r), &Scope { ohttp: Some("sha256:bb"), ..direct }), Outdated, "another relay or key");
        assert_eq!(effective(Some(&yes_r), &direct), Outdated, "bound to a relay, then sent directly");
        assert_eq!(Receipt::from_json(&yes_r.to_json()), Some(yes_r.clone()));
        // A receipt from before relays were bound (8 keys) covers a direct send only.
        let old = yes.to_json();
        assert_eq!(old.as_object().unwrap().len(), 8, "a direct receipt keeps its old form");
        let r = Receipt::from_json(&old).unwrap();
        assert_eq!((effective(Some(&r), &direct), effective(Some(&r), &relayed)), (Granted, Outdated));
        let mut bad = yes_r.to_json();
        bad["ohttp"] = json!("md5:x");
        assert_eq!(Receipt::from_json(&bad), None);
    }

    #[test]
    fn receipt_round_trips_and_rejects_tampering() {
        let v1 = schema(json!([{"name": "a", "type": "bool", "description": {"en": "a"}}]));
        let r = answer(None, true, 10, &scope(&v1, "1.0"));
        assert_eq!(Receipt::from_json(&r.to_json()), Some(r.clone()));
        for (k, bad) in [("decision", json!("yes")), ("at", json!("10")), ("schema_digest", json!("md5:x")), ("schema", json!(null)), ("product", json!(null)), ("endpoint", json!(3))] {
            let mut v = r.to_json();
            v[k] = bad;
            assert_eq!(Receipt::from_json(&v), None, "{k}");
        }
    }

    #[test]
    fn a_receipt_from_before_the_binding_reads_as_outdated() {
        let v1 = schema(json!([{"name": "a", "type": "bool", "description": {"en": "a"}}]));
        let s = scope(&v1, "1.0");
        let mut old = answer(None, true, 10, &s).to_json();
        let o = old.as_object_mut().unwrap();
        o.remove("product");
        o.remove("endpoint");
        let r = Receipt::from_json(&old).expect("an old receipt is still read");
        assert_eq!((r.product.as_deref(), r.endpoint.as_deref()), (None, None));
        assert_eq!(effective(Some(&r), &s), Outdated, "never granted for what the user did not see");
        old["decision"] = json!("denied");
        assert_eq!(effective(Some(&Receipt::from_json(&old).unwrap()), &s), Denied, "an old no stays a no");
    }
}
