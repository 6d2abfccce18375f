//! Availability under hostile traffic (issue 19). Each test runs one attack
//! against the real collector binary (`optin-collector serve` on 127.0.0.1)
//! and meanwhile sends legitimate reports with the real library
//! (`optin_telemetry::Client`, one fresh installation per send): every one
//! must be answered 2xx within 10 s, and the collector's resident
//! high-water mark (VmHWM) must stay bounded. SQLite always; PostgreSQL too
//! when OPTIN_COLLECTOR_TEST_PG names a server.
//!
//! `OPTIN_AVAIL_SENDS=20 cargo test -p optin-collector --test availability
//! -- --nocapture` sends 20 reports per attack (the README's figures); the
//! default is 5 to keep the suite short. `OPTIN_AVAIL_CAP` sets the
//! connection cap of the idle-connections attack (default 128).

mod common;

use common::*;
use optin_collector::privacy::{keep, Week};
use optin_collector::storage::Store;
use optin_telemetry::validate::validate;
use optin_telemetry::Client;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Each legitimate report must be answered 2xx within this.
const TARGET: Duration = Duration::from_secs(10);
/// A generous bound on the collector's resident high-water mark.
const MAX_HWM_KIB: u64 = 256 * 1024;

/// One attack at a time: they share two cores with everything else.
static SERIAL: Mutex<()> = Mutex::new(());

fn sends() -> usize {
    std::env::var("OPTIN_AVAIL_SENDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5).max(1)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A collector binary serving a fresh database that has SCHEMA registered.
struct Collector {
    server: Child2,
    db: Db,
}

impl Collector {
    /// `prepare` runs on the empty database before anything opens it.
    fn start(rt: &tokio::runtime::Runtime, backend: &str, extra: &[&str], prepare: impl FnOnce(&str)) -> Collector {
        let db = rt.block_on(Db::new(backend));
        prepare(&db.url);
        let file = db.dir.path().join("schema.json");
        std::fs::write(&file, SCHEMA).unwrap();
        let out = bin().args(["--db", &db.url, "schema", "add"]).arg(&file).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let server = Child2::spawn(&db.url, &db.dir.path().join("serve.log"), extra);
        Collector { server, db }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/report", self.server.ingest)
    }

    /// The collector process's resident high-water mark, in KiB.
    fn hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Stops the server (by its handle) and returns how many reports it stored.
    fn stop(mut self, rt: &tokio::runtime::Runtime) -> i64 {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        match self.db.sqlite_path() {
            Some(p) => rt.block_on(async { open_sqlite(&p).await.count_reports().await.unwrap() }),
            None => rt.block_on(async { open_pg(&self.db.url).await.count_reports().await.unwrap() }),
        }
    }
}

/// One report sent by the real library from a fresh installation: the
/// status of its first attempt (None: no answer) and how long the send took.
fn library_send(endpoint: &str, dir: &Path) -> (Option<u64>, Duration) {
    let config = json!({
        "product": "Mail Archiver",
        "product_version": "5.2.1",
        "endpoint": endpoint,
        "state_dir": dir.to_str().unwrap(),
        "schema": serde_json::from_str::<Value>(SCHEMA).unwrap(),
    });
    let client = Client::open(&config.to_string()).unwrap();
    client.set_consent(true).unwrap();
    client.set_count("users", 7).unwrap();
    client.tick_at(now()).unwrap();
    let status: Value = serde_json::from_str(&client.status().unwrap()).unwrap();
    let due = status["next_due"].as_i64().expect("a report is scheduled");
    let t = Instant::now();
    client.tick_at(due).unwrap();
    // The library gives up on its own after 30 s.
    client.flush(Duration::from_secs(45)).unwrap();
    let took = t.elapsed();
    let history: Value = serde_json::from_str(&client.history().unwrap()).unwrap();
    (history["reports"][0]["status"].as_u64(), took)
}

/// Legitimate sends, one after another, while an attack runs; stops at the
/// first one that misses the target. Returns what each got and took.
fn legitimate_sends(c: &Collector, n: usize) -> Vec<(Option<u64>, Duration)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![];
    for i in 0..n {
        let r = library_send(&c.endpoint(), &dir.path().join(format!("inst-{i}")));
        let missed = !r.0.is_some_and(|s| (200..300).contains(&s)) || r.1 > TARGET;
        out.push(r);
        if missed {
            break;
        }
    }
    out
}

/// Prints the figures and asserts the target.
fn check(attack: &str, backend: &str, results: &[(Option<u64>, Duration)], n: usize, hwm_kib: u64) {
    let mut ms: Vec<u128> = results.iter().map(|r| r.1.as_millis()).collect();
    ms.sort();
    let ok = results.iter().filter(|r| r.0.is_some_and(|s| (200..300).contains(&s)) && r.1 <= TARGET).count();
    eprintln!(
        "availability: {attack} ({backend}): {ok} of {n} legitimate sends 2xx within {} s; latency median {} ms, max {} ms; \
         statuses {:?}; collector VmHWM {} MiB",
        TARGET.as_secs(),
        ms.get(ms.len() / 2).copied().unwrap_or(0),
        ms.last().copied().unwrap_or(0),
        results.iter().map(|r| r.0).collect::<Vec<_>>(),
        hwm_kib / 1024
    );
    assert_eq!(ok, n, "{attack} ({backend}): legitimate sends missed the target: {results:?}");
    assert!(hwm_kib < MAX_HWM_KIB, "{attack} ({backend}): collector VmHWM {hwm_kib} KiB");
}

/// Attack tasks on their own runtime thread; stopped (and joined) by `stop`.
struct Attack {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
    /// Requests the attack got an answer to, by status (index: status / 100).
    answers: Arc<[AtomicU64; 6]>,
}

impl Attack {
    fn run<F, Fut>(tasks: usize, task: F) -> Attack
    where
        F: Fn(usize, watch::Receiver<bool>, Arc<[AtomicU64; 6]>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let answers: Arc<[AtomicU64; 6]> = Arc::new(Default::default());
        let a = answers.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let handles: Vec<_> = (0..tasks).map(|i| tokio::spawn(task(i, stopped.clone(), a.clone()))).collect();
                for h in handles {
                    let _ = h.await;
                }
            });
        });
        Attack { stop, thread, answers }
    }

    /// Lets the attack take hold before the legitimate sends start.
    fn settle(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn stop(self) -> [u64; 6] {
        let _ = self.stop.send(true);
        self.thread.join().unwrap();
        std::array::from_fn(|i| self.answers[i].load(Ordering::Relaxed))
    }
}

