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
