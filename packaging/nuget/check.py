#!/usr/bin/env python3
"""Checks a .nupkg as a consumer's NuGet client would read it.

    check.py PACKAGE.nupkg VERSION

- the zip: every entry has one timestamp; [Content_Types].xml gives a type to
  every part; _rels/.rels points at the nuspec and at a .psmdcp that exist;
- the nuspec: id, version, authors, description, releaseNotes, tags,
  license type="expression" "MIT OR Apache-2.0", projectUrl, repository
  (type git, url), readme naming a file in the package;
- the files: exactly the expected set (no file missing, none unlisted), managed
  code only in lib/<tfm>/ where <tfm> is the dependency group's targetFramework
  (.NETFramework4.6.2 = net462), native code only in runtimes/<rid>/native/ for
  win-x64, win-x86 and linux-x64, each native library of the right machine type;
- the XML documentation documents TelemetryClient, UsageDataConsentPanel and
  UsageDataConsentDialog.Show (lib/net462/OptInTelemetry.WinForms.dll).
Prints one line per check; exits 1 on any problem.
"""
import re
import sys
import xml.etree.ElementTree as ET
import zipfile

NS = "{http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd}"
TFM = {".NETFramework4.6.2": "net462"}
EXPECTED = [
    "OptInTelemetry.nuspec", "README.md", "LICENSE-MIT", "LICENSE-APACHE", "THIRD-PARTY-NOTICES.txt",
    "lib/net462/OptInTelemetry.dll", "lib/net462/OptInTelemetry.xml",
    "lib/net462/OptInTelemetry.WinForms.dll", "lib/net462/OptInTelemetry.WinForms.xml",
    "runtimes/win-x64/native/optin_telemetry.dll", "runtimes/win-x86/native/optin_telemetry.dll",
    "runtimes/linux-x64/native/liboptin_telemetry.so",
    "build/OptInTelemetry.targets", "buildTransitive/OptInTelemetry.targets",
    "sbom.win-x64.cdx.json", "sbom.win-x86.cdx.json", "sbom.linux-x64.cdx.json",
]
OPC = ("_rels/.rels", "[Content_Types].xml")
bad = []


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


def problem(msg: str) -> None:
    print(f"  FAIL {msg}")
    bad.append(msg)


def machine(data: bytes) -> str:
    if data[:4] == b"\x7fELF":
        return {62: "x86-64", 3: "i386"}.get(int.from_bytes(data[18:20], "little"), "elf-other")
    if data[:2] == b"MZ":
        pe = int.from_bytes(data[0x3C:0x40], "little")
        return {0x8664: "x86-64", 0x14C: "i386"}.get(int.from_bytes(data[pe + 4:pe + 6], "little"), "pe-other")
    return "?"


