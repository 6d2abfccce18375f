//! The client a host opens: safe Rust, used by the C ABI in `ffi.rs` and
//! directly by Rust hosts.
//!
//! Locking order, always: the lock file, then the `inner` mutex (`look` only
//! ever tries both, so it adds no ordering). So `inner` is held only by a
//! thread that already has the file, for one state read and write, and the
//! setters, which take only `inner`, never wait behind another process that
//! holds the file (stopped in a debugger, a stalled disk). Neither is held
//! while bytes travel over the network. The send lock (`Store::try_lock_send`)
//! is only ever tried, never waited for, so it adds no ordering. The store's
//! list of files it set aside (`Store::warnings`) is a leaf: held only for a
//! push or a copy, with nothing taken under it.

use crate::config::Config;
use crate::consent::{self, ConsentState, Receipt};
use crate::error::{parse_json, Code, Error, Result};
use crate::report::{self, Builtins, ReportIdentity};
use crate::schedule::{Interrupted, Outcome, Schedule, TickDecision};
use crate::schema::{self, CountEncoding, FieldValue, Kind, Schema, BUILTIN_FIELDS};
use crate::store::{Attempt, Guard, HistoryEntry, SharedValues, State, Store};
use crate::transport::{Abort, Delivery, Sender};
use crate::{now_unix, random_hex, OsRng};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const MAX_VALUES_JSON_BYTES: usize = 1 << 20;
/// How often a tick re-reads the state although nothing is due, so that a
/// consent given in another process (a GUI beside a service) is noticed.
pub const RECHECK: i64 = 600;
/// How long `close` waits for a send it interrupted to record its outcome
/// (one lock and two durable writes, about a millisecond) before returning.
pub const CLOSE_WAIT: Duration = Duration::from_millis(50);
/// Where the transport cannot interrupt a send blocked on the network
/// (WinHTTP on Windows): how long `close` waits for it before returning.
pub const CLOSE_WAIT_UNINTERRUPTIBLE: Duration = Duration::from_secs(3);
/// The error recorded for a send that `close` interrupted.
pub const CLOSED_DURING_SEND: &str = "the client was closed during the send, before the collector answered; the report is sent again later with the same id";
pub const DISABLE_ENV: &str = "OPTIN_TELEMETRY_DISABLE";
/// A tick that found the state locked by someone else looks again after this
/// many seconds of tick time.
pub(crate) const BUSY_RETRY: i64 = 5;

pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    store: Store,
    transport: Sender,
    builtins: Builtins,
    inner: Mutex<Inner>,
    /// A tick at a time in [`last_look`, `next_look`) has nothing to do: the
    /// whole cost of a not-due tick is these two atomic loads.
    next_look: AtomicI64,
    last_look: AtomicI64,
    sending: Mutex<bool>,
    send_done: Condvar,
    /// Bumped by every consent answer: a send prepared under an older
    /// generation is abandoned before it transmits.
    generation: AtomicU64,
    closed: AtomicBool,
    /// Set by close: interrupts the send in flight (its socket is shut down).
    abort: Abort,
    /// A "no" that could not be saved: this client sends nothing more for
    /// the rest of its life (it fails closed, whatever the disk says).
    refused_unsaved: AtomicBool,
}

struct Inner {
    values: Vec<Option<FieldValue>>,
    /// Id and draw key of the next report until the shared state holds
    /// one (it does from the first look on; see `Shared::view`).
    report: ReportIdentity,
    /// Values were set here since they were last published to the state.
    values_dirty: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is caught at the C boundary; the data it
    // guards is still consistent (every mutation is a single assignment).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// describe's "privacy" object: the identifying-bits bound of the schema, so
/// a dialog can say "this report is one of at most 2^max_bits possible".
/// Built-in fields are bounded by the configuration rules, not counted.
/// "limit" is the configuration's `max_bits` the schema was checked against.
fn privacy(schema: &Schema, limit: f64) -> Value {
    let fields: Map<String, Value> = schema.fields.iter().map(|f| (f.name.clone(), json!(f.kind.bits()))).collect();
    json!({"max_bits": schema.total_bits(), "fields": fields, "limit": limit})
}

/// describe's "relay" object when reports go through an Oblivious HTTP relay.
fn relay_text(relay: &str, language: &str) -> Value {
    let german = language.split('-').next().is_some_and(|b| b.eq_ignore_ascii_case("de"));
    let host = relay.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_string)).unwrap_or_else(|| relay.to_string());
    let text = if german {
        format!("Der Bericht geht verschlüsselt über das Relay {host}: Das Relay sieht Ihre Internetadresse, aber nicht den Inhalt; der Hersteller sieht den Inhalt, aber nicht Ihre Internetadresse.")
    } else {
        format!("The report goes encrypted through the relay {host}: the relay sees your internet address but not the content; the vendor sees the content but not your internet address.")
    };
    json!({"url": relay, "host": host, "text": text})
}

/// A value in the form `tel_set_values_json` takes (not the encoded form:
/// a count stays the exact number), so another process can check it again.
fn raw_value(sch: &schema::Schema, i: usize, v: &FieldValue) -> Value {
    match (v, &sch.fields[i].kind) {
        (FieldValue::Bool(b), _) => json!(b),
        (FieldValue::Count(n), _) => json!(n),
        (FieldValue::Choice(k), Kind::Choice { values }) => json!(values[*k]),
        (FieldValue::Choices(set), Kind::Choices { values }) => json!(set.iter().map(|k| &values[*k]).collect::<Vec<_>>()),
        _ => Value::Null,
    }
}

