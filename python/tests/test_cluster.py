"""A real 3-primary cluster (3 replicas): fan-out and merge of the keyless
operations, tenant settings on every primary, a near-cache per primary, and
a reshard plus a failover during a run."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis
from cluster import Cluster
from redis.asyncio.cluster import ClusterNode as AClusterNode
from redis.asyncio.cluster import RedisCluster as ARedisCluster
from sessionlib import wait_for

from redis_session import AsyncSessionStore, Conflict, Revoked, SessionError, SessionStore, StoreUnavailable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Any:
    c = Cluster(tmp_path_factory.mktemp("pycluster"), name="py")
    c.start()
    yield c
    for s in c.crashed():
        s.proc = None
    c.stop()


def store_on(cluster: Any, **kw: Any) -> SessionStore[Any]:
    return SessionStore(cluster.client(decode_responses=False, socket_timeout=2), tenant="acme", **kw)


def test_fanout_merges_and_tenant_settings_reach_every_primary(cluster: Any) -> None:
    store = store_on(cluster)
    try:
        sids = [store.create(subject="fan", data={"i": i}).sid for i in range(24)]
        owners = {cluster.owner(f"sess:acme:{sid}").port for sid in sids}
        assert len(owners) == 3  # the subject's sessions live on every primary
        assert store.list("fan") == sorted(sids)
        assert store.count("fan") == 24
        assert store.revoke_all("fan", except_sid=sids[0], reason="all") == 23
        assert store.list("fan") == [sids[0]]
        with pytest.raises(Revoked):
            store.get(sids[1])
        store.configure_tenant(idle=123_000, maxpersubject=50)
        for p in cluster.primaries():
            got = p.admin().execute_command("SESSION.TENANT", "GET", "acme")
            assert dict(zip(got[::2], got[1::2], strict=True))["idle"] == 123_000
        ts = store.tenant_settings()
        assert ts is not None and ts.idle == 123_000
        assert store.reset_tenant() is True and store.tenant_settings() is None
    finally:
        store.close()


def test_near_cache_on_a_cluster(cluster: Any) -> None:
    store = store_on(cluster, near_cache=True)
    other = store_on(cluster)
    try:
        assert store._tracker.wait_up(15)
        assert len(store._tracker._links) == 3  # a pair per primary
        sids = [store.create(data={"v": 0}).sid for _ in range(6)]
        for sid in sids:
            wait_for(lambda sid=sid: (g := store.get(sid)) is not None and g.cached, 5, what="cache filled")
        for i, sid in enumerate(sids):
            other.set(sid, data={"v": i + 1})

        def fresh() -> bool:
            return all((g := store.get(sid)) is not None and g.data["v"] == i + 1 for i, sid in enumerate(sids))

        wait_for(fresh, 5, what="invalidations from every primary")
    finally:
        store.close()
        other.close()


def test_reshard_and_failover_during_a_run(cluster: Any) -> None:
    store = store_on(cluster, near_cache=True)
    stop = threading.Event()
    foreign: list[BaseException] = []
    errors: dict[str, int] = {}
    done = [0]
    lock = threading.Lock()
    # each worker's sessions and the value it last wrote
    model: dict[str, int] = {}

    def work(n: int) -> None:
        mine = [store.create(subject=f"w{n}", data={"n": 0}).sid for _ in range(8)]
        for sid in mine:
            model[sid] = 0
        i = 0
        while not stop.is_set():
            sid = mine[i % len(mine)]
            i += 1
            try:
                s = store.get(sid, touch=True)
                assert s is not None and s.data["n"] >= model[sid], (s, model[sid])
                v = s.data["n"] + 1
                store.set(sid, data={"n": v}, if_version=s.version)
                model[sid] = v
                with lock:
                    done[0] += 1
            except (StoreUnavailable, Conflict) as e:
                with lock:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                time.sleep(0.02)
            except SessionError as e:
                foreign.append(e)
            except BaseException as e:
                foreign.append(e)
                return

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(3)]
    try:
        assert store._tracker.wait_up(15)
        for t in threads:
            t.start()
        wait_for(lambda: done[0] > 50, 20, what="the workload running")
        p = cluster.primaries()
        cluster.reshard(p[0], p[1], 200)
        n0 = done[0]
        wait_for(lambda: done[0] > n0 + 50, 20, what="progress after the reshard")
        # a failover: a replica of the first primary takes over
        victim = cluster.primaries()[0]
        replica = cluster.replicas_of(victim)[0]
        replica.admin().execute_command("CLUSTER", "FAILOVER")
        wait_for(lambda: replica in cluster.primaries(), 30, what="the replica promoted")
        n1 = done[0]
        wait_for(lambda: done[0] > n1 + 50, 30, what="progress after the failover")
        # the near-cache follows the new primary set
        wait_for(lambda: store._tracker.up and replica.port in {a[1] for a in store._tracker._links}, 15,
                 what="tracking on the new primary")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    try:
        assert not foreign, foreign[:3]
        # every acknowledged write is there
        for sid, v in model.items():
            s = store.get(sid, fresh=True)
            assert s is not None and s.data["n"] >= v
        assert store.count() >= len(model)
    finally:
        store.close()
        cluster.wait_ok(60)


def test_async_cluster(cluster: Any) -> None:
    async def main() -> None:
        nodes = [AClusterNode("127.0.0.1", s.port) for s in cluster.primaries()]
        rc = ARedisCluster(startup_nodes=nodes, socket_timeout=2)
        store: AsyncSessionStore[Any] = AsyncSessionStore(rc, tenant="acme")
        sids = [(await store.create(subject="afan", data={"i": i})).sid for i in range(12)]
        assert await store.list("afan") == sorted(sids)
        assert await store.count("afan") == 12
        got = await asyncio.gather(*(store.get(s, touch=True) for s in sids))
        assert [g.data["i"] for g in got if g is not None] == list(range(12))
        assert await store.revoke_all("afan") == 12
        await store.aclose()
        await rc.aclose()

    asyncio.run(main())
    _ = redis
