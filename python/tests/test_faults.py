"""Real faults under load: the server killed, paused (SIGSTOP) and restarted.
Only the package's exceptions escape, no call outlives the timeouts, and the
store recovers on its own once the server is back."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

import pytest
from sessionlib import wait_for

from redis_session import AsyncSessionStore, OnUnavailable, SessionError, SessionStore, StoreUnavailable

pytestmark = pytest.mark.slow

TIMEOUT = 0.5  # socket timeout of the stores under test
# the longest a call may take: attempts x (timeout + backoff cap), plus slack for a loaded machine
CALL_BOUND = 3 * (TIMEOUT + 0.25) + 2.0


class Load:
    """Threads running a mixed workload, recording what escapes and how long calls take."""

    def __init__(self, store: SessionStore[Any], n: int = 4) -> None:
        self.store = store
        self.stop = threading.Event()
        self.errors: dict[str, int] = {}
        self.foreign: list[BaseException] = []
        self.max_call = 0.0
        self.last_ok = 0.0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]

    def run(self) -> None:
        sid = None
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                if sid is None:
                    sid = self.store.create(subject="load", data={"n": 0}).sid
                s = self.store.get(sid, touch=True)
                if s is None:
                    sid = None
                else:
                    self.store.set(sid, data={"n": 1}, if_version=s.version)
                ok = True
            except SessionError as e:
                ok = False
                with self.lock:
                    self.errors[type(e).__name__] = self.errors.get(type(e).__name__, 0) + 1
                if not isinstance(e, StoreUnavailable):
                    sid = None
                time.sleep(0.01)
            except BaseException as e:
                ok = False
                self.foreign.append(e)
            dt = time.monotonic() - t0
            with self.lock:
                self.max_call = max(self.max_call, dt)
                if ok:
                    self.last_ok = time.monotonic()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=CALL_BOUND + 5)
            assert not t.is_alive(), "a worker hangs"

    def ok_since(self, t: float) -> bool:
        return self.last_ok > t


def recovery_time(load: Load, since: float, limit: float = 10.0) -> float:
    while time.monotonic() - since < limit:
        if load.ok_since(since):
            return load.last_ok - since
        time.sleep(0.01)
    raise AssertionError(f"no successful call within {limit}s of the server's return")


def test_kill_pause_restart_sync(server: Any) -> None:
    store: SessionStore[Any] = SessionStore.from_url(
        f"redis://127.0.0.1:{server.port}/0",
        tenant="acme",
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        near_cache=True,
    )
    recoveries = []
    try:
        with Load(store) as load:
            time.sleep(0.5)
            # 1. kill
            server.kill()
            time.sleep(1.0)
            assert store.breaker is not None and store.breaker.state in ("open", "half_open")
            server.start()
            back = time.monotonic()
            recoveries.append(recovery_time(load, back))
            # 2. pause (SIGSTOP): calls time out, none hangs
            time.sleep(0.3)
            server.proc.send_signal(signal.SIGSTOP)
            time.sleep(2.0)
            server.proc.send_signal(signal.SIGCONT)
            back = time.monotonic()
            recoveries.append(recovery_time(load, back))
            # 3. a clean restart
            server.restart()
            back = time.monotonic()
            recoveries.append(recovery_time(load, back))
            time.sleep(0.3)
        assert not load.foreign, load.foreign[:3]
        assert load.max_call < CALL_BOUND, load.max_call
        assert load.errors.get("StoreUnavailable", 0) > 0
        assert set(load.errors) <= {"StoreUnavailable", "Conflict"}, load.errors
        # within a second of the server's return (with slack for a shared 2-core box)
        assert max(recoveries) < 2.0, recoveries
        print(f"recoveries (s): {[round(r, 3) for r in recoveries]}; max call {load.max_call:.2f}s")
        snap = store.metrics.snapshot()
        assert snap["breaker"]["transitions"].get("open", 0) >= 1  # type: ignore[index]
        # the near-cache link came back too
        assert store._tracker.wait_up(10)
    finally:
        store.close()


def test_serve_cached_policy(server: Any) -> None:
    store: SessionStore[Any] = SessionStore.from_url(
        f"redis://127.0.0.1:{server.port}/0",
        tenant="acme",
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        near_cache=True,
        on_unavailable=OnUnavailable.SERVE_CACHED,
    )
    try:
        assert store._tracker.wait_up(10)
        s = store.create(data={"a": 1})
        # until cached: a fill racing the create's own invalidation is refused
        wait_for(lambda: (g := store.get(s.sid)) is not None and g.cached, 5, what="the cache filled")
        server.kill()
        t0 = time.monotonic()
        got = store.get(s.sid, touch=True)  # served from the last known value
        assert got is not None and got.cached and got.data == {"a": 1}
        with pytest.raises(StoreUnavailable):
            store.set(s.sid, data={"a": 2})  # writes are refused
        with pytest.raises(StoreUnavailable):
            store.get("B" * 43)  # a miss cannot be served
        assert time.monotonic() - t0 < CALL_BOUND * 3
        server.start()
        assert store._tracker.wait_up(10)
        # back: nothing stale is served as fresh (the restarted server lost it)
        deadline = time.monotonic() + 5
        while True:
            try:
                assert store.get(s.sid) is None
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        store.close()


def test_kill_pause_restart_async(server: Any) -> None:
    async def main() -> None:
        store: AsyncSessionStore[Any] = AsyncSessionStore.from_url(
            f"redis://127.0.0.1:{server.port}/0",
            tenant="acme",
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
        )
        stop = asyncio.Event()
        foreign: list[BaseException] = []
        seen: dict[str, int] = {}
        last_ok = [0.0]
        max_call = [0.0]

        async def worker() -> None:
            sid = None
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    if sid is None:
                        sid = (await store.create(data={"n": 0})).sid
                    if await store.get(sid, touch=True) is None:
                        sid = None
                    last_ok[0] = time.monotonic()
                except SessionError as e:
                    seen[type(e).__name__] = seen.get(type(e).__name__, 0) + 1
                    await asyncio.sleep(0.01)
                except BaseException as e:
                    foreign.append(e)
                    return
                max_call[0] = max(max_call[0], time.monotonic() - t0)

        tasks = [asyncio.create_task(worker()) for _ in range(20)]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)
        back = time.monotonic()
        while last_ok[0] <= back and time.monotonic() - back < 10:
            await asyncio.sleep(0.01)
        recovery = last_ok[0] - back
        # a pause (SIGSTOP): the tasks' calls time out, none hangs
        await asyncio.sleep(0.3)
        server.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(1.5)
        server.proc.send_signal(signal.SIGCONT)
        back = time.monotonic()
        while last_ok[0] <= back and time.monotonic() - back < 10:
            await asyncio.sleep(0.01)
        recovery = max(recovery, last_ok[0] - back)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), CALL_BOUND + 5)
        await store.aclose()
        assert not foreign, foreign[:3]
        assert seen.get("StoreUnavailable", 0) > 0 and set(seen) <= {"StoreUnavailable"}, seen
        assert 0 <= recovery < 2.0, recovery
        assert max_call[0] < CALL_BOUND, max_call[0]

    asyncio.run(main())


def test_async_pool_exhausted(server: Any) -> None:
    """`from_url`'s asyncio pool (redis-py's, with a lock-free checkout when
    nobody waits): more tasks than connections all get served in turn; with
    the server paused, every call ends in `StoreUnavailable` within the
    bounds (socket timeout for the holders, pool timeout for the waiters)."""
    from redis_session._aioconn import BlockingPool, Connection

    async def main() -> None:
        store: AsyncSessionStore[Any] = AsyncSessionStore.from_url(
            f"redis://127.0.0.1:{server.port}/0",
            tenant="acme",
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            max_connections=2,
            pool_timeout=TIMEOUT,
        )
        pool = store._client.connection_pool
        assert isinstance(pool, BlockingPool) and pool.connection_class is Connection
        s = await store.create(data={"n": 1})
        got = await asyncio.gather(*(store.get(s.sid, touch=True) for _ in range(40)))
        assert all(g is not None and g.data["n"] == 1 for g in got)
        assert len(pool._in_use_connections) == 0 and len(pool._available_connections) <= 2
        server.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            res = await asyncio.wait_for(
                asyncio.gather(*(store.get(s.sid, touch=True) for _ in range(10)), return_exceptions=True),
                CALL_BOUND + 5,
            )
            took = time.monotonic() - t0
        finally:
            server.proc.send_signal(signal.SIGCONT)
        assert all(isinstance(r, StoreUnavailable) for r in res), [type(r).__name__ for r in res]
        assert took < CALL_BOUND, took
        # back: the pool serves again (the breaker lets a probe through after its cool-down)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert (await store.get(s.sid)) is not None
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        await store.aclose()

    asyncio.run(main())
