//! optin-collector: the reference collector for optin-telemetry reports.
//!
//! [`privacy`] decides what is kept, [`report`] turns body bytes into an
//! outcome using the library's own validator, [`storage`] holds all SQL,
//! [`release`] computes the weekly differentially private releases (the only
//! source of published figures, shaped by [`published`]), [`retention`]
//! deletes, [`http`] serves. Tests start the real
//! server on port 0 through [`start`].

pub mod accuracy;
pub mod api;
pub mod bench;
pub mod commands;
pub mod dashboard;
pub mod demo;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod privacy;
pub mod published;
pub mod release;
pub mod report;
pub mod retention;
pub mod storage;

use metrics::Metrics;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use storage::{QuarantineCaps, SchemaSet, Store};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Unix seconds now. Injected so tests can place reports in other weeks;
/// only privacy.rs turns it into something stored (the ISO week).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    })
}

#[derive(Clone, Debug)]
pub struct Options {
    pub ingest_path: String,
    pub max_body: usize,
    /// Global limiter: requests being handled at once; beyond it, 429.
    pub max_inflight: usize,
    pub max_connections: usize,
    pub request_timeout: Duration,
    pub retry_after_s: u64,
    pub retain_weeks: u32,
    pub quarantine: QuarantineCaps,
    pub schema_refresh: Duration,
    pub purge_interval: Duration,
    /// Budget, caps, crosstabs and grace of the weekly releases.
    pub release: release::ReleaseConfig,
    /// How often serve looks for a release that has come due.
    pub release_interval: Duration,
    /// With a token, every admin request needs `Authorization: Bearer`.
    pub admin_token: api::Token,
    /// Aggregates and dashboard without a token (`--public`).
    pub public: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ingest_path: "/v1/report".into(),
            max_body: commands::MAX_BODY,
            max_inflight: 256,
            max_connections: 1024,
            request_timeout: Duration::from_secs(10),
            retry_after_s: 60,
            retain_weeks: 13,
            quarantine: QuarantineCaps::default(),
            schema_refresh: Duration::from_secs(5),
            purge_interval: Duration::from_secs(24 * 3600),
            release: release::ReleaseConfig::default(),
            release_interval: Duration::from_secs(60),
            admin_token: api::Token::default(),
            public: false,
        }
    }
}

pub struct AppState<S> {
    pub store: S,
    pub options: Options,
    pub metrics: Metrics,
    pub clock: Clock,
    pub inflight: Arc<Semaphore>,
    schemas: RwLock<Arc<SchemaSet>>,
    /// The live Oblivious HTTP keys, reloaded with the schemas.
    ohttp_keys: RwLock<Arc<gateway::Keys>>,
    started: std::time::Instant,
    /// Milliseconds since `started` of the last on-demand schema reload.
    last_reload_ms: std::sync::atomic::AtomicU64,
}

impl<S: Store> AppState<S> {
    pub async fn new(store: S, options: Options, clock: Clock) -> Result<Arc<Self>, storage::StoreError> {
        let schemas = SchemaSet::from_rows(&store.schemas().await?);
        let keys = gateway::Keys::from_rows(&store.ohttp_keys().await?);
        Ok(Arc::new(AppState {
            ohttp_keys: RwLock::new(Arc::new(keys)),
            inflight: Arc::new(Semaphore::new(options.max_inflight.max(1))),
            store,
            options,
            metrics: Metrics::default(),
            clock,
            schemas: RwLock::new(Arc::new(schemas)),
            started: std::time::Instant::now(),
            last_reload_ms: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    pub fn schemas(&self) -> Arc<SchemaSet> {
        self.schemas.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn ohttp_keys(&self) -> Arc<gateway::Keys> {
        self.ohttp_keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the Oblivious HTTP keys (`ohttp keygen` or `retire` run
    /// since): serve picks them up within `schema_refresh`.
    pub async fn refresh_ohttp_keys(&self) -> Result<(), storage::StoreError> {
        let rows = self.store.ohttp_keys().await?;
        if self.ohttp_keys().changed(&rows) {
            *self.ohttp_keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(gateway::Keys::from_rows(&rows));
        }
        Ok(())
    }

    /// Reloads the schemas for a digest not seen yet (a vendor registering a
    /// schema and shipping at once), at most once a second so that unknown
    /// digests cannot turn every request into a database read.
    pub async fn reload_for_unknown_digest(&self) -> Result<(), storage::StoreError> {
        use std::sync::atomic::Ordering;
        let now = self.started.elapsed().as_millis() as u64 + 1000;
        let last = self.last_reload_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000
            || self.last_reload_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return Ok(());
        }
        self.refresh_schemas().await
    }

    /// Re-reads the registered schemas (another process may have added one).
    pub async fn refresh_schemas(&self) -> Result<(), storage::StoreError> {
        let rows = self.store.schemas().await?;
        if rows.len() != self.schemas().by_id.len() {
            *self.schemas.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(SchemaSet::from_rows(&rows));
        }
        Ok(())
    }
}

/// A running server: its bound addresses and a way to stop it.
pub struct Running {
    pub ingest_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Starts ingest and admin on the given listeners plus the schema refresher,
/// the releaser (a release as soon as a week is due) and the periodic purge.
pub fn start<S: Store>(
    state: Arc<AppState<S>>,
    ingest: TcpListener,
    admin: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<Running> {
    let (stop, stopped) = watch::channel(false);
    let (ingest_addr, admin_addr) = (ingest.local_addr()?, admin.local_addr()?);
    let limits = http::ConnLimits { max_connections: state.options.max_connections, header_timeout: state.options.request_timeout };
    let mut tasks = vec![
        tokio::spawn(http::serve_http(ingest, http::ingest_router(state.clone()), tls, limits, stopped.clone())),
        tokio::spawn(http::serve_http(
            admin,
            http::admin_router(state.clone()),
            None,
            http::ConnLimits { max_connections: 64, ..limits },
            stopped.clone(),
        )),
    ];
    let refresher = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(refresher.options.schema_refresh);
        loop {
            tick.tick().await;
            if let Err(e) = refresher.refresh_schemas().await {
                eprintln!("schema refresh: {e}");
            }
            if let Err(e) = refresher.refresh_ohttp_keys().await {
                eprintln!("OHTTP key refresh: {e}");
            }
        }
    }));
    let releaser = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(releaser.options.release_interval);
        loop {
            tick.tick().await;
            match release::release_due(&releaser.store, (releaser.clock)(), &releaser.options.release).await {
                Ok(s) => {
                    for (product, week, reports) in s.released {
                        eprintln!("release: {product} {week} released ({reports} reports, noisy)");
                    }
                }
                Err(e) => eprintln!("release: {e}"),
            }
        }
    }));
    let purger = state;
    tasks.push(tokio::spawn(async move {
        let period = purger.options.purge_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(60).min(period), period);
        loop {
            tick.tick().await;
            match retention::purge(&purger.store, (purger.clock)(), purger.options.retain_weeks, &purger.options.release).await {
                Ok(s) => eprintln!(
                    "purge: {} release(s) made, {} report(s) and {} quarantined body(ies) deleted",
                    s.weeks_released.len(),
                    s.reports_deleted,
                    s.quarantine_deleted
                ),
                Err(e) => eprintln!("purge: {e}"),
            }
        }
    }));
    Ok(Running { ingest_addr, admin_addr, stop, tasks })
}
