//! ("Total minus shown is 0 or at least k" holds wherever anything is shown;
//! a line whose total is below k shows nothing.)
//!
//! Aggregates, export and dashboard against SQLite and PostgreSQL: a
//! property test on random data (fixed seed) checks the small-cell rules on
//! every endpoint, the CSV export and the dashboard HTML; the figures shown
//! as numbers equal the true counts; older weeks survive retention; admin
//! access control.

mod common;

use common::*;
use optin_collector::bench::{sample_report, Gen};
use optin_collector::commands::{add_schema, export};
use optin_collector::privacy::{keep, Week};
use optin_collector::retention::purge;
use optin_collector::storage::Store;
use optin_collector::Options;
use optin_telemetry::validate::validate;
use serde_json::Value;
use std::collections::BTreeMap;

/// (field, label) -> true count.
type Cells = BTreeMap<(String, String), i64>;

const NOW: i64 = 1_795_000_000; // 2026-W47
const SINGLE: &[&str] = &["users", "archived", "trial", "edition", "os_family", "os_version", "arch", "product", "product_version", "library_version"];

fn k_ok(v: &Value, k: i64) -> Option<i64> {
    match v {
        Value::Number(n) => {
            let n = n.as_i64().unwrap();
            assert!(n >= k, "a count below k = {k} was published: {n}");
            Some(n)
        }
        Value::String(s) => {
            assert_eq!(s, &format!("<{k}"), "a suppressed count must read \"<{k}\"");
            None
        }
        other => panic!("a count must be a number or \"<k\", got {other}"),
    }
}

/// The rules of the issue on one `fields`-shaped answer.
fn check_fields(a: &Value, truth_reports: i64, truth: &Cells, k: i64) {
    let reports = k_ok(&a["reports"], k);
    assert_eq!(reports.unwrap_or(truth_reports), truth_reports);
    for (field, cells) in a["fields"].as_object().unwrap() {
        let mut shown = 0;
        for (label, v) in cells.as_object().unwrap() {
            let n = k_ok(v, k);
            if label != "other" {
                let n = n.expect("only \"other\" may be \"<k\"");
                assert_eq!(Some(&n), truth.get(&(field.clone(), label.clone())), "{field}={label}");
                shown += n;
            }
        }
        if SINGLE.contains(&field.as_str()) {
            let rest = truth_reports - shown;
            assert!(rest == 0 || rest >= k || shown == 0, "{field}: total {truth_reports} minus shown {shown} = {rest} < k");
        }
    }
}

