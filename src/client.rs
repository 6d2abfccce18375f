//! The client a host opens: safe Rust, used by the C ABI in `ffi.rs` and
//! directly by Rust hosts.
//!
//! Locking order, always: `inner` mutex, then the lock file. Neither is held
//! while bytes travel over the network. The send lock (`Store::try_lock_send`)
//! is only ever tried, never waited for, so it adds no ordering.

use crate::config::Config;
use crate::consent::{self, ConsentState, Receipt};
use crate::error::{parse_json, Code, Error, Result};
use crate::report::{self, Builtins, ReportIdentity};
use crate::schedule::{Interrupted, Outcome, Schedule, TickDecision};
use crate::schema::{self, CountEncoding, FieldValue, Kind, Schema, BUILTIN_FIELDS};
use crate::store::{Attempt, Guard, HistoryEntry, State, Store};
use crate::transport::{Delivery, Transport};
use crate::{now_unix, random_hex, OsRng};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const MAX_VALUES_JSON_BYTES: usize = 1 << 20;
/// How often a tick re-reads the state although nothing is due, so that a
/// consent given in another process (a GUI beside a service) is noticed.
pub const RECHECK: i64 = 600;
/// How long `close` waits for a send in flight before abandoning it.
pub const CLOSE_WAIT: Duration = Duration::from_secs(3);
pub const DISABLE_ENV: &str = "OPTIN_TELEMETRY_DISABLE";

pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    store: Store,
    transport: Transport,
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
}

struct Inner {
    values: Vec<Option<FieldValue>>,
    /// Id and draw key of the next report; fresh after each report is
    /// finished, never stored.
    report: ReportIdentity,
    /// (anchor, slot) of the report `report` was transmitted for, if it
    /// was: the id is kept only for that report's retries.
    report_for: Option<(i64, i64)>,
    warnings: Vec<String>,
}

