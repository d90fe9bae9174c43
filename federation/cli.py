"""The ``gridcredit`` command: one entry point, one subcommand per job.

``main(argv)`` parses, runs and maps our exceptions to one ``error: ...`` line and a
non-zero exit code. Nothing parses argv at import.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from federation.lifeline import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    PARENT_ENV,
    Terminated,
    stopping,
    terminate_as_interrupt,
)
from federation.protocol.errors import VflError
from federation.protocol.files import mask_shared_writes

LOG_LIBRARIES = "GRIDCREDIT_LOG_LIBRARIES"
EXIT_BROKEN_PIPE = 141  # what a shell reports for a program stopped by SIGPIPE
OWN_PACKAGES = ("federation", "parties", "crypto", "bench", "examples", "__main__")


class _Parser(argparse.ArgumentParser):
    """A bad flag is one ``error:`` line naming the command, not a page of usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gridcredit",
        description="Vertical federated credit-risk logistic regression between a power-grid "
        "company and a bank: PSI alignment, secret-shared training, joint scoring.",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity of gridcredit's own loggers on stderr (default: WARNING); "
        "simulate and score pass it to their nodes, whose logs are <out>/<node>/node.log "
        "(default there: INFO; DEBUG adds each party's stage timings)",
    )
    parser.add_argument(
        "--log-libraries",
        action="store_true",
        help="apply --log-level to third-party libraries too (matplotlib, PIL, urllib3, py4j, "
        "...), here and in the nodes simulate and score start; without it they log warnings "
        "and errors only",
    )
    sub: Any = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from federation.audit_cli import add_commands as add_audit_commands
    from federation.cli_jobs import add_commands as add_job_commands
    from federation.monitor_cli import add_commands as add_monitor_commands
    from federation.run_folder import run_in
    from federation.screen_cli import add_commands as add_screen_commands
    from federation.serve_cli import add_commands as add_serve_commands
    from parties.labels.cli import add_commands as add_label_commands

    add_job_commands(sub)
    add_label_commands(sub, out_guard=run_in)  # synth --out: a run folder like simulate's
    add_audit_commands(sub)
    add_serve_commands(sub)
    add_screen_commands(sub)
    add_monitor_commands(sub)
    return parser


def configure_logging(level: str, *, libraries: bool = False) -> None:
    """Log to stderr: our packages at ``level``; third-party libraries at WARNING unless
    ``libraries`` (matplotlib alone logs ~200 font lines at DEBUG)."""
    quiet = max(logging.getLevelNamesMapping()[level], logging.WARNING)
    logging.basicConfig(
        level=level if libraries else quiet,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for package in OWN_PACKAGES:  # a record propagates to the root handler whatever its level
        logging.getLogger(package).setLevel(level)


def main(argv: list[str] | None = None) -> int:
    # Before gRPC is imported: its C core otherwise logs e.g. "Handshake failed" lines ahead
    # of our one error line. A user's own setting stands (and reaches the nodes we start).
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    parser = build_parser()
    args = parser.parse_args(argv)
    set_here = args.log_libraries and LOG_LIBRARIES not in os.environ
    if set_here:  # the nodes simulate and score start inherit it
        os.environ[LOG_LIBRARIES] = "1"
    configure_logging(args.log_level or "WARNING",
                      libraries=os.environ.get(LOG_LIBRARIES) == "1")
    handler: Callable[[argparse.Namespace], int] = args.handler
    umask = mask_shared_writes()  # plots 0644, folders 0755 even under umask 000
    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    if in_main:
        terminate_as_interrupt()  # SIGTERM unwinds like Ctrl-C: children stopped, no half files
    try:
        return handler(args)
    except VflError as exc:
        from federation.nodes import exit_code_for

        print(f"error: {exc}", file=sys.stderr, flush=True)
        return int(exit_code_for(exc))
    except ValueError as exc:  # input errors of the label library subclass ValueError
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except BrokenPipeError:  # 'gridcredit audit summary ... | head': the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        if PARENT_ENV in os.environ:  # a node whose simulate stopped reading: say so in its log
            print("error: standard output closed: the parent process stopped reading it",
                  file=sys.stderr, flush=True)
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a file or folder the checks above did not foresee
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr, flush=True)
        return 2
    except Terminated as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        os.umask(umask)
        if set_here:
            del os.environ[LOG_LIBRARIES]
        if not stopping():  # after a stop signal, a late one must not interrupt the exit
            for signum, handler_before in previous.items():
                if handler_before is not None:
                    signal.signal(signum, handler_before)


if __name__ == "__main__":
    sys.exit(main())
