"""Reports through an Oblivious HTTP relay (RFC 9458), through the real
cdylib, against a loopback fake relay + gateway (the example
`ohttp_gateway`, built on the ohttp crate's server side)."""
import json
import subprocess
import threading
from pathlib import Path

import pytest

import optin_telemetry as ot
from conftest import ROOT, T0, make_config

GATEWAY_BIN = ROOT / "target" / "debug" / "examples" / "ohttp_gateway"
ENDPOINT = "https://collector.example/v1/report"


class Gateway:
    def __init__(self, *args):
        if not GATEWAY_BIN.exists():
            pytest.skip(f"{GATEWAY_BIN} is not built (cargo build --example ohttp_gateway)")
        self.p = subprocess.Popen([str(GATEWAY_BIN), *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = json.loads(self.p.stdout.readline())
        self.relay, self.key_config = first["relay"], first["key_config"]
        self.seen = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            with self._cv:
                self.seen.append(json.loads(line))
                self._cv.notify_all()

    def wait_for(self, n, timeout=5.0):
        with self._cv:
            self._cv.wait_for(lambda: len(self.seen) >= n, timeout)
            return list(self.seen)

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


@pytest.fixture
def gateway():
    made = []

    def start(*args):
        g = Gateway(*args)
        made.append(g)
        return g

    yield start
    for g in made:
        g.close()


def ohttp_config(state_dir, relay, key_config):
    return make_config(state_dir, endpoint=ENDPOINT, ohttp={"relay": relay, "key_config": key_config})


def granted(c):
    c.set_values({"edition": "enterprise", "trial": True, "users": 7})
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    assert isinstance(due, int), c.status()
    return due


def test_the_relay_gets_only_ciphertext_and_the_gateway_the_preview(state_dir, gateway):
    gw = gateway()
    c = ot.Client(ohttp_config(state_dir, gw.relay, gw.key_config))
    try:
        due = granted(c)
        preview = c.preview()
        c.tick(due)
        c.flush(15_000)
        seen = gw.wait_for(1)
        assert len(seen) == 1, seen
        s = seen[0]
        assert (s["path"], s["content_type"]) == ("/relay", "message/ohttp-req")
        inner = s["inner"]
        assert inner is not None, "the gateway could not open the request"
        assert (inner["method"], inner["scheme"], inner["authority"], inner["path"], inner["content_type"]) == ("POST", "https", "collector.example", "/v1/report", "application/json")
        assert inner["body"] == preview
        outer = bytes.fromhex(s["outer_hex"])
        report = json.loads(preview)
        for needle in [report["report_id"], "enterprise", "Mock Archiver", "report_id", "edition", "collector.example"]:
            assert needle.encode() not in outer, needle
        h = c.history()["reports"]
        assert [(e["via"], e["outcome"], e["status"], e["body"]) for e in h] == [("relay", "delivered", 201, preview)]
        d = c.describe("de")
        assert "sieht Ihre Internetadresse, aber nicht den Inhalt" in d["relay"]["text"]
        assert c.describe("en")["relay"]["url"] == gw.relay
    finally:
        c.close()


def test_a_changed_relay_or_key_makes_consent_outdated(state_dir, gateway):
    gw, other = gateway(), gateway()
    c = ot.Client(ohttp_config(state_dir, gw.relay, gw.key_config))
    c.set_consent(True)
    assert c.consent == ot.Consent.GRANTED
    c.close()
    for relay, key in [(other.relay, gw.key_config), (gw.relay, other.key_config)]:
        c = ot.Client(ohttp_config(state_dir, relay, key))
        assert c.consent == ot.Consent.OUTDATED
        assert c.describe("en")["consent"]["changes"]["relay_changed"] is True
        c.close()
    c = ot.Client(make_config(state_dir, endpoint=ENDPOINT))
    assert c.consent == ot.Consent.OUTDATED, "no relay any more"
    c.close()


def test_a_wrong_key_is_key_config_outdated_and_not_retried(state_dir, gateway):
    gw, other = gateway(), gateway()
    c = ot.Client(ohttp_config(state_dir, gw.relay, other.key_config))
    try:
        due = granted(c)
        c.tick(due)
        c.flush(15_000)
        st = c.status()
        assert st["last_error"].startswith("key_config_outdated:"), st
        for day in range(1, 40):
            c.tick(due + day * 86_400)
            c.flush(15_000)
        assert len(gw.wait_for(2, timeout=0.5)) == 1, "one attempt, no retry loop"
        assert c.history()["reports"][0]["outcome"] == "key_config_outdated"
    finally:
        c.close()


@pytest.mark.parametrize("ohttp,part", [
    ({"relay": "https://relay.example/r", "key_config": "%%%"}, "not base64"),
    ({"relay": "http://relay.example/r", "key_config": "AAAA"}, "plain http"),
    ({"relay": "https://relay.example/r", "key_config": "AAAA", "extra": 1}, 'unknown key "extra"'),
])
def test_open_refuses_a_bad_ohttp_config(state_dir, ohttp, part):
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(make_config(state_dir, endpoint=ENDPOINT, ohttp=ohttp))
    assert e.value.code == ot.TEL_ERR_CONFIG and part in e.value.message, e.value.message
