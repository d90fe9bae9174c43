"""A throwaway PostgreSQL server for the tests: a real server in a temporary folder.

``python -m tests.pgserver start DIR`` initialises a cluster in ``DIR`` (created if missing),
starts it on 127.0.0.1 at a port chosen at run time and prints its DSN;
``python -m tests.pgserver stop DIR`` stops it and removes ``DIR``. ``.ci/run`` uses both;
the ``pg_dsn`` fixture of ``tests/conftest.py`` uses :func:`start` when ``GRIDCREDIT_TEST_PG``
is not set.

What it assumes: Debian's ``postgresql`` package (binaries under
``/usr/lib/postgresql/<version>/bin``) or ``initdb`` / ``pg_ctl`` on PATH. The server refuses
to run as root, so as root it runs as the ``postgres`` user the package creates. Trust
authentication on loopback only: a test fixture, never a deployment.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass


class PgUnavailable(RuntimeError):
    """No PostgreSQL binaries, or the server did not start."""


def pg_bin() -> pathlib.Path:
    """The folder of ``initdb`` and ``pg_ctl`` (highest installed version first)."""
    found = shutil.which("pg_ctl")
    if found:
        return pathlib.Path(found).parent
    versions = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    if not versions:
        raise PgUnavailable("PostgreSQL is not installed (apt-get install -y postgresql)")
    return versions[-1].parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser") is None:
        raise PgUnavailable("running as root without runuser: cannot start PostgreSQL")
    return ["runuser", "-u", "postgres", "--", *argv]


def _run(argv: list[str], timeout: float = 120.0) -> None:
    result = subprocess.run(_as_server_user(argv), capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        raise PgUnavailable(f"{pathlib.Path(argv[0]).name} failed: "
                            f"{(result.stderr or result.stdout).strip()[-800:]}")


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: its DSN and its folder."""

    dsn: str
    directory: pathlib.Path

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        stop(self.directory)


def start(directory: pathlib.Path) -> Server:
    """Initialise and start a cluster in ``directory``; return its DSN.

    Raises
    ------
    PgUnavailable
        No binaries, or ``initdb`` / ``pg_ctl start`` failed.
    """
    binaries = pg_bin()
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    _run([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
          "-E", "UTF8", "--locale=C", "--no-sync"])
    port = _free_port()
    options = (f"-k {directory} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off")
    _run([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l",
          str(directory / "server.log"), "-w", "-t", "60", "start"])
    (directory / "port").write_text(str(port), encoding="utf-8")
    return Server(f"postgresql://postgres@127.0.0.1:{port}/postgres", directory)


def stop(directory: pathlib.Path) -> None:
    """Stop the server started in ``directory`` and remove the folder."""
    data = directory / "data"
    if (data / "postmaster.pid").exists():
        _run([str(pg_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60",
              "stop"])
    shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str]) -> int:
    """``start DIR`` (prints the DSN) or ``stop DIR``."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.pgserver start|stop DIR", file=sys.stderr)
        return 2
    directory = pathlib.Path(argv[1])
    try:
        if argv[0] == "start":
            print(start(directory).dsn)
        else:
            stop(directory)
    except (PgUnavailable, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
