#!/usr/bin/env python3
"""Reads the VERSIONINFO resource of a PE file (a DLL or EXE) without Windows:
PE headers -> resource directory (data directory 2) -> type 16 (RT_VERSION)
-> VS_VERSIONINFO: the fixed part (VS_FIXEDFILEINFO) and every string of
every StringFileInfo table.

    versioninfo.py FILE                    prints what it found; exit 1 if none
    versioninfo.py FILE --expect VERSION   also checks the fields a Windows
                                           host, installer or inventory shows
                                           (ProductName, FileVersion = VERSION,
                                           CompanyName, LegalCopyright, ...)

Used by scripts/build-windows and scripts/test-windows.
"""

from __future__ import annotations

import struct
import sys
from typing import Dict, List, Optional, Tuple

RT_VERSION = 16
VFT_DLL = 2


class NotFound(Exception):
    pass


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _sections(pe: bytes) -> Tuple[List[Tuple[int, int, int, int]], int]:
    """[(virtual address, virtual size, raw pointer, raw size)], resource directory RVA."""
    if pe[:2] != b"MZ":
        raise NotFound("not a PE file (no MZ header)")
    lfanew = struct.unpack_from("<I", pe, 0x3C)[0]
    if pe[lfanew:lfanew + 4] != b"PE\0\0":
        raise NotFound("not a PE file (no PE signature)")
    coff = lfanew + 4
    nsections, = struct.unpack_from("<H", pe, coff + 2)
    opt_size, = struct.unpack_from("<H", pe, coff + 16)
    opt = coff + 20
    magic, = struct.unpack_from("<H", pe, opt)
    dirs = opt + {0x10B: 96, 0x20B: 112}[magic]   # PE32, PE32+
    count, = struct.unpack_from("<I", pe, dirs - 4)
    if count <= 2:
        raise NotFound("no resource data directory")
    rsrc_rva, rsrc_size = struct.unpack_from("<II", pe, dirs + 2 * 8)
    if rsrc_rva == 0 or rsrc_size == 0:
        raise NotFound("no resources")
    table = opt + opt_size
    secs = []
    for i in range(nsections):
        vsize, va, rawsize, rawptr = struct.unpack_from("<IIII", pe, table + 40 * i + 8)
        secs.append((va, vsize, rawptr, rawsize))
    return secs, rsrc_rva


def _offset(secs: List[Tuple[int, int, int, int]], rva: int) -> int:
    for va, vsize, rawptr, rawsize in secs:
        if va <= rva < va + max(vsize, rawsize):
            return rawptr + rva - va
    raise NotFound(f"RVA {rva:#x} is in no section")


def _entries(pe: bytes, base: int, off: int) -> List[Tuple[int, int]]:
    """(name or id, offset to data with the subdirectory bit) of one resource directory."""
    named, ids = struct.unpack_from("<HH", pe, base + off + 12)
    return [struct.unpack_from("<II", pe, base + off + 16 + 8 * i) for i in range(named + ids)]


def version_resource(pe: bytes) -> bytes:
    secs, rsrc_rva = _sections(pe)
    base = _offset(secs, rsrc_rva)
    level = 0
    for name, data in _entries(pe, base, 0):
        if name == RT_VERSION and data & 0x80000000:
            level = data & 0x7FFFFFFF
            break
    else:
        raise NotFound("no RT_VERSION (16) entry in the resource directory")
    # Name (normally 1), then language: the first of each.
    for _ in range(2):
        entries = _entries(pe, base, level)
        if not entries:
            raise NotFound("an empty RT_VERSION directory")
        level = entries[0][1]
        if level & 0x80000000:
            level &= 0x7FFFFFFF
        else:
            break
    data_rva, size = struct.unpack_from("<II", pe, base + level)
    start = _offset(secs, data_rva)
    return pe[start:start + size]


Block = Tuple[str, int, bytes, list]


def _block(data: bytes, off: int) -> Tuple[Block, int]:
    """One VS_VERSIONINFO-style block: (key, type, value bytes, children), end."""
    length, vlen, typ = struct.unpack_from("<HHH", data, off)
    end = off + length
    p = off + 6
    k = p
    while data[k:k + 2] != b"\0\0":
        k += 2
    key = data[p:k].decode("utf-16-le")
    p = _align4(k + 2)
    vbytes = vlen * 2 if typ == 1 else vlen   # text values count WCHARs
    value = data[p:p + vbytes]
    p = _align4(p + vbytes)
    children = []
    while p + 6 <= end:
        child, p2 = _block(data, p)
        if p2 <= p:
            break
        children.append(child)
        p = _align4(p2)
    return (key, typ, value, children), end


