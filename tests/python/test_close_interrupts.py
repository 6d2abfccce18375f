"""tel_close during a stalled send (issue 20): it returns promptly, the send is
interrupted, and its report goes out later with the same id, stored once by
the real collector (optin-collector, SQLite) on loopback.

The servers here are loopback relays whose connections behave by script:
"silent" accepts and never reads a byte; "stall" reads the whole request,
hands it to the collector, and never answers; "forward" hands it over and
relays the answer."""

import http.client
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from collector import read_request_body, stop_accept_loop
from conftest import ROOT, T0, make_config, scheduled

import optin_telemetry as ot

COLLECTOR_BIN = ROOT / "target" / "debug" / "optin-collector"


class Relay:
    def __init__(self, script, upstream=None):
        self.script = list(script)  # one behaviour per connection; then "forward"
        self.upstream = upstream  # (host, port) of a collector, or None: answer 204 itself
        self.bodies = []  # every request body read, in order
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
                how = self.script.pop(0) if self.script else "forward"
                if how == "silent":
                    self.held.append(conn)
                    continue
                threading.Thread(target=self._handle, args=(conn, how), daemon=True).start()
        except OSError:
            pass

    def _handle(self, conn, how):
        conn.settimeout(10)
        body = read_request_body(conn)
        if body is None:
            return
        self.bodies.append(body)
        status, answer = 204, b""
        if self.upstream:
            up = http.client.HTTPConnection(*self.upstream, timeout=10)
            up.request("POST", "/v1/report", body=body, headers={"Content-Type": "application/json"})
            r = up.getresponse()
            status, answer = r.status, r.read()
            up.close()
        if how == "stall":
            self.held.append(conn)
            return
        reason = {200: b"OK", 204: b"No Content"}.get(status, b"X")
        conn.sendall(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (status, reason, len(answer)) + answer)
        conn.close()

    def close(self):
        stop_accept_loop(self.sock, self.thread)
        for c in self.held:
            c.close()


def history(client):
    return client.history()["reports"]


def close_during_stalled_send(state_dir, relay, due):
    """Opens a client with a send due, starts it, waits until it is in flight
    on the relay, and returns (seconds tel_close took, the report id, the
    time the attempt started)."""
    c = ot.Client(make_config(state_dir, endpoint=relay.url))
    c.set_values({"trial": True})
    due = tick_until_sending(c, due)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (history(c) and history(c)[0]["outcome"] == "in_flight" and c.status()["sending"]):
        time.sleep(0.005)
    h = history(c)[0]
    assert h["outcome"] == "in_flight", h
    time.sleep(0.05)  # the request is written and the client waits for the answer
    t = time.monotonic()
    c.close()
    return time.monotonic() - t, h["report_id"], due


def tick_until_sending(c, t):
    """Ticks at `t`; a tick long after the due time draws a catch-up moment
    (up to an hour later): ticks again then. Returns the tick that sent."""
    c.tick(t)
    st = c.status()
    if not st["sending"] and isinstance(st["next_due"], int) and st["next_due"] > t:
        t = st["next_due"]
        c.tick(t)
    return t


def test_close_during_a_stalled_send_is_prompt_and_the_report_goes_out_later_once(clients, state_dir):
    """A server that accepted the connection and stopped reading: tel_close
    returns within a bound, the attempt is "interrupted", and the next tick
    after its retry time sends the same report (same id, same bytes) once."""
    relay = Relay(["silent"] * 4)
    try:
        times = []
        c, due = scheduled(clients, state_dir, relay.url)
        c.close()
        ids = set()
        # Four interrupted attempts (a fifth failure would give the report up),
        # each tick 7 h after the last: past any retry time (at most 6 h).
        t = due
        for i in range(4):
            took, rid, t = close_during_stalled_send(state_dir, relay, t)
            t += 7 * 3600
            times.append(took)
            ids.add(rid)
            other = ot.Client(make_config(state_dir, endpoint=relay.url))
            h = history(other)
            assert len(h) == 1 and h[0]["outcome"] == "interrupted", h
            assert "closed during the send" in h[0]["attempts"][-1]["error"], h
            assert other.status()["sending"] is False
            other.close()
        print(f"tel_close during a stalled send: median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms over {len(times)}")
        assert max(times) < 1.0, times
        assert len(ids) == 1, f"every interrupted attempt must carry the same report id: {ids}"
        (rid,) = ids
        assert relay.bodies == [], "the silent server read nothing"
        # The next tick after the retry time: the same report, delivered once.
        last = ot.Client(make_config(state_dir, endpoint=relay.url))
        tick_until_sending(last, t)
        last.flush(15_000)
        h = history(last)
        assert [(e["report_id"], e["outcome"]) for e in h] == [(rid, "delivered")], h
        assert [a["outcome"] for a in h[0]["attempts"]] == ["interrupted"] * 4 + ["delivered"]
        last.close()
        assert [json.loads(b)["report_id"] for b in relay.bodies] == [rid]
    finally:
        relay.close()


def test_interrupted_report_is_stored_once_by_the_real_collector(state_dir, tmp_path):
    if not COLLECTOR_BIN.exists():
        pytest.skip(f"{COLLECTOR_BIN} is not built (cargo build -p optin-collector)")
    db = tmp_path / "collector.db"
    cfg = make_config(state_dir)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    subprocess.run([str(COLLECTOR_BIN), "schema", "add", str(tmp_path / "config.json"), "--db", f"sqlite:{db}"], check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        admin = s.getsockname()[1]
    server = subprocess.Popen([str(COLLECTOR_BIN), "serve", "--db", f"sqlite:{db}", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    relay = None
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "optin-collector serve did not start"
                time.sleep(0.1)
        # First attempt: the collector gets (and stores) the report, the
        # client never hears back and is closed; the retry is answered.
        relay = Relay(["stall"], upstream=("127.0.0.1", port))
        c = ot.Client(make_config(state_dir, endpoint=relay.url))
        c.set_consent(True)
        c.tick(T0)
        due = c.status()["next_due"]
        c.close()
        took, rid, t = close_during_stalled_send(state_dir, relay, due)
        assert took < 1.0, took
        assert len(relay.bodies) == 1
        later = ot.Client(make_config(state_dir, endpoint=relay.url))
        assert history(later)[0]["outcome"] == "interrupted"
        tick_until_sending(later, t + 2 * 3600)  # after any first retry time (at most 60 s)
        later.flush(15_000)
        h = history(later)
        assert [(e["report_id"], e["outcome"]) for e in h] == [(rid, "delivered")], h
        assert [a["outcome"] for a in h[0]["attempts"]] == ["interrupted", "delivered"]
        later.close()
        assert len(relay.bodies) == 2 and relay.bodies[0] == relay.bodies[1], "the retry must send the same bytes"
        assert json.loads(relay.bodies[0])["report_id"] == rid
        rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM reports").fetchone()[0]
        assert rows == 1, f"the collector stored {rows} rows for one report sent twice"
    finally:
        if relay:
            relay.close()
        server.terminate()
        server.wait(10)
