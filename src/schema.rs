//! The data schema: which fields a report may carry and what values each may
//! take. There is deliberately no free-text type: every value is a boolean, a
//! number, or one of a list of short tokens the vendor declared up front, so a
//! user name, password, host name, path or e-mail address has no way in.

use crate::error::{Code, Error, Result};
use serde_json::{json, Map, Value};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const MAX_FIELDS: usize = 200;
pub const MAX_BUCKETS: usize = 64;
pub const MAX_VALUES: usize = 64;
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_DESCRIPTION_LEN: usize = 1000;
/// Version of the report's JSON layout; part of the digest.
pub const REPORT_FORMAT: u32 = 1;

/// Fields the library fills itself; part of every report and of the digest.
pub const BUILTIN_FIELDS: &[(&str, &str, &str)] = &[
    ("os_family", "Operating system family (windows, linux, macos).", "Betriebssystemfamilie (windows, linux, macos)."),
    ("os_version", "Coarse operating system version (major.minor, plus the build number on Windows).", "Grobe Betriebssystemversion (Haupt- und Nebenversion, unter Windows mit Build-Nummer)."),
    ("arch", "Processor architecture (for example x86_64).", "Prozessorarchitektur (zum Beispiel x86_64)."),
    ("product", "Name of the product that sends the report.", "Name des Produkts, das den Bericht sendet."),
    ("product_version", "Version of that product.", "Version dieses Produkts."),
    ("library_version", "Version of the telemetry library.", "Version der Telemetrie-Bibliothek."),
];

/// How a count leaves the machine. There is no exact encoding: an exact,
/// slowly moving number links the weekly reports of one installation, and 64
/// free bits per field could carry anything a host packs into them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountEncoding {
    /// Ascending lower bounds; the report carries the bucket's label.
    Buckets(Vec<u64>),
    /// `"rounding": "1-2-5"`: unbiased random rounding to a neighbour in
    /// [`SERIES_125`]; the report carries that integer.
    Round125,
}

/// The value of the schema key `rounding` for [`CountEncoding::Round125`].
pub const ROUNDING_125: &str = "1-2-5";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Count { encoding: CountEncoding },
    Choice { values: Vec<String> },
    Choices { values: Vec<String> },
}

/// The 1-2-5 series within 64 bits: 0, then 1, 2, 5 times each power of ten
/// up to 5·10^18, then 10^19 (the next member, 2·10^19, is above 2^64 − 1).
pub const SERIES_125: [u64; 59] = series_125();

const fn series_125() -> [u64; 59] {
    let mut s = [0u64; 59];
    let (mut i, mut p) = (1, 1u64);
    while i < 58 {
        s[i] = p;
        s[i + 1] = 2 * p;
        s[i + 2] = 5 * p;
        i += 3;
        p *= 10;
    }
    s[58] = p;
    s
}

/// Whether `v` is a member of the 1-2-5 series, i.e. a value a rounded count
/// may carry in a report (for collectors that validate reports).
pub fn is_125(v: u64) -> bool {
    SERIES_125.binary_search(&v).is_ok()
}

/// The series members around `v`: (a, b) with a <= v <= b, a == b when `v`
/// is a member. Above 10^19, the largest member that fits in 64 bits, both
/// are 10^19 (see [`round_125`]).
pub fn neighbours_125(v: u64) -> (u64, u64) {
    let top = SERIES_125[SERIES_125.len() - 1];
    if v >= top {
        return (top, top);
    }
    let i = SERIES_125.partition_point(|&x| x <= v); // >= 1: SERIES_125[0] == 0
    let a = SERIES_125[i - 1];
    if a == v {
        (v, v)
    } else {
        (a, SERIES_125[i])
    }
}

/// Unbiased random rounding: between neighbours a < v < b, `v` becomes b with
/// probability exactly (v − a)/(b − a), else a, so the expectation is v.
/// `below(n)` must return a uniform draw from 0..n. One exception, stated in
/// the README: values above 10^19 become 10^19 (2·10^19 is no 64-bit
/// integer); there the expectation is low by less than 46 %.
pub fn round_125(v: u64, below: &mut dyn FnMut(u64) -> u64) -> u64 {
    let (a, b) = neighbours_125(v);
    if a == b {
        return a;
    }
    if below(b - a) < v - a {
        b
    } else {
        a
    }
}

