//! Counters for /metrics (Prometheus text format). Counts only: no label
//! ever carries anything from a request beyond a fixed reason name.

use crate::gateway::Refusal;
use optin_telemetry::validate::Reject;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub quarantined: AtomicU64,
    pub quarantine_full: AtomicU64,
    pub too_large: AtomicU64,
    pub unsupported_media_type: AtomicU64,
    pub rate_limited: AtomicU64,
    pub timeouts: AtomicU64,
    pub storage_errors: AtomicU64,
    /// Reports stored that came through the Oblivious HTTP gateway.
    pub gateway_reports: AtomicU64,
    rejected: [AtomicU64; 32],
    gateway_refused: [AtomicU64; 4],
}

impl Metrics {
    pub fn reject(&self, reason: Reject) {
        if let Some(i) = Reject::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rejected(&self, reason: Reject) -> u64 {
        Reject::ALL.iter().position(|r| *r == reason).map_or(0, |i| self.rejected[i].load(Ordering::Relaxed))
    }

    pub fn gateway_refuse(&self, reason: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == reason) {
            self.gateway_refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn gateway_refused(&self, reason: Refusal) -> u64 {
        Refusal::ALL.iter().position(|r| *r == reason).map_or(0, |i| self.gateway_refused[i].load(Ordering::Relaxed))
    }

    pub fn render(&self, schemas: usize) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        };
        counter("optin_reports_accepted_total", "Reports stored.", &self.accepted);
        counter("optin_reports_duplicate_total", "Reports whose report_id was already stored (retries).", &self.duplicates);
        counter("optin_reports_quarantined_total", "Reports kept in quarantine (digest not registered).", &self.quarantined);
        counter("optin_reports_quarantine_full_total", "Reports refused because the quarantine cap was reached.", &self.quarantine_full);
        counter("optin_requests_too_large_total", "Requests over the body limit.", &self.too_large);
        counter("optin_requests_unsupported_media_type_total", "Requests not sent as application/json, or in a content coding.", &self.unsupported_media_type);
        counter("optin_requests_rate_limited_total", "Requests answered 429 by the global limiter.", &self.rate_limited);
        counter("optin_requests_timeout_total", "Requests whose body did not arrive in time.", &self.timeouts);
        counter("optin_storage_errors_total", "Requests answered 503 because storage failed.", &self.storage_errors);
        let _ = writeln!(out, "# HELP optin_reports_rejected_total Reports refused, by reason (400 malformed, 422 not allowed).");
        let _ = writeln!(out, "# TYPE optin_reports_rejected_total counter");
        for (i, reason) in Reject::ALL.iter().enumerate() {
            let _ = writeln!(out, "optin_reports_rejected_total{{reason=\"{}\"}} {}", reason.name(), self.rejected[i].load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP optin_gateway_reports_total Reports stored that came through the Oblivious HTTP gateway.");
        let _ = writeln!(out, "# TYPE optin_gateway_reports_total counter\noptin_gateway_reports_total {}", self.gateway_reports.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP optin_gateway_refused_total Oblivious HTTP requests refused before the ingest path, by reason.");
        let _ = writeln!(out, "# TYPE optin_gateway_refused_total counter");
        for (i, reason) in Refusal::ALL.iter().enumerate() {
            let _ = writeln!(out, "optin_gateway_refused_total{{reason=\"{}\"}} {}", reason.name(), self.gateway_refused[i].load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP optin_schemas_registered Registered schemas known to this process.\n# TYPE optin_schemas_registered gauge\noptin_schemas_registered {schemas}");
        out
    }
}
