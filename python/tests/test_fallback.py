"""The Lua fallback through the store: concurrency on both backends, the
automatic choice, replication and AOF determinism, the migrating mode, and
the cluster's best-effort index and settings."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import redis
from sessionlib import wait_sync

from redis_session import Conflict, LimitExceeded, Revoked, ServerError, SessionStore
from redis_session.fallback import backend as fb_backend
from redis_session.fallback import migrate as mig
from redis_session.fallback.auto import AutoBackend
from redis_session.fallback.backend import LuaBackend


def plain(make_server_any: Any, **kw: Any) -> Any:
    return make_server_any(load_module=False, name="plain", **kw)


# --- concurrency, on both backends ----------------------------------------------------


def test_concurrent_field_writes_keep_every_change(server: Any) -> None:
    run_field_writes(lambda: SessionStore(redis.Redis(port=server.port), tenant="acme"))


def test_concurrent_cas_one_winner_per_round(server: Any) -> None:
    run_cas_rounds(lambda: SessionStore(redis.Redis(port=server.port), tenant="acme"))


def run_field_writes(make_store: Any, n_clients: int = 8, n_writes: int = 30) -> None:
    """n clients write their own field of one session m times each at once:
    every field ends with its writer's last value, and the version counts
    every write."""
    setup: SessionStore[Any] = make_store()
    sid = setup.create(data={"base": 0}).sid
    start = threading.Barrier(n_clients)
    failures: list[BaseException] = []

    def writer(i: int) -> None:
        st: SessionStore[Any] = make_store()
        try:
            start.wait(10)
            for j in range(n_writes):
                assert st.set(sid, data={f"f{i}": j}) is not None
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures[:3]
    s = setup.get(sid)
    assert s is not None
    assert dict(s.data) == {"base": 0, **{f"f{i}": n_writes - 1 for i in range(n_clients)}}
    assert s.version == 1 + n_clients * n_writes


def run_cas_rounds(make_store: Any, n_clients: int = 8, rounds: int = 15) -> None:
    """n clients CAS on the same version at once, r rounds: exactly one
    wins each round, the others get Conflict with the winner's version."""
    setup: SessionStore[Any] = make_store()
    sid = setup.create(data={"round": 0}).sid
    barrier = threading.Barrier(n_clients)
    results: list[list[tuple[str, int]]] = [[] for _ in range(rounds)]
    lock = threading.Lock()

    def client(i: int) -> None:
        st: SessionStore[Any] = make_store()
        for r in range(rounds):
            barrier.wait(20)  # everyone has seen the previous round's end
            version = 1 + r
            try:
                v = st.cas(sid, version, {"round": r + 1, "by": i})
                out = ("won", int(v or 0))
            except Conflict as e:
                out = ("lost", e.current)
            with lock:
                results[r].append(out)
            barrier.wait(20)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for r, outs in enumerate(results):
        assert len(outs) == n_clients
        won = [v for k, v in outs if k == "won"]
        assert won == [r + 2], (r, outs)
        assert all(v == r + 2 for k, v in outs if k == "lost"), (r, outs)
    s = setup.get(sid)
    assert s is not None and s.version == rounds + 1 and s.data["round"] == rounds


# --- the automatic choice --------------------------------------------------------------


def test_auto_choice_logs_and_can_be_overridden(make_server_any: Any, caplog: Any) -> None:
    p = plain(make_server_any)
    m = make_server_any(name="mod")
    caplog.set_level(logging.INFO, logger="redis_session")
    on_plain: SessionStore[Any] = SessionStore(redis.Redis(port=p.port), tenant="acme")
    on_plain.create()
    assert on_plain.backend.name == "lua"
    assert "no session module (MODULE LIST on 1 node(s)): using the Lua fallback" in caplog.text
    on_mod: SessionStore[Any] = SessionStore(redis.Redis(port=m.port), tenant="acme")
    s = on_mod.create(data={"a": 1})
    assert on_mod.backend.name == "module"
    assert "session module found (MODULE LIST on 1 node(s)): using the module backend" in caplog.text
    assert redis.Redis(port=m.port).type(b"sess:acme:" + s.sid.encode()) == b"sessionT1"
    # overridden: the fallback on a server that has the module, by name or instance
    forced: SessionStore[Any] = SessionStore(redis.Redis(port=m.port), tenant="acme", backend="lua")
    f = forced.create(data={"a": 1})
    assert redis.Redis(port=m.port).type(b"sess:acme:" + f.sid.encode()) == b"hash"
    assert isinstance(forced.backend, LuaBackend)
    inst: SessionStore[Any] = SessionStore(redis.Redis(port=m.port), tenant="acme", backend=LuaBackend())
    assert inst.get(f.sid) is not None
    with pytest.raises(ServerError, match="unknown command"):
        SessionStore(redis.Redis(port=p.port), tenant="acme", backend="module").create()
    with pytest.raises(ValueError):
        SessionStore(redis.Redis(port=p.port), tenant="acme", backend="nope")


