"""Proxy rules of the ureq transport (Linux; the Windows ones run under Wine in
tests/windows/network_check.py): "proxy": "none" (*fixed*) forces a direct
connection even with a proxy in the environment; a proxy's 407 is a retried
failure; proxy credentials are never taken from the configuration."""

from __future__ import annotations

import time

import pytest

import optin_telemetry as ot
from collector import Proxy
from conftest import make_config

REMOTE = "https://telemetry.example.invalid/v1/report"
PROXY_VARS = ("ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


def send_once(lib, state_dir, **extra):
    with ot.Client(make_config(state_dir, endpoint=REMOTE, **extra), lib) as c:
        c.set_consent(True)
        c.tick(int(time.time()))
        c.tick(c.status()["next_due"])
        c.flush(15_000)
        return c.status(), c.history()["reports"]


@pytest.fixture
def clean_env(monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_proxy_none_goes_direct_despite_the_environment(lib, state_dir, clean_env):
    proxy = Proxy(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    try:
        clean_env.setenv("HTTPS_PROXY", proxy.url)
        clean_env.setenv("ALL_PROXY", proxy.url)
        status, reports = send_once(lib, state_dir, proxy="none")
        time.sleep(0.2)
        assert proxy.requests == [], proxy.requests
        # Direct to a name that does not resolve: a failed, retried attempt.
        assert reports and reports[0]["outcome"] == "failed", reports
        assert status["next_due"] is not None
        # Control: without "none" the same environment routes through the proxy.
        status, reports = send_once(lib, state_dir.parent / "control")
        assert proxy.requests and proxy.requests[0].startswith(b"CONNECT telemetry.example.invalid:443 "), proxy.requests
    finally:
        proxy.close()


def test_proxy_407_is_a_retried_failure_without_credentials(lib, state_dir, clean_env):
    proxy = Proxy(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
    try:
        status, reports = send_once(lib, state_dir, proxy=proxy.url)
        assert proxy.requests, "the proxy was not used"
        assert all(b"proxy-authorization" not in r.lower() for r in proxy.requests), proxy.requests
        attempt = reports[0]["attempts"][0]
        assert attempt["outcome"] == "failed", attempt  # not "refused": the report is kept
        assert status["attempts"] == 1 and status["next_due"] is not None, status
    finally:
        proxy.close()


@pytest.mark.parametrize("value", ["http://user:secret@127.0.0.1:3128", "http://user@127.0.0.1:3128"])
def test_proxy_credentials_in_the_configuration_are_rejected(lib, state_dir, value):
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(make_config(state_dir, endpoint=REMOTE, proxy=value), lib)
    assert "config.proxy" in str(e.value) and "credentials" in str(e.value)
    assert "secret" not in str(e.value)
