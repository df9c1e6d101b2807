"""Plain value types: the public `Session`, `Ttl`, `TenantSettings`, and the
backend-level `RawSession` (bytes, before the codec)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, Literal, TypeVar

import msgspec

D = TypeVar("D")

State = Literal["active", "grace"]


class Session(msgspec.Struct, Generic[D], frozen=True, gc=False):
    """One session as read from the store. Immutable (a frozen `msgspec.Struct`).

    Times are milliseconds since the epoch (server clock). ``absolute_deadline``
    is -1 when the session has no absolute limit. ``data`` is what the store's
    codec made of the stored fields: a read-only mapping of field name to value
    for the dict codecs, an instance of the schema for a schema codec.

    A session served from the near-cache is the same object for every reader:
    treat ``data``'s values as read-only (copy before mutating). Its
    ``last_access`` and deadlines are those of the read that filled the cache
    (renewals do not invalidate; see the README's near-cache section).
    """

    sid: str
    tenant: str
    subject: str
    created: int
    version: int
    state: State
    last_access: int
    idle_deadline: int
    absolute_deadline: int
    grace_until: int
    meta: Mapping[str, str]
    data: D
    #: where the value came from: False for a network read, True for a near-cache hit
    cached: bool = False


@dataclass(frozen=True, slots=True)
class Ttl:
    """``store.ttl(sid)``: ms left. -1 where no limit applies."""

    state: State
    idle_ms: int
    absolute_ms: int
    grace_ms: int


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """A tenant's effective settings (``SESSION.TENANT GET``)."""

    idle: int
    absolute: int
    grace: int
    maxdata: int
    maxpersubject: int
    onlimit: Literal["reject", "evict-oldest"]


class RawSession(msgspec.Struct, frozen=True):
    """A session as a backend returns it: names and values still bytes.

    It is also the PACKED reply's layout (v1, see PACKED.md / the module
    README): ``msgspec.msgpack.decode(reply, type=RawSession)`` is the whole
    decode. ``data`` is empty for a NODATA read.
    """

    subject: bytes
    created: int
    version: int
    state: str
    last_access: int
    idle_deadline: int
    absolute_deadline: int
    grace_until: int
    meta: dict[bytes, bytes]
    data: dict[bytes, bytes] = {}
    v: int = 1


class RawTtl(msgspec.Struct, frozen=True):
    state: str
    idle_ms: int
    absolute_ms: int
    grace_ms: int


def _state(s: str) -> State:
    if s == "active":
        return "active"
    if s == "grace":
        return "grace"
    from .errors import ServerError

    raise ServerError(f"unknown session state {s!r}")


def ttl_from_raw(raw: RawTtl) -> Ttl:
    return Ttl(_state(raw.state), raw.idle_ms, raw.absolute_ms, raw.grace_ms)


frozen_map = MappingProxyType
