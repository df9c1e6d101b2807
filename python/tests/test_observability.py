"""The optional exporters over the store's hooks, against a real server:
Prometheus metrics (`redis_session.prometheus`), OpenTelemetry spans
(`redis_session.tracing`, checked with the SDK's in-memory exporter) and
structured logs (`redis_session.logs`), and that no sid, cookie value, key,
subject or data value reaches any of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from sessionlib import free_port, wait_for

from redis_session import AsyncSessionStore, CircuitBreaker, Conflict, Revoked, SessionStore, StoreUnavailable
from redis_session.logs import SessionLogging
from redis_session.prometheus import PrometheusMetrics, pool_usage
from redis_session.tracing import COMMANDS, SessionTracing

prometheus_client = pytest.importorskip("prometheus_client")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

SECRET_DATA = "card-4111-1111"
SECRET_META = "10.9.8.7"
SUBJECT = "alice@example.com"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger, at every level, while the test runs."""
    h = Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(h)
    root.setLevel(logging.DEBUG)
    try:
        yield h.records
    finally:
        root.removeHandler(h)
        root.setLevel(old)


def spans_exporter() -> tuple[TracerProvider, InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exp))
    return tp, exp


def store_with_everything(server: Any, metrics: PrometheusMetrics, **kw: Any) -> SessionStore[Any]:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{server.port}/0", socket_timeout=1.0)
    store: SessionStore[Any] = SessionStore(
        client, tenant="acme", near_cache=True, hooks=[metrics.hooks("acme"), SessionLogging("acme")], **kw
    )
    assert store._tracker.wait_up(10)
    metrics.watch(store)
    return store


def workload(store: Any) -> list[str]:
    """create, read (miss then near-cache hits), write, conflict, revoke,
    read revoked; returns the sids used."""
    s = store.create(subject=SUBJECT, data={"card": SECRET_DATA}, meta={"ip": SECRET_META})
    other = store.create(subject=SUBJECT, data={"n": 1})
    wait_for(lambda: (g := store.get(s.sid)) is not None and g.cached, 5, what="the near-cache filled")
    for _ in range(5):
        assert store.get(s.sid).cached
    v = store.set(s.sid, data={"theme": SECRET_DATA + "-2"}, if_version=s.version)
    with pytest.raises(Conflict):
        store.set(s.sid, data={"theme": "x"}, if_version=s.version)
    assert store.revoke(other.sid, reason="logout")
    with pytest.raises(Revoked):
        store.get(other.sid, fresh=True)
    assert v == s.version + 1
    assert store.count(SUBJECT) == 1
    return [s.sid, other.sid]


def secrets_of(sids: list[str]) -> list[str]:
    out = [SECRET_DATA, SECRET_META, SUBJECT]
    for sid in sids:
        # the sid, what a cookie carries (the sid; frameworks may sign it),
        # and the key
        out += [sid, f"sess:acme:{sid}", sid[:16], sid[-16:]]
    return out


def test_prometheus_metrics(server: Any, backend_kind: str) -> None:
    reg = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry=reg)
    store = store_with_everything(server, metrics)
    try:
        sids = workload(store)

        def val(name: str, **labels: str) -> float | None:
            v: float | None = reg.get_sample_value(name, {"tenant": "acme", **labels})
            return v

        assert val("redis_session_client_ops_total", op="create", outcome="ok") == 2
        assert val("redis_session_client_ops_total", op="set", outcome="Conflict") == 1
        assert val("redis_session_client_errors_total", op="set", kind="Conflict") == 1
        assert val("redis_session_client_errors_total", op="get", kind="Revoked") == 1
        gets = val("redis_session_client_op_seconds_count", op="get")
        assert gets is not None and gets >= 2  # the miss(es) and the revoked read; hits are not calls
        assert (val("redis_session_client_op_seconds_sum", op="create") or 0) > 0
        hits = val("redis_session_client_near_cache_hits_total")
        assert hits is not None and hits >= 6
        assert (val("redis_session_client_near_cache_misses_total") or 0) >= 1
        wait_for(lambda: (g := store.get(sids[0])) is not None and g.cached, 5, what="the near-cache filled again")
        assert (val("redis_session_client_near_cache_entries") or 0) >= 1
        assert (val("redis_session_client_near_cache_bytes") or 0) > 0
        assert val("redis_session_client_near_cache_enabled") == 1
        # the set and the revoke dropped entries: invalidations arrive from the server
        wait_for(
            lambda: (val("redis_session_client_near_cache_invalidations_total") or 0) >= 1,
            5,
            what="an invalidation counted",
        )
        assert val("redis_session_client_breaker_state", state="closed") == 1
        assert val("redis_session_client_breaker_state", state="open") == 0
        assert val("redis_session_client_pool_in_use") == 0
        assert (val("redis_session_client_pool_connections") or 0) >= 1
        assert val("redis_session_client_info", backend=backend_kind) == 1  # what the automatic choice found
        text = prometheus_client.generate_latest(reg).decode()
        leaked = [x for x in secrets_of(sids) if x in text]
        assert not leaked, leaked
    finally:
        store.close()


