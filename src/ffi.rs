//! The C ABI. The only module with `unsafe` (besides two Windows system calls
//! in `platform`): it turns C arguments into Rust values, calls the safe core,
//! and turns results back. Every exported function runs inside `boundary`,
//! so no panic crosses into the host.
#![allow(non_camel_case_types)]
// The safety contract of every exported function is the C header's: pointers
// are NULL or valid for the documented access, strings NUL-terminated,
// clients live from tel_open to tel_close (stated in cbindgen.toml's preamble
// and per function). A Rust "# Safety" heading would only repeat it there.
#![allow(clippy::missing_safety_doc)]

use crate::client::Client;
use crate::error::{Code, Error, Result};
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use std::time::Duration;

/// Result of every fallible function: TEL_OK or a TEL_ERR_* code.
pub type tel_result = i32;

/// Success.
pub const TEL_OK: tel_result = 0;
/// A required pointer argument was NULL.
pub const TEL_ERR_NULL_ARGUMENT: tel_result = 1;
/// A string argument was not valid UTF-8.
pub const TEL_ERR_INVALID_UTF8: tel_result = 2;
/// An argument was outside its documented range (e.g. consent not 0 or 1).
pub const TEL_ERR_INVALID_ARGUMENT: tel_result = 3;
/// The configuration given to tel_open was rejected (unknown key, bad schema, a count with neither
/// buckets nor rounding, a schema above max_bits, bad product_version or endpoint...).
pub const TEL_ERR_CONFIG: tel_result = 4;
/// The state directory could not be created, read, locked or written.
pub const TEL_ERR_IO: tel_result = 5;
/// A bug in the library (a caught panic); the message says where.
pub const TEL_ERR_INTERNAL: tel_result = 6;
/// A JSON argument was not syntactically valid JSON.
pub const TEL_ERR_MALFORMED_JSON: tel_result = 7;
/// A field name is not in the schema.
pub const TEL_ERR_UNKNOWN_FIELD: tel_result = 8;
/// A value has the wrong type for its field (e.g. a string for a count, 1.5 for a count).
pub const TEL_ERR_WRONG_TYPE: tel_result = 9;
/// A value has the right type but is not allowed (not in the choice list, a negative count, a duplicate).
pub const TEL_ERR_VALUE_NOT_ALLOWED: tel_result = 10;
/// An input string is longer than the library accepts (1 MiB for JSON, 256 bytes for names and values).
pub const TEL_ERR_TOO_LARGE: tel_result = 11;
/// tel_flush: a send was still in flight when the timeout ran out.
pub const TEL_ERR_TIMEOUT: tel_result = 12;

/// No answer yet: nothing is sent.
pub const TEL_CONSENT_UNDECIDED: u32 = 0;
/// The user agreed to the schema, product and endpoint in use: reports may be sent.
pub const TEL_CONSENT_GRANTED: u32 = 1;
/// The user declined: nothing is sent, and a schema change does not ask again.
pub const TEL_CONSENT_DENIED: u32 = 2;
/// The user agreed to another schema, product or endpoint (or answered before product and
/// endpoint were bound): nothing is sent until they answer again.
pub const TEL_CONSENT_OUTDATED: u32 = 3;

const MAX_JSON: usize = 1 << 20;
const MAX_NAME: usize = 256;

/// An open telemetry client. Opaque; created by tel_open, destroyed by tel_close.
pub struct tel_client {
    client: Client,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::from(c"no error"));
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// The single panic boundary: runs `f`, records its error for
/// tel_last_error_message, and turns a panic into TEL_ERR_INTERNAL.
fn boundary(f: impl FnOnce() -> Result<()>) -> tel_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => TEL_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.code as tel_result
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error: {what}"));
            TEL_ERR_INTERNAL
        }
    }
}

fn null(what: &str) -> Error {
    Error::new(Code::NullArgument, format!("{what} is NULL"))
}

/// Borrows a NUL-terminated UTF-8 string, reading at most `limit + 1` bytes so
/// that a huge input is rejected without scanning all of it.
///
/// SAFETY: `p` is NULL or points to memory readable up to its NUL terminator
/// or `limit + 1` bytes, whichever comes first, for the duration of the call.
unsafe fn read_str<'a>(p: *const c_char, what: &str, limit: usize) -> Result<&'a str> {
    if p.is_null() {
        return Err(null(what));
    }
    let mut len = 0;
    while *p.add(len) != 0 {
        if len == limit {
            return Err(Error::new(Code::TooLarge, format!("{what} is longer than {limit} bytes")));
        }
        len += 1;
    }
    let bytes = std::slice::from_raw_parts(p as *const u8, len);
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(Code::InvalidUtf8, format!("{what} is not valid UTF-8 (bad byte at offset {})", e.valid_up_to()))
    })
}

