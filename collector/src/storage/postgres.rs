//! PostgreSQL: the scale-out backend. Ingest is stateless, so several
//! collector processes can share one database; duplicates are settled by the
//! primary key (`ON CONFLICT DO NOTHING`). Ingest has a connection pool of
//! its own, so that reads, however many or long, never take its connections.

use super::{
    release_row, OhttpKeyRow, ProductRow, QuarantineCaps, Quarantined, Result, SchemaRow, Store, StoreError, CLAIM_RELEASE, RELEASED_WEEKS,
    RELEASE_ROW_COLUMNS, SELECT_PRODUCTS, SELECT_RELEASE, SELECT_RELEASES, STORE_RELEASE, UPSERT_PRODUCT,
    COUNT_GATEWAY_REPORT, GATEWAY_WEEKS, INSERT_OHTTP_KEY, NEXT_OHTTP_KEY_ID, RETIRE_OHTTP_KEY, SELECT_OHTTP_KEYS,
};
use crate::privacy::ReportRow;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/001_init.sql"),
    include_str!("../../migrations/postgres/002_quarantine_counters.sql"),
    include_str!("../../migrations/postgres/003_releases.sql"),
    include_str!("../../migrations/postgres/004_ohttp.sql"),
];
/// Any constant: serializes migrations of processes starting together.
const MIGRATION_LOCK: i64 = 0x6f70_7469_6e5f_636f;

const INSERT_REPORT: &str = "INSERT INTO reports (report_id, week, schema_id, os_family, os_version, arch, product, \
     product_version, library_version, codes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (report_id) DO NOTHING";
const SELECT_REPORT_COLUMNS: &str =
    "SELECT report_id, week, schema_id, os_family, os_version, arch, product, product_version, library_version, codes FROM reports";

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Ingest's own pool: `insert_report` and `quarantine` only.
    ingest: Pool,
}

fn row_of(r: &tokio_postgres::Row) -> ReportRow {
    let id: Vec<u8> = r.get(0);
    let mut report_id = [0u8; 16];
    if id.len() == 16 {
        report_id.copy_from_slice(&id);
    }
    ReportRow {
        report_id,
        week: r.get(1),
        schema_id: r.get(2),
        os_family: r.get(3),
        os_version: r.get(4),
        arch: r.get(5),
        product: r.get(6),
        product_version: r.get(7),
        library_version: r.get(8),
        codes: r.get(9),
    }
}

/// The error with its causes ("error connecting to server: Connection refused").
fn pool_error(e: impl std::error::Error) -> StoreError {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    StoreError(format!("postgres: {text}"))
}

