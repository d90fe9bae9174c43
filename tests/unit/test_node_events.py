"""The coordinator reports progress readably to an operator and as JSON to ``simulate``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from federation import processes
from federation.lifeline import PARENT_ENV
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


def test_a_node_gets_the_log_level_its_parent_and_the_event_format(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    class FakePopen:
        def __init__(self, argv: list[str], **kwargs: object) -> None:
            seen["argv"], seen["env"] = argv, kwargs["env"]
            self.stdout = None
            self.pid = 0

    monkeypatch.setattr(processes.subprocess, "Popen", FakePopen)
    processes.NodeProcess("grid", ["party", "--role", "grid"], tmp_path,
                          log_level="DEBUG").start()
    argv = seen["argv"]
    assert isinstance(argv, list) and argv[-5:] == ["--log-level", "DEBUG", "party", "--role",
                                                    "grid"]
    env = seen["env"]
    assert isinstance(env, dict) and env[PARENT_ENV] == str(os.getpid()) and env[EVENTS_ENV] == "1"


def test_a_closed_stdout_does_not_fail_the_coordinator(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("builtins.print", broken)
    print_event(EVENTS[0])  # no exception: the parent watch stops an orphaned node
