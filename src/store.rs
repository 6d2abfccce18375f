//! Everything this library keeps on disk, in one directory:
//! - `state.json`: consent receipt and schedule (small, format-versioned);
//! - `history.json`: the last reports that left the machine, with their bodies;
//! - `lock`: held while reading-modifying-writing either file. It is never
//!   renamed or deleted, so every process locks the same file (deleting a held
//!   lock file lets a newcomer lock a fresh one: two holders).
//! - `send.lock`: held by the thread that owns the send in flight, from the
//!   moment it is marked until its outcome is recorded. The operating system
//!   releases it when that process dies, so a lease that looks expired (a
//!   clock that jumped, a slow send) is taken over only when the sender is
//!   really gone. Never renamed or deleted either.
//!
//! Files are replaced atomically (temp file in the same directory, fsync,
//! rename, directory fsync). A state file that cannot be read or parsed is
//! never taken for consent: it is moved aside for diagnosis and the client
//! starts undecided; a history file likewise, and the history starts empty.
//! Nothing is set aside silently: every file kept aside in the directory
//! (`state.json.bad-<time>-<random>`, `history.json.bad-…`) is a warning
//! ([`Store::warnings`]) in every client on it until someone removes it,
//! whichever path or process set it aside.

use crate::consent::Receipt;
use crate::error::{Error, Result};
use crate::platform;
use crate::report::ReportIdentity;
use crate::schedule::{self, InFlight, Pending, Schedule};
use serde_json::{json, Map, Value};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const STATE_FORMAT: u64 = 1;
const HISTORY_FORMAT: u64 = 1;
/// A state or history file larger than this is not ours.
const MAX_FILE: u64 = 4 << 20;
pub const HISTORY_LEN: usize = 52;
/// A report body larger than this is listed in the history by its SHA-256
/// and length instead of its bytes, so that 52 entries always fit well
/// below `MAX_FILE` whatever the schema allows.
pub(crate) const MAX_HISTORY_BODY: usize = 32 * 1024;
/// The files this store may set aside; one kept aside is named
/// `<name>.bad-<unix time>-<random>`.
const SET_ASIDE: [(&str, &str); 2] = [("state.json", "the client started undecided"), ("history.json", "the history started empty")];
/// At most this many warnings are listed; the rest are counted in one more.
const MAX_WARNINGS: usize = 10;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub consent: Option<Receipt>,
    pub schedule: Option<Schedule>,
    pub last_sent: Option<i64>,
    /// When the last report left (its first attempt, whatever the outcome):
    /// the 7-day floor. Kept outside the schedule, which a consent change
    /// drops, so that nothing (a re-grant, a refusal, a crash) forgets it.
    pub last_left: Option<i64>,
    pub last_error: Option<String>,
    /// The identity of the next report, shared by every process on this
    /// directory so that all previews show the id the sender will use.
    /// Kept as one unit: anything drawn per report belongs beside the id.
    pub next_report: Option<ReportIdentity>,
    /// The field values last published by a process that has values of its
    /// own (see `Client`): what any process on this directory shows and sends.
    pub values: Option<SharedValues>,
    /// The digest of the `"ohttp"` configuration whose key the gateway did
    /// not know (`key_config_outdated`): nothing is sent while the
    /// configuration in use has this digest. Saved only when set.
    pub key_config_outdated: Option<String>,
}


#[derive(Clone, Debug, PartialEq)]
pub struct SharedValues {
    /// Values are only meaningful for the schema they were set under.
    pub schema_digest: String,
    /// Field name -> value in the form `tel_set_values_json` takes.
    pub fields: Map<String, Value>,
    /// The publisher's built-in fields (name -> string), sent with its
    /// values; each client checks them before use. None in files written
    /// before they were published.
    pub builtins: Option<Map<String, Value>>,
}

/// One attempt to deliver a report.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub at: i64,
    /// "in_flight", "delivered", "refused", "failed", "interrupted".
    pub outcome: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub token: String,
}

/// A report that left (or was about to leave) the machine, with its exact body.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    pub report_id: String,
    /// The exact body; None when it is larger than `MAX_HISTORY_BODY`.
    pub body: Option<String>,
    /// Hex SHA-256 of the body's bytes, always kept.
    pub body_sha256: String,
    pub body_length: usize,
    pub attempts: Vec<Attempt>,
    /// `Some("relay")` for a report sent through an Oblivious HTTP relay
    /// (the body is the inner request's content); saved only when set.
    pub via: Option<String>,
}

