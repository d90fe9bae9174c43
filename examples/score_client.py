"""Score enterprises through a running bank ``serve`` node, as the bank's own systems would.

Assumes: a trained run (``gridcredit simulate``), its grid and bank serve nodes up, and this
client holding a scoring client certificate from the federation's CA (``gridcredit certs
--client NAME``; the bank node accepts it for ``Score`` only, and no other node accepts it),
never the bank's own key. It uses only grpc and the generated ``federation.proto`` module.
Exact command lines, from the repository root (the bundled demo's IDs are 18-digit credit
codes; the last line scores the first three enterprises of the bank's file and one it does
not hold)::

    .venv/bin/gridcredit simulate --out runs/latest --quiet
    .venv/bin/gridcredit certs --out runs/latest/certs --client risk-desk
    .venv/bin/gridcredit serve --role grid --model runs/latest/grid/model.json \\
        --data runs/latest/data/grid_features.csv --tls-dir runs/latest/certs \\
        --listen 127.0.0.1:50061 &
    .venv/bin/gridcredit serve --role bank --model runs/latest/bank/model.json \\
        --data runs/latest/data/bank_features.csv --tls-dir runs/latest/certs \\
        --listen 127.0.0.1:50062 --peer 127.0.0.1:50061 &
    .venv/bin/python examples/score_client.py --bank 127.0.0.1:50062 \\
        --tls-dir runs/latest/certs --client risk-desk \\
        $(cut -d, -f1 runs/latest/data/bank_features.csv | sed -n 2,4p) NOT-A-CUSTOMER

It prints one line per ID: ``ID  scored  p=0.0123  points=612.40  band=[600, 620)``, or
``no grid record``, or ``error: not in the bank's data``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc

from federation.proto import vfl_pb2, vfl_pb2_grpc


def score(address: str, tls_dir: Path, ids: list[str], timeout: float = 10.0,
          client: str = "risk-desk") -> vfl_pb2.ScoreReply:
    """Call ``Scoring.Score`` on the bank node with a scoring client's certificate.

    Parameters
    ----------
    address : str
        HOST:PORT the bank node printed after ``LISTENING``.
    tls_dir : Path
        Folder with ``ca.pem`` and ``client-NAME.pem`` / ``client-NAME.key``.
    ids : list of str
        Enterprise IDs (at most the node's ``--max-ids``, default 10,000).
    timeout : float
        Deadline of the call in seconds.
    client : str
        NAME of the client certificate (``gridcredit certs --client NAME``).

    Returns
    -------
    vfl_pb2.ScoreReply
        One result per ID, in request order.
    """
    creds = grpc.ssl_channel_credentials(
        root_certificates=(tls_dir / "ca.pem").read_bytes(),
        private_key=(tls_dir / f"client-{client}.key").read_bytes(),
        certificate_chain=(tls_dir / f"client-{client}.pem").read_bytes(),
    )
    # The node's certificate names its role, "bank"; check that name, not the host's.
    options = [("grpc.ssl_target_name_override", "bank")]
    with grpc.secure_channel(address, creds, options=options) as channel:
        reply: vfl_pb2.ScoreReply = vfl_pb2_grpc.ScoringStub(channel).Score(
            vfl_pb2.ScoreRequest(ids=ids), timeout=timeout
        )
        return reply


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", required=True, help="HOST:PORT of the bank's serve node")
    ap.add_argument("--tls-dir", type=Path, required=True,
                    help="folder with ca.pem and the client's certificate")
    ap.add_argument("--client", default="risk-desk",
                    help="NAME of client-NAME.pem/.key (gridcredit certs --client NAME)")
    ap.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds")
    ap.add_argument("ids", nargs="+", help="enterprise IDs to score")
    args = ap.parse_args()
    try:
        reply = score(args.bank, args.tls_dir, args.ids, args.timeout, args.client)
    except OSError as exc:
        print(f"error: {exc.filename}: {exc.strerror} (gridcredit certs --out DIR --client "
              "NAME issues it)", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    for r in reply.results:
        if r.status == "scored":
            print(f"{r.id}  scored  p={r.probability:.4f}  points={r.points:.2f}  band={r.band}")
        elif r.status == "error":
            print(f"{r.id}  error: {r.error}")
        else:
            print(f"{r.id}  {r.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