/// Reads until the peer closes (or the attack stops); returns what was read.
async fn read_until_closed(s: &mut TcpStream, stop: &mut watch::Receiver<bool>) -> Option<Vec<u8>> {
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = stop.changed() => return None,
        }
    }
}

fn count_status(answers: &[AtomicU64; 6], response: &[u8]) {
    let status = std::str::from_utf8(response).ok().and_then(|t| t.split(' ').nth(1)).and_then(|s| s.parse::<usize>().ok());
    if let Some(s) = status {
        answers[(s / 100).min(5)].fetch_add(1, Ordering::Relaxed);
    }
}

/// True once the attack is told to stop (or its handle is gone).
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// One request on a fresh connection; counts the answer's status class.
/// False when the attack is to stop.
async fn one_request(at: SocketAddr, req: &[u8], stop: &mut watch::Receiver<bool>, answers: &[AtomicU64; 6]) -> bool {
    let Ok(mut s) = TcpStream::connect(at).await else {
        tokio::time::sleep(Duration::from_millis(5)).await;
        return !stopped(stop);
    };
    if s.write_all(req).await.is_err() {
        return !stopped(stop);
    }
    match read_until_closed(&mut s, stop).await {
        Some(resp) => {
            count_status(answers, &resp);
            true
        }
        None => false,
    }
}

/// 256 connections (the default in-flight limit) send a request head and
/// then stall their bodies; each reconnects as soon as it is closed.
#[test]
fn slow_bodies_do_not_block_reports() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = runtime();
    for backend in backends() {
        let c = Collector::start(&rt, backend, &[], |_| {});
        let at = c.server.ingest;
        let attack = Attack::run(256, move |_, mut stop, answers| async move {
            let head = "POST /v1/report HTTP/1.1\r\nHost: c\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{";
            while one_request(at, head.as_bytes(), &mut stop, &answers).await {}
        });
        attack.settle(Duration::from_millis(1500));
        let results = legitimate_sends(&c, sends());
        let hwm = c.hwm_kib();
        attack.stop();
        c.stop(&rt);
        check("slow bodies", backend, &results, sends(), hwm);
    }
}

