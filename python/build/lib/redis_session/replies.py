"""Pure reply decoding and error mapping, shared by every backend."""

from __future__ import annotations

from typing import Any, NoReturn

import msgspec

from . import errors
from .protocol import ErrorReply
from .types import RawSession, RawTtl, TenantSettings

_packed_decoder = msgspec.msgpack.Decoder(RawSession)


def raise_for(err: ErrorReply) -> NoReturn:
    """Turn an error reply into the package's exception."""
    code, rest = err.code, err.rest
    if code == "REVOKED":
        raise errors.Revoked(rest)
    if code == "CONFLICT":
        try:
            current = int(rest)
        except ValueError:
            raise errors.ServerError(err.message) from None
        raise errors.Conflict(current)
    if code == "EXISTS":
        raise errors.SessionExists(err.message)
    if code == "TOOBIG":
        raise errors.TooBig(err.message)
    if code == "LIMIT":
        raise errors.LimitExceeded(err.message)
    if code == "NOPERM":
        raise errors.PermissionDenied(err.message)
    if code == "SEALED":
        raise errors.Sealed(err.message)
    if err.message.endswith(("invalid session key", "invalid tenant")):
        raise errors.InvalidSession(err.message)
    if code in ("LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY"):
        raise errors.StoreUnavailable(err.message)
    raise errors.ServerError(err.message)


def check(reply: Any) -> Any:
    """The reply, or the exception for an error reply."""
    if isinstance(reply, ErrorReply):
        raise_for(reply)
    return reply


def as_str(x: Any) -> str:
    if isinstance(x, (bytes, bytearray)):
        return x.decode()
    if isinstance(x, str):
        return x
    raise errors.ServerError(f"unexpected reply element {type(x).__name__}")


def as_bytes(x: Any) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, bytearray):
        return bytes(x)
    raise errors.ServerError(f"unexpected reply element {type(x).__name__}")


def pairs(reply: Any) -> dict[Any, Any]:
    """A RESP3 map (dict) or a RESP2 flat array of name, value pairs, as a dict."""
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, list) and len(reply) % 2 == 0:
        return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}
    raise errors.ServerError("unexpected reply: expected a map")


def bytes_map(reply: Any) -> dict[bytes, bytes]:
    return {as_bytes(k): as_bytes(v) for k, v in pairs(reply).items()}


def decode_packed(reply: Any) -> RawSession | None:
    """A ``PACKED`` reply (one MessagePack bulk string), or nil."""
    if reply is None:
        return None
    if not isinstance(reply, (bytes, bytearray, memoryview)):
        raise errors.ServerError("unexpected PACKED reply: expected a bulk string")
    try:
        raw = _packed_decoder.decode(reply)
    except msgspec.DecodeError as e:
        raise errors.ServerError(f"malformed PACKED reply: {e}") from None
    if raw.v != 1:
        raise errors.ServerError(f"unsupported PACKED layout version {raw.v}")
    return raw


def _int(x: Any) -> int:
    if isinstance(x, int):
        return x
    raise errors.ServerError("unexpected reply: expected an integer")


_ORDER = (b"subject", b"created", b"version", b"state", b"last_access", b"idle_deadline",
          b"absolute_deadline", b"grace_until", b"meta", b"data")  # fmt: skip


def _flat_map(x: Any) -> dict[bytes, bytes]:
    if type(x) is list:
        return dict(zip(x[::2], x[1::2], strict=True))
    return bytes_map(x)


def decode_map(reply: Any) -> RawSession | None:
    """The map reply of ``SESSION.GET`` (RESP2 or RESP3), or nil."""
    if reply is None:
        return None
    # the common case: a RESP2 flat array of bytes in the documented order
    if type(reply) is list and len(reply) in (18, 20) and tuple(reply[0::2]) == _ORDER[: len(reply) // 2]:
        r = reply
        if all(type(r[i]) is int for i in (3, 5, 9, 11, 13, 15)) and type(r[1]) is bytes:
            return RawSession(
                subject=r[1],
                created=r[3],
                version=r[5],
                state=as_str(r[7]),
                last_access=r[9],
                idle_deadline=r[11],
                absolute_deadline=r[13],
                grace_until=r[15],
                meta=_flat_map(r[17]),
                data=_flat_map(r[19]) if len(r) == 20 else {},
            )
    d = {as_str(k): v for k, v in pairs(reply).items()}
    try:
        return RawSession(
            subject=as_bytes(d["subject"]),
            created=_int(d["created"]),
            version=_int(d["version"]),
            state=as_str(d["state"]),
            last_access=_int(d["last_access"]),
            idle_deadline=_int(d["idle_deadline"]),
            absolute_deadline=_int(d["absolute_deadline"]),
            grace_until=_int(d["grace_until"]),
            meta=bytes_map(d["meta"]),
            data=bytes_map(d["data"]) if "data" in d else {},
        )
    except KeyError as e:
        raise errors.ServerError(f"unexpected SESSION.GET reply: no {e.args[0]!r}") from None


def decode_ttl(reply: Any) -> RawTtl | None:
    if reply is None:
        return None
    d = {as_str(k): v for k, v in pairs(reply).items()}
    try:
        return RawTtl(
            state=as_str(d["state"]),
            idle_ms=_int(d["idle_ms"]),
            absolute_ms=_int(d["absolute_ms"]),
            grace_ms=_int(d["grace_ms"]),
        )
    except KeyError as e:
        raise errors.ServerError(f"unexpected SESSION.TTL reply: no {e.args[0]!r}") from None


def decode_tenant(reply: Any) -> TenantSettings | None:
    if reply is None:
        return None
    d = {as_str(k): v for k, v in pairs(reply).items()}
    onlimit = as_str(d.get("onlimit", b"reject"))
    try:
        return TenantSettings(
            idle=_int(d["idle"]),
            absolute=_int(d["absolute"]),
            grace=_int(d["grace"]),
            maxdata=_int(d["maxdata"]),
            maxpersubject=_int(d["maxpersubject"]),
            onlimit="evict-oldest" if onlimit == "evict-oldest" else "reject",
        )
    except KeyError as e:
        raise errors.ServerError(f"unexpected SESSION.TENANT GET reply: no {e.args[0]!r}") from None


def as_int(reply: Any) -> int:
    return _int(check(reply))


def as_opt_int(reply: Any) -> int | None:
    reply = check(reply)
    return None if reply is None else _int(reply)
