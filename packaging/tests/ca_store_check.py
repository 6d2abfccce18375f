#!/usr/bin/env python3
"""Does the installed manylinux wheel find the system CA store of Debian, RHEL and SUSE?

    python3 packaging/tests/ca_store_check.py VENV_PYTHON WORKDIR

The wheel carries the bundled-tls library (rustls, no OpenSSL): its roots come from
rustls-platform-verifier, which on Linux loads rustls-native-certs, which asks
openssl-probe for the first existing bundle file of a fixed list (SSL_CERT_FILE first)
and the usual certificate directories -- the same probe native-tls uses for the
system-tls library.

Each case runs one send from a fresh process, with VENV_PYTHON, in a private mount
namespace (`unshare -m`, root) whose /etc is a copy of this machine's without
/etc/ssl, /etc/pki and /etc/ca-certificates*, plus one store layout holding only a test
CA (made with openssl for this run), and without SSL_CERT_FILE/SSL_CERT_DIR. The
collector is an HTTPS server on 127.0.0.1 with a certificate from that CA. Nothing
outside the namespace changes; the namespace ends with its process.
Cases: debian, rhel (6 path), rhel7 (ca-trust extracted), suse must deliver; none (no
store at all) must be refused. Prints one line per case; exit 1 if any is not as expected.
"""
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from collector import Collector  # noqa: E402
from pki import make_test_pki  # noqa: E402

LAYOUTS = {
    "debian": "ssl/certs/ca-certificates.crt",
    "rhel": "pki/tls/certs/ca-bundle.crt",
    "rhel7": "pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "suse": "ssl/ca-bundle.pem",
    "none": None,
}

SEND = r"""
import json, sys
import optin_telemetry as ot
libssl = sorted({l.split()[-1] for l in open("/proc/self/maps") if "libssl" in l})
cfg = json.loads(sys.argv[1])
with ot.Client(cfg) as c:
    c.set_consent(True)
    c.tick(1_900_000_000)
    c.tick(c.status()["next_due"])
    c.flush(20_000)
    libssl = sorted({l.split()[-1] for l in open("/proc/self/maps") if "libssl" in l})
    print(json.dumps({"history": c.history(), "status": c.status(), "libssl": libssl}))
"""

# Runs in the new mount namespace: $1 staging dir, $2 store path under /etc (or ""),
# $3 the CA file, then the command.
SETUP = r"""
set -eu
stage=$1; store=$2; ca=$3; shift 3
mount --make-rprivate /
mount -t tmpfs optin-etc "$stage"
cp -a /etc/. "$stage/"
rm -rf "$stage/ssl" "$stage/pki" "$stage"/ca-certificates*
if [ -n "$store" ]; then
    mkdir -p "$stage/$(dirname "$store")"
    cp "$ca" "$stage/$store"
fi
mount --bind "$stage" /etc
exec "$@"
"""


def main():
    venv_python, work = sys.argv[1], Path(sys.argv[2])
    if shutil.which("unshare") is None:
        print("ca_store_check: SKIP: no unshare command")
        return 0
    work.mkdir(parents=True, exist_ok=True)
    pki = make_test_pki(work / "pki")
    (work / "send.py").write_text(SEND)
    failures = 0
    with Collector() as col:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
        col.server.socket = ctx.wrap_socket(col.server.socket, server_side=True)
        url = f"https://127.0.0.1:{col.port}/v1/report"
        for name, store in LAYOUTS.items():
            stage = Path(tempfile.mkdtemp(prefix=f"etc-{name}-", dir=work))
            state = work / f"state-{name}"
            cfg = {"product": "CA store check", "product_version": "1.0", "endpoint": url, "state_dir": str(state),
                   "schema": {"version": 1, "fields": [{"name": "n", "type": "bool", "description": {"en": "n"}}]}}
            before = len(col.requests)
            env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8"}
            p = subprocess.run(["unshare", "-m", "sh", "-c", SETUP, "setup", str(stage), store or "", str(pki / "ca.pem"),
                                venv_python, str(work / "send.py"), json.dumps(cfg)],
                               capture_output=True, text=True, env=env, timeout=120)
            stage.rmdir() if stage.exists() and not any(stage.iterdir()) else None
            if p.returncode != 0:
                print(f"  FAIL {name}: the child failed (exit {p.returncode}): {p.stderr.strip()[-600:]}")
                failures += 1
                continue
            out = json.loads(p.stdout)
            outcome = out["history"]["reports"][0]["outcome"] if out["history"]["reports"] else None
            received = len(col.requests) - before
            want = "delivered" if store else "not delivered"
            got = "delivered" if outcome == "delivered" and received == 1 else "not delivered"
            where = f"/etc/{store}" if store else "no CA store"
            detail = "" if got == "delivered" else f"; last_error: {out['status']['last_error']}"
            libssl = ", ".join(out["libssl"]) or "(no libssl mapped)"
            status = "ok  " if got == want else "FAIL"
            failures += got != want
            print(f"  {status} {name:6} ({where}): {got}, collector got {received}{detail}; libssl: {libssl}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