/// SAFETY: `p` is NULL or a pointer returned by tel_open and not yet closed.
unsafe fn client<'a>(p: *mut tel_client) -> Result<&'a Client> {
    p.as_ref().map(|c| &c.client).ok_or_else(|| null("client"))
}

/// SAFETY: `out` is NULL or valid for one pointer write.
unsafe fn out_string(out: *mut *mut c_char, f: impl FnOnce() -> Result<String>) -> Result<()> {
    if out.is_null() {
        return Err(null("out_json"));
    }
    let text = f()?;
    let c = CString::new(text).map_err(|_| Error::internal("output contained a NUL byte"))?;
    *out = c.into_raw();
    Ok(())
}

fn flag(v: i32, what: &str) -> Result<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(Error::invalid(format!("{what} must be 0 or 1, got {other}"))),
    }
}

/// Opens a client: validates the configuration, creates `state_dir` if needed,
/// and reads the saved consent.
///
/// `config_json`: a JSON object (at most 1 MiB) with the keys `product`,
/// `product_version`, `endpoint`, `state_dir`, `schema`, and optionally
/// `disabled`, `proxy` (a proxy URL without credentials, or "none" for a direct
/// connection), `ca_cert_pem`, `max_bits`, `ohttp`; unknown keys are rejected.
/// `ohttp`: `{"relay": URL, "key_config": base64}` (no other keys) sends
/// every report through an Oblivious HTTP relay (RFC 9458): `relay` by the
/// endpoint's rules (https; http only to loopback), `key_config` the
/// gateway's key configuration (`application/ohttp-keys`: one configuration
/// or an RFC 9540 list; the first with KEM X25519, KDF HKDF-SHA256 and
/// AEAD AES-128-GCM is used, other suites are refused with TEL_ERR_CONFIG);
/// both bound to the consent. The library never fetches keys. The same on
/// Linux and Windows.
/// See README. `product_version`: 1 to 4 dot-separated decimal numbers of 1
/// to 5 digits each (e.g. "24.1.3", "10.2.1.21234"), nothing else (no
/// suffix such as "-beta", no empty part). `endpoint`: no query, fragment or user info; the host
/// a DNS name or IP address (no IPv6 zone id), a port 1 to 65535 without
/// leading zeros; its path at most 64 characters of `A-Z a-z 0-9 / _ . -`. Every `count` field of the
/// schema declares exactly one of `"buckets": [...]` or `"rounding": "1-2-5"`;
/// a count is never sent exactly. The schema's identifying bits (the sum over
/// its fields of log2(1 + the number of values the field can take)) must not
/// exceed `max_bits` (default 32).
/// `config_json` is only read during the call. `out_client`: receives the new
/// client on success; untouched on failure. The client is owned by the caller
/// and must be released with tel_close().
///
/// A corrupted or unreadable state file does not fail the call: it is moved
/// aside, the client starts undecided, and tel_status_json() lists a warning
/// (a history file likewise: the history starts empty).
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`config_json` or
/// `out_client` is NULL), TEL_ERR_INVALID_UTF8, TEL_ERR_TOO_LARGE,
/// TEL_ERR_MALFORMED_JSON, TEL_ERR_CONFIG (names the key, field or URL part
/// at fault; for max_bits, the widest fields),
/// TEL_ERR_IO (state_dir cannot be created or its lock file written; on Unix
/// also a state_dir writable by group or others, or owned by a user other
/// than the process's effective user or root, or inside a directory that is
/// (unless that one is sticky, as /tmp): the message says which).
#[no_mangle]
pub unsafe extern "C" fn tel_open(config_json: *const c_char, out_client: *mut *mut tel_client) -> tel_result {
    boundary(|| {
        if out_client.is_null() {
            return Err(null("out_client"));
        }
        let text = read_str(config_json, "config_json", MAX_JSON)?;
        let client = Client::open(text)?;
        *out_client = Box::into_raw(Box::new(tel_client { client }));
        Ok(())
    })
}

