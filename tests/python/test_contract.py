"""Contract checks for requirements of issues 2 and 3 that test_core_api.py and
test_sending.py do not already pin down: the exact C signatures and constants
in the generated header, the header as the manual, the shape of
tel_status_json, the issue's own words as JSON keys, the cheap not-due tick,
the lock file that is never replaced, and the proxy.

Everything runs against the real cdylib (ctypes), the real header compiled by
gcc/g++, real files and real loopback sockets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

import optin_telemetry as ot
from collector import Proxy
from conftest import ROOT, make_config

HEADER = ROOT / "include" / "optin_telemetry.h"
WEEK = 7 * 24 * 3600
T0 = int(time.time())

# Issue 2 "The C API" and issue 3 "API": names and C types are fixed.
SIGNATURES = {
    "tel_open": ("tel_result", "const char *, tel_client **"),
    "tel_close": ("void", "tel_client *"),
    "tel_set_consent": ("tel_result", "tel_client *, int32_t"),
    "tel_get_consent": ("tel_result", "tel_client *, uint32_t *"),
    "tel_set_bool": ("tel_result", "tel_client *, const char *, int32_t"),
    "tel_set_count": ("tel_result", "tel_client *, const char *, uint64_t"),
    "tel_set_choice": ("tel_result", "tel_client *, const char *, const char *"),
    "tel_set_values_json": ("tel_result", "tel_client *, const char *"),
    "tel_preview_json": ("tel_result", "tel_client *, char **"),
    "tel_describe_json": ("tel_result", "tel_client *, const char *, char **"),
    "tel_string_free": ("void", "char *"),
    "tel_last_error_message": ("const char *", "void"),
    "tel_version": ("const char *", "void"),
    "tel_tick": ("tel_result", "tel_client *"),
    "tel_tick_at": ("tel_result", "tel_client *, int64_t"),
    "tel_flush": ("tel_result", "tel_client *, uint32_t"),
    "tel_status_json": ("tel_result", "tel_client *, char **"),
    "tel_history_json": ("tel_result", "tel_client *, char **"),
    "tel_clear_history": ("tel_result", "tel_client *"),
}


def _compile(compiler, source, *flags):
    if not shutil.which(compiler):
        pytest.skip(f"{compiler} is not installed")
    r = subprocess.run([compiler, *flags, "-fsyntax-only", "-Wall", "-Werror", "-I", str(HEADER.parent), "-"],
                       input=source, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{compiler} rejected the header contract:\n{r.stderr}"


def _contract_source(cpp):
    assert_ = "static_assert" if cpp else "_Static_assert"
    lines = ["#include <stdint.h>", '#include "optin_telemetry.h"']
    if cpp:
        lines.append("#include <type_traits>")
    # Issue 2: TEL_OK = 0 and the consent constants' values.
    for name, value in [("TEL_OK", 0), ("TEL_CONSENT_UNDECIDED", 0), ("TEL_CONSENT_GRANTED", 1),
                        ("TEL_CONSENT_DENIED", 2), ("TEL_CONSENT_OUTDATED", 3)]:
        lines.append(f'{assert_}({name} == {value}, "{name}");')
    # Issue 2: tel_result is a fixed-size integer type (the header says int32_t).
    if cpp:
        lines.append(f'{assert_}(std::is_same<tel_result, int32_t>::value, "tel_result is int32_t");')
    lines.append("void contract(void) {")
    for name, (ret, args) in SIGNATURES.items():
        lines.append(f"    {ret} (*p_{name})({args}) = {name}; (void)p_{name};")
    lines.append("}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("compiler,flags", [("gcc", ["-x", "c", "-std=c11"]), ("g++", ["-x", "c++", "-std=c++17"])],
                         ids=["c11", "c++17"])
def test_header_declares_the_issue_signatures_and_constants(compiler, flags):
    # Issue 2 "The C API (names are fixed)" + issue 3 "API (names fixed)": every
    # function with exactly these parameter and return types; a mismatch is an
    # incompatible function pointer, which -Werror / C++ turns into an error.
    _compile(compiler, _contract_source(compiler == "g++"), *flags)


def _header_code():
    text = HEADER.read_text()
    return re.sub(r"/\*.*?\*/", "", re.sub(r"//[^\n]*", "", text), flags=re.S)


def test_header_has_no_bool_or_enum_and_distinct_error_codes():
    # Issue 2: "no C bool and no Rust enum crosses the boundary as an input";
    # "distinct non-zero codes for NULL argument, invalid UTF-8, invalid
    # argument, configuration error, I/O error, internal error".
    code = _header_code()
    assert not re.search(r"\b(bool|_Bool|enum)\b", code), "C bool or enum in the header"
    errors = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define (TEL_ERR_\w+) (-?\d+)", code)}
    for required in ("NULL_ARGUMENT", "INVALID_UTF8", "INVALID_ARGUMENT", "CONFIG", "IO", "INTERNAL"):
        assert f"TEL_ERR_{required}" in errors, required
    assert 0 not in errors.values()
    assert len(set(errors.values())) == len(errors), f"error codes not distinct: {errors}"
    # The binding's table (what the suites map codes with) agrees with the header.
    assert {f"TEL_ERR_{n}": c for c, n in ot.ERRORS.items()} == errors


def _function_docs():
    text = HEADER.read_text()
    docs = {}
    for m in re.finditer(r"/\*\*((?:(?!\*/).)*)\*/\s*([^;{]*?)\b(tel_\w+)\(([^)]*)\);", text, re.S):
        docs[m.group(3)] = (re.sub(r"\s*\n\s*\*\s?", " ", m.group(1)), m.group(2).strip(), m.group(4))
    return docs


def test_header_documents_every_function_as_the_manual():
    # Issue 2: "The header is the manual: every function says what it returns,
    # who owns each pointer, and what NULL means."
    docs = _function_docs()
    assert set(docs) == set(SIGNATURES), f"undocumented or extra: {set(SIGNATURES) ^ set(docs)}"
    problems = []
    for name, (doc, ret, params) in docs.items():
        if ret == "tel_result":
            if "Returns TEL_OK" not in doc or "Errors:" not in doc:
                problems.append(f"{name}: does not say what it returns (Returns TEL_OK ... Errors: ...)")
            if "tel_client *client" in params and "`client`" not in doc:
                problems.append(f"{name}: does not say what a NULL client means")
        elif ret == "void":
            if "NULL" not in doc and "Returns nothing" not in doc:
                problems.append(f"{name}: says neither what NULL means nor that it returns nothing")
        else:  # const char *
            if "Never NULL" not in doc or "do not free" not in doc:
                problems.append(f"{name}: must say it is never NULL and not to be freed")
        if "char **out_json" in params and ("tel_string_free" not in doc or "only on success" not in doc):
            problems.append(f"{name}: does not say who owns *out_json and when it is written")
        for p in re.findall(r"const char \*(\w+)", params):
            if f"`{p}`" not in doc:
                problems.append(f"{name}: does not mention its string argument `{p}`")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- status_json

def _status_shape(st):
    # Issue 3: consent one of four strings; next_due and last_sent unix seconds
    # or null; sending a JSON boolean; blocked_by and last_error null or text.
    assert st["consent"] in ("undecided", "granted", "denied", "outdated"), st
    for k in ("next_due", "last_sent"):
        assert st[k] is None or type(st[k]) is int, (k, st)
    assert type(st["sending"]) is bool, st
    for k in ("blocked_by", "last_error"):
        assert st[k] is None or (isinstance(st[k], str) and st[k].strip()), (k, st)


def test_status_json_keys_and_value_types_through_a_lifecycle(lib, state_dir, collector):
    with ot.Client(make_config(state_dir, endpoint=collector.url), lib) as c:
        st = c.status()
        _status_shape(st)
        assert (st["consent"], st["next_due"], st["last_sent"], st["sending"], st["blocked_by"], st["last_error"]) == \
            ("undecided", None, None, False, None, None)
        c.set_consent(True)
        c.tick(T0)
        st = c.status()
        _status_shape(st)
        assert st["consent"] == "granted" and T0 <= st["next_due"] < T0 + WEEK and st["last_sent"] is None
        due = st["next_due"]
        c.tick(due)
        c.flush(15_000)
        st = c.status()
        _status_shape(st)
        assert st["last_sent"] == due and st["next_due"] > due and st["last_error"] is None and st["sending"] is False
        assert len(collector.requests) == 1
        c.set_consent(False)
        st = c.status()
        _status_shape(st)
        assert (st["consent"], st["next_due"]) == ("denied", None)
        c.set_consent(True)
    # Issue 3 "Policy": the config key "disabled": true blocks and says why; false is accepted and blocks nothing.
    with ot.Client(make_config(state_dir, endpoint=collector.url, disabled=True), lib) as c:
        st = c.status()
        _status_shape(st)
        assert st["consent"] == "granted" and "disabled" in st["blocked_by"]
    with ot.Client(make_config(state_dir, endpoint=collector.url, disabled=False), lib) as c:
        assert c.status()["blocked_by"] is None


def test_env_policy_is_visible_in_status_and_describe_even_before_consent(lib, state_dir, monkeypatch):
    # Issue 3 "Policy": OPTIN_TELEMETRY_DISABLE=1; "a block ... is visible, never silent".
    monkeypatch.setenv("OPTIN_TELEMETRY_DISABLE", "1")
    with ot.Client(make_config(state_dir), lib) as c:
        assert "OPTIN_TELEMETRY_DISABLE" in c.status()["blocked_by"]
        assert "OPTIN_TELEMETRY_DISABLE" in c.describe("en")["blocked_by"]
    monkeypatch.setenv("OPTIN_TELEMETRY_DISABLE", "0")
    with ot.Client(make_config(state_dir), lib) as c:
        assert c.status()["blocked_by"] is None


# ----------------------------------------------------------------------------- the issues' words as keys

def test_history_entry_says_when_the_http_outcome_and_the_body(lib, state_dir, collector):
    # Issue 3: history holds "when, the HTTP outcome, and the exact body sent";
    # keys under the issue's own words ("when", "http_status") besides at/status.
    with ot.Client(make_config(state_dir, endpoint=collector.url), lib) as c:
        c.set_consent(True)
        c.tick(T0)
        due = c.status()["next_due"]
        preview = c.preview()
        c.tick(due)
        c.flush(15_000)
        (entry,) = c.history()["reports"]
    assert entry["when"] == entry["at"] == due
    assert entry["http_status"] == entry["status"] == 200 and entry["outcome"] == "delivered"
    assert entry["body"] == preview == collector.requests[0].body.decode()
    (attempt,) = entry["attempts"]
    assert attempt["when"] == attempt["at"] == due and attempt["http_status"] == attempt["status"] == 200


def test_describe_receipt_says_when_and_for_which_schema_and_product(lib, state_dir):
    # Issue 2: "the consent state with a receipt (when, which schema version
    # and digest, which product version)".
    with ot.Client(make_config(state_dir, product_version="4.2.0"), lib) as c:
        t0 = int(time.time())
        c.set_consent(True)
        t1 = int(time.time())
        d = c.describe("en")
        st = c.status()
    r = d["consent"]["receipt"]
    assert d["consent"]["state"] == "granted"
    assert type(r["at"]) is int and r["when"] == r["at"] and t0 <= r["at"] <= t1
    assert (r["schema_version"], r["schema_digest"], r["product_version"]) == (st["schema_version"], st["schema_digest"], "4.2.0")


# ----------------------------------------------------------------------------- cheap tick, state files

def test_a_tick_with_nothing_due_touches_no_file(lib, state_dir):
    # Issue 3: "when nothing is due it reads the clock and compares with a
    # cached due time — no file I/O". The state directory is moved away: a
    # not-due tick must not notice; the due tick must (it needs the lock).
    with ot.Client(make_config(state_dir), lib) as c:
        c.set_consent(True)
        c.tick(T0)
        due = c.status()["next_due"]
        if due <= T0 + 3:
            pytest.skip("the random phase fell within 3 s of the first tick")
        moved = state_dir.with_name("moved-away")
        state_dir.rename(moved)
        try:
            for t in (T0, T0 + 1, T0 + 2):
                c.tick(t)
            assert not state_dir.exists(), "a not-due tick touched the state directory"
            with pytest.raises(ot.TelemetryError) as e:
                c.tick(due)
            assert e.value.code == ot.TEL_ERR_IO
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
            moved.rename(state_dir)


@pytest.mark.skipif(os.name != "posix", reason="inode numbers")
def test_lock_file_is_never_replaced_while_the_state_file_is(lib, state_dir):
    # Issue 2 "State on disk": a separate lock file, never deleted, never
    # renamed; the state file replaced atomically (temp file + rename).
    with ot.Client(make_config(state_dir), lib) as c:
        lock = (state_dir / "lock").stat().st_ino
        c.set_consent(True)
        first = (state_dir / "state.json").stat().st_ino
        c.set_consent(False)
        assert (state_dir / "state.json").stat().st_ino != first, "state.json rewritten in place"
        (state_dir / "state.json").write_bytes(b"{broken")
        assert c.consent == ot.Consent.UNDECIDED
        c.set_consent(True)
        c.tick(T0)
        c.clear_history()
        with ot.Client(make_config(state_dir), lib) as other:
            other.set_consent(False)
    assert (state_dir / "lock").stat().st_ino == lock, "the lock file was replaced"


# ----------------------------------------------------------------------------- proxy

@pytest.mark.parametrize("source", ["config", "HTTPS_PROXY", "https_proxy"])
def test_https_report_goes_through_the_proxy(lib, state_dir, monkeypatch, source):
    # Issue 3 "Transport": "A proxy from the configuration or from the usual
    # environment variables."
    for var in ("ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    proxy = Proxy(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")  # refuses the tunnel
    try:
        extra = {"proxy": proxy.url} if source == "config" else {}
        if source != "config":
            monkeypatch.setenv(source, proxy.url)
        with ot.Client(make_config(state_dir, endpoint="https://telemetry.example.invalid/v1/report", **extra), lib) as c:
            c.set_consent(True)
            c.tick(T0)
            c.tick(c.status()["next_due"])
            c.flush(15_000)
            attempt = c.history()["reports"][0]["attempts"][0]
        assert proxy.requests and proxy.requests[0].startswith(b"CONNECT telemetry.example.invalid:443 "), proxy.requests
        assert attempt["outcome"] == "failed" and attempt["error"], attempt
    finally:
        proxy.close()
