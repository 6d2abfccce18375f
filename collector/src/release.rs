//! Weekly differentially private releases: the only source of what the
//! collector publishes about field values.
//!
//! **Privacy unit:** one installation. The library sends at most one report
//! per installation and ISO week (its schedule keeps at least 7 days between
//! two reports, README "Schedule"), so one week's dataset of a product — its
//! raw reports received that week, one row each — changes by at most one row
//! when one installation is added or removed (`SymmetricDistance`,
//! `d_in = 1`). A forged second report of the same installation is outside
//! that promise; honest clients never send one.
//!
//! **The release, one OpenDP measurement per figure** (each built from
//! constructors that carry their own stability or privacy map; the data stay
//! integers, so the noise is exact discrete Gaussian noise):
//!
//! | figure | measurement |
//! |---|---|
//! | reports | `make_count` ≫ `make_gaussian` |
//! | histogram of a field or built-in | [`project`] ≫ `make_count_by_categories` ≫ `make_gaussian` |
//! | each member of a `choices` field | [`project`] ≫ `make_count_by_categories([1])` ≫ `make_gaussian` |
//! | capped sum of a rounded count | [`project`] ≫ `make_clamp(0, cap)` ≫ `make_sum` ≫ `make_gaussian` |
//! | declared crosstab | [`project`] ≫ `make_count_by_categories` ≫ `make_gaussian` |
//!
//! They are composed with `make_composition` (zero-concentrated DP, ρ); the
//! week's guarantee is that composition's privacy map at `d_in = 1`, and the
//! yearly one the map of 52 such weeks composed, converted by
//! `make_zCDP_to_approxDP` and `make_fix_delta`. The budget is split once, in
//! [`weight`]. Everything published beyond the measurements' outputs —
//! non-negative integers, intervals, the capped mean (noisy sum ÷ noisy
//! count), quantiles from the noisy cumulative histogram, the share above the
//! cap — is post-processing of those outputs and weakens nothing.
//!
//! **The one stability map written here:** [`project`], which maps each
//! report to one value of one column. It is row by row, so adding or
//! removing one report adds or removes exactly one value: stability 1 under
//! `SymmetricDistance`. (OpenDP offers this as `make_user_transformation`
//! only behind its `honest-but-curious` feature; the claim is the same.)

use crate::privacy::Week;
use crate::storage::{ProductRow, SchemaSet, Store, StoreError};
use opendp::combinators::{make_composition, make_fix_delta, make_zCDP_to_approxDP};
use opendp::core::{Function, Measurement, StabilityMap, Transformation};
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::error::Fallible;
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::{AbsoluteDistance, L2Distance, SymmetricDistance};
use opendp::transformations::{make_clamp, make_count, make_count_by_categories, make_sum};
use optin_telemetry::schema::{CountEncoding, Kind, SERIES_125};
use optin_telemetry::validate::{bucket_labels, ARCHES, OS_FAMILIES};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Separates a report row's columns (no stored value contains it).
pub const SEP: char = '\u{1f}';

/// The label of a histogram's last cell: reports without the field, or with
/// a value outside the declared categories (e.g. an unregistered version).
pub const OTHER: &str = "other";

/// Two-sided 95 % normal quantile, for the intervals.
const Z95: f64 = 1.959_963_984_540_054;

/// Default weekly budget ρ (zero-concentrated DP). 52 weeks of it compose to
/// ε ≈ 9.4 at δ = 1e-9 per installation and year (OpenDP's conversion), under
/// the target of 10; README "Accuracy" shows what it buys.
pub const DEFAULT_RHO_WEEK: f64 = 0.018;
pub const DEFAULT_DELTA: f64 = 1e-9;
/// Releases a year, for the yearly guarantee.
pub const WEEKS_PER_YEAR: usize = 52;
/// Cap of a rounded count without `--cap FIELD=N`.
pub const DEFAULT_CAP: i64 = 1_000_000;
/// A release waits this long after its week ended: a report whose request
/// read the clock just before midnight, or one stored by another process
/// whose clock lags, may still land in the week.
pub const DEFAULT_GRACE_S: i64 = 3600;
/// A week whose released number of reports is below this shows no figures
/// about field values (post-processing of the noisy count: with so few
/// reports every cell would be mostly noise).
pub const MIN_REPORTS_FOR_FIGURES: i64 = 50;

/// The median is published only from this many reports with the value on
/// (README "Accuracy": below it the noisy cumulative histogram crosses half
/// of the reports far from the true step too often to be useful).
pub const MEDIAN_MIN_N: f64 = 500.0;
/// The 10th and 90th percentiles are published only from this many reports
/// with the value on (README "Accuracy": below it the noisy cumulative
/// histogram often misses the step).
pub const TAIL_QUANTILE_MIN_N: f64 = 5_000.0;

/// What the operator chooses (`serve`/`release`/`purge` flags).
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseConfig {
    pub rho_week: f64,
    pub delta: f64,
    /// Cap per rounded count field; others get [`DEFAULT_CAP`].
    pub caps: BTreeMap<String, i64>,
    /// Declared crosstabs (field, field), single-valued fields only.
    pub crosstabs: Vec<(String, String)>,
    pub grace_s: i64,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        ReleaseConfig { rho_week: DEFAULT_RHO_WEEK, delta: DEFAULT_DELTA, caps: BTreeMap::new(), crosstabs: vec![], grace_s: DEFAULT_GRACE_S }
    }
}

