//! Retention: release completed weeks (release.rs), delete raw reports
//! older than `--retain-weeks` and quarantined bodies older than 30 days,
//! then compact so no deleted bytes stay in the database files.

use crate::privacy::Week;
use crate::release::ReleaseConfig;
use crate::storage::{Store, StoreError};

/// Quarantined bodies are kept at most this long (counted from the start of
/// the week they arrived in; purge runs daily).
pub const QUARANTINE_DAYS: i64 = 29;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PurgeSummary {
    /// (product, week) released first.
    pub weeks_released: Vec<(String, String)>,
    pub reports_deleted: u64,
    pub quarantine_deleted: u64,
}

/// Applies retention as of `now` (unix seconds). Every release that is due
/// is computed and stored first ([`crate::release::release_due`]), and only
/// weeks whose release is due lose raw reports, so deleting raw reports
/// never loses a published figure.
pub async fn purge<S: Store>(store: &S, now: i64, retain_weeks: u32, config: &ReleaseConfig) -> Result<PurgeSummary, StoreError> {
    let released = crate::release::release_due(store, now, config).await.map_err(StoreError)?;
    let mut summary = PurgeSummary {
        weeks_released: released.released.into_iter().map(|(p, w, _)| (p, w)).collect(),
        ..PurgeSummary::default()
    };
    let current = Week::of_unix(now);
    // Never delete raw reports of a week whose release is not due yet.
    let due = crate::release::newest_due_week(now, config.grace_s).minus(-1);
    let cutoff = current.minus(i64::from(retain_weeks)).min(due);
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
