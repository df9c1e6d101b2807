"""The whole API against a real server with the module, sync and asyncio."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aredis
from sessionlib import replicate, wait_sync

from redis_session import (
    AsyncSessionStore,
    BaseHooks,
    CircuitBreaker,
    CodecError,
    Conflict,
    InvalidSession,
    JsonCodec,
    LimitExceeded,
    ModuleBackend,
    RetryPolicy,
    Revoked,
    SchemaCodec,
    Session,
    SessionExists,
    SessionStore,
    StoreUnavailable,
    TooBig,
    new_sid,
    sid_hash,
)
from redis_session.protocol import Command, ErrorReply, FanOut, LuaScript, Pipeline, Retry, Script
from store_helpers import module_only, raw_set


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


class LoseReplies:
    """A redis.Redis whose next `n` commands run on the server but lose their
    reply (a connection dropped after the write): what a retry must survive."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lose = 0
        self.connection_pool = inner.connection_pool

    def execute_command(self, *args: Any, **kw: Any) -> Any:
        r = self.inner.execute_command(*args, **kw)
        if self.lose > 0:
            self.lose -= 1
            raise redis.ConnectionError("reply lost")
        return r

    def pipeline(self, transaction: bool = True) -> Any:
        outer = self
        pipe = self.inner.pipeline(transaction=transaction)

        class P:
            def execute_command(self, *a: Any, **k: Any) -> Any:
                return pipe.execute_command(*a, **k)

            def execute(self, raise_on_error: bool = True) -> Any:
                r = pipe.execute(raise_on_error=raise_on_error)
                if outer.lose > 0:
                    outer.lose -= 1
                    raise redis.ConnectionError("reply lost")
                return r

        return P()


def test_retries_only_where_a_resend_cannot_apply_twice(server: Any) -> None:
    flaky = LoseReplies(redis.Redis(port=server.port))
    store: SessionStore[Any] = SessionStore(flaky, tenant="acme", breaker=False)
    # create: applied, reply lost, resent -> EXISTS for its own sid -> success
    flaky.lose = 1
    s = store.create(subject="r", data={"a": 1})
    assert s.version == 1 and store.get(s.sid, fresh=True) is not None
    assert store.metrics.snapshot()["retries"]  # it was resent
    # a versioned set: resent; the resend of a write that landed reads as a conflict
    flaky.lose = 1
    with pytest.raises(Conflict) as e:
        store.set(s.sid, data={"a": 2}, if_version=1)
    assert e.value.current == 2
    # an unversioned set: not resent -> StoreUnavailable, applied exactly once
    flaky.lose = 1
    with pytest.raises(StoreUnavailable):
        store.set(s.sid, data={"a": 3})
    got = store.get(s.sid)
    assert got is not None and got.version == 3 and got.data == {"a": 3}
    # a read: resent transparently
    flaky.lose = 2
    assert store.get(s.sid) is not None
    # more losses than attempts: StoreUnavailable, never redis-py's exception
    flaky.lose = 5
    with pytest.raises(StoreUnavailable) as u:
        store.get(s.sid)
    assert isinstance(u.value.__cause__, redis.ConnectionError)


class Recorder(BaseHooks):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_call(self, op: str, seconds: float, outcome: str) -> None:
        self.events.append(("call", op, outcome))

    def on_breaker(self, state: str) -> None:
        self.events.append(("breaker", state))

    def on_retry(self, op: str, attempt: int) -> None:
        self.events.append(("retry", op, attempt))


class Broken(BaseHooks):
    def on_call(self, op: str, seconds: float, outcome: str) -> None:
        raise RuntimeError("a broken exporter")


def test_hooks_see_operations_never_sids(server: Any) -> None:
    rec = Recorder()
    store: SessionStore[Any] = SessionStore(
        redis.Redis(port=server.port, socket_timeout=0.5), tenant="acme", hooks=[rec, Broken()],
        breaker=CircuitBreaker(threshold=2, cooldown=0.2), retry=RetryPolicy(attempts=1),
    )
    s = store.create(subject="h", data={"a": 1})
    store.get(s.sid)
    store.revoke(s.sid)
    with pytest.raises(Revoked):
        store.get(s.sid)
    assert ("call", "create", "ok") in rec.events and ("call", "get", "Revoked") in rec.events
    assert store.metrics.snapshot()["hook_errors"] == 4  # counted, never raised
    server.kill()
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            store.get(s.sid)
    assert ("breaker", "open") in rec.events
    server.start()
    store._client = redis.Redis(port=server.port, socket_timeout=0.5)
    time.sleep(0.3)
    assert store.get(s.sid) is None  # the restarted server is empty
    assert ("breaker", "closed") in rec.events
    flat = repr(rec.events) + repr(store.metrics.snapshot())
    assert s.sid not in flat and s.sid[:8] not in flat
    assert sid_hash(s.sid) != s.sid and len(sid_hash(s.sid)) == 8


