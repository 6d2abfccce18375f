//! `optin-collector --db URL bench`: drives a real `serve` (in this process,
//! on a loopback port) with concurrent HTTP clients; with `--releases N`
//! times a week's release on N stored reports and the published endpoints
//! and dashboard served from a year of stored releases; with `--accuracy`
//! measures the releases' errors. Prints figures; asserts nothing (not a
//! test).

use crate::privacy::{keep, Week};
use crate::storage::postgres::PgStore;
use crate::storage::sqlite::SqliteStore;
use crate::storage::{DbUrl, SchemaSet, Store};
use crate::{start, AppState, Options};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use optin_telemetry::report::{build, Builtins, ReportIdentity};
use optin_telemetry::schema::{FieldValue, Schema};
use optin_telemetry::validate::validate;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Concurrent HTTP clients (each on its own keep-alive connection).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Reports posted in total.
    #[arg(long, default_value_t = 50_000)]
    pub requests: usize,
    /// Instead of ingest: time a week's release on this many stored reports,
    /// then the endpoints and the dashboard over 52 weeks of releases.
    #[arg(long)]
    pub releases: Option<usize>,
    /// Instead of ingest: the accuracy table (README "Accuracy"):
    /// relative errors over this many releases per cell.
    #[arg(long)]
    pub accuracy: Option<usize>,
    /// Database to benchmark; must be empty or a scratch database.
    #[arg(long, value_parser = DbUrl::parse, default_value = "sqlite:/tmp/optin-collector-bench/bench.db")]
    pub bench_db: DbUrl,
}

pub const BENCH_SCHEMA: &str = r#"{"version": 1, "fields": [
  {"name": "users", "type": "count", "buckets": [1, 5, 10, 25, 50, 100, 250, 1000], "description": {"en": "Users"}},
  {"name": "archived", "type": "count", "rounding": "1-2-5", "description": {"en": "Archived messages (rounded 1-2-5)"}},
  {"name": "trial", "type": "bool", "description": {"en": "Trial installation"}},
  {"name": "edition", "type": "choice", "values": ["standard", "enterprise", "oem"], "description": {"en": "Edition"}},
  {"name": "profiles", "type": "choices", "values": ["imap", "exchange", "m365", "gmail", "pst"], "description": {"en": "Archiving profiles"}}
]}"#;

/// A small deterministic generator (xorshift) so runs are comparable.
pub struct Gen(pub u64);

impl Gen {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A report body as the library would build it, with varied values.
pub fn sample_report(schema: &Schema, g: &mut Gen) -> String {
    let series = [0u64, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000];
    let values = vec![
        Some(FieldValue::Count(g.below(2000))),
        Some(FieldValue::Count(series[g.below(series.len() as u64) as usize])),
        Some(FieldValue::Bool(g.below(20) == 0)),
        if g.below(10) == 0 { None } else { Some(FieldValue::Choice(g.below(3) as usize)) },
        Some(FieldValue::Choices((0..5).filter(|_| g.below(3) == 0).collect::<BTreeSet<usize>>())),
    ];
    let builtins = Builtins {
        os_family: ["windows", "linux", "macos"][g.below(3) as usize].into(),
        os_version: ["10.0.19045", "10.0.22631", "6.1", "14.5"][g.below(4) as usize].into(),
        arch: ["x86_64", "aarch64"][g.below(2) as usize].into(),
        product: "Mail Archiver".into(),
        product_version: format!("4.{}.{}", g.below(3), g.below(10)),
        library_version: optin_telemetry::VERSION.into(),
    };
    // The values above are already series members, so the draw key only
    // needs to be fixed, not secret.
    let identity = ReportIdentity { id: format!("{:016x}{:016x}", g.next_u64(), g.next_u64()), draw_key: [0; 32] };
    build(schema, &values, &builtins, &identity)
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    match &args.bench_db {
        DbUrl::Sqlite(path) => {
            let store = SqliteStore::open(path).map_err(|e| e.to_string())?;
            run_with(store, &args).await
        }
        DbUrl::Postgres(url) => {
            let store = PgStore::open(url, 16).await.map_err(|e| e.to_string())?;
            run_with(store, &args).await
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run_with<S: Store>(store: S, args: &BenchArgs) -> Result<(), String> {
    if let Some(n) = args.releases {
        return releases(store, n, &args.bench_db).await;
    }
    if let Some(n) = args.accuracy {
        return crate::accuracy::table(n).await;
    }
    let err = |e: crate::storage::StoreError| e.to_string();
    let (schema, body) = crate::commands::parse_schema(BENCH_SCHEMA)?;
    store.add_schema(&schema.digest, &body).await.map_err(err)?;
    let before = store.count_reports().await.map_err(err)?;
    let options = Options { max_inflight: 4096, ..Options::default() };
    let state = AppState::new(store.clone(), options, crate::system_clock()).await.map_err(err)?;
    let ingest = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let running = start(state, ingest, admin, None).map_err(|e| e.to_string())?;
    let addr = running.ingest_addr;

    let mut g = Gen(0x2545_f491_4f6c_dd1d ^ (std::process::id() as u64) << 20 ^ before as u64);
    let bodies: Vec<Bytes> = (0..args.requests).map(|_| Bytes::from(sample_report(&schema, &mut g))).collect();
    let total_body: usize = bodies.iter().map(Bytes::len).sum();
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = vec![];
    for _ in 0..args.clients.max(1) {
        let (bodies, next) = (bodies.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let mut latencies = vec![];
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                let req = hyper::Request::post("/v1/report")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(bodies[i].clone()))
                    .map_err(|e| e.to_string())?;
                let t = Instant::now();
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                let ok = resp.status() == hyper::StatusCode::NO_CONTENT;
                let _ = resp.into_body().collect().await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                failures += usize::from(!ok);
            }
            Ok::<_, String>((latencies, failures))
        }));
    }
    let mut latencies = vec![];
    let mut failures = 0;
    for w in workers {
        let (l, f) = w.await.map_err(|e| e.to_string())??;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    running.stop().await;
    latencies.sort_by(f64::total_cmp);
    let stored = store.count_reports().await.map_err(err)? - before;
    println!("backend: {}", args.bench_db);
    println!(
        "ingest: {} reports from {} clients in {:.2} s = {:.0} reports/s; latency p50 {:.2} ms, p99 {:.2} ms; {} not 204; {} stored; mean body {} bytes",
        latencies.len(),
        args.clients,
        elapsed,
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        failures,
        stored,
        total_body / bodies.len().max(1)
    );

    Ok(())
}

/// GET over a fresh loopback connection; returns (status, body length).
async fn fetch(addr: std::net::SocketAddr, path: &str) -> Result<(u16, usize), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", "bench").body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body.len()))
}

