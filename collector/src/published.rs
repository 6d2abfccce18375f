//! The published forms of a stored release: the JSON answers of
//! `/api/v1/*` and the export. Pure functions of a [`Release`]: they only
//! reshape the stored numbers, so every number published is one the release
//! holds.

use crate::release::{Real, Release, RoundedSummary};
use serde_json::{json, Map, Value};

/// What every answer says about the guarantee behind its numbers.
pub fn guarantee(r: &Release) -> Value {
    let g = &r.guarantee;
    json!({
        "unit": g.unit,
        "epsilon_per_year": g.epsilon_per_year,
        "delta": g.delta,
        "weeks_per_year": g.weeks_per_year,
        "rho_week": g.rho_week,
        "epsilon_week": g.epsilon_week,
        "rho_per_year": g.rho_per_year,
        "mechanism": "discrete Gaussian noise (OpenDP), zero-concentrated DP; the week's budget split in release.rs `weight`",
    })
}

/// The `fields` answer (*fixed* shape): each count a non-negative integer,
/// `intervals` of the same shape with `{low, high}`.
pub fn fields(r: &Release) -> Value {
    let (mut fields, mut intervals) = (Map::new(), Map::new());
    for name in r.order.iter().filter(|_| r.has_figures()) {
        let Some(cells) = r.fields.get(name) else { continue };
        let (mut counts, mut bounds) = (Map::new(), Map::new());
        for c in cells {
            counts.insert(c.label.clone(), json!(c.value));
            bounds.insert(c.label.clone(), json!({"low": c.low, "high": c.high}));
        }
        fields.insert(name.clone(), Value::Object(counts));
        intervals.insert(name.clone(), Value::Object(bounds));
    }
    let mut out = json!({
        "product": r.product,
        "week": r.week,
        "reports": r.reports.value,
        "reports_interval": {"low": r.reports.low, "high": r.reports.high},
        "fields": fields,
        "intervals": intervals,
        "release": guarantee(r),
    });
    if !r.has_figures() {
        out["note"] = json!(too_few(r));
    }
    out
}

fn too_few(r: &Release) -> String {
    format!("{} reports released for this week: figures are shown from {}", r.reports.value, crate::release::MIN_REPORTS_FOR_FIGURES)
}

