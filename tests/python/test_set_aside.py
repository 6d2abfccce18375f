"""Nothing is set aside silently (issue 19): whichever path finds state.json or
history.json damaged and moves it aside (opening, a tick, the sending thread,
tel_history_json), tel_status_json's `warnings` says so, in the client that
did it, in another client already open on the directory, and in a client
opened afterwards, for as long as the file kept aside is there.

The real cdylib (through the ctypes binding) against the loopback collector.
"""

from __future__ import annotations

from conftest import run_service, scheduled, send_due, granted_dir, make_config, T0
import optin_telemetry as ot

DAMAGED = b'{"format":1,"reports":[{"report_id":'  # a write cut short


def aside(state_dir, name):
    return sorted(p for p in state_dir.iterdir() if p.name.startswith(name + ".bad-"))


def warned(client, path):
    """The warnings of `client` that name `path` (status and describe agree)."""
    status = [w for w in client.status()["warnings"] if path.name in w]
    described = [w for w in client.describe("en")["warnings"] if path.name in w]
    assert status == described, (status, described)
    return status


def test_history_damaged_between_reports_is_set_aside_with_a_warning(clients, state_dir, collector):
    # The observation of issue 19: three reports sent, history.json damaged,
    # the next send set it aside quietly: the history listed one report and
    # `warnings` stayed [] here and in a client opened afterwards.
    c, due = scheduled(clients, state_dir, collector.url)
    send_due(c, collector, due)
    for _ in range(2):
        send_due(c, collector, c.status()["next_due"])
    assert len(c.history()["reports"]) == 3
    assert c.status()["warnings"] == []
    beside = clients(state_dir, collector.url)  # a GUI open beside the sender

    (state_dir / "history.json").write_bytes(DAMAGED)
    send_due(c, collector, c.status()["next_due"])  # the sending path finds it first
    assert len(collector.requests) == 4
    assert len(c.history()["reports"]) == 1, "the damaged history was replaced"
    [kept] = aside(state_dir, "history.json")
    assert kept.read_bytes() == DAMAGED, "the damaged file is kept as it was"

    fresh = clients(state_dir, collector.url)
    for who, client in [("the sending client", c), ("a client open beside it", beside), ("a client opened afterwards", fresh)]:
        w = warned(client, kept)
        assert len(w) == 1, f"{who}: {client.status()['warnings']}"
        assert "history.json" in w[0] and "aside" in w[0], w[0]

    # Once someone has looked and removed it, the warning goes.
    kept.unlink()
    assert clients(state_dir, collector.url).status()["warnings"] == []
    assert c.status()["warnings"] == []


def test_history_damaged_before_a_tick_that_draws_the_schedule_is_not_set_aside_silently(clients, state_dir, collector):
    # A tick without a schedule reads the history for the 7-day floor.
    due = granted_dir(state_dir, collector.url)
    c = clients(state_dir, collector.url)
    send_due(c, collector, due)
    c.set_consent(False)
    c.set_consent(True)  # a new "yes": the next tick draws from the history's floor
    (state_dir / "history.json").write_bytes(DAMAGED)
    c.tick(due + 60)
    [kept] = aside(state_dir, "history.json")
    assert warned(c, kept), c.status()
    assert warned(clients(state_dir, collector.url), kept)


def test_state_damaged_between_reports_is_reported_in_a_client_opened_afterwards(clients, state_dir, collector):
    c, due = scheduled(clients, state_dir, collector.url)
    send_due(c, collector, due)
    (state_dir / "state.json").write_bytes(b'{"format":1,"consent":')
    c.tick(c.status()["next_due"])  # the tick finds it, sets it aside, starts undecided
    c.flush(15_000)
    assert len(collector.requests) == 1, "a damaged state was read as consent"
    [kept] = aside(state_dir, "state.json")
    assert warned(c, kept)
    fresh = clients(state_dir, collector.url)
    assert fresh.consent is ot.Consent.UNDECIDED
    w = warned(fresh, kept)
    assert len(w) == 1 and "state.json" in w[0], fresh.status()


def test_a_file_set_aside_by_another_process_is_reported_here(clients, state_dir, collector, tmp_path):
    c, due = scheduled(clients, state_dir, collector.url)
    send_due(c, collector, due)
    (state_dir / "history.json").write_bytes(DAMAGED)
    # A service process opens the directory (and sets the history aside).
    run_service(tmp_path, make_config(state_dir, endpoint=collector.url), {"trial": True}, T0)
    [kept] = aside(state_dir, "history.json")
    assert warned(c, kept), c.status()