impl PgStore {
    /// Connects (failing at once if the server is unreachable) and migrates.
    /// Ingest gets up to `max_connections` connections of its own, everything
    /// else a quarter of that (at least 2).
    pub async fn open(url: &str, max_connections: usize) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError(format!("postgres: bad URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let pool_of = |size: usize| {
            let manager = Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
            Pool::builder(manager).max_size(size.max(1)).build().map_err(pool_error)
        };
        let store = PgStore { pool: pool_of((max_connections / 4).max(2))?, ingest: pool_of(max_connections)? };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn migrate(&self) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS collector_migrations (version BIGINT PRIMARY KEY)").await?;
        let done: i64 = tx.query_one("SELECT coalesce(max(version), 0) FROM collector_migrations", &[]).await?.get(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO collector_migrations (version) VALUES ($1)", &[&((i + 1) as i64)]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Store for PgStore {
    async fn ping(&self) -> Result<()> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn add_schema(&self, digest: &str, body: &str) -> Result<i64> {
        let c = self.client().await?;
        c.execute("INSERT INTO schemas (digest, body) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING", &[&digest, &body]).await?;
        Ok(c.query_one("SELECT id FROM schemas WHERE digest = $1", &[&digest]).await?.get(0))
    }

    async fn schemas(&self) -> Result<Vec<SchemaRow>> {
        let c = self.client().await?;
        let rows = c.query("SELECT id, digest, body FROM schemas ORDER BY id", &[]).await?;
        Ok(rows.iter().map(|r| SchemaRow { id: r.get(0), digest: r.get(1), body: r.get(2) }).collect())
    }

    async fn insert_report(&self, row: ReportRow) -> Result<bool> {
        let c = self.ingest.get().await.map_err(pool_error)?;
        let st = c.prepare_cached(INSERT_REPORT).await?;
        let id = &row.report_id[..];
        let n = c.execute(&st, &report_params(&row, &id)).await?;
        Ok(n == 1)
    }

    async fn insert_reports(&self, rows: Vec<ReportRow>) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let st = tx.prepare(INSERT_REPORT).await?;
        let mut new = 0;
        for row in &rows {
            let id = &row.report_id[..];
            new += tx.execute(&st, &report_params(row, &id)).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    async fn quarantine(&self, digest: &str, week: &str, body: &[u8], caps: QuarantineCaps) -> Result<bool> {
        let mut c = self.ingest.get().await.map_err(pool_error)?;
        let tx = c.transaction().await?;
        // One quarantine writer at a time across processes, so the caps hold.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(MIGRATION_LOCK + 1)]).await?;
        // Two rows of running counts, not a sum over the quarantine: the
        // work per report does not grow with the quarantine.
        let counts = "SELECT reports, bytes FROM quarantine_counts WHERE digest = $1";
        let (count, bytes): (i64, i64) = tx.query_opt(counts, &[&digest]).await?.map_or((0, 0), |r| (r.get(0), r.get(1)));
        let total: i64 = tx.query_opt(counts, &[&""]).await?.map_or(0, |r| r.get(1));
        let len = body.len() as i64;
        if count >= caps.per_digest_count || bytes + len > caps.per_digest_bytes || total + len > caps.total_bytes {
            return Ok(false);
        }
        let key = super::sqlite::random_key();
        tx.execute(
            "INSERT INTO quarantine (qkey, digest, week, body) VALUES ($1, $2, $3, $4)",
            &[&&key[..], &digest, &week, &body],
        )
        .await?;
        count_quarantine(&tx, digest, 1, len).await?;
        count_quarantine(&tx, "", 1, len).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn quarantined(&self, digest: &str) -> Result<Vec<Quarantined>> {
        let c = self.client().await?;
        let rows = c.query("SELECT qkey, week, body FROM quarantine WHERE digest = $1", &[&digest]).await?;
        Ok(rows.iter().map(|r| Quarantined { key: r.get(0), week: r.get(1), body: r.get(2) }).collect())
    }

    async fn quarantine_summary(&self) -> Result<Vec<(String, i64)>> {
        let c = self.client().await?;
        let rows = c.query("SELECT digest, reports FROM quarantine_counts WHERE digest <> '' ORDER BY digest", &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn remove_quarantined(&self, keys: Vec<Vec<u8>>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let rows = tx.query("DELETE FROM quarantine WHERE qkey = ANY($1) RETURNING digest, length(body)::BIGINT", &[&keys]).await?;
        uncount_quarantine(&tx, &rows).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn expire_quarantine(&self, before: &str) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let rows = tx.query("DELETE FROM quarantine WHERE week < $1 RETURNING digest, length(body)::BIGINT", &[&before]).await?;
        uncount_quarantine(&tx, &rows).await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    async fn report_weeks(&self) -> Result<Vec<String>> {
        let rows = self.client().await?.query("SELECT DISTINCT week FROM reports ORDER BY week", &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn delete_reports_before(&self, week: &str) -> Result<u64> {
        Ok(self.client().await?.execute("DELETE FROM reports WHERE week < $1", &[&week]).await?)
    }

    fn arrival_ordered(&self) -> bool {
        true
    }

    async fn compact(&self) -> Result<()> {
        // CLUSTER rewrites the table into a new file in report_id order: the
        // deleted tuples' bytes are not copied, and the physical order no
        // longer follows arrival. It holds an exclusive lock while it runs.
        //
        // A row's xmin (the transaction that wrote it) numbers the rows in
        // arrival order, and CLUSTER keeps it (even frozen tuples keep their
        // raw xmin). Rewriting every row in one transaction first gives them
        // all the same xmin; CLUSTER then drops the old versions. The
        // columns set are in no index, so the update stays cheap (HOT).
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.batch_execute("UPDATE reports SET codes = codes; UPDATE quarantine SET body = body; UPDATE quarantine_counts SET bytes = bytes").await?;
        tx.commit().await?;
        c.batch_execute("CLUSTER reports USING reports_pkey; CLUSTER quarantine USING quarantine_pkey").await?;
        // Claims and stored releases are updates of one row each.
        c.batch_execute("VACUUM releases").await?;
        Ok(())
    }

    async fn count_reports(&self) -> Result<i64> {
        Ok(self.client().await?.query_one("SELECT count(*) FROM reports", &[]).await?.get(0))
    }

    async fn report(&self, report_id: [u8; 16]) -> Result<Option<ReportRow>> {
        let c = self.client().await?;
        let row = c.query_opt(&format!("{SELECT_REPORT_COLUMNS} WHERE report_id = $1"), &[&&report_id[..]]).await?;
        Ok(row.as_ref().map(row_of))
    }

    async fn add_product(&self, product: ProductRow) -> Result<()> {
        let c = self.client().await?;
        c.execute(UPSERT_PRODUCT, &[&product.name, &product.first_week, &product.versions_column()]).await?;
        Ok(())
    }

    async fn products(&self) -> Result<Vec<ProductRow>> {
        let rows = self.client().await?.query(SELECT_PRODUCTS, &[]).await?;
        Ok(rows.iter().map(|r| ProductRow::from_columns(r.get(0), r.get(1), r.get::<_, &str>(2))).collect())
    }

    async fn claim_release(&self, product: &str, week: &str, now: i64, claim_s: i64) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.execute(CLAIM_RELEASE, &[&product, &week, &(now + claim_s), &now]).await? == 1)
    }

    async fn store_release(&self, product: &str, week: &str, body: &str) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.execute(STORE_RELEASE, &[&product, &week, &body]).await? == 1)
    }

    async fn release(&self, product: &str, week: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        Ok(c.query_opt(SELECT_RELEASE, &[&product, &week]).await?.map(|r| r.get(0)))
    }

    async fn releases(&self, product: &str) -> Result<Vec<(String, String)>> {
        let rows = self.client().await?.query(SELECT_RELEASES, &[&product]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn released_weeks(&self, product: &str) -> Result<Vec<String>> {
        let rows = self.client().await?.query(RELEASED_WEEKS, &[&product]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn release_rows(&self, week: &str, product: &str) -> Result<Vec<String>> {
        let c = self.client().await?;
        let sql = format!("SELECT {RELEASE_ROW_COLUMNS} FROM reports WHERE week = $1 AND product = $2");
        let params: [&(dyn ToSql + Sync); 2] = [&week, &product];
        let stream = c.query_raw(&sql, params).await?;
        pin_mut!(stream);
        let mut out = vec![];
        while let Some(r) = stream.try_next().await? {
            let text = |i: usize| r.get::<_, &str>(i);
            out.push(release_row(r.get(0), [text(1), text(2), text(3), text(4), text(5), text(6)]));
        }
        Ok(out)
    }

    async fn size_bytes(&self) -> Result<u64> {
        let r = self
            .client()
            .await?
            .query_one(
                "SELECT (pg_total_relation_size('reports') + pg_total_relation_size('quarantine') \
                 + pg_total_relation_size('releases') + pg_total_relation_size('products') \
                 + pg_total_relation_size('schemas'))::BIGINT",
                &[],
            )
            .await?;
        Ok(r.get::<_, i64>(0) as u64)
    }

    async fn ohttp_keys(&self) -> Result<Vec<OhttpKeyRow>> {
        let rows = self.client().await?.query(SELECT_OHTTP_KEYS, &[]).await?;
        Ok(rows
            .iter()
            .map(|r| OhttpKeyRow { key_id: r.get::<_, i64>(0) as u8, created_week: r.get(1), ikm: r.get(2) })
            .collect())
    }

    async fn add_ohttp_key(&self, created_week: &str, ikm: &[u8]) -> Result<Option<u8>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("LOCK TABLE ohttp_keys IN EXCLUSIVE MODE", &[]).await?;
        let id: i64 = tx.query_one(NEXT_OHTTP_KEY_ID, &[]).await?.get(0);
        if id > 255 {
            return Ok(None);
        }
        tx.execute(INSERT_OHTTP_KEY, &[&id, &created_week, &ikm]).await?;
        tx.commit().await?;
        Ok(Some(id as u8))
    }

    async fn retire_ohttp_key(&self, key_id: u8) -> Result<bool> {
        Ok(self.client().await?.execute(RETIRE_OHTTP_KEY, &[&i64::from(key_id)]).await? == 1)
    }

    async fn count_gateway_report(&self, week: &str) -> Result<()> {
        let c = self.ingest.get().await.map_err(pool_error)?;
        let st = c.prepare_cached(COUNT_GATEWAY_REPORT).await?;
        c.execute(&st, &[&week]).await?;
        Ok(())
    }

    async fn gateway_weeks(&self) -> Result<Vec<(String, i64, i64)>> {
        let rows = self.client().await?.query(GATEWAY_WEEKS, &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

/// Adds to a digest's running quarantine counts ('' for all digests); a
/// digest's row goes when its count reaches zero.
async fn count_quarantine(tx: &tokio_postgres::Transaction<'_>, digest: &str, reports: i64, bytes: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO quarantine_counts (digest, reports, bytes) VALUES ($1, $2, $3) ON CONFLICT (digest) DO UPDATE \
         SET reports = quarantine_counts.reports + excluded.reports, bytes = quarantine_counts.bytes + excluded.bytes",
        &[&digest, &reports, &bytes],
    )
    .await?;
    if reports < 0 {
        tx.execute("DELETE FROM quarantine_counts WHERE digest = $1 AND digest <> '' AND reports <= 0", &[&digest]).await?;
    }
    Ok(())
}

/// Takes deleted bodies, as (digest, length) rows, off the running counts.
/// Digests in order, the total last, as every writer does: no deadlock.
async fn uncount_quarantine(tx: &tokio_postgres::Transaction<'_>, deleted: &[tokio_postgres::Row]) -> Result<()> {
    let mut by_digest: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for row in deleted {
        let e = by_digest.entry(row.get(0)).or_default();
        e.0 += 1;
        e.1 += row.get::<_, i64>(1);
    }
    let (mut reports, mut bytes) = (0, 0);
    for (digest, (n, b)) in &by_digest {
        count_quarantine(tx, digest, -n, -b).await?;
        reports += n;
        bytes += b;
    }
    if reports > 0 {
        count_quarantine(tx, "", -reports, -bytes).await?;
    }
    Ok(())
}

/// The parameters of `INSERT_REPORT`, in its column order (`id` is the
/// row's report id as a byte slice, which bytea takes).
fn report_params<'a>(row: &'a ReportRow, id: &'a &'a [u8]) -> [&'a (dyn ToSql + Sync); 10] {
    [id, &row.week, &row.schema_id, &row.os_family, &row.os_version, &row.arch, &row.product, &row.product_version, &row.library_version, &row.codes]
}
