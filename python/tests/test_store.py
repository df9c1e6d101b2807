"""The whole API against a real server with the module, sync and asyncio."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aredis
from sessionlib import replicate, wait_sync

from conftest import module_only, raw_set
from redis_session import (
    AsyncSessionStore,
    CodecError,
    Conflict,
    InvalidSession,
    JsonCodec,
    LimitExceeded,
    ModuleBackend,
    Revoked,
    SchemaCodec,
    Session,
    SessionExists,
    SessionStore,
    TooBig,
    new_sid,
)


class Prefs(msgspec.Struct):
    theme: str
    cart: list[int] = []


@pytest.fixture(params=[(2, False), (3, False), (2, True)], ids=["resp2", "resp3", "resp2-decoded"])
def client(request: Any, server: Any) -> Any:
    proto, decode = request.param
    c = redis.Redis(port=server.port, protocol=proto, decode_responses=decode)
    yield c
    c.close()


@pytest.mark.parametrize("packed", [None, False], ids=["packed-probe", "map-reply"])
def test_the_api_as_written(client: Any, packed: bool | None, backend_kind: str) -> None:
    if backend_kind == "lua" and packed is False:
        module_only(backend_kind, "PACKED replies")  # the map-reply variant is the module's
    backend = ModuleBackend(packed=packed) if backend_kind == "module" else None  # None: auto, finds the fallback
    store: SessionStore[Any] = SessionStore(client, tenant="acme", backend=backend)
    s = store.create(subject="user42", data={"cart": [1, 2]}, meta={"ip": "10.0.0.7"})
    assert isinstance(s, Session) and len(s.sid) == 43 and s.version == 1 and s.state == "active"
    assert s.data == {"cart": [1, 2]} and s.meta == {"ip": "10.0.0.7"} and s.subject == "user42"
    got = store.get(s.sid, touch=True)
    assert got is not None and got.data == {"cart": [1, 2]} and got.created == s.created
    v = store.set(s.sid, data={"theme": "dark"}, unset=["cart"], if_version=s.version)
    assert v == 2
    with pytest.raises(Conflict) as e:
        store.set(s.sid, data={"theme": "x"}, if_version=1)
    assert e.value.current == 2
    assert store.cas(s.sid, 2, {"only": True}) == 3
    with pytest.raises(Conflict):
        store.cas(s.sid, 2, {})
    g = store.get(s.sid, fields=["only", "nope"])
    assert g is not None and g.data == {"only": True}
    g = store.get(s.sid, nodata=True)
    assert g is not None and g.data == {} and g.version == 3
    assert store.renew(s.sid) is not None
    assert store.renew(s.sid, idle=900_000) == 900_000
    t = store.ttl(s.sid)
    assert t is not None and t.state == "active" and 0 < t.idle_ms <= 900_000
    other = store.create(subject="user42")
    assert store.list("user42") == sorted([s.sid, other.sid])
    assert store.count() == 2 and store.count("user42") == 2
    assert store.revoke_all("user42", except_sid=s.sid, reason="elsewhere") == 1
    with pytest.raises(Revoked) as r:
        store.get(other.sid)
    assert r.value.reason == "elsewhere"
    assert store.revoke(s.sid, reason="logout") is True
    assert store.revoke(s.sid) is False
    with pytest.raises(Revoked):
        store.get(s.sid, touch=True)
    missing = new_sid()
    assert store.get(missing) is None and store.ttl(missing) is None and store.renew(missing) is None
    assert store.set(missing, data={"a": 1}) is None
    with pytest.raises(SessionExists):
        store.create(sid=s.sid)  # a revoked sid is never reused
    with pytest.raises(InvalidSession):
        store.get("too-short")
    # the probe settled on PACKED where the module has it (and stays on the map when told)
    if backend_kind == "module":
        try:
            client.execute_command("SESSION.GET", f"sess:acme:{new_sid()}", "PACKED")
            server_packed = True
        except redis.ResponseError:
            server_packed = False
        assert store.backend.packed is (server_packed if packed is None else False)  # type: ignore[attr-defined]
    else:
        assert store.backend.name == "lua"
    snap = store.metrics.snapshot()
    assert snap["ops"]["get"]["calls"] >= 5  # type: ignore[index]
    assert "Revoked" in snap["ops"]["get"]["errors"]  # type: ignore[index]


def test_packed_probe_is_cached(server: Any, backend_kind: str) -> None:
    module_only(backend_kind, "PACKED replies")
    store: SessionStore[Any] = SessionStore(redis.Redis(port=server.port), tenant="acme")
    s = store.create(data={"a": 1})
    assert store.backend.packed is not None  # type: ignore[attr-defined]
    before = server.info("commandstats")
    for _ in range(3):
        store.get(s.sid)
    after = server.info("commandstats")
    calls = after["cmdstat_session.get"]["calls"] - before["cmdstat_session.get"]["calls"]
    assert calls == 3  # no probe per read


def test_limits_and_tenant_settings(server: Any) -> None:
    store: SessionStore[Any] = SessionStore.from_url(f"redis://127.0.0.1:{server.port}/0", tenant="lim")
    try:
        assert store.tenant_settings() is None
        store.configure_tenant(maxdata=100, maxpersubject=1, onlimit="reject", idle=60_000)
        ts = store.tenant_settings()
        assert ts is not None and ts.maxdata == 100 and ts.maxpersubject == 1 and ts.onlimit == "reject"
        with pytest.raises(TooBig):
            store.create(data={"blob": "x" * 500})
        store.create(subject="u")
        with pytest.raises(LimitExceeded):
            store.create(subject="u")
        assert store.reset_tenant() is True and store.tenant_settings() is None
        with pytest.raises(ValueError):
            store.configure_tenant(nope=1)
    finally:
        store.close()


def test_codecs_on_the_wire(server: Any, backend_kind: str) -> None:
    r = redis.Redis(port=server.port)
    js: SessionStore[Any] = SessionStore(r, tenant="acme", codec=JsonCodec())
    s = js.create(data={"cart": [1, 2]})
    if backend_kind == "module":
        raw = r.execute_command("SESSION.GET", b"sess:acme:" + s.sid.encode(), "FIELDS", 1, "cart")
        assert raw[-1] == [b"cart", b"[1,2]"]  # readable with redis-cli
    else:
        stored: Any = r.hget(b"sess:acme:" + s.sid.encode(), b"d:cart")  # type: ignore[arg-type]
        assert stored == b"[1,2]"  # the fallback's hash
    typed: SessionStore[Prefs] = SessionStore(r, tenant="acme", codec=SchemaCodec(Prefs))
    p = typed.create(data=Prefs(theme="dark"))
    got = typed.get(p.sid)
    assert got is not None and got.data == Prefs(theme="dark", cart=[])
    typed.set(p.sid, data={"cart": [3]})
    got = typed.get(p.sid)
    assert got is not None and got.data.cart == [3]
    with pytest.raises(CodecError):
        typed.set(p.sid, data={"cart": "nope"})  # refused before it is sent
    # a bad payload written by someone else fails at the edge, clearly
    raw_set(r, b"sess:acme:" + p.sid.encode(), "theme", msgspec.msgpack.encode(5), backend_kind)
    with pytest.raises(CodecError, match="theme"):
        typed.get(p.sid)


def test_read_from_replicas(make_pair: Any, backend_kind: str) -> None:
    primary, replica = make_pair()
    store: SessionStore[Any] = SessionStore(
        redis.Redis(port=primary.port), tenant="acme", read_from_replicas=True, replica=redis.Redis(port=replica.port)
    )
    s = store.create(subject="u", data={"a": 1})
    wait_sync(primary, replica)
    if backend_kind == "module":
        info = redis.Redis(port=primary.port).execute_command("COMMAND", "INFO", "session.get")
        get_readonly = "readonly" in info["session.get"]["flags"]
        read_cmds: tuple[str, ...] = ("session.get",)
        ttl_cmds: tuple[str, ...] = ("session.ttl",)
    else:
        get_readonly = True  # the fallback's read scripts, sent as EVALSHA_RO: a replica runs them
        read_cmds = ttl_cmds = ("evalsha_ro", "eval_ro")

    def served(cmds: tuple[str, ...]) -> int:
        stats = replica.info("commandstats")
        n = 0
        for cmd in cmds:
            st = stats.get(f"cmdstat_{cmd}", {})
            n += int(st.get("calls", 0)) - int(st.get("failed_calls", 0))
        return n

    before = served(read_cmds)
    for _ in range(2):
        got = store.get(s.sid)
        assert got is not None and got.data == {"a": 1}
    # served by the replica where the module flags its reads read-only; else
    # the replica's READONLY sends the store back to the primary, once
    assert served(read_cmds) == before + (2 if get_readonly else 0)
    if backend_kind == "module":
        assert replica.info("commandstats").get("cmdstat_session.get", {}).get("calls", 0) <= before + 2
    # a touching read goes to the primary
    assert store.get(s.sid, touch=True) is not None
    assert served(read_cmds) == before + (2 if get_readonly else 0)
    t_before = served(ttl_cmds)
    assert store.ttl(s.sid) is not None
    assert served(ttl_cmds) == t_before + 1
    _ = replicate


def test_async_store_same_api(server: Any) -> None:
    async def main() -> None:
        c = aredis.Redis(port=server.port, protocol=3)
        store: AsyncSessionStore[Any] = AsyncSessionStore(c, tenant="acme")
        s = await store.create(subject="user7", data={"n": 0}, meta={"ua": "test"})
        got = await store.get(s.sid, touch=True)
        assert got is not None and got.data == {"n": 0} and got.meta == {"ua": "test"}

        async def bump(i: int) -> None:
            while True:
                cur = await store.get(s.sid)
                assert cur is not None
                try:
                    await store.set(s.sid, data={"n": cur.data["n"] + 1}, if_version=cur.version)
                    return
                except Conflict:
                    continue

        await asyncio.gather(*(bump(i) for i in range(20)))
        got = await store.get(s.sid)
        assert got is not None and got.data["n"] == 20 and got.version == 21
        assert await store.list("user7") == [s.sid]
        assert await store.count("user7") == 1
        assert await store.revoke_all("user7") == 1
        with pytest.raises(Revoked):
            await store.get(s.sid)
        await store.aclose()
        await c.aclose()

    asyncio.run(main())
