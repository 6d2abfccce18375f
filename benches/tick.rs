//! Cost of the calls a host makes often, as medians over repeated batches.
//!
//!     cargo bench --bench tick
//!
//! Timings on shared machines are noisy: read the medians and the ratio to a
//! bare `SystemTime::now()`, not single numbers.

use optin_telemetry::{ffi, Client};
use std::hint::black_box;
use std::time::{Instant, SystemTime};

fn median_ns_per_call(batches: usize, per_batch: u32, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..batches)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            start.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("optin-bench-{}", std::process::id()));
    let config = serde_json::json!({
        "product": "Bench", "product_version": "1.0", "endpoint": "http://127.0.0.1:9/r",
        "state_dir": dir,
        "schema": {"version": 1, "fields": [
            {"name": "users", "type": "count", "buckets": [1, 5, 10, 25, 50, 100], "description": {"en": "u"}},
            {"name": "profiles", "type": "choices", "values": ["imap", "exchange", "m365", "gmail", "pst"], "description": {"en": "p"}}
        ]}
    });
    let client = Client::open(&config.to_string()).unwrap();
    client.set_values_json(r#"{"users": 37, "profiles": ["imap", "pst"]}"#).unwrap();
    client.set_consent(true).unwrap();
    client.tick().unwrap(); // draws the phase: later ticks are not due

    let clock = median_ns_per_call(51, 100_000, || {
        black_box(SystemTime::now());
    });
    // The two hot calls go through the C ABI, as a host makes them.
    let mut handle: *mut ffi::tel_client = std::ptr::null_mut();
    let config_c = std::ffi::CString::new(config.to_string()).unwrap();
    // SAFETY: valid NUL-terminated config and out pointer; the handle is closed below.
    assert_eq!(unsafe { ffi::tel_open(config_c.as_ptr(), &mut handle) }, ffi::TEL_OK);
    unsafe { ffi::tel_tick(handle) };
    let tick = median_ns_per_call(51, 100_000, || {
        // SAFETY: `handle` is open for the whole loop.
        black_box(unsafe { ffi::tel_tick(handle) });
    });
    let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let tick_at = median_ns_per_call(51, 100_000, || {
        // SAFETY: as above.
        black_box(unsafe { ffi::tel_tick_at(handle, black_box(now)) });
    });
    unsafe { ffi::tel_close(handle) };
    let preview = median_ns_per_call(21, 2_000, || {
        black_box(client.preview());
    });
    let consent_write = median_ns_per_call(11, 20, || {
        client.set_consent(false).unwrap();
        client.set_consent(true).unwrap();
    }) / 2.0;
    println!("SystemTime::now()            median {clock:>10.1} ns");
    println!("tel_tick, not due (C ABI)    median {tick:>10.1} ns   ({:.2}x SystemTime::now)", tick / clock);
    println!("tel_tick_at, not due (C ABI) median {tick_at:>10.1} ns   (no clock read)");
    println!("preview (Rust API)            median {preview:>10.1} ns");
    println!("set_consent, durable write   median {:>10.1} µs", consent_write / 1000.0);

    // Memory: resident set before and after many calls that allocate and free
    // (previews, status, describe). Growth would mean a leak per call.
    if let Some(before) = rss_kib() {
        for _ in 0..100_000 {
            black_box(client.preview());
            black_box(client.status().unwrap());
        }
        for _ in 0..10_000 {
            black_box(client.describe("de").unwrap());
        }
        let after = rss_kib().unwrap_or(before);
        println!("resident memory                {before} KiB -> {after} KiB after 100,000 previews + statuses and 10,000 describes");
    }
    drop(client);
    let _ = std::fs::remove_dir_all(dir);
}

/// Resident set size from /proc (Linux); None elsewhere.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
