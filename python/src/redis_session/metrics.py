"""Instrumentation hooks: a plain API an exporter (Prometheus, OpenTelemetry,
logs) can subscribe to, and a built-in in-memory `Metrics` every store keeps.

Hooks receive operation names, durations, outcome classes and counts only:
never a sid, a key or data. When something must identify a session in a log,
use `sid_hash` (8 hex characters of a SHA-256).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Hooks", "Metrics", "OpStats", "sid_hash"]


def sid_hash(sid: str) -> str:
    """A short, stable, non-reversible tag of a sid for logs."""
    return hashlib.sha256(sid.encode()).hexdigest()[:8]


class Hooks(Protocol):
    """Implement any subset by subclassing `BaseHooks`; every method must be
    fast and must not raise (exceptions are swallowed and counted)."""

    def on_call(self, op: str, seconds: float, outcome: str) -> None:
        """One store call ended. ``op``: "get", "set", ...; ``outcome``: "ok"
        or the exception's class name ("Revoked", "StoreUnavailable", ...)."""

    def on_cache(self, event: str, n: int = 1) -> None:
        """Near-cache events: "invalidation", "flush", "eviction",
        "stale_hit", "renewal_dropped", "renewal_failed". Hits, misses and
        renewals are counters of the cache itself (`Metrics.snapshot()`),
        so that a hit costs no call."""

    def on_breaker(self, state: str) -> None:
        """The circuit breaker changed state: "closed", "open", "half_open"."""

    def on_retry(self, op: str, attempt: int) -> None:
        """A request is resent after a connection error (attempt 1, 2, ...)."""

    def on_tracking(self, up: bool) -> None:
        """The near-cache's invalidation link went up (cache on) or down (cache off)."""


class BaseHooks:
    """No-op implementation of `Hooks` to subclass."""

    def on_call(self, op: str, seconds: float, outcome: str) -> None:
        pass

    def on_cache(self, event: str, n: int = 1) -> None:
        pass

    def on_breaker(self, state: str) -> None:
        pass

    def on_retry(self, op: str, attempt: int) -> None:
        pass

    def on_tracking(self, up: bool) -> None:
        pass


@dataclass
class OpStats:
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds_total: float = 0.0
    seconds_max: float = 0.0


class Metrics(BaseHooks):
    """Counters and timings kept in memory; ``snapshot()`` returns plain dicts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: dict[str, OpStats] = {}
        self.cache: dict[str, int] = {}
        self.retries: dict[str, int] = {}
        self.breaker_state = "closed"
        self.breaker_transitions: dict[str, int] = {}
        self.tracking_up = False
        self.hook_errors = 0
        #: the near-cache's own counters (hits, misses, renewals, entries,
        #: bytes), read on snapshot: a hit costs no hook call
        self.cache_counters: Callable[[], dict[str, int]] | None = None

    def on_call(self, op: str, seconds: float, outcome: str) -> None:
        with self._lock:
            s = self.ops.get(op)
            if s is None:
                s = self.ops[op] = OpStats()
            s.calls += 1
            s.seconds_total += seconds
            if seconds > s.seconds_max:
                s.seconds_max = seconds
            if outcome != "ok":
                s.errors[outcome] = s.errors.get(outcome, 0) + 1

    def on_cache(self, event: str, n: int = 1) -> None:
        with self._lock:
            self.cache[event] = self.cache.get(event, 0) + n

    def on_breaker(self, state: str) -> None:
        with self._lock:
            self.breaker_state = state
            self.breaker_transitions[state] = self.breaker_transitions.get(state, 0) + 1

    def on_retry(self, op: str, attempt: int) -> None:
        with self._lock:
            self.retries[op] = self.retries.get(op, 0) + 1

    def on_tracking(self, up: bool) -> None:
        with self._lock:
            self.tracking_up = up

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "ops": {
                    k: {
                        "calls": v.calls,
                        "errors": dict(v.errors),
                        "seconds_total": v.seconds_total,
                        "seconds_max": v.seconds_max,
                    }
                    for k, v in self.ops.items()
                },
                "cache": {**self.cache, **(self.cache_counters() if self.cache_counters else {})},
                "retries": dict(self.retries),
                "breaker": {"state": self.breaker_state, "transitions": dict(self.breaker_transitions)},
                "tracking_up": self.tracking_up,
                "hook_errors": self.hook_errors,
            }


class Fanout(BaseHooks):
    """Sends every event to the built-in `Metrics` and the user's hooks."""

    def __init__(self, metrics: Metrics, hooks: Sequence[Hooks]) -> None:
        self.metrics = metrics
        self.hooks = list(hooks)
        self._on_call = [metrics.on_call, *(h.on_call for h in self.hooks if hasattr(h, "on_call"))]
        if len(self._on_call) == 1:
            # nobody else listens: a call costs one bound-method call, no fan-out
            self.on_call = metrics.on_call  # type: ignore[method-assign]

    def _each(self, name: str, *args: object) -> None:
        getattr(self.metrics, name)(*args)
        for h in self.hooks:
            fn = getattr(h, name, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:
                self.metrics.hook_errors += 1

    def on_call(self, op: str, seconds: float, outcome: str) -> None:
        self._each("on_call", op, seconds, outcome)

    def on_cache(self, event: str, n: int = 1) -> None:
        self._each("on_cache", event, n)

    def on_breaker(self, state: str) -> None:
        self._each("on_breaker", state)

    def on_retry(self, op: str, attempt: int) -> None:
        self._each("on_retry", op, attempt)

    def on_tracking(self, up: bool) -> None:
        self._each("on_tracking", up)
