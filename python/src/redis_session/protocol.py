"""The backend protocol (sans-I/O).

A store operation is a plain generator function: it **yields requests** (the
objects below) and **receives their replies**, and its ``return`` value is the
operation's result. It never touches a socket. `SessionStore` and
`AsyncSessionStore` are thin drivers that send each request with redis-py
(sync or asyncio), feed the reply back, and map connection trouble to
`StoreUnavailable` — so every operation is written once, for both.

What a generator receives for a request:

- `Command` / `Script`: the raw reply, with bulk strings as ``bytes`` (the
  driver never decodes), RESP2 or RESP3 shapes (maps may be dicts or flat
  lists); an error reply arrives as an `ErrorReply` value, not an exception.
- `Pipeline`: a list with one such reply per request, in order.
- `FanOut`: a list with one reply per primary (one element off a cluster).
- `Background`: ``None`` at once; the request is sent without waiting.

If the store cannot be reached the driver *throws* `StoreUnavailable` into
the generator (``gen.throw``): an operation may catch it (the near-cache's
serve-stale policy does) or let it propagate.

A backend is any object with the methods of `Backend`; the module backend
(`redis_session.module.ModuleBackend`) speaks the module's ``SESSION.*``
commands, a Lua backend runs the same operations as scripts on plain Redis.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from .errors import InvalidSession
from .types import RawSession, RawTtl, TenantSettings

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: an argument of a command: bytes go out as they are, str as UTF-8, int in decimal
Arg = bytes | str | int


class Retry(enum.Enum):
    """May the driver resend a request after a connection error or timeout?"""

    #: never: the request may have been applied; resending could apply it twice
    NEVER = "never"
    #: yes: resending cannot change the outcome (a read, an idempotent or
    #: versioned write). Error replies after a resend carry ``retried=True``.
    SAFE = "safe"


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply from the server, e.g. ``"CONFLICT 3"``.

    ``message`` is the full line where the driver can know it (redis-py strips
    the ``ERR `` word of some errors; `code` and `is_syntax_error` cope).
    ``retried`` is True when the request had been resent after a connection
    error: ``EXISTS`` for a retried create means the first attempt landed.
    """

    message: str
    retried: bool = False

    @property
    def code(self) -> str:
        return self.message.split(" ", 1)[0]

    @property
    def rest(self) -> str:
        parts = self.message.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""

    def is_syntax_error(self) -> bool:
        return self.message in ("ERR syntax error", "syntax error")


class Command(NamedTuple):
    """One command. ``key`` routes it on a cluster (None: any one primary).

    Immutable (a named tuple rather than a frozen dataclass: it is built on
    every call of the hot read path, and costs a third as much to make)."""

    args: tuple[Arg, ...]
    key: bytes | None = None
    #: changes nothing: may be served by a replica when the store reads from replicas
    readonly: bool = False
    retry: Retry = Retry.NEVER


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A Lua script; the driver sends ``EVALSHA`` and on ``NOSCRIPT`` loads it with ``EVAL``."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class Script:
    """A script call: ``EVALSHA sha numkeys keys... args...`` (``EVAL`` on ``NOSCRIPT``)."""

    script: LuaScript
    keys: tuple[bytes, ...]
    args: tuple[Arg, ...] = ()
    readonly: bool = False
    retry: Retry = Retry.NEVER

    @property
    def key(self) -> bytes | None:
        return self.keys[0] if self.keys else None


Single = Command | Script


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Requests sent in one round trip (no MULTI). On a cluster every key must
    hash to one slot. The reply is a list, an `ErrorReply` in place of each
    failed request. Retried whole only if every request is `Retry.SAFE`."""

    requests: tuple[Single, ...]

    @property
    def retry(self) -> Retry:
        return Retry.SAFE if all(r.retry is Retry.SAFE for r in self.requests) else Retry.NEVER


@dataclass(frozen=True, slots=True)
class FanOut:
    """The same keyless request to every primary (one node off a cluster).
    The reply is the list of the primaries' replies; merging is the
    operation's job."""

    request: Single


@dataclass(frozen=True, slots=True)
class Background:
    """Send without waiting for the reply (a near-cache renewal). The
    generator receives None at once; errors are counted, never raised."""

    request: Single