/// Three times the connection cap in idle connections (they send nothing),
/// each reconnecting as soon as it is closed. The cap is 128 here
/// (`OPTIN_AVAIL_CAP=1024` for the default).
#[test]
fn idle_connections_do_not_block_reports() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = runtime();
    let cap: usize = std::env::var("OPTIN_AVAIL_CAP").ok().and_then(|s| s.parse().ok()).unwrap_or(128);
    for backend in backends() {
        let c = Collector::start(&rt, backend, &["--max-connections", &cap.to_string()], |_| {});
        let at = c.server.ingest;
        let attack = Attack::run(3 * cap, move |_, mut stop, answers| async move {
            while one_request(at, b"", &mut stop, &answers).await {}
        });
        attack.settle(Duration::from_millis(1500));
        let results = legitimate_sends(&c, sends());
        let hwm = c.hwm_kib();
        attack.stop();
        c.stop(&rt);
        check("idle connections", backend, &results, sends(), hwm);
    }
}

/// Quarantine rows for a full quarantine (64 MiB in bodies of 512 bytes, at
/// most 1,000 per digest), written into a database at migration 1 (as a
/// database in use before the upgrade would hold them).
fn fill_quarantine(url: &str) {
    const ROWS: i64 = 64 * 2048;
    if let Some(path) = url.strip_prefix("sqlite:") {
        let mut conn = rusqlite::Connection::open(path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(include_str!("../migrations/sqlite/001_init.sql")).unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1) \
             INSERT INTO quarantine (qkey, digest, week, body) \
             SELECT randomblob(16), printf('sha256:%064x', i / 1000), ?2, zeroblob(512) FROM n",
            rusqlite::params![ROWS, Week::of_unix(now()).to_string()],
        )
        .unwrap();
        tx.commit().unwrap();
    } else {
        let url = url.to_string();
        runtime().block_on(async move {
            let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let tx = client.transaction().await.unwrap();
            tx.batch_execute(include_str!("../migrations/postgres/001_init.sql")).await.unwrap();
            tx.batch_execute("CREATE TABLE collector_migrations (version BIGINT PRIMARY KEY); INSERT INTO collector_migrations VALUES (1)")
                .await
                .unwrap();
            tx.execute(
                "INSERT INTO quarantine (qkey, digest, week, body) \
                 SELECT decode(md5(i::text), 'hex'), 'sha256:' || lpad(to_hex(i / 1000), 64, '0'), $2, \
                 convert_to(repeat('x', 512), 'UTF8') FROM generate_series(0, $1::BIGINT - 1) AS i",
                &[&ROWS, &Week::of_unix(now()).to_string()],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        });
    }
}

/// Against a full quarantine, 224 clients post reports of a plausible shape
/// for made-up schema digests (a new digest each time).
#[test]
fn made_up_digests_do_not_block_reports() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = runtime();
    for backend in backends() {
        let c = Collector::start(&rt, backend, &[], fill_quarantine);
        let at = c.server.ingest;
        let digest = schema().digest;
        let attack = Attack::run(224, move |i, mut stop, answers| {
            let digest = digest.clone();
            async move {
                let mut n = 0u64;
                loop {
                    n += 1;
                    let made_up = format!("sha256:{:032x}{:032x}", i, n);
                    let body = report(&report_id(1_000_000 * i as u64 + n)).replace(&digest, &made_up);
                    let req = format!(
                        "POST /v1/report HTTP/1.1\r\nHost: c\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if !one_request(at, req.as_bytes(), &mut stop, &answers).await {
                        break;
                    }
                }
            }
        });
        attack.settle(Duration::from_millis(1500));
        let results = legitimate_sends(&c, sends());
        let hwm = c.hwm_kib();
        let answers = attack.stop();
        c.stop(&rt);
        eprintln!("made-up digests ({backend}): attack answers by class (1xx..5xx) {answers:?}");
        assert!(answers[4] > 0, "the quarantine was full: made-up digests got 429");
        check("made-up digests", backend, &results, sends(), hwm);
    }
}

