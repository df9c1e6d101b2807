"""`SessionStore`: the synchronous driver of the store's operations."""

from __future__ import annotations

import builtins
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import redis
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

from ._driver import Options, _cmd, error_reply, is_sync_cluster, is_transient, slot_owners, unavailable
from .codecs import Codec, MsgpackCodec
from .core import StoreCore
from .errors import StoreUnavailable
from .fallback.auto import make_backend
from .metrics import Fanout, Hooks, Metrics
from .nearcache import NearCache
from .policy import CircuitBreaker, OnUnavailable, RetryPolicy
from .protocol import (
    Backend,
    Background,
    Command,
    FanOut,
    KeySchema,
    Op,
    Pipeline,
    Request,
    Retry,
    Script,
    Single,
)
from .types import Session, TenantSettings, Ttl

D = TypeVar("D")
T = TypeVar("T")

#: execute_command options: bulk strings as bytes, whatever the client decodes
_RAW: dict[str, Any] = {NEVER_DECODE: True}

__all__ = ["SessionStore"]


class SessionStore(Generic[D]):
    """A tenant's sessions in Redis, synchronously. Thread-safe.

    ``client`` is a `redis.Redis` or `redis.cluster.RedisCluster` (any
    ``decode_responses``: the store asks for raw replies). See the README
    for every option.
    """

    def __init__(
        self,
        client: Any,
        *,
        tenant: str,
        prefix: str = "sess:",
        codec: Codec[D] | None = None,
        backend: Backend | str | None = None,
        near_cache: bool | NearCache = False,
        read_from_replicas: bool = False,
        replica: Any = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | bool = True,
        on_unavailable: OnUnavailable | str = OnUnavailable.FAIL_CLOSED,
        hooks: Sequence[Hooks] = (),
        tracking_interval: float = 0.5,
    ) -> None:
        self._client = client
        self._replica = replica
        self._replica_refuses: set[bytes] = set()
        self._cluster = is_sync_cluster(client)
        self.metrics = Metrics()
        self._hooks = Fanout(self.metrics, hooks)
        if breaker is True:
            breaker = CircuitBreaker(on_change=self._hooks.on_breaker)
        elif isinstance(breaker, CircuitBreaker) and breaker._on_change is None:
            breaker._on_change = self._hooks.on_breaker
        self._opts = Options(
            retry=retry or RetryPolicy(),
            breaker=breaker or None,
            on_unavailable=OnUnavailable(on_unavailable),
            read_from_replicas=read_from_replicas,
        )
        cache = _make_cache(near_cache, self._opts.on_unavailable, self._hooks)
        if cache is not None:
            self.metrics.cache_counters = cache.counters
        keys = KeySchema(prefix, tenant)
        self._core: StoreCore[D] = StoreCore(
            make_backend(backend, prefix=prefix, cluster=self._cluster),
            codec if codec is not None else MsgpackCodec(),  # type: ignore[arg-type]
            keys,
            cache=cache,
            on_unavailable=self._opts.on_unavailable,
            hooks=self._hooks,
        )
        self._bg: _BackgroundSender | None = None
        self._bg_lock = threading.Lock()
        self._tracker: Any = None
        if cache is not None:
            from .tracking import Tracker

            self._tracker = Tracker.for_client(
                client, cache, [keys.tenant_prefix], hooks=self._hooks, interval=tracking_interval
            )
            self._tracker.start()

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        tenant: str,
        cluster: bool = False,
        socket_timeout: float = 1.0,
        socket_connect_timeout: float = 0.5,
        max_connections: int = 50,
        pool_timeout: float = 1.0,
        **kwargs: Any,
    ) -> SessionStore[Any]:
        """A store on a new client: a `BlockingConnectionPool` of
        ``max_connections`` (a caller waits at most ``pool_timeout`` s for a
        free connection), or a `RedisCluster` with ``cluster=True``.
        ``kwargs`` are the constructor's options."""
        if cluster:
            from redis.cluster import RedisCluster

            # the store alone decides what is resent: redis-py's own cluster
            # retries would resend writes that are not safe to repeat
            client: Any = RedisCluster.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
                max_connections=max_connections,
                cluster_error_retry_attempts=0,
            )
        else:
            pool = redis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=pool_timeout,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
            )
            client = redis.Redis(connection_pool=pool)
        store = cls(client, tenant=tenant, **kwargs)
        store._owns_client = True
        return store

    _owns_client = False
    _topology_at = 0.0
    #: least seconds between two slot-map refreshes before a fan-out (cluster)
    topology_refresh = 1.0

    @property
    def tenant(self) -> str:
        return self._core.tenant

    @property
    def near_cache(self) -> NearCache | None:
        return self._core.cache

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._opts.breaker

    @property
    def backend(self) -> Backend:
        return self._core.backend

    def close(self) -> None:
        """Stop the near-cache's connections and background sender; close the
        client if the store made it (`from_url`)."""
        if self._tracker is not None:
            self._tracker.stop()
        if self._bg is not None:
            self._bg.stop()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> SessionStore[D]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API -----------------------------------------------------------------------
    def create(
        self,
        *,
        subject: str = "",
        data: Any = None,
        meta: Mapping[str, str] | None = None,
        idle: int | None = None,
        absolute: int | None = None,
        grace: int | None = None,
        sid: str | None = None,
    ) -> Session[D]:
        """A new session with a fresh random sid (256 bits). Raises
        `SessionExists`, `TooBig`, `LimitExceeded`."""
        return self._run(
            "create",
            self._core.create(
                subject=subject, data=data, meta=meta, idle=idle, absolute=absolute, grace=grace, sid=sid
            ),
        )

    def get(
        self,
        sid: str,
        *,
        touch: bool = False,
        fields: Iterable[str] | None = None,
        nodata: bool = False,
        fresh: bool = False,
    ) -> Session[D] | None:
        """The session, None when missing. ``touch`` renews it; ``fresh``
        skips the near-cache. Raises `Revoked`."""
        core = self._core
        if fields is None and not nodata:
            cache = core.cache
            if cache is not None:
                if not fresh and type(sid) is str:
                    # near-cache hit: no generator, no round trip. Only a
                    # valid sid can be in the cache: the lookup needs no check
                    key = core.keys.tenant_prefix + sid.encode()
                    s, renew = cache.hit(key, touch)
                    if s is not None:
                        if renew:
                            self._background(core.backend.renewal(key))
                        return s
                    return self._run("get", core.get(sid, touch=touch, looked_up=True))
            else:
                # one command, no generator (see `StoreCore.get_request`)
                t0 = time.perf_counter()
                try:
                    req = core.get_request(sid, touch)
                    s = None if req is None else core.got(sid, self._attempts(req, None))
                except BaseException as e:
                    self._hooks.on_call("get", time.perf_counter() - t0, type(e).__name__)
                    raise
                if req is not None:
                    self._hooks.on_call("get", time.perf_counter() - t0, "ok")
                    return s
        return self._run("get", self._core.get(sid, touch=touch, fields=fields, nodata=nodata, fresh=fresh))

    def set(
        self,
        sid: str,
        *,
        data: Mapping[str, Any] | None = None,
        unset: Iterable[str] | None = None,
        meta: Mapping[str, str] | None = None,
        if_version: int | None = None,
    ) -> int | None:
        """Set/unset named fields and meta; the new version, None when missing.
        Raises `Conflict` (``if_version``), `TooBig`, `Revoked`."""
        return self._run("set", self._core.set(sid, data=data, unset=unset, meta=meta, if_version=if_version))

    def cas(self, sid: str, version: int, data: Any) -> int | None:
        """Replace the whole data if the version matches; raises `Conflict`."""
        return self._run("cas", self._core.cas(sid, version, data))

    def renew(self, sid: str, *, idle: int | None = None) -> int | None:
        """Slide the idle deadline (``idle`` also sets a new idle timeout);
        ms until it, None when missing."""
        return self._run("renew", self._core.renew(sid, idle=idle))

    def ttl(self, sid: str) -> Ttl | None:
        return self._run("ttl", self._core.ttl(sid))

    def revoke(self, sid: str, *, reason: str | None = None) -> bool:
        """Revoke; later reads raise `Revoked(reason)`. False when missing
        (or already revoked)."""
        return self._run("revoke", self._core.revoke(sid, reason=reason))

    def list(self, subject: str) -> list[str]:
        """The sids of the subject's live sessions (every primary), sorted."""
        return self._run("list", self._core.list(subject))

    def revoke_all(self, subject: str, *, except_sid: str | None = None, reason: str | None = None) -> int:
        """Revoke every session of the subject but ``except_sid``; how many."""
        return self._run("revoke_all", self._core.revoke_all(subject, except_sid=except_sid, reason=reason))

    def count(self, subject: str | None = None) -> int:
        """Live sessions of the tenant (or subject), all primaries added."""
        return self._run("count", self._core.count(subject))

    def configure_tenant(self, **settings: int | str) -> None:
        """``SESSION.TENANT SET`` on every primary: idle, absolute, grace,
        maxdata, maxpersubject, onlimit ("reject" | "evict-oldest")."""
        return self._run("configure_tenant", self._core.configure_tenant(**settings))

    def tenant_settings(self) -> TenantSettings | None:
        return self._run("tenant_settings", self._core.tenant_settings())

    def reset_tenant(self) -> bool:
        return self._run("reset_tenant", self._core.reset_tenant())

    # -- the driver -----------------------------------------------------------------------
    def _run(self, name: str, op: Op[T]) -> T:
        t0 = time.perf_counter()
        outcome = "ok"
        try:
            req = next(op)
            while True:
                try:
                    reply = self._execute(req)
                except StoreUnavailable as e:
                    req = op.throw(e)
                else:
                    req = op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException as e:
            outcome = type(e).__name__
            raise
        finally:
            self._hooks.on_call(name, time.perf_counter() - t0, outcome)

    def _execute(self, req: Request) -> Any:
        if isinstance(req, Background):
            self._background(req.request)
            return None
        if isinstance(req, FanOut):
            return self._fanout(req.request)
        return self._attempts(req, None)

    def _attempts(self, req: Single | Pipeline, node: Any) -> Any:
        retry_ok = req.retry is Retry.SAFE
        policy = self._opts.retry
        breaker = self._opts.breaker
        attempt = 0
        while True:
            if breaker is not None and not breaker.allow():
                raise StoreUnavailable("redis unavailable: circuit breaker open")
            try:
                reply = self._send(req, node, attempt > 0)
            except BaseException as e:
                if not is_transient(e):
                    raise
                if breaker is not None:
                    breaker.failure()
                attempt += 1
                if retry_ok and attempt < policy.attempts:
                    self._hooks.on_retry(type(req).__name__, attempt)
                    self._refresh_topology()
                    time.sleep(policy.delay(attempt))
                    continue
                raise unavailable(e) from e
            if breaker is not None:
                breaker.success()
            return reply

    def _refresh_topology(self) -> None:
        if self._cluster:
            try:
                self._client.nodes_manager.initialize()
            except Exception:
                pass

    def _fanout(self, req: Single) -> builtins.list[Any]:
        if not self._cluster:
            return [self._attempts(req, None)]
        # a failover may have changed the primaries without any MOVED telling
        # the client: refresh the slot map first, at most once a second
        now = time.monotonic()
        if now - self._topology_at > self.topology_refresh:
            self._topology_at = now
            self._refresh_topology()
        primaries = slot_owners(self._client)
        return [self._attempts(req, node) for node in primaries]

    def _target(self, req: Single, node: Any) -> dict[str, Any]:
        kw: dict[str, Any] = {NEVER_DECODE: True}
        if not self._cluster:
            return kw
        if node is not None:
            kw["target_nodes"] = node
        elif req.key is None:
            kw["target_nodes"] = self._client.get_random_node()
        elif self._to_replica(req):
            from redis.crc import key_slot

            kw["target_nodes"] = self._client.nodes_manager.get_node_from_slot(
                key_slot(req.key), read_from_replicas=True
            )
        return kw

    def _to_replica(self, req: Single) -> bool:
        # with a near-cache every read goes to the primary: a replica's lag
        # could slip a stale value into the cache past its invalidation
        return (
            req.readonly
            and self._opts.read_from_replicas
            and self._core.cache is None
            and (self._replica is not None or self._cluster)
            and _name(req) not in self._replica_refuses
        )

    def _client_for(self, req: Single) -> Any:
        if self._replica is not None and self._to_replica(req):
            return self._replica
        return self._client

    def _send(self, req: Single | Pipeline, node: Any, retried: bool) -> Any:
        if isinstance(req, Pipeline):
            return self._send_pipeline(req, retried)
        if self._cluster:
            client = self._client
            kw = self._target(req, node)
            args = _cmd(req.args) if isinstance(req, Command) else ()
        else:
            client = self._client_for(req) if self._opts.read_from_replicas else self._client
            kw = _RAW
            args = req.args if isinstance(req, Command) else ()
        try:
            if isinstance(req, Command):
                return client.execute_command(*args, **kw)
            try:
                # a replica (a cluster replica above all) runs only commands
                # flagged read-only: EVALSHA_RO / EVAL_RO (Redis 7.0+)
                ro = "_RO" if self._to_replica(req) else ""
                sha, src = req.script.sha, req.script.source
                return client.execute_command("EVALSHA" + ro, sha, len(req.keys), *req.keys, *req.args, **kw)
            except NoScriptError:
                return client.execute_command("EVAL" + ro, src, len(req.keys), *req.keys, *req.args, **kw)
        except ReadOnlyError:
            if not self._to_replica(req):
                raise
            # a module build whose reads are flagged as writes: its replicas
            # refuse them; read from the primary from now on
            self._replica_refuses.add(_name(req))
            return self._send(req, node, retried)
        except ResponseError as e:
            if is_transient(e):
                raise
            return error_reply(e, retried)

    def _send_pipeline(self, req: Pipeline, retried: bool) -> builtins.list[Any]:
        pipe = self._client.pipeline() if self._cluster else self._client.pipeline(transaction=False)
        for r in req.requests:
            if isinstance(r, Command):
                pipe.execute_command(*_cmd(r.args), **{NEVER_DECODE: True})
            else:
                pipe.execute_command("EVALSHA", r.script.sha, len(r.keys), *r.keys, *r.args, **{NEVER_DECODE: True})
        results = pipe.execute(raise_on_error=False)
        out: builtins.list[Any] = []
        for r, res in zip(req.requests, results, strict=True):
            if isinstance(res, NoScriptError) and isinstance(r, Script):
                # not run: safe to send on its own
                res = self._send(r, None, retried)
            if isinstance(res, BaseException):
                if is_transient(res) or not isinstance(res, ResponseError):
                    raise res
                res = error_reply(res, retried)
            out.append(res)
        return out

    def _background(self, req: Single) -> None:
        if self._bg is None:
            with self._bg_lock:
                if self._bg is None:
                    self._bg = _BackgroundSender(self, self._opts.background_queue)
        self._bg.submit(req)


