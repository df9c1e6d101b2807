"""Sans-I/O half of the fallback: the keys and arguments of each script
call, and the decoding of its replies. No sockets here; the backend sends
what these build.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..protocol import LuaScript
from .scripts import SCRIPTS

#: Largest accepted time argument (100 years in ms), as in the module.
TIME_MAX = 3_153_600_000_000

_SID = re.compile(rb"[A-Za-z0-9_-]{16,128}\Z")
_TENANT = re.compile(rb"[A-Za-z0-9_-]{1,64}\Z")

Bytesish = bytes | str


def b(x: Bytesish | int) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, int):
        return b"%d" % x
    return x.encode()


@dataclass(frozen=True)
class Options:
    """The module options the fallback mirrors (its defaults; per-tenant
    settings override the timeouts, ``maxdata`` and the subject cap)."""

    prefix: str = "sess:"
    idle: int = 1_800_000
    absolute: int = 604_800_000
    grace: int = 60_000
    touch_resolution: int = 1000
    revoked_retention: int = 3_600_000
    max_data_bytes: int = 65536
    max_fields: int = 256
    max_meta: int = 32


@dataclass(frozen=True)
class Call:
    """One EVALSHA: the script, its keys and its arguments."""

    script: LuaScript
    keys: tuple[bytes, ...]
    args: tuple[bytes, ...]


@dataclass(frozen=True)
class TenantSettings:
    """A tenant's own settings; None = the store's default."""

    idle: int | None = None
    absolute: int | None = None
    grace: int | None = None
    maxdata: int | None = None
    maxpersubject: int | None = None
    onlimit: str | None = None

    FIELDS = ("idle", "absolute", "grace", "maxdata", "maxpersubject", "onlimit")

    @classmethod
    def from_hash(cls, h: Mapping[bytes, bytes]) -> TenantSettings:
        kw: dict[str, Any] = {}
        for name in cls.FIELDS:
            v = h.get(name.encode())
            if v is not None:
                kw[name] = v.decode() if name == "onlimit" else int(v)
        return cls(**kw)

    def to_hash(self) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for name in self.FIELDS:
            v = getattr(self, name)
            if v is not None:
                out[name.encode()] = b(v)
        return out

    def merged(self, other: TenantSettings) -> TenantSettings:
        return TenantSettings(
            **{n: (getattr(other, n) if getattr(other, n) is not None else getattr(self, n)) for n in self.FIELDS}
        )

    def effective(self, o: Options) -> dict[str, Any]:
        """What ``TENANT GET`` answers: each setting, the default where unset."""
        return {
            "idle": self.idle if self.idle is not None else o.idle,
            "absolute": self.absolute if self.absolute is not None else o.absolute,
            "grace": self.grace if self.grace is not None else o.grace,
            "maxdata": self.maxdata if self.maxdata is not None else o.max_data_bytes,
            "maxpersubject": self.maxpersubject if self.maxpersubject is not None else 0,
            "onlimit": self.onlimit if self.onlimit is not None else "reject",
        }


NO_SETTINGS = TenantSettings()


@dataclass
class Layout:
    """Key names: the module's ``<prefix><tenant>:<sid>`` and, beside them,
    the fallback's own keys, whose last part can never be a sid (``@``)."""

    prefix: bytes = b"sess:"

    def session(self, tenant: Bytesish, sid: Bytesish) -> bytes:
        return self.prefix + b(tenant) + b":" + b(sid)

    def index(self, tenant: Bytesish, subject: Bytesish) -> bytes:
        return self.prefix + b(tenant) + b":@subject:" + b(subject)

    def settings(self, tenant: Bytesish) -> bytes:
        return self.prefix + b(tenant) + b":@settings"

    def marker(self, tenant: Bytesish) -> bytes:
        """Set by a fallback store's first create: the tenant may have
        fallback sessions (``auto.py``'s migrating mode)."""
        return self.prefix + b(tenant) + b":@fallback"

    def split(self, key: bytes) -> tuple[bytes, bytes] | None:
        """(tenant, sid) of a session key, or None for any other key."""
        if not key.startswith(self.prefix):
            return None
        tenant, sep, sid = key[len(self.prefix) :].partition(b":")
        if not sep or not _TENANT.match(tenant) or not _SID.match(sid):
            return None
        return tenant, sid


# --- building calls ---------------------------------------------------------


def _opt(v: int | None) -> bytes:
    return b"" if v is None else b"%d" % v


def _pairs(m: Mapping[bytes, bytes] | Sequence[tuple[bytes, bytes]] | None) -> list[bytes]:
    if not m:
        return []
    items = m.items() if isinstance(m, Mapping) else m
    out: list[bytes] = []
    for k, v in items:
        out += [b(k), b(v)]
    return out


def get(
    key: bytes,
    o: Options,
    touch: bool = False,
    fields: Sequence[Bytesish] | None = None,
    nodata: bool = False,
    values: bool = False,
) -> Call:
    view = b"v" if values else b"f" if fields is not None else b"n" if nodata else b"a"
    args = [b"1" if touch else b"0", b"%d" % o.touch_resolution, view]
    if fields is not None:
        args += [b(f) for f in fields]
    return Call(SCRIPTS["get"], (key,), tuple(args))


def renew(key: bytes, o: Options, idle: int | None = None) -> Call:
    return Call(SCRIPTS["renew"], (key,), (b"%d" % o.touch_resolution, _opt(idle)))


def ttl(key: bytes) -> Call:
    return Call(SCRIPTS["ttl"], (key,), ())


