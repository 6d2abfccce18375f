"""Command line: ``python -m optin_telemetry history --state-dir DIR``.

Prints the reports that left this installation (the state directory's
history, through ``tel_history_json``), newest first: for each, one line
starting with ``#`` (report id, outcome, HTTP status, time in UTC, length,
SHA-256), then the body exactly as it was sent, byte for byte, and a newline.
A body over 32 KiB is not kept by the library; its line says so. ``--json``
prints the library's history JSON unchanged instead.

The client is opened with a configuration of its own (no schema fields, a
loopback endpoint it never contacts) and never ticks: it sends nothing and
leaves state.json and history.json as they are. Opening it is what the
product's own tel_open does, though: it creates the two empty lock files when
they are missing, and a state.json that cannot be read is set aside (renamed
state.json.bad-...) as the product would on its next start; that is said on
stderr. The directory must exist (it is not created).
Exit status: 0, 1 on an error (message on stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import Client, TelemetryError, load

# Opens the state directory only to read it: never ticks, so this endpoint is never contacted.
_READER = {
    "product": "optin-telemetry history",
    "product_version": "0",
    "endpoint": "http://127.0.0.1/",
    "schema": {"version": 1, "fields": []},
}


def _utc(at: Optional[int]) -> str:
    if at is None:
        return "no attempt time"
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _describe(n: int, total: int, report: Dict[str, Any]) -> str:
    status = report.get("status")
    attempts: List[Dict[str, Any]] = report.get("attempts") or []
    return (
        f"# {n}/{total} report {report.get('report_id')}: {report.get('outcome')}"
        f" ({'HTTP ' + str(status) if status is not None else 'no HTTP response'}) at {_utc(report.get('at'))},"
        f" {len(attempts)} attempt{'s' if len(attempts) != 1 else ''}, {report.get('body_length')} bytes,"
        f" SHA-256 {report.get('body_sha256')}\n"
    )


def history(state_dir: Path, as_json: bool, lib: Optional[str]) -> int:
    if not state_dir.is_dir():
        print(f"optin_telemetry history: {state_dir} is not a directory (nothing was created)", file=sys.stderr)
        return 1
    config = dict(_READER, state_dir=str(state_dir))
    try:
        native = load(lib) if lib else None
    except OSError as e:
        print(f"optin_telemetry history: cannot load the native library: {e}", file=sys.stderr)
        return 1
    try:
        with Client(config, native) as client:
            text = client.history_json()
            reports: List[Dict[str, Any]] = client.history()["reports"]
            warnings: List[str] = client.status().get("warnings") or []
    except TelemetryError as e:
        print(f"optin_telemetry history: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the library found by OPTIN_TELEMETRY_LIB or beside the package does not load
        print(f"optin_telemetry history: cannot load the native library: {e}", file=sys.stderr)
        return 1
    for w in warnings:
        print(f"optin_telemetry history: warning: {w}", file=sys.stderr)
    out = sys.stdout.buffer
    if as_json:
        out.write(text.encode("utf-8") + b"\n")
    elif not reports:
        out.write(f"# no report has left this installation (state directory {state_dir})\n".encode("utf-8"))
    else:
        for n, report in enumerate(reports, 1):
            out.write(_describe(n, len(reports), report).encode("utf-8"))
            body = report.get("body")
            if body is None:
                out.write(b"# (body over 32 KiB: not kept, only its length and SHA-256 above)\n")
            else:
                out.write(body.encode("utf-8") + b"\n")
    out.flush()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m optin_telemetry", description="optin-telemetry's Python binding: commands for an installation's state directory.")
    sub = ap.add_subparsers(dest="command", required=True)
    h = sub.add_parser("history", help="print the reports that left this installation, byte for byte",
                       description="Prints the reports that left this installation, newest first: a '#' line about each, then its body exactly as sent.")
    h.add_argument("--state-dir", required=True, type=Path, help="the state_dir the product's configuration names")
    h.add_argument("--json", action="store_true", help="print tel_history_json's text unchanged instead")
    h.add_argument("--lib", help="path of the native library (default: as optin_telemetry.library_path())")
    args = ap.parse_args(argv)
    if args.command == "history":
        return history(args.state_dir, args.json, args.lib)
    return 2  # unreachable: argparse requires a known command


if __name__ == "__main__":
    sys.exit(main())
