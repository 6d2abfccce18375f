//! Demo host: a mock e-mail archiver that embeds optin-telemetry, asks for
//! consent in the terminal, shows the "view data" screen, and sends its report
//! to a real `optin-collector serve` it builds (cargo, this workspace) and
//! starts on free loopback ports with a temporary SQLite database; it ends by
//! printing what the collector stored.
//!
//!     cargo run --example archiver              # asks y/N/v on the terminal
//!     cargo run --example archiver -- --yes     # non-interactive
//!     cargo run --example archiver -- --no
//!
//! With a collector of your own (`optin-collector serve`, see the README):
//!
//!     cargo run --example archiver -- --yes --collector http://127.0.0.1:8080/v1/report \
//!         --collector-admin http://127.0.0.1:8081
//!
//! (start it with `serve --min-cell 1` to see a single report's figures).
//! `--test-server` uses a minimal recording server instead of the collector
//! (also the fallback where the collector cannot be built or started, and
//! the choice on Windows, where the collector is not supported).
//!
//! The report is due at a random moment within 7 days; the demo drives the
//! library's clock with `tick_at` to that moment instead of waiting a week.

use optin_telemetry::{Client, ConsentState};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ARCHIVED_ITEMS: u64 = 1_234_567;

/// The mock archiver's schema; the fleet demo (`optin-collector demo`)
/// registers and sends the very same one.
fn schema() -> Value {
    serde_json::from_str(include_str!("../archiver-schema.json")).expect("examples/archiver-schema.json is valid JSON")
}

/// A collector that answers 204 and hands each request body to the channel.
fn start_collector() -> (String, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let url = format!("http://{}/v1/report", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length.min(1 << 20)];
            if reader.read_exact(&mut body).is_ok() {
                // Queue the body before answering, so it is there when the
                // client's flush returns.
                let _ = tx.send(body);
                let _ = reader.get_mut().write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        }
    });
    (url, rx)
}

