#!/usr/bin/env python3
"""Writes OptInTelemetry.<version>.nupkg from a staged folder, without a NuGet client.

    pack.py STAGE OUT.nupkg --version V [--release-notes TEXT]

STAGE holds the package's files at their paths in the package (lib/net462/...,
runtimes/<rid>/native/..., build/..., README.md, ...). The nuspec is
packaging/nuget/OptInTelemetry.nuspec with its @...@ fields filled in, written
as given (an old packer such as Debian's nuget 2.8 rewrote the dependency
group's framework to "Unsupported0.0" and refused <license> and <readme>).

A .nupkg is an OPC zip: the nuspec at the root, the files, _rels/.rels (points
at the nuspec and the core properties), package/services/metadata/
core-properties/<id>.psmdcp and [Content_Types].xml. Reproducible: entries in a
fixed order (OPC parts first, then the files sorted by path), every timestamp
SOURCE_DATE_EPOCH (default 1980-01-01; zip cannot say earlier), fixed
permissions, relationship ids and the .psmdcp name derived from the contents.

projectUrl and repository come from packaging/project_urls.py (Cargo.toml's
`homepage` / `repository`, else the environment, else a placeholder under
example.invalid, with a warning: it is not a real address).
The repository's commit is `git rev-parse HEAD` when git can tell it.
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "packaging/nuget/OptInTelemetry.nuspec"
sys.path.insert(0, str(ROOT / "packaging"))
import project_urls  # noqa: E402  (one place for the addresses: packaging/project_urls.py)

CT_RELS = "application/vnd.openxmlformats-package.relationships+xml"
CT_CORE = "application/vnd.openxmlformats-package.core-properties+xml"
CT_FILE = "application/octet-stream"


def urls() -> tuple[str, str, str | None]:
    project, repo, _docs = project_urls.urls("pack.py")
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return project, repo, commit


def nuspec(version: str, notes: str) -> bytes:
    project, repo, commit = urls()
    text = TEMPLATE.read_text()
    text = text.replace("@VERSION@", escape(version)).replace("@PROJECT_URL@", escape(project))
    text = text.replace("@REPOSITORY_URL@", escape(repo)).replace("@RELEASE_NOTES@", escape(notes))
    text = text.replace("@REPOSITORY_COMMIT@", f" commit={quoteattr(commit)}" if commit else "")
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise SystemExit(f"pack.py: unreplaced fields in the nuspec: {left}")
    return text.encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--version", required=True)
    ap.add_argument("--release-notes", default=None)
    args = ap.parse_args()

    notes = args.release_notes or (
        f"optin-telemetry {args.version}: the .NET binding (lib/net462) with the native library for "
        "win-x64, win-x86 and linux-x64. See README.md in the package.")
    spec = nuspec(args.version, notes)
    spec_name = "OptInTelemetry.nuspec"

    files = sorted(p.relative_to(args.stage).as_posix() for p in args.stage.rglob("*") if p.is_file())
    reserved = [f for f in files if f == spec_name or f.startswith(("_rels/", "package/")) or f == "[Content_Types].xml"]
    if reserved:
        raise SystemExit(f"pack.py: the stage holds names the package format reserves: {reserved}")

    digest = hashlib.sha256(spec)
    for f in files:
        digest.update(f.encode() + b"\0" + (args.stage / f).read_bytes())
    ident = digest.hexdigest()[:32]
    psmdcp = f"package/services/metadata/core-properties/{ident}.psmdcp"

    m = re.search(r"<description>(.*?)</description>", spec.decode(), re.S)
    tags = re.search(r"<tags>(.*?)</tags>", spec.decode(), re.S)
    core = ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<coreProperties xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns="http://schemas.openxmlformats.org/package/2006/metadata/core-properties">'
            "<dc:creator>optin-telemetry contributors</dc:creator>"
            f"<dc:description>{m.group(1) if m else ''}</dc:description>"
            "<dc:identifier>OptInTelemetry</dc:identifier>"
            f"<version>{escape(args.version)}</version>"
            f"<keywords>{tags.group(1) if tags else ''}</keywords>"
            "<lastModifiedBy>optin-telemetry packaging/nuget/pack.py</lastModifiedBy>"
            "</coreProperties>").encode()
    rels = ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Type="http://schemas.microsoft.com/packaging/2010/07/manifest" Target="/{spec_name}" Id="R{ident[:16]}" />'
            '<Relationship Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" '
            f'Target="/{psmdcp}" Id="R{ident[16:]}" />'
            "</Relationships>").encode()
    exts = sorted({Path(f).suffix[1:].lower() for f in files + [spec_name] if Path(f).suffix} - {"rels", "psmdcp"})
    noext = [f for f in files if not Path(f).suffix]
    types = ('<?xml version="1.0" encoding="utf-8"?>\n'
             '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
             f'<Default Extension="rels" ContentType="{CT_RELS}" />'
             f'<Default Extension="psmdcp" ContentType="{CT_CORE}" />'
             + "".join(f'<Default Extension="{e}" ContentType="{CT_FILE}" />' for e in exts)
             + "".join(f'<Override PartName="/{f}" ContentType="{CT_FILE}" />' for f in noext)
             + "</Types>").encode()

    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)
    stamp = time.gmtime(epoch)[:6]

    def add(z: zipfile.ZipFile, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 0
        info.external_attr = 0
        z.writestr(info, data, compresslevel=9)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        add(z, "_rels/.rels", rels)
        add(z, spec_name, spec)
        for f in files:
            add(z, f, (args.stage / f).read_bytes())
        add(z, psmdcp, core)
        add(z, "[Content_Types].xml", types)
    tmp.replace(args.out)
    print(f"pack.py: {args.out}: {len(files) + 4} entries, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
