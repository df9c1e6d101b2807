"""Routing rings (SPEC §8) from Python: which application node serves a session.

    router = Router(store, ring="ring:web", node="app-1", load=lambda: inflight)
    node = router.route(sid)              # the same answer SESSION.ROUTE gives
    router.drain("app-2"); router.down("app-3")

`Router` reads the ring once with a tracked read (``CLIENT TRACKING`` on a
connection of its own, invalidations redirected to a second one), keeps it
until Redis says the ring key changed, and computes routes locally with the
module's algorithm (README "Routing rings"; `RingSnapshot` is the pure part,
checked against tests/vectors/route.json). Given ``node`` and ``load``, a
daemon thread reports this node's load with ``SESSION.RING.LOAD`` every
``interval`` seconds.

`RouteCookie` signs the routing cookie (``route=<node>.<mac>``) that a proxy
uses to pin a browser to its node; `RouteCookieMiddleware` sets it on WSGI
responses when a session's node is new or changed.

Needs the ``xxhash`` package (``pip install redis-session[routing]``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from .errors import PermissionDenied, ServerError, SessionError, StoreUnavailable

ID_SEED = 0x524F555445
NODE_SEED = 0x4E4F4445
_M32 = 0xFFFFFFFF
_TWO32 = 4294967296.0
CHANNEL = b"__redis__:invalidate"


def _xxh3(data: bytes, seed: int) -> int:
    try:
        import xxhash
    except ImportError as e:  # pragma: no cover - the extra is missing
        raise SessionError("routing needs the xxhash package: pip install 'redis-session[routing]'") from e
    return int(xxhash.xxh3_64_intdigest(data, seed))


def fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finalizer."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


def id_hash(id_: bytes) -> int:
    """The low 32 bits of XXH3-64(id, seed ID_SEED)."""
    return _xxh3(id_, ID_SEED) & _M32


def node_hash(name: bytes) -> int:
    """The low 32 bits of XXH3-64(name, seed NODE_SEED)."""
    return _xxh3(name, NODE_SEED) & _M32


def rank_key(v: int, weight: int) -> float:
    """A node's rendezvous key for one id: smaller comes first."""
    return -math.log((v + 1) / _TWO32) / weight


def _b(x: str | bytes) -> bytes:
    return x.encode() if isinstance(x, str) else x


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, (bytes, bytearray)) else str(x)


@dataclass(frozen=True)
class RingNode:
    name: str
    weight: int
    state: str  # "up", "down" or "drain"
    load: int
    load_age_ms: int  # -1: never reported


