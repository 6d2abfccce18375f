"""`python -m optin_telemetry history --state-dir DIR` (issue 21), run as a
separate process against a state directory whose reports a real client sent
to a real loopback collector: the bodies it prints are the bytes the
collector received, newest first; `--json` is tel_history_json's text; the
command changes nothing in the directory; a missing directory is an error
and is not created."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from collector import Collector, Reply
from conftest import ROOT, make_config, scheduled, send_due

import optin_telemetry as ot


def run_history(state_dir, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"), OPTIN_TELEMETRY_LIB=str(ot.library_path()))
    return subprocess.run([sys.executable, "-m", "optin_telemetry", "history", "--state-dir", str(state_dir), *extra],
                          capture_output=True, env=env, timeout=60)


def snapshot(d):
    """Every file in the directory: name -> (bytes, mtime in ns)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir()) if p.is_file()}


def test_history_prints_the_sent_bodies_byte_for_byte_newest_first(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    c.set_values({"edition": "enterprise", "users": 37, "profiles": ["imap", "pst"]})
    send_due(c, collector, due)
    c.set_values({"edition": "smb", "users": 3})
    due2 = c.status()["next_due"]
    send_due(c, collector, due2)
    c.close()
    sent = [r.body for r in collector.requests]
    assert len(sent) == 2 and sent[0] != sent[1]

    before = snapshot(state_dir)
    p = run_history(state_dir)
    assert p.returncode == 0, p.stderr
    assert p.stderr == b""
    assert snapshot(state_dir) == before, "the history command changed the state directory"

    lines = p.stdout.split(b"\n")
    assert lines[-1] == b"", "the output ends with a newline"
    lines = lines[:-1]
    # Per report: a '#' line, then the body exactly as the collector received it.
    assert len(lines) == 4, p.stdout
    assert lines[0].startswith(b"# 1/2 report ") and lines[2].startswith(b"# 2/2 report ")
    assert [lines[1], lines[3]] == [sent[1], sent[0]]
    for head, body in ((lines[0], sent[1]), (lines[2], sent[0])):
        report_id = json.loads(body)["report_id"]
        assert f"report {report_id}: delivered (HTTP 200)".encode() in head, head
        assert f"{len(body)} bytes".encode() in head, head
    assert p.stdout == b"".join(lines[i] + b"\n" for i in range(4))

    # --json: the library's text unchanged (read again through a client of the installation).
    pj = run_history(state_dir, "--json")
    assert pj.returncode == 0, pj.stderr
    own = ot.Client(make_config(state_dir, endpoint=collector.url))
    try:
        assert pj.stdout == own.history_json().encode() + b"\n"
    finally:
        own.close()
    assert [r["body"].encode() for r in json.loads(pj.stdout)["reports"]] == [sent[1], sent[0]]


def test_history_lists_a_refused_report_with_its_status(clients, state_dir):
    with Collector(default=Reply(status=400, body=b"no")) as refusing:
        c, due = scheduled(clients, state_dir, refusing.url)
        send_due(c, refusing, due)
        c.close()
        body = refusing.requests[0].body
    p = run_history(state_dir)
    assert p.returncode == 0, p.stderr
    head, got, end = p.stdout.split(b"\n")
    assert got == body and end == b""
    assert b": refused (HTTP 400)" in head, head


def test_history_of_a_directory_without_reports(tmp_path):
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    p = run_history(d)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"# no report has left this installation")
    pj = run_history(d, "--json")
    assert json.loads(pj.stdout) == {"reports": []}


def test_history_of_a_missing_directory_fails_and_creates_nothing(tmp_path):
    d = tmp_path / "missing"
    p = run_history(d)
    assert p.returncode == 1
    assert b"is not a directory" in p.stderr and p.stdout == b""
    assert not d.exists()


def test_history_usage_errors_exit_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"))
    for argv in ([], ["history"], ["nonsense"]):
        p = subprocess.run([sys.executable, "-m", "optin_telemetry", *argv], capture_output=True, env=env, timeout=60)
        assert p.returncode == 2, (argv, p.stderr)
