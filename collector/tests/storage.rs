//! One storage story, run against SQLite and PostgreSQL: reports, duplicates,
//! rollup, retention. For SQLite the database files (WAL included) are then
//! searched for the deleted report ids.

mod common;

use common::*;
use optin_collector::commands::add_schema;
use optin_collector::privacy::{keep, Week};
use optin_collector::retention::purge;
use optin_collector::storage::{AggregateRow, Store};
use optin_collector::Options;
use optin_telemetry::validate::validate;

const WEEK_A: i64 = 1_795_000_000; // 2026-W47

async fn story<S: Store>(store: S, files: impl Fn() -> Vec<std::path::PathBuf>) {
    let clock = TestClock::new(WEEK_A);
    let server = serve(store.clone(), Options::default(), clock.clock()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    assert_eq!(add_schema(&store, SCHEMA).await.unwrap().id, store.schemas().await.unwrap()[0].id, "adding twice is harmless");
    server.state.refresh_schemas().await.unwrap();
    let at = server.ingest();

    // Week A: 5 reports (one a variant), posted over HTTP.
    let old_ids: Vec<String> = (0..5).map(report_id).collect();
    for (i, id) in old_ids.iter().enumerate() {
        let body = if i == 0 { report(id).replace("\"trial\":false", "\"trial\":true") } else { report(id) };
        assert_eq!(post(at, &body).await.status, 204);
    }
    // 14 weeks later: 2 more.
    clock.set(WEEK_A + 14 * 7 * 86_400);
    let new_ids: Vec<String> = (100..102).map(report_id).collect();
    for id in &new_ids {
        assert_eq!(post(at, &report(id)).await.status, 204);
    }
    assert_eq!(store.count_reports().await.unwrap(), 7);
    // The current week's figures, computed without a rollup.
    let schemas = std::sync::Arc::new(optin_collector::storage::SchemaSet::from_rows(&store.schemas().await.unwrap()));
    let live = store.aggregate_week("2027-W08", schemas).await.unwrap();
    assert_eq!(live.reports(), 2);
    assert_eq!(live.cells.values().filter(|&&c| c == 2).count(), live.cells.len(), "every cell counts both reports");
    assert_eq!(store.report_weeks().await.unwrap(), vec!["2026-W47".to_string(), "2027-W08".to_string()]);

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

    // Retention (13 weeks): week A is rolled up, then its raw reports go.
    let summary = purge(&store, WEEK_A + 14 * 7 * 86_400, 13).await.unwrap();
    assert_eq!(summary.weeks_rolled_up, vec!["2026-W47".to_string()]);
    assert_eq!(summary.reports_deleted, 5);
    assert_eq!(store.count_reports().await.unwrap(), 2);
    let schema_id = store.schemas().await.unwrap()[0].id;
    let aggs = store.aggregates("2026-W47").await.unwrap();
    let cell = |field: &str, value: &str| {
        aggs.iter().find(|a| a.field == field && a.value == value).map(|a: &AggregateRow| a.count)
    };
    assert_eq!(cell("trial", "true"), Some(1));
    assert_eq!(cell("trial", "false"), Some(4));
    assert_eq!(cell("users", "5-9"), Some(5));
    assert_eq!(cell("archived", "2000"), Some(5));
    assert_eq!(cell("profiles", "imap"), Some(5));
    assert_eq!(cell("profiles", "gmail"), Some(5));
    assert_eq!(cell("os_family", "linux"), Some(5), "built-ins are aggregated too");
    assert_eq!(cell("product_version", "5.2.1"), Some(5));
    assert_eq!(store.week_totals("2026-W47").await.unwrap(), vec![(schema_id, 5)]);
    // Deleted reports leave no bytes behind in the database files.
    for id in &old_ids {
        assert!(!has(id), "deleted report {id} still in the database files");
    }
    for id in &new_ids {
        assert!(store.report(hex(id)).await.unwrap().is_some());
    }
    // A second purge has nothing to do; aggregates stay.
    let again = purge(&store, WEEK_A + 14 * 7 * 86_400, 13).await.unwrap();
    assert_eq!((again.weeks_rolled_up.len(), again.reports_deleted), (0, 0));
    assert_eq!(store.aggregates("2026-W47").await.unwrap(), aggs);
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
    purge(&store, monday + 28 * 86_400, 13).await.unwrap();
    assert_eq!(store.quarantine_summary().await.unwrap().len(), 1);
    let s = purge(&store, monday + 29 * 86_400, 13).await.unwrap();
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
    let summary = purge(&store, WEEK_A, 13).await.unwrap();
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
    purge(&store, WEEK_A, 13).await.unwrap();
    assert_eq!(store.count_reports().await.unwrap(), 20);
    assert_eq!(distinct_xmin("reports").await, 1, "xmin still tells the reports' arrival order");
    assert_eq!(distinct_xmin("quarantine").await, 1, "xmin still tells the quarantined bodies' arrival order");
}

/// With a short retention, a week can be rolled up and its raw reports
/// deleted while reports of that week still wait in quarantine. Moving them
/// in later adds them to the week's figures; it must not replace the
/// figures with a new rollup of whatever raw reports are left.
async fn late_move_in_keeps_rolled_up_counts<S: Store>(store: S) {
    let week = Week::of_unix(WEEK_A);
    let s = schema();
    add_schema(&store, SCHEMA).await.unwrap();
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
    // Two weeks on, with one week of retention: rolled up, raw deleted.
    let later = WEEK_A + 14 * 86_400;
    let first = purge(&store, later, 1).await.unwrap();
    assert_eq!((first.weeks_rolled_up.len(), first.reports_deleted), (1, 3));
    assert_eq!(store.week_totals(&week.to_string()).await.unwrap(), vec![(id, 3)]);
    // The schema is registered; its quarantined reports move in.
    let added = add_schema(&store, &other).await.unwrap();
    assert_eq!(added.moved_in, 2);
    purge(&store, later, 1).await.unwrap();
    let mut totals = store.week_totals(&week.to_string()).await.unwrap();
    totals.sort();
    assert_eq!(totals, vec![(id, 3), (added.id, 2)], "the rolled-up counts of the week were lost");
    let aggs = store.aggregates(&week.to_string()).await.unwrap();
    let count = |schema_id: i64| aggs.iter().find(|a| a.schema_id == schema_id && a.field == "os_family").map(|a| a.count);
    assert_eq!((count(id), count(added.id)), (Some(3), Some(2)));
    assert_eq!(store.count_reports().await.unwrap(), 0, "the moved-in reports are past retention too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_move_in_keeps_rolled_up_counts_sqlite() {
    let db = Db::new("sqlite").await;
    late_move_in_keeps_rolled_up_counts(open_sqlite(&db.sqlite_path().unwrap()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_move_in_keeps_rolled_up_counts_postgres() {
    if pg_url().is_none() {
        eprintln!("note: {PG_ENV} not set; PostgreSQL not tested here");
        return;
    }
    let db = Db::new("postgres").await;
    late_move_in_keeps_rolled_up_counts(open_pg(&db.url).await).await;
}

/// A request that read the clock just before a week ended (or a process on
/// the same PostgreSQL whose clock lags a little) stores its report in that
/// week after the week ended. A rolled-up week is never rolled up again, so
/// a purge right after midnight must not roll that week up yet.
async fn report_stored_just_after_week_end_is_counted<S: Store>(store: S) {
    let s = schema();
    add_schema(&store, SCHEMA).await.unwrap();
    let id = store.schemas().await.unwrap()[0].id;
    let week = Week::parse("2026-W47").unwrap();
    let week_end = week.minus(-1).start_unix();
    let row = |n: u64| keep(&validate(&s, report(&report_id(n)).as_bytes()).unwrap(), id, week);
    assert!(store.insert_report(row(1)).await.unwrap());
    // A minute after the week ended, keeping no raw weeks at all: the week
    // is neither rolled up nor deleted yet.
    let early = purge(&store, week_end + 60, 0).await.unwrap();
    assert_eq!((early.weeks_rolled_up.len(), early.reports_deleted), (0, 0), "{early:?}");
    assert!(store.insert_report(row(2)).await.unwrap());
    let later = purge(&store, week_end + 3 * 3600, 0).await.unwrap();
    assert_eq!((later.weeks_rolled_up, later.reports_deleted), (vec!["2026-W47".to_string()], 2));
    assert_eq!(store.week_totals("2026-W47").await.unwrap(), vec![(id, 2)], "a report of the week was left out of its figures");
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