/// Closes a client and frees it. NULL is a no-op.
///
/// Returns promptly: it does not wait for the network. A send that has not
/// started transmitting is abandoned (nothing of it leaves). A send in flight
/// is interrupted: its connection is shut down at once and it gets up to 50 ms
/// to record its outcome ("interrupted" in tel_history_json). The collector may
/// or may not have received that report; it stays pending with the same
/// report id and bytes and is sent again by the next tick after its retry
/// time (counted like a failed attempt: 1 s to 1 min after the interrupted
/// attempt started the first time, doubling after each further failure; the
/// fifth failed attempt gives the report up), in this process or another on
/// the same state_dir; the collector keeps one report per id. Nothing is sent
/// after tel_close returns. It does not wait for a connect still in progress
/// (it ends on its own within the connect timeout, sending nothing) nor for a
/// state_dir locked by another process (the outcome is then recorded when the
/// lock is free, or the send is counted as interrupted when its lease runs
/// out). On Windows (WinHTTP, whose synchronous calls cannot be interrupted)
/// the request runs on a thread of its own: tel_close stops waiting for it at
/// once, records the attempt as interrupted in the same way, and that thread
/// ends on its own within the send timeouts, sending nothing more. A thread
/// left running never touches the freed handle. Must not race any other call
/// on the same client; the pointer is invalid afterwards. Returns nothing and
/// cannot fail.
#[no_mangle]
pub unsafe extern "C" fn tel_close(client: *mut tel_client) {
    let _ = boundary(|| {
        if !client.is_null() {
            drop(Box::from_raw(client));
        }
        Ok(())
    });
}

/// Records the user's answer: `granted` = 1 (yes) or 0 (no); anything else is
/// TEL_ERR_INVALID_ARGUMENT. The answer is on disk before the call returns.
///
/// A "yes" covers exactly the schema in use (its version and digest), the
/// configured `product` and the `endpoint`, and schedules the first report at a random moment within 7 days. A "no" takes
/// effect at once: no request starts afterwards and a prepared send is
/// abandoned; it stays a "no" across schema changes.
///
/// Returns TEL_OK once the answer is on disk. Errors: TEL_ERR_NULL_ARGUMENT
/// (`client` is NULL), TEL_ERR_INVALID_ARGUMENT, TEL_ERR_IO (state could not
/// be written; the previous answer stays in force on disk and for other
/// processes. A "no" that could not be written still takes effect for this
/// client: it sends nothing more for the rest of its life, and
/// tel_status_json says so in `blocked_by`).
#[no_mangle]
pub unsafe extern "C" fn tel_set_consent(client: *mut tel_client, granted: i32) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        c.set_consent(flag(granted, "granted")?)
    })
}

/// Writes the consent in force for the schema in use to `*out_consent`: one of
/// TEL_CONSENT_UNDECIDED, TEL_CONSENT_GRANTED, TEL_CONSENT_DENIED,
/// TEL_CONSENT_OUTDATED (granted for another schema, product or endpoint, or
/// by a receipt from before product and endpoint were bound: ask again).
/// `*out_consent` is written only on success.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client` or
/// `out_consent` is NULL), TEL_ERR_IO (the lock file cannot be taken).
#[no_mangle]
pub unsafe extern "C" fn tel_get_consent(client: *mut tel_client, out_consent: *mut u32) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        if out_consent.is_null() {
            return Err(null("out_consent"));
        }
        *out_consent = c.consent()? as u32;
        Ok(())
    })
}

/// Sets a `bool` field: `value` = 1 (true) or 0 (false). `field` is only read
/// during the call.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client` or
/// `field` is NULL), TEL_ERR_INVALID_UTF8, TEL_ERR_TOO_LARGE,
/// TEL_ERR_UNKNOWN_FIELD, TEL_ERR_WRONG_TYPE (the field is not a bool),
/// TEL_ERR_INVALID_ARGUMENT (value not 0 or 1). On error nothing changes.
#[no_mangle]
pub unsafe extern "C" fn tel_set_bool(client: *mut tel_client, field: *const c_char, value: i32) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        let field = read_str(field, "field", MAX_NAME)?;
        c.set_bool(field, flag(value, "value")?)
    })
}

