"""Issue 10, "nothing blocks the host, nothing is lost silently", through the
C ABI with real files, a real loopback collector and real locks:
- tel_tick returns at once while another process holds the state lock, and
  sends on a later tick once it is free;
- a state.json that is a FIFO is set aside without blocking tel_open;
- temporary files left by a killed writer are removed;
- the history lists the last 52 reports whatever their size (large bodies by
  SHA-256 and length)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time

import pytest

import optin_telemetry as ot
from conftest import make_config

FLUSH_MS = 15_000
T0 = int(time.time())
# Generous guard against a hang (a deadlock would never return); not a speed check.
HANG = 30


def in_thread(fn):
    """Runs fn in a thread; returns (finished, result)."""
    out = {}

    def run():
        out["r"] = fn()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(HANG)
    return not t.is_alive(), out.get("r")


def test_tick_does_not_wait_for_a_lock_held_by_another_process(clients, state_dir, collector):
    c = clients(state_dir, collector.url)
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    # Another holder of the lock file (as a process stopped in a debugger would be).
    with open(state_dir / "lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finished, _ = in_thread(lambda: c.tick(due))
        assert finished, "tel_tick waited for the state lock"
        c.flush(FLUSH_MS)
        assert collector.requests == []
    # Free again: a later tick looks again and sends.
    c.tick(due + 60)
    c.flush(FLUSH_MS)
    assert len(collector.wait_for(1, 5)) == 1


def test_setters_do_not_wait_while_another_thread_waits_for_the_state_lock(clients, state_dir, collector):
    # A thread of the host saves a consent answer while another process
    # holds the state lock: that call may wait (the header says so), but the
    # setters and tel_tick on other threads must not wait behind it.
    c = clients(state_dir, collector.url)
    with open(state_dir / "lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        answer = threading.Thread(target=lambda: c.set_consent(True), daemon=True)
        answer.start()
        time.sleep(0.5)  # let it reach the lock file; if it has not yet, the checks below pass trivially
        assert answer.is_alive(), "tel_set_consent did not wait for a lock held by another process"
        for name, call in [
            ("tel_set_count", lambda: c.set_count("users", 7)),
            ("tel_set_bool", lambda: c.set_bool("trial", False)),
            ("tel_set_values_json", lambda: c.set_values({"edition": "smb"})),
            ("tel_tick", lambda: c.tick(T0)),
        ]:
            finished, _ = in_thread(call)
            assert finished, f"{name} waited while another thread of the client waited for the state lock"
        assert answer.is_alive()
    answer.join(HANG)
    assert not answer.is_alive()
    assert c.consent == ot.Consent.GRANTED
    assert json.loads(c.preview())["fields"]["users"] == "5-9"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are Unix")
def test_a_fifo_as_state_file_is_set_aside_without_blocking_open(state_dir):
    state_dir.mkdir(mode=0o700)
    os.mkfifo(state_dir / "state.json")
    finished, client = in_thread(lambda: ot.Client(make_config(state_dir)))
    assert finished, "tel_open blocked on a FIFO"
    try:
        assert client.consent is ot.Consent.UNDECIDED
        assert any("not a regular file" in w for w in client.status()["warnings"]), client.status()
        assert any(p.name.startswith("state.json.bad-") for p in state_dir.iterdir())
        client.set_consent(True)
        assert (state_dir / "state.json").is_file()
    finally:
        client.close()


def test_temp_files_left_by_a_killed_writer_are_cleaned_up(state_dir):
    ot.Client(make_config(state_dir)).close()
    left = state_dir / ".tmp-deadbeef"
    left.write_bytes(b'{"format":1,"consent":')
    with ot.Client(make_config(state_dir)) as c:
        assert not left.exists()
        assert c.consent is ot.Consent.UNDECIDED


def big_schema():
    # 24 fields of 64 long tokens each: a body of about 100 KB, so 52 of them
    # would not fit in the 4 MiB the library reads back.
    vals = [f"v{i:02d}_" + "x" * 60 for i in range(64)]
    return {"version": 1, "fields": [{"name": f"f{k}", "type": "choices", "values": vals, "description": {"en": "big"}} for k in range(24)]}, vals


def test_history_keeps_the_last_52_reports_whatever_their_size(clients, state_dir, collector):
    schema, vals = big_schema()
    c = clients(state_dir, collector.url, schema=schema, max_bits=2000)
    c.set_values({f"f{k}": vals for k in range(24)})
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    for _ in range(55):
        c.tick(due)
        c.flush(FLUSH_MS)
        due = c.status()["next_due"]
    assert len(collector.requests) == 55
    h = c.history()["reports"]
    assert len(h) == 52, f"{len(h)} of the last 52 reports listed"
    assert c.status()["warnings"] == []
    for entry, req in zip(h, reversed(collector.requests)):
        assert len(req.body) > 32 * 1024
        assert entry["body"] is None
        assert entry["body_sha256"] == hashlib.sha256(req.body).hexdigest()
        assert entry["body_length"] == len(req.body)
        assert entry["outcome"] == "delivered"
