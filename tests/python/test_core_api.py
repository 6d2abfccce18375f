"""End-to-end tests of the core C API (issue 2: everything but the network).

Every test loads the real cdylib through ctypes (the ``lib`` fixture or the
``optin_telemetry.Client`` binding) and works on real files in a temporary
state directory. Expected values come from the header (include/optin_telemetry.h),
the issue's requirements and the schema in conftest.SCHEMA, never from the
library's own output.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from ctypes import byref, c_uint32, c_void_p
from pathlib import Path

import pytest

import optin_telemetry as ot
from conftest import ROOT, SCHEMA, chattr, make_config

OK = 0
E_NULL = ot.TEL_ERR_NULL_ARGUMENT
E_UTF8 = ot.TEL_ERR_INVALID_UTF8
E_INVALID = ot.TEL_ERR_INVALID_ARGUMENT
E_CONFIG = ot.TEL_ERR_CONFIG
E_IO = ot.TEL_ERR_IO
E_MALFORMED = ot.TEL_ERR_MALFORMED_JSON
E_UNKNOWN = ot.TEL_ERR_UNKNOWN_FIELD
E_TYPE = ot.TEL_ERR_WRONG_TYPE
E_NOT_ALLOWED = ot.TEL_ERR_VALUE_NOT_ALLOWED
E_TOO_LARGE = ot.TEL_ERR_TOO_LARGE

UNDECIDED, GRANTED, DENIED, OUTDATED = 0, 1, 2, 3

#: Written into output parameters before a call that must fail: it must still be there afterwards.
SENTINEL_PTR = 0x5EA7BEEF
SENTINEL_U32 = 0xA5A5A5A5

TEN_MB = 10 * 1024 * 1024
BUILTIN_NAMES = ["os_family", "os_version", "arch", "product", "product_version", "library_version"]
REPORT_KEYS = sorted(["arch", "fields", "format", "library_version", "os_family", "os_version", "product",
                      "product_version", "report_id", "schema_digest", "schema_version"])
PRIME_MARKER = "zz_prime_marker"


# ----------------------------------------------------------------------------- helpers

def last_error(lib) -> str:
    ptr = lib.tel_last_error_message()
    assert ptr, "tel_last_error_message returned NULL"
    return ctypes.string_at(ptr).decode("utf-8")


def prime_error(lib) -> None:
    """Leaves a known, unrelated message in this thread's last error, so that a
    later assertion proves the message was written by the call under test."""
    out = c_void_p(SENTINEL_PTR)
    rc = lib.tel_open(json.dumps({PRIME_MARKER: 1}).encode(), byref(out))
    assert rc == E_CONFIG and PRIME_MARKER in last_error(lib)


def expect_error(lib, rc, code, *needles):
    msg = last_error(lib)
    assert rc == code, f"expected {ot.ERRORS.get(code)} ({code}), got {ot.ERRORS.get(rc, rc)} ({rc}): {msg}"
    assert PRIME_MARKER not in msg, f"the last error message was not updated by the failing call: {msg}"
    for n in needles:
        assert n in msg, f"message does not name {n!r}: {msg}"
    return msg


def raw_open(lib, config):
    text = config if isinstance(config, (bytes, bytearray)) else (config if isinstance(config, str) else json.dumps(config)).encode()
    out = c_void_p(SENTINEL_PTR)
    rc = lib.tel_open(text, byref(out))
    return rc, out


def raw_string(lib, fn, *args):
    out = c_void_p(SENTINEL_PTR)
    rc = getattr(lib, fn)(*args, byref(out))
    assert rc == OK, f"{fn}: {ot.ERRORS.get(rc, rc)}: {last_error(lib)}"
    assert out.value and out.value != SENTINEL_PTR
    return ot.take_string(lib, out)


def raw_preview(lib, h):
    return raw_string(lib, "tel_preview_json", h)


def raw_consent(lib, h):
    out = c_uint32(SENTINEL_U32)
    rc = lib.tel_get_consent(h, byref(out))
    assert rc == OK, last_error(lib)
    return out.value


def schema_with(**changes):
    """A copy of SCHEMA with fields edited: name -> dict of replacements (None deletes the field)."""
    s = copy.deepcopy(SCHEMA)
    fields = []
    for f in s["fields"]:
        if f["name"] in changes:
            ch = changes[f["name"]]
            if ch is None:
                continue
            f.update(ch)
        fields.append(f)
    s["fields"] = fields
    return s


def cargo_version() -> str:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = None
    text = (ROOT / "Cargo.toml").read_text()
    if tomllib:
        return tomllib.loads(text)["package"]["version"]
    m = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)
    return m.group(1)


def expected_os_version() -> str:
    # Built-in os_version on Linux is the kernel release reduced to major.minor.
    m = re.match(r"(\d+)\D(\d+)", platform.release())
    return f"{int(m.group(1))}.{int(m.group(2))}"


def bad_files(state_dir: Path):
    return sorted(p for p in state_dir.iterdir() if p.name.startswith("state.json.bad-"))


@pytest.fixture
def raw(lib, state_dir):
    """A client handle opened through the raw C API; closed afterwards."""
    rc, h = raw_open(lib, make_config(state_dir))
    assert rc == OK, last_error(lib)
    yield h
    lib.tel_close(h)


@pytest.fixture
def client(lib, state_dir):
    with ot.Client(make_config(state_dir), lib) as c:
        yield c


# ----------------------------------------------------------------------------- version & trivial no-ops

def test_version_matches_cargo_toml(lib):
    v = ctypes.string_at(lib.tel_version()).decode()
    assert v == cargo_version()
    assert ot.version(lib) == v
    # The static string is stable (same pointer, not an allocation to free).
    assert lib.tel_version() == lib.tel_version()


def test_close_null_and_string_free_null_are_noops(lib):
    lib.tel_close(None)
    lib.tel_string_free(None)
    # The process is alive and the library still works.
    assert ctypes.string_at(lib.tel_version())


def test_last_error_message_is_never_null_even_on_a_fresh_thread(lib):
    seen = []
    t = threading.Thread(target=lambda: seen.append(lib.tel_last_error_message()))
    t.start()
    t.join()
    assert seen[0], "tel_last_error_message returned NULL on a thread that never failed"


# ----------------------------------------------------------------------------- NULL pointers

NULL_CASES = [
    # (id, call(lib, h, out_ptr, out_u32) -> rc, needle in message)
    ("open/config_json", lambda lib, h, o, u: lib.tel_open(None, byref(o)), "config_json"),
    ("open/out_client", lambda lib, h, o, u: lib.tel_open(json.dumps(make_config("/proc/optin-null-test")).encode(), None), "out_client"),
    ("set_consent/client", lambda lib, h, o, u: lib.tel_set_consent(None, 1), "client"),
    ("get_consent/client", lambda lib, h, o, u: lib.tel_get_consent(None, byref(u)), "client"),
    ("get_consent/out_consent", lambda lib, h, o, u: lib.tel_get_consent(h, None), "out_consent"),
    ("set_bool/client", lambda lib, h, o, u: lib.tel_set_bool(None, b"trial", 1), "client"),
    ("set_bool/field", lambda lib, h, o, u: lib.tel_set_bool(h, None, 1), "field"),
    ("set_count/client", lambda lib, h, o, u: lib.tel_set_count(None, b"users", 3), "client"),
    ("set_count/field", lambda lib, h, o, u: lib.tel_set_count(h, None, 3), "field"),
    ("set_choice/client", lambda lib, h, o, u: lib.tel_set_choice(None, b"edition", b"smb"), "client"),
    ("set_choice/field", lambda lib, h, o, u: lib.tel_set_choice(h, None, b"smb"), "field"),
    ("set_choice/value", lambda lib, h, o, u: lib.tel_set_choice(h, b"edition", None), "value"),
    ("set_values_json/client", lambda lib, h, o, u: lib.tel_set_values_json(None, b'{"trial": true}'), "client"),
    ("set_values_json/values_json", lambda lib, h, o, u: lib.tel_set_values_json(h, None), "values_json"),
    ("preview_json/client", lambda lib, h, o, u: lib.tel_preview_json(None, byref(o)), "client"),
    ("preview_json/out_json", lambda lib, h, o, u: lib.tel_preview_json(h, None), "out_json"),
    ("describe_json/client", lambda lib, h, o, u: lib.tel_describe_json(None, b"en", byref(o)), "client"),
    ("describe_json/out_json", lambda lib, h, o, u: lib.tel_describe_json(h, b"en", None), "out_json"),
    ("describe_json/out_json+null_language", lambda lib, h, o, u: lib.tel_describe_json(h, None, None), "out_json"),
    ("status_json/client", lambda lib, h, o, u: lib.tel_status_json(None, byref(o)), "client"),
    ("status_json/out_json", lambda lib, h, o, u: lib.tel_status_json(h, None), "out_json"),
    ("history_json/client", lambda lib, h, o, u: lib.tel_history_json(None, byref(o)), "client"),
    ("history_json/out_json", lambda lib, h, o, u: lib.tel_history_json(h, None), "out_json"),
    ("flush/client", lambda lib, h, o, u: lib.tel_flush(None, 0), "client"),
    ("tick/client", lambda lib, h, o, u: lib.tel_tick(None), "client"),
    ("tick_at/client", lambda lib, h, o, u: lib.tel_tick_at(None, 1_700_000_000), "client"),
    ("clear_history/client", lambda lib, h, o, u: lib.tel_clear_history(None), "client"),
]


@pytest.mark.parametrize("call,needle", [c[1:] for c in NULL_CASES], ids=[c[0] for c in NULL_CASES])
def test_null_pointer_arguments(lib, raw, call, needle):
    before = raw_preview(lib, raw)
    consent_before = raw_consent(lib, raw)
    out, out_u32 = c_void_p(SENTINEL_PTR), c_uint32(SENTINEL_U32)
    prime_error(lib)
    rc = call(lib, raw, out, out_u32)
    msg = expect_error(lib, rc, E_NULL, needle)
    assert "NULL" in msg
    assert out.value == SENTINEL_PTR, "an output was written although the call failed"
    assert out_u32.value == SENTINEL_U32, "an output was written although the call failed"
    # Nothing changed on the client.
    assert raw_preview(lib, raw) == before
    assert raw_consent(lib, raw) == consent_before


def test_client_class_refuses_a_closed_handle_instead_of_passing_null(lib, state_dir):
    c = ot.Client(make_config(state_dir), lib)
    c.close()
    c.close()  # idempotent
    with pytest.raises(ValueError):
        c.preview()
    with pytest.raises(ValueError):
        c.set_consent(True)


# ----------------------------------------------------------------------------- invalid UTF-8, oversized strings

BAD_UTF8 = b"us\xffers"
HUGE = b"a" * TEN_MB


def _string_arg_calls(bad):
    """Every string argument of every function, each given `bad` in turn."""
    return [
        ("open/config_json", lambda lib, h, o: lib.tel_open(bad, byref(o)), "config_json"),
        ("set_bool/field", lambda lib, h, o: lib.tel_set_bool(h, bad, 1), "field"),
        ("set_count/field", lambda lib, h, o: lib.tel_set_count(h, bad, 7), "field"),
        ("set_choice/field", lambda lib, h, o: lib.tel_set_choice(h, bad, b"smb"), "field"),
        ("set_choice/value", lambda lib, h, o: lib.tel_set_choice(h, b"edition", bad), "value"),
        ("set_values_json/values_json", lambda lib, h, o: lib.tel_set_values_json(h, bad), "values_json"),
        ("describe_json/language", lambda lib, h, o: lib.tel_describe_json(h, bad, byref(o)), "language"),
    ]


UTF8_CASES = _string_arg_calls(BAD_UTF8) + [
    # Invalid UTF-8 inside otherwise well-formed JSON text.
    ("open/config_json-in-json", lambda lib, h, o: lib.tel_open(b'{"product": "Mock \xc3\x28"}', byref(o)), "config_json"),
    ("set_values_json/in-json", lambda lib, h, o: lib.tel_set_values_json(h, b'{"edition": "sm\xe2\x82"}'), "values_json"),
]
TOO_LARGE_CASES = _string_arg_calls(HUGE)


@pytest.mark.parametrize("call,needle", [c[1:] for c in UTF8_CASES], ids=[c[0] for c in UTF8_CASES])
def test_invalid_utf8_arguments(lib, raw, call, needle):
    raw_set_sample(lib, raw)
    before = raw_preview(lib, raw)
    out = c_void_p(SENTINEL_PTR)
    prime_error(lib)
    rc = call(lib, raw, out)
    msg = expect_error(lib, rc, E_UTF8, needle)
    assert "UTF-8" in msg
    assert out.value == SENTINEL_PTR
    assert raw_preview(lib, raw) == before


@pytest.mark.parametrize("call,needle", [c[1:] for c in TOO_LARGE_CASES], ids=[c[0] for c in TOO_LARGE_CASES])
def test_ten_megabyte_string_arguments_are_too_large(lib, raw, call, needle):
    raw_set_sample(lib, raw)
    before = raw_preview(lib, raw)
    out = c_void_p(SENTINEL_PTR)
    prime_error(lib)
    t0 = time.monotonic()
    rc = call(lib, raw, out)
    elapsed = time.monotonic() - t0
    expect_error(lib, rc, E_TOO_LARGE, needle)
    assert out.value == SENTINEL_PTR
    assert raw_preview(lib, raw) == before
    assert elapsed < 5, f"rejecting a 10 MB string took {elapsed:.1f}s"


def test_ten_megabyte_json_through_the_client_class(lib, client, state_dir):
    client.set_values({"trial": True})
    before = client.preview()
    huge_values = json.dumps({"edition": "x" * TEN_MB})
    with pytest.raises(ot.TelemetryError) as e:
        client.set_values(huge_values)
    assert e.value.code == E_TOO_LARGE and "values_json" in e.value.message
    assert client.preview() == before
    with pytest.raises(ot.TelemetryError) as e:
        client.set_choice("edition", "s" * TEN_MB)
    assert e.value.code == E_TOO_LARGE and "value" in e.value.message
    with pytest.raises(ot.TelemetryError) as e:
        client.set_bool("t" * TEN_MB, True)
    assert e.value.code == E_TOO_LARGE and "field" in e.value.message
    cfg = make_config(state_dir.parent / "other", ca_cert_pem="A" * TEN_MB)
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(cfg, lib)
    assert e.value.code == E_TOO_LARGE and "config_json" in e.value.message
    assert not (state_dir.parent / "other").exists(), "a rejected configuration created its state_dir"
    assert client.preview() == before


def test_client_class_cannot_smuggle_invalid_utf8(client):
    # A Python str that is not encodable as UTF-8 is refused before the library is called.
    client.set_values({"trial": False})
    before = client.preview()
    with pytest.raises(UnicodeEncodeError):
        client.set_choice("edition", "sm\ud800b")
    with pytest.raises(UnicodeEncodeError):
        client.set_bool("tri\udcffal", True)
    assert client.preview() == before


# ----------------------------------------------------------------------------- configuration errors (tel_open)

def _cfg(tmp, **kw):
    cfg = make_config(tmp / "s")
    for k, v in kw.items():
        if v is DROP:
            cfg.pop(k)
        else:
            cfg[k] = v
    return cfg


DROP = object()

OPEN_CASES = [
    # (id, make(tmp) -> config text, code, needles)
    ("malformed", lambda t: '{"product": "Mock", ', E_MALFORMED, ["configuration", "JSON"]),
    ("not-json-at-all", lambda t: "product=Mock", E_MALFORMED, ["configuration"]),
    ("not-an-object", lambda t: "[1, 2]", E_CONFIG, ["object"]),
    ("unknown-key-typo", lambda t: json.dumps(_cfg(t, disable=True)), E_CONFIG, ['"disable"']),
    ("unknown-key", lambda t: json.dumps(_cfg(t, telemetry_level=3)), E_CONFIG, ['"telemetry_level"']),
    ("missing-product", lambda t: json.dumps(_cfg(t, product=DROP)), E_CONFIG, ["product"]),
    ("missing-schema", lambda t: json.dumps(_cfg(t, schema=DROP)), E_CONFIG, ["schema"]),
    ("missing-state_dir", lambda t: json.dumps(_cfg(t, state_dir=DROP)), E_CONFIG, ["state_dir"]),
    ("wrong-type-product", lambda t: json.dumps(_cfg(t, product=5)), E_CONFIG, ["product"]),
    ("wrong-type-disabled", lambda t: json.dumps(_cfg(t, disabled="yes")), E_CONFIG, ["disabled"]),
    ("product-with-slash", lambda t: json.dumps(_cfg(t, product="C:/Users/alice")), E_CONFIG, ["product"]),
    ("bad-product_version", lambda t: json.dumps(_cfg(t, product_version="1.0 beta/2")), E_CONFIG, ["product_version"]),
    ("plain-http-remote-endpoint", lambda t: json.dumps(_cfg(t, endpoint="http://example.com/v1/report")), E_CONFIG, ["endpoint"]),
    ("endpoint-not-a-url", lambda t: json.dumps(_cfg(t, endpoint="not a url")), E_CONFIG, ["endpoint"]),
    ("schema-unknown-key", lambda t: json.dumps(_cfg(t, schema={**SCHEMA, "extra": 1})), E_CONFIG, ['"extra"']),
    ("schema-field-unknown-key", lambda t: json.dumps(_cfg(t, schema=schema_with(trial={"hint": "x"}))), E_CONFIG, ['"hint"', "schema.fields[0]"]),
    ("schema-free-text-type", lambda t: json.dumps(_cfg(t, schema=schema_with(trial={"type": "string"}))), E_CONFIG, ["trial", "type"]),
    ("schema-choice-duplicate", lambda t: json.dumps(_cfg(t, schema=schema_with(edition={"values": ["smb", "smb"]}))), E_CONFIG, ["edition", '"smb"']),
    ("schema-choice-not-token", lambda t: json.dumps(_cfg(t, schema=schema_with(edition={"values": ["a@b.example"]}))), E_CONFIG, ["edition", "a@b.example"]),
    ("schema-buckets-negative", lambda t: json.dumps(_cfg(t, schema=schema_with(users={"buckets": [-1, 5]}))), E_CONFIG, ["users", "buckets"]),
    ("schema-buckets-not-increasing", lambda t: json.dumps(_cfg(t, schema=schema_with(users={"buckets": [5, 1]}))), E_CONFIG, ["users", "buckets"]),
    ("schema-version-string", lambda t: json.dumps(_cfg(t, schema={**SCHEMA, "version": "1"})), E_CONFIG, ["schema.version"]),
    ("schema-version-fraction", lambda t: json.dumps(_cfg(t, schema={**SCHEMA, "version": 1.5})), E_CONFIG, ["schema.version"]),
    ("schema-no-english-description", lambda t: json.dumps(_cfg(t, schema=schema_with(trial={"description": {"de": "x"}}))), E_CONFIG, ["trial", "en"]),
]


@pytest.mark.parametrize("make,code,needles", [c[1:] for c in OPEN_CASES], ids=[c[0] for c in OPEN_CASES])
def test_open_rejects_bad_configuration_raw(lib, tmp_path, make, code, needles):
    prime_error(lib)
    rc, out = raw_open(lib, make(tmp_path))
    expect_error(lib, rc, code, *needles)
    assert out.value == SENTINEL_PTR, "out_client was written although tel_open failed"
    assert not (tmp_path / "s").exists(), "a rejected configuration created its state_dir"


@pytest.mark.parametrize("make,code,needles", [c[1:] for c in OPEN_CASES], ids=[c[0] for c in OPEN_CASES])
def test_open_rejects_bad_configuration_client_class(lib, tmp_path, make, code, needles):
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(make(tmp_path), lib)
    assert e.value.code == code, str(e.value)
    for n in needles:
        assert n in e.value.message, e.value.message
    assert not (tmp_path / "s").exists()


# product_version (issue 19): 1 to 4 dot-separated parts of 1 to 5 digits each, nothing else.
@pytest.mark.parametrize("version", ["1.234567", "1.2.3.4.5", "1.2-beta", ""])
def test_open_refuses_a_product_version_outside_the_rule(lib, tmp_path, version):
    prime_error(lib)
    rc, out = raw_open(lib, _cfg(tmp_path, product_version=version))
    msg = expect_error(lib, rc, E_CONFIG, "config.product_version", "1 to 5 digits")
    assert f'"{version}"' in msg, msg
    assert out.value == SENTINEL_PTR, "out_client was written although tel_open failed"
    assert not (tmp_path / "s").exists(), "a rejected configuration created its state_dir"


def test_open_accepts_a_product_version_of_five_digit_parts(lib, tmp_path):
    rc, out = raw_open(lib, _cfg(tmp_path, product_version="99999.0.1"))
    assert rc == OK, last_error(lib)
    try:
        preview = json.loads(raw_string(lib, "tel_preview_json", out))
        assert preview["product_version"] == "99999.0.1"
        assert _describe(lib, out)["product_version"] == "99999.0.1"
    finally:
        lib.tel_close(out)


# ----------------------------------------------------------------------------- value errors

def raw_set_sample(lib, h):
    rc = lib.tel_set_values_json(h, json.dumps({"trial": True, "edition": "enterprise", "users": 12,
                                                "archived_items": 4321, "profiles": ["imap", "pst"]}).encode())
    assert rc == OK, last_error(lib)


VALUE_CASES = [
    # (id, raw call(lib, h) -> rc, client call(c), code, needles)
    ("unknown-field/bool", lambda lib, h: lib.tel_set_bool(h, b"trail", 1), lambda c: c.set_bool("trail", True), E_UNKNOWN, ['"trail"']),
    ("unknown-field/count", lambda lib, h: lib.tel_set_count(h, b"seats", 3), lambda c: c.set_count("seats", 3), E_UNKNOWN, ['"seats"']),
    ("unknown-field/choice", lambda lib, h: lib.tel_set_choice(h, b"flavour", b"smb"), lambda c: c.set_choice("flavour", "smb"), E_UNKNOWN, ['"flavour"']),
    ("unknown-field/empty-name", lambda lib, h: lib.tel_set_count(h, b"", 3), lambda c: c.set_count("", 3), E_UNKNOWN, ['""']),
    ("unknown-field/builtin-is-not-settable", lambda lib, h: lib.tel_set_choice(h, b"os_family", b"linux"), lambda c: c.set_choice("os_family", "linux"), E_UNKNOWN, ['"os_family"']),
    ("unknown-field/json", lambda lib, h: lib.tel_set_values_json(h, b'{"trial": false, "hostname": true}'), lambda c: c.set_values({"trial": False, "hostname": True}), E_UNKNOWN, ['"hostname"']),
    ("wrong-type/bool-on-count", lambda lib, h: lib.tel_set_bool(h, b"users", 1), lambda c: c.set_bool("users", True), E_TYPE, ['"users"', "count"]),
    ("wrong-type/count-on-bool", lambda lib, h: lib.tel_set_count(h, b"trial", 1), lambda c: c.set_count("trial", 1), E_TYPE, ['"trial"', "bool"]),
    ("wrong-type/choice-on-choices", lambda lib, h: lib.tel_set_choice(h, b"profiles", b"pst"), lambda c: c.set_choice("profiles", "pst"), E_TYPE, ['"profiles"', "choices"]),
    ("wrong-type/choice-on-count", lambda lib, h: lib.tel_set_choice(h, b"users", b"5"), lambda c: c.set_choice("users", "5"), E_TYPE, ['"users"']),
    ("wrong-type/json-string-for-count", lambda lib, h: lib.tel_set_values_json(h, b'{"users": "5"}'), lambda c: c.set_values({"users": "5"}), E_TYPE, ['"users"']),
    ("wrong-type/json-fraction-for-count", lambda lib, h: lib.tel_set_values_json(h, b'{"users": 1.5}'), lambda c: c.set_values({"users": 1.5}), E_TYPE, ['"users"']),
    ("wrong-type/json-float-integral-for-count", lambda lib, h: lib.tel_set_values_json(h, b'{"archived_items": 3.0}'), lambda c: c.set_values('{"archived_items": 3.0}'), E_TYPE, ['"archived_items"']),
    ("wrong-type/json-exponent-for-count", lambda lib, h: lib.tel_set_values_json(h, b'{"archived_items": 1e3}'), lambda c: c.set_values('{"archived_items": 1e3}'), E_TYPE, ['"archived_items"']),
    ("wrong-type/json-number-for-bool", lambda lib, h: lib.tel_set_values_json(h, b'{"trial": 1}'), lambda c: c.set_values({"trial": 1}), E_TYPE, ['"trial"']),
    ("wrong-type/json-string-for-bool", lambda lib, h: lib.tel_set_values_json(h, b'{"trial": "true"}'), lambda c: c.set_values({"trial": "true"}), E_TYPE, ['"trial"']),
    ("wrong-type/json-number-for-choice", lambda lib, h: lib.tel_set_values_json(h, b'{"edition": 2}'), lambda c: c.set_values({"edition": 2}), E_TYPE, ['"edition"']),
    ("wrong-type/json-string-for-choices", lambda lib, h: lib.tel_set_values_json(h, b'{"profiles": "pst"}'), lambda c: c.set_values({"profiles": "pst"}), E_TYPE, ['"profiles"']),
    ("wrong-type/json-number-in-choices", lambda lib, h: lib.tel_set_values_json(h, b'{"profiles": ["pst", 3]}'), lambda c: c.set_values({"profiles": ["pst", 3]}), E_TYPE, ['"profiles"']),
    ("wrong-type/json-object-for-count", lambda lib, h: lib.tel_set_values_json(h, b'{"users": {"n": 1}}'), lambda c: c.set_values({"users": {"n": 1}}), E_TYPE, ['"users"']),
    ("wrong-type/values-not-an-object", lambda lib, h: lib.tel_set_values_json(h, b'[["users", 1]]'), lambda c: c.set_values([["users", 1]]), E_TYPE, ["values_json"]),
    ("not-allowed/choice-outside-list", lambda lib, h: lib.tel_set_choice(h, b"edition", b"free"), lambda c: c.set_choice("edition", "free"), E_NOT_ALLOWED, ['"edition"', '"free"', "standard", "enterprise", "smb"]),
    ("not-allowed/choice-case-differs", lambda lib, h: lib.tel_set_choice(h, b"edition", b"SMB"), lambda c: c.set_choice("edition", "SMB"), E_NOT_ALLOWED, ['"edition"', "SMB"]),
    ("not-allowed/json-choice-outside-list", lambda lib, h: lib.tel_set_values_json(h, b'{"edition": "alice@example.com"}'), lambda c: c.set_values({"edition": "alice@example.com"}), E_NOT_ALLOWED, ['"edition"']),
    ("not-allowed/json-choices-outside-list", lambda lib, h: lib.tel_set_values_json(h, b'{"profiles": ["pst", "lotus"]}'), lambda c: c.set_values({"profiles": ["pst", "lotus"]}), E_NOT_ALLOWED, ['"profiles"', "lotus"]),
    ("not-allowed/json-choices-duplicate", lambda lib, h: lib.tel_set_values_json(h, b'{"profiles": ["pst", "imap", "pst"]}'), lambda c: c.set_values({"profiles": ["pst", "imap", "pst"]}), E_NOT_ALLOWED, ['"profiles"', '"pst"']),
    ("not-allowed/json-negative-count", lambda lib, h: lib.tel_set_values_json(h, b'{"users": -3}'), lambda c: c.set_values({"users": -3}), E_NOT_ALLOWED, ['"users"', "negative"]),
    ("not-allowed/json-negative-unbucketed-count", lambda lib, h: lib.tel_set_values_json(h, b'{"archived_items": -1}'), lambda c: c.set_values({"archived_items": -1}), E_NOT_ALLOWED, ['"archived_items"']),
    ("malformed/values_json", lambda lib, h: lib.tel_set_values_json(h, b'{"users": 3'), lambda c: c.set_values('{"users": 3'), E_MALFORMED, ["values_json"]),
    ("malformed/values_json-trailing-comma", lambda lib, h: lib.tel_set_values_json(h, b'{"users": 3,}'), lambda c: c.set_values('{"users": 3,}'), E_MALFORMED, ["values_json"]),
    ("malformed/values_json-lone-surrogate-escape", lambda lib, h: lib.tel_set_values_json(h, b'{"edition": "\\ud800"}'), lambda c: c.set_values('{"edition": "\\ud800"}'), E_MALFORMED, ["values_json"]),
    ("malformed/values_json-empty", lambda lib, h: lib.tel_set_values_json(h, b""), lambda c: c.set_values(""), E_MALFORMED, ["values_json"]),
    ("invalid/bool-value-2", lambda lib, h: lib.tel_set_bool(h, b"trial", 2), None, E_INVALID, ["value"]),
    ("invalid/bool-value-minus-1", lambda lib, h: lib.tel_set_bool(h, b"trial", -1), None, E_INVALID, ["value"]),
]


@pytest.mark.parametrize("raw_call,code,needles", [(c[1], c[3], c[4]) for c in VALUE_CASES], ids=[c[0] for c in VALUE_CASES])
def test_bad_values_raw(lib, raw, raw_call, code, needles):
    raw_set_sample(lib, raw)
    before = raw_preview(lib, raw)
    prime_error(lib)
    rc = raw_call(lib, raw)
    expect_error(lib, rc, code, *needles)
    assert raw_preview(lib, raw) == before, "a rejected value changed the report"


CLIENT_VALUE_CASES = [c for c in VALUE_CASES if c[2] is not None]


@pytest.mark.parametrize("client_call,code,needles", [(c[2], c[3], c[4]) for c in CLIENT_VALUE_CASES], ids=[c[0] for c in CLIENT_VALUE_CASES])
def test_bad_values_client_class(client, client_call, code, needles):
    client.set_values({"trial": True, "edition": "enterprise", "users": 12, "archived_items": 4321, "profiles": ["imap", "pst"]})
    before = client.preview()
    with pytest.raises(ot.TelemetryError) as e:
        client_call(client)
    assert e.value.code == code, str(e.value)
    for n in needles:
        assert n in e.value.message, e.value.message
    assert client.preview() == before


def test_consent_values_other_than_0_or_1_raw(lib, raw):
    for bad in (2, -1, 3, 255, 2**31 - 1, -(2**31)):
        prime_error(lib)
        rc = lib.tel_set_consent(raw, bad)
        expect_error(lib, rc, E_INVALID, "granted", str(bad))
        assert raw_consent(lib, raw) == UNDECIDED
    assert lib.tel_set_consent(raw, 1) == OK
    for bad in (2, -1):
        assert lib.tel_set_consent(raw, bad) == E_INVALID
        assert raw_consent(lib, raw) == GRANTED, "an invalid answer changed the consent"


def test_client_class_non_integer_count_is_refused(client):
    client.set_count("users", 5)
    before = client.preview()
    for bad in (1.5, "5", None):
        with pytest.raises((ctypes.ArgumentError, TypeError, ot.TelemetryError)):
            client.set_count("users", bad)
    assert client.preview() == before


def test_client_class_negative_count_is_refused(client):
    # ctypes would wrap -5 into a c_uint64 (2**64-5, reported as "100+"): the binding must refuse it.
    client.set_count("users", 5)
    before = client.preview()
    for bad, code in [(-5, ot.TEL_ERR_VALUE_NOT_ALLOWED), (2**64, ot.TEL_ERR_VALUE_NOT_ALLOWED), (1.5, ot.TEL_ERR_WRONG_TYPE)]:
        with pytest.raises(ot.TelemetryError) as e:
            client.set_count("users", bad)
        assert e.value.code == code and "users" in e.value.message
    assert client.preview() == before


# ----------------------------------------------------------------------------- set_values_json is all or nothing

def test_set_values_json_is_all_or_nothing(client):
    client.set_values({"trial": False, "edition": "standard", "users": 3, "profiles": ["gmail"]})
    before = client.preview()
    before_fields = json.loads(before)["fields"]
    bad_batches = [
        # Good entries first and last, one bad entry in the middle: none may apply.
        ('{"trial": true, "edition": "smb", "users": -1, "profiles": ["pst"], "archived_items": 9}', E_NOT_ALLOWED, "users"),
        ('{"archived_items": 9, "trial": true, "nosuchfield": 1, "edition": "smb"}', E_UNKNOWN, "nosuchfield"),
        ('{"trial": true, "edition": "smb", "profiles": ["pst", "pst"]}', E_NOT_ALLOWED, "profiles"),
        ('{"users": null, "trial": null, "edition": "gold"}', E_NOT_ALLOWED, "edition"),
        ('{"users": 50, "trial": "yes"}', E_TYPE, "trial"),
        ('{"users": 50, "archived_items": 2.5}', E_TYPE, "archived_items"),
    ]
    for text, code, field in bad_batches:
        with pytest.raises(ot.TelemetryError) as e:
            client.set_values(text)
        assert e.value.code == code, str(e.value)
        assert f'"{field}"' in e.value.message, e.value.message
        assert client.preview() == before, f"partial update after {text}"
    assert json.loads(client.preview())["fields"] == before_fields
    # A good batch applies entirely, including null = unset.
    client.set_values({"trial": True, "edition": None, "users": 50, "archived_items": 20})
    fields = json.loads(client.preview())["fields"]
    # 20 is in the 1-2-5 series, so rounding sends it as itself.
    assert fields == {"trial": True, "users": "50-99", "archived_items": 20, "profiles": ["gmail"]}


# ----------------------------------------------------------------------------- preview: exact report format

def test_preview_exact_report_format(lib, client):
    c = client
    report = json.loads(c.preview())
    assert sorted(report) == REPORT_KEYS
    assert report["fields"] == {}, "values never set must be left out"
    assert report["product"] == "Mock Archiver"
    assert report["product_version"] == "1.0.0"
    assert report["library_version"] == ot.version(lib) == cargo_version()
    assert report["os_family"] == {"linux": "linux", "darwin": "macos", "win32": "windows"}[sys.platform]
    assert report["arch"] == platform.machine()
    if sys.platform == "linux":
        assert report["os_version"] == expected_os_version()
    assert report["schema_version"] == SCHEMA["version"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", report["schema_digest"])
    assert report["schema_digest"] == c.status()["schema_digest"]
    assert report["format"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", report["report_id"])
    # No timestamp of any kind, nothing that identifies the machine.
    text = c.preview()
    # (report_id and schema_digest are random/hash hex: digit runs in them are not numbers)
    rest = json.dumps({k: v for k, v in report.items() if k not in ("report_id", "schema_digest")})
    assert not re.search(r"time|date|_at\"|host|user_name|uuid|machine", rest)
    now = int(time.time())
    for v in re.findall(r"\d{9,}", rest):
        assert abs(int(v) - now) > 10 * 365 * 86400, f"{v} looks like a timestamp"
    # Compact, key-sorted JSON: the bytes are a function of the content only.
    assert text == json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@pytest.mark.parametrize("value,label", [
    (0, "0"), (1, "1-4"), (4, "1-4"), (5, "5-9"), (7, "5-9"), (9, "5-9"),
    (10, "10-24"), (24, "10-24"), (99, "50-99"), (100, "100+"), (123456, "100+"), (2**64 - 1, "100+"),
])
def test_preview_reports_a_bucketed_count_as_its_bucket(client, value, label):
    # conftest.SCHEMA: users buckets [1, 5, 10, 25, 50, 100] (ascending lower bounds).
    client.set_count("users", value)
    text = client.preview()
    assert json.loads(text)["fields"]["users"] == label
    if value > 1:
        assert f":{value}," not in text and f":{value}}}" not in text, "the exact count leaked into the report"


def test_preview_values_of_every_type_and_unset(client):
    client.set_bool("trial", True)
    client.set_choice("edition", "smb")
    client.set_count("users", 7)
    client.set_count("archived_items", 2**64 - 1)
    client.set_values({"profiles": ["pst", "imap", "m365"]})
    fields = json.loads(client.preview())["fields"]
    assert fields == {
        "trial": True,
        "edition": "smb",
        "users": "5-9",
        "archived_items": 10**19,  # rounded 1-2-5: above 10^19 (the top member in 64 bits) always 10^19
        "profiles": ["imap", "m365", "pst"],  # declared order, not the order given
    }
    client.set_values({"profiles": []})
    assert json.loads(client.preview())["fields"]["profiles"] == []
    client.set_bool("trial", False)
    client.set_values({"users": None, "edition": None, "profiles": None})
    assert json.loads(client.preview())["fields"] == {"trial": False, "archived_items": 10**19}


def test_preview_is_stable_and_report_ids_differ_between_clients(lib, tmp_path):
    ids = set()
    for i in range(3):
        with ot.Client(make_config(tmp_path / f"s{i}"), lib) as c:
            a, b = c.preview(), c.preview()
            assert a == b, "two previews without a change in between differ"
            c.set_bool("trial", True)
            rid = json.loads(a)["report_id"]
            assert json.loads(c.preview())["report_id"] == rid
            ids.add(rid)
    # Same state_dir, reopened: the id is not stored across clients either.
    with ot.Client(make_config(tmp_path / "s0"), lib) as c:
        ids.add(json.loads(c.preview())["report_id"])
    assert len(ids) == 4
    # The report id is never written to disk (no stable identifier).
    for d in tmp_path.iterdir():
        for f in d.iterdir():
            if f.is_file():
                data = f.read_bytes()
                for rid in ids:
                    assert rid.encode() not in data, f"{f} contains a report id"


def test_describe_next_report_is_the_preview(client):
    client.set_values({"users": 30, "trial": True})
    d = client.describe("en")
    assert d["next_report"] == client.preview()


# ----------------------------------------------------------------------------- consent state machine

def _receipt_ok(receipt, decision, t0, t1, digest, version=1, product_version="1.0.0"):
    assert receipt is not None
    assert receipt["decision"] == decision
    assert t0 <= receipt["at"] <= t1
    assert receipt["schema_version"] == version
    assert receipt["schema_digest"] == digest
    assert receipt["product_version"] == product_version


def _reopen(lib, state_dir, schema=None, **extra):
    rc, h = raw_open(lib, make_config(state_dir, schema=schema, **extra))
    assert rc == OK, last_error(lib)
    return h


def _describe(lib, h, language=b"en"):
    return json.loads(raw_string(lib, "tel_describe_json", h, language))


def _status(lib, h):
    return json.loads(raw_string(lib, "tel_status_json", h))


SCHEMA_CHANGES = [
    ("new-field", lambda: {**SCHEMA, "fields": SCHEMA["fields"] + [
        {"name": "pst_files", "type": "count", "rounding": "1-2-5", "description": {"en": "PST files."}}]}, {"added": ["pst_files"], "removed": [], "changed": []}),
    ("removed-field", lambda: schema_with(trial=None), {"added": [], "removed": ["trial"], "changed": []}),
    ("changed-buckets", lambda: schema_with(users={"buckets": [1, 10, 100]}), {"added": [], "removed": [], "changed": ["users"]}),
    ("same-version-other-values", lambda: schema_with(edition={"values": ["standard", "enterprise", "smb", "oem"]}),
     {"added": [], "removed": [], "changed": ["edition"]}),
    ("type-changed", lambda: schema_with(trial={"type": "count", "rounding": "1-2-5"}), {"added": [], "removed": [], "changed": ["trial"]}),
    ("version-bump-only", lambda: {**SCHEMA, "version": 2}, {"added": [], "removed": [], "changed": []}),
]


@pytest.mark.parametrize("make_schema,expected", [c[1:] for c in SCHEMA_CHANGES], ids=[c[0] for c in SCHEMA_CHANGES])
def test_consent_granted_becomes_outdated_on_schema_change(lib, state_dir, make_schema, expected):
    h = _reopen(lib, state_dir)
    assert raw_consent(lib, h) == UNDECIDED
    d = _describe(lib, h)
    assert d["consent"]["state"] == "undecided" and d["consent"]["receipt"] is None
    old_digest = _status(lib, h)["schema_digest"]
    t0 = int(time.time())
    assert lib.tel_set_consent(h, 1) == OK
    t1 = int(time.time())
    assert raw_consent(lib, h) == GRANTED
    d = _describe(lib, h)
    assert d["consent"]["state"] == "granted" and d["consent"]["changes"] is None
    _receipt_ok(d["consent"]["receipt"], "granted", t0, t1, old_digest)
    lib.tel_close(h)

    new_schema = make_schema()
    h = _reopen(lib, state_dir, schema=new_schema, product_version="2.0.0")
    try:
        assert raw_consent(lib, h) == OUTDATED
        st = _status(lib, h)
        assert st["consent"] == "outdated"
        assert st["schema_digest"] != old_digest
        assert st["schema_version"] == new_schema["version"]
        d = _describe(lib, h)
        assert d["consent"]["state"] == "outdated"
        # The receipt still describes what the user agreed to.
        _receipt_ok(d["consent"]["receipt"], "granted", t0, t1, old_digest)
        ch = d["consent"]["changes"]
        assert {k: sorted(ch[k]) for k in ("added", "removed", "changed")} == expected
        assert ch["from_schema_version"] == SCHEMA["version"]
        assert ch["to_schema_version"] == new_schema["version"]
        # Answer again: granted for the new schema, with a new receipt.
        t2 = int(time.time())
        assert lib.tel_set_consent(h, 1) == OK
        t3 = int(time.time())
        assert raw_consent(lib, h) == GRANTED
        d = _describe(lib, h)
        assert d["consent"]["state"] == "granted" and d["consent"]["changes"] is None
        _receipt_ok(d["consent"]["receipt"], "granted", t2, t3, st["schema_digest"], new_schema["version"], "2.0.0")
    finally:
        lib.tel_close(h)
    # ...and that survives a reopen with the new schema.
    h = _reopen(lib, state_dir, schema=new_schema, product_version="2.0.0")
    assert raw_consent(lib, h) == GRANTED
    lib.tel_close(h)
    # Going back to the old schema: outdated again (the yes covers exactly one schema).
    h = _reopen(lib, state_dir)
    assert raw_consent(lib, h) == OUTDATED
    lib.tel_close(h)


@pytest.mark.parametrize("make_schema", [c[1] for c in SCHEMA_CHANGES], ids=[c[0] for c in SCHEMA_CHANGES])
def test_denied_stays_denied_across_schema_change(lib, state_dir, make_schema):
    h = _reopen(lib, state_dir)
    t0 = int(time.time())
    assert lib.tel_set_consent(h, 0) == OK
    t1 = int(time.time())
    assert raw_consent(lib, h) == DENIED
    digest = _status(lib, h)["schema_digest"]
    lib.tel_close(h)
    h = _reopen(lib, state_dir, schema=make_schema())
    try:
        assert raw_consent(lib, h) == DENIED
        d = _describe(lib, h)
        assert d["consent"]["state"] == "denied"
        assert d["consent"]["changes"] is None, "a denied user is not shown a change list (not asked again)"
        _receipt_ok(d["consent"]["receipt"], "denied", t0, t1, digest)
        assert _status(lib, h)["consent"] == "denied"
    finally:
        lib.tel_close(h)


@pytest.mark.parametrize("make_schema", [c[1] for c in SCHEMA_CHANGES], ids=[c[0] for c in SCHEMA_CHANGES])
def test_undecided_stays_undecided_across_schema_change(lib, state_dir, make_schema):
    h = _reopen(lib, state_dir)
    assert raw_consent(lib, h) == UNDECIDED
    lib.tel_close(h)
    h = _reopen(lib, state_dir, schema=make_schema())
    try:
        assert raw_consent(lib, h) == UNDECIDED
        d = _describe(lib, h)
        assert d["consent"] == {"state": "undecided", "receipt": None, "changes": None}
    finally:
        lib.tel_close(h)


def test_description_only_changes_do_not_outdate_consent(lib, state_dir):
    h = _reopen(lib, state_dir)
    assert lib.tel_set_consent(h, 1) == OK
    digest = _status(lib, h)["schema_digest"]
    lib.tel_close(h)
    reworded = copy.deepcopy(SCHEMA)
    for f in reworded["fields"]:
        f["description"] = {"en": "Reworded: " + f["description"]["en"], "fr": "Texte français.", "de": "Neu."}
    h = _reopen(lib, state_dir, schema=reworded)
    try:
        assert raw_consent(lib, h) == GRANTED
        assert _status(lib, h)["schema_digest"] == digest
        d = _describe(lib, h, b"fr")
        assert d["consent"]["state"] == "granted" and d["consent"]["changes"] is None
        assert all(f["description"] == "Texte français." for f in d["fields"] if not f["builtin"])
    finally:
        lib.tel_close(h)
    # A new product version (same schema) is not a reason to ask again either.
    h = _reopen(lib, state_dir, product_version="1.1.0")
    assert raw_consent(lib, h) == GRANTED
    lib.tel_close(h)


def test_revoke_and_regrant_through_the_c_api(lib, raw, state_dir):
    assert lib.tel_set_consent(raw, 1) == OK
    first = _describe(lib, raw)["consent"]["receipt"]
    time.sleep(1.1)
    assert lib.tel_set_consent(raw, 1) == OK  # repeating "yes" keeps the original receipt
    assert _describe(lib, raw)["consent"]["receipt"] == first
    assert lib.tel_set_consent(raw, 0) == OK
    assert raw_consent(lib, raw) == DENIED
    rec = _describe(lib, raw)["consent"]["receipt"]
    assert rec["decision"] == "denied" and rec["at"] >= first["at"] + 1
    assert lib.tel_set_consent(raw, 1) == OK
    assert raw_consent(lib, raw) == GRANTED


@pytest.mark.parametrize("answer,expected", [(1, GRANTED), (0, DENIED)])
def test_consent_is_persisted_before_the_call_returns(lib, state_dir, answer, expected):
    a = _reopen(lib, state_dir)
    b = _reopen(lib, state_dir)  # a second client (e.g. a GUI beside a service) on the same dir
    try:
        assert raw_consent(lib, b) == UNDECIDED
        assert lib.tel_set_consent(a, answer) == OK
        # Visible at once to the other client and on disk, without closing `a`.
        assert raw_consent(lib, b) == expected
        on_disk = json.loads((state_dir / "state.json").read_text())
        assert on_disk["consent"]["decision"] == ("granted" if answer else "denied")
        # A third process sees it too.
        code = textwrap.dedent(f"""
            import json, sys
            sys.path.insert(0, {str(ROOT / 'bindings' / 'python')!r})
            import optin_telemetry as ot
            cfg = json.loads(sys.argv[1])
            with ot.Client(cfg, ot.load({str(ot.library_path())!r})) as c:
                print(int(c.consent))
        """)
        r = subprocess.run([sys.executable, "-c", code, json.dumps(make_config(state_dir))],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout.strip()) == expected
        # And the other way round: b revokes/grants, a sees it.
        assert lib.tel_set_consent(b, 1 - answer) == OK
        assert raw_consent(lib, a) == (DENIED if answer else GRANTED)
    finally:
        lib.tel_close(a)
        lib.tel_close(b)


# ----------------------------------------------------------------------------- describe

def test_describe_language_fallback(client):
    by_lang = {}
    for lang in ("en", "de", "de-AT", "fr", "", None, "pt-BR", "zh-Hant"):
        d = client.describe(lang)
        by_lang[lang] = {f["name"]: f["description"] for f in d["fields"]}
    en = {f["name"]: f["description"]["en"] for f in SCHEMA["fields"]}
    de = {f["name"]: f["description"].get("de", f["description"]["en"]) for f in SCHEMA["fields"]}
    for lang in ("en", "fr", "", None, "pt-BR", "zh-Hant"):
        assert {k: by_lang[lang][k] for k in en} == en, lang
    for lang in ("de", "de-AT"):
        assert {k: by_lang[lang][k] for k in de} == de, lang
    # "edition" has no German text: English is the fallback inside a German dialog.
    assert by_lang["de"]["edition"] == "Edition."
    assert by_lang["de"]["users"] == "Anzahl der Benutzer."
    # NULL and "" mean English, for built-in fields too.
    assert by_lang[None] == by_lang["en"] == by_lang[""]
    assert client.describe(None)["language"] == "en"


def test_describe_language_region_specific_text_wins(lib, state_dir):
    schema = schema_with(trial={"description": {"en": "Trial.", "de": "Test.", "de-AT": "Probe."}})
    with ot.Client(make_config(state_dir, schema=schema), lib) as c:
        texts = {lang: next(f["description"] for f in c.describe(lang)["fields"] if f["name"] == "trial")
                 for lang in ("de-AT", "de-CH", "de", "it")}
    assert texts == {"de-AT": "Probe.", "de-CH": "Test.", "de": "Test.", "it": "Trial."}


@pytest.mark.parametrize("tag", [b"english", b"d", b"de_AT", b"de-", b"-de", b"de AT", b"../etc", b"e\xc3\xa9", b"de-AT-toolongsubtag"])
def test_describe_rejects_invalid_language_tag(lib, raw, tag):
    out = c_void_p(SENTINEL_PTR)
    prime_error(lib)
    rc = lib.tel_describe_json(raw, tag, byref(out))
    expect_error(lib, rc, E_INVALID, "language")
    assert out.value == SENTINEL_PTR


def test_describe_rejects_invalid_language_tag_client_class(client):
    with pytest.raises(ot.TelemetryError) as e:
        client.describe("de_AT")
    assert e.value.code == E_INVALID and "language" in e.value.message and "de_AT" in e.value.message


def test_describe_lists_builtin_and_schema_fields(client):
    client.set_values({"users": 42, "profiles": ["exchange"], "trial": False})
    d = client.describe("en")
    report = json.loads(client.preview())
    names = [f["name"] for f in d["fields"]]
    assert sorted(names) == sorted(BUILTIN_NAMES + [f["name"] for f in SCHEMA["fields"]])
    by_name = {f["name"]: f for f in d["fields"]}
    for b in BUILTIN_NAMES:
        f = by_name[b]
        assert f["builtin"] is True, b
        assert f["description"], b
        assert f["value"] == report[b], b
    for sf in SCHEMA["fields"]:
        f = by_name[sf["name"]]
        assert f["builtin"] is False
        assert f["kind"] == sf["type"]
        assert f["description"] == sf["description"]["en"]
        # The value exactly as it would be sent; null when unset.
        assert f["value"] == report["fields"].get(sf["name"]), sf["name"]
    assert by_name["users"]["value"] == "25-49"
    assert by_name["edition"]["value"] is None
    assert d["schema_digest"] == report["schema_digest"]
    assert d["schema_version"] == report["schema_version"]
    assert d["product"] == "Mock Archiver" and d["product_version"] == "1.0.0"


# ----------------------------------------------------------------------------- state on disk

def _granted_state_bytes(lib, state_dir) -> bytes:
    h = _reopen(lib, state_dir)
    assert lib.tel_set_consent(h, 1) == OK
    lib.tel_close(h)
    data = (state_dir / "state.json").read_bytes()
    assert b'"granted"' in data
    return data


BAD_STATE = [
    ("truncated", lambda good: good[: len(good) // 2]),
    ("truncated-one-byte", lambda good: good[:-1]),
    ("empty", lambda good: b""),
    ("garbage", lambda good: b"\xff\xfe\x00garbage\x89PNG\r\n"),
    ("nul-bytes", lambda good: b"\x00" * 4096),
    ("json-array", lambda good: b"[]"),
    ("json-null", lambda good: b"null"),
    ("wrong-format-version", lambda good: good.replace(b'"format":1', b'"format":2')),
    ("unknown-decision", lambda good: good.replace(b'"granted"', b'"yes"')),
    ("extra-key", lambda good: good[:-1] + b',"surprise":1}'),
    ("foreign-json", lambda good: json.dumps({"consent": "granted", "telemetry": True}).encode()),
    ("huge", lambda good: b" " * (5 << 20) + good),
]


@pytest.mark.parametrize("corrupt", [c[1] for c in BAD_STATE], ids=[c[0] for c in BAD_STATE])
def test_bad_state_file_is_never_read_as_consent(lib, state_dir, corrupt):
    good = _granted_state_bytes(lib, state_dir)
    bad = corrupt(good)
    (state_dir / "state.json").write_bytes(bad)
    h = _reopen(lib, state_dir)
    try:
        assert raw_consent(lib, h) == UNDECIDED
        aside = bad_files(state_dir)
        assert len(aside) == 1, f"the bad file was not kept aside: {list(state_dir.iterdir())}"
        assert aside[0].read_bytes() == bad, "the file kept aside is not the original bad file"
        st = _status(lib, h)
        assert st["consent"] == "undecided"
        warn = " ".join(st["warnings"])
        assert st["warnings"], "status_json has no warning about the bad state file"
        assert aside[0].name in warn, f"the warning does not say where the file went: {warn}"
        assert re.search(r"corrupt|format|read", warn), f"the warning does not say why: {warn}"
        d = _describe(lib, h)
        assert d["consent"]["state"] == "undecided" and d["consent"]["receipt"] is None
        assert any(aside[0].name in w for w in d["warnings"])
        # The client works normally afterwards: a new answer is saved and read back.
        assert lib.tel_set_consent(h, 0) == OK
        assert raw_consent(lib, h) == DENIED
        assert len(bad_files(state_dir)) == 1
    finally:
        lib.tel_close(h)


def test_state_file_that_is_a_directory_is_set_aside(lib, state_dir):
    _granted_state_bytes(lib, state_dir)
    (state_dir / "state.json").unlink()
    (state_dir / "state.json").mkdir()
    h = _reopen(lib, state_dir)
    try:
        assert raw_consent(lib, h) == UNDECIDED
        assert len(bad_files(state_dir)) == 1
        assert _status(lib, h)["warnings"]
        assert lib.tel_set_consent(h, 1) == OK
        assert raw_consent(lib, h) == GRANTED
    finally:
        lib.tel_close(h)


def test_state_file_replaced_while_open_is_not_read_as_consent(lib, raw, state_dir):
    assert lib.tel_set_consent(raw, 1) == OK
    (state_dir / "state.json").write_bytes(b'{"format":1,"consent":')
    assert raw_consent(lib, raw) == UNDECIDED
    assert len(bad_files(state_dir)) == 1
    assert _status(lib, raw)["warnings"]


@pytest.mark.skipif(os.name != "posix", reason="Unix file modes")
def test_state_file_is_private_and_written_atomically(lib, raw, state_dir):
    old_umask = os.umask(0)
    try:
        assert lib.tel_set_consent(raw, 1) == OK
    finally:
        os.umask(old_umask)
    st = (state_dir / "state.json").stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) & 0o077 == 0, "state_dir is readable by others"
    names = sorted(p.name for p in state_dir.iterdir())
    assert not [n for n in names if n.startswith(".tmp")], f"temporary files left behind: {names}"
    assert "lock" in names
    doc = json.loads((state_dir / "state.json").read_text())
    assert isinstance(doc.get("format"), int), "the state file carries no format version"
    # Rewriting keeps the mode.
    assert lib.tel_set_consent(raw, 0) == OK
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600


def test_open_creates_missing_nested_state_dir(lib, tmp_path):
    d = tmp_path / "a" / "b" / "c"
    with ot.Client(make_config(d), lib) as c:
        assert c.consent == ot.Consent.UNDECIDED
        c.set_consent(True)
    assert (d / "state.json").is_file()


# --- unusable state_dir (tests run as root: chmod would not stop writes) ---

def test_state_dir_under_a_regular_file_is_an_io_error(lib, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"I am a file")
    cfg = make_config(blocker / "state")
    prime_error(lib)
    rc, out = raw_open(lib, cfg)
    msg = expect_error(lib, rc, E_IO, "state_dir", str(blocker / "state"))
    assert out.value == SENTINEL_PTR
    assert blocker.read_bytes() == b"I am a file", "the file in the way was changed"
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(cfg, lib)
    assert e.value.code == E_IO and "state_dir" in e.value.message
    assert msg


def test_state_dir_that_is_a_regular_file_is_an_io_error(lib, tmp_path):
    f = tmp_path / "state"
    f.write_bytes(b"x")
    prime_error(lib)
    rc, out = raw_open(lib, make_config(f))
    expect_error(lib, rc, E_IO, "state_dir")
    assert out.value == SENTINEL_PTR
    assert f.read_bytes() == b"x"


def test_open_on_an_immutable_state_dir_is_an_io_error(lib, tmp_path, immutable):
    d = tmp_path / "ro"
    d.mkdir()
    immutable(d)
    prime_error(lib)
    rc, out = raw_open(lib, make_config(d))
    expect_error(lib, rc, E_IO, str(d / "lock"))
    assert out.value == SENTINEL_PTR


def test_set_consent_on_an_immutable_state_dir_fails_and_loses_nothing(lib, state_dir, immutable):
    h = _reopen(lib, state_dir)
    try:
        assert lib.tel_set_consent(h, 1) == OK
        receipt = _describe(lib, h)["consent"]["receipt"]
        saved = (state_dir / "state.json").read_bytes()
        immutable(state_dir)
        prime_error(lib)
        rc = lib.tel_set_consent(h, 0)
        expect_error(lib, rc, E_IO, "state.json")
        # The previous answer stays in force, in memory and on disk.
        assert raw_consent(lib, h) == GRANTED
        assert _describe(lib, h)["consent"]["receipt"] == receipt
        assert (state_dir / "state.json").read_bytes() == saved
        assert not [p for p in state_dir.iterdir() if p.name.startswith(".tmp")]
        # Reading still works; an unchanged answer needs no write.
        assert lib.tel_set_consent(h, 1) == OK
        out = c_void_p(SENTINEL_PTR)
        assert lib.tel_status_json(h, byref(out)) == OK
        lib.tel_string_free(out)
        # Once the directory is writable again the "no" can be recorded.
        immutable.undo(state_dir)
        assert lib.tel_set_consent(h, 0) == OK
        assert raw_consent(lib, h) == DENIED
    finally:
        lib.tel_close(h)


def test_outputs_untouched_when_the_lock_file_cannot_be_taken(lib, state_dir, immutable):
    h = _reopen(lib, state_dir)
    try:
        (state_dir / "lock").unlink()  # simulate a lock file that cannot be (re)created
        immutable(state_dir)
        calls = [
            ("tel_get_consent", lambda o, u: lib.tel_get_consent(h, byref(u))),
            ("tel_status_json", lambda o, u: lib.tel_status_json(h, byref(o))),
            ("tel_describe_json", lambda o, u: lib.tel_describe_json(h, b"en", byref(o))),
            ("tel_history_json", lambda o, u: lib.tel_history_json(h, byref(o))),
            ("tel_clear_history", lambda o, u: lib.tel_clear_history(h)),
            ("tel_set_consent", lambda o, u: lib.tel_set_consent(h, 1)),
        ]
        for name, call in calls:
            out, out_u32 = c_void_p(SENTINEL_PTR), c_uint32(SENTINEL_U32)
            prime_error(lib)
            rc = call(out, out_u32)
            expect_error(lib, rc, E_IO, "lock")
            assert out.value == SENTINEL_PTR and out_u32.value == SENTINEL_U32, name
        # Preview needs no disk.
        raw_preview(lib, h)
    finally:
        chattr("-i", state_dir)
        lib.tel_close(h)


_RO_CHILD = r"""
import ctypes, json, subprocess, sys
sys.path.insert(0, sys.argv[1])
import optin_telemetry as ot
lib = ot.load(sys.argv[2])
mnt = sys.argv[3]
cfg_json = sys.argv[4]
out = {}
def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        print(json.dumps({"skip": " ".join(cmd) + ": " + r.stderr.strip()})); sys.exit(0)
def err():
    return ctypes.string_at(lib.tel_last_error_message()).decode()