impl Kind {
    /// Identifying bits: log2(1 + the number of distinct values the field can
    /// take in a report), the 1 being "not set".
    pub fn bits(&self) -> f64 {
        let outcomes = match self {
            Kind::Bool => 2.0,
            Kind::Count { encoding: CountEncoding::Buckets(b) } => b.len() as f64 + 1.0,
            Kind::Count { encoding: CountEncoding::Round125 } => SERIES_125.len() as f64,
            Kind::Choice { values } => values.len() as f64,
            Kind::Choices { values } => 2f64.powi(values.len() as i32),
        };
        (1.0 + outcomes).log2()
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Count { .. } => "count",
            Kind::Choice { .. } => "choice",
            Kind::Choices { .. } => "choices",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub kind: Kind,
    /// Language tag -> text; always has "en".
    pub description: BTreeMap<String, String>,
}

/// A value as the host set it, already checked against its field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    Bool(bool),
    Count(u64),
    Choice(usize),
    /// Indices into the declared values, kept sorted so output is declared order.
    Choices(BTreeSet<usize>),
}

#[derive(Clone, Debug)]
pub struct Schema {
    pub version: u32,
    pub fields: Vec<Field>,
    index: HashMap<String, usize>,
    /// What decides what is sent, without descriptions; stored in the consent
    /// receipt so a later schema can be compared field by field.
    pub canonical: Value,
    /// "sha256:" + hex of the canonical form.
    pub digest: String,
}

pub(crate) fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// A choice value is a short token: letters, digits and `_ . + -`. No spaces,
/// no `@`, no `/` or `\`, so it cannot spell an address, a path or a sentence.
pub fn is_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-'))
}

/// BCP-47-like tag: "en", "de", "pt-BR", "zh-Hant". Case does not matter
/// (BCP 47 tags are case-insensitive): "DE" and "de-at" are tags too.
pub fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let first = parts.next().unwrap_or("");
    (2..=3).contains(&first.len())
        && first.bytes().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_alphanumeric()))
        && s.len() <= 35
}