def test_auto_choice_without_module_list(make_server_any: Any, caplog: Any) -> None:
    """Where MODULE LIST is refused (managed services, ACLs) the module's
    command is probed instead."""
    caplog.set_level(logging.INFO, logger="redis_session")
    for load in (True, False):
        s = make_server_any(load_module=load, name=f"acl{load}")
        # a tenant's application: its keys only, no MODULE
        s.admin().execute_command("ACL", "SETUSER", "app", "on", ">pw", "~sess:acme:*", "&*", "+@all", "-module")
        c = redis.Redis(port=s.port, username="app", password="pw")
        st: SessionStore[Any] = SessionStore(c, tenant="acme")
        sid = st.create(subject="u", data={"a": 1}).sid
        assert st.backend.name == ("module" if load else "lua")
        # everything the fallback touches lies under the tenant's key pattern
        st.configure_tenant(idle=60_000)
        assert st.list("u") == [sid] and st.count() == 1
        assert st.set(sid, data={"b": 2}, if_version=1) == 2
        assert st.revoke_all("u") == 1
        assert "SESSION.TTL probe on 1 node(s) (MODULE LIST not allowed)" in caplog.text


# --- replication and persistence -------------------------------------------------------


def test_fallback_writes_replicate_and_reload_exactly(make_server_any: Any) -> None:
    """Every script writes absolute values (HSET, PEXPIREAT): the replica and
    an AOF reload hold the primary's keyspace exactly (DEBUG DIGEST); a
    suppressed touch sends nothing."""
    cfg = {"repl-diskless-sync-delay": 0, "appendonly": "yes"}
    primary = make_server_any(load_module=False, name="primary", config=cfg)
    replica = make_server_any(load_module=False, name="replica", config=cfg)
    from sessionlib import replicate

    replicate(replica, primary)
    st: SessionStore[Any] = SessionStore(redis.Redis(port=primary.port), tenant="acme")
    st.configure_tenant(maxpersubject=5, onlimit="evict-oldest")
    sids = [st.create(subject=f"u{i % 2}", data={"i": i}, meta={"ip": "1"}, idle=600_000 + i).sid for i in range(12)]
    st.set(sids[10], data={"x": 1}, unset=["i"], meta={"ua": "y"})
    st.cas(sids[11], 1, {"c": 2})
    st.renew(sids[8], idle=900_000)
    st.revoke(sids[9], reason="bye")
    st.revoke_all("u1", except_sid=sids[7])
    time.sleep(0.002)
    for sid in sids:
        try:
            st.get(sid, touch=True)
        except Revoked:
            pass
    wait_sync(primary, replica)
    assert primary.digest() == replica.digest()
    before = primary.info("replication")["master_repl_offset"]
    st.get(sids[10], touch=True)  # within touch-resolution of the last renewal: nothing written
    assert primary.info("replication")["master_repl_offset"] == before
    d = primary.digest()
    primary.admin().execute_command("DEBUG", "LOADAOF")
    assert primary.digest() == d


# --- migrating mode ------------------------------------------------------------------


