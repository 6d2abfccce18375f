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

/// One aggregate cell as stored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AggregateRow {
    pub schema_id: i64,
    pub field: String,
    pub value: String,
    pub count: i64,
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
    /// Weeks that have been rolled up, ascending.
    fn rolled_up_weeks(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Marks weeks as needing a new rollup (raw reports were added to them).
    fn invalidate_rollup(&self, weeks: Vec<String>) -> impl Future<Output = Result<()>> + Send;
    /// Aggregates every raw report of `week` without storing the result
    /// (e.g. the current week's figures, which are not rolled up yet).
    fn aggregate_week(&self, week: &str, schemas: Arc<SchemaSet>) -> impl Future<Output = Result<crate::rollup::Aggregates>> + Send;
    /// Aggregates every raw report of `week` (the aggregation itself is
    /// [`crate::rollup`]) and replaces that week's aggregates.
    fn rollup_week(&self, week: &str, schemas: Arc<SchemaSet>) -> impl Future<Output = Result<u64>> + Send;
    /// Adds counts to a week that is already rolled up (reports moved in from
    /// quarantine after the rollup, whose other raw reports may be gone).
    fn add_to_rollup(&self, week: &str, agg: crate::rollup::Aggregates) -> impl Future<Output = Result<()>> + Send;
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
    fn aggregates(&self, week: &str) -> impl Future<Output = Result<Vec<AggregateRow>>> + Send;
    /// Reports per schema id in `week`, from the rolled-up totals.
    fn week_totals(&self, week: &str) -> impl Future<Output = Result<Vec<(i64, i64)>>> + Send;
    /// Raw reports of `week` grouped by everything stored but the report id.
    /// Feeds the crosstabs ([`crate::stats::crosstab_counts`]).
    fn week_groups(&self, week: &str) -> impl Future<Output = Result<Vec<Group>>> + Send;
    /// Raw reports of `week` counted column by column, per schema and
    /// product (no joint counts: the fast path for `fields` and `mean`).
    fn week_columns(&self, week: &str) -> impl Future<Output = Result<WeekColumns>> + Send;
    /// Products named in the raw reports of `week`.
    fn report_products(&self, week: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Products named in the weekly aggregates.
    fn aggregate_products(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Weeks with raw reports or aggregates, ascending.
    fn data_weeks(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Bytes the stored data takes (database files / relation sizes).
    fn size_bytes(&self) -> impl Future<Output = Result<u64>> + Send;
}

/// Built-in columns counted by [`WeekColumns`], in this order.
pub const COLUMN_BUILTINS: [&str; 5] = ["os_family", "os_version", "arch", "product_version", "library_version"];

/// Per (schema id, product): reports, counts per built-in value, and counts
/// per (field position, stored code).
#[derive(Default, Debug)]
pub struct WeekColumns {
    pub by: HashMap<(i64, String), ColumnCounts>,
}

#[derive(Default, Debug)]
pub struct ColumnCounts {
    pub reports: i64,
    pub builtins: [HashMap<String, i64>; 5],
    pub codes: HashMap<(usize, u64), i64>,
}

impl ColumnCounts {
    /// Adds `n` reports with these built-ins (in COLUMN_BUILTINS order) and codes.
    pub fn add(&mut self, builtins: [&str; 5], codes: &str, n: i64) {
        self.reports += n;
        for (map, v) in self.builtins.iter_mut().zip(builtins) {
            match map.get_mut(v) {
                Some(c) => *c += n,
                None => {
                    map.insert(v.to_string(), n);
                }
            }
        }
        if codes.is_empty() {
            return;
        }
        for (i, code) in codes.split(',').enumerate() {
            if let Ok(c) = code.parse::<u64>() {
                *self.codes.entry((i, c)).or_default() += n;
            }
        }
    }
}

impl WeekColumns {
    /// `HashMap::entry` would allocate the key for every row; a week has
    /// only a few (schema, product) pairs, so they are found by a scan and
    /// the key is allocated only for a new pair.
    pub fn entry(&mut self, schema_id: i64, product: &str) -> &mut ColumnCounts {
        if !self.by.keys().any(|(id, p)| *id == schema_id && p == product) {
            self.by.insert((schema_id, product.to_string()), ColumnCounts::default());
        }
        self.by
            .iter_mut()
            .find(|((id, p), _)| *id == schema_id && p == product)
            .map(|(_, c)| c)
            .expect("inserted above")
    }
}

/// Queries shared by both backends (placeholders differ: `?N` vs `$N`).
pub(crate) const GROUP_COLUMNS: &str = "schema_id, os_family, os_version, arch, product, product_version, library_version, codes";
pub(crate) const REPORT_PRODUCTS_SQLITE: &str = "SELECT DISTINCT product FROM reports WHERE week = ?1";
pub(crate) const REPORT_PRODUCTS_PG: &str = "SELECT DISTINCT product FROM reports WHERE week = $1";
pub(crate) const AGGREGATE_PRODUCTS: &str = "SELECT DISTINCT value FROM aggregates WHERE field = 'product' ORDER BY value";
/// A loose index scan (one index probe per distinct week) instead of a
/// DISTINCT over every stored report.
pub(crate) const DATA_WEEKS: &str = "WITH RECURSIVE w(week) AS (SELECT min(week) FROM reports \
     UNION ALL SELECT (SELECT min(week) FROM reports WHERE week > w.week) FROM w WHERE w.week IS NOT NULL) \
     SELECT week FROM w WHERE week IS NOT NULL UNION SELECT week FROM week_totals ORDER BY week";

/// Groups rows by their seven text columns with one allocation per row: the
/// columns joined by a separator no stored value contains (all are tokens,
/// version strings or digits).
#[derive(Default)]
pub(crate) struct Grouper {
    groups: HashMap<(i64, String), i64>,
}

impl Grouper {
    pub fn add(&mut self, schema_id: i64, cols: [&str; 7]) {
        *self.groups.entry((schema_id, cols.join("\u{1f}"))).or_default() += 1;
    }

    pub fn groups(self) -> Vec<Group> {
        self.groups.into_iter().map(|((schema_id, columns), reports)| Group { schema_id, columns, reports }).collect()
    }
}

/// Reports of a week that share their schema, built-ins and codes. The
/// columns stay one string (joined by U+001F, which no stored value holds): a
/// week's groups are nearly unique, and splitting each into seven strings
/// cost more than the counting.
pub struct Group {
    pub schema_id: i64,
    columns: String,
    pub reports: i64,
}

/// A group's columns, borrowed.
pub struct GroupColumns<'a> {
    pub os_family: &'a str,
    pub os_version: &'a str,
    pub arch: &'a str,
    pub product: &'a str,
    pub product_version: &'a str,
    pub library_version: &'a str,
    pub codes: &'a str,
}

impl Group {
    pub fn columns(&self) -> GroupColumns<'_> {
        let mut parts = self.columns.split('\u{1f}');
        let mut next = || parts.next().unwrap_or("");
        GroupColumns { os_family: next(), os_version: next(), arch: next(), product: next(), product_version: next(), library_version: next(), codes: next() }
    }
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