def parse(pe: bytes) -> Dict[str, object]:
    root, _ = _block(version_resource(pe), 0)
    key, _, fixed, children = root
    if key != "VS_VERSION_INFO":
        raise NotFound(f"the RT_VERSION resource starts with {key!r}, not VS_VERSION_INFO")
    sig, _, fms, fls, pms, pls, _, _, fos, ftype = struct.unpack_from("<10I", fixed, 0)
    if sig != 0xFEEF04BD:
        raise NotFound("VS_FIXEDFILEINFO has the wrong signature")
    info: Dict[str, object] = {
        "fixed FileVersion": f"{fms >> 16}.{fms & 0xFFFF}.{fls >> 16}.{fls & 0xFFFF}",
        "fixed ProductVersion": f"{pms >> 16}.{pms & 0xFFFF}.{pls >> 16}.{pls & 0xFFFF}",
        "fixed FileOS": fos,
        "fixed FileType": ftype,
    }
    strings: Dict[str, str] = {}
    translations: List[str] = []
    for ckey, _, _, tables in children:
        if ckey == "StringFileInfo":
            for tkey, _, _, entries in tables:
                info["string table"] = tkey
                for skey, _, svalue, _ in entries:
                    strings[skey] = svalue.decode("utf-16-le").rstrip("\0")
        elif ckey == "VarFileInfo":
            for _, _, value, _ in tables:
                for i in range(0, len(value) - 3, 4):
                    lang, cp = struct.unpack_from("<HH", value, i)
                    translations.append(f"{lang:04x}{cp:04x}")
    info["strings"] = strings
    info["translations"] = translations
    return info


def check(info: Dict[str, object], version: str) -> List[str]:
    strings = info["strings"]
    assert isinstance(strings, dict)
    core = version.split("-")[0].split("+")[0]
    parts = (core.split(".") + ["0", "0", "0"])[:3]
    problems = []
    want = {
        "ProductName": "optin-telemetry",
        "FileVersion": version,
        "ProductVersion": version,
        "OriginalFilename": "optin_telemetry.dll",
        "InternalName": "optin_telemetry",
    }
    for k, v in want.items():
        if strings.get(k) != v:
            problems.append(f"{k} is {strings.get(k)!r}, expected {v!r}")
    for k in ("CompanyName", "LegalCopyright", "FileDescription"):
        if not strings.get(k):
            problems.append(f"{k} is missing or empty")
    fixed = ".".join(parts) + ".0"
    for k in ("fixed FileVersion", "fixed ProductVersion"):
        if info[k] != fixed:
            problems.append(f"{k} is {info[k]}, expected {fixed}")
    if info["fixed FileType"] != VFT_DLL:
        problems.append(f"FileType is {info['fixed FileType']}, expected VFT_DLL (2)")
    if "040904b0" not in [t.lower() for t in info["translations"]]:  # type: ignore[union-attr]
        problems.append(f"VarFileInfo\\Translation is {info['translations']}, expected 040904b0 (US English, Unicode)")
    return problems


def main(argv: List[str]) -> int:
    path = argv[1]
    expect: Optional[str] = argv[3] if len(argv) > 3 and argv[2] == "--expect" else None
    try:
        info = parse(open(path, "rb").read())
    except (NotFound, struct.error, KeyError) as e:
        print(f"versioninfo: {path}: no VERSIONINFO: {e}")
        return 1
    print(f"versioninfo: {path}: fixed FileVersion {info['fixed FileVersion']}, ProductVersion {info['fixed ProductVersion']}, "
          f"FileType {info['fixed FileType']}, table {info.get('string table')}, translations {info['translations']}")
    for k, v in info["strings"].items():  # type: ignore[attr-defined]
        print(f"versioninfo:   {k} = {v}")
    if expect is not None:
        problems = check(info, expect)
        for p in problems:
            print(f"versioninfo: FAIL: {p}")
        if problems:
            return 1
        print(f"versioninfo: OK: the fields match version {expect}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
