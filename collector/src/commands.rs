//! The non-serving commands: schema add / list / check, purge.

use crate::privacy::{keep, Week};
use crate::storage::{SchemaRow, Store};
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
    (out, over)
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
    let mut weeks = vec![];
    for q in &held {
        let checked = Envelope::parse(&q.body).and_then(|e| e.check(&schema));
        match (checked, Week::parse(&q.week)) {
            (Ok(report), Some(week)) => {
                rows.push(keep(&report, id, week));
                if !weeks.contains(&q.week) {
                    weeks.push(q.week.clone());
                }
            }
            (Err(reason), _) => *summary.rejected.entry(reason.name()).or_default() += 1,
            (Ok(_), None) => *summary.rejected.entry(Reject::MalformedJson.name()).or_default() += 1,
        }
    }
    summary.moved_in = store.insert_reports(rows).await.map_err(|e| e.to_string())?;
    // Those weeks' aggregates (if already rolled up) must be recomputed.
    store.invalidate_rollup(weeks).await.map_err(|e| e.to_string())?;
    if !held.is_empty() {
        store.remove_quarantined(held.into_iter().map(|q| q.key).collect()).await.map_err(|e| e.to_string())?;
        store.compact().await.map_err(|e| e.to_string())?;
    }
    Ok(summary)
}

/// `export`: every product's `fields` answer for `week`, as JSON (an array)
/// or CSV (`product,week,reports,field,value,count`); the same suppressed
/// figures the API serves.
pub async fn export<S: Store>(store: &S, week: &str, format: &str, k: i64) -> Result<String, String> {
    let week = Week::parse(week).ok_or_else(|| format!("--week {week}: expected an ISO week like 2026-W48"))?.to_string();
    let schemas = crate::storage::SchemaSet::from_rows(&store.schemas().await.map_err(|e| e.to_string())?);
    let mut answers = vec![];
    for product in crate::stats::products(store).await.map_err(|e| e.to_string())? {
        let counts = crate::stats::week_counts(store, &schemas, &product, &week).await.map_err(|e| e.to_string())?;
        if counts.reports == 0 {
            continue;
        }
        let catalog = crate::stats::catalog(&schemas, &counts.schema_ids);
        answers.push(crate::stats::fields_json(&product, &counts, &catalog, k));
    }
    if format == "json" {
        return Ok(format!("{}\n", serde_json::Value::Array(answers)));
    }
    let mut out = String::from("product,week,reports,field,value,count\n");
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => csv(s),
        other => other.to_string(),
    };
    for a in &answers {
        let (product, reports) = (a["product"].as_str().unwrap_or(""), cell(&a["reports"]));
        for (field, values) in a["fields"].as_object().into_iter().flatten() {
            for (value, count) in values.as_object().into_iter().flatten() {
                out.push_str(&format!("{},{week},{reports},{},{},{}\n", csv(product), csv(field), csv(value), cell(count)));
            }
        }
    }
    Ok(out)
}

/// A CSV field, quoted when needed (RFC 4180); a leading =, +, - or @ is
/// prefixed with ' so spreadsheets do not run it as a formula.
fn csv(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
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
