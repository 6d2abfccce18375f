//! What the noise costs: synthetic fleets (the fleet demo's spread of
//! values, built and rounded by the real library) released many times over,
//! compared with their true values. Used by `bench --accuracy` (README
//! "Accuracy") and by the tests that check the intervals' coverage.

use crate::bench::Gen;
use crate::privacy::{keep, Week};
use crate::release::{Plan, Release, ReleaseConfig, SEP};
use crate::storage::{ProductRow, SchemaRow, SchemaSet};
use optin_telemetry::report::{build, Builtins, ReportIdentity};
use optin_telemetry::schema::{Schema, SERIES_125};
use optin_telemetry::validate::validate;
use std::sync::Arc;

pub const PRODUCT: &str = "Mock Mail Archiver";
pub const VERSIONS: [&str; 2] = ["5.2.1", "5.3.0"];

/// The example archiver's schema, registered as id 1.
pub fn schemas() -> (Arc<SchemaSet>, Schema) {
    let text = crate::demo::schema_v1().to_string();
    let (schema, body) = crate::commands::parse_schema(&text).expect("the example schema is valid");
    let set = SchemaSet::from_rows(&[SchemaRow { id: 1, digest: schema.digest.clone(), body }]);
    (Arc::new(set), schema)
}

pub fn product() -> ProductRow {
    ProductRow { name: PRODUCT.into(), first_week: "2026-W01".into(), versions: VERSIONS.iter().map(|v| v.to_string()).collect() }
}

/// `n` release rows of installations drawn like the fleet demo's, each
/// report built (and its counts rounded at random) by the library itself.
pub fn fleet_rows(schema: &Schema, n: usize, g: &mut Gen) -> Vec<String> {
    let week = Week::parse("2026-W10").expect("a valid week");
    (0..n)
        .map(|_| {
            let json = crate::demo::values(g);
            let values: Vec<_> = schema.fields.iter().map(|f| schema.check_json(&f.name, &json[&f.name]).expect("demo values fit").1).collect();
            let (family, version) = crate::demo::os(g);
            let builtins = Builtins {
                os_family: family.into(),
                os_version: version.into(),
                arch: "x86_64".into(),
                product: PRODUCT.into(),
                product_version: VERSIONS[g.below(2) as usize].into(),
                library_version: optin_telemetry::VERSION.into(),
            };
            let mut draw_key = [0u8; 32];
            for chunk in draw_key.chunks_mut(8) {
                chunk.copy_from_slice(&g.next_u64().to_le_bytes());
            }
            let identity = ReportIdentity { id: format!("{:016x}{:016x}", g.next_u64(), g.next_u64()), draw_key };
            let body = build(schema, &values, &builtins, &identity);
            let row = keep(&validate(schema, body.as_bytes()).expect("the library's own report validates"), 1, week);
            [row.schema_id.to_string(), row.os_family, row.os_version, row.arch, row.product_version, row.library_version, row.codes]
                .join(&SEP.to_string())
        })
        .collect()
}

/// The true figures of a rounded count in `rows` (field position `pos`).
#[derive(Clone, Debug, PartialEq)]
pub struct Truth {
    pub n: usize,
    pub capped_mean: f64,
    pub mean: f64,
    /// The step the true median falls on (the smallest step with at least
    /// half of the values at or below it).
    pub median: f64,
}

pub fn truth(rows: &[String], pos: usize, cap: i64) -> Truth {
    let mut values: Vec<u64> = rows
        .iter()
        .filter_map(|r| r.split(SEP).nth(6)?.split(',').nth(pos)?.parse::<usize>().ok())
        .filter_map(|i| SERIES_125.get(i).copied())
        .collect();
    values.sort_unstable();
    let n = values.len();
    let sum: f64 = values.iter().map(|v| *v as f64).sum();
    let capped: f64 = values.iter().map(|v| (*v).min(cap as u64) as f64).sum();
    let median = values.get((n.max(1) - 1) / 2).copied().unwrap_or(0) as f64;
    Truth { n, capped_mean: capped / n.max(1) as f64, mean: sum / n.max(1) as f64, median }
}

/// The true count of one histogram cell (schema field at `pos`, code `code`).
pub fn true_cell(rows: &[String], pos: usize, code: &str) -> i64 {
    rows.iter().filter(|r| r.split(SEP).nth(6).and_then(|c| c.split(',').nth(pos)) == Some(code)).count() as i64
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints the accuracy table: per fleet size and budget, the median and
/// 95th percentile of the relative error over `runs` releases.
pub async fn table(runs: usize) -> Result<(), String> {
    tokio::task::spawn_blocking(move || table_blocking(runs.max(2))).await.map_err(|e| e.to_string())?
}

fn table_blocking(runs: usize) -> Result<(), String> {
    let (schemas, schema) = schemas();
    let pos = |name: &str| schema.field(name).map(|(i, _)| i).expect("field of the example schema");
    let (archived, edition) = (pos("archived_items"), pos("edition"));
    println!("| reports a week | ρ a week (ε a year at δ 1e-9) | capped mean (cap 1,000,000): median / p95 error | median: on the true step / p95 error | `edition` = standard: median / p95 error | p10 / p90 published |");
    println!("|---|---|---|---|---|---|");
    let mut g = Gen(0x0dd5_eed5 | 1);
    for size in [200usize, 1_000, 10_000, 100_000] {
        let rows = fleet_rows(&schema, size, &mut g);
        let cap = crate::release::DEFAULT_CAP;
        let t = truth(&rows, archived, cap);
        let standard = true_cell(&rows, edition, "0") as f64;
        for rho in [0.005, crate::release::DEFAULT_RHO_WEEK, 0.05] {
            let config = ReleaseConfig { rho_week: rho, ..ReleaseConfig::default() };
            let plan = Plan::new(schemas.clone(), &product(), &config)?;
            let (mut mean_err, mut median_err, mut cell_err) = (vec![], vec![], vec![]);
            let (mut exact, mut tails, mut epsilon) = (0, 0, 0.0);
            for _ in 0..runs {
                let r: Release = plan.release("2026-W10", &rows)?;
                epsilon = r.guarantee.epsilon_per_year;
                let s = &r.means["archived_items"];
                mean_err.push(s.mean.as_ref().map_or(1.0, |m| (m.value - t.capped_mean).abs() / t.capped_mean));
                let released_median = s.median.as_ref().map_or(f64::NAN, |m| m.value);
                median_err.push(if released_median.is_nan() { 1.0 } else { (released_median - t.median).abs() / t.median });
                exact += usize::from(released_median == t.median);
                tails += usize::from(s.p90.is_some());
                let cell = r.fields["edition"].iter().find(|c| c.label == "standard").map_or(0, |c| c.value) as f64;
                cell_err.push((cell - standard).abs() / standard.max(1.0));
            }
            for v in [&mut mean_err, &mut median_err, &mut cell_err] {
                v.sort_by(f64::total_cmp);
            }
            let pct = |x: f64| format!("{:.1} %", x * 100.0);
            println!(
                "| {size} | {rho} ({epsilon:.1}) | {} / {} | {:.0} % / {} | {} / {} | {:.0} % |",
                pct(quantile(&mean_err, 0.5)),
                pct(quantile(&mean_err, 0.95)),
                exact as f64 * 100.0 / runs as f64,
                pct(quantile(&median_err, 0.95)),
                pct(quantile(&cell_err, 0.5)),
                pct(quantile(&cell_err, 0.95)),
                tails as f64 * 100.0 / runs as f64
            );
        }
    }
    println!("({runs} releases per row; true capped mean, median and cell from the same synthetic week)");
    Ok(())
}
