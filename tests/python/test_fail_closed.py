"""Issue 10, "a no stops every byte" and "nothing fails open", through the C
ABI (ctypes binding) with a real loopback collector:
- a "no" that cannot be saved still returns TEL_ERR_IO, and this client sends
  nothing more, even once the disk is writable again;
- OPTIN_TELEMETRY_DISABLE with a value that is not UTF-8 blocks;
- a state_dir other users can write, or owned by another user, is refused at
  tel_open, so a planted state.json never becomes a "yes"."""

from __future__ import annotations

import os
import sys
import time

import pytest

import optin_telemetry as ot
from conftest import granted_dir, make_config, scheduled

FLUSH_MS = 15_000


def test_a_no_that_cannot_be_saved_fails_closed_for_the_rest_of_the_clients_life(clients, state_dir, collector, immutable):
    c, due = scheduled(clients, state_dir, collector.url)
    immutable(state_dir)
    with pytest.raises(ot.TelemetryError) as e:
        c.set_consent(False)
    assert e.value.code == ot.TEL_ERR_IO
    immutable.undo(state_dir)  # the disk recovers; the consent on disk is still "yes"
    for t in (due, due + 3600, due + 7 * 86400):
        c.tick(t)
        c.flush(FLUSH_MS)
    time.sleep(0.2)
    assert collector.requests == [], "the client sent after the user said no"
    assert "could not be saved" in (c.status()["blocked_by"] or ""), c.status()
    # Control: another client on the same directory (a process that was never
    # told "no") still sends: the block is this client's, as promised.
    # A tick never waits for the lock file (it looks again 5 s of tick time
    # later when it is busy), so a few ticks, as a host's timer would make.
    other = clients(state_dir, collector.url)
    for k in range(6):
        other.tick(due + 10 * k)
        other.flush(FLUSH_MS)
        if collector.requests:
            break
    assert len(collector.wait_for(1, 5)) == 1, (other.status(), other.history())


def test_disable_variable_that_is_not_utf8_blocks(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    os.environb[b"OPTIN_TELEMETRY_DISABLE"] = b"\xff"
    try:
        assert "OPTIN_TELEMETRY_DISABLE" in (c.status()["blocked_by"] or ""), c.status()
        c.tick(due)
        c.flush(FLUSH_MS)
        time.sleep(0.2)
        assert collector.requests == []
    finally:
        del os.environb[b"OPTIN_TELEMETRY_DISABLE"]
    c.tick(due + 700)  # a blocked client looks again within 10 minutes
    c.flush(FLUSH_MS)
    assert len(collector.wait_for(1, 5)) == 1, "control: without the variable the report leaves"


@pytest.mark.skipif(sys.platform == "win32", reason="Unix permissions")
@pytest.mark.parametrize("mode", [0o770, 0o757, 0o777, 0o1777])
def test_state_dir_writable_by_others_is_refused_at_open(tmp_path, collector, mode):
    d = tmp_path / "shared"
    due = granted_dir(d, collector.url)
    os.chmod(d, mode)
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(make_config(d, endpoint=collector.url))
    assert e.value.code == ot.TEL_ERR_IO
    assert "writable by group or others" in e.value.message and str(d) in e.value.message, e.value.message
    assert collector.requests == []
    # Control: the same directory made private again opens and sends.
    os.chmod(d, 0o700)
    with ot.Client(make_config(d, endpoint=collector.url)) as c:
        c.tick(due)
        c.flush(FLUSH_MS)
    assert len(collector.wait_for(1, 5)) == 1


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() != 0, reason="needs root to chown")
def test_state_dir_owned_by_another_user_is_refused_at_open(tmp_path, collector):
    d = tmp_path / "theirs"
    granted_dir(d, collector.url)
    os.chown(d, 54321, 54321)
    with pytest.raises(ot.TelemetryError) as e:
        ot.Client(make_config(d, endpoint=collector.url))
    assert e.value.code == ot.TEL_ERR_IO
    assert "owned by uid 54321" in e.value.message, e.value.message
    os.chown(d, 0, 0)  # root may own it (a service's directory)
    ot.Client(make_config(d, endpoint=collector.url)).close()