def consent(h):
    u = ctypes.c_uint32(0xA5A5A5A5)
    rc = lib.tel_get_consent(h, ctypes.byref(u))
    return rc, u.value
# 1. A fresh read-only mount: tel_open must fail with TEL_ERR_IO.
run("mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", mnt)  # private: a world-writable state_dir is refused first
h = ctypes.c_void_p(0x5EA7BEEF)
rc = lib.tel_open(cfg_json.replace("@DIR@", mnt + "/state").encode(), ctypes.byref(h))
out["open_ro"] = [rc, err(), h.value]
h = ctypes.c_void_p(0x5EA7BEEF)
rc = lib.tel_open(cfg_json.replace("@DIR@", mnt).encode(), ctypes.byref(h))
out["open_ro_root"] = [rc, err(), h.value]
# 2. Writable, granted, then remounted read-only: a "no" cannot be recorded.
run("mount", "-o", "remount,rw", mnt)
h = ctypes.c_void_p()
assert lib.tel_open(cfg_json.replace("@DIR@", mnt + "/state").encode(), ctypes.byref(h)) == 0, err()
assert lib.tel_set_consent(h, 1) == 0, err()
before = open(mnt + "/state/state.json", "rb").read()
run("mount", "-o", "remount,ro", mnt)
rc = lib.tel_set_consent(h, 0)
out["revoke_ro"] = [rc, err()]
out["consent_after"] = list(consent(h))
out["unchanged"] = open(mnt + "/state/state.json", "rb").read() == before
# 3. Reopen on the read-only mount.
h2 = ctypes.c_void_p(0x5EA7BEEF)
rc = lib.tel_open(cfg_json.replace("@DIR@", mnt + "/state").encode(), ctypes.byref(h2))
out["reopen_ro"] = [rc, err(), h2.value]
if rc == 0:
    out["reopen_consent"] = list(consent(h2))
    lib.tel_close(h2)
