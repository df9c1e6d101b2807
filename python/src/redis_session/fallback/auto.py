"""Which backend a store uses: the module where the server has it, the Lua
fallback where it does not, chosen at the first operation (one round trip,
logged), or named by the ``backend=`` argument.

While sessions move from the fallback to the module (``redis-session
migrate``), the automatic choice runs in *migrating* mode: keyed operations
go to the module and, for a key still held as a fallback hash (the module
answers ``WRONGTYPE``), to the fallback's script; list, revoke_all and
count join both. It is on when the module is loaded and the fallback's
marker key ``<prefix><tenant>:@fallback`` (written by a fallback store's
first create, deleted when a migration finishes) exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from .. import errors
from ..module import ModuleBackend
from ..protocol import Backend, Command, ErrorReply, FanOut, Op, Retry, Single
from ..types import RawSession, RawTtl, TenantSettings
from .backend import LuaBackend

log = logging.getLogger("redis_session")

__all__ = ["AutoBackend", "make_backend"]


def _module_names(reply: Any) -> list[bytes]:
    """Module names in a MODULE LIST reply (RESP2 or RESP3, parsed or raw)."""
    out = []
    for m in reply or []:
        if isinstance(m, dict):
            d = m
        elif isinstance(m, list):
            d = {m[i]: m[i + 1] for i in range(0, len(m) - 1, 2)}
        else:
            continue
        for k, v in d.items():
            if k in (b"name", "name"):
                out.append(v if isinstance(v, bytes) else str(v).encode())
    return out


def _wrongtype(e: errors.ServerError) -> bool:
    return str(e).startswith("WRONGTYPE")


class AutoBackend:
    """Chooses the module or the Lua backend on first use (see the module doc)."""

    def __init__(
        self,
        *,
        prefix: str | bytes = "sess:",
        cluster: bool = False,
        lua: LuaBackend | None = None,
        module: ModuleBackend | None = None,
    ) -> None:
        self.module = module or ModuleBackend()
        self.lua = lua or LuaBackend(prefix=prefix, cluster=cluster)
        self.chosen: Backend | None = None
        self.migrating = False
        self.reason = ""

    def __getattr__(self, attr: str) -> Any:
        # what the chosen backend offers beyond the protocol (the module's
        # ``packed``), for introspection
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.chosen or self.module, attr)

    @property
    def name(self) -> str:
        if self.chosen is None:
            return "auto"
        return "module+lua" if self.migrating else self.chosen.name

    def detect(self, tenant: bytes) -> Op[Backend]:
        if self.chosen is not None:
            return self.chosen
        replies = yield FanOut(Command((b"MODULE", b"LIST"), readonly=True, retry=Retry.SAFE))
        if not any(isinstance(r, ErrorReply) for r in replies):
            found = all(b"session" in _module_names(r) for r in replies)
            how = f"MODULE LIST on {len(replies)} node(s)"
        else:
            # MODULE LIST refused (a managed service, an ACL): the module's
            # command answers an arity error where it exists
            replies = yield FanOut(Command((b"SESSION.TTL",), readonly=True, retry=Retry.SAFE))
            found = all(isinstance(r, ErrorReply) and "unknown command" not in r.message.lower() for r in replies)
            how = f"SESSION.TTL probe on {len(replies)} node(s) (MODULE LIST not allowed)"
        if found:
            marker = self.lua.layout.marker(tenant)
            r = yield Command((b"EXISTS", marker), marker, readonly=True, retry=Retry.SAFE)
            self.migrating = r == 1
            self.chosen = self.module
            self.reason = how
            if self.migrating:
                log.info(
                    "redis-session: session module found (%s) and fallback sessions remain: using the module "
                    "with the Lua fallback for keys not yet migrated (run redis-session migrate)",
                    how,
                )
            else:
                log.info("redis-session: session module found (%s): using the module backend", how)
        else:
            self.chosen = self.lua
            self.reason = how
            log.info("redis-session: no session module (%s): using the Lua fallback backend on plain Redis", how)
        return self.chosen

    # -- keyed: the chosen backend; migrating: the fallback for hashes ------------------
    def _tenant(self, key: bytes) -> bytes:
        parts = self.lua.layout.split(key)
        return parts[0] if parts is not None else b""

    def _keyed(self, key: bytes, op: Callable[[Backend], Generator[Any, Any, Any]]) -> Op[Any]:
        b = yield from self.detect(self._tenant(key))
        if not self.migrating:
            return (yield from op(b))
        try:
            return (yield from op(self.module))
        except errors.ServerError as e:
            if not _wrongtype(e):
                raise
        return (yield from op(self.lua))

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
        b = yield from self.detect(self._tenant(key))
        return (
            yield from b.create(key, subject=subject, idle=idle, absolute=absolute, grace=grace, meta=meta, data=data)
        )

    def get(self, key: bytes, *, touch: bool, fields: Sequence[bytes] | None, nodata: bool) -> Op[RawSession | None]:
        r: RawSession | None = yield from self._keyed(
            key, lambda b: b.get(key, touch=touch, fields=fields, nodata=nodata)
        )
        return r

    def get_command(self, key: bytes, touch: bool) -> Command | None:
        """The module's one-command read once the module is chosen (not while
        migrating: a key may still be a fallback hash), else None."""
        if self.chosen is self.module and not self.migrating:
            return self.module.get_command(key, touch)
        return None

    def set(
        self,
        key: bytes,
        *,
        data: Mapping[bytes, bytes],
        unset: Sequence[bytes],
        meta: Mapping[bytes, bytes],
        if_version: int | None,
    ) -> Op[int | None]:
        r: int | None = yield from self._keyed(
            key, lambda b: b.set(key, data=data, unset=unset, meta=meta, if_version=if_version)
        )
        return r

    def cas(self, key: bytes, version: int, data: Mapping[bytes, bytes]) -> Op[int | None]:
        r: int | None = yield from self._keyed(key, lambda b: b.cas(key, version, data))
        return r

    def renew(self, key: bytes, *, idle: int | None) -> Op[int | None]:
        r: int | None = yield from self._keyed(key, lambda b: b.renew(key, idle=idle))
        return r

    def ttl(self, key: bytes) -> Op[RawTtl | None]:
        r: RawTtl | None = yield from self._keyed(key, lambda b: b.ttl(key))
        return r

    def revoke(self, key: bytes, *, reason: bytes | None) -> Op[bool]:
        r: bool = yield from self._keyed(key, lambda b: b.revoke(key, reason=reason))
        return r

    def renewal(self, key: bytes) -> Single:
        return (self.chosen or self.module).renewal(key)

    # -- keyless: migrating joins both -------------------------------------------------
    def list(self, tenant: bytes, subject: bytes) -> Op[list[bytes]]:
        b = yield from self.detect(tenant)
        out = yield from b.list(tenant, subject)
        if self.migrating:
            out = sorted(set(out) | set((yield from self.lua.list(tenant, subject))))
        return out

    def revoke_all(self, tenant: bytes, subject: bytes, *, except_key: bytes | None, reason: bytes | None) -> Op[int]:
        b = yield from self.detect(tenant)
        n: int = yield from b.revoke_all(tenant, subject, except_key=except_key, reason=reason)
        if self.migrating:
            n += yield from self.lua.revoke_all(tenant, subject, except_key=except_key, reason=reason)
        return n

    def count(self, tenant: bytes, subject: bytes | None) -> Op[int]:
        if subject is not None:
            return len((yield from self.list(tenant, subject)))
        b = yield from self.detect(tenant)
        n: int = yield from b.count(tenant, None)
        if self.migrating:
            n += yield from self.lua.count(tenant, None)
        return n

    def tenant_set(self, tenant: bytes, settings: Mapping[str, int | str]) -> Op[None]:
        b = yield from self.detect(tenant)
        yield from b.tenant_set(tenant, settings)
        if self.migrating:
            yield from self.lua.tenant_set(tenant, settings)

    def tenant_get(self, tenant: bytes) -> Op[TenantSettings | None]:
        b = yield from self.detect(tenant)
        return (yield from b.tenant_get(tenant))

    def tenant_del(self, tenant: bytes) -> Op[bool]:
        b = yield from self.detect(tenant)
        gone: bool = yield from b.tenant_del(tenant)
        if self.migrating:
            gone = (yield from self.lua.tenant_del(tenant)) or gone
        return gone


def make_backend(spec: Any, *, prefix: str, cluster: bool) -> Backend:
    """The store's ``backend=`` argument as a backend: ``None``/``"auto"``
    (detect), ``"module"``, ``"lua"`` (alias ``"fallback"``), or any object
    with the `Backend` methods."""
    if spec is None or spec == "auto":
        return AutoBackend(prefix=prefix, cluster=cluster)  # type: ignore[return-value]
    if spec == "module":
        return ModuleBackend()
    if spec in ("lua", "fallback"):
        return LuaBackend(prefix=prefix, cluster=cluster)
    if isinstance(spec, str):
        raise ValueError(f"unknown backend {spec!r}: 'auto', 'module' or 'lua'")
    if isinstance(spec, LuaBackend) and spec.layout.prefix != prefix.encode():
        raise ValueError("the Lua backend's prefix differs from the store's")
    return spec  # type: ignore[no-any-return]