fn only_keys(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Error::config(format!(
            "{at}: unknown key \"{}\" (allowed: {})",
            truncate(k, 64),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn token_list(v: &Value, at: &str) -> Result<Vec<String>> {
    let arr = v.as_array().ok_or_else(|| Error::config(format!("{at}: must be an array of strings")))?;
    if arr.is_empty() || arr.len() > MAX_VALUES {
        return Err(Error::config(format!("{at}: must list 1 to {MAX_VALUES} values")));
    }
    let mut seen = BTreeSet::new();
    arr.iter()
        .enumerate()
        .map(|(i, item)| {
            let s = item.as_str().ok_or_else(|| Error::config(format!("{at}[{i}]: must be a string")))?;
            if !is_token(s) {
                return Err(Error::config(format!(
                    "{at}[{i}]: \"{}\" is not a token (1-{MAX_NAME_LEN} of A-Z a-z 0-9 _ . + -, starting with a letter or digit)",
                    truncate(s, 64)
                )));
            }
            if !seen.insert(s) {
                return Err(Error::config(format!("{at}[{i}]: \"{s}\" is listed twice")));
            }
            Ok(s.to_string())
        })
        .collect()
}

fn buckets(v: &Value, at: &str) -> Result<Vec<u64>> {
    let arr = v.as_array().ok_or_else(|| Error::config(format!("{at}: must be an array of non-negative integers")))?;
    if arr.is_empty() || arr.len() > MAX_BUCKETS {
        return Err(Error::config(format!("{at}: must list 1 to {MAX_BUCKETS} bounds")));
    }
    let mut out: Vec<u64> = Vec::with_capacity(arr.len());
    for (i, item) in arr.iter().enumerate() {
        let n = item
            .as_u64()
            .ok_or_else(|| Error::config(format!("{at}[{i}]: must be a non-negative integer")))?;
        if out.last().is_some_and(|&prev| n <= prev) {
            return Err(Error::config(format!("{at}: bounds must be strictly increasing")));
        }
        out.push(n);
    }
    Ok(out)
}

/// Exactly one of `buckets` and `rounding`: a count is never sent exactly.
fn count_encoding(fo: &Map<String, Value>, at: &str) -> Result<CountEncoding> {
    let options = format!("declare exactly one of \"buckets\": [ascending bounds] or \"rounding\": \"{ROUNDING_125}\"");
    match (fo.get("buckets"), fo.get("rounding")) {
        (Some(b), None) => Ok(CountEncoding::Buckets(buckets(b, &format!("{at}.buckets"))?)),
        (None, Some(r)) if r.as_str() == Some(ROUNDING_125) => Ok(CountEncoding::Round125),
        (None, Some(_)) => Err(Error::config(format!("{at}.rounding: must be \"{ROUNDING_125}\" (the only rounding there is); {options}"))),
        (Some(_), Some(_)) => Err(Error::config(format!("{at}: a count has either \"buckets\" or \"rounding\", not both; {options}"))),
        (None, None) => Err(Error::config(format!("{at}: a count is never sent exactly; {options}"))),
    }
}

fn description(v: &Value, at: &str) -> Result<BTreeMap<String, String>> {
    let obj = v
        .as_object()
        .ok_or_else(|| Error::config(format!("{at}: must be an object of language -> text")))?;
    let mut out = BTreeMap::new();
    for (lang, text) in obj {
        if !is_language_tag(lang) {
            return Err(Error::config(format!("{at}: \"{}\" is not a language tag such as \"en\" or \"pt-BR\"", truncate(lang, 40))));
        }
        if out.keys().any(|k: &String| k.eq_ignore_ascii_case(lang)) {
            return Err(Error::config(format!("{at}: \"{lang}\" is listed twice (tags are case-insensitive)")));
        }
        let text = text.as_str().ok_or_else(|| Error::config(format!("{at}.{lang}: must be a string")))?;
        if text.chars().count() > MAX_DESCRIPTION_LEN {
            return Err(Error::config(format!("{at}.{lang}: longer than {MAX_DESCRIPTION_LEN} characters")));
        }
        out.insert(lang.clone(), text.to_string());
    }
    if localized(&out, "en").is_none() {
        return Err(Error::config(format!("{at}: must have an \"en\" text (the fallback)")));
    }
    Ok(out)
}

/// The text for `tag`, matching case-insensitively.
pub fn localized<'a>(texts: &'a BTreeMap<String, String>, tag: &str) -> Option<&'a String> {
    texts.iter().find(|(k, _)| k.eq_ignore_ascii_case(tag)).map(|(_, v)| v)
}

/// The text for `language`, else its primary subtag ("de" for "de-AT"), else English.
pub fn pick_description(texts: &BTreeMap<String, String>, language: &str) -> String {
    let base = language.split('-').next().unwrap_or("");
    localized(texts, language)
        .or_else(|| localized(texts, base))
        .or_else(|| localized(texts, "en"))
        .cloned()
        .unwrap_or_default()
}

impl Schema {
    /// Validates a schema object from the configuration.
    pub fn from_json(v: &Value) -> Result<Schema> {
        let obj = v.as_object().ok_or_else(|| Error::config("schema: must be an object"))?;
        only_keys(obj, &["version", "fields"], "schema")?;
        let version = obj
            .get("version")
            .ok_or_else(|| Error::config("schema.version: missing"))?
            .as_u64()
            .filter(|n| (1..=u32::MAX as u64).contains(n))
            .ok_or_else(|| Error::config("schema.version: must be an integer from 1 to 4294967295"))?
            as u32;
        let list = obj
            .get("fields")
            .ok_or_else(|| Error::config("schema.fields: missing"))?
            .as_array()
            .ok_or_else(|| Error::config("schema.fields: must be an array"))?;
        if list.len() > MAX_FIELDS {
            return Err(Error::config(format!("schema.fields: more than {MAX_FIELDS} fields")));
        }
        let mut fields = Vec::with_capacity(list.len());
        let mut index = HashMap::new();
        for (i, f) in list.iter().enumerate() {
            let at = format!("schema.fields[{i}]");
            let fo = f.as_object().ok_or_else(|| Error::config(format!("{at}: must be an object")))?;
            only_keys(fo, &["name", "type", "buckets", "rounding", "values", "description"], &at)?;
            let name = fo
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::config(format!("{at}.name: missing or not a string")))?;
            if !is_name(name) {
                return Err(Error::config(format!(
                    "{at}.name: \"{}\" must be 1-{MAX_NAME_LEN} of a-z 0-9 _, starting with a letter",
                    truncate(name, 64)
                )));
            }
            let at = format!("schema.fields[{i}] (\"{name}\")");
            let ty = fo
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::config(format!("{at}.type: missing or not a string")))?;
            let allowed_extra: &[&str] = match ty {
                "count" => &["buckets", "rounding"],
                "choice" | "choices" => &["values"],
                "bool" => &[],
                other => {
                    return Err(Error::config(format!(
                        "{at}.type: \"{}\" is not one of bool, count, choice, choices (there is no free-text type)",
                        truncate(other, 40)
                    )))
                }
            };
            for key in ["buckets", "rounding", "values"] {
                if fo.contains_key(key) && !allowed_extra.contains(&key) {
                    return Err(Error::config(format!("{at}.{key}: not allowed for type {ty}")));
                }
            }
            let kind = match ty {
                "bool" => Kind::Bool,
                "count" => Kind::Count { encoding: count_encoding(fo, &at)? },
                _ => {
                    let values = token_list(
                        fo.get("values").ok_or_else(|| Error::config(format!("{at}.values: missing")))?,
                        &format!("{at}.values"),
                    )?;
                    if ty == "choice" { Kind::Choice { values } } else { Kind::Choices { values } }
                }
            };
            let description = description(
                fo.get("description").ok_or_else(|| Error::config(format!("{at}.description: missing")))?,
                &format!("{at}.description"),
            )?;
            if index.insert(name.to_string(), fields.len()).is_some() {
                return Err(Error::config(format!("{at}: the name \"{name}\" is used twice")));
            }
            fields.push(Field { name: name.to_string(), kind, description });
        }
        let canonical = canonical_form(version, &fields);
        let digest = digest_of(&canonical);
        Ok(Schema { version, fields, index, canonical, digest })
    }

    /// Sum of the fields' [`Kind::bits`]: a report of this schema is one of
    /// at most 2^total possible reports (built-in fields aside).
    pub fn total_bits(&self) -> f64 {
        self.fields.iter().map(|f| f.kind.bits()).sum()
    }

    /// How the count field `name` is sent; `None` if it is no count field.
    pub fn count_encoding(&self, name: &str) -> Option<&CountEncoding> {
        match self.field(name) {
            Some((_, Field { kind: Kind::Count { encoding }, .. })) => Some(encoding),
            _ => None,
        }
    }

    pub fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.index.get(name).map(|&i| (i, &self.fields[i]))
    }

    /// Checks one JSON value against a field. `null` means "unset".
    pub fn check_json(&self, name: &str, v: &Value) -> Result<(usize, Option<FieldValue>)> {
        let (i, field) = self.lookup(name)?;
        if v.is_null() {
            return Ok((i, None));
        }
        let wrong = |expected: &str| {
            Error::new(Code::WrongType, format!("field \"{name}\": expected {expected}, got {}", json_type(v)))
        };
        let value = match &field.kind {
            Kind::Bool => FieldValue::Bool(v.as_bool().ok_or_else(|| wrong("true or false"))?),
            Kind::Count { .. } => {
                if let Some(n) = v.as_u64() {
                    FieldValue::Count(n)
                } else if v.as_i64().is_some() || v.as_f64().is_some_and(|f| f <= i64::MIN as f64) {
                    return Err(Error::new(Code::ValueNotAllowed, format!("field \"{name}\": a count cannot be negative")));
                } else if v.as_f64().is_some_and(|f| f >= u64::MAX as f64) {
                    // An integer beyond 64 bits reaches us as a float; saying
                    // "fractional" would send the host looking for the wrong bug.
                    return Err(Error::new(Code::ValueNotAllowed, format!("field \"{name}\": a count is at most {}", u64::MAX)));
                } else {
                    return Err(wrong("a non-negative integer"));
                }
            }
            Kind::Choice { .. } => self.check_choice(name, v.as_str().ok_or_else(|| wrong("a string"))?)?.1,
            Kind::Choices { values } => {
                let arr = v.as_array().ok_or_else(|| wrong("an array of strings"))?;
                let mut set = BTreeSet::new();
                for item in arr {
                    let s = item.as_str().ok_or_else(|| wrong("an array of strings"))?;
                    let pos = position(values, s).ok_or_else(|| not_allowed(name, s, values))?;
                    if !set.insert(pos) {
                        return Err(Error::new(Code::ValueNotAllowed, format!("field \"{name}\": \"{s}\" is listed twice")));
                    }
                }
                FieldValue::Choices(set)
            }
        };
        Ok((i, Some(value)))
    }

    pub fn check_bool(&self, name: &str) -> Result<usize> {
        self.expect_kind(name, "bool")
    }

    pub fn check_count(&self, name: &str) -> Result<usize> {
        self.expect_kind(name, "count")
    }

    pub fn check_choice(&self, name: &str, value: &str) -> Result<(usize, FieldValue)> {
        let i = self.expect_kind(name, "choice")?;
        let Kind::Choice { values } = &self.fields[i].kind else { unreachable!() };
        let pos = position(values, value).ok_or_else(|| not_allowed(name, value, values))?;
        Ok((i, FieldValue::Choice(pos)))
    }

    fn lookup(&self, name: &str) -> Result<(usize, &Field)> {
        self.field(name).ok_or_else(|| {
            Error::new(Code::UnknownField, format!("\"{}\" is not a field of schema version {}", truncate(name, 64), self.version))
        })
    }

    fn expect_kind(&self, name: &str, kind: &str) -> Result<usize> {
        let (i, f) = self.lookup(name)?;
        if f.kind.name() != kind {
            return Err(Error::new(
                Code::WrongType,
                format!("field \"{name}\" is of type {}, not {kind}", f.kind.name()),
            ));
        }
        Ok(i)
    }

    /// The value exactly as it appears in a report. `below(n)` is the
    /// report's uniform draw from 0..n for this field and value (used only by
    /// a rounded count): the same report always draws the same.
    pub fn encode(&self, i: usize, v: &FieldValue, below: &mut dyn FnMut(u64) -> u64) -> Value {
        match (&self.fields[i].kind, v) {
            (_, FieldValue::Bool(b)) => Value::Bool(*b),
            (Kind::Count { encoding: CountEncoding::Buckets(b) }, FieldValue::Count(n)) => Value::String(bucket_label(b, *n)),
            (Kind::Count { encoding: CountEncoding::Round125 }, FieldValue::Count(n)) => json!(round_125(*n, below)),
            (Kind::Choice { values }, FieldValue::Choice(p)) => Value::String(values[*p].clone()),
            (Kind::Choices { values }, FieldValue::Choices(set)) => {
                Value::Array(set.iter().map(|&p| Value::String(values[p].clone())).collect())
            }
            _ => Value::Null, // unreachable: values are checked against their field
        }
    }
}

