#!/usr/bin/env python3
"""One version: Cargo.toml's. Prints it, or checks that everything else carries it.

    versions.py               prints Cargo.toml's version
    versions.py check [DIST]  the sources (header, pyproject, csproj, .NET ExpectedVersion)
                              and, with DIST, every package in dist/: file names, the CMake
                              version files and pkg-config files in the archives, the nuspec,
                              the wheels' METADATA. Exit 1 and one line per disagreement.

The .NET assembly's own version is checked by scripts/test-package's C# program (it reads
AssemblyName.Version and AssemblyInformationalVersion through reflection).
"""

import os
import re
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

# OPTIN_VERSIONS_ROOT: check another tree (scripts/test-package's self-test).
ROOT = Path(os.environ.get("OPTIN_VERSIONS_ROOT") or Path(__file__).resolve().parent.parent)


def cargo_version() -> str:
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]


def grab(text: str, pattern: str) -> str:
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else "<missing>"


def source_versions() -> dict:
    return {
        "include/optin_telemetry.h OPTIN_TELEMETRY_VERSION":
            grab((ROOT / "include/optin_telemetry.h").read_text(), r'^#define OPTIN_TELEMETRY_VERSION "([^"]+)"'),
        "bindings/python/pyproject.toml [project] version":
            tomllib.loads((ROOT / "bindings/python/pyproject.toml").read_text())["project"]["version"],
        "bindings/dotnet/OptInTelemetry.csproj <Version>":
            grab((ROOT / "bindings/dotnet/OptInTelemetry.csproj").read_text(), r"<Version>([^<]+)</Version>"),
        "bindings/dotnet TelemetryLibrary.ExpectedVersion":
            grab((ROOT / "bindings/dotnet/src/TelemetryLibrary.cs").read_text(), r'ExpectedVersion\s*=\s*"([^"]+)"'),
    }


def dist_versions(dist: Path, v: str) -> dict:
    found = {}
    for plat, ext in (("linux-x86_64", "tar.gz"), ("windows-x86_64", "zip")):
        name = f"optin-telemetry-{v}-{plat}.{ext}"
        path = dist / name
        if not path.is_file():
            found[f"dist/{name}"] = "<missing>"
            continue
        if ext == "zip":
            with zipfile.ZipFile(path) as z:
                read = {n: z.read(n).decode() for n in z.namelist() if n.endswith((".cmake", ".pc", ".h"))}
        else:
            with tarfile.open(path) as t:
                read = {m.name: t.extractfile(m).read().decode() for m in t.getmembers()
                        if m.isfile() and m.name.endswith((".cmake", ".pc", ".h"))}
        for n, text in read.items():
            if n.endswith("ConfigVersion.cmake"):
                found[f"{name}:{n}"] = grab(text, r'set\(PACKAGE_VERSION "([^"]+)"\)')
            elif n.endswith(".pc"):
                found[f"{name}:{n}"] = grab(text, r"^Version:\s*(\S+)")
            elif n.endswith("optin_telemetry.h"):
                found[f"{name}:{n}"] = grab(text, r'^#define OPTIN_TELEMETRY_VERSION "([^"]+)"')
        for want in ("ConfigVersion.cmake", ".pc", "optin_telemetry.h"):
            if not any(n.endswith(want) for n in read):
                found[f"{name}: a {want} file"] = "<missing>"
    nupkg = dist / f"OptInTelemetry.{v}.nupkg"
    if nupkg.is_file():
        with zipfile.ZipFile(nupkg) as z:
            spec = z.read("OptInTelemetry.nuspec").decode()
        found[f"{nupkg.name}:OptInTelemetry.nuspec"] = grab(spec, r"<version>([^<]+)</version>")
    else:
        found[f"dist/{nupkg.name}"] = "<missing>"
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != 2:
        found["dist/*.whl (two wheels)"] = f"<{len(wheels)} wheels>"
    for whl in wheels:
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            found[f"{whl.name}:METADATA"] = grab(z.read(meta).decode(), r"^Version:\s*(\S+)")
        found[f"{whl.name} (file name)"] = whl.name.split("-")[1]
    return found


def main() -> int:
    v = cargo_version()
    if len(sys.argv) == 1:
        print(v)
        return 0
    if sys.argv[1] != "check":
        print(__doc__, file=sys.stderr)
        return 2
    found = source_versions()
    if len(sys.argv) > 2:
        found.update(dist_versions(Path(sys.argv[2]), v))
    bad = {k: x for k, x in found.items() if x != v}
    for k, x in sorted(found.items()):
        print(f"versions: {'ok  ' if x == v else 'FAIL'} {k}: {x}")
    if bad:
        print(f"versions: FAIL: {len(bad)} of {len(found)} places disagree with Cargo.toml's {v}", file=sys.stderr)
        return 1
    print(f"versions: OK: {len(found)} places carry Cargo.toml's version {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
