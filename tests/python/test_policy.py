"""The administrator's machine-wide switch (src/policy.rs).

- The Group Policy template (windows/policy/) is well-formed XML and names
  exactly the registry key and value the code reads; every string it uses is
  in both the English and the German ADML.
- Linux, end to end through the real cdylib: /etc/optin-telemetry/disabled
  and /etc/optin-telemetry/<product>.disabled block a due report and show in
  blocked_by. The files are made in a private mount namespace (an overlay on
  /etc that only the child process sees), so the real /etc is never touched
  and other programs on this machine are not blocked. The library itself has
  no way to be pointed elsewhere (that could be used to hide a policy).
  The Windows registry side runs under Wine in tests/windows/policy_check.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import optin_telemetry as ot
from conftest import ROOT, make_config

NS = {"p": "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"}
POLICY_DIR = ROOT / "windows" / "policy"
SOURCE = (ROOT / "src" / "policy.rs").read_text()


def rust_const(name: str) -> str:
    m = re.search(rf'pub const {name}: &str = r?"([^"]*)";', SOURCE)
    assert m, f"{name} not found in src/policy.rs"
    return m.group(1)


def strings(adml: Path) -> dict:
    root = ET.parse(adml).getroot()
    return {s.get("id"): (s.text or "") for s in root.iterfind("p:resources/p:stringTable/p:string", NS)}


def test_admx_names_exactly_the_registry_values_the_code_reads():
    key, value = rust_const("REGISTRY_KEY"), rust_const("REGISTRY_VALUE")
    assert (key, value) == (r"SOFTWARE\Policies\optin-telemetry", "Disabled")  # *fixed* names
    assert "HKEY_LOCAL_MACHINE" in SOURCE and "RegGetValueW" in SOURCE
    root = ET.parse(POLICY_DIR / "optin-telemetry.admx").getroot()
    assert root.tag == f"{{{NS['p']}}}policyDefinitions"
    policies = root.findall("p:policies/p:policy", NS)
    assert policies, "no policy in the ADMX"
    keys = []
    for pol in policies:
        name = pol.get("name")
        assert pol.get("class") == "Machine", f"{name}: the library reads HKLM only"
        assert pol.get("valueName") == value, f"{name}: valueName {pol.get('valueName')!r}"
        assert [d.get("value") for d in pol.findall("p:enabledValue/p:decimal", NS)] == ["1"], name
        assert [d.get("value") for d in pol.findall("p:disabledValue/p:decimal", NS)] == ["0"], name
        assert pol.find("p:elements", NS) is None, f"{name}: writes values the code does not read"
        keys.append(pol.get("key"))
    # Machine-wide, plus product subkeys whose names are valid "product" values.
    assert keys[0] == key and keys.count(key) == 1, keys
    for k in keys[1:]:
        assert k.startswith(key + "\\"), k
        product = k[len(key) + 1:]
        assert re.fullmatch(r"[A-Za-z0-9._+-][A-Za-z0-9 ._+-]{0,62}[A-Za-z0-9._+-]", product), f"{product!r} is not a valid product name"


def test_adml_english_and_german_define_every_string_the_admx_uses():
    admx = (POLICY_DIR / "optin-telemetry.admx").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\(string\.([A-Za-z0-9_]+)\)", admx))
    assert used
    en, de = strings(POLICY_DIR / "en-US" / "optin-telemetry.adml"), strings(POLICY_DIR / "de-DE" / "optin-telemetry.adml")
    assert set(en) == used, (set(en) ^ used)
    assert set(de) == used, (set(de) ^ used)
    for sid in used:
        assert en[sid].strip() and de[sid].strip(), sid
    # The help texts name the value an administrator can check with regedit.
    assert r"HKLM\SOFTWARE\Policies\optin-telemetry" in en["DisableAllProducts_Help"]
    assert r"HKLM\SOFTWARE\Policies\optin-telemetry" in de["DisableAllProducts_Help"]
    assert "Registrierungswert" in de["DisableAllProducts_Help"]  # really German, not a copy


# ---- Linux: files under /etc/optin-telemetry, in a private mount namespace ----

CHILD = r"""
import json, sys
import optin_telemetry as ot
cfg, cmds = json.loads(sys.argv[1]), json.loads(sys.argv[2])
c = ot.Client(cfg)
c.set_consent(True)
for op, *args in cmds:
    if op == "tick":
        c.tick(args[0])
    elif op == "flush":
        c.flush(args[0])
    elif op == "status":
        print(json.dumps(c.status()), flush=True)
c.close()
"""

# Overlay /etc (changes land in upper/, seen only inside this namespace),
# create the policy files given as arguments, then run the child.
NAMESPACE_SCRIPT = r"""
set -e
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
mkdir -p /etc/optin-telemetry
shift
while [ "$1" != "--" ]; do : > "/etc/optin-telemetry/$1"; shift; done
shift
exec "$@"
"""


def namespace_available(tmp: Path) -> str | None:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return "needs Linux and unshare(1)"
    (tmp / "upper").mkdir(parents=True)
    (tmp / "work").mkdir()
    p = subprocess.run(["unshare", "-rm", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT, "sh", str(tmp), "--", "true"],
                       capture_output=True, text=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return None if p.returncode == 0 else f"cannot make a private mount namespace with an overlay on /etc: {p.stderr.strip()}"


def run_in_namespace(tmp: Path, files, cfg, cmds):
    (tmp / "upper").mkdir(parents=True)
    (tmp / "work").mkdir()
    script = tmp / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ)
    env.pop("OPTIN_TELEMETRY_DISABLE", None)
    env["PYTHONPATH"] = str(ROOT / "bindings" / "python")
    env["OPTIN_TELEMETRY_LIB"] = str(ot.library_path())
    argv = ["unshare", "-rm", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT, "sh", str(tmp), *files, "--",
            sys.executable, str(script), json.dumps(cfg), json.dumps(cmds)]
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("files, blocked", [
    ([], None),
    (["disabled"], "/etc/optin-telemetry/disabled"),
    (["Mock Archiver.disabled"], "/etc/optin-telemetry/Mock Archiver.disabled"),
    (["Other Product.disabled"], None),
])
def test_policy_files_block_sending_and_show_in_blocked_by(tmp_path, collector, files, blocked):
    reason = namespace_available(tmp_path / "probe")
    if reason:
        pytest.skip(reason)
    assert not Path("/etc/optin-telemetry/disabled").exists(), "this machine has the policy set: the control case cannot pass"
    cfg = make_config(tmp_path / "state", endpoint=collector.url)
    now = int(time.time())
    # Without the policy: consent and the first tick draw the due time.
    (first,) = run_in_namespace(tmp_path / "ns1", [], cfg, [["tick", now], ["status"]])
    due = first["next_due"]
    assert isinstance(due, int), first
    # With the policy files: the report is due now.
    statuses = run_in_namespace(tmp_path / "ns2", files, cfg, [["tick", due], ["flush", 15000], ["status"]])
    st = statuses[-1]
    time.sleep(0.2)
    if blocked is None:
        assert st["blocked_by"] is None, st
        assert len(collector.wait_for(1, 5)) == 1, "control: without the policy the report is sent"
    else:
        assert st["consent"] == "granted" and st["blocked_by"] and blocked in st["blocked_by"], st
        assert st["next_due"] is None, st
        assert collector.requests == []
    assert not Path("/etc/optin-telemetry").exists(), "the real /etc was changed"
