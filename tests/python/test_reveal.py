"""What one report can reveal (issue 9), through the real cdylib's C ABI
(the ctypes binding) and a real collector on 127.0.0.1.

- A count is bucketed or rounded at random to the 1-2-5 series, never sent
  exactly, so it can neither link an installation's weekly reports nor carry
  bits a host packs into it.
- Rounding is unbiased and draws once per report: preview, describe and the
  sent body agree; the next report draws again. A fresh draw comes with every
  new report identity: after a report is finished, or for a client on a fresh
  state directory (used below to collect many independent draws).
- Every schema has an identifying-bits bound; config.max_bits caps it.
- A "yes" covers the schema digest, the product and the endpoint.
- product_version and endpoint cannot carry free text.

Expected figures come from the issue's rules (log2 of 1 + the number of
values a field can take), computed here independently of the library.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest

import optin_telemetry as ot
from collector import Collector
from conftest import ROOT, SCHEMA, make_config

E_CONFIG = ot.TEL_ERR_CONFIG
T0 = int(time.time())
WEEK = 7 * 24 * 3600

# The 1-2-5 series within 64 bits, written out from its definition.
SERIES = [0] + [m * 10**k for k in range(19) for m in (1, 2, 5)] + [10**19]
TOP = 10**19


def neighbours(v):
    if v >= TOP:
        return TOP, TOP
    a = max(x for x in SERIES if x <= v)
    b = min(x for x in SERIES if x >= v)
    return a, b


def rounded_fields(prefix, n):
    return [{"name": f"{prefix}{i}", "type": "count", "rounding": "1-2-5", "description": {"en": "x"}} for i in range(n)]


def open_error(config):
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(config).close()
    return e.value


# --------------------------------------------------------------------------
# counts: never exact


@pytest.mark.parametrize("extra,needles", [
    ({}, ["never sent exactly"]),
    ({"buckets": [1, 10], "rounding": "1-2-5"}, ["not both"]),
])
def test_a_count_needs_exactly_one_of_buckets_or_rounding(tmp_path, extra, needles):
    schema = {"version": 1, "fields": [{"name": "archived_items", "type": "count", "description": {"en": "x"}, **extra}]}
    e = open_error(make_config(tmp_path, schema=schema))
    assert e.code == E_CONFIG
    for n in ['"archived_items"', '"buckets"', '"rounding": "1-2-5"', *needles]:
        assert n in e.message, e.message


@pytest.mark.parametrize("rounding", ["1-2-5 ", "1-3-10", "", 125, None, ["1-2-5"]])
def test_only_the_1_2_5_rounding_exists(tmp_path, rounding):
    schema = {"version": 1, "fields": [{"name": "n", "type": "count", "rounding": rounding, "description": {"en": "x"}}]}
    e = open_error(make_config(tmp_path, schema=schema))
    assert e.code == E_CONFIG and '"n"' in e.message and "1-2-5" in e.message, e.message


def test_smuggling_user_at_host_through_counts_is_impossible(tmp_path):
    """The issue's attack: 8 counts x 64 bits packed with 'user@host'."""
    secret = b"jsmith@ws-042.corp.example.com\x00\x00"[:32].ljust(64, b"\x00")
    packed = [int.from_bytes(secret[i * 8:(i + 1) * 8], "big") for i in range(8)]
    fields = rounded_fields("n", 8)
    schema = {"version": 1, "fields": fields}
    # Eight rounded counts alone are 8 * log2(60) = 47.3 bits: above the default bound.
    e = open_error(make_config(tmp_path / "a", schema=schema))
    assert e.code == E_CONFIG and "max_bits" in e.message and '"n0"' in e.message, e.message
    # Even when the vendor raises the bound, what leaves is a coarse series member.
    with ot.Client(make_config(tmp_path / "b", schema=schema, max_bits=64)) as c:
        c.set_values({f"n{i}": v for i, v in enumerate(packed)})
        text = c.preview()
        sent = json.loads(text)["fields"]
        described = {f["name"]: f["value"] for f in c.describe()["fields"] if not f["builtin"]}
    assert described == sent
    for i, v in enumerate(packed):
        assert sent[f"n{i}"] in neighbours(v) and sent[f"n{i}"] in SERIES, (v, sent[f"n{i}"])
        if v not in SERIES:
            assert str(v) not in text
    # 59 possible values per field: under 6 bits, never the 64 the host packed.
    recovered = b"".join(int(sent[f"n{i}"]).to_bytes(8, "big") for i in range(8) if sent[f"n{i}"] < 2**64)
    assert b"jsmith" not in recovered and b"ws-042" not in recovered


