"""The module backend: the store's operations as the module's ``SESSION.*`` commands.

Reads ask for the ``PACKED`` reply (one MessagePack bulk string, decoded by
msgspec in one call). A module build without ``PACKED`` answers
``ERR syntax error``: the backend then reads the map reply and remembers the
answer, so the probe costs one extra round trip once per backend (per store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import errors
from .protocol import Arg, Command, ErrorReply, FanOut, Op, Pipeline, Retry, Single
from .replies import (
    as_bytes,
    as_int,
    as_opt_int,
    check,
    decode_map,
    decode_packed,
    decode_tenant,
    decode_ttl,
    raise_for,
)
from .types import RawSession, RawTtl, TenantSettings

_TENANT_OPTIONS = {
    "idle": b"IDLE",
    "absolute": b"ABSOLUTE",
    "grace": b"GRACE",
    "maxdata": b"MAXDATA",
    "maxpersubject": b"MAXPERSUBJECT",
    "onlimit": b"ONLIMIT",
}


_SAFE = Retry.SAFE


def _flat(m: Mapping[bytes, bytes]) -> list[Arg]:
    out: list[Arg] = []
    for k, v in m.items():
        out.append(k)
        out.append(v)
    return out


class ModuleBackend:
    """`Backend` for a server with the redis-session module loaded."""

    name = "module"

    def __init__(self, *, packed: bool | None = None) -> None:
        #: None: not known yet (try PACKED); True/False: decided
        self.packed: bool | None = packed

    # -- reads -----------------------------------------------------------------
    def _get_args(
        self, key: bytes, touch: bool, fields: Sequence[bytes] | None, nodata: bool
    ) -> tuple[Arg, ...]:
        args: list[Arg] = [b"SESSION.GET", key]
        if touch:
            args.append(b"TOUCH")
        if fields is not None:
            args.append(b"FIELDS")
            args.append(len(fields))
            args.extend(fields)
        if nodata:
            args.append(b"NODATA")
        return tuple(args)

    def _read(self, args: tuple[Arg, ...], key: bytes, readonly: bool) -> Op[RawSession | None]:
        if self.packed is not False:
            reply = yield Command((*args, b"PACKED"), key, readonly=readonly, retry=Retry.SAFE)
            if not (isinstance(reply, ErrorReply) and reply.is_syntax_error()):
                raw = decode_packed(check(reply))
                self.packed = True
                return raw
            self.packed = False
        reply = yield Command(args, key, readonly=readonly, retry=Retry.SAFE)
        return decode_map(check(reply))

    def get_command(self, key: bytes, touch: bool) -> Command | None:
        """The one command of a whole read once ``PACKED`` is known to work
        (its reply goes to `replies.decode_packed`), else None: the driver's
        fast path, with no generator. Same command, retry and routing as `get`."""
        if self.packed is not True:
            return None
        if touch:
            return Command((b"SESSION.GET", key, b"TOUCH", b"PACKED"), key, False, _SAFE)
        return Command((b"SESSION.GET", key, b"PACKED"), key, True, _SAFE)

    def get(
        self, key: bytes, *, touch: bool, fields: Sequence[bytes] | None, nodata: bool
    ) -> Op[RawSession | None]:
        return (yield from self._read(self._get_args(key, touch, fields, nodata), key, not touch))

    def ttl(self, key: bytes) -> Op[RawTtl | None]:
        reply = yield Command((b"SESSION.TTL", key), key, readonly=True, retry=Retry.SAFE)
        return decode_ttl(check(reply))

    # -- writes ----------------------------------------------------------------
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
        args: list[Arg] = [b"SESSION.CREATE", key]
        if subject:
            args += [b"SUBJECT", subject]
        if idle is not None:
            args += [b"IDLE", idle]
        if absolute is not None:
            args += [b"ABSOLUTE", absolute]
        if grace is not None:
            args += [b"GRACE", grace]
        if meta:
            args += [b"META", len(meta), *_flat(meta)]
        if data:
            args += [b"DATA", *_flat(data)]
        # The sid is 256 random bits: EXISTS after a resend means our first
        # attempt landed, so the create is safe to retry.
        create = Command(tuple(args), key, retry=Retry.SAFE)
        get_args = self._get_args(key, False, None, True)
        # decided per request: other operations may settle the probe meanwhile
        packed = self.packed is not False
        read = Command((*get_args, b"PACKED") if packed else get_args, key, retry=Retry.SAFE)
        created, got = yield Pipeline((create, read))
        if isinstance(created, ErrorReply) and not (created.code == "EXISTS" and created.retried):
            raise_for(created)
        if packed and isinstance(got, ErrorReply) and got.is_syntax_error():
            self.packed = False
            got = yield Command(get_args, key, retry=Retry.SAFE)
            raw = decode_map(check(got))
        elif packed:
            raw = decode_packed(check(got))
            self.packed = True
        else:
            raw = decode_map(check(got))
        if raw is None:
            raise errors.ServerError("the session vanished right after its create")
        # the data as the create sent it: one round trip instead of reading it back
        return RawSession(
            subject=raw.subject,
            created=raw.created,
            version=raw.version,
            state=raw.state,
            last_access=raw.last_access,
            idle_deadline=raw.idle_deadline,
            absolute_deadline=raw.absolute_deadline,
            grace_until=raw.grace_until,
            meta=raw.meta,
            data=dict(data),
        )

    def set(
        self,
        key: bytes,
        *,
        data: Mapping[bytes, bytes],
        unset: Sequence[bytes],
        meta: Mapping[bytes, bytes],
        if_version: int | None,
    ) -> Op[int | None]:
        args: list[Arg] = [b"SESSION.SET", key]
        if if_version is not None:
            args += [b"IFVERSION", if_version]
        if meta:
            args += [b"META", len(meta), *_flat(meta)]
        if unset:
            args += [b"UNSET", len(unset), *unset]
        if data:
            args += [b"DATA", *_flat(data)]
        # only a versioned write cannot apply twice
        retry = Retry.SAFE if if_version is not None else Retry.NEVER
        return as_opt_int((yield Command(tuple(args), key, retry=retry)))

    def cas(self, key: bytes, version: int, data: Mapping[bytes, bytes]) -> Op[int | None]:
        args: list[Arg] = [b"SESSION.CAS", key, version]
        if data:
            args += [b"DATA", *_flat(data)]
        return as_opt_int((yield Command(tuple(args), key, retry=Retry.SAFE)))

    def renew(self, key: bytes, *, idle: int | None) -> Op[int | None]:
        args: tuple[Arg, ...] = (b"SESSION.RENEW", key) if idle is None else (b"SESSION.RENEW", key, b"IDLE", idle)
        # RENEW IDLE bumps the version: not resent
        retry = Retry.SAFE if idle is None else Retry.NEVER
        return as_opt_int((yield Command(args, key, retry=retry)))

    def renewal(self, key: bytes) -> Single:
        return Command((b"SESSION.RENEW", key), key, retry=Retry.NEVER)

    def revoke(self, key: bytes, *, reason: bytes | None) -> Op[bool]:
        args: tuple[Arg, ...] = (b"SESSION.REVOKE", key)
        if reason is not None:
            args = (*args, b"REASON", reason)
        return as_int((yield Command(args, key, retry=Retry.SAFE))) == 1

    # -- keyless: every primary ------------------------------------------------
    def list(self, tenant: bytes, subject: bytes) -> Op[list[bytes]]:
        replies = yield FanOut(Command((b"SESSION.LIST", tenant, subject), readonly=True, retry=Retry.SAFE))
        out: list[bytes] = []
        for r in replies:
            r = check(r)
            if not isinstance(r, list):
                raise errors.ServerError("unexpected SESSION.LIST reply")
            out.extend(as_bytes(k) for k in r)
        return sorted(set(out))

    def revoke_all(
        self, tenant: bytes, subject: bytes, *, except_key: bytes | None, reason: bytes | None
    ) -> Op[int]:
        args: list[Arg] = [b"SESSION.REVOKEALL", tenant, subject]
        if except_key is not None:
            args += [b"EXCEPT", except_key]
        if reason is not None:
            args += [b"REASON", reason]
        replies = yield FanOut(Command(tuple(args), retry=Retry.SAFE))
        return sum(as_int(r) for r in replies)

    def count(self, tenant: bytes, subject: bytes | None) -> Op[int]:
        args: tuple[Arg, ...] = (b"SESSION.COUNT", tenant) if subject is None else (b"SESSION.COUNT", tenant, subject)
        replies = yield FanOut(Command(args, readonly=True, retry=Retry.SAFE))
        return sum(as_int(r) for r in replies)

    def tenant_set(self, tenant: bytes, settings: Mapping[str, int | str]) -> Op[None]:
        args: list[Arg] = [b"SESSION.TENANT", b"SET", tenant]
        for name, value in settings.items():
            try:
                args += [_TENANT_OPTIONS[name], value]
            except KeyError:
                raise ValueError(f"unknown tenant setting {name!r}") from None
        if len(args) == 3:
            raise ValueError("tenant_set needs at least one setting")
        replies = yield FanOut(Command(tuple(args), retry=Retry.SAFE))
        for r in replies:
            check(r)

    def tenant_get(self, tenant: bytes) -> Op[TenantSettings | None]:
        reply = yield Command((b"SESSION.TENANT", b"GET", tenant), readonly=True, retry=Retry.SAFE)
        return decode_tenant(check(reply))

    def tenant_del(self, tenant: bytes) -> Op[bool]:
        replies: Any = yield FanOut(Command((b"SESSION.TENANT", b"DEL", tenant), retry=Retry.SAFE))
        return any(as_int(r) for r in replies)
