"""Model-based test (issue 10 "Evidence"): a seeded random walk over the real
cdylib (ctypes binding), a real loopback collector, real files and real child
processes killed with SIGKILL, checked against a small reference model.

Operations: open/close of the client, consent yes/no, value changes, ticks
with clock advances and jumps both ways, the collector's answer (2xx, 4xx,
5xx with and without Retry-After), a sender process killed mid-send, and a
corrupted state file. Invariants, checked at every step:
  1. no request without valid consent (a "yes" in force, as the model knows it);
  2. never two distinct reports (report ids) within 7 days by the clock of the
     tick that sent them;
  3. every body equals the preview taken right before the tick that sent it;
  4. a corrupted state never reads as consent (the client is undecided after);
  5. every attempt of one report id carries the same bytes (review of issue 10).
Fixed seeds and a bounded number of steps, so the run is repeatable."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import optin_telemetry as ot
from collector import Collector, Reply
from conftest import ROOT, SCHEMA, make_config

WEEK = 7 * 24 * 3600
FLUSH_MS = 15_000
STEPS = 400

KILLED_SENDER = r"""
import json, sys, time
import optin_telemetry as ot
c = ot.Client(json.loads(sys.argv[1]))
c.tick(int(sys.argv[2]))
print("ticked", flush=True)
time.sleep(60)
"""


def random_values(rng):
    return {
        "trial": rng.choice([True, False]),
        "edition": rng.choice(["standard", "enterprise", "smb"]),
        "users": rng.randrange(0, 200),
        "profiles": rng.sample(["imap", "exchange", "m365", "gmail", "pst"], rng.randrange(0, 4)),
    }


class Walk:
    def __init__(self, seed, state_dir, collector, tmp_path):
        self.rng = random.Random(seed)
        self.dir = state_dir
        self.col = collector
        self.tmp = tmp_path
        self.cfg = make_config(state_dir, endpoint=collector.url)
        self.client = ot.Client(self.cfg)
        self.consent = None  # the model: None, True, False
        self.now = 1_800_000_000
        self.first_seen = {}  # report id -> clock of the tick that first sent it
        self.body_of = {}  # report id -> the bytes of its first attempt
        self.seen = 0

    def check_new_requests(self, tick_time, preview, allowed):
        reqs = self.col.requests[self.seen:]
        self.seen = len(self.col.requests)
        for r in reqs:
            assert allowed, f"a request at {tick_time} without a yes in force (model consent {self.consent})"
            body = r.body.decode()
            if preview is not None:
                assert body == preview, "the body differs from the preview taken right before the tick"
            rid = json.loads(body)["report_id"]
            # A retry is the same report: the very bytes of its first attempt
            # (two bodies under one id would show the collector two draws).
            assert self.body_of.setdefault(rid, body) == body, f"report {rid} was retried with other bytes"
            if rid not in self.first_seen:
                for other, t in self.first_seen.items():
                    assert abs(tick_time - t) >= WEEK, f"reports {other} and {rid} left {abs(tick_time - t)} s apart"
                self.first_seen[rid] = tick_time

    def tick(self):
        preview = self.client.preview()
        allowed = self.consent is True
        self.client.tick(self.now)
        self.client.flush(FLUSH_MS)
        self.check_new_requests(self.now, preview, allowed)

    def step(self):
        r = self.rng.random()
        if r < 0.03:
            self.client.close()
            self.client = ot.Client(self.cfg)
        elif r < 0.07:
            self.consent = self.rng.random() < 0.85
            self.client.set_consent(self.consent)
        elif r < 0.13:
            self.client.set_values(random_values(self.rng))
        elif r < 0.19:
            self.col.default = self.rng.choice([Reply(200), Reply(200), Reply(400), Reply(503), Reply(500, headers={"Retry-After": str(self.rng.randrange(0, 3 * 86400))})])
        elif r < 0.20:
            self.corrupt()
        elif r < 0.21:
            self.kill_a_sender()
        else:
            jump = self.rng.random()
            if jump < 0.04:
                self.now -= self.rng.randrange(1, 30 * 86400)  # clock set back
            elif jump < 0.08:
                self.now += self.rng.randrange(1, 200 * 86400)  # clock set forward
            else:
                self.now += self.rng.choice([60, 600, 3600, 6 * 3600, 86400, 2 * 86400])
            self.tick()

    def corrupt(self):
        path = self.dir / "state.json"
        if path.exists():
            data = path.read_bytes()
            path.write_bytes(self.rng.choice([data[: len(data) // 2], b"\xff\xfe", b'{"format":1}', data.replace(b'"granted"', b'"yes"')]))
            # Another client (as a second process would) reads it first.
            with ot.Client(self.cfg) as other:
                assert other.consent is not ot.Consent.GRANTED or b'"granted"' in path.read_bytes(), "a corrupted state read as consent"
            if not path.exists() or b'"granted"' not in path.read_bytes():
                self.consent = None
            assert (self.client.consent is ot.Consent.GRANTED) == (self.consent is True)

    def kill_a_sender(self):
        """A second process starts a send (if one is due) and is killed while
        the collector holds the request."""
        self.col.replies.append(Reply(200, delay=5))
        preview = self.client.preview()
        allowed = self.consent is True
        script = self.tmp / "killed_sender.py"
        script.write_text(KILLED_SENDER)
        env = {"PYTHONPATH": str(ROOT / "bindings" / "python"), "OPTIN_TELEMETRY_LIB": str(ot.library_path()), "PATH": "/usr/bin:/bin"}
        before = len(self.col.requests)
        p = subprocess.Popen([sys.executable, str(script), json.dumps(self.cfg), str(self.now)], stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert p.stdout.readline().strip() == "ticked"
            self.col.wait_for(before + 1, 3)  # a send, if one was due, is on the wire now
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        finally:
            if p.poll() is None:
                p.kill()
        if len(self.col.requests) == before:
            self.col.replies.clear()
        self.check_new_requests(self.now, preview, allowed)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_walk_keeps_the_promises(seed, tmp_path, monkeypatch):
    monkeypatch.delenv("OPTIN_TELEMETRY_DISABLE", raising=False)
    with Collector() as col:
        w = Walk(seed, tmp_path / "state", col, tmp_path)
        try:
            for _ in range(STEPS):
                w.step()
        finally:
            w.client.close()
        # The walk did exercise sending (a walk that never sends proves nothing).
        assert len(w.first_seen) >= 2, f"only {len(w.first_seen)} reports in the walk"