def test_only_series_members_ever_leave_for_any_value(tmp_path):
    values = [0, 1, 2, 3, 4, 6, 9, 11, 19, 21, 99, 101, 1234567, 1234580, 2**32 + 7, 10**18 + 1,
              5 * 10**18 + 1, TOP - 1, TOP, TOP + 1, 2**64 - 1]
    schema = {"version": 1, "fields": rounded_fields("v", len(values))}
    with ot.Client(make_config(tmp_path, schema=schema, max_bits=1000)) as c:
        c.set_values({f"v{i}": v for i, v in enumerate(values)})
        sent = json.loads(c.preview())["fields"]
    for i, v in enumerate(values):
        got = sent[f"v{i}"]
        assert isinstance(got, int) and got in neighbours(v), (v, got)
        if v in SERIES or v > TOP:
            assert got == min(v, TOP), (v, got)  # members are exact; above 10^19 the stated rule


def test_rounding_is_unbiased_and_only_neighbours_appear(lib, tmp_path):
    """Mean of many independent draws within 5 standard errors of the true
    value (chance of a false failure per value about 6e-7), and never a value
    other than the two neighbours. Each fresh state directory is a fresh
    report identity; within a report each field draws independently."""
    per_report, reports = 50, 60  # 4 x 50 fields: the 200-field limit
    cases = {"s": 3, "m": 7, "l": 1234567, "t": 7 * 10**18}
    schema = {"version": 1, "fields": [f for p in cases for f in rounded_fields(p, per_report)]}
    draws = {p: [] for p in cases}
    for r in range(reports):
        with ot.Client(make_config(tmp_path / f"s{r}", schema=schema, max_bits=10_000), lib) as c:
            c.set_values({f"{p}{i}": v for p, v in cases.items() for i in range(per_report)})
            sent = json.loads(c.preview())["fields"]
        for p in cases:
            draws[p] += [sent[f"{p}{i}"] for i in range(per_report)]
    for p, v in cases.items():
        a, b = neighbours(v)
        xs = draws[p]
        assert set(xs) <= {a, b}, (v, set(xs) - {a, b})
        assert set(xs) == {a, b}, f"{v}: only {set(xs)} in {len(xs)} draws"
        q = (v - a) / (b - a)
        n = len(xs)
        mean = sum(xs) / n
        stderr = (b - a) * math.sqrt(q * (1 - q) / n)
        assert abs(mean - v) < 5 * stderr, f"v={v}: mean {mean} over {n} draws, stderr {stderr}"
        # The same, as a count of draws that went up: binomial(n, q).
        ups = sum(1 for x in xs if x == b)
        assert abs(ups - n * q) < 5 * math.sqrt(n * q * (1 - q)), (v, ups, n * q)


