//! The optin-collector command line. Logs go to stderr without timestamps
//! and never name a client.

use clap::{Parser, Subcommand};
use optin_collector::storage::postgres::PgStore;
use optin_collector::storage::sqlite::SqliteStore;
use optin_collector::storage::{DbUrl, Store};
use optin_collector::release::ReleaseArgs;
use optin_collector::{commands, retention, system_clock, AppState, Options};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "optin-collector", version, about = "Receives optin-telemetry reports and stores nothing personal.")]
struct Cli {
    /// Database: sqlite:PATH or postgres://USER@HOST/DB
    #[arg(long, global = true, default_value = "sqlite:collector-data/collector.db", value_parser = DbUrl::parse)]
    db: DbUrl,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive reports (ingest listener) and serve /healthz and /metrics (admin listener).
    Serve(ServeArgs),
    /// Register, list or check schemas.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Apply retention now: make every due release, delete old raw reports and quarantine.
    Purge {
        /// Keep raw reports this many weeks (releases are kept).
        #[arg(long, default_value_t = 13)]
        retain_weeks: u32,
        #[command(flatten)]
        release: ReleaseArgs,
    },
    /// Compute and store every weekly release that is due and not stored yet (idempotent).
    Release(ReleaseArgs),
    /// Register products (only they get releases and are named anywhere public), or list them.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Benchmark serve over loopback HTTP (see README).
    Bench(optin_collector::bench::BenchArgs),
    /// Write one week's stored releases (the numbers the API serves).
    Export {
        /// ISO week, e.g. 2026-W48.
        #[arg(long)]
        week: String,
        #[arg(long, value_parser = ["csv", "json"], default_value = "csv")]
        format: String,
    },
    /// Simulate a fleet through the real library and serve the dashboard.
    Demo(optin_collector::demo::DemoArgs),
    /// Oblivious HTTP gateway keys: make one, list them, retire one.
    #[command(subcommand)]
    Ohttp(OhttpCommand),
}

#[derive(Subcommand)]
enum OhttpCommand {
    /// Make a new live key; prints its key_config (base64 of application/ohttp-keys) for the product's configuration.
    Keygen,
    /// List keys: key id, week created, live or retired.
    List,
    /// Retire a key: the gateway refuses it from then on (serve notices within 5 s) and its secret is deleted.
    Retire { key_id: u8 },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    /// Keep raw reports this many weeks (releases are kept).
    #[arg(long, default_value_t = 13)]
    retain_weeks: u32,
    #[command(flatten)]
    release: ReleaseArgs,
    /// PEM certificate chain for built-in TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for built-in TLS (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Path of the ingest endpoint.
    #[arg(long, default_value = "/v1/report")]
    ingest_path: String,
    /// Requests handled at once before answering 429 (the global limiter).
    #[arg(long, default_value_t = 256)]
    max_inflight: usize,
    /// Open connections at once; at the cap, the connection idle (or sending its request) the longest is closed for a new one.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send a request's head, and again its body; also how long a kept-alive connection may stay idle.
    #[arg(long, default_value_t = 10)]
    request_timeout: u64,
    /// File holding the admin bearer token; required for a non-loopback --admin-listen.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Serve the released figures and the dashboard without a token.
    #[arg(long)]
    public: bool,
}

