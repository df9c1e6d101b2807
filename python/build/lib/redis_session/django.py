"""Django integration: a session engine on the package's store.

    SESSION_ENGINE = "redis_session.django"
    SESSION_REDIS_URL = "redis://localhost:6379/0"
    SESSION_REDIS_TENANT = "acme"
    SESSION_REDIS_OPTIONS = {"near_cache": True}    # optional: SessionStore.from_url's keyword arguments
    # optional, to record each session's device (IP, user agent) for "your devices":
    MIDDLEWARE = [..., "redis_session.django.SessionMiddleware", ...]   # instead of Django's

`SessionStore` is a `SessionBase` with Django's sync API and the async one
(``aload``, ``asave``, ``acreate``, ``aexists``, ``adelete``, ``acycle_key``,
``aflush``, ...). What differs from Django's cache/db backends:

- a load renews with ``touch``; a save writes only the keys that changed, as
  one field-level set (no read-modify-write of a pickled/JSON blob);
- ``cycle_key`` (called by ``django.contrib.auth.login``) rotates: the new
  session is created at the save with the logged-in user's id as its
  subject (from ``_auth_user_id``), and the old sid is revoked with reason
  ``rotated``;
- a save on a session deleted or revoked meanwhile raises ``UpdateError``
  (Django answers ``SessionInterrupted``, as with its own backends) instead of
  writing it back; ``request.session.revoked_reason`` says why;
- ``delete``/``flush`` (``logout``) revoke with reason ``logout``;
- ``clear_expired`` is a no-op: the server expires sessions.

The server-side idle timeout and lifetime are the tenant's settings
(``store.tenant_set``); ``SESSION_COOKIE_AGE`` and ``set_expiry`` govern the
cookie as they do in Django.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest

from .errors import SessionExists
from .protocol import valid_sid
from .web import (
    LOGOUT,
    Call,
    Loaded,
    Steps,
    arun,
    client_meta,
    create_steps,
    diff,
    load_steps,
    new_sid,
    revoke_steps,
    rotate_steps,
    run,
    update_steps,
)

if TYPE_CHECKING:
    from . import AsyncSessionStore
    from . import SessionStore as Store
    from .types import Session

__all__ = ["SessionMiddleware", "SessionStore", "get_async_store", "get_store"]

#: where Django keeps the logged-in user's id in the session
AUTH_USER_KEY = "_auth_user_id"

_Key = tuple[str, str, str]
_stores: dict[_Key, Store[Any]] = {}
_async_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, AsyncSessionStore[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _config() -> tuple[_Key, dict[str, Any]]:
    url = getattr(settings, "SESSION_REDIS_URL", "redis://localhost:6379/0")
    tenant = getattr(settings, "SESSION_REDIS_TENANT", "default")
    options = dict(getattr(settings, "SESSION_REDIS_OPTIONS", None) or {})
    return (url, tenant, repr(sorted(options.items()))), options


def get_store() -> Store[Any]:
    """The process's sync store for the configured URL, tenant and options
    (``SESSION_REDIS_OPTIONS``: keyword arguments of ``SessionStore.from_url``,
    e.g. ``{"near_cache": True}``)."""
    from . import SessionStore as Store

    key, options = _config()
    store = _stores.get(key)
    if store is None:
        store = _stores[key] = Store.from_url(key[0], tenant=key[1], **options)
    return store


def get_async_store() -> AsyncSessionStore[Any]:
    """The asyncio store for the running event loop (an asyncio connection
    pool belongs to the loop that opened it)."""
    from . import AsyncSessionStore

    key, options = _config()
    per_loop = _async_stores.setdefault(asyncio.get_running_loop(), {})
    store = per_loop.get(key)
    if store is None:
        store = per_loop[key] = AsyncSessionStore.from_url(key[0], tenant=key[1], **options)
    return store


def _exists_steps(sid: str) -> Steps[bool]:
    if not valid_sid(sid):
        return False
    reply = yield Call("get", (sid,), {"touch": False})
    return reply is not None  # a revoked tombstone still holds its sid


class SessionStore(SessionBase):
    """``SESSION_ENGINE = "redis_session.django"``."""

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._stored: Session[Any] | None = None
        #: cycle_key ran: at the save, create the session under the new key (and revoke this one)
        self._pending_create = False
        self._rotate_from: str | None = None
        #: why the browser's session is gone, when it was revoked
        self.revoked_reason: str | None = None
        #: device meta a new session records (set by our SessionMiddleware)
        self.request_meta: dict[str, str] = {}

    def _validate_session_key(self, key: Any) -> bool:
        return valid_sid(key)

    def _data(self, no_load: bool = False) -> dict[str, Any]:
        """SessionBase's lazily loaded dict (private in Django, absent from its stubs)."""
        return self._get_session(no_load=no_load)  # type: ignore[attr-defined,no-any-return]

    async def _adata(self, no_load: bool = False) -> dict[str, Any]:
        return await self._aget_session(no_load=no_load)  # type: ignore[attr-defined,no-any-return]

    def _subject(self, data: Mapping[str, Any]) -> str:
        user = data.get(AUTH_USER_KEY)
        return "" if user is None else str(user)

    # -- the steps, shared by both APIs ---------------------------------------------
    def _take(self, found: Loaded) -> dict[str, Any]:
        self._stored = found.stored
        if found.stored is None:
            self.revoked_reason = found.revoked_reason
            self._session_key = None
            return {}
        return found.data

    def _create_steps(self, data: Mapping[str, Any]) -> Steps[None]:
        sid = self._session_key
        if sid is None:
            sid = self._session_key = new_sid()
        created = yield from create_steps(sid, self._subject(data), data, self.request_meta)
        self._stored = created

    def _save_steps(self, must_create: bool, data: dict[str, Any]) -> Steps[None]:
        sid = self.session_key
        if sid is None:
            raise UpdateError
        if must_create:
            kwargs = {"sid": sid, "subject": self._subject(data), "data": dict(data), "meta": self.request_meta}
            reply = yield Call("create", (), kwargs)
            if isinstance(reply, SessionExists):
                raise CreateError
            self._stored = reply
            return
        if self._pending_create:
            self._stored = yield from rotate_steps(self._rotate_from, sid, self._subject(data), data, self.request_meta)
            self._pending_create = False
            self._rotate_from = None
            return
        if self._stored is None or self._stored.sid != sid:
            raise UpdateError
        changed, unset = diff(self._stored.data, data)
        result = yield from update_steps(sid, changed, unset)
        if result.revoked_reason is not None:
            self.revoked_reason = result.revoked_reason
            raise UpdateError
        if result.gone:
            raise UpdateError

    def _cycle(self, data: dict[str, Any]) -> None:
        self._rotate_from = self._stored.sid if self._stored is not None else None
        self._stored = None
        self._session_key = new_sid()
        self._pending_create = True
        self._session_cache = data
        self.modified = True

    # -- the sync API -------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        return self._take(run(get_store(), load_steps(self.session_key)))

    def exists(self, session_key: str) -> bool:
        return run(get_store(), _exists_steps(session_key))

    def create(self) -> None:
        data = self._data(no_load=True)
        self._session_key = new_sid()
        self._pending_create = False
        self._rotate_from = None
        run(get_store(), self._create_steps(data))
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        data = self._data(no_load=must_create)
        if self.session_key is None:
            return self.create()
        run(get_store(), self._save_steps(must_create, data))

    def delete(self, session_key: str | None = None) -> None:
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        run(get_store(), revoke_steps(key, LOGOUT))
        if key == self.session_key:
            self._stored = None

    def cycle_key(self) -> None:
        self._cycle(self._data())

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: the server expires sessions itself."""

    # -- the async API (Django 5+) ---------------------------------------------------------
    async def aload(self) -> dict[str, Any]:
        return self._take(await arun(get_async_store(), load_steps(self.session_key)))

    async def aexists(self, session_key: str) -> bool:
        return await arun(get_async_store(), _exists_steps(session_key))

    async def acreate(self) -> None:
        data = await self._adata(no_load=True)
        self._session_key = new_sid()
        self._pending_create = False
        self._rotate_from = None
        await arun(get_async_store(), self._create_steps(data))
        self.modified = True

    async def asave(self, must_create: bool = False) -> None:
        data = await self._adata(no_load=must_create)
        if self.session_key is None:
            return await self.acreate()
        await arun(get_async_store(), self._save_steps(must_create, data))

    async def adelete(self, session_key: str | None = None) -> None:
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        await arun(get_async_store(), revoke_steps(key, LOGOUT))
        if key == self.session_key:
            self._stored = None

    async def acycle_key(self) -> None:
        self._cycle(await self._adata())

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing to do: the server expires sessions itself."""


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's SessionMiddleware, plus the device meta (IP, user agent)
    each new session records, for ``store.list`` / "your devices"."""

    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        session = request.session
        if isinstance(session, SessionStore):
            session.request_meta = client_meta(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_USER_AGENT"))
