//! `optin-collector demo`: a collector on SQLite in a temporary directory,
//! the example archiver schema registered, and a simulated fleet sending
//! through the real library (`optin_telemetry::Client`, driven with
//! `tick_at`) over several weeks — with a product update in week 5 that
//! changes the schema, so installations must consent again — then every
//! complete week is released (release.rs), the released capped mean and
//! median are printed beside the true ones, and the dashboard is served
//! until Ctrl-C (`--json`: one JSON document instead, and no serving).

use crate::bench::Gen;
use crate::privacy::Week;
use crate::storage::sqlite::SqliteStore;
use crate::{start, AppState, Options};
use optin_telemetry::Client;
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Simulated installations.
    #[arg(long, default_value_t = 2000)]
    pub installations: usize,
    /// Simulated weeks (the last one is the current week).
    #[arg(long, default_value_t = 8)]
    pub weeks: u32,
    /// Where the dashboard is served.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    #[command(flatten)]
    pub release: crate::release::ReleaseArgs,
    /// Simulate, print a summary and exit instead of serving.
    #[arg(long)]
    pub no_serve: bool,
    /// Simulate without serving and print one JSON document: per released
    /// week the true and released capped mean and median, and the guarantee.
    #[arg(long)]
    pub json: bool,
    /// Write the dashboard URL to this file once it is served (for scripts).
    #[arg(long)]
    pub url_file: Option<PathBuf>,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 48)]
    pub seed: u64,
}

/// The example archiver's schema (examples/archiver-schema.json, the one
/// `cargo run --example archiver` sends), version 1.
pub fn schema_v1() -> Value {
    serde_json::from_str(include_str!("../../examples/archiver-schema.json")).expect("examples/archiver-schema.json is valid JSON")
}

/// Version 2 (product 5.3): adds the retention policy; consent must be given again.
pub fn schema_v2() -> Value {
    let mut s = schema_v1();
    s["version"] = json!(2);
    s["fields"].as_array_mut().expect("fields").push(json!(
        {"name": "retention", "type": "choice", "values": ["1y", "6y", "10y", "forever"],
         "description": {"en": "Configured retention period.", "de": "Eingestellte Aufbewahrungsfrist."}}));
    s
}

struct Installation {
    dir: PathBuf,
    client: Option<Client>,
    consents: bool,
    updated: bool,
    reconsented: bool,
    values: Value,
    /// The operating system this simulated installation reports.
    os: (&'static str, &'static str),
}

/// A mostly Windows fleet (servers and desktops), as the archiver's is:
/// (family, version, share in percent).
const OS_SPREAD: [(&str, &str, u64); 7] = [
    ("windows", "10.0.17763", 14), // Server 2019
    ("windows", "10.0.20348", 22), // Server 2022
    ("windows", "10.0.26100", 6),  // Server 2025 / Windows 11 24H2
    ("windows", "10.0.19045", 24), // Windows 10 22H2
    ("windows", "10.0.22631", 20), // Windows 11 23H2
    ("linux", "6.1", 9),
    ("linux", "5.15", 5),
];

pub fn os(g: &mut Gen) -> (&'static str, &'static str) {
    let mut x = g.below(OS_SPREAD.iter().map(|o| o.2).sum());
    for (family, version, share) in OS_SPREAD {
        if x < share {
            return (family, version);
        }
        x -= share;
    }
    unreachable!("x is below the sum of the shares")
}

pub fn values(g: &mut Gen) -> Value {
    // Users: most installations are small offices.
    let users = match g.below(100) {
        0..=24 => 1 + g.below(4),
        25..=49 => 5 + g.below(5),
        50..=74 => 10 + g.below(15),
        75..=89 => 25 + g.below(25),
        90..=96 => 50 + g.below(50),
        _ => 100 + g.below(900),
    };
    // Archive size grows with users, log-normal-ish spread. The exact count:
    // the library rounds it (1-2-5, unbiased) in each report.
    let archived = users * (2000 + g.below(20_000)) * (1 + g.below(3));
    let edition = ["standard", "standard", "standard", "smb", "smb", "enterprise"][g.below(6) as usize];
    let mut profiles = vec![];
    for (name, pct) in [("imap", 70), ("exchange", 35), ("m365", 40), ("gmail", 15), ("pst", 20)] {
        if g.below(100) < pct {
            profiles.push(name);
        }
    }
    if profiles.is_empty() {
        profiles.push("imap");
    }
    json!({"trial": g.below(100) < 4, "edition": edition, "users": users, "archived_items": archived, "profiles": profiles})
}

