#!/usr/bin/env python3
"""Runs tests/python/collector.py's loopback Collector as a separate process for
the .NET tests and the C# demo.

    collector_server.py SPOOL_DIR [--delay SECONDS] [--status CODE]

Prints "URL http://127.0.0.1:PORT/v1/report" on stdout, then writes every request
to SPOOL_DIR as NNNN.body (the exact bytes) and NNNN.meta (method, path,
headers as JSON) *before* answering it, so a body is on disk by the time the
client's flush returns. Exits when stdin reaches end of file (the parent closed
it or died) or on SIGTERM.
"""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "python"))

from collector import Collector, Reply  # noqa: E402


class Spool(list):
    """The Collector's request list; append runs in the handler before the reply."""

    def __init__(self, directory: Path):
        super().__init__()
        self.directory = directory

    def append(self, request):
        n = len(self) + 1
        meta = {"method": request.method, "path": request.path, "headers": request.headers}
        for suffix, data in ((".meta", json.dumps(meta).encode("utf-8")), (".body", request.body)):
            final = self.directory / f"{n:04d}{suffix}"
            tmp = self.directory / f".{n:04d}{suffix}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, final)
        super().append(request)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("spool")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=204)
    args = parser.parse_args()
    spool = Path(args.spool)
    spool.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    body = b"" if args.status == 204 else b"ok"
    with Collector(default=Reply(status=args.status, body=body, delay=args.delay)) as collector:
        collector.requests = Spool(spool)
        print("URL " + collector.url, flush=True)
        sys.stdin.read()  # until EOF
    return 0


if __name__ == "__main__":
    sys.exit(main())