/// Any non-empty value but `0`, `false`, `no` blocks, including one that is
/// not UTF-8 (which `std::env::var` would report as "not set").
fn env_disabled() -> bool {
    std::env::var_os(DISABLE_ENV).is_some_and(|v| match v.to_str() {
        Some(v) => !matches!(v.trim(), "" | "0" | "false" | "no"),
        None => true,
    })
}

impl Client {
    pub fn open(config_json: &str) -> Result<Client> {
        Client::open_with(config_json, None)
    }

    /// For fleet simulations (`optin-collector demo`) and tests only, from
    /// Rust (there is no C function for it): a client that reports the given
    /// operating system instead of this machine's. Only a family and version
    /// a real library could report are taken (the collector's own patterns),
    /// so nothing else can enter a report this way.
    #[doc(hidden)]
    pub fn open_for_simulation(config_json: &str, os_family: &str, os_version: &str) -> Result<Client> {
        if !crate::validate::OS_FAMILIES.contains(&os_family) || !crate::validate::is_os_version(os_version) {
            return Err(Error::invalid(format!("os: \"{}\" \"{}\" is not an operating system the library reports", schema::truncate(os_family, 20), schema::truncate(os_version, 40))));
        }
        Client::open_with(config_json, Some((os_family, os_version)))
    }