/// The one value of `HistoryEntry::via`.
pub const VIA_RELAY: &str = "relay";

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl HistoryEntry {
    pub fn new(report_id: String, body: &str, attempts: Vec<Attempt>) -> HistoryEntry {
        HistoryEntry {
            report_id,
            body: (body.len() <= MAX_HISTORY_BODY).then(|| body.to_string()),
            body_sha256: sha256_hex(body.as_bytes()),
            body_length: body.len(),
            attempts,
            via: None,
        }
    }

    pub fn has_body(&self, body: &str) -> bool {
        self.body_length == body.len() && self.body_sha256 == sha256_hex(body.as_bytes())
    }
}

pub struct Store {
    dir: PathBuf,
    state_path: PathBuf,
    history_path: PathBuf,
    lock_path: PathBuf,
    send_lock_path: PathBuf,
    /// What this store set aside (or failed to), with the reason: see
    /// [`Store::warnings`]. Only ever locked for a push or a copy.
    noted: Mutex<Vec<Noted>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Noted {
    /// The file name it was kept aside under; None if it could not be moved.
    aside: Option<String>,
    text: String,
}

/// Proof that the lock file is held; released when dropped (by closing the
/// handle, which also works under Wine where an explicit unlock fails).
pub struct Guard(#[allow(dead_code)] File);

impl Store {
    /// Creates the directory and the lock file if needed. Fails with an I/O
    /// error if either cannot be created or opened for writing.
    pub fn open(dir: &Path) -> Result<Store> {
        platform::create_private_dir(dir).map_err(|e| Error::io(format!("cannot create state_dir {}", dir.display()), e))?;
        // Unix: the directory is resolved once (symlinks and all) and checked
        // with every directory above it; from then on the client uses that
        // path only, so a symlink repointed later redirects nothing.
        #[cfg(unix)]
        let dir = &platform::check_private_dir(dir).map_err(|why| Error::new(crate::error::Code::Io, format!("state_dir {} {why}", dir.display())))?;
        let store = Store {
            dir: dir.to_path_buf(),
            state_path: dir.join("state.json"),
            history_path: dir.join("history.json"),
            lock_path: dir.join("lock"),
            send_lock_path: dir.join("send.lock"),
            noted: Mutex::new(vec![]),
        };
        let guard = store.lock()?;
        store.remove_stale_temp_files(&guard);
        drop(guard);
        // Best effort: on a state_dir that later turns read-only the send
        // lock can still be taken through a read-only handle.
        let _ = store.try_lock_send();
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Blocks until this process holds the lock file.
    pub fn lock(&self) -> Result<Guard> {
        let file = open_lock_file(&self.lock_path)?;
        file.lock().map_err(|e| Error::io(format!("cannot lock {}", self.lock_path.display()), e))?;
        Ok(Guard(file))
    }

    /// The lock file if no one else holds it; never waits (for `tel_tick`,
    /// which must not hang behind a process that is stopped in a debugger or
    /// stuck on a slow disk).
    pub fn try_lock(&self) -> Result<Option<Guard>> {
        let file = open_lock_file(&self.lock_path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Guard(file))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(format!("cannot lock {}", self.lock_path.display()), e)),
        }
    }

    /// Temporary files are only written while the lock file is held, so any
    /// found while holding it were left by a process that died mid-write.
    fn remove_stale_temp_files(&self, _held: &Guard) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.starts_with(".tmp-")) && e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// The send lock, if no one (no other client, no other process) holds it.
    /// Never blocks.
    pub fn try_lock_send(&self) -> Result<Option<Guard>> {
        let file = open_lock_file(&self.send_lock_path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Guard(file))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(format!("cannot lock {}", self.send_lock_path.display()), e)),
        }
    }

    /// Reads the state. A missing file is the empty state; a bad one is moved
    /// aside and reported in the returned warning (which [`Store::warnings`]
    /// keeps listing, so a caller that drops it hides nothing).
    pub fn load(&self, _held: &Guard) -> (State, Option<String>) {
        match read_small(&self.state_path) {
            Ok(None) => (State::default(), None),
            Ok(Some(text)) => match parse_state(&text) {
                Some(state) => (state, None),
                None => (State::default(), Some(self.set_aside(&self.state_path, "is corrupted or of an unknown format"))),
            },
            Err(e) => (State::default(), Some(self.set_aside(&self.state_path, &format!("could not be read ({e})")))),
        }
    }

    pub fn save(&self, _held: &Guard, state: &State) -> Result<()> {
        self.write_atomic(&self.state_path, &state_to_json(state))
    }

    pub fn load_history(&self, _held: &Guard) -> (Vec<HistoryEntry>, Option<String>) {
        match read_small(&self.history_path) {
            Ok(None) => (vec![], None),
            Ok(Some(text)) => match parse_history(&text) {
                Some(h) => (h, None),
                None => (vec![], Some(self.set_aside(&self.history_path, "is corrupted or of an unknown format"))),
            },
            Err(e) => (vec![], Some(self.set_aside(&self.history_path, &format!("could not be read ({e})")))),
        }
    }

    pub fn save_history(&self, _held: &Guard, history: &[HistoryEntry]) -> Result<()> {
        let start = history.len().saturating_sub(HISTORY_LEN);
        let entries: Vec<Value> = history[start..].iter().map(entry_to_json).collect();
        self.write_atomic(&self.history_path, &json!({"format": HISTORY_FORMAT, "reports": entries}))
    }

    /// Moves a damaged file aside and notes it (see [`Store::warnings`]).
    fn set_aside(&self, path: &Path, why: &str) -> String {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state.json");
        let then = SET_ASIDE.iter().find(|(n, _)| *n == name).map_or("it was not used", |(_, then)| *then);
        let aside_name = format!("{name}.bad-{}-{}", crate::now_unix(), crate::random_hex(4));
        let aside = path.with_file_name(&aside_name);
        let noted = match fs::rename(path, &aside) {
            Ok(()) => Noted {
                text: format!("{} {why}; kept aside as {} (remove it to clear this warning); {then}", path.display(), aside.display()),
                aside: Some(aside_name),
            },
            Err(e) => Noted {
                text: format!("{} {why}; it could not be moved aside ({e}) and is replaced at the next write; {then}", path.display()),
                aside: None,
            },
        };
        let text = noted.text.clone();
        let mut all = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        // A file that cannot be moved is found again at every read: once.
        if !all.contains(&noted) {
            all.push(noted);
        }
        text
    }

    /// Every file set aside in this directory, for `tel_status_json`: what
    /// this store set aside itself, with the reason, while the file is still
    /// there (or if it could not be moved), then every other file kept aside
    /// that is still there (set aside by another client or process, or
    /// before this one was opened), oldest first. So a file set aside on any
    /// path is reported in every client on the directory, also in ones opened
    /// later, until someone removes it. At most `MAX_WARNINGS` lines.
    pub fn warnings(&self) -> Vec<String> {
        let noted = self.noted.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let present = self.kept_aside();
        let mut out: Vec<String> = noted
            .iter()
            .filter(|n| match (&n.aside, &present) {
                (Some(name), Some(present)) => present.iter().any(|(_, _, p)| p == name),
                _ => true,
            })
            .map(|n| n.text.clone())
            .collect();
        for (file, at, name) in present.iter().flatten() {
            if noted.iter().any(|n| n.aside.as_ref() == Some(name)) {
                continue;
            }
            let then = SET_ASIDE.iter().find(|(n, _)| n == file).map_or("", |(_, then)| *then);
            out.push(format!(
                "{}: a {file} that could not be read, was corrupted or of an unknown format was kept aside here (at unix time {at}) and {then}; remove it to clear this warning",
                self.dir.join(name).display()
            ));
        }
        if out.len() > MAX_WARNINGS {
            let more = out.len() - (MAX_WARNINGS - 1);
            out.truncate(MAX_WARNINGS - 1);
            out.push(format!("and {more} more warnings about files kept aside in {}", self.dir.display()));
        }
        out
    }

    /// (file, unix time, name) of every entry named `<file>.bad-<time>-<random>`
    /// in the directory, oldest first; None if it cannot be listed.
    fn kept_aside(&self) -> Option<Vec<(&'static str, i64, String)>> {
        let mut found = vec![];
        for e in fs::read_dir(&self.dir).ok()?.flatten() {
            let Ok(name) = e.file_name().into_string() else { continue };
            for (file, _) in SET_ASIDE {
                let Some(rest) = name.strip_prefix(file).and_then(|r| r.strip_prefix(".bad-")) else { continue };
                let at = rest.split('-').next().and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
                found.push((file, at, name.clone()));
            }
        }
        found.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
        Some(found)
    }

    fn write_atomic(&self, path: &Path, value: &Value) -> Result<()> {
        let text = serde_json::to_vec(value).map_err(|e| Error::internal(format!("cannot serialize state: {e}")))?;
        let tmp = self.dir.join(format!(".tmp-{}", crate::random_hex(8)));
        let result = (|| -> io::Result<()> {
            let mut f = platform::create_private_file(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            drop(f);
            platform::replace_file(&tmp, path)?;
            platform::sync_dir(&self.dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    match OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path) {
        Ok(f) => Ok(f),
        // On a read-only state_dir an existing lock file can still be
        // locked through a read-only handle: the consent stays readable,
        // and any write fails later with its own clear error.
        Err(e) if matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem) => {
            File::open(path).map_err(|_| Error::io(format!("cannot open lock file {}", path.display()), e))
        }
        Err(e) => Err(Error::io(format!("cannot open lock file {}", path.display()), e)),
    }
}

fn read_small(path: &Path) -> io::Result<Option<String>> {
    // A FIFO would block the open (and the host) until someone writes to it;
    // a device or a directory is not ours either. Checked before opening.
    match fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "larger than any state this library writes"));
    }
    String::from_utf8(bytes).map(Some).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