async fn releases<S: Store>(store: S, reports: usize, db: &DbUrl) -> Result<(), String> {
    let err = |e: crate::storage::StoreError| e.to_string();
    let (schema, body) = crate::commands::parse_schema(BENCH_SCHEMA)?;
    let schema_id = store.add_schema(&schema.digest, &body).await.map_err(err)?;
    let now = crate::system_clock()();
    let current = Week::of_unix(now);
    let mut g = Gen(0x5eed_0fa6 ^ now as u64);
    let fill = |week: Week, n: usize, g: &mut Gen| -> Result<Vec<crate::privacy::ReportRow>, String> {
        (0..n)
            .map(|_| {
                let body = sample_report(&schema, g);
                validate(&schema, body.as_bytes()).map(|r| keep(&r, schema_id, week)).map_err(|r| r.to_string())
            })
            .collect()
    };
    let product = crate::storage::ProductRow {
        name: "Mail Archiver".into(),
        first_week: current.minus(52).to_string(),
        versions: (0..3).flat_map(|a| (0..10).map(move |b| format!("4.{a}.{b}"))).collect(),
    };
    store.add_product(product.clone()).await.map_err(err)?;
    let t = Instant::now();
    // The week before this one holds the large sample; 51 older weeks 2,000
    // reports each, as a year of history would be.
    let big = current.minus(1);
    let mut left = reports;
    while left > 0 {
        let n = left.min(10_000);
        store.insert_reports(fill(big, n, &mut g)?).await.map_err(err)?;
        left -= n;
    }
    for w in 2..=52 {
        store.insert_reports(fill(current.minus(w), 2000, &mut g)?).await.map_err(err)?;
    }
    println!("backend: {db}");
    let (count, bytes) = (store.count_reports().await.map_err(err)?, store.size_bytes().await.map_err(err)?);
    println!(
        "data: {count} stored reports ({reports} in {big}, 2,000 in each of 51 older weeks); filled in {:.0} s; {bytes} bytes in the database = {:.0} bytes per report",
        t.elapsed().as_secs_f64(),
        bytes as f64 / count.max(1) as f64
    );
    let config = crate::release::ReleaseConfig::default();
    // One week's release on the large sample: read its rows, compute.
    let mut times = vec![];
    for _ in 0..3 {
        let t = Instant::now();
        let rows = store.release_rows(&big.to_string(), &product.name).await.map_err(err)?;
        let read = t.elapsed().as_secs_f64();
        let schemas = Arc::new(SchemaSet::from_rows(&store.schemas().await.map_err(err)?));
        let plan = crate::release::Plan::new(schemas, &product, &config)?;
        let n = rows.len();
        let week = big.to_string();
        let release = tokio::task::spawn_blocking(move || plan.release(&week, &rows)).await.map_err(|e| e.to_string())??;
        let total = t.elapsed().as_secs_f64();
        println!("release of {big} on {n} reports: read {read:.2} s, total {total:.2} s ({} figures)", release.budget.len());
        times.push(total);
    }
    times.sort_by(f64::total_cmp);
    println!("release: median {:.2} s over {} runs (not stored)", times[times.len() / 2], times.len());
    let t = Instant::now();
    let done = crate::release::release_due(&store, now, &config).await?;
    println!("release_due: {} releases stored in {:.1} s", done.released.len(), t.elapsed().as_secs_f64());
    let state = AppState::new(store.clone(), Options::default(), crate::system_clock()).await.map_err(err)?;
    let ingest = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let running = start(state, ingest, admin, None).map_err(|e| e.to_string())?;
    let addr = running.admin_addr;
    let last = current.minus(1);
    let paths = [
        "/api/v1/products".to_string(),
        "/api/v1/weeks".to_string(),
        format!("/api/v1/fields?product=Mail+Archiver&week={last}"),
        format!("/api/v1/fields?product=Mail+Archiver&week={}", current.minus(40)),
        format!("/api/v1/mean?product=Mail+Archiver&week={last}&field=archived"),
        "/".to_string(),
    ];
    for path in &paths {
        let mut times = vec![];
        let mut size = 0;
        for _ in 0..7 {
            let t = Instant::now();
            let (status, len) = fetch(addr, path).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                return Err(format!("{path}: HTTP {status}"));
            }
            size = len;
        }
        times.sort_by(f64::total_cmp);
        println!("  {path:<72} median {:>7.1} ms  max {:>7.1} ms  ({size} bytes)", times[times.len() / 2], times[times.len() - 1]);
    }
    running.stop().await;
    Ok(())
}
