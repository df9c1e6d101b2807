"""Prometheus metrics of the stores in this process (optional extra:
``pip install 'redis-session[prometheus]'``, which pulls ``prometheus_client``).

::

    from redis_session.prometheus import PrometheusMetrics

    metrics = PrometheusMetrics()                  # once per process (default registry)
    store = SessionStore.from_url(url, tenant="acme", hooks=[metrics.hooks("acme")])
    metrics.watch(store)                           # near-cache, breaker and pool gauges

Every series carries the store's ``tenant``; none carries a sid, a key or
data. Names (``redis_session_client_`` prefix, docs/operations.md):

- ``op_seconds`` (histogram; ``op``): time of each store call that ran its
  operation (a near-cache hit does not: it is counted as a cache hit);
- ``ops_total`` (``op``, ``outcome``: ``ok`` or the exception's class name)
  and ``errors_total`` (``op``, ``kind``: the exception's class name);
- ``retries_total`` (``op``): requests resent after a connection error;
- ``near_cache_hits_total``, ``near_cache_misses_total``,
  ``near_cache_invalidations_total``, ``near_cache_evictions_total``,
  ``near_cache_flushes_total``, ``near_cache_entries``, ``near_cache_bytes``,
  ``near_cache_enabled`` (the invalidation link is up);
- ``breaker_state`` (``state``: closed, open, half_open; 1 for the current
  one) and ``breaker_transitions_total`` (``state``);
- ``pool_in_use`` / ``pool_connections``: connections of the store's
  client checked out / created (all nodes of a cluster client);
- ``info`` (``backend``): 1, naming the store's backend.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .metrics import BaseHooks

__all__ = ["PrometheusMetrics", "pool_usage"]

#: seconds; a store call is ~100 µs on a LAN, ms under load, 1 s at a timeout
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BREAKER_STATES = ("closed", "open", "half_open")
PREFIX = "redis_session_client"


class _StoreHooks(BaseHooks):
    """The hooks of one store: its tenant as a label on every event."""

    def __init__(self, owner: PrometheusMetrics, tenant: str) -> None:
        self._owner = owner
        self.tenant = tenant

    def on_call(self, op: str, seconds: float, outcome: str) -> None:
        o = self._owner
        o.op_seconds.labels(self.tenant, op).observe(seconds)
        o.ops_total.labels(self.tenant, op, outcome).inc()
        if outcome != "ok":
            o.errors_total.labels(self.tenant, op, outcome).inc()

    def on_retry(self, op: str, attempt: int) -> None:
        self._owner.retries_total.labels(self.tenant, op).inc()


class PrometheusMetrics:
    """Metrics of any number of stores, registered once in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        reg = registry
        self.op_seconds = Histogram(
            f"{PREFIX}_op_seconds",
            "Time of a store call that ran its operation (near-cache hits excluded).",
            ["tenant", "op"],
            buckets=BUCKETS,
            registry=reg,
        )
        self.ops_total = Counter(
            f"{PREFIX}_ops",
            "Store calls that ran their operation, by outcome.",
            ["tenant", "op", "outcome"],
            registry=reg,
        )
        self.errors_total = Counter(
            f"{PREFIX}_errors",
            "Store calls that raised, by exception class.",
            ["tenant", "op", "kind"],
            registry=reg,
        )
        self.retries_total = Counter(
            f"{PREFIX}_retries", "Requests resent after a connection error.", ["tenant", "op"], registry=reg
        )
        self._lock = threading.Lock()
        self._stores: list[tuple[Any, Any]] = []
        if reg is not None:
            reg.register(_StoreCollector(self))

    def hooks(self, tenant: str) -> BaseHooks:
        """The hooks to pass to a store of ``tenant`` (``hooks=[...]``)."""
        return _StoreHooks(self, tenant)

    def watch(self, store: Any, client: Any = None) -> None:
        """Export ``store``'s near-cache, breaker and pool state on every
        scrape. ``client``: the redis-py client whose pool to report
        (default: the one the store was built with)."""
        with self._lock:
            self._stores.append((store, client if client is not None else getattr(store, "_client", None)))

    def unwatch(self, store: Any) -> None:
        with self._lock:
            self._stores = [(s, c) for s, c in self._stores if s is not store]

    def _watched(self) -> list[tuple[Any, Any]]:
        with self._lock:
            return list(self._stores)


