#!/usr/bin/env python3
"""Runs an archiver example (C or C++, built against a release package) against a
loopback collector (tests/python/collector.py) and checks what arrives:
  --yes on a fresh state dir: exit 0, exactly one POST /v1/report, body byte-identical
        to the PREVIEW line, library_version = the expected version;
  --no  on a fresh state dir: exit 0, no request.

usage: run_archiver.py [--runner R] [--version V] LABEL EXE WORKDIR
  --runner  runs a Windows .exe under Wine (tests/windows/runner); paths become Z:\\...
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from collector import Collector  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runner")
    ap.add_argument("--version")
    ap.add_argument("label")
    ap.add_argument("exe")
    ap.add_argument("work", type=Path)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OPTIN_TELEMETRY_DISABLE", "LD_LIBRARY_PATH", "OPTIN_TELEMETRY_LIB")}

    def path(p: Path) -> str:
        return "Z:" + str(p.resolve()).replace("/", "\\") if a.runner else str(p)

    def run(url, state, answer):
        cmd = ([a.runner] if a.runner else []) + [a.exe, url, path(state), answer, "--now", str(int(time.time()))]
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=180, env=env)

    problems = []
    with Collector() as c:
        p = run(c.url, a.work / "state-yes", "--yes")
        time.sleep(0.3)  # anything sent late would still be counted
        reqs = list(c.requests)
    out = p.stdout.replace(b"\r\n", b"\n")
    previews = [l[len(b"PREVIEW: "):] for l in out.split(b"\n") if l.startswith(b"PREVIEW: ")]
    if p.returncode != 0:
        problems.append(f"--yes exited {p.returncode}: {p.stderr.decode(errors='replace')[-1500:]}")
    if len(previews) != 1:
        problems.append(f"--yes printed {len(previews)} PREVIEW lines")
    if len(reqs) != 1:
        problems.append(f"--yes: {len(reqs)} requests arrived, expected 1")
    elif previews:
        r = reqs[0]
        if (r.method, r.path) != ("POST", "/v1/report"):
            problems.append(f"unexpected request {r.method} {r.path}")
        if r.body != previews[0]:
            problems.append(f"body != PREVIEW:\n  body    {r.body!r}\n  preview {previews[0]!r}")
        lib = json.loads(r.body).get("library_version")
        if a.version and lib != a.version:
            problems.append(f"library_version {lib!r}, expected {a.version!r}")
    with Collector() as c:
        p = run(c.url, a.work / "state-no", "--no")
        time.sleep(0.3)
        n = len(c.requests)
    if p.returncode != 0:
        problems.append(f"--no exited {p.returncode}")
    if n:
        problems.append(f"--no: {n} requests arrived, expected none")
    for x in problems:
        print(f"  FAIL {a.label}: {x}")
    if not problems:
        print(f"  ok   {a.label}: --yes sent 1 report, byte-identical to the preview; --no sent nothing")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