impl ReleaseConfig {
    pub fn cap(&self, field: &str) -> i64 {
        self.caps.get(field).copied().unwrap_or(DEFAULT_CAP)
    }
}

/// The budget split, written once: a figure's share of the week's ρ is its
/// weight over the sum of all weights in the release. The average archive
/// size is the vendor's first question, so the rounded counts' capped sum and
/// histogram (which gives the median) weigh most; the built-ins, which change
/// slowly and are read as trends, least.
fn weight(figure: &Figure) -> f64 {
    match figure {
        Figure::Reports => 2.0,
        Figure::Histogram { column: Column::Builtin(_), .. } => 0.5,
        Figure::Histogram { rounded: true, .. } => 4.0,
        Figure::Histogram { .. } => 1.0,
        // The whole `choices` field; its members share it equally.
        Figure::Members { .. } => 1.0,
        Figure::CappedSum { .. } => 6.0,
        Figure::Crosstab { .. } => 1.0,
    }
}

/// A column of a report row: a built-in, or a schema field by name.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// Position among [`BUILTIN_COLUMNS`].
    Builtin(usize),
    Field(String),
}

/// Built-in columns of a release row, in row order (the product is the
/// release's own, so not a column).
pub const BUILTIN_COLUMNS: [&str; 5] = ["os_family", "os_version", "arch", "product_version", "library_version"];

/// One figure of a release, before its measurement is built.
#[derive(Clone, Debug)]
pub enum Figure {
    Reports,
    Histogram { name: String, column: Column, labels: Vec<String>, rounded: bool },
    Members { name: String, members: Vec<String> },
    CappedSum { name: String, cap: i64 },
    Crosstab { a: String, b: String, a_labels: Vec<String>, b_labels: Vec<String> },
}

/// A field of the release's catalog: the union of every registered schema
/// (later schemas' declarations win), so which fields a release has never
/// depends on which reports arrived.
#[derive(Clone, Debug)]
pub struct CatalogField {
    pub name: String,
    pub column: Column,
    /// Declared values (labels) in order; for `choices`, the members.
    pub labels: Vec<String>,
    pub multi: bool,
    pub rounded: bool,
    pub description: BTreeMap<String, String>,
}

/// Operating system versions with a cell of their own: a public list, fixed
/// in the collector, so the histogram's categories never come from the data.
/// Others count as "other".
pub const KNOWN_OS_VERSIONS: &[&str] = &[
    // Windows (major.minor.build): 7 SP1, 8.1, 10 and Server builds, 11.
    "6.1.7601", "6.3.9600", "10.0.14393", "10.0.17763", "10.0.19044", "10.0.19045", "10.0.20348", "10.0.22000",
    "10.0.22621", "10.0.22631", "10.0.25398", "10.0.26100", "10.0.26200",
    // Linux kernels (major.minor) of maintained distributions.
    "3.10", "4.18", "5.4", "5.10", "5.14", "5.15", "6.1", "6.2", "6.5", "6.6", "6.8", "6.11", "6.12", "6.14",
    // macOS (major.minor).
    "13.0", "14.0", "15.0", "26.0",
];

/// Everything a week's release is computed from apart from the reports: the
/// registered schemas, the product (with its registered versions) and the
/// operator's configuration. Built before any report is read.
pub struct Plan {
    pub product: String,
    pub config: ReleaseConfig,
    pub catalog: Vec<CatalogField>,
    pub figures: Vec<Figure>,
    schemas: Arc<SchemaSet>,
}

fn labels_of(kind: &Kind) -> (Vec<String>, bool, bool) {
    match kind {
        Kind::Bool => (vec!["false".into(), "true".into()], false, false),
        Kind::Count { encoding: CountEncoding::Buckets(b) } => (bucket_labels(b), false, false),
        Kind::Count { encoding: CountEncoding::Round125 } => (SERIES_125.iter().map(u64::to_string).collect(), false, true),
        Kind::Choice { values } => (values.clone(), false, false),
        Kind::Choices { values } => (values.clone(), true, false),
    }
}

