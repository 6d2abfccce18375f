//! Differencing across endpoints: a small cell must not follow from
//! subtracting figures that two endpoints publish about the same week (the
//! `fields` answer against `mean` and against `crosstab`). Hand-made data
//! on the real server, k = 10, SQLite and PostgreSQL.

mod common;

use common::*;
use optin_collector::commands::add_schema;
use optin_collector::privacy::{keep, Week};
use optin_collector::storage::Store;
use optin_collector::Options;
use optin_telemetry::validate::{bucket_labels, validate};
use serde_json::Value;

const NOW: i64 = 1_795_000_000; // 2026-W47
const K: i64 = 10;

/// A report for SCHEMA with only the given fields set (`fields` is the inside
/// of the canonical, key-sorted "fields" object).
fn body(id: u64, fields: &str) -> String {
    let s = schema();
    format!(
        r#"{{"arch":"x86_64","fields":{{{fields}}},"format":1,"library_version":"0.1.0","os_family":"linux","os_version":"6.1","product":"Mail Archiver","product_version":"5.2.1","report_id":"{}","schema_digest":"{}","schema_version":2}}"#,
        report_id(id),
        s.digest
    )
}

/// Stores `bodies` as this week's raw reports and serves them with k = 10.
async fn served<S: Store>(store: S, bodies: &[String]) -> Server<S> {
    let id = add_schema(&store, SCHEMA).await.unwrap().id;
    let week = Week::of_unix(NOW);
    let s = schema();
    let rows = bodies.iter().map(|b| keep(&validate(&s, b.as_bytes()).unwrap_or_else(|e| panic!("{e:?}: {b}")), id, week)).collect();
    store.insert_reports(rows).await.unwrap();
    serve(store, Options { min_cell: K, ..Options::default() }, TestClock::new(NOW).clock()).await
}

