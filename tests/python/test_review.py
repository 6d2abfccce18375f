"""Adversarial review: races and orderings around sending, against the real
cdylib (ctypes binding) and a real loopback collector.

Every test here once described a suspected way to break a promise of the
library (at most one report a week, consent, body == history, no stuck client).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import optin_telemetry as ot
from collector import Collector, Reply
from conftest import ROOT, make_config

WEEK = 7 * 24 * 3600
LATER_JITTER = 6 * 3600
LEASE = 180
FLUSH_MS = 15_000
T0 = int(time.time())


def scheduled(open_client, state_dir, endpoint):
    c = open_client(state_dir, endpoint)
    c.set_values({"trial": True, "edition": "smb", "users": 7})
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    assert isinstance(due, int) and T0 <= due < T0 + WEEK
    return c, due


def next_after(client, left):
    """The next report's due time: 7 days plus 0-6 h after one left at `left`."""
    due = client.status()["next_due"]
    assert left + WEEK <= due <= left + WEEK + LATER_JITTER, due - left - WEEK
    return due


def delivered(client):
    return [r for r in client.history()["reports"] if r["outcome"] == "delivered"]


def tick_through_slot(client, start, stop, step=600):
    for t in range(start, stop, step):
        client.tick(t)
        client.flush(FLUSH_MS)


# --------------------------------------------------------------------------
# (b) one report per slot while a slow send is still running


@pytest.mark.parametrize("offset", [LEASE + 5, -1], ids=["clock_forward_past_lease", "clock_back_one_second"])
def test_second_client_in_process_never_steals_a_live_send(clients, state_dir, offset):
    """Two clients of one process share state_dir (e.g. a host that closed
    and re-opened its client while the old send still runs). While A's request
    is on the wire, B ticks with a clock that moved: past A's lease (the machine
    woke from sleep, an NTP step forward) or one second before A's start (an NTP
    step back). A live send is not an interrupted one: B must not send a second
    report in the slot, now or later."""
    with Collector() as col:
        col.replies.append(Reply(200, delay=2.0))
        a, due = scheduled(clients, state_dir, col.url)
        b = clients(state_dir, col.url)
        a.tick(due)
        assert len(col.wait_for(1, 5)) == 1
        b.tick(due + offset)  # A's request is still waiting for its answer
        b.flush(FLUSH_MS)
        a.flush(FLUSH_MS)
        # The rest of the slot, from both clients.
        tick_through_slot(b, due + LEASE + 10, due + WEEK - 60, 3 * 3600)
        tick_through_slot(a, due + LEASE + 20, due + WEEK - 60, 3 * 3600)
        time.sleep(0.2)
        assert len(col.requests) == 1, f"{len(col.requests)} reports in one slot"
        assert len(delivered(a)) == 1
        st = a.status()
        assert st["last_sent"] == due, st
        next_after(a, due)


CHILD = r"""
import json, sys
import optin_telemetry as ot
cfg, ticks = json.loads(sys.argv[1]), json.loads(sys.argv[2])
c = ot.Client(cfg)
for t in ticks:
    c.tick(t)
    c.flush(15000)
print(json.dumps(c.status()), flush=True)
c.close()
"""


def run_child(tmp_path, cfg, ticks):
    script = tmp_path / "review_child.py"
    script.write_text(CHILD)
    env = {"PYTHONPATH": str(ROOT / "bindings" / "python"), "OPTIN_TELEMETRY_LIB": str(ot.library_path()), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, str(script), json.dumps(cfg), json.dumps(ticks)], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_other_process_with_a_jumped_clock_never_steals_a_live_send(clients, state_dir, tmp_path):
    """The same across processes: a service's send is slow; the GUI's clock
    reads past the lease. The GUI must see that the sender is alive."""
    with Collector() as col:
        col.replies.append(Reply(200, delay=3.0))
        a, due = scheduled(clients, state_dir, col.url)
        a.tick(due)
        assert len(col.wait_for(1, 5)) == 1
        run_child(tmp_path, make_config(state_dir, endpoint=col.url), [due + LEASE + 5, due + LEASE + 3600])
        a.flush(FLUSH_MS)
        tick_through_slot(a, due + LEASE + 20, due + WEEK - 60, 3 * 3600)
        time.sleep(0.2)
        assert len(col.requests) == 1, f"{len(col.requests)} reports in one slot"
        next_after(a, due)


# --------------------------------------------------------------------------
# (b)/(d) the outcome of a delivered report is recorded even if the history
# cannot be written