/// Reports of the current week for the readers to chew on: a dozen distinct
/// ones stored through the store, then copied under random ids by SQL.
fn fill_reports(url: &str, n: usize) {
    let t = Instant::now();
    let url = url.to_string();
    let s = schema();
    let week = Week::of_unix(now());
    let mut kinds = vec![];
    for (i, archived) in [1000, 2000, 5000, 10000, 20000, 50000].iter().enumerate() {
        for trial in [false, true] {
            let body = report(&report_id(i as u64 * 2 + trial as u64))
                .replace("\"archived\":2000", &format!("\"archived\":{archived}"))
                .replace("\"trial\":false", &format!("\"trial\":{trial}"));
            kinds.push(validate(&s, body.as_bytes()).unwrap());
        }
    }
    let copies = (n / kinds.len()) as i64 - 1;
    let columns = "week, schema_id, os_family, os_version, arch, product, product_version, library_version, codes";
    match url.strip_prefix("sqlite:") {
        Some(p) => {
            runtime().block_on(async {
                let store = open_sqlite(Path::new(p)).await;
                let id = optin_collector::commands::add_schema(&store, SCHEMA).await.unwrap().id;
                store.insert_reports(kinds.iter().map(|k| keep(k, id, week)).collect()).await.unwrap();
            });
            let conn = rusqlite::Connection::open(p).unwrap();
            conn.execute(
                &format!(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
                     INSERT INTO reports (report_id, {columns}) SELECT randomblob(16), {columns} FROM reports, n"
                ),
                [copies],
            )
            .unwrap();
        }
        None => runtime().block_on(async {
            let store = open_pg(&url).await;
            let id = optin_collector::commands::add_schema(&store, SCHEMA).await.unwrap().id;
            store.insert_reports(kinds.iter().map(|k| keep(k, id, week)).collect()).await.unwrap();
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client
                .execute(
                    &format!(
                        "INSERT INTO reports (report_id, {columns}) SELECT uuid_send(gen_random_uuid()), {columns} \
                         FROM reports CROSS JOIN generate_series(1, $1::BIGINT)"
                    ),
                    &[&copies],
                )
                .await
                .unwrap();
            client.batch_execute("ANALYZE reports").await.unwrap();
        }),
    }
    eprintln!("fill: {n} reports in {} ms", t.elapsed().as_millis());
}

/// The admin listener's heaviest reads.
const READS: [&str; 3] = ["/api/v1/crosstab?product=Mail+Archiver&a=trial&b=archived", "/api/v1/mean?product=Mail+Archiver&field=archived", "/"];

fn get_blocking(at: SocketAddr, path: &str) -> Response {
    raw_request(at, None, "GET", path, &[], b"")
}

/// Clients reading the admin listener's heaviest endpoints (the current
/// week's figures, computed from its raw reports) as fast as they can, 64
/// at once (the admin listener's connection cap).
#[test]
fn admin_readers_do_not_slow_ingest() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = runtime();
    for backend in backends() {
        let c = Collector::start(&rt, backend, &[], |url| fill_reports(url, 200_000));
        let admin = c.server.admin;
        for path in READS {
            let t = Instant::now();
            let r = get_blocking(admin, path);
            eprintln!("admin readers ({backend}): {path} alone: {} in {} ms", r.status, t.elapsed().as_millis());
        }
        let attack = Attack::run(64, move |i, mut stop, answers| async move {
            let req = format!("GET {} HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n", READS[i % READS.len()]);
            while one_request(admin, req.as_bytes(), &mut stop, &answers).await {}
        });
        attack.settle(Duration::from_millis(1500));
        let results = legitimate_sends(&c, sends());
        let hwm = c.hwm_kib();
        let answers = attack.stop();
        c.stop(&rt);
        eprintln!("admin readers ({backend}): attack answers by class (1xx..5xx) {answers:?}");
        assert!(answers[2] > 0, "the readers were answered");
        check("admin readers", backend, &results, sends(), hwm);
    }
}

/// A raw request whose head (request line, header lines and the blank line)
/// is exactly `head_len` bytes, with a valid report as its body.
fn request_with_head(head_len: usize, id: u64) -> Vec<u8> {
    let body = report(&report_id(id));
    let fixed = format!(
        "POST /v1/report HTTP/1.1\r\nHost: c\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Pad: \r\n\r\n",
        body.len()
    );
    let pad = "p".repeat(head_len - fixed.len());
    let head = fixed.replace("X-Pad: ", &format!("X-Pad: {pad}"));
    assert_eq!(head.len(), head_len);
    [head.into_bytes(), body.into_bytes()].concat()
}

