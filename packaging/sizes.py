#!/usr/bin/env python3
"""The README's size figures, generated from the built files.

    packaging/sizes.py write SO SO_BUNDLED_TLS DLL_X64 DLL_X86 [README]   rewrite the block
    packaging/sizes.py check SO SO_BUNDLED_TLS DLL_X64 DLL_X86 [README]   exit 1 unless the block is current

The block lies in README.md between the lines `<!-- sizes:begin ... -->` and
`<!-- sizes:end -->`. scripts/package writes it from the libraries it built
(before any signing); scripts/test-package checks it against them. It holds the
byte sizes, the 2 MB limit and the compiler that built them (`rustc -V`).
"""
import os
import re
import subprocess
import sys

BEGIN = "<!-- sizes:begin (written by scripts/package; checked by scripts/test-package; do not edit) -->"
END = "<!-- sizes:end -->"
LIMIT = 2_000_000


def block(so, so_bundled, x64, x86):
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True, check=True).stdout.split()
    rows = [
        ("`liboptin_telemetry.so` (Linux x86_64, glibc 2.28+, system OpenSSL 3)", so),
        ("`liboptin_telemetry.so` (Linux x86_64, glibc 2.28+, `bundled-tls`: rustls and ring inside)", so_bundled),
        ("`optin_telemetry.dll` (Windows x64, `x86_64-pc-windows-gnu`)", x64),
        ("`optin_telemetry.dll` (Windows x86, `i686-pc-windows-gnu`)", x86),
    ]
    lines = [BEGIN, "", "| file | bytes | of the 2 MB limit |", "|---|---:|---:|"]
    for name, path in rows:
        size = os.path.getsize(path)
        lines.append(f"| {name} | {size:,} | {100 * size / LIMIT:.1f} % |")
    lines += ["", f"Built by `scripts/package` with {' '.join(rustc[:2])}.", "", END]
    return "\n".join(lines)


def current(text):
    m = re.search(r"^<!-- sizes:begin.*?^<!-- sizes:end -->", text, re.M | re.S)
    if not m:
        sys.exit("sizes.py: no <!-- sizes:begin --> ... <!-- sizes:end --> block in the README")
    return m


def main():
    if len(sys.argv) not in (6, 7) or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    mode, so, so_bundled, x64, x86 = sys.argv[1:6]
    readme = sys.argv[6] if len(sys.argv) == 7 else os.path.join(os.path.dirname(__file__), "..", "README.md")
    text = open(readme, encoding="utf-8").read()
    m = current(text)
    want = block(so, so_bundled, x64, x86)
    if mode == "write":
        if m.group(0) != want:
            open(readme, "w", encoding="utf-8").write(text[: m.start()] + want + text[m.end():])
            print(f"sizes.py: {readme}: size block rewritten")
        else:
            print(f"sizes.py: {readme}: size block already current")
        return
    if m.group(0) != want:
        print("sizes.py: FAIL: the README's size block is not the built files' sizes; run scripts/package.")
        print("--- README\n" + m.group(0) + "\n--- built files\n" + want)
        sys.exit(1)
    print("sizes.py: the README's size block equals the built files' sizes")


if __name__ == "__main__":
    main()
