//! Every row of the ingest table, against the real server on port 0, for
//! SQLite and (when a server is given) PostgreSQL.

mod common;
#[path = "../../tests/support/mutate.rs"]
mod mutate;

use common::*;
use optin_collector::commands::add_schema;
use optin_collector::storage::{QuarantineCaps, Store};
use optin_collector::Options;
use optin_telemetry::validate::Reject;
use std::io::Write;
use std::time::Duration;

const NOW: i64 = 1_795_000_000; // 2026-11-18, ISO week 2026-W47

async fn ingest_table<S: Store>(store: S) {
    let clock = TestClock::new(NOW);
    let options = Options {
        quarantine: QuarantineCaps { per_digest_count: 2, per_digest_bytes: 1 << 20, total_bytes: 8 << 20 },
        ..Options::default()
    };
    let server = serve(store.clone(), options, clock.clock()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    server.state.refresh_schemas().await.unwrap();
    let at = server.ingest();

    // valid report -> 204, stored once; the same report_id again -> 204, no second row.
    let id = report_id(1);
    assert_eq!(post(at, &report(&id)).await.status, 204);
    assert_eq!(post(at, &report(&id)).await.status, 204);
    assert_eq!(store.count_reports().await.unwrap(), 1);
    let row = store.report(hex16(&id)).await.unwrap().expect("stored");
    assert_eq!(row.week, "2026-W47");
    assert_eq!(server.state.metrics.duplicates.load(std::sync::atomic::Ordering::Relaxed), 1);

    // registered digest, content not allowed -> 422, nothing stored, counted by reason.
    let cases = [
        (report(&report_id(2)).replace("\"users\":\"5-9\"", "\"users\":\"5-10\""), Reject::BucketLabel),
        (report(&report_id(3)).replace("2000", "2001"), Reject::RoundedValue),
        (report(&report_id(4)).replace("[\"imap\",\"gmail\"]", "[\"gmail\",\"imap\"]"), Reject::ChoicesOrder),
        // In key order, as the library would write it, so only the field is wrong.
        (report(&report_id(5)).replace("\"profiles\":", "\"hostname\":true,\"profiles\":"), Reject::UnknownField),
        (report(&report_id(6)).replace("\"trial\":false", "\"trial\":\"no\""), Reject::WrongType),
        (report(&report_id(7)).replace("\"linux\"", "\"plan9\""), Reject::OsFamily),
        (report(&report_id(8)).replace("\"5.2.1\"", "\"5.2.1-beta\""), Reject::ProductVersion),
        // Issue 19: at most 5 digits per part (the library refuses more at tel_open).
        (report(&report_id(12)).replace("\"5.2.1\"", "\"5.234567.1\""), Reject::ProductVersion),
        (report(&"A".repeat(32)), Reject::ReportId),
    ];
    for (i, (body, reason)) in cases.iter().enumerate() {
        let r = post(at, body).await;
        assert_eq!(r.status, 422, "{reason}: {}", r.body);
        assert_eq!(r.body, format!("{{\"error\":\"{}\"}}", reason.name()));
        let so_far = cases[..=i].iter().filter(|(_, why)| why == reason).count() as u64;
        assert_eq!(server.state.metrics.rejected(*reason), so_far, "{reason}");
    }
    assert_eq!(store.count_reports().await.unwrap(), 1);
    let metrics = get(server.running.admin_addr, "/metrics").await;
    assert!(metrics.body.contains("optin_reports_rejected_total{reason=\"bucket_label\"} 1"), "{}", metrics.body);

    // malformed JSON, duplicate keys, wrong format number -> 400, nothing stored.
    for (body, reason) in [
        ("{\"format\": 1,".to_string(), "malformed_json"),
        (report(&report_id(9)).replacen("\"arch\":\"x86_64\"", "\"arch\":\"x86_64\",\"arch\":\"x86\"", 1), "duplicate_key"),
        (report(&report_id(10)).replace("\"format\":1", "\"format\":2"), "wrong_format"),
        ("[]".to_string(), "not_an_object"),
    ] {
        let r = post(at, &body).await;
        assert_eq!((r.status, r.body.contains(reason)), (400, true), "{reason}: {}", r.body);
    }

    // over 16 KiB -> 413; not application/json -> 415.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(16 * 1024));
    assert_eq!(post(at, &big).await.status, 413);
    let text = tokio::task::spawn_blocking(move || {
        raw_request(at, None, "POST", "/v1/report", &[("Content-Type", "text/plain")], report(&report_id(11)).as_bytes())
    })
    .await
    .unwrap();
    assert_eq!(text.status, 415);
    // Chunked, without a Content-Length, still capped at 16 KiB.
    let chunked = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(at).unwrap();
        let chunk = "y".repeat(8000);
        let mut req = "POST /v1/report HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string();
        for _ in 0..3 {
            req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        }
        req.push_str("0\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        read_response(&mut s)
    })
    .await
    .unwrap();
    assert_eq!(chunked.status, 413);
    assert_eq!(store.count_reports().await.unwrap(), 1);

    // Unregistered digest -> 202 and quarantined verbatim, capped per digest (then 429).
    let other = SCHEMA.replace("\"version\": 2", "\"version\": 3");
    let other_schema = optin_collector::commands::parse_schema(&other).unwrap().0;
    let q = |n: u64| report(&report_id(n)).replace(&schema().digest, &other_schema.digest).replace("\"schema_version\":2", "\"schema_version\":3");
    assert_eq!(post(at, &q(20)).await.status, 202);
    assert_eq!(post(at, &q(21)).await.status, 202);
    let full = post(at, &q(22)).await;
    assert_eq!(full.status, 429);
    assert!(full.header("retry-after").is_some());
    // Before it is kept for an unregistered schema, the same product_version rule.
    let long_part = post(at, &q(23).replace("\"5.2.1\"", "\"5.234567.1\"")).await;
    assert_eq!((long_part.status, long_part.body.as_str()), (422, "{\"error\":\"product_version\"}"));
    let held = store.quarantined(&other_schema.digest).await.unwrap();
    assert_eq!(held.len(), 2);
    assert!(held.iter().any(|h| h.body == q(20).as_bytes()), "kept verbatim");
    assert_eq!(store.count_reports().await.unwrap(), 1);
    // `schema add` validates them and moves them in, keeping their week.
    clock.set(NOW + 7 * 86_400);
    let added = add_schema(&store, &other).await.unwrap();
    assert_eq!(added.moved_in, 2);
    assert!(store.quarantined(&other_schema.digest).await.unwrap().is_empty());
    assert_eq!(store.report(hex16(&report_id(20))).await.unwrap().unwrap().week, "2026-W47");
    assert_eq!(store.count_reports().await.unwrap(), 3);

    // Overload: with every slot of the global limiter taken, 429 + Retry-After.
    let permits = server.state.inflight.clone().acquire_many_owned(server.state.options.max_inflight as u32).await.unwrap();
    let busy = post(at, &report(&report_id(30))).await;
    assert_eq!(busy.status, 429);
    assert_eq!(busy.header("retry-after").as_deref(), Some("60"));
    drop(permits);
    assert_eq!(post(at, &report(&report_id(30))).await.status, 204);

    // Health.
    assert_eq!(get(server.running.admin_addr, "/healthz").await.status, 200);
    server.running.stop().await;
}

