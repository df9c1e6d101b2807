"""Sans-I/O tests: operations driven by hand, no server. Reply decoding
(PACKED and the map), error mapping, codecs, the near-cache's race guard,
the breaker and the retry policy."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pydantic
import pytest

from redis_session import (
    CodecError,
    Conflict,
    InvalidSession,
    JsonCodec,
    MsgpackCodec,
    RawCodec,
    Revoked,
    SchemaCodec,
    ServerError,
    SessionExists,
    TooBig,
)
from redis_session.core import StoreCore
from redis_session.module import ModuleBackend
from redis_session.nearcache import NearCache
from redis_session.policy import CircuitBreaker, RetryPolicy
from redis_session.protocol import Background, Command, ErrorReply, FanOut, KeySchema, Pipeline, Retry
from redis_session.replies import decode_map, decode_packed
from redis_session.types import RawSession

SID = "A" * 43
KEY = b"sess:acme:" + SID.encode()


def packed(**over: Any) -> bytes:
    """A PACKED v1 reply as PACKED.md lays it out (keys in order, bin values)."""
    d: dict[str, Any] = {
        "v": 1,
        "subject": b"user42",
        "created": 1000,
        "version": 3,
        "state": "active",
        "last_access": 2000,
        "idle_deadline": 5000,
        "absolute_deadline": -1,
        "grace_until": 6000,
        "meta": {b"ip": b"10.0.0.7"},
        "data": {b"cart": msgspec.msgpack.encode([1, 2])},
    }
    d.update(over)
    return msgspec.msgpack.encode(d)


MAP_RESP2 = [
    b"subject", b"user42", b"created", 1000, b"version", 3, b"state", b"active",
    b"last_access", 2000, b"idle_deadline", 5000, b"absolute_deadline", -1, b"grace_until", 6000,
    b"meta", [b"ip", b"10.0.0.7"], b"data", [b"cart", msgspec.msgpack.encode([1, 2])],
]  # fmt: skip


def drive(op: Any, replies: list[Any]) -> tuple[list[Any], Any]:
    """Run an op, answering its requests from `replies`; (requests, result)."""
    reqs = []
    try:
        req = next(op)
        while True:
            reqs.append(req)
            req = op.send(replies.pop(0))
    except StopIteration as stop:
        return reqs, stop.value


def core(cache: NearCache | None = None, codec: Any = None) -> StoreCore[Any]:
    return StoreCore(ModuleBackend(), codec or MsgpackCodec(), KeySchema("sess:", "acme"), cache=cache)


def test_packed_decodes_in_one_call_and_matches_the_map() -> None:
    a = decode_packed(packed())
    b = decode_map(MAP_RESP2)
    assert a == b
    assert a is not None and a.meta == {b"ip": b"10.0.0.7"} and a.absolute_deadline == -1
    # RESP3 dict shape too
    resp3 = {MAP_RESP2[i]: MAP_RESP2[i + 1] for i in range(0, len(MAP_RESP2), 2)}
    resp3[b"meta"] = {b"ip": b"10.0.0.7"}
    assert decode_map(resp3) == a
    # NODATA: no data key
    nd = msgspec.msgpack.decode(packed())
    del nd["data"]
    raw = decode_packed(msgspec.msgpack.encode(nd))
    assert raw is not None and raw.data == {}
    assert decode_packed(None) is None
    with pytest.raises(ServerError):
        decode_packed(packed(v=2))
    with pytest.raises(ServerError):
        decode_packed(b"\xc1garbage")


VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "packed.json"


@pytest.mark.skipif(not VECTORS.exists(), reason="no PACKED test vectors in this tree")
def test_the_repository_packed_vectors_decode() -> None:
    """The module's pinned PACKED vectors (tests/vectors/packed.json) decode
    to their expected values with the package's one-call decoder."""
    cases = json.loads(VECTORS.read_text())["cases"]
    assert cases
    for case in cases:
        raw = decode_packed(bytes.fromhex(case["packed_hex"]))
        exp = case["expected"]
        assert raw is not None, case["name"]
        h = bytes.fromhex
        assert raw.subject == h(exp["subject"]) and raw.state == exp["state"], case["name"]
        for f in ("created", "version", "last_access", "idle_deadline", "absolute_deadline", "grace_until"):
            assert getattr(raw, f) == exp[f], (case["name"], f)
        assert list(raw.meta.items()) == [(h(k), h(v)) for k, v in exp["meta"]], case["name"]
        assert list(raw.data.items()) == [(h(k), h(v)) for k, v in exp.get("data") or []], case["name"]