DISK_NEARLY_FULL_CHILD = r"""
import json, os, resource, signal, sys, time
import optin_telemetry as ot
cfg = json.loads(sys.argv[1])
T0, WEEK = int(sys.argv[2]), 7 * 24 * 3600
state_dir = cfg["state_dir"]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
c = ot.Client(cfg)
c.set_values({"trial": True, "edition": "enterprise", "users": 30, "archived_items": 123456, "profiles": ["imap", "pst"]})
c.set_consent(True)
c.tick(T0)
due = c.status()["next_due"]
for k in range(3):  # three delivered reports: the history outgrows the state file
    c.tick(due)
    c.flush(15000)
    due = c.status()["next_due"]
at = due
c.tick(at)  # the collector holds this request for a while
deadline = time.monotonic() + 5
while "in_flight" not in open(os.path.join(state_dir, "history.json")).read() and time.monotonic() < deadline:
    time.sleep(0.02)
S = os.path.getsize(os.path.join(state_dir, "state.json"))
H = os.path.getsize(os.path.join(state_dir, "history.json"))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
limit = (S + H) // 2
# Files up to `limit` bytes can be written: the state can, the history cannot.
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
c.flush(15000)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
after = c.status()
for t in range(at + 60, at + WEEK - 60, 1800):
    c.tick(t)
    c.flush(15000)
print(json.dumps({"S": S, "H": H, "limit": limit, "after": after, "end": c.status()}), flush=True)
c.close()
"""


def test_delivered_report_closes_its_slot_even_if_the_history_cannot_be_saved(state_dir, tmp_path):
    """The disk fills up while a report is on the wire: after delivery the
    (larger) history file cannot be rewritten, the (smaller) state file can.
    The delivered report must still close its slot: no second report."""
    with Collector() as col:
        col.replies.extend([Reply(), Reply(), Reply(), Reply(200, delay=1.5)])
        script = tmp_path / "disk_child.py"
        script.write_text(DISK_NEARLY_FULL_CHILD)
        env = {"PYTHONPATH": str(ROOT / "bindings" / "python"), "OPTIN_TELEMETRY_LIB": str(ot.library_path()), "PATH": "/usr/bin:/bin"}
        cfg = make_config(state_dir, endpoint=col.url)
        p = subprocess.run([sys.executable, str(script), json.dumps(cfg), str(T0)], capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert out["H"] > out["S"] + 300, out  # the set-up did what it says
        time.sleep(0.2)
        assert len(col.requests) == 4, f"{len(col.requests) - 3} reports in the slot whose history could not be saved"
        assert out["after"]["last_error"] and "history" in out["after"]["last_error"], out["after"]
        assert out["after"]["last_sent"] == out["end"]["last_sent"]
        # The report id of a delivered report is never used again.
        ids = [json.loads(r.body)["report_id"] for r in col.requests]
        assert len(set(ids)) == len(ids)


def test_send_lock_held_by_a_non_sender_does_not_stall_sending(clients, state_dir, collector):
    """A host that forks while a report is on the wire leaves a copy of the
    send lock in the child. With nothing in flight a held send lock must not
    keep the installation from ever sending again (here: this test holds it)."""
    import fcntl

    c, due = scheduled(clients, state_dir, collector.url)
    with open(state_dir / "send.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        c.tick(due)
        c.flush(FLUSH_MS)
        assert len(collector.wait_for(1, 5)) == 1
        next_after(c, due)
        assert len(delivered(c)) == 1


# --------------------------------------------------------------------------
# a report id is never reused for another report


def rid(request):
    return json.loads(request.body)["report_id"]


def test_report_id_of_a_failed_attempt_is_not_reused_after_another_client_finished_the_slot(clients, state_dir):
    """A service gets a 503; the GUI sharing state_dir makes the retry and
    delivers. Next week the service must not send its new report under the id
    it already used (and the server may have kept) for last week's report."""
    with Collector() as col:
        col.replies.extend([Reply(503), Reply(200), Reply(200)])
        a, due = scheduled(clients, state_dir, col.url)
        b = clients(state_dir, col.url)
        a.tick(due)
        a.flush(FLUSH_MS)
        retry = a.status()["next_due"]
        assert due < retry <= due + 60
        b.tick(retry)
        b.flush(FLUSH_MS)
        assert len(col.requests) == 2
        due2 = next_after(a, due)
        # The retry is the same report: it carries the id that left first.
        assert rid(col.requests[1]) == rid(col.requests[0])
        # The service keeps ticking as hosts do (a look at least every 10 minutes).
        for t in range(retry + 60, due2, 600):
            a.tick(t)
        preview = a.preview()
        a.tick(due2)
        a.flush(FLUSH_MS)
        assert len(col.requests) == 3
        assert col.requests[2].body.decode() == preview
        assert rid(col.requests[2]) not in {rid(col.requests[0]), rid(col.requests[1])}


def test_report_id_of_a_failed_attempt_is_not_reused_after_consent_is_given_again(clients, state_dir):
    with Collector() as col:
        col.replies.extend([Reply(503), Reply(200)])
        a, due = scheduled(clients, state_dir, col.url)
        a.tick(due)
        a.flush(FLUSH_MS)
        a.set_consent(False)
        a.set_consent(True)
        a.tick(due + 60)
        due2 = a.status()["next_due"]
        preview = a.preview()
        a.tick(due2)
        a.flush(FLUSH_MS)
        assert len(col.requests) == 2
        assert col.requests[1].body.decode() == preview
        assert rid(col.requests[1]) != rid(col.requests[0])
