"""Seeded mutation fuzzing of the two JSON entry points through the C ABI.

Each case mutates a valid configuration or values object (drop, retype,
duplicate, nest, huge numbers, odd Unicode, truncation). Whatever comes in,
the call must return TEL_OK or one of the documented codes with a message,
write no output on failure, and never crash the host (this process)."""

import copy
import ctypes
import json
import random

import optin_telemetry as ot
from conftest import SCHEMA, make_config

CODES = {0} | set(ot.ERRORS)
WEIRD = [None, True, 0, -1, 1.5, 2**64, -(2**63), "", "x" * 300, "ünï©ødé", "\u0000", "a@b.c", [], {}, [[[]]], {"a": {"b": {}}}]


def mutate(value, rng, depth=0):
    if isinstance(value, dict) and value and rng.random() < 0.7:
        value = dict(value)
        key = rng.choice(sorted(value))
        op = rng.randrange(5)
        if op == 0:
            del value[key]
        elif op == 1:
            value[key] = copy.deepcopy(rng.choice(WEIRD))
        elif op == 2:
            value[key + rng.choice(["", "_", "X"])] = value[key]
        else:
            value[key] = mutate(value[key], rng, depth + 1)
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        value = list(value)
        i = rng.randrange(len(value))
        op = rng.randrange(3)
        if op == 0:
            del value[i]
        elif op == 1:
            value.append(copy.deepcopy(value[i]))
        else:
            value[i] = mutate(value[i], rng, depth + 1)
        return value
    return copy.deepcopy(rng.choice(WEIRD))


def as_text(obj, rng):
    text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    r = rng.random()
    if r < 0.1:
        return text[: rng.randrange(len(text) + 1)]  # truncated
    if r < 0.15:
        return text.replace("}", "}" * 2, 1)  # trailing garbage
    return text


def test_open_never_crashes_and_only_returns_documented_codes(lib, tmp_path, monkeypatch):
    # A mutated state_dir may be a relative path ("a@b.c"): keep it inside tmp_path.
    monkeypatch.chdir(tmp_path)
    rng = random.Random(20261127)
    outcomes = {}
    for i in range(600):
        cfg = make_config(tmp_path / f"s{i}")
        text = as_text(mutate(cfg, rng), rng)
        h = ctypes.c_void_p(0x5EA7)
        rc = lib.tel_open(text.encode("utf-8", "surrogatepass"), ctypes.byref(h))
        assert rc in CODES, (rc, text)
        outcomes[rc] = outcomes.get(rc, 0) + 1
        if rc == 0:
            lib.tel_close(h)
        else:
            assert h.value == 0x5EA7, "output written on failure"
            assert ot.last_error(lib), text
    # The mutations reach both success and several distinct rejections.
    assert outcomes.get(0, 0) > 0 and len(outcomes) >= 3, outcomes


def test_values_never_crash_and_failures_change_nothing(lib, state_dir):
    rng = random.Random(11272026)
    good = {"trial": True, "edition": "smb", "users": 7, "archived_items": 12345, "profiles": ["imap", "pst"]}
    with ot.Client(make_config(state_dir)) as c:
        c.set_values(good)
        accepted = 0
        for _ in range(1500):
            before = c.preview()
            text = as_text(mutate(good, rng), rng)
            rc = lib.tel_set_values_json(c._handle, text.encode("utf-8", "surrogatepass"))
            assert rc in CODES, (rc, text)
            if rc == 0:
                accepted += 1
                fields = json.loads(c.preview())["fields"]
                assert set(fields) <= {f["name"] for f in SCHEMA["fields"]}
            else:
                assert c.preview() == before, f"a rejected batch changed the report: {text}"
                assert ot.last_error(lib)
            c.set_values(good)
        assert 0 < accepted < 1500
