"""HTTPS for real: a private CA and a TLS collector on 127.0.0.1.

The certificates are made by the openssl command line for each run."""

import shutil
import sys
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


# A client in a child process, so that the trust-store environment is its own
# from the start (OpenSSL and openssl-probe read it once per process).
SEND_IN_CHILD = r"""
import json, sys
import optin_telemetry as ot
c = ot.Client(json.loads(sys.argv[1]))
c.set_values({"users": 3})
c.set_consent(True)
c.tick(1_900_000_000)
c.tick(c.status()["next_due"])
c.flush(20_000)
print(json.dumps({"history": c.history(), "status": c.status()}))
c.close()
"""


def send_from_child(tmp_path, cfg, trust_file):
    import json
    import subprocess
    import sys
    from conftest import ROOT

    script = tmp_path / "send.py"
    script.write_text(SEND_IN_CHILD)
    # SSL_CERT_FILE is how OpenSSL (and every distribution's packaging of
    # it) points at the system trust store; here it holds the test CA only.
    env = {"PYTHONPATH": str(ROOT / "bindings" / "python"), "OPTIN_TELEMETRY_LIB": str(ot.library_path()),
           "PATH": "/usr/bin:/bin", "SSL_CERT_FILE": str(trust_file), "SSL_CERT_DIR": str(tmp_path / "no-such-dir")}
    p = subprocess.run([sys.executable, str(script), json.dumps(cfg)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: the system trust store is OpenSSL's")
def test_system_trust_store_is_used_without_ca_cert_pem(pki, tls_collector, state_dir, tmp_path):
    out = send_from_child(tmp_path, make_config(state_dir, tls_collector.url), pki / "ca.pem")
    assert out["history"]["reports"][0]["outcome"] == "delivered", out["status"]
    assert len(tls_collector.wait_for(1)) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: the system trust store is OpenSSL's")
def test_ca_cert_pem_replaces_the_system_trust_store(pki, tls_collector, state_dir, tmp_path):
    # The system store trusts the collector's CA, but ca_cert_pem names
    # another CA: only ca_cert_pem counts, so nothing is sent.
    other = make_test_pki(tmp_path / "other")
    cfg = make_config(state_dir, tls_collector.url, ca_cert_pem=(other / "ca.pem").read_text())
    out = send_from_child(tmp_path, cfg, pki / "ca.pem")
    assert tls_collector.requests == []
    attempt = out["history"]["reports"][0]["attempts"][0]
    assert attempt["outcome"] == "failed" and attempt["status"] is None, out
    assert "certificate" in out["status"]["last_error"].lower(), out["status"]["last_error"]