/// The head limit is 32 KiB, exactly: a head of 32,768 bytes is read, one of
/// 32,769 is not. Then 32 clients post 45,124-byte heads (the size once
/// stored) as fast as they can: every one is refused with 431, nothing of
/// theirs is stored.
#[test]
fn oversized_heads_are_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = runtime();
    for backend in backends() {
        let c = Collector::start(&rt, backend, &[], |_| {});
        let at = c.server.ingest;
        let ask = |req: Vec<u8>| {
            let mut s = std::net::TcpStream::connect(at).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            // The server may close before reading it all.
            let _ = std::io::Write::write_all(&mut s, &req);
            read_response(&mut s)
        };
        let at_limit = ask(request_with_head(32 * 1024, 1));
        let over = ask(request_with_head(32 * 1024 + 1, 2));
        let attack = Attack::run(32, move |i, mut stop, answers| async move {
            let mut n = 0;
            loop {
                n += 1;
                let req = request_with_head(45_124, 1_000_000 * (i as u64 + 1) + n);
                if !one_request(at, &req, &mut stop, &answers).await {
                    break;
                }
            }
        });
        attack.settle(Duration::from_millis(1500));
        let results = legitimate_sends(&c, sends());
        let hwm = c.hwm_kib();
        let answers = attack.stop();
        let stored = c.stop(&rt);
        eprintln!("oversized heads ({backend}): attack answers by class (1xx..5xx) {answers:?}");
        assert_eq!(at_limit.status, 204, "a 32 KiB head is within the limit: {at_limit:?}");
        assert_eq!(over.status, 431, "{over:?}");
        assert_eq!(answers[2], 0, "an oversized head was answered 2xx");
        assert!(answers[4] > 0, "oversized heads were answered 4xx");
        let good = results.iter().filter(|r| r.0.is_some_and(|s| (200..300).contains(&s))).count() as i64;
        assert_eq!(stored, 1 + good, "only the 32 KiB head's report and the legitimate ones are stored");
        check("oversized heads", backend, &results, sends(), hwm);
    }
}

/// The quarantine's caps are checked against running counts (two rows, not
/// a sum over every body): they follow inserts, moves and expiry exactly.
async fn quarantine_counts_follow<S: Store>(store: S) {
    use optin_collector::storage::QuarantineCaps;
    let caps = QuarantineCaps { per_digest_count: 3, per_digest_bytes: 100, total_bytes: 250 };
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let (a, b, c) = (d('a'), d('b'), d('c'));
    let put = |digest: String, week: &'static str, len: usize| {
        let store = store.clone();
        async move { store.quarantine(&digest, week, &vec![b'x'; len], caps).await.unwrap() }
    };
    for _ in 0..3 {
        assert!(put(a.clone(), "2026-W47", 30).await);
    }
    assert!(!put(a.clone(), "2026-W47", 30).await, "per-digest count");
    assert!(!put(b.clone(), "2026-W47", 120).await, "per-digest bytes");
    for _ in 0..3 {
        assert!(put(b.clone(), "2026-W47", 30).await);
    }
    assert!(put(c.clone(), "2026-W49", 30).await);
    assert!(put(c.clone(), "2026-W49", 30).await);
    assert!(!put(c.clone(), "2026-W49", 30).await, "total bytes: 240 + 30 > 250");
    let summary = store.quarantine_summary().await.unwrap();
    assert_eq!(summary, vec![(a.clone(), 3), (b.clone(), 3), (c.clone(), 2)]);
    for (digest, n) in &summary {
        assert_eq!(store.quarantined(digest).await.unwrap().len() as i64, *n);
    }
    // Moving two of a's bodies out frees their bytes.
    let keys: Vec<Vec<u8>> = store.quarantined(&a).await.unwrap().into_iter().take(2).map(|q| q.key).collect();
    store.remove_quarantined(keys).await.unwrap();
    assert_eq!(store.quarantine_summary().await.unwrap(), vec![(a.clone(), 1), (b.clone(), 3), (c.clone(), 2)]);
    assert!(put(c.clone(), "2026-W49", 30).await, "total bytes: 180 + 30");
    // Expiry takes week 47 (a and b) off the counts, c stays.
    assert_eq!(store.expire_quarantine("2026-W48").await.unwrap(), 4);
    assert_eq!(store.quarantine_summary().await.unwrap(), vec![(c.clone(), 3)]);
    assert!(!put(c.clone(), "2026-W49", 30).await, "c still at its count cap");
    for _ in 0..3 {
        assert!(put(a.clone(), "2026-W49", 30).await, "a's count starts again from zero");
    }
}

#[test]
fn quarantine_caps_hold_on_running_counts() {
    let rt = runtime();
    for backend in backends() {
        rt.block_on(async {
            let db = Db::new(backend).await;
            match db.sqlite_path() {
                Some(p) => quarantine_counts_follow(open_sqlite(&p).await).await,
                None => quarantine_counts_follow(open_pg(&db.url).await).await,
            }
        });
    }
}
