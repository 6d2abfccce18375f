"""HTTPS for real: a private CA and a TLS collector on 127.0.0.1.

The certificates are made by the openssl command line for each run."""

import shutil
import ssl

import pytest

import optin_telemetry as ot
from collector import Collector
from conftest import make_config
from pki import make_test_pki

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is needed to make test certificates")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_collector(pki):
    with Collector() as c:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
        c.server.socket = ctx.wrap_socket(c.server.socket, server_side=True)
        c.url = f"https://127.0.0.1:{c.port}/v1/report"
        yield c


def send_one(client):
    client.set_consent(True)
    client.tick(1_900_000_000)
    due = client.status()["next_due"]
    preview = client.preview()
    client.tick(due)
    client.flush(20_000)
    return preview


def test_private_ca_from_config_is_trusted(pki, tls_collector, state_dir):
    cfg = make_config(state_dir, tls_collector.url, ca_cert_pem=(pki / "ca.pem").read_text())
    with ot.Client(cfg) as c:
        c.set_values({"users": 3})
        preview = send_one(c)
        reqs = tls_collector.wait_for(1)
        assert [r.body for r in reqs] == [preview.encode()]
        assert c.status()["last_error"] is None
        assert c.history()["reports"][0]["outcome"] == "delivered"


def test_unknown_ca_is_refused_before_any_byte_of_the_report(tls_collector, state_dir):
    # Without ca_cert_pem the platform verifier does not know the test CA.
    with ot.Client(make_config(state_dir, tls_collector.url)) as c:
        send_one(c)
        status = c.status()
        assert tls_collector.requests == []
        assert status["attempts"] == 1
        assert "certificate" in status["last_error"].lower() or "unknown" in status["last_error"].lower(), status["last_error"]
        attempt = c.history()["reports"][0]["attempts"][0]
        assert attempt["outcome"] == "failed" and attempt["status"] is None


@pytest.mark.parametrize("pem", ["not a pem", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n"])
def test_bad_ca_pem_is_a_config_error(state_dir, pem):
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(make_config(state_dir, "https://127.0.0.1:9/r", ca_cert_pem=pem))
    assert e.value.code == ot.TEL_ERR_CONFIG
    assert "ca_cert_pem" in e.value.message