#[derive(Subcommand)]
enum ProductCommand {
    /// Register a product, or add versions to a registered one.
    Add {
        name: String,
        /// A product version with a cell of its own in version adoption (repeatable).
        #[arg(long = "version")]
        versions: Vec<String>,
        /// First ISO week to release (default: the current week).
        #[arg(long)]
        since: Option<String>,
    },
    /// List registered products with their versions.
    List,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Register a schema (the JSON of tel_open's "schema", or a whole configuration).
    Add { file: PathBuf },
    /// List registered schemas and quarantined digests.
    List,
    /// Print each field's identifying bits and the total; warn above 32.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | clap::error::ErrorKind::MissingSubcommand) => {
            return fail("a command is required: serve, schema add|list|check, product add|list, release, purge, export, ohttp keygen|list|retire, demo or bench (see --help)".into());
        }
        // One line, not clap's usage block: scripts and service managers log it whole.
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            return fail(format!("{first} (see --help)"));
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => fail(message),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("optin-collector: {message}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    if let Command::Schema(SchemaCommand::Check { file }) = &cli.command {
        // Needs no database.
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let (schema, _) = commands::parse_schema(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let (report, _over) = commands::check_report(&schema);
        print!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Bench(args) = cli.command {
        return optin_collector::bench::run(args).await.map(|_| ExitCode::SUCCESS);
    }
    if let Command::Demo(args) = cli.command {
        return optin_collector::demo::run(args).await.map(|_| ExitCode::SUCCESS);
    }
    let max_db_connections = match &cli.command {
        Command::Serve(a) => a.max_inflight.clamp(4, 32),
        _ => 2,
    };
    match &cli.db {
        DbUrl::Sqlite(path) => {
            let store = SqliteStore::open(path).map_err(|e| format!("{}: {e}", cli.db))?;
            // Otherwise serve would start and answer every report 503.
            if matches!(cli.command, Command::Serve(_)
                    | Command::Purge { .. }
                    | Command::Release(_)
                    | Command::Product(ProductCommand::Add { .. })
                    | Command::Ohttp(OhttpCommand::Keygen | OhttpCommand::Retire { .. }))
                && store.is_read_only()
            {
                return Err(format!("{}: the database file is read-only; this command writes to it", cli.db));
            }
            with_store(store, cli.command).await
        }
        DbUrl::Postgres(url) => {
            let store = PgStore::open(url, max_db_connections).await.map_err(|e| format!("{}: {e}", cli.db))?;
            with_store(store, cli.command).await
        }
    }
}

async fn with_store<S: Store>(store: S, command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Serve(a) => {
            let tls = match (&a.tls_cert, &a.tls_key) {
                (Some(c), Some(k)) => Some(optin_collector::http::tls_acceptor(c, k)?),
                _ => None,
            };
            if !a.ingest_path.starts_with('/') {
                return Err("--ingest-path must start with /".into());
            }
            let admin_token = match &a.admin_token_file {
                Some(f) => {
                    let text = std::fs::read_to_string(f).map_err(|e| format!("--admin-token-file {}: {e}", f.display()))?;
                    let token = text.trim();
                    if token.len() < 16 {
                        return Err(format!("--admin-token-file {}: the token must be at least 16 characters", f.display()));
                    }
                    // A byte order mark, a letter outside ASCII or a space
                    // inside: no client sends that in `Authorization`, so the
                    // admin listener would refuse everyone.
                    if !token.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(format!(
                            "--admin-token-file {}: the token must be printable ASCII without spaces (is there a byte order mark?)",
                            f.display()
                        ));
                    }
                    optin_collector::api::Token(Some(token.as_bytes().to_vec()))
                }
                None if !a.admin_listen.ip().is_loopback() => {
                    return Err(format!(
                        "--admin-listen {} is not a loopback address: give --admin-token-file too",
                        a.admin_listen
                    ))
                }
                None => optin_collector::api::Token(None),
            };
            let options = Options {
                release: a.release.config(),
                admin_token,
                public: a.public,
                ingest_path: a.ingest_path,
                max_inflight: a.max_inflight.max(1),
                max_connections: fit_connections(a.max_connections.max(1)),
                request_timeout: std::time::Duration::from_secs(a.request_timeout.max(1)),
                retain_weeks: a.retain_weeks,
                ..Options::default()
            };
            let ingest = tokio::net::TcpListener::bind(a.listen).await.map_err(|e| format!("--listen {}: {e}", a.listen))?;
            let admin =
                tokio::net::TcpListener::bind(a.admin_listen).await.map_err(|e| format!("--admin-listen {}: {e}", a.admin_listen))?;
            let path = options.ingest_path.clone();
            // A bad --cap or --crosstab is refused now, not at the first release.
            check_release_config(&store, &options.release).await?;
            let state = AppState::new(store, options, system_clock()).await.map_err(|e| e.to_string())?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            let running = optin_collector::start(state, ingest, admin, tls).map_err(|e| e.to_string())?;
            eprintln!(
                "optin-collector: ingest on {scheme}://{}{}, admin on http://{}",
                running.ingest_addr,
                path,
                running.admin_addr
            );
            shutdown_signal().await;
            running.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema(SchemaCommand::Add { file }) => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let s = commands::add_schema(&store, &text).await.map_err(|e| format!("{}: {e}", file.display()))?;
            println!("registered {} (id {})", s.digest, s.id);
            if let Some(w) = commands::parse_schema(&text).ok().and_then(|(schema, _)| commands::size_warning(&schema)) {
                eprint!("optin-collector: {w}");
            }
            if s.moved_in > 0 || !s.rejected.is_empty() {
                println!("quarantine: {} report(s) moved in", s.moved_in);
                for (reason, n) in &s.rejected {
                    println!("quarantine: {n} report(s) deleted as invalid ({reason})");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema(SchemaCommand::List) => {
            let rows = store.schemas().await.map_err(|e| e.to_string())?;
            let quarantine = store.quarantine_summary().await.map_err(|e| e.to_string())?;
            print!("{}", commands::list_text(&rows, &quarantine));
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema(SchemaCommand::Check { .. }) | Command::Bench(_) | Command::Demo(_) => {
            unreachable!("handled before opening the store")
        }
        Command::Export { week, format } => {
            let text = optin_collector::commands::export(&store, &week, &format).await?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Purge { retain_weeks, release } => {
            let config = release.config();
            check_release_config(&store, &config).await?;
            let s = retention::purge(&store, (system_clock())(), retain_weeks, &config).await.map_err(|e| e.to_string())?;
            let weeks: Vec<String> = s.weeks_released.iter().map(|(p, w)| format!("{p} {w}")).collect();
            println!(
                "released {} week(s){}; deleted {} raw report(s) and {} quarantined report(s)",
                weeks.len(),
                if weeks.is_empty() { String::new() } else { format!(" ({})", weeks.join(", ")) },
                s.reports_deleted,
                s.quarantine_deleted
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Release(args) => {
            let config = args.config();
            check_release_config(&store, &config).await?;
            let s = optin_collector::release::release_due(&store, (system_clock())(), &config).await?;
            for (product, week, reports) in &s.released {
                println!("released {product} {week}: {reports} reports (noisy)");
            }
            if s.skipped > 0 {
                println!("{} release(s) left to another process computing them", s.skipped);
            }
            if s.released.is_empty() && s.skipped == 0 {
                println!("nothing to release");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Product(ProductCommand::Add { name, versions, since }) => {
            let p = commands::add_product(&store, &name, &versions, since.as_deref(), (system_clock())()).await?;
            println!("registered {} (released from {}; versions: {})", p.name, p.first_week, if p.versions.is_empty() { "none".into() } else { p.versions.join(", ") });
            Ok(ExitCode::SUCCESS)
        }
        Command::Ohttp(OhttpCommand::Keygen) => {
            let (id, config) = optin_collector::gateway::keygen(&store, (system_clock())()).await?;
            eprintln!("optin-collector: OHTTP key {id} made (X25519, HKDF-SHA256, AES-128-GCM or ChaCha20Poly1305); key_config:");
            println!("{config}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Ohttp(OhttpCommand::List) => {
            print!("{}", optin_collector::gateway::list_text(&store).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ohttp(OhttpCommand::Retire { key_id }) => {
            optin_collector::gateway::retire(&store, key_id).await?;
            println!("retired OHTTP key {key_id}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Product(ProductCommand::List) => {
            let products = store.products().await.map_err(|e| e.to_string())?;
            if products.is_empty() {
                println!("no products registered");
            }
            for p in products {
                println!("{}  released from {}  versions: {}", p.name, p.first_week, p.versions.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Builds the release plan of every registered product once, so a --cap or
/// --crosstab that names no suitable field is an error at start.
async fn check_release_config<S: Store>(store: &S, config: &optin_collector::release::ReleaseConfig) -> Result<(), String> {
    let schemas = std::sync::Arc::new(optin_collector::storage::SchemaSet::from_rows(&store.schemas().await.map_err(|e| e.to_string())?));
    for p in store.products().await.map_err(|e| e.to_string())? {
        optin_collector::release::Plan::new(schemas.clone(), &p, config)?;
    }
    Ok(())
}

/// Descriptors kept free beside the ingest connections: the admin
/// listener's 64 connections, up to 16 more per listener while closed ones
/// wind down (`http::EVICTION_SLACK`), the database (files, or up to 40
/// pooled connections), the listeners and standard streams.
const RESERVED_FDS: usize = 192;

/// A service manager's default soft limit on open files (often 1024) is
/// below what --max-connections (default 1024) needs; at that limit accept
/// fails, so the admin listener and the database starve too. Raises the
/// soft limit to the hard one and, if that is still too low, lowers the
/// connection cap to fit (saying so once).
fn fit_connections(wanted: usize) -> usize {
    let Some(limit) = open_file_limit() else { return wanted };
    let fits = limit.saturating_sub(RESERVED_FDS).max(1);
    if wanted > fits {
        eprintln!("optin-collector: --max-connections {wanted} lowered to {fits}: the open-file limit is {limit}");
        fits
    } else {
        wanted
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<usize> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    Some(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<usize> {
    None
}

/// Ctrl-C, or SIGTERM from a service manager.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