Request = Command | Script | Pipeline | FanOut | Background

#: a store operation: yields requests, receives replies, returns T
Op = Generator[Request, Any, T]


class Backend(Protocol):
    """What a store needs from a backend. Every method returns an `Op`.

    Keys, names and values are bytes (the store applies the codec and builds
    keys with `key_for`); times are ms. Error replies are turned into the
    package's exceptions inside the op (`replies.raise_for`).
    """

    #: short name for metrics and logs ("module", "lua")
    name: str

    def create(
        self,
        key: bytes,
        *,
        subject: bytes,
        idle: int | None,
        absolute: int | None,
        grace: int | None,
        meta: Mapping[bytes, bytes],
        data: Mapping[bytes, bytes],
    ) -> Op[RawSession]:
        """Create; the result is the new session (data as given). Raises
        `SessionExists` (not on a retry of its own create), `TooBig`, `LimitExceeded`."""
        ...

    def get(
        self, key: bytes, *, touch: bool, fields: Sequence[bytes] | None, nodata: bool
    ) -> Op[RawSession | None]:
        """Read (and renew with ``touch``). None when missing; raises `Revoked`."""
        ...

    def set(
        self,
        key: bytes,
        *,
        data: Mapping[bytes, bytes],
        unset: Sequence[bytes],
        meta: Mapping[bytes, bytes],
        if_version: int | None,
    ) -> Op[int | None]:
        """Field-level write; the new version, None when missing; raises `Conflict`, `Revoked`."""
        ...

    def cas(self, key: bytes, version: int, data: Mapping[bytes, bytes]) -> Op[int | None]:
        """Replace the whole data map at ``version``; raises `Conflict`."""
        ...

    def renew(self, key: bytes, *, idle: int | None) -> Op[int | None]:
        """Sliding renewal; ms until the idle deadline, None when missing."""
        ...

    def ttl(self, key: bytes) -> Op[RawTtl | None]: ...

    def revoke(self, key: bytes, *, reason: bytes | None) -> Op[bool]: ...

    def list(self, tenant: bytes, subject: bytes) -> Op[list[bytes]]:
        """The keys of the subject's live sessions, all primaries merged, sorted."""
        ...

    def revoke_all(
        self, tenant: bytes, subject: bytes, *, except_key: bytes | None, reason: bytes | None
    ) -> Op[int]: ...

    def count(self, tenant: bytes, subject: bytes | None) -> Op[int]: ...

    def tenant_set(self, tenant: bytes, settings: Mapping[str, int | str]) -> Op[None]:
        """Merge settings (names as `TenantSettings`' fields) on every primary."""
        ...

    def tenant_get(self, tenant: bytes) -> Op[TenantSettings | None]: ...

    def tenant_del(self, tenant: bytes) -> Op[bool]: ...

    def renewal(self, key: bytes) -> Single:
        """The request a near-cache hit sends (in the background) to slide the idle deadline."""
        ...


class KeySchema:
    """``<prefix><tenant>:<sid>``, with the grammar of the module's keys."""

    __slots__ = ("prefix", "tenant", "tenant_prefix")

    def __init__(self, prefix: str, tenant: str) -> None:
        if not valid_tenant(tenant):
            raise InvalidSession("invalid tenant: 1-64 characters of A-Z a-z 0-9 _ -")
        self.prefix = prefix.encode()
        self.tenant = tenant
        #: ``<prefix><tenant>:``: every key of this tenant starts with it
        self.tenant_prefix = self.prefix + tenant.encode() + b":"

    def key(self, sid: str) -> bytes:
        if not valid_sid(sid):
            raise InvalidSession("invalid session id: 16-128 characters of A-Z a-z 0-9 _ -")
        return self.tenant_prefix + sid.encode()

    def sid(self, key: bytes) -> str:
        return key[len(self.tenant_prefix) :].decode()


_SID = re.compile(r"[A-Za-z0-9_-]{16,128}")
_TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_sid(sid: Any) -> bool:
    return type(sid) is str and _SID.fullmatch(sid) is not None


def valid_tenant(tenant: Any) -> bool:
    return type(tenant) is str and _TENANT.fullmatch(tenant) is not None
