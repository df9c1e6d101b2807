"""The Lua backend: the store's operations on plain Redis 7.0+ / Valkey,
without the module, as server-side scripts (see ``lua/`` and the package
README's "Without the module").

Every keyed operation is one script on the session's key, so it is as
atomic as the module's command. The per-subject index and the tenant
settings are keys beside the sessions (``<prefix><tenant>:@subject:<s>``,
``<prefix><tenant>:@settings``): on a single server the scripts keep and
read them in the same atomic step; on a cluster they live in other slots,
so the store keeps the index around the scripts (best effort, documented)
and reads the settings with a short cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors
from ..protocol import Command, ErrorReply, FanOut, Op, Retry, Script, Single
from ..replies import as_bytes, as_int, as_opt_int, check, pairs, raise_for
from ..types import RawSession, RawTtl, TenantSettings
from . import wire
from .wire import TIME_MAX, Call, Layout, Options
from .wire import TenantSettings as StoredSettings

log = logging.getLogger("redis_session")

__all__ = ["LuaBackend"]

#: on a cluster, an index entry whose session is gone is removed only when
#: older than this (ms): a create adds its entry just before its session
PRUNE_MIN_AGE_MS = 60_000


def _script(c: Call, *, readonly: bool = False, retry: Retry = Retry.NEVER) -> Script:
    return Script(c.script, c.keys, c.args, readonly=readonly, retry=retry)


def _state(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _flat(v: Any) -> dict[bytes, bytes]:
    if not isinstance(v, list):
        raise errors.ServerError("unexpected fallback reply: expected a list")
    return {as_bytes(v[i]): as_bytes(v[i + 1]) for i in range(0, len(v) - 1, 2)}


def decode_get(r: Any) -> RawSession | None:
    """The GET script's positional reply as a `RawSession`."""
    r = check(r)
    if r is None:
        return None
    if not isinstance(r, list) or len(r) < 9:
        raise errors.ServerError("unexpected fallback GET reply")
    return RawSession(
        subject=as_bytes(r[0]),
        created=int(r[1]),
        version=int(r[2]),
        state=_state(r[3]),
        last_access=int(r[4]),
        idle_deadline=int(r[5]),
        absolute_deadline=int(r[6]),
        grace_until=int(r[7]),
        meta=_flat(r[8]),
        data=_flat(r[9]) if len(r) > 9 else {},
    )


def _check_time(name: str, v: int | None, low: int) -> None:
    if v is None:
        return
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= TIME_MAX:
        raise errors.ServerError("ERR value is not an integer or out of range")