def test_prometheus_breaker_and_errors_when_the_server_goes(server: Any) -> None:
    reg = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry=reg)
    client = redis.Redis(port=server.port, socket_timeout=0.5, socket_connect_timeout=0.5)
    store: SessionStore[Any] = SessionStore(
        client, tenant="acme", hooks=[metrics.hooks("acme")], breaker=CircuitBreaker(threshold=2, cooldown=30)
    )
    metrics.watch(store)
    try:
        sid = store.create(data={"a": 1}).sid
        server.stop()
        for _ in range(4):
            with pytest.raises(StoreUnavailable):
                store.get(sid)
        labels = {"tenant": "acme"}
        assert reg.get_sample_value("redis_session_client_breaker_state", {**labels, "state": "open"}) == 1
        assert reg.get_sample_value("redis_session_client_breaker_transitions_total", {**labels, "state": "open"}) == 1
        assert (
            reg.get_sample_value(
                "redis_session_client_errors_total", {**labels, "op": "get", "kind": "StoreUnavailable"}
            )
            == 4
        )
        assert (reg.get_sample_value("redis_session_client_retries_total", {**labels, "op": "Single"}) or 0) >= 0
    finally:
        store.close()


def checkout(pool: Any) -> Any:
    try:
        return pool.get_connection()  # redis-py >= 5.3
    except TypeError:
        return pool.get_connection("PING")


def test_pool_usage_counts_checked_out_connections(server: Any) -> None:
    pool: Any = redis.BlockingConnectionPool.from_url(f"redis://127.0.0.1:{server.port}/0", max_connections=4)
    client = redis.Redis(connection_pool=pool)
    client.ping()
    assert pool_usage(client) == (0, 1)
    c1 = checkout(pool)
    c2 = checkout(pool)
    assert pool_usage(client) == (2, 2)
    pool.release(c1)
    pool.release(c2)
    assert pool_usage(client) == (0, 2)
    plain = redis.Redis(port=server.port)
    plain.ping()
    c = checkout(plain.connection_pool)
    assert pool_usage(plain) == (1, 1)
    plain.connection_pool.release(c)
    assert pool_usage(plain) == (0, 1)
    assert pool_usage(None) == (0, 0)
    client.close()
    plain.close()

    async def aio() -> None:
        ac = aredis.Redis(port=server.port)
        await ac.ping()
        assert pool_usage(ac) == (0, 1)
        try:
            c = await ac.connection_pool.get_connection()  # redis-py >= 5.3
        except TypeError:
            c = await ac.connection_pool.get_connection("PING")
        assert pool_usage(ac) == (1, 1)
        await ac.connection_pool.release(c)
        assert pool_usage(ac) == (0, 1)
        await ac.aclose()

    asyncio.run(aio())


