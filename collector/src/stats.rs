//! What the vendor may learn: per product and ISO week, counts per field and
//! value (the current and not yet rolled-up weeks from raw reports, older
//! weeks from the weekly aggregates, so they survive retention), crosstabs
//! (weeks with raw reports only), and the published forms of all of them,
//! which always go through [`crate::suppress`].

use crate::privacy::decode_code;
use crate::storage::{GroupColumns, SchemaSet, Store, StoreError, WeekColumns};
use crate::suppress::{self, Cells, Shown};
use optin_telemetry::schema::{CountEncoding, Kind, Schema, BUILTIN_FIELDS};
use optin_telemetry::validate::{bucket_labels, labels};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Unsuppressed counts of one product in one week. Never published as is.
#[derive(Clone, Debug, Default)]
pub struct WeekCounts {
    pub week: String,
    pub reports: i64,
    pub fields: BTreeMap<String, BTreeMap<String, i64>>,
    /// Schemas whose reports are counted.
    pub schema_ids: BTreeSet<i64>,
}

/// How a field is counted and shown.
#[derive(Clone, Debug)]
pub struct FieldInfo {
    pub name: String,
    pub multi: bool,
    pub rounded: bool,
    pub bucketed: bool,
    pub builtin: bool,
    pub description: BTreeMap<String, String>,
    /// Declared value order (labels); values not listed sort after, by name.
    pub order: Vec<String>,
}

impl FieldInfo {
    pub fn describe(&self, language: &str) -> String {
        optin_telemetry::schema::pick_description(&self.description, language)
    }

    /// Counts in display order.
    pub fn ordered(&self, counts: &BTreeMap<String, i64>) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = counts.iter().map(|(l, n)| (l.clone(), *n)).collect();
        let pos = |l: &str| self.order.iter().position(|o| o == l).unwrap_or(usize::MAX);
        if self.rounded {
            v.sort_by(|a, b| a.0.parse::<f64>().unwrap_or(0.0).total_cmp(&b.0.parse::<f64>().unwrap_or(0.0)));
        } else if self.builtin {
            v.sort_by_key(|a| version_key(&a.0));
        } else {
            v.sort_by(|a, b| (pos(&a.0), &a.0).cmp(&(pos(&b.0), &b.0)));
        }
        v
    }

    /// Suppressed cells of this field.
    pub fn suppress(&self, counts: &BTreeMap<String, i64>, reports: i64, k: i64) -> Cells {
        let ordered = self.ordered(counts);
        if self.multi {
            suppress::multi(&ordered, k)
        } else {
            suppress::single(&ordered, reports, k)
        }
    }
}

/// "5.10.2" after "5.9.1": numeric parts compare as numbers.
fn version_key(s: &str) -> Vec<(u64, String)> {
    s.split(['.', '-']).map(|p| (p.parse().unwrap_or(u64::MAX), p.to_string())).collect()
}

/// Fields of the given schemas (later schemas' descriptions win), then the
/// built-ins.
pub fn catalog(schemas: &SchemaSet, ids: &BTreeSet<i64>) -> Vec<FieldInfo> {
    let mut out: Vec<FieldInfo> = vec![];
    for id in ids {
        let Some(schema) = schemas.by_id.get(id) else { continue };
        for f in &schema.fields {
            let info = FieldInfo {
                name: f.name.clone(),
                multi: matches!(f.kind, Kind::Choices { .. }),
                rounded: matches!(f.kind, Kind::Count { encoding: CountEncoding::Round125 }),
                bucketed: matches!(f.kind, Kind::Count { encoding: CountEncoding::Buckets(_) }),
                builtin: false,
                description: f.description.clone(),
                order: match &f.kind {
                    Kind::Bool => vec!["false".into(), "true".into()],
                    Kind::Count { encoding: CountEncoding::Buckets(b) } => bucket_labels(b),
                    Kind::Count { encoding: CountEncoding::Round125 } => vec![],
                    Kind::Choice { values } | Kind::Choices { values } => values.clone(),
                },
            };
            match out.iter_mut().find(|o| o.name == f.name) {
                Some(o) => *o = info,
                None => out.push(info),
            }
        }
    }
    for (name, en, de) in BUILTIN_FIELDS {
        out.push(FieldInfo {
            name: name.to_string(),
            multi: false,
            rounded: false,
            bucketed: false,
            builtin: true,
            description: [("en".to_string(), en.to_string()), ("de".to_string(), de.to_string())].into(),
            order: vec![],
        });
    }
    out
}

/// Products with data (aggregates, and raw reports of weeks not rolled up).
pub async fn products<S: Store>(store: &S) -> Result<Vec<String>, StoreError> {
    let mut set: BTreeSet<String> = store.aggregate_products().await?.into_iter().collect();
    let rolled: BTreeSet<String> = store.rolled_up_weeks().await?.into_iter().collect();
    for week in store.report_weeks().await? {
        if !rolled.contains(&week) {
            set.extend(store.report_products(&week).await?);
        }
    }

    Ok(set.into_iter().collect())
}

