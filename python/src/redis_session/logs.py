"""Structured log records of a store's events through the standard
`logging` module (no extra dependency).

::

    import logging
    from redis_session.logs import SessionLogging

    store = SessionStore.from_url(url, tenant="acme", hooks=[SessionLogging("acme")])

Records go to the logger ``redis_session`` (``logger=`` to change it) with
a short fixed message and the facts as ``extra=`` fields, so a JSON
formatter (python-json-logger, structlog's stdlib bridge, ...) emits them as
fields: ``session_event``, ``session_tenant`` and, by event,
``session_op``, ``session_outcome``, ``session_ms``, ``session_attempt``,
``session_state``, ``session_count``.

Levels: a call that succeeded is DEBUG; an answer such as ``Revoked``,
``Conflict`` or ``SessionExists`` is INFO (the application handles it); a
failure to answer (``StoreUnavailable``, anything unexpected) is WARNING; the
breaker opening and the near-cache going off are WARNING, coming back INFO.

What never appears in a record, at any level: a sid, a key, a cookie value,
a subject, data or meta values, exception messages. The hooks this module
implements are never given any of them (the package's tests check every
record of a workload for the sids, cookies and values it used).
"""

from __future__ import annotations

import logging

from .metrics import BaseHooks

__all__ = ["SessionLogging"]

#: outcomes that are the store's answer, not a failure
ANSWERS = frozenset({"Revoked", "Conflict", "SessionExists", "TooBig", "LimitExceeded", "InvalidSession", "CodecError"})


class SessionLogging(BaseHooks):
    def __init__(self, tenant: str, *, logger: logging.Logger | str = "redis_session") -> None:
        self.tenant = tenant
        self.log = logging.getLogger(logger) if isinstance(logger, str) else logger

    def _emit(self, level: int, msg: str, **fields: object) -> None:
        if self.log.isEnabledFor(level):
            extra = {"session_tenant": self.tenant, **{f"session_{k}": v for k, v in fields.items()}}
            self.log.log(level, msg, extra=extra)

    def on_call(self, op: str, seconds: float, outcome: str) -> None:
        if outcome == "ok":
            level = logging.DEBUG
        elif outcome in ANSWERS:
            level = logging.INFO
        else:
            level = logging.WARNING
        self._emit(level, "session store call", event="call", op=op, outcome=outcome, ms=round(seconds * 1000, 3))

    def on_cache(self, event: str, n: int = 1) -> None:
        level = logging.INFO if event in ("flush", "renewal_failed") else logging.DEBUG
        self._emit(level, "session near-cache event", event=f"cache_{event}", count=n)

    def on_breaker(self, state: str) -> None:
        level = logging.WARNING if state == "open" else logging.INFO
        self._emit(level, "session store circuit breaker", event="breaker", state=state)

    def on_retry(self, op: str, attempt: int) -> None:
        self._emit(logging.INFO, "session store retry", event="retry", op=op, attempt=attempt)

    def on_tracking(self, up: bool) -> None:
        level = logging.INFO if up else logging.WARNING
        self._emit(level, "session near-cache invalidation link", event="tracking", state="up" if up else "down")