fn hex16(id: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for i in 0..16 {
        out[i] = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_table_sqlite() {
    let db = Db::new("sqlite").await;
    ingest_table(open_sqlite(&db.sqlite_path().unwrap()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_table_postgres() {
    if pg_url().is_none() {
        eprintln!("note: {PG_ENV} not set; PostgreSQL not tested here");
        return;
    }
    let db = Db::new("postgres").await;
    ingest_table(open_pg(&db.url).await).await;
}

/// A client dripping its body is cut off (408) at the request timeout, and
/// holds no limiter slot meanwhile: the slot is taken once a body is whole,
/// so other clients are served even with a single slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_body_times_out() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    let options = Options { request_timeout: Duration::from_secs(1), max_inflight: 1, ..Options::default() };
    let server = serve(store.clone(), options, TestClock::new(NOW).clock()).await;
    let at = server.ingest();
    let dripper = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(at).unwrap();
        s.write_all(b"POST /v1/report HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{").unwrap();
        // Keep dripping well past the timeout; the server answers 408 and closes.
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(200));
            if s.write_all(b" ").is_err() {
                break;
            }
        }
        read_response(&mut s)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(post(at, &report(&report_id(1))).await.status, 204, "served while the other body drips");
    let dripped = dripper.await.unwrap();
    assert_eq!(dripped.status, 408, "{dripped:?}");
    assert_eq!(post(at, &report(&report_id(2))).await.status, 204);
    server.running.stop().await;
}

/// A client that never finishes its request head is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_head_is_cut_off() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let options = Options { request_timeout: Duration::from_secs(1), ..Options::default() };
    let server = serve(store, options, TestClock::new(NOW).clock()).await;
    let at = server.ingest();
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(at).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        s.write_all(b"POST /v1/report HTTP/1.1\r\nHost: t\r\n").unwrap();
        let mut buf = [0u8; 512];
        // Ten seconds of dripping header lines, far past the 1 s timeout.
        for _ in 0..50 {
            if s.write_all(b"X-Drip: 1\r\n").is_err() {
                return true;
            }
            match std::io::Read::read(&mut s, &mut buf) {
                // EOF, or an error answer followed by the close.
                Ok(_) => return true,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(closed);
    server.running.stop().await;
}

/// Seeded mutation fuzz over HTTP: every mutated report is answered with a
/// documented status, the server keeps serving, and whatever was stored
/// passes the validator again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_reports_get_documented_statuses() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    let server = serve(store.clone(), Options::default(), TestClock::new(NOW).clock()).await;
    let at = server.ingest();
    let base = report(&report_id(7)).into_bytes();
    // Also invalid UTF-8 (\xc3 alone, \xff), which the library never writes.
    let alphabet = b"{}[]\",:0123456789-.eE truefalsnl\\abcdefxyz\xc3\xff";
    let mut mutator = mutate::Mutator::new(0x5eed_1234_abcd_ef01);
    let bodies: Vec<Vec<u8>> = (0..400).map(|_| mutator.mutate(&base, 3, alphabet)).collect();
    let statuses = tokio::task::spawn_blocking(move || {
        bodies
            .iter()
            .map(|b| raw_request(at, None, "POST", "/v1/report", &[("Content-Type", "application/json")], b).status)
            .collect::<Vec<u16>>()
    })
    .await
    .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for s in &statuses {
        assert!([204, 202, 400, 422, 429].contains(s), "undocumented status {s}");
        *seen.entry(*s).or_insert(0) += 1;
    }
    assert!(seen.contains_key(&400) && seen.contains_key(&422), "{seen:?}");
    assert_eq!(get(server.running.admin_addr, "/healthz").await.status, 200);
    assert_eq!(post(at, &report(&report_id(8))).await.status, 204);
    server.running.stop().await;
}

/// At the connection cap, a new connection is served at once: the
/// connection idle the longest is closed to make room for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_makes_room_by_closing_idle_connections() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    let options = Options { max_connections: 1, request_timeout: Duration::from_secs(30), ..Options::default() };
    let server = serve(store.clone(), options, TestClock::new(NOW).clock()).await;
    let at = server.ingest();
    let (holder_closed, answer) = tokio::task::spawn_blocking(move || {
        let mut holder = std::net::TcpStream::connect(at).unwrap();
        std::thread::sleep(Duration::from_millis(200)); // let the server take it
        let mut second = std::net::TcpStream::connect(at).unwrap();
        let body = report(&report_id(1));
        let req = format!(
            "POST /v1/report HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        second.write_all(req.as_bytes()).unwrap();
        second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let answer = read_response(&mut second);
        holder.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let holder_closed = matches!(std::io::Read::read(&mut holder, &mut [0u8; 64]), Ok(0));
        (holder_closed, answer)
    })
    .await
    .unwrap();
    assert_eq!(answer.status, 204, "{answer:?}");
    assert!(holder_closed, "the idle connection was closed to make room");
    server.running.stop().await;
}
