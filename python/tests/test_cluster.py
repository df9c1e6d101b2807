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
from redis_session.protocol import FanOut, LuaScript, Retry, Script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["module", "lua"])
def cluster(tmp_path_factory: Any, request: Any) -> Any:
    # "lua": plain servers, where the store's automatic choice is the fallback
    c = Cluster(tmp_path_factory.mktemp("pycluster"), name="py", load_module=request.param == "module")
    c.backend_kind = request.param
    c.start()
    yield c
    for s in c.crashed():
        s.proc = None
    c.stop()


def store_on(cluster: Any, **kw: Any) -> SessionStore[Any]:
    # as from_url(cluster=True) builds it: only the store resends
    rc = cluster.client(decode_responses=False, socket_timeout=2, cluster_error_retry_attempts=0)
    return SessionStore(rc, tenant="acme", **kw)


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
        if cluster.backend_kind == "module":
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
    lossy = [False]

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
                assert s is not None and (lossy[0] or s.data["n"] >= model[sid]), (s, model[sid])
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
        # a graceful manual failover (no acknowledged write lost) can time
        # out on a loaded machine: try twice, then force it
        for how in ((), (), ("FORCE",)):
            replica.admin().execute_command("CLUSTER", "FAILOVER", *how)
            try:
                wait_for(lambda: replica in cluster.primaries(), 12, what="the replica promoted")
                break
            except AssertionError:
                if how:
                    raise
        lossy[0] = bool(how)
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
        cluster.wait_ok(60, check=False)
        # every acknowledged write is there (a forced failover may lose the
        # writes the replica had not received)
        for sid, v in model.items():
            s = store.get(sid, fresh=True)
            assert s is not None and (lossy[0] or s.data["n"] >= v)
        assert store.count() >= len(model), fanout_diagnosis(cluster, store)
    finally:
        store.close()
        cluster.wait_ok(60)


def fanout_diagnosis(cluster: Any, store: Any) -> str:
    """What a failed count needs to be told apart: each node's role, its
    SESSION.COUNT and its keys, and which nodes the client fans out to."""
    rows = []
    for s in cluster.alive():
        a = s.admin()
        try:
            n = a.execute_command("SESSION.COUNT", "acme") if cluster.backend_kind == "module" else "-"
        except redis.RedisError as e:
            n = repr(e)
        rows.append(f"{s.port}: {a.execute_command('ROLE')[0]!r} count={n} keys={a.dbsize()}")
    flags = sorted(n.port for n in store._client.get_primaries())
    return f"get_primaries={flags} nodes: " + "; ".join(rows)


def test_fanout_follows_the_slot_map_not_server_type(cluster: Any) -> None:
    # redis-py 5.x follows a MOVED without a lock: two threads following the
    # MOVEDs of one failover can leave the new primary flagged a replica
    # (redis/redis-py#3803). Within the store's refresh interval the fan-out
    # must still reach every slot owner, or a count skips a whole shard.
    store = store_on(cluster)
    try:
        sids = [store.create(subject="flag").sid for _ in range(12)]
        assert len({cluster.owner(f"sess:acme:{sid}").port for sid in sids}) > 1
        assert store.count("flag") == 12  # refreshes the slot map
        victim = store._client.get_primaries()[0]
        victim.server_type = "replica"  # what the race leaves behind
        assert store.count("flag") == 12  # within topology_refresh: no refresh
    finally:
        store.close()


def test_from_url_cluster(cluster: Any) -> None:
    port = cluster.primaries()[0].port
    store = SessionStore.from_url(f"redis://127.0.0.1:{port}/0", tenant="url", cluster=True)
    try:
        assert store._client.cluster_error_retry_attempts == 0
        sids = {store.create(subject="u").sid for _ in range(9)}
        assert set(store.list("u")) == sids and store.count() == 9

        async def main() -> None:
            astore = AsyncSessionStore.from_url(f"redis://127.0.0.1:{port}/0", tenant="url", cluster=True)
            assert await astore.count("u") == 9
            assert await astore.revoke_all("u") == 9
            await astore.aclose()

        asyncio.run(main())
        assert store.count("u") == 0
    finally:
        store.close()


def test_read_from_replicas_on_a_cluster(cluster: Any) -> None:
    # CLUSTER SLOTS lists a replica only once gossip has spread it
    admin = cluster.primaries()[0].admin()
    wait_for(lambda: all(len(r) > 3 for r in admin.execute_command("CLUSTER", "SLOTS")), 30,
             what="replicas in CLUSTER SLOTS")
    try:  # redis-py >= 5.3 spells it as a strategy
        from redis.cluster import LoadBalancingStrategy

        opt: dict[str, Any] = {"load_balancing_strategy": LoadBalancingStrategy.ROUND_ROBIN}
    except ImportError:
        opt = {"read_from_replicas": True}
    rc = cluster.client(decode_responses=False, socket_timeout=2, **opt)
    store: SessionStore[Any] = SessionStore(rc, tenant="acme", read_from_replicas=True)
    try:
        sids = [store.create(data={"i": i}).sid for i in range(12)]
        cluster.wait_replicas_synced(30)

        # the module's read, or the fallback's read script run read-only
        reads = ("session.get",) if cluster.backend_kind == "module" else ("evalsha_ro", "eval_ro")

        def replica_gets() -> int:
            n = 0
            for p in cluster.primaries():
                for r in cluster.replicas_of(p):
                    stats = r.info("commandstats")
                    for cmd in reads:
                        st = stats.get(f"cmdstat_{cmd}", {})
                        n += int(st.get("calls", 0)) - int(st.get("failed_calls", 0))
            return n

        before = replica_gets()
        for _ in range(3):
            for i, sid in enumerate(sids):
                got = store.get(sid)
                assert got is not None and got.data == {"i": i}
        served = replica_gets() - before
        assert served > 0  # redis-py spreads reads over primary and replica
        # touching reads go to the primaries only
        before = replica_gets()
        for sid in sids:
            assert store.get(sid, touch=True) is not None
        assert replica_gets() == before
    finally:
        store.close()
        rc.close()


