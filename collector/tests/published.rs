//! What is published (the JSON API, the export and the dashboard) shows the
//! stored weekly releases and nothing else: a property test on random
//! reports over several weeks compares every number with the stored release,
//! on SQLite and PostgreSQL. Also: admin access control and public mode,
//! schema texts escaped on the dashboard, the demo.

mod common;

use common::*;
use optin_collector::bench::{sample_report, Gen, BENCH_SCHEMA};
use optin_collector::commands::{add_schema, export, parse_schema};
use optin_collector::privacy::Week;
use optin_collector::published::{group, CSV_HEADER};
use optin_collector::release::{Real, Release, ReleaseConfig};
use optin_collector::storage::Store;
use optin_collector::Options;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const NOW: i64 = 1_795_000_000; // 2026-W47, a Wednesday
const PRODUCT: &str = "Mail Archiver";
const Q: &str = "product=Mail+Archiver";

/// Declared crosstabs and a cap, so that every kind of figure is released.
fn config() -> ReleaseConfig {
    ReleaseConfig {
        caps: [("archived".to_string(), 20_000)].into(),
        crosstabs: vec![("edition".into(), "os_family".into()), ("trial".into(), "users".into())],
        ..ReleaseConfig::default()
    }
}

fn os_seed() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b) | 1
}

async fn answer(admin: std::net::SocketAddr, path: &str) -> Value {
    let r = get(admin, path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{path}: {}", r.head);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

/// Equal JSON, floats to 1e-12 relative: serde_json (without its
/// float_roundtrip feature) may read a float back one unit in the last
/// place off, and the server has read the stored release once more.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w))),
        _ => a == b,
    }
}

fn close(x: Option<f64>, y: f64) -> bool {
    x.is_some_and(|x| (x - y).abs() <= 1e-12 * x.abs().max(y.abs()))
}

/// A published real: the stored one rounded to 2 decimals.
fn same_real(published: &Value, stored: &Real, what: &str) {
    for (key, x) in [("value", stored.value), ("low", stored.low), ("high", stored.high)] {
        let want = (x * 100.0).round() / 100.0;
        let got = published[key].as_f64().unwrap_or_else(|| panic!("{what}.{key} missing: {published}"));
        assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "{what}.{key}: published {got}, stored {x}");
    }
}

fn same_opt_real(published: &Value, stored: &Option<Real>, what: &str) {
    match stored {
        Some(r) => same_real(published, r, what),
        None => assert!(published.is_null(), "{what}: nothing stored, published {published}"),
    }
}

/// `fields`: every count and interval is the stored cell, nothing else.
fn check_fields(f: &Value, r: &Release) {
    assert_eq!((f["product"].as_str(), f["week"].as_str()), (Some(r.product.as_str()), Some(r.week.as_str())), "{f}");
    assert_eq!(f["reports"].as_i64(), Some(r.reports.value), "{f}");
    assert_eq!(f["reports_interval"], json!({"low": r.reports.low, "high": r.reports.high}));
    let published: BTreeSet<&String> = f["fields"].as_object().unwrap().keys().collect();
    assert_eq!(published, r.fields.keys().collect(), "the fields published are the fields released");
    for (name, cells) in &r.fields {
        let (counts, bounds) = (f["fields"][name].as_object().unwrap(), f["intervals"][name].as_object().unwrap());
        assert_eq!(counts.len(), cells.len(), "{name}: {f}");
        assert_eq!(bounds.len(), cells.len(), "{name}: {f}");
        for c in cells {
            assert_eq!(counts[&c.label].as_i64(), Some(c.value), "{name}={}", c.label);
            assert_eq!(bounds[&c.label], json!({"low": c.low, "high": c.high}), "{name}={}", c.label);
        }
    }
    assert!(close(f["release"]["epsilon_per_year"].as_f64(), r.guarantee.epsilon_per_year), "{f}");
    assert!(close(f["release"]["delta"].as_f64(), r.guarantee.delta), "{f}");
}

