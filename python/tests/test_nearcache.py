"""The near-cache against a real server: hits cost no round trip,
invalidations from other clients arrive, renewals are sent at most once per
touch-resolution, a lost invalidation link turns the cache off."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from sessionlib import wait_for

from redis_session import AsyncSessionStore, NearCache, Revoked, SessionStore
from store_helpers import module_only, raw_set


def _calls(server: Any, *cmds: str) -> int:
    st = server.info("commandstats")
    return sum(int(st.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in cmds)


def gets(server: Any) -> int:
    # the module's command, or the fallback's scripts (nothing else runs meanwhile)
    return _calls(server, "session.get", "evalsha", "eval")


def renews(server: Any) -> int:
    return _calls(server, "session.renew", "evalsha", "eval")


def cached_store(server: Any, **kw: Any) -> SessionStore[Any]:
    store: SessionStore[Any] = SessionStore(redis.Redis(port=server.port), tenant="acme", near_cache=True, **kw)
    assert store._tracker.wait_up(10)
    return store


def warm(store: Any, sid: str, touch: bool = False) -> None:
    """Read until the near-cache holds the session: a fill is refused when an
    invalidation (of the create itself, say) arrives while the read is in flight."""
    wait_for(lambda: (g := store.get(sid, touch=touch)) is not None and g.cached, 5, what="the cache filled")


def invalidations(store: Any) -> int:
    return int(store.metrics.snapshot()["cache"].get("invalidation", 0))


def test_hits_cost_no_round_trip_and_writes_elsewhere_invalidate(server: Any) -> None:
    store = cached_store(server)
    other: SessionStore[Any] = SessionStore(redis.Redis(port=server.port), tenant="acme")
    try:
        s = store.create(subject="u", data={"v": 1})
        warm(store, s.sid)
        n = gets(server)
        for _ in range(50):
            hit = store.get(s.sid)
            assert hit is not None and hit.cached and hit.data == {"v": 1}
        assert gets(server) == n  # no round trip
        # a write from another client: once its invalidation has arrived,
        # the next read returns the new state
        inv = invalidations(store)
        other.set(s.sid, data={"v": 2})
        wait_for(lambda: invalidations(store) > inv, 5, what="invalidation")
        got = store.get(s.sid)
        assert got is not None and got.data == {"v": 2} and not got.cached
        warm(store, s.sid)
        # a revoke from another client: never served again after its invalidation
        inv = invalidations(store)
        other.revoke(s.sid, reason="stolen")
        wait_for(lambda: invalidations(store) > inv, 5, what="invalidation")
        for _ in range(3):
            with pytest.raises(Revoked):
                store.get(s.sid)
        # a DEL by hand, too
        t = store.create(data={"a": 1})
        warm(store, t.sid)
        inv = invalidations(store)
        redis.Redis(port=server.port).delete(b"sess:acme:" + t.sid.encode())
        wait_for(lambda: invalidations(store) > inv, 5, what="invalidation")
        assert store.get(t.sid) is None
        # fresh=True always reads the server
        u = store.create(data={"a": 1})
        warm(store, u.sid)
        n = gets(server)
        assert store.get(u.sid, fresh=True) is not None
        assert gets(server) == n + 1
        # other tenants are not tracked by this store's prefix
        assert not store.near_cache or all(k.startswith(b"sess:acme:") for k in store.near_cache._entries)
    finally:
        store.close()


def test_staleness_bound_under_concurrent_writes(server: Any) -> None:
    """Writer bumps a counter; after each write is acknowledged and its
    invalidation counted, the cached reader never sees an older value."""
    store = cached_store(server)
    writer: SessionStore[Any] = SessionStore(redis.Redis(port=server.port), tenant="acme")
    try:
        s = writer.create(data={"n": 0})
        for i in range(1, 30):
            warm(store, s.sid)
            inv = invalidations(store)
            writer.set(s.sid, data={"n": i})
            wait_for(lambda inv=inv: invalidations(store) > inv, 5, what="invalidation")
            got = store.get(s.sid)
            assert got is not None and got.data["n"] == i
    finally:
        store.close()


def test_touch_hits_renew_at_most_once_per_resolution(server: Any, backend_kind: str) -> None:
    module_only(backend_kind, "Renewals and client-side caching")
    cache = NearCache(touch_resolution=0.3)
    store: SessionStore[Any] = SessionStore(redis.Redis(port=server.port), tenant="acme", near_cache=cache)
    assert store._tracker.wait_up(10)
    try:
        s = store.create(data={"a": 1}, idle=60_000)
        warm(store, s.sid, touch=True)
        r0 = renews(server)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            hit = store.get(s.sid, touch=True)
            assert hit is not None and hit.cached
            time.sleep(0.005)
        wait_for(lambda: renews(server) >= r0 + 2, 5, what="background renewals")
        time.sleep(0.1)
        sent = renews(server) - r0
        # about one per 0.3 s over 1 s, never one per read
        assert 2 <= sent <= 5, sent
        # the renewals reached the server: its idle deadline slid
        t = store.ttl(s.sid)
        assert t is not None and t.idle_ms > 58_000
    finally:
        store.close()


def test_losing_the_invalidation_link_turns_the_cache_off(server: Any, backend_kind: str) -> None:
    store = cached_store(server, tracking_interval=0.1)
    admin = redis.Redis(port=server.port)
    try:
        s = store.create(data={"a": 1})
        warm(store, s.sid)
        assert store.near_cache is not None and len(store.near_cache) == 1
        gen = store._tracker.generation
        # kill the store's invalidation connection (the subscribed one)
        admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        wait_for(lambda: store._tracker.generation > gen, 10, what="tracking back")
        # it came back: the cache was emptied on the way (a write while it
        # was down could have been missed)
        assert len(store.near_cache) == 0
        raw_set(admin, b"sess:acme:" + s.sid.encode(), "a", b"\x02", backend_kind)
        got = store.get(s.sid)
        assert got is not None and got.data == {"a": 2}
        snap = store.metrics.snapshot()
        assert snap["tracking_up"] is True
    finally:
        store.close()


def test_async_store_near_cache(server: Any, backend_kind: str) -> None:
    async def main() -> None:
        c = aredis.Redis(port=server.port)
        store: AsyncSessionStore[Any] = AsyncSessionStore(c, tenant="acme", near_cache=True)
        assert await asyncio.to_thread(store._tracker.wait_up, 10)
        other = redis.Redis(port=server.port)
        s = await store.create(data={"v": 1})
        for _ in range(100):
            g = await store.get(s.sid, touch=True)
            if g is not None and g.cached:
                break
            await asyncio.sleep(0.01)
        n = gets(server)
        for _ in range(20):
            hit = await store.get(s.sid, touch=True)
            assert hit is not None and hit.cached
        assert gets(server) == n
        inv = invalidations(store)
        raw_set(other, b"sess:acme:" + s.sid.encode(), "v", b"\x05", backend_kind)
        deadline = time.monotonic() + 5
        while invalidations(store) == inv and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        got = await store.get(s.sid)
        assert got is not None and got.data == {"v": 5}
        await store.aclose()
        await c.aclose()

    asyncio.run(main())