def test_async_cluster(cluster: Any) -> None:
    async def main() -> None:
        nodes = [AClusterNode("127.0.0.1", s.port) for s in cluster.primaries()]
        rc = ARedisCluster(startup_nodes=nodes, socket_timeout=2)
        store: AsyncSessionStore[Any] = AsyncSessionStore(rc, tenant="acme", near_cache=True)
        assert await asyncio.to_thread(store._tracker.wait_up, 15)
        sids = [(await store.create(subject="afan", data={"i": i})).sid for i in range(12)]
        # the near-cache on an asyncio cluster client: filled, then invalidated from elsewhere
        other = store_on(cluster)
        for sid in sids[:3]:
            for _ in range(100):
                if (g := await store.get(sid)) is not None and g.cached:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("never cached")
            other.set(sid, data={"i": -1})
            for _ in range(500):
                g = await store.get(sid)
                if g is not None and g.data["i"] == -1:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("invalidation never arrived")
            other.set(sid, data={"i": sids.index(sid)})
        other.close()
        assert await store.list("afan") == sorted(sids)
        assert await store.count("afan") == 12
        got = await asyncio.gather(*(store.get(s, touch=True, fresh=True) for s in sids))
        assert [g.data["i"] for g in got if g is not None] == list(range(12))
        assert await store.revoke_all("afan") == 12
        await store.aclose()
        await rc.aclose()

    asyncio.run(main())
    _ = redis


def test_scripts_on_a_cluster(cluster: Any) -> None:
    """A Lua backend's requests on a cluster: a keyed script routed by its
    key (loaded on first use), a keyless one fanned out to every primary."""
    store = store_on(cluster)
    arg = LuaScript("arg", "return ARGV[1]")
    key_echo = LuaScript("kecho", "return KEYS[1]")

    def op() -> Any:
        keyed = []
        for i in range(6):
            k = f"sess:acme:{'k' * 20}{i}".encode()
            keyed.append((yield Script(key_echo, keys=(k,), retry=Retry.SAFE)))
        everywhere = yield FanOut(Script(arg, keys=(), args=(b"x",), retry=Retry.SAFE))
        return keyed, everywhere

    try:
        for p in cluster.primaries():
            p.admin().script_flush()
        keyed, everywhere = store._run("script", op())
        assert keyed == [f"sess:acme:{'k' * 20}{i}".encode() for i in range(6)]
        assert everywhere == [b"x", b"x", b"x"]
    finally:
        store.close()


def test_concurrency_on_a_cluster(cluster: Any) -> None:
    """Different fields of one session written at once all stay; one CAS
    wins each round (the session's key lives on one primary, either backend)."""
    from test_fallback import run_cas_rounds, run_field_writes

    run_field_writes(lambda: store_on(cluster), n_clients=6, n_writes=15)
    run_cas_rounds(lambda: store_on(cluster), n_clients=6, rounds=8)


def test_migrate_on_a_cluster(cluster: Any) -> None:
    """`redis-session migrate` through any node converts the fallback's
    sessions on every primary; without the module it refuses, changing nothing."""
    from redis_session.fallback import migrate as mig

    fb = store_on(cluster, backend="lua")
    sids = [fb.create(subject="mover", data={"i": i}, meta={"ip": "1"}).sid for i in range(12)]
    fb.revoke(sids[0], reason="gone")
    before = {sid: fb.get(sid) for sid in sids[1:]}
    rc = cluster.client(decode_responses=False)
    if cluster.backend_kind != "module":
        with pytest.raises(mig.MigrationError):
            mig.migrate(rc)
        assert fb.list("mover") == sorted(sids[1:])
        return
    rep = mig.migrate(rc)
    assert rep.finished and rep.converted == 12 and rep.tombstones == 1, str(rep)
    mod = store_on(cluster, backend="module")
    for sid, s in before.items():
        assert rc.type(f"sess:acme:{sid}") == b"sessionT1"
        got = mod.get(sid)
        assert got is not None and (got.version, got.created, got.last_access, dict(got.data), dict(got.meta)) == (
            s.version, s.created, s.last_access, dict(s.data), dict(s.meta)  # type: ignore[union-attr]
        )
    with pytest.raises(Revoked, match="gone"):
        mod.get(sids[0])
    assert mod.list("mover") == sorted(sids[1:])
    assert rc.exists(b"sess:acme:@subject:mover", b"sess:acme:@fallback") == 0
