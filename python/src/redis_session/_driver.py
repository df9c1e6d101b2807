"""What the sync and asyncio drivers share: error classification, the
reply of an exception, option plumbing. No I/O here."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions as rex

from .errors import StoreUnavailable
from .policy import CircuitBreaker, OnUnavailable, RetryPolicy
from .protocol import ErrorReply

#: errors after which the request may not have reached the server, or its
#: reply was lost: the server is unreachable, slow, restarting or failing over
TRANSIENT: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ClusterError,
    rex.RedisClusterException,
    rex.TryAgainError,
    rex.ReadOnlyError,
    rex.InvalidResponse,
    OSError,
    asyncio.TimeoutError,
)


_REDIS_PY = f"{os.sep}redis{os.sep}"


def client_fault(e: BaseException) -> bool:
    """An exception other than redis-py's own raised inside redis-py: its 5.x
    cluster client, shared by threads, can hand one thread a connection
    another thread tore down (``AttributeError: 'NoneType' object has no
    attribute 'feed'``). The call failed on the client's side, as with a
    dropped connection, so it is treated as one. Our own code's exceptions
    (frames outside redis-py) are never caught this way."""
    if not isinstance(e, Exception) or isinstance(e, (rex.RedisError, OSError)):
        return False
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return _REDIS_PY in tb.tb_frame.f_code.co_filename


def is_transient(e: BaseException) -> bool:
    if isinstance(e, TRANSIENT):
        return True
    # anything redis-py raises that is not an error reply
    return (isinstance(e, rex.RedisError) and not isinstance(e, rex.ResponseError)) or client_fault(e)


def error_reply(e: rex.ResponseError, retried: bool) -> ErrorReply:
    """redis-py strips the code word of some errors ("NOPERM", "ERR"): put
    back the ones the package maps."""
    msg = str(e)
    if isinstance(e, rex.NoPermissionError) and not msg.startswith("NOPERM"):
        msg = "NOPERM " + msg
    elif isinstance(e, rex.OutOfMemoryError) and not msg.startswith("OOM"):
        msg = "OOM " + msg
    return ErrorReply(msg, retried)


def unavailable(e: BaseException) -> StoreUnavailable:
    # the class name only: redis-py messages can carry host names, never sids
    err = StoreUnavailable(f"redis unavailable: {type(e).__name__}: {e}")
    err.__cause__ = e
    return err


@dataclass
class Options:
    """Failure-policy settings shared by both drivers."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreaker | None = None
    on_unavailable: OnUnavailable = OnUnavailable.FAIL_CLOSED
    read_from_replicas: bool = False
    background_queue: int = 1024


def is_sync_cluster(client: Any) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def is_async_cluster(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def pool_kwargs(client: Any) -> dict[str, Any]:
    """Connection settings of a (sync or async) non-cluster client, for the
    near-cache's own connections."""
    pool = client.connection_pool
    kw = dict(pool.connection_kwargs)
    cls = getattr(pool, "connection_class", None)
    out: dict[str, Any] = {}
    for name in ("host", "port", "username", "password", "db", "socket_timeout", "socket_connect_timeout", "path"):
        if name in kw and kw[name] is not None:
            out[name] = kw[name]
    if cls is not None and "SSL" in cls.__name__:
        out["ssl"] = True
    if cls is not None and "Unix" in cls.__name__:
        out.pop("host", None)
        out.pop("port", None)
        out["unix_socket_path"] = out.pop("path", None)
    out.pop("path", None)
    return out


def _cmd(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """redis-py's cluster client looks command names up as str."""
    a = args[0]
    if isinstance(a, bytes):
        return (a.decode(), *args[1:])
    return args


def slot_owners(client: Any) -> list[Any]:
    """The primaries a keyless command fans out to: the nodes owning a slot
    in the client's slot map (each slot's first node), sync or asyncio
    cluster client alike. Not `get_primaries()`: that filters on each
    node's `server_type`, which redis-py (5.x) flips while it follows a
    MOVED, unlocked, from several threads at once — two threads following
    MOVEDs of one failover can leave the new primary marked a replica, and a
    fan-out would then skip its whole shard (redis/redis-py#3803). The slot
    map is what keyed commands are routed by, so the fan-out follows it."""
    nm = client.nodes_manager
    owners: dict[str, Any] = {}
    seen: set[int] = set()
    for nodes in list(nm.slots_cache.values()):
        # the slots of one range share one list: look at each list once
        if id(nodes) in seen or not nodes:
            continue
        seen.add(id(nodes))
        owners.setdefault(nodes[0].name, nodes[0])
    return list(owners.values()) or list(client.get_primaries())
