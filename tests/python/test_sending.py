"""Sending, end to end: the real cdylib (through the ctypes binding) against a
real HTTP collector on loopback, and real child processes sharing one state
directory.

Time is the clock of the ticks (tel_tick_at): a simulated week or year is a
loop of cheap ticks, and every due tick is followed by tel_flush so that the
collector's request count is final before the next tick.

Only one test is slow on purpose: test_server_that_never_answers_times_out_SLOW_30s
waits for the library's 30 s overall timeout.
"""

from __future__ import annotations

import copy
import getpass
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import optin_telemetry as ot
from collector import Collector, Reply, free_port, stop_accept_loop
from conftest import ROOT, SCHEMA, T0, WEEK, make_config, scheduled, send_due

DAY = 24 * 3600
HOUR = 3600
CATCHUP_MAX_DELAY = 3600
MAX_ATTEMPTS = 5
BACKOFF_FIRST_CEILING = 60  # the first retry is due within 60 s (full jitter)
LEASE = 180
LATER_JITTER = 6 * HOUR  # a later report: 7 days plus 0-6 h after the previous one left
FLUSH_MS = 15_000



# --------------------------------------------------------------------------
# helpers



def drive(client, collectors, start, stop, step):
    """Ticks every `step` seconds in [start, stop), flushing after each tick.
    Returns the tick times at which a request reached one of `collectors`;
    fails on a burst (two requests from one tick)."""
    if isinstance(collectors, Collector):
        collectors = [collectors]
    count = lambda: sum(len(c.requests) for c in collectors)  # noqa: E731
    seen = count()
    sent = []
    for t in range(start, stop, step):
        client.tick(t)
        client.flush(FLUSH_MS)
        n = count()
        if n != seen:
            assert n == seen + 1, f"{n - seen} requests from the single tick at {t}"
            seen = n
            sent.append(t)
    return sent


def later_due(client, left):
    """The next report's due time, checked against the rule: 7 days plus a
    fresh random 0-6 h after the previous report left at `left`."""
    due = client.status()["next_due"]
    assert left + WEEK <= due <= left + WEEK + LATER_JITTER, f"next due {due - left - WEEK} s after left + 7 days"
    return due


def reports(client):
    return client.history()["reports"]


CHILD = r"""
import json, sys, time
import optin_telemetry as ot
cfg, cmds = json.loads(sys.argv[1]), json.loads(sys.argv[2])
c = ot.Client(cfg)
print("ready", flush=True)
for op, *args in cmds:
    if op == "wait":
        sys.stdin.readline()
    elif op == "tick":
        c.tick(args[0])
    elif op == "flush":
        c.flush(args[0])
    elif op == "sleep":
        time.sleep(args[0])
out = {"status": c.status(), "history": c.history()}
c.close()
print(json.dumps(out), flush=True)
"""