fn real(x: &Real) -> Value {
    json!({"value": round2(x.value), "low": round2(x.low), "high": round2(x.high)})
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn opt(x: &Option<Real>) -> Value {
    x.as_ref().map_or(Value::Null, real)
}

/// The `mean` answer (*fixed* keys `mean` {value, low, high, cap} and
/// `median` {value, low, high}); for a field that is not a rounded count,
/// both are null beside its histogram. None for an unknown field.
pub fn mean(r: &Release, field: &str) -> Option<Value> {
    let cells = r.fields.get(field)?;
    if !r.has_figures() {
        return Some(json!({"product": r.product, "week": r.week, "field": field, "reports": r.reports.value,
            "mean": null, "median": null, "histogram": {}, "note": too_few(r), "release": guarantee(r)}));
    }
    let histogram: Map<String, Value> = cells.iter().map(|c| (c.label.clone(), json!(c.value))).collect();
    let mut out = json!({"product": r.product, "week": r.week, "field": field, "reports": r.reports.value,
        "histogram": histogram, "release": guarantee(r)});
    match r.means.get(field) {
        Some(s) => summary_into(&mut out, s),
        None => {
            out["mean"] = Value::Null;
            out["median"] = Value::Null;
            out["note"] = json!("not a rounded count: histogram only, no mean");
        }
    }
    Some(out)
}

fn summary_into(out: &mut Value, s: &RoundedSummary) {
    out["mean"] = match &s.mean {
        Some(m) => json!({"value": round2(m.value), "low": round2(m.low), "high": round2(m.high), "cap": s.cap,
            "label": format!("mean, each installation counted up to {}", group(s.cap))}),
        None => Value::Null,
    };
    out["median"] = opt(&s.median);
    out["p10"] = opt(&s.p10);
    out["p90"] = opt(&s.p90);
    out["share_above_cap"] = opt(&s.share_above_cap);
    out["n"] = real(&s.n);
    out["cap"] = json!(s.cap);
    if s.mean.is_none() {
        out["note"] = json!("too few reports with a value this week for a mean whose interval excludes nothing");
    } else if s.median.is_none() {
        out["note"] = json!(format!("the median is published from {} reports with a value on", crate::release::MEDIAN_MIN_N as i64));
    } else if s.p10.is_none() {
        out["note"] = json!(format!(
            "p10 and p90 are published from {} reports with a value on",
            crate::release::TAIL_QUANTILE_MIN_N as i64
        ));
    }
}

/// 1234567 -> "1,234,567".
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A declared crosstab, rows `a`, columns `b` (either order of a declared
/// pair). None when the release has no such crosstab.
pub fn crosstab(r: &Release, a: &str, b: &str) -> Option<Value> {
    if !r.has_figures() {
        return None;
    }
    let (t, swapped) = r
        .crosstabs
        .iter()
        .find_map(|t| if t.a == a && t.b == b { Some((t, false)) } else if t.a == b && t.b == a { Some((t, true)) } else { None })?;
    let (mut cells, mut intervals) = (Map::new(), Map::new());
    for c in &t.cells {
        let (row, col) = if swapped { (&c.b, &c.a) } else { (&c.a, &c.b) };
        let line = cells.entry(row.clone()).or_insert_with(|| json!({}));
        line[col.as_str()] = json!(c.value);
        let line = intervals.entry(row.clone()).or_insert_with(|| json!({}));
        line[col.as_str()] = json!({"low": c.low, "high": c.high});
    }
    Some(json!({"product": r.product, "week": r.week, "a": a, "b": b, "cells": cells, "intervals": intervals, "release": guarantee(r)}))
}

/// CSV header of the export.
pub const CSV_HEADER: &str = "product,week,reports,field,value,count,low,high,epsilon_per_year,delta\n";

/// The export's CSV rows of one release.
pub fn csv_rows(r: &Release) -> String {
    let mut out = String::new();
    let g = &r.guarantee;
    for name in r.order.iter().filter(|_| r.has_figures()) {
        for c in r.fields.get(name).into_iter().flatten() {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                csv(&r.product),
                r.week,
                r.reports.value,
                csv(name),
                csv(&c.label),
                c.value,
                c.low,
                c.high,
                g.epsilon_per_year,
                g.delta
            ));
        }
    }
    out
}

/// A CSV field, quoted when needed (RFC 4180); a leading =, +, - or @ is
/// prefixed with ' so spreadsheets do not run it as a formula.
pub fn csv(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A week with too few reports shows the number of reports and nothing
    /// about field values, on every published form.
    #[test]
    fn too_few_reports_show_no_figures() {
        let (schemas, schema) = crate::accuracy::schemas();
        // A budget this large makes the noise negligible, so the counts are
        // known: 20 reports, then 400.
        let config = crate::release::ReleaseConfig { rho_week: 10.0, ..Default::default() };
        let plan = crate::release::Plan::new(schemas, &crate::accuracy::product(), &config).unwrap();
        let mut g = crate::bench::Gen(7);
        let few = plan.release("2026-W10", &crate::accuracy::fleet_rows(&schema, 20, &mut g)).unwrap();
        assert!(!few.has_figures() && few.reports.value < crate::release::MIN_REPORTS_FOR_FIGURES);
        let f = fields(&few);
        assert_eq!(f["fields"], json!({}));
        assert_eq!(f["reports"], json!(few.reports.value));
        assert!(f["note"].as_str().unwrap().contains("figures are shown from 50"));
        assert_eq!(mean(&few, "archived_items").unwrap()["mean"], Value::Null);
        assert_eq!(csv_rows(&few), "");
        let many = plan.release("2026-W10", &crate::accuracy::fleet_rows(&schema, 400, &mut g)).unwrap();
        assert!(many.has_figures());
        assert_eq!(fields(&many)["fields"]["trial"].as_object().unwrap().len(), 3);
        assert!(mean(&many, "archived_items").unwrap()["mean"]["value"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn grouping_and_csv() {
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(999), "999");
        assert_eq!(csv("=1+1"), "'=1+1");
        assert_eq!(csv("a,b"), "\"a,b\"");
    }
}