/// `mean` of `field`: its histogram is the stored cells; a rounded count's
/// summary is the stored one (rounded to 2 decimals); others have none.
fn check_mean(m: &Value, r: &Release, field: &str) {
    assert_eq!(m["reports"].as_i64(), Some(r.reports.value), "{m}");
    let histogram = m["histogram"].as_object().unwrap();
    assert_eq!(histogram.len(), r.fields[field].len(), "{m}");
    for c in &r.fields[field] {
        assert_eq!(histogram[&c.label].as_i64(), Some(c.value), "{field}={}: {m}", c.label);
    }
    match r.means.get(field) {
        Some(s) => {
            assert_eq!(m["cap"].as_i64(), Some(s.cap));
            same_real(&m["n"], &s.n, "n");
            match &s.mean {
                Some(mean) => {
                    same_real(&m["mean"], mean, "mean");
                    assert_eq!(m["mean"]["cap"].as_i64(), Some(s.cap));
                }
                None => assert!(m["mean"].is_null(), "{m}"),
            }
            same_opt_real(&m["median"], &s.median, "median");
            same_opt_real(&m["p10"], &s.p10, "p10");
            same_opt_real(&m["p90"], &s.p90, "p90");
            same_opt_real(&m["share_above_cap"], &s.share_above_cap, "share_above_cap");
        }
        None => assert!(m["mean"].is_null() && m["median"].is_null(), "{field} is no rounded count: {m}"),
    }
}

/// `crosstab` a by b (either order of a declared pair): the stored cells.
fn check_crosstab(x: &Value, r: &Release, a: &str, b: &str) {
    let t = r.crosstabs.iter().find(|t| (t.a == a && t.b == b) || (t.a == b && t.b == a)).unwrap();
    let mut n = 0;
    for c in &t.cells {
        let (row, col) = if t.a == a { (&c.a, &c.b) } else { (&c.b, &c.a) };
        assert_eq!(x["cells"][row][col].as_i64(), Some(c.value), "{a}={row}, {b}={col}: {x}");
        assert_eq!(x["intervals"][row][col], json!({"low": c.low, "high": c.high}), "{a}={row}, {b}={col}");
        n += 1;
    }
    let published: usize = x["cells"].as_object().unwrap().values().map(|l| l.as_object().unwrap().len()).sum();
    assert_eq!(published, n, "only released cells: {x}");
}

/// The CSV export of one week: one row per released cell, each number the
/// stored one.
fn check_csv(csv: &str, releases: &[&Release]) {
    assert!(csv.starts_with(CSV_HEADER), "{csv}");
    assert!(!csv.contains('"'), "nothing here needs quoting: {csv}");
    let mut seen = BTreeSet::new();
    for line in csv[CSV_HEADER.len()..].lines() {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 10, "{line}");
        let r = releases.iter().find(|r| r.product == cols[0]).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(cols[1], r.week, "{line}");
        assert_eq!(cols[2].parse::<i64>().unwrap(), r.reports.value, "{line}");
        let cell = r.fields[cols[3]].iter().find(|c| c.label == cols[4]).unwrap_or_else(|| panic!("not released: {line}"));
        let numbers: Vec<i64> = cols[5..8].iter().map(|n| n.parse().unwrap()).collect();
        assert_eq!(numbers, [cell.value, cell.low, cell.high], "{line}");
        assert_eq!(cols[8].parse::<f64>().unwrap(), r.guarantee.epsilon_per_year, "{line}");
        assert_eq!(cols[9].parse::<f64>().unwrap(), r.guarantee.delta, "{line}");
        assert!(seen.insert((cols[0].to_string(), cols[3].to_string(), cols[4].to_string())), "twice: {line}");
    }
    let cells: usize = releases.iter().map(|r| r.fields.values().map(Vec::len).sum::<usize>()).sum();
    assert_eq!(seen.len(), cells, "every released cell is exported");
}

