"""A throwaway certificate authority and a server certificate for 127.0.0.1
and localhost (Wine's WinHTTP matches only DNS names, not IP addresses),
made with the openssl command line, for HTTPS tests against a loopback
collector (tests/python/test_tls.py, tests/windows/c_host_check.py)."""

import subprocess
from pathlib import Path


def make_test_pki(d: Path) -> Path:
    """Writes ca.pem, server.pem and server.key into `d` and returns `d`."""
    d.mkdir(parents=True, exist_ok=True)

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=optin test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return d
