//! The non-serving commands: schema add / list / check, purge.

use crate::privacy::{keep, Week};
use crate::storage::{ProductRow, SchemaRow, Store};
use optin_telemetry::error::parse_json;
use optin_telemetry::schema::{CountEncoding, Kind, Schema};
use optin_telemetry::validate::{Envelope, Reject};
use std::collections::BTreeMap;

/// Parses a schema file: either the schema object itself or a whole
/// `tel_open` configuration with a "schema" key.
pub fn parse_schema(text: &str) -> Result<(Schema, String), String> {
    let value = parse_json(text, "the schema file").map_err(|e| e.message)?;
    let schema_value = match value.get("schema") {
        Some(s) if value.get("fields").is_none() => s.clone(),
        _ => value,
    };
    let schema = Schema::from_json(&schema_value).map_err(|e| e.message)?;
    // A release's histograms end in a cell of this name (unset values);
    // a value spelt the same would share its key and one count be lost.
    for f in &schema.fields {
        if let Kind::Choice { values } | Kind::Choices { values } = &f.kind {
            if values.iter().any(|v| v == crate::release::OTHER) {
                return Err(format!(
                    "field {}: the value \"{}\" is reserved for the cell of unset values in released histograms; name it differently",
                    f.name,
                    crate::release::OTHER
                ));
            }
        }
    }
    let body = serde_json::to_string(&schema_value).map_err(|e| e.to_string())?;
    Ok((schema, body))
}

/// `schema check` warns above the library's default `max_bits`, the bound
/// `tel_open` refuses schemas beyond.
pub const MAX_BITS: f64 = optin_telemetry::config::DEFAULT_MAX_BITS;

/// The text `schema check` prints; the bool says whether the total is above 32.
pub fn check_report(schema: &Schema) -> (String, bool) {
    let mut out = format!("schema version {} digest {}\n", schema.version, schema.digest);
    let mut total = 0.0;
    for f in &schema.fields {
        let bits = f.kind.bits();
        total += bits;
        let kind = match &f.kind {
            Kind::Count { encoding: CountEncoding::Buckets(b) } => format!("count, {} bucket bounds", b.len()),
            Kind::Count { encoding: CountEncoding::Round125 } => "count, rounded 1-2-5".to_string(),
            Kind::Choice { values } => format!("choice of {}", values.len()),
            Kind::Choices { values } => format!("choices of {}", values.len()),
            Kind::Bool => "bool".to_string(),
        };
        out.push_str(&format!("  {:<24} {:>6.2} bits  ({kind})\n", f.name, bits));
    }
    out.push_str(&format!("  {:<24} {:>6.2} bits\n", "total", total));
    let over = total > MAX_BITS;
    if over {
        out.push_str(&format!(
            "warning: {total:.2} identifying bits is above {MAX_BITS}: one report could single out an installation\n"
        ));
    }
    if let Some(w) = size_warning(schema) {
        out.push_str(&w);
    }
    (out, over)
}

/// The collector's body limit (413 beyond it).
pub const MAX_BODY: usize = 16 * 1024;

/// An upper bound on the body the library can send for `schema`: every
/// field set to its longest value, every built-in at its longest, written
/// with the library's own serializer.
pub fn largest_report_bytes(schema: &Schema) -> usize {
    use optin_telemetry::validate::{bucket_labels, ARCHES, OS_FAMILIES};
    use serde_json::{json, Map, Value};
    let longest = |v: &[String]| v.iter().max_by_key(|s| s.len()).cloned().unwrap_or_default();
    let mut fields = Map::new();
    for f in &schema.fields {
        let v = match &f.kind {
            Kind::Bool => json!(false),
            Kind::Count { encoding: CountEncoding::Buckets(b) } => json!(longest(&bucket_labels(b))),
            Kind::Count { encoding: CountEncoding::Round125 } => json!(u64::MAX),
            Kind::Choice { values } => json!(longest(values)),
            Kind::Choices { values } => json!(values),
        };
        fields.insert(f.name.clone(), v);
    }
    let widest = |v: &[&str]| "x".repeat(v.iter().map(|s| s.len()).max().unwrap_or(0));
    let report = json!({
        "arch": widest(ARCHES),
        "fields": Value::Object(fields),
        "format": 1,
        // The patterns' longest: 3 x 10 digits; 64 characters; 4 x 5
        // digits; 3 x 9 digits and a 32-character pre-release.
        "os_family": widest(OS_FAMILIES),
        "os_version": "1111111111.1111111111.1111111111",
        "product": "x".repeat(64),
        "product_version": "11111.11111.11111.11111",
        "library_version": format!("111111111.111111111.111111111-{}", "x".repeat(32)),
        "report_id": "0".repeat(32),
        "schema_digest": schema.digest,
        "schema_version": u64::from(schema.version),
    });
    serde_json::to_string(&report).map_or(usize::MAX, |s| s.len())
}

