//! Weekly differentially private releases: the intervals cover the true
//! values as often as they claim; a stored release never moves (late,
//! forged and moved-in reports, retention, restarts); reads never touch raw
//! reports; a release is computed once even by two processes at once; only
//! registered products are released or named. SQLite, and PostgreSQL when
//! OPTIN_COLLECTOR_TEST_PG is set.

mod common;

use common::*;
use optin_collector::accuracy::{fleet_rows, product, schemas, true_cell, truth};
use optin_collector::bench::Gen;
use optin_collector::commands::{add_schema, export, parse_schema};
use optin_collector::privacy::Week;
use optin_collector::release::{release_due, Plan, ReleaseConfig, DEFAULT_CAP};
use optin_collector::retention::purge;
use optin_collector::storage::Store;
use optin_collector::Options;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How often each interval covered its true value.
#[derive(Default)]
struct Tally(BTreeMap<String, (usize, usize)>);

impl Tally {
    fn add(&mut self, name: &str, low: f64, truth: f64, high: f64) {
        let e = self.0.entry(name.to_string()).or_default();
        e.0 += usize::from(low <= truth && truth <= high);
        e.1 += 1;
    }
    /// Coverage of one figure, or pooled over the figures whose names start
    /// with `prefix`.
    fn rate(&self, prefix: &str) -> f64 {
        let (hit, all) = self.0.iter().filter(|(k, _)| k.starts_with(prefix)).fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1));
        hit as f64 / all as f64
    }
}

/// Releases of one synthetic week (1,000 installations, values built and
/// rounded by the real library), each with fresh noise from the operating
/// system's generator: the 95 % intervals of the reports count, of every
/// cell of `edition` and `users` and of the capped mean of `archived_items`
/// cover the true value in 90-99 % of the releases; the median's (1-2-5
/// steps, so conservative) in at least 90 %.
///
/// A cell whose true count is 0 has a one-sided interval (clamped at 0)
/// covering it ~97.8 % of the time, so with 300 releases one such cell alone
/// is above 99 % now and then; the upper bound is checked per field, over
/// its cells pooled, and for the reports and the mean on their own. Chance
/// of a spurious failure: about 1e-3 per run.
#[test]
fn intervals_cover_the_true_values() {
    const RUNS: usize = 300;
    let (set, schema) = schemas();
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed).unwrap();
    let seed = u64::from_le_bytes(seed) | 1;
    let rows = fleet_rows(&schema, 1_000, &mut Gen(seed));
    let pos = |name: &str| schema.field(name).unwrap().0;
    let t = truth(&rows, pos("archived_items"), DEFAULT_CAP);
    assert!(t.n > 900 && t.capped_mean > 0.0, "fleet seed {seed:#x}: {t:?}");
    let plan = Plan::new(set, &product(), &ReleaseConfig::default()).unwrap();
    let mut tally = Tally::default();
    for _ in 0..RUNS {
        let r = plan.release("2026-W10", &rows).unwrap();
        tally.add("reports", r.reports.low as f64, rows.len() as f64, r.reports.high as f64);
        for field in ["edition", "users"] {
            let cells = &r.fields[field];
            let mut named = 0;
            for (code, cell) in cells.iter().enumerate() {
                // Cells in declared order, "other" (unset) last.
                let n = if cell.label == "other" { rows.len() as i64 - named } else { true_cell(&rows, pos(field), &code.to_string()) };
                named += n;
                tally.add(&format!("{field}={}", cell.label), cell.low as f64, n as f64, cell.high as f64);
            }
        }
        let s = &r.means["archived_items"];
        let mean = s.mean.as_ref().expect("a mean from ~1,000 values");
        tally.add("capped mean", mean.low, t.capped_mean, mean.high);
        let median = s.median.as_ref().expect("a median from ~1,000 values");
        tally.add("median", median.low, t.median, median.high);
    }
    let rates: Vec<String> = tally.0.keys().map(|k| format!("{k} {:.1} %", tally.rate(k) * 100.0)).collect();
    let report = format!("fleet seed {seed:#x}, {RUNS} releases: {}", rates.join(", "));
    eprintln!("{report}");
    assert_eq!(tally.0.keys().filter(|k| k.starts_with("edition=")).count(), 4, "{report}");
    assert_eq!(tally.0.keys().filter(|k| k.starts_with("users=")).count(), 8, "{report}");
    for name in tally.0.keys() {
        assert!(tally.rate(name) >= 0.90, "{name} covered too rarely: {report}");
    }
    for figure in ["reports", "capped mean", "edition=", "users="] {
        assert!(tally.rate(figure) <= 0.99, "{figure} covered too often (intervals too wide): {report}");
    }
}

