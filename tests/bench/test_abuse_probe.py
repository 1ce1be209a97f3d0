"""Scenario 9's probe: its refusals broken down by who refused them and by when they came."""

from __future__ import annotations

from bench.scenarios.s9_abuse import Probe, refusals_note


def test_refusals_are_split_by_who_refused_and_by_the_others_window() -> None:
    probe = Probe()
    probe.others_from, probe.others_to = 10.0, 20.0
    probe.refusals = [
        (5.0, "gateway", 12.0),
        (15.0, "gateway", 70.0),
        (16.0, "auth service", 30.0),
        (25.0, "gateway", 14.0),
    ]
    parts: dict[str, list[float]] = {}
    probe.add_breakdown(parts)
    assert parts == {
        "by the gateway": [12.0, 70.0, 14.0],
        "by the auth service": [30.0],
        "while the others read": [70.0, 30.0],
        "before or after them": [12.0, 14.0],
    }
    note = refusals_note(parts)
    assert "by the gateway 3 (14.0 / 70.0)" in note
    assert "while the others read 2 (70.0 / 70.0)" in note