def test_migrating_mode_serves_both_kinds_then_migrate(make_server_any: Any, caplog: Any) -> None:
    """An app on the fallback, the module loaded, then an app in auto mode:
    it serves the sessions still held as hashes and the new module ones,
    lists and revokes both, and after `migrate` everything is a module session."""
    srv = make_server_any(name="mig")
    old: SessionStore[Any] = SessionStore(redis.Redis(port=srv.port), tenant="acme", backend="lua")
    legacy = [old.create(subject="u", data={"n": i}).sid for i in range(3)]
    caplog.set_level(logging.INFO, logger="redis_session")
    new: SessionStore[Any] = SessionStore(redis.Redis(port=srv.port), tenant="acme")
    fresh = new.create(subject="u", data={"n": 9}).sid
    assert isinstance(new.backend, AutoBackend) and new.backend.migrating
    assert "fallback sessions remain" in caplog.text
    got = new.get(legacy[0], touch=True)
    assert got is not None and got.data == {"n": 0}
    assert new.set(legacy[0], data={"m": 1}, if_version=1) == 2
    assert new.list("u") == sorted([*legacy, fresh])
    assert new.count("u") == 4 and new.count() == 4
    assert new.revoke_all("u", except_sid=legacy[1]) == 3
    with pytest.raises(Revoked):
        new.get(legacy[0])
    rep = mig.migrate(redis.Redis(port=srv.port))
    assert rep.finished and rep.converted == 3 and rep.tombstones == 2
    r = redis.Redis(port=srv.port)
    assert all(r.type(b"sess:acme:" + s.encode()) == b"sessionT1" for s in legacy)
    assert r.exists(b"sess:acme:@fallback") == 0
    got = new.get(legacy[1])
    assert got is not None and got.data == {"n": 1}
    with pytest.raises(Revoked):
        new.get(legacy[2])
    after: SessionStore[Any] = SessionStore(redis.Redis(port=srv.port), tenant="acme")
    after.get(legacy[1])
    assert after.backend.name == "module"


# --- the cluster's best-effort index ---------------------------------------------------


@pytest.fixture(scope="module")
def plain_cluster(tmp_path_factory: Any) -> Any:
    from cluster import Cluster

    c = Cluster(tmp_path_factory.mktemp("fbcluster"), name="fb", replicas=0, load_module=False)
    c.start()
    yield c
    c.stop()


def test_cluster_index_is_best_effort_with_lazy_cleanup(plain_cluster: Any, monkeypatch: Any) -> None:
    rc = plain_cluster.client(decode_responses=False)
    st: SessionStore[Any] = SessionStore(rc, tenant="idx")
    sids = [st.create(subject="alice", data={"i": i}).sid for i in range(6)]
    assert isinstance(st.backend, AutoBackend) and st.backend.lua.cluster
    idx = b"sess:idx:@subject:alice"
    assert rc.zcard(idx) == 6
    # a session gone by another path: not listed; its entry stays while young
    rc.delete(b"sess:idx:" + sids[0].encode())
    assert st.list("alice") == sorted(sids[1:])
    assert rc.zcard(idx) == 6
    monkeypatch.setattr(fb_backend, "PRUNE_MIN_AGE_MS", 0)
    assert st.count("alice") == 5
    assert rc.zcard(idx) == 5  # cleaned up lazily by the read
    assert st.revoke_all("alice", except_sid=sids[1]) == 4
    assert st.list("alice") == [sids[1]]
    assert st.count() == 1


def test_cluster_subject_cap_and_settings_cache(plain_cluster: Any) -> None:
    rc = plain_cluster.client(decode_responses=False)
    a: SessionStore[Any] = SessionStore(rc, tenant="cap")
    b: SessionStore[Any] = SessionStore(rc, tenant="cap")
    a.configure_tenant(maxpersubject=2, onlimit="reject", idle=60_000)
    s1 = a.create(subject="bob").sid
    time.sleep(0.002)
    a.create(subject="bob")
    with pytest.raises(LimitExceeded, match="LIMIT subject has 2 sessions, tenant allows 2"):
        a.create(subject="bob")
    # b read the settings before the change (or not at all): within the
    # cache's lifetime (1 s) it sees the new ones
    b.configure_tenant(onlimit="evict-oldest")
    time.sleep(1.1)
    s3 = a.create(subject="bob").sid
    with pytest.raises(Revoked, match="evicted: session limit"):
        a.get(s1)
    assert s3 in a.list("bob") and len(a.list("bob")) == 2
    got = a.get(s3)
    assert got is not None and got.idle_deadline - got.last_access == 60_000
