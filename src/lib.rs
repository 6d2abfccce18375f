//! optin-telemetry: anonymous, opt-in installation statistics.
//!
//! The safe core is split by idea: [`schema`] (what may be sent), [`consent`]
//! (the user's answer, bound to the schema digest), [`report`] (the exact
//! bytes), [`schedule`] (when), [`store`] (state on disk), [`transport`]
//! (HTTPS). [`client::Client`] ties them together; `ffi` is the C ABI and the
//! only place with `unsafe` beyond a few system calls in `platform`
//! (Windows version, replace and directory ACL; `geteuid` on Unix).

pub mod client;
pub mod config;
pub mod consent;
pub mod error;
mod base64;
mod binary_http;
pub mod oblivious;
pub mod ffi;
mod platform;
pub mod policy;
pub mod report;
pub mod schedule;
pub mod schema;
pub mod store;
pub mod transport;
#[cfg(windows)]
mod transport_winhttp;
pub mod validate;

pub use client::Client;
pub use consent::ConsentState;
pub use error::{Code, Error, Result};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) fn now_unix() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

pub(crate) fn random_bytes(buf: &mut [u8]) {
    // The OS generator failing is not something a report can work around;
    // the panic is caught at the C boundary and becomes TEL_ERR_INTERNAL.
    getrandom::getrandom(buf).expect("the operating system's random generator failed");
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    random_bytes(&mut buf);
    schema::hex(&buf)
}

/// Uniform random numbers from the operating system.
pub(crate) struct OsRng;

impl schedule::Rng for OsRng {
    fn below(&mut self, n: u64) -> u64 {
        // Rejection sampling: no modulo bias.
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let mut b = [0u8; 8];
            random_bytes(&mut b);
            let x = u64::from_le_bytes(b);
            if x < zone {
                return x % n;
            }
        }
    }
}