impl Inner {
    /// A report id that went out is used again only by a retry of the same
    /// report (same schedule, same slot, still open). Once that slot is
    /// closed, skipped or cancelled, by this client or another one sharing
    /// `state_dir`, the next report gets a fresh id.
    fn forget_report_unless_pending(&mut self, schedule: Option<&Schedule>) {
        if let Some((anchor, k)) = self.report_for {
            let pending = schedule.is_some_and(|sc| sc.anchor == anchor && sc.done_slot.is_none_or(|d| d < k) && sc.slot_of(sc.due) == k);
            if !pending {
                self.report = ReportIdentity::new();
                self.report_for = None;
            }
        }
    }
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

fn env_disabled() -> bool {
    std::env::var(DISABLE_ENV).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
}

impl Client {
    pub fn open(config_json: &str) -> Result<Client> {
        if config_json.len() > crate::config::MAX_CONFIG_BYTES {
            return Err(Error::new(Code::TooLarge, format!("the configuration is larger than {} bytes", crate::config::MAX_CONFIG_BYTES)));
        }
        let config = Config::parse(config_json)?;
        let transport = Transport::new(&config.endpoint, config.proxy.as_deref(), config.ca_cert_pem.as_deref())
            .map_err(|m| Error::config(format!("config.endpoint: {m}")))?;
        let store = Store::open(&config.state_dir)?;
        let mut warnings = vec![];
        {
            let guard = store.lock()?;
            let (_, w) = store.load(&guard);
            warnings.extend(w);
            let (_, w) = store.load_history(&guard);
            warnings.extend(w);
        }
        let builtins = Builtins::detect(&config.product, &config.product_version);
        let values = vec![None; config.schema.fields.len()];
        Ok(Client {
            shared: Arc::new(Shared {
                config,
                store,
                transport,
                builtins,
                inner: Mutex::new(Inner { values, report: ReportIdentity::new(), report_for: None, warnings }),
                next_look: AtomicI64::new(i64::MIN),
                last_look: AtomicI64::new(i64::MIN),
                sending: Mutex::new(false),
                send_done: Condvar::new(),
                generation: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    // ----- consent -----

    pub fn set_consent(&self, granted: bool) -> Result<()> {
        let s = &*self.shared;
        let mut inner = lock(&s.inner);
        let guard = s.store.lock()?;
        let (mut state, warning) = s.store.load(&guard);
        let answer = consent::answer(state.consent.as_ref(), granted, now_unix(), &s.config.scope());
        if state.consent.as_ref() != Some(&answer) {
            // Any change of answer cancels the schedule; a "yes" draws a new
            // phase on the next tick.
            state.consent = Some(answer);
            state.schedule = None;
            s.store.save(&guard, &state)?;
            s.generation.fetch_add(1, Ordering::SeqCst);
            inner.forget_report_unless_pending(None);
        }
        // "Look now", set under `inner` (see `look`).
        s.next_look.store(i64::MIN, Ordering::SeqCst);
        drop(guard);
        drop(inner);
        self.shared.note(warning);
        Ok(())
    }

    pub fn consent(&self) -> Result<ConsentState> {
        let (state, _) = self.shared.read_state()?;
        Ok(consent::effective(state.consent.as_ref(), &self.shared.config.scope()))
    }

    /// Why nothing will be sent whatever the consent, if a policy says so.
    pub fn blocked_by(&self) -> Option<String> {
        self.shared.blocked_by()
    }

    // ----- values -----

    pub fn set_bool(&self, field: &str, value: bool) -> Result<()> {
        let i = self.shared.config.schema.check_bool(field)?;
        lock(&self.shared.inner).values[i] = Some(FieldValue::Bool(value));
        Ok(())
    }

    pub fn set_count(&self, field: &str, value: u64) -> Result<()> {
        let i = self.shared.config.schema.check_count(field)?;
        lock(&self.shared.inner).values[i] = Some(FieldValue::Count(value));
        Ok(())
    }

    pub fn set_choice(&self, field: &str, value: &str) -> Result<()> {
        let (i, v) = self.shared.config.schema.check_choice(field, value)?;
        lock(&self.shared.inner).values[i] = Some(v);
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
        let mut inner = lock(&self.shared.inner);
        for (i, value) in checked {
            inner.values[i] = value;
        }
        Ok(())
    }

    // ----- what the user sees -----

    pub fn preview(&self) -> String {
        let inner = lock(&self.shared.inner);
        self.shared.build_report(&inner)
    }

    pub fn describe(&self, language: &str) -> Result<String> {
        if !language.is_empty() && !schema::is_language_tag(language) {
            return Err(Error::invalid(format!("language: \"{}\" is not a language tag such as \"en\" or \"de-AT\"", schema::truncate(language, 40))));
        }
        let s = &*self.shared;
        let sch = &s.config.schema;
        let (state, _) = self.shared.read_state()?;
        let consent = consent::effective(state.consent.as_ref(), &s.config.scope());
        let mut fields = vec![];
        for ((name, en, de), (_, value)) in BUILTIN_FIELDS.iter().zip(s.builtins.values()) {
            let german = language.split('-').next().is_some_and(|b| b.eq_ignore_ascii_case("de"));
            let text = if german { de } else { en };
            fields.push(json!({"name": name, "builtin": true, "kind": "text", "description": text, "value": value}));
        }
        let inner = lock(&s.inner);
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
            d.insert("value".into(), inner.values[i].as_ref().map_or(Value::Null, |v| report::encode(sch, i, v, &inner.report)));
            fields.push(Value::Object(d));
        }
        let receipt = state.consent.as_ref().map_or(Value::Null, |r: &Receipt| {
            json!({
                "decision": if r.granted { "granted" } else { "denied" },
                "at": r.at,
                "when": r.at, // alias of "at", the word for it
                "schema_version": r.schema_version,
                "schema_digest": r.schema_digest,
                "product_version": r.product_version,
                "product": r.product,
                "endpoint": r.endpoint,
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
            "fields": fields,
            "privacy": privacy(sch, s.config.max_bits),
            "next_report": self.shared.build_report(&inner),
            "warnings": inner.warnings,
        });
        Ok(out.to_string())
    }

    pub fn status(&self) -> Result<String> {
        let s = &*self.shared;
        let (state, _) = self.shared.read_state()?;
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
        let warnings = lock(&s.inner).warnings.clone();
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
        let (history, warning) = self.shared.store.load_history(&guard);
        drop(guard);
        self.shared.note(warning);
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
        let mut inner = lock(&s.inner);
        let guard = s.store.lock()?;
        let (mut state, warning) = s.store.load(&guard);
        inner.forget_report_unless_pending(state.schedule.as_ref());
        let consent = consent::effective(state.consent.as_ref(), &s.config.scope());
        if consent != ConsentState::Granted || self.blocked_by().is_some() || *lock(&s.sending) {
            self.shared.set_next_look(now, i64::MAX);
            drop((guard, inner));
            self.shared.note(warning);
            return Ok(());
        }
        let mut rng = OsRng;
        let Some(schedule) = state.schedule.as_mut() else {
            let drawn = Schedule::draw(now, state.last_sent, &mut rng);
            let due = drawn.due;
            state.schedule = Some(drawn);
            s.store.save(&guard, &state)?;
            self.shared.set_next_look(now, due);
            drop((guard, inner));
            self.shared.note(warning);
            return Ok(());
        };
        // Whoever owns a send holds the send lock until its outcome is
        // recorded; the OS releases it if that process dies. While it is held
        // the sender is alive, whatever the clocks say: a lease that looks
        // expired (a slow send, a clock stepped forward or back, another
        // client of this process) is not taken over, which would send a second
        // report in the slot. (With nothing in flight a held lock only makes
        // the next send go without it: it can make others wait, never send.)
        let send_lock = s.store.try_lock_send()?;
        if send_lock.is_none() && schedule.in_flight.is_some() {
            self.shared.set_next_look(now, now.saturating_add(60));
            drop((guard, inner));
            self.shared.note(warning);
            return Ok(());
        }
        let before = schedule.clone();
        let (decision, interrupted) = schedule.tick(now, &mut rng);
        inner.forget_report_unless_pending(Some(schedule));
        let mut start = None;
        if let TickDecision::Send { slot } = decision {
            let token = random_hex(8);
            schedule.start(token.clone(), now, slot);
            start = Some((token, slot));
        }
        let next = schedule.in_flight.as_ref().map_or(schedule.due, |f| f.lease_until);
        if let Some(i) = &interrupted {
            state.last_error = Some(format!("the send started at {} did not finish (the process ended or hung); counted as a failed attempt", i.since));
            s.mark_interrupted(&guard, i);
        }
        if state.schedule.as_ref() != Some(&before) || interrupted.is_some() {
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
        self.shared.note(warning);
        if let Some((token, slot)) = start {
            let shared = Arc::clone(&self.shared);
            let generation = s.generation.load(Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name("optin-telemetry-send".into())
                .spawn(move || shared.send_in_background(token, now, slot, generation, send_lock));
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
    fn read_state(&self) -> Result<(State, Option<String>)> {
        let guard = self.store.lock()?;
        let (state, warning) = self.store.load(&guard);
        drop(guard);
        self.note(warning.clone());
        Ok((state, warning))
    }

    fn note(&self, warning: Option<String>) {
        if let Some(w) = warning {
            lock(&self.inner).warnings.push(w);
        }
    }

    fn blocked_by(&self) -> Option<String> {
        if self.config.disabled {
            Some("policy: \"disabled\": true in the configuration".into())
        } else if env_disabled() {
            Some(format!("policy: {DISABLE_ENV} is set in the environment"))
        } else {
            crate::policy::blocked(&self.config.product)
        }
    }

    fn build_report(&self, inner: &Inner) -> String {
        report::build(&self.config.schema, &inner.values, &self.builtins, &inner.report)
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
    fn send_in_background(self: Arc<Self>, token: String, since: i64, slot: i64, generation: u64, send_lock: Option<Guard>) {
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
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.send_once(&token, since, slot, generation)));
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

    fn send_once(&self, token: &str, since: i64, slot: i64, generation: u64) -> Result<()> {
        // 1. Right before the bytes go out: consent, policy and ownership of
        //    the send are checked again, under the lock.
        let body = {
            let mut inner = lock(&self.inner);
            let guard = self.store.lock()?;
            let (mut state, _) = self.store.load(&guard);
            let ours = state.schedule.as_ref().and_then(|sc| sc.in_flight.as_ref()).is_some_and(|f| f.token == token);
            let allowed = generation == self.generation.load(Ordering::SeqCst)
                && !self.closed.load(Ordering::SeqCst)
                && consent::effective(state.consent.as_ref(), &self.config.scope()) == ConsentState::Granted
                && self.blocked_by().is_none();
            if !allowed || !ours {
                if ours {
                    state.schedule.as_mut().expect("ours implies a schedule").in_flight = None;
                    self.store.save(&guard, &state)?;
                }
                return Ok(()); // abandoned before anything was transmitted
            }
            let body = self.build_report(&inner);
            inner.report_for = state.schedule.as_ref().map(|sc| (sc.anchor, slot));
            let (mut history, _) = self.store.load_history(&guard);
            let attempt = Attempt { at: since, outcome: "in_flight".into(), status: None, error: None, token: token.into() };
            match history.last_mut() {
                Some(e) if e.report_id == inner.report.id && e.body == body => e.attempts.push(attempt),
                _ => history.push(HistoryEntry { report_id: inner.report.id.clone(), body: body.clone(), attempts: vec![attempt] }),
            }
            self.store.save_history(&guard, &history)?;
            body
        };
        // 2. The network, with no lock held.
        let delivery = self.transport.send(&body);
        // 3. Record what happened.
        let mut inner = lock(&self.inner);
        let guard = self.store.lock()?;
        let (mut state, _) = self.store.load(&guard);
        let (outcome_name, status, error, outcome) = match &delivery {
            Delivery::Delivered { status } => ("delivered", Some(*status), None, Outcome::Delivered),
            Delivery::Refused { status, error } => ("refused", Some(*status), Some(error.clone()), Outcome::Refused),
            Delivery::Failed { status, retry_after, error } => ("failed", *status, Some(error.clone()), Outcome::Failed { retry_after: *retry_after }),
        };
        if outcome == Outcome::Delivered {
            state.last_sent = Some(since);
        }
        state.last_error = error.clone();
        let mut report_finished = !matches!(outcome, Outcome::Failed { .. });
        if let Some(sc) = state.schedule.as_mut().filter(|sc| sc.in_flight.as_ref().is_some_and(|f| f.token == token)) {
            sc.in_flight = None;
            sc.record(since, slot, outcome, &mut OsRng);
            report_finished = sc.attempts == 0;
        }
        // The state first: it decides whether anything is sent again in this
        // slot, so a history that cannot be written (a full disk) must not
        // keep a delivered report's slot open.
        self.store.save(&guard, &state)?;
        if report_finished {
            inner.report = ReportIdentity::new();
            inner.report_for = None;
        }
        self.set_attempt_outcome(&guard, token, outcome_name, status, error)
    }

}

impl Drop for Client {
    /// Closing: nothing new starts, a prepared send that has not transmitted
    /// is abandoned, one in flight gets `CLOSE_WAIT` to finish.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let _ = self.flush(CLOSE_WAIT);
    }
}
