"""``gridcredit serve``: grid and bank serve nodes as real processes, scored over mutual TLS.

Trains once on FATE breast with ``gridcredit simulate``, starts the grid and the bank serve
nodes with the run's models and certificates, and calls ``Scoring.Score`` as the bank's own
systems would. The bank's data is the run's plus five enterprises the grid does not know.
The in-process tests at the end drive ``parties.serving`` directly (no processes).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from federation.processes import ServeProcess
from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag
from federation.transport import wire
from federation.transport.certs import NodeCerts
from federation.transport.grpc_client import secure_channel
from parties.evaluation.scorecard import Scorecard
from parties.outputs import NO_GRID_RECORD
from parties.serving import NOT_IN_BANK_DATA, STEP_ROWS, UnknownSession
from parties.serving_bank import BankServing
from parties.serving_grid import GridServing
from tests.conftest import fate_file, run_cli

START_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0
NEW_IDS = [f"new-{i}" for i in range(5)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "run"
    result = run_cli(
        "simulate",
        "--grid-data",
        str(fate_file("breast_hetero_host.csv")),
        "--bank-data",
        str(fate_file("breast_hetero_guest.csv")),
        "--out",
        str(out),
        "--batch-size",
        "128",
        "--epochs",
        "5",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def bank_csv(run: Path) -> Path:
    """The run's bank data plus five enterprises without a grid record."""
    lines = fate_file("breast_hetero_guest.csv").read_text().splitlines()
    extra = [",".join([new, *row.split(",")[1:]]) for new, row in zip(NEW_IDS, lines[1:])]
    path = run.parent / "bank_to_serve.csv"
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def _tail(node: ServeProcess) -> str:
    try:
        return "\n".join((node.out / "node.log").read_text().splitlines()[-20:])
    except OSError:
        return "(no log)"


@contextmanager
def _serve_pair(run: Path, bank_csv: Path, name: str, *grid_flags: str
                ) -> Iterator[tuple[str, str]]:
    """A grid and a bank serve node of the run; yields (grid address, bank address).

    The first pair ("serve") writes its audit logs where ``serve`` puts them by default
    (next to ``--model``); others into their own folders.
    """
    module, certs = "federation.cli", str(run / "certs")

    def audit(role: str) -> list[str]:
        return [] if name == "serve" else ["--audit", str(run / f"{name}-{role}" / "audit.jsonl")]

    grid = ServeProcess(
        "grid",
        [
            "serve",
            "--role",
            "grid",
            "--model",
            str(run / "grid" / "model.json"),
            "--data",
            str(fate_file("breast_hetero_host.csv")),
            "--tls-dir",
            certs,
            *audit("grid"),
            *grid_flags,
        ],
        run / f"{name}-grid",
        module=module,
    )
    nodes = [grid]
    try:
        grid.start()
        grid_address = grid.wait_listening(START_TIMEOUT)
        bank = ServeProcess(
            "bank",
            [
                "serve",
                "--role",
                "bank",
                "--model",
                str(run / "bank" / "model.json"),
                "--data",
                str(bank_csv),
                "--tls-dir",
                certs,
                "--peer",
                grid_address,
                *audit("bank"),
            ],
            run / f"{name}-bank",
            module=module,
        )
        nodes.append(bank)
        bank.start()
        yield grid_address, bank.wait_listening(START_TIMEOUT)
    except BaseException:
        for node in nodes:
            print(f"--- {node.name} (exit {node.returncode()}) ---\n{_tail(node)}")
        raise
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="module")
def addresses(run: Path, bank_csv: Path) -> Iterator[tuple[str, str]]:
    with _serve_pair(run, bank_csv, "serve") as pair:
        yield pair


@pytest.fixture(scope="module")
def bank_address(addresses: tuple[str, str]) -> str:
    return addresses[1]


def _channel(address: str, run: Path, role: Role) -> grpc.Channel:
    channel = secure_channel(address, NodeCerts.in_dir(run / "certs", role), Role.BANK)
    grpc.channel_ready_future(channel).result(timeout=10)
    return channel


@pytest.fixture(scope="module")
def scoring(bank_address: str, run: Path) -> Iterator[vfl_pb2_grpc.ScoringStub]:
    channel = _channel(bank_address, run, Role.BANK)
    try:
        yield vfl_pb2_grpc.ScoringStub(channel)
    finally:
        channel.close()


def _score(stub: vfl_pb2_grpc.ScoringStub, ids: list[str]) -> vfl_pb2.ScoreReply:
    reply: vfl_pb2.ScoreReply = stub.Score(vfl_pb2.ScoreRequest(ids=ids), timeout=CALL_TIMEOUT)
    return reply


def _predictions(run: Path) -> dict[str, float]:
    with (run / "bank" / "predictions.csv").open() as handle:
        return {row["id"]: float(row["probability"]) for row in csv.DictReader(handle)}