/// Counts of `product` in `week`: from the aggregates when the week is
/// rolled up, else from its raw reports.
pub async fn week_counts<S: Store>(store: &S, schemas: &SchemaSet, product: &str, week: &str) -> Result<WeekCounts, StoreError> {
    let totals = store.week_totals(week).await?;
    let mut out = WeekCounts { week: week.to_string(), ..Default::default() };
    if totals.is_empty() {
        let columns = store.week_columns(week).await?;
        return Ok(counts_from_columns(&columns, schemas, product, week));
    }
    // Rolled up: a schema's cells belong to the product most of its reports
    // named that week (a schema is normally one product's).
    let rows = store.aggregates(week).await?;
    let mut owner: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.field == "product") {
        let e = owner.entry(r.schema_id).or_insert((0, String::new()));
        if r.count > e.0 {
            *e = (r.count, r.value.clone());
        }
    }
    let mine: BTreeSet<i64> = owner.iter().filter(|(_, (_, p))| p == product).map(|(id, _)| *id).collect();
    for (id, n) in totals {
        if mine.contains(&id) {
            out.reports += n;
            out.schema_ids.insert(id);
        }
    }
    for r in rows.into_iter().filter(|r| mine.contains(&r.schema_id)) {
        *out.fields.entry(r.field).or_default().entry(r.value).or_default() += r.count;
    }
    Ok(out)
}

/// Counts of `product` in a week not rolled up, from its column counts.
pub fn counts_from_columns(columns: &WeekColumns, schemas: &SchemaSet, product: &str, week: &str) -> WeekCounts {
    let mut out = WeekCounts { week: week.to_string(), ..Default::default() };
    for ((schema_id, p), c) in &columns.by {
        if p != product {
            continue;
        }
        let Some(schema) = schemas.by_id.get(schema_id) else { continue };
        out.reports += c.reports;
        out.schema_ids.insert(*schema_id);
        *out.fields.entry("product".into()).or_default().entry(p.clone()).or_default() += c.reports;
        for (name, counts) in crate::storage::COLUMN_BUILTINS.iter().zip(&c.builtins) {
            let field = out.fields.entry(name.to_string()).or_default();
            for (v, n) in counts {
                *field.entry(v.clone()).or_default() += n;
            }
        }
        for (&(i, code), n) in &c.codes {
            let Some(f) = schema.fields.get(i) else { continue };
            if let Some(Some(v)) = decode_code(&f.kind, &code.to_string()) {
                for l in labels(&f.kind, &v) {
                    *out.fields.entry(f.name.clone()).or_default().entry(l).or_default() += n;
                }
            }
        }
    }
    out
}

/// A crosstab of two fields of `product` in `week` (raw reports only).
///
/// The week's groups are nearly unique (their codes hold every field), so
/// the loop allocates nothing per group once a label is known: a field's
/// labels depend only on its schema and its own code and are worked out once
/// per code, and counts are found by reference before a key is allocated.
pub async fn crosstab_counts<S: Store>(
    store: &S,
    schemas: &SchemaSet,
    product: &str,
    week: &str,
    a: &str,
    b: &str,
) -> Result<(suppress::Crosstab, BTreeSet<i64>), StoreError> {
    let mut rows: HashMap<String, i64> = HashMap::new();
    let mut cols: HashMap<String, i64> = HashMap::new();
    let mut cells: HashMap<String, HashMap<String, i64>> = HashMap::new();
    let (mut known_a, mut known_b) = (LabelCache::default(), LabelCache::default());
    let mut ids = BTreeSet::new();
    let mut reports = 0;
    for group in store.week_groups(week).await? {
        let (row, n) = (group.columns(), group.reports);
        if row.product != product {
            continue;
        }
        let Some(schema) = schemas.by_id.get(&group.schema_id) else { continue };
        let codes: Vec<&str> = if schema.fields.is_empty() { vec![] } else { row.codes.split(',').collect() };
        if codes.len() != schema.fields.len() {
            continue;
        }
        ids.insert(group.schema_id);
        reports += n;
        let la = known_a.labels(schema, group.schema_id, &row, &codes, a);
        let lb = known_b.labels(schema, group.schema_id, &row, &codes, b);
        for x in &la {
            add(&mut rows, x, n);
            let line = match cells.get_mut(*x) {
                Some(line) => line,
                None => cells.entry(x.to_string()).or_default(),
            };
            for y in &lb {
                add(line, y, n);
            }
        }
        for y in &lb {
            add(&mut cols, y, n);
        }
    }
    let mut row_labels: Vec<String> = rows.keys().cloned().collect();
    let mut col_labels: Vec<String> = cols.keys().cloned().collect();
    row_labels.sort();
    col_labels.sort();
    let t = suppress::Crosstab {
        cells: row_labels.iter().map(|x| col_labels.iter().map(|y| cells.get(x).and_then(|l| l.get(y)).copied().unwrap_or(0)).collect()).collect(),
        row_totals: row_labels.iter().map(|x| rows[x]).collect(),
        col_totals: col_labels.iter().map(|y| cols[y]).collect(),
        row_labels,
        col_labels,
        reports,
    };
    Ok((t, ids))
}