/// A warning when some report of `schema` would be over the body limit: the
/// library would send it and the collector answer 413 every time.
pub fn size_warning(schema: &Schema) -> Option<String> {
    let n = largest_report_bytes(schema);
    (n > MAX_BODY).then(|| {
        format!(
            "warning: a report of this schema can be {n} bytes, over the collector's {MAX_BODY}-byte limit: such reports are refused (413); use fewer or shorter fields and values\n"
        )
    })
}

#[derive(Debug, Default)]
pub struct AddSummary {
    pub id: i64,
    pub digest: String,
    pub moved_in: u64,
    pub rejected: BTreeMap<&'static str, u64>,
}

/// Registers a schema and moves its quarantined reports in (those that
/// pass validation; the others are deleted and counted by reason).
pub async fn add_schema<S: Store>(store: &S, text: &str) -> Result<AddSummary, String> {
    let (schema, body) = parse_schema(text)?;
    let id = store.add_schema(&schema.digest, &body).await.map_err(|e| e.to_string())?;
    let mut summary = AddSummary { id, digest: schema.digest.clone(), ..Default::default() };
    let held = store.quarantined(&schema.digest).await.map_err(|e| e.to_string())?;
    let mut rows = vec![];
    for q in &held {
        let checked = Envelope::parse(&q.body).and_then(|e| e.check(&schema));
        match (checked, Week::parse(&q.week)) {
            (Ok(report), Some(week)) => rows.push(keep(&report, id, week)),
            (Err(reason), _) => *summary.rejected.entry(reason.name()).or_default() += 1,
            (Ok(_), None) => *summary.rejected.entry(Reject::MalformedJson.name()).or_default() += 1,
        }
    }
    // A week already released keeps its release: these reports count in no
    // published figure of it (a release is never computed again).
    for row in rows {
        if store.insert_report(row).await.map_err(|e| e.to_string())? {
            summary.moved_in += 1;
        }
    }
    if !held.is_empty() {
        store.remove_quarantined(held.into_iter().map(|q| q.key).collect()).await.map_err(|e| e.to_string())?;
        store.compact().await.map_err(|e| e.to_string())?;
    }
    Ok(summary)
}

/// `export`: every registered product's release of `week`, as JSON (an
/// array of `fields` answers, each with its guarantee) or CSV
/// ([`crate::published::CSV_HEADER`]); the same stored numbers the API serves.
pub async fn export<S: Store>(store: &S, week: &str, format: &str) -> Result<String, String> {
    let week = Week::parse(week).ok_or_else(|| format!("--week {week}: expected an ISO week like 2026-W48"))?.to_string();
    let mut releases = vec![];
    for product in store.products().await.map_err(|e| e.to_string())? {
        if let Some(body) = store.release(&product.name, &week).await.map_err(|e| e.to_string())? {
            releases.push(crate::release::Release::from_json(&body)?);
        }
    }
    if format == "json" {
        let answers: Vec<serde_json::Value> = releases.iter().map(crate::published::fields).collect();
        return Ok(format!("{}\n", serde_json::Value::Array(answers)));
    }
    let mut out = String::from(crate::published::CSV_HEADER);
    for r in &releases {
        out.push_str(&crate::published::csv_rows(r));
    }
    Ok(out)
}

/// `product add`: registers a product (or more versions of it). Only
/// registered products get releases and are named anywhere public; only
/// registered versions get a cell of their own in version adoption.
pub async fn add_product<S: Store>(store: &S, name: &str, versions: &[String], since: Option<&str>, now: i64) -> Result<ProductRow, String> {
    if !optin_telemetry::config::is_valid_product(name) {
        return Err(format!("product {name:?}: not a product name the library accepts (1-64 of A-Z a-z 0-9 space . _ + -)"));
    }
    for v in versions {
        if !optin_telemetry::config::is_valid_product_version(v) {
            return Err(format!("--version {v:?}: not a product version the library accepts (dotted decimal numbers)"));
        }
    }
    let first_week = match since {
        Some(w) => Week::parse(w).ok_or_else(|| format!("--since {w}: expected an ISO week like 2026-W48"))?,
        None => Week::of_unix(now),
    };
    let existing = store.products().await.map_err(|e| e.to_string())?.into_iter().find(|p| p.name == name);
    let mut all = existing.as_ref().map(|p| p.versions.clone()).unwrap_or_default();
    for v in versions {
        if !all.contains(v) {
            all.push(v.clone());
        }
    }
    let first_week = match existing {
        Some(p) if p.first_week < first_week.to_string() => p.first_week,
        _ => first_week.to_string(),
    };
    let row = ProductRow { name: name.to_string(), first_week, versions: all };
    store.add_product(row.clone()).await.map_err(|e| e.to_string())?;
    Ok(row)
}

