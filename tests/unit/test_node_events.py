"""The coordinator reports progress readably to an operator and as JSON to ``simulate``."""

from __future__ import annotations

import json

import pytest

from federation.nodes import print_event
from federation.processes import EVENTS_ENV

EVENTS = [{"event": "stage", "stage": "fit"}, {"event": "aligned", "intersection_size": 569},
          {"event": "epoch", "epoch": 2, "epochs": 5, "loss": 0.4321}]


def test_an_operator_reads_lines_not_json(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(EVENTS_ENV, raising=False)
    for event in EVENTS:
        print_event(event)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["stage: fit", "aligned 569 enterprises by PSI",
                     "epoch 2/5: mean Taylor loss 0.432100"]
    assert not any(line.startswith("EVENT") or "{" in line for line in lines)


def test_simulate_gets_json_event_lines(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(EVENTS_ENV, "1")
    print_event(EVENTS[2])
    line = capsys.readouterr().out.strip()
    assert line.startswith("EVENT ") and json.loads(line[6:]) == EVENTS[2]
