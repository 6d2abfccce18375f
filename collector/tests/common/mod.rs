//! Shared by the collector's integration tests: fresh databases (SQLite in a
//! temp dir, PostgreSQL when OPTIN_COLLECTOR_TEST_PG names a server), the real
//! server on port 0, a raw HTTP/1.1 client that controls every header and
//! the source address, and the real binary as a child process.
#![allow(dead_code)]

use optin_collector::storage::postgres::PgStore;
use optin_collector::storage::sqlite::SqliteStore;
use optin_collector::storage::Store;
use optin_collector::{start, AppState, Clock, Options, Running};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const PG_ENV: &str = "OPTIN_COLLECTOR_TEST_PG";

pub const SCHEMA: &str = r#"{"version": 2, "fields": [
  {"name": "users", "type": "count", "buckets": [1, 5, 10, 25, 50, 100], "description": {"en": "Users", "de": "Benutzer"}},
  {"name": "archived", "type": "count", "rounding": "1-2-5", "description": {"en": "Archived messages"}},
  {"name": "trial", "type": "bool", "description": {"en": "Trial"}},
  {"name": "edition", "type": "choice", "values": ["standard", "enterprise"], "description": {"en": "Edition"}},
  {"name": "profiles", "type": "choices", "values": ["imap", "exchange", "m365", "gmail", "pst"], "description": {"en": "Profiles"}}
]}"#;

pub fn schema() -> optin_telemetry::schema::Schema {
    optin_collector::commands::parse_schema(SCHEMA).unwrap().0
}

/// A valid report body for SCHEMA with the given id.
pub fn report(id: &str) -> String {
    let s = schema();
    format!(
        r#"{{"arch":"x86_64","fields":{{"archived":2000,"profiles":["imap","gmail"],"trial":false,"users":"5-9"}},"format":1,"library_version":"0.1.0","os_family":"linux","os_version":"6.1","product":"Mail Archiver","product_version":"5.2.1","report_id":"{id}","schema_digest":"{}","schema_version":2}}"#,
        s.digest
    )
}

pub fn report_id(n: u64) -> String {
    format!("{:032x}", 0xabcdef0000u64 * 7919 + n * 104_729)
}

/// The PostgreSQL server URL for tests, if one was started for them.
pub fn pg_url() -> Option<String> {
    std::env::var(PG_ENV).ok().filter(|s| !s.is_empty())
}

/// A fresh, empty PostgreSQL database on the test server; returns its URL.
pub async fn fresh_pg_db(base: &str) -> String {
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls).await.expect("connect to the test server");
    tokio::spawn(conn);
    let name = format!("t_{}", random_hex(8));
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    // Replace the database name at the end of the URL.
    let cut = base.rfind('/').unwrap();
    format!("{}/{name}", &base[..cut])
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Which backends this run covers; PostgreSQL only when a server is given.
pub fn backends() -> Vec<&'static str> {
    let mut v = vec!["sqlite"];
    if pg_url().is_some() {
        v.push("postgres");
    } else {
        eprintln!("note: {PG_ENV} not set: PostgreSQL half of this test not run");
    }
    v
}

pub struct Db {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Db {
    pub async fn new(backend: &str) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            "sqlite" => format!("sqlite:{}", dir.path().join("collector.db").display()),
            _ => fresh_pg_db(&pg_url().unwrap()).await,
        };
        Db { url, dir }
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.url.strip_prefix("sqlite:").map(PathBuf::from)
    }
}

/// A clock tests can move.
#[derive(Clone)]
pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn new(t: i64) -> TestClock {
        TestClock(Arc::new(AtomicI64::new(t)))
    }
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst)
    }
    pub fn clock(&self) -> Clock {
        let t = self.0.clone();
        Arc::new(move || t.load(Ordering::SeqCst))
    }
}

pub struct Server<S> {
    pub state: Arc<AppState<S>>,
    pub running: Running,
}

impl<S: Store> Server<S> {
    pub fn ingest(&self) -> SocketAddr {
        self.running.ingest_addr
    }
}

pub async fn serve<S: Store>(store: S, options: Options, clock: Clock) -> Server<S> {
    let state = AppState::new(store, options, clock).await.unwrap();
    let ingest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = start(state.clone(), ingest, admin, None).unwrap();
    Server { state, running }
}

pub async fn open_sqlite(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap()
}