@pytest.fixture
def child(tmp_path):
    """Starts `python child.py config cmds` with the binding importable and the
    same cdylib as this process. Returns a Popen whose first line was 'ready'."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    procs = []

    def start(config, cmds, env_extra=None):
        env = dict(os.environ)
        env.pop("OPTIN_TELEMETRY_DISABLE", None)
        env["PYTHONPATH"] = str(ROOT / "bindings" / "python")
        env["OPTIN_TELEMETRY_LIB"] = str(ot.library_path())
        env.update(env_extra or {})
        p = subprocess.Popen(
            [sys.executable, str(script), json.dumps(config), json.dumps(cmds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        procs.append(p)
        line = p.stdout.readline()
        assert line.strip() == "ready", f"child did not start: {line!r} {p.stderr.read() if p.poll() is not None else ''}"
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def finish(p, timeout=30):
    """Waits for a child and returns its final JSON line. (Reads through the
    same buffered stdout as the 'ready' line: communicate() would skip what
    that buffer already holds.)"""
    watchdog = threading.Timer(timeout, p.kill)
    watchdog.start()
    try:
        out, err = p.stdout.read(), p.stderr.read()
        p.wait()
    finally:
        watchdog.cancel()
    assert p.returncode == 0, f"child failed ({p.returncode}): {err}"
    return json.loads(out.strip().splitlines()[-1])


SCHEMA_V2 = copy.deepcopy(SCHEMA)
SCHEMA_V2["version"] = 2
SCHEMA_V2["fields"].append({"name": "region", "type": "choice", "values": ["eu", "us", "apac"], "description": {"en": "Region."}})


# --------------------------------------------------------------------------
# nothing leaves the machine without valid consent, or under a policy


@pytest.mark.parametrize("answer", [None, False], ids=["undecided", "denied"])
def test_nothing_is_sent_without_a_yes(clients, state_dir, collector, answer):
    c = clients(state_dir, collector.url)
    c.set_values({"trial": True, "edition": "smb"})
    if answer is not None:
        c.set_consent(answer)
    assert drive(c, collector, T0, T0 + 3 * WEEK, HOUR) == []
    st = c.status()
    assert st["consent"] == ("undecided" if answer is None else "denied")
    assert st["next_due"] is None and st["last_sent"] is None
    assert collector.requests == [] and reports(c) == []


def test_revoking_while_a_report_is_due_sends_nothing(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    c.set_consent(False)  # the report is due, the host has not ticked yet
    assert drive(c, collector, due, due + 3 * WEEK, 30 * 60) == []
    st = c.status()
    assert (st["consent"], st["next_due"]) == ("denied", None)
    assert collector.requests == [] and reports(c) == []


def test_revoking_while_a_retry_is_pending_stops_the_retries(clients, state_dir):
    with Collector(default=Reply(503, body=b"busy")) as col:
        c, due = scheduled(clients, state_dir, col.url)
        send_due(c, col, due)
        assert c.status()["attempts"] == 1  # a retry is due within a minute
        c.set_consent(False)
        assert drive(c, col, due + 1, due + 2 * WEEK, 60) == []
        assert len(col.requests) == 1


def test_granting_again_soon_after_a_report_keeps_seven_days(clients, tmp_path, collector):
    """Withdraw and give consent again a day after a report: a new phase is
    drawn, yet the next report is at least 7 days after the last one.
    (Repeated on several directories: a wrong rule shows up with high
    probability on any one of them.)"""
    for i in range(4):
        c, due = scheduled(clients, tmp_path / f"s{i}", collector.url)
        send_due(c, collector, due)
        c.set_consent(False)
        c.tick(due + HOUR)
        c.set_consent(True)
        c.tick(due + DAY)
        drawn = c.status()["next_due"]
        assert due + WEEK <= drawn < due + 2 * WEEK, (drawn - due) / DAY
        sent = drive(c, collector, due + DAY + 60, due + 3 * WEEK, 600)
        assert sent, "nothing sent after consent was given again"
        assert sent[0] >= due + WEEK, f"a report {(sent[0] - due) / DAY:.2f} days after the previous one"
        assert all(b - a >= WEEK - 600 for a, b in zip(sent, sent[1:])), sent


def test_outdated_consent_sends_nothing_until_answered_again(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    c.close()
    c2 = clients(state_dir, collector.url, schema=SCHEMA_V2)
    assert c2.consent == ot.Consent.OUTDATED
    assert drive(c2, collector, due, due + 3 * WEEK, 30 * 60) == []
    st = c2.status()
    assert (st["consent"], st["next_due"]) == ("outdated", None)
    assert collector.requests == []
    # Answering again for the new schema sends again (so the block above was the consent).
    c2.set_consent(True)
    c2.tick(due + 3 * WEEK)
    due2 = c2.status()["next_due"]
    request = send_due(c2, collector, due2)
    assert json.loads(request.body)["schema_version"] == 2


def test_config_disabled_blocks_a_due_report_and_says_why(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    c.close()
    blocked = clients(state_dir, collector.url, disabled=True)
    assert blocked.consent == ot.Consent.GRANTED  # the block wins over consent
    assert drive(blocked, collector, due, due + 3 * WEEK, 30 * 60) == []
    st = blocked.status()
    assert st["blocked_by"] and "disabled" in st["blocked_by"], st
    assert st["next_due"] is None
    assert collector.requests == []
    # A fresh installation under the policy: consent given, still nothing.
    fresh = clients(state_dir.parent / "fresh", collector.url, disabled=True)
    fresh.set_consent(True)
    assert drive(fresh, collector, T0, T0 + 2 * WEEK, HOUR) == []
    assert "disabled" in fresh.status()["blocked_by"]
    assert collector.requests == []


def test_env_policy_set_before_the_due_tick_blocks_it(clients, state_dir, collector, monkeypatch):
    c, due = scheduled(clients, state_dir, collector.url)
    assert c.status()["blocked_by"] is None
    monkeypatch.setenv("OPTIN_TELEMETRY_DISABLE", "1")
    assert drive(c, collector, due, due + 2 * WEEK, 30 * 60) == []
    st = c.status()
    assert st["blocked_by"] and "OPTIN_TELEMETRY_DISABLE" in st["blocked_by"], st
    assert collector.requests == []
    # Lifting the policy lets the schedule run again: the block was the cause.
    monkeypatch.delenv("OPTIN_TELEMETRY_DISABLE")
    assert c.status()["blocked_by"] is None
    sent = drive(c, collector, due + 2 * WEEK, due + 3 * WEEK, 30 * 60)
    assert len(sent) == 1


def test_env_policy_in_a_child_process_blocks_it(clients, state_dir, collector, child):
    c, due = scheduled(clients, state_dir, collector.url)
    cfg = make_config(state_dir, endpoint=collector.url)
    cmds = [["tick", due], ["tick", due + HOUR], ["tick", due + DAY], ["flush", FLUSH_MS]]
    out = finish(child(cfg, cmds, {"OPTIN_TELEMETRY_DISABLE": "1"}))
    assert "OPTIN_TELEMETRY_DISABLE" in (out["status"]["blocked_by"] or ""), out["status"]
    assert out["status"]["next_due"] is None
    time.sleep(0.2)
    assert collector.requests == []
    # Control: the same child without the variable sends the report.
    out = finish(child(cfg, cmds))
    assert out["status"]["blocked_by"] is None
    assert len(collector.wait_for(1, 5)) == 1
    assert out["history"]["reports"][0]["outcome"] == "delivered"


# --------------------------------------------------------------------------
# what is sent


def test_body_is_the_preview_byte_for_byte_with_plain_headers(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    c.set_values({"trial": False, "edition": "enterprise", "users": 7, "archived_items": 123456, "profiles": ["imap", "pst"]})
    preview = c.preview()
    request = send_due(c, collector, due)
    assert request.method == "POST" and request.path == "/v1/report"
    assert request.body == preview.encode("utf-8")
    h = request.headers
    assert h["content-type"].split(";")[0].strip() == "application/json"
    ua = h["user-agent"]
    assert "optin-telemetry" in ua and ot.version() in ua, ua
    assert ua == f"optin-telemetry/{ot.version()}", f"unexpected user agent {ua!r}"
    machine = {socket.gethostname(), platform.node(), getpass.getuser(), platform.release(), str(Path.home())} - {""}
    for name, value in h.items():
        for m in machine:
            assert m not in value, f"header {name} carries {m!r}"
    allowed = {"host", "user-agent", "content-type", "content-length", "accept", "accept-encoding", "connection"}
    assert set(h) <= allowed, f"unexpected headers {set(h) - allowed}"
    history = reports(c)
    assert history[0]["body"] == preview and history[0]["outcome"] == "delivered"


def test_history_newest_first_bodies_as_received_and_clearable(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    c.set_values({"edition": "standard"})
    send_due(c, collector, due)
    c.set_values({"edition": "smb", "users": 60})
    due2 = later_due(c, due)
    send_due(c, collector, due2)
    h = reports(c)
    assert len(h) == 2
    assert [r["body"] for r in h] == [collector.requests[1].body.decode(), collector.requests[0].body.decode()]
    assert h[0]["at"] == due2 and h[1]["at"] == due
    for r in h:
        assert r["outcome"] == "delivered" and r["status"] == 200
        assert json.loads(r["body"])["report_id"] == r["report_id"]
        assert [a["outcome"] for a in r["attempts"]] == ["delivered"]
    assert h[0]["report_id"] != h[1]["report_id"]
    # Another client on the same directory sees the same history.
    other = clients(state_dir, collector.url)
    assert reports(other) == h
    c.clear_history()
    assert c.history() == {"reports": []}
    assert other.history() == {"reports": []}
    send_due(c, collector, later_due(c, due2))
    h = reports(c)
    assert len(h) == 1 and h[0]["body"] == collector.requests[2].body.decode()


# --------------------------------------------------------------------------
# schedule


def test_first_tick_draws_and_persists_next_due(clients, state_dir, collector):
    c = clients(state_dir, collector.url)
    c.set_consent(True)
    assert c.status()["next_due"] is None
    c.tick(T0)
    due = c.status()["next_due"]
    assert isinstance(due, int) and T0 <= due < T0 + WEEK
    # On disk: a second client on the same directory sees it without ticking.
    other = clients(state_dir, collector.url)
    assert other.status()["next_due"] == due
    assert collector.requests == []
    # And acts on it: nothing just before, the report at the due time.
    other.tick(due - 1)
    other.flush(FLUSH_MS)
    assert collector.requests == []
    send_due(other, collector, due)


def test_first_due_time_is_uniform_over_seven_days(tmp_path, clients):
    n = 200
    endpoint = f"http://127.0.0.1:{free_port()}/v1/report"
    offsets = []
    for i in range(n):
        c = clients(tmp_path / f"s{i}", endpoint)
        c.set_consent(True)
        c.tick(T0)
        due = c.status()["next_due"]
        assert T0 <= due < T0 + WEEK, due - T0
        offsets.append((due - T0) / WEEK)
        c.close()
    # Kolmogorov-Smirnov against U(0, 1). The critical value for alpha = 0.001
    # is about 1.95 / sqrt(n) = 0.138; 0.16 keeps false alarms below ~1e-4.
    xs = sorted(offsets)
    d = max(max((i + 1) / n - x, x - i / n) for i, x in enumerate(xs))
    assert d < 0.16, f"KS statistic {d:.3f}: first due times are not uniform over the week"
    # Chi-square over the 7 days (6 degrees of freedom; p = 1e-4 at 27.9).
    counts = [0] * 7
    for x in offsets:
        counts[min(int(x * 7), 6)] += 1
    expected = n / 7
    chi2 = sum((k - expected) ** 2 / expected for k in counts)
    assert chi2 < 30, f"chi-square {chi2:.1f} for per-day counts {counts}"
    # Not all on whole hours or minutes: the phase has second resolution.
    assert len({round(x * WEEK) % 60 for x in offsets}) > 30


def test_a_simulated_year_sends_weekly_and_the_time_of_week_drifts(clients, state_dir, collector):
    c, first = scheduled(clients, state_dir, collector.url)
    step = 600
    end = T0 + 365 * DAY
    sent = drive(c, collector, T0 + step, end, step)
    assert first <= sent[0] < first + step
    # About 51 a year: every gap is 7 days plus 0-6 h (plus the tick step).
    assert 50 <= len(sent) <= 52, f"{len(sent)} reports in a year"
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert all(WEEK <= g < WEEK + LATER_JITTER + step for g in gaps), [(g - WEEK) / HOUR for g in gaps]
    # Issue 10: the arrival time modulo a week must not be a per-installation
    # tag. Drawn afresh, it wanders over most of a day within a year.
    phases = sorted((t - first) % WEEK for t in sent)
    assert phases[-1] - phases[0] > 12 * HOUR, "the time of week stays put"
    assert len({p // step for p in phases}) > 30
    assert len(collector.requests) == len(sent)
    h = reports(c)
    assert len(h) == min(len(sent), 52)
    assert [r["at"] for r in h] == sorted(sent, reverse=True)[: len(h)]
    assert all(r["outcome"] == "delivered" for r in h)
    assert len({json.loads(r.body)["report_id"] for r in collector.requests}) == len(sent)
    assert c.status()["last_sent"] == sent[-1]


@pytest.mark.parametrize("jump", [10 * DAY + 777, 10 * 365 * DAY + 777], ids=["10-days", "10-years"])
def test_far_forward_jump_catches_up_once(clients, state_dir, collector, jump):
    c, due = scheduled(clients, state_dir, collector.url)
    send_due(c, collector, due)
    far = due + jump
    step = 300
    sent = drive(c, collector, far, far + WEEK + LATER_JITTER + 2 * HOUR, step)
    assert len(sent) == 2, f"expected one catch-up and one on-schedule report, got {[(t - far) for t in sent]}"
    assert far < sent[0] <= far + CATCHUP_MAX_DELAY + step, "the catch-up waits a small random delay"
    assert sent[0] + WEEK <= sent[1] < sent[0] + WEEK + LATER_JITTER + step, "then 7 days + 0-6 h later"


def test_clock_set_back_a_few_days_waits_for_seven_days(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    send_due(c, collector, due)
    due2 = later_due(c, due)
    assert drive(c, collector, due - 3 * DAY, due2, 600) == [], "a report within 7 days"
    send_due(c, collector, due2)
    assert drive(c, collector, due2 - 3 * DAY, due2 + WEEK, 600) == []


def test_clock_set_back_three_weeks_for_one_tick_sends_nothing_twice(clients, state_dir, collector):
    """Issue 10: the slot schedule re-based on a clock three weeks back and sent
    the delivered slot again ten minutes after the first report."""
    c, due = scheduled(clients, state_dir, collector.url)
    send_due(c, collector, due)
    c.tick(due + 300 - 3 * WEEK)
    c.flush(FLUSH_MS)
    sent = drive(c, collector, due + 600, due + 2 * WEEK, 600)
    assert sent and sent[0] >= due + WEEK, f"second report {(sent[0] - due) / 60:.0f} min after the first"
    assert len(collector.requests) == 1 + len(sent)


def test_clock_set_back_a_year_sends_nothing_within_seven_days_of_the_last_report(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    send_due(c, collector, due)
    back = due - 365 * DAY + 12345
    step = 3600
    # Living a year in the past: the last report left "in the future", so a
    # new one would be within 7 days of it by the clock's reading.
    assert drive(c, collector, back, back + 30 * DAY, step) == []
    # Back to the real time: the floor still holds.
    sent = drive(c, collector, due + step, due + 2 * WEEK, 600)
    assert sent and sent[0] >= due + WEEK


def test_refused_report_then_consent_no_yes_keeps_seven_days(clients, state_dir):
    """Issue 10: a 400 did not count as sent, and a consent no -> yes then sent
    a second report within hours."""
    with Collector() as col:
        col.replies.append(Reply(400, body=b"bad"))
        c, due = scheduled(clients, state_dir, col.url)
        send_due(c, col, due)
        c.set_consent(False)
        c.set_consent(True)
        sent = drive(c, col, due + 60, due + 2 * WEEK, 600)
        assert sent and sent[0] >= due + WEEK, f"{(sent[0] - due) / HOUR:.1f} h after the refused report"


def test_catch_up_late_in_the_week_then_the_next_report_keeps_seven_days(clients, state_dir, collector):
    """Issue 10: a catch-up at the end of a slot and the next slot's report
    left 51 minutes apart."""
    c, due = scheduled(clients, state_dir, collector.url)
    late = due + WEEK - HOUR  # the host comes back an hour before a slot would have ended
    sent = drive(c, collector, late, late + HOUR, 60) + drive(c, collector, late + HOUR, late + 2 * WEEK, 600)
    assert late < sent[0] <= late + CATCHUP_MAX_DELAY + 60
    assert all(b - a >= WEEK for a, b in zip(sent, sent[1:])), [(b - a) / 60 for a, b in zip(sent, sent[1:])]


# --------------------------------------------------------------------------
# transport outcomes


def test_connection_refused_is_a_failed_attempt_and_retried(clients, state_dir):
    endpoint = f"http://127.0.0.1:{free_port()}/v1/report"
    c, due = scheduled(clients, state_dir, endpoint)
    c.tick(due)
    c.flush(FLUSH_MS)
    st = c.status()
    assert st["last_error"], st
    assert st["attempts"] == 1 and st["last_sent"] is None
    assert due < st["next_due"] <= due + BACKOFF_FIRST_CEILING
    h = reports(c)
    assert len(h) == 1 and h[0]["outcome"] == "failed" and h[0]["status"] is None
    assert h[0]["attempts"][0]["error"]


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_retryable_status_is_retried_then_delivered(clients, state_dir, status):
    with Collector() as col:
        col.replies.append(Reply(status, body=b"try later"))
        c, due = scheduled(clients, state_dir, col.url)
        first = send_due(c, col, due)
        st = c.status()
        assert str(status) in (st["last_error"] or ""), st
        assert st["attempts"] == 1
        retry_at = st["next_due"]
        assert due < retry_at <= due + BACKOFF_FIRST_CEILING
        h = reports(c)
        assert (h[0]["outcome"], h[0]["status"]) == ("failed", status)
        c.tick(retry_at - 1)
        c.flush(FLUSH_MS)
        assert len(col.requests) == 1, "retried before its due time"
        second = send_due(c, col, retry_at)
        assert second.body == first.body, "the retry sends the same report"
        st = c.status()
        assert st["last_error"] is None and st["attempts"] == 0 and st["last_sent"] == retry_at
        later_due(c, due)  # counted from the first attempt: the moment the report left
        h = reports(c)
        assert len(h) == 1, "a retry is an attempt of the same report"
        assert [(a["outcome"], a["status"]) for a in h[0]["attempts"]] == [("failed", status), ("delivered", 200)]
        assert (h[0]["outcome"], h[0]["status"], h[0]["at"]) == ("delivered", 200, retry_at)


def test_503_retry_after_is_honoured_and_persisted_as_absolute_time(clients, state_dir):
    with Collector() as col:
        col.replies.append(Reply(503, headers={"Retry-After": "7200"}))
        c, due = scheduled(clients, state_dir, col.url)
        send_due(c, col, due)
        assert c.status()["next_due"] == due + 7200
        c.close()
        # A new client (as after a restart) reads the absolute time from disk.
        c2 = clients(state_dir, col.url)
        assert c2.status()["next_due"] == due + 7200
        assert drive(c2, col, due + 60, due + 7200, 60) == []
        send_due(c2, col, due + 7200)
        assert reports(c2)[0]["outcome"] == "delivered"
        assert c2.status()["last_error"] is None


@pytest.mark.parametrize("status", [400, 404, 413])
def test_other_4xx_drops_the_report_without_retry(clients, state_dir, status):
    with Collector() as col:
        col.replies.append(Reply(status, body=b"bad report"))
        c, due = scheduled(clients, state_dir, col.url)
        first = send_due(c, col, due)
        st = c.status()
        assert str(status) in (st["last_error"] or "")
        due2 = later_due(c, due)
        assert st["attempts"] == 0
        assert drive(c, col, due + 1, due2, 15 * 60) == [], "a refused report was retried"
        h = reports(c)
        assert (h[0]["outcome"], h[0]["status"]) == ("refused", status)
        second = send_due(c, col, due2)
        assert json.loads(second.body)["report_id"] != json.loads(first.body)["report_id"], "the dropped report came back"
        assert c.status()["last_error"] is None


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed(clients, state_dir, status):
    with Collector() as col, Collector() as target:
        col.replies.append(Reply(status, headers={"Location": target.url}))
        c, due = scheduled(clients, state_dir, col.url)
        send_due(c, col, due)
        time.sleep(0.2)
        assert target.requests == [], "the redirect was followed"
        h = reports(c)
        assert h[0]["outcome"] != "delivered" and h[0]["status"] == status
        assert c.status()["last_error"]
        drive(c, [col, target], due + 1, due + 2 * HOUR, 60)
        assert target.requests == []


def test_all_retries_stop_after_five_attempts_of_a_report(clients, state_dir):
    with Collector(default=Reply(500, body=b"down")) as col:
        c, due = scheduled(clients, state_dir, col.url)
        sent = drive(c, col, due, due + WEEK, 60)
        assert len(sent) == MAX_ATTEMPTS, f"{len(sent)} attempts of one report"
        assert sent[-1] - sent[0] < 2 * HOUR, "backoff is capped, attempts do not spread over days"
        st = c.status()
        assert st["last_error"] and "500" in st["last_error"]
        due2 = later_due(c, due)
        assert st["attempts"] == 0
        h = reports(c)
        assert len(h) == 1 and [a["outcome"] for a in h[0]["attempts"]] == ["failed"] * MAX_ATTEMPTS
        assert [a["at"] for a in h[0]["attempts"]] == sent
        assert len({json.loads(r.body)["report_id"] for r in col.requests}) == 1, "retries carry the report's id"
        col.default = Reply(200)
        send_due(c, col, due2)
        assert c.status()["last_error"] is None
        assert reports(c)[0]["outcome"] == "delivered"


@pytest.mark.parametrize("status", [200, 500])
def test_oversized_response_is_neither_buffered_nor_awaited(clients, state_dir, status):
    """The collector answers with a 50 MB body. The library reads a few KiB
    and hangs up: the server cannot write more than the socket buffers hold."""
    size = 50 << 20
    with Collector() as col:
        col.replies.append(Reply(status, huge=size))
        c, due = scheduled(clients, state_dir, col.url)
        t = time.monotonic()
        send_due(c, col, due)
        elapsed = time.monotonic() - t
        assert elapsed < 10, f"the oversized answer took {elapsed:.1f} s"
        deadline = time.monotonic() + 10
        while not col.huge_written and time.monotonic() < deadline:
            time.sleep(0.05)
        assert col.huge_written, "the library kept the connection open"
        written = col.huge_written[0]
        assert written < size // 5, f"the library read {written >> 20} MB of the answer"
        r = reports(c)[0]
        assert r["status"] == status
        assert r["outcome"] == ("delivered" if status == 200 else "failed")
        err = c.status()["last_error"]
        if status == 200:
            assert err is None
        else:
            assert err and "500" in err and len(err) < 1000, err


def test_server_that_never_answers_times_out_SLOW_30s(clients, state_dir):
    """The one slow test: a server that accepts the connection and never
    replies. The overall timeout (30 s) ends the attempt."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    conns = []

    def accept():
        try:
            while True:
                conns.append(listener.accept()[0])
        except OSError:
            pass

    accepting = threading.Thread(target=accept, daemon=True)
    accepting.start()
    try:
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/report"
        c, due = scheduled(clients, state_dir, endpoint)
        t = time.monotonic()
        c.tick(due)
        assert time.monotonic() - t < 1, "tick waited for the network"
        assert c.status()["sending"] is True
        with pytest.raises(ot.TelemetryError) as e:
            c.flush(1000)
        assert e.value.code == ot.TEL_ERR_TIMEOUT
        c.flush(45_000)
        elapsed = time.monotonic() - t
        assert 25 <= elapsed <= 40, f"the attempt ended after {elapsed:.1f} s, expected the 30 s overall timeout"
        assert conns, "the library never connected"
        st = c.status()
        assert st["sending"] is False and st["attempts"] == 1
        assert st["last_error"] and "tim" in st["last_error"].lower(), st["last_error"]
        h = reports(c)
        assert (h[0]["outcome"], h[0]["status"]) == ("failed", None)
    finally:
        stop_accept_loop(listener, accepting)
        for s in conns:
            s.close()


