"""The project's exceptions. Messages give what was expected, what came, round and step."""

from __future__ import annotations


class VflError(Exception):
    """Base of every gridcredit error; its message is one readable line."""


class ConfigError(VflError):
    """A configuration value or command-line option is invalid."""


class InputDataError(VflError):
    """A data file is malformed: the message names file, row and column."""


class StageError(VflError):
    """A state machine was asked for a transition it does not allow."""


class ProtocolAbort(VflError):
    """The job cannot go on: a peer aborted, a message was unexpected, or a check failed."""


class PeerUnavailable(VflError):
    """A peer did not answer within its deadline (dead, unreachable or refused)."""


class TrainingDiverged(VflError):
    """Training left the range it can be trusted in: the loss rose or fixed point overflowed."""


# What another node is told of a failure: its kind, never its message. A message may name
# local paths, row and column numbers or a cell's value (README, "What each party learns").
_KINDS: tuple[tuple[type[VflError], str], ...] = (
    (InputDataError, "input data invalid"),
    (ConfigError, "configuration invalid"),
    (TrainingDiverged, "training diverged (try a smaller learning rate)"),
    (PeerUnavailable, "a peer or the coordinator did not answer"),
    (StageError, "protocol step out of order"),
    (ProtocolAbort, "protocol check failed"),
)


def failure_notice(who: str, exc: VflError) -> str:
    """The kind of ``exc`` for the coordinator and the peer, pointing ``who``'s operator to
    the details, which stay in ``who``'s console and node.log."""
    kind = next((text for cls, text in _KINDS if isinstance(exc, cls)), "failed")
    if isinstance(exc, PeerUnavailable):  # which node went silent is no secret
        text = str(exc)
        named = sorted((text.find(r), r) for r in ("grid", "bank", "coordinator")
                       if r != who and r in text)
        kind = f"{named[0][1]} did not answer" if named else kind
    return f"{kind} (details in the {who}'s console and node.log)"
