#!/usr/bin/env python3
"""Windows in a company network, under Wine: Group Policy, the system proxy,
proxy authentication, the certificate store, and a host linked with an
MSVC-style linker. Every check runs a real Windows host against the release
DLL, a loopback collector and (where named) a loopback proxy on the Linux side.

usage: network_check.py <runner> <host.exe> <host_msvc.exe|-> <trust_ca.exe> <work-dir>

<host.exe> is tests/windows/policy_proxy_host.c (configuration from
OPTIN_TEST_CONFIG; prints PREVIEW/STATUS/HISTORY). The Wine prefix is
$WINEPREFIX; registry values this script sets are removed again afterwards.
Prints ok/FAIL lines; exit 1 on any failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from collector import Collector, stop_accept_loop  # noqa: E402
from conftest import SCHEMA  # noqa: E402
from pki import make_test_pki  # noqa: E402
from wine_checks import check, failures, windows_path  # noqa: E402

WINE = os.environ.get("WINE", "/usr/lib/wine/wine64")
POLICY_KEY = r"HKLM\SOFTWARE\Policies\optin-telemetry"
CONNECTIONS_HKLM = r"HKLM\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections"
CONNECTIONS_HKCU = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections"
PROXY_HOST = "127.0.0.2"  # not the collector's 127.0.0.1: WinHTTP must see two hosts



def reg(*args, check_rc=True):
    p = subprocess.run([WINE, "reg", *args, "/f"], capture_output=True, timeout=60)
    if check_rc and p.returncode != 0:
        raise RuntimeError(f"wine reg {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")


def reg_delete(key, value=None):
    if value is None:
        reg("delete", key, check_rc=False)
    else:
        reg("delete", key, "/v", value, check_rc=False)


def counted(s: str) -> bytes:
    b = s.encode("ascii")
    return struct.pack("<I", len(b)) + b


def winhttp_settings(proxy: str, bypass: str = "") -> str:
    """The WinHttpSettings value (what `netsh winhttp set proxy` writes)."""
    return (struct.pack("<III", 0x18, 0, 2) + counted(proxy) + counted(bypass)).hex()


def ie_settings(proxy: str = "", bypass: str = "", pac: str = "") -> str:
    """DefaultConnectionSettings of Internet Options: flags 1 direct, 2 proxy, 4 PAC."""
    flags = 1 | (2 if proxy else 0) | (4 if pac else 0)
    return (struct.pack("<III", 0x46, 1, flags) + counted(proxy) + counted(bypass) + counted(pac) + bytes(32)).hex()


class Proxy:
    """A loopback HTTP proxy: CONNECT for https, absolute-form for http.
    Logs each request line and whether it carried Proxy-Authorization.
    With require_auth it answers 407 with a Basic challenge."""

    def __init__(self, require_auth=False):
        self.require_auth = require_auth
        self.lines: list[str] = []
        self.auth_headers: list[str] = []
        self.sock = socket.socket()
        self.sock.bind((PROXY_HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.address = f"{PROXY_HOST}:{self.port}"
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            f = conn.makefile("rb")
            line = f.readline().decode("latin-1").rstrip("\r\n")
            headers = []
            while True:
                h = f.readline().decode("latin-1")
                if h in ("\r\n", "\n", ""):
                    break
                headers.append(h.rstrip("\r\n"))
            self.lines.append(line)
            self.auth_headers += [h for h in headers if h.lower().startswith("proxy-authorization")]
            method, target, _ = line.split(" ", 2)
            if self.require_auth:
                length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length")), 0)
                if method != "CONNECT" and length:
                    f.read(length)
                conn.sendall(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
                return
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=30)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._relay(conn, upstream)
            else:
                rest = target.split("://", 1)[1]
                hostport, path = (rest.split("/", 1) + [""])[:2]
                host, port = hostport.rsplit(":", 1) if ":" in hostport else (hostport, "80")
                length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length")), 0)
                body = f.read(length) if length else b""
                keep = [h for h in headers if not h.lower().startswith(("proxy-", "connection"))]
                upstream = socket.create_connection((host, int(port)), timeout=30)
                upstream.sendall((f"{method} /{path} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in keep) + "Connection: close\r\n\r\n").encode("latin-1") + body)
                while True:
                    chunk = upstream.recv(65536)
                    if not chunk:
                        break
                    conn.sendall(chunk)
                upstream.close()
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    @staticmethod
    def _relay(a, b):
        def pump(src, dst):
            try:
                while True:
                    chunk = src.recv(65536)
                    if not chunk:
                        break
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        t = threading.Thread(target=pump, args=(b, a), daemon=True)
        t.start()
        pump(a, b)
        t.join(30)
        b.close()

    def close(self):
        self._stop = True
        stop_accept_loop(self.sock, self.thread)


def tls(collector: Collector, pki: Path) -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    collector.server.socket = ctx.wrap_socket(collector.server.socket, server_side=True)
    # A name, not 127.0.0.1: Wine's WinHTTP checks only DNS names in the
    # certificate (real Windows also accepts an IP address entry).
    return f"https://localhost:{collector.port}/v1/report"


class Run:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err
        self.preview = self.line("PREVIEW: ")
        st = self.line("STATUS: ")
        self.status = json.loads(st) if st else {}
        hist = self.line("HISTORY: ")
        self.history = json.loads(hist) if hist else {}

    def line(self, prefix):
        for l in self.out.split(b"\n"):
            if l.startswith(prefix.encode()):
                return l[len(prefix):].rstrip(b"\r")
        return None

    def outcome(self):
        reports = self.history.get("reports") or []
        return reports[0]["outcome"] if reports else None


def run_host(runner, exe, work: Path, name, endpoint, product="Mock Archiver", **extra) -> Run:
    cfg = {"product": product, "product_version": "1.0.0", "endpoint": endpoint,
           "state_dir": windows_path(work / name), "schema": SCHEMA, **extra}
    env = dict(os.environ, OPTIN_TEST_CONFIG=json.dumps(cfg), OPTIN_TEST_NOW=str(int(time.time())))
    for v in ("OPTIN_TELEMETRY_DISABLE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        env.pop(v, None)
    p = subprocess.run([runner, str(exe)], env=env, capture_output=True, timeout=180)
    r = Run(p.returncode, p.stdout, p.stderr)
    if p.returncode != 0:
        sys.stdout.write(p.stdout.decode("utf-8", "replace")[-1500:] + p.stderr.decode("utf-8", "replace")[-1500:])
    return r


def delivered_through(r: Run, collector: Collector, what: str):
    time.sleep(0.3)
    reqs = list(collector.requests)
    check(r.rc == 0, f"{what}: host exits 0 (got {r.rc})")
    check(len(reqs) == 1, f"{what}: exactly one report arrives (got {len(reqs)})")
    check(bool(reqs) and r.preview is not None and reqs[0].body == r.preview, f"{what}: the body is byte-identical to the preview")
    check(r.outcome() == "delivered", f"{what}: history says delivered (got {r.outcome()!r}, last_error {r.status.get('last_error')!r})")


def nothing_sent(r: Run, collector: Collector, what: str):
    time.sleep(0.3)
    check(r.rc == 0, f"{what}: host exits 0 (got {r.rc})")
    check(collector.requests == [], f"{what}: the collector received nothing (got {len(collector.requests)})")


def main():
    runner, exe, msvc_exe, trust_exe, work = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5])
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    pki = make_test_pki(work / "pki")
    pem = (pki / "ca.pem").read_text()
    # A clean slate: no policy, no system proxy from an earlier, interrupted run.
    reg_delete(POLICY_KEY)
    reg_delete(CONNECTIONS_HKLM, "WinHttpSettings")
    reg_delete(CONNECTIONS_HKCU, "DefaultConnectionSettings")
    subprocess.run([runner, str(trust_exe), "remove", windows_path(pki / "ca.pem")], capture_output=True, timeout=120)

    if msvc_exe != "-":
        print("Host linked with lld-link against the MSVC import library optin_telemetry.lib:")
        with Collector() as c:
            r = run_host(runner, Path(msvc_exe), work, "msvc", c.url)
            delivered_through(r, c, "MSVC-linked host")

    print("Group Policy:")
    try:
        reg("add", POLICY_KEY, "/v", "Disabled", "/t", "REG_DWORD", "/d", "1")
        with Collector() as c:
            r = run_host(runner, exe, work, "gp-all", c.url)
            nothing_sent(r, c, "machine-wide Disabled=1")
            b = r.status.get("blocked_by") or ""
            check("Group Policy" in b and r"SOFTWARE\Policies\optin-telemetry\Disabled" in b and r.status.get("consent") == "granted",
                  f"machine-wide: blocked_by names the policy, consent stays granted (got {b!r})")
        reg("add", POLICY_KEY, "/v", "Disabled", "/t", "REG_DWORD", "/d", "0")
        reg("add", POLICY_KEY + r"\Mock Archiver", "/v", "Disabled", "/t", "REG_DWORD", "/d", "1")
        with Collector() as c:
            r = run_host(runner, exe, work, "gp-product", c.url)
            nothing_sent(r, c, "per-product Disabled=1 (machine-wide 0)")
            b = r.status.get("blocked_by") or ""
            check(r"optin-telemetry\Mock Archiver\Disabled" in b, f"per product: blocked_by names the product's key (got {b!r})")
        # A value of the wrong type is not ignored: it counts as set.
        reg("add", POLICY_KEY, "/v", "Disabled", "/t", "REG_SZ", "/d", "1")
        with Collector() as c:
            r = run_host(runner, exe, work, "gp-wrong-type", c.url, product="Other Product")
            nothing_sent(r, c, "machine-wide Disabled as a string")
            b = r.status.get("blocked_by") or ""
            check("not a DWORD" in b and "treated as set" in b, f"wrong type: blocked_by says it is treated as set (got {b!r})")
        reg("add", POLICY_KEY, "/v", "Disabled", "/t", "REG_DWORD", "/d", "0")
        with Collector() as c:
            r = run_host(runner, exe, work, "gp-other", c.url, product="Other Product")
            check(r.status.get("blocked_by") is None, f"another product is not blocked (got {r.status.get('blocked_by')!r})")
            delivered_through(r, c, "another product")
    finally:
        reg_delete(POLICY_KEY)

    print("WinHTTP machine proxy (WinHttpSettings):")
    proxy = Proxy()
    try:
        reg("add", CONNECTIONS_HKLM, "/v", "WinHttpSettings", "/t", "REG_BINARY", "/d", winhttp_settings(proxy.address))
        with Collector() as c:
            url = tls(c, pki)
            r = run_host(runner, exe, work, "machine-https", url, ca_cert_pem=pem)
            delivered_through(r, c, "https via the machine proxy")
            check(any(l.startswith(f"CONNECT localhost:{c.port} ") for l in proxy.lines), f"the proxy logged the CONNECT (got {proxy.lines})")
        proxy.lines.clear()
        with Collector() as c:
            r = run_host(runner, exe, work, "machine-http", c.url)
            delivered_through(r, c, "http via the machine proxy")
            check(any(l.startswith(f"POST http://127.0.0.1:{c.port}/v1/report ") for l in proxy.lines), f"the proxy got the absolute-form request (got {proxy.lines})")
        proxy.lines.clear()
        with Collector() as c:
            r = run_host(runner, exe, work, "machine-none", c.url, proxy="none")
            delivered_through(r, c, '"proxy": "none" with a machine proxy set')
            check(proxy.lines == [], f'"proxy": "none": the proxy saw nothing (got {proxy.lines})')
    finally:
        reg_delete(CONNECTIONS_HKLM, "WinHttpSettings")
        proxy.close()

    print("Internet Options proxy (DefaultConnectionSettings):")
    proxy = Proxy()
    try:
        reg("add", CONNECTIONS_HKCU, "/v", "DefaultConnectionSettings", "/t", "REG_BINARY", "/d", ie_settings(proxy.address))
        with Collector() as c:
            url = tls(c, pki)
            r = run_host(runner, exe, work, "ie-https", url, ca_cert_pem=pem)
            delivered_through(r, c, "https via the Internet Options proxy")
            check(any(l.startswith(f"CONNECT localhost:{c.port} ") for l in proxy.lines), f"the proxy logged the CONNECT (got {proxy.lines})")
        proxy.lines.clear()
        reg("add", CONNECTIONS_HKCU, "/v", "DefaultConnectionSettings", "/t", "REG_BINARY", "/d", ie_settings(proxy.address, "127.0.0.1;<local>"))
        with Collector() as c:
            r = run_host(runner, exe, work, "ie-bypass", c.url)
            delivered_through(r, c, "endpoint in the bypass list")
            check(proxy.lines == [], f"bypass list: the proxy saw nothing (got {proxy.lines})")
    finally:
        reg_delete(CONNECTIONS_HKCU, "DefaultConnectionSettings")
        proxy.close()

    print("Internet Options proxy script (PAC URL):")
    proxy = Proxy()
    pac = Collector()
    from collector import Reply
    script = f'function FindProxyForURL(url, host) {{ return "PROXY {proxy.address}"; }}'.encode()
    pac.default = Reply(200, {"Content-Type": "application/x-ns-proxy-autoconfig"}, script)
    try:
        with pac:
            pac_url = f"http://127.0.0.1:{pac.port}/proxy.pac"
            reg("add", CONNECTIONS_HKCU, "/v", "DefaultConnectionSettings", "/t", "REG_BINARY", "/d", ie_settings(pac=pac_url))
            with Collector() as c:
                url = tls(c, pki)
                r = run_host(runner, exe, work, "pac-https", url, ca_cert_pem=pem)
                delivered_through(r, c, "https via the proxy the PAC script names")
                check(any(l.startswith(f"CONNECT localhost:{c.port} ") for l in proxy.lines), f"the PAC's proxy logged the CONNECT (got {proxy.lines})")
                check(any(q.path == "/proxy.pac" for q in pac.requests), f"the PAC script was fetched (got {[q.path for q in pac.requests]})")
    finally:
        reg_delete(CONNECTIONS_HKCU, "DefaultConnectionSettings")
        proxy.close()

    print("Proxy asking for credentials (407, Basic):")
    proxy = Proxy(require_auth=True)
    try:
        reg("add", CONNECTIONS_HKLM, "/v", "WinHttpSettings", "/t", "REG_BINARY", "/d", winhttp_settings(proxy.address))
        for name, https in (("auth-https", True), ("auth-http", False)):
            with Collector() as c:
                url = tls(c, pki) if https else c.url
                r = run_host(runner, exe, work, name, url, **({"ca_cert_pem": pem} if https else {}))
                nothing_sent(r, c, f"{name}: 407")
                err = r.status.get("last_error") or ""
                # Wine turns a CONNECT answered with 407 into a TLS error
                # (12157) before the caller sees the status; real Windows
                # reports the 407. The http request shows the 407 itself.
                check(proxy.address in err and ("407" in err or https), f"{name}: last_error names the proxy{'' if https else ' and the 407'} (got {err!r})")
                check(r.outcome() == "failed" and r.status.get("next_due") is not None and r.status.get("attempts", 0) >= 1,
                      f"{name}: a failed attempt to be retried, not a drop (outcome {r.outcome()!r}, attempts {r.status.get('attempts')!r}, next_due {r.status.get('next_due')!r})")
        check(proxy.auth_headers == [], f"no Proxy-Authorization was ever sent (got {proxy.auth_headers})")
    finally:
        reg_delete(CONNECTIONS_HKLM, "WinHttpSettings")
        proxy.close()

    print("ca_cert_pem naming another CA:")
    other = make_test_pki(work / "other-pki")
    with Collector() as c:
        url = tls(c, pki)
        r = run_host(runner, exe, work, "wrong-ca", url, ca_cert_pem=(other / "ca.pem").read_text())
        time.sleep(0.3)
        # The chain is checked after the handshake, before the body: the
        # request headers may arrive, no byte of the report does.
        check(all(q.body == b"" for q in c.requests), f"wrong CA: no byte of the report reached the server (got {[q.body[:40] for q in c.requests]})")
        err = r.status.get("last_error") or ""
        check("ca_cert_pem" in err and r.outcome() == "failed", f"wrong CA: a failed attempt naming ca_cert_pem (got {r.outcome()!r}, {err!r})")

    print("Certificate store (no ca_cert_pem):")
    with Collector() as c:
        url = tls(c, pki)
        r = run_host(runner, exe, work, "store-untrusted", url)
        nothing_sent(r, c, "CA not trusted")
        err = r.status.get("last_error") or ""
        check("certificate" in err and r.outcome() == "failed", f"untrusted: a failed attempt naming the certificate (got {r.outcome()!r}, {err!r})")
    added = subprocess.run([runner, str(trust_exe), "add", windows_path(pki / "ca.pem")], capture_output=True, timeout=120)
    try:
        if check(added.returncode == 0, f"the test CA was added to the machine's ROOT store ({added.stdout.decode(errors='replace').strip()} {added.stderr.decode(errors='replace').strip()})"):
            with Collector() as c:
                url = tls(c, pki)
                r = run_host(runner, exe, work, "store-trusted", url)
                delivered_through(r, c, "CA trusted only through the Windows ROOT store")
    finally:
        subprocess.run([runner, str(trust_exe), "remove", windows_path(pki / "ca.pem")], capture_output=True, timeout=120)

    if failures:
        print(f"FAIL: Windows network checks under Wine: {len(failures)} check(s) failed")
        return 1
    print("PASS: Windows network checks under Wine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