def test_preview_describe_and_body_show_one_draw_and_the_next_report_draws_again(tmp_path):
    schema = {"version": 1, "fields": rounded_fields("c", 64)}
    values = {f"c{i}": 3 for i in range(64)}
    with Collector() as col, ot.Client(make_config(tmp_path / "s", endpoint=col.url, schema=schema, max_bits=400)) as c:
        c.set_values(values)
        c.set_consent(True)
        c.tick(T0)
        due = c.status()["next_due"]
        first = c.preview()
        assert c.preview() == first, "a second preview draws nothing new"
        d = c.describe()
        assert d["next_report"] == first
        assert {f["name"]: f["value"] for f in d["fields"] if not f["builtin"]} == json.loads(first)["fields"]
        c.tick(due)
        c.flush(15_000)
        assert len(col.requests) == 1
        assert col.requests[0].body == first.encode(), "the body is the preview's bytes, with the same drawn values"
        second = c.preview()
        f1, f2 = json.loads(first), json.loads(second)
        assert f2["report_id"] != f1["report_id"]
        assert set(f1["fields"].values()) | set(f2["fields"].values()) <= {2, 5}
        # 64 fields, each the same in both reports with probability 5/9: equal by chance < 1e-16.
        assert f2["fields"] != f1["fields"], "the next report must draw again"
        # Later reports: 7 days plus a random delay after the first left.
        c.tick(c.status()["next_due"])
        c.flush(15_000)
        assert len(col.requests) == 2 and col.requests[1].body == second.encode()


# --------------------------------------------------------------------------
# identifying bits


def bits(field):
    kind = field["type"]
    if kind == "bool":
        n = 2
    elif kind == "choice":
        n = len(field["values"])
    elif kind == "choices":
        n = 2 ** len(field["values"])
    elif "buckets" in field:
        n = len(field["buckets"]) + 1
    else:
        n = len(SERIES)
    return math.log2(1 + n)


def test_bits_figures_are_pinned(tmp_path):
    with ot.Client(make_config(tmp_path)) as c:
        d = c.describe()
        p = d["privacy"]
    by_name = {f["name"]: f for f in d["fields"]}
    assert by_name["archived_items"]["rounding"] == "1-2-5" and "buckets" not in by_name["archived_items"]
    assert by_name["users"]["buckets"] == [1, 5, 10, 25, 50, 100] and "rounding" not in by_name["users"]
    assert {n: f["bits"] for n, f in by_name.items() if not f["builtin"]} == p["fields"]
    assert all("bits" not in f for f in d["fields"] if f["builtin"]), "built-in fields are bounded by rules, not counted"
    want = {"trial": math.log2(3), "edition": 2.0, "users": 3.0, "archived_items": math.log2(60), "profiles": math.log2(33)}
    assert set(p["fields"]) == set(want)
    for k, v in want.items():
        assert p["fields"][k] == pytest.approx(v, abs=1e-9), k
        assert bits(next(f for f in SCHEMA["fields"] if f["name"] == k)) == pytest.approx(v, abs=1e-12)
    assert p["max_bits"] == pytest.approx(17.536247, abs=1e-6)
    assert p["max_bits"] == pytest.approx(sum(want.values()), abs=1e-9)
    assert p["limit"] == 32
    assert len(SERIES) == 59 and math.log2(60) == pytest.approx(5.906891, abs=1e-6)


def readme_schema():
    text = (ROOT / "README.md").read_text()
    block = text.split("### Schema", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block), text


def test_readme_example_schema_is_far_below_the_default_and_its_figure_is_stated(tmp_path):
    schema, text = readme_schema()
    with ot.Client(make_config(tmp_path, schema=schema)) as c:
        total = c.describe()["privacy"]["max_bits"]
    assert total == pytest.approx(sum(bits(f) for f in schema["fields"]), abs=1e-9)
    assert total == pytest.approx(17.121210, abs=1e-6)
    assert total < 32 * 0.6
    assert "17.12" in text, "the README states its example's figure"