def test_get_asks_packed_then_falls_back_once_on_syntax_error() -> None:
    c = core()
    reqs, s = drive(c.get(SID, touch=True), [ErrorReply("syntax error"), MAP_RESP2])
    assert [r.args[-1] for r in reqs] == [b"PACKED", b"TOUCH"]
    assert s.data == {"cart": [1, 2]} and s.subject == "user42" and s.meta == {"ip": "10.0.0.7"}
    assert c.backend.packed is False  # type: ignore[attr-defined]
    # decided: the next read asks for the map directly
    reqs, s2 = drive(c.get(SID), [MAP_RESP2])
    assert len(reqs) == 1 and b"PACKED" not in reqs[0].args and s2 == s
    # a module with PACKED: one request
    c2 = core()
    reqs, s3 = drive(c2.get(SID, fields=["cart"]), [packed()])
    assert reqs[0].args == (b"SESSION.GET", KEY, b"FIELDS", 1, b"cart", b"PACKED")
    assert reqs[0].readonly and reqs[0].retry is Retry.SAFE
    assert s3 == s and c2.backend.packed is True  # type: ignore[attr-defined]


def test_error_words_become_exceptions() -> None:
    c = core()
    with pytest.raises(Revoked) as ei:
        drive(c.get(SID), [ErrorReply("REVOKED logout")])
    assert ei.value.reason == "logout"
    with pytest.raises(Conflict) as ec:
        drive(c.set(SID, data={"a": 1}, if_version=2), [ErrorReply("CONFLICT 7")])
    assert ec.value.current == 7
    with pytest.raises(TooBig):
        drive(c.set(SID, data={"a": 1}), [ErrorReply("TOOBIG data exceeds 65536 bytes")])
    with pytest.raises(ServerError):
        drive(c.set(SID, data={"a": 1}), [ErrorReply("WRONGTYPE Operation against a key")])
    with pytest.raises(InvalidSession):
        c.keys.key("short")
    with pytest.raises(InvalidSession):
        KeySchema("sess:", "bad tenant")


def test_create_pipelines_and_a_retried_exists_is_success() -> None:
    c = core()
    reqs, s = drive(c.create(subject="u", data={"a": 1}, sid=SID), [[1, packed(data={})]])
    (p,) = reqs
    assert isinstance(p, Pipeline) and p.retry is Retry.SAFE
    assert p.requests[0].args[:4] == (b"SESSION.CREATE", KEY, b"SUBJECT", b"u")
    assert s.data == {"a": 1} and s.sid == SID
    # the resend of a create whose first attempt landed
    _, s = drive(c.create(sid=SID), [[ErrorReply("EXISTS session already exists", retried=True), packed()]])
    assert s.version == 3
    with pytest.raises(SessionExists):
        drive(c.create(sid=SID), [[ErrorReply("EXISTS session already exists"), packed()]])


def test_retry_marks() -> None:
    c = core()
    reqs, _ = drive(c.set(SID, data={"a": 1}), [2])
    assert reqs[0].retry is Retry.NEVER  # an unversioned write may apply twice
    reqs, _ = drive(c.set(SID, data={"a": 1}, if_version=1), [2])
    assert reqs[0].retry is Retry.SAFE
    reqs, _ = drive(c.renew(SID, idle=5000), [5000])
    assert reqs[0].retry is Retry.NEVER  # RENEW IDLE bumps the version


def test_fanout_merges() -> None:
    c = core()
    reqs, sids = drive(c.list("u"), [[[b"sess:acme:" + b"B" * 20], [b"sess:acme:" + b"A" * 20]]])
    assert isinstance(reqs[0], FanOut)
    assert sids == ["A" * 20, "B" * 20]
    _, n = drive(c.count("u"), [[1, 2, 3]])
    assert n == 6
    with pytest.raises(ServerError):
        drive(c.configure_tenant(idle=1000), [[b"OK", ErrorReply("ERR boom")]])


class Cart(msgspec.Struct):
    items: list[int]
    theme: str = "light"


@dataclasses.dataclass
class CartDC:
    items: list[int]
    theme: str = "light"


class CartPD(pydantic.BaseModel):
    items: list[int]
    theme: str = "light"


@pytest.mark.parametrize("model", [Cart, CartDC, CartPD])
def test_schema_codec_validates_on_write_and_read(model: Any) -> None:
    codec: SchemaCodec[Any] = SchemaCodec(model)
    enc = codec.encode_data({"items": [1, 2]})
    assert set(enc) == {b"items", b"theme"}
    obj = codec.decode_data(enc)
    assert isinstance(obj, model) and obj.items == [1, 2] and obj.theme == "light"
    assert codec.decode_data(codec.encode_data(model(items=[3]))).items == [3]
    with pytest.raises(CodecError):
        codec.encode_fields({"items": "nope"})
    with pytest.raises(CodecError):
        codec.encode_fields({"unknown": 1})
    with pytest.raises(CodecError):  # a stored payload of the wrong type
        codec.decode_data({b"items": msgspec.msgpack.encode("x")})
    with pytest.raises(CodecError):  # a required field missing
        codec.decode_data({b"theme": msgspec.msgpack.encode("dark")})