/// Sets a `count` field. It is never reported as the exact number: a field
/// with buckets is reported as the bucket the value falls in; a field with
/// `"rounding": "1-2-5"` as a neighbour in the series 0, 1, 2, 5, 10, 20, 50,
/// ..., 10^19, drawn at random without bias (v between a and b is sent as b
/// with probability (v-a)/(b-a)); values above 10^19 are sent as 10^19. The
/// draw is made once per report: preview, describe and the body sent agree,
/// and the next report draws again. `field` is only read during the call.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client` or
/// `field` is NULL), TEL_ERR_INVALID_UTF8, TEL_ERR_TOO_LARGE,
/// TEL_ERR_UNKNOWN_FIELD, TEL_ERR_WRONG_TYPE. On error nothing changes.
#[no_mangle]
pub unsafe extern "C" fn tel_set_count(client: *mut tel_client, field: *const c_char, value: u64) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        c.set_count(read_str(field, "field", MAX_NAME)?, value)
    })
}

/// Sets a `choice` field to one of its declared values. `field` and `value`
/// are only read during the call.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client`,
/// `field` or `value` is NULL), TEL_ERR_INVALID_UTF8, TEL_ERR_TOO_LARGE,
/// TEL_ERR_UNKNOWN_FIELD, TEL_ERR_WRONG_TYPE, TEL_ERR_VALUE_NOT_ALLOWED (not
/// a declared value; the message lists them). On error nothing changes.
#[no_mangle]
pub unsafe extern "C" fn tel_set_choice(client: *mut tel_client, field: *const c_char, value: *const c_char) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        let field = read_str(field, "field", MAX_NAME)?;
        c.set_choice(field, read_str(value, "value", MAX_NAME)?)
    })
}

/// Sets several fields at once from a JSON object `{"field": value, ...}`
/// (at most 1 MiB): true/false for bool, a non-negative integer for count, a
/// string for choice, an array of strings for choices, null to unset a field.
/// All or nothing: if any entry is rejected, no field changes. `values_json`
/// is only read during the call.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client` or
/// `values_json` is NULL), TEL_ERR_INVALID_UTF8, TEL_ERR_TOO_LARGE,
/// TEL_ERR_MALFORMED_JSON, TEL_ERR_UNKNOWN_FIELD, TEL_ERR_WRONG_TYPE,
/// TEL_ERR_VALUE_NOT_ALLOWED. The message names the field at fault.
#[no_mangle]
pub unsafe extern "C" fn tel_set_values_json(client: *mut tel_client, values_json: *const c_char) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        c.set_values_json(read_str(values_json, "values_json", MAX_JSON)?)
    })
}

/// Writes the exact bytes of the next report to `*out_json` (NUL-terminated
/// UTF-8). The next send transmits these bytes unless a value is changed in
/// between — whichever process sharing `state_dir` sends it: the values are
/// the ones last published to `state_dir` by a process that set values (a
/// process publishes its values at its next tel_tick), or this client's own
/// when none are published; the report id is the one saved there for the
/// next report. Works whatever the consent; sends nothing. Reads the state
/// file (waits like tel_status_json).
/// The caller owns `*out_json` and frees it with tel_string_free();
/// `*out_json` is written only on success.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client` or
/// `out_json` is NULL).
#[no_mangle]
pub unsafe extern "C" fn tel_preview_json(client: *mut tel_client, out_json: *mut *mut c_char) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        out_string(out_json, || Ok(c.preview()))
    })
}

/// Writes what a consent or "view data" dialog needs to `*out_json`: every
/// field (built-in ones too) with its name, description in `language` (falling
/// back to the base language, then English), kind, `buckets`, `rounding` or
/// `values`, identifying `bits` and current value as it would be sent (a
/// rounded count as drawn for the next report); the consent state with its
/// receipt; when the consent is outdated, the fields added, removed or
/// changed since the consented schema and whether the product or endpoint
/// changed (`product_changed`, `from_product`, `to_product`,
/// `endpoint_changed`, `from_endpoint`, `to_endpoint`, `relay_changed`);
/// `relay` (with `ohttp`: `url`, `host` and a `text` in the language saying
/// the relay sees the address but not the content and the vendor the
/// content but not the address; else null); a `privacy` object
/// (`max_bits`: the schema's identifying bits, `fields`: name -> bits,
/// `limit`: the configured max_bits): a report is one of at most 2^max_bits
/// possible reports; the next report's exact bytes; and `warnings`, the same
/// as tel_status_json's. `language`: a BCP 47 tag such as "de"
/// or "de-AT", matched case-insensitively; NULL or "" means English; only
/// read during the call. The receipt
/// carries `decision`, `at` (alias `when`, unix seconds), `schema_version`,
/// `schema_digest`, `product_version`, `product`, `endpoint` (null in a
/// receipt from before they were bound), `ohttp` (the digest of the relay and
/// key configuration it covers; null for a direct send).
/// The caller owns `*out_json` and frees it with tel_string_free();
/// `*out_json` is written only on success.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client` or
/// `out_json` is NULL), TEL_ERR_INVALID_UTF8, TEL_ERR_TOO_LARGE (`language`
/// over 64 bytes), TEL_ERR_INVALID_ARGUMENT (not a language tag), TEL_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn tel_describe_json(client: *mut tel_client, language: *const c_char, out_json: *mut *mut c_char) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        let language = if language.is_null() { "" } else { read_str(language, "language", 64)? };
        out_string(out_json, || c.describe(language))
    })
}