impl Plan {
    pub fn new(schemas: Arc<SchemaSet>, product: &ProductRow, config: &ReleaseConfig) -> Result<Plan, String> {
        let mut catalog: Vec<CatalogField> = vec![];
        let mut ids: Vec<&i64> = schemas.by_id.keys().collect();
        ids.sort();
        for id in ids {
            for f in &schemas.by_id[id].fields {
                let (labels, multi, rounded) = labels_of(&f.kind);
                let field = CatalogField { name: f.name.clone(), column: Column::Field(f.name.clone()), labels, multi, rounded, description: f.description.clone() };
                match catalog.iter_mut().find(|c| c.name == f.name) {
                    // Same name in two schemas: the categories are the union,
                    // in order of first declaration.
                    Some(c) if c.multi == field.multi && c.rounded == field.rounded => {
                        for l in field.labels {
                            if !c.labels.contains(&l) {
                                c.labels.push(l);
                            }
                        }
                        c.description = field.description;
                    }
                    Some(c) => *c = field,
                    None => catalog.push(field),
                }
            }
        }
        for (i, name) in BUILTIN_COLUMNS.iter().enumerate() {
            let labels: Vec<String> = match *name {
                "os_family" => OS_FAMILIES.iter().map(|s| s.to_string()).collect(),
                "os_version" => KNOWN_OS_VERSIONS.iter().map(|s| s.to_string()).collect(),
                "arch" => ARCHES.iter().map(|s| s.to_string()).collect(),
                "product_version" => product.versions.clone(),
                _ => vec![optin_telemetry::VERSION.to_string()],
            };
            let description = optin_telemetry::schema::BUILTIN_FIELDS
                .iter()
                .find(|b| b.0 == *name)
                .map(|b| [("en".to_string(), b.1.to_string()), ("de".to_string(), b.2.to_string())].into())
                .unwrap_or_default();
            catalog.push(CatalogField { name: name.to_string(), column: Column::Builtin(i), labels, multi: false, rounded: false, description });
        }
        let mut figures = vec![Figure::Reports];
        for f in &catalog {
            if f.multi {
                figures.push(Figure::Members { name: f.name.clone(), members: f.labels.clone() });
            } else {
                figures.push(Figure::Histogram { name: f.name.clone(), column: f.column.clone(), labels: f.labels.clone(), rounded: f.rounded });
            }
            if f.rounded {
                figures.push(Figure::CappedSum { name: f.name.clone(), cap: config.cap(&f.name) });
            }
        }
        for (a, b) in &config.crosstabs {
            let find = |n: &str| catalog.iter().find(|f| f.name == n).ok_or_else(|| format!("--crosstab {a}:{b}: no registered field or built-in is called {n}"));
            let (fa, fb) = (find(a)?, find(b)?);
            if fa.multi || fb.multi || a == b {
                return Err(format!("--crosstab {a}:{b}: a crosstab takes two different single-valued fields (not choices)"));
            }
            figures.push(Figure::Crosstab { a: a.clone(), b: b.clone(), a_labels: fa.labels.clone(), b_labels: fb.labels.clone() });
        }
        for (name, cap) in &config.caps {
            if !catalog.iter().any(|f| &f.name == name && f.rounded) {
                return Err(format!("--cap {name}={cap}: no registered field of that name is a rounded (1-2-5) count"));
            }
        }
        Ok(Plan { product: product.name.clone(), config: config.clone(), catalog, figures, schemas })
    }

    /// Each figure's ρ: the budget split by [`weight`].
    pub fn shares(&self) -> Vec<f64> {
        let total: f64 = self.figures.iter().map(weight).sum();
        self.figures.iter().map(|f| self.config.rho_week * weight(f) / total).collect()
    }

    fn column_of(&self, name: &str) -> Column {
        self.catalog.iter().find(|f| f.name == name).map(|f| f.column.clone()).unwrap_or(Column::Field(name.to_string()))
    }

    /// The measurements, in figure order, each with its noise scale (the
    /// standard deviation of its Gaussian noise, for the intervals).
    fn measurements(&self) -> Fallible<Vec<(WeekMeasurement, Vec<f64>)>> {
        let mut out = vec![];
        for (figure, rho) in self.figures.iter().zip(self.shares()) {
            match figure {
                Figure::Reports => {
                    let sigma = scale(1.0, rho);
                    let count = make_count::<String, i64>(rows_domain(), SymmetricDistance)?;
                    let noise = make_gaussian::<_, _, ZeroConcentratedDivergence>(AtomDomain::default(), AbsoluteDistance::default(), sigma, None)?;
                    out.push((((count >> noise)? >> Function::new(|x: &i64| vec![*x]))?, vec![sigma]));
                }
                Figure::Histogram { column, labels, .. } => {
                    let sigma = scale(1.0, rho);
                    let codes = self.category_codes(column.clone(), labels);
                    out.push((histogram(project(codes)?, labels.len(), sigma)?, vec![sigma]));
                }
                Figure::Members { name, members } => {
                    // The field's share is split over its members, each
                    // counted on its own (a report adds 1 to each of its
                    // members: L2 sensitivity √m overall).
                    let sigma = scale(1.0, rho / members.len().max(1) as f64);
                    for (i, _) in members.iter().enumerate() {
                        let present = self.member_presence(name, i);
                        out.push((histogram_of(project(present)?, vec![1], false, sigma)?, vec![sigma]));
                    }
                }
                Figure::CappedSum { name, cap } => {
                    let sigma = scale(*cap as f64, rho);
                    let values = self.rounded_values(name);
                    let cells = project(values)?;
                    let clamp = make_clamp(cells.output_domain.clone(), SymmetricDistance, (0i64, *cap))?;
                    let sum = make_sum(clamp.output_domain.clone(), SymmetricDistance)?;
                    let noise = make_gaussian::<_, _, ZeroConcentratedDivergence>(AtomDomain::default(), AbsoluteDistance::default(), sigma, None)?;
                    out.push((((cells >> clamp >> sum >> noise)? >> Function::new(|x: &i64| vec![*x]))?, vec![sigma]));
                }
                Figure::Crosstab { a, b, a_labels, b_labels } => {
                    let sigma = scale(1.0, rho);
                    let ca = self.category_codes(self.column_of(a), a_labels);
                    let cb = self.category_codes(self.column_of(b), b_labels);
                    let width = b_labels.len() as i64 + 1;
                    let pair = move |row: &str| ca(row) * width + cb(row);
                    let cells = (a_labels.len() + 1) * (b_labels.len() + 1);
                    out.push((histogram_of(project(pair)?, (0..cells as i64).collect(), false, sigma)?, vec![sigma]));
                }
            }
        }
        Ok(out)
    }

