//! The Oblivious HTTP gateway (RFC 9458) against the real server on port 0,
//! with keys made by the real `ohttp keygen` and requests encapsulated by
//! the ohttp crate's client side; then through a real relay (`ohttp-relay`,
//! scripts/ohttp-relay) with a recording proxy between relay and collector.

mod common;

use base64::Engine;
use common::*;
use optin_collector::commands::add_schema;
use optin_collector::gateway::Refusal;
use optin_collector::storage::Store;
use optin_collector::Options;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NOW: i64 = 1_795_000_000; // 2026-11-18, ISO week 2026-W47
const GATEWAY: &str = "/.well-known/ohttp-gateway";

/// `optin-collector --db URL ohttp keygen`: the key_config it prints, decoded.
fn keygen(db: &str) -> Vec<u8> {
    let out = bin().args(["--db", db, "ohttp", "keygen"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap()
}

fn cli(db: &str, args: &[&str]) -> (bool, String) {
    let out = bin().args(["--db", db]).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A Binary HTTP request as a product would send it.
fn inner(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut m = bhttp::Message::request(b"POST".to_vec(), b"https".to_vec(), b"collector.test".to_vec(), path.as_bytes().to_vec());
    m.put_header("content-type", content_type);
    m.write_content(body);
    let mut out = vec![];
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
    out
}

/// (encapsulated request, the context that opens its answer)
fn encapsulate(config_list: &[u8], request: &[u8]) -> (Vec<u8>, ohttp::ClientResponse) {
    ohttp::ClientRequest::from_encoded_config_list(config_list).unwrap().encapsulate(request).unwrap()
}

struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// One request on a fresh connection, optionally from a chosen loopback address.
fn send(to: SocketAddr, from: Option<&str>, method: &str, path: &str, content_type: &str, body: &[u8]) -> Raw {
    let mut stream = match from {
        Some(ip) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let s = rt.block_on(async {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
                socket.connect(to).await.unwrap().into_std().unwrap()
            });
            s.set_nonblocking(false).unwrap();
            s
        }
        None => TcpStream::connect(to).unwrap(),
    };
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut buf = vec![];
    let _ = stream.read_to_end(&mut buf);
    let cut = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&buf[..cut]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = buf[cut + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Raw { status, head, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

async fn send_async(to: SocketAddr, path: &'static str, content_type: &'static str, body: Vec<u8>) -> Raw {
    tokio::task::spawn_blocking(move || send(to, None, "POST", path, content_type, &body)).await.unwrap()
}

/// The inner answer of an encapsulated response: (status, headers, body).
fn open(raw: &Raw, ctx: ohttp::ClientResponse) -> (u16, Vec<(String, String)>, String) {
    assert_eq!(raw.status, 200, "{}", raw.head);
    assert!(raw.head.to_ascii_lowercase().contains("content-type: message/ohttp-res"), "{}", raw.head);
    let plain = ctx.decapsulate(&raw.body).unwrap();
    let msg = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plain[..])).unwrap();
    let status = u16::from(msg.control().status().unwrap());
    let headers = msg
        .header()
        .iter()
        .map(|f| (String::from_utf8_lossy(f.name()).to_string(), String::from_utf8_lossy(f.value()).to_string()))
        .collect();
    (status, headers, String::from_utf8_lossy(msg.content()).to_string())
}

async fn gateway_story<S: Store>(store: S, db: &Db) {
    let url = db.url.clone();
    let key0 = keygen(&url);
    let key1 = keygen(&url);
    let (ok, list) = cli(&url, &["ohttp", "list"]);
    assert!(ok && list.contains("0       2026-") && list.contains("live"), "{list}");
    if let Some(path) = db.sqlite_path() {
        use std::os::unix::fs::PermissionsExt;
        for f in [path.clone(), format!("{}-wal", path.display()).into()] {
            if let Ok(m) = std::fs::metadata(&f) {
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", f.display());
            }
        }
    }

    let clock = TestClock::new(NOW);
    let server = serve(store.clone(), Options::default(), clock.clock()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    server.state.refresh_schemas().await.unwrap();
    let at = server.ingest();

    // GET: the live configurations, each as keygen printed it.
    let keys = tokio::task::spawn_blocking(move || send(at, None, "GET", GATEWAY, "text/plain", b"")).await.unwrap();
    assert_eq!(keys.status, 200, "{}", keys.head);
    assert!(keys.head.to_ascii_lowercase().contains("content-type: application/ohttp-keys"), "{}", keys.head);
    assert_eq!(ohttp::KeyConfig::decode_list(&keys.body).unwrap().len(), 2);
    assert_eq!(keys.body, [key0.clone(), key1.clone()].concat());

    // A valid report through the gateway: stored once, answered 204 inside.
    let id = report_id(1);
    let body = report(&id);
    let (enc, ctx) = encapsulate(&key1, &inner("/v1/report", "application/json", body.as_bytes()));
    let r = send_async(at, GATEWAY, "message/ohttp-req", enc.clone()).await;
    assert_eq!(open(&r, ctx).0, 204);
    assert_eq!(store.count_reports().await.unwrap(), 1);
    assert!(store.report(hex16(&id)).await.unwrap().is_some());
    assert_eq!(store.gateway_weeks().await.unwrap(), vec![("2026-W47".to_string(), 1, 1)]);

    // The same encapsulated bytes again (a replay): answered, stored once.
    let r = send_async(at, GATEWAY, "message/ohttp-req", enc).await;
    assert_eq!(r.status, 200);
    assert_eq!(store.count_reports().await.unwrap(), 1);
    assert_eq!(server.state.metrics.duplicates.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(store.gateway_weeks().await.unwrap(), vec![("2026-W47".to_string(), 1, 1)]);

    // A direct report counts in the week, not as through the gateway.
    assert_eq!(post(at, &report(&report_id(2))).await.status, 204);
    assert_eq!(store.gateway_weeks().await.unwrap(), vec![("2026-W47".to_string(), 1, 2)]);

    // The same validator answers inside: a bucket label not allowed -> 422.
    let bad = report(&report_id(3)).replace("\"users\":\"5-9\"", "\"users\":\"5-10\"");
    let (enc, ctx) = encapsulate(&key0, &inner("/v1/report", "application/json", bad.as_bytes()));
    let (status, headers, text) = open(&send_async(at, GATEWAY, "message/ohttp-req", enc).await, ctx);
    assert_eq!((status, text.as_str()), (422, "{\"error\":\"bucket_label\"}"));
    assert!(headers.contains(&("content-type".into(), "application/json".into())), "{headers:?}");
    // Not JSON inside -> 415 inside; another path -> 404 inside; over 16 KiB -> 413 inside.
    for (path, ct, body, want) in [
        ("/v1/report", "text/plain", report(&report_id(4)).into_bytes(), 415),
        ("/admin", "application/json", report(&report_id(5)).into_bytes(), 404),
        ("/v1/report", "application/json", format!("{{\"pad\":\"{}\"}}", "x".repeat(16 * 1024)).into_bytes(), 413),
    ] {
        let (enc, ctx) = encapsulate(&key0, &inner(path, ct, &body));
        assert_eq!(open(&send_async(at, GATEWAY, "message/ohttp-req", enc).await, ctx).0, want, "{path} {ct}");
    }
    assert_eq!(server.state.metrics.gateway_refused(Refusal::InnerRequest), 3);

    // Retired key: the key problem of RFC 9458, nothing stored.
    let (ok, out) = cli(&url, &["ohttp", "retire", "0"]);
    assert!(ok, "{out}");
    server.state.refresh_ohttp_keys().await.unwrap();
    let (enc, _) = encapsulate(&key0, &inner("/v1/report", "application/json", report(&report_id(6)).as_bytes()));
    let r = send_async(at, GATEWAY, "message/ohttp-req", enc).await;
    assert_eq!(r.status, 422, "{}", r.head);
    assert!(r.head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{}", r.head);
    assert!(String::from_utf8_lossy(&r.body).contains("http-problem-types#ohttp-key"));
    assert!(store.report(hex16(&report_id(6))).await.unwrap().is_none());
    let keys = tokio::task::spawn_blocking(move || send(at, None, "GET", GATEWAY, "text/plain", b"")).await.unwrap();
    assert_eq!(keys.body, key1);
    let (_, list) = cli(&url, &["ohttp", "list"]);
    assert!(list.contains("retired"), "{list}");

    // Garbage: too short -> 400 malformed; a live key id with noise -> 400 undecryptable.
    let r = send_async(at, GATEWAY, "message/ohttp-req", b"garbage".to_vec()).await;
    assert_eq!((r.status, String::from_utf8_lossy(&r.body).contains("malformed_encapsulation")), (400, true));
    let mut noise = vec![1u8, 0, 0x20, 0, 1, 0, 1];
    noise.extend((0..300u32).map(|i| (i * 7919 % 251) as u8));
    let r = send_async(at, GATEWAY, "message/ohttp-req", noise).await;
    assert_eq!((r.status, String::from_utf8_lossy(&r.body).contains("undecryptable")), (400, true));
    // Wrong media type -> 415; over the limit -> 413.
    let (enc, _) = encapsulate(&key1, &inner("/v1/report", "application/json", report(&report_id(7)).as_bytes()));
    assert_eq!(send_async(at, GATEWAY, "application/octet-stream", enc).await.status, 415);
    assert_eq!(send_async(at, GATEWAY, "message/ohttp-req", vec![1u8; 20 * 1024]).await.status, 413);
    assert_eq!(store.count_reports().await.unwrap(), 2);
    let m = get(server.running.admin_addr, "/metrics").await.body;
    for line in [
        "optin_gateway_refused_total{reason=\"malformed\"} 1",
        "optin_gateway_refused_total{reason=\"key_unknown\"} 1",
        "optin_gateway_refused_total{reason=\"undecryptable\"} 1",
        "optin_gateway_refused_total{reason=\"inner_request\"} 3",
        "optin_gateway_reports_total 1",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    // The dashboard (admin) shows a week's share through the gateway once
    // the week has ended, and no count.
    let page = get(server.running.admin_addr, "/").await.body;
    assert!(page.contains("Share of reports through Oblivious HTTP"), "{page}");
    assert!(!page.contains("<td>2026-W47</td>"), "the current week is on the dashboard");
    clock.set(NOW + 7 * 86_400);
    let page = get(server.running.admin_addr, "/").await.body;
    assert!(page.contains("<tr><td>2026-W47</td><td>50.0 %</td></tr>"), "{page}");
    server.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_end_to_end() {
    for backend in backends() {
        let db = Db::new(backend).await;
        match db.sqlite_path() {
            // The store opens (and migrates) first, as serve does.
            Some(p) => gateway_story(open_sqlite(&p).await, &db).await,
            None => gateway_story(open_pg(&db.url).await, &db).await,
        }
    }
}

/// Extra bytes and milliseconds per report through the gateway (debug
/// build unless run with --release): `cargo test -p optin-collector --test
/// ohttp -- --nocapture overhead`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overhead() {
    const N: u64 = 200;
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let key = keygen(&db.url);
    let server = serve(store.clone(), Options::default(), TestClock::new(NOW).clock()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    server.state.refresh_schemas().await.unwrap();
    let at = server.ingest();
    let (mut plain, mut gw) = (vec![], vec![]);
    let (mut plain_bytes, mut enc_bytes, mut res_bytes) = (0, 0, 0);
    for i in 0..N {
        // Alternate so both see the same database state.
        let body = report(&report_id(1000 + 2 * i));
        plain_bytes = body.len();
        let t = Instant::now();
        assert_eq!(send_async(at, "/v1/report", "application/json", body.into_bytes()).await.status, 204);
        plain.push(t.elapsed());
        let body = report(&report_id(1001 + 2 * i));
        // The client's own work (encapsulating, opening the answer) is not timed.
        let (enc, ctx) = encapsulate(&key, &inner("/v1/report", "application/json", body.as_bytes()));
        enc_bytes = enc.len();
        let t = Instant::now();
        let r = send_async(at, GATEWAY, "message/ohttp-req", enc).await;
        gw.push(t.elapsed());
        res_bytes = r.body.len();
        assert_eq!(open(&r, ctx).0, 204);
    }
    plain.sort();
    gw.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p, g) = (ms(plain[plain.len() / 2]), ms(gw[gw.len() / 2]));
    eprintln!(
        "ohttp overhead ({}): report body {plain_bytes} B, encapsulated request {enc_bytes} B (+{} B), encapsulated answer {res_bytes} B (a direct 204 has no body); \
         median round trip over {N}: direct {p:.3} ms, gateway {g:.3} ms (+{:.3} ms at the gateway)",
        if cfg!(debug_assertions) { "debug build" } else { "release build" },
        enc_bytes - plain_bytes,
        g - p
    );
    assert_eq!(store.count_reports().await.unwrap(), 2 * N as i64);
    server.running.stop().await;
}

/// Where scripts/ohttp-relay installs the relay, or $OPTIN_OHTTP_RELAY.
fn relay_binary() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("OPTIN_OHTTP_RELAY").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ohttp-relay/bin/ohttp-relay");
    p.exists().then_some(p)
}

/// A TCP proxy that records every byte sent through it towards `to`, and
/// the peer address of each connection it accepts.
async fn recording_proxy(to: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>, Arc<Mutex<Vec<SocketAddr>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, peers) = (Arc::new(Mutex::new(vec![])), Arc::new(Mutex::new(vec![])));
    let (s, p) = (seen.clone(), peers.clone());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((inbound, peer)) = listener.accept().await else { return };
            p.lock().unwrap().push(peer);
            let s = s.clone();
            tokio::spawn(async move {
                let outbound = tokio::net::TcpStream::connect(to).await.unwrap();
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                let up = async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = ri.read(&mut buf).await {
                        if n == 0 || wo.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        s.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = wo.shutdown().await;
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut ro, &mut wi).await;
                    let _ = wi.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (addr, seen, peers)
}

/// Starts `ohttp-relay` on a free loopback port forwarding to `gateway`;
/// returns it (the caller kills it) once it listens.
async fn start_relay(relay: &std::path::Path, gateway: SocketAddr) -> (std::process::Child, SocketAddr) {
    let port = free_port();
    let child = std::process::Command::new(relay)
        .env("PORT", port.to_string())
        .env("GATEWAY_ORIGIN", format!("http://{gateway}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let relay_at: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(relay_at).is_err() {
        assert!(Instant::now() < deadline, "the relay did not start listening on {relay_at}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, relay_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_real_relay() {
    let Some(relay) = relay_binary() else {
        eprintln!("note: ohttp-relay not installed (scripts/ohttp-relay installs it): relay test not run");
        return;
    };
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let key = keygen(&db.url);
    let server = serve(store.clone(), Options::default(), TestClock::new(NOW).clock()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    server.state.refresh_schemas().await.unwrap();
    let (proxy, forwarded, peers) = recording_proxy(server.ingest()).await;
    let (mut child, relay_at) = start_relay(&relay, proxy).await;

    // The product, on 127.0.0.2, sends through the relay (POST / on the relay).
    let id = report_id(42);
    let body = report(&id);
    let (enc, ctx) = encapsulate(&key, &inner("/v1/report", "application/json", body.as_bytes()));
    let r = tokio::task::spawn_blocking(move || send(relay_at, Some("127.0.0.2"), "POST", "/", "message/ohttp-req", &enc))
        .await
        .unwrap();
    let (status, _, _) = open(&r, ctx);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 204);
    assert_eq!(store.count_reports().await.unwrap(), 1);
    assert!(store.report(hex16(&id)).await.unwrap().is_some());

    // What reached the collector came from the relay: every connection the
    // proxy in front of the collector accepted was the relay's (127.0.0.1),
    // none the product's (127.0.0.2); and the forwarded bytes hold neither
    // the product's address nor the report id nor a field value.
    let peers = peers.lock().unwrap().clone();
    assert!(!peers.is_empty());
    assert!(peers.iter().all(|p| p.ip().to_string() == "127.0.0.1"), "{peers:?}");
    let seen = forwarded.lock().unwrap().clone();
    let head = String::from_utf8_lossy(&seen[..seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap()]).to_string();
    eprintln!("forwarded to the collector: {} bytes; head:\n{head}", seen.len());
    assert!(head.starts_with(&format!("POST {GATEWAY} ")), "{head}");
    for needle in [id.as_bytes(), id.to_uppercase().as_bytes(), b"gmail", b"Mail Archiver", b"5.2.1", b"127.0.0.2"] {
        assert!(!contains(&seen, needle), "{} in the forwarded bytes", String::from_utf8_lossy(needle));
    }
    server.running.stop().await;
}

fn hex16(id: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// The real library (`optin_telemetry::Client`) sends through the real relay
/// to the collector's gateway: the report is stored once, the library's
/// history says it went via the relay, and the bytes reaching the collector
/// hold neither the report id nor a value. With its key retired, the next
/// report is `key_config_outdated` (the ohttp-key problem the gateway
/// answers) and waits instead of being retried or dropped as refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_sends_through_a_real_relay() {
    use optin_telemetry::Client;
    use serde_json::{json, Value};
    let Some(relay) = relay_binary() else {
        eprintln!("note: ohttp-relay not installed (scripts/ohttp-relay installs it): relay test not run");
        return;
    };
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let key = keygen(&db.url);
    let options = Options { schema_refresh: Duration::from_millis(100), ..Options::default() };
    let server = serve(store.clone(), options, TestClock::new(NOW).clock()).await;
    add_schema(&store, SCHEMA).await.unwrap();
    server.state.refresh_schemas().await.unwrap();
    let (proxy, forwarded, _) = recording_proxy(server.ingest()).await;
    let (mut child, relay_at) = start_relay(&relay, proxy).await;
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "product": "Mail Archiver",
        "product_version": "5.2.1",
        "endpoint": format!("http://{}/v1/report", server.ingest()),
        "state_dir": dir.path().to_str().unwrap(),
        "schema": serde_json::from_str::<Value>(SCHEMA).unwrap(),
        "ohttp": {"relay": format!("http://{relay_at}/"), "key_config": base64::engine::general_purpose::STANDARD.encode(&key)},
    })
    .to_string();
    // One report, due at a random moment: tick there and wait for it.
    let send_one = |config: String| {
        tokio::task::spawn_blocking(move || {
            let client = Client::open(&config).unwrap();
            client.set_consent(true).unwrap();
            client.set_count("users", 7).unwrap();
            let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
            client.tick_at(t0).unwrap();
            let status: Value = serde_json::from_str(&client.status().unwrap()).unwrap();
            let due = status["next_due"].as_i64().expect("a report is scheduled");
            client.tick_at(due).unwrap();
            client.flush(Duration::from_secs(45)).unwrap();
            let history: Value = serde_json::from_str(&client.history().unwrap()).unwrap();
            let status: Value = serde_json::from_str(&client.status().unwrap()).unwrap();
            (history, status)
        })
    };
    let (history, _) = send_one(config.clone()).await.unwrap();
    let sent = &history["reports"][0];
    assert_eq!(sent["outcome"], "delivered", "{history}");
    assert_eq!(sent["via"], "relay", "{history}");
    assert_eq!(store.count_reports().await.unwrap(), 1);
    let body: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    let id = body["report_id"].as_str().unwrap().to_string();
    assert!(store.report(hex16(&id)).await.unwrap().is_some(), "the report the library sent is the one stored");
    let seen = forwarded.lock().unwrap().clone();
    for needle in [id.as_bytes(), b"Mail Archiver", b"5.2.1"] {
        assert!(!contains(&seen, needle), "{} in the bytes the relay forwarded", String::from_utf8_lossy(needle));
    }

    // The key is retired: a second installation's report waits.
    assert!(cli(&db.url, &["ohttp", "retire", "0"]).0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let dir2 = tempfile::tempdir().unwrap();
    let config2 = config.replace(dir.path().to_str().unwrap(), dir2.path().to_str().unwrap());
    let (history, status) = send_one(config2).await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(history["reports"][0]["outcome"], "key_config_outdated", "{history}");
    assert!(status["last_error"].as_str().is_some_and(|e| e.starts_with("key_config_outdated")), "{status}");
    assert_eq!(store.count_reports().await.unwrap(), 1, "nothing stored with a retired key");
    server.running.stop().await;
}
