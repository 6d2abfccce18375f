import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))
# The suites test the debug build that scripts/test-all makes, unless told otherwise.
os.environ.setdefault("OPTIN_TELEMETRY_LIB", str(ROOT / "target" / "debug" / ("optin_telemetry.dll" if sys.platform == "win32" else "liboptin_telemetry.so")))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import optin_telemetry as ot  # noqa: E402
from collector import Collector  # noqa: E402

SCHEMA = {
    "version": 1,
    "fields": [
        {"name": "trial", "type": "bool", "description": {"en": "Whether this is a trial installation.", "de": "Ob es eine Testinstallation ist."}},
        {"name": "edition", "type": "choice", "values": ["standard", "enterprise", "smb"], "description": {"en": "Edition."}},
        {"name": "users", "type": "count", "buckets": [1, 5, 10, 25, 50, 100], "description": {"en": "Number of users.", "de": "Anzahl der Benutzer."}},
        {"name": "archived_items", "type": "count", "rounding": "1-2-5", "description": {"en": "Number of archived e-mails, rounded at random to 0, 1, 2, 5, 10, 20, 50, ..."}},
        {"name": "profiles", "type": "choices", "values": ["imap", "exchange", "m365", "gmail", "pst"], "description": {"en": "Kinds of archiving profiles."}},
    ],
}


WEEK = 7 * 24 * 3600
# One "now" for the suites, close to the real clock, so that anything the
# library compares with the wall clock (a lease's expiry shown as "sending")
# stays consistent.
T0 = int(time.time())


def scheduled(open_client, state_dir, endpoint, **extra):
    """A client with consent whose first tick (at T0) drew the schedule.
    Returns (client, first due time)."""
    c = open_client(state_dir, endpoint, **extra)
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    assert isinstance(due, int) and T0 <= due < T0 + WEEK, due
    return c, due


def send_due(client, collector, due, flush_ms=15_000):
    """Ticks at `due`, waits for the send, returns the request that arrived."""
    before = len(collector.requests)
    client.tick(due)
    client.flush(flush_ms)
    assert len(collector.requests) == before + 1, "the due tick did not send exactly one request"
    return collector.requests[-1]


def granted_dir(d, url):
    """A directory holding a state.json with a valid "yes" (made by a real
    client); returns its first due time."""
    c = ot.Client(make_config(d, endpoint=url))
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    c.close()
    return due


# A second process (a service beside a GUI) on the same state_dir: opens a
# client, sets values, ticks once (publishing them) and prints its preview and
# describe.
SERVICE = r"""
import json, sys
import optin_telemetry as ot
cfg, values, t = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
c = ot.Client(cfg)
c.set_values(values)
c.tick(t)  # publishes its values
print(json.dumps({"preview": c.preview(), "describe": c.describe("en")}), flush=True)
c.close()
"""


def run_service(tmp_path, cfg, values, t=T0):
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    env = {"PYTHONPATH": str(ROOT / "bindings" / "python"), "OPTIN_TELEMETRY_LIB": str(ot.library_path()), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, str(script), json.dumps(cfg), json.dumps(values), str(t)], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def make_config(state_dir, endpoint="http://127.0.0.1:9/v1/report", schema=None, **extra):
    cfg = {
        "product": "Mock Archiver",
        "product_version": "1.0.0",
        "endpoint": endpoint,
        "state_dir": str(state_dir),
        "schema": schema or SCHEMA,
    }
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="session")
def lib():
    return ot.load()


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def collector():
    with Collector() as c:
        yield c


@pytest.fixture(autouse=True)
def _no_policy_env(monkeypatch):
    monkeypatch.delenv("OPTIN_TELEMETRY_DISABLE", raising=False)


@pytest.fixture
def clients():
    """open_client(state_dir, endpoint, **extra): opens clients and closes them all at the end of the test."""
    opened = []

    def open_client(state_dir, endpoint, **extra):
        c = ot.Client(make_config(state_dir, endpoint=endpoint, **extra))
        opened.append(c)
        return c

    yield open_client
    for c in opened:
        c.close()


def chattr(flag, path):
    """Runs chattr (e.g. "+i", "-i") on a path; the CompletedProcess."""
    return subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)


@pytest.fixture
def immutable():
    """Makes a directory immutable (chattr +i: refuses new entries even to root); undone afterwards."""
    if not shutil.which("chattr"):
        pytest.skip("chattr is not installed")
    done = []

    def make(path):
        r = chattr("+i", path)
        if r.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {r.stderr.strip()}")
        done.append(path)
        try:
            (path / ".probe").touch()
        except OSError:
            return
        (path / ".probe").unlink()
        chattr("-i", path)
        pytest.skip("chattr +i did not stop writes on this filesystem")

    def undo(path):
        chattr("-i", path)
        done.remove(path)

    make.undo = undo
    yield make
    for p in list(done):
        chattr("-i", p)