fn opt_i64(v: Option<i64>) -> Value {
    v.map_or(Value::Null, Value::from)
}

fn state_to_json(s: &State) -> Value {
    let mut v = json!({
        "format": STATE_FORMAT,
        "consent": s.consent.as_ref().map_or(Value::Null, Receipt::to_json),
        "schedule": s.schedule.as_ref().map_or(Value::Null, |sc| json!({
            "due": sc.due,
            "attempts": sc.attempts,
            "catchup_drawn": sc.catchup_drawn,
            "pending": sc.pending.as_ref().map_or(Value::Null, |p| {
                let mut o = identity_to_json(&p.report);
                o["left"] = json!(p.left);
                o["body"] = json!(p.body);
                o
            }),
            "in_flight": sc.in_flight.as_ref().map_or(Value::Null, |f| json!({
                "token": f.token, "since": f.since, "lease_until": f.lease_until,
            })),
        })),
        "last_sent": opt_i64(s.last_sent),
        "last_left": opt_i64(s.last_left),
        "last_error": s.last_error,
        "next_report": s.next_report.as_ref().map_or(Value::Null, identity_to_json),
        "values": s.values.as_ref().map_or(Value::Null, |v| json!({"schema_digest": v.schema_digest, "fields": v.fields, "builtins": v.builtins})),
    });
    if let Some(d) = &s.key_config_outdated {
        v["key_config_outdated"] = json!(d);
    }
    v
}