async fn property<S: Store>(store: S, seed: u64) {
    let (schema, _) = optin_collector::commands::parse_schema(optin_collector::bench::BENCH_SCHEMA).unwrap();
    let id = add_schema(&store, optin_collector::bench::BENCH_SCHEMA).await.unwrap().id;
    let mut g = Gen(seed);
    let current = Week::of_unix(NOW);
    let old = current.minus(20);
    // Old week: rolled up, then its raw reports are deleted (retention).
    let mut truth: BTreeMap<String, (i64, Cells)> = BTreeMap::new();
    for (week, n) in [(old, 40 + g.below(200) as usize), (current, 30 + g.below(300) as usize)] {
        let mut rows = vec![];
        let t = truth.entry(week.to_string()).or_default();
        for _ in 0..n {
            let body = sample_report(&schema, &mut g);
            let v: Value = serde_json::from_str(&body).unwrap();
            t.0 += 1;
            for (f, val) in v["fields"].as_object().unwrap() {
                let labels: Vec<String> = match val {
                    Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                    Value::String(s) => vec![s.clone()],
                    other => vec![other.to_string()],
                };
                for l in labels {
                    *t.1.entry((f.clone(), l)).or_default() += 1;
                }
            }
            for b in ["os_family", "os_version", "arch", "product", "product_version", "library_version"] {
                *t.1.entry((b.to_string(), v[b].as_str().unwrap().to_string())).or_default() += 1;
            }
            rows.push(keep(&validate(&schema, body.as_bytes()).unwrap(), id, week));
        }
        store.insert_reports(rows).await.unwrap();
    }
    let summary = purge(&store, NOW, 13).await.unwrap();
    assert_eq!(summary.weeks_rolled_up, vec![old.to_string()]);
    assert!(summary.reports_deleted > 0, "the old week's raw reports are gone");

    for k in [1i64, 5, 10, 25] {
        let clock = TestClock::new(NOW);
        let server = serve(store.clone(), Options { min_cell: k, ..Options::default() }, clock.clock()).await;
        let admin = server.running.admin_addr;
        let products: Value = serde_json::from_str(&get(admin, "/api/v1/products").await.body).unwrap();
        assert_eq!(products["products"], serde_json::json!(["Mail Archiver"]));
        let weeks: Value = serde_json::from_str(&get(admin, "/api/v1/weeks").await.body).unwrap();
        assert_eq!(weeks["weeks"], serde_json::json!([old.to_string(), current.to_string()]));
        for (week, (reports, cells)) in &truth {
            let r = get(admin, &format!("/api/v1/fields?product=Mail%20Archiver&week={week}")).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let a: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(a["week"], Value::from(week.clone()));
            check_fields(&a, *reports, cells, k);
            // mean: a rounded count has one only from k reports with a value
            // on, and not when its sample size would tell a small count next
            // to the `fields` figure; a bucketed one never.
            let m: Value = serde_json::from_str(&get(admin, &format!("/api/v1/mean?product=Mail+Archiver&week={week}&field=archived")).await.body).unwrap();
            let n: i64 = cells.iter().filter(|((f, _), _)| f == "archived").map(|(_, c)| c).sum();
            let shown: i64 = a["fields"]["archived"].as_object().unwrap().iter().filter(|(l, _)| *l != "other").filter_map(|(_, v)| v.as_i64()).sum();
            let small = |x: i64| x > 0 && x < k;
            if m["mean"].is_number() {
                assert!(n >= k.max(2) && !small(reports - n) && !small(n - shown), "{m}");
            }
            if k == 1 {
                assert_eq!(m["mean"].is_number(), n >= 2, "nothing is merged with k = 1: {m}");
            }
            assert_eq!(m["n"].as_i64(), m["mean"].is_number().then_some(n), "{m}");
            for v in m["histogram"].as_object().unwrap().values() {
                k_ok(v, k);
            }
            let m: Value = serde_json::from_str(&get(admin, &format!("/api/v1/mean?product=Mail+Archiver&week={week}&field=users")).await.body).unwrap();
            assert!(m["mean"].is_null() && m.get("ci95").is_none(), "bucketed: histogram only: {m}");
        }
        // Crosstab (raw weeks): every number >= k; rows and columns keep the
        // complementary rule.
        let r = get(admin, &format!("/api/v1/crosstab?product=Mail+Archiver&week={current}&a=os_family&b=trial")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let x: Value = serde_json::from_str(&r.body).unwrap();
        let t = &truth[&current.to_string()].1;
        let mut col_shown: BTreeMap<String, i64> = BTreeMap::new();
        // Rows not published in `fields` (and reports without the field) make
        // up the "other" row.
        let named: i64 = x["cells"].as_object().unwrap().keys().filter(|r| *r != "other").map(|r| t[&("os_family".to_string(), r.clone())]).sum();
        for (row, cells) in x["cells"].as_object().unwrap() {
            let row_total = if row == "other" { truth[&current.to_string()].0 - named } else { t[&("os_family".to_string(), row.clone())] };
            let mut shown = 0;
            for (col, v) in cells.as_object().unwrap() {
                if let Some(n) = k_ok(v, k) {
                    if col != "other" {
                        shown += n;
                        *col_shown.entry(col.clone()).or_default() += n;
                    }
                }
            }
            assert!(row_total == shown || row_total - shown >= k || shown == 0, "row {row}: {row_total} - {shown}");
        }
        for col in ["true", "false"] {
            let col_total = t.get(&("trial".to_string(), col.to_string())).copied().unwrap_or(0);
            let shown = col_shown.get(col).copied().unwrap_or(0);
            assert!(col_total == shown || col_total - shown >= k || shown == 0, "column {col}: {col_total} - {shown}");
        }
        // Crosstabs with a multi-valued field on either side: every number
        // >= k, and rows and columns only values `fields` shows.
        let f: Value = serde_json::from_str(&get(admin, &format!("/api/v1/fields?product=Mail+Archiver&week={current}")).await.body).unwrap();
        for (a, b) in [("profiles", "edition"), ("edition", "profiles"), ("profiles", "users")] {
            let r = get(admin, &format!("/api/v1/crosstab?product=Mail+Archiver&week={current}&a={a}&b={b}")).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let x: Value = serde_json::from_str(&r.body).unwrap();
            let published = |field: &str, label: &str| label == "other" || f["fields"][field][label].is_number();
            for (row, cells) in x["cells"].as_object().unwrap() {
                assert!(published(a, row), "{a}={row} is a row but not shown in fields");
                for (col, v) in cells.as_object().unwrap() {
                    assert!(published(b, col), "{b}={col} is a column but not shown in fields");
                    k_ok(v, k);
                }
            }
        }
        // Export: the same figures.
        let csv = export(&store, &current.to_string(), "csv", k).await.unwrap();
        for line in csv.lines().skip(1) {
            let count = line.rsplit(',').next().unwrap();
            if count != format!("<{k}") {
                assert!(count.parse::<i64>().unwrap() >= k, "{line}");
            }
        }
        let json: Value = serde_json::from_str(&export(&store, &current.to_string(), "json", k).await.unwrap()).unwrap();
        check_fields(&json[0], truth[&current.to_string()].0, t, k);
        // Dashboard: every count element >= k or "<k"; security headers.
        let d = get(admin, "/").await;
        assert_eq!(d.status, 200);
        let csp = d.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("script"), "{csp}");
        assert!(!d.body.contains("<script"), "no script on the page");
        let mut n = 0;
        for part in d.body.split("class=\"count\"").skip(1) {
            let text = &part[part.find('>').unwrap() + 1..part.find('<').unwrap()];
            n += 1;
            if text != format!("&lt;{k}") {
                assert!(text.replace(',', "").parse::<i64>().unwrap() >= k, "dashboard count {text}");
            }
        }
        assert!(n > 20, "the dashboard shows counts ({n})");
        server.running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_cells_never_published() {
    for backend in backends() {
        for seed in [0x1234_5678_9abc_def1u64, 0x0fed_cba9_8765_4321] {
            let db = Db::new(backend).await;
            match backend {
                "sqlite" => property(open_sqlite(&db.sqlite_path().unwrap()).await, seed).await,
                _ => property(open_pg(&db.url).await, seed).await,
            }
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
    let stored: i64 = text.split("demo: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(stored > 0, "the simulated fleet's reports reached the collector: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_escapes_schema_text_and_shows_alerts() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    // A description with markup must arrive as text.
    let hostile = SCHEMA.replace("\"Users\", \"de\": \"Benutzer\"", "\"Users <script>alert(1)</script> & co\", \"de\": \"Benutzer <b>\"");
    add_schema(&store, &hostile).await.unwrap();
    let server = serve(store.clone(), Options { min_cell: 1, ..Options::default() }, TestClock::new(NOW).clock()).await;
    server.state.refresh_schemas().await.unwrap();
    let digest = optin_collector::commands::parse_schema(&hostile).unwrap().0.digest;
    for i in 0..3 {
        let body = report(&report_id(i)).replace(&schema().digest, &digest);
        assert_eq!(post(server.ingest(), &body).await.status, 204);
    }
    // An unregistered digest (quarantine) and a rejected report.
    let unknown = report(&report_id(50)).replace(&schema().digest, &format!("sha256:{}", "ab".repeat(32)));
    assert_eq!(post(server.ingest(), &unknown).await.status, 202);
    let bad = report(&report_id(51)).replace(&schema().digest, &digest).replace("\"5-9\"", "\"5-8\"");
    assert_eq!(post(server.ingest(), &bad).await.status, 422);
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

#[test]
fn export_command_writes_suppressed_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let week = Week::of_unix(NOW).to_string();
    rt.block_on(async {
        let store = open_sqlite(&dir.path().join("c.db")).await;
        let id = add_schema(&store, SCHEMA).await.unwrap().id;
        let s = schema();
        // 12 reports: trial false 11, true 1 -> complementary: all "other".
        let rows = (0..12)
            .map(|i| {
                let body = if i == 0 { report(&report_id(i)).replace("\"trial\":false", "\"trial\":true") } else { report(&report_id(i)) };
                keep(&validate(&s, body.as_bytes()).unwrap(), id, Week::of_unix(NOW))
            })
            .collect();
        store.insert_reports(rows).await.unwrap();
    });
    let out = bin().args(["--db", &url, "export", "--week", &week, "--format", "csv"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("product,week,reports,field,value,count\n"), "{csv}");
    assert!(csv.contains(&format!("Mail Archiver,{week},12,trial,other,12\n")), "{csv}");
    assert!(!csv.contains(",trial,true,"), "{csv}");
    let out = bin().args(["--db", &url, "export", "--week", &week, "--format", "json", "--min-cell", "20"]).output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["reports"], Value::from("<20"));
    let out = bin().args(["--db", &url, "export", "--week", "2026-48", "--format", "csv"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).lines().count() == 1);
}
