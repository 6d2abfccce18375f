#!/usr/bin/env python3
"""Runs the C example host (examples/c/archiver.c built with mingw) under Wine
against a loopback collector on the Linux side and checks what arrives.

usage: c_host_check.py <runner> <archiver.exe> <work-dir>

<runner> runs a Windows .exe (tests/windows/runner: wine64 + the test shim).
Checks, for --yes on a fresh state dir: exit 0; exactly one POST; its body is
byte-identical to the PREVIEW line; os_family "windows", os_version N.N.N;
STATUS says granted and sent. For --no on a fresh state dir: exit 0 and no
request at all. With a state_dir longer than MAX_PATH (260 characters): --yes
sends one report == preview, then --no replaces the state file. Over https with a private CA (--ca-file; needs openssl): one
report, byte-identical to the preview, through WinHTTP and SChannel.
Prints PASS/FAIL lines; exit status 1 on any failure.
"""

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from collector import Collector  # noqa: E402
from pki import make_test_pki  # noqa: E402
from wine_checks import check, failures, windows_path  # noqa: E402



def run(runner, exe, url, state_dir, answer, *extra):
    env = dict(os.environ)
    env.pop("OPTIN_TELEMETRY_DISABLE", None)  # the policy switch would block the send
    cmd = [runner, str(exe), url, windows_path(state_dir), answer, "--now", str(int(time.time())), *extra]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=120, env=env)
    return p.returncode, p.stdout, p.stderr


def lines_with(prefix: bytes, out: bytes):
    # msvcrt writes text-mode stdout: "\n" becomes "\r\n".
    return [l[len(prefix):].rstrip(b"\r") for l in out.split(b"\n") if l.startswith(prefix)]


def main():
    runner, exe, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    print("C host under Wine, --yes:")
    with Collector() as c:
        rc, out, err = run(runner, exe, c.url, work / "state-yes", "--yes")
        time.sleep(0.5)  # anything sent late would still be counted
        reqs = list(c.requests)
    ok = check(rc == 0, f"archiver --yes exits 0 (got {rc})")
    if not ok:
        sys.stdout.write(out.decode("utf-8", "replace")[-2000:])
        sys.stdout.write(err.decode("utf-8", "replace")[-2000:])
    previews = lines_with(b"PREVIEW: ", out)
    statuses = lines_with(b"STATUS: ", out)
    check(len(previews) == 1, f"exactly one PREVIEW line (got {len(previews)})")
    check(len(reqs) == 1, f"exactly one request received (got {len(reqs)})")
    if reqs and previews:
        r = reqs[0]
        check(r.method == "POST" and r.path == "/v1/report", f"it is POST /v1/report (got {r.method} {r.path})")
        check(r.headers.get("content-type") == "application/json", "Content-Type: application/json")
        check(r.body == previews[0], f"body is byte-identical to PREVIEW ({len(r.body)} bytes)")
        try:
            report = json.loads(r.body)
        except ValueError:
            report = {}
            check(False, "body is JSON")
        fam, ver = report.get("os_family"), report.get("os_version")
        check(fam == "windows", f'os_family is "windows" (got {fam!r})')
        check(isinstance(ver, str) and re.fullmatch(r"\d+\.\d+\.\d+", ver) is not None, f"os_version is N.N.N (got {ver!r})")
        check(report.get("arch") == "x86_64", f'arch is "x86_64" (got {report.get("arch")!r})')
    if check(len(statuses) == 1, "one STATUS line"):
        try:
            st = json.loads(statuses[0])
        except ValueError:
            st = {}
        check(st.get("consent") == "granted", f'STATUS consent "granted" (got {st.get("consent")!r})')
        check(isinstance(st.get("last_sent"), int), f"STATUS last_sent is set (got {st.get('last_sent')!r})")
        check(st.get("last_error") is None and st.get("sending") is False, f"STATUS: no error, nothing in flight (got {st.get('last_error')!r}, {st.get('sending')!r})")
    check((work / "state-yes" / "state.json").is_file(), "the state file was written through the Windows code paths")

    print("C host under Wine, --no:")
    with Collector() as c:
        rc, out, err = run(runner, exe, c.url, work / "state-no", "--no")
        time.sleep(0.5)
        reqs = list(c.requests)
    check(rc == 0, f"archiver --no exits 0 (got {rc})")
    check(len(reqs) == 0, f"no request after --no (got {len(reqs)})")
    check(lines_with(b"CONSENT: ", out) == [b"denied"], "CONSENT: denied")

    print("C host under Wine, a state_dir longer than MAX_PATH (260), --yes then --no:")
    long_dir = work / "long"
    while len(windows_path(long_dir)) <= 300:
        long_dir = long_dir / "a-state-directory-name-of-forty-chars-xx"
    with Collector() as c:
        rc, out, err = run(runner, exe, c.url, long_dir, "--yes")
        time.sleep(0.5)
        reqs = list(c.requests)
    if not check(rc == 0, f"archiver --yes with a {len(windows_path(long_dir))}-character state_dir exits 0 (got {rc})"):
        sys.stdout.write(err.decode("utf-8", "replace")[-2000:])
    previews = lines_with(b"PREVIEW: ", out)
    check(len(reqs) == 1 and len(previews) == 1 and reqs[0].body == previews[0], "one report, byte-identical to PREVIEW")
    check((long_dir / "state.json").is_file(), "state.json written in the long state_dir")
    with Collector() as c:
        rc, out, err = run(runner, exe, c.url, long_dir, "--no")
        time.sleep(0.5)
        reqs = list(c.requests)
    check(rc == 0 and lines_with(b"CONSENT: ", out) == [b"denied"], f"--no on the same long state_dir replaces the state: denied (exit {rc})")
    check(len(reqs) == 0, f"no request after --no (got {len(reqs)})")
    check('"denied"' in (long_dir / "state.json").read_text(encoding="utf-8", errors="replace"), "state.json now records the no")

    print("C host under Wine, --yes over https with a private CA:")
    if shutil.which("openssl") is None:
        print("  skip https: the openssl command is not installed")
    else:
        pki = make_test_pki(work / "pki")
        with Collector() as c:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
            c.server.socket = ctx.wrap_socket(c.server.socket, server_side=True)
            url = f"https://localhost:{c.port}/v1/report"  # Wine checks DNS names only
            rc, out, err = run(runner, exe, url, work / "state-tls", "--yes", "--ca-file", windows_path(pki / "ca.pem"))
            time.sleep(0.5)
            reqs = list(c.requests)
        if not check(rc == 0, f"archiver --yes over https exits 0 (got {rc})"):
            sys.stdout.write(err.decode("utf-8", "replace")[-2000:])
        previews = lines_with(b"PREVIEW: ", out)
        check(len(reqs) == 1, f"exactly one request over TLS (got {len(reqs)})")
        check(bool(reqs) and len(previews) == 1 and reqs[0].body == previews[0], "TLS body is byte-identical to PREVIEW")

    if failures:
        print(f"FAIL: C host under Wine: {len(failures)} check(s) failed")
        return 1
    print("PASS: C host under Wine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
