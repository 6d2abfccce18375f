"""The Python binding cannot say "yes" by accident, wrap a number, cut a string
at a NUL, or free the native client under a call in flight (issue 8).

The thread and plain-CDLL tests run in a child process: before the fixes they
crashed the interpreter (SIGSEGV, glibc double-free abort), which must show as
a failed test here, not as a dead test run.
"""

import ctypes
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import optin_telemetry as ot
from conftest import make_config

HERE = Path(__file__).resolve().parent
BINDING = HERE.parents[1] / "bindings" / "python"


@pytest.fixture
def client(lib, state_dir):
    c = ot.Client(make_config(state_dir), lib)
    yield c
    c.close()


def run_child(code: str, *args: str) -> str:
    """Runs `code` in a fresh interpreter with the binding importable; returns its stdout."""
    prelude = f"import sys; sys.path[:0] = [{str(BINDING)!r}, {str(HERE)!r}]\n"
    p = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert p.returncode == 0, f"child exited {p.returncode} (negative = killed by that signal)\nstdout:\n{p.stdout}\nstderr:\n{p.stderr[-4000:]}"
    return p.stdout


# ----------------------------------------------------------------------------- consent and bool: only a real bool

NOT_BOOLS = ["no", "false", "False", "", "yes", 0, 1, 2, -1, None, 0.0, 1.0, b"no", [], [False]]


def test_set_consent_accepts_only_bool_and_a_refusal_changes_nothing(client):
    for bad in NOT_BOOLS:
        with pytest.raises(TypeError, match="granted must be True or False"):
            client.set_consent(bad)
        assert client.consent is ot.Consent.UNDECIDED, f"set_consent({bad!r}) changed the consent"
    client.set_consent(False)
    assert client.consent is ot.Consent.DENIED
    for bad in ("yes", 1, 2):
        with pytest.raises(TypeError):
            client.set_consent(bad)
        assert client.consent is ot.Consent.DENIED, f"set_consent({bad!r}) turned a no into {client.consent}"
    client.set_consent(True)
    assert client.consent is ot.Consent.GRANTED
    with pytest.raises(TypeError):
        client.set_consent("no")
    assert client.consent is ot.Consent.GRANTED


def test_set_bool_accepts_only_bool(client):
    client.set_bool("trial", False)
    before = client.preview()
    assert json.loads(before)["fields"]["trial"] is False
    for bad in NOT_BOOLS:
        with pytest.raises(TypeError, match='field "trial" must be True or False'):
            client.set_bool("trial", bad)
    assert client.preview() == before
    client.set_bool("trial", True)
    assert json.loads(client.preview())["fields"]["trial"] is True


# ----------------------------------------------------------------------------- times and timeouts: no wrapping

def test_tick_time_out_of_int64_is_refused_not_wrapped(client):
    client.set_consent(True)
    status = client.status()
    for bad in (2**64 + 1, 2**63, -(2**63) - 1, 2**100):
        with pytest.raises(OverflowError, match="now must be between"):
            client.tick(bad)
        assert client.status() == status, f"tick({bad}) acted (e.g. a schedule due in 1970)"
    for bad in (1.5, "1700000000", True):
        with pytest.raises(TypeError):
            client.tick(bad)
    assert client.status() == status
    # The int64 limits themselves pass the binding; the library decides (and
    # refuses times outside 1970..9999 with its own error).
    for edge in (2**63 - 1, -(2**63)):
        try:
            client.tick(edge)
        except ot.TelemetryError as e:
            assert e.code == ot.TEL_ERR_INVALID_ARGUMENT, e
    assert client.status() == status


def test_flush_timeout_out_of_uint32_is_refused_not_wrapped(client):
    for bad in (-1, 2**32, 2**64 + 10):
        with pytest.raises(OverflowError, match="timeout_ms must be between 0 and 4294967295"):
            client.flush(bad)
    for bad in (1.0, "10", None, False):
        with pytest.raises(TypeError):
            client.flush(bad)
    client.flush(0)
    client.flush(2**32 - 1)  # nothing in flight: returns at once