ECHO = LuaScript("echo", "return {KEYS[1], ARGV[1]}")
FAIL = LuaScript("fail", "return redis.error_reply('CONFLICT 7')")
ARG = LuaScript("arg", "return ARGV[1]")


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "asyncio"])
def test_driver_runs_scripts_pipelines_and_fanouts(server: Any, aio: bool) -> None:
    """The request kinds a Lua backend uses, through both drivers: a script
    not yet loaded (NOSCRIPT, then EVAL), then by sha; scripts in a pipeline;
    a script fanned out; an error reply from a script as an ErrorReply."""

    def op() -> Any:
        a = yield Script(ECHO, keys=(b"k1",), args=(b"v1",), retry=Retry.SAFE)
        b = yield Script(ECHO, keys=(b"k2",), args=(b"v2",))
        c = yield Pipeline((Script(ECHO, keys=(b"k3",), args=(b"v3",)), Command((b"PING",))))
        d = yield FanOut(Script(ARG, keys=(), args=(b"all",)))
        e = yield Script(FAIL, keys=(b"k4",))
        f = yield Pipeline((Script(FAIL, keys=(b"k5",)),))
        return a, b, c, d, e, f

    if aio:

        async def main() -> Any:
            c = aredis.Redis(port=server.port, decode_responses=True)
            st: AsyncSessionStore[Any] = AsyncSessionStore(c, tenant="acme")
            try:
                return await st._run("script", op())
            finally:
                await c.aclose()

        redis.Redis(port=server.port).script_flush()
        a, b, c, d, e, f = asyncio.run(main())
    else:
        redis.Redis(port=server.port).script_flush()
        st: SessionStore[Any] = SessionStore(redis.Redis(port=server.port, decode_responses=True), tenant="acme")
        a, b, c, d, e, f = st._run("script", op())
    assert a == [b"k1", b"v1"] and b == [b"k2", b"v2"]
    assert c[0] == [b"k3", b"v3"] and c[1] in (b"PONG", True, "PONG")
    assert d == [b"all"]  # one reply per primary: one server here
    assert isinstance(e, ErrorReply) and e.code == "CONFLICT" and e.rest == "7"
    assert isinstance(f[0], ErrorReply) and f[0].code == "CONFLICT"


def test_get_fast_path(server: Any, backend_kind: str) -> None:
    """Once the module's PACKED read is settled, a whole `get` is one command
    with no generator (`StoreCore.get_request`): same answers, same errors,
    same metrics as the generator path. On the fallback (and while the probe
    is pending) `get_request` declines and the generator runs."""
    c = redis.Redis(port=server.port)
    store: SessionStore[Any] = SessionStore(c, tenant="acme")
    s = store.create(subject="u", data={"n": 1}, meta={"ip": "1"})
    assert store.get(s.sid) is not None  # settles the backend and PACKED
    fast = store._core.get_request(s.sid, True)
    assert (fast is not None) == (backend_kind == "module")
    g = store.get(s.sid, touch=True)
    assert g is not None and g.data == {"n": 1} and g.meta == {"ip": "1"} and g.subject == "u"
    assert g.last_access >= s.last_access
    assert store.get("A" * 43) is None
    with pytest.raises(InvalidSession):
        store.get("bad sid")
    assert store.revoke(s.sid, reason="logout")
    with pytest.raises(Revoked) as e:
        store.get(s.sid, touch=True)
    assert e.value.reason == "logout"
    ops: Any = store.metrics.snapshot()["ops"]
    assert ops["get"]["calls"] == 5 and ops["get"]["errors"] == {"InvalidSession": 1, "Revoked": 1}

    async def main() -> None:
        ac = aredis.Redis(port=server.port)
        astore: AsyncSessionStore[Any] = AsyncSessionStore(ac, tenant="acme")
        t = await astore.create(data={"n": 2})
        assert (await astore.get(t.sid)) is not None
        assert (astore._core.get_request(t.sid, True) is not None) == (backend_kind == "module")
        a = await astore.get(t.sid, touch=True)
        assert a is not None and a.data == {"n": 2}
        await astore.revoke(t.sid)
        with pytest.raises(Revoked):
            await astore.get(t.sid)
        aops: Any = astore.metrics.snapshot()["ops"]
        assert aops["get"]["calls"] == 3 and aops["get"]["errors"] == {"Revoked": 1}
        await ac.aclose()

    asyncio.run(main())
    c.close()