# --------------------------------------------------------------------------
# flush and close


def test_flush_with_nothing_in_flight_returns_at_once(clients, state_dir, collector):
    c = clients(state_dir, collector.url)
    t = time.monotonic()
    c.flush(60_000)
    c.set_consent(True)
    c.tick(T0)
    c.flush(60_000)
    c.tick(T0 + 60)  # not due
    c.flush(60_000)
    assert time.monotonic() - t < 1


def test_close_during_a_long_send_returns_at_once(clients, state_dir):
    with Collector() as col:
        col.replies.append(Reply(200, delay=6))  # a send that takes 6 s
        c, due = scheduled(clients, state_dir, col.url)
        t = time.monotonic()
        c.tick(due)
        assert time.monotonic() - t < 0.5, "tick waited for the network"
        assert len(col.wait_for(1, 5)) == 1
        assert c.status()["sending"] is True
        t = time.monotonic()
        with pytest.raises(ot.TelemetryError) as e:
            c.flush(300)
        assert e.value.code == ot.TEL_ERR_TIMEOUT
        assert time.monotonic() - t < 2
        t = time.monotonic()
        c.close()
        assert time.monotonic() - t < 1, "tel_close waited for the slow send"
        # The send was interrupted (its connection shut down) and its outcome
        # recorded before tel_close returned; the report stays pending and is
        # sent again later with the same id (tests/python/test_close_interrupts.py).
        other = clients(state_dir, col.url)
        h = reports(other)
        assert [(e["outcome"], e["status"]) for e in h] == [("interrupted", None)], h
        assert other.status()["sending"] is False
        time.sleep(0.5)
        assert len(col.requests) == 1