@pytest.mark.e2e
def test_known_ids_score_as_the_runs_predictions(
    scoring: vfl_pb2_grpc.ScoringStub, run: Path
) -> None:
    expected = _predictions(run)
    ids = sorted(expected)
    reply = _score(scoring, ids)
    assert [r.id for r in reply.results] == ids
    assert {r.status for r in reply.results} == {"scored"}
    got = np.array([r.probability for r in reply.results])
    assert np.abs(got - np.array([expected[i] for i in ids])).max() <= 1e-9
    points = Scorecard().points(got)
    assert np.allclose([r.points for r in reply.results], points, rtol=0, atol=1e-9)
    for r in reply.results[:20]:
        lo, hi = (float(v) for v in r.band.strip("[)").split(","))
        assert lo <= r.points < hi and hi - lo == 20
    one = _score(scoring, [ids[7]]).results[0]
    assert one.status == "scored" and abs(one.probability - expected[ids[7]]) <= 1e-9


@pytest.mark.e2e
def test_unknown_ids_say_no_grid_record(scoring: vfl_pb2_grpc.ScoringStub) -> None:
    reply = _score(scoring, NEW_IDS)
    assert [r.status for r in reply.results] == [NO_GRID_RECORD] * len(NEW_IDS)
    assert all(r.band == "" and r.probability == 0.0 for r in reply.results)


@pytest.mark.e2e
def test_mixed_request_answers_each_id_in_request_order(
    scoring: vfl_pb2_grpc.ScoringStub, run: Path
) -> None:
    expected = _predictions(run)
    known = sorted(expected)[:3]
    ids = [known[0], NEW_IDS[0], "not-a-customer", known[1], known[0], NEW_IDS[1], known[2]]
    reply = _score(scoring, ids)
    assert [r.id for r in reply.results] == ids
    assert [r.status for r in reply.results] == [
        "scored",
        NO_GRID_RECORD,
        "error",
        "scored",
        "scored",
        NO_GRID_RECORD,
        "scored",
    ]
    assert reply.results[2].error == NOT_IN_BANK_DATA
    for r in reply.results:
        if r.status == "scored":
            assert abs(r.probability - expected[r.id]) <= 1e-9
    assert reply.session and reply.request > 0


@pytest.mark.e2e
def test_requests_are_bounded(scoring: vfl_pb2_grpc.ScoringStub) -> None:
    for ids in ([], [f"x{i}" for i in range(10_001)], ["  "]):
        with pytest.raises(grpc.RpcError) as err:
            _score(scoring, ids)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, err.value.details()


@pytest.mark.e2e
@pytest.mark.parametrize("role", [Role.GRID, Role.COORDINATOR])
def test_a_client_with_another_roles_certificate_is_refused(
    bank_address: str, run: Path, role: Role
) -> None:
    channel = _channel(bank_address, run, role)
    try:
        with pytest.raises(grpc.RpcError) as err:
            _score(vfl_pb2_grpc.ScoringStub(channel), ["133"])
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert f"names role '{role.value}'" in (err.value.details() or "")
    finally:
        channel.close()


@pytest.mark.e2e
def test_bank_node_answers_health_checks(bank_address: str, run: Path) -> None:
    channel = _channel(bank_address, run, Role.BANK)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "vfl.v1.Scoring"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()


def _wait_for_entries(logs: list[Path], request: int) -> list[list[dict[str, object]]]:
    """Both logs once the request's last entries are written (nodes write off the request
    path), waiting at most 10 s."""
    deadline = time.monotonic() + 10.0
    while True:
        entries = [[json.loads(line) for line in log.read_text().splitlines()] for log in logs]
        last = [
            any(e["round"] == request and e["step"] == step for e in log_entries)
            for log_entries, step in zip(entries, ("serve/partial", "score/reply"))
        ]
        if all(last) or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


@pytest.mark.e2e
def test_both_audit_logs_hold_every_serve_message(
    scoring: vfl_pb2_grpc.ScoringStub, run: Path
) -> None:
    request = _score(scoring, [NEW_IDS[2], sorted(_predictions(run))[3]]).request
    logs = [run / "grid" / "serve_audit.jsonl", run / "bank" / "serve_audit.jsonl"]
    entries = _wait_for_entries(logs, request)
    grid_steps = {(e["direction"], e["step"]) for e in entries[0]}
    assert grid_steps >= {
        ("received", "serve/open"),
        ("sent", "serve/points"),
        ("received", "serve/blinded"),
        ("sent", "serve/double"),
        ("received", "serve/rows"),
        ("sent", "serve/partial"),
    }
    this = {(e["direction"], e["peer"], e["step"]) for e in entries[1] if e["round"] == request}
    assert this >= {
        ("sent", "grid", "serve/blinded"),
        ("received", "grid", "serve/double"),
        ("sent", "grid", "serve/rows"),
        ("received", "grid", "serve/partial"),
        ("sent", "client", "score/reply"),
    }
    assert all(e["direction"] != "received" or e["peer"] == "bank" for e in entries[0])
    result = run_cli("audit", "verify", *map(str, logs), "--certs", str(run / "certs"),
                     "--allow-open", timeout=60)  # the service is still running
    assert result.returncode == 0, result.stdout + result.stderr
    assert "messages cross-matched" in result.stdout