fn date(unix: i64) -> String {
    // Civil date from days since the epoch (proleptic Gregorian, UTC).
    let (days, secs) = (unix.div_euclid(86400), unix.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

fn view_data(client: &Client, language: &str) {
    let d: Value = serde_json::from_str(&client.describe(language).expect("describe")).expect("describe is JSON");
    println!("\n  What would be sent to {} (schema {} {}):", d["endpoint"].as_str().unwrap_or(""), d["schema_version"], d["schema_digest"].as_str().unwrap_or(""));
    for f in d["fields"].as_array().into_iter().flatten() {
        println!("    {:<16} {:<22} {}", f["name"].as_str().unwrap_or(""), f["value"].to_string(), f["description"].as_str().unwrap_or(""));
    }
    println!(
        "\n  This report is one of at most 2^{:.1} possible reports (identifying-bits bound of the schema).",
        d["privacy"]["max_bits"].as_f64().unwrap_or(f64::NAN)
    );
    println!("\n  The exact bytes of the next report:\n    {}\n", client.preview());
}

/// The rounded value of `archived_items` in a report's bytes.
fn archived_items(report: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(report).ok()?["fields"]["archived_items"].as_u64()
}

fn ask(question: &str) -> Option<String> {
    print!("{question}");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    match std::io::stdin().read_line(&mut answer) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(answer.trim().to_lowercase()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let language = std::env::var("LANG").ok().filter(|l| l.starts_with("de")).map_or("en", |_| "de");
    let mut started = None;
    let real = real_collector(&args).or_else(|| {
        if args.iter().any(|a| a == "--test-server") || cfg!(windows) {
            return None;
        }
        match StartedCollector::start() {
            Ok(c) => {
                let urls = (c.ingest.clone(), c.admin.clone());
                started = Some(c);
                Some(urls)
            }
            Err(e) => {
                println!("(could not start optin-collector: {e}; using a minimal recording server instead)");
                None
            }
        }
    });
    let (endpoint, received) = match &real {
        Some((ingest, _)) => (ingest.clone(), mpsc::channel().1),
        None => start_collector(),
    };
    let state_dir = std::env::temp_dir().join(format!("optin-telemetry-demo-{}", std::process::id()));
    let config = json!({
        "product": "Mock Mail Archiver", "product_version": "5.2.1",
        "endpoint": endpoint, "state_dir": state_dir, "schema": schema(),
    });
    println!("Mock Mail Archiver 5.2.1 — collector listening at {endpoint}");
    let client = match Client::open(&config.to_string()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot open telemetry: {e} (code {:?})", e.code);
            std::process::exit(1);
        }
    };
    // The archiver's static state: counts and kinds only, never names or addresses.
    client
        .set_values_json(&json!({"trial": false, "edition": "enterprise", "users": 37, "archived_items": ARCHIVED_ITEMS, "profiles": ["imap", "m365", "pst"]}).to_string())
        .expect("values match the schema");

    let answer = if args.iter().any(|a| a == "--yes") {
        Some(true)
    } else if args.iter().any(|a| a == "--no") {
        Some(false)
    } else {
        loop {
            match ask("Help improve the archiver by sending anonymous usage statistics once a week? [y/N/v = view data] ").as_deref() {
                Some("v") => view_data(&client, language),
                Some("y") | Some("yes") => break Some(true),
                Some(_) => break Some(false),
                None => break None,
            }
        }
    };
    match answer {
        Some(granted) => client.set_consent(granted).expect("consent is saved"),
        None => println!("\nNo answer (end of input): the consent stays undecided."),
    }
    view_data(&client, language);
    let consent = client.consent().expect("consent readable");
    println!("Consent: {}", consent.as_str());

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    client.tick_at(now).expect("tick");
    let status: Value = serde_json::from_str(&client.status().unwrap()).unwrap();
    let Some(due) = status["next_due"].as_i64() else {
        println!("Nothing is scheduled (consent {}, blocked_by {}): nothing will leave this machine.", status["consent"], status["blocked_by"]);
        std::thread::sleep(Duration::from_millis(200));
        let n = received.try_iter().count();
        let n = n + if real.is_some() { delivered(&client).len() } else { 0 };
        println!("Collector received {n} request(s).");
        if let Some((_, admin)) = &real {
            print_stored(admin);
        }
        drop(started); // process::exit runs no destructors
        let _ = std::fs::remove_dir_all(&state_dir);
        std::process::exit(if n == 0 { 0 } else { 2 });
    };
    println!("First report due {} (a random moment within 7 days); fast-forwarding the clock to it.", date(due));
    let preview = client.preview();
    let drawn = archived_items(preview.as_bytes());
    println!(
        "archived_items is {ARCHIVED_ITEMS}: sent as 1000000 or 2000000, 2000000 with probability {:.4} (unbiased); this report drew {}.",
        (ARCHIVED_ITEMS - 1_000_000) as f64 / 1_000_000.0,
        drawn.map_or("nothing".into(), |v| v.to_string())
    );
    client.tick_at(due).expect("tick");
    client.flush(Duration::from_secs(15)).expect("send finishes");
    let bodies: Vec<Vec<u8>> = if real.is_some() { delivered(&client) } else { received.try_iter().collect() };
    println!("Collector received {} report(s):", bodies.len());
    for b in &bodies {
        println!("  {}", String::from_utf8_lossy(b));
    }
    let identical = bodies.len() == 1 && bodies[0] == preview.as_bytes();
    println!("Received body is byte-identical to the preview: {}", if identical { "yes" } else { "NO" });
    if let Some(b) = bodies.first() {
        println!("The collector got archived_items = {} (the value drawn for this report).", archived_items(b).map_or("nothing".into(), |v| v.to_string()));
    }
    println!("The next report has a new id and draws again: archived_items = {}.", archived_items(client.preview().as_bytes()).map_or("nothing".into(), |v| v.to_string()));

    if consent == ConsentState::Granted {
        client.set_consent(false).expect("revoke");
        client.tick_at(due + 7 * 86400).expect("tick");
        client.flush(Duration::from_secs(15)).expect("flush");
        std::thread::sleep(Duration::from_millis(200));
        let after = if real.is_some() { delivered(&client).len().saturating_sub(bodies.len()) } else { received.try_iter().count() };
        if let Some((_, admin)) = &real {
            print_stored(admin);
        }
        println!("Consent withdrawn; a week later {after} more report(s) were sent.");
        let history: Value = serde_json::from_str(&client.history().unwrap()).unwrap();
        println!("History keeps {} report(s) that left the machine.", history["reports"].as_array().map_or(0, Vec::len));
        drop(client);
        drop(started);
        let _ = std::fs::remove_dir_all(&state_dir);
        std::process::exit(if identical && after == 0 { 0 } else { 2 });
    }
}

// ----- a real optin-collector -----

/// `optin-collector serve` started for this demo; stopped (and its
/// temporary database removed) when dropped.
struct StartedCollector {
    child: std::process::Child,
    dir: std::path::PathBuf,
    ingest: String,
    admin: String,
}

impl StartedCollector {
    fn start() -> Result<StartedCollector, String> {
        use std::process::{Command, Stdio};
        // Built with the profile this example runs under, into the same target directory.
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let profile_dir = exe.parent().and_then(|p| p.parent()).ok_or("no target directory")?.to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-q", "-p", "optin-collector"]).current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        println!("Building and starting optin-collector (the vendor's collector) ...");
        if !build.status().map_err(|e| format!("cargo: {e}"))?.success() {
            return Err("cargo build -p optin-collector failed".into());
        }
        let bin = profile_dir.join(format!("optin-collector{}", std::env::consts::EXE_SUFFIX));
        let dir = std::env::temp_dir().join(format!("optin-collector-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let db = format!("sqlite:{}", dir.join("collector.db").display());
        let schema_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/archiver-schema.json");
        let added = Command::new(&bin).args(["--db", &db, "schema", "add"]).arg(&schema_file).stdout(Stdio::null()).status();
        if !added.map_err(|e| format!("{}: {e}", bin.display()))?.success() {
            return Err("optin-collector schema add failed".into());
        }
        let free_port = || TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string());
        let (ingest_port, admin_port) = (free_port()?, free_port()?);
        let log = std::fs::File::create(dir.join("serve.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .args(["--db", &db, "serve", "--listen", &format!("127.0.0.1:{ingest_port}"), "--admin-listen", &format!("127.0.0.1:{admin_port}")])
            // A demo of one installation: show its figures (a real collector hides counts below 10).
            .args(["--min-cell", "1"])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let started = StartedCollector { child, dir, ingest: format!("http://127.0.0.1:{ingest_port}/v1/report"), admin: format!("http://127.0.0.1:{admin_port}") };
        for _ in 0..100 {
            if http_get(&started.admin, "/healthz").is_ok_and(|t| t.starts_with("HTTP/1.1 200") || t.starts_with("HTTP/1.0 200")) {
                return Ok(started);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("optin-collector did not answer on {} (see {})", started.admin, started.dir.join("serve.log").display()))
    }
}

impl Drop for StartedCollector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A GET over plain HTTP on loopback: the whole answer, head and body.
fn http_get(base: &str, path: &str) -> std::io::Result<String> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

/// (ingest URL, admin base URL) when --collector is given.
fn real_collector(args: &[String]) -> Option<(String, String)> {
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let ingest = value("--collector")?;
    Some((ingest, value("--collector-admin").unwrap_or_else(|| "http://127.0.0.1:8081".into())))
}

/// Bodies of the reports the collector took (2xx), from the history.
fn delivered(client: &Client) -> Vec<Vec<u8>> {
    let history: Value = serde_json::from_str(&client.history().unwrap_or_default()).unwrap_or_default();
    history["reports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["http_status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .filter_map(|r| r["body"].as_str().map(|b| b.as_bytes().to_vec()))
        .collect()
}

/// Prints the collector's figures for this week (GET over plain HTTP on loopback).
fn print_stored(admin: &str) {
    let path = "/api/v1/fields?product=Mock%20Mail%20Archiver";
    match http_get(admin, path) {
        Ok(text) => println!("The collector stored (its {path} answer):\n  {}", text.split("\r\n\r\n").nth(1).unwrap_or("").trim()),
        Err(e) => println!("Could not ask the collector at {admin}: {e}"),
    }
}
