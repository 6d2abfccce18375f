//! SQLite: the default backend. Two connections, each owned behind a mutex
//! and used from blocking threads: one for ingest (reports and quarantine
//! bodies arriving over HTTP) and one for everything else, so that no read,
//! however long, holds up a report; WAL so readers never wait for the
//! writer; `secure_delete` so deleted rows are overwritten with zeros.

use super::{
    release_row, OhttpKeyRow, ProductRow, QuarantineCaps, Quarantined, Result, SchemaRow, Store, StoreError, CLAIM_RELEASE, RELEASED_WEEKS,
    RELEASE_ROW_COLUMNS, SELECT_PRODUCTS, SELECT_RELEASE, SELECT_RELEASES, STORE_RELEASE, UPSERT_PRODUCT,
    COUNT_GATEWAY_REPORT, GATEWAY_WEEKS, INSERT_OHTTP_KEY, NEXT_OHTTP_KEY_ID, RETIRE_OHTTP_KEY, SELECT_OHTTP_KEYS,
};
use crate::privacy::ReportRow;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/001_init.sql"),
    include_str!("../../migrations/sqlite/002_quarantine_counters.sql"),
    include_str!("../../migrations/sqlite/003_releases.sql"),
    include_str!("../../migrations/sqlite/004_ohttp.sql"),
];

/// The shared queries use `$N` placeholders; SQLite reads `$1` as a *named*
/// parameter bound in order of first appearance, so they become `?N` here.
fn q(sql: &str) -> String {
    sql.replace('$', "?")
}

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
        owner_only(path);
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

    async fn add_product(&self, product: ProductRow) -> Result<()> {
        self.with(move |c| {
            c.execute(&q(UPSERT_PRODUCT), params![product.name, product.first_week, product.versions_column()])?;
            Ok(())
        })
        .await
    }

    async fn products(&self) -> Result<Vec<ProductRow>> {
        self.with(|c| {
            let mut st = c.prepare_cached(SELECT_PRODUCTS)?;
            let rows = st.query_map([], |r| Ok(ProductRow::from_columns(r.get(0)?, r.get(1)?, &r.get::<_, String>(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn claim_release(&self, product: &str, week: &str, now: i64, claim_s: i64) -> Result<bool> {
        let (product, week) = (product.to_string(), week.to_string());
        self.with(move |c| Ok(c.execute(&q(CLAIM_RELEASE), params![product, week, now + claim_s, now])? == 1)).await
    }

    async fn store_release(&self, product: &str, week: &str, body: &str) -> Result<bool> {
        let (product, week, body) = (product.to_string(), week.to_string(), body.to_string());
        self.with(move |c| Ok(c.execute(&q(STORE_RELEASE), params![product, week, body])? == 1)).await
    }

    async fn release(&self, product: &str, week: &str) -> Result<Option<String>> {
        let (product, week) = (product.to_string(), week.to_string());
        self.with(move |c| Ok(c.query_row(&q(SELECT_RELEASE), params![product, week], |r| r.get(0)).optional()?)).await
    }

    async fn releases(&self, product: &str) -> Result<Vec<(String, String)>> {
        let product = product.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached(&q(SELECT_RELEASES))?;
            let rows = st.query_map([product], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn released_weeks(&self, product: &str) -> Result<Vec<String>> {
        let product = product.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached(&q(RELEASED_WEEKS))?;
            let rows = st.query_map([product], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn release_rows(&self, week: &str, product: &str) -> Result<Vec<String>> {
        let (week, product, path) = (week.to_string(), product.to_string(), self.path.clone());
        // Read on a connection of its own (WAL: ingest is not blocked while a
        // large week is scanned).
        tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
            let reader = Connection::open(&path)?;
            configure(&reader)?;
            let mut st = reader.prepare(&format!("SELECT {RELEASE_ROW_COLUMNS} FROM reports WHERE week = ?1 AND product = ?2"))?;
            let mut rows = st.query([&week, &product])?;
            let mut out = vec![];
            while let Some(r) = rows.next()? {
                let text = |i: usize| r.get_ref(i).ok().and_then(|v| v.as_str().ok()).unwrap_or("");
                out.push(release_row(r.get(0)?, [text(1), text(2), text(3), text(4), text(5), text(6)]));
            }
            Ok(out)
        })
        .await
        .map_err(|e| StoreError(format!("release read failed: {e}")))?
    }

    async fn size_bytes(&self) -> Result<u64> {
        self.with(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await?;
        Ok(self.files().iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum())
    }

    async fn ohttp_keys(&self) -> Result<Vec<OhttpKeyRow>> {
        self.with(|c| {
            let mut st = c.prepare_cached(SELECT_OHTTP_KEYS)?;
            let rows = st.query_map([], |r| {
                Ok(OhttpKeyRow { key_id: r.get::<_, i64>(0)? as u8, created_week: r.get(1)?, ikm: r.get(2)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn add_ohttp_key(&self, created_week: &str, ikm: &[u8]) -> Result<Option<u8>> {
        let (week, ikm) = (created_week.to_string(), ikm.to_vec());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let id: i64 = tx.query_row(NEXT_OHTTP_KEY_ID, [], |r| r.get(0))?;
            if id > 255 {
                return Ok(None);
            }
            tx.execute(&q(INSERT_OHTTP_KEY), params![id, week, ikm])?;
            tx.commit()?;
            Ok(Some(id as u8))
        })
        .await
    }

    async fn retire_ohttp_key(&self, key_id: u8) -> Result<bool> {
        self.with(move |c| Ok(c.execute(&q(RETIRE_OHTTP_KEY), [i64::from(key_id)])? == 1)).await
    }

    async fn count_gateway_report(&self, week: &str) -> Result<()> {
        let week = week.to_string();
        self.ingest_with(move |c| {
            c.prepare_cached(&q(COUNT_GATEWAY_REPORT))?.execute([week])?;
            Ok(())
        })
        .await
    }

    async fn gateway_weeks(&self) -> Result<Vec<(String, i64, i64)>> {
        self.with(|c| {
            let mut st = c.prepare_cached(GATEWAY_WEEKS)?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

/// The database holds the Oblivious HTTP private keys (table ohttp_keys):
/// the file is made readable and writable by its owner only (0600). SQLite
/// gives the -wal and -shm files it creates the database file's mode. Not
/// changed when the file is someone else's (a reading command run by
/// another user).
fn owner_only(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            if let Ok(m) = std::fs::metadata(&p) {
                if m.permissions().mode() & 0o077 != 0 {
                    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
                }
            }
        }
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
