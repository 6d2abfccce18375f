//! The receiving side's check: is this body a report the library could have
//! produced from a given schema? A collector uses it so that client and
//! server share one definition of a report; nothing here is used on the
//! sending path.
//!
//! Two steps, because a collector must route a report by its digest before it
//! knows the schema: [`Envelope::parse`] checks the JSON itself (strict, no
//! duplicate keys, the format number, a well-formed digest) and
//! [`Envelope::check`] checks it against the schema with that digest.
//! Every rejection is a [`Reject`] with a short stable name.

use crate::config::{is_valid_product, is_valid_product_version};
use crate::error::parse_json;
use crate::report::Builtins;
use crate::schema::{bucket_label, is_125, CountEncoding, Kind, Schema, REPORT_FORMAT, SERIES_125};
use serde_json::{Map, Value};

/// Operating system families the library reports: `platform::os_family`
/// gives windows, linux, macos, else Rust's `std::env::consts::OS` name.
pub const OS_FAMILIES: &[&str] = &[
    "windows", "linux", "macos", "android", "ios", "freebsd", "dragonfly", "netbsd", "openbsd", "solaris", "illumos",
    "haiku", "aix", "hurd", "redox", "fuchsia", "emscripten", "wasi", "vxworks", "nto", "horizon", "espidf", "l4re",
    "uefi", "cygwin",
];

/// Values of Rust's `std::env::consts::ARCH`, which the library reports as is.
pub const ARCHES: &[&str] = &[
    "x86", "x86_64", "arm", "aarch64", "arm64ec", "loongarch32", "loongarch64", "m68k", "csky", "mips", "mips32r6",
    "mips64", "mips64r6", "powerpc", "powerpc64", "riscv32", "riscv64", "s390x", "sparc", "sparc64", "hexagon", "bpf",
    "avr", "msp430", "nvptx64", "wasm32", "wasm64", "xtensa",
];

/// Top-level keys of every report, sorted (the library emits them sorted).
const REPORT_KEYS: &[&str] = &[
    "arch",
    "fields",
    "format",
    "library_version",
    "os_family",
    "os_version",
    "product",
    "product_version",
    "report_id",
    "schema_digest",
    "schema_version",
];

/// Why a body is not a report. `name()` is stable: collectors count by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    // Not a report at all (a collector answers 400).
    NotUtf8,
    MalformedJson,
    DuplicateKey,
    NotCanonical,
    NotAnObject,
    WrongFormat,
    BadDigest,
    // A report, but not one the library could have produced from this schema (422).
    DigestMismatch,
    MissingKey,
    UnknownKey,
    ReportId,
    SchemaVersion,
    OsFamily,
    OsVersion,
    Arch,
    Product,
    ProductVersion,
    LibraryVersion,
    FieldsNotObject,
    UnknownField,
    WrongType,
    BucketLabel,
    RoundedValue,
    ChoiceValue,
    ChoicesOrder,
}

