"""Adversarial review of issue 9 ("what one report can reveal"), through
the real cdylib's C ABI: a hostile host or careless vendor trying to get text
or extra variants out through the endpoint, the consent receipt or the
rounding draw.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import optin_telemetry as ot
from conftest import make_config

E_CONFIG = ot.TEL_ERR_CONFIG
TOP = 10**19


def open_error(config):
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(config).close()
    return e.value


# --------------------------------------------------------------------------
# endpoint: the host and port have one plain form


@pytest.mark.parametrize("endpoint,part", [
    # Not host names: text in the Host header, the TLS server name and the DNS query.
    ("https://c.example;jsmith/v1", "host"),
    ("https://jsmith!ws-042$corp.example/v1", "host"),
    ("https://c_example/v1", "host"),
    ("https://-c.example/v1", "host"),
    ("https://" + "a" * 64 + ".example/v1", "host"),
    ("https://" + "jsmith-ws-042." * 20 + "example/v1", "host"),
    # An IPv6 zone id is free text too.
    ("https://[fe80::1%25jsmith]/v1", "zone id"),
    # A port in anything but its one decimal form is extra variants, or never works.
    ("https://c.example:0000443/v1", "port"),
    ("https://c.example:/v1", "port"),
    ("https://c.example:65536/v1", "port"),
    ("https://c.example:99999/v1", "port"),
    ("https://c.example:0/v1", "port"),
])
def test_endpoint_host_and_port_cannot_carry_text(tmp_path, endpoint, part):
    e = open_error(make_config(tmp_path, endpoint=endpoint))
    assert e.code == E_CONFIG and "config.endpoint" in e.message and part in e.message, e.message


@pytest.mark.parametrize("endpoint", [
    "https://c.example:443/v1", "https://Collector.Example/v1", "https://xn--bcher-kva.example/v1",
    "https://[2001:db8::1]:8443/v1", "http://[::1]:9/v1", "http://127.0.0.1:65535",
])
def test_plain_hosts_and_ports_are_accepted(tmp_path, endpoint):
    ot.Client(make_config(tmp_path, endpoint=endpoint)).close()


# --------------------------------------------------------------------------
# consent: exactly the endpoint and product it was given for


T0 = 1_800_000_000
WEEK = 7 * 24 * 3600


@pytest.mark.parametrize("variant", [
    "HTTP://127.0.0.1:{port}/v1/report",   # scheme case
    "http://127.0.0.1:{port}/v1/report/",  # trailing slash
    "http://127.0.0.1:{port}/v1/./report",  # dot segment
    "http://localhost:{port}/v1/report",   # same machine, another name
])
def test_an_endpoint_changed_only_in_form_is_still_outdated(tmp_path, variant):
    """The user saw one string; a yes covers that string and no other form of it."""
    from collector import Collector
    state = tmp_path / "state"
    with Collector() as col:
        port = col.url.split(":")[2].split("/")[0]
        url = f"http://127.0.0.1:{port}/v1/report"
        with ot.Client(make_config(state, endpoint=url)) as c:
            c.set_consent(True)
        with ot.Client(make_config(state, endpoint=variant.format(port=port))) as c:
            assert c.consent is ot.Consent.OUTDATED
            assert c.describe()["consent"]["changes"]["endpoint_changed"] is True
            for t in range(T0, T0 + 2 * WEEK, 6 * 3600):
                c.tick(t)
            c.flush(15_000)
        assert col.requests == []


@pytest.mark.parametrize("edit", ["extra_key", "product_only", "renamed_keys", "product_null", "endpoint_number"])
def test_a_crafted_receipt_never_reads_as_granted(tmp_path, edit):
    state = tmp_path / "state"
    with ot.Client(make_config(state)) as c:
        c.set_consent(True)
    path = state / "state.json"
    data = json.loads(path.read_text())
    r = data["consent"]
    if edit == "extra_key":
        r["scope"] = "everything"
    elif edit == "product_only":
        del r["endpoint"]
    elif edit == "renamed_keys":
        r["vendor"], r["url"] = r.pop("product"), r.pop("endpoint")
    elif edit == "product_null":
        r["product"] = None
    else:
        r["endpoint"] = 3
    path.write_text(json.dumps(data))
    with ot.Client(make_config(state)) as c:
        assert c.consent is not ot.Consent.GRANTED, edit
        assert c.status()["next_due"] is None


def test_a_yes_for_product_a_does_not_cover_product_b_in_the_same_state_dir(tmp_path):
    state = tmp_path / "state"
    with ot.Client(make_config(state, product="Archiver A")) as a:
        a.set_consent(True)
        with ot.Client(make_config(state, product="Archiver B")) as b:
            assert b.consent is ot.Consent.OUTDATED
            b.set_consent(True)
            assert b.consent is ot.Consent.GRANTED
            assert a.consent is ot.Consent.OUTDATED, "one receipt per state_dir: B's yes is not A's"


# --------------------------------------------------------------------------
# the rounding draw


def test_the_draw_follows_the_value_and_the_body_is_the_last_preview(tmp_path):
    from collector import Collector
    schema = {"version": 1, "fields": [{"name": f"c{i}", "type": "count", "rounding": "1-2-5", "description": {"en": "x"}}
                                       for i in range(32)]}
    with Collector() as col, ot.Client(make_config(tmp_path / "s", endpoint=col.url, schema=schema, max_bits=200)) as c:
        c.set_values({f"c{i}": 3 for i in range(32)})
        at3 = c.preview()
        c.set_values({f"c{i}": 7 for i in range(32)})
        at7 = c.preview()
        assert set(json.loads(at7)["fields"].values()) <= {5, 10}
        c.set_values({f"c{i}": 3 for i in range(32)})
        assert c.preview() == at3, "one report, one value: one draw, whatever was shown in between"
        for i in range(32):
            c.set_count(f"c{i}", 7)  # through tel_set_count
        assert c.preview() == at7
        c.set_consent(True)
        c.tick(T0)
        c.tick(c.status()["next_due"])
        c.flush(15_000)
        assert [r.body for r in col.requests] == [at7.encode()], "the body is the last preview's bytes"
        outputs = [c.preview(), json.dumps(c.describe()), json.dumps(c.status()), json.dumps(c.history())]
    # The secret draw key is shared by the processes on this state_dir (so a
    # GUI previews what the service sends) only through state.json, which is
    # private to the user; no other file and no output of the API holds it.
    digest = json.loads(at7)["schema_digest"].split(":")[1]
    state = json.loads((tmp_path / "s" / "state.json").read_text())
    keys = {state["next_report"]["draw_key"]}
    assert all(len(k) == 64 for k in keys)
    assert (tmp_path / "s" / "state.json").stat().st_mode & 0o077 == 0, "state.json is private to the user"
    # The key of the report that left (now in history) and the next one's.
    keys |= {k for k in re.findall(r'"draw_key":\s*"([0-9a-f]{64})"', (tmp_path / "s" / "state.json").read_text())}
    assert digest not in keys
    for f in (tmp_path / "s").iterdir():
        if f.is_file() and f.name != "state.json":
            text = f.read_text(errors="replace")
            assert not any(k in text for k in keys), f.name
    for text in outputs:
        assert not any(k in text for k in keys), text[:200]


@pytest.mark.parametrize("value,want", [(0, {0}), (1, {1}), (10**19, {TOP}), (10**19 + 1, {TOP}), (2**64 - 1, {TOP}),
                                        (10**19 - 1, {5 * 10**18, TOP})])
def test_u64_edges_through_tel_set_count(tmp_path, value, want):
    with ot.Client(make_config(tmp_path)) as c:
        c.set_count("archived_items", value)
        sent = json.loads(c.preview())["fields"]["archived_items"]
        described = next(f["value"] for f in c.describe()["fields"] if f["name"] == "archived_items")
    assert sent == described and sent in want, (value, sent)


@pytest.mark.parametrize("text,code,needle", [
    ('{"archived_items": 18446744073709551616}', ot.TEL_ERR_VALUE_NOT_ALLOWED, "at most 18446744073709551615"),
    ('{"archived_items": 100000000000000000000000000000}', ot.TEL_ERR_VALUE_NOT_ALLOWED, "at most 18446744073709551615"),
    ('{"archived_items": -9223372036854775809}', ot.TEL_ERR_VALUE_NOT_ALLOWED, "cannot be negative"),
    ('{"archived_items": 1.5}', ot.TEL_ERR_WRONG_TYPE, "fractional"),
])
def test_a_count_outside_64_bits_says_so(tmp_path, text, code, needle):
    """Not "got a fractional number" for an integer too large for 64 bits."""
    with ot.Client(make_config(tmp_path)) as c:
        with pytest.raises(ot.TelemetryError) as e:
            c.set_values(text)
    assert e.value.code == code and needle in e.value.message and '"archived_items"' in e.value.message, e.value.message


def test_a_schema_version_change_alone_makes_consent_outdated(tmp_path):
    """schema_version is sent in every report: a host cannot vary it under a yes."""
    from conftest import SCHEMA
    state = tmp_path / "state"
    with ot.Client(make_config(state)) as c:
        c.set_consent(True)
    with ot.Client(make_config(state, schema={**SCHEMA, "version": 4_294_967_295})) as c:
        assert c.consent is ot.Consent.OUTDATED
        ch = c.describe()["consent"]["changes"]
        assert (ch["from_schema_version"], ch["to_schema_version"]) == (1, 4_294_967_295)
        assert ch["added"] == ch["removed"] == ch["changed"] == []