/// `(value, text)` of every `<data class="count" value="N">text</data>`.
fn counts_in(html: &str) -> Vec<(i64, String)> {
    html.split("<data class=\"count\" value=\"")
        .skip(1)
        .map(|part| {
            let (value, rest) = part.split_once("\">").unwrap();
            (value.parse().unwrap_or_else(|_| panic!("not a count: {value}")), rest[..rest.find("</data>").unwrap()].to_string())
        })
        .collect()
}

/// `value` of every `<data class="real" value="X">`.
fn reals_in(html: &str) -> Vec<f64> {
    html.split("<data class=\"real\" value=\"").skip(1).map(|p| p[..p.find('"').unwrap()].parse().unwrap()).collect()
}

/// A count as printed: the number, or "<high" when its interval reaches 0.
fn printed_as(text: &str, value: i64, low: i64, high: i64) -> bool {
    text == group(value) || (low == 0 && text == format!("&lt;{}", group(high.max(1))))
}

/// The rows of each `<table class="{class}">`: (first cell, rest of the row).
fn table_rows<'a>(html: &'a str, class: &str) -> Vec<(&'a str, &'a str)> {
    let mut rows = vec![];
    for table in html.split(&format!("<table class=\"{class}\">")).skip(1) {
        let table = &table[..table.find("</table>").unwrap()];
        for row in table.split("<tr><td>").skip(1) {
            let (first, rest) = row.split_once("</td>").unwrap();
            rows.push((first, rest));
        }
    }
    rows
}

/// Every `<data class="count">` on the dashboard is a stored number in its
/// place: a week's reports in the means table and the latest week's heading,
/// the registered versions' cells in the adoption table; means and medians
/// are the stored ones.
fn check_dashboard(html: &str, releases: &BTreeMap<String, Release>) {
    let total = counts_in(html).len();
    let mut matched = 0;
    for (week, rest) in table_rows(html, "means") {
        let r = &releases[week];
        let counts = counts_in(rest);
        assert_eq!(counts.len(), 1, "{week}: {rest}");
        assert_eq!(counts[0].0, r.reports.value, "{week}: reports");
        assert!(printed_as(&counts[0].1, r.reports.value, r.reports.low, r.reports.high), "{week}: {counts:?}");
        matched += 1;
        let s = r.means.values().next().unwrap();
        let want: Vec<f64> = [&s.mean, &s.median].into_iter().flatten().map(|x| x.value).collect();
        assert_eq!(reals_in(rest), want, "{week}: mean and median");
    }
    let adoption = table_rows(html, "adoption");
    assert_eq!(adoption.len(), releases.len(), "a row per released week");
    for (week, rest) in adoption {
        let cells = &releases[week].fields["product_version"];
        let counts = counts_in(rest);
        assert_eq!(counts.len(), cells.len(), "{week}: {rest}");
        for ((value, text), c) in counts.iter().zip(cells) {
            assert_eq!(*value, c.value, "{week}: product_version={}", c.label);
            assert!(printed_as(text, c.value, c.low, c.high), "{week}: {text}");
        }
        matched += counts.len();
    }
    let latest = releases.values().last().unwrap();
    let heading = html.split(&format!("(Week {}, ", latest.week)).nth(1).expect("the latest week's heading");
    let counts = counts_in(&heading[..heading.find("</small>").unwrap()]);
    assert_eq!(counts.iter().map(|c| c.0).collect::<Vec<_>>(), [latest.reports.value], "latest week's reports");
    matched += 1;
    assert_eq!(matched, total, "a count on the dashboard that is no stored figure in its place");
    // The bars' and the chart's labels print stored numbers too.
    let mut known: BTreeSet<String> = BTreeSet::new();
    for r in releases.values() {
        known.insert(group(r.reports.value));
        for c in r.fields.values().flatten() {
            known.insert(group(c.value));
            known.insert(format!("&lt;{}", group(c.high.max(1))));
        }
    }
    let tspans: Vec<&str> = html.split("<tspan class=\"count\">").skip(1).map(|p| &p[..p.find("</tspan>").unwrap()]).collect();
    assert!(tspans.len() >= releases.len(), "{tspans:?}");
    for t in tspans {
        assert!(known.contains(t), "the dashboard prints {t}, no stored figure");
    }
}

