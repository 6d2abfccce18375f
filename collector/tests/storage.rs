//! One storage story, run against SQLite and PostgreSQL: reports, duplicates,
//! what a release reads, releases before retention, retention. For SQLite
//! the database files (WAL included) are then searched for the deleted
//! report ids.

mod common;

use common::*;
use optin_collector::commands::add_schema;
use optin_collector::privacy::{keep, Week};
use optin_collector::retention::purge;
use optin_collector::release::{Release, ReleaseConfig};
use optin_collector::storage::Store;
use optin_collector::Options;
use optin_telemetry::validate::validate;

const WEEK_A: i64 = 1_795_000_000; // 2026-W47

async fn story<S: Store>(store: S, files: impl Fn() -> Vec<std::path::PathBuf>) {
    let clock = TestClock::new(WEEK_A);
    let server = serve(store.clone(), Options::default(), clock.clock()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    assert_eq!(add_schema(&store, SCHEMA).await.unwrap().id, store.schemas().await.unwrap()[0].id, "adding twice is harmless");
    server.state.refresh_schemas().await.unwrap();
    register(&store, "Mail Archiver", &["5.2.1"], "2026-W47").await;
    let at = server.ingest();

    // Week A: 5 reports (one a variant), posted over HTTP.
    let old_ids: Vec<String> = (0..5).map(report_id).collect();
    for (i, id) in old_ids.iter().enumerate() {
        let body = if i == 0 { report(id).replace("\"trial\":false", "\"trial\":true") } else { report(id) };
        assert_eq!(post(at, &body).await.status, 204);
    }
    // Another product's report in the same week: never in this product's rows.
    let other = report(&report_id(7)).replace("Mail Archiver", "Other Product");
    assert_eq!(post(at, &other).await.status, 204);
    // 14 weeks later: 2 more.
    clock.set(WEEK_A + 14 * 7 * 86_400);
    let new_ids: Vec<String> = (100..102).map(report_id).collect();
    for id in &new_ids {
        assert_eq!(post(at, &report(id)).await.status, 204);
    }
    assert_eq!(store.count_reports().await.unwrap(), 8);
    assert_eq!(store.report_weeks().await.unwrap(), vec!["2026-W47".to_string(), "2027-W08".to_string()]);
    // What a release reads of week A: this product's 5 reports, one row
    // each: schema id, the built-ins, the codes.
    let schema_id = store.schemas().await.unwrap()[0].id;
    let mut rows = store.release_rows("2026-W47", "Mail Archiver").await.unwrap();
    rows.sort();
    let sep = optin_collector::release::SEP.to_string();
    let codes = |trial: bool| keep(&validate(&schema(), report(&report_id(1)).replace("\"trial\":false", &format!("\"trial\":{trial}")).as_bytes()).unwrap(), schema_id, Week::of_unix(WEEK_A)).codes;
    let row = |trial: bool| [schema_id.to_string(), "linux".into(), "6.1".into(), "x86_64".into(), "5.2.1".into(), "0.1.0".into(), codes(trial)].join(&sep);
    let mut want = vec![row(false), row(false), row(false), row(false), row(true)];
    want.sort();
    assert_eq!(rows, want);
    assert!(store.release_rows("2026-W48", "Mail Archiver").await.unwrap().is_empty());
    assert_eq!(store.release_rows("2026-W47", "Other Product").await.unwrap().len(), 1);

    // Before retention, the old ids are in the files (the search works).
    let has = |id: &str| {
        let raw: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap()).collect();
        files().iter().any(|f| {
            let bytes = std::fs::read(f).unwrap_or_default();
            contains(&bytes, id.as_bytes()) || contains(&bytes, &raw)
        })
    };
    if !files().is_empty() {
        assert!(has(&old_ids[1]), "the search must find a stored id");
    }

    // Retention (13 weeks): every due week of the product is released
    // first (2026-W47 up to the week before the current one), then week A's
    // raw reports go.
    let config = ReleaseConfig::default();
    let summary = purge(&store, WEEK_A + 14 * 7 * 86_400, 13, &config).await.unwrap();
    let released: Vec<String> = (0..14).rev().map(|i| Week::parse("2027-W08").unwrap().minus(i + 1).to_string()).collect();
    assert_eq!(summary.weeks_released, released.iter().map(|w| ("Mail Archiver".to_string(), w.clone())).collect::<Vec<_>>());
    assert_eq!(summary.reports_deleted, 6);
    assert_eq!(store.count_reports().await.unwrap(), 2);
    assert_eq!(store.released_weeks("Mail Archiver").await.unwrap(), released);
    assert!(store.released_weeks("Other Product").await.unwrap().is_empty(), "an unregistered product is never released");
    let stored = store.releases("Mail Archiver").await.unwrap();
    let a = Release::from_json(&store.release("Mail Archiver", "2026-W47").await.unwrap().unwrap()).unwrap();
    assert_eq!((a.product.as_str(), a.week.as_str()), ("Mail Archiver", "2026-W47"));
    assert_eq!(a.fields["product_version"].iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["5.2.1", "other"]);
    // Deleted reports leave no bytes behind in the database files.
    for id in &old_ids {
        assert!(!has(id), "deleted report {id} still in the database files");
    }
    for id in &new_ids {
        assert!(store.report(hex(id)).await.unwrap().is_some());
    }
    // A second purge has nothing to do; the releases stay as they were.
    let again = purge(&store, WEEK_A + 14 * 7 * 86_400, 13, &config).await.unwrap();
    assert_eq!((again.weeks_released.len(), again.reports_deleted), (0, 0));
    assert_eq!(store.releases("Mail Archiver").await.unwrap(), stored);
    server.running.stop().await;
}

