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
//! starts undecided.

use crate::consent::Receipt;
use crate::error::{Error, Result};
use crate::platform;
use crate::schedule::{self, InFlight, Schedule};
use serde_json::{json, Map, Value};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const STATE_FORMAT: u64 = 1;
const HISTORY_FORMAT: u64 = 1;
/// A state or history file larger than this is not ours.
const MAX_FILE: u64 = 4 << 20;
pub const HISTORY_LEN: usize = 52;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub consent: Option<Receipt>,
    pub schedule: Option<Schedule>,
    pub last_sent: Option<i64>,
    pub last_error: Option<String>,
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
    pub body: String,
    pub attempts: Vec<Attempt>,
}

pub struct Store {
    dir: PathBuf,
    state_path: PathBuf,
    history_path: PathBuf,
    lock_path: PathBuf,
    send_lock_path: PathBuf,
}

/// Proof that the lock file is held; released when dropped (by closing the
/// handle, which also works under Wine where an explicit unlock fails).
pub struct Guard(#[allow(dead_code)] File);

impl Store {
    /// Creates the directory and the lock file if needed. Fails with an I/O
    /// error if either cannot be created or opened for writing.
    pub fn open(dir: &Path) -> Result<Store> {
        platform::create_private_dir(dir).map_err(|e| Error::io(format!("cannot create state_dir {}", dir.display()), e))?;
        let store = Store {
            dir: dir.to_path_buf(),
            state_path: dir.join("state.json"),
            history_path: dir.join("history.json"),
            lock_path: dir.join("lock"),
            send_lock_path: dir.join("send.lock"),
        };
        drop(store.lock()?);
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
    /// aside and reported in the returned warning.
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

    fn set_aside(&self, path: &Path, why: &str) -> String {
        let aside = path.with_file_name(format!(
            "{}.bad-{}-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
            crate::now_unix(),
            crate::random_hex(4)
        ));
        match fs::rename(path, &aside) {
            Ok(()) => format!("{} {why}; kept aside as {} and started undecided", path.display(), aside.display()),
            Err(e) => format!("{} {why}; could not move it aside ({e}); started undecided", path.display()),
        }
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
    json!({
        "format": STATE_FORMAT,
        "consent": s.consent.as_ref().map_or(Value::Null, Receipt::to_json),
        "schedule": s.schedule.as_ref().map_or(Value::Null, |sc| json!({
            "anchor": sc.anchor,
            "due": sc.due,
            "done_slot": opt_i64(sc.done_slot),
            "attempts": sc.attempts,
            "catchup_slot": opt_i64(sc.catchup_slot),
            "in_flight": sc.in_flight.as_ref().map_or(Value::Null, |f| json!({
                "token": f.token, "since": f.since, "lease_until": f.lease_until, "slot": f.slot,
            })),
        })),
        "last_sent": opt_i64(s.last_sent),
        "last_error": s.last_error,
    })
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
    let v: Value = serde_json::from_str(text).ok()?;
    let o = v.as_object()?;
    if !exact_keys(o, &["format", "consent", "schedule", "last_sent", "last_error"]) || o["format"].as_u64()? != STATE_FORMAT {
        return None;
    }
    let consent = match &o["consent"] {
        Value::Null => None,
        c => Some(Receipt::from_json(c)?),
    };
    let schedule = match &o["schedule"] {
        Value::Null => None,
        s => {
            let s = s.as_object()?;
            if !exact_keys(s, &["anchor", "due", "done_slot", "attempts", "catchup_slot", "in_flight"]) {
                return None;
            }
            let in_flight = match &s["in_flight"] {
                Value::Null => None,
                f => Some(InFlight {
                    token: f.get("token")?.as_str()?.to_string(),
                    since: f.get("since")?.as_i64()?,
                    lease_until: f.get("lease_until")?.as_i64()?,
                    slot: f.get("slot")?.as_i64()?,
                }),
            };
            let schedule = Schedule {
                anchor: s["anchor"].as_i64()?,
                due: s["due"].as_i64()?,
                done_slot: nullable_i64(s.get("done_slot"))?,
                attempts: u32::try_from(s["attempts"].as_u64()?).ok()?,
                catchup_slot: nullable_i64(s.get("catchup_slot"))?,
                in_flight,
            };
            // Out-of-range times or slots (a tampered or foreign file) would
            // make the schedule's arithmetic overflow: not our state.
            let times_ok = [schedule.anchor, schedule.due].into_iter().all(schedule::valid_time)
                && schedule.in_flight.as_ref().is_none_or(|f| schedule::valid_time(f.since) && schedule::valid_time(f.lease_until) && schedule::valid_slot(f.slot));
            let slots_ok = [schedule.done_slot, schedule.catchup_slot].into_iter().flatten().all(schedule::valid_slot);
            if !(times_ok && slots_ok) {
                return None;
            }
            Some(schedule)
        }
    };
    let last_error = match &o["last_error"] {
        Value::Null => None,
        e => Some(e.as_str()?.to_string()),
    };
    Some(State { consent, schedule, last_sent: nullable_i64(o.get("last_sent"))?, last_error })
}

fn entry_to_json(e: &HistoryEntry) -> Value {
    json!({
        "report_id": e.report_id,
        "body": e.body,
        "attempts": e.attempts.iter().map(|a| json!({
            "at": a.at, "outcome": a.outcome, "status": a.status, "error": a.error, "token": a.token,
        })).collect::<Vec<_>>(),
    })
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
            Some(HistoryEntry {
                report_id: e.get("report_id")?.as_str()?.to_string(),
                body: e.get("body")?.as_str()?.to_string(),
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

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("optin-store-{name}-{}", crate::random_hex(6)));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn granted_state() -> State {
        let schema = Schema::from_json(&json!({"version": 3, "fields": [{"name": "a", "type": "bool", "description": {"en": "a"}}]})).unwrap();
        State {
            consent: Some(Receipt::new(true, 42, &crate::consent::Scope { schema: &schema, product: "P", product_version: "1.2.3", endpoint: "https://t.example/r" })),
            schedule: Some(Schedule { anchor: 100, due: 200, done_slot: Some(0), attempts: 2, catchup_slot: None, in_flight: Some(InFlight { token: "t".into(), since: 150, lease_until: 330, slot: 1 }) }),
            last_sent: Some(99),
            last_error: Some("HTTP 503".into()),
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
        assert_eq!(store.load(&g), (st, None));
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
            good.replace("\"anchor\":100", "\"anchor\":-9223372036854775808").into_bytes(),
            good.replace("\"done_slot\":0", "\"done_slot\":9223372036854775807").into_bytes(),
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

    #[test]
    fn history_keeps_the_last_52() {
        let dir = tempdir("hist");
        let store = Store::open(&dir).unwrap();
        let g = store.lock().unwrap();
        let entries: Vec<HistoryEntry> = (0..60)
            .map(|i| HistoryEntry { report_id: format!("{i}"), body: format!("{{\"n\":{i}}}"), attempts: vec![Attempt { at: i, outcome: "delivered".into(), status: Some(200), error: None, token: "t".into() }] })
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
