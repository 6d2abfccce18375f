"""Issue 10, through the C ABI against a real TLS server on 127.0.0.1:
- a "no" written by another process while the connection is being set up
  (the server holds the TLS handshake) stops the report before its first byte;
- each report goes over a connection of its own, with `Connection: close`,
  and no TLS session or ticket carries over from one report to the next.

The server is a plain socket + ssl loop (not http.server) so that it can hold
the handshake and see `session_reused` for every connection."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

import optin_telemetry as ot
from collector import stop_accept_loop
from conftest import ROOT, make_config
from pki import make_test_pki

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is needed to make test certificates")

WEEK = 7 * 24 * 3600
T0 = int(time.time())
FLUSH_MS = 20_000


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


class TlsServer:
    """Accepts TCP connections; for each, waits for `release` (so the test can
    hold the handshake), completes TLS, reads one request and answers 200.
    Records per connection: the client's port, whether the TLS session was
    resumed, and every byte of application data received."""

    def __init__(self, pki, hold=False):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}/v1/report"
        self.accepted = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.lock = threading.Lock()
        self.connections = []
        self.done = threading.Condition(self.lock)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _serve(self, conn, peer):
        rec = {"port": peer[1], "handshake": False, "reused": None, "data": b"", "closed_by_client": False}
        self.accepted.set()
        self.release.wait(60)
        conn.settimeout(15)
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
            rec["handshake"] = True
            rec["reused"] = tls.session_reused
            while True:
                head, sep, rest = rec["data"].partition(b"\r\n\r\n")
                if sep:
                    length = next((int(l.split(b":", 1)[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
                    if len(rest) >= length:
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        rec["closed_by_client"] = tls.recv(1) == b""
                        break
                chunk = tls.recv(65536)
                if not chunk:
                    break
                rec["data"] += chunk
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()
            with self.lock:
                self.connections.append(rec)
                self.done.notify_all()

    def wait_connections(self, n, timeout=20.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.connections) < n and time.monotonic() < deadline:
                self.done.wait(deadline - time.monotonic())
            return list(self.connections)

    def close(self):
        stop_accept_loop(self.sock, self.thread)


@pytest.fixture
def tls_server(pki):
    servers = []

    def make(**kw):
        s = TlsServer(pki, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.release.set()
        s.close()


SET_NO = r"""
import json, sys
import optin_telemetry as ot
c = ot.Client(json.loads(sys.argv[1]))
c.set_consent(False)
c.close()
print("no written", flush=True)
"""


def test_no_from_another_process_during_a_slow_handshake_stops_every_byte(pki, tls_server, state_dir, tmp_path, clients):
    server = tls_server(hold=True)
    cfg = make_config(state_dir, server.url, ca_cert_pem=(pki / "ca.pem").read_text())
    c = clients(state_dir, server.url, ca_cert_pem=cfg["ca_cert_pem"])
    c.set_values({"users": 3})
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    c.tick(due)  # the send thread connects; the server holds the handshake
    assert server.accepted.wait(10), "the client did not connect"
    script = tmp_path / "set_no.py"
    script.write_text(SET_NO)
    env = {"PYTHONPATH": str(ROOT / "bindings" / "python"), "OPTIN_TELEMETRY_LIB": str(ot.library_path()), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, str(script), json.dumps(cfg)], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and "no written" in p.stdout, p.stderr
    server.release.set()  # now the handshake completes
    c.flush(FLUSH_MS)
    conns = server.wait_connections(1)
    assert len(conns) == 1 and conns[0]["handshake"], conns
    assert conns[0]["data"] == b"", f"{len(conns[0]['data'])} bytes arrived after the no: {conns[0]['data'][:80]!r}"
    assert c.consent is ot.Consent.DENIED
    assert c.history()["reports"] == [], "an attempt that sent nothing is not in the history"
    st = c.status()
    assert st["sending"] is False and st["next_due"] is None


def test_each_report_uses_a_fresh_connection_and_no_tls_resumption(pki, tls_server, state_dir, clients):
    server = tls_server()
    c = clients(state_dir, server.url, ca_cert_pem=(pki / "ca.pem").read_text())
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    for k in range(3):
        c.tick(due)
        c.flush(FLUSH_MS)
        conns = server.wait_connections(k + 1)
        assert len(conns) == k + 1, conns
        assert c.history()["reports"][0]["outcome"] == "delivered", c.status()
        due = c.status()["next_due"]
    ports = [x["port"] for x in conns]
    assert len(set(ports)) == 3, f"reports shared a TCP connection: client ports {ports}"
    assert [x["reused"] for x in conns] == [False, False, False], "a TLS session was resumed from an earlier report"
    for x in conns:
        head = x["data"].split(b"\r\n\r\n", 1)[0].lower()
        assert b"\r\nconnection: close" in head, head
        assert x["closed_by_client"], "the client kept the connection open after the answer"