/// Lets the library act on its schedule; call it often (e.g. every minute)
/// from any thread. When nothing is due it costs two atomic loads: no I/O, no
/// allocation, no thread. When a report is due it starts the send on a
/// background thread and returns at once. Nothing is sent without consent for
/// the schema in use, or under a policy block. Consent, policy and ownership
/// of the send are read from the state file again once the connection and
/// the TLS handshake are up, before the first byte of the report is written.
/// Never waits for the state lock: when another thread or process holds it,
/// returns TEL_OK at once and looks again a few seconds (of tick time) later.
///
/// Returns TEL_OK when nothing was due or a send was started (its outcome is
/// in tel_status_json / tel_history_json). Errors: TEL_ERR_NULL_ARGUMENT
/// (`client` is NULL), TEL_ERR_IO (the state could not be read or written
/// when something was due), TEL_ERR_INTERNAL (the send thread could not start).
#[no_mangle]
pub unsafe extern "C" fn tel_tick(client: *mut tel_client) -> tel_result {
    boundary(|| self::client(client)?.tick())
}

/// tel_tick with an explicit "now" in unix seconds, for tests and simulations.
/// Schedule, retries and history all use this clock.
///
/// Returns TEL_OK as tel_tick does. Errors: TEL_ERR_NULL_ARGUMENT (`client`
/// is NULL), TEL_ERR_INVALID_ARGUMENT (`unix_seconds` before 1970 or after
/// the year 9999; nothing changes), TEL_ERR_IO, TEL_ERR_INTERNAL as tel_tick.
#[no_mangle]
pub unsafe extern "C" fn tel_tick_at(client: *mut tel_client, unix_seconds: i64) -> tel_result {
    boundary(|| self::client(client)?.tick_at(unix_seconds))
}

/// Waits up to `timeout_ms` until no send of this client is in flight. Returns
/// at once when none is. Does not wait for retries that are merely due later.
///
/// Returns TEL_OK when nothing is in flight. Errors: TEL_ERR_NULL_ARGUMENT
/// (`client` is NULL), TEL_ERR_TIMEOUT (still in flight after `timeout_ms`;
/// the send goes on).
#[no_mangle]
pub unsafe extern "C" fn tel_flush(client: *mut tel_client, timeout_ms: u32) -> tel_result {
    boundary(|| self::client(client)?.flush(Duration::from_millis(timeout_ms as u64)))
}

/// Writes the sending status to `*out_json`: `consent` ("undecided",
/// "granted", "denied", "outdated"), `next_due` and `last_sent` (unix seconds
/// or null), `sending` (bool), `blocked_by` (null or why a policy blocks
/// sending: `disabled` in the configuration, OPTIN_TELEMETRY_DISABLE, or the
/// administrator's switch, HKLM\SOFTWARE\Policies\optin-telemetry on Windows
/// and /etc/optin-telemetry on Unix; see README), `last_error` (null or the
/// latest attempt's failure; on Windows it names the proxy tried; it starts
/// with "key_config_outdated:" when an Oblivious HTTP gateway did not know the
/// configured key: nothing is sent until the configuration changes), `attempts`,
/// `schema_version`, `schema_digest`, `warnings` (strings; one per
/// `state.json.bad-*` or `history.json.bad-*` file kept aside in `state_dir`,
/// whichever client, path or process set it aside, listed until the file is
/// removed; at most 10, the last counting any further ones).
/// The caller owns `*out_json` and frees it with tel_string_free();
/// `*out_json` is written only on success.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client` or
/// `out_json` is NULL), TEL_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn tel_status_json(client: *mut tel_client, out_json: *mut *mut c_char) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        out_string(out_json, || c.status())
    })
}

