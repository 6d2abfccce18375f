#!/usr/bin/env python3
"""Mock e-mail archiver in Python: embeds optin-telemetry through the ctypes
binding, asks for consent, shows the "view data" screen, ticks, and sends to a
collector it starts on 127.0.0.1.

    python3 examples/python/archiver.py [--yes|--no] [--state-dir DIR]

Needs the cdylib (`cargo build`), or OPTIN_TELEMETRY_LIB=/path/to/library.
"""

from __future__ import annotations

import argparse
import http.server
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bindings" / "python"))
import optin_telemetry as ot  # noqa: E402

SCHEMA = {
    "version": 1,
    "fields": [
        {"name": "trial", "type": "bool", "description": {"en": "Whether this installation runs a trial licence."}},
        {"name": "edition", "type": "choice", "values": ["standard", "enterprise", "smb"], "description": {"en": "Licensed edition."}},
        {"name": "users", "type": "count", "buckets": [1, 5, 10, 25, 50, 100], "description": {"en": "Number of archive users, as a range."}},
        {"name": "archived_items", "type": "count", "rounding": "1-2-5",
         "description": {"en": "Number of archived e-mails, rounded at random to 0, 1, 2, 5, 10, 20, 50, ... (never the exact number)."}},
        {"name": "profiles", "type": "choices", "values": ["imap", "exchange", "m365", "gmail", "pst"], "description": {"en": "Kinds of archiving profiles that exist."}},
    ],
}


def start_collector() -> Tuple[http.server.ThreadingHTTPServer, str, List[bytes]]:
    received: List[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1/report", received


def view_data(client: ot.Client) -> None:
    d = client.describe("en")
    print(f"\n  What would be sent to {d['endpoint']}:")
    for f in d["fields"]:
        print(f"    {f['name']:<16} {json.dumps(f['value']):<22} {f['description']}")
    print(f"\n  This report is one of at most 2^{d['privacy']['max_bits']:.1f} possible reports.")
    print(f"\n  Exact bytes of the next report:\n    {client.preview()}\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--yes", action="store_true")
    ap.add_argument("--no", action="store_true")
    ap.add_argument("--state-dir")
    args = ap.parse_args()
    server, url, received = start_collector()
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="optin-py-demo-")
    config = {"product": "Mock Mail Archiver", "product_version": "5.2.1", "endpoint": url, "state_dir": state_dir, "schema": SCHEMA}
    identical = False
    with ot.Client(config) as client:
        client.set_values({"trial": False, "edition": "enterprise", "users": 37, "archived_items": 1234567, "profiles": ["imap", "m365", "pst"]})
        if args.yes or args.no:
            client.set_consent(args.yes)
        else:
            while True:
                try:
                    answer = input("Send anonymous usage statistics once a week? [y/N/v = view data] ").strip().lower()
                except EOFError:
                    print("\nNo answer: consent stays undecided.")
                    break
                if answer == "v":
                    view_data(client)
                    continue
                client.set_consent(answer in ("y", "yes"))
                break
        view_data(client)
        print("Consent:", client.consent.name.lower())
        client.tick(int(time.time()))
        status = client.status()
        if status["next_due"] is None:
            print("Nothing scheduled: nothing will leave this machine.")
        else:
            preview = client.preview()
            print("Report due at", status["next_due"], "- fast-forwarding the clock to it.")
            client.tick(status["next_due"])
            client.flush(15000)
            identical = received == [preview.encode()]
            print(f"Collector received {len(received)} report(s); byte-identical to preview: {identical}")
            if received:
                drawn = json.loads(received[0])["fields"]["archived_items"]
                print(f"archived_items 1234567 was sent as {drawn} (1000000 or 2000000, drawn once for this report, unbiased)")
        print("Status:", json.dumps(client.status()))
    server.shutdown()
    ok = identical if args.yes else (len(received) == 0)
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