/// The simulated product, registered with its two versions.
pub const PRODUCT: &str = "Mock Mail Archiver";

/// Per released week: the true capped and uncapped mean and median of the
/// archive sizes (from the raw reports, which the demo may read: it made
/// them) beside the released ones, and the guarantee.
async fn compare(store: &SqliteStore, config: &crate::release::ReleaseConfig) -> Result<Value, String> {
    use crate::storage::Store;
    let err = |e: crate::storage::StoreError| e.to_string();
    let schemas = crate::storage::SchemaSet::from_rows(&store.schemas().await.map_err(err)?);
    let mut weeks = vec![];
    let mut guarantee = Value::Null;
    for (week, body) in store.releases(PRODUCT).await.map_err(err)? {
        let r = crate::release::Release::from_json(&body)?;
        let Some(s) = r.means.get("archived_items") else { continue };
        let rows = store.release_rows(&week, PRODUCT).await.map_err(err)?;
        // The field's position differs between schema versions: take each
        // row's own schema.
        let t = truth_of(&rows, &schemas, config.cap("archived_items"));
        guarantee = json!({"epsilon_per_year": r.guarantee.epsilon_per_year, "delta": r.guarantee.delta, "rho_week": r.guarantee.rho_week});
        let mean = s.mean.as_ref();
        weeks.push(json!({
            "week": week,
            "reports": rows.len(),
            "reports_released": r.reports.value,
            "capped_mean": {"true": t.capped_mean, "released": mean.map(|m| m.value), "low": mean.map(|m| m.low), "high": mean.map(|m| m.high), "cap": s.cap},
            "mean_uncapped_true": t.mean,
            "median": {"true": t.median, "released": s.median.as_ref().map(|m| m.value),
                "low": s.median.as_ref().map(|m| m.low), "high": s.median.as_ref().map(|m| m.high)},
        }));
    }
    Ok(json!({"weeks": weeks, "guarantee": guarantee}))
}

fn truth_of(rows: &[String], schemas: &crate::storage::SchemaSet, cap: i64) -> crate::accuracy::Truth {
    // Rows of each schema version, with that version's field position.
    let mut by_schema: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
    for r in rows {
        let id = r.split(crate::release::SEP).next().and_then(|x| x.parse().ok()).unwrap_or(0);
        by_schema.entry(id).or_default().push(r.clone());
    }
    let mut values: Vec<String> = vec![];
    for (id, rows) in by_schema {
        let Some(pos) = schemas.by_id.get(&id).and_then(|s| s.field("archived_items")).map(|(i, _)| i) else { continue };
        // Rewritten to carry the value at position 0, so one truth() serves.
        for r in rows {
            let code = r.split(crate::release::SEP).nth(6).and_then(|c| c.split(',').nth(pos)).unwrap_or("").to_string();
            values.push(["0", "", "", "", "", "", &code].join(&crate::release::SEP.to_string()));
        }
    }
    crate::accuracy::truth(&values, 0, cap)
}

fn print_comparison(c: &Value) {
    let pct = |released: &Value, truth: &Value| match (released.as_f64(), truth.as_f64()) {
        (Some(r), Some(t)) if t > 0.0 => format!("{:+.1} %", (r - t) / t * 100.0),
        _ => "-".into(),
    };
    let num = |v: &Value| v.as_f64().map_or("-".to_string(), |x| crate::published::group(x.round() as i64));
    println!("demo: what the noise and the cap cost (archive sizes; true values from the raw reports, released from the stored releases)");
    println!("  {:<9} {:>7} {:>11} {:>11} {:>8} {:>13} {:>11} {:>11}", "week", "reports", "capped true", "released", "error", "uncapped true", "median true", "released");
    for w in c["weeks"].as_array().into_iter().flatten() {
        let (cm, md) = (&w["capped_mean"], &w["median"]);
        println!(
            "  {:<9} {:>7} {:>11} {:>11} {:>8} {:>13} {:>11} {:>11}",
            w["week"].as_str().unwrap_or(""),
            w["reports"],
            num(&cm["true"]),
            num(&cm["released"]),
            pct(&cm["released"], &cm["true"]),
            num(&w["mean_uncapped_true"]),
            num(&md["true"]),
            num(&md["released"]),
        );
    }
    if let Some(cap) = c["weeks"].get(0).and_then(|w| w["capped_mean"]["cap"].as_i64()) {
        println!("  (capped: each installation counted up to {})", crate::published::group(cap));
    }
    let g = &c["guarantee"];
    println!(
        "demo: guarantee per installation: epsilon {:.2} per year at delta {:e} (rho {:.4} per week)",
        g["epsilon_per_year"].as_f64().unwrap_or(f64::NAN),
        g["delta"].as_f64().unwrap_or(0.0),
        g["rho_week"].as_f64().unwrap_or(f64::NAN)
    );
}

