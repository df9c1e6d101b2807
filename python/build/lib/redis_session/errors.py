"""The package's exceptions: one root, the same classes for sync and asyncio.

Nothing else escapes a store method: redis-py's own errors are mapped here
(connection trouble to `StoreUnavailable`, unexpected server replies to
`ServerError`) and chained as ``__cause__`` for debugging.
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "Conflict",
    "InvalidSession",
    "LimitExceeded",
    "PermissionDenied",
    "Revoked",
    "Sealed",
    "ServerError",
    "SessionError",
    "SessionExists",
    "StoreUnavailable",
    "TooBig",
]


class SessionError(Exception):
    """Root of every exception a store raises."""


class Revoked(SessionError):
    """The session was revoked; ``reason`` is the text given to ``revoke``."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"session revoked: {reason}")
        self.reason = reason


class Conflict(SessionError):
    """A versioned write (``if_version``, ``cas``) found another version.

    ``current`` is the session's version on the server at that moment.
    """

    def __init__(self, current: int) -> None:
        super().__init__(f"version conflict: the session is at version {current}")
        self.current = current


class SessionExists(SessionError):
    """``create`` with a sid that is (or was: revoked tombstones count) in use."""


class TooBig(SessionError):
    """A write exceeds a size limit (data bytes, fields, meta entries, subject...)."""


class LimitExceeded(SessionError):
    """The tenant caps sessions per subject (``ONLIMIT reject``) and the cap is reached."""


class InvalidSession(SessionError, ValueError):
    """A malformed sid or tenant (refused before anything is sent, or by the server)."""


class CodecError(SessionError, ValueError):
    """A value cannot be encoded, or a stored payload does not decode or validate."""


class PermissionDenied(SessionError):
    """The server's ACL refuses this tenant or key (``NOPERM``)."""


class Sealed(SessionError):
    """The server holds the session sealed and cannot open it (``SEALED``)."""


class StoreUnavailable(SessionError):
    """Redis cannot be reached in time: connection refused or lost, timeout,
    cluster down, or the circuit breaker is open.

    For a write this means the outcome is unknown unless the write was
    retried safely (see the README's failure policy).
    """


class ServerError(SessionError):
    """Any other error reply (``WRONGTYPE``, ``OOM``, unknown command, ...)."""