fn hex(id: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_story_sqlite() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let files_of = store.clone();
    story(store, move || files_of.files()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_story_postgres() {
    if pg_url().is_none() {
        eprintln!("note: {PG_ENV} not set; PostgreSQL not tested here");
        return;
    }
    let db = Db::new("postgres").await;
    // PostgreSQL's files belong to the server's data directory (and its WAL
    // keeps recent inserts until segments are recycled); rows are checked.
    story(open_pg(&db.url).await, Vec::new).await;
}

/// Quarantined bodies older than 30 days go; the week is all that is known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_expires() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let caps = Default::default();
    let monday = Week::parse("2026-W47").unwrap().start_unix();
    store.quarantine(&format!("sha256:{}", "1".repeat(64)), "2026-W47", b"{}", caps).await.unwrap();
    // 28 days after that Monday: kept; 29: gone.
    purge(&store, monday + 28 * 86_400, 13, &ReleaseConfig::default()).await.unwrap();
    assert_eq!(store.quarantine_summary().await.unwrap().len(), 1);
    let s = purge(&store, monday + 29 * 86_400, 13, &ReleaseConfig::default()).await.unwrap();
    assert_eq!(s.quarantine_deleted, 1);
    assert!(store.quarantine_summary().await.unwrap().is_empty());
}

/// What is stored decodes back to exactly the accepted report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_codes_round_trip() {
    let s = schema();
    let report = validate(&s, report(&report_id(1)).as_bytes()).unwrap();
    let row = keep(&report, 1, Week::parse("2026-W47").unwrap());
    assert_eq!(optin_collector::privacy::decode_codes(&s, &row.codes).unwrap(), report.fields);
    assert!(row.codes.len() < 16, "{}", row.codes);
}