    /// Row -> index of its label among `labels`, or `labels.len()` ("other").
    fn category_codes(&self, column: Column, labels: &[String]) -> impl Fn(&str) -> i64 + Send + Sync + 'static {
        let other = labels.len() as i64;
        let index: HashMap<String, i64> = labels.iter().enumerate().map(|(i, l)| (l.clone(), i as i64)).collect();
        match column {
            Column::Builtin(i) => Box::new(move |row: &str| row.split(SEP).nth(1 + i).and_then(|v| index.get(v).copied()).unwrap_or(other))
                as Box<dyn Fn(&str) -> i64 + Send + Sync>,
            Column::Field(name) => {
                // Per schema: the field's position and code -> category.
                let mut by_schema: HashMap<i64, (usize, HashMap<u64, i64>)> = HashMap::new();
                for (id, schema) in &self.schemas.by_id {
                    let Some((pos, f)) = schema.field(&name) else { continue };
                    let (own, _, _) = labels_of(&f.kind);
                    let table = own.iter().enumerate().filter_map(|(code, l)| Some((code as u64, *index.get(l)?))).collect();
                    by_schema.insert(*id, (pos, table));
                }
                Box::new(move |row: &str| {
                    field_code(row, &by_schema).and_then(|(code, table)| table.get(&code).copied()).unwrap_or(other)
                })
            }
        }
    }

    /// Row -> 1 when member `i` of the choices field is set, else 0.
    fn member_presence(&self, name: &str, member: usize) -> impl Fn(&str) -> i64 + Send + Sync + 'static {
        let member_label = self.catalog.iter().find(|f| f.name == name).map(|f| f.labels[member].clone()).unwrap_or_default();
        let mut by_schema: HashMap<i64, (usize, Option<u32>)> = HashMap::new();
        for (id, schema) in &self.schemas.by_id {
            if let Some((pos, f)) = schema.field(name) {
                if let Kind::Choices { values } = &f.kind {
                    by_schema.insert(*id, (pos, values.iter().position(|v| *v == member_label).map(|b| b as u32)));
                }
            }
        }
        move |row: &str| match field_code(row, &by_schema) {
            Some((mask, Some(bit))) if *bit < 64 && mask & (1u64 << *bit) != 0 => 1,
            _ => 0,
        }
    }

    /// Row -> the rounded count's value, or 0 when unset (the sum ignores it;
    /// the mean's denominator counts only reports that carry the field).
    fn rounded_values(&self, name: &str) -> impl Fn(&str) -> i64 + Send + Sync + 'static {
        let mut by_schema: HashMap<i64, (usize, ())> = HashMap::new();
        for (id, schema) in &self.schemas.by_id {
            if let Some((pos, f)) = schema.field(name) {
                if matches!(f.kind, Kind::Count { encoding: CountEncoding::Round125 }) {
                    by_schema.insert(*id, (pos, ()));
                }
            }
        }
        move |row: &str| {
            field_code(row, &by_schema)
                .and_then(|(code, ())| SERIES_125.get(code as usize))
                .map(|v| i64::try_from(*v).unwrap_or(i64::MAX))
                .unwrap_or(0)
        }
    }

    /// The composed measurement of one week's release.
    pub fn measurement(&self) -> Fallible<(WeekRelease, Vec<Vec<f64>>)> {
        let (ms, sigmas): (Vec<_>, Vec<_>) = self.measurements()?.into_iter().unzip();
        Ok((make_composition(ms)?, sigmas))
    }

    /// Computes the release of `rows` (this product's reports of `week`).
    pub fn release(&self, week: &str, rows: &Vec<String>) -> Result<Release, String> {
        let (m, sigmas) = self.measurement().map_err(|e| format!("building the release: {e}"))?;
        let guarantee = guarantee(&m, &self.config).map_err(|e| format!("privacy map: {e}"))?;
        let outputs = m.invoke(rows).map_err(|e| format!("computing the release: {e}"))?;
        Ok(self.assemble(week, outputs, sigmas, guarantee))
    }

    /// Post-processing of the measurements' outputs into what is stored.
    fn assemble(&self, week: &str, outputs: Vec<Vec<i64>>, sigmas: Vec<Vec<f64>>, guarantee: Guarantee) -> Release {
        let mut outs = outputs.into_iter().zip(sigmas);
        let mut next = || outs.next().expect("one output per measurement");
        let mut release = Release {
            format: 1,
            product: self.product.clone(),
            week: week.to_string(),
            guarantee,
            reports: Estimate::count(0, 1.0),
            fields: BTreeMap::new(),
            order: self.catalog.iter().map(|f| f.name.clone()).collect(),
            descriptions: self.catalog.iter().map(|f| (f.name.clone(), f.description.clone())).collect(),
            means: BTreeMap::new(),
            crosstabs: vec![],
            budget: vec![],
        };
        let mut noisy_reports = (0i64, 0f64);
        let mut histograms: HashMap<String, (Vec<i64>, f64)> = HashMap::new();
        for (figure, rho) in self.figures.iter().zip(self.shares()) {
            release.budget.push(BudgetLine { figure: figure_name(figure), rho });
            match figure {
                Figure::Reports => {
                    let (v, s) = next();
                    noisy_reports = (v[0], s[0]);
                    release.reports = Estimate::count(v[0], s[0]);
                }
                Figure::Histogram { name, labels, .. } => {
                    let (v, s) = next();
                    let cells = labels.iter().chain([&OTHER.to_string()]).zip(&v).map(|(l, n)| Cell::of(l, *n, s[0])).collect();
                    release.fields.insert(name.clone(), cells);
                    histograms.insert(name.clone(), (v, s[0]));
                }
                Figure::Members { name, members } => {
                    let cells = members
                        .iter()
                        .map(|m| {
                            let (v, s) = next();
                            Cell::of(m, v[0], s[0])
                        })
                        .collect();
                    release.fields.insert(name.clone(), cells);
                }
                Figure::CappedSum { name, cap } => {
                    let (v, s) = next();
                    if let Some((hist, sigma_h)) = histograms.get(name) {
                        release.means.insert(name.clone(), rounded_summary(*cap, (v[0], s[0]), hist, *sigma_h, noisy_reports));
                    }
                }
                Figure::Crosstab { a, b, a_labels, b_labels } => {
                    let (v, s) = next();
                    let other = OTHER.to_string();
                    let mut cells = vec![];
                    for (i, la) in a_labels.iter().chain([&other]).enumerate() {
                        for (j, lb) in b_labels.iter().chain([&other]).enumerate() {
                            let n = v[i * (b_labels.len() + 1) + j];
                            cells.push(CrossCell { a: la.clone(), b: lb.clone(), value: n.max(0), low: low(n, s[0]), high: high(n, s[0]) });
                        }
                    }
                    release.crosstabs.push(Crosstab { a: a.clone(), b: b.clone(), cells });
                }
            }
        }
        release
    }
}

