//! From body bytes to an outcome: the library's validator decides what a
//! report is; privacy.rs decides what of it is kept.

use crate::privacy::{keep, Week};
use crate::storage::{QuarantineCaps, Store, StoreError};
use crate::AppState;
use optin_telemetry::validate::{Envelope, Reject};
use std::sync::atomic::Ordering;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Duplicate,
    Quarantined,
    QuarantineFull,
    Rejected(Reject),
}

/// How a report arrived: posted directly, or through the Oblivious HTTP
/// gateway. Only counted (per week, for stored reports); never stored with
/// the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    Gateway,
}

pub async fn receive<S: Store>(state: &AppState<S>, body: &[u8], route: Route) -> Result<Outcome, StoreError> {
    let envelope = match Envelope::parse(body) {
        Ok(e) => e,
        Err(reason) => return Ok(rejected(state, reason)),
    };
    let week = Week::of_unix((state.clock)());
    let mut registered = state.schemas().by_digest.get(envelope.digest()).cloned();
    if registered.is_none() {
        state.reload_for_unknown_digest().await?;
        registered = state.schemas().by_digest.get(envelope.digest()).cloned();
    }
    let Some((schema_id, schema)) = registered else {
        // Kept verbatim until the schema is registered: only what some
        // schema could allow, never free text or extra keys.
        if let Err(reason) = envelope.precheck() {
            return Ok(rejected(state, reason));
        }
        let caps: QuarantineCaps = state.options.quarantine;
        return Ok(if state.store.quarantine(envelope.digest(), &week.to_string(), body, caps).await? {
            state.metrics.quarantined.fetch_add(1, Ordering::Relaxed);
            Outcome::Quarantined
        } else {
            state.metrics.quarantine_full.fetch_add(1, Ordering::Relaxed);
            Outcome::QuarantineFull
        });
    };
    let accepted = match envelope.check(&schema) {
        Ok(a) => a,
        Err(reason) => return Ok(rejected(state, reason)),
    };
    if state.store.insert_report(keep(&accepted, schema_id, week)).await? {
        state.metrics.accepted.fetch_add(1, Ordering::Relaxed);
        if route == Route::Gateway {
            state.metrics.gateway_reports.fetch_add(1, Ordering::Relaxed);
            // The report is stored: a failed count is logged, not answered.
            if let Err(e) = state.store.count_gateway_report(&week.to_string()).await {
                state.metrics.storage_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("storage error (gateway count): {e}");
            }
        }
        Ok(Outcome::Stored)
    } else {
        state.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Duplicate)
    }
}

fn rejected<S>(state: &AppState<S>, reason: Reject) -> Outcome {
    state.metrics.reject(reason);
    Outcome::Rejected(reason)
}