def test_value_codecs_round_trip() -> None:
    for codec, v in [(MsgpackCodec(), {"a": [1, {"b": None}]}), (JsonCodec(), {"a": [1, "x"]})]:
        assert dict(codec.decode_data(codec.encode_data(v))) == v
    raw = RawCodec()
    assert dict(raw.decode_data(raw.encode_data({"a": b"\x00\xff", "b": "t"}))) == {"a": b"\x00\xff", "b": b"t"}
    with pytest.raises(CodecError):
        MsgpackCodec().encode_data({"a": object()})
    with pytest.raises(CodecError):
        JsonCodec().decode_data({b"a": b"{not json"})
    data = MsgpackCodec().decode_data({b"a": msgspec.msgpack.encode(1)})
    with pytest.raises(TypeError):
        data["b"] = 2  # type: ignore[index]


def session_raw() -> RawSession:
    r = decode_packed(packed(idle_deadline=2**53, grace_until=2**53))
    assert r is not None
    return r


def test_nearcache_race_guard_and_bounds() -> None:
    cache = NearCache(max_entries=2, max_bytes=10_000)
    c = core(cache)
    cache.set_enabled(True)
    # a read racing an invalidation of its key does not fill
    op = c.get(SID)
    req = next(op)
    assert isinstance(req, Command)
    cache.invalidate(KEY)  # the invalidation arrives while the read is in flight
    try:
        op.send(packed(idle_deadline=2**53, grace_until=2**53))
    except StopIteration:
        pass
    assert len(cache) == 0
    # without a race it fills, and the next read is a hit with no request
    drive(c.get(SID), [packed(idle_deadline=2**53, grace_until=2**53)])
    reqs, s = drive(c.get(SID), [])
    assert reqs == [] and s.cached
    # a touch hit sends one background renewal per touch-resolution
    cache.touch_resolution = 3600
    cache._entries[KEY].renewed_at -= 7200
    reqs, _ = drive(c.get(SID, touch=True), [None])
    assert len(reqs) == 1 and isinstance(reqs[0], Background)
    reqs, _ = drive(c.get(SID, touch=True), [])
    assert reqs == []
    # a write through the store drops the entry at once
    drive(c.set(SID, data={"x": 1}), [4])
    assert len(cache) == 0
    # the link going down empties the cache and refuses fills begun before
    token = cache.begin(KEY)
    cache.set_enabled(False)
    cache.set_enabled(True)
    s2 = core().session(SID, session_raw())
    assert not cache.fill(KEY, token, s2, 100)
    cache.end(KEY)
    # bounded by entries (LRU)
    for i in range(3):
        k = b"k%d" % i
        cache.fill(k, cache.begin(k), s2, 100)
        cache.end(k)
    assert len(cache) == 2 and cache.lookup(b"k0") is None
    # and by bytes
    cache.fill(b"big", cache.begin(b"big"), s2, 9_950)
    assert len(cache) == 1 and cache.nbytes == 9_950


def test_breaker_and_retry_policy() -> None:
    now = [0.0]
    states: list[str] = []
    b = CircuitBreaker(threshold=2, cooldown=1.0, clock=lambda: now[0], on_change=states.append)
    assert b.allow()
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 1.5
    assert b.allow() and b.state == "half_open"
    assert not b.allow()  # one probe at a time
    b.failure()
    assert b.state == "open"
    now[0] = 3.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and states == ["open", "half_open", "open", "half_open", "closed"]
    p = RetryPolicy(attempts=3, base=0.1, cap=0.15)
    assert p.delay(1, lambda: 1.0) == pytest.approx(0.1)
    assert p.delay(2, lambda: 1.0) == pytest.approx(0.15)
    assert p.delay(5, lambda: 0.5) == pytest.approx(0.075)


def _raise_from(filename: str) -> BaseException:
    """An AttributeError whose innermost frame is in ``filename``."""
    scope: dict[str, Any] = {}
    exec(compile("def f():\n    return None.feed\n", filename, "exec"), scope)
    try:
        scope["f"]()
    except AttributeError as e:
        return e
    raise AssertionError("no exception")


def test_a_fault_inside_redis_py_counts_as_a_lost_connection() -> None:
    from redis_session._driver import client_fault, is_transient

    inside = _raise_from(os.path.join(os.sep, "site-packages", "redis", "_parsers", "hiredis.py"))
    ours = _raise_from(os.path.join(os.sep, "src", "redis_session", "sync.py"))
    assert client_fault(inside) and is_transient(inside)
    assert not client_fault(ours) and not is_transient(ours)
    assert not client_fault(KeyboardInterrupt())
