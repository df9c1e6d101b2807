"""redis-session: a typed sync + asyncio client for the redis-session module.

    from redis_session import SessionStore
    store = SessionStore.from_url("redis://localhost:6379/0", tenant="acme")
    s = store.create(subject="user42", data={"cart": [1, 2]})
    s = store.get(s.sid, touch=True)
"""

from __future__ import annotations

from .aio import AsyncSessionStore
from .codecs import Codec, JsonCodec, MsgpackCodec, RawCodec, SchemaCodec
from .core import StoreCore, new_sid
from .errors import (
    CodecError,
    Conflict,
    InvalidSession,
    LimitExceeded,
    PermissionDenied,
    Revoked,
    Sealed,
    ServerError,
    SessionError,
    SessionExists,
    StoreUnavailable,
    TooBig,
)
from .metrics import BaseHooks, Hooks, Metrics, sid_hash
from .module import ModuleBackend
from .nearcache import NearCache
from .policy import CircuitBreaker, OnUnavailable, RetryPolicy
from .protocol import Backend
from .sync import SessionStore
from .types import Session, TenantSettings, Ttl

__version__ = "0.1.0"

__all__ = [
    "AsyncSessionStore",
    "Backend",
    "BaseHooks",
    "CircuitBreaker",
    "Codec",
    "CodecError",
    "Conflict",
    "Hooks",
    "InvalidSession",
    "JsonCodec",
    "LimitExceeded",
    "Metrics",
    "ModuleBackend",
    "MsgpackCodec",
    "NearCache",
    "OnUnavailable",
    "PermissionDenied",
    "RawCodec",
    "RetryPolicy",
    "Revoked",
    "SchemaCodec",
    "Sealed",
    "ServerError",
    "Session",
    "SessionError",
    "SessionExists",
    "SessionStore",
    "StoreCore",
    "StoreUnavailable",
    "TenantSettings",
    "TooBig",
    "Ttl",
    "new_sid",
    "sid_hash",
]