pub fn list_text(rows: &[SchemaRow], quarantine: &[(String, i64)]) -> String {
    let mut out = String::new();
    for row in rows {
        let version = parse_json(&row.body, "schema")
            .ok()
            .and_then(|v| v.get("version").and_then(|v| v.as_u64()))
            .map_or("?".to_string(), |v| v.to_string());
        out.push_str(&format!("{}  version {version}  ({} fields)\n", row.digest, field_count(&row.body)));
    }
    if rows.is_empty() {
        out.push_str("no schemas registered\n");
    }
    for (digest, n) in quarantine {
        out.push_str(&format!("{digest}  not registered: {n} report(s) in quarantine\n"));
    }
    out
}

fn field_count(body: &str) -> usize {
    parse_json(body, "schema").ok().and_then(|v| v.get("fields").and_then(|f| f.as_array()).map(Vec::len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn builtins_at_longest() -> optin_telemetry::report::Builtins {
        optin_telemetry::report::Builtins {
            os_family: "emscripten".into(),
            os_version: "1234567890.1234567890.1234567890".into(),
            arch: "loongarch64".into(),
            product: "P".repeat(64),
            product_version: "12345.12345.12345.12345".into(),
            library_version: format!("123456789.123456789.123456789-{}", "r".repeat(32)),
        }
    }

    /// A schema the library accepts (with a raised max_bits) can make
    /// reports over 16 KiB: the library would send them, the collector
    /// refuse them, so `schema check` and `schema add` warn. The bound is
    /// never below what the library really builds.
    #[test]
    fn warns_when_reports_can_exceed_the_body_limit() {
        use optin_telemetry::report::{build, ReportIdentity};
        use optin_telemetry::schema::FieldValue;
        let identity = ReportIdentity { id: "0123456789abcdef0123456789abcdef".into(), draw_key: [3; 32] };
        let wide: Vec<_> = (0..200)
            .map(|i| {
                let name = format!("f{i:03}_{}", "n".repeat(59));
                json!({"name": name, "type": "choice", "values": ["a".repeat(64), "b".repeat(64)], "description": {"en": "x"}})
            })
            .collect();
        let wide = Schema::from_json(&json!({"version": 1, "fields": wide})).unwrap();
        let values: Vec<_> = wide.fields.iter().map(|_| Some(FieldValue::Choice(1))).collect();
        let sent = build(&wide, &values, &builtins_at_longest(), &identity).len();
        assert!(sent > MAX_BODY, "the library builds {sent} bytes");
        assert!(largest_report_bytes(&wide) >= sent);
        let (text, _) = check_report(&wide);
        assert!(text.contains("over the collector's 16384-byte limit"), "{text}");

        let small = Schema::from_json(&json!({"version": 4, "fields": [
            {"name": "users", "type": "count", "buckets": [1, 5, 10, 25], "description": {"en": "x"}},
            {"name": "archived", "type": "count", "rounding": "1-2-5", "description": {"en": "x"}},
            {"name": "trial", "type": "bool", "description": {"en": "x"}},
            {"name": "edition", "type": "choice", "values": ["standard", "enterprise"], "description": {"en": "x"}},
            {"name": "profiles", "type": "choices", "values": ["imap", "exchange", "m365"], "description": {"en": "x"}}
        ]}))
        .unwrap();
        let bound = largest_report_bytes(&small);
        for count in [0, 7, 25, 1 << 40, u64::MAX] {
            let values = vec![
                Some(FieldValue::Count(count)),
                Some(FieldValue::Count(count)),
                Some(FieldValue::Bool(true)),
                Some(FieldValue::Choice(1)),
                Some(FieldValue::Choices([0, 1, 2].into_iter().collect())),
            ];
            let sent = build(&small, &values, &builtins_at_longest(), &identity).len();
            assert!(sent <= bound, "{sent} > {bound}");
        }
        assert!(!check_report(&small).0.contains("byte limit"));
    }

    #[test]
    fn bits_follow_the_library_rule() {
        let s = Schema::from_json(&json!({"version": 1, "fields": [
            {"name": "trial", "type": "bool", "description": {"en": "x"}},
            {"name": "edition", "type": "choice", "values": ["a", "b", "c"], "description": {"en": "x"}},
            {"name": "profiles", "type": "choices", "values": ["a", "b", "c", "d", "e"], "description": {"en": "x"}},
            {"name": "users", "type": "count", "buckets": [1, 5, 10, 25, 50, 100], "description": {"en": "x"}},
            {"name": "archived", "type": "count", "rounding": "1-2-5", "description": {"en": "x"}}
        ]}))
        .unwrap();
        let bits: Vec<f64> = s.fields.iter().map(|f| f.kind.bits()).collect();
        let want = [3f64.log2(), 2.0, 33f64.log2(), 3.0, 60f64.log2()];
        for (got, want) in bits.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{got} != {want}");
        }
        let (text, over) = check_report(&s);
        assert!(!over && text.contains("total") && text.contains("archived"), "{text}");
    }
}
