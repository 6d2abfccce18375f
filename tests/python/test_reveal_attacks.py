"""Adversarial review of issue 9 ("what one report can reveal"), through
the real cdylib's C ABI: a hostile host or careless vendor trying to get text
or extra variants out through the endpoint, the consent receipt or the
rounding draw.
"""

from __future__ import annotations

import json
import os
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