class _BackgroundSender:
    """One daemon thread sending fire-and-forget requests (near-cache renewals).
    A full queue drops the request (counted): a renewal is an optimisation."""

    def __init__(self, store: SessionStore[Any], size: int) -> None:
        self._store = store
        self._q: queue.Queue[Single | None] = queue.Queue(maxsize=size)
        self._t = threading.Thread(target=self._loop, name="redis-session-bg", daemon=True)
        self._t.start()

    def submit(self, req: Single) -> None:
        try:
            self._q.put_nowait(req)
        except queue.Full:
            self._store._hooks.on_cache("renewal_dropped")

    def stop(self) -> None:
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        self._t.join(timeout=2)

    def _loop(self) -> None:
        while True:
            req = self._q.get()
            if req is None:
                return
            breaker = self._store._opts.breaker
            if breaker is not None and breaker.state == CircuitBreaker.OPEN:
                continue
            try:
                self._store._send(req, None, False)
            except Exception:
                self._store._hooks.on_cache("renewal_failed")


def _make_cache(near_cache: bool | NearCache, policy: OnUnavailable, hooks: Fanout) -> NearCache | None:
    if near_cache is False:
        return None
    if near_cache is True:
        near_cache = NearCache()
    if not near_cache.has_listener():
        near_cache.listen(hooks.on_cache)
    if policy is OnUnavailable.SERVE_CACHED:
        near_cache.keep_on_loss = True
    return near_cache


def _name(req: Single) -> bytes:
    if isinstance(req, Command):
        a = req.args[0]
        return a if isinstance(a, bytes) else str(a).encode()
    return req.script.sha.encode()
