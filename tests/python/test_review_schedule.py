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

import pytest

import optin_telemetry as ot
from collector import Collector, Reply
from conftest import ROOT, T0, granted_dir, make_config, run_service, send_due

FLUSH_MS = 15_000


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
    due = granted_dir(planted, collector.url)
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
    due = granted_dir(planted, collector.url)
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


# --------------------------------------------------------------------------
# a GUI and a service of different versions on one directory


def test_a_gui_of_another_version_that_knows_no_values_shows_and_sends_the_services_bytes(clients, state_dir, collector, tmp_path):
    # The consent does not bind product_version, so a GUI 1.0.0 and a
    # service 2.0.0 (or a 32-bit GUI beside a 64-bit service) share one "yes".
    # The GUI's view-data screen must show the very bytes that leave,
    # whichever of the two sends: the built-ins travel with the values of the
    # process that published them.
    gui = clients(state_dir, collector.url, product_version="1.0.0")
    service = run_service(tmp_path, make_config(state_dir, endpoint=collector.url, product_version="2.0.0"), {"trial": True, "edition": "smb"})
    assert json.loads(service["preview"])["product_version"] == "2.0.0"
    assert gui.preview() == service["preview"], "the GUI shows other bytes than the service would send"
    assert gui.describe("en")["next_report"] == service["preview"]
    gui.set_consent(True)
    gui.tick(T0)
    due = gui.status()["next_due"]
    gui.tick(due)
    gui.flush(FLUSH_MS)
    reqs = collector.wait_for(1, 5)
    assert [r.body.decode() for r in reqs] == [service["preview"]]


def test_published_builtins_that_are_not_a_librarys_own_are_never_sent(clients, state_dir, collector, tmp_path):
    # state.json is private, but a built-in copied from it must still be one
    # a library could have produced: no free text rides along.
    service = run_service(tmp_path, make_config(state_dir, endpoint=collector.url, product_version="2.0.0"), {"trial": True})
    doc = json.loads((state_dir / "state.json").read_text())
    builtins = doc["values"].get("builtins")
    assert builtins is not None, "the service's built-ins were not published with its values"
    for key, bad in [("product_version", "2.0.0 call me"), ("product_version", "2.123456"), ("product", "Other Product"),
                     ("arch", "x" * 200), ("arch", "jsmith"), ("os_family", "plan9"), ("os_version", "my secret"),
                     ("library_version", "0.1.0 jsmith"), ("library_version", "99999999999")]:
        d = json.loads(json.dumps(doc))
        d["values"]["builtins"][key] = bad
        (state_dir / "state.json").write_text(json.dumps(d))
        c = clients(state_dir, collector.url, product_version="1.0.0")
        shown = json.loads(c.preview())
        c.close()
        assert bad not in json.dumps(shown), key
        assert shown["product_version"] == "1.0.0", f"{key}: a bad built-in set was not replaced by the process's own"
    assert json.loads(service["preview"])["fields"] == {"trial": True}


KILLED_SENDER = r"""
import json, sys, time
import optin_telemetry as ot
cfg, values, t = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
c = ot.Client(cfg)
c.set_values(values)
c.tick(t)
print("ticked", flush=True)
time.sleep(120)
"""


