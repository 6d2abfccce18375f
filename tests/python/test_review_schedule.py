"""Review of issue 10 through the C ABI: attacks on the weekly rule, on the
retry identity, on "a no stops every byte" and on never blocking.

Real cdylib (ctypes binding), real loopback collector, real child processes.
Time is the ticks' clock (tel_tick_at).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import optin_telemetry as ot
from collector import Collector, Reply
from conftest import ROOT, make_config

WEEK = 7 * 24 * 3600
FLUSH_MS = 15_000
T0 = int(time.time())


def scheduled(open_client, state_dir, endpoint, **extra):
    c = open_client(state_dir, endpoint, **extra)
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    assert isinstance(due, int) and T0 <= due < T0 + WEEK, due
    return c, due


def send_due(client, collector, at):
    before = len(collector.requests)
    client.tick(at)
    client.flush(FLUSH_MS)
    assert len(collector.requests) == before + 1, "the due tick did not send exactly one request"
    return collector.requests[-1]


# --------------------------------------------------------------------------
# a retry is the same report: the same id AND the same bytes


def test_a_retry_after_values_changed_resends_the_first_body_byte_for_byte(clients, state_dir):
    # Two different bodies under one report id would show the collector two
    # draws of the same report (and which values changed when). A retry is
    # the report that left: it carries exactly the bytes of its first attempt,
    # and the preview shows those bytes while it is pending.
    with Collector() as col:
        col.replies.append(Reply(503, body=b"later"))
        c = clients(state_dir, col.url)
        c.set_values({"trial": True, "edition": "smb", "users": 7, "archived_items": 1234, "profiles": ["imap"]})
        c.set_consent(True)
        c.tick(T0)
        due = c.status()["next_due"]
        first = send_due(c, col, due)
        retry_at = c.status()["next_due"]
        assert c.status()["attempts"] == 1
        c.set_values({"trial": False, "edition": "enterprise", "users": 70, "archived_items": 99999, "profiles": ["pst", "gmail"]})
        c.tick(retry_at - 1)  # publishes the new values; not due yet
        c.flush(FLUSH_MS)
        assert len(col.requests) == 1
        assert c.preview().encode() == first.body, "while the report is pending, the preview is the retry's bytes"
        d = c.describe()
        assert d["next_report"].encode() == first.body
        shown = {f["name"]: f["value"] for f in d["fields"] if not f["builtin"]}
        assert shown == json.loads(first.body)["fields"], "describe shows the values in the retry's bytes"
        second = send_due(c, col, retry_at)
        assert json.loads(second.body)["report_id"] == json.loads(first.body)["report_id"]
        assert second.body == first.body, "a retry carried another body under the same report id"
        h = c.history()["reports"]
        assert len(h) == 1 and [a["outcome"] for a in h[0]["attempts"]] == ["failed", "delivered"], h
        # The next report carries the new values, under a new id.
        nxt = json.loads(c.preview())
        assert nxt["report_id"] != json.loads(first.body)["report_id"]
        assert nxt["fields"]["trial"] is False


# --------------------------------------------------------------------------
# a planted consent: the directory can be swapped through its parent


def _granted_dir(d, url):
    """A directory holding a state.json with a valid "yes" (made by a real
    client) and its first due time."""
    c = ot.Client(make_config(d, endpoint=url))
    c.set_consent(True)
    c.tick(T0)
    due = c.status()["next_due"]
    c.close()
    return due


@pytest.mark.skipif(sys.platform == "win32", reason="Unix permissions")
def test_a_state_dir_whose_parent_others_can_write_is_refused(tmp_path, collector):
    # Whoever can write the parent can rename the private state_dir away
    # after tel_open and put a directory with a planted "yes" in its place:
    # the library opens its files by path. Such a parent is refused like a
    # state_dir others can write; a sticky one (/tmp) is fine, since there
    # only the owner may rename our directory.
    parent = tmp_path / "open"
    parent.mkdir()
    planted = tmp_path / "planted"
    due = _granted_dir(planted, collector.url)
    os.chmod(parent, 0o777)
    d = parent / "state"
    try:
        c = ot.Client(make_config(d, endpoint=collector.url))
    except ot.TelemetryError as e:
        assert e.code == ot.TEL_ERR_IO
        assert "writable by group or others" in e.message and str(parent) in e.message, e.message
        return_early = True
    else:
        return_early = False
        # The attack: swap in the planted directory, then tick when due.
        os.rename(d, parent / "was")
        os.rename(planted, d)
        c.tick(due)
        c.flush(FLUSH_MS)
        c.close()
    assert collector.requests == [], "a consent planted through a writable parent was sent"
    assert return_early
    # Control: the same parent made sticky (as /tmp) opens.
    os.chmod(parent, 0o1777)
    ot.Client(make_config(d, endpoint=collector.url)).close()


@pytest.mark.skipif(sys.platform == "win32", reason="Unix symlinks")
def test_a_symlinked_state_dir_is_resolved_once_so_repointing_the_link_redirects_nothing(tmp_path, collector):
    # A state_dir given as a symlink (in a sticky /tmp-like directory, where
    # its owner may repoint it at any time) is resolved at tel_open: the
    # client keeps using the directory it checked.
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    planted = tmp_path / "planted"
    due = _granted_dir(planted, collector.url)
    link = sticky / "state"
    os.symlink(real, link)
    c = ot.Client(make_config(link, endpoint=collector.url))
    assert c.consent == ot.Consent.UNDECIDED
    c.tick(T0)
    os.unlink(link)
    os.symlink(planted, link)
    c.tick(due)
    c.flush(FLUSH_MS)
    st = c.status()
    c.close()
    assert collector.requests == [], "the repointed link turned into a yes"
    assert st["consent"] == "undecided", st
    assert (real / "state.json").exists(), "the client kept writing where it was opened"
