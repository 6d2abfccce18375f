#!/usr/bin/env python3
"""The Windows DLL sends through a real Oblivious HTTP relay to a real gateway,
under Wine: the C example host (examples/c/archiver.c built with mingw, with
--ohttp) -> ohttp-relay (crates.io, scripts/ohttp-relay) -> the collector's
gateway (optin-collector serve, /.well-known/ohttp-gateway, a key from
`optin-collector ohttp keygen`), all on 127.0.0.1 over plain http.

usage: ohttp_check.py <runner> <archiver.exe> <optin-collector> <ohttp-relay> <work-dir>

Checks:
  1. --yes: exit 0; the report arrived exactly once, verbatim: the collector
     keeps a report of a schema it does not know yet verbatim in its
     quarantine, and that body is byte-identical to the PREVIEW line;
     HISTORY says "via": "relay", outcome delivered; STATUS has no error.
     Registering the schema then moves it in: one stored report, its id.
  2. the key retired (`ohttp retire`): a second installation's report is
     key_config_outdated (STATUS last_error, HISTORY outcome) and nothing new
     reaches the collector's tables;
  3. with a new key (`ohttp keygen`) the same installation (asked again:
     a new key needs a new consent) sends a new report, and it is stored:
     the key problem did not drop the installation's reporting.
Prints ok/FAIL lines; exit status 1 on any failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from wine_checks import check, failures, windows_path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} is not listening on 127.0.0.1:{port}")


def lines_with(prefix: bytes, out: bytes) -> list[bytes]:
    # msvcrt writes text-mode stdout: "\n" becomes "\r\n".
    return [l[len(prefix):].rstrip(b"\r") for l in out.split(b"\n") if l.startswith(prefix)]


def c_host_schema() -> str:
    """The schema the C host compiles in (SCHEMA_JSON of examples/c/archiver.c),
    for `schema add`: its adjacent C string literals joined and unescaped."""
    src = (ROOT / "examples" / "c" / "archiver.c").read_bytes().decode("utf-8")
    m = re.search(r"SCHEMA_JSON =\s*(.*?);\n", src, re.S)
    if not m:
        raise RuntimeError("SCHEMA_JSON not found in examples/c/archiver.c")
    text = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
    raw = text.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode("utf-8")
    json.loads(raw)  # fails loudly if the extraction went wrong
    return raw


class Collector:
    """optin-collector serve on a SQLite database in `work`, and its CLI."""

    def __init__(self, binary: str, work: Path):
        self.binary, self.db = binary, work / "collector.db"
        self.port, self.admin = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str) -> str:
        p = subprocess.run([self.binary, "--db", f"sqlite:{self.db}", *args], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"optin-collector {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def keygen(self) -> tuple[str, int]:
        key_config = self.cli("ohttp", "keygen").strip()
        return key_config, base64.b64decode(key_config)[0]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--db", f"sqlite:{self.db}", "serve", "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.proc, "optin-collector serve")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def live_key_ids(self) -> list[int] | None:
        """The key ids `GET /.well-known/ohttp-gateway` serves (None: no keys)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/.well-known/ohttp-gateway", timeout=5) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        ids, rest = [], body
        while len(rest) >= 3:
            n = int.from_bytes(rest[:2], "big")
            ids.append(rest[2])
            rest = rest[2 + n:]
        return ids

    def rows(self, sql: str) -> list[tuple]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return db.execute(sql).fetchall()


def run(runner: str, exe: Path, endpoint: str, state_dir: Path, relay: str, key_config: str):
    env = dict(os.environ)
    env.pop("OPTIN_TELEMETRY_DISABLE", None)  # the policy switch would block the send
    cmd = [runner, str(exe), endpoint, windows_path(state_dir), "--yes", "--now", str(int(time.time())), "--ohttp", relay, key_config]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=180, env=env)
    if p.returncode != 0:
        sys.stdout.write(p.stdout.decode("utf-8", "replace")[-3000:])
        sys.stdout.write(p.stderr.decode("utf-8", "replace")[-3000:])
    return p.returncode, p.stdout


def one_json(out: bytes, prefix: bytes) -> dict:
    found = lines_with(prefix, out)
    if len(found) != 1:
        return {}
    try:
        return json.loads(found[0])
    except ValueError:
        return {}