def test_a_retry_after_kill_9_in_another_process_with_other_values_resends_the_first_bytes(clients, state_dir, tmp_path):
    LEASE = 180
    with Collector(default=Reply(delay=30)) as col:
        c = clients(state_dir, col.url, product_version="1.0.0")
        c.set_consent(True)
        c.tick(T0)
        due = c.status()["next_due"]
        script = tmp_path / "killed.py"
        script.write_text(KILLED_SENDER)
        env = {"PYTHONPATH": str(ROOT / "bindings" / "python"), "OPTIN_TELEMETRY_LIB": str(ot.library_path()), "PATH": "/usr/bin:/bin"}
        cfg = make_config(state_dir, endpoint=col.url, product_version="2.0.0")
        p = subprocess.Popen([sys.executable, str(script), json.dumps(cfg), json.dumps({"trial": True, "users": 3}), str(due)], stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert p.stdout.readline().strip() == "ticked"
            assert len(col.wait_for(1, 10)) == 1, "the child did not send"
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        first = col.requests[0].body
        # This process has values of its own, and publishes them.
        col.default = Reply(200)
        c.set_values({"trial": False, "users": 99})
        c.tick(due + 10)
        c.flush(FLUSH_MS)
        assert c.preview().encode() == first, "the pending report shows its first bytes"
        c.tick(due + LEASE)
        c.flush(FLUSH_MS)
        if len(col.requests) == 1:  # the interrupted attempt's backoff
            c.tick(c.status()["next_due"])
            c.flush(FLUSH_MS)
        assert len(col.requests) == 2
        assert col.requests[1].body == first, "the retry after kill -9 carried other bytes under the same id"
        nxt = json.loads(c.preview())
        assert nxt["fields"]["trial"] is False and nxt["product_version"] == "1.0.0"


# --------------------------------------------------------------------------
# files that are not files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are Unix")
@pytest.mark.parametrize("name", ["state.json", "history.json"])
@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink-to-device"])
def test_state_or_history_that_is_not_a_regular_file_is_set_aside_and_never_read(state_dir, collector, name, kind):
    from test_never_blocks import in_thread

    due = granted_dir(state_dir, collector.url)
    target = state_dir / name
    if target.exists():
        target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
        (target / "x").write_text("{}")
    else:
        os.symlink("/dev/zero", target)
    finished, c = in_thread(lambda: ot.Client(make_config(state_dir, endpoint=collector.url)))
    assert finished, f"tel_open blocked on a {kind} {name}"
    try:
        finished, h = in_thread(c.history)
        assert finished, "tel_history_json blocked"
        assert any("not a regular file" in w for w in c.status()["warnings"]), c.status()
        assert any(p.name.startswith(name + ".bad-") for p in state_dir.iterdir())
        if name == "state.json":
            assert c.consent is ot.Consent.UNDECIDED, "a state that is not a file read as consent"
        c.tick(due)
        c.flush(FLUSH_MS)
        assert len(collector.requests) == (0 if name == "state.json" else 1)
        if name == "history.json":
            assert len(c.history()["reports"]) == 1
    finally:
        c.close()


def test_a_pending_body_edited_in_state_json_is_never_sent(clients, state_dir):
    # The retry's bytes come from state.json: anything there that is not a
    # report this library could have built for this schema and id (free
    # text, another id, another form) is dropped and the retry built afresh.
    with Collector() as col:
        col.replies.append(Reply(503))
        c = clients(state_dir, col.url)
        c.set_values({"trial": True, "edition": "smb"})
        c.set_consent(True)
        c.tick(T0)
        due = c.status()["next_due"]
        first = send_due(c, col, due)
        retry_at = c.status()["next_due"]
        rid = json.loads(first.body)["report_id"]
        doc = json.loads((state_dir / "state.json").read_text())
        assert doc["schedule"]["pending"]["body"] == first.body.decode(), "the first bytes are saved with the pending report"
        good = json.loads(first.body)
        plants = [
            dict(good, product_version="1.0.0 user=alice"),
            dict(good, fields=dict(good["fields"], edition="alice@example.com")),
            dict(good, report_id="0" * 32),
            dict(good, note="free text"),
        ]
        texts = [json.dumps(p, separators=(",", ":"), sort_keys=True) for p in plants]
        texts.append(first.body.decode().replace(",", ", "))  # another form of the same report
        texts.append("not json at all")
        for text in texts:
            doc["schedule"]["pending"]["body"] = text
            (state_dir / "state.json").write_text(json.dumps(doc))
            shown = c.preview()
            assert shown != text and shown.encode() == first.body, text
        sent = send_due(c, col, retry_at)
        assert sent.body == first.body, "the retry is the report built afresh (same values, same id)"
        assert json.loads(sent.body)["report_id"] == rid
