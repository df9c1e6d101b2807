"""The near-cache: recently read sessions in process memory, bounded by
entries and bytes (LRU), emptied by the server's invalidation messages.

This module is the data structure and its race guard; `tracking` feeds it
invalidations from Redis. Thread-safe (one lock, short critical sections),
so one cache serves a sync store's threads and an asyncio store alike.

The read-versus-invalidation race: a network read that started before an
invalidation of its key may return the old value after the invalidation was
processed. Each read takes a token (`begin`) *before* it is sent: the global
epoch (bumped by flushes and by the tracking link going down or up) and the
key's generation (bumped by every invalidation of that key while reads of it
are in flight). `fill` stores the value only if neither moved.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .types import Session


@dataclass(slots=True)
class _Entry:
    session: Session[Any]
    size: int
    filled_at: float
    #: monotonic time after which the entry is not served: the estimated
    #: server idle deadline (moved by our renewals), the absolute deadline, max_age
    expires: float
    idle: float
    absolute: float
    renewed_at: float


Token = tuple[int, int]

_MISS: tuple[None, bool] = (None, False)


def _no_event(event: str, n: int) -> None:
    pass


class NearCache:
    """Bounded LRU of sessions, keyed by session key (bytes).

    ``max_age`` (s) caps how long an entry is served without a network read;
    ``touch_resolution`` (s) is the least time between two background
    renewals of one session (use the module's ``touch-resolution``).
    ``keep_on_loss``: when the tracking link drops, keep entries for the
    serve-cached failure policy (never served as fresh until a network read
    refills them) instead of dropping them.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_age: float = 300.0,
        touch_resolution: float = 1.0,
        stale_max_age: float = 60.0,
        keep_on_loss: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        on_event: Callable[[str, int], None] | None = None,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.touch_resolution = touch_resolution
        self.stale_max_age = stale_max_age
        self.keep_on_loss = keep_on_loss
        self._clock = clock
        self._wall_ms = wall_ms
        self._event: Callable[[str, int], None] = on_event or _no_event
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._stale: dict[bytes, _Entry] = {}
        self._bytes = 0
        self._enabled = False
        self._epoch = 0
        self._inflight: dict[bytes, list[int]] = {}
        self.hits = 0
        self.misses = 0
        self.renewals = 0
        self.stale_hits = 0

    def has_listener(self) -> bool:
        return self._event is not _no_event

    def listen(self, on_event: Callable[[str, int], None]) -> None:
        """Where events (invalidation, flush, eviction, ...) go: the store's hooks."""
        self._event = on_event

    # -- state -----------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._enabled

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def set_enabled(self, on: bool) -> None:
        """The tracking link is up (on) or lost (off). Both empty the cache:
        invalidations may have been missed while it was down."""
        with self._lock:
            self._epoch += 1
            if not on and self.keep_on_loss:
                self._stale.update(self._entries)
            elif on:
                self._stale.clear()
            self._clear()
            self._enabled = on

    def flush(self) -> None:
        """Drop everything (a flush-all invalidation, a topology change)."""
        with self._lock:
            self._epoch += 1
            self._stale.clear()
            n = len(self._entries)
            self._clear()
        if n:
            self._event("flush", n)

    def _clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        for v in self._inflight.values():
            v[1] += 1

    # -- invalidation ------------------------------------------------------------
    def invalidate(self, key: bytes) -> None:
        """The server says ``key`` changed (counted as an "invalidation")."""
        self.drop(key)
        self._event("invalidation", 1)

    def drop(self, key: bytes) -> None:
        """Forget ``key`` (a write through the store, a miss, a revoke)."""
        with self._lock:
            e = self._entries.pop(key, None)
            if e is not None:
                self._bytes -= e.size
            self._stale.pop(key, None)
            f = self._inflight.get(key)
            if f is not None:
                f[1] += 1

    # -- reads ---------------------------------------------------------------------
    def lookup(self, key: bytes) -> Session[Any] | None:
        """A fresh entry, or None (counted as a hit or a miss)."""
        return self.hit(key, False)[0]

    def hit(self, key: bytes, touch: bool) -> tuple[Session[Any] | None, bool]:
        """(the fresh entry or None, whether to send a renewal now). A
        renewal is due at most once per ``touch_resolution`` per session;
        when it is, the entry's deadline estimate moves as the server's will."""
        with self._lock:
            entries = self._entries
            e = entries.get(key)
            if e is None:
                self.misses += 1
                return _MISS
            now = self._clock()
            if now >= e.expires:
                del entries[key]
                self._bytes -= e.size
                self.misses += 1
                return _MISS
            entries.move_to_end(key)
            self.hits += 1
            if not touch or now - e.renewed_at < self.touch_resolution:
                return e.session, False
            e.renewed_at = now
            e.expires = min(now + e.idle, e.absolute, e.filled_at + self.max_age)
            self.renewals += 1
            return e.session, True

    def renewal_due(self, key: bytes) -> bool:
        """Whether a touch of a cached session should send a renewal now (see `hit`)."""
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                return False
            now = self._clock()
            if now - e.renewed_at < self.touch_resolution:
                return False
            e.renewed_at = now
            e.expires = min(now + e.idle, e.absolute, e.filled_at + self.max_age)
            self.renewals += 1
            return True

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "renewals": self.renewals,
                "entries": len(self._entries),
                "bytes": self._bytes,
                "enabled": int(self._enabled),
            }

    def stale(self, key: bytes) -> Session[Any] | None:
        """The last known value, for the serve-cached policy while Redis is down."""
        with self._lock:
            e = self._entries.get(key) or self._stale.get(key)
            if e is None or self._clock() - e.filled_at > self.stale_max_age:
                return None
            if self._wall_ms() >= e.session.grace_until:
                return None
            self.stale_hits += 1
            return e.session

    def begin(self, key: bytes) -> Token:
        """Before a network read of ``key``: the token `fill` checks."""
        with self._lock:
            f = self._inflight.get(key)
            if f is None:
                f = self._inflight[key] = [0, 0]
            f[0] += 1
            return (self._epoch, f[1])

    def end(self, key: bytes) -> None:
        """After the read (success or not)."""
        with self._lock:
            f = self._inflight.get(key)
            if f is not None:
                f[0] -= 1
                if f[0] <= 0:
                    del self._inflight[key]

    def fill(self, key: bytes, token: Token, session: Session[Any], size: int) -> bool:
        """Store a value read from the network, if no invalidation of its key
        (or flush) happened since `begin` and the link is up."""
        if size > self.max_bytes:
            return False
        evicted = 0
        with self._lock:
            f = self._inflight.get(key)
            if not self._enabled or token[0] != self._epoch or f is None or f[1] != token[1]:
                return False
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            now = self._clock()
            # server times (ms since the epoch) as our monotonic clock
            offset = now - self._wall_ms() / 1000.0
            idle = max(0, session.idle_deadline - session.last_access) / 1000.0
            absolute = math.inf if session.absolute_deadline < 0 else session.absolute_deadline / 1000.0 + offset
            expires = min(now + self.max_age, session.idle_deadline / 1000.0 + offset, absolute)
            self._entries[key] = _Entry(session, size, now, expires, idle, absolute, now)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, e = self._entries.popitem(last=False)
                self._bytes -= e.size
                evicted += 1
        if evicted:
            self._event("eviction", evicted)
        return True
