//! PostgreSQL: the scale-out backend. Ingest is stateless, so several
//! collector processes can share one database; duplicates are settled by the
//! primary key (`ON CONFLICT DO NOTHING`).

use super::{
    release_row, ProductRow, QuarantineCaps, Quarantined, Result, SchemaRow, Store, StoreError, CLAIM_RELEASE, RELEASED_WEEKS,
    RELEASE_ROW_COLUMNS, SELECT_PRODUCTS, SELECT_RELEASE, SELECT_RELEASES, STORE_RELEASE, UPSERT_PRODUCT,
};
use crate::privacy::ReportRow;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

const MIGRATIONS: &[&str] =
    &[include_str!("../../migrations/postgres/001_init.sql"), include_str!("../../migrations/postgres/002_releases.sql")];
/// Any constant: serializes migrations of processes starting together.
const MIGRATION_LOCK: i64 = 0x6f70_7469_6e5f_636f;

const INSERT_REPORT: &str = "INSERT INTO reports (report_id, week, schema_id, os_family, os_version, arch, product, \
     product_version, library_version, codes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (report_id) DO NOTHING";
const SELECT_REPORT_COLUMNS: &str =
    "SELECT report_id, week, schema_id, os_family, os_version, arch, product, product_version, library_version, codes FROM reports";

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
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
    pub async fn open(url: &str, max_connections: usize) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError(format!("postgres: bad URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(max_connections).build().map_err(pool_error)?;
        let store = PgStore { pool };
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
        let c = self.client().await?;
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
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // One quarantine writer at a time across processes, so the caps hold.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(MIGRATION_LOCK + 1)]).await?;
        let r = tx
            .query_one(
                "SELECT count(*), coalesce(sum(length(body)), 0)::BIGINT FROM quarantine WHERE digest = $1",
                &[&digest],
            )
            .await?;
        let (count, bytes): (i64, i64) = (r.get(0), r.get(1));
        let total: i64 = tx.query_one("SELECT coalesce(sum(length(body)), 0)::BIGINT FROM quarantine", &[]).await?.get(0);
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
        let rows = c.query("SELECT digest, count(*) FROM quarantine GROUP BY digest ORDER BY digest", &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn remove_quarantined(&self, keys: Vec<Vec<u8>>) -> Result<()> {
        let c = self.client().await?;
        c.execute("DELETE FROM quarantine WHERE qkey = ANY($1)", &[&keys]).await?;
        Ok(())
    }

    async fn expire_quarantine(&self, before: &str) -> Result<u64> {
        Ok(self.client().await?.execute("DELETE FROM quarantine WHERE week < $1", &[&before]).await?)
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
        tx.batch_execute("UPDATE reports SET codes = codes; UPDATE quarantine SET body = body").await?;
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
}

/// The parameters of `INSERT_REPORT`, in its column order (`id` is the
/// row's report id as a byte slice, which bytea takes).
fn report_params<'a>(row: &'a ReportRow, id: &'a &'a [u8]) -> [&'a (dyn ToSql + Sync); 10] {
    [id, &row.week, &row.schema_id, &row.os_family, &row.os_version, &row.arch, &row.product, &row.product_version, &row.library_version, &row.codes]
}