def main() -> int:
    path, version = sys.argv[1], sys.argv[2]
    z = zipfile.ZipFile(path)
    names = z.namelist()
    stamps = {i.date_time for i in z.infolist()}
    (ok if len(stamps) == 1 else problem)(f"zip: {len(names)} entries, timestamps {sorted(stamps)}")
    if len(set(names)) != len(names):
        problem("zip: duplicate entries")
    files = [n for n in names if n not in OPC and not n.startswith("package/services/metadata/core-properties/")]

    # OPC parts
    rels = ET.fromstring(z.read("_rels/.rels"))
    targets = {r.get("Type").rsplit("/", 1)[-1]: r.get("Target").lstrip("/") for r in rels}
    if targets.get("manifest") != "OptInTelemetry.nuspec" or targets.get("core-properties") not in names:
        problem(f"_rels/.rels: {targets}")
    else:
        ok(f"_rels/.rels -> OptInTelemetry.nuspec and {targets['core-properties']}")
    types = ET.fromstring(z.read("[Content_Types].xml"))
    defaults = {t.get("Extension").lower() for t in types if t.tag.endswith("Default")}
    overrides = {t.get("PartName").lstrip("/") for t in types if t.tag.endswith("Override")}
    untyped = [n for n in names if n != "[Content_Types].xml" and n not in overrides
               and not ("." in n.rsplit("/", 1)[-1] and n.rsplit(".", 1)[-1].lower() in defaults)]
    (problem if untyped else ok)(f"[Content_Types].xml types every part{': missing ' + str(untyped) if untyped else ''}")

    # nuspec
    spec = ET.fromstring(z.read("OptInTelemetry.nuspec"))
    md = spec.find(f"{NS}metadata")
    if md is None:
        problem("nuspec: no <metadata> in the 2013/05 nuspec namespace")
        return 1

    def field(name: str) -> str:
        e = md.find(f"{NS}{name}")
        return "" if e is None or e.text is None else e.text.strip()

    for name, want in (("id", "OptInTelemetry"), ("version", version)):
        (ok if field(name) == want else problem)(f"nuspec {name}: {field(name)!r}")
    for name in ("authors", "description", "releaseNotes", "tags", "projectUrl"):
        (ok if field(name) else problem)(f"nuspec {name}: {field(name)[:70]!r}{'...' if len(field(name)) > 70 else ''}")
    lic = md.find(f"{NS}license")
    lic_desc = None if lic is None else (lic.get("type"), lic.text)
    (ok if lic_desc == ("expression", "MIT OR Apache-2.0") else problem)(f"nuspec license: {lic_desc}")
    repo = md.find(f"{NS}repository")
    repo_desc = None if repo is None else dict(repo.attrib)
    (ok if repo_desc and repo_desc.get("type") == "git" and repo_desc.get("url", "").startswith("https://") else problem)(
        f"nuspec repository: {repo_desc}")
    if repo_desc and "example.invalid" in repo_desc.get("url", ""):
        print("  NOTE the repository/project URLs are placeholders (example.invalid): Cargo.toml has no `repository`/`homepage`")
    readme = field("readme")
    (ok if readme and readme in names else problem)(f"nuspec readme: {readme!r} {'is in the package' if readme in names else 'is NOT in the package'}")
    groups = [g.get("targetFramework") for g in md.iter(f"{NS}group")]
    tfms = {f.split("/")[1] for f in files if f.startswith("lib/")}
    want_tfms = {TFM.get(g, f"<unknown {g}>") for g in groups}
    (ok if groups and tfms == want_tfms else problem)(
        f"dependency groups {groups} = lib/ folders {sorted(tfms)}")

    # files
    missing = [f for f in EXPECTED if f not in files]
    extra = [f for f in files if f not in EXPECTED]
    (problem if missing or extra else ok)(
        f"files: {len(files)} ({'missing ' + str(missing) if missing else 'none missing'}, {'unexpected ' + str(extra) if extra else 'none unexpected'})")
    arch = {"runtimes/win-x64/native/optin_telemetry.dll": "x86-64", "runtimes/win-x86/native/optin_telemetry.dll": "i386",
            "runtimes/linux-x64/native/liboptin_telemetry.so": "x86-64"}
    for f, want in arch.items():
        if f in files:
            got = machine(z.read(f))
            (ok if got == want else problem)(f"{f}: {got}, {z.getinfo(f).file_size} bytes")
    for f in files:
        parts = f.split("/")
        if f.endswith((".dll", ".so")) and not (
                (parts[0] == "lib" and len(parts) == 3) or (parts[0] == "runtimes" and len(parts) == 4 and parts[2] == "native")):
            problem(f"{f}: a binary outside lib/<tfm>/ and runtimes/<rid>/native/")
    xml = z.read("lib/net462/OptInTelemetry.xml").decode() if "lib/net462/OptInTelemetry.xml" in files else ""
    (ok if "T:OptInTelemetry.TelemetryClient" in xml else problem)("the XML documentation documents OptInTelemetry.TelemetryClient")
    xml = z.read("lib/net462/OptInTelemetry.WinForms.xml").decode() if "lib/net462/OptInTelemetry.WinForms.xml" in files else ""
    (ok if "T:OptInTelemetry.WinForms.UsageDataConsentPanel" in xml and "M:OptInTelemetry.WinForms.UsageDataConsentDialog.Show(" in xml else problem)(
        "the XML documentation documents UsageDataConsentPanel and UsageDataConsentDialog.Show")
    print(f"  {len(files)} files, {len(bad)} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