def test_max_bits_refuses_a_wide_schema_and_names_the_widest_fields(tmp_path):
    schema = {"version": 1, "fields": [
        {"name": "flag", "type": "bool", "description": {"en": "x"}},
        {"name": "langs", "type": "choices", "values": [f"l{i}" for i in range(30)], "description": {"en": "x"}},
        *rounded_fields("n", 2),
    ]}
    total = sum(bits(f) for f in schema["fields"])  # 1.58 + 30.0 + 2 * 5.91 = 43.4
    e = open_error(make_config(tmp_path, schema=schema))
    assert e.code == E_CONFIG
    for n in ["max_bits", "32", '"langs"', '"n0"', '"n1"', f"{total:.2f}"]:
        assert n in e.message, e.message
    assert '"flag"' not in e.message, "only the widest fields are named"
    with ot.Client(make_config(tmp_path, schema=schema, max_bits=44)) as c:
        assert c.describe()["privacy"]["max_bits"] == pytest.approx(total)
    e = open_error(make_config(tmp_path, schema={"version": 1, "fields": [schema["fields"][0]]}, max_bits=1.5))
    assert e.code == E_CONFIG and "max_bits" in e.message
    for bad in [-1, "32", True, [32]]:
        e = open_error(make_config(tmp_path, max_bits=bad))
        assert e.code == E_CONFIG and "config.max_bits" in e.message, (bad, e.message)


# --------------------------------------------------------------------------
# consent covers product and endpoint


OTHER = "http://127.0.0.1:9/v2/report"


@pytest.mark.parametrize("change,flag", [({"product": "Mock Archiver Pro"}, "product_changed"),
                                          ({"endpoint": OTHER}, "endpoint_changed")])
def test_a_product_or_endpoint_change_makes_consent_outdated(tmp_path, change, flag):
    state = tmp_path / "state"
    with Collector() as col:
        with ot.Client(make_config(state, endpoint=col.url)) as c:
            c.set_consent(True)
            digest = c.status()["schema_digest"]
            assert c.consent is ot.Consent.GRANTED
        changed = {"endpoint": col.url, **change}
        with ot.Client(make_config(state, **changed)) as c:
            assert c.consent is ot.Consent.OUTDATED
            d = c.describe()
            ch = d["consent"]["changes"]
            assert ch[flag] is True and ch["added"] == ch["removed"] == ch["changed"] == []
            other = "endpoint_changed" if flag == "product_changed" else "product_changed"
            assert ch[other] is False
            key = flag.split("_")[0]
            assert ch[f"from_{key}"] == (col.url if key == "endpoint" else "Mock Archiver")
            assert ch[f"to_{key}"] == changed.get(key, "Mock Archiver")
            # The report still names the schema alone.
            assert json.loads(c.preview())["schema_digest"] == digest == d["schema_digest"]
            for t in range(T0, T0 + 2 * WEEK, 3600):
                c.tick(t)
            c.flush(15_000)
            assert col.requests == [], "nothing is sent while the consent is outdated"
            c.set_consent(True)
            assert c.consent is ot.Consent.GRANTED
            r = c.describe()["consent"]["receipt"]
            assert (r["product"], r["endpoint"]) == (changed.get("product", "Mock Archiver"), changed["endpoint"])
        # Back to the original: the new yes does not cover it.
        with ot.Client(make_config(state, endpoint=col.url)) as c:
            assert c.consent is ot.Consent.OUTDATED


def test_a_product_version_change_keeps_the_consent(tmp_path):
    state = tmp_path / "state"
    with ot.Client(make_config(state)) as c:
        c.set_consent(True)
    with ot.Client(make_config(state, product_version="1.0.1")) as c:
        assert c.consent is ot.Consent.GRANTED


def test_a_receipt_from_before_the_binding_reads_as_outdated(tmp_path):
    state = tmp_path / "state"
    with ot.Client(make_config(state)) as c:
        c.set_consent(True)
    path = state / "state.json"
    data = json.loads(path.read_text())
    del data["consent"]["product"], data["consent"]["endpoint"]
    path.write_text(json.dumps(data))
    with Collector() as col, ot.Client(make_config(state)) as c:
        assert c.consent is ot.Consent.OUTDATED
        assert c.status()["warnings"] == [], "an old receipt is read, not discarded as corrupt"
        ch = c.describe()["consent"]["changes"]
        assert ch["product_changed"] is True and ch["from_product"] is None
        assert ch["endpoint_changed"] is True and ch["from_endpoint"] is None
    data["consent"]["decision"] = "denied"
    path.write_text(json.dumps(data))
    with ot.Client(make_config(state)) as c:
        assert c.consent is ot.Consent.DENIED, "an old no stays a no"