impl Reject {
    pub const ALL: &'static [Reject] = &[
        Reject::NotUtf8,
        Reject::MalformedJson,
        Reject::DuplicateKey,
        Reject::NotCanonical,
        Reject::NotAnObject,
        Reject::WrongFormat,
        Reject::BadDigest,
        Reject::DigestMismatch,
        Reject::MissingKey,
        Reject::UnknownKey,
        Reject::ReportId,
        Reject::SchemaVersion,
        Reject::OsFamily,
        Reject::OsVersion,
        Reject::Arch,
        Reject::Product,
        Reject::ProductVersion,
        Reject::LibraryVersion,
        Reject::FieldsNotObject,
        Reject::UnknownField,
        Reject::WrongType,
        Reject::BucketLabel,
        Reject::RoundedValue,
        Reject::ChoiceValue,
        Reject::ChoicesOrder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reject::NotUtf8 => "not_utf8",
            Reject::MalformedJson => "malformed_json",
            Reject::DuplicateKey => "duplicate_key",
            Reject::NotCanonical => "not_canonical",
            Reject::NotAnObject => "not_an_object",
            Reject::WrongFormat => "wrong_format",
            Reject::BadDigest => "bad_digest",
            Reject::DigestMismatch => "digest_mismatch",
            Reject::MissingKey => "missing_key",
            Reject::UnknownKey => "unknown_key",
            Reject::ReportId => "report_id",
            Reject::SchemaVersion => "schema_version",
            Reject::OsFamily => "os_family",
            Reject::OsVersion => "os_version",
            Reject::Arch => "arch",
            Reject::Product => "product",
            Reject::ProductVersion => "product_version",
            Reject::LibraryVersion => "library_version",
            Reject::FieldsNotObject => "fields_not_object",
            Reject::UnknownField => "unknown_field",
            Reject::WrongType => "wrong_type",
            Reject::BucketLabel => "bucket_label",
            Reject::RoundedValue => "rounded_value",
            Reject::ChoiceValue => "choice_value",
            Reject::ChoicesOrder => "choices_order",
        }
    }

    /// True when the body is not a report of this format at all (malformed
    /// JSON, duplicate keys, another format number, no usable digest), as
    /// opposed to a report whose content the schema does not allow.
    pub fn is_malformed(self) -> bool {
        matches!(
            self,
            Reject::NotUtf8
                | Reject::MalformedJson
                | Reject::DuplicateKey
                | Reject::NotCanonical
                | Reject::NotAnObject
                | Reject::WrongFormat
                | Reject::BadDigest
        )
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One field's value as the report carried it, checked against its field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportValue {
    Bool(bool),
    /// Index of the bucket in the field's bucket list (see [`bucket_labels`]).
    Bucket(usize),
    /// A value of the 1-2-5 series (0, 1, 2, 5, 10, ...).
    Rounded(u64),
    /// Index into the declared values.
    Choice(usize),
    /// Indices into the declared values, ascending (declared order).
    Choices(Vec<usize>),
}

/// A report that passed every check. Nothing else constructs one.
#[derive(Clone, Debug)]
pub struct AcceptedReport {
    pub report_id: String,
    pub schema_digest: String,
    pub schema_version: u32,
    pub builtins: Builtins,
    /// One entry per schema field, in the schema's declared order; `None`
    /// where the report left the field out (the host never set it).
    pub fields: Vec<Option<ReportValue>>,
}

impl AcceptedReport {
    /// Every (field, value) cell as a bare label, the way aggregates count:
    /// the six built-ins first, then each set schema field; each member of
    /// a `choices` field is its own cell. Unset fields yield nothing.
    pub fn cells(&self, schema: &Schema) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            self.builtins.values().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for (field, value) in schema.fields.iter().zip(&self.fields) {
            if let Some(v) = value {
                for label in labels(&field.kind, v) {
                    out.push((field.name.clone(), label));
                }
            }
        }
        out
    }
}

/// The labels one value is counted under (several for `choices`).
pub fn labels(kind: &Kind, v: &ReportValue) -> Vec<String> {
    match (kind, v) {
        (_, ReportValue::Bool(b)) => vec![b.to_string()],
        (Kind::Count { encoding: CountEncoding::Buckets(b) }, ReportValue::Bucket(i)) => vec![bucket_labels(b)[*i].clone()],
        (_, ReportValue::Rounded(n)) => vec![n.to_string()],
        (Kind::Choice { values }, ReportValue::Choice(i)) => vec![values[*i].clone()],
        (Kind::Choices { values }, ReportValue::Choices(set)) => set.iter().map(|&i| values[i].clone()).collect(),
        // A value is only ever built against its own field's kind.
        _ => vec![],
    }
}

/// Labels of every bucket, lowest first: the label a count below the first
/// bound gets (if that bound is above 0), then one per bound.
pub fn bucket_labels(bounds: &[u64]) -> Vec<String> {
    let mut out = Vec::with_capacity(bounds.len() + 1);
    if bounds[0] > 0 {
        out.push(bucket_label(bounds, 0));
    }
    out.extend(bounds.iter().map(|&b| bucket_label(bounds, b)));
    out
}

/// Position of `n` in the 1-2-5 series (0 -> 0, 1 -> 1, 2 -> 2, 5 -> 3, 10 -> 4, ...).
pub fn series_index(n: u64) -> Option<u32> {
    SERIES_125.binary_search(&n).ok().map(|i| i as u32)
}

/// Inverse of [`series_index`].
pub fn series_value(index: u32) -> Option<u64> {
    SERIES_125.get(index as usize).copied()
}

/// A parsed report whose shape is right but whose content is not yet
/// checked against a schema.
#[derive(Debug)]
pub struct Envelope {
    obj: Map<String, Value>,
    digest: String,
}

