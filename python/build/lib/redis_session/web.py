"""What the Flask, Django and Starlette integrations share.

The per-request session logic lives here once, with no I/O in it: loading
and saving are written as *steps*, generators that yield the store calls
they need (`Call`) and receive the replies. `run` drives them on a
`SessionStore`, `arun` on an `AsyncSessionStore`; nothing else differs
between the sync and the asyncio integrations.

The behaviour every integration gets from here:

- lazy: nothing is read until the application touches the session;
- a read renews (``get(sid, touch=True)``), so a page view is not a write
  (the module applies a renewal at most once per ``touch-resolution``);
- a save writes only the fields whose value changed, as one field-level
  ``set`` (never a whole blob), so two overlapping requests that change
  different keys both keep their change;
- a save never creates a session that was deleted or revoked while the
  request ran (``set`` does not create); the revocation reason is kept on
  the request's session for the application to show;
- login rotates: a new sid (``secrets``, 256 bits) bound to the subject,
  the old sid revoked with reason ``rotated``;
- a sid the server does not know (expired, revoked, forged) is never
  adopted: a new session always gets a fresh sid.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .errors import Revoked, SessionError, SessionExists
from .protocol import valid_sid

if TYPE_CHECKING:
    from . import AsyncSessionStore, SessionStore
    from .types import Session

__all__ = [
    "LOGOUT",
    "LOGOUT_OTHERS",
    "ROTATED",
    "Call",
    "RequestSession",
    "SaveResult",
    "SessionNotLoaded",
    "arun",
    "client_meta",
    "new_sid",
    "run",
]

T = TypeVar("T")

#: revocation reasons the integrations use
ROTATED = "rotated"
LOGOUT = "logout"
LOGOUT_OTHERS = "logout-others"


class SessionNotLoaded(SessionError, RuntimeError):
    """An asyncio integration's session was used before ``await session.aload()``.

    A programming error: load it in the handler (or with the FastAPI
    dependency / the middleware's ``autoload``) before reading it.
    """


def new_sid() -> str:
    """A session id from `secrets`: 256 bits, 43 URL-safe characters."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Call:
    """One store call a step needs: ``store.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


Steps = Generator[Call, Any, T]


def run(store: SessionStore[Any], steps: Steps[T]) -> T:
    """Drive steps on a sync store. `Revoked` and `SessionExists` are
    replies the steps handle themselves; every other exception escapes."""
    reply: Any = None
    while True:
        try:
            call = steps.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            reply = getattr(store, call.method)(*call.args, **call.kwargs)
        except (Revoked, SessionExists) as e:
            reply = e


async def arun(store: AsyncSessionStore[Any], steps: Steps[T]) -> T:
    """`run` for an asyncio store."""
    reply: Any = None
    while True:
        try:
            call = steps.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            reply = await getattr(store, call.method)(*call.args, **call.kwargs)
        except (Revoked, SessionExists) as e:
            reply = e


def client_meta(ip: str | None, user_agent: str | None) -> dict[str, str]:
    """The meta a new session records about the device that made it."""
    meta: dict[str, str] = {}
    if ip:
        meta["ip"] = ip[:64]
    if user_agent:
        meta["ua"] = user_agent[:256]
    return meta


_SCALARS = (str, bytes, int, float, bool, type(None))


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


def _thaw(v: Any) -> Any:
    """A value the application may mutate without touching the stored one."""
    return v if isinstance(v, _SCALARS) else copy.deepcopy(v)


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The fields to set and the fields to unset to turn before into after.

    Compared by value, so an in-place change (``session["cart"].append(3)``)
    is saved like an assignment, and an assignment of an equal value is not
    a write.
    """
    changed = {k: v for k, v in after.items() if k not in before or not _same(before[k], v)}
    unset = [k for k in before if k not in after]
    return changed, unset


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a load found: the stored session (None when there is none), a
    private copy of its data, and the revocation reason when it was revoked."""

    stored: Session[Any] | None
    data: dict[str, Any]
    revoked_reason: str | None = None


def load_steps(sid: str | None) -> Steps[Loaded]:
    """Read and renew; a malformed sid is not worth a round trip."""
    if sid is None or not valid_sid(sid):
        return Loaded(None, {})
    reply = yield Call("get", (sid,), {"touch": True})
    if isinstance(reply, Revoked):
        return Loaded(None, {}, reply.reason)
    if reply is None:
        return Loaded(None, {})
    data = reply.data
    if not isinstance(data, Mapping):
        raise TypeError("the web integrations need a store whose codec gives dict data (not a schema)")
    return Loaded(reply, {str(k): _thaw(v) for k, v in data.items()})


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What a save did, for the integration to answer with.

    cookie: ``"set"`` (send the sid: new or kept), ``"delete"`` (the browser's
    sid is dead), or None (leave the browser's cookie as it is).
    """

    cookie: Literal["set", "delete"] | None
    sid: str | None = None
    #: the session had been revoked meanwhile: nothing was written
    revoked_reason: str | None = None
    #: the session had disappeared meanwhile (deleted, expired): nothing was written
    gone: bool = False
    #: the store's version after a write (None when nothing was written)
    version: int | None = None


def create_steps(sid: str, subject: str, data: Mapping[str, Any], meta: Mapping[str, str]) -> Steps[Session[Any]]:
    reply = yield Call("create", (), {"sid": sid, "subject": subject, "data": dict(data), "meta": dict(meta)})
    if isinstance(reply, SessionExists):  # 256 random bits never collide; say so if they do
        raise reply
    return reply  # type: ignore[no-any-return]


def rotate_steps(
    old_sid: str | None, new: str, subject: str, data: Mapping[str, Any], meta: Mapping[str, str]
) -> Steps[Session[Any]]:
    """Create the new session with the data, then revoke the old one."""
    created = yield from create_steps(new, subject, data, meta)
    if old_sid is not None:
        yield Call("revoke", (old_sid,), {"reason": ROTATED})
    return created


def update_steps(sid: str, changed: Mapping[str, Any], unset: list[str]) -> Steps[SaveResult]:
    """One field-level ``set``; never creates, never resurrects."""
    if not changed and not unset:
        return SaveResult("set", sid)
    reply = yield Call("set", (sid,), {"data": dict(changed), "unset": list(unset)})
    if isinstance(reply, Revoked):
        return SaveResult(None, None, revoked_reason=reply.reason)
    if reply is None:
        return SaveResult("delete", None, gone=True)
    return SaveResult("set", sid, version=int(reply))


def revoke_steps(sid: str | None, reason: str) -> Steps[None]:
    if sid is not None and valid_sid(sid):
        yield Call("revoke", (sid,), {"reason": reason})


class RequestSession(dict[str, Any]):
    """``request.session`` for Flask and Starlette/FastAPI: a dict, loaded
    on first use, that remembers what it held so a save writes only the
    difference.

    Beyond the dict: ``sid``, ``subject``, ``meta``, ``stored`` (the
    `Session` as read), ``revoked_reason`` (why the browser's session is
    gone, when it was revoked), ``login(subject)``, ``rotate()``,
    ``logout(reason)``.

    It is a ``dict`` subclass so that code written for Starlette's and
    Flask's sessions (``isinstance(session, dict)``, ``dict(session)``,
    JSON encoders) keeps working; every read and write goes through the
    overridden methods below, which load first.
    """

    def __init__(
        self,
        cookie_sid: str | None,
        *,
        meta: Mapping[str, str] | None = None,
        loader: Callable[[RequestSession], None] | None = None,
    ) -> None:
        super().__init__()
        self.cookie_sid = cookie_sid if cookie_sid is not None and valid_sid(cookie_sid) else None
        self.stored: Session[Any] | None = None
        self._revoked_reason: str | None = None
        self.accessed = False
        self.modified = False
        self.request_meta: dict[str, str] = dict(meta or {})
        self._loaded = self.cookie_sid is None
        self._loader = loader
        self._new_sid: str | None = None
        self._subject: str | None = None
        self._logout: str | None = None
        self._had_data = False

    # -- loading -----------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._loaded

    def load_steps(self) -> Steps[None]:
        if self._loaded:
            return
        found = yield from load_steps(self.cookie_sid)
        self._take(found)

    def _take(self, found: Loaded) -> None:
        self._loaded = True
        self.stored = found.stored
        self._revoked_reason = found.revoked_reason
        super().clear()
        super().update(found.data)
        self._had_data = bool(found.data)

    def _ensure(self) -> None:
        self.accessed = True
        if self._loaded:
            return
        if self._loader is None:
            raise SessionNotLoaded(
                "the session is not loaded yet: `await request.session.aload()` "
                "(or use the FastAPI dependency, or the middleware's autoload)"
            )
        self._loader(self)

    @property
    def revoked_reason(self) -> str | None:
        """Why the browser's session is gone when it was revoked (``logout``,
        ``logout-others``, ``rotated``, ``evicted: session limit``, ...), else None."""
        self._ensure()
        return self._revoked_reason

    # -- identity ------------------------------------------------------------------
    @property
    def sid(self) -> str | None:
        """The session's id after this request (the new one after a login;
        None for a visitor without a session, and after a logout)."""
        self._ensure()
        if self._logout is not None:
            return None
        if self._new_sid is not None:
            return self._new_sid
        return self.stored.sid if self.stored is not None else None

    @property
    def subject(self) -> str:
        """The logged-in subject ("" for an anonymous session)."""
        self._ensure()
        if self._subject is not None:
            return self._subject
        return self.stored.subject if self.stored is not None else ""

    @property
    def meta(self) -> Mapping[str, str]:
        self._ensure()
        return self.stored.meta if self.stored is not None else self.request_meta

    # -- what the application asks for -------------------------------------------------
    def login(self, subject: str) -> None:
        """Bind the session to ``subject`` under a new sid; the old sid is
        revoked (reason ``rotated``) when the response is saved. The data
        carries over."""
        self._ensure()
        self._subject = subject
        self._new_sid = new_sid()
        self.modified = True

    def rotate(self) -> None:
        """A new sid for the same subject and data (the old one: ``rotated``)."""
        self.login(self.subject)

    def logout(self, reason: str = LOGOUT) -> None:
        """Revoke this session (the reason is what its other tabs will read)
        and forget it here; the browser's cookie is deleted."""
        self._logout = reason
        self._loaded = True
        super().clear()
        self.modified = True

    # -- saving ----------------------------------------------------------------------
    def save_steps(self, *, empty_is_logout: bool = True) -> Steps[SaveResult]:
        """What the end of the request writes. ``empty_is_logout``: a session
        that held data or a subject and was emptied (``session.clear()``) is
        revoked, as Flask-Session and Starlette users expect of ``clear()``."""
        old = self.stored.sid if self.stored is not None else None
        if (
            self._logout is None
            and empty_is_logout
            and self.modified
            and self.stored is not None
            and (self._had_data or self.stored.subject)
            and self._new_sid is None
            and not self
        ):
            self._logout = LOGOUT
        if self._logout is not None:
            yield from revoke_steps(old or self.cookie_sid, self._logout)
            return SaveResult("delete" if self.cookie_sid else None)
        if not self._loaded:  # never touched: nothing read, nothing written
            return SaveResult(None)
        data = dict(self.items())
        if self._new_sid is not None:
            created = yield from rotate_steps(old, self._new_sid, self._subject or "", data, self.request_meta)
            self.stored = created
            self._new_sid = None
            return SaveResult("set", created.sid, version=created.version)
        if self.stored is None:
            if not data:
                return SaveResult("delete" if self.cookie_sid else None)
            created = yield from create_steps(new_sid(), "", data, self.request_meta)
            self.stored = created
            return SaveResult("set", created.sid, version=created.version)
        changed, unset = diff(self.stored.data, data)
        result = yield from update_steps(self.stored.sid, changed, unset)
        if result.revoked_reason is not None:
            self._revoked_reason = result.revoked_reason
        return result

    # -- the dict, loading first -------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        self._ensure()
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError("session keys are strings")
        self._ensure()
        self.modified = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._ensure()
        self.modified = True
        super().__delitem__(key)

    def __contains__(self, key: object) -> bool:
        self._ensure()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return super().__iter__()

    def __len__(self) -> int:
        self._ensure()
        return super().__len__()

    def __bool__(self) -> bool:
        self._ensure()
        return super().__len__() > 0

    def __eq__(self, other: object) -> bool:
        self._ensure()
        return super().__eq__(other)

    __hash__ = None

    def __repr__(self) -> str:
        if not self._loaded:
            return "<RequestSession (not loaded)>"
        return f"<RequestSession {super().__repr__()}>"

    def get(self, key: str, default: Any = None) -> Any:
        self._ensure()
        return super().get(key, default)

    def keys(self) -> Any:
        self._ensure()
        return super().keys()

    def values(self) -> Any:
        self._ensure()
        return super().values()

    def items(self) -> Any:
        self._ensure()
        return super().items()

    def copy(self) -> dict[str, Any]:
        self._ensure()
        return dict(super().items())

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._ensure()
        if key not in self:
            self[key] = default
        return super().__getitem__(key)

    def pop(self, key: str, *args: Any) -> Any:
        self._ensure()
        if key in self:
            self.modified = True
        return super().pop(key, *args)

    def popitem(self) -> tuple[str, Any]:
        self._ensure()
        self.modified = True
        return super().popitem()

    def clear(self) -> None:
        self._ensure()
        self.modified = True
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._ensure()
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def __or__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        self._ensure()
        return dict(super().items()) | dict(other)

    def __ior__(self, other: Any) -> RequestSession:  # type: ignore[override]
        self.update(other)
        return self