/// One week's composed release: rows in, one output vector per figure out.
pub type WeekRelease = Measurement<VectorDomain<AtomDomain<String>>, SymmetricDistance, ZeroConcentratedDivergence, Vec<Vec<i64>>>;
type WeekMeasurement = Measurement<VectorDomain<AtomDomain<String>>, SymmetricDistance, ZeroConcentratedDivergence, Vec<i64>>;
type Projection = Transformation<VectorDomain<AtomDomain<String>>, SymmetricDistance, VectorDomain<AtomDomain<i64>>, SymmetricDistance>;

fn rows_domain() -> VectorDomain<AtomDomain<String>> {
    VectorDomain::new(AtomDomain::default())
}

/// Gaussian noise scale for sensitivity `delta` at ρ: ρ = Δ² / (2σ²).
fn scale(delta: f64, rho: f64) -> f64 {
    delta / (2.0 * rho).sqrt()
}

/// Each report to one integer of one column: row by row, so stability 1.
pub fn project(f: impl Fn(&str) -> i64 + Send + Sync + 'static) -> Fallible<Projection> {
    Transformation::new(
        rows_domain(),
        SymmetricDistance,
        VectorDomain::new(AtomDomain::default()),
        SymmetricDistance,
        Function::new(move |rows: &Vec<String>| rows.iter().map(|r| f(r)).collect()),
        StabilityMap::new_from_constant(1),
    )
}

/// Counts per category index 0..n, plus the last cell for everything else.
fn histogram(p: Projection, n: usize, sigma: f64) -> Fallible<WeekMeasurement> {
    histogram_of(p, (0..n as i64).collect(), true, sigma)
}

fn histogram_of(p: Projection, categories: Vec<i64>, rest: bool, sigma: f64) -> Fallible<WeekMeasurement> {
    let count = make_count_by_categories::<L2Distance<i64>, i64, i64>(p.output_domain.clone(), SymmetricDistance, categories, rest)?;
    let noise = make_gaussian::<_, _, ZeroConcentratedDivergence>(count.output_domain.clone(), L2Distance::default(), sigma, None)?;
    p >> count >> noise
}

/// The code a row has for a field, with that schema's table; None when the
/// row's schema lacks the field or the field is unset.
fn field_code<'a, T>(row: &str, by_schema: &'a HashMap<i64, (usize, T)>) -> Option<(u64, &'a T)> {
    let mut cols = row.split(SEP);
    let schema_id: i64 = cols.next()?.parse().ok()?;
    let (pos, table) = by_schema.get(&schema_id)?;
    let codes = cols.nth(BUILTIN_COLUMNS.len())?;
    let code = codes.split(',').nth(*pos)?;
    Some((code.parse().ok()?, table))
}

fn figure_name(f: &Figure) -> String {
    match f {
        Figure::Reports => "reports".into(),
        Figure::Histogram { name, .. } => format!("histogram {name}"),
        Figure::Members { name, .. } => format!("members {name}"),
        Figure::CappedSum { name, cap } => format!("capped sum {name} (cap {cap})"),
        Figure::Crosstab { a, b, .. } => format!("crosstab {a}:{b}"),
    }
}

fn low(n: i64, sigma: f64) -> i64 {
    ((n as f64 - Z95 * sigma).floor() as i64).max(0)
}

fn high(n: i64, sigma: f64) -> i64 {
    ((n as f64 + Z95 * sigma).ceil() as i64).max(0)
}