# ----------------------------------------------------------------------------- strings with a NUL

def test_a_string_with_a_nul_is_refused_not_cut_short(lib, client, state_dir):
    client.set_choice("edition", "enterprise")
    before = client.preview()
    with pytest.raises(ValueError, match="NUL"):
        client.set_choice("edition", "standard\0evil")
    with pytest.raises(ValueError, match="NUL"):
        client.set_choice("edition\0x", "standard")
    with pytest.raises(ValueError, match="NUL"):
        client.set_bool("trial\0", True)
    with pytest.raises(ValueError, match="NUL"):
        client.set_count("users\0", 3)
    with pytest.raises(ValueError, match="NUL"):
        client.set_values('{"edition": "standard"}\0{"trial": true}')
    with pytest.raises(ValueError, match="NUL"):
        client.describe("de\0")
    assert client.preview() == before
    assert json.loads(before)["fields"]["edition"] == "enterprise"
    # A NUL inside a JSON string value is escaped by json.dumps: the library sees it and refuses it.
    with pytest.raises(ot.TelemetryError):
        client.set_values({"edition": "standard\0evil"})
    assert client.preview() == before
    with pytest.raises(ValueError, match="NUL"):
        ot.Client(json.dumps(make_config(state_dir.parent / "nul")) + "\0garbage", lib)
    assert not (state_dir.parent / "nul").exists()


def test_non_str_strings_are_a_type_error(client):
    with pytest.raises(TypeError):
        client.set_choice("edition", b"standard")
    with pytest.raises(TypeError):
        client.set_choice(None, "standard")


# ----------------------------------------------------------------------------- a plain ctypes.CDLL

def test_a_plain_cdll_gets_every_signature_declared():
    # Without argtypes/restype, 2**40 was passed as a C int (stored as 0) and
    # the error message pointer was truncated to 32 bits (a segfault on the
    # first error).
    out = run_child(
        """
        import ctypes, json, os, tempfile
        import optin_telemetry as ot
        from conftest import make_config
        tmp = tempfile.mkdtemp()
        plain = ctypes.CDLL(os.environ["OPTIN_TELEMETRY_LIB"])
        with ot.Client(make_config(os.path.join(tmp, "a")), plain) as c, \\
             ot.Client(make_config(os.path.join(tmp, "b")), ot.load()) as ref:
            for client in (c, ref):
                client.set_count("archived_items", 10**12)  # above 2**32; a 1-2-5 member, so sent as itself
            fields = lambda client: json.loads(client.preview())["fields"]
            assert fields(c) == fields(ref), (c.preview(), ref.preview())
            c.set_count("archived_items", 0)
            assert fields(c) != fields(ref), "10**12 and 0 give the same report"
            try:
                c.set_choice("edition", "no-such-edition")
            except ot.TelemetryError as e:
                assert e.code == ot.TEL_ERR_VALUE_NOT_ALLOWED and "edition" in e.message, e
            else:
                raise AssertionError("an invalid choice was accepted")
            assert ot.version(plain) == ot.version()
        print("OK")
        """
    )
    assert out.strip().endswith("OK")


# ----------------------------------------------------------------------------- threads and close()

def test_a_call_after_close_raises_a_clear_error(lib, state_dir):
    c = ot.Client(make_config(state_dir), lib)
    assert not c.closed
    c.close()
    assert c.closed
    for call in (c.preview, c.status, c.tick, lambda: c.describe("de"), lambda: c.set_consent(True), lambda: c.flush(0)):
        with pytest.raises(ot.ClientClosedError, match="client is closed"):
            call()
    with pytest.raises(ValueError):  # still a ValueError, as before
        c.preview()
    c.close()  # idempotent