# 4. Writable again: nothing was lost, the "yes" is still in force.
run("mount", "-o", "remount,rw", mnt)
out["consent_rw"] = list(consent(h))
lib.tel_close(h)
h2 = ctypes.c_void_p()
assert lib.tel_open(cfg_json.replace("@DIR@", mnt + "/state").encode(), ctypes.byref(h2)) == 0, err()
out["reopen_rw_consent"] = list(consent(h2))
lib.tel_close(h2)
run("umount", mnt)
print(json.dumps(out))
"""


def test_read_only_tmpfs_mount(lib, tmp_path):
    """A real read-only file system (tmpfs mounted ro in a private mount namespace)."""
    if not shutil.which("unshare"):
        pytest.skip("unshare is not installed")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here (unshare -m: {probe.stderr.strip()})")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cfg = json.dumps(make_config("@DIR@"))
    r = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _RO_CHILD,
         str(ROOT / "bindings" / "python"), str(ot.library_path()), str(mnt), cfg],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if "skip" in res:
        pytest.skip(f"mounting a tmpfs is not permitted here: {res['skip']}")
    rc, msg, h = res["open_ro"]
    assert rc == E_IO, msg
    assert "state_dir" in msg and "Read-only" in msg, msg
    assert h == SENTINEL_PTR
    rc, msg, h = res["open_ro_root"]
    assert rc == E_IO and "lock" in msg and "Read-only" in msg, msg
    assert h == SENTINEL_PTR
    rc, msg = res["revoke_ro"]
    assert rc == E_IO, msg
    # The write of state.json (or already the lock file next to it) fails: either way the
    # message says which file in the state_dir and why.
    assert "Read-only" in msg and str(mnt / "state") in msg, msg
    # Reading still works (the existing lock file is locked through a read-only
    # handle) and reports the answer that was saved, not the one that failed.
    assert res["consent_after"] == [OK, GRANTED], res["consent_after"]
    assert res["unchanged"], "state.json changed although the write failed"
    rc, msg, h = res["reopen_ro"]
    assert rc == OK, msg
    assert res["reopen_consent"] == [OK, GRANTED]
    # Nothing was lost: once writable again, the "yes" is in force in both clients.
    assert res["consent_rw"] == [OK, GRANTED]
    assert res["reopen_rw_consent"] == [OK, GRANTED]


# ----------------------------------------------------------------------------- threads

def test_eight_threads_hammering_one_client(lib, raw, state_dir):
    n_threads, rounds = 8, 120
    editions = [f["values"] for f in SCHEMA["fields"] if f["name"] == "edition"][0]
    profiles = [f["values"] for f in SCHEMA["fields"] if f["name"] == "profiles"][0]

    def tuple_for(i):
        # A set of values written together by set_values_json: a preview must show one whole tuple.
        # archived_items: members of the 1-2-5 series, which rounding sends unchanged.
        return {"archived_items": 10 ** (i + 1), "profiles": profiles[: 1 + i % len(profiles)]}

    expected_tuples = {json.dumps(tuple_for(i), sort_keys=True) for i in range(n_threads)}
    user_labels = {"0", "1-4", "5-9", "10-24", "25-49", "50-99", "100+"}
    report_id = json.loads(raw_preview(lib, raw))["report_id"]
    errors = []
    start = threading.Barrier(n_threads)

    def worker(i):
        try:
            start.wait()
            values = json.dumps(tuple_for(i)).encode()
            for r in range(rounds):
                assert lib.tel_set_values_json(raw, values) == OK, last_error(lib)
                assert lib.tel_set_count(raw, b"users", (i * rounds + r) % 150) == OK, last_error(lib)
                assert lib.tel_set_bool(raw, b"trial", i % 2) == OK, last_error(lib)
                assert lib.tel_set_choice(raw, b"edition", editions[(i + r) % len(editions)].encode()) == OK, last_error(lib)
                # A failing call interleaved, with a message unique to this thread and round.
                bad = f"nosuch_t{i}_r{r}"
                assert lib.tel_set_count(raw, bad.encode(), 1) == E_UNKNOWN
                msg = last_error(lib)
                assert bad in msg, f"thread {i} read someone else's error: {msg}"
                rep = json.loads(raw_preview(lib, raw))
                assert rep["report_id"] == report_id
                assert rep["fields"]["users"] in user_labels
                tup = {k: rep["fields"][k] for k in ("archived_items", "profiles")}
                assert json.dumps(tup, sort_keys=True) in expected_tuples, f"torn update: {tup}"
                assert rep["fields"]["trial"] in (True, False)
                assert rep["fields"]["edition"] in editions
                if r % 10 == 0:
                    d = json.loads(raw_string(lib, "tel_describe_json", raw, b"de" if i % 2 else None))
                    assert len(d["fields"]) == len(BUILTIN_NAMES) + len(SCHEMA["fields"])
                    json.loads(d["next_report"])
                    st = json.loads(raw_string(lib, "tel_status_json", raw))
                    assert st["consent"] in ("undecided", "granted", "denied")
                if r % 15 == 0:
                    assert lib.tel_set_consent(raw, (i + r) % 2) == OK, last_error(lib)
                c = raw_consent(lib, raw)
                assert c in (UNDECIDED, GRANTED, DENIED), c
                assert lib.tel_tick_at(raw, 1_700_000_000) == OK, last_error(lib)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "threads deadlocked"
    assert not errors, "\n".join(errors[:10])
    # Final state is readable and consistent.
    assert raw_consent(lib, raw) in (GRANTED, DENIED)
    json.loads((state_dir / "state.json").read_text())
    assert not [p for p in state_dir.iterdir() if p.name.startswith(".tmp")]
    assert not bad_files(state_dir), "concurrent writers produced a corrupted state file"


def test_last_error_is_per_thread(lib, raw):
    a_failed, b_failed = threading.Event(), threading.Event()
    results = {}

    def thread_a():
        rc = lib.tel_set_choice(raw, b"edition", b"alpha_value")
        results["a_rc"] = rc
        a_failed.set()
        b_failed.wait(10)
        results["a_msg"] = last_error(lib)

    def thread_b():
        a_failed.wait(10)
        rc = lib.tel_set_bool(raw, b"beta_field", 1)
        results["b_rc"] = rc
        results["b_msg_own"] = last_error(lib)
        b_failed.set()

    ta, tb = threading.Thread(target=thread_a), threading.Thread(target=thread_b)
    ta.start(), tb.start()
    ta.join(15), tb.join(15)
    assert results["a_rc"] == E_NOT_ALLOWED and results["b_rc"] == E_UNKNOWN
    assert "alpha_value" in results["a_msg"] and "beta_field" not in results["a_msg"], results["a_msg"]
    assert "beta_field" in results["b_msg_own"] and "alpha_value" not in results["b_msg_own"]
    # The main thread's own message is untouched by both.
    prime_error(lib)
    t = threading.Thread(target=lambda: lib.tel_set_count(raw, b"gamma_field", 1))
    t.start()
    t.join()
    assert PRIME_MARKER in last_error(lib)


# ----------------------------------------------------------------------------- tick_at range

@pytest.mark.parametrize("t", [-(2**63), -1, 2**62, 2**63 - 1, 253_402_300_800])
def test_tick_at_out_of_range_is_rejected_and_harms_nothing(lib, state_dir, t):
    """An absurd clock once overflowed the schedule and saved a broken anchor."""
    with ot.Client(make_config(state_dir)) as c:
        c.set_consent(True)
        rc = lib.tel_tick_at(c._handle, t)
        assert rc == ot.TEL_ERR_INVALID_ARGUMENT
        assert "unix_seconds" in ot.last_error(lib)
        assert c.status()["next_due"] is None, "nothing was scheduled from the bad time"
        c.tick(1_800_000_000)
        due = c.status()["next_due"]
        assert 1_800_000_000 <= due < 1_800_000_000 + 7 * 86400
    with ot.Client(make_config(state_dir)) as c:
        c.tick(1_800_000_000)  # the saved state is still usable after a reopen
        assert c.status()["next_due"] == due


# ----------------------------------------------------------------------------- ambiguous JSON

def test_duplicate_config_key_is_rejected_not_last_wins(state_dir):
    # Last-wins would turn an administrator's "disabled": true off.
    text = json.dumps(make_config(state_dir))[:-1] + ', "disabled": true, "disabled": false}'
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(text)
    assert e.value.code == ot.TEL_ERR_MALFORMED_JSON
    assert 'duplicate key "disabled"' in e.value.message


def test_duplicate_value_key_is_rejected_and_changes_nothing(client):
    client.set_values({"users": 3})
    before = client.preview()
    with pytest.raises(ot.TelemetryError) as e:
        client.set_values('{"users": 1, "users": 500}')
    assert e.value.code == ot.TEL_ERR_MALFORMED_JSON and 'duplicate key "users"' in e.value.message
    assert client.preview() == before


def test_deeply_nested_json_is_an_error_not_a_crash(client, state_dir):
    for text in ["[" * 500_000, '{"a":' * 200_000]:
        with pytest.raises(ot.TelemetryError) as e:
            client.set_values(text)
        assert e.value.code == ot.TEL_ERR_MALFORMED_JSON
        with pytest.raises(ot.TelemetryError) as e:
            ot.Client(text)
        assert e.value.code == ot.TEL_ERR_MALFORMED_JSON


# ----------------------------------------------------------------------------- language tags ignore case

def test_describe_matches_language_tags_case_insensitively(lib, state_dir):
    # BCP 47 tags are case-insensitive: a .NET host may pass "DE", a schema may say "de-at".
    schema = schema_with(trial={"description": {"EN": "Trial.", "de": "Test.", "de-at": "Probe."}})
    with ot.Client(make_config(state_dir, schema=schema), lib) as c:
        def text(lang):
            d = c.describe(lang)
            return next(f["description"] for f in d["fields"] if f["name"] == "trial"), next(f["description"] for f in d["fields"] if f["name"] == "os_family")
        assert text("DE")[0] == "Test."
        assert text("DE-AT")[0] == "Probe." and text("de-AT")[0] == "Probe."
        assert text("IT")[0] == "Trial.", "an upper-case EN key is still the fallback"
        assert text("De") == text("de") and text("de")[1].startswith("Betriebssystem")


def test_same_language_twice_in_different_case_is_a_config_error(state_dir):
    schema = schema_with(trial={"description": {"en": "Trial.", "de": "Test.", "DE": "Probe."}})
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(make_config(state_dir, schema=schema))
    assert e.value.code == ot.TEL_ERR_CONFIG and "listed twice" in e.value.message