fn open(inst: &Installation, endpoint: &str, updated: bool, g: &mut Gen) -> Result<Client, String> {
    let (version, schema) = if updated { ("5.3.0", schema_v2()) } else { ("5.2.1", schema_v1()) };
    let config = json!({"product": PRODUCT, "product_version": version, "endpoint": endpoint,
        "state_dir": inst.dir, "schema": schema});
    let (family, version) = inst.os;
    let client = Client::open_for_simulation(&config.to_string(), family, version).map_err(|e| format!("tel_open: {e}"))?;
    let mut v = inst.values.clone();
    if updated {
        v["retention"] = json!(["6y", "6y", "10y", "10y", "10y", "1y", "forever"][g.below(7) as usize]);
    }
    client.set_values_json(&v.to_string()).map_err(|e| format!("values: {e}"))?;
    Ok(client)
}

fn progress(done: usize, total: usize, label: &str) {
    let width = 40;
    let filled = done * width / total.max(1);
    let mut err = std::io::stderr();
    let _ = write!(err, "\r[{}{}] {:>3} % {label}   ", "#".repeat(filled), "-".repeat(width - filled), done * 100 / total.max(1));
    let _ = err.flush();
}

/// Ticks at the library's next due time if it falls within `ts`.
fn tick_due(c: &Client, ts: [i64; 2]) -> Result<(), String> {
    let status: Value = serde_json::from_str(&c.status().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    if let Some(due) = status["next_due"].as_i64().filter(|d| (ts[0]..ts[1]).contains(d)) {
        c.tick_at(due).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn simulate(args: &DemoArgs, dir: &std::path::Path, endpoint: &str, sim: &AtomicI64) -> Result<(), String> {
    let weeks = args.weeks.max(1);
    let now = (crate::system_clock())();
    let first = Week::of_unix(now).minus(i64::from(weeks) - 1);
    let update_week = 4u32; // week 5, counted from 1
    let mut g = Gen(0x9e37_79b9_7f4a_7c15 ^ args.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let n = args.installations.max(1);
    if !args.json {
        eprintln!("demo: {n} installations over {weeks} weeks, sending to {endpoint}");
    }
    let mut fleet: Vec<Installation> = (0..n)
        .map(|i| Installation {
            dir: dir.join(format!("inst-{i}")),
            client: None,
            consents: g.below(100) < 60,
            updated: false,
            reconsented: false,
            values: values(&mut g),
            os: os(&mut g),
        })
        .collect();
    let steps = weeks as usize * n;
    let mut done = 0;
    for w in 0..weeks {
        let start_t = first.minus(-i64::from(w)).start_unix();
        sim.store(start_t + 3 * 86_400, Ordering::SeqCst);
        let ts = [start_t + 60, start_t + 7 * 86_400 - 60];
        // Update rollout from week 5: half at once, then most of the rest.
        let update_share = match w.checked_sub(update_week) {
            None => 0,
            Some(0) => 50,
            Some(1) => 75,
            Some(_) => 90,
        };
        for chunk in fleet.chunks_mut(64) {
            for inst in chunk.iter_mut() {
                if !inst.updated && g.below(100) < update_share {
                    inst.updated = true;
                    inst.client = None;
                }
                if inst.client.is_none() {
                    let client = open(inst, endpoint, inst.updated, &mut g)?;
                    if inst.consents && !inst.updated {
                        client.set_consent(true).map_err(|e| e.to_string())?;
                    }
                    inst.client = Some(client);
                }
                // After the update, consenting users answer the new request
                // over the following weeks (the re-consent dip).
                if inst.updated && inst.consents && !inst.reconsented && g.below(100) < 55 {
                    inst.reconsented = true;
                    if let Some(c) = &inst.client {
                        c.set_consent(true).map_err(|e| e.to_string())?;
                    }
                }
                // The host ticks when it starts and then at the due time
                // the library reports (a running service would tick every
                // few minutes; ticking late only starts a catch-up delay).
                if let Some(c) = &inst.client {
                    c.tick_at(ts[0]).map_err(|e| e.to_string())?;
                    tick_due(c, ts)?;
                }
            }
            // Two rounds: a send that failed or was deferred may come due
            // again within the week.
            for _ in 0..2 {
                for inst in chunk.iter() {
                    if let Some(c) = &inst.client {
                        c.flush(Duration::from_secs(30)).map_err(|e| e.to_string())?;
                        tick_due(c, ts)?;
                    }
                }
            }
            done += chunk.len();
            if !args.json {
                progress(done, steps, &format!("week {} of {weeks}", w + 1));
            }
        }
    }
    Ok(())
}

pub async fn run(args: DemoArgs) -> Result<(), String> {
    let mut rnd = [0u8; 8];
    getrandom::getrandom(&mut rnd).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("optin-collector-demo-{}-{:x}", std::process::id(), u64::from_le_bytes(rnd)));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(args: &DemoArgs, dir: &std::path::Path) -> Result<(), String> {
    let store = SqliteStore::open(&dir.join("collector.db")).map_err(|e| e.to_string())?;
    for s in [schema_v1(), schema_v2()] {
        crate::commands::add_schema(&store, &s.to_string()).await?;
    }
    let now = (crate::system_clock())();
    // Simulated time for the collector too (it only keeps the week).
    let sim = Arc::new(AtomicI64::new(0));
    let clock_sim = sim.clone();
    let system = crate::system_clock();
    let clock: crate::Clock = Arc::new(move || match clock_sim.load(Ordering::SeqCst) {
        0 => system(),
        t => t,
    });
    let mut config = args.release.config();
    // Every simulated week before the current one is over: release it now.
    config.grace_s = 0;
    let options = Options {
        release: config.clone(),
        // The demo releases once the simulation is done, not while weeks pass
        // in simulated time.
        release_interval: Duration::from_secs(365 * 86_400),
        max_inflight: 1024,
        ..Options::default()
    };
    let state = AppState::new(store.clone(), options, clock).await.map_err(|e| e.to_string())?;
    let ingest = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let admin = if args.json || args.no_serve { "127.0.0.1:0".parse().expect("an address") } else { args.admin_listen };
    let admin = tokio::net::TcpListener::bind(admin).await.map_err(|e| format!("--admin-listen {}: {e}", args.admin_listen))?;
    let running = start(state.clone(), ingest, admin, None).map_err(|e| e.to_string())?;
    let endpoint = format!("http://{}/v1/report", running.ingest_addr);
    let url = format!("http://{}/", running.admin_addr);

    let (a2, d2, e2, s2) = (args.clone(), dir.to_path_buf(), endpoint.clone(), sim.clone());
    // Client calls block (files, flush): keep them off the server's threads.
    tokio::task::spawn_blocking(move || simulate(&a2, &d2, &e2, &s2)).await.map_err(|e| e.to_string())??;
    sim.store(0, Ordering::SeqCst);
    // Registered once the weeks are simulated (the serving releaser would
    // otherwise release them, empty, before their reports arrive).
    let first = Week::of_unix(now).minus(i64::from(args.weeks.max(1)) - 1).to_string();
    let versions = ["5.2.1".to_string(), "5.3.0".to_string()];
    crate::commands::add_product(&store, PRODUCT, &versions, Some(&first), now).await?;
    crate::release::release_due(&store, now, &config).await?;
    let comparison = compare(&store, &config).await?;
    if args.json {
        running.stop().await;
        println!("{comparison}");
        return Ok(());
    }
    eprintln!();
    let stored = crate::storage::Store::count_reports(&store).await.map_err(|e| e.to_string())?;
    println!("demo: {stored} reports stored; {} week(s) released", comparison["weeks"].as_array().map_or(0, Vec::len));
    print_comparison(&comparison);
    if args.no_serve {
        running.stop().await;
        return Ok(());
    }    println!("demo: dashboard at {url}  (Ctrl-C to stop)");
    if let Some(f) = &args.url_file {
        std::fs::write(f, &url).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    // Ctrl-C or a termination request: either way the temporary directory
    // is removed by the caller.
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    running.stop().await;
    Ok(())
}
