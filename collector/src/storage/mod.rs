//! Storage behind one small trait, with SQLite and PostgreSQL implementations.
//! All SQL lives in this module's files and in migrations/.

pub mod postgres;
pub mod sqlite;

use crate::privacy::ReportRow;
use optin_telemetry::schema::Schema;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(format!("sqlite: {e}"))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The Display of a tokio-postgres error is terse ("db error"); the
        // server's message is in the source.
        match e.as_db_error() {
            Some(db) => StoreError(format!("postgres: {}", db.message())),
            None => StoreError(format!("postgres: {e}")),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A registered schema as stored.
#[derive(Clone, Debug)]
pub struct SchemaRow {
    pub id: i64,
    pub digest: String,
    pub body: String,
}

/// Registered schemas, parsed, by id and by digest.
#[derive(Default, Debug)]
pub struct SchemaSet {
    pub by_id: HashMap<i64, Arc<Schema>>,
    pub by_digest: HashMap<String, (i64, Arc<Schema>)>,
}

impl SchemaSet {
    pub fn from_rows(rows: &[SchemaRow]) -> SchemaSet {
        let mut set = SchemaSet::default();
        for row in rows {
            // Only valid schemas are ever added; a row that no longer parses
            // (a library change) is skipped rather than stopping the server.
            let Ok(value) = optin_telemetry::error::parse_json(&row.body, "schema") else { continue };
            let Ok(schema) = Schema::from_json(&value) else { continue };
            let schema = Arc::new(schema);
            set.by_id.insert(row.id, schema.clone());
            set.by_digest.insert(row.digest.clone(), (row.id, schema));
        }
        set
    }
}

/// A quarantined body.
#[derive(Clone, Debug)]
pub struct Quarantined {
    pub key: Vec<u8>,
    pub week: String,
    pub body: Vec<u8>,
}

/// Caps on the quarantine: per digest, and for all digests together.
#[derive(Clone, Copy, Debug)]
pub struct QuarantineCaps {
    pub per_digest_count: i64,
    pub per_digest_bytes: i64,
    pub total_bytes: i64,
}

impl Default for QuarantineCaps {
    fn default() -> Self {
        QuarantineCaps { per_digest_count: 1000, per_digest_bytes: 2 << 20, total_bytes: 64 << 20 }
    }
}

pub trait Store: Clone + Send + Sync + 'static {
    /// Checks the database is reachable.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
    /// Registers a schema; returns its id (the existing one if already there).
    fn add_schema(&self, digest: &str, body: &str) -> impl Future<Output = Result<i64>> + Send;
    fn schemas(&self) -> impl Future<Output = Result<Vec<SchemaRow>>> + Send;
    /// Stores a report; false when a report with that id is already stored.
    fn insert_report(&self, row: ReportRow) -> impl Future<Output = Result<bool>> + Send;
    /// Many reports in one transaction (quarantine move-in, benchmarks);
    /// returns how many were new.
    fn insert_reports(&self, rows: Vec<ReportRow>) -> impl Future<Output = Result<u64>> + Send;
    /// Keeps a body for an unregistered digest; false when a cap is reached.
    fn quarantine(&self, digest: &str, week: &str, body: &[u8], caps: QuarantineCaps) -> impl Future<Output = Result<bool>> + Send;
    fn quarantined(&self, digest: &str) -> impl Future<Output = Result<Vec<Quarantined>>> + Send;
    /// (digest, count) of every quarantined digest.
    fn quarantine_summary(&self) -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;
    fn remove_quarantined(&self, keys: Vec<Vec<u8>>) -> impl Future<Output = Result<()>> + Send;
    /// Deletes quarantined bodies received in weeks before `week`.
    fn expire_quarantine(&self, before: &str) -> impl Future<Output = Result<u64>> + Send;
    /// Weeks that have raw reports, ascending.
    fn report_weeks(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Deletes raw reports received before `week`; returns how many.
    fn delete_reports_before(&self, week: &str) -> impl Future<Output = Result<u64>> + Send;
    /// True when rows lie in arrival order on disk until [`Store::compact`]
    /// rewrites them (PostgreSQL's heap); purge then compacts every time.
    fn arrival_ordered(&self) -> bool {
        false
    }
    /// Makes deleted rows unrecoverable from the database files and rewrites
    /// the report table in key order.
    fn compact(&self) -> impl Future<Output = Result<()>> + Send;
    fn count_reports(&self) -> impl Future<Output = Result<i64>> + Send;
    fn report(&self, report_id: [u8; 16]) -> impl Future<Output = Result<Option<ReportRow>>> + Send;
    /// Registers a product (or adds versions to a registered one; its first
    /// week stays the earlier of the two).
    fn add_product(&self, product: ProductRow) -> impl Future<Output = Result<()>> + Send;
    /// Registered products, by name.
    fn products(&self) -> impl Future<Output = Result<Vec<ProductRow>>> + Send;
    /// Takes the claim on computing a release: true when no release is
    /// stored and no other process holds an unexpired claim (until
    /// `now + claim_s`).
    fn claim_release(&self, product: &str, week: &str, now: i64, claim_s: i64) -> impl Future<Output = Result<bool>> + Send;
    /// Stores a claimed release; false when one is stored already (it is
    /// never replaced).
    fn store_release(&self, product: &str, week: &str, body: &str) -> impl Future<Output = Result<bool>> + Send;
    /// The stored release of a product's week.
    fn release(&self, product: &str, week: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Every stored release of a product, (week, body), ascending by week.
    fn releases(&self, product: &str) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;
    /// Weeks with a stored release of a product, ascending.
    fn released_weeks(&self, product: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// The raw reports of `product` in `week`, one row each, as
    /// [`crate::release`] reads them: schema id, the built-ins in
    /// [`crate::release::BUILTIN_COLUMNS`] order and the codes, joined by
    /// [`crate::release::SEP`]. Only the release reads raw reports.
    fn release_rows(&self, week: &str, product: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Bytes the stored data takes (database files / relation sizes).
    fn size_bytes(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Every Oblivious HTTP key, live and retired, by key id.
    fn ohttp_keys(&self) -> impl Future<Output = Result<Vec<OhttpKeyRow>>> + Send;
    /// Stores a new key under the lowest key id never used; None when all
    /// 256 are taken.
    fn add_ohttp_key(&self, created_week: &str, ikm: &[u8]) -> impl Future<Output = Result<Option<u8>>> + Send;
    /// Deletes a key's secret; false when no live key has that id.
    fn retire_ohttp_key(&self, key_id: u8) -> impl Future<Output = Result<bool>> + Send;
    /// Adds one to the week's count of reports stored through the gateway.
    fn count_gateway_report(&self, week: &str) -> impl Future<Output = Result<()>> + Send;
    /// (week, reports stored through the gateway, reports stored) of every
    /// week that still has raw reports, ascending.
    fn gateway_weeks(&self) -> impl Future<Output = Result<Vec<(String, i64, i64)>>> + Send;
}

/// An Oblivious HTTP key as stored: `ikm` is the secret the key pair is
/// derived from, None once retired.
#[derive(Clone)]
pub struct OhttpKeyRow {
    pub key_id: u8,
    pub created_week: String,
    pub ikm: Option<Vec<u8>>,
}

impl fmt::Debug for OhttpKeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OhttpKeyRow({} {} {})", self.key_id, self.created_week, if self.ikm.is_some() { "live" } else { "retired" })
    }
}

/// Shared by both backends.
pub(crate) const SELECT_OHTTP_KEYS: &str = "SELECT key_id, created_week, ikm FROM ohttp_keys ORDER BY key_id";
pub(crate) const NEXT_OHTTP_KEY_ID: &str = "SELECT coalesce(max(key_id) + 1, 0) FROM ohttp_keys";
pub(crate) const INSERT_OHTTP_KEY: &str = "INSERT INTO ohttp_keys (key_id, created_week, ikm) VALUES ($1, $2, $3)";
pub(crate) const RETIRE_OHTTP_KEY: &str = "UPDATE ohttp_keys SET ikm = NULL WHERE key_id = $1 AND ikm IS NOT NULL";
pub(crate) const COUNT_GATEWAY_REPORT: &str =
    "INSERT INTO gateway_weeks (week, reports) VALUES ($1, 1) ON CONFLICT (week) DO UPDATE SET reports = gateway_weeks.reports + 1";
pub(crate) const GATEWAY_WEEKS: &str = "SELECT r.week, coalesce(g.reports, 0), r.n FROM \
     (SELECT week, count(*) AS n FROM reports GROUP BY week) r LEFT JOIN gateway_weeks g ON g.week = r.week ORDER BY r.week";

/// A registered product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductRow {
    pub name: String,
    /// First ISO week released for it.
    pub first_week: String,
    /// Registered product versions, the only ones with a cell of their own.
    pub versions: Vec<String>,
}

/// Queries shared by both backends (placeholders differ: `?N` vs `$N`).
pub(crate) const RELEASE_ROW_COLUMNS: &str = "schema_id, os_family, os_version, arch, product_version, library_version, codes";
/// Takes a release's claim: a new row, or an unexpired-claim-free row
/// without a body. Shared by both backends ($N placeholders work in SQLite).
pub(crate) const CLAIM_RELEASE: &str = "INSERT INTO releases (product, week, body, claimed_until) VALUES ($1, $2, NULL, $3) \
     ON CONFLICT (product, week) DO UPDATE SET claimed_until = excluded.claimed_until \
     WHERE releases.body IS NULL AND releases.claimed_until < $4";
pub(crate) const STORE_RELEASE: &str = "UPDATE releases SET body = $3, claimed_until = 0 WHERE product = $1 AND week = $2 AND body IS NULL";
pub(crate) const SELECT_RELEASE: &str = "SELECT body FROM releases WHERE product = $1 AND week = $2 AND body IS NOT NULL";
pub(crate) const SELECT_RELEASES: &str = "SELECT week, body FROM releases WHERE product = $1 AND body IS NOT NULL ORDER BY week";
pub(crate) const RELEASED_WEEKS: &str = "SELECT week FROM releases WHERE product = $1 AND body IS NOT NULL ORDER BY week";
pub(crate) const SELECT_PRODUCTS: &str = "SELECT name, first_week, versions FROM products ORDER BY name";
pub(crate) const UPSERT_PRODUCT: &str = "INSERT INTO products (name, first_week, versions) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET first_week = CASE WHEN excluded.first_week < products.first_week \
     THEN excluded.first_week ELSE products.first_week END, versions = excluded.versions";

impl ProductRow {
    /// Versions as stored: comma-separated (versions are dotted numbers).
    pub fn versions_column(&self) -> String {
        self.versions.join(",")
    }

    pub fn from_columns(name: String, first_week: String, versions: &str) -> ProductRow {
        ProductRow { name, first_week, versions: versions.split(',').filter(|v| !v.is_empty()).map(str::to_string).collect() }
    }
}

/// One release row from its columns.
pub(crate) fn release_row(schema_id: i64, cols: [&str; 6]) -> String {
    let mut row = schema_id.to_string();
    for c in cols {
        row.push(crate::release::SEP);
        row.push_str(c);
    }
    row
}

/// The database a command works on, from `--db`.
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl DbUrl {
    pub fn parse(s: &str) -> std::result::Result<DbUrl, String> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("--db sqlite: needs a path, e.g. sqlite:collector-data/collector.db".into());
            }
            Ok(DbUrl::Sqlite(path.into()))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(DbUrl::Postgres(s.into()))
        } else {
            Err("--db must be sqlite:PATH or postgres://...".into())
        }
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Shown in messages: the password of a PostgreSQL URL is never printed.
impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            DbUrl::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                match rest.split_once('@') {
                    Some((userinfo, host)) => match userinfo.split_once(':') {
                        Some((user, _password)) => write!(f, "{scheme}://{user}:***@{host}"),
                        None => write!(f, "{scheme}://{userinfo}@{host}"),
                    },
                    None => write!(f, "{url}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_url_parses_and_hides_passwords() {
        assert_eq!(DbUrl::parse("sqlite:a/b.db").unwrap(), DbUrl::Sqlite("a/b.db".into()));
        assert!(DbUrl::parse("mysql://x").is_err());
        assert!(DbUrl::parse("sqlite:").is_err());
        let pg = DbUrl::parse("postgres://u:secret@h:5432/db").unwrap();
        assert_eq!(pg.to_string(), "postgres://u:***@h:5432/db");
        assert_eq!(DbUrl::parse("postgres://u@h/db").unwrap().to_string(), "postgres://u@h/db");
    }
}
