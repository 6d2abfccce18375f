"""Issue 10: a GUI and a service sharing state_dir show and send the same
thing. Real child processes, the real cdylib, a real loopback collector.

Rule under test: the values last published by a process that set values
(published at its next tick) are what every process on the directory shows
in tel_preview_json / tel_describe_json and sends; a process that set none
shows the published ones. The next report's id is shared the same way."""

from __future__ import annotations

import json

from conftest import T0, make_config, run_service

FLUSH_MS = 15_000

def field_values(describe):
    return {f["name"]: f["value"] for f in describe["fields"] if not f["builtin"]}


def test_a_gui_with_no_values_shows_and_sends_what_the_service_set(clients, state_dir, collector, tmp_path):
    cfg = make_config(state_dir, endpoint=collector.url)
    gui = clients(state_dir, collector.url)  # knows no values itself
    service = run_service(tmp_path, cfg, {"trial": True, "edition": "enterprise", "users": 30, "profiles": ["imap", "pst"]})
    assert gui.preview() == service["preview"], "the GUI's view-data screen differs from what the service sends"
    assert field_values(gui.describe("en")) == field_values(service["describe"])
    assert gui.describe("en")["next_report"] == service["preview"]
    # The GUI is the one that sends (it got the consent and ticked first).
    gui.set_consent(True)
    gui.tick(T0)
    due = gui.status()["next_due"]
    shown = gui.preview()
    gui.tick(due)
    gui.flush(FLUSH_MS)
    reqs = collector.wait_for(1, 5)
    assert [r.body.decode() for r in reqs] == [shown]
    assert shown == service["preview"]


def test_the_last_process_to_publish_values_wins_everywhere(clients, state_dir, collector, tmp_path):
    cfg = make_config(state_dir, endpoint=collector.url)
    run_service(tmp_path, cfg, {"edition": "standard", "users": 3})
    gui = clients(state_dir, collector.url)
    gui.set_values({"edition": "smb"})  # the GUI knows values too, and ticks later
    gui.tick(T0 + 60)
    later = run_service(tmp_path, cfg, {"edition": "enterprise"}, T0 + 120)
    assert json.loads(gui.preview())["fields"] == {"edition": "enterprise"}
    assert gui.preview() == later["preview"]


def test_two_clients_on_one_directory_show_the_same_next_report_id(clients, state_dir, collector):
    a = clients(state_dir, collector.url)
    b = clients(state_dir, collector.url)
    a.tick(T0)
    assert json.loads(a.preview())["report_id"] == json.loads(b.preview())["report_id"]
    # After a report left, both show the same new id, never the one that left.
    a.set_consent(True)
    a.tick(T0)
    due = a.status()["next_due"]
    a.tick(due)
    a.flush(FLUSH_MS)
    sent = json.loads(collector.wait_for(1, 5)[0].body)["report_id"]
    ida, idb = json.loads(a.preview())["report_id"], json.loads(b.preview())["report_id"]
    assert ida == idb and ida != sent