def test_prometheus_async_store(server: Any) -> None:
    reg = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry=reg)

    async def run() -> None:
        store: AsyncSessionStore[Any] = AsyncSessionStore(
            aredis.Redis(port=server.port), tenant="beta", hooks=[metrics.hooks("beta")]
        )
        metrics.watch(store)
        async with store:
            s = await store.create(data={"a": 1})
            await store.get(s.sid, touch=True)
            with pytest.raises(Conflict):
                await store.cas(s.sid, 99, {"a": 2})
            assert reg.get_sample_value("redis_session_client_pool_connections", {"tenant": "beta"}) == 1
        metrics.unwatch(store)

    asyncio.run(run())
    labels = {"tenant": "beta"}
    assert reg.get_sample_value("redis_session_client_op_seconds_count", {**labels, "op": "get"}) == 1
    assert reg.get_sample_value("redis_session_client_errors_total", {**labels, "op": "cas", "kind": "Conflict"}) == 1
    assert reg.get_sample_value("redis_session_client_pool_connections", labels) is None  # unwatched


def span_attrs(exp: InMemorySpanExporter) -> list[tuple[str, dict[str, Any], Any]]:
    return [(s.name, dict(s.attributes or {}), s.status.status_code) for s in exp.get_finished_spans()]


def test_spans_one_per_call_with_hashed_sid(server: Any, backend_kind: str) -> None:
    tp, exp = spans_exporter()
    tracing = SessionTracing(tp)
    reg = prometheus_client.CollectorRegistry()
    store = tracing.instrument(store_with_everything(server, PrometheusMetrics(registry=reg)))
    try:
        sids = workload(store)
        spans = span_attrs(exp)
        names = [n for n, _, _ in spans]
        assert names[:2] == ["session.create", "session.create"]
        assert names.count("session.get") >= 7 and "session.count" in names
        by_op: dict[str, list[dict[str, Any]]] = {}
        for n, a, st in spans:
            by_op.setdefault(a["redis_session.op"], []).append({**a, "_status": st})
            assert n == "session." + a["redis_session.op"]
            # the backend the automatic choice resolved to, from the first span on
            assert a["db.system"] == "redis" and a["redis_session.backend"] == backend_kind
            # the module's command, or the operation's name on the fallback
            assert a["db.operation.name"] == (COMMANDS[a["redis_session.op"]] if backend_kind == "module" else n[8:])
            assert a["redis_session.tenant"] == "acme"
        s_sid, other_sid = sids
        gets = by_op["get"]
        assert sum(g["redis_session.cache_hit"] for g in gets) >= 6
        assert any(not g["redis_session.cache_hit"] for g in gets if g["redis_session.outcome"] == "ok")
        assert all(g["redis_session.sid_hash"] in (tracing.sid_hash(s_sid), tracing.sid_hash(other_sid)) for g in gets)
        assert len(tracing.sid_hash(s_sid)) == 16 and tracing.sid_hash(s_sid) != tracing.sid_hash(other_sid)
        revoked = [g for g in gets if g["redis_session.outcome"] == "Revoked"]
        assert len(revoked) == 1 and revoked[0]["error.type"] == "Revoked"
        assert revoked[0]["_status"] == StatusCode.UNSET  # an answer, not a failure
        conflict = [x for x in by_op["set"] if x["redis_session.outcome"] == "Conflict"]
        assert len(conflict) == 1
        assert len(by_op["revoke"]) == 1
        assert "redis_session.sid_hash" not in by_op["count"][0]  # a subject is no sid, and is not recorded
        # nothing secret in any span: names, attributes, events
        blob = repr(
            [(s.name, dict(s.attributes or {}), [e.attributes for e in s.events]) for s in exp.get_finished_spans()]
        )
        leaked = [x for x in secrets_of(sids) if x in blob]
        assert not leaked, leaked
        # the same key gives the same hash in another process
        assert SessionTracing(tp, sid_key=b"k").sid_hash(s_sid) == SessionTracing(tp, sid_key=b"k").sid_hash(s_sid)
        # a failure to answer is an ERROR span
        exp.clear()
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.get(s_sid, fresh=True)
        ((n, a, st),) = span_attrs(exp)
        assert a["redis_session.outcome"] == "StoreUnavailable" and st == StatusCode.ERROR
    finally:
        store.close()


