"""OpenTelemetry spans for store calls (optional extra:
``pip install 'redis-session[otel]'``, which pulls ``opentelemetry-api``;
the application brings the SDK and its exporter).

::

    from redis_session.tracing import SessionTracing

    tracing = SessionTracing()                     # global tracer provider
    store = tracing.instrument(SessionStore.from_url(url, tenant="acme"))

``instrument`` returns the store wrapped: the same methods (sync or async),
each call one CLIENT span named ``session.<op>`` with these attributes:

- ``db.system`` = ``redis``; ``db.operation.name``: the module command
  (``SESSION.GET``, ...; the operation's name on another backend);
- ``redis_session.op``, ``redis_session.backend``, ``redis_session.tenant``;
  the backend is the one that ran the call (``module``, ``lua``, or
  ``module+lua`` while migrating): a store's automatic choice resolves
  during its first call, and the span is given the result when it ends
  (``auto`` remains only if that first call failed before the choice);
- ``redis_session.outcome``: ``ok`` or the exception's class name (also
  ``error.type``; the span's status is ERROR only for failures of the store,
  not for answers such as ``Revoked`` or ``Conflict``);
- ``redis_session.cache_hit`` (``get`` only): served by the near-cache
  (the returned `Session`'s ``cached``);
- ``redis_session.sid_hash``: a keyed hash of the sid (HMAC-SHA-256 under a
  per-process random key unless ``sid_key`` is given, 16 hex characters),
  so spans of one session can be matched while the sid, which is a bearer
  credential, never leaves the process. Give every process the same
  ``sid_key`` to match them across processes.

Never recorded: the sid, keys, subjects, data, meta, exception messages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .logs import ANSWERS

__all__ = ["AsyncTracedStore", "SessionTracing", "TracedStore"]

COMMANDS = {
    "create": "SESSION.CREATE",
    "get": "SESSION.GET",
    "set": "SESSION.SET",
    "cas": "SESSION.CAS",
    "renew": "SESSION.RENEW",
    "ttl": "SESSION.TTL",
    "revoke": "SESSION.REVOKE",
    "list": "SESSION.LIST",
    "revoke_all": "SESSION.REVOKEALL",
    "count": "SESSION.COUNT",
    "configure_tenant": "SESSION.TENANT SET",
    "tenant_settings": "SESSION.TENANT GET",
    "reset_tenant": "SESSION.TENANT DEL",
}
#: store methods whose first argument is a sid
SID_OPS = {"get", "set", "cas", "renew", "ttl", "revoke"}


class SessionTracing:
    def __init__(self, tracer_provider: Any = None, *, sid_key: bytes | None = None) -> None:
        from . import __version__

        self._tracer = trace.get_tracer("redis_session", __version__, tracer_provider=tracer_provider)
        self._key = sid_key if sid_key is not None else secrets.token_bytes(32)

    def sid_hash(self, sid: str) -> str:
        """The keyed hash spans carry instead of ``sid``."""
        return hmac.new(self._key, sid.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:16]

    def instrument(self, store: Any) -> Any:
        """``store`` wrapped (`TracedStore` or `AsyncTracedStore`)."""
        if hasattr(store, "aclose"):
            return AsyncTracedStore(store, self)
        return TracedStore(store, self)

    # -- one span ---------------------------------------------------------------------
    @staticmethod
    def _backend_attrs(store: Any, op: str) -> dict[str, str]:
        backend = str(getattr(store.backend, "name", "unknown"))
        return {
            "db.operation.name": COMMANDS.get(op, op) if backend == "module" else op,
            "redis_session.backend": backend,
        }

    def _start(self, store: Any, op: str, args: tuple[Any, ...]) -> Any:
        attrs: dict[str, Any] = {
            "db.system": "redis",
            **self._backend_attrs(store, op),
            "redis_session.op": op,
            "redis_session.tenant": str(store.tenant),
        }
        if op in SID_OPS and args and isinstance(args[0], str):
            attrs["redis_session.sid_hash"] = self.sid_hash(args[0])
        return self._tracer.start_span(f"session.{op}", kind=SpanKind.CLIENT, attributes=attrs)

    def _end(self, span: Any, store: Any, op: str, result: Any, exc: BaseException | None) -> None:
        try:
            # the automatic choice resolves during a store's first call
            # ("auto" until then): the span names the backend that ran it
            span.set_attributes(self._backend_attrs(store, op))
            if op == "get":
                span.set_attribute("redis_session.cache_hit", bool(getattr(result, "cached", False)))
            if exc is None:
                span.set_attribute("redis_session.outcome", "ok")
            else:
                kind = type(exc).__name__
                span.set_attribute("redis_session.outcome", kind)
                span.set_attribute("error.type", kind)
                if kind not in ANSWERS:
                    span.set_status(Status(StatusCode.ERROR, kind))
        finally:
            span.end()


class TracedStore:
    """A `SessionStore` whose calls are spans; everything else passes through."""

    def __init__(self, store: Any, tracing: SessionTracing) -> None:
        self._store = store
        self._tracing = tracing
        for op in COMMANDS:
            setattr(self, op, self._wrap(op))

    def _wrap(self, op: str) -> Callable[..., Any]:
        fn = getattr(self._store, op)
        store, t = self._store, self._tracing

        def call(*args: Any, **kwargs: Any) -> Any:
            span = t._start(store, op, args)
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                t._end(span, store, op, None, e)
                raise
            t._end(span, store, op, result, None)
            return result

        call.__name__ = op
        call.__doc__ = fn.__doc__
        return call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def __enter__(self) -> TracedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self._store.close()


class AsyncTracedStore:
    """An `AsyncSessionStore` whose calls are spans."""

    def __init__(self, store: Any, tracing: SessionTracing) -> None:
        self._store = store
        self._tracing = tracing
        for op in COMMANDS:
            setattr(self, op, self._wrap(op))

    def _wrap(self, op: str) -> Callable[..., Any]:
        fn = getattr(self._store, op)
        store, t = self._store, self._tracing

        async def call(*args: Any, **kwargs: Any) -> Any:
            span = t._start(store, op, args)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as e:
                t._end(span, store, op, None, e)
                raise
            t._end(span, store, op, result, None)
            return result

        call.__name__ = op
        call.__doc__ = fn.__doc__
        return call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def __aenter__(self) -> AsyncTracedStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._store.aclose()