class GatedLibrary:
    """The real library, except that tel_status_json waits for `release` and
    tel_close records whether any call was still in flight."""

    def __init__(self, real):
        self._real = real
        self.inside = threading.Event()
        self.release = threading.Event()
        self.in_flight = 0
        self.closed_with_calls_in_flight = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def tel_status_json(self, handle, out):
        with self._lock:
            self.in_flight += 1
        try:
            self.inside.set()
            assert self.release.wait(60), "never released"
            return self._real.tel_status_json(handle, out)
        finally:
            with self._lock:
                self.in_flight -= 1

    def tel_close(self, handle):
        with self._lock:
            self.closed_with_calls_in_flight.append(self.in_flight)
        if self.in_flight == 0:  # before the fix: leak rather than crash the test run
            self._real.tel_close(handle)


def test_close_waits_for_a_call_in_flight(lib, state_dir):
    gated = GatedLibrary(lib)
    c = ot.Client(make_config(state_dir), gated)
    results = {}

    def reader():
        results["status"] = c.status()

    t = threading.Thread(target=reader)
    t.start()
    assert gated.inside.wait(60)
    closer = threading.Thread(target=c.close)
    closer.start()
    # Once close() has begun, new calls are refused (this is how we know it is waiting).
    deadline = time.monotonic() + 60
    while True:
        try:
            c.preview()
        except ot.ClientClosedError:
            break
        assert time.monotonic() < deadline, "close() never started"
        time.sleep(0.001)
    assert gated.closed_with_calls_in_flight == [], "tel_close ran while tel_status_json was in flight"
    gated.release.set()
    t.join(60)
    closer.join(60)
    assert not t.is_alive() and not closer.is_alive()
    assert results["status"]["consent"] == "undecided"
    assert gated.closed_with_calls_in_flight == [0], "tel_close was not called exactly once, after the call"


def test_threads_hammering_the_client_while_close_runs():
    # Real threads in real calls (describe, tick, status, preview) while close()
    # runs, 30 rounds; before the fix: SIGSEGV (use after free).
    out = run_child(
        """
        import os, tempfile, threading
        import optin_telemetry as ot
        from conftest import make_config
        tmp = tempfile.mkdtemp()
        lib = ot.load()
        outcomes = {"closed": 0, "other": []}
        lock = threading.Lock()
        for round_ in range(30):
            c = ot.Client(make_config(os.path.join(tmp, str(round_))), lib)
            c.set_consent(True)
            started = threading.Barrier(7)
            def hammer(i):
                calls = [lambda: c.describe("de"), c.tick, c.status, c.preview, lambda: c.tick(1_700_000_000), c.history]
                n = 0
                try:
                    while True:
                        calls[(i + n) % len(calls)]()
                        n += 1
                        if n == 3:
                            started.wait(60)
                except ot.ClientClosedError:
                    with lock:
                        outcomes["closed"] += 1
                except BaseException as e:
                    with lock:
                        outcomes["other"].append(repr(e))
                    if n < 3:
                        started.abort()
            threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
            for t in threads:
                t.start()
            started.wait(60)  # every thread has made calls and is making more
            c.close()
            for t in threads:
                t.join(60)
            assert not any(t.is_alive() for t in threads)
        assert outcomes["other"] == [], outcomes["other"][:5]
        assert outcomes["closed"] == 30 * 6, outcomes
        print("OK", outcomes["closed"])
        """
    )
    assert out.split() == ["OK", str(30 * 6)]


def test_several_threads_close_at_once():
    # Before the fix: two tel_close on one pointer (glibc "double free", SIGABRT).
    out = run_child(
        """
        import os, tempfile, threading
        import optin_telemetry as ot
        from conftest import make_config
        tmp = tempfile.mkdtemp()
        lib = ot.load()
        for round_ in range(50):
            c = ot.Client(make_config(os.path.join(tmp, str(round_))), lib)
            c.describe("en")
            go = threading.Barrier(8)
            errors = []
            def closer():
                try:
                    go.wait(60)
                    c.close()
                    assert c.closed
                    try:
                        c.status()
                    except ot.ClientClosedError:
                        pass
                    else:
                        errors.append("a call after close() succeeded")
                except BaseException as e:
                    errors.append(repr(e))
            threads = [threading.Thread(target=closer) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert errors == [], errors
        print("OK")
        """
    )
    assert out.strip() == "OK"
