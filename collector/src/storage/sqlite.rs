//! SQLite: the default backend. Two connections, each owned behind a mutex
//! and used from blocking threads: one for ingest (reports and quarantine
//! bodies arriving over HTTP) and one for everything else, so that no read,
//! however long, holds up a report; WAL so readers never wait for the
//! writer; `secure_delete` so deleted rows are overwritten with zeros.

use super::{Group, Grouper, WeekColumns, AggregateRow, AGGREGATE_PRODUCTS, DATA_WEEKS, REPORT_PRODUCTS_SQLITE, GROUP_COLUMNS, QuarantineCaps, Quarantined, Result, SchemaRow, SchemaSet, Store, StoreError};
use crate::privacy::ReportRow;
use crate::rollup::Aggregates;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/001_init.sql"),
    include_str!("../../migrations/sqlite/002_quarantine_counters.sql"),
];

const INSERT_REPORT: &str = "INSERT INTO reports (report_id, week, schema_id, os_family, os_version, arch, product, \
     product_version, library_version, codes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (report_id) DO NOTHING";
const SELECT_REPORT_COLUMNS: &str =
    "SELECT report_id, week, schema_id, os_family, os_version, arch, product, product_version, library_version, codes FROM reports";

#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// Ingest's own connection: `insert_report` and `quarantine` only.
    ingest: Arc<Mutex<Connection>>,
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: durable across application crashes; a power loss
    // may lose the last transactions, which the senders' retries cover.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(())
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReportRow> {
    let id: Vec<u8> = r.get(0)?;
    let mut report_id = [0u8; 16];
    if id.len() == 16 {
        report_id.copy_from_slice(&id);
    }
    Ok(ReportRow {
        report_id,
        week: r.get(1)?,
        schema_id: r.get(2)?,
        os_family: r.get(3)?,
        os_version: r.get(4)?,
        arch: r.get(5)?,
        product: r.get(6)?,
        product_version: r.get(7)?,
        library_version: r.get(8)?,
        codes: r.get(9)?,
    })
}

fn insert(conn: &Connection, row: &ReportRow) -> Result<bool> {
    let n = conn.prepare_cached(INSERT_REPORT)?.execute(params![
        &row.report_id[..],
        row.week,
        row.schema_id,
        row.os_family,
        row.os_version,
        row.arch,
        row.product,
        row.product_version,
        row.library_version,
        row.codes
    ])?;
    Ok(n == 1)
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) and migrates.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        configure(&conn)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        let ingest = Connection::open(path).map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        configure(&ingest)?;
        Ok(SqliteStore { path: path.to_path_buf(), conn: Arc::new(Mutex::new(conn)), ingest: Arc::new(Mutex::new(ingest)) })
    }

    /// True when the database file cannot be written (SQLite then opens it
    /// read-only): fine for reading commands, not for serve.
    pub fn is_read_only(&self) -> bool {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.is_readonly(rusqlite::DatabaseName::Main).unwrap_or(false)
    }

    async fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static) -> Result<T> {
        on(self.conn.clone(), f).await
    }

    /// On ingest's connection, which nothing else waits on.
    async fn ingest_with<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static) -> Result<T> {
        on(self.ingest.clone(), f).await
    }

    /// The database file and its WAL/shared-memory companions.
    pub fn files(&self) -> Vec<PathBuf> {
        let base = self.path.as_os_str().to_owned();
        ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|suffix| {
                let mut p = base.clone();
                p.push(suffix);
                PathBuf::from(p)
            })
            .filter(|p| p.exists())
            .collect()
    }
}

impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.with(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn add_schema(&self, digest: &str, body: &str) -> Result<i64> {
        let (digest, body) = (digest.to_string(), body.to_string());
        self.with(move |c| {
            c.execute("INSERT INTO schemas (digest, body) VALUES (?1, ?2) ON CONFLICT (digest) DO NOTHING", params![digest, body])?;
            Ok(c.query_row("SELECT id FROM schemas WHERE digest = ?1", [digest], |r| r.get(0))?)
        })
        .await
    }

    async fn schemas(&self) -> Result<Vec<SchemaRow>> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT id, digest, body FROM schemas ORDER BY id")?;
            let rows = st.query_map([], |r| Ok(SchemaRow { id: r.get(0)?, digest: r.get(1)?, body: r.get(2)? }))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn insert_report(&self, row: ReportRow) -> Result<bool> {
        self.ingest_with(move |c| insert(c, &row)).await
    }

    async fn insert_reports(&self, rows: Vec<ReportRow>) -> Result<u64> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let mut new = 0;
            for row in &rows {
                new += u64::from(insert(&tx, row)?);
            }
            tx.commit()?;
            Ok(new)
        })
        .await
    }

    async fn quarantine(&self, digest: &str, week: &str, body: &[u8], caps: QuarantineCaps) -> Result<bool> {
        let (digest, week, body) = (digest.to_string(), week.to_string(), body.to_vec());
        self.ingest_with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Two rows of running counts, not a sum over the quarantine: the
            // work per report does not grow with the quarantine.
            let counts = |d: &str| -> Result<(i64, i64)> {
                let mut st = tx.prepare_cached("SELECT reports, bytes FROM quarantine_counts WHERE digest = ?1")?;
                Ok(st.query_row([d], |r| Ok((r.get(0)?, r.get(1)?))).optional()?.unwrap_or((0, 0)))
            };
            let (count, bytes) = counts(&digest)?;
            let (_, total) = counts("")?;
            let len = body.len() as i64;
            if count >= caps.per_digest_count || bytes + len > caps.per_digest_bytes || total + len > caps.total_bytes {
                return Ok(false);
            }
            let key = random_key();
            tx.execute("INSERT INTO quarantine (qkey, digest, week, body) VALUES (?1, ?2, ?3, ?4)", params![&key[..], digest, week, body])?;
            count_quarantine(&tx, &digest, 1, len)?;
            count_quarantine(&tx, "", 1, len)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn quarantined(&self, digest: &str) -> Result<Vec<Quarantined>> {
        let digest = digest.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached("SELECT qkey, week, body FROM quarantine WHERE digest = ?1")?;
            let rows = st.query_map([digest], |r| Ok(Quarantined { key: r.get(0)?, week: r.get(1)?, body: r.get(2)? }))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn quarantine_summary(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT digest, reports FROM quarantine_counts WHERE digest <> '' ORDER BY digest")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn remove_quarantined(&self, keys: Vec<Vec<u8>>) -> Result<()> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let mut deleted = vec![];
            {
                let mut st = tx.prepare("DELETE FROM quarantine WHERE qkey = ?1 RETURNING digest, length(body)")?;
                for key in &keys {
                    for row in st.query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))? {
                        deleted.push(row?);
                    }
                }
            }
            uncount_quarantine(&tx, &deleted)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn expire_quarantine(&self, before: &str) -> Result<u64> {
        let before = before.to_string();
        self.with(move |c| {
            let tx = c.transaction()?;
            let deleted = {
                let mut st = tx.prepare("DELETE FROM quarantine WHERE week < ?1 RETURNING digest, length(body)")?;
                let rows = st.query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<Vec<(String, i64)>>>()?
            };
            uncount_quarantine(&tx, &deleted)?;
            tx.commit()?;
            Ok(deleted.len() as u64)
        })
        .await
    }

    async fn report_weeks(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT DISTINCT week FROM reports ORDER BY week")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn rolled_up_weeks(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT DISTINCT week FROM week_totals ORDER BY week")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn invalidate_rollup(&self, weeks: Vec<String>) -> Result<()> {
        self.with(move |c| {
            for w in &weeks {
                c.execute("DELETE FROM week_totals WHERE week = ?1", [w])?;
            }
            Ok(())
        })
        .await
    }

    async fn aggregate_week(&self, week: &str, schemas: Arc<SchemaSet>) -> Result<Aggregates> {
        let (week, path) = (week.to_string(), self.path.clone());
        // Read on a connection of its own (WAL: ingest is not blocked while a
        // large week is scanned).
        tokio::task::spawn_blocking(move || -> Result<Aggregates> {
            let reader = Connection::open(&path)?;
            configure(&reader)?;
            let mut agg = Aggregates::default();
            let mut st = reader.prepare(&format!("{SELECT_REPORT_COLUMNS} WHERE week = ?1"))?;
            let mut rows = st.query([&week])?;
            while let Some(r) = rows.next()? {
                agg.add(&schemas, &row_of(r)?);
            }
            Ok(agg)
        })
        .await
        .map_err(|e| StoreError(format!("rollup task failed: {e}")))?
    }

    async fn rollup_week(&self, week: &str, schemas: Arc<SchemaSet>) -> Result<u64> {
        let agg = self.aggregate_week(week, schemas).await?;
        let week = week.to_string();
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM aggregates WHERE week = ?1", [&week])?;
            tx.execute("DELETE FROM week_totals WHERE week = ?1", [&week])?;
            {
                let mut ins = tx.prepare("INSERT INTO aggregates (week, schema_id, field, value, count) VALUES (?1, ?2, ?3, ?4, ?5)")?;
                for ((schema_id, field, value), count) in &agg.cells {
                    ins.execute(params![week, schema_id, field, value, count])?;
                }
                let mut tot = tx.prepare("INSERT INTO week_totals (week, schema_id, reports) VALUES (?1, ?2, ?3)")?;
                for (schema_id, reports) in &agg.totals {
                    tot.execute(params![week, schema_id, reports])?;
                }
            }
            tx.commit()?;
            Ok(agg.reports())
        })
        .await
    }

    async fn add_to_rollup(&self, week: &str, agg: Aggregates) -> Result<()> {
        let week = week.to_string();
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                let mut ins = tx.prepare(
                    "INSERT INTO aggregates (week, schema_id, field, value, count) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (week, schema_id, field, value) DO UPDATE SET count = count + excluded.count",
                )?;
                for ((schema_id, field, value), count) in &agg.cells {
                    ins.execute(params![week, schema_id, field, value, count])?;
                }
                let mut tot = tx.prepare(
                    "INSERT INTO week_totals (week, schema_id, reports) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (week, schema_id) DO UPDATE SET reports = reports + excluded.reports",
                )?;
                for (schema_id, reports) in &agg.totals {
                    tot.execute(params![week, schema_id, reports])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_reports_before(&self, week: &str) -> Result<u64> {
        let week = week.to_string();
        self.with(move |c| Ok(c.execute("DELETE FROM reports WHERE week < ?1", [week])? as u64)).await
    }

    async fn compact(&self) -> Result<()> {
        self.with(|c| {
            // secure_delete zeroes deleted cells, but B-tree interior pages can
            // still hold a deleted key as a divider: VACUUM rebuilds every
            // page from the live rows only (in key order). Its pages pass
            // through the WAL, which TRUNCATE then empties.
            c.execute_batch("VACUUM")?;
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn count_reports(&self) -> Result<i64> {
        self.with(|c| Ok(c.query_row("SELECT count(*) FROM reports", [], |r| r.get(0))?)).await
    }

    async fn report(&self, report_id: [u8; 16]) -> Result<Option<ReportRow>> {
        self.with(move |c| {
            Ok(c.query_row(&format!("{SELECT_REPORT_COLUMNS} WHERE report_id = ?1"), [&report_id[..]], row_of).optional()?)
        })
        .await
    }

    async fn aggregates(&self, week: &str) -> Result<Vec<AggregateRow>> {
        let week = week.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT schema_id, field, value, count FROM aggregates WHERE week = ?1 ORDER BY schema_id, field, value",
            )?;
            let rows = st.query_map([week], |r| {
                Ok(AggregateRow { schema_id: r.get(0)?, field: r.get(1)?, value: r.get(2)?, count: r.get(3)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn week_totals(&self, week: &str) -> Result<Vec<(i64, i64)>> {
        let week = week.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached("SELECT schema_id, reports FROM week_totals WHERE week = ?1 ORDER BY schema_id")?;
            let rows = st.query_map([week], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn week_groups(&self, week: &str) -> Result<Vec<Group>> {
        let week = week.to_string();
        self.with(move |c| {
            // Grouped here rather than by SQL: SQLite sorts for a GROUP BY
            // over eight text columns, a plain range scan of the week index
            // is several times faster.
            let sql = format!("SELECT {GROUP_COLUMNS} FROM reports WHERE week = ?1");
            let mut st = c.prepare_cached(&sql)?;
            let mut rows = st.query([week])?;
            let mut groups = Grouper::default();
            while let Some(r) = rows.next()? {
                let text = |i: usize| r.get_ref(i).ok().and_then(|v| v.as_str().ok()).unwrap_or("");
                groups.add(r.get(0)?, [text(1), text(2), text(3), text(4), text(5), text(6), text(7)]);
            }
            Ok(groups.groups())
        })
        .await
    }

    async fn week_columns(&self, week: &str) -> Result<WeekColumns> {
        let week = week.to_string();
        self.with(move |c| {
            let sql = format!("SELECT {GROUP_COLUMNS} FROM reports WHERE week = ?1");
            let mut st = c.prepare_cached(&sql)?;
            let mut rows = st.query([week])?;
            let mut out = WeekColumns::default();
            // Borrowed column values: no allocation per row once a value is known.
            while let Some(r) = rows.next()? {
                let text = |i: usize| r.get_ref(i).ok().and_then(|v| v.as_str().ok()).unwrap_or("");
                let builtins = [text(1), text(2), text(3), text(5), text(6)];
                out.entry(r.get(0)?, text(4)).add(builtins, text(7), 1);
            }
            Ok(out)
        })
        .await
    }

    async fn report_products(&self, week: &str) -> Result<Vec<String>> {
        let week = week.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached(REPORT_PRODUCTS_SQLITE)?;
            let rows = st.query_map([week], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn aggregate_products(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare_cached(AGGREGATE_PRODUCTS)?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn data_weeks(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare_cached(DATA_WEEKS)?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn size_bytes(&self) -> Result<u64> {
        self.with(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await?;
        Ok(self.files().iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum())
    }
}

/// Runs `f` with `conn` locked, on a blocking thread.
async fn on<T: Send + 'static>(conn: Arc<Mutex<Connection>>, f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| StoreError(format!("storage task failed: {e}")))?
}

/// Adds to a digest's running quarantine counts ('' for all digests); a
/// digest's row goes when its count reaches zero.
fn count_quarantine(c: &Connection, digest: &str, reports: i64, bytes: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO quarantine_counts (digest, reports, bytes) VALUES (?1, ?2, ?3) \
         ON CONFLICT (digest) DO UPDATE SET reports = reports + excluded.reports, bytes = bytes + excluded.bytes",
    )?
    .execute(params![digest, reports, bytes])?;
    if reports < 0 {
        c.prepare_cached("DELETE FROM quarantine_counts WHERE digest = ?1 AND digest <> '' AND reports <= 0")?.execute([digest])?;
    }
    Ok(())
}

/// Takes deleted bodies, as (digest, length) rows, off the running counts.
fn uncount_quarantine(c: &Connection, deleted: &[(String, i64)]) -> Result<()> {
    let mut by_digest: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
    for (digest, len) in deleted {
        let e = by_digest.entry(digest).or_default();
        e.0 += 1;
        e.1 += len;
    }
    let (mut reports, mut bytes) = (0, 0);
    for (digest, (n, b)) in by_digest {
        count_quarantine(c, digest, -n, -b)?;
        reports += n;
        bytes += b;
    }
    if reports > 0 {
        count_quarantine(c, "", -reports, -bytes)?;
    }
    Ok(())
}

/// A random key for rows that have no natural one, so that key order says
/// nothing about arrival order.
pub(crate) fn random_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    // Rejection-free: any 16 random bytes will do. getrandom failing is
    // not something a request can work around.
    getrandom_fill(&mut key);
    key
}

fn getrandom_fill(buf: &mut [u8]) {
    getrandom::getrandom(buf).expect("the operating system's random generator is unavailable");
}
