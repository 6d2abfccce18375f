#!/usr/bin/env python3
"""Licence notices and CycloneDX SBOMs for the shipped binaries, from `cargo metadata`.

What counts as "compiled into" a binary: every crate reachable from the binary's package
through *normal* dependency edges for the target in question, with the features a build of
that package alone resolves (`cargo tree -p PACKAGE -e normal --target T`; not `cargo
metadata`, which unifies features across the workspace and all platforms). Crate details
(licence, repository, licence files) come from `cargo metadata`. That includes proc-macro
crates (openssl-macros, syn, ...), whose generated code ends up in the binary. It excludes dev-dependencies (tests only) and crates
reached only through build-dependency edges (cc, shlex, find-msvc-tools: they run on the
build machine; what ring's build script compiles is ring's own code, listed under ring).
A target may name a feature set after a "+": `x86_64-unknown-linux-gnu+bundled-tls` is the
build with `--no-default-features --features bundled-tls` (scripts/build-linux). Those Linux
builds are linked by zig, which links LLVM's libunwind (Apache-2.0 WITH LLVM-exception) and
zig's compiler_rt (MIT) in; their notices are added for the Linux targets, with the texts from
the ziglang package in target/zig-venv (scripts/build-linux installs it).
The Rust standard library, which is linked in too, gets its own entry (texts from the
toolchain's share/doc/rust/licenses); for Windows so does the mingw-w64 runtime that the
x86_64-pc-windows-gnu toolchain links in (terms from Debian's mingw-w64-common).

Packages (binaries) covered, each with the targets it ships for:
  optin-telemetry   Cargo.toml               x86_64-unknown-linux-gnu, x86_64-unknown-linux-gnu+bundled-tls,
                                             x86_64-pc-windows-gnu
  optin-collector   collector/Cargo.toml     x86_64-unknown-linux-gnu   (skipped while absent)

Reviewed list: packaging/third-party/<package>.json records "name version" -> licence for
every crate. `check` fails when the dependency graph holds a crate that is not in the list
(a dependency was added or updated without review), when its licence changed, or when a crate
has no licence text (neither in its package nor supplied under packaging/third-party/texts/,
see supplied_texts); entries of crates that left are only reported. After reviewing the new crates' licences: `thirdparty.py update`.

Usage:
  thirdparty.py check
  thirdparty.py update
  thirdparty.py notices PACKAGE OUT [--target T ...]
  thirdparty.py sbom PACKAGE OUT --target T
  thirdparty.py sbom-check SBOM CARGO_JSON     (CARGO_JSON: cargo build --message-format=json)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# OPTIN_THIRDPARTY_REVIEWED: another folder of reviewed lists (scripts/test-package's self-test).
REVIEWED = Path(os.environ.get("OPTIN_THIRDPARTY_REVIEWED") or ROOT / "packaging" / "third-party")
LINUX = "x86_64-unknown-linux-gnu"
WINDOWS = "x86_64-pc-windows-gnu"
LINUX_BUNDLED_TLS = LINUX + "+bundled-tls"
PACKAGES = {
    "optin-telemetry": ("Cargo.toml", [LINUX, LINUX_BUNDLED_TLS, WINDOWS]),
    "optin-collector": ("collector/Cargo.toml", [LINUX]),
}
# The terms of the mingw-w64 runtime that the Windows toolchain links into the DLL.
MINGW_COPYRIGHT = Path("/usr/share/doc/mingw-w64-common/copyright")


def zig_texts() -> list[Path]:
    """zig's licence (compiler_rt) and LLVM libunwind's, from the ziglang package that
    scripts/build-linux installed into target/zig-venv; [] when it is not there."""
    found = sorted((ROOT / "target" / "zig-venv" / "lib").glob("python3*/site-packages/ziglang"))
    if not found:
        return []
    z = found[-1]
    texts = [z / "LICENSE", z / "lib" / "libunwind" / "LICENSE.TXT"]
    return texts if all(t.is_file() for t in texts) else []
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


def split_target(target: str) -> tuple[str, list[str]]:
    """"triple+feature,feature" -> (triple, the cargo flags that choose those features)."""
    triple, _, features = target.partition("+")
    return triple, (["--no-default-features", "--features", features] if features else [])


def metadata(package: str, target: str) -> dict:
    manifest = ROOT / PACKAGES[package][0]
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked", "--offline",
           "--manifest-path", str(manifest), "--filter-platform", split_target(target)[0], *split_target(target)[1]]
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


def tree(package: str, target: str) -> list[tuple[int, str, str]]:
    """`cargo tree` of the package's normal dependencies for `target`: (depth, name,
    version) per line. cargo tree resolves features as `cargo build -p PACKAGE
    --target TARGET` does; `cargo metadata` does not: it unifies the features of every
    workspace member, of dev-dependencies and of other platforms' dependencies (the
    rustls features of ureq for other Unix), so its graph named ring and rustls for
    the Linux .so, which contains neither."""
    triple, features = split_target(target)
    cmd = ["cargo", "tree", "--locked", "--offline", "--manifest-path", str(ROOT / "Cargo.toml"), "-p", package,
           "-e", "normal", "--target", triple, *features, "--prefix", "depth", "--format", "{p}", "--charset", "ascii"]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    except subprocess.CalledProcessError:
        out = subprocess.run([c for c in cmd if c != "--offline"], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    lines = []
    for line in out.splitlines():
        m = re.match(r"^(\d+)(\S+) v(\S+)", line)
        if m:
            lines.append((int(m.group(1)), m.group(2), m.group(3)))
    return lines


def shipped(package: str, target: str) -> tuple[dict, list[dict], dict[str, list[str]]]:
    """The root package, the crates compiled into it for `target` (sorted), and the
    normal-dependency edges among them (id -> [id]). Which crates and edges: `cargo
    tree` (see `tree`); their details (licence, repository, files): `cargo metadata`."""
    meta = metadata(package, target)
    by_key = {(p["name"], p["version"]): p for p in meta["packages"]}
    manifest = str((ROOT / PACKAGES[package][0]).resolve())
    root = next(p for p in meta["packages"] if str(Path(p["manifest_path"]).resolve()) == manifest)
    lines = tree(package, target)
    if not lines or (lines[0][1], lines[0][2]) != (root["name"], root["version"]):
        raise SystemExit(f"thirdparty: cargo tree for {package} ({target}) did not start with the package itself")
    edges: dict[str, set[str]] = {}
    stack: list[str] = []
    for depth, name, version in lines:
        pid = by_key[(name, version)]["id"]
        del stack[depth:]
        if stack:
            edges.setdefault(stack[-1], set()).add(pid)
        edges.setdefault(pid, set())
        stack.append(pid)
    by_id = {p["id"]: p for p in meta["packages"]}
    crates = sorted((by_id[i] for i in edges if i != root["id"]), key=lambda p: (p["name"], p["version"]))
    sums = lock_checksums(meta)
    for c in crates:
        c["_checksum"] = sums.get((c["name"], c["version"]))
    return root, crates, {k: sorted(v) for k, v in edges.items()}


def licence_files(pkg: dict) -> list[Path]:
    d = Path(pkg["manifest_path"]).parent
    files = [f for f in d.iterdir() if f.is_file() and f.name.upper().startswith(LICENSE_PREFIXES)]
    if pkg.get("license_file"):
        lf = (d / pkg["license_file"]).resolve()
        if lf.is_file() and lf not in files:
            files.append(lf)
    if not files:
        files = supplied_texts(pkg["name"])
    return sorted(files, key=lambda f: f.name)


def supplied_texts(name: str) -> list[Path]:
    """Licence texts for a crate that ships none in its package: the texts of its
    project's repository, reviewed and kept under packaging/third-party/texts/<crate>
    or /<family> (the part of the name before the first "-", for a workspace of crates
    such as dashu-int, dashu-float)."""
    texts = ROOT / "packaging" / "third-party" / "texts"
    for d in (texts / name, texts / name.split("-")[0]):
        if d.is_dir():
            return [f for f in d.iterdir() if f.is_file()]
    return []


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
    linux = [t for t in targets if t.startswith(LINUX)]
    zig = zig_texts() if linux and package == "optin-telemetry" else []
    if linux and package == "optin-telemetry":
        if not zig:
            print("thirdparty: FAIL: zig's licence texts are missing (target/zig-venv: run scripts/build-linux)", file=sys.stderr)
            return 1
        only = "" if len(linux) == len(targets) else f"  [{', '.join(linux)} only]"
        out.append(f"  zig compiler_rt (MIT) and LLVM libunwind (Apache-2.0 WITH LLVM-exception), as linked by zig{only}")
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
    if zig:
        out += [bar, "zig compiler_rt and LLVM libunwind (the Linux libraries, linked by zig: scripts/build-linux)",
                "Integer and float helpers from zig's compiler_rt (MIT, zig's licence) and the unwinder",
                "that catches a panic at the C boundary, LLVM's libunwind (Apache-2.0 WITH",
                "LLVM-exception, whose exception asks no notice for compiled code; given for completeness).",
                bar, ""]
        for f in zig:
            out += [f"--- {f.relative_to(f.parents[2]) if f.name != 'LICENSE' else 'zig LICENSE'} ---", f.read_text(errors="replace").rstrip(), ""]
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


# ---------------------------------------------------------------- SBOM against the build

def built_units(messages: Path) -> tuple[set[str], set[str], str]:
    """From `cargo build --message-format=json` of one binary: every crate compiled
    (libraries and proc-macros, build scripts left out), the crates compiled with the
    root's own optimisation level (the normal dependencies linked into the binary;
    build-script and proc-macro dependencies get the build-override profile), and
    the root's "name version"."""
    units = []
    for line in messages.read_text().splitlines():
        if not line.startswith("{"):
            continue
        m = json.loads(line)
        if m.get("reason") != "compiler-artifact" or "custom-build" in m["target"]["kind"]:
            continue
        # package_id: "registry+URL#name@version", "path+file:///dir#version" or "...#name@version"
        frag = m["package_id"].rsplit("#", 1)[1]
        if "@" in frag:
            name, version = frag.rsplit("@", 1)
        else:
            name, version = Path(m["manifest_path"]).parent.name, frag
            name = m["target"]["name"].replace("_", "-") if name in ("", ".") else name
        units.append((f"{name} {version}", m["profile"]["opt_level"], m["manifest_path"], m["target"]["kind"]))
    roots = [u for u in units if any(k in ("cdylib", "staticlib", "bin") for k in u[3])]
    if not roots:
        raise SystemExit(f"thirdparty: {messages}: no cdylib/staticlib/bin artifact among {len(units)} units")
    root, level = roots[0][0], roots[0][1]
    compiled = {u[0] for u in units} - {root}
    linked = {u[0] for u in units if u[1] == level and "proc-macro" not in u[3]} - {root}
    return compiled, linked, root


def cmd_sbom_check(args) -> int:
    """The SBOM names exactly what the build put into the binary: every component was
    compiled, and every crate linked in (compiled like the root) is a component."""
    bom = json.loads(Path(args.sbom).read_text())
    compiled, linked, root = built_units(Path(args.cargo_json))
    comps = {f"{c['name']} {c['version']}" for c in bom["components"]}
    problems = [f"{c} is in the SBOM but the build did not compile it" for c in sorted(comps - compiled)]
    problems += [f"{c} is linked into the binary but not in the SBOM" for c in sorted(linked - comps)]
    for p in problems:
        print(f"thirdparty: FAIL: {args.sbom}: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"thirdparty: {Path(args.sbom).name}: its {len(comps)} components are what the build of {root} compiled "
          f"({len(linked)} linked in, the rest proc-macros and their dependencies)")
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
    p = sub.add_parser("sbom-check")
    p.add_argument("sbom")
    p.add_argument("cargo_json", help="output of cargo build --message-format=json for the binary")
    p.set_defaults(fn=cmd_sbom_check)
    args = ap.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