fn position(values: &[String], s: &str) -> Option<usize> {
    values.iter().position(|v| v == s)
}

fn not_allowed(name: &str, value: &str, values: &[String]) -> Error {
    Error::new(
        Code::ValueNotAllowed,
        format!("field \"{name}\": \"{}\" is not one of: {}", truncate(value, 64), values.join(", ")),
    )
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Label of the bucket `n` falls in. Bounds are ascending lower bounds; values
/// below the first bound form their own bucket. E.g. bounds [1,5,10]: 0 -> "0",
/// 3 -> "1-4", 7 -> "5-9", 12 -> "10+".
pub fn bucket_label(bounds: &[u64], n: u64) -> String {
    let range = |lo: u64, hi: u64| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") };
    match bounds.iter().rposition(|&b| b <= n) {
        None => range(0, bounds[0] - 1),
        Some(i) if i + 1 == bounds.len() => format!("{}+", bounds[i]),
        Some(i) => range(bounds[i], bounds[i + 1] - 1),
    }
}

/// Canonical form: everything that decides what is sent, in a fixed order,
/// and nothing that does not (descriptions, the order fields are declared in).
fn canonical_form(version: u32, fields: &[Field]) -> Value {
    let mut sorted: Vec<&Field> = fields.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let fields: Vec<Value> = sorted.iter().map(|f| canonical_field(f)).collect();
    json!({
        "report_format": REPORT_FORMAT,
        "version": version,
        "builtins": BUILTIN_FIELDS.iter().map(|b| b.0).collect::<Vec<_>>(),
        "fields": fields,
    })
}

fn canonical_field(f: &Field) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(f.name));
    m.insert("type".into(), json!(f.kind.name()));
    match &f.kind {
        Kind::Count { encoding: CountEncoding::Buckets(b) } => {
            m.insert("buckets".into(), json!(b));
        }
        Kind::Count { encoding: CountEncoding::Round125 } => {
            m.insert("rounding".into(), json!(ROUNDING_125));
        }
        // Values keep their declared order: it is the order `choices` are sent in.
        Kind::Choice { values } | Kind::Choices { values } => {
            m.insert("values".into(), json!(values));
        }
        _ => {}
    }
    Value::Object(m)
}