    fn open_with(config_json: &str, os: Option<(&str, &str)>) -> Result<Client> {
        if config_json.len() > crate::config::MAX_CONFIG_BYTES {
            return Err(Error::new(Code::TooLarge, format!("the configuration is larger than {} bytes", crate::config::MAX_CONFIG_BYTES)));
        }
        let config = Config::parse(config_json)?;
        let key = if config.ohttp.is_some() { "config.ohttp.relay" } else { "config.endpoint" };
        let transport = Sender::new(&config.endpoint, config.proxy.as_deref(), config.ca_cert_pem.as_deref(), config.ohttp.clone())
            .map_err(|m| Error::config(format!("{key}: {m}")))?;
        let store = Store::open(&config.state_dir)?;
        {
            // A damaged file is set aside now, and the store lists it in
            // `warnings` (as it does whichever later path finds one).
            let guard = store.lock()?;
            store.load(&guard);
            store.load_history(&guard);
        }
        let mut builtins = Builtins::detect(&config.product, &config.product_version);
        if let Some((family, version)) = os {
            builtins.os_family = family.into();
            builtins.os_version = version.into();
        }
        let values = vec![None; config.schema.fields.len()];
        Ok(Client {
            shared: Arc::new(Shared {
                config,
                store,
                transport,
                builtins,
                inner: Mutex::new(Inner { values, report: ReportIdentity::new(), values_dirty: false }),
                next_look: AtomicI64::new(i64::MIN),
                last_look: AtomicI64::new(i64::MIN),
                sending: Mutex::new(false),
                send_done: Condvar::new(),
                generation: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                abort: Abort::default(),
                refused_unsaved: AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    // ----- consent -----

    pub fn set_consent(&self, granted: bool) -> Result<()> {
        let result = self.save_consent(granted);
        if result.is_err() && !granted {
            // The "no" is not on disk, but it is the user's answer: this
            // client never sends again, and a send not yet transmitted is
            // abandoned (the generation changes).
            let s = &*self.shared;
            s.refused_unsaved.store(true, Ordering::SeqCst);
            s.generation.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn save_consent(&self, granted: bool) -> Result<()> {
        let s = &*self.shared;
        // The lock file first (see LOCK ORDER at the top of this file).
        let guard = s.store.lock()?;
        let inner = lock(&s.inner);
        let (mut state, _) = s.store.load(&guard);
        let answer = consent::answer(state.consent.as_ref(), granted, now_unix(), &s.config.scope());
        if state.consent.as_ref() != Some(&answer) {
            // Any change of answer cancels the schedule; a "yes" draws the
            // next report's moment on the next tick (never before the
            // 7-day floor, which stays).
            state.consent = Some(answer);
            state.schedule = None;
            // (The next report's id stays: it never left, so it links nothing.)
            s.store.save(&guard, &state)?;
            s.generation.fetch_add(1, Ordering::SeqCst);
        }
        // "Look now", set under `inner` (see `look`).
        s.next_look.store(i64::MIN, Ordering::SeqCst);
        drop(guard);
        drop(inner);
        Ok(())
    }

    pub fn consent(&self) -> Result<ConsentState> {
        let state = self.shared.read_state()?;
        Ok(consent::effective(state.consent.as_ref(), &self.shared.config.scope()))
    }

    /// Why nothing will be sent whatever the consent, if a policy says so.
    pub fn blocked_by(&self) -> Option<String> {
        self.shared.blocked_by()
    }

    // ----- values -----

    pub fn set_bool(&self, field: &str, value: bool) -> Result<()> {
        let i = self.shared.config.schema.check_bool(field)?;
        self.shared.set_values(vec![(i, Some(FieldValue::Bool(value)))]);
        Ok(())
    }

    pub fn set_count(&self, field: &str, value: u64) -> Result<()> {
        let i = self.shared.config.schema.check_count(field)?;
        self.shared.set_values(vec![(i, Some(FieldValue::Count(value)))]);
        Ok(())
    }

    pub fn set_choice(&self, field: &str, value: &str) -> Result<()> {
        let (i, v) = self.shared.config.schema.check_choice(field, value)?;
        self.shared.set_values(vec![(i, Some(v))]);
        Ok(())
    }

    /// All or nothing: every value is checked before any is applied.
    pub fn set_values_json(&self, text: &str) -> Result<()> {
        if text.len() > MAX_VALUES_JSON_BYTES {
            return Err(Error::new(Code::TooLarge, format!("values_json is larger than {MAX_VALUES_JSON_BYTES} bytes")));
        }
        let v = parse_json(text, "values_json")?;
        let obj = v
            .as_object()
            .ok_or_else(|| Error::new(Code::WrongType, format!("values_json must be an object of field -> value, got {}", schema::json_type(&v))))?;
        let checked = obj
            .iter()
            .map(|(k, v)| self.shared.config.schema.check_json(k, v))
            .collect::<Result<Vec<_>>>()?;
        self.shared.set_values(checked);
        Ok(())
    }

    // ----- what the user sees -----

    /// The next report's exact bytes as whichever process on this
    /// `state_dir` sends it (see `Shared::view`). If the state cannot be read
    /// (nothing can be sent then either), this process's own view.
    pub fn preview(&self) -> String {
        let state = self.shared.read_state().unwrap_or_default();
        let inner = lock(&self.shared.inner);
        self.shared.next_body(&state, &inner)
    }

    pub fn describe(&self, language: &str) -> Result<String> {
        if !language.is_empty() && !schema::is_language_tag(language) {
            return Err(Error::invalid(format!("language: \"{}\" is not a language tag such as \"en\" or \"de-AT\"", schema::truncate(language, 40))));
        }
        let s = &*self.shared;
        let sch = &s.config.schema;
        let state = self.shared.read_state()?;
        let consent = consent::effective(state.consent.as_ref(), &s.config.scope());
        let warnings = s.store.warnings();
        let inner = lock(&s.inner);
        let (values, identity, builtins) = s.view(&state, &inner);
        let mut fields = vec![];
        for ((name, en, de), (_, value)) in BUILTIN_FIELDS.iter().zip(builtins.values()) {
            let german = language.split('-').next().is_some_and(|b| b.eq_ignore_ascii_case("de"));
            let text = if german { de } else { en };
            fields.push(json!({"name": name, "builtin": true, "kind": "text", "description": text, "value": value}));
        }
        // A pending report is retried with the bytes of its first attempt:
        // the values shown are the ones in those bytes.
        let saved = s.pending_body(&state);
        let next_report = saved.map_or_else(|| report::build(sch, &values, &builtins, &identity), str::to_owned);
        let pending_body: Option<Value> = saved.and_then(|b| serde_json::from_str::<Value>(b).ok());
        for (i, f) in sch.fields.iter().enumerate() {
            let mut d = Map::new();
            d.insert("name".into(), json!(f.name));
            d.insert("builtin".into(), json!(false));
            d.insert("kind".into(), json!(f.kind.name()));
            d.insert("description".into(), json!(schema::pick_description(&f.description, language)));
            match &f.kind {
                Kind::Count { encoding: CountEncoding::Buckets(b) } => {
                    d.insert("buckets".into(), json!(b));
                }
                Kind::Count { encoding: CountEncoding::Round125 } => {
                    d.insert("rounding".into(), json!(schema::ROUNDING_125));
                }
                Kind::Choice { values } | Kind::Choices { values } => {
                    d.insert("values".into(), json!(values));
                }
                _ => {}
            }
            d.insert("bits".into(), json!(f.kind.bits()));
            let value = match &pending_body {
                Some(b) => b.get("fields").and_then(|fs| fs.get(&f.name)).cloned().unwrap_or(Value::Null),
                None => values[i].as_ref().map_or(Value::Null, |v| report::encode(sch, i, v, &identity)),
            };
            d.insert("value".into(), value);
            // The value as set (the form tel_set_values_json takes: a count's
            // exact number), where "value" is the form it is sent in.
            d.insert("current_value".into(), values[i].as_ref().map_or(Value::Null, |v| raw_value(sch, i, v)));
            fields.push(Value::Object(d));
        }
        let receipt = state.consent.as_ref().map_or(Value::Null, |r: &Receipt| {
            json!({
                "decision": if r.granted { "granted" } else { "denied" },
                "at": r.at,
                "when": r.at, // alias of "at", the issue's word for it
                "schema_version": r.schema_version,
                "schema_digest": r.schema_digest,
                "product_version": r.product_version,
                "product": r.product,
                "endpoint": r.endpoint,
                // Digest of the relay and key configuration the answer
                // covered; null for a direct send.
                "ohttp": r.ohttp,
            })
        });
        let changes = match (&state.consent, consent) {
            (Some(r), ConsentState::Outdated) => {
                let c = schema::diff(&r.schema, &sch.canonical);
                json!({
                    "from_schema_version": r.schema_version,
                    "to_schema_version": sch.version,
                    "added": c.added, "removed": c.removed, "changed": c.changed,
                    "builtins_changed": c.builtins_changed,
                    // Who sends and where to are covered like the fields: a
                    // receipt from before they were bound has null here.
                    "product_changed": r.product.as_deref() != Some(s.config.product.as_str()),
                    "from_product": r.product, "to_product": s.config.product,
                    "endpoint_changed": r.endpoint.as_deref() != Some(s.config.endpoint.as_str()),
                    "from_endpoint": r.endpoint, "to_endpoint": s.config.endpoint,
                    // A new relay or key configuration (or going through a
                    // relay, or no longer) needs a new answer too.
                    "relay_changed": r.ohttp.as_deref() != s.config.ohttp.as_ref().map(|o| o.digest.as_str()),
                })
            }
            _ => Value::Null,
        };
        let out = json!({
            "language": if language.is_empty() { "en" } else { language },
            "product": s.config.product,
            "product_version": s.config.product_version,
            "schema_version": sch.version,
            "schema_digest": sch.digest,
            "consent": {"state": consent.as_str(), "receipt": receipt, "changes": changes},
            "blocked_by": self.blocked_by(),
            "endpoint": s.config.endpoint,
            "relay": s.config.ohttp.as_ref().map(|o| relay_text(&o.relay, language)),
            "fields": fields,
            "privacy": privacy(sch, s.config.max_bits),
            "next_report": next_report,
            // When the next report (or the retry of a pending one) is due, as
            // tel_status_json's "next_due": null unless granted and not blocked.
            "next_due": match (consent, self.blocked_by(), state.schedule.as_ref()) {
                (ConsentState::Granted, None, Some(sc)) => json!(sc.due),
                _ => Value::Null,
            },
            "warnings": warnings,
        });
        Ok(out.to_string())
    }

    pub fn status(&self) -> Result<String> {
        let s = &*self.shared;
        let state = self.shared.read_state()?;
        let consent = consent::effective(state.consent.as_ref(), &s.config.scope());
        let blocked = self.blocked_by();
        let sending_here = *lock(&s.sending);
        let schedule = state.schedule.as_ref();
        // Another process is sending when a send is marked in flight and its
        // owner still holds the send lock (a dead sender's lock is released by
        // the OS, whatever its lease says).
        let sending = sending_here
            || schedule.and_then(|sc| sc.in_flight.as_ref()).is_some_and(|f| match s.store.try_lock_send() {
                Ok(free) => free.is_none(),
                Err(_) => f.lease_until > now_unix(),
            });
        let next_due = match (consent, &blocked, schedule) {
            (ConsentState::Granted, None, Some(sc)) => json!(sc.due),
            _ => Value::Null,
        };
        // Every file set aside on this directory, by any path or process.
        let warnings = s.store.warnings();
        Ok(json!({
            "consent": consent.as_str(),
            "next_due": next_due,
            "last_sent": state.last_sent,
            "sending": sending,
            "blocked_by": blocked,
            "last_error": state.last_error,
            "attempts": schedule.map_or(0, |sc| sc.attempts),
            "schema_version": s.config.schema.version,
            "schema_digest": s.config.schema.digest,
            "warnings": warnings,
        })
        .to_string())
    }

    pub fn history(&self) -> Result<String> {
        let guard = self.shared.store.lock()?;
        let (history, _) = self.shared.store.load_history(&guard);
        drop(guard);
        let reports: Vec<Value> = history
            .iter()
            .rev()
            .map(|e| {
                let last = e.attempts.last();
                json!({
                    "report_id": e.report_id,
                    "at": last.map(|a| a.at),
                    "when": last.map(|a| a.at), // alias of "at"
                    "outcome": last.map(|a| a.outcome.as_str()),
                    "status": last.and_then(|a| a.status),
                    "http_status": last.and_then(|a| a.status), // alias of "status"
                    "body": e.body,
                    "body_sha256": e.body_sha256,
                    "body_length": e.body_length,
                    // "relay": sent through the Oblivious HTTP relay (the
                    // body is the inner request's content); else "direct".
                    "via": e.via.as_deref().unwrap_or("direct"),
                    "attempts": e.attempts.iter().map(|a| json!({"at": a.at, "when": a.at, "outcome": a.outcome, "status": a.status, "http_status": a.status, "error": a.error})).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({"reports": reports}).to_string())
    }

    pub fn clear_history(&self) -> Result<()> {
        let guard = self.shared.store.lock()?;
        self.shared.store.save_history(&guard, &[])
    }

    // ----- sending -----

    pub fn tick(&self) -> Result<()> {
        self.tick_at(now_unix())
    }

    pub fn tick_at(&self, now: i64) -> Result<()> {
        if !crate::schedule::valid_time(now) {
            return Err(Error::invalid(format!(
                "unix_seconds must be between {} and {} (1970 to 9999), got {now}",
                crate::schedule::MIN_TIME,
                crate::schedule::MAX_TIME
            )));
        }
        let s = &*self.shared;
        if now < s.next_look.load(Ordering::Relaxed) && now >= s.last_look.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.look(now)
    }

    fn look(&self, now: i64) -> Result<()> {
        let s = &*self.shared;
        if s.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Never wait, neither for another thread of this process nor for the
        // lock file (another process may be stopped in a debugger or stuck
        // on a slow disk): look again on a later tick.
        let mut inner = match s.inner.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        let Some(guard) = s.store.try_lock()? else {
            self.shared.set_next_look(now, now.saturating_add(BUSY_RETRY));
            return Ok(());
        };
        let (mut state, _) = s.store.load(&guard);
        // Values set here and the next report's identity go to the shared
        // state first, consent or not: a GUI's consent dialog on the same
        // directory shows what the service would send.
        if s.publish(&mut state, &mut inner) && s.store.save(&guard, &state).is_err() {
            // A state_dir that cannot be written (read-only, full) must not
            // turn every tick into an error: publish again on a later look.
            // (Nothing can be sent from here then either.)
            inner.values_dirty = true;
        }
        let consent = consent::effective(state.consent.as_ref(), &s.config.scope());
        if consent != ConsentState::Granted || self.blocked_by().is_some() || *lock(&s.sending) || s.waits_for_key_config(&state) {
            self.shared.set_next_look(now, i64::MAX);
            drop((guard, inner));
            return Ok(());
        }
        let mut rng = OsRng;
        let Some(schedule) = state.schedule.as_mut() else {
            // The floor also survives a state file that was lost or set
            // aside: the history remembers when reports left.
            let (history, _) = s.store.load_history(&guard);
            let from_history = history.iter().filter_map(|e| e.attempts.first().map(|a| a.at)).max();
            state.last_left = state.last_left.max(from_history);
            let drawn = Schedule::draw(now, state.last_left, &mut rng);
            let due = drawn.due;
            state.schedule = Some(drawn);
            s.store.save(&guard, &state)?;
            self.shared.set_next_look(now, due);
            drop((guard, inner));
            return Ok(());
        };
        // Whoever owns a send holds the send lock until its outcome is
        // recorded; the OS releases it if that process dies. While it is held
        // the sender is alive, whatever the clocks say: a lease that looks
        // expired (a slow send, a clock stepped forward or back, another
        // client of this process) is not taken over, which would transmit the
        // report twice at once. (With nothing in flight a held lock only makes
        // the next send go without it: it can make others wait, never send.)
        let send_lock = s.store.try_lock_send()?;
        if send_lock.is_none() && schedule.in_flight.is_some() {
            self.shared.set_next_look(now, now.saturating_add(60));
            drop((guard, inner));
            return Ok(());
        }
        let before = schedule.clone();
        let (decision, interrupted) = schedule.tick(now, state.last_left, &mut rng);
        let mut start = None;
        if decision == TickDecision::Send {
            let token = random_hex(8);
            // A new report leaves now: the floor for the next one is saved
            // with the in-flight marker and the report's id, before any byte
            // is sent, so neither a crash nor any outcome can lose it.
            let identity = state.next_report.clone().unwrap_or_else(|| inner.report.clone());
            if let Some(left) = schedule.start(token.clone(), now, &identity) {
                state.last_left = Some(left);
                // The id now belongs to the report that left (and its
                // retries); the next report gets one that never left.
                inner.report = ReportIdentity::new();
                state.next_report = Some(inner.report.clone());
            }
            start = Some(token);
        }
        let schedule = state.schedule.as_ref().expect("matched above");
        let next = schedule.in_flight.as_ref().map_or(schedule.due, |f| f.lease_until);
        if let Some(i) = &interrupted {
            state.last_error = Some(format!("the send started at {} did not finish (the process ended or hung); counted as a failed attempt", i.since));
            s.mark_interrupted(&guard, i);
        }
        if Some(schedule) != Some(&before) || interrupted.is_some() || start.is_some() {
            s.store.save(&guard, &state)?;
        }
        // The next look is set while `inner` is held: a consent answer given
        // meanwhile on another thread (which resets it to "look now" under
        // `inner`) is then never overwritten by this older decision.
        match start {
            None => self.shared.set_next_look(now, next),
            Some(_) => {
                *lock(&s.sending) = true;
                self.shared.set_next_look(now, i64::MAX);
            }
        }
        drop((guard, inner));
        if let Some(token) = start {
            let shared = Arc::clone(&self.shared);
            let generation = s.generation.load(Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name("optin-telemetry-send".into())
                .spawn(move || shared.send_in_background(token, now, generation, send_lock));
            if let Err(e) = spawned {
                *lock(&s.sending) = false;
                self.shared.set_next_look(now, i64::MIN);
                return Err(Error::internal(format!("cannot start the send thread: {e}")));
            }
        }
        Ok(())
    }

    /// Waits until no send of this client is in flight.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let s = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut sending = lock(&s.sending);
        while *sending {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(Code::Timeout, format!("a send was still in flight after {} ms", timeout.as_millis())));
            }
            sending = s.send_done.wait_timeout(sending, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        Ok(())
    }
}

impl Shared {
    /// The state as saved. A damaged file is set aside here as on every
    /// path that reads it, and `Store::warnings` lists it from then on.
    fn read_state(&self) -> Result<State> {
        let guard = self.store.lock()?;
        let (state, _) = self.store.load(&guard);
        Ok(state)
    }

    /// The gateway did not know the key of the configuration in use: the
    /// report waits (no attempt) until the product ships another one.
    fn waits_for_key_config(&self, state: &State) -> bool {
        state.key_config_outdated.is_some() && state.key_config_outdated.as_deref() == self.config.ohttp.as_ref().map(|o| o.digest.as_str())
    }

    fn blocked_by(&self) -> Option<String> {
        if self.refused_unsaved.load(Ordering::SeqCst) {
            Some("consent: a \"no\" could not be saved; this client sends nothing more".into())
        } else if self.config.disabled {
            Some("policy: \"disabled\": true in the configuration".into())
        } else if env_disabled() {
            Some(format!("policy: {DISABLE_ENV} is set in the environment"))
        } else {
            crate::policy::blocked(&self.config.product)
        }
    }

    fn set_values(&self, changes: Vec<(usize, Option<FieldValue>)>) {
        let mut inner = lock(&self.inner);
        for (i, value) in changes {
            inner.values[i] = value;
        }
        inner.values_dirty = true;
        // The next tick publishes them (set under `inner`, see `look`).
        self.next_look.store(i64::MIN, Ordering::SeqCst);
    }

    /// What any process on this `state_dir` shows and sends: the values last
    /// published by a process that set values (last publisher wins), if they
    /// are for this schema and valid, else this process's own; and the next
    /// report's identity (a pending report's while it is retried). The
    /// built-in fields travel with the values: the publisher's (when they are
    /// ones a library could have produced for this product on this machine),
    /// so a GUI of another version or architecture shows the service's bytes.
    fn view(&self, state: &State, inner: &Inner) -> (Vec<Option<FieldValue>>, ReportIdentity, Builtins) {
        let sch = &self.config.schema;
        let shared = state.values.as_ref().filter(|v| v.schema_digest == sch.digest).and_then(|v| {
            let mut values = vec![None; sch.fields.len()];
            for (name, raw) in &v.fields {
                let (i, value) = sch.check_json(name, raw).ok()?;
                values[i] = value;
            }
            Some(values)
        });
        let identity = self.identity(state, inner);
        // Values set here and not yet published win: they are published at
        // this process's next tick, before anything is sent.
        let shared = if inner.values_dirty { None } else { shared };
        match shared {
            Some(values) => {
                let builtins = state.values.as_ref().and_then(|v| v.builtins.as_ref()).and_then(|b| self.shared_builtins(b)).unwrap_or_else(|| self.builtins.clone());
                (values, identity, builtins)
            }
            None => (inner.values.clone(), identity, self.builtins.clone()),
        }
    }

    /// The next report's id and draw key: the pending report's, else the one
    /// saved for the next report, else this process's own.
    fn identity(&self, state: &State, inner: &Inner) -> ReportIdentity {
        match (state.schedule.as_ref().and_then(|sc| sc.pending.as_ref()), &state.next_report) {
            (Some(p), _) => p.report.clone(),
            (None, Some(n)) => n.clone(),
            (None, None) => inner.report.clone(),
        }
    }

    /// Built-ins published by another process, if they are what a library
    /// could have produced for this product on this machine: no free text
    /// reaches a report through the state file.
    fn shared_builtins(&self, b: &Map<String, Value>) -> Option<Builtins> {
        let get = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
        let own = &self.builtins;
        let theirs = Builtins {
            os_family: get("os_family").filter(|v| *v == own.os_family)?,
            os_version: get("os_version").filter(|v| *v == own.os_version)?,
            // Each by the collector's own rule (crate::validate), so that a
            // GUI of another version or architecture shows the service's
            // bytes, and nothing else gets in.
            arch: get("arch").filter(|v| crate::validate::ARCHES.contains(&v.as_str()))?,
            product: get("product").filter(|v| *v == own.product)?,
            product_version: get("product_version").filter(|v| crate::config::is_valid_product_version(v))?,
            library_version: get("library_version").filter(|v| crate::validate::is_library_version(v))?,
        };
        (b.len() == theirs.values().len()).then_some(theirs)
    }

    /// The bytes a pending report's first attempt sent, if it has been
    /// attempted and they are a report this process could have built: valid
    /// for its schema (the collector's own check), under the pending id, in
    /// the library's exact form, with built-ins `shared_builtins` accepts.
    /// Anything else in the state file (edited, planted) is never sent; the
    /// retry is built afresh instead.
    fn pending_body<'a>(&self, state: &'a State) -> Option<&'a str> {
        let p = state.schedule.as_ref()?.pending.as_ref()?;
        let body = p.body.as_deref()?;
        crate::validate::validate(&self.config.schema, body.as_bytes()).ok()?;
        let v: Value = serde_json::from_str(body).ok()?;
        let o = v.as_object()?;
        if o.get("report_id").and_then(Value::as_str) != Some(p.report.id.as_str()) || serde_json::to_string(&v).ok()? != body {
            return None;
        }
        let builtins: Map<String, Value> = BUILTIN_FIELDS.iter().filter_map(|(k, _, _)| Some((k.to_string(), o.get(*k)?.clone()))).collect();
        self.shared_builtins(&builtins)?;
        Some(body)
    }

    /// The next report's exact bytes: a pending report's first bytes (its
    /// retries resend them), else the report built from `view`.
    fn next_body(&self, state: &State, inner: &Inner) -> String {
        match self.pending_body(state) {
            Some(b) => b.to_string(),
            None => {
                let (values, identity, builtins) = self.view(state, inner);
                report::build(&self.config.schema, &values, &builtins, &identity)
            }
        }
    }

    /// Writes this process's values (if it set any since the last time) and
    /// the next report's identity (if none is saved) into `state`. Returns
    /// whether anything changed.
    fn publish(&self, state: &mut State, inner: &mut Inner) -> bool {
        let mut changed = false;
        if inner.values_dirty {
            let sch = &self.config.schema;
            let fields: Map<String, Value> = inner.values.iter().enumerate().filter_map(|(i, v)| Some((sch.fields[i].name.clone(), raw_value(sch, i, v.as_ref()?)))).collect();
            let builtins = self.builtins.values().iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let values = Some(SharedValues { schema_digest: sch.digest.clone(), fields, builtins: Some(builtins) });
            changed |= state.values != values;
            state.values = values;
            inner.values_dirty = false;
        }
        if state.next_report.is_none() {
            state.next_report = Some(inner.report.clone());
            changed = true;
        }
        changed
    }

    fn set_next_look(&self, now: i64, next: i64) {
        self.last_look.store(now, Ordering::SeqCst);
        self.next_look.store(next.min(now.saturating_add(RECHECK)), Ordering::SeqCst);
    }

    fn mark_interrupted(&self, guard: &Guard, i: &Interrupted) {
        // Best effort: the schedule already counted the failed attempt.
        let _ = self.set_attempt_outcome(guard, &i.token, "interrupted", None, Some("the sending process ended before the outcome was known".into()));
    }

    /// Records the outcome of the history attempt with `token`, if it is there.
    fn set_attempt_outcome(&self, guard: &Guard, token: &str, outcome: &str, status: Option<u16>, error: Option<String>) -> Result<()> {
        let (mut history, _) = self.store.load_history(guard);
        match history.iter_mut().flat_map(|e| e.attempts.iter_mut()).find(|a| a.token == token) {
            Some(a) => {
                a.outcome = outcome.into();
                a.status = status;
                a.error = error;
                self.store.save_history(guard, &history)
            }
            None => Ok(()),
        }
    }

    /// Runs on its own thread. Never panics out (the sending flag is reset by
    /// a drop guard whatever happens).
    /// `send_lock` is held until the outcome is recorded (see `look`).
    fn send_in_background(self: Arc<Self>, token: String, since: i64, generation: u64, send_lock: Option<Guard>) {
        struct Done<'a>(&'a Shared);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                *lock(&self.0.sending) = false;
                self.0.next_look.store(i64::MIN, Ordering::SeqCst);
                self.0.send_done.notify_all();
            }
        }
        let _done = Done(&self);
        let _send_lock = send_lock; // released before the sending flag
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.send_once(&token, since, generation)));
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.message,
            Err(_) => "internal error while sending".to_string(),
        };
        if let Ok(guard) = self.store.lock() {
            let (mut state, _) = self.store.load(&guard);
            state.last_error = Some(error);
            if let Some(sc) = state.schedule.as_mut().filter(|sc| sc.in_flight.as_ref().is_some_and(|f| f.token == token)) {
                sc.in_flight = None;
            }
            let _ = self.store.save(&guard, &state);
        }
    }

    /// Whether the send `token` may still transmit: it still owns the
    /// in-flight marker, this client was not closed and has seen no consent
    /// answer since, the consent on disk is a yes for this schema and no
    /// policy blocks.
    fn may_send(&self, state: &State, token: &str, generation: u64) -> (bool, bool) {
        let ours = state.schedule.as_ref().and_then(|sc| sc.in_flight.as_ref()).is_some_and(|f| f.token == token);
        let allowed = generation == self.generation.load(Ordering::SeqCst)
            && !self.closed.load(Ordering::SeqCst)
            && consent::effective(state.consent.as_ref(), &self.config.scope()) == ConsentState::Granted
            && self.blocked_by().is_none()
            && !self.waits_for_key_config(state);
        (ours, allowed)
    }

    /// The gate the transport asks once the connection (and the TLS
    /// handshake) is up, before the first byte: the state file is read again,
    /// so a "no" written by another process meanwhile stops the report.
    fn still_may_send(&self, token: &str, generation: u64) -> bool {
        let Ok(guard) = self.store.lock() else { return false };
        let (state, _) = self.store.load(&guard);
        matches!(self.may_send(&state, token, generation), (true, true))
    }

    fn send_once(self: &Arc<Self>, token: &str, since: i64, generation: u64) -> Result<()> {
        // 1. Before connecting: consent, policy and ownership of the send are
        //    checked again, under the lock (and once more by the gate).
        let body = {
            let guard = self.store.lock()?;
            let mut inner = lock(&self.inner);
            let (mut state, _) = self.store.load(&guard);
            let (ours, allowed) = self.may_send(&state, token, generation);
            if !allowed || !ours {
                if ours {
                    state.schedule.as_mut().expect("ours implies a schedule").in_flight = None;
                    self.store.save(&guard, &state)?;
                }
                return Ok(()); // abandoned before anything was transmitted
            }
            // The body is what every process on this directory shows: the
            // shared values, and the pending report's id as saved with the
            // in-flight marker.
            let mut changed = self.publish(&mut state, &mut inner);
            let identity = self.identity(&state, &inner);
            let body = match self.pending_body(&state) {
                Some(saved) => saved.to_owned(),
                None => {
                    let (values, _, builtins) = self.view(&state, &inner);
                    let body = report::build(&self.config.schema, &values, &builtins, &identity);
                    // The first attempt's bytes are saved with the pending
                    // report before any of them is sent: every retry, in any
                    // process, sends exactly them again.
                    if let Some(p) = state.schedule.as_mut().and_then(|sc| sc.pending.as_mut()).filter(|p| p.body.as_deref() != Some(body.as_str())) {
                        p.body = Some(body.clone());
                        changed = true;
                    }
                    body
                }
            };
            if changed {
                self.store.save(&guard, &state)?;
            }
            let (mut history, _) = self.store.load_history(&guard);
            let attempt = Attempt { at: since, outcome: "in_flight".into(), status: None, error: None, token: token.into() };
            let via = self.transport.via_relay().then(|| crate::store::VIA_RELAY.to_string());
            match history.last_mut() {
                Some(e) if e.report_id == identity.id && e.has_body(&body) && e.via == via => e.attempts.push(attempt),
                _ => {
                    let mut entry = HistoryEntry::new(identity.id.clone(), &body, vec![attempt]);
                    entry.via = via;
                    history.push(entry);
                }
            }
            self.store.save_history(&guard, &history)?;
            body
        };
        // 2. The network, with no lock held.
        let gate = {
            let me = Arc::clone(self);
            let token = token.to_string();
            move || me.still_may_send(&token, generation)
        };
        let delivery = self.transport.send(&body, gate, &self.abort);
        if delivery == Delivery::Stopped {
            return self.abandon_unsent(token);
        }
        // 3. Record what happened.
        let guard = self.store.lock()?;
        let (mut state, _) = self.store.load(&guard);
        let (outcome_name, status, error, outcome) = match &delivery {
            Delivery::Delivered { status } => ("delivered", Some(*status), None, Outcome::Delivered),
            Delivery::Refused { status, error } => ("refused", Some(*status), Some(error.clone()), Outcome::Refused),
            Delivery::Failed { status, retry_after, error } => ("failed", *status, Some(error.clone()), Outcome::Failed { retry_after: *retry_after }),
            // Closed mid-request: the collector may have the report or not.
            // It stays pending with its id and bytes and is retried like a
            // failed attempt (the collector keeps one row per report id).
            Delivery::Interrupted { error } => ("interrupted", None, Some(format!("{CLOSED_DURING_SEND} ({error})")), Outcome::Failed { retry_after: None }),
            // Counted as a failed attempt; the report stays pending, and
            // nothing is sent while this key configuration is in use (`look`).
            Delivery::KeyOutdated { status, error } => (crate::oblivious::KEY_CONFIG_OUTDATED, *status, Some(error.clone()), Outcome::Failed { retry_after: None }),
            Delivery::Stopped => unreachable!("handled above"),
        };
        state.key_config_outdated = match &delivery {
            Delivery::KeyOutdated { .. } => self.config.ohttp.as_ref().map(|o| o.digest.clone()),
            Delivery::Delivered { .. } => None,
            _ => state.key_config_outdated.take(),
        };
        if outcome == Outcome::Delivered {
            state.last_sent = Some(since);
        }
        state.last_error = error.clone();
        if let Some(sc) = state.schedule.as_mut().filter(|sc| sc.in_flight.as_ref().is_some_and(|f| f.token == token)) {
            sc.in_flight = None;
            sc.record(since, outcome, &mut OsRng);
        }
        // The state first: it decides whether this report is finished, so a
        // history that cannot be written (a full disk) must not leave a
        // delivered report pending (and sent again).
        self.store.save(&guard, &state)?;
        self.set_attempt_outcome(&guard, token, outcome_name, status, error)
    }

}

impl Shared {
    /// The gate stopped a send before its first byte: the in-flight marker
    /// goes (the schedule was already cancelled if the consent changed) and
    /// the attempt leaves the history, since nothing left the machine. The
    /// floor (`last_left`) stays: erring towards fewer reports.
    fn abandon_unsent(&self, token: &str) -> Result<()> {
        let guard = self.store.lock()?;
        let (mut state, _) = self.store.load(&guard);
        if let Some(sc) = state.schedule.as_mut().filter(|sc| sc.in_flight.as_ref().is_some_and(|f| f.token == token)) {
            sc.in_flight = None;
            self.store.save(&guard, &state)?;
        }
        let (mut history, _) = self.store.load_history(&guard);
        let before = history.iter().map(|e| e.attempts.len()).sum::<usize>();
        for e in history.iter_mut() {
            e.attempts.retain(|a| a.token != token);
        }
        history.retain(|e| !e.attempts.is_empty());
        if history.iter().map(|e| e.attempts.len()).sum::<usize>() != before {
            self.store.save_history(&guard, &history)?;
        }
        Ok(())
    }
}

impl Drop for Client {
    /// Closing: nothing new starts, a prepared send that has not transmitted
    /// is abandoned, and one in flight is interrupted (its socket is shut
    /// down) and gets `CLOSE_WAIT` to record its outcome. The report stays
    /// pending with its id and bytes: the next look after its retry time,
    /// in this process or another, sends it again. Where the transport
    /// cannot interrupt, the send gets `CLOSE_WAIT_UNINTERRUPTIBLE` (both
    /// transports interrupt today; on Windows see `transport_winhttp::Wait`).
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let wait = if self.shared.abort.abort() { CLOSE_WAIT } else { CLOSE_WAIT_UNINTERRUPTIBLE };
        let _ = self.flush(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> String {
        json!({"product": "P", "product_version": "1.0", "endpoint": "http://127.0.0.1:9/r",
               "state_dir": dir.join("s"),
               "schema": {"version": 1, "fields": [{"name": "t", "type": "bool", "description": {"en": "x"}}]}})
        .to_string()
    }

    /// A simulated installation reports the operating system it is given,
    /// but only one a real library could report: no free text gets in.
    #[test]
    fn a_simulated_os_is_reported_only_in_a_form_a_library_could_send() {
        let dir = std::env::temp_dir().join(format!("optin-sim-os-{}", random_hex(8)));
        let c = Client::open_for_simulation(&config(&dir), "windows", "10.0.20348").unwrap();
        let preview: Value = serde_json::from_str(&c.preview()).unwrap();
        assert_eq!((preview["os_family"].as_str(), preview["os_version"].as_str()), (Some("windows"), Some("10.0.20348")));
        drop(c);
        for (family, version) in [("windows", "10.0 jsmith"), ("windows", "ws-042"), ("jsmith", "10.0.1"), ("linux", "6.1.0.1")] {
            let e = Client::open_for_simulation(&config(&dir), family, version).err().expect("refused");
            assert_eq!(e.code, Code::InvalidArgument, "{family} {version}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