async fn answer(server: &Server<impl Store>, path: &str) -> Value {
    let r = get(server.running.admin_addr, path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn small(n: i64) -> bool {
    n > 0 && n < K
}

fn number(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// 53 reports: archived 1000 ×25, 2000 ×18, 5,000,000 ×1, unset ×9. `fields`
/// shows 25, 18 and "other" 10; the mean's sample size must not tell how
/// many of those 10 carry a value (nor the mean then that one's value).
async fn mean_next_to_fields<S: Store>(store: S) {
    let mut bodies = vec![];
    let mut id = 0;
    for (value, times) in [(Some(1000), 25), (Some(2000), 18), (Some(5_000_000), 1), (None, 9)] {
        for _ in 0..times {
            id += 1;
            bodies.push(match value {
                Some(v) => body(id, &format!(r#""archived":{v}"#)),
                None => body(id, r#""trial":false"#),
            });
        }
    }
    let server = served(store, &bodies).await;
    let week = Week::of_unix(NOW);
    let f = answer(&server, &format!("/api/v1/fields?product=Mail+Archiver&week={week}")).await;
    let reports = number(&f["reports"]).expect("53 reports are shown");
    let cells = f["fields"]["archived"].as_object().unwrap();
    let shown: i64 = cells.iter().filter(|(l, _)| *l != "other").filter_map(|(_, v)| number(v)).sum();
    for field in ["archived", "users"] {
        let m = answer(&server, &format!("/api/v1/mean?product=Mail+Archiver&week={week}&field={field}")).await;
        assert_eq!(m["histogram"], f["fields"][field], "the mean's histogram is the fields figure: {m}");
        // Whatever sample size the answer states, with the fields figures it
        // must not single out a small group.
        for key in ["reports", "n"] {
            if let Some(n) = m.get(key).and_then(number) {
                assert!(!small(reports - n), "{field}: {key} {n} against {reports} reports: {} unset", reports - n);
                if field == "archived" {
                    assert!(!small(n - shown), "{field}: {key} {n} minus the shown {shown}: {} hidden values", n - shown);
                }
            }
        }
    }
    let m = answer(&server, &format!("/api/v1/mean?product=Mail+Archiver&week={week}&field=archived")).await;
    assert!(m["mean"].is_null() && m.get("ci95").is_none(), "a mean here reveals the one hidden value: {m}");
}

/// archived 1000 x20 (shown), 2000 x9 and 20,000 x1 (merged into "other"):
/// n x mean and the interval give the merged values' sum and sum of squares,
/// which the one 20,000 dominates: no mean.
async fn mean_of_a_dominated_remainder<S: Store>(store: S) {
    let mut bodies = vec![];
    let mut id = 0;
    for (value, times) in [(1000, 20), (2000, 9), (20_000, 1)] {
        for _ in 0..times {
            id += 1;
            bodies.push(body(id, &format!(r#""archived":{value}"#)));
        }
    }
    let server = served(store, &bodies).await;
    let week = Week::of_unix(NOW);
    let f = answer(&server, &format!("/api/v1/fields?product=Mail+Archiver&week={week}")).await;
    assert_eq!(f["fields"]["archived"], serde_json::json!({"1000": 20, "other": 10}), "{f}");
    let m = answer(&server, &format!("/api/v1/mean?product=Mail+Archiver&week={week}&field=archived")).await;
    assert!(m["mean"].is_null() && m.get("ci95").is_none() && m.get("n").is_none(), "the mean points at the one 20,000: {m}");
    let d = get(server.running.admin_addr, "/").await;
    assert!(!d.body.contains("1,933") && !d.body.contains("1933"), "the dashboard shows that mean");
}

/// users: 25 in "25-49", 12 in "50-99", 3 in "100+" (all trial = false), and
/// 5 unset: `fields` shows 25 and merges 12 (complementary rule). The
/// crosstab must not show the 12 (as a row or as a column), nor how many
/// reports have `users` set.
async fn crosstab_next_to_fields<S: Store>(store: S) {
    let labels = bucket_labels(&[1, 5, 10, 25, 50, 100]);
    let label = |lo: &str| labels.iter().find(|l| l.starts_with(lo)).unwrap().clone();
    let (mid, high, top) = (label("25"), label("50"), label("100"));
    let mut bodies = vec![];
    let mut id = 0;
    for (users, times) in [(Some(&mid), 25), (Some(&high), 12), (Some(&top), 3), (None, 5)] {
        for _ in 0..times {
            id += 1;
            bodies.push(match users {
                Some(u) => body(id, &format!(r#""trial":false,"users":"{u}""#)),
                None => body(id, r#""trial":false"#),
            });
        }
    }
    let server = served(store, &bodies).await;
    let week = Week::of_unix(NOW);
    let f = answer(&server, &format!("/api/v1/fields?product=Mail+Archiver&week={week}")).await;
    assert_eq!(f["fields"]["users"].get(&high), None, "fields merges the 12: {f}");
    let shown_users: Vec<String> = f["fields"]["users"].as_object().unwrap().iter().filter(|(l, v)| *l != "other" && v.is_number()).map(|(l, _)| l.clone()).collect();
    let reports = number(&f["reports"]).unwrap();

    // users as rows: only labels fields shows (or "other"); row totals add
    // up to the reports, so nothing tells how many have users set.
    let x = answer(&server, &format!("/api/v1/crosstab?product=Mail+Archiver&week={week}&a=users&b=trial")).await;
    let mut total = 0;
    for (row, cells) in x["cells"].as_object().unwrap() {
        assert!(row == "other" || shown_users.contains(row), "row {row} is hidden in fields: {x}");
        let nums: Vec<Option<i64>> = cells.as_object().unwrap().values().map(number).collect();
        if nums.iter().all(Option::is_some) {
            total += nums.iter().flatten().sum::<i64>();
        } else {
            total = -1;
        }
    }
    assert!(total == -1 || total == reports || !small(reports - total), "rows add up to {total} of {reports}: {x}");

    // users as columns: the same.
    let x = answer(&server, &format!("/api/v1/crosstab?product=Mail+Archiver&week={week}&a=trial&b=users")).await;
    for (_, cells) in x["cells"].as_object().unwrap() {
        for (col, v) in cells.as_object().unwrap() {
            assert!(col == "other" || shown_users.contains(col) || !v.is_number(), "column {col} is hidden in fields: {x}");
        }
    }
}

/// A choice value spelt "other" would share its key with the merged cells:
/// edition standard x25, "other" x15, unset x10 published {"standard": 25,
/// "other": 10}, the 15 overwritten. Registration refuses such a schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_named_other_is_refused() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let text = r#"{"version": 1, "fields": [{"name": "edition", "type": "choice", "values": ["standard", "other"], "description": {"en": "Edition"}}]}"#;
    match add_schema(&store, text).await {
        Err(e) => assert!(e.contains("\"other\""), "{e}"),
        Ok(row) => {
            let (s, _) = optin_collector::commands::parse_schema(text).unwrap();
            let week = Week::of_unix(NOW);
            let mut rows = vec![];
            for (i, edition) in (0..50).map(|i| (i, if i < 25 { Some("standard") } else if i < 40 { Some("other") } else { None })) {
                let fields = edition.map(|e| format!(r#""edition":"{e}""#)).unwrap_or_default();
                let b = format!(
                    r#"{{"arch":"x86_64","fields":{{{fields}}},"format":1,"library_version":"0.1.0","os_family":"linux","os_version":"6.1","product":"P","product_version":"1","report_id":"{}","schema_digest":"{}","schema_version":1}}"#,
                    report_id(i),
                    s.digest
                );
                rows.push(keep(&validate(&s, b.as_bytes()).unwrap(), row.id, week));
            }
            store.insert_reports(rows).await.unwrap();
            let server = serve(store, Options { min_cell: K, ..Options::default() }, TestClock::new(NOW).clock()).await;
            let f = answer(&server, &format!("/api/v1/fields?product=P&week={week}")).await;
            panic!("a schema with a value \"other\" was registered; fields then says {}", f["fields"]["edition"]);
        }
    }
    let text = text.replace(r#""type": "choice""#, r#""type": "choices""#);
    assert!(add_schema(&store, &text).await.is_err(), "choices too");
}

/// Two schema versions list `edition`'s values in different orders; a week
/// with reports of the first only: standard x12, enterprise x12, unset x3.
/// The complementary rule must merge one of the tied 12s; which one must not
/// depend on the version whose order an endpoint happens to use (fields: the
/// week's schemas; crosstab and dashboard: all of them), or together they
/// show both 12s, and with them the 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_are_merged_alike_everywhere() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let v1 = r#"{"version": 1, "fields": [{"name": "edition", "type": "choice", "values": ["standard", "enterprise"], "description": {"en": "Edition"}}]}"#;
    let v2 = r#"{"version": 2, "fields": [{"name": "edition", "type": "choice", "values": ["enterprise", "standard", "smb"], "description": {"en": "Edition"}}]}"#;
    let id1 = add_schema(&store, v1).await.unwrap().id;
    let id2 = add_schema(&store, v2).await.unwrap().id;
    let week = Week::of_unix(NOW).minus(1);
    let body = |s: &optin_telemetry::schema::Schema, i: u64, edition: Option<&str>| {
        let fields = edition.map(|e| format!(r#""edition":"{e}""#)).unwrap_or_default();
        format!(
            r#"{{"arch":"x86_64","fields":{{{fields}}},"format":1,"library_version":"0.1.0","os_family":"linux","os_version":"6.1","product":"P","product_version":"1","report_id":"{}","schema_digest":"{}","schema_version":{}}}"#,
            report_id(i),
            s.digest,
            s.version
        )
    };
    let (s1, _) = optin_collector::commands::parse_schema(v1).unwrap();
    let (s2, _) = optin_collector::commands::parse_schema(v2).unwrap();
    let mut rows = vec![];
    for i in 0..27 {
        let e = [Some("standard"), Some("enterprise"), None][if i < 12 { 0 } else if i < 24 { 1 } else { 2 }];
        rows.push(keep(&validate(&s1, body(&s1, i, e).as_bytes()).unwrap(), id1, week));
    }
    // The product has reports of version 2 in the current week.
    for i in 100..130 {
        rows.push(keep(&validate(&s2, body(&s2, i, Some("smb")).as_bytes()).unwrap(), id2, Week::of_unix(NOW)));
    }
    store.insert_reports(rows).await.unwrap();
    let server = serve(store, Options { min_cell: K, ..Options::default() }, TestClock::new(NOW).clock()).await;
    let f = answer(&server, &format!("/api/v1/fields?product=P&week={week}")).await;
    let shown: Vec<&String> = f["fields"]["edition"].as_object().unwrap().keys().filter(|l| *l != "other").collect();
    assert_eq!(shown.len(), 1, "{f}");
    let x = answer(&server, &format!("/api/v1/crosstab?product=P&week={week}&a=edition&b=arch")).await;
    for row in x["cells"].as_object().unwrap().keys() {
        assert!(row == "other" || row == shown[0], "fields shows {} (and other 15), the crosstab {row}: {x}", shown[0]);
    }
    // The dashboard's trend of that week names the same value.
    let d = get(server.running.admin_addr, "/").await;
    let hidden = if shown[0] == "standard" { "enterprise" } else { "standard" };
    assert!(!d.body.contains(&format!("{week} {hidden}: 12")), "the dashboard shows {hidden}: 12 in {week}, fields {}: 12", shown[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mean_does_not_reveal_a_hidden_value() {
    for backend in backends() {
        let db = Db::new(backend).await;
        match backend {
            "sqlite" => mean_next_to_fields(open_sqlite(&db.sqlite_path().unwrap()).await).await,
            _ => mean_next_to_fields(open_pg(&db.url).await).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mean_does_not_point_at_an_extreme_value() {
    for backend in backends() {
        let db = Db::new(backend).await;
        match backend {
            "sqlite" => mean_of_a_dominated_remainder(open_sqlite(&db.sqlite_path().unwrap()).await).await,
            _ => mean_of_a_dominated_remainder(open_pg(&db.url).await).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crosstab_does_not_undo_complementary_suppression() {
    for backend in backends() {
        let db = Db::new(backend).await;
        match backend {
            "sqlite" => crosstab_next_to_fields(open_sqlite(&db.sqlite_path().unwrap()).await).await,
            _ => crosstab_next_to_fields(open_pg(&db.url).await).await,
        }
    }
}

/// A public reader sees complete weeks only: the live week's figures change
/// with each report received, so two reads one report apart would give away
/// that installation's values. The vendor (with the admin listener) still
/// sees the live week. Last week: 12 reports of version 5.2.1; this week: 15
/// of 5.3.0 (a version that only this week's reports carry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_readers_see_complete_weeks_only() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let id = add_schema(&store, SCHEMA).await.unwrap().id;
    let s = schema();
    let (this_week, last_week) = (Week::of_unix(NOW), Week::of_unix(NOW).minus(1));
    let mut rows = vec![];
    for n in 0..27u64 {
        let (week, b) = if n < 12 {
            (last_week, body(n, r#""trial":false"#))
        } else {
            (this_week, body(n, r#""trial":true"#).replace(r#""product_version":"5.2.1""#, r#""product_version":"5.3.0""#))
        };
        rows.push(keep(&validate(&s, b.as_bytes()).unwrap(), id, week));
    }
    store.insert_reports(rows).await.unwrap();
    let product = "product=Mail%20Archiver";
    for public in [false, true] {
        let server = serve(store.clone(), Options { min_cell: K, public, ..Options::default() }, TestClock::new(NOW).clock()).await;
        let admin = server.running.admin_addr;
        let weeks = answer(&server, "/api/v1/weeks").await;
        let listed: Vec<&str> = weeks["weeks"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(listed.contains(&this_week.to_string().as_str()), !public, "public {public}: {weeks}");
        assert!(listed.contains(&last_week.to_string().as_str()), "{weeks}");
        // Without a week: the newest week shown.
        let f = answer(&server, &format!("/api/v1/fields?{product}")).await;
        let (week, reports) = if public { (last_week, 12) } else { (this_week, 15) };
        assert_eq!((f["week"].as_str(), f["reports"].as_i64()), (Some(week.to_string().as_str()), Some(reports)), "public {public}: {f}");
        for path in ["fields", "mean", "crosstab"] {
            let q = format!("/api/v1/{path}?{product}&week={this_week}&field=archived&a=trial&b=users");
            let r = get(admin, &q).await;
            assert_eq!(r.status, if public { 404 } else { 200 }, "public {public}: {q}: {}", r.body);
            let later = format!("/api/v1/{path}?{product}&week={}&field=archived&a=trial&b=users", this_week.minus(-1));
            assert_eq!(get(admin, &later).await.status, if public { 404 } else { 200 }, "public {public}: {later}");
        }
        let page = get(admin, "/").await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body.contains("5.3.0"), !public, "public {public}: this week's only version on the dashboard");
        assert!(page.body.contains("5.2.1"));
        assert_eq!(page.body.contains(&format!("complete weeks only, up to {last_week}")), public);
        server.running.stop().await;
    }
}
