//! Retention: roll completed weeks up into aggregates, delete raw reports
//! older than `--retain-weeks` and quarantined bodies older than 30 days,
//! then compact so no deleted bytes stay in the database files.

use crate::privacy::Week;
use crate::storage::{SchemaSet, Store, StoreError};
use std::sync::Arc;

/// Quarantined bodies are kept at most this long (counted from the start of
/// the week they arrived in; purge runs daily).
pub const QUARANTINE_DAYS: i64 = 29;

/// A week is rolled up only this long after it ended: a request that read
/// the clock just before midnight, or another process on the same database
/// whose clock lags, may still store a report in it, and a rolled-up week is
/// never rolled up again.
pub const ROLLUP_GRACE_S: i64 = 3600;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PurgeSummary {
    pub weeks_rolled_up: Vec<String>,
    pub reports_deleted: u64,
    pub quarantine_deleted: u64,
}

/// Applies retention as of `now` (unix seconds). Every week that ended at
/// least [`ROLLUP_GRACE_S`] ago and has raw reports but no current rollup
/// is aggregated first, and only such weeks lose raw reports, so deleting
/// raw reports never loses a count.
pub async fn purge<S: Store>(store: &S, now: i64, retain_weeks: u32) -> Result<PurgeSummary, StoreError> {
    let current = Week::of_unix(now);
    // Weeks before this one are over and settled.
    let settled = Week::of_unix(now - ROLLUP_GRACE_S);
    let schemas = Arc::new(SchemaSet::from_rows(&store.schemas().await?));
    let done = store.rolled_up_weeks().await?;
    let mut summary = PurgeSummary::default();
    for week in store.report_weeks().await? {
        let complete = Week::parse(&week).is_some_and(|w| w < settled);
        if complete && !done.contains(&week) {
            store.rollup_week(&week, schemas.clone()).await?;
            summary.weeks_rolled_up.push(week);
        }
    }
    // Never delete raw reports of a week not rolled up yet.
    let cutoff = current.minus(i64::from(retain_weeks)).min(settled);
    summary.reports_deleted = store.delete_reports_before(&cutoff.to_string()).await?;
    // A body from week W goes once W's Monday is QUARANTINE_DAYS old: kept
    // are the weeks after the one that Monday-plus-29-days has passed.
    let oldest_kept = Week::of_unix(now - QUARANTINE_DAYS * 86_400).minus(-1);
    summary.quarantine_deleted = store.expire_quarantine(&oldest_kept.to_string()).await?;
    if summary.reports_deleted > 0 || summary.quarantine_deleted > 0 || store.arrival_ordered() {
        store.compact().await?;
    }
    Ok(summary)
}
