#!/usr/bin/env python3
"""Licence notices and CycloneDX SBOMs for the shipped binaries, from `cargo metadata`.

What counts as "compiled into" a binary: every crate reachable from the binary's package
through *normal* dependency edges for the target in question (`cargo metadata
--filter-platform`). That includes proc-macro crates (serde_derive, syn, ...), whose
generated code ends up in the binary. It excludes dev-dependencies (tests only) and crates
reached only through build-dependency edges (cc, shlex, find-msvc-tools: they run on the
build machine; what ring's build script compiles is ring's own code, listed under ring).
The Rust standard library, which is linked in too, gets its own entry (texts from the
toolchain's share/doc/rust/licenses); for Windows so does the mingw-w64 runtime that the
x86_64-pc-windows-gnu toolchain links in (terms from Debian's mingw-w64-common).

Packages (binaries) covered, each with the targets it ships for:
  optin-telemetry   Cargo.toml               x86_64-unknown-linux-gnu, x86_64-pc-windows-gnu
  optin-collector   collector/Cargo.toml     x86_64-unknown-linux-gnu   (skipped while absent)

Reviewed list: packaging/third-party/<package>.json records "name version" -> licence for
every crate. `check` fails when the dependency graph holds a crate that is not in the list
(a dependency was added or updated without review), when its licence changed, or when a crate
has no licence text; entries of crates that left are only reported. After reviewing the new crates' licences: `thirdparty.py update`.

Usage:
  thirdparty.py check
  thirdparty.py update
  thirdparty.py notices PACKAGE OUT [--target T ...]
  thirdparty.py sbom PACKAGE OUT --target T
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# OPTIN_THIRDPARTY_REVIEWED: another folder of reviewed lists (scripts/test-package's self-test).
REVIEWED = Path(os.environ.get("OPTIN_THIRDPARTY_REVIEWED") or ROOT / "packaging" / "third-party")
LINUX = "x86_64-unknown-linux-gnu"
WINDOWS = "x86_64-pc-windows-gnu"
PACKAGES = {
    "optin-telemetry": ("Cargo.toml", [LINUX, WINDOWS]),
    "optin-collector": ("collector/Cargo.toml", [LINUX]),
}
# The terms of the mingw-w64 runtime that the Windows toolchain links into the DLL.
MINGW_COPYRIGHT = Path("/usr/share/doc/mingw-w64-common/copyright")
LICENSE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "COPYRIGHT", "NOTICE", "UNLICENSE")


def present_packages() -> list[str]:
    """The packages whose manifest exists; says so for each one skipped."""
    out = []
    for name, (manifest, _) in PACKAGES.items():
        if (ROOT / manifest).is_file():
            out.append(name)
        else:
            print(f"thirdparty: {name}: {manifest} is absent, skipped (picked up automatically once it exists)",
                  file=sys.stderr)
    return out


def metadata(package: str, target: str) -> dict:
    manifest = ROOT / PACKAGES[package][0]
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked", "--offline",
           "--manifest-path", str(manifest), "--filter-platform", target]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT).stdout
    except subprocess.CalledProcessError:
        # --offline fails on a fresh machine whose registry cache lacks a crate: fetch once.
        out = subprocess.run([c for c in cmd if c != "--offline"], check=True, capture_output=True, cwd=ROOT).stdout
    return json.loads(out)


def lock_checksums(meta: dict) -> dict[tuple[str, str], str]:
    """(name, version) -> sha256 of the .crate file, from the Cargo.lock that cargo used."""
    import tomllib
    lock = Path(meta["workspace_root"]) / "Cargo.lock"
    if not lock.is_file():
        return {}
    data = tomllib.loads(lock.read_text())
    return {(p["name"], p["version"]): p["checksum"] for p in data.get("package", []) if "checksum" in p}


def shipped(package: str, target: str) -> tuple[dict, list[dict], dict[str, list[str]]]:
    """The root package, the crates compiled into it for `target` (sorted), and the
    normal-dependency edges among them (id -> [id])."""
    meta = metadata(package, target)
    by_id = {p["id"]: p for p in meta["packages"]}
    manifest = str((ROOT / PACKAGES[package][0]).resolve())
    root = next(p for p in meta["packages"] if str(Path(p["manifest_path"]).resolve()) == manifest)
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    edges: dict[str, list[str]] = {}
    seen = {root["id"]}
    todo = [root["id"]]
    while todo:
        cur = todo.pop()
        normal = sorted({d["pkg"] for d in nodes[cur]["deps"]
                         if any(k["kind"] is None for k in d["dep_kinds"])})
        edges[cur] = normal
        for dep in normal:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    crates = sorted((by_id[i] for i in seen if i != root["id"]), key=lambda p: (p["name"], p["version"]))
    sums = lock_checksums(meta)
    for c in crates:
        c["_checksum"] = sums.get((c["name"], c["version"]))
    return root, crates, edges


def licence_files(pkg: dict) -> list[Path]:
    d = Path(pkg["manifest_path"]).parent
    files = [f for f in d.iterdir() if f.is_file() and f.name.upper().startswith(LICENSE_PREFIXES)]
    if pkg.get("license_file"):
        lf = (d / pkg["license_file"]).resolve()
        if lf.is_file() and lf not in files:
            files.append(lf)
    return sorted(files, key=lambda f: f.name)


def rust_std_texts() -> list[Path]:
    sysroot = Path(subprocess.run(["rustc", "--print", "sysroot"], check=True, capture_output=True,
                                  text=True).stdout.strip())
    lic = sysroot / "share" / "doc" / "rust" / "licenses"
    return [lic / n for n in ("MIT.txt", "Apache-2.0.txt") if (lic / n).is_file()]


def rustc_version() -> str:
    return subprocess.run(["rustc", "--version"], check=True, capture_output=True, text=True).stdout.split()[1]


# ---------------------------------------------------------------- reviewed list

def graph_entries(package: str) -> dict[str, dict]:
    """"name version" -> {license, targets} over all targets of the package."""
    entries: dict[str, dict] = {}
    for target in PACKAGES[package][1]:
        _, crates, _ = shipped(package, target)
        for c in crates:
            e = entries.setdefault(f'{c["name"]} {c["version"]}', {"license": c["license"] or c.get("license_file") or "",
                                                                   "targets": [], "_pkg": c})
            e["targets"].append(target)
    return entries


def cmd_check(_args) -> int:
    problems = []
    for package in present_packages():
        entries = graph_entries(package)
        path = REVIEWED / f"{package}.json"
        reviewed = json.loads(path.read_text()) if path.is_file() else {}
        if not path.is_file():
            problems.append(f"{package}: no reviewed list {path}")
        for key, e in entries.items():
            if key not in reviewed:
                problems.append(f"{package}: {key} ({e['license']}) is compiled in but has no reviewed entry")
            elif reviewed[key] != e["license"]:
                problems.append(f"{package}: {key}: licence is now {e['license']!r}, reviewed {reviewed[key]!r}")
            if not licence_files(e["_pkg"]):
                problems.append(f"{package}: {key}: no licence text (LICENSE*/COPYING*) in the crate")
            if not e["license"]:
                problems.append(f"{package}: {key}: no licence in its Cargo.toml")
        # A crate that left needs no review: say so, but do not fail (run update to tidy).
        for key in sorted(set(reviewed) - set(entries)):
            print(f"thirdparty: note: {package}: {key} is in the reviewed list but no longer compiled in", file=sys.stderr)
        print(f"thirdparty: {package}: {len(entries)} crates compiled in, {len(reviewed)} reviewed entries")
    if not rust_std_texts():
        problems.append("the Rust toolchain has no share/doc/rust/licenses (rustup component add rust-docs)")
    for p in problems:
        print("thirdparty: FAIL:", p, file=sys.stderr)
    if problems:
        print("thirdparty: review the licences above, then run packaging/thirdparty.py update", file=sys.stderr)
        return 1
    print("thirdparty: OK: every crate compiled in has a reviewed entry and licence text")
    return 0


def cmd_update(_args) -> int:
    REVIEWED.mkdir(parents=True, exist_ok=True)
    for package in present_packages():
        entries = graph_entries(package)
        data = {k: e["license"] for k, e in sorted(entries.items())}
        (REVIEWED / f"{package}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"thirdparty: wrote {len(data)} entries to {REVIEWED / (package + '.json')}")
    return 0


# ---------------------------------------------------------------- notices

def cmd_notices(args) -> int:
    package = args.package
    targets = args.target or PACKAGES[package][1]
    per: dict[str, dict] = {}
    root = None
    for t in targets:
        root, crates, _ = shipped(package, t)
        for c in crates:
            per.setdefault(f'{c["name"]} {c["version"]}', {"pkg": c, "targets": []})["targets"].append(t)
    bar = "=" * 78
    out = [f"THIRD-PARTY NOTICES for {root['name']} {root['version']}",
           "",
           f"{root['name']} is licensed under {root['license']} (LICENSE-MIT, LICENSE-APACHE).",
           f"Built for: {', '.join(targets)}.",
           "It contains the following third-party software, each under the licence given",
           "(where a crate offers a choice, e.g. \"MIT OR Apache-2.0\", the recipient may use",
           "either). Generated from Cargo's metadata by packaging/thirdparty.py: every crate",
           "reachable through normal dependencies (proc-macro crates included; dev- and",
           "build-only dependencies excluded), plus the Rust standard library.",
           ""]
    out.append("Contents:")
    out.append(f"  Rust standard library {rustc_version()} (MIT OR Apache-2.0)")
    mingw = MINGW_COPYRIGHT if WINDOWS in targets else None
    if mingw:
        if not mingw.is_file():
            print(f"thirdparty: FAIL: {mingw} is missing (apt-get install mingw-w64-common)", file=sys.stderr)
            return 1
        out.append(f"  mingw-w64 runtime and libgcc, as linked by the {WINDOWS} toolchain  [{WINDOWS} only]")
    for key, e in sorted(per.items()):
        only = "" if len(e["targets"]) == len(targets) else f"  [{', '.join(e['targets'])} only]"
        out.append(f"  {key} ({e['pkg']['license']}){only}")
    out.append("")
    out += [bar, f"Rust standard library {rustc_version()} (std, core, alloc and their dependencies)",
            "License: MIT OR Apache-2.0", "Source: https://github.com/rust-lang/rust", bar, ""]
    for f in rust_std_texts():
        out += [f"--- {f.name} ---", f.read_text(errors="replace").rstrip(), ""]
    if mingw:
        out += [bar, f"mingw-w64 runtime and libgcc ({WINDOWS} only)",
                "The DLL's startup code and a few C runtime helpers come from the mingw-w64 runtime",
                "(mostly ZPL-2.1 and public domain; the terms of every part follow, as Debian's",
                "mingw-w64-common package records them) and from libgcc, which is covered by the",
                "GCC Runtime Library Exception 3.1 (no notice required; named here for completeness).",
                bar, "", f"--- {mingw} ---", mingw.read_text(errors="replace").rstrip(), ""]
    for key, e in sorted(per.items()):
        pkg = e["pkg"]
        out += [bar, key, f"License: {pkg['license']}"]
        if pkg.get("repository"):
            out.append(f"Source: {pkg['repository']}")
        if pkg.get("authors"):
            out.append(f"Authors: {', '.join(pkg['authors'])}")
        out += [bar, ""]
        files = licence_files(pkg)
        if not files:
            print(f"thirdparty: FAIL: {key} has no licence text", file=sys.stderr)
            return 1
        for f in files:
            out += [f"--- {f.name} ---", f.read_text(errors="replace").rstrip(), ""]
    Path(args.out).write_text("\n".join(out) + "\n")
    print(f"thirdparty: {args.out}: {len(per) + 1} components")
    return 0


# ---------------------------------------------------------------- SBOM

def purl(pkg: dict) -> str:
    return f"pkg:cargo/{pkg['name']}@{pkg['version']}"


def licence_field(expr: str) -> list[dict]:
    # Cargo's old "/" separator is "OR".
    return [{"expression": expr.replace("/", " OR ")}] if expr else []


def component(pkg: dict, kind: str = "library") -> dict:
    c = {"type": kind, "bom-ref": purl(pkg), "name": pkg["name"], "version": pkg["version"],
         "purl": purl(pkg)}
    if pkg.get("description"):
        c["description"] = " ".join(pkg["description"].split())
    if pkg.get("authors"):
        c["author"] = ", ".join(pkg["authors"])
    lic = licence_field(pkg.get("license") or "")
    if lic:
        c["licenses"] = lic
    if pkg.get("_checksum"):
        c["hashes"] = [{"alg": "SHA-256", "content": pkg["_checksum"]}]
    refs = []
    if pkg.get("repository"):
        refs.append({"type": "vcs", "url": pkg["repository"]})
    if pkg.get("homepage"):
        refs.append({"type": "website", "url": pkg["homepage"]})
    if refs:
        c["externalReferences"] = refs
    return c


def cmd_sbom(args) -> int:
    package, target = args.package, args.target[0]
    root, crates, edges = shipped(package, target)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    import datetime
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Same inputs, same serial number: the file is reproducible.
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"{purl(root)}?target={target}&"
                        + hashlib.sha256(json.dumps([purl(c) for c in crates]).encode()).hexdigest())
    by_id = {c["id"]: c for c in crates}
    by_id[root["id"]] = root
    kind = "application" if package == "optin-collector" else "library"
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": stamp,
            "tools": {"components": [{"type": "application", "name": "packaging/thirdparty.py",
                                      "description": "optin-telemetry's generator, from cargo metadata"}]},
            "component": component(root, kind),
            "properties": [{"name": "cdx:rust:target", "value": target},
                           {"name": "cdx:rust:rustc", "value": rustc_version()}],
        },
        "components": [component(c) for c in crates],
        "dependencies": [{"ref": purl(by_id[i]), "dependsOn": [purl(by_id[d]) for d in deps]}
                         for i, deps in sorted(edges.items(), key=lambda kv: purl(by_id[kv[0]]))],
    }
    Path(args.out).write_text(json.dumps(bom, indent=2, sort_keys=False) + "\n")
    print(f"thirdparty: {args.out}: CycloneDX 1.5, {len(crates)} components for {target}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check").set_defaults(fn=cmd_check)
    sub.add_parser("update").set_defaults(fn=cmd_update)
    for name, fn in (("notices", cmd_notices), ("sbom", cmd_sbom)):
        p = sub.add_parser(name)
        p.add_argument("package", choices=sorted(PACKAGES))
        p.add_argument("out")
        p.add_argument("--target", action="append", required=(name == "sbom"))
        p.set_defaults(fn=fn)
    args = ap.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