/// Random reports over three released weeks and the current one; serve
/// releases them on its own; every number any reader sees is the stored
/// release's.
async fn property<S: Store>(store: S) {
    let seed = os_seed();
    let mut g = Gen(seed);
    let (schema, _) = parse_schema(BENCH_SCHEMA).unwrap();
    let id = add_schema(&store, BENCH_SCHEMA).await.unwrap().id;
    let current = Week::of_unix(NOW);
    let weeks: Vec<Week> = (1..=3).rev().map(|i| current.minus(i)).collect();
    register(&store, PRODUCT, &["4.0.1", "4.1.0", "4.2.9"], &weeks[0].to_string()).await;
    for week in weeks.iter().chain([&current]) {
        let bodies: Vec<String> = (0..150 + g.below(300)).map(|_| sample_report(&schema, &mut g)).collect();
        store.insert_reports(rows_of(&schema, id, *week, &bodies)).await.unwrap();
    }
    let options = Options { release: config(), release_interval: Duration::from_millis(100), ..Options::default() };
    let server = serve(store.clone(), options, TestClock::new(NOW).clock()).await;
    let names: Vec<String> = weeks.iter().map(Week::to_string).collect();
    assert_eq!(wait_for_releases(&store, PRODUCT, 3).await, names, "seed {seed:#x}");
    let admin = server.running.admin_addr;
    let mut releases = BTreeMap::new();
    for week in &names {
        releases.insert(week.clone(), stored_release(&store, PRODUCT, week).await);
    }

    assert_eq!(answer(admin, "/api/v1/products").await, json!({"products": [PRODUCT]}));
    assert_eq!(answer(admin, "/api/v1/weeks").await, json!({"weeks": names, "current": current.to_string()}));
    for (week, r) in &releases {
        // The whole release, as stored.
        let stored: Value = serde_json::from_str(&store.release(PRODUCT, week).await.unwrap().unwrap()).unwrap();
        let whole = answer(admin, &format!("/api/v1/release?{Q}&week={week}")).await;
        assert!(same_json(&whole, &stored), "{week}: {whole} != {stored}");
        let f = answer(admin, &format!("/api/v1/fields?{Q}&week={week}")).await;
        check_fields(&f, r);
        for field in &r.order {
            let m = answer(admin, &format!("/api/v1/mean?{Q}&week={week}&field={field}")).await;
            check_mean(&m, r, field);
        }
        assert!(r.means.contains_key("archived") && !r.crosstabs.is_empty(), "every kind of figure is checked");
        for t in &r.crosstabs {
            for (a, b) in [(&t.a, &t.b), (&t.b, &t.a)] {
                let x = answer(admin, &format!("/api/v1/crosstab?{Q}&week={week}&a={a}&b={b}")).await;
                check_crosstab(&x, r, a, b);
            }
        }
        let undeclared = get(admin, &format!("/api/v1/crosstab?{Q}&week={week}&a=edition&b=trial")).await;
        assert_eq!((undeclared.status, undeclared.body.trim()), (404, "{\"error\":\"crosstab_not_released\"}"));
        check_csv(&export(&store, week, "csv").await.unwrap(), &[r]);
        let json: Value = serde_json::from_str(&export(&store, week, "json").await.unwrap()).unwrap();
        assert_eq!(json, json!([f]), "the JSON export is the fields answer");
    }
    // Without a week: the newest release.
    check_fields(&answer(admin, &format!("/api/v1/fields?{Q}")).await, &releases[&names[2]]);
    // The current week has raw reports and no release: nothing about it.
    for path in ["fields", "mean", "crosstab", "release"] {
        let r = get(admin, &format!("/api/v1/{path}?{Q}&week={current}&field=archived&a=trial&b=users")).await;
        assert_eq!((r.status, r.body.trim()), (404, "{\"error\":\"week_not_released\"}"), "{path}");
    }
    assert_eq!(export(&store, &current.to_string(), "csv").await.unwrap(), CSV_HEADER);
    let page = get(admin, "/").await;
    assert_eq!(page.status, 200);
    check_dashboard(&page.body, &releases);
    assert!(!page.body.contains(&format!("<td>{current}</td>")), "the current week is on the dashboard");
    server.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_number_is_the_stored_release() {
    for backend in backends() {
        let db = Db::new(backend).await;
        match backend {
            "sqlite" => property(open_sqlite(&db.sqlite_path().unwrap()).await).await,
            _ => property(open_pg(&db.url).await).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_and_public_mode() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let token = optin_collector::api::Token(Some(b"0123456789abcdef-token".to_vec()));
    for public in [false, true] {
        let options = Options { admin_token: token.clone(), public, ..Options::default() };
        let server = serve(store.clone(), options, TestClock::new(NOW).clock()).await;
        let admin = server.running.admin_addr;
        let ask = |path: &'static str, auth: Option<&'static str>| async move {
            tokio::task::spawn_blocking(move || {
                let h: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
                raw_request(admin, None, "GET", path, &h, b"").status
            })
            .await
            .unwrap()
        };
        assert_eq!(ask("/metrics", None).await, 401);
        assert_eq!(ask("/metrics", Some("Bearer 0123456789abcdef-tokem")).await, 401);
        assert_eq!(ask("/metrics", Some("Bearer 0123456789abcdef-token")).await, 200);
        let open = if public { 200 } else { 401 };
        assert_eq!(ask("/", None).await, open);
        assert_eq!(ask("/api/v1/products", None).await, open);
        assert_eq!(ask("/dashboard.css", None).await, open);
        // No product: the release reads answer 404 once past the token.
        assert_eq!(ask("/api/v1/release?product=x", None).await, if public { 404 } else { 401 });
        assert_eq!(ask("/", Some("Bearer 0123456789abcdef-token")).await, 200);
        server.running.stop().await;
    }
}

#[test]
fn serve_refuses_a_public_admin_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["serve", "--db", &format!("sqlite:{}", dir.path().join("c.db").display()), "--admin-listen", "0.0.0.0:0", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-token-file") && err.lines().count() == 1, "{err}");
}

#[test]
fn demo_runs_a_small_fleet() {
    let out = bin().args(["demo", "--installations", "40", "--weeks", "3", "--no-serve", "--admin-listen", "127.0.0.1:0"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.ends_with("week(s) released")).unwrap_or_else(|| panic!("{text}"));
    let numbers: Vec<i64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert!(numbers.len() == 2 && numbers[0] > 0 && numbers[1] > 0, "the fleet's reports were stored and released: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_escapes_schema_text_and_shows_alerts() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    // A description with markup must arrive as text.
    let hostile = SCHEMA.replace("\"Users\", \"de\": \"Benutzer\"", "\"Users <script>alert(1)</script> & co\", \"de\": \"Benutzer <b>\"");
    add_schema(&store, &hostile).await.unwrap();
    let last_week = Week::of_unix(NOW).minus(1);
    register(&store, PRODUCT, &["5.2.1"], &last_week.to_string()).await;
    let clock = TestClock::new(last_week.start_unix() + 86_400);
    let server = serve(store.clone(), Options::default(), clock.clock()).await;
    server.state.refresh_schemas().await.unwrap();
    let digest = parse_schema(&hostile).unwrap().0.digest;
    // Enough reports for the week to show figures (MIN_REPORTS_FOR_FIGURES).
    for i in 100..220 {
        let body = report(&report_id(i)).replace(&schema().digest, &digest);
        assert_eq!(post(server.ingest(), &body).await.status, 204);
    }
    // An unregistered digest (quarantine) and a rejected report.
    let unknown = report(&report_id(50)).replace(&schema().digest, &format!("sha256:{}", "ab".repeat(32)));
    assert_eq!(post(server.ingest(), &unknown).await.status, 202);
    let bad = report(&report_id(51)).replace(&schema().digest, &digest).replace("\"5-9\"", "\"5-8\"");
    assert_eq!(post(server.ingest(), &bad).await.status, 422);
    clock.set(NOW);
    optin_collector::release::release_due(&store, NOW, &ReleaseConfig::default()).await.unwrap();
    let admin = server.running.admin_addr;
    let page = tokio::task::spawn_blocking(move || raw_request(admin, None, "GET", "/", &[("Accept-Language", "en")], b"")).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Users &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"), "escaped description");
    assert!(!page.body.contains("<script"), "no markup from the schema");
    assert!(page.body.contains(&"ab".repeat(32)), "quarantined digest listed");
    assert!(page.body.contains("<code>bucket_label</code>"), "rejection reason listed");
    let de = tokio::task::spawn_blocking(move || raw_request(admin, None, "GET", "/", &[("Accept-Language", "de-DE,de;q=0.9")], b"")).await.unwrap();
    assert!(de.body.contains("Benutzer &lt;b&gt;") && de.body.contains("Berichte pro Woche"), "German from the schema and the page");
    server.running.stop().await;
}

/// Only complete, released weeks are ever shown, to the vendor as to a
/// public reader: the current week's figures would change with each report
/// received, and two reads one report apart would tell that installation's
/// values. Last week: 12 reports; this week: 15.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reader_sees_the_current_week() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let id = add_schema(&store, SCHEMA).await.unwrap().id;
    let (this_week, last_week) = (Week::of_unix(NOW), Week::of_unix(NOW).minus(1));
    register(&store, PRODUCT, &["5.2.1"], &last_week.to_string()).await;
    let bodies = |from: u64, n: u64| (from..from + n).map(|i| report(&report_id(i))).collect::<Vec<_>>();
    store.insert_reports(rows_of(&schema(), id, last_week, &bodies(0, 12))).await.unwrap();
    store.insert_reports(rows_of(&schema(), id, this_week, &bodies(100, 15))).await.unwrap();
    for public in [false, true] {
        let options = Options { public, release_interval: Duration::from_millis(100), ..Options::default() };
        let server = serve(store.clone(), options, TestClock::new(NOW).clock()).await;
        wait_for_releases(&store, PRODUCT, 1).await;
        let admin = server.running.admin_addr;
        let weeks = answer(admin, "/api/v1/weeks").await;
        assert_eq!(weeks, json!({"weeks": [last_week.to_string()], "current": this_week.to_string()}), "public {public}");
        // Without a week: the newest released one.
        let f = answer(admin, &format!("/api/v1/fields?{Q}")).await;
        assert_eq!(f["week"].as_str(), Some(last_week.to_string().as_str()), "public {public}: {f}");
        for week in [this_week, this_week.minus(-1)] {
            for path in ["fields", "mean", "crosstab", "release"] {
                let q = format!("/api/v1/{path}?{Q}&week={week}&field=archived&a=trial&b=users");
                let r = get(admin, &q).await;
                assert_eq!((r.status, r.body.trim()), (404, "{\"error\":\"week_not_released\"}"), "public {public}: {q}");
            }
        }
        let page = get(admin, "/").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains(&format!("<td>{last_week}</td>")), "public {public}: last week's release is shown");
        assert!(!page.body.contains(&format!("<td>{this_week}</td>")), "public {public}: the current week is shown");
        server.running.stop().await;
    }
    assert_eq!(store.released_weeks(PRODUCT).await.unwrap(), [last_week.to_string()]);
}

/// A release's single-valued histograms end in a cell "other" (unset or
/// unregistered values); a choice value spelt "other" would share its key
/// and one count be lost. Registration refuses such a schema, for choice
/// and choices fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_named_other_is_refused() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let text = r#"{"version": 1, "fields": [{"name": "edition", "type": "choice", "values": ["standard", "other"], "description": {"en": "Edition"}}]}"#;
    for text in [text.to_string(), text.replace(r#""type": "choice""#, r#""type": "choices""#)] {
        let e = add_schema(&store, &text).await.map(|s| s.digest).expect_err("a schema with a value \"other\" was registered");
        assert!(e.contains("\"other\""), "{e}");
    }
    assert!(store.schemas().await.unwrap().is_empty());
}