/// `Some(None)` for JSON null, `Some(Some(n))` for an integer, `None` otherwise.
fn nullable_i64(v: Option<&Value>) -> Option<Option<i64>> {
    match v? {
        Value::Null => Some(None),
        n => n.as_i64().map(Some),
    }
}

fn exact_keys(o: &Map<String, Value>, keys: &[&str]) -> bool {
    o.len() == keys.len() && keys.iter().all(|k| o.contains_key(*k))
}

fn parse_state(text: &str) -> Option<State> {
    let mut v: Value = serde_json::from_str(text).ok()?;
    // Optional: only written while a report waits for a new key configuration.
    let key_config_outdated = match v.as_object_mut()?.remove("key_config_outdated") {
        None => None,
        Some(d) => Some(d.as_str().filter(|d| d.starts_with("sha256:"))?.to_string()),
    };
    let o = v.as_object()?;
    const KEYS: [&str; 5] = ["format", "consent", "schedule", "last_sent", "last_error"];
    // "last_left" came with the 7-day floor; a file without it is from the
    // slot-based schedule (see `parse_old_schedule`). "next_report" and
    // "values" came with sharing them between processes.
    const NEW_KEYS: [&str; 3] = ["last_left", "next_report", "values"];
    let current = exact_keys(o, &[&KEYS[..], &NEW_KEYS[..]].concat());
    if !(current || exact_keys(o, &KEYS)) || o["format"].as_u64()? != STATE_FORMAT {
        return None;
    }
    let consent = match &o["consent"] {
        Value::Null => None,
        c => Some(Receipt::from_json(c)?),
    };
    let last_sent = nullable_i64(o.get("last_sent"))?;
    let (schedule, last_left) = if current {
        let schedule = match &o["schedule"] {
            Value::Null => None,
            s => Some(parse_schedule(s)?),
        };
        (schedule, nullable_i64(o.get("last_left"))?)
    } else {
        // The old schedule is dropped (a new one is drawn at the next tick);
        // what it knew about the last report that left becomes the floor.
        let since = parse_old_schedule(&o["schedule"])?;
        (None, since.into_iter().chain(last_sent).max())
    };
    if ![last_sent, last_left].into_iter().flatten().all(schedule::valid_time) {
        return None;
    }
    let last_error = match &o["last_error"] {
        Value::Null => None,
        e => Some(e.as_str()?.to_string()),
    };
    let (next_report, values) = if current { (parse_next_report(&o["next_report"])?, parse_values(&o["values"])?) } else { (None, None) };
    Some(State { consent, schedule, last_sent, last_left, last_error, next_report, values, key_config_outdated })
}

/// A report's identity as saved: its id and its secret draw key (the state
/// file is private to the user, mode 0600; the key never leaves it).
fn identity_to_json(r: &ReportIdentity) -> Value {
    json!({"report_id": r.id, "draw_key": crate::schema::hex(&r.draw_key)})
}

