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

/// A body in a content coding the collector does not decode (gzip) is
/// refused with 415, whatever its bytes, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_encodings_are_refused() {
    let (server, _db) = server().await;
    let at = server.ingest();
    let answers = tokio::task::spawn_blocking(move || {
        ["gzip", "br", "deflate", "identity, gzip"]
            .iter()
            .map(|coding| {
                let headers = [("Content-Type", "application/json"), ("Content-Encoding", coding)];
                post_with(at, &headers, &report(&report_id(1))).status
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(answers, [415, 415, 415, 415]);
    assert_eq!(server.state.store.count_reports().await.unwrap(), 0);
    // "identity" is no coding at all.
    let plain = tokio::task::spawn_blocking(move || {
        let headers = [("Content-Type", "application/json"), ("Content-Encoding", "identity")];
        post_with(at, &headers, &report(&report_id(1))).status
    })
    .await
    .unwrap();
    assert_eq!(plain, 204);
    server.running.stop().await;
}

/// A request head far larger than any client needs (a 48 KiB header) is
/// refused before it is buffered whole: hyper's default buffer would hold
/// ~400 KiB per connection, 400 MiB over the default 1024 connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_request_heads_are_refused() {
    let (server, _db) = server().await;
    let at = server.ingest();
    let (big, normal) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(at).unwrap();
        let body = report(&report_id(2));
        let req = format!(
            "POST /v1/report HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nX-Pad: {}\r\nContent-Length: {}\r\n\r\n{body}",
            "a".repeat(48 * 1024),
            body.len()
        );
        // The server may close before reading it all.
        let _ = s.write_all(req.as_bytes());
        let big = read_response(&mut s);
        let pad = "b".repeat(4 * 1024);
        let normal = post_with(at, &[("Content-Type", "application/json"), ("X-Pad", &pad)], &report(&report_id(3)));
        (big, normal)
    })
    .await
    .unwrap();
    assert_eq!(big.status, 431, "{big:?}");
    assert_eq!(normal.status, 204, "a 4 KiB header is fine: {normal:?}");
    assert_eq!(server.state.store.count_reports().await.unwrap(), 1);
    server.running.stop().await;
}

/// The quarantine keeps bodies verbatim for up to 30 days, so it takes only
/// reports some schema could accept: no extra keys, no free text in fields
/// or built-ins. Those are refused with 422 and not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_keeps_no_free_text() {
    let (server, _db) = server().await;
    let at = server.ingest();
    let other = SCHEMA.replace("\"version\": 2", "\"version\": 3");
    let digest = optin_collector::commands::parse_schema(&other).unwrap().0.digest;
    let q = |n: u64| report(&report_id(n)).replace(&schema().digest, &digest).replace("\"schema_version\":2", "\"schema_version\":3");
    let bodies = [
        // In key order, so only the content is wrong.
        q(1).replace("\"fields\":", "\"client_ip\":\"203.0.113.7\",\"fields\":"),
        q(2).replace("\"archived\":2000", "\"archived\":2000,\"note\":\"alice@example.com via 203.0.113.7\""),
        q(3).replace("\"6.1\"", "\"6.1 mail.example.com\""),
        q(4).replace("\"trial\":false", "\"trial\":{\"ip\":\"203.0.113.7\"}"),
    ];
    let answers = tokio::task::spawn_blocking(move || {
        bodies.iter().map(|b| post_with(at, &[("Content-Type", "application/json")], b)).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for r in &answers {
        assert_eq!(r.status, 422, "{r:?}");
    }
    assert!(server.state.store.quarantined(&digest).await.unwrap().is_empty(), "free text kept in quarantine");
    // A report of the right shape is quarantined as before.
    assert_eq!(post(at, &q(5)).await.status, 202);
    assert_eq!(server.state.store.quarantined(&digest).await.unwrap().len(), 1);
    server.running.stop().await;
}