/// The guarantee per installation: this week's, and 52 such weeks'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Guarantee {
    pub unit: String,
    pub rho_week: f64,
    pub epsilon_week: f64,
    pub rho_per_year: f64,
    pub epsilon_per_year: f64,
    pub delta: f64,
    pub weeks_per_year: usize,
}

/// Reads the guarantee off OpenDP's privacy maps: the week's composition at
/// d_in = 1, and 52 of them composed, each converted to (ε, δ).
pub fn guarantee(week: &WeekRelease, config: &ReleaseConfig) -> Fallible<Guarantee> {
    let rho_week = week.map(&1)?;
    let (epsilon_week, _) = make_fix_delta(&make_zCDP_to_approxDP(week.clone())?, config.delta)?.map(&1)?;
    let year = make_composition(vec![week.clone(); WEEKS_PER_YEAR])?;
    let rho_per_year = year.map(&1)?;
    let (epsilon_per_year, delta) = make_fix_delta(&make_zCDP_to_approxDP(year)?, config.delta)?.map(&1)?;
    Ok(Guarantee {
        unit: "one installation (at most one report per ISO week)".into(),
        rho_week,
        epsilon_week,
        rho_per_year,
        epsilon_per_year,
        delta,
        weeks_per_year: WEEKS_PER_YEAR,
    })
}

/// A released count: the noisy count made a non-negative integer, with its
/// 95 % interval (noise only: the figure is this week's count, not an
/// estimate of a larger population).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: i64,
    pub low: i64,
    pub high: i64,
}

impl Estimate {
    fn count(n: i64, sigma: f64) -> Estimate {
        Estimate { value: n.max(0), low: low(n, sigma), high: high(n, sigma) }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub label: String,
    pub value: i64,
    pub low: i64,
    pub high: i64,
}

impl Cell {
    fn of(label: &str, n: i64, sigma: f64) -> Cell {
        Cell { label: label.to_string(), value: n.max(0), low: low(n, sigma), high: high(n, sigma) }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Real {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrossCell {
    pub a: String,
    pub b: String,
    pub value: i64,
    pub low: i64,
    pub high: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Crosstab {
    pub a: String,
    pub b: String,
    pub cells: Vec<CrossCell>,
}

/// The published summary of a rounded count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundedSummary {
    /// Every installation's value counted up to this.
    pub cap: i64,
    /// Reports with the value set (noisy reports minus the noisy "other" cell).
    pub n: Real,
    /// Capped mean: noisy capped sum ÷ n; None when n's interval reaches 0.
    pub mean: Option<Real>,
    /// Steps of the 1-2-5 series, from the noisy cumulative histogram.
    pub median: Option<Real>,
    pub p10: Option<Real>,
    pub p90: Option<Real>,
    /// Share of reports with a value above the cap.
    pub share_above_cap: Option<Real>,
}

/// The capped mean, median, percentiles and share above the cap of one
/// rounded count, all from the noisy capped sum, the noisy histogram (cells
/// in series order, "other" last) and the noisy number of reports.
fn rounded_summary(cap: i64, (sum, sigma_sum): (i64, f64), hist: &[i64], sigma_h: f64, (reports, sigma_r): (i64, f64)) -> RoundedSummary {
    let steps = hist.len() - 1;
    let n = (reports - hist[steps]) as f64;
    let var_n = sigma_r * sigma_r + sigma_h * sigma_h;
    let sd_n = var_n.sqrt();
    let n_real = Real { value: n.max(0.0), low: (n - Z95 * sd_n).max(0.0), high: (n + Z95 * sd_n).max(0.0) };
    // A ratio whose denominator's interval reaches 0 has no interval.
    let enough = n - Z95 * sd_n > 0.0;
    let mean = enough.then(|| {
        let m = sum as f64 / n;
        let sd = (sigma_sum * sigma_sum + m * m * var_n).sqrt() / n;
        Real { value: m.clamp(0.0, cap as f64), low: (m - Z95 * sd).clamp(0.0, cap as f64), high: (m + Z95 * sd).clamp(0.0, cap as f64) }
    });
    let quantile = |q: f64| -> Option<Real> {
        if !enough {
            return None;
        }
        // D_j = C_j − q·n, where C_j sums the noisy cells up to step j; its
        // variance: (j+1) cells of the histogram and q² of n's.
        let mut cumulative = 0f64;
        let (mut value, mut lo, mut hi) = (None, None, None);
        for (j, c) in hist[..steps].iter().enumerate() {
            cumulative += *c as f64;
            let d = cumulative - q * n;
            let sd = ((j + 1) as f64 * sigma_h * sigma_h + q * q * var_n).sqrt();
            let step = SERIES_125[j] as f64;
            if lo.is_none() && d + Z95 * sd >= 0.0 {
                lo = Some(step);
            }
            if value.is_none() && d >= 0.0 {
                value = Some(step);
            }
            if hi.is_none() && d - Z95 * sd >= 0.0 {
                hi = Some(step);
            }
        }
        let last = SERIES_125[steps - 1] as f64;
        Some(Real { value: value.unwrap_or(last), low: lo.unwrap_or(last), high: hi.unwrap_or(last) })
    };
    let tails = n >= TAIL_QUANTILE_MIN_N;
    // Above the cap: the cells above it summed, or n minus the cells up to
    // it, whichever has less noise.
    let at_or_below = SERIES_125.iter().take(steps).filter(|v| **v <= cap as u64).count();
    let share_above_cap = enough.then(|| {
        let above: f64 = hist[at_or_below..steps].iter().map(|c| *c as f64).sum();
        let below: f64 = hist[..at_or_below].iter().map(|c| *c as f64).sum();
        let var_above = (steps - at_or_below) as f64 * sigma_h * sigma_h;
        let var_complement = at_or_below as f64 * sigma_h * sigma_h + var_n;
        let (a, var) = if var_above <= var_complement { (above, var_above) } else { (n - below, var_complement) };
        let sd = var.sqrt() / n;
        let share = a / n;
        Real { value: share.clamp(0.0, 1.0), low: (share - Z95 * sd).clamp(0.0, 1.0), high: (share + Z95 * sd).clamp(0.0, 1.0) }
    });
    RoundedSummary {
        cap,
        n: n_real,
        mean,
        median: if n >= MEDIAN_MIN_N { quantile(0.5) } else { None },
        p10: if tails { quantile(0.1) } else { None },
        p90: if tails { quantile(0.9) } else { None },
        share_above_cap,
    }
}

/// One share of the week's budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetLine {
    pub figure: String,
    pub rho: f64,
}

/// A stored weekly release: everything published about one product's week.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub format: u32,
    pub product: String,
    pub week: String,
    pub guarantee: Guarantee,
    pub reports: Estimate,
    /// Field or built-in -> cells in declared order ("other" last for
    /// single-valued fields; one cell per member for `choices`).
    pub fields: BTreeMap<String, Vec<Cell>>,
    /// Fields in catalog order (schema fields, then built-ins).
    pub order: Vec<String>,
    /// Field -> language -> description, from the registered schemas.
    pub descriptions: BTreeMap<String, BTreeMap<String, String>>,
    pub means: BTreeMap<String, RoundedSummary>,
    pub crosstabs: Vec<Crosstab>,
    pub budget: Vec<BudgetLine>,
}

impl Release {
    /// False for a week with too few reports to show figures
    /// ([`MIN_REPORTS_FOR_FIGURES`], judged on the released count).
    pub fn has_figures(&self) -> bool {
        self.reports.value >= MIN_REPORTS_FOR_FIGURES
    }