class RingSnapshot:
    """A ring as `SESSION.RING.GET` answered it, read at ``read_at`` (a
    ``time.monotonic()`` value). Pure: no I/O, safe to share between threads."""

    def __init__(
        self,
        version: int,
        balance: str,
        loadttl: int,
        nodes: Iterable[RingNode],
        read_at: float | None = None,
    ) -> None:
        self.version = version
        self.balance = balance
        self.balance_milli = _balance_milli(balance)
        self.loadttl = loadttl
        self.nodes = sorted(nodes, key=lambda n: n.name.encode())
        self.read_at = time.monotonic() if read_at is None else read_at
        self._seeds = [node_hash(n.name.encode()) for n in self.nodes]
        self._index = {n.name: i for i, n in enumerate(self.nodes)}

    @classmethod
    def from_reply(cls, reply: Any, read_at: float | None = None) -> RingSnapshot:
        d = _pairs(reply)
        nodes = []
        for name, m in _pairs(d["nodes"]).items():
            f = _pairs(m)
            nodes.append(
                RingNode(
                    name=name,
                    weight=int(f["weight"]),
                    state=_s(f["state"]),
                    load=int(f["load"]),
                    load_age_ms=int(f["load_age_ms"]),
                )
            )
        return cls(int(d["version"]), _s(d["balance"]), int(d["loadttl"]), nodes, read_at)

    # -- the algorithm ---------------------------------------------------------------------
    def _ages(self, now: float | None) -> list[int]:
        """Each node's load age in ms at ``now`` (monotonic seconds); -1 when never reported."""
        now = time.monotonic() if now is None else now
        later = max(0, round((now - self.read_at) * 1000))
        return [-1 if n.load_age_ms < 0 else n.load_age_ms + later for n in self.nodes]

    def _over(self, now: float | None) -> tuple[list[bool], bool]:
        """Per node: above c x the weighted mean of the fresh UP loads; and
        whether some UP node is not (so the over ones are skipped)."""
        ages = self._ages(now)
        fresh = [0 <= a <= self.loadttl for a in ages]
        total = sum(n.load for n, f in zip(self.nodes, fresh, strict=True) if f and n.state == "up")
        wsum = sum(n.weight for n, f in zip(self.nodes, fresh, strict=True) if f and n.state == "up")
        c = self.balance_milli
        over = [f and n.load * 1000 * wsum > c * total * n.weight for n, f in zip(self.nodes, fresh, strict=True)]
        any_under = any(n.state == "up" and not o for n, o in zip(self.nodes, over, strict=True))
        return over, any_under

    def preference(self, id_: str | bytes) -> list[str]:
        """The id's full preference order, ignoring states and loads."""
        h = id_hash(_b(id_))
        ranked = []
        for i, (n, s) in enumerate(zip(self.nodes, self._seeds, strict=True)):
            v = fmix32(h ^ s)
            ranked.append((rank_key(v, n.weight), -v, i))
        ranked.sort()
        return [self.nodes[i].name for _, _, i in ranked]

    def route_count(
        self, id_: str | bytes, count: int, sticky: str | None = None, now: float | None = None
    ) -> list[str]:
        """Up to ``count`` distinct nodes: the kept sticky node, then the
        eligible nodes in preference order, then UP nodes skipped for their load."""
        over, any_under = self._over(now)

        def skipped(i: int) -> bool:
            return any_under and over[i]

        out: list[str] = []
        if sticky is not None and sticky in self._index:
            i = self._index[sticky]
            if self.nodes[i].state in ("up", "drain") and not skipped(i):
                out.append(sticky)
        order = self.preference(id_)
        up = [n for n in order if self.nodes[self._index[n]].state == "up"]
        firsts = [n for n in up if not skipped(self._index[n])]
        seconds = [n for n in up if skipped(self._index[n])]
        for n in firsts + seconds:
            if len(out) >= count:
                break
            if n not in out:
                out.append(n)
        return out[:count]

    def route(self, id_: str | bytes, sticky: str | None = None, now: float | None = None) -> str | None:
        """The node for ``id_`` (``SESSION.ROUTE``), or None when no node is UP."""
        got = self.route_count(id_, 1, sticky, now)
        return got[0] if got else None


def _balance_milli(s: str) -> int:
    whole, _, frac = s.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3] or "0")


