"""What the Wine check scripts (c_host_check.py, network_check.py) share:
the list of failed checks, the check that prints and records one, and the
Windows form of a Linux path."""

from __future__ import annotations

from pathlib import Path

failures: list[str] = []


def check(cond, what):
    print(("  ok   " if cond else "  FAIL ") + what)
    if not cond:
        failures.append(what)
    return cond


def windows_path(p: Path) -> str:
    # Wine maps the Linux root to drive Z:.
    return "Z:" + str(p.resolve()).replace("/", "\\")