/// Writes the last 52 reports that left the machine to `*out_json`, newest
/// first: `{"reports": [{"report_id", "at", "outcome", "status", "body",
/// "body_sha256", "body_length", "via", "attempts": [{"at", "outcome", "status",
/// "error"}]}]}`. `at` (alias `when`) is the unix time of the latest attempt;
/// `status` (alias `http_status`) its HTTP status or null when no response
/// came; `body` is the exact text sent, or null for a body over 32 KiB, which
/// is listed by `body_sha256` (hex SHA-256 of its bytes) and `body_length`
/// (bytes) instead, so the last 52 reports are always listed. A retry of a
/// report is another attempt of the same entry (same report id), also when
/// another process made it. `via`: "relay" for a report sent through an
/// Oblivious HTTP relay (`body` is the inner request's content), else "direct".
/// Outcomes: "in_flight", "delivered", "refused", "failed", "interrupted",
/// "key_config_outdated".
/// The caller owns `*out_json` and frees it with tel_string_free();
/// `*out_json` is written only on success.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client` or
/// `out_json` is NULL), TEL_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn tel_history_json(client: *mut tel_client, out_json: *mut *mut c_char) -> tel_result {
    boundary(|| {
        let c = self::client(client)?;
        out_string(out_json, || c.history())
    })
}

/// Deletes the history of sent reports (for every client sharing `state_dir`).
/// Consent and schedule are not affected.
///
/// Returns TEL_OK on success. Errors: TEL_ERR_NULL_ARGUMENT (`client` is
/// NULL), TEL_ERR_IO.
#[no_mangle]
pub unsafe extern "C" fn tel_clear_history(client: *mut tel_client) -> tel_result {
    boundary(|| self::client(client)?.clear_history())
}

/// Frees a string returned by this library through an output parameter
/// (`*out_json`). NULL is a no-op. Passing anything else (a string from
/// elsewhere, one already freed, or the static strings of
/// tel_last_error_message / tel_version) is undefined behaviour. Returns nothing.
#[no_mangle]
pub unsafe extern "C" fn tel_string_free(s: *mut c_char) {
    let _ = boundary(|| {
        if !s.is_null() {
            drop(CString::from_raw(s));
        }
        Ok(())
    });
}

/// A human-readable message for the last failed call on the calling thread
/// (read it on the thread that made the call). Never NULL. Owned by the
/// library: do not free; valid until the next call into the library on the
/// same thread. Before any call has failed on the thread it is "no error"; a
/// successful call does not clear it.
#[no_mangle]
pub extern "C" fn tel_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library version, e.g. "0.1.0". Never NULL; a static string: do not free.
#[no_mangle]
pub extern "C" fn tel_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_core_codes() {
        let pairs = [
            (TEL_ERR_NULL_ARGUMENT, Code::NullArgument), (TEL_ERR_INVALID_UTF8, Code::InvalidUtf8),
            (TEL_ERR_INVALID_ARGUMENT, Code::InvalidArgument), (TEL_ERR_CONFIG, Code::Config),
            (TEL_ERR_IO, Code::Io), (TEL_ERR_INTERNAL, Code::Internal),
            (TEL_ERR_MALFORMED_JSON, Code::MalformedJson), (TEL_ERR_UNKNOWN_FIELD, Code::UnknownField),
            (TEL_ERR_WRONG_TYPE, Code::WrongType), (TEL_ERR_VALUE_NOT_ALLOWED, Code::ValueNotAllowed),
            (TEL_ERR_TOO_LARGE, Code::TooLarge), (TEL_ERR_TIMEOUT, Code::Timeout),
        ];
        for (c, code) in pairs {
            assert_eq!(c, code as i32, "{code:?}");
        }
        use crate::ConsentState::*;
        assert_eq!([Undecided as u32, Granted as u32, Denied as u32, Outdated as u32],
                   [TEL_CONSENT_UNDECIDED, TEL_CONSENT_GRANTED, TEL_CONSENT_DENIED, TEL_CONSENT_OUTDATED]);
    }

    #[test]
    fn a_panic_becomes_internal_with_a_message() {
        let r = boundary(|| panic!("boom"));
        assert_eq!(r, TEL_ERR_INTERNAL);
        let msg = unsafe { std::ffi::CStr::from_ptr(tel_last_error_message()) };
        assert_eq!(msg.to_str().unwrap(), "internal error: boom");
    }
}