    /// A field's description in `language` (English when missing).
    pub fn describe(&self, field: &str, language: &str) -> String {
        self.descriptions.get(field).map(|d| optin_telemetry::schema::pick_description(d, language)).unwrap_or_else(|| field.to_string())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a release serializes")
    }

    pub fn from_json(text: &str) -> Result<Release, String> {
        serde_json::from_str(text).map_err(|e| format!("stored release: {e}"))
    }
}

/// What one run of [`release_due`] did.
#[derive(Debug, Default)]
pub struct ReleaseSummary {
    /// (product, week, reports as released)
    pub released: Vec<(String, String, i64)>,
    /// Claimed by another process (or already stored meanwhile).
    pub skipped: usize,
}

/// The newest week whose release is due at `now`: its end plus the grace
/// has passed.
pub fn newest_due_week(now: i64, grace_s: i64) -> Week {
    Week::of_unix(now - grace_s).minus(1)
}

/// A claim on a release is taken over by another process after this long
/// (a process that died while computing it; nothing was stored).
pub const CLAIM_S: i64 = 900;

/// Computes and stores every release that is due and not stored yet, for
/// every registered product from its first week on. Idempotent; a release
/// being computed by another process (a claim in the `releases` table) is
/// left to it, and a stored one is never computed again.
pub async fn release_due<S: Store>(store: &S, now: i64, config: &ReleaseConfig) -> Result<ReleaseSummary, String> {
    let err = |e: StoreError| e.to_string();
    let schemas = Arc::new(SchemaSet::from_rows(&store.schemas().await.map_err(err)?));
    let newest = newest_due_week(now, config.grace_s);
    let mut summary = ReleaseSummary::default();
    for product in store.products().await.map_err(err)? {
        let Some(first) = Week::parse(&product.first_week) else { continue };
        let stored: std::collections::BTreeSet<String> = store.released_weeks(&product.name).await.map_err(err)?.into_iter().collect();
        let mut week = first;
        while week <= newest {
            let name = week.to_string();
            if !stored.contains(&name) {
                if !store.claim_release(&product.name, &name, now, CLAIM_S).await.map_err(err)? {
                    summary.skipped += 1;
                } else {
                    let rows = store.release_rows(&name, &product.name).await.map_err(err)?;
                    let plan = Plan::new(schemas.clone(), &product, config)?;
                    let week_name = name.clone();
                    // OpenDP's measurements are not Send: build and run them
                    // on one blocking thread.
                    let release = tokio::task::spawn_blocking(move || plan.release(&week_name, &rows)).await.map_err(|e| e.to_string())??;
                    if store.store_release(&product.name, &name, &release.to_json()).await.map_err(err)? {
                        summary.released.push((product.name.clone(), name, release.reports.value));
                    } else {
                        summary.skipped += 1;
                    }
                }
            }
            week = week.minus(-1);
        }
    }
    Ok(summary)
}

/// The release flags of `serve`, `release`, `purge` and `demo`.
#[derive(clap::Args, Clone, Debug)]
pub struct ReleaseArgs {
    /// Privacy budget per installation and week, as zero-concentrated DP ρ.
    #[arg(long, default_value_t = DEFAULT_RHO_WEEK, value_parser = parse_budget)]
    pub budget: f64,
    /// δ of the (ε, δ) guarantee stated beside every release.
    #[arg(long, default_value_t = DEFAULT_DELTA, value_parser = parse_delta)]
    pub delta: f64,
    /// Cap of a rounded count's mean: FIELD=N (repeatable); default 1000000.
    #[arg(long = "cap", value_parser = parse_cap)]
    pub caps: Vec<(String, i64)>,
    /// A crosstab to release every week: FIELD:FIELD (repeatable).
    #[arg(long = "crosstab", value_parser = parse_crosstab)]
    pub crosstabs: Vec<(String, String)>,
    /// Seconds after a week's end before it is released.
    #[arg(long, default_value_t = DEFAULT_GRACE_S, value_parser = clap::value_parser!(i64).range(0..=7 * 86_400))]
    pub release_grace: i64,
}

impl ReleaseArgs {
    pub fn config(&self) -> ReleaseConfig {
        ReleaseConfig {
            rho_week: self.budget,
            delta: self.delta,
            caps: self.caps.iter().cloned().collect(),
            crosstabs: self.crosstabs.clone(),
            grace_s: self.release_grace,
        }
    }
}

fn parse_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 10.0 => Ok(x),
        _ => Err(format!("--budget {s}: a ρ above 0 and at most 10 (default {DEFAULT_RHO_WEEK})")),
    }
}

