"""The fallback's Lua scripts called directly against a plain redis-server
(no module): every state, limit and error word of the module's contract."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integration"))
sys.path.insert(0, str(ROOT / "python" / "src"))

from sessionlib import E_WRONGTYPE, Server, new_sid  # noqa: E402

from redis_session.fallback import wire  # noqa: E402
from redis_session.fallback.wire import Call, Layout, Options  # noqa: E402

OPTS = Options()
L = Layout()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: Any) -> Any:
    s = Server(tmp_path_factory.mktemp("plain"), load_module=False, name="plain")
    s.start()
    yield s
    s.stop()


@pytest.fixture
def r(plain: Any) -> Any:
    c = plain.client(decode=False)
    c.flushall()
    return c


def run(r: Any, call: Call) -> Any:
    try:
        return r.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    except redis.ResponseError as e:
        if not str(e).startswith("NOSCRIPT"):
            raise
        return r.eval(call.script.source, len(call.keys), *call.keys, *call.args)


def err(r: Any, call: Call) -> str:
    with pytest.raises(redis.ResponseError) as e:
        run(r, call)
    return str(e.value)


def tenant_of(k: bytes) -> bytes:
    parts = L.split(k)
    assert parts is not None
    return parts[0]


def key(tenant: Any = "acme") -> Any:
    return L.session(tenant, new_sid())


def create(r: Any, k: Any, single: Any = True, **kw: Any) -> Any:
    reply = run(r, wire.create(k, tenant_of(k), OPTS, single, **kw))
    assert isinstance(reply, list) and len(reply) == 4  # created, idle, absolute deadline, grace
    return 1


def get(r: Any, k: Any, **kw: Any) -> Any:
    return wire.decode_get(run(r, wire.get(k, OPTS, **kw)))


def test_create_get_and_noscript_reload(r: Any) -> None:
    k = key()
    r.script_flush()
    assert create(r, k, subject="u1", meta={b"ip": b"10.0.0.7"}, data={b"cart": b"3", b"theme": b"dark"}) == 1
    s = get(r, k)
    assert s["subject"] == b"u1" and s["version"] == 1 and s["state"] == "active"
    assert s["meta"] == {b"ip": b"10.0.0.7"}
    assert s["data"] == {b"cart": b"3", b"theme": b"dark"}
    assert s["idle_deadline"] == s["last_access"] + OPTS.idle
    assert s["absolute_deadline"] == s["created"] + OPTS.absolute
    assert s["grace_until"] == s["idle_deadline"] + OPTS.grace
    assert r.pexpiretime(k) == s["grace_until"]
    assert get(r, k, nodata=True).keys() == set(wire.GET_NAMES) - {"data"}
    assert get(r, k, fields=[b"cart", b"nope", b"cart"])["data"] == {b"cart": b"3"}
    assert run(r, wire.get(k, OPTS, fields=[b"cart", b"nope"], values=True)) == [b"3", None]
    assert get(r, L.session("acme", new_sid())) is None
    assert err(r, wire.create(k, b"acme", OPTS, True)) == "EXISTS session already exists"


def test_wrongtype(r: Any) -> None:
    k = key()
    r.set(k, "x")
    for call in (
        wire.get(k, OPTS),
        wire.renew(k, OPTS),
        wire.ttl(k),
        wire.create(k, b"acme", OPTS, True),
        wire.set_fields(k, b"acme", OPTS, True, data={b"a": b"1"}),
        wire.cas(k, b"acme", OPTS, True, 1, {}),
        wire.revoke(k, b"acme", OPTS, True),
    ):
        assert err(r, call) == E_WRONGTYPE, call.script.name
    r.delete(k)
    r.hset(k, "foreign", "hash")
    assert err(r, wire.get(k, OPTS)) == E_WRONGTYPE
    assert err(r, wire.get(k, OPTS, nodata=True)) == E_WRONGTYPE


def test_touch_resolution_writes_nothing(r: Any, plain: Any) -> None:
    k = key()
    create(r, k)
    la = get(r, k)["last_access"]
    before = plain.info("stats")["total_commands_processed"]
    dirty = plain.info("persistence")["rdb_changes_since_last_save"]
    s = get(r, k, touch=True)
    assert s["last_access"] == la  # within 1000 ms of the create
    assert plain.info("persistence")["rdb_changes_since_last_save"] == dirty
    assert before  # (a suppressed touch made no write: the dirty counter did not move)
    o0 = Options(touch_resolution=0)
    time.sleep(0.005)
    s2: Any = wire.decode_get(run(r, wire.get(k, o0, touch=True)))
    assert s2["last_access"] > la and s2["version"] == 1
    assert r.pexpiretime(k) == s2["grace_until"]


def test_grace_and_expiry(r: Any) -> None:
    k = key()
    create(r, k, idle=150, grace=400)
    time.sleep(0.25)
    assert get(r, k)["state"] == "grace"
    assert run(r, wire.ttl(k))[0] == b"grace"
    s = get(r, k, touch=True)
    assert s["state"] == "active"
    time.sleep(0.7)
    assert get(r, k) is None
    assert r.exists(k) == 0  # Redis's own expiry took the key


def test_absolute_deadline_has_no_grace(r: Any) -> None:
    k = key()
    create(r, k, idle=10_000, absolute=200, grace=10_000)
    s = get(r, k)
    assert s["grace_until"] == s["absolute_deadline"] == s["created"] + 200
    assert run(r, wire.renew(k, OPTS)) <= 200
    time.sleep(0.3)
    assert get(r, k) is None and run(r, wire.renew(k, OPTS)) is None


def test_renew_idle_bumps_version(r: Any) -> None:
    k = key()
    create(r, k)
    assert run(r, wire.renew(k, OPTS, idle=900_000)) == 900_000
    s = get(r, k)
    assert s["version"] == 2 and s["idle_deadline"] - s["last_access"] == 900_000


def test_set_merges_and_checks_version(r: Any) -> None:
    k = key()
    create(r, k, meta={b"ip": b"1"}, data={b"a": b"1", b"b": b"2"})
    assert (
        run(
            r,
            wire.set_fields(k, b"acme", OPTS, True, if_version=1, data={b"c": b"3"}, unset=[b"a"], meta={b"ua": b"x"}),
        )
        == 2
    )
    s = get(r, k)
    assert s["data"] == {b"b": b"2", b"c": b"3"} and s["meta"] == {b"ip": b"1", b"ua": b"x"}
    assert err(r, wire.set_fields(k, b"acme", OPTS, True, if_version=1, data={b"d": b"4"})) == "CONFLICT 2"
    # set and unset of one field: set wins
    assert run(r, wire.set_fields(k, b"acme", OPTS, True, unset=[b"b"], data={b"b": b"9"})) == 3
    assert get(r, k)["data"] == {b"b": b"9", b"c": b"3"}
    assert run(r, wire.set_fields(L.session("acme", new_sid()), b"acme", OPTS, True, data={b"x": b"1"})) is None


def test_cas_replaces_data(r: Any) -> None:
    k = key()
    create(r, k, data={b"a": b"1", b"b": b"2"})
    assert err(r, wire.cas(k, b"acme", OPTS, True, 7, {b"z": b"1"})) == "CONFLICT 1"
    assert run(r, wire.cas(k, b"acme", OPTS, True, 1, {b"z": b"9", b"a": b"0"})) == 2
    assert get(r, k)["data"] == {b"z": b"9", b"a": b"0"}
    assert run(r, wire.cas(k, b"acme", OPTS, True, 2, {})) == 3
    assert get(r, k)["data"] == {}
    assert r.hget(k, "dn") == b"0" and r.hget(k, "db") == b"0"


def test_limits(r: Any) -> None:
    o = Options(max_data_bytes=10, max_fields=2, max_meta=1)
    k = key()
    assert err(r, wire.create(k, b"acme", o, True, data={b"a": b"x" * 10})) == "TOOBIG data is 11 bytes, limit 10"
    assert (
        err(r, wire.create(k, b"acme", o, True, data={b"a": b"", b"b": b"", b"c": b""}))
        == "TOOBIG more than 2 data fields"
    )
    assert err(r, wire.create(k, b"acme", o, True, meta={b"a": b"", b"b": b""})) == "TOOBIG more than 1 meta entries"
    assert (
        err(r, wire.create(k, b"acme", o, True, meta={b"a": b"x" * 1025}))
        == "TOOBIG meta name or value longer than 1024 bytes"
    )
    assert err(r, wire.create(k, b"acme", o, True, subject=b"s" * 513)) == "TOOBIG subject longer than 512 bytes"
    assert r.exists(k) == 0
    assert len(run(r, wire.create(k, b"acme", o, True, data={b"a": b"12345"}))) == 4
    assert err(r, wire.set_fields(k, b"acme", o, True, data={b"b": b"12345"})) == "TOOBIG data is 12 bytes, limit 10"
    assert run(r, wire.set_fields(k, b"acme", o, True, data={b"a": b"1234567"})) == 2  # replaces: 8 bytes
    assert err(r, wire.cas(k, b"acme", o, True, 2, {b"abc": b"12345678"})) == "TOOBIG data is 11 bytes, limit 10"
    assert get(r, k)["data"] == {b"a": b"1234567"} and get(r, k)["version"] == 2
    # a tenant's MAXDATA overrides the store's limit (single mode reads it in the script)
    r.hset(L.settings("acme"), "maxdata", 100)
    assert run(r, wire.set_fields(k, b"acme", o, True, data={b"b": b"x" * 50})) == 3


def test_revoke_tombstone(r: Any) -> None:
    k = key()
    create(r, k, subject="u1", idle=10_000, grace=1000)
    assert run(r, wire.revoke(k, b"acme", OPTS, True, reason=b"logout")) == 1
    assert err(r, wire.get(k, OPTS)) == "REVOKED logout"
    assert err(r, wire.renew(k, OPTS)) == "REVOKED logout"
    assert err(r, wire.ttl(k)) == "REVOKED logout"
    assert err(r, wire.set_fields(k, b"acme", OPTS, True, data={b"a": b"1"})) == "REVOKED logout"
    assert err(r, wire.create(k, b"acme", OPTS, True)) == "EXISTS session already exists"
    assert run(r, wire.revoke(k, b"acme", OPTS, True)) == 0
    assert r.hget(k, "d:a") is None and r.hget(k, "m") is None
    left = r.pttl(k)
    assert 0 < left <= 11_000  # the session's own end, not the retention
    k2 = key()
    create(r, k2)
    run(r, wire.revoke(k2, b"acme", Options(revoked_retention=100), True))
    assert err(r, wire.get(k2, OPTS)) == "REVOKED revoked"
    time.sleep(0.2)
    assert get(r, k2) is None
    assert err(r, wire.revoke(k2, b"acme", OPTS, True, reason=b"x" * 257)) == "TOOBIG reason longer than 256 bytes"
    assert err(r, wire.revoke(k2, b"acme", OPTS, True, reason=b"a\nb")) == "ERR syntax error"


def test_index_single(r: Any) -> None:
    ks = [key() for _ in range(3)]
    for k in ks:
        create(r, k, subject="u1")
    other = key()
    create(r, other, subject="u2")
    idx = L.index("acme", "u1")
    assert run(r, wire.index_list(idx, b"u1")) == sorted(ks)
    run(r, wire.revoke(ks[0], b"acme", OPTS, True))
    assert run(r, wire.index_list(idx, b"u1")) == sorted(ks[1:])
    assert r.zcard(idx) == 2
    r.delete(ks[1])  # a key that went away by another path: listed no more
    assert run(r, wire.index_list(idx, b"u1")) == [ks[2]]
    assert run(r, wire.index_revokeall(idx, b"u1", OPTS, reason=b"all")) == 1
    assert err(r, wire.get(ks[2], OPTS)) == "REVOKED all"
    assert r.exists(idx) == 0
    assert run(r, wire.index_list(L.index("acme", "u2"), b"u2")) == [other]


def test_subject_cap(r: Any) -> None:
    r.hset(L.settings("acme"), mapping={"maxpersubject": 2})
    a, b_, c = key(), key(), key()
    create(r, a, subject="u1")
    time.sleep(0.002)
    create(r, b_, subject="u1")
    assert err(r, wire.create(c, b"acme", OPTS, True, subject=b"u1")) == "LIMIT subject has 2 sessions, tenant allows 2"
    r.hset(L.settings("acme"), "onlimit", "evict-oldest")
    assert create(r, c, subject="u1") == 1
    assert err(r, wire.get(a, OPTS)) == "REVOKED evicted: session limit"
    assert run(r, wire.index_list(L.index("acme", "u1"), b"u1")) == sorted([b_, c])


def test_tenant_timeouts(r: Any) -> None:
    r.hset(L.settings("acme"), mapping={"idle": 5000, "absolute": 0, "grace": 7})
    k = key()
    create(r, k)
    s = get(r, k)
    assert s["idle_deadline"] - s["last_access"] == 5000
    assert s["absolute_deadline"] == -1 and s["grace_until"] == s["idle_deadline"] + 7
    k2 = key("globex")
    create(r, k2)
    assert get(r, k2)["idle_deadline"] - get(r, k2)["last_access"] == OPTS.idle


def test_version_cap(r: Any) -> None:
    k = key()
    create(r, k)
    r.hset(k, "v", 2**53)
    assert run(r, wire.set_fields(k, b"acme", OPTS, True, data={b"a": b"1"})) == 2**53
    assert r.hget(k, "v") == b"9007199254740992"
