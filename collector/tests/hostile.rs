//! A hostile client against the real server on port 0: edge cases of the
//! ingest table that the table test does not cover.

mod common;

use common::*;
use optin_collector::commands::add_schema;
use optin_collector::storage::Store;
use optin_collector::Options;
use std::io::Write;

const NOW: i64 = 1_795_000_000;

async fn server() -> (Server<optin_collector::storage::sqlite::SqliteStore>, Db) {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    (serve(store, Options::default(), TestClock::new(NOW).clock()).await, db)
}

fn post_with(at: std::net::SocketAddr, headers: &[(&str, &str)], body: &str) -> Response {
    raw_request(at, None, "POST", "/v1/report", headers, body.as_bytes())
}

/// The same report spelt otherwise than the library spells it (an escape,
/// white space, another key order) is refused with 400, not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_spellings_of_a_report_are_refused() {
    let (server, _db) = server().await;
    let at = server.ingest();
    let json = [("Content-Type", "application/json")];
    let good = report(&report_id(1));
    let (first, rest) = good[1..good.len() - 1].split_once(",\"fields\"").unwrap();
    let bodies = [
        good.replace("\"imap\"", "\"\\u0069map\""),
        good.replace(',', ", "),
        format!("{{\"fields\"{rest},{first}}}"),
        format!("{good}\n"),
    ];
    let answers = tokio::task::spawn_blocking(move || bodies.iter().map(|b| post_with(at, &json, b)).collect::<Vec<_>>())
        .await
        .unwrap();
    for r in &answers {
        assert_eq!((r.status, r.body.contains("not_canonical")), (400, true), "{r:?}");
    }
    assert_eq!(server.state.store.count_reports().await.unwrap(), 0);
    // The library's own spelling of it is stored.
    assert_eq!(post(at, &good).await.status, 204);
    server.running.stop().await;
}