def _pairs(v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        return {_s(k): x for k, x in v.items()}
    return {_s(v[i]): v[i + 1] for i in range(0, len(v), 2)}


def _wrap(e: Exception) -> SessionError:
    if isinstance(e, (redis.ConnectionError, redis.TimeoutError)):
        return StoreUnavailable(str(e))
    if str(e).startswith("NOPERM"):
        return PermissionDenied(str(e))
    return ServerError(str(e))


class Router:
    """Routes ids to the nodes of one ring, locally, with the module's answer.

    ``store_or_client`` is a `SessionStore` / `AsyncSessionStore` (its
    Redis client is used) or a `redis.Redis` / `redis.cluster.RedisCluster`.
    Only `SessionError` subclasses escape (`StoreUnavailable` when Redis
    cannot be reached and no ring was ever read).
    """

    def __init__(
        self,
        store_or_client: Any,
        ring: str = "ring:web",
        *,
        node: str | None = None,
        load: Callable[[], int] | None = None,
        interval: float = 1.0,
        refresh: float = 30.0,
    ) -> None:
        client = getattr(store_or_client, "_client", store_or_client)
        self.ring = ring
        self.node = node
        self._load = load
        self._interval = interval
        self._refresh = refresh
        kw: dict[str, Any]
        if hasattr(client, "get_node_from_key"):  # a cluster client: the ring's primary
            n = client.get_node_from_key(ring)
            kw = dict(n.redis_connection.connection_pool.connection_kwargs)
        else:
            kw = dict(client.connection_pool.connection_kwargs)
        for k in ("protocol", "decode_responses", "parser_class", "encoding", "encoding_errors"):
            kw.pop(k, None)
        kw.setdefault("socket_timeout", 2.0)
        kw.setdefault("socket_connect_timeout", 1.0)
        self._kw = kw
        self._lock = threading.Lock()
        self._inv_lock = threading.Lock()
        self._snap: RingSnapshot | None = None
        self._stale = True
        self._read_at = 0.0
        self._inv: Any = None
        self._trk: Any = None
        self._cmd: Any = None
        self._stop = threading.Event()
        self.invalidations = 0
        self.reads = 0
        try:
            self._open()
            self._read()
        except SessionError:
            self._close()
        self._thread = threading.Thread(target=self._loop, name=f"router:{ring}", daemon=True)
        self._thread.start()

    # -- public API ------------------------------------------------------------------------
    def snapshot(self) -> RingSnapshot | None:
        """The ring as last read (None: missing or never read), re-read
        first when Redis has invalidated it."""
        self._drain()
        with self._lock:
            if not self._stale and self._snap is not None:
                return self._snap
        try:
            return self._read()
        except SessionError:
            with self._lock:
                if self._snap is not None:
                    return self._snap  # serve the last ring while Redis is away
            raise

    def route(self, sid: str | bytes, sticky: str | None = None) -> str | None:
        """The node for ``sid`` (None when the ring is missing or no node is UP)."""
        snap = self.snapshot()
        return None if snap is None else snap.route(sid, sticky)

    def route_count(self, sid: str | bytes, count: int, sticky: str | None = None) -> list[str]:
        snap = self.snapshot()
        return [] if snap is None else snap.route_count(sid, count, sticky)

    def nodes(self) -> dict[str, RingNode]:
        snap = self.snapshot()
        return {} if snap is None else {n.name: n for n in snap.nodes}

    def drain(self, node: str) -> int | None:
        """Sets ``node`` to DRAIN: it takes no new ids, keeps its STICKY ones."""
        return self._node(node, "DRAIN")

    def down(self, node: str) -> int | None:
        """Sets ``node`` to DOWN: its ids move to their next node."""
        return self._node(node, "DOWN")

    def up(self, node: str, weight: int | None = None) -> int | None:
        """Sets ``node`` UP (and its weight: a staged rollout raises it step by step)."""
        return self._node(node, "UP", weight)

    def report_load(self, value: int) -> None:
        """Reports this router's node's load now (the thread does it every ``interval``)."""
        if self.node is None:
            raise SessionError("Router(node=...) names the node whose load is reported")
        self._call("SESSION.RING.LOAD", self.ring, self.node, int(value))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the link ------------------------------------------------------------------------
    def _new(self) -> Any:
        cls: Any = redis.Connection
        c = cls(**self._kw)
        c.connect()
        return c

    def _open(self) -> None:
        try:
            self._inv = self._new()
            self._inv.send_command("CLIENT", "ID")
            cid = self._inv.read_response()
            self._inv.send_command("SUBSCRIBE", CHANNEL)
            self._inv.read_response()
            self._trk = self._new()
            self._trk.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", cid)
            self._trk.read_response()
            self._cmd = self._new()
        except (redis.RedisError, OSError) as e:
            self._close()
            raise _wrap(e) from e

    def _close(self) -> None:
        for c in (self._inv, self._trk, self._cmd):
            if c is not None:
                try:
                    c.disconnect()
                except Exception:
                    pass
        self._inv = self._trk = self._cmd = None
        with self._lock:
            self._stale = True

    def _read(self) -> RingSnapshot | None:
        """A tracked read of the ring (the server invalidates it on any change)."""
        with self._lock:
            if self._trk is None:
                raise StoreUnavailable("no link to the ring's server")
            try:
                self._trk.send_command("SESSION.RING.GET", self.ring)
                reply = self._trk.read_response(disable_decoding=True)
            except (redis.RedisError, OSError) as e:
                raise _wrap(e) from e
            self.reads += 1
            self._snap = None if reply is None else RingSnapshot.from_reply(reply)
            self._stale = False
            self._read_at = time.monotonic()
            return self._snap

    def _call(self, *args: Any) -> Any:
        with self._lock:
            if self._cmd is None:
                raise StoreUnavailable("no link to the ring's server")
            try:
                self._cmd.send_command(*args)
                return self._cmd.read_response(disable_decoding=True)
            except (redis.RedisError, OSError) as e:
                raise _wrap(e) from e

    def _node(self, node: str, state: str, weight: int | None = None) -> int | None:
        args: list[Any] = ["SESSION.RING.NODE", self.ring, node, state]
        if weight is not None:
            args += ["WEIGHT", weight]
        v = self._call(*args)
        return None if v is None else int(v)

    def _drain(self) -> None:
        """Takes the invalidations Redis has sent (non-blocking)."""
        with self._inv_lock:
            inv = self._inv
            if inv is None:
                return
            try:
                while inv.can_read(timeout=0):
                    msg = inv.read_response(disable_decoding=True)
                    if isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message":
                        keys = msg[2]
                        if keys is None or self.ring.encode() in list(keys):
                            self.invalidations += 1
                            with self._lock:
                                self._stale = True
            except (redis.RedisError, OSError):
                with self._lock:
                    self._stale = True

    def _loop(self) -> None:
        next_load = 0.0
        while not self._stop.is_set():
            try:
                if self._inv is None:
                    self._open()
                    self._read()
                self._drain()
                if self._trk is not None:
                    with self._lock:
                        self._trk.send_command("PING")
                        self._trk.read_response()
                if time.monotonic() - self._read_at > self._refresh:
                    self._read()
                if self._load is not None and self.node is not None and time.monotonic() >= next_load:
                    next_load = time.monotonic() + self._interval
                    self._call("SESSION.RING.LOAD", self.ring, self.node, int(self._load()))
            except (SessionError, redis.RedisError, OSError):
                self._close()
            except Exception:  # a load callback's own error: keep routing
                pass
            self._stop.wait(min(self._interval, 0.2))


class RouteCookie:
    """The signed routing cookie: ``route=<node>.<mac>``, HttpOnly.

    The mac is HMAC-SHA256(secret, node), URL-safe base64, 22 characters:
    a client cannot name a node it was not given. A proxy reads the node
    before the dot (ops/haproxy); the application verifies the mac before
    it passes the node as STICKY."""

    def __init__(self, secret: bytes, name: str = "route", *, secure: bool = True, path: str = "/") -> None:
        if len(secret) < 16:
            raise ValueError("the cookie secret needs at least 16 bytes")
        self.secret = secret
        self.name = name
        self.secure = secure
        self.path = path

    def _mac(self, node: str) -> str:
        d = hmac.new(self.secret, node.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(d).decode()[:22]

    def value(self, node: str) -> str:
        return f"{node}.{self._mac(node)}"

    def verify(self, value: str | None) -> str | None:
        """The node a cookie value names, if its mac is right."""
        if not value or "." not in value:
            return None
        node, _, mac = value.rpartition(".")
        return node if node and hmac.compare_digest(mac, self._mac(node)) else None

    def header(self, node: str) -> str:
        """The Set-Cookie header value for ``node``."""
        parts = [f"{self.name}={self.value(node)}", f"Path={self.path}", "HttpOnly", "SameSite=Lax"]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def decide(self, router: Router, sid: str, cookie_value: str | None) -> tuple[str | None, str | None]:
        """(node, Set-Cookie value or None): the node for ``sid`` keeping the
        cookie's node while the ring allows (STICKY), and a new cookie when
        the node is new or changed."""
        had = self.verify(cookie_value)
        node = router.route(sid, sticky=had)
        if node is None or node == had:
            return node, None
        return node, self.header(node)


def _cookie(environ: Mapping[str, Any], name: str) -> str | None:
    for part in str(environ.get("HTTP_COOKIE", "")).split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


class RouteCookieMiddleware:
    """WSGI middleware: after the app answers, sets the routing cookie when
    the request's session (``sid_of(environ)``, evaluated after the app ran,
    so a session created by this request counts) has a new or changed node.
    The chosen node is also left in ``environ["redis_session.node"]``."""

    def __init__(
        self,
        app: Callable[..., Any],
        router: Router,
        cookie: RouteCookie,
        sid_of: Callable[[Mapping[str, Any]], str | None],
    ) -> None:
        self.app = app
        self.router = router
        self.cookie = cookie
        self.sid_of = sid_of

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            sid = self.sid_of(environ)
            if sid:
                try:
                    node, set_cookie = self.cookie.decide(self.router, sid, _cookie(environ, self.cookie.name))
                except SessionError:
                    node, set_cookie = None, None
                environ["redis_session.node"] = node
                if set_cookie:
                    headers = [*headers, ("Set-Cookie", set_cookie)]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return self.app(environ, start)