fn parse_delta(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x < 1e-3 => Ok(x),
        _ => Err(format!("--delta {s}: a δ above 0 and below 0.001 (default {DEFAULT_DELTA})")),
    }
}

fn parse_cap(s: &str) -> Result<(String, i64), String> {
    let (field, n) = s.split_once('=').ok_or_else(|| format!("--cap {s}: expected FIELD=N"))?;
    let n: i64 = n.parse().map_err(|_| format!("--cap {s}: N must be a whole number"))?;
    // The clamped sum of a week must fit in 64 bits for any number of reports
    // the collector can hold.
    if !(1..=1_000_000_000_000).contains(&n) {
        return Err(format!("--cap {s}: N must be from 1 to 10^12"));
    }
    Ok((field.to_string(), n))
}

fn parse_crosstab(s: &str) -> Result<(String, String), String> {
    let (a, b) = s.split_once(':').ok_or_else(|| format!("--crosstab {s}: expected FIELD:FIELD"))?;
    if a.is_empty() || b.is_empty() {
        return Err(format!("--crosstab {s}: expected FIELD:FIELD"));
    }
    Ok((a.to_string(), b.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split hands out exactly the week's budget, and OpenDP's composed
    /// privacy map says the same; the yearly figure is 52 weeks of it.
    #[test]
    fn the_budget_split_adds_up_and_opendp_agrees() {
        let (schemas, _) = crate::accuracy::schemas();
        let config = ReleaseConfig { crosstabs: vec![("edition".into(), "users".into())], ..ReleaseConfig::default() };
        let plan = Plan::new(schemas, &crate::accuracy::product(), &config).unwrap();
        let total: f64 = plan.shares().iter().sum();
        assert!((total - DEFAULT_RHO_WEEK).abs() < 1e-12, "{total}");
        let (m, _) = plan.measurement().unwrap();
        let g = guarantee(&m, &config).unwrap();
        assert!((g.rho_week - DEFAULT_RHO_WEEK).abs() < 1e-9, "{}", g.rho_week);
        assert!((g.rho_per_year - 52.0 * DEFAULT_RHO_WEEK).abs() < 1e-7, "{}", g.rho_per_year);
        assert!(g.epsilon_per_year > 8.0 && g.epsilon_per_year < 10.0, "{}", g.epsilon_per_year);
        assert!(g.epsilon_week < g.epsilon_per_year);
        // The capped sum and the rounded histogram weigh most.
        let names: Vec<String> = plan.figures.iter().map(figure_name).collect();
        let share = |prefix: &str| plan.shares()[names.iter().position(|n| n.starts_with(prefix)).unwrap()];
        assert!(share("capped sum archived_items") > share("histogram archived_items"));
        assert!(share("histogram archived_items") > share("histogram trial"));
    }

    #[test]
    fn bad_flags_are_refused() {
        let (schemas, _) = crate::accuracy::schemas();
        let product = crate::accuracy::product();
        let with = |crosstabs: Vec<(&str, &str)>, caps: Vec<(&str, i64)>| {
            let config = ReleaseConfig {
                crosstabs: crosstabs.into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
                caps: caps.into_iter().map(|(a, n)| (a.to_string(), n)).collect(),
                ..ReleaseConfig::default()
            };
            Plan::new(schemas.clone(), &product, &config).err()
        };
        assert!(with(vec![("profiles", "users")], vec![]).unwrap().contains("single-valued"));
        assert!(with(vec![("nope", "users")], vec![]).unwrap().contains("no registered field"));
        assert!(with(vec![], vec![("users", 10)]).unwrap().contains("rounded"));
        assert_eq!(with(vec![("os_family", "edition")], vec![("archived_items", 5_000_000)]), None);
        assert!(parse_cap("x=0").is_err() && parse_cap("x").is_err() && parse_crosstab("a").is_err());
        assert!(parse_budget("0").is_err() && parse_budget("nan").is_err() && parse_delta("0.5").is_err());
    }
}