def pool_usage(client: Any) -> tuple[int, int]:
    """(connections checked out, connections created) of a redis-py client's
    pool(s): `ConnectionPool`, `BlockingConnectionPool`, sync or asyncio,
    and every node of a cluster client. Best effort: pools it does not know
    count as (0, 0)."""
    if client is None:
        return 0, 0
    pools: list[Any] = []
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        pools.append(pool)
    nodes = getattr(client, "get_nodes", None)
    if pool is None and callable(nodes):
        for node in nodes():
            rc = getattr(node, "redis_connection", None)
            p = getattr(rc, "connection_pool", None) if rc is not None else None
            if p is not None:
                pools.append(p)
            elif hasattr(node, "_connections"):  # asyncio cluster node: its own pool
                pools.append(node)
    in_use = created = 0
    for p in pools:
        u, c = _one_pool(p)
        in_use += u
        created += c
    return in_use, created


def _one_pool(p: Any) -> tuple[int, int]:
    if hasattr(p, "_in_use_connections"):  # ConnectionPool (sync and asyncio)
        used = len(p._in_use_connections)
        return used, used + len(getattr(p, "_available_connections", ()))
    if hasattr(p, "_connections") and hasattr(p, "pool"):  # sync BlockingConnectionPool
        conns = len(p._connections)
        idle = sum(1 for c in list(p.pool.queue) if c is not None)
        return conns - idle, conns
    if hasattr(p, "_connections") and hasattr(p, "_free"):  # asyncio ClusterNode
        conns = len(p._connections)
        return conns - len(p._free), conns
    return 0, 0


class _StoreCollector(Collector):
    def __init__(self, owner: PrometheusMetrics) -> None:
        self._owner = owner

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the families depend on the watched stores

    def collect(self) -> Iterator[Metric]:
        def counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
            return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["tenant", *(labels or [])])

        def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["tenant", *(labels or [])])

        hits = counter("near_cache_hits", "Reads served by the near-cache.")
        misses = counter("near_cache_misses", "Near-cache look-ups that went to Redis.")
        inval = counter("near_cache_invalidations", "Entries dropped on the server's invalidation.")
        evict = counter("near_cache_evictions", "Entries dropped for room.")
        flush = counter("near_cache_flushes", "Whole-cache flushes (invalidation link lost or reset).")
        entries = gauge("near_cache_entries", "Sessions held by the near-cache.")
        nbytes = gauge("near_cache_bytes", "Bytes held by the near-cache.")
        enabled = gauge("near_cache_enabled", "1 while the near-cache serves reads (invalidation link up).")
        breaker = gauge("breaker_state", "1 for the circuit breaker's current state.", ["state"])
        transitions = counter("breaker_transitions", "Circuit breaker state changes.", ["state"])
        in_use = gauge("pool_in_use", "Connections of the store's client checked out now.")
        conns = gauge("pool_connections", "Connections of the store's client created.")
        info = gauge("info", "The store's backend.", ["backend"])
        for store, client in self._owner._watched():
            t = str(store.tenant)
            snap = store.metrics.snapshot()
            cache = snap["cache"]
            if store.near_cache is not None:
                hits.add_metric([t], cache.get("hits", 0))
                misses.add_metric([t], cache.get("misses", 0))
                entries.add_metric([t], cache.get("entries", 0))
                nbytes.add_metric([t], cache.get("bytes", 0))
                enabled.add_metric([t], cache.get("enabled", 0))
                inval.add_metric([t], cache.get("invalidation", 0))
                evict.add_metric([t], cache.get("eviction", 0))
                flush.add_metric([t], cache.get("flush", 0))
            b = snap["breaker"]
            if store.breaker is not None:
                for s in BREAKER_STATES:
                    breaker.add_metric([t, s], 1.0 if b["state"] == s else 0.0)
                    transitions.add_metric([t, s], b["transitions"].get(s, 0))
            used, created = pool_usage(client)
            in_use.add_metric([t], used)
            conns.add_metric([t], created)
            info.add_metric([t, str(getattr(store.backend, "name", "unknown"))], 1.0)
        yield from (
            hits,
            misses,
            inval,
            evict,
            flush,
            entries,
            nbytes,
            enabled,
            breaker,
            transitions,
            in_use,
            conns,
            info,
        )