def main() -> int:
    runner, exe, collector_bin, relay_bin, work = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5])
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    col = Collector(collector_bin, work)
    key1, key1_id = col.keygen()
    col.start()
    relay_port = free_port()
    relay = subprocess.Popen([relay_bin], env={**os.environ, "PORT": str(relay_port), "GATEWAY_ORIGIN": f"http://127.0.0.1:{col.port}"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(relay_port, relay, "ohttp-relay")
        relay_url = f"http://127.0.0.1:{relay_port}/"
        endpoint = f"http://127.0.0.1:{col.port}/v1/report"
        return checks(runner, exe, col, relay_url, endpoint, key1, key1_id, work)
    finally:
        relay.terminate()
        relay.wait(10)
        col.stop()


def checks(runner, exe, col: Collector, relay_url, endpoint, key1, key1_id, work) -> int:
    print("C host under Wine, --yes through ohttp-relay to the collector's gateway:")
    rc, out = run(runner, exe, endpoint, work / "state-a", relay_url, key1)
    check(rc == 0, f"archiver --yes --ohttp exits 0 (got {rc})")
    previews = lines_with(b"PREVIEW: ", out)
    check(len(previews) == 1, f"one PREVIEW line (got {len(previews)})")
    quarantined = col.rows("SELECT body FROM quarantine")
    check(len(quarantined) == 1, f"the collector received the report once (got {len(quarantined)} in its quarantine)")
    if quarantined and previews:
        check(bytes(quarantined[0][0]) == previews[0], f"what arrived is byte-identical to PREVIEW ({len(previews[0])} bytes)")
    history = one_json(out, b"HISTORY: ")
    sent = (history.get("reports") or [{}])[0]
    check(sent.get("via") == "relay", f'HISTORY "via": "relay" (got {sent.get("via")!r})')
    check(sent.get("outcome") == "delivered" and sent.get("status") == 202, f'HISTORY outcome delivered, status 202 (got {sent.get("outcome")!r}, {sent.get("status")!r})')
    check(previews != [] and sent.get("body", "").encode() == previews[0], "HISTORY body == PREVIEW")
    status = one_json(out, b"STATUS: ")
    check(status.get("last_error") is None and isinstance(status.get("last_sent"), int), f"STATUS: sent, no error (got {status.get('last_error')!r})")
    schema = work / "schema.json"
    schema.write_text(c_host_schema(), encoding="utf-8")
    col.cli("schema", "add", str(schema))
    report_id = json.loads(previews[0])["report_id"] if previews else ""
    stored = col.rows("SELECT hex(report_id) FROM reports")
    check(stored == [(report_id.upper(),)], f"with its schema registered, it is the one stored report (got {stored})")

    print("the key retired: a second installation's report is key_config_outdated and waits")
    col.cli("ohttp", "retire", str(key1_id))
    deadline = time.monotonic() + 20
    while key1_id in (col.live_key_ids() or []) and time.monotonic() < deadline:
        time.sleep(0.2)
    check(key1_id not in (col.live_key_ids() or []), f"the gateway no longer serves key {key1_id}")
    rc, out = run(runner, exe, endpoint, work / "state-b", relay_url, key1)
    check(rc == 0, f"archiver exits 0 (got {rc})")
    status = one_json(out, b"STATUS: ")
    last_error = status.get("last_error") or ""
    check(last_error.startswith("key_config_outdated"), f"STATUS last_error starts with key_config_outdated (got {last_error[:80]!r})")
    history = one_json(out, b"HISTORY: ")
    outcome = (history.get("reports") or [{}])[0]
    check(outcome.get("outcome") == "key_config_outdated" and outcome.get("via") == "relay",
          f'HISTORY outcome key_config_outdated via relay (got {outcome.get("outcome")!r}, {outcome.get("via")!r})')
    counts = (len(col.rows("SELECT 1 FROM quarantine")), len(col.rows("SELECT 1 FROM reports")))
    check(counts == (0, 1), f"nothing new reached the collector (quarantine, reports: {counts})")

    print("a new key: the same installation, asked again, sends again")
    key2, _ = col.keygen()
    deadline = time.monotonic() + 20
    while not col.live_key_ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    rc, out = run(runner, exe, endpoint, work / "state-b", relay_url, key2)
    check(rc == 0, f"archiver exits 0 (got {rc})")
    status = one_json(out, b"STATUS: ")
    check(status.get("last_error") is None and status.get("consent") == "granted", f"STATUS: granted, no error (got {status.get('last_error')!r})")
    history = one_json(out, b"HISTORY: ")
    delivered = [r for r in history.get("reports") or [] if r.get("outcome") == "delivered"]
    check(len(delivered) == 1 and delivered[0].get("via") == "relay", f"HISTORY: one delivered report via relay (got {len(delivered)})")
    stored = col.rows("SELECT hex(report_id) FROM reports")
    # (The new consent made a new report, with an id of its own, in place of
    # the one that waited: the check is that reporting goes on, not which id.)
    if delivered:
        new_id = json.loads(delivered[0]["body"])["report_id"].upper()
        check(len(stored) == 2 and (new_id,) in stored, f"the collector stored it (reports: {len(stored)})")

    if failures:
        print(f"FAIL: Oblivious HTTP under Wine: {len(failures)} check(s) failed")
        return 1
    print("PASS: Oblivious HTTP under Wine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