# -- scoring clients, a deviating bank, the grid's quotas (after the audit test: a deviating
# bank's messages are in the grid's log only) ---------------------------------------------


@pytest.fixture(scope="module")
def client_certs(run: Path) -> NodeCerts:
    """A scoring client's certificate, issued into the run's certs with its existing CA."""
    result = run_cli("certs", "--out", str(run / "certs"), "--client", "risk-desk")
    assert result.returncode == 0, result.stderr[-2000:]
    return NodeCerts.for_client(run / "certs", "risk-desk")


def _dial(address: str, certs: NodeCerts, expected: Role) -> grpc.Channel:
    channel = secure_channel(address, certs, expected)
    grpc.channel_ready_future(channel).result(timeout=10)
    return channel


@pytest.mark.e2e
def test_a_scoring_client_certificate_scores_at_the_bank(
    bank_address: str, client_certs: NodeCerts, run: Path
) -> None:
    expected = _predictions(run)
    ids = sorted(expected)[:25]
    channel = _dial(bank_address, client_certs, Role.BANK)
    try:
        reply = _score(vfl_pb2_grpc.ScoringStub(channel), ids)
    finally:
        channel.close()
    assert [r.status for r in reply.results] == ["scored"] * len(ids)
    assert max(abs(r.probability - expected[r.id]) for r in reply.results) <= 1e-9