def probe(key: bytes) -> Call:
    return Call(SCRIPTS["probe"], (key,), ())


def _head(single: bool, o: Options, tenant: Bytesish, maxdata: int | None) -> list[bytes]:
    return [
        b"1" if single else b"0",
        b(o.prefix),
        b(tenant),
        b"%d" % (o.max_data_bytes if maxdata is None else maxdata),
        b"%d" % o.max_fields,
        b"%d" % o.max_meta,
    ]


def set_fields(
    key: bytes,
    tenant: Bytesish,
    o: Options,
    single: bool,
    *,
    maxdata: int | None = None,
    if_version: int | None = None,
    meta: Mapping[bytes, bytes] | None = None,
    unset: Sequence[Bytesish] = (),
    data: Mapping[bytes, bytes] | None = None,
) -> Call:
    mp = _pairs(meta)
    args = [
        *_head(single, o, tenant, maxdata),
        _opt(if_version),
        b"%d" % (len(mp) // 2),
        *mp,
        b"%d" % len(unset),
        *[b(u) for u in unset],
        *_pairs(data),
    ]
    return Call(SCRIPTS["set"], (key,), tuple(args))


def cas(
    key: bytes,
    tenant: Bytesish,
    o: Options,
    single: bool,
    version: int,
    data: Mapping[bytes, bytes] | None,
    *,
    maxdata: int | None = None,
) -> Call:
    args = [*_head(single, o, tenant, maxdata), b"%d" % version, *_pairs(data)]
    return Call(SCRIPTS["cas"], (key,), tuple(args))


def create(
    key: bytes,
    tenant: Bytesish,
    o: Options,
    single: bool,
    *,
    settings: TenantSettings = NO_SETTINGS,
    subject: Bytesish = b"",
    idle: int | None = None,
    absolute: int | None = None,
    grace: int | None = None,
    meta: Mapping[bytes, bytes] | None = None,
    data: Mapping[bytes, bytes] | None = None,
) -> Call:
    # single mode: the script reads the tenant's settings itself, over these
    eff = (NO_SETTINGS if single else settings).effective(o)
    mp = _pairs(meta)
    args = [
        b"1" if single else b"0",
        b(o.prefix),
        b(tenant),
        b"%d" % eff["idle"],
        b"%d" % eff["absolute"],
        b"%d" % eff["grace"],
        b"%d" % eff["maxdata"],
        b"%d" % o.max_fields,
        b"%d" % o.max_meta,
        b"%d" % eff["maxpersubject"],
        b(eff["onlimit"]),
        b"%d" % o.revoked_retention,
        b(subject),
        _opt(idle),
        _opt(absolute),
        _opt(grace),
        b"%d" % (len(mp) // 2),
        *mp,
        *_pairs(data),
    ]
    return Call(SCRIPTS["create"], (key,), tuple(args))


def revoke(
    key: bytes, tenant: Bytesish, o: Options, single: bool, reason: Bytesish = b"", expect_subject: Bytesish = b""
) -> Call:
    return Call(
        SCRIPTS["revoke"],
        (key,),
        (b"1" if single else b"0", b(o.prefix), b(tenant), b"%d" % o.revoked_retention, b(reason), b(expect_subject)),
    )


def index_list(idx: bytes, subject: Bytesish) -> Call:
    return Call(SCRIPTS["index"], (idx,), (b"list", b(subject)))


def index_revokeall(idx: bytes, subject: Bytesish, o: Options, except_key: bytes = b"", reason: Bytesish = b"") -> Call:
    return Call(
        SCRIPTS["index"], (idx,), (b"revokeall", b(subject), except_key, b(reason), b"%d" % o.revoked_retention)
    )


def index_add(idx: bytes, key: bytes, absolute: int) -> Call:
    return Call(SCRIPTS["index"], (idx,), (b"add", key, b"%d" % absolute))


def glob_escape(p: bytes) -> bytes:
    out = bytearray()
    for c in p:
        if c in b"*?[]\\":
            out += b"\\"
        out.append(c)
    return bytes(out)


def count(prefix: bytes, tenant: bytes) -> Call:
    head = prefix + tenant + b":"
    return Call(SCRIPTS["count"], (), (glob_escape(head) + b"*", b"%d" % len(head)))


def index_prune(idx: bytes, keys: Sequence[bytes], min_age_ms: int) -> Call:
    return Call(SCRIPTS["index"], (idx,), (b"prune", b"%d" % min_age_ms, *keys))


# --- decoding replies -------------------------------------------------------

GET_NAMES = (
    "subject",
    "created",
    "version",
    "state",
    "last_access",
    "idle_deadline",
    "absolute_deadline",
    "grace_until",
    "meta",
    "data",
)


def _flat(v: Sequence[bytes]) -> dict[bytes, bytes]:
    return {v[i]: v[i + 1] for i in range(0, len(v), 2)}


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def decode_get(r: Any) -> dict[str, Any] | None:
    """The GET script's positional reply as the module's map (meta and data
    as dicts of bytes; data absent for NODATA)."""
    if r is None:
        return None
    out: dict[str, Any] = {}
    for name, v in zip(GET_NAMES, r, strict=False):
        out[name] = v
    out["state"] = _s(out["state"])
    out["meta"] = _flat(out["meta"])
    if "data" in out:
        out["data"] = _flat(out["data"])
    return out


def decode_ttl(r: Any) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"state": _s(r[0]), "idle_ms": r[1], "absolute_ms": r[2], "grace_ms": r[3]}