/// PostgreSQL's heap keeps rows in arrival order; every purge rewrites the
/// table in report_id order, even when nothing was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_purge_rewrites_rows_in_key_order() {
    if pg_url().is_none() {
        eprintln!("note: {PG_ENV} not set; PostgreSQL not tested here");
        return;
    }
    let db = Db::new("postgres").await;
    let store = open_pg(&db.url).await;
    add_schema(&store, SCHEMA).await.unwrap();
    let s = schema();
    let week = Week::of_unix(WEEK_A);
    // Arrival order: descending ids.
    let rows: Vec<_> = (0..50u64)
        .rev()
        .map(|n| keep(&validate(&s, report(&report_id(n)).as_bytes()).unwrap(), 1, week))
        .collect();
    for row in rows {
        store.insert_report(row).await.unwrap();
    }
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let heap_order = || async {
        // A sequential scan returns rows in their physical order.
        client.batch_execute("SET enable_indexscan = off; SET enable_bitmapscan = off").await.unwrap();
        let rows = client.query("SELECT report_id FROM reports", &[]).await.unwrap();
        rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect::<Vec<_>>()
    };
    let before = heap_order().await;
    assert!(before.windows(2).all(|w| w[0] > w[1]), "the heap follows arrival (the check below can fail)");
    let summary = purge(&store, WEEK_A, 13, &ReleaseConfig::default()).await.unwrap();
    assert_eq!(summary.reports_deleted, 0);
    let after = heap_order().await;
    assert_eq!(after.len(), 50);
    assert!(after.windows(2).all(|w| w[0] < w[1]), "rows rewritten in key order");
}

/// A row's xmin (the id of the transaction that wrote it) numbers the rows
/// in arrival order and survives CLUSTER (PostgreSQL keeps the raw xmin even
/// of frozen tuples). After a purge, every report and quarantined body must
/// carry the same xmin, so that it orders nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_purge_leaves_no_arrival_order_in_xmin() {
    if pg_url().is_none() {
        eprintln!("note: {PG_ENV} not set; PostgreSQL not tested here");
        return;
    }
    let db = Db::new("postgres").await;
    let store = open_pg(&db.url).await;
    add_schema(&store, SCHEMA).await.unwrap();
    let s = schema();
    let week = Week::of_unix(WEEK_A);
    for n in 0..20u64 {
        store.insert_report(keep(&validate(&s, report(&report_id(n)).as_bytes()).unwrap(), 1, week)).await.unwrap();
        let caps = optin_collector::storage::QuarantineCaps::default();
        store.quarantine(&format!("sha256:{}", "0".repeat(64)), &week.to_string(), b"{}", caps).await.unwrap();
    }
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let distinct_xmin = |table: &'static str| {
        let client = &client;
        async move {
            let sql = format!("SELECT count(DISTINCT xmin::text) FROM {table}");
            client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0)
        }
    };
    assert_eq!(distinct_xmin("reports").await, 20, "one transaction per arrival (the check below can fail)");
    assert_eq!(distinct_xmin("quarantine").await, 20);
    purge(&store, WEEK_A, 13, &ReleaseConfig::default()).await.unwrap();
    assert_eq!(store.count_reports().await.unwrap(), 20);
    assert_eq!(distinct_xmin("reports").await, 1, "xmin still tells the reports' arrival order");
    assert_eq!(distinct_xmin("quarantine").await, 1, "xmin still tells the quarantined bodies' arrival order");
}