# --------------------------------------------------------------------------
# several processes, one state directory


def test_processes_ticking_the_same_due_time_send_once(clients, state_dir, collector, child):
    c, due = scheduled(clients, state_dir, collector.url)
    cfg = make_config(state_dir, endpoint=collector.url)
    at = due
    for slot in range(3):
        cmds = [["wait"], ["tick", at], ["flush", FLUSH_MS], ["tick", at + 120], ["flush", FLUSH_MS]]
        procs = [child(cfg, cmds) for _ in range(4)]
        for p in procs:  # all are open and waiting: release them together
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [finish(p) for p in procs]  # (some end while another still sends)
        time.sleep(0.2)
        assert len(collector.requests) == slot + 1, f"slot {slot}: {len(collector.requests) - slot} reports"
        h = reports(c)
        assert len(h) == slot + 1 and h[0]["outcome"] == "delivered" and h[0]["at"] == at
        assert h[0]["body"] == collector.requests[-1].body.decode()
        assert all(o["status"]["consent"] == "granted" for o in outs)
        at = later_due(c, at)


def test_killed_sender_counts_as_interrupted_and_a_retry_delivers_once_under_the_same_id(clients, state_dir, collector, child):
    collector.replies.append(Reply(200, delay=30))
    c, due = scheduled(clients, state_dir, collector.url)
    p = child(make_config(state_dir, endpoint=collector.url), [["tick", due], ["sleep", 60]])
    assert len(collector.wait_for(1, 10)) == 1, "the child did not send"
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    # Within the lease nobody else sends.
    c.tick(due + 10)
    c.flush(FLUSH_MS)
    c.tick(due + LEASE - 1)
    c.flush(FLUSH_MS)
    time.sleep(0.2)
    assert len(collector.requests) == 1
    assert reports(c)[0]["outcome"] == "in_flight"
    # After the lease: a failed attempt ("interrupted"), then the retry.
    c.tick(due + LEASE)
    c.flush(FLUSH_MS)
    assert len(collector.requests) == 2
    # Issue 10: the retry carries the killed send's report id (saved with the
    # in-flight marker), so the collector can de-duplicate the two.
    ids = [json.loads(r.body)["report_id"] for r in collector.requests]
    assert ids[0] == ids[1], ids
    assert collector.requests[0].body == collector.requests[1].body
    h = reports(c)
    assert len(h) == 1 and h[0]["report_id"] == ids[0]
    assert [a["outcome"] for a in h[0]["attempts"]] == ["interrupted", "delivered"]
    assert h[0]["attempts"][0]["error"]
    st = c.status()
    assert st["last_error"] is None and st["last_sent"] == due + LEASE
    # The report left at the killed attempt: the next one 7 days + 0-6 h after it.
    due2 = later_due(c, due)
    assert drive(c, collector, due + LEASE + 60, due2, 15 * 60) == []


# ----------------------------------------------------------------------------- status "sending" across processes

_SLOW_SENDER = r"""
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import json, optin_telemetry as ot
c = ot.Client(json.loads(sys.argv[3]))
c.tick(int(sys.argv[4]))
print("started", flush=True)
c.flush(60_000)
"""


def test_status_sending_follows_the_live_sender_in_another_process(state_dir):
    """`sending` is true while another process transmits, false once it died."""
    with Collector(default=Reply(delay=30)) as col:
        cfg = make_config(state_dir, col.url)
        with ot.Client(cfg) as c:
            c.set_consent(True)
            c.tick(1_900_000_000)
            due = c.status()["next_due"]
            child = subprocess.Popen(
                [sys.executable, "-c", _SLOW_SENDER, str(ROOT / "bindings" / "python"), str(ROOT / "tests" / "python"), json.dumps(cfg), str(due)],
                stdout=subprocess.PIPE, text=True)
            try:
                assert child.stdout.readline().strip() == "started"
                col.wait_for(1, timeout=10)
                assert c.status()["sending"] is True, "the other process is transmitting"
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait()
            st = c.status()
            assert st["sending"] is False, "a killed sender is not sending, whatever its lease says"
            assert st["next_due"] is not None
