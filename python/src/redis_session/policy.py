"""Failure policy: retries with backoff and jitter, and the circuit breaker.

Pure state machines (a clock is injected); the drivers only sleep.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CircuitBreaker", "OnUnavailable", "RetryPolicy"]


class OnUnavailable(enum.Enum):
    """What a store does while Redis cannot be reached (breaker open, errors)."""

    #: raise `StoreUnavailable` for everything (the app answers 503)
    FAIL_CLOSED = "fail-closed"
    #: reads are answered from the near-cache's last known value (marked
    #: ``cached=True``) when it has one; writes and misses raise `StoreUnavailable`
    SERVE_CACHED = "serve-cached"


@dataclass(frozen=True)
class RetryPolicy:
    """Resend a retry-safe request after a connection error or timeout.

    ``attempts`` counts the first try. The pause before resend n is uniform
    in [0, min(cap, base * 2**(n-1))] ("full jitter").
    """

    attempts: int = 3
    base: float = 0.02
    cap: float = 0.25

    def delay(self, attempt: int, rnd: Callable[[], float] = random.random) -> float:
        bound: float = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return bound * rnd()


class CircuitBreaker:
    """closed -> (``threshold`` consecutive failures) -> open -> (``cooldown`` s)
    -> half_open: one probe request goes through; its success closes the
    breaker, its failure opens it again. Thread-safe."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        if threshold < 1 or cooldown < 0:
            raise ValueError("threshold >= 1, cooldown >= 0")
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = self.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_at = 0.0

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def _set(self, state: str) -> None:
        if state != self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        """May a request be sent now?"""
        if self._state is self.CLOSED:  # the common case, without the lock
            return True
        with self._lock:
            if self._state == self.CLOSED:
                return True
            now = self._clock()
            if self._state == self.OPEN:
                if now - self._opened_at < self.cooldown:
                    return False
                self._set(self.HALF_OPEN)
                self._probe_at = now
                return True
            # half open: one probe at a time; a probe lost for a cooldown lets another through
            if now - self._probe_at >= self.cooldown:
                self._probe_at = now
                return True
            return False

    def success(self) -> None:
        if self._failures == 0 and self._state is self.CLOSED:
            return
        with self._lock:
            self._failures = 0
            self._set(self.CLOSED)

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == self.HALF_OPEN or self._failures >= self.threshold:
                self._opened_at = self._clock()
                self._set(self.OPEN)