fn is_digest(s: &str) -> bool {
    s.len() == 71 && s.starts_with("sha256:") && s[7..].bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_report_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Dot-separated decimal numbers: `min..=max`
/// parts, each 1-`digits` digits.
fn is_dotted(s: &str, min: usize, max: usize, digits: usize) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (min..=max).contains(&parts.len())
        && parts.iter().all(|p| (1..=digits).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `os_version`: "unknown", major.minor (Unix), major.minor.build (Windows).
pub fn is_os_version(s: &str) -> bool {
    s == "unknown" || is_dotted(s, 2, 3, 10)
}

/// `library_version`: the crate's semantic version, optionally with a
/// pre-release such as "-rc.1".
pub fn is_library_version(s: &str) -> bool {
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (s, None),
    };
    is_dotted(core, 3, 3, 9)
        && pre.is_none_or(|p| {
            (1..=32).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.')
        })
}

impl Envelope {
    /// Checks what can be checked without the schema: strict JSON in the
    /// library's own spelling, an object, the format number and a
    /// well-formed `schema_digest`.
    pub fn parse(body: &[u8]) -> Result<Envelope, Reject> {
        let text = std::str::from_utf8(body).map_err(|_| Reject::NotUtf8)?;
        let value = parse_json(text, "the report").map_err(|e| {
            if e.message.contains("duplicate key") {
                Reject::DuplicateKey
            } else {
                Reject::MalformedJson
            }
        })?;
        // The library writes a report with serde_json: compact, keys sorted,
        // strings escaped only where JSON requires. Any other spelling of the
        // same value (white space, another key order, "\u0069map", -0, 1e3)
        // is not something it produces, so it is refused whole rather than
        // normalised: the body is byte for byte what the library would send.
        if serde_json::to_string(&value).ok().as_deref() != Some(text) {
            return Err(Reject::NotCanonical);
        }
        let Value::Object(obj) = value else { return Err(Reject::NotAnObject) };
        if obj.get("format").and_then(Value::as_u64) != Some(u64::from(REPORT_FORMAT))
            || obj.get("format").is_some_and(Value::is_f64)
        {
            return Err(Reject::WrongFormat);
        }
        let digest = obj.get("schema_digest").and_then(Value::as_str).filter(|d| is_digest(d)).ok_or(Reject::BadDigest)?;
        Ok(Envelope { digest: digest.to_string(), obj })
    }

    /// The schema digest the report names (well-formed, not yet known to exist).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Checks what does not need the schema: the keys, the report id, the
    /// schema version and built-ins, and that every field has a name and a
    /// value some schema could allow (a bool, a 1-2-5 count, a token or a
    /// list of tokens). A collector runs it before keeping a report whose
    /// schema is not registered yet, so that it never holds free text.
    /// Whatever [`Envelope::check`] accepts passes it.
    pub fn precheck(&self) -> Result<(), Reject> {
        let obj = &self.obj;
        if obj.keys().any(|k| !REPORT_KEYS.contains(&k.as_str())) {
            return Err(Reject::UnknownKey);
        }
        if REPORT_KEYS.iter().any(|k| !obj.contains_key(*k)) {
            return Err(Reject::MissingKey);
        }
        let string = |key: &str, why: Reject, ok: &dyn Fn(&str) -> bool| -> Result<(), Reject> {
            obj[key].as_str().filter(|s| ok(s)).map(|_| ()).ok_or(why)
        };
        string("report_id", Reject::ReportId, &is_report_id)?;
        let version = &obj["schema_version"];
        if version.is_f64() || !version.as_u64().is_some_and(|v| (1..=u64::from(u32::MAX)).contains(&v)) {
            return Err(Reject::SchemaVersion);
        }
        string("os_family", Reject::OsFamily, &|s| OS_FAMILIES.contains(&s))?;
        string("os_version", Reject::OsVersion, &is_os_version)?;
        string("arch", Reject::Arch, &|s| ARCHES.contains(&s))?;
        string("product", Reject::Product, &is_valid_product)?;
        string("product_version", Reject::ProductVersion, &is_valid_product_version)?;
        string("library_version", Reject::LibraryVersion, &is_library_version)?;
        let Value::Object(given) = &obj["fields"] else { return Err(Reject::FieldsNotObject) };
        for (name, v) in given {
            if !crate::schema::is_name(name) {
                return Err(Reject::UnknownField);
            }
            // Bucket labels ("5-9", "25+") and choice values are tokens.
            let token = |v: &Value| v.as_str().is_some_and(crate::schema::is_token);
            let ok = match v {
                Value::Bool(_) => true,
                Value::Number(_) => v.as_u64().is_some_and(is_125) && !v.is_f64(),
                Value::String(_) => token(v),
                Value::Array(items) => items.len() <= crate::schema::MAX_VALUES && items.iter().all(token),
                _ => return Err(Reject::WrongType),
            };
            if !ok {
                return Err(Reject::ChoiceValue);
            }
        }
        Ok(())
    }

    /// Checks the report against `schema`, which should be the schema with
    /// [`Envelope::digest`].
    pub fn check(self, schema: &Schema) -> Result<AcceptedReport, Reject> {
        let obj = &self.obj;
        if self.digest != schema.digest {
            return Err(Reject::DigestMismatch);
        }
        if obj.keys().any(|k| !REPORT_KEYS.contains(&k.as_str())) {
            return Err(Reject::UnknownKey);
        }
        if REPORT_KEYS.iter().any(|k| !obj.contains_key(*k)) {
            return Err(Reject::MissingKey);
        }
        let string = |key: &str, why: Reject, ok: &dyn Fn(&str) -> bool| -> Result<String, Reject> {
            obj[key].as_str().filter(|s| ok(s)).map(str::to_string).ok_or(why)
        };
        let report_id = string("report_id", Reject::ReportId, &is_report_id)?;
        if obj["schema_version"].as_u64() != Some(u64::from(schema.version)) || obj["schema_version"].is_f64() {
            return Err(Reject::SchemaVersion);
        }
        let builtins = Builtins {
            os_family: string("os_family", Reject::OsFamily, &|s| OS_FAMILIES.contains(&s))?,
            os_version: string("os_version", Reject::OsVersion, &is_os_version)?,
            arch: string("arch", Reject::Arch, &|s| ARCHES.contains(&s))?,
            product: string("product", Reject::Product, &is_valid_product)?,
            // 1 to 4 dot-separated decimal numbers of 1 to 5 digits each.
            product_version: string("product_version", Reject::ProductVersion, &is_valid_product_version)?,
            library_version: string("library_version", Reject::LibraryVersion, &is_library_version)?,
        };
        let Value::Object(given) = &obj["fields"] else { return Err(Reject::FieldsNotObject) };
        let mut fields = vec![None; schema.fields.len()];
        for (name, v) in given {
            let (i, field) = schema.field(name).ok_or(Reject::UnknownField)?;
            fields[i] = Some(check_value(&field.kind, v)?);
        }
        Ok(AcceptedReport { report_id, schema_digest: self.digest, schema_version: schema.version, builtins, fields })
    }
}

fn check_value(kind: &Kind, v: &Value) -> Result<ReportValue, Reject> {
    if let Kind::Count { encoding } = kind {
        return match encoding {
            CountEncoding::Buckets(bounds) => {
                let label = v.as_str().ok_or(Reject::WrongType)?;
                bucket_labels(bounds).iter().position(|l| l == label).map(ReportValue::Bucket).ok_or(Reject::BucketLabel)
            }
            CountEncoding::Round125 => {
                if !v.is_number() {
                    return Err(Reject::WrongType);
                }
                // Negative, fractional or exponent forms are not what the library writes.
                let n = v.as_u64().filter(|_| !v.is_f64()).ok_or(Reject::RoundedValue)?;
                if is_125(n) {
                    Ok(ReportValue::Rounded(n))
                } else {
                    Err(Reject::RoundedValue)
                }
            }
        };
    }
    match kind {
        Kind::Bool => v.as_bool().map(ReportValue::Bool).ok_or(Reject::WrongType),
        Kind::Choice { values } => {
            let s = v.as_str().ok_or(Reject::WrongType)?;
            values.iter().position(|x| x == s).map(ReportValue::Choice).ok_or(Reject::ChoiceValue)
        }
        Kind::Choices { values } => {
            let arr = v.as_array().ok_or(Reject::WrongType)?;
            let mut out: Vec<usize> = Vec::with_capacity(arr.len());
            for item in arr {
                let s = item.as_str().ok_or(Reject::WrongType)?;
                let i = values.iter().position(|x| x == s).ok_or(Reject::ChoiceValue)?;
                // Declared order, each at most once: strictly ascending indices.
                if out.last().is_some_and(|&prev| i <= prev) {
                    return Err(Reject::ChoicesOrder);
                }
                out.push(i);
            }
            Ok(ReportValue::Choices(out))
        }
        Kind::Count { .. } => unreachable!("handled above"),
    }
}

/// Parses and checks in one step, for when the schema is already known.
pub fn validate(schema: &Schema, body: &[u8]) -> Result<AcceptedReport, Reject> {
    Envelope::parse(body)?.check(schema)
}

#[cfg(test)]
#[path = "../tests/support/mutate.rs"]
mod mutate;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::FieldValue;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn schema() -> Schema {
        Schema::from_json(&json!({"version": 3, "fields": [
            {"name": "users", "type": "count", "buckets": [1, 5, 10, 25], "description": {"en": "Users"}},
            {"name": "archived", "type": "count", "rounding": "1-2-5", "description": {"en": "Archived messages"}},
            {"name": "trial", "type": "bool", "description": {"en": "Trial"}},
            {"name": "edition", "type": "choice", "values": ["standard", "enterprise"], "description": {"en": "Edition"}},
            {"name": "profiles", "type": "choices", "values": ["imap", "exchange", "m365", "gmail", "pst"], "description": {"en": "Profiles"}}
        ]}))
        .unwrap()
    }

    fn builtins() -> Builtins {
        Builtins {
            os_family: "linux".into(),
            os_version: "6.1".into(),
            arch: "x86_64".into(),
            product: "Mail Archiver".into(),
            product_version: "4.2.0".into(),
            library_version: crate::VERSION.into(),
        }
    }

    /// A report exactly as the library builds it.
    fn good(schema: &Schema) -> String {
        let values = vec![
            Some(FieldValue::Count(7)),
            Some(FieldValue::Count(2000)),
            Some(FieldValue::Bool(true)),
            None,
            Some(FieldValue::Choices(BTreeSet::from([0, 3]))),
        ];
        let identity = crate::report::ReportIdentity { id: "0123456789abcdef0123456789abcdef".into(), draw_key: [7; 32] };
        crate::report::build(schema, &values, &builtins(), &identity)
    }

    fn edited(f: impl Fn(&mut Value)) -> Vec<u8> {
        let s = schema();
        let mut v: Value = serde_json::from_str(&good(&s)).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn accepts_what_the_library_builds() {
        let s = schema();
        let r = validate(&s, good(&s).as_bytes()).unwrap();
        assert_eq!(r.report_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(r.schema_version, 3);
        assert_eq!(
            r.fields,
            vec![Some(ReportValue::Bucket(2)), Some(ReportValue::Rounded(2000)), Some(ReportValue::Bool(true)), None, Some(ReportValue::Choices(vec![0, 3]))]
        );
        let cells = r.cells(&s);
        assert!(cells.contains(&("users".into(), "5-9".into())));
        assert!(cells.contains(&("profiles".into(), "imap".into())));
        assert!(cells.contains(&("profiles".into(), "gmail".into())));
        assert!(cells.contains(&("os_family".into(), "linux".into())));
        assert_eq!(cells.len(), 6 + 5);
    }

    #[test]
    fn every_rejection_has_its_reason() {
        let s = schema();
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, Reject)> = vec![
            (Box::new(|v| v["format"] = json!(2)), Reject::WrongFormat),
            (Box::new(|v| v["format"] = json!(1.0)), Reject::WrongFormat),
            (Box::new(|v| v["schema_digest"] = json!("sha256:00")), Reject::BadDigest),
            (Box::new(|v| v["schema_digest"] = json!(format!("sha256:{}", "0".repeat(64)))), Reject::DigestMismatch),
            (Box::new(|v| v["extra"] = json!(1)), Reject::UnknownKey),
            (Box::new(|v| drop(v.as_object_mut().unwrap().remove("arch"))), Reject::MissingKey),
            (Box::new(|v| v["report_id"] = json!("0123456789ABCDEF0123456789ABCDEF")), Reject::ReportId),
            (Box::new(|v| v["report_id"] = json!("0123")), Reject::ReportId),
            (Box::new(|v| v["schema_version"] = json!(2)), Reject::SchemaVersion),
            (Box::new(|v| v["os_family"] = json!("beos")), Reject::OsFamily),
            (Box::new(|v| v["os_version"] = json!("6.1.0-28-cloud-amd64")), Reject::OsVersion),
            (Box::new(|v| v["arch"] = json!("x86-64")), Reject::Arch),
            (Box::new(|v| v["product"] = json!("a@b")), Reject::Product),
            (Box::new(|v| v["product_version"] = json!("4.2.0-beta")), Reject::ProductVersion),
            (Box::new(|v| v["product_version"] = json!("1.2.3.4.5")), Reject::ProductVersion),
            (Box::new(|v| v["product_version"] = json!("1234567890")), Reject::ProductVersion),
            (Box::new(|v| v["product_version"] = json!("1.234567")), Reject::ProductVersion),
            (Box::new(|v| v["product_version"] = json!("123456.1")), Reject::ProductVersion),
            (Box::new(|v| v["product_version"] = json!("1.2-beta")), Reject::ProductVersion),
            (Box::new(|v| v["product_version"] = json!("")), Reject::ProductVersion),
            (Box::new(|v| v["library_version"] = json!("0.1")), Reject::LibraryVersion),
            (Box::new(|v| v["fields"] = json!([])), Reject::FieldsNotObject),
            (Box::new(|v| v["fields"]["host"] = json!(true)), Reject::UnknownField),
            (Box::new(|v| v["fields"]["trial"] = json!("yes")), Reject::WrongType),
            (Box::new(|v| v["fields"]["trial"] = json!(null)), Reject::WrongType),
            (Box::new(|v| v["fields"]["users"] = json!(7)), Reject::WrongType),
            (Box::new(|v| v["fields"]["users"] = json!("5-10")), Reject::BucketLabel),
            (Box::new(|v| v["fields"]["users"] = json!("25-99")), Reject::BucketLabel),
            (Box::new(|v| v["fields"]["archived"] = json!(2001)), Reject::RoundedValue),
            (Box::new(|v| v["fields"]["archived"] = json!(-10)), Reject::RoundedValue),
            (Box::new(|v| v["fields"]["archived"] = json!(20.0)), Reject::RoundedValue),
            (Box::new(|v| v["fields"]["archived"] = json!("20")), Reject::WrongType),
            (Box::new(|v| v["fields"]["edition"] = json!("free")), Reject::ChoiceValue),
            (Box::new(|v| v["fields"]["profiles"] = json!(["gmail", "imap"])), Reject::ChoicesOrder),
            (Box::new(|v| v["fields"]["profiles"] = json!(["imap", "imap"])), Reject::ChoicesOrder),
            (Box::new(|v| v["fields"]["profiles"] = json!(["imap", "smtp"])), Reject::ChoiceValue),
            (Box::new(|v| v["fields"]["profiles"] = json!("imap")), Reject::WrongType),
        ];
        for (i, (edit, want)) in cases.iter().enumerate() {
            assert_eq!(validate(&s, &edited(edit)).unwrap_err(), *want, "case {i}");
        }
        // Things the JSON layer decides.
        assert_eq!(validate(&s, b"\xff").unwrap_err(), Reject::NotUtf8);
        assert_eq!(validate(&s, b"{").unwrap_err(), Reject::MalformedJson);
        assert_eq!(validate(&s, b"[1]").unwrap_err(), Reject::NotAnObject);
        assert_eq!(validate(&s, br#"{"format": 1, "format": 1}"#).unwrap_err(), Reject::DuplicateKey);
        let dup = good(&s).replacen("\"trial\":true", "\"trial\":true,\"trial\":false", 1);
        assert_eq!(validate(&s, dup.as_bytes()).unwrap_err(), Reject::DuplicateKey);
    }

    /// The same values spelt otherwise than the library spells them are
    /// refused: a report is what the library could have sent, byte for byte.
    #[test]
    fn refuses_other_spellings_of_a_report() {
        let s = schema();
        let good = good(&s);
        assert!(validate(&s, good.as_bytes()).is_ok());
        let reordered = {
            // "arch" moved from first to last key.
            let (first, rest) = good[1..good.len() - 1].split_once(",\"fields\"").unwrap();
            format!("{{\"fields\"{rest},{first}}}")
        };
        let spellings = [
            good.replace("\"imap\"", "\"\\u0069map\""),
            good.replace("\"linux\"", "\"\\u006cinux\""),
            good.replace("\"report_id\"", "\"\\u0072eport_id\""),
            good.replace("\"Mail Archiver\"", "\"Mail\\u0020Archiver\""),
            good.replace(",", ", "),
            good.replace(":", " : "),
            format!(" {good}"),
            format!("{good}\n"),
            reordered,
            good.replace("\"format\":1", "\"format\":1e0"),
        ];
        for body in &spellings {
            assert_eq!(validate(&s, body.as_bytes()).unwrap_err(), Reject::NotCanonical, "{body}");
            assert!(Reject::NotCanonical.is_malformed());
        }
        // serde_json's own spelling of a float: refused for its type.
        assert_eq!(validate(&s, good.replace("\"format\":1", "\"format\":1.0").as_bytes()).unwrap_err(), Reject::WrongFormat);
        let v3 = good.replace("\"schema_version\":3", "\"schema_version\":3.0");
        assert_eq!(validate(&s, v3.as_bytes()).unwrap_err(), Reject::SchemaVersion);
        // Numbers in a rounded count the library never writes.
        let rounded = |n: &str| {
            let mut v: Value = serde_json::from_str(&good).unwrap();
            v["fields"]["archived"] = json!(20);
            serde_json::to_string(&v).unwrap().replace("\"archived\":20", &format!("\"archived\":{n}"))
        };
        assert!(validate(&s, rounded("20").as_bytes()).is_ok());
        for n in ["-0", "0.0", "2e1", "20.0", "2E1", "200e-1", "10000000000000000000.0", "100000000000000000000"] {
            assert!(validate(&s, rounded(n).as_bytes()).is_err(), "{n}");
        }
        assert_eq!(validate(&s, rounded("-0").as_bytes()).unwrap_err(), Reject::NotCanonical);
        assert_eq!(validate(&s, rounded("2e1").as_bytes()).unwrap_err(), Reject::NotCanonical);
    }

    /// What no schema could accept is refused before the schema is known;
    /// what the library builds passes.
    #[test]
    fn precheck_needs_no_schema() {
        let s = schema();
        assert_eq!(Envelope::parse(good(&s).as_bytes()).unwrap().precheck(), Ok(()));
        let pre = |f: &dyn Fn(&mut Value)| Envelope::parse(&edited(f)).unwrap().precheck();
        assert_eq!(pre(&|v| v["client_ip"] = json!("203.0.113.7")), Err(Reject::UnknownKey));
        assert_eq!(pre(&|v| drop(v.as_object_mut().unwrap().remove("arch"))), Err(Reject::MissingKey));
        assert_eq!(pre(&|v| v["report_id"] = json!("x")), Err(Reject::ReportId));
        assert_eq!(pre(&|v| v["schema_version"] = json!(0)), Err(Reject::SchemaVersion));
        assert_eq!(pre(&|v| v["os_version"] = json!("6.1 (host mail.example.com)")), Err(Reject::OsVersion));
        assert_eq!(pre(&|v| v["product"] = json!("a@b")), Err(Reject::Product));
        assert_eq!(pre(&|v| v["product_version"] = json!("1.234567")), Err(Reject::ProductVersion));
        assert_eq!(pre(&|v| v["fields"]["Host Name"] = json!(true)), Err(Reject::UnknownField));
        assert_eq!(pre(&|v| v["fields"]["note"] = json!("user alice@example.com")), Err(Reject::ChoiceValue));
        assert_eq!(pre(&|v| v["fields"]["note"] = json!(["ok", "a b"])), Err(Reject::ChoiceValue));
        assert_eq!(pre(&|v| v["fields"]["n"] = json!(1234)), Err(Reject::ChoiceValue));
        assert_eq!(pre(&|v| v["fields"]["n"] = json!({"a": 1})), Err(Reject::WrongType));
        assert_eq!(pre(&|v| v["fields"]["n"] = json!(null)), Err(Reject::WrongType));
        // A field the schema does not have but some schema could: passes.
        assert_eq!(pre(&|v| v["fields"]["other"] = json!("25+")), Ok(()));
    }

    #[test]
    fn accepts_every_value_the_library_can_send() {
        let s = schema();
        for (edit, ok) in [
            (json!({"users": "0"}), true),
            (json!({"users": "25+"}), true),
            (json!({"users": "10-24"}), true),
            (json!({"archived": 0}), true),
            (json!({"archived": 10000000000000000000u64}), true),
            (json!({"archived": 3}), false),
            (json!({"profiles": []}), true),
            (json!({"profiles": ["imap", "exchange", "m365", "gmail", "pst"]}), true),
            (json!({}), true),
        ] {
            let body = edited(|v| v["fields"] = edit.clone());
            assert_eq!(validate(&s, &body).is_ok(), ok, "{edit}");
        }
        for pv in ["1", "4.2", "2026.11.29.1", "12345", "99999.0.1", "99999.99999.99999.99999"] {
            assert!(validate(&s, &edited(|v| v["product_version"] = json!(pv))).is_ok(), "{pv}");
        }
        for ov in ["unknown", "10.0.22631", "6.1"] {
            assert!(validate(&s, &edited(|v| v["os_version"] = json!(ov))).is_ok(), "{ov}");
        }
        assert_eq!(Envelope::parse(good(&s).as_bytes()).unwrap().digest(), s.digest);
    }

    #[test]
    fn series_helpers_agree() {
        let series: Vec<u64> = (0..20).map(|i| series_value(i).unwrap()).collect();
        assert_eq!(&series[..8], &[0, 1, 2, 5, 10, 20, 50, 100]);
        for (i, n) in series.iter().enumerate() {
            assert_eq!(series_index(*n), Some(i as u32));
        }
        assert!(!is_125(3) && !is_125(25) && !is_125(110) && is_125(10_000_000_000_000_000_000));
        assert_eq!(series_value(100), None);
        assert_eq!(bucket_labels(&[0, 1, 2]), ["0", "1", "2+"]);
        assert_eq!(bucket_labels(&[3]), ["0-2", "3+"]);
    }

    /// Whatever the library builds from any values of the schema (counts of
    /// the rounded field taken from the series) is accepted, and decodes to
    /// exactly those values.
    #[test]
    fn accepts_every_report_the_library_builds() {
        let s = schema();
        let mut seed: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let users = [0, 1, 4, 5, 9, 10, 24, 25, u64::MAX][(next() % 9) as usize];
            // Any count: the library rounds it with the report's draw.
            let rounded = [next(), next() % 100_000, series_value((next() % 59) as u32).unwrap()][(next() % 3) as usize];
            let values = vec![
                (next() % 4 != 0).then_some(FieldValue::Count(users)),
                (next() % 4 != 0).then_some(FieldValue::Count(rounded)),
                (next() % 4 != 0).then(|| FieldValue::Bool(next() % 2 == 0)),
                (next() % 4 != 0).then(|| FieldValue::Choice((next() % 2) as usize)),
                (next() % 4 != 0).then(|| FieldValue::Choices((0..5).filter(|_| next() % 2 == 0).collect())),
            ];
            let mut draw_key = [0u8; 32];
            draw_key[..8].copy_from_slice(&next().to_le_bytes());
            let identity = crate::report::ReportIdentity { id: format!("{:016x}{:016x}", next(), next()), draw_key };
            let body = crate::report::build(&s, &values, &builtins(), &identity);
            let r = validate(&s, body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert_eq!(Envelope::parse(body.as_bytes()).unwrap().precheck(), Ok(()), "{body}");
            for (i, v) in values.iter().enumerate() {
                let encoded = r.fields[i].as_ref().map(|got| match got {
                    ReportValue::Bool(b) => json!(b),
                    ReportValue::Bucket(b) => json!(bucket_labels(&[1, 5, 10, 25])[*b]),
                    ReportValue::Rounded(n) => json!(n),
                    ReportValue::Choice(c) => json!(["standard", "enterprise"][*c]),
                    ReportValue::Choices(set) => json!(set.iter().map(|&c| ["imap", "exchange", "m365", "gmail", "pst"][c]).collect::<Vec<_>>()),
                });
                assert_eq!(encoded, v.as_ref().map(|v| crate::report::encode(&s, i, v, &identity)), "field {i} of {body}");
            }
        }
    }

    /// Seeded mutation fuzz: byte flips, truncations and splices of a valid
    /// report never panic, and whatever is accepted re-encodes to a body the
    /// validator accepts again with the same values.
    #[test]
    fn mutation_fuzz_never_panics() {
        let s = schema();
        let base = good(&s).into_bytes();
        let mut mutator = mutate::Mutator::new(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let b = mutator.mutate(&base, 4, b"{}[]\",:0123456789-.eE truefalsnl\\abcdefxyz");
            if let Ok(r) = validate(&s, &b) {
                accepted += 1;
                assert_eq!(Envelope::parse(&b).unwrap().precheck(), Ok(()));
                assert_eq!(r.schema_digest, s.digest);
            }
        }
        assert!(accepted > 0, "some mutations (e.g. in the report id) stay valid");
    }
}