class LuaBackend:
    """`Backend` for plain Redis 7.0+ / Valkey: scripts instead of the module.

    ``cluster``: the store runs on Redis Cluster (the index and settings
    keys are then in other slots than the sessions). ``options`` mirror the
    module's options (defaults, touch resolution, limits, revoked
    retention). ``settings_ttl``: on a cluster, how long (s) a tenant's
    settings read from the server are reused.
    """

    name = "lua"

    def __init__(
        self,
        *,
        prefix: str | bytes = "sess:",
        cluster: bool = False,
        options: Options | None = None,
        settings_ttl: float = 1.0,
    ) -> None:
        p = prefix.encode() if isinstance(prefix, str) else prefix
        self.options = options or Options(prefix=p.decode())
        if self.options.prefix.encode() != p:
            self.options = Options(**{**self.options.__dict__, "prefix": p.decode()})
        self.layout = Layout(p)
        self.cluster = cluster
        self.single = not cluster
        self.settings_ttl = settings_ttl
        self._settings: dict[bytes, tuple[float, StoredSettings]] = {}
        #: the marker telling a store that finds the module later that
        #: fallback sessions may exist (see auto.py); written once per backend
        self._marked = False

    # -- helpers -------------------------------------------------------------------------
    def _tenant_of(self, key: bytes) -> bytes:
        parts = self.layout.split(key)
        if parts is None:
            raise errors.InvalidSession("ERR invalid session key")
        return parts[0]

    def _stored_settings(self, tenant: bytes) -> Op[StoredSettings]:
        """A tenant's own settings, from a cache of `settings_ttl` s (cluster only)."""
        now = time.monotonic()
        hit = self._settings.get(tenant)
        if hit is not None and now - hit[0] < self.settings_ttl:
            return hit[1]
        skey = self.layout.settings(tenant)
        reply = yield Command((b"HGETALL", skey), skey, readonly=True, retry=Retry.SAFE)
        s = StoredSettings.from_hash({as_bytes(k): as_bytes(v) for k, v in pairs(check(reply)).items()})
        self._settings[tenant] = (now, s)
        return s

    def _maxdata(self, tenant: bytes) -> Op[int | None]:
        if self.single:
            return None
        return (yield from self._stored_settings(tenant)).maxdata

    def _probe(self, key: bytes) -> Op[tuple[str, int, bytes] | None]:
        r = check((yield _script(wire.probe(key), readonly=True, retry=Retry.SAFE)))
        if r is None:
            return None
        return _state(r[0]), int(r[1]), as_bytes(r[2])

    def _indexed(self, tenant: bytes, subject: bytes) -> Op[list[tuple[bytes, int]]]:
        """Cluster: the subject's live sessions (key, created), index entries
        of sessions that are gone pruned once old enough."""
        idx = self.layout.index(tenant, subject)
        members = check((yield Command((b"ZRANGE", idx, 0, -1), idx, readonly=True, retry=Retry.SAFE)))
        live: list[tuple[bytes, int]] = []
        dead: list[bytes] = []
        for m in members or []:
            k = as_bytes(m)
            p = yield from self._probe(k)
            if p is not None and p[0] in ("active", "grace") and p[2] == subject:
                live.append((k, p[1]))
            elif p is None or p[2] != subject:
                dead.append(k)
        if dead:
            check((yield _script(wire.index_prune(idx, dead, PRUNE_MIN_AGE_MS), retry=Retry.SAFE)))
        return live

    # -- reads ---------------------------------------------------------------------------
    def get(self, key: bytes, *, touch: bool, fields: Sequence[bytes] | None, nodata: bool) -> Op[RawSession | None]:
        c = wire.get(key, self.options, touch=touch, fields=fields, nodata=nodata)
        return decode_get((yield _script(c, readonly=not touch, retry=Retry.SAFE)))

    def ttl(self, key: bytes) -> Op[RawTtl | None]:
        r = check((yield _script(wire.ttl(key), readonly=True, retry=Retry.SAFE)))
        if r is None:
            return None
        return RawTtl(state=_state(r[0]), idle_ms=int(r[1]), absolute_ms=int(r[2]), grace_ms=int(r[3]))

    # -- writes --------------------------------------------------------------------------
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
        _check_time("idle", idle, 1)
        _check_time("absolute", absolute, 0)
        _check_time("grace", grace, 0)
        tenant = self._tenant_of(key)
        if not self._marked:
            marker = self.layout.marker(tenant)
            check((yield Command((b"SET", marker, b"1"), marker, retry=Retry.SAFE)))
            self._marked = True
        settings = wire.NO_SETTINGS
        if self.cluster:
            settings = yield from self._stored_settings(tenant)
            if subject:
                yield from self._cluster_cap(key, tenant, subject, settings)
                eff = settings.effective(self.options)
                ab = absolute if absolute is not None else eff["absolute"]
                idx = self.layout.index(tenant, subject)
                check((yield _script(wire.index_add(idx, key, ab), retry=Retry.SAFE)))
        c = wire.create(
            key,
            tenant,
            self.options,
            self.single,
            settings=settings,
            subject=subject,
            idle=idle,
            absolute=absolute,
            grace=grace,
            meta=meta,
            data=data,
        )
        r = yield _script(c, retry=Retry.SAFE)
        if isinstance(r, ErrorReply):
            if r.code == "EXISTS" and r.retried:
                # our own first attempt landed: read what it made
                got = yield from self.get(key, touch=False, fields=None, nodata=True)
                if got is None:
                    raise errors.ServerError("the session vanished right after its create")
                return RawSession(**{**{f: getattr(got, f) for f in got.__struct_fields__}, "data": dict(data)})
            raise_for(r)
        now, idl, ad, gr = (int(x) for x in r)
        grace_until = now + idl + gr
        if ad > 0 and ad < grace_until:
            grace_until = ad
        return RawSession(
            subject=subject,
            created=now,
            version=1,
            state="active",
            last_access=now,
            idle_deadline=now + idl,
            absolute_deadline=ad if ad > 0 else -1,
            grace_until=grace_until,
            meta=dict(meta),
            data=dict(data),
        )

    def _cluster_cap(self, key: bytes, tenant: bytes, subject: bytes, settings: StoredSettings) -> Op[None]:
        """Cluster: the tenant's cap on sessions per subject, checked before
        the create (best effort: two creates at once may both pass)."""
        eff = settings.effective(self.options)
        cap = int(eff["maxpersubject"])
        if cap <= 0:
            return
        live = yield from self._indexed(tenant, subject)
        live = [(k, c) for k, c in live if k != key]
        if len(live) < cap:
            return
        if eff["onlimit"] != "evict-oldest":
            raise errors.LimitExceeded(f"LIMIT subject has {len(live)} sessions, tenant allows {cap}")
        live.sort(key=lambda kc: (kc[1], kc[0]))
        for k, _ in live[: len(live) + 1 - cap]:
            c = wire.revoke(k, tenant, self.options, False, b"evicted: session limit", expect_subject=subject)
            check((yield _script(c, retry=Retry.SAFE)))

    def set(
        self,
        key: bytes,
        *,
        data: Mapping[bytes, bytes],
        unset: Sequence[bytes],
        meta: Mapping[bytes, bytes],
        if_version: int | None,
    ) -> Op[int | None]:
        tenant = self._tenant_of(key)
        maxdata = yield from self._maxdata(tenant)
        c = wire.set_fields(
            key,
            tenant,
            self.options,
            self.single,
            maxdata=maxdata,
            if_version=if_version,
            meta=meta,
            unset=unset,
            data=data,
        )
        retry = Retry.SAFE if if_version is not None else Retry.NEVER
        return as_opt_int((yield _script(c, retry=retry)))

    def cas(self, key: bytes, version: int, data: Mapping[bytes, bytes]) -> Op[int | None]:
        tenant = self._tenant_of(key)
        maxdata = yield from self._maxdata(tenant)
        c = wire.cas(key, tenant, self.options, self.single, version, data, maxdata=maxdata)
        return as_opt_int((yield _script(c, retry=Retry.SAFE)))

    def renew(self, key: bytes, *, idle: int | None) -> Op[int | None]:
        _check_time("idle", idle, 1)
        retry = Retry.SAFE if idle is None else Retry.NEVER
        return as_opt_int((yield _script(wire.renew(key, self.options, idle), retry=retry)))

    def renewal(self, key: bytes) -> Single:
        return _script(wire.renew(key, self.options, None))

    def revoke(self, key: bytes, *, reason: bytes | None) -> Op[bool]:
        c = wire.revoke(key, self._tenant_of(key), self.options, self.single, reason or b"")
        return as_int((yield _script(c, retry=Retry.SAFE))) == 1

    # -- the index ----------------------------------------------------------------------
    def list(self, tenant: bytes, subject: bytes) -> Op[list[bytes]]:
        if self.single:
            idx = self.layout.index(tenant, subject)
            r = check((yield _script(wire.index_list(idx, subject), readonly=True, retry=Retry.SAFE)))
            return sorted(as_bytes(k) for k in r)
        return sorted(k for k, _ in (yield from self._indexed(tenant, subject)))

    def revoke_all(self, tenant: bytes, subject: bytes, *, except_key: bytes | None, reason: bytes | None) -> Op[int]:
        r = reason or b""
        if len(r) > 256 or b"\r" in r or b"\n" in r:
            raise_for(ErrorReply("ERR syntax error"))
        if self.single:
            idx = self.layout.index(tenant, subject)
            c = wire.index_revokeall(idx, subject, self.options, except_key or b"", r)
            return as_int((yield _script(c, retry=Retry.SAFE)))
        n = 0
        for k, _ in (yield from self._indexed(tenant, subject)):
            if k == except_key:
                continue
            c = wire.revoke(k, tenant, self.options, False, r, expect_subject=subject)
            n += as_int((yield _script(c, retry=Retry.SAFE)))
        return n

    def count(self, tenant: bytes, subject: bytes | None) -> Op[int]:
        if subject is not None:
            return len((yield from self.list(tenant, subject)))
        replies = yield FanOut(_script(wire.count(self.layout.prefix, tenant), readonly=True, retry=Retry.SAFE))
        return sum(as_int(r) for r in replies)

    # -- tenant settings ----------------------------------------------------------------
    def tenant_set(self, tenant: bytes, settings: Mapping[str, int | str]) -> Op[None]:
        fields: dict[bytes, bytes] = {}
        for name, value in settings.items():
            if name not in StoredSettings.FIELDS:
                raise ValueError(f"unknown tenant setting {name!r}")
            if name == "onlimit":
                if not isinstance(value, str) or value.lower() not in ("reject", "evict-oldest"):
                    raise_for(ErrorReply("ERR syntax error"))
                fields[b"onlimit"] = value.lower().encode()
                continue
            low = 1 if name == "idle" else 0
            top = TIME_MAX if name in ("idle", "absolute", "grace") else 2**63 - 1
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= top:
                raise_for(ErrorReply("ERR value is not an integer or out of range"))
            fields[name.encode()] = b"%d" % value
        if not fields:
            raise ValueError("tenant_set needs at least one setting")
        skey = self.layout.settings(tenant)
        check((yield Command((b"HSET", skey, *[x for kv in fields.items() for x in kv]), skey, retry=Retry.SAFE)))
        self._settings.pop(tenant, None)

    def tenant_get(self, tenant: bytes) -> Op[TenantSettings | None]:
        skey = self.layout.settings(tenant)
        reply = check((yield Command((b"HGETALL", skey), skey, readonly=True, retry=Retry.SAFE)))
        h = {as_bytes(k): as_bytes(v) for k, v in pairs(reply).items()}
        if not h:
            return None
        e = StoredSettings.from_hash(h).effective(self.options)
        return TenantSettings(
            idle=e["idle"],
            absolute=e["absolute"],
            grace=e["grace"],
            maxdata=e["maxdata"],
            maxpersubject=e["maxpersubject"],
            onlimit="evict-oldest" if e["onlimit"] == "evict-oldest" else "reject",
        )

    def tenant_del(self, tenant: bytes) -> Op[bool]:
        skey = self.layout.settings(tenant)
        self._settings.pop(tenant, None)
        return as_int((yield Command((b"DEL", skey), skey, retry=Retry.SAFE))) == 1