pub async fn open_pg(url: &str) -> PgStore {
    PgStore::open(url, 8).await.unwrap()
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// One HTTP/1.1 request on a fresh connection from `from` (a loopback source
/// address), with exactly the headers given plus Host, Content-Length and
/// Connection: close. Blocking; call from spawn_blocking or plain threads.
pub fn raw_request(to: SocketAddr, from: Option<&str>, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut stream = match from {
        Some(ip) => socket2_bind(ip, to),
        None => TcpStream::connect(to).unwrap(),
    };
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: collector.test\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut buf = vec![];
    let _ = stream.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Response { status, head: head.to_string(), body: body.to_string() }
}

/// Connects from a chosen loopback address (e.g. 127.0.0.2).
fn socket2_bind(ip: &str, to: SocketAddr) -> TcpStream {
    // std has no bind-before-connect; tokio's TcpSocket does, then convert.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

pub async fn post(to: SocketAddr, body: &str) -> Response {
    let body = body.to_string();
    tokio::task::spawn_blocking(move || {
        raw_request(to, None, "POST", "/v1/report", &[("Content-Type", "application/json")], body.as_bytes())
    })
    .await
    .unwrap()
}

pub async fn get(to: SocketAddr, path: &str) -> Response {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || raw_request(to, None, "GET", &path, &[], b"")).await.unwrap()
}

/// The collector binary built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_optin-collector"))
}

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `optin-collector serve` as a child process, stderr to `log`.
pub struct Child2 {
    pub child: Child,
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Child2 {
    pub fn spawn(db: &str, log: &Path, extra: &[&str]) -> Child2 {
        let (ip, ap) = (free_port(), free_port());
        let ingest: SocketAddr = format!("127.0.0.1:{ip}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{ap}").parse().unwrap();
        let err = std::fs::File::create(log).unwrap();
        let child = bin()
            .args(["serve", "--db", db, "--listen", &ingest.to_string(), "--admin-listen", &admin.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let c = Child2 { child, ingest, admin, log: log.to_path_buf() };
        // Ready when /healthz answers.
        for _ in 0..600 {
            if TcpStream::connect(admin).is_ok() {
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("collector did not start; log: {}", std::fs::read_to_string(log).unwrap_or_default());
    }
}

impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Registers a product (as `optin-collector product add` does).
pub async fn register<S: Store>(store: &S, name: &str, versions: &[&str], since: &str) -> optin_collector::storage::ProductRow {
    let versions: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
    optin_collector::commands::add_product(store, name, &versions, Some(since), 0).await.unwrap()
}

/// Rows as ingest keeps them: each body validated against `schema` (id
/// `schema_id`) by the library and received in `week`.
pub fn rows_of(schema: &optin_telemetry::schema::Schema, schema_id: i64, week: optin_collector::privacy::Week, bodies: &[String]) -> Vec<optin_collector::privacy::ReportRow> {
    bodies
        .iter()
        .map(|b| {
            let accepted = optin_telemetry::validate::validate(schema, b.as_bytes()).unwrap_or_else(|e| panic!("{e}: {b}"));
            optin_collector::privacy::keep(&accepted, schema_id, week)
        })
        .collect()
}

/// Polls until `product` has at least `weeks` stored releases (serve makes
/// them on its own every `release_interval`).
pub async fn wait_for_releases<S: Store>(store: &S, product: &str, weeks: usize) -> Vec<String> {
    for _ in 0..600 {
        let have = store.released_weeks(product).await.unwrap();
        if have.len() >= weeks {
            return have;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{product}: fewer than {weeks} releases after 30 s: {:?}", store.released_weeks(product).await.unwrap());
}

/// The stored release of a product's week, parsed.
pub async fn stored_release<S: Store>(store: &S, product: &str, week: &str) -> optin_collector::release::Release {
    let body = store.release(product, week).await.unwrap().unwrap_or_else(|| panic!("no release of {product} {week}"));
    optin_collector::release::Release::from_json(&body).unwrap()
}

/// A real store that counts the calls reading raw reports (`release_rows`,
/// `report`) and records how many rows each `release_rows` returned.
#[derive(Clone)]
pub struct Counting<S> {
    pub inner: S,
    pub release_rows_calls: Arc<AtomicI64>,
    pub report_calls: Arc<AtomicI64>,
    /// (week, product, rows returned) of every `release_rows` call.
    pub rows_read: Arc<std::sync::Mutex<Vec<(String, String, usize)>>>,
}

impl<S: Store> Counting<S> {
    pub fn new(inner: S) -> Counting<S> {
        Counting { inner, release_rows_calls: Default::default(), report_calls: Default::default(), rows_read: Default::default() }
    }
    /// (release_rows calls, report calls) so far.
    pub fn raw_reads(&self) -> (i64, i64) {
        (self.release_rows_calls.load(Ordering::SeqCst), self.report_calls.load(Ordering::SeqCst))
    }
    pub fn rows_read(&self) -> Vec<(String, String, usize)> {
        self.rows_read.lock().unwrap().clone()
    }
}

use optin_collector::privacy::ReportRow;
use optin_collector::storage::{ProductRow, QuarantineCaps, Quarantined, Result as StoreResult, SchemaRow};

impl<S: Store> Store for Counting<S> {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn add_schema(&self, digest: &str, body: &str) -> StoreResult<i64> {
        self.inner.add_schema(digest, body).await
    }
    async fn schemas(&self) -> StoreResult<Vec<SchemaRow>> {
        self.inner.schemas().await
    }
    async fn insert_report(&self, row: ReportRow) -> StoreResult<bool> {
        self.inner.insert_report(row).await
    }
    async fn insert_reports(&self, rows: Vec<ReportRow>) -> StoreResult<u64> {
        self.inner.insert_reports(rows).await
    }
    async fn quarantine(&self, digest: &str, week: &str, body: &[u8], caps: QuarantineCaps) -> StoreResult<bool> {
        self.inner.quarantine(digest, week, body, caps).await
    }
    async fn quarantined(&self, digest: &str) -> StoreResult<Vec<Quarantined>> {
        self.inner.quarantined(digest).await
    }
    async fn quarantine_summary(&self) -> StoreResult<Vec<(String, i64)>> {
        self.inner.quarantine_summary().await
    }
    async fn remove_quarantined(&self, keys: Vec<Vec<u8>>) -> StoreResult<()> {
        self.inner.remove_quarantined(keys).await
    }
    async fn expire_quarantine(&self, before: &str) -> StoreResult<u64> {
        self.inner.expire_quarantine(before).await
    }
    async fn report_weeks(&self) -> StoreResult<Vec<String>> {
        self.inner.report_weeks().await
    }
    async fn delete_reports_before(&self, week: &str) -> StoreResult<u64> {
        self.inner.delete_reports_before(week).await
    }
    fn arrival_ordered(&self) -> bool {
        self.inner.arrival_ordered()
    }
    async fn compact(&self) -> StoreResult<()> {
        self.inner.compact().await
    }
    async fn count_reports(&self) -> StoreResult<i64> {
        self.inner.count_reports().await
    }
    async fn report(&self, report_id: [u8; 16]) -> StoreResult<Option<ReportRow>> {
        self.report_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.report(report_id).await
    }
    async fn add_product(&self, product: ProductRow) -> StoreResult<()> {
        self.inner.add_product(product).await
    }
    async fn products(&self) -> StoreResult<Vec<ProductRow>> {
        self.inner.products().await
    }
    async fn claim_release(&self, product: &str, week: &str, now: i64, claim_s: i64) -> StoreResult<bool> {
        self.inner.claim_release(product, week, now, claim_s).await
    }
    async fn store_release(&self, product: &str, week: &str, body: &str) -> StoreResult<bool> {
        self.inner.store_release(product, week, body).await
    }
    async fn release(&self, product: &str, week: &str) -> StoreResult<Option<String>> {
        self.inner.release(product, week).await
    }
    async fn releases(&self, product: &str) -> StoreResult<Vec<(String, String)>> {
        self.inner.releases(product).await
    }
    async fn released_weeks(&self, product: &str) -> StoreResult<Vec<String>> {
        self.inner.released_weeks(product).await
    }
    async fn release_rows(&self, week: &str, product: &str) -> StoreResult<Vec<String>> {
        self.release_rows_calls.fetch_add(1, Ordering::SeqCst);
        let rows = self.inner.release_rows(week, product).await?;
        self.rows_read.lock().unwrap().push((week.to_string(), product.to_string(), rows.len()));
        Ok(rows)
    }
    async fn size_bytes(&self) -> StoreResult<u64> {
        self.inner.size_bytes().await
    }
    async fn ohttp_keys(&self) -> StoreResult<Vec<optin_collector::storage::OhttpKeyRow>> {
        self.inner.ohttp_keys().await
    }
    async fn add_ohttp_key(&self, created_week: &str, ikm: &[u8]) -> StoreResult<Option<u8>> {
        self.inner.add_ohttp_key(created_week, ikm).await
    }
    async fn retire_ohttp_key(&self, key_id: u8) -> StoreResult<bool> {
        self.inner.retire_ohttp_key(key_id).await
    }
    async fn count_gateway_report(&self, week: &str) -> StoreResult<()> {
        self.inner.count_gateway_report(week).await
    }
    async fn gateway_weeks(&self) -> StoreResult<Vec<(String, i64, i64)>> {
        self.inner.gateway_weeks().await
    }
}