fn digest_of(canonical: &Value) -> String {
    // serde_json's Map is ordered by key, so this text is stable.
    let text = serde_json::to_string(canonical).expect("a Value always serializes");
    format!("sha256:{}", hex(&sha2::Sha256::digest(text.as_bytes())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What changed between a consented canonical schema and the current one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub version_changed: bool,
    pub builtins_changed: bool,
}

pub fn diff(old: &Value, new: &Value) -> Changes {
    let fields_of = |v: &Value| -> BTreeMap<String, Value> {
        v.get("fields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| Some((f.get("name")?.as_str()?.to_string(), f.clone())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (o, n) = (fields_of(old), fields_of(new));
    Changes {
        added: n.keys().filter(|k| !o.contains_key(*k)).cloned().collect(),
        removed: o.keys().filter(|k| !n.contains_key(*k)).cloned().collect(),
        changed: n.iter().filter(|(k, v)| o.get(*k).is_some_and(|ov| ov != *v)).map(|(k, _)| k.clone()).collect(),
        version_changed: old.get("version") != new.get("version"),
        builtins_changed: old.get("builtins") != new.get("builtins")
            || old.get("report_format") != new.get("report_format"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(v: Value) -> Result<Schema> {
        Schema::from_json(&v)
    }

    fn sample() -> Value {
        json!({"version": 1, "fields": [
            {"name": "users", "type": "count", "buckets": [1,5,10,25,50,100], "description": {"en": "Users", "de": "Benutzer"}},
            {"name": "trial", "type": "bool", "description": {"en": "Trial"}},
            {"name": "edition", "type": "choice", "values": ["standard", "enterprise"], "description": {"en": "Edition"}},
            {"name": "profiles", "type": "choices", "values": ["imap", "exchange", "m365", "gmail", "pst"], "description": {"en": "Profiles"}}
        ]})
    }

    #[test]
    fn accepts_the_sample_schema() {
        let s = schema(sample()).unwrap();
        assert_eq!(s.fields.len(), 4);
        assert!(s.digest.starts_with("sha256:") && s.digest.len() == 7 + 64);
    }

    #[test]
    fn digest_ignores_descriptions_and_field_order() {
        let a = schema(sample()).unwrap();
        let mut v = sample();
        v["fields"][0]["description"] = json!({"en": "Something else entirely"});
        v["fields"].as_array_mut().unwrap().reverse();
        assert_eq!(a.digest, schema(v).unwrap().digest);
    }

    #[test]
    fn digest_changes_with_anything_that_decides_what_is_sent() {
        let base = schema(sample()).unwrap().digest;
        type Edit = Box<dyn Fn(&mut Value)>;
        let edits: Vec<Edit> = vec![
            Box::new(|v| v["version"] = json!(2)),
            Box::new(|v| v["fields"][0]["name"] = json!("seats")),
            Box::new(|v| v["fields"][0]["buckets"] = json!([1, 5, 10])),
            Box::new(|v| v["fields"][1] = json!({"name": "trial", "type": "count", "rounding": "1-2-5", "description": {"en": "x"}})),
            Box::new(|v| {
                v["fields"][0].as_object_mut().unwrap().remove("buckets");
                v["fields"][0]["rounding"] = json!("1-2-5");
            }),
            Box::new(|v| v["fields"][2]["values"] = json!(["standard", "enterprise", "oem"])),
            Box::new(|v| v["fields"].as_array_mut().unwrap().pop().map(|_| ()).unwrap()),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut v = sample();
            edit(&mut v);
            assert_ne!(schema(v).unwrap().digest, base, "edit {i} kept the digest");
        }
    }

    #[test]
    fn digest_is_stable_across_releases() {
        // If this fails, every installed consent becomes outdated: only change it
        // together with a deliberate change to what a report contains.
        let s = schema(json!({"version": 1, "fields": [{"name": "trial", "type": "bool", "description": {"en": "x"}}]})).unwrap();
        assert_eq!(
            serde_json::to_string(&s.canonical).unwrap(),
            r#"{"builtins":["os_family","os_version","arch","product","product_version","library_version"],"fields":[{"name":"trial","type":"bool"}],"report_format":1,"version":1}"#
        );
        assert_eq!(s.digest, digest_of(&s.canonical));
        assert_eq!(s.digest, "sha256:ad27b14760968843e9efd07f9ea633dfe1bd279f7340c397d66e9de38cbb5ccb");
        // The rounding mode is part of the digest, beside the buckets.
        let s = schema(json!({"version": 1, "fields": [
            {"name": "items", "type": "count", "rounding": "1-2-5", "description": {"en": "x"}},
            {"name": "users", "type": "count", "buckets": [1, 10], "description": {"en": "x"}}]}))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&s.canonical).unwrap(),
            r#"{"builtins":["os_family","os_version","arch","product","product_version","library_version"],"fields":[{"name":"items","rounding":"1-2-5","type":"count"},{"buckets":[1,10],"name":"users","type":"count"}],"report_format":1,"version":1}"#
        );
        assert_eq!(s.digest, "sha256:0eb7baa4ce8c0ecd200084bd4db161435913862146cceac3ca70d3cd599fb98f");
    }

    #[test]
    fn rejects_free_text_and_unknown_keys() {
        let cases = [
            (json!({"version": 1, "fields": [{"name": "host", "type": "string", "description": {"en": "x"}}]}), "no free-text type"),
            (json!({"version": 1, "fields": [{"name": "a", "type": "bool", "description": {"en": "x"}, "extra": 1}]}), "unknown key \"extra\""),
            (json!({"version": 1, "fields": [], "oops": 1}), "unknown key \"oops\""),
            (json!({"version": 0, "fields": []}), "schema.version"),
            (json!({"version": 1, "fields": [{"name": "Bad Name", "type": "bool", "description": {"en": "x"}}]}), "name"),
            (json!({"version": 1, "fields": [{"name": "e", "type": "choice", "values": ["a@b.c"], "description": {"en": "x"}}]}), "not a token"),
            (json!({"version": 1, "fields": [{"name": "e", "type": "choice", "values": ["a", "a"], "description": {"en": "x"}}]}), "listed twice"),
            (json!({"version": 1, "fields": [{"name": "n", "type": "count", "buckets": [5, 5], "description": {"en": "x"}}]}), "strictly increasing"),
            (json!({"version": 1, "fields": [{"name": "n", "type": "count", "description": {"en": "x"}}]}), "\"n\"): a count is never sent exactly; declare exactly one of \"buckets\": [ascending bounds] or \"rounding\": \"1-2-5\""),
            (json!({"version": 1, "fields": [{"name": "n", "type": "count", "buckets": [1], "rounding": "1-2-5", "description": {"en": "x"}}]}), "not both; declare exactly one of \"buckets\""),
            (json!({"version": 1, "fields": [{"name": "n", "type": "count", "rounding": "1-3-10", "description": {"en": "x"}}]}), "rounding: must be \"1-2-5\""),
            (json!({"version": 1, "fields": [{"name": "n", "type": "bool", "rounding": "1-2-5", "description": {"en": "x"}}]}), "not allowed for type bool"),
            (json!({"version": 1, "fields": [{"name": "n", "type": "bool", "buckets": [1], "description": {"en": "x"}}]}), "not allowed for type bool"),
            (json!({"version": 1, "fields": [{"name": "n", "type": "bool", "description": {"de": "x"}}]}), "\"en\""),
            (json!({"version": 1, "fields": [{"name": "n", "type": "bool", "description": {"en": "x"}}, {"name": "n", "type": "bool", "description": {"en": "x"}}]}), "used twice"),
        ];
        for (v, needle) in cases {
            let e = schema(v.clone()).unwrap_err();
            assert_eq!(e.code, Code::Config);
            assert!(e.message.contains(needle), "{v}: {} lacks {needle}", e.message);
        }
    }

    #[test]
    fn bucket_labels() {
        let b = [1, 5, 10, 25, 50, 100];
        let got: Vec<_> = [0, 1, 4, 5, 9, 10, 99, 100, u64::MAX].iter().map(|&n| bucket_label(&b, n)).collect();
        assert_eq!(got, ["0", "1-4", "1-4", "5-9", "5-9", "10-24", "50-99", "100+", "100+"]);
        assert_eq!(bucket_label(&[0, 1, 2], 1), "1");
        assert_eq!(bucket_label(&[3], 0), "0-2");
    }

    #[test]
    fn value_checks_name_the_field() {
        let s = schema(sample()).unwrap();
        let e = s.check_json("users", &json!(-3)).unwrap_err();
        assert_eq!((e.code, e.message.contains("users")), (Code::ValueNotAllowed, true));
        assert_eq!(s.check_json("users", &json!(1.5)).unwrap_err().code, Code::WrongType);
        assert_eq!(s.check_json("users", &json!("5")).unwrap_err().code, Code::WrongType);
        let huge: Value = serde_json::from_str("18446744073709551616").unwrap();
        let e = s.check_json("users", &huge).unwrap_err();
        assert_eq!((e.code, e.message.contains("at most 18446744073709551615")), (Code::ValueNotAllowed, true), "{}", e.message);
        let e = s.check_json("users", &serde_json::from_str("-9223372036854775809").unwrap()).unwrap_err();
        assert_eq!((e.code, e.message.contains("cannot be negative")), (Code::ValueNotAllowed, true), "{}", e.message);
        assert_eq!(s.check_json("nope", &json!(1)).unwrap_err().code, Code::UnknownField);
        assert_eq!(s.check_json("edition", &json!("free")).unwrap_err().code, Code::ValueNotAllowed);
        assert_eq!(s.check_json("profiles", &json!(["pst", "pst"])).unwrap_err().code, Code::ValueNotAllowed);
        assert_eq!(s.check_json("trial", &Value::Null).unwrap(), (1, None));
        let (i, v) = s.check_json("profiles", &json!(["pst", "imap"])).unwrap();
        assert_eq!(s.encode(i, &v.unwrap(), &mut |_| unreachable!("no draw for choices")), json!(["imap", "pst"]));
    }

    #[test]
    fn diff_names_added_removed_changed() {
        let a = schema(sample()).unwrap();
        let mut v = sample();
        v["fields"][0]["buckets"] = json!([1, 10, 100]);
        v["fields"].as_array_mut().unwrap().remove(1);
        v["fields"].as_array_mut().unwrap().push(json!({"name": "pst_files", "type": "count", "rounding": "1-2-5", "description": {"en": "x"}}));
        let b = schema(v).unwrap();
        let d = diff(&a.canonical, &b.canonical);
        assert_eq!(d.added, ["pst_files"]);
        assert_eq!(d.removed, ["trial"]);
        assert_eq!(d.changed, ["users"]);
        assert!(!d.version_changed);
    }

    #[test]
    fn series_125_covers_u64() {
        assert_eq!(&SERIES_125[..8], &[0, 1, 2, 5, 10, 20, 50, 100]);
        assert_eq!(SERIES_125.len(), 59);
        assert_eq!(SERIES_125[57], 5_000_000_000_000_000_000);
        assert_eq!(SERIES_125[58], 10_000_000_000_000_000_000);
        assert!(SERIES_125.windows(2).all(|w| w[0] < w[1]));
        assert!(SERIES_125.iter().all(|&v| is_125(v)));
        for v in [3, 4, 6, 7, 11, 99, 101, 1234567, u64::MAX] {
            assert!(!is_125(v), "{v}");
        }
    }

    #[test]
    fn neighbours_at_the_edges() {
        assert_eq!(neighbours_125(0), (0, 0));
        assert_eq!(neighbours_125(1), (1, 1));
        assert_eq!(neighbours_125(3), (2, 5));
        assert_eq!(neighbours_125(1234567), (1_000_000, 2_000_000));
        assert_eq!(neighbours_125(5_000_000_000_000_000_001), (5_000_000_000_000_000_000, 10_000_000_000_000_000_000));
        assert_eq!(neighbours_125(9_999_999_999_999_999_999), (5_000_000_000_000_000_000, 10_000_000_000_000_000_000));
        // Above the top member no larger 64-bit member exists: stated rule.
        assert_eq!(neighbours_125(10_000_000_000_000_000_001), (10_000_000_000_000_000_000, 10_000_000_000_000_000_000));
        assert_eq!(neighbours_125(u64::MAX), (10_000_000_000_000_000_000, 10_000_000_000_000_000_000));
    }

    #[test]
    fn rounding_is_exactly_unbiased() {
        // Every possible draw, counted: v goes up for exactly v - a of the
        // b - a equally likely draws, so the expectation is exactly v.
        for v in [3u64, 4, 7, 13, 99, 150, 1234567] {
            let (a, b) = neighbours_125(v);
            let mut total: u128 = 0;
            for r in 0..(b - a).min(2_000_000) {
                let got = round_125(v, &mut |n| {
                    assert_eq!(n, b - a);
                    r
                });
                assert!(got == a || got == b);
                total += got as u128;
            }
            if b - a <= 2_000_000 {
                assert_eq!(total, v as u128 * (b - a) as u128, "v={v}");
            }
        }
        assert_eq!(round_125(5, &mut |_| unreachable!("a member is not drawn")), 5);
        assert_eq!(round_125(u64::MAX, &mut |_| unreachable!()), 10_000_000_000_000_000_000);
        // Next to the top: draws near both ends, no overflow.
        let v = 9_999_999_999_999_999_999u64;
        assert_eq!(round_125(v, &mut |n| n - 1), 5_000_000_000_000_000_000);
        assert_eq!(round_125(v, &mut |_| 0), 10_000_000_000_000_000_000);
    }

    #[test]
    fn identifying_bits_per_kind() {
        let s = schema(json!({"version": 1, "fields": [
            {"name": "b", "type": "bool", "description": {"en": "x"}},
            {"name": "c", "type": "choice", "values": ["x", "y", "z"], "description": {"en": "x"}},
            {"name": "cs", "type": "choices", "values": ["x", "y", "z"], "description": {"en": "x"}},
            {"name": "k", "type": "count", "buckets": [1, 5, 10, 25, 50, 100], "description": {"en": "x"}},
            {"name": "r", "type": "count", "rounding": "1-2-5", "description": {"en": "x"}}]}))
        .unwrap();
        let bits: Vec<f64> = s.fields.iter().map(|f| f.kind.bits()).collect();
        let want = [3f64.log2(), 2.0, 9f64.log2(), 3.0, 60f64.log2()];
        for (got, want) in bits.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!((s.total_bits() - 15.661_778_1).abs() < 1e-6, "{}", s.total_bits());
        assert!((60f64.log2() - 5.906_890_6).abs() < 1e-6);
        assert_eq!(s.count_encoding("r"), Some(&CountEncoding::Round125));
        assert_eq!(s.count_encoding("k"), Some(&CountEncoding::Buckets(vec![1, 5, 10, 25, 50, 100])));
        assert_eq!(s.count_encoding("b"), None);
    }
}
