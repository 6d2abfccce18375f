#!/usr/bin/env python3
"""Deterministic archives: the same tree gives the same bytes on any machine.

    archive.py tar.gz OUT.tar.gz DIR     # DIR's basename is the top folder in the archive
    archive.py zip    OUT.zip    DIR

Entries sorted by path, mtime = $SOURCE_DATE_EPOCH (0 if unset), owner root:root,
modes normalised (0755 for folders and executables/libraries, 0644 for the rest;
symbolic links kept as links in a tar.gz, refused in a zip),
gzip header without a file name, its time SOURCE_DATE_EPOCH.
"""

import gzip
import io
import os
import sys
import tarfile
import time
import zipfile
from pathlib import Path

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def entries(top: Path):
    """(relative path inside the archive, path on disk) for the folder and everything under it."""
    out = [(top.name, top)]
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            out.append((str(Path(top.name) / p.relative_to(top)), p))
    return sorted(out)


def mode(p: Path) -> int:
    return 0o755 if p.is_dir() or os.access(p, os.X_OK) else 0o644


def write_tar_gz(out: Path, top: Path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, p in entries(top):
            info = tar.gettarinfo(str(p), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "root", "root"
            info.mode = 0o777 if p.is_symlink() else mode(p)   # links: as ln -s makes them
            if info.isreg():
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=EPOCH, compresslevel=9) as gz:
        gz.write(buf.getvalue())


def write_zip(out: Path, top: Path):
    # zip stores local time without a zone; 1980 is its earliest date.
    stamp = time.gmtime(max(EPOCH, 315532800))[:6]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, p in entries(top):
            if p.is_symlink():
                sys.exit(f"archive.py: {p} is a symbolic link; a zip would hold a copy")
            info = zipfile.ZipInfo(name + ("/" if p.is_dir() else ""), date_time=stamp)
            info.create_system = 3  # Unix, so the modes below are read
            info.external_attr = ((0o40000 if p.is_dir() else 0o100000) | mode(p)) << 16
            if p.is_dir():
                z.writestr(info, b"")
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, p.read_bytes(), compresslevel=9)


def main():
    kind, out, top = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]).resolve()
    {"tar.gz": write_tar_gz, "zip": write_zip}[kind](out, top)


if __name__ == "__main__":
    main()