fn parse_identity(o: &Map<String, Value>) -> Option<ReportIdentity> {
    let id = o.get("report_id")?.as_str()?;
    let key = o.get("draw_key")?.as_str()?;
    if !is_report_id(id) || key.len() != 64 {
        return None;
    }
    let mut draw_key = [0u8; 32];
    for (i, b) in draw_key.iter_mut().enumerate() {
        *b = u8::from_str_radix(key.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(ReportIdentity { id: id.to_string(), draw_key })
}

fn parse_next_report(v: &Value) -> Option<Option<ReportIdentity>> {
    match v {
        Value::Null => Some(None),
        v => {
            let o = v.as_object()?;
            exact_keys(o, &["report_id", "draw_key"]).then(|| parse_identity(o).map(Some))?
        }
    }
}

/// Only the shape is checked here; each client checks the values against
/// its schema before using them.
fn parse_values(v: &Value) -> Option<Option<SharedValues>> {
    match v {
        Value::Null => Some(None),
        v => {
            let o = v.as_object()?;
            if !(exact_keys(o, &["schema_digest", "fields", "builtins"]) || exact_keys(o, &["schema_digest", "fields"])) {
                return None;
            }
            let builtins = match o.get("builtins") {
                None | Some(Value::Null) => None,
                Some(b) => Some(b.as_object()?.clone()),
            };
            Some(Some(SharedValues { schema_digest: o["schema_digest"].as_str()?.to_string(), fields: o["fields"].as_object()?.clone(), builtins }))
        }
    }
}

fn parse_schedule(s: &Value) -> Option<Schedule> {
    let s = s.as_object()?;
    if !exact_keys(s, &["due", "attempts", "catchup_drawn", "pending", "in_flight"]) {
        return None;
    }
    let in_flight = match &s["in_flight"] {
        Value::Null => None,
        f => Some(InFlight { token: f.get("token")?.as_str()?.to_string(), since: f.get("since")?.as_i64()?, lease_until: f.get("lease_until")?.as_i64()? }),
    };
    let pending = match &s["pending"] {
        Value::Null => None,
        p => {
            let o = p.as_object()?;
            // "body" came with retries resending their first bytes; a
            // pending report saved before has none (its retry builds them).
            if !(exact_keys(o, &["report_id", "draw_key", "left", "body"]) || exact_keys(o, &["report_id", "draw_key", "left"])) {
                return None;
            }
            let body = match o.get("body") {
                None | Some(Value::Null) => None,
                Some(b) => Some(b.as_str()?.to_string()),
            };
            Some(Pending { report: parse_identity(o)?, left: o["left"].as_i64()?, body })
        }
    };
    let schedule = Schedule {
        due: s["due"].as_i64()?,
        attempts: u32::try_from(s["attempts"].as_u64()?).ok()?,
        catchup_drawn: s["catchup_drawn"].as_bool()?,
        pending,
        in_flight,
    };
    // Out-of-range times (a tampered or foreign file) would make the
    // schedule's arithmetic overflow: not our state.
    let times = [Some(schedule.due), schedule.pending.as_ref().map(|p| p.left), schedule.in_flight.as_ref().map(|f| f.since), schedule.in_flight.as_ref().map(|f| f.lease_until)];
    times.into_iter().flatten().all(schedule::valid_time).then_some(schedule)
}

/// 32 lowercase hex digits, as the client draws them.
fn is_report_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A schedule of the slot-based format (before the 7-day floor): checked as
/// strictly as before, and only the start of a send in flight is kept.
fn parse_old_schedule(s: &Value) -> Option<Option<i64>> {
    let s = match s {
        Value::Null => return Some(None),
        s => s.as_object()?,
    };
    if !exact_keys(s, &["anchor", "due", "done_slot", "attempts", "catchup_slot", "in_flight"]) {
        return None;
    }
    for k in ["anchor", "due"] {
        if !schedule::valid_time(s[k].as_i64()?) {
            return None;
        }
    }
    match &s["in_flight"] {
        Value::Null => Some(None),
        f => Some(Some(f.get("since")?.as_i64()?).filter(|&t| schedule::valid_time(t))),
    }
}

fn entry_to_json(e: &HistoryEntry) -> Value {
    let mut v = json!({
        "report_id": e.report_id,
        "body": e.body,
        "body_sha256": e.body_sha256,
        "body_length": e.body_length,
        "attempts": e.attempts.iter().map(|a| json!({
            "at": a.at, "outcome": a.outcome, "status": a.status, "error": a.error, "token": a.token,
        })).collect::<Vec<_>>(),
    });
    if let Some(via) = &e.via {
        v["via"] = json!(via);
    }
    v
}

fn parse_history(text: &str) -> Option<Vec<HistoryEntry>> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v.get("format")?.as_u64()? != HISTORY_FORMAT {
        return None;
    }
    v.get("reports")?
        .as_array()?
        .iter()
        .map(|e| {
            let body = match e.get("body")? {
                Value::Null => None,
                b => Some(b.as_str()?.to_string()),
            };
            // Files written before digests were kept have the body only.
            let (body_sha256, body_length) = match (e.get("body_sha256"), e.get("body_length"), &body) {
                (Some(h), Some(n), _) => (h.as_str()?.to_string(), usize::try_from(n.as_u64()?).ok()?),
                (None, None, Some(b)) => (sha256_hex(b.as_bytes()), b.len()),
                _ => return None,
            };
            let via = match e.get("via") {
                None => None,
                Some(v) => Some(v.as_str().filter(|v| *v == VIA_RELAY)?.to_string()),
            };
            Some(HistoryEntry {
                via,
                report_id: e.get("report_id")?.as_str()?.to_string(),
                body,
                body_sha256,
                body_length,
                attempts: e
                    .get("attempts")?
                    .as_array()?
                    .iter()
                    .map(|a| {
                        Some(Attempt {
                            at: a.get("at")?.as_i64()?,
                            outcome: a.get("outcome")?.as_str()?.to_string(),
                            status: match a.get("status")? {
                                Value::Null => None,
                                s => Some(u16::try_from(s.as_u64()?).ok()?),
                            },
                            error: match a.get("error")? {
                                Value::Null => None,
                                s => Some(s.as_str()?.to_string()),
                            },
                            token: a.get("token")?.as_str()?.to_string(),
                        })
                    })
                    .collect::<Option<Vec<_>>>()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[test]
    fn sha256_matches_the_fips_180_test_vectors() {
        // FIPS 180-2, appendix B: "abc" and the empty string.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("optin-store-{name}-{}", crate::random_hex(6)));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn granted_state() -> State {
        let schema = Schema::from_json(&json!({"version": 3, "fields": [{"name": "a", "type": "bool", "description": {"en": "a"}}]})).unwrap();
        State {
            consent: Some(Receipt::new(true, 42, &crate::consent::Scope { schema: &schema, product: "P", product_version: "1.2.3", endpoint: "https://t.example/r", ohttp: None })),
            schedule: Some(Schedule {
                due: 200,
                attempts: 2,
                catchup_drawn: true,
                pending: Some(Pending { report: ReportIdentity { id: "0123456789abcdef0123456789abcdef".into(), draw_key: [0xa5; 32] }, left: 150, body: Some("{\"a\":true}".into()) }),
                in_flight: Some(InFlight { token: "t".into(), since: 150, lease_until: 330 }),
            }),
            last_sent: Some(99),
            last_left: Some(150),
            next_report: Some(ReportIdentity { id: "fedcba9876543210fedcba9876543210".into(), draw_key: [0x3c; 32] }),
            values: Some(SharedValues { schema_digest: "sha256:00".into(), fields: json!({"a": true}).as_object().unwrap().clone(), builtins: Some(json!({"arch": "x86_64"}).as_object().unwrap().clone()) }),
            last_error: Some("HTTP 503".into()),
            key_config_outdated: None,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempdir("rt");
        let store = Store::open(&dir).unwrap();
        let g = store.lock().unwrap();
        assert_eq!(store.load(&g), (State::default(), None));
        let st = granted_state();
        store.save(&g, &st).unwrap();
        assert_eq!(store.load(&g), (st.clone(), None));
        // Waiting for a new key configuration, and a report sent via a relay.
        let waiting = State { key_config_outdated: Some("sha256:ab".into()), ..st.clone() };
        store.save(&g, &waiting).unwrap();
        assert_eq!(store.load(&g), (waiting, None));
        store.save(&g, &st).unwrap();
        let mut relayed = HistoryEntry::new("0123456789abcdef0123456789abcdef".into(), "{}", vec![]);
        relayed.via = Some(VIA_RELAY.into());
        store.save_history(&g, &[relayed.clone(), HistoryEntry::new("fedcba9876543210fedcba9876543210".into(), "{}", vec![])]).unwrap();
        assert_eq!(store.load_history(&g).0, vec![relayed, HistoryEntry::new("fedcba9876543210fedcba9876543210".into(), "{}", vec![])]);
        store.save_history(&g, &[]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("state.json")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".tmp")).collect();
        assert!(leftovers.is_empty());
        drop(g); // Windows: a lock file still open is only marked for deletion, so the directory would not be empty
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupted_truncated_or_foreign_state_is_never_consent() {
        let good = serde_json::to_string(&state_to_json(&granted_state())).unwrap();
        let bad: Vec<Vec<u8>> = vec![
            good.as_bytes()[..good.len() / 2].to_vec(),
            b"".to_vec(),
            b"\xff\xfe garbage".to_vec(),
            good.replace("\"format\":1", "\"format\":2").into_bytes(),
            good.replace("\"granted\"", "\"yes\"").into_bytes(),
            good.replace("\"last_error\"", "\"surprise\"").into_bytes(),
            good.replace("\"due\":200", "\"due\":-9223372036854775808").into_bytes(),
            good.replace("\"last_left\":150", "\"last_left\":9223372036854775807").into_bytes(),
            good.replace("\"left\":150", "\"left\":true").into_bytes(),
            good.replace("0123456789abcdef0123456789abcdef", "x").into_bytes(),
            b"[]".to_vec(),
        ];
        for (i, bytes) in bad.iter().enumerate() {
            let dir = tempdir("bad");
            let store = Store::open(&dir).unwrap();
            fs::write(dir.join("state.json"), bytes).unwrap();
            let g = store.lock().unwrap();
            let (st, warning) = store.load(&g);
            assert_eq!(st, State::default(), "case {i}");
            assert!(warning.unwrap().contains("kept aside"), "case {i}");
            let aside: Vec<_> = fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("state.json.bad-")).collect();
            assert_eq!(aside.len(), 1, "case {i}: the bad file is kept for diagnosis");
            assert_eq!(fs::read(aside[0].path()).unwrap(), *bytes);
            assert_eq!(store.load(&g), (State::default(), None), "case {i}: afterwards it is simply missing");
            drop(g);
            fs::remove_dir_all(dir).unwrap();
        }
    }

    /// Whoever sets a file aside, every store on the directory lists it
    /// until it is removed: the one that did it with the reason, another
    /// (another client, a later process) by the file it finds.
    #[test]
    fn a_file_set_aside_is_a_warning_in_every_store_until_removed() {
        let dir = tempdir("warn");
        let a = Store::open(&dir).unwrap();
        let b = Store::open(&dir).unwrap();
        assert_eq!((a.warnings(), b.warnings()), (vec![], vec![]));
        fs::write(dir.join("history.json"), b"{\"format\":1,\"reports\":[").unwrap();
        fs::write(dir.join("state.json"), b"{\"format\":1,").unwrap();
        let g = a.lock().unwrap();
        // The callers may drop the returned warning: the store keeps it.
        let (h, _) = a.load_history(&g);
        let (st, _) = a.load(&g);
        drop(g);
        assert_eq!((h, st), (vec![], State::default()));
        let aside = |name: &str| -> String {
            let found: Vec<String> = fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().into_string().unwrap()).filter(|n| n.starts_with(&format!("{name}.bad-"))).collect();
            assert_eq!(found.len(), 1, "{name}: {found:?}");
            found[0].clone()
        };
        let (history_aside, state_aside) = (aside("history.json"), aside("state.json"));
        let wa = a.warnings();
        assert_eq!(wa.len(), 2, "{wa:?}");
        assert!(wa[0].contains(&history_aside) && wa[0].contains("corrupted") && wa[0].contains("history started empty"), "{wa:?}");
        assert!(wa[1].contains(&state_aside) && wa[1].contains("started undecided"), "{wa:?}");
        let wb = b.warnings();
        assert_eq!(wb.len(), 2, "{wb:?}");
        assert!(wb.iter().any(|w| w.contains(&history_aside) && w.contains("history started empty")), "{wb:?}");
        assert!(wb.iter().any(|w| w.contains(&state_aside) && w.contains("started undecided")), "{wb:?}");
        let later = Store::open(&dir).unwrap();
        assert_eq!(later.warnings(), wb);
        fs::remove_file(dir.join(&history_aside)).unwrap();
        for s in [&a, &b, &later] {
            let w = s.warnings();
            assert!(w.len() == 1 && w[0].contains(&state_aside), "{w:?}");
        }
        fs::remove_file(dir.join(&state_aside)).unwrap();
        assert_eq!((a.warnings(), b.warnings()), (vec![], vec![]));
        drop((a, b, later));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn many_files_set_aside_are_listed_up_to_a_limit_and_counted() {
        let dir = tempdir("many");
        let store = Store::open(&dir).unwrap();
        for i in 0..25 {
            fs::write(dir.join(format!("state.json.bad-{}-{i:08x}", 1_000 + i)), b"x").unwrap();
        }
        fs::write(dir.join("state.json.good"), b"not one of them").unwrap();
        let w = store.warnings();
        assert_eq!(w.len(), MAX_WARNINGS);
        assert!(w[0].contains("state.json.bad-1000-00000000"), "oldest first: {w:?}");
        assert!(w[MAX_WARNINGS - 1].contains("16 more"), "{w:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_state_of_the_slot_based_format_keeps_consent_and_the_floor() {
        let dir = tempdir("old");
        let store = Store::open(&dir).unwrap();
        let mut doc = state_to_json(&granted_state());
        for k in ["last_left", "next_report", "values"] {
            doc.as_object_mut().unwrap().remove(k);
        }
        doc["schedule"] = json!({"anchor": 100, "due": 200, "done_slot": 0, "attempts": 2, "catchup_slot": null,
            "in_flight": {"token": "t", "since": 150, "lease_until": 330, "slot": 1}});
        fs::write(dir.join("state.json"), doc.to_string()).unwrap();
        let g = store.lock().unwrap();
        let (st, warning) = store.load(&g);
        assert_eq!(warning, None);
        assert_eq!((st.consent, st.schedule, st.last_left), (granted_state().consent, None, Some(150)));
        doc["schedule"]["anchor"] = json!(-1);
        fs::write(dir.join("state.json"), doc.to_string()).unwrap();
        assert_eq!(store.load(&g).0, State::default(), "still checked strictly");
        drop(g);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn history_keeps_the_last_52() {
        let dir = tempdir("hist");
        let store = Store::open(&dir).unwrap();
        let g = store.lock().unwrap();
        let entries: Vec<HistoryEntry> = (0..60)
            .map(|i| HistoryEntry::new(format!("{i}"), &format!("{{\"n\":{i}}}"), vec![Attempt { at: i, outcome: "delivered".into(), status: Some(200), error: None, token: "t".into() }]))
            .collect();
        store.save_history(&g, &entries).unwrap();
        let (h, w) = store.load_history(&g);
        assert_eq!((h.len(), w), (HISTORY_LEN, None));
        assert_eq!(h[0].report_id, "8");
        assert_eq!(h.last(), entries.last());
        drop(g);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn history_keeps_52_reports_of_any_size_large_ones_by_digest() {
        let dir = tempdir("big");
        let store = Store::open(&dir).unwrap();
        let g = store.lock().unwrap();
        let big = "x".repeat(MAX_FILE as usize / 8); // 52 of these could never fit in one file
        let entries: Vec<HistoryEntry> = (0..60).map(|i| HistoryEntry::new(format!("{i}"), &format!("{big}{i}"), vec![])).collect();
        store.save_history(&g, &entries).unwrap();
        let (h, w) = store.load_history(&g);
        assert_eq!((h.len(), w), (HISTORY_LEN, None));
        assert!(h.iter().all(|e| e.body.is_none() && e.body_length == big.len() + e.report_id.len()));
        assert!(h[51].has_body(&format!("{big}59")) && !h[51].has_body(&format!("{big}58")));
        assert_eq!(h[51].body_sha256, sha256_hex(format!("{big}59").as_bytes()));
        drop(g);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn send_lock_excludes_a_second_store_of_this_process_until_released() {
        // Two clients of one process on one state_dir each have their own
        // Store: the send lock must exclude them from each other too.
        let dir = tempdir("send");
        let a = Store::open(&dir).unwrap();
        let b = Store::open(&dir).unwrap();
        let held = a.try_lock_send().unwrap().expect("free at first");
        assert!(b.try_lock_send().unwrap().is_none());
        assert!(a.try_lock_send().unwrap().is_none(), "not re-entrant either");
        drop(held);
        assert!(b.try_lock_send().unwrap().is_some());
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_as_state_file_is_set_aside_without_blocking() {
        let dir = tempdir("fifo");
        let store = Store::open(&dir).unwrap();
        let made = std::process::Command::new("mkfifo").arg(dir.join("state.json")).status();
        if !made.is_ok_and(|s| s.success()) {
            return; // no mkfifo here: the Python suite covers it too
        }
        let g = store.lock().unwrap();
        let (st, warning) = store.load(&g);
        assert_eq!(st, State::default());
        assert!(warning.unwrap().contains("not a regular file"));
        drop(g);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn temp_files_of_a_killed_writer_are_removed_at_open() {
        let dir = tempdir("tmpfiles");
        drop(Store::open(&dir).unwrap());
        fs::write(dir.join(".tmp-0123abcd"), b"half a state").unwrap();
        let _store = Store::open(&dir).unwrap();
        assert!(!dir.join(".tmp-0123abcd").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_io_error() {
        let dir = tempdir("file");
        fs::write(&dir, b"x").unwrap();
        let e = Store::open(&dir).err().unwrap();
        assert_eq!(e.code, crate::error::Code::Io);
        assert!(e.message.contains("state_dir"), "{}", e.message);
        fs::remove_file(dir).unwrap();
    }
}