# --------------------------------------------------------------------------
# product_version and endpoint cannot carry free text


@pytest.mark.parametrize("version", ["1", "24.1.3", "10.2.1.21234", "99999.0.0.99999", "0.0.01"])
def test_product_versions_accepted(tmp_path, version):
    with ot.Client(make_config(tmp_path, product_version=version)) as c:
        assert json.loads(c.preview())["product_version"] == version


@pytest.mark.parametrize("version", [
    "", "1.0 beta", "1.0-beta", "24.1.3+a1b2c3d4", "24.1.3_jsmith", "1.2.3.4.5", "1..2", ".1", "1.", "1234567890",
    "1.1234567890", "v1.0", "1.0rc1", "\uff11.0", "1.0\n", "-1", "+1", " 1", "1 ", "1,0", "1/2", "jsmith at ws-042",
    # At most 5 digits per part (issue 19): no room for an id or a date-and-time stamp.
    "999999999.0.0.999999999", "123456", "1.234567", "24.1.3.202611291530",
])
def test_product_versions_rejected(tmp_path, version):
    e = open_error(make_config(tmp_path, product_version=version))
    assert e.code == E_CONFIG and "config.product_version" in e.message and "dot-separated" in e.message, e.message


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:9", "http://127.0.0.1:9/", "http://127.0.0.1:9/v1/report", "http://localhost:9/a_b.c-d/E9",
    "http://127.0.0.1:9/" + "a" * 63,
])
def test_endpoints_accepted(tmp_path, endpoint):
    ot.Client(make_config(tmp_path, endpoint=endpoint)).close()


@pytest.mark.parametrize("endpoint,part", [
    ("http://127.0.0.1:9/jsmith/ws-042?mail=jsmith@example.com", "query"),
    ("http://127.0.0.1:9/v1/report?", "query"),
    ("http://127.0.0.1:9?x=1", "query"),
    ("http://127.0.0.1:9/v1/report#ws-042", "fragment"),
    ("http://127.0.0.1:9/v1/report#", "fragment"),
    ("http://jsmith@127.0.0.1:9/v1/report", "user info"),
    ("http://jsmith:secret@127.0.0.1:9/v1/report", "user info"),
    ("https://:@collector.example/v1", "user info"),
    ("http://127.0.0.1:9/" + "a" * 64, "path"),
    ("http://127.0.0.1:9/v1/j%20smith", "path"),
    ("http://127.0.0.1:9/v1/~jsmith", "path"),
    ("http://127.0.0.1:9/v1/a+b", "path"),
    ("http://127.0.0.1:9/v1/a;b", "path"),
    ("http://127.0.0.1:9/v1/a,b", "path"),
    ("http://127.0.0.1:9/v1/a=b", "path"),
    ("http://127.0.0.1:9/v1/a:b", "path"),
    ("http://127.0.0.1:9/v1/a!b", "path"),
    ("http://127.0.0.1:9/v1/a'b", "path"),
    ("http://127.0.0.1:9/v1/a(b)", "path"),
    ("http://127.0.0.1:9/v1/a*b", "path"),
    ("http://127.0.0.1:9/v1/a$b", "path"),
    ("http://127.0.0.1:9/v1/a&b", "path"),
    ("http://127.0.0.1:9/v1/\u00e4", "path"),
])
def test_endpoints_rejected_name_the_part(tmp_path, endpoint, part):
    e = open_error(make_config(tmp_path, endpoint=endpoint))
    assert e.code == E_CONFIG and "config.endpoint" in e.message and part in e.message, e.message