/// With a short retention, a week can be released and its raw reports
/// deleted while reports of that week still wait in quarantine. Moving them
/// in later stores them, but the week's release stays what it was: it is
/// never computed again (from whatever raw reports are left, or at all).
async fn late_move_in_leaves_the_release_as_it_was<S: Store>(store: S) {
    let store = Counting::new(store);
    let week = Week::of_unix(WEEK_A);
    let s = schema();
    add_schema(&store, SCHEMA).await.unwrap();
    register(&store, "Mail Archiver", &[], &week.to_string()).await;
    let id = store.schemas().await.unwrap()[0].id;
    for n in 0..3u64 {
        store.insert_report(keep(&validate(&s, report(&report_id(n)).as_bytes()).unwrap(), id, week)).await.unwrap();
    }
    // Two bodies (one sent twice, a retry) of a schema not registered yet.
    let other = SCHEMA.replace("\"version\": 2", "\"version\": 3");
    let other_digest = optin_collector::commands::parse_schema(&other).unwrap().0.digest;
    let q = |n: u64| {
        report(&report_id(n)).replace(&s.digest, &other_digest).replace("\"schema_version\":2", "\"schema_version\":3")
    };
    for n in [10, 11, 11] {
        assert!(store.quarantine(&other_digest, &week.to_string(), q(n).as_bytes(), Default::default()).await.unwrap());
    }
    // Two weeks on, with one week of retention: released, raw deleted.
    let later = WEEK_A + 14 * 86_400;
    let config = ReleaseConfig::default();
    let first = purge(&store, later, 1, &config).await.unwrap();
    let (a, b) = (week.to_string(), week.minus(-1).to_string());
    let p = "Mail Archiver".to_string();
    assert_eq!((first.weeks_released, first.reports_deleted), (vec![(p.clone(), a.clone()), (p.clone(), b.clone())], 3));
    assert_eq!(store.rows_read(), [(a.clone(), p.clone(), 3), (b.clone(), p.clone(), 0)], "each release read its week's reports");
    let released = store.release(&p, &a).await.unwrap().unwrap();
    // The schema is registered; its quarantined reports move in.
    let added = add_schema(&store, &other).await.unwrap();
    assert_eq!(added.moved_in, 2);
    assert_eq!(store.count_reports().await.unwrap(), 2);
    let again = purge(&store, later, 1, &config).await.unwrap();
    assert!(again.weeks_released.is_empty(), "{again:?}");
    assert_eq!(store.release(&p, &a).await.unwrap().as_deref(), Some(released.as_str()), "the week's release changed");
    assert_eq!(store.raw_reads().0, 2, "no release was computed again");
    assert_eq!(store.count_reports().await.unwrap(), 0, "the moved-in reports are past retention too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_move_in_leaves_the_release_as_it_was_sqlite() {
    let db = Db::new("sqlite").await;
    late_move_in_leaves_the_release_as_it_was(open_sqlite(&db.sqlite_path().unwrap()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_move_in_leaves_the_release_as_it_was_postgres() {
    if pg_url().is_none() {
        eprintln!("note: {PG_ENV} not set; PostgreSQL not tested here");
        return;
    }
    let db = Db::new("postgres").await;
    late_move_in_leaves_the_release_as_it_was(open_pg(&db.url).await).await;
}

/// A request that read the clock just before a week ended (or a process on
/// the same PostgreSQL whose clock lags a little) stores its report in that
/// week after the week ended. A released week is never released again, so
/// a purge right after midnight must not release that week (nor delete its
/// reports) yet; the release an hour later reads both reports.
async fn report_stored_just_after_week_end_is_counted<S: Store>(store: S) {
    let store = Counting::new(store);
    let s = schema();
    add_schema(&store, SCHEMA).await.unwrap();
    register(&store, "Mail Archiver", &[], "2026-W47").await;
    let id = store.schemas().await.unwrap()[0].id;
    let week = Week::parse("2026-W47").unwrap();
    let week_end = week.minus(-1).start_unix();
    let row = |n: u64| keep(&validate(&s, report(&report_id(n)).as_bytes()).unwrap(), id, week);
    assert!(store.insert_report(row(1)).await.unwrap());
    // A minute after the week ended, keeping no raw weeks at all: the week
    // is neither released nor deleted yet.
    let config = ReleaseConfig::default();
    let early = purge(&store, week_end + 60, 0, &config).await.unwrap();
    assert_eq!((early.weeks_released.len(), early.reports_deleted), (0, 0), "{early:?}");
    assert!(store.released_weeks("Mail Archiver").await.unwrap().is_empty());
    assert!(store.insert_report(row(2)).await.unwrap());
    let later = purge(&store, week_end + 3 * 3600, 0, &config).await.unwrap();
    assert_eq!(later.weeks_released, vec![("Mail Archiver".to_string(), "2026-W47".to_string())]);
    assert_eq!(later.reports_deleted, 2);
    let read = store.rows_read();
    assert_eq!(read, [("2026-W47".to_string(), "Mail Archiver".to_string(), 2)], "a report of the week was left out of its release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_stored_just_after_week_end_is_counted_sqlite() {
    let db = Db::new("sqlite").await;
    report_stored_just_after_week_end_is_counted(open_sqlite(&db.sqlite_path().unwrap()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_stored_just_after_week_end_is_counted_postgres() {
    if pg_url().is_none() {
        eprintln!("note: {PG_ENV} not set; PostgreSQL not tested here");
        return;
    }
    let db = Db::new("postgres").await;
    report_stored_just_after_week_end_is_counted(open_pg(&db.url).await).await;
}
