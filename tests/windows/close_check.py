#!/usr/bin/env python3
"""tel_close during a stalled WinHTTP send, under Wine (issue 20, Windows).

usage: close_check.py <runner> <close_host.exe> <work-dir> [tries]

One loopback server (consent is bound to the endpoint, so the same URL
throughout), stalled during the "stall" runs: it reads the whole request and
never answers; answering 204 during the "deliver" runs. For each try (10 by
default; a fresh state_dir each): close_host.exe stall starts the send,
waits until it is in flight, and times tel_close; then close_host.exe
deliver ticks after the retry time. Checks: every tel_close under 1 s (median and max
printed); the stalled server got the report; the attempt is recorded as
"interrupted" and the report stays pending; the later run delivers it once,
same report id, same bytes.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from collector import read_request_body, stop_accept_loop  # noqa: E402
from conftest import SCHEMA  # noqa: E402
from wine_checks import check, failures, windows_path  # noqa: E402


class Server:
    """Reads whole requests; while `how` is "stall" holds each connection
    unanswered (body in `stalled`), else answers 204 (body in `answered`)."""

    def __init__(self):
        self.how = "stall"
        self.stalled = []
        self.answered = []
        self.held = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/report"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
        except OSError:
            pass

    def _handle(self, conn):
        conn.settimeout(60)
        body = read_request_body(conn)
        if body is None:
            return
        if self.how == "stall":
            self.stalled.append(body)
            self.held.append(conn)  # never answered
            return
        self.answered.append(body)
        conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        conn.close()

    def close(self):
        stop_accept_loop(self.sock, self.thread)
        for c in self.held:
            c.close()


def run(runner, exe, mode, endpoint, state_dir, now):
    cfg = {"product": "Mock Archiver", "product_version": "1.0.0", "endpoint": endpoint,
           "state_dir": windows_path(state_dir), "schema": SCHEMA}
    env = dict(os.environ, OPTIN_TEST_CONFIG=json.dumps(cfg), OPTIN_TEST_NOW=str(now))
    env.pop("OPTIN_TELEMETRY_DISABLE", None)
    p = subprocess.run([runner, str(exe), mode], stdin=subprocess.DEVNULL, capture_output=True, timeout=120, env=env)
    out = p.stdout.decode("utf-8", "replace").replace("\r", "")
    lines = {}
    for l in out.split("\n"):
        if ": " in l:
            k, v = l.split(": ", 1)
            lines.setdefault(k, v)
    if p.returncode != 0:
        sys.stdout.write(out[-2000:] + p.stderr.decode("utf-8", "replace")[-2000:])
    return p.returncode, lines


def main():
    runner, exe, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    tries = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    server = Server()
    times = []
    try:
        for i in range(tries):
            state = work / f"state-{i}"
            before = len(server.stalled)
            server.how = "stall"
            rc, out = run(runner, exe, "stall", server.url, state, int(time.time()))
            if not check(rc == 0 and "CLOSE_MS" in out, f"try {i}: close_host stall exits 0 and times tel_close (exit {rc})"):
                continue
            ms = float(out["CLOSE_MS"])
            times.append(ms)
            check(len(server.stalled) == before + 1, f"try {i}: the stalled server got the whole report before tel_close ({ms:.1f} ms)")
            body = server.stalled[-1] if len(server.stalled) > before else b"{}"
            rid = json.loads(body).get("report_id")
            # After any first retry time (1 s to 1 min after the attempt).
            server.how = "answer"
            rc, out = run(runner, exe, "deliver", server.url, state, int(out["DUE"]) + 2 * 3600)
            if not check(rc == 0 and "HISTORY_AFTER" in out, f"try {i}: close_host deliver exits 0 (exit {rc})"):
                continue
            h = json.loads(out["HISTORY"])["reports"]
            check([(e["report_id"], e["outcome"]) for e in h] == [(rid, "interrupted")],
                  f"try {i}: after tel_close the report {rid} is pending, its attempt \"interrupted\" (got {[(e['report_id'], e['outcome']) for e in h]})")
            if h and h[0]["attempts"]:
                err = h[0]["attempts"][-1].get("error") or ""
                check("closed during the send" in err, f"try {i}: the attempt's error says so ({err[:80]!r}...)")
            h = json.loads(out["HISTORY_AFTER"])["reports"]
            check([(e["report_id"], e["outcome"]) for e in h] == [(rid, "delivered")] and [a["outcome"] for a in h[0]["attempts"]] == ["interrupted", "delivered"],
                  f"try {i}: the next tick after the retry time delivers it (attempts {[a['outcome'] for a in h[0]['attempts']] if h else []})")
            got = [b for b in server.answered if json.loads(b).get("report_id") == rid]
            check(got == [body], f"try {i}: the answering server got it once, same id and bytes ({len(got)} copies)")
        time.sleep(0.5)  # anything sent late would still be counted
        check(len(server.stalled) == tries, f"stalled: one request per try ({len(server.stalled)})")
        check(len(server.answered) == tries, f"answered: one request per try ({len(server.answered)})")
    finally:
        server.close()
    if times:
        print(f"tel_close during a stalled WinHTTP send under Wine: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms over {len(times)} tries")
        check(max(times) < 1000, f"every tel_close returned within 1 s (max {max(times):.1f} ms)")
    if failures:
        print(f"FAIL: tel_close during a stalled send under Wine: {len(failures)} check(s) failed")
        return 1
    print("PASS: tel_close during a stalled send under Wine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