@pytest.mark.e2e
def test_a_scoring_client_certificate_is_refused_by_the_grid(
    addresses: tuple[str, str], client_certs: NodeCerts
) -> None:
    channel = _dial(addresses[0], client_certs, Role.GRID)
    stub = vfl_pb2_grpc.ServePeerStub(channel)
    env = wire.envelope_to_bytes(BankServing.open_request())
    try:
        for call in (
            lambda: list(stub.Open(vfl_pb2.ServeOpenRequest(envelope=env), timeout=30)),
            lambda: stub.Step(vfl_pb2.ServeStepRequest(envelope=env), timeout=30),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert (err.value.details() or "").startswith(
                "certificate names role 'client:risk-desk'; this service accepts bank"
            )
    finally:
        channel.close()


def _open(stub: vfl_pb2_grpc.ServePeerStub, bank: BankServing) -> None:
    request = vfl_pb2.ServeOpenRequest(envelope=wire.envelope_to_bytes(bank.open_request()))
    data = b"".join(piece.chunk for piece in stub.Open(request, timeout=CALL_TIMEOUT))
    bank.accept_points(wire.envelope_from_bytes(data))


def _step(stub: vfl_pb2_grpc.ServePeerStub, env: Envelope) -> Envelope:
    request = vfl_pb2.ServeStepRequest(envelope=wire.envelope_to_bytes(env))
    reply: vfl_pb2.ServeStepReply = stub.Step(request, timeout=CALL_TIMEOUT)
    return wire.envelope_from_bytes(reply.envelope)


@pytest.mark.e2e
def test_a_deviating_bank_calling_the_grid_directly_gets_nothing(
    addresses: tuple[str, str], run: Path
) -> None:
    """The bank's own certificate, the grid's service, requests that match no row."""
    channel = _dial(addresses[0], NodeCerts.in_dir(run / "certs", Role.BANK), Role.GRID)
    stub = vfl_pb2_grpc.ServePeerStub(channel)
    strangers = [f"stranger-{i}" for i in range(50)]
    bank = BankServing(strangers, np.zeros(len(strangers)), Scorecard())
    try:
        _open(stub, bank)
        forged = []
        for _ in range(2):
            plan, blinded = bank.blinded_request(strangers)
            assert blinded is not None
            assert bank.rows_request(plan, _step(stub, blinded)) is None  # honestly: no match
            forged.append((plan, blinded))
        claims = [
            {"index": np.arange(50, dtype=np.int64), "keys": forged[0][0].unblind},
            {"rows": np.arange(50, dtype=np.int64)},  # positions, as the grid once accepted
        ]
        for (plan, _), tensors in zip(forged, claims):
            env = Envelope(plan.session, Tag(plan.round, STEP_ROWS), Role.BANK, tensors)
            with pytest.raises(grpc.RpcError) as err:
                _step(stub, env)
            assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "match no grid row" in (err.value.details() or "") or \
                "'index'" in (err.value.details() or "")
    finally:
        channel.close()


@pytest.fixture(scope="module")
def tight(run: Path, bank_csv: Path) -> Iterator[tuple[str, str]]:
    """A second pair whose grid has small quotas."""
    flags = ("--max-rows-per-session", "4", "--max-requests-per-minute", "3",
             "--max-opens-per-minute", "2")
    with _serve_pair(run, bank_csv, "tight", *flags) as pair:
        yield pair


@pytest.mark.e2e
def test_the_grids_quotas_refuse_with_one_line_at_the_client(
    tight: tuple[str, str], client_certs: NodeCerts, run: Path
) -> None:
    known = sorted(_predictions(run))
    channel = _dial(tight[1], client_certs, Role.BANK)
    scoring = vfl_pb2_grpc.ScoringStub(channel)

    def refused(ids: list[str]) -> str:
        with pytest.raises(grpc.RpcError) as err:
            _score(scoring, ids)
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        return err.value.details() or ""

    try:
        line = refused(known[:5])  # request 1
        assert line.endswith("asks for 5 rows; a session may score at most 4 "
                             "(grid --max-rows-per-session 4)"), line
        assert {r.status for r in _score(scoring, known[:3]).results} == {"scored"}  # 2
        assert {r.status for r in _score(scoring, known[3:4]).results} == {"scored"}  # 3
        # The session has scored its 4 rows: the bank opens a new one (open 2 of 2), and
        # the request is the 4th of the minute.
        assert refused(known[4:5]) == ("the grid refused: more than 3 requests in the last "
                                       "minute (grid --max-requests-per-minute 3); try again "
                                       "later")
        assert "\n" not in line
    finally:
        channel.close()
    grid = _dial(tight[0], NodeCerts.in_dir(run / "certs", Role.BANK), Role.GRID)
    try:
        with pytest.raises(grpc.RpcError) as err:  # a flood of opens: the 3rd of the minute
            _open(vfl_pb2_grpc.ServePeerStub(grid), BankServing([], np.zeros(0), Scorecard()))
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.value.details() == ("the grid refused: more than 2 session opens by bank in "
                                       "the last minute (grid --max-opens-per-minute 2); try "
                                       "again later")
    finally:
        grid.close()


# -- the protocol state in one process (no network) ------------------------------------------


def _roundtrip(env: Envelope) -> Envelope:
    return wire.envelope_from_bytes(wire.envelope_to_bytes(env))


def _pair() -> tuple[GridServing, BankServing]:
    grid = GridServing([f"e{i}" for i in range(40)], np.linspace(-2, 2, 40))
    bank = BankServing([f"e{i}" for i in range(20, 60)], np.full(40, 0.5), Scorecard())
    bank.accept_points(_roundtrip(grid.open(_roundtrip(bank.open_request()))))
    return grid, bank


def test_serving_protocol_combines_both_partial_logits_exactly() -> None:
    grid, bank = _pair()
    plan, blinded = bank.blinded_request(["e25", "e45", "e99", "e25"])
    assert blinded is not None and len(blinded.tensors["points"]) == 2
    rows = bank.rows_request(plan, _roundtrip(grid.step(_roundtrip(blinded))))
    assert rows is not None and rows.tag.step == STEP_ROWS
    results = bank.results(plan, _roundtrip(grid.step(_roundtrip(rows))))
    u_grid = np.linspace(-2, 2, 40)[25]
    assert results[0].probability == pytest.approx(1 / (1 + np.exp(-(0.5 + u_grid))), abs=1e-15)
    assert [r.status for r in results] == ["scored", NO_GRID_RECORD, "error", "scored"]


def test_grid_refuses_replays_and_rows_beyond_the_request() -> None:
    grid, bank = _pair()
    plan, blinded = bank.blinded_request(["e21"])
    assert blinded is not None
    double = grid.step(blinded)
    with pytest.raises(ProtocolAbort, match="already used"):
        grid.step(blinded)
    rows = bank.rows_request(plan, double)
    assert rows is not None
    keys = rows.tensors["keys"]
    greedy = Envelope(plan.session, Tag(plan.round, STEP_ROWS), Role.BANK,
                      {"index": np.arange(5, dtype=np.int64), "keys": np.repeat(keys, 5, 0)})
    with pytest.raises(ProtocolAbort, match="carried 1 points"):
        grid.step(greedy)
    with pytest.raises(ProtocolAbort, match="no such open request"):
        grid.step(rows)  # the request is closed after one rows message, even a refused one
    stranger = Envelope("ab" * 16, Tag(1, STEP_ROWS), Role.BANK,
                        {"index": np.zeros(0, np.int64), "keys": np.zeros((0, 32), np.uint8)})
    with pytest.raises(UnknownSession):
        grid.step(stranger)
