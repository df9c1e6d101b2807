"""The store's logic, sans-I/O: argument checks, codecs, the near-cache and the
failure policy around a `Backend`'s operations. Every public method returns
an `Op` that `SessionStore` / `AsyncSessionStore` drive; nothing here does I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from .codecs import Codec, field_name
from .errors import CodecError, StoreUnavailable
from .metrics import Hooks
from .nearcache import NearCache
from .policy import OnUnavailable
from .protocol import Backend, Background, Command, KeySchema, Op, Single
from .replies import check, decode_packed
from .types import RawSession, Session, TenantSettings, Ttl, _state, frozen_map, ttl_from_raw

D = TypeVar("D")

__all__ = ["StoreCore", "new_sid"]


def new_sid() -> str:
    """A fresh session id: 256 bits from `secrets`, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def _text(b: bytes) -> str:
    try:
        return b.decode()
    except UnicodeDecodeError:
        return b.decode("utf-8", "surrogateescape")


def _text_map(m: dict[bytes, bytes]) -> dict[str, str]:
    try:
        return {k.decode(): v.decode() for k, v in m.items()}
    except UnicodeDecodeError:
        return {_text(k): _text(v) for k, v in m.items()}


def _btext(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise CodecError(f"{what} must be str, not {type(s).__name__}")
    return s.encode("utf-8", "surrogateescape")


def _meta(meta: Mapping[str, str] | None) -> dict[bytes, bytes]:
    if not meta:
        return {}
    return {_btext(k, "meta names"): _btext(v, "meta values") for k, v in meta.items()}


_EMPTY: Mapping[str, str] = frozen_map({})
_STATES = frozenset(("active", "grace"))


def _raw_size(raw: RawSession) -> int:
    n = 160 + len(raw.subject)
    for k, v in raw.meta.items():
        n += len(k) + len(v) + 16
    for k, v in raw.data.items():
        n += len(k) + len(v) + 16
    return n


class StoreCore(Generic[D]):
    """One tenant's view of a backend."""

    def __init__(
        self,
        backend: Backend,
        codec: Codec[D],
        keys: KeySchema,
        *,
        cache: NearCache | None = None,
        on_unavailable: OnUnavailable = OnUnavailable.FAIL_CLOSED,
        hooks: Hooks | None = None,
    ) -> None:
        self.backend = backend
        self.codec = codec
        self.keys = keys
        self.cache = cache
        self.on_unavailable = on_unavailable
        self.hooks = hooks
        #: the backend's one-command whole read (`ModuleBackend.get_command`), if it has one
        self._get_command = getattr(backend, "get_command", None)

    @property
    def tenant(self) -> str:
        return self.keys.tenant

    # -- decoding --------------------------------------------------------------------
    def session(self, sid: str, raw: RawSession, cached: bool = False) -> Session[D]:
        return Session(
            sid,
            self.keys.tenant,
            _text(raw.subject),
            raw.created,
            raw.version,
            raw.state if raw.state in _STATES else _state(raw.state),  # type: ignore[arg-type]
            raw.last_access,
            raw.idle_deadline,
            raw.absolute_deadline,
            raw.grace_until,
            frozen_map(_text_map(raw.meta)) if raw.meta else _EMPTY,
            self.codec.decode_data(raw.data),
            cached,
        )

    # -- the drivers' fast path: one command, no generator -------------------------------
    def get_request(self, sid: str, touch: bool) -> Command | None:
        """The single command of a whole ``get`` when no near-cache is in the
        way and the backend has settled on a one-command read (the module
        with PACKED), else None: drive `get` instead. Its reply goes to
        `got`. Raises `InvalidSession` like `get`."""
        if self.cache is not None or self._get_command is None:
            return None
        cmd: Command | None = self._get_command(self.keys.key(sid), touch)
        return cmd

    def got(self, sid: str, reply: Any) -> Session[D] | None:
        """The session of a `get_request`'s reply (a StoreUnavailable is the
        driver's to raise, as `get` would let it through without a cache)."""
        raw = decode_packed(check(reply))
        return None if raw is None else self.session(sid, raw)

    def cached(self, sid: str, touch: bool) -> tuple[Session[D] | None, Single | None]:
        """The near-cache's fast path, before any generator is built: a
        fresh entry and the background renewal to send, if one is due.
        Only a valid sid can be in the cache, so the lookup needs no check."""
        cache = self.cache
        if cache is None or type(sid) is not str:
            return None, None
        key = self.keys.tenant_prefix + sid.encode()
        s, renew = cache.hit(key, touch)
        if s is None:
            return None, None
        return s, (self.backend.renewal(key) if renew else None)

    def _drop(self, key: bytes) -> None:
        if self.cache is not None:
            self.cache.drop(key)

    # -- operations ------------------------------------------------------------------
    def create(
        self,
        *,
        subject: str = "",
        data: Any = None,
        meta: Mapping[str, str] | None = None,
        idle: int | None = None,
        absolute: int | None = None,
        grace: int | None = None,
        sid: str | None = None,
    ) -> Op[Session[D]]:
        sid = sid if sid is not None else new_sid()
        key = self.keys.key(sid)
        enc = self.codec.encode_data(data)
        raw = yield from self.backend.create(
            key,
            subject=_btext(subject, "subject"),
            idle=idle,
            absolute=absolute,
            grace=grace,
            meta=_meta(meta),
            data=enc,
        )
        return self.session(sid, raw)

    def get(
        self,
        sid: str,
        *,
        touch: bool = False,
        fields: Iterable[str] | None = None,
        nodata: bool = False,
        fresh: bool = False,
        looked_up: bool = False,
    ) -> Op[Session[D] | None]:
        key = self.keys.key(sid)
        flist = None if fields is None else [field_name(f) for f in fields]
        cache = self.cache if (flist is None and not nodata) else None
        if cache is not None and not fresh and not looked_up:
            hit, renew = cache.hit(key, touch)
            if hit is not None:
                if renew:
                    # slide the server's idle deadline; the reply is not awaited
                    yield Background(self.backend.renewal(key))
                return hit
        token = cache.begin(key) if cache is not None else None
        try:
            try:
                raw = yield from self.backend.get(key, touch=touch, fields=flist, nodata=nodata)
            except StoreUnavailable:
                if cache is not None and self.on_unavailable is OnUnavailable.SERVE_CACHED:
                    stale = cache.stale(key)
                    if stale is not None:
                        if self.hooks is not None:
                            self.hooks.on_cache("stale_hit")
                        return stale
                raise
            except BaseException:
                self._drop(key)  # revoked, or unknown: no stale copy survives
                raise
            if raw is None:
                self._drop(key)
                return None
            s = self.session(sid, raw)
            if cache is not None and token is not None:
                cache.fill(key, token, msgspec.structs.replace(s, cached=True), _raw_size(raw))
            return s
        finally:
            if cache is not None:
                cache.end(key)

    def set(
        self,
        sid: str,
        *,
        data: Mapping[str, Any] | None = None,
        unset: Iterable[str] | None = None,
        meta: Mapping[str, str] | None = None,
        if_version: int | None = None,
    ) -> Op[int | None]:
        key = self.keys.key(sid)
        enc = self.codec.encode_fields(data) if data else {}
        un = [field_name(f) for f in unset] if unset else []
        m = _meta(meta)
        if not (enc or un or m):
            raise ValueError("set needs data, unset or meta")
        self._drop(key)
        try:
            return (yield from self.backend.set(key, data=enc, unset=un, meta=m, if_version=if_version))
        finally:
            self._drop(key)

    def cas(self, sid: str, version: int, data: Any) -> Op[int | None]:
        key = self.keys.key(sid)
        enc = self.codec.encode_data(data)
        self._drop(key)
        try:
            return (yield from self.backend.cas(key, version, enc))
        finally:
            self._drop(key)

    def renew(self, sid: str, *, idle: int | None = None) -> Op[int | None]:
        key = self.keys.key(sid)
        if idle is not None:
            self._drop(key)  # RENEW IDLE changes the version
        r = yield from self.backend.renew(key, idle=idle)
        if r is None or idle is not None:
            self._drop(key)
        return r

    def ttl(self, sid: str) -> Op[Ttl | None]:
        raw = yield from self.backend.ttl(self.keys.key(sid))
        return None if raw is None else ttl_from_raw(raw)

    def revoke(self, sid: str, *, reason: str | None = None) -> Op[bool]:
        key = self.keys.key(sid)
        self._drop(key)
        try:
            return (yield from self.backend.revoke(key, reason=None if reason is None else _btext(reason, "reason")))
        finally:
            self._drop(key)

    def list(self, subject: str) -> Op[list[str]]:
        keys = yield from self.backend.list(self.keys.tenant.encode(), _btext(subject, "subject"))
        return [self.keys.sid(k) for k in keys]

    def revoke_all(
        self, subject: str, *, except_sid: str | None = None, reason: str | None = None
    ) -> Op[int]:
        ex = None if except_sid is None else self.keys.key(except_sid)
        # the server's invalidations drop each revoked session from the near-cache
        return (
            yield from self.backend.revoke_all(
                self.keys.tenant.encode(),
                _btext(subject, "subject"),
                except_key=ex,
                reason=None if reason is None else _btext(reason, "reason"),
            )
        )

    def count(self, subject: str | None = None) -> Op[int]:
        return (
            yield from self.backend.count(
                self.keys.tenant.encode(), None if subject is None else _btext(subject, "subject")
            )
        )

    def configure_tenant(self, **settings: int | str) -> Op[None]:
        return (yield from self.backend.tenant_set(self.keys.tenant.encode(), settings))

    def tenant_settings(self) -> Op[TenantSettings | None]:
        return (yield from self.backend.tenant_get(self.keys.tenant.encode()))

    def reset_tenant(self) -> Op[bool]:
        return (yield from self.backend.tenant_del(self.keys.tenant.encode()))
