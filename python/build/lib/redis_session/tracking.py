"""The near-cache's invalidation link: Redis client-side caching in BCAST mode.

For every primary, a dedicated pair of RESP2 connections (so it works with
any client protocol, sync or asyncio, on every supported server):

- ``inv`` runs ``CLIENT ID`` and ``SUBSCRIBE __redis__:invalidate``;
- ``trk`` runs ``CLIENT TRACKING ON REDIRECT <inv id> BCAST PREFIX <prefix><tenant>:``.

From then on the server sends the name of every key under the prefix that
changes (a write through any client, a revoke, an expiry, an eviction, a
DEL) to ``inv``; a flush sends nil (everything). BCAST needs no tracked read,
so the store's ordinary pooled connections serve the reads.

One daemon thread per store owns the pairs. Every ``interval`` seconds it
pings ``trk`` (on a cluster it also checks each node is still a primary
and that the set of primaries has not changed). Any failure turns the cache
off (emptying it) until the pairs are back; turning it on empties it again,
since invalidations may have been missed in between.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from ._driver import is_async_cluster, is_sync_cluster, pool_kwargs
from .metrics import Fanout
from .nearcache import NearCache

Addr = tuple[str, int]

CHANNEL = b"__redis__:invalidate"


class _Link:
    """The pair of connections to one node."""

    def __init__(self, kwargs: dict[str, Any], prefixes: Sequence[bytes]) -> None:
        self.kwargs = kwargs
        self.prefixes = prefixes
        self.inv: Any = None
        self.trk: Any = None

    def open(self) -> None:
        kw = dict(self.kwargs)
        kw.setdefault("socket_timeout", 2.0)
        kw.setdefault("socket_connect_timeout", 1.0)
        cls: Any = redis.UnixDomainSocketConnection if "path" in kw else redis.Connection
        if kw.pop("ssl", False):
            cls = redis.SSLConnection
        self.inv = cls(**kw)
        self.inv.connect()
        self.inv.send_command("CLIENT", "ID")
        cid = self.inv.read_response()
        self.inv.send_command("SUBSCRIBE", CHANNEL)
        self.inv.read_response()
        self.trk = cls(**kw)
        self.trk.connect()
        args: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", cid, "BCAST"]
        for p in self.prefixes:
            args += ["PREFIX", p]
        self.trk.send_command(*args)
        self.trk.read_response()

    def sock(self) -> Any:
        return self.inv._sock

    def drain(self, on_keys: Callable[[list[bytes] | None], None]) -> None:
        while self.inv.can_read(timeout=0):
            msg = self.inv.read_response(disable_decoding=True)
            if isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message":
                keys = msg[2]
                on_keys(None if keys is None else list(keys))

    def check(self, cluster: bool) -> None:
        if cluster:
            self.trk.send_command("ROLE")
            role = self.trk.read_response()
            if not role or role[0] not in (b"master", "master"):
                raise redis.ConnectionError("node is no longer a primary")
        else:
            self.trk.send_command("PING")
            self.trk.read_response()

    def close(self) -> None:
        for c in (self.inv, self.trk):
            if c is not None:
                try:
                    c.disconnect()
                except Exception:
                    pass
        self.inv = self.trk = None


class Tracker:
    """Keeps the invalidation links of one near-cache up."""

    def __init__(
        self,
        cache: NearCache,
        prefixes: Sequence[bytes],
        kwargs: dict[str, Any],
        seeds: list[Addr] | None,
        hooks: Fanout | None = None,
        interval: float = 0.5,
    ) -> None:
        self.cache = cache
        self.prefixes = list(prefixes)
        self.kwargs = kwargs
        #: None off a cluster; else addresses to discover the primaries from
        self.seeds = seeds
        self.hooks = hooks
        self.interval = interval
        self._stop = threading.Event()
        self._links: dict[Addr, _Link] = {}
        self._thread: threading.Thread | None = None
        self._up = False
        self.generation = 0  # times the link came up (tests)

    @classmethod
    def for_client(
        cls,
        client: Any,
        cache: NearCache,
        prefixes: Sequence[bytes],
        hooks: Fanout | None = None,
        interval: float = 0.5,
    ) -> Tracker:
        if is_sync_cluster(client) or is_async_cluster(client):
            nm = client.nodes_manager
            ckw = dict(getattr(nm, "connection_kwargs", None) or getattr(client, "connection_kwargs", {}))
            kw = {
                k: ckw[k]
                for k in ("username", "password", "socket_timeout", "socket_connect_timeout")
                if ckw.get(k) is not None
            }
            seeds = [(n.host, int(n.port)) for n in nm.startup_nodes.values()]
            return cls(cache, prefixes, kw, seeds, hooks, interval)
        return cls(cache, prefixes, pool_kwargs(client), None, hooks, interval)

    @property
    def up(self) -> bool:
        return self._up

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="redis-session-tracking", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_all()

    def wait_up(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._up:
                return True
            time.sleep(0.01)
        return self._up

    # -- the thread --------------------------------------------------------------------
    def _primaries(self) -> list[Addr]:
        if self.seeds is None:
            return [("", 0)]
        last: Exception | None = None
        for host, port in list(dict.fromkeys([*self._links.keys(), *self.seeds])):
            if not host:
                continue
            try:
                c = redis.Redis(host=host, port=port, **self.kwargs)
                try:
                    slots: Any = c.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
                finally:
                    c.close()
                prim = sorted({(_s(r[2][0]), int(r[2][1])) for r in slots})
                if prim:
                    # remember them as seeds for the next discovery
                    self.seeds = list(dict.fromkeys([*prim, *self.seeds]))[:32]
                    return prim
            except Exception as e:
                last = e
        raise redis.ConnectionError(f"no cluster node answered CLUSTER SLOTS: {last!r}")

    def _open(self, addrs: list[Addr]) -> None:
        self._close_all()
        links: dict[Addr, _Link] = {}
        try:
            for a in addrs:
                kw = dict(self.kwargs)
                if a[0]:
                    kw["host"], kw["port"] = a
                link = _Link(kw, self.prefixes)
                links[a] = link
                link.open()
        except BaseException:
            for link in links.values():
                link.close()
            raise
        self._links = links

    def _close_all(self) -> None:
        for link in self._links.values():
            link.close()
        self._links = {}

    def _set_up(self, up: bool) -> None:
        if up:
            self.generation += 1
        self.cache.set_enabled(up)
        if up != self._up:
            self._up = up
            if self.hooks is not None:
                self.hooks.on_tracking(up)

    def _on_keys(self, keys: list[bytes] | None) -> None:
        if keys is None:
            self.cache.flush()
        else:
            for k in keys:
                self.cache.invalidate(bytes(k))

    def _loop(self) -> None:
        backoff = 0.05
        cluster = self.seeds is not None
        while not self._stop.is_set():
            try:
                addrs = self._primaries()
                if set(addrs) != set(self._links) or not self._up:
                    if self._up:
                        self._set_up(False)
                    self._open(addrs)
                    self._set_up(True)
                    backoff = 0.05
                next_check = time.monotonic() + self.interval
                while not self._stop.is_set() and time.monotonic() < next_check:
                    socks = [link.sock() for link in self._links.values()]
                    ready, _, _ = select.select(socks, [], [], 0.05)
                    if ready:
                        for link in self._links.values():
                            link.drain(self._on_keys)
                for link in self._links.values():
                    link.drain(self._on_keys)
                    link.check(cluster)
            except Exception:
                if self._up:
                    self._set_up(False)
                self._close_all()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 0.25)
        if self._up:
            self._set_up(False)
        self._close_all()


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)