const NOW: i64 = 1_795_000_000; // 2026-W47, a Wednesday
const P: &str = "Mail Archiver";
const Q: &str = "product=Mail+Archiver";

fn config() -> ReleaseConfig {
    ReleaseConfig {
        caps: [("archived".to_string(), 5_000)].into(),
        crosstabs: vec![("edition".into(), "trial".into())],
        ..ReleaseConfig::default()
    }
}

fn options(public: bool) -> Options {
    Options { release: config(), release_interval: Duration::from_millis(100), public, ..Options::default() }
}

/// Everything a reader can learn about `product`'s `week`, byte for byte:
/// every API answer about it (with its status), the CSV and JSON export and
/// the dashboard's figures (the page up to the operator's alerts, which
/// list quarantine and rejections, not releases).
async fn snapshot<S: Store>(store: &S, admin: SocketAddr, product: &str, week: &str) -> Vec<(String, String)> {
    let r = stored_release(store, product, week).await;
    let q = format!("product={}", product.replace(' ', "+"));
    let mut paths = vec![
        "/api/v1/products".to_string(),
        "/api/v1/weeks".to_string(),
        format!("/api/v1/weeks?{q}"),
        format!("/api/v1/fields?{q}&week={week}"),
        format!("/api/v1/release?{q}&week={week}"),
    ];
    for field in &r.order {
        paths.push(format!("/api/v1/mean?{q}&week={week}&field={field}"));
    }
    for t in &r.crosstabs {
        paths.push(format!("/api/v1/crosstab?{q}&week={week}&a={}&b={}", t.a, t.b));
        paths.push(format!("/api/v1/crosstab?{q}&week={week}&a={}&b={}", t.b, t.a));
    }
    let mut out = vec![];
    for path in paths {
        let a = get(admin, &path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        out.push((path, a.body));
    }
    for format in ["csv", "json"] {
        out.push((format!("export --format {format}"), export(store, week, format).await.unwrap()));
    }
    let page = get(admin, "/").await;
    assert_eq!(page.status, 200);
    let figures = page.body.split("<h2>Alerts</h2>").next().unwrap().to_string();
    assert!(figures.contains(&format!("<td>{week}</td>")), "the week is on the dashboard");
    out.push(("/".into(), figures));
    out
}

fn assert_same(before: &[(String, String)], after: &[(String, String)], when: &str) {
    assert_eq!(before.len(), after.len(), "{when}");
    for ((path, a), (_, b)) in before.iter().zip(after) {
        assert!(a == b, "{when}: {path} changed:\n{a}\n{b}");
    }
}

/// A report for SCHEMA with other values than `report()`'s.
fn other_values(id: &str) -> String {
    report(id).replace("\"profiles\"", "\"edition\":\"enterprise\",\"profiles\"").replace("\"trial\":false", "\"trial\":true").replace("\"5-9\"", "\"50-99\"")
}

/// After its release, a week's figures never move: not with late reports
/// (a process whose clock lags), a forged second report of an installation,
/// reports moved in from quarantine once their schema is registered, a
/// purge deleting the week's raw reports, nor a restart on the same
/// database.
async fn never_moves<S: Store, F: std::future::Future<Output = S>>(open: impl Fn() -> F) {
    let store = open().await;
    let id = add_schema(&store, SCHEMA).await.unwrap().id;
    let week = Week::of_unix(NOW).minus(1);
    let w = week.to_string();
    register(&store, P, &["5.2.1"], &w).await;
    // During the week: 120 reports over HTTP (enough for figures,
    // MIN_REPORTS_FOR_FIGURES), 5 of a schema not registered yet
    // (quarantined).
    let clock = TestClock::new(week.start_unix() + 2 * 86_400);
    let server = serve(store.clone(), options(false), clock.clock()).await;
    for i in 0..120 {
        let body = if i % 3 == 0 { other_values(&report_id(i)) } else { report(&report_id(i)) };
        assert_eq!(post(server.ingest(), &body).await.status, 204);
    }
    let v3 = SCHEMA.replace("\"version\": 2", "\"version\": 3");
    let v3_digest = parse_schema(&v3).unwrap().0.digest;
    let quarantined = |i: u64| report(&report_id(i)).replace(&schema().digest, &v3_digest).replace("\"schema_version\":2", "\"schema_version\":3");
    for i in 200..205 {
        assert_eq!(post(server.ingest(), &quarantined(i)).await.status, 202);
    }
    // The week ends; serve releases it on its own.
    clock.set(NOW);
    assert_eq!(wait_for_releases(&store, P, 1).await, std::slice::from_ref(&w));
    let stored = store.release(P, &w).await.unwrap().unwrap();
    let admin = server.running.admin_addr;
    let before = snapshot(&store, admin, P, &w).await;
    assert_same(&before, &snapshot(&store, admin, P, &w).await, "read twice");

    // Late reports, stored in the week by a process whose clock lags.
    let late: Vec<String> = (300..310).map(|i| other_values(&report_id(i))).collect();
    assert_eq!(store.insert_reports(rows_of(&schema(), id, week, &late)).await.unwrap(), 10);
    // A forged second report of installation 1, other values, received (the
    // clock read a second before the week ended) in the week.
    clock.set(week.minus(-1).start_unix() - 1);
    assert_eq!(post(server.ingest(), &other_values(&report_id(400))).await.status, 204);
    clock.set(NOW);
    // The quarantined reports move in, into the week they arrived in.
    assert_eq!(add_schema(&store, &v3).await.unwrap().moved_in, 5);
    assert_eq!(store.release_rows(&w, P).await.unwrap().len(), 120 + 10 + 1 + 5, "the week has every report");
    assert_same(&before, &snapshot(&store, admin, P, &w).await, "after late, forged and moved-in reports");

    // Retention deletes every raw report of the week; nothing is released anew.
    let purged = purge(&store, NOW, 0, &config()).await.unwrap();
    assert_eq!((purged.weeks_released.len(), purged.reports_deleted), (0, 136), "{purged:?}");
    assert_same(&before, &snapshot(&store, admin, P, &w).await, "after purge");

    // A restart on the same database.
    server.running.stop().await;
    let store = open().await;
    let server = serve(store.clone(), options(false), clock.clock()).await;
    // Let the new releaser look at least once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_same(&before, &snapshot(&store, server.running.admin_addr, P, &w).await, "after a restart");
    assert_eq!(store.release(P, &w).await.unwrap().as_deref(), Some(stored.as_str()), "the stored release");
    assert_eq!(store.released_weeks(P).await.unwrap(), [w]);
    server.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_week_never_moves() {
    for backend in backends() {
        let db = Db::new(backend).await;
        match backend {
            "sqlite" => {
                let path = db.sqlite_path().unwrap();
                never_moves(|| open_sqlite(&path)).await
            }
            _ => never_moves(|| open_pg(&db.url)).await,
        }
    }
}

/// Serving reads only stored releases: through a store that counts the
/// calls reading raw reports, the release reads the week's reports of its
/// product once, and every API answer, the export and the dashboard read
/// none; with every raw report deleted they answer the same.
async fn reads_only_releases<S: Store>(inner: S) {
    let store = Counting::new(inner);
    let id = add_schema(&store, SCHEMA).await.unwrap().id;
    let week = Week::of_unix(NOW).minus(1);
    let w = week.to_string();
    register(&store, P, &["5.2.1"], &w).await;
    let bodies = |from: u64, n: u64| (from..from + n).map(|i| if i % 2 == 0 { report(&report_id(i)) } else { other_values(&report_id(i)) }).collect::<Vec<_>>();
    store.insert_reports(rows_of(&schema(), id, week, &bodies(0, 150))).await.unwrap();
    let others: Vec<String> = bodies(1000, 20).iter().map(|b| b.replace(P, "Other Product")).collect();
    store.insert_reports(rows_of(&schema(), id, week, &others)).await.unwrap();
    // This week's reports: not due yet.
    store.insert_reports(rows_of(&schema(), id, week.minus(-1), &bodies(2000, 7))).await.unwrap();

    let server = serve(store.clone(), options(false), TestClock::new(NOW).clock()).await;
    wait_for_releases(&store, P, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.rows_read(), [(w.clone(), P.to_string(), 150)], "one release, of this product's week");
    assert_eq!(store.raw_reads(), (1, 0));
    let admin = server.running.admin_addr;
    let before = snapshot(&store, admin, P, &w).await;
    for lang in ["en", "de"] {
        let page = tokio::task::spawn_blocking(move || raw_request(admin, None, "GET", "/", &[("Accept-Language", lang)], b"")).await.unwrap();
        assert_eq!(page.status, 200);
    }
    assert_eq!(store.raw_reads(), (1, 0), "serving a read touched raw reports");

    assert_eq!(store.delete_reports_before(&week.minus(-2).to_string()).await.unwrap(), 177);
    assert_eq!(store.count_reports().await.unwrap(), 0);
    assert_same(&before, &snapshot(&store, admin, P, &w).await, "without raw reports");
    assert_eq!(store.raw_reads(), (1, 0));
    server.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_touch_raw_reports() {
    for backend in backends() {
        let db = Db::new(backend).await;
        match backend {
            "sqlite" => reads_only_releases(open_sqlite(&db.sqlite_path().unwrap()).await).await,
            _ => reads_only_releases(open_pg(&db.url).await).await,
        }
    }
}

/// The claim on a release: taken once, taken over only once it expired
/// (its process died), never once the release is stored; a stored release
/// is never replaced. Two releasers at once store each week once.
async fn claims<S: Store>(store: S) {
    let w = "2026-W46";
    assert!(store.claim_release(P, w, 1000, 900).await.unwrap());
    assert!(!store.claim_release(P, w, 1001, 900).await.unwrap(), "a held claim was taken again");
    assert!(!store.claim_release(P, w, 1899, 900).await.unwrap(), "a held claim was taken again");
    assert_eq!(store.release(P, w).await.unwrap(), None, "a claim is no release");
    assert!(store.released_weeks(P).await.unwrap().is_empty());
    // Other weeks and products have claims of their own.
    assert!(store.claim_release(P, "2026-W45", 1001, 900).await.unwrap());
    assert!(store.claim_release("Other Product", w, 1001, 900).await.unwrap());
    // The claim of a process that died is taken over once it expires.
    assert!(store.claim_release(P, w, 1901, 900).await.unwrap());
    assert!(!store.claim_release(P, w, 1902, 900).await.unwrap());
    assert!(store.store_release(P, w, "{\"first\":1}").await.unwrap());
    assert!(!store.store_release(P, w, "{\"second\":2}").await.unwrap(), "a stored release was replaced");
    assert!(!store.claim_release(P, w, 1_000_000, 900).await.unwrap(), "a stored release was claimed again");
    assert!(!store.store_release(P, "2026-W40", "{}").await.unwrap(), "a release stored without a claim");
    assert_eq!(store.release(P, w).await.unwrap().as_deref(), Some("{\"first\":1}"));
    assert_eq!(store.released_weeks(P).await.unwrap(), [w]);
    assert_eq!(store.releases(P).await.unwrap(), [(w.to_string(), "{\"first\":1}".to_string())]);

    // release_due, twice at once and once more: every due week once.
    let id = add_schema(&store, SCHEMA).await.unwrap().id;
    let first = Week::parse("2026-W30").unwrap();
    register(&store, "Racing Product", &[], &first.to_string()).await;
    let bodies: Vec<String> = (0..50).map(|i| report(&report_id(i)).replace(P, "Racing Product")).collect();
    store.insert_reports(rows_of(&schema(), id, first, &bodies)).await.unwrap();
    let racer = |store: S| tokio::spawn(async move { release_due(&store, NOW, &config()).await.unwrap() });
    let (a, b) = (racer(store.clone()), racer(store.clone()));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let mut weeks: Vec<String> = a.released.iter().chain(&b.released).filter(|r| r.0 == "Racing Product").map(|r| r.1.clone()).collect();
    weeks.sort();
    let due: Vec<String> = (1..=17).rev().map(|i| Week::of_unix(NOW).minus(i).to_string()).collect();
    assert_eq!(weeks, due, "each due week released once");
    let stored = store.releases("Racing Product").await.unwrap();
    assert_eq!(stored.len(), 17);
    let again = release_due(&store, NOW, &config()).await.unwrap();
    assert!(again.released.iter().all(|r| r.0 != "Racing Product") && again.skipped == 0, "{again:?}");
    assert_eq!(store.releases("Racing Product").await.unwrap(), stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_claimed_and_stored_once() {
    for backend in backends() {
        let db = Db::new(backend).await;
        match backend {
            "sqlite" => claims(open_sqlite(&db.sqlite_path().unwrap()).await).await,
            _ => claims(open_pg(&db.url).await).await,
        }
    }
}

/// Only registered products are released and named anywhere (API,
/// dashboard, export; admin and public); `product add` takes only names and
/// versions the library accepts; registered versions have cells of their
/// own in `product_version`, others count as "other".
async fn registered_only<S: Store>(inner: S) {
    let store = Counting::new(inner);
    let id = add_schema(&store, SCHEMA).await.unwrap().id;
    let week = Week::of_unix(NOW).minus(1);
    let w = week.to_string();
    let long = "x".repeat(65);
    let refused: [(&str, &[&str], Option<&str>); 14] = [
        ("", &[], None),
        (&long, &[], None),
        ("Mail/Archiver", &[], None),
        (" Mail Archiver", &[], None),
        ("Mail <b>Archiver</b>", &[], None),
        ("Mäil Archiver", &[], None),
        (P, &["5.2.1-beta"], None),
        (P, &["v5"], None),
        (P, &["5,2"], None),
        (P, &["1.2.3.4.5"], None),
        (P, &["1234567890"], None),
        (P, &[""], None),
        (P, &[], Some("2026-48")),
        (P, &[], Some("2026-W54")),
    ];
    for (name, versions, since) in refused {
        let versions: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
        let r = optin_collector::commands::add_product(&store, name, &versions, since, NOW).await;
        assert!(r.is_err(), "product add {name:?} {versions:?} {since:?} was accepted");
    }
    assert!(store.products().await.unwrap().is_empty(), "a refused product add registered something");
    register(&store, P, &["5.2.1", "5.3.0"], &w).await;

    // 600 reports of registered 5.2.1, 600 of unregistered 4.9, none of
    // 5.3.0, and 400 of a product nobody registered.
    let version = |i: u64, v: &str| report(&report_id(i)).replace("\"5.2.1\"", &format!("\"{v}\""));
    let mut bodies: Vec<String> = (0..600).map(|i| version(i, "5.2.1")).collect();
    bodies.extend((1000..1600).map(|i| version(i, "4.9")));
    bodies.extend((2000..2400).map(|i| version(i, "7.7.7").replace(P, "Secret Product")));
    store.insert_reports(rows_of(&schema(), id, week, &bodies)).await.unwrap();
    let done = release_due(&store, NOW, &config()).await.unwrap();
    assert_eq!(done.released.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect::<Vec<_>>(), [(P, w.as_str())]);
    assert_eq!(store.rows_read(), [(w.clone(), P.to_string(), 1200)], "the release read this product's reports only");
    let r = stored_release(&store, P, &w).await;
    let cells: Vec<(&str, i64)> = r.fields["product_version"].iter().map(|c| (c.label.as_str(), c.value)).collect();
    assert_eq!(cells.iter().map(|c| c.0).collect::<Vec<_>>(), ["5.2.1", "5.3.0", "other"], "{cells:?}");
    // The noise's standard deviation here is about 32: 300 is > 9 of them
    // from both 0 and 600.
    assert!(cells[0].1 > 300 && cells[1].1 < 300 && cells[2].1 > 300, "5.2.1 ~600, 5.3.0 ~0, other (4.9) ~600: {cells:?}");

    for public in [false, true] {
        let server = serve(store.clone(), options(public), TestClock::new(NOW).clock()).await;
        let admin = server.running.admin_addr;
        assert_eq!(get(admin, "/api/v1/products").await.body.trim(), format!("{{\"products\":[\"{P}\"]}}"));
        for path in ["fields", "mean", "crosstab", "release"] {
            let r = get(admin, &format!("/api/v1/{path}?product=Secret+Product&week={w}&field=archived&a=edition&b=trial")).await;
            assert_eq!((r.status, r.body.trim()), (404, "{\"error\":\"unknown_product\"}"), "public {public}: {path}");
        }
        let weeks: Value = serde_json::from_str(&get(admin, "/api/v1/weeks?product=Secret+Product").await.body).unwrap();
        assert_eq!(weeks["weeks"], json!([]), "public {public}");
        let f: Value = serde_json::from_str(&get(admin, &format!("/api/v1/fields?{Q}&week={w}")).await.body).unwrap();
        let labels: Vec<&String> = f["fields"]["product_version"].as_object().unwrap().keys().collect();
        assert_eq!(labels, ["5.2.1", "5.3.0", "other"], "public {public}");
        let page = get(admin, "/").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("<h2>Mail Archiver</h2>"), "public {public}");
        for secret in ["Secret", "7.7.7", "4.9<", ">4.9"] {
            assert!(!page.body.contains(secret), "public {public}: {secret} on the dashboard");
        }
        server.running.stop().await;
    }
    let csv = export(&store, &w, "csv").await.unwrap();
    let json = export(&store, &w, "json").await.unwrap();
    assert!(csv.contains(&format!("{P},{w},")), "{csv}");
    assert!(!csv.contains("Secret") && !csv.contains(",4.9,") && !csv.contains("7.7.7"), "{csv}");
    assert!(!json.contains("Secret") && !json.contains("\"4.9\"") && !json.contains("7.7.7"), "{json}");
    assert!(store.released_weeks("Secret Product").await.unwrap().is_empty());

    // A version registered later has a cell of its own from the next
    // release on; the stored release keeps its cells.
    let before = store.release(P, &w).await.unwrap();
    let p = optin_collector::commands::add_product(&store, P, &["5.4.0".to_string(), "5.2.1".to_string()], None, NOW).await.unwrap();
    assert_eq!((p.first_week.as_str(), p.versions.join(" ")), (w.as_str(), "5.2.1 5.3.0 5.4.0".to_string()));
    release_due(&store, NOW + 7 * 86_400, &config()).await.unwrap();
    let next = stored_release(&store, P, &week.minus(-1).to_string()).await;
    let labels: Vec<&str> = next.fields["product_version"].iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["5.2.1", "5.3.0", "5.4.0", "other"]);
    assert_eq!(store.release(P, &w).await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_registered_products_are_released_or_named() {
    for backend in backends() {
        let db = Db::new(backend).await;
        match backend {
            "sqlite" => registered_only(open_sqlite(&db.sqlite_path().unwrap()).await).await,
            _ => registered_only(open_pg(&db.url).await).await,
        }
    }
}