fn add(counts: &mut HashMap<String, i64>, label: &str, n: i64) {
    match counts.get_mut(label) {
        Some(c) => *c += n,
        None => {
            counts.insert(label.to_string(), n);
        }
    }
}

/// Labels of one field by (schema, code), for `crosstab_counts`.
#[derive(Default)]
struct LabelCache {
    /// schema id -> code -> labels
    by_code: HashMap<i64, HashMap<String, Vec<String>>>,
}

impl LabelCache {
    /// The labels a stored report has for `field` (none when unset or not
    /// decodable), borrowed from the row or from the cache.
    fn labels<'a>(&'a mut self, schema: &Schema, schema_id: i64, row: &GroupColumns<'a>, codes: &[&str], field: &str) -> Vec<&'a str> {
        let builtin = match field {
            "os_family" => Some(row.os_family),
            "os_version" => Some(row.os_version),
            "arch" => Some(row.arch),
            "product" => Some(row.product),
            "product_version" => Some(row.product_version),
            "library_version" => Some(row.library_version),
            _ => None,
        };
        if let Some(value) = builtin {
            return vec![value];
        }
        let Some((i, f)) = schema.field(field) else { return vec![] };
        let code = codes[i];
        let known = self.by_code.entry(schema_id).or_default();
        if !known.contains_key(code) {
            let decoded = decode_code(&f.kind, code).flatten().map(|v| labels(&f.kind, &v)).unwrap_or_default();
            known.insert(code.to_string(), decoded);
        }
        known[code].iter().map(String::as_str).collect()
    }
}

// ----- published forms (suppressed) -----

pub fn cells_json(cells: &Cells, k: i64) -> Value {
    let mut m = Map::new();
    for (label, shown) in cells {
        m.insert(label.clone(), shown.json(k));
    }
    Value::Object(m)
}

/// The `fields` answer (*fixed* shape).
pub fn fields_json(product: &str, counts: &WeekCounts, catalog: &[FieldInfo], k: i64) -> Value {
    let mut fields = Map::new();
    for info in catalog {
        let empty = BTreeMap::new();
        let c = counts.fields.get(&info.name).unwrap_or(&empty);
        fields.insert(info.name.clone(), cells_json(&info.suppress(c, counts.reports, k), k));
    }
    json!({"product": product, "week": counts.week, "reports": Shown::of(counts.reports, k).json(k), "fields": fields})
}

/// The `mean` answer: rounded counts get the mean with its 95 % interval
/// (only from k reports on); bucketed counts only their histogram.
pub fn mean_json(product: &str, counts: &WeekCounts, info: &FieldInfo, k: i64) -> Value {
    let empty = BTreeMap::new();
    let c = counts.fields.get(&info.name).unwrap_or(&empty);
    let histogram = cells_json(&info.suppress(c, counts.reports, k), k);
    // `reports` is the week's (as in `fields`); how many of them carry the
    // field (`n`) only next to a mean suppress::mean allowed: on its own it
    // would tell how many reports lack the field.
    let mut out = json!({"product": product, "week": counts.week, "field": info.name,
        "reports": Shown::of(counts.reports, k).json(k), "histogram": histogram});
    if info.rounded {
        match suppress::mean(&info.ordered(c), counts.reports, k) {
            Some(m) => {
                out["n"] = json!(m.n);
                out["mean"] = json!(round2(m.mean));
                out["ci95"] = json!([round2(m.low), round2(m.high)]);
            }
            None => {
                out["mean"] = Value::Null;
                out["note"] = json!(format!(
                    "no mean: fewer than {} reports carry the field, or the mean would reveal a count below {} (reports without the field, or values merged into \"other\") or the few values that dominate those merged",
                    k.max(2),
                    k.max(1)
                ));
            }
        }
    } else {
        out["mean"] = Value::Null;
        out["note"] = json!("not a rounded count: histogram only, no mean");
    }
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn crosstab_json(product: &str, week: &str, a: &FieldInfo, b: &FieldInfo, t: &suppress::Crosstab, k: i64) -> Value {
    // The rows and columns are what `fields` publishes of a and b.
    let counts = |labels: &[String], totals: &[i64]| -> BTreeMap<String, i64> { labels.iter().cloned().zip(totals.iter().copied()).collect() };
    let row_cells = a.suppress(&counts(&t.row_labels, &t.row_totals), t.reports, k);
    let col_cells = b.suppress(&counts(&t.col_labels, &t.col_totals), t.reports, k);
    let rows = suppress::crosstab(t, &row_cells, &col_cells, !a.multi, !b.multi, k);
    let mut cells = Map::new();
    for (x, c) in &rows {
        cells.insert(x.clone(), cells_json(c, k));
    }
    // No total here: reports with `a` set, against the `fields` figure,
    // would reveal how many have it unset.
    json!({"product": product, "week": week, "a": a.name, "b": b.name, "cells": cells})
}