def test_span_backend_when_the_choice_could_not_be_made() -> None:
    """A store's first call makes the automatic choice: when it cannot reach
    Redis the span says ``auto`` (nothing was chosen). Once a call got
    through, spans name the backend found (test_spans_one_per_call_...)."""
    tp, exp = spans_exporter()
    port = free_port()  # nothing listens here yet
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    store = SessionTracing(tp).instrument(SessionStore(client, tenant="acme", breaker=False))
    try:
        with pytest.raises(StoreUnavailable):
            store.count()
        ((_, a, st),) = span_attrs(exp)
        assert a["redis_session.backend"] == "auto" and st == StatusCode.ERROR
        assert store.backend.name == "auto"
    finally:
        store.close()


def test_spans_async(server: Any) -> None:
    tp, exp = spans_exporter()
    tracing = SessionTracing(tp)

    async def run() -> list[str]:
        store = tracing.instrument(AsyncSessionStore(aredis.Redis(port=server.port), tenant="acme"))
        async with store:
            s = await store.create(data={"card": SECRET_DATA})
            got = await store.get(s.sid, touch=True)
            assert got is not None and got.data == {"card": SECRET_DATA}
            with pytest.raises(Conflict):
                await store.cas(s.sid, 99, {"x": 1})
            assert await store.get("A" * 22) is None
            return [s.sid]

    sids = asyncio.run(run())
    spans = span_attrs(exp)
    assert [n for n, _, _ in spans] == ["session.create", "session.get", "session.cas", "session.get"]
    assert [a["redis_session.outcome"] for _, a, _ in spans] == ["ok", "ok", "Conflict", "ok"]
    assert spans[1][1]["redis_session.cache_hit"] is False
    assert spans[1][1]["redis_session.sid_hash"] == tracing.sid_hash(sids[0])
    blob = repr([a for _, a, _ in spans])
    assert not [x for x in secrets_of(sids) if x in blob]


def test_logs_structured_and_never_secret(server: Any, records: list[logging.LogRecord]) -> None:
    reg = prometheus_client.CollectorRegistry()
    tp, _ = spans_exporter()
    store = SessionTracing(tp).instrument(
        store_with_everything(server, PrometheusMetrics(registry=reg), breaker=CircuitBreaker(threshold=2, cooldown=30))
    )
    try:
        sids = workload(store)
        server.stop()
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                store.get(sids[0], fresh=True)
    finally:
        store.close()
    ours = [r for r in records if r.name == "redis_session"]
    levels = {r.levelno for r in ours}
    assert {logging.DEBUG, logging.INFO, logging.WARNING} <= levels, levels
    calls = [r for r in ours if getattr(r, "session_event", None) == "call"]
    assert {(r.session_op, r.session_outcome) for r in calls} >= {  # type: ignore[attr-defined]
        ("create", "ok"),
        ("set", "Conflict"),
        ("get", "Revoked"),
        ("get", "StoreUnavailable"),
    }
    for r in calls:
        assert r.session_tenant == "acme" and isinstance(r.session_ms, float)  # type: ignore[attr-defined]
        want = {"ok": logging.DEBUG, "Conflict": logging.INFO, "Revoked": logging.INFO}.get(
            r.session_outcome,  # type: ignore[attr-defined]
            logging.WARNING,
        )
        assert r.levelno == want, (r.session_outcome, r.levelname)  # type: ignore[attr-defined]
    breaker = [r for r in ours if getattr(r, "session_event", None) == "breaker"]
    assert [(r.session_state, r.levelno) for r in breaker] == [("open", logging.WARNING)]  # type: ignore[attr-defined]
    # No record of any logger, at any level, holds a secret: message, args,
    # extra fields, exception text.
    fmt = logging.Formatter()
    leaks = []
    for r in records:
        blob = r.getMessage() + repr(r.__dict__) + (fmt.formatException(r.exc_info) if r.exc_info else "")
        leaks += [(r.name, r.levelname, x) for x in secrets_of(sids) if x in blob]
    assert not leaks, leaks
    assert len(records) >= len(ours) > 10
