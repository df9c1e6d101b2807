"""Starlette / FastAPI integration: a pure ASGI middleware on the asyncio store.

    from redis_session import AsyncSessionStore
    from redis_session.starlette import SessionMiddleware, SessionDep

    store = AsyncSessionStore.from_url("redis://localhost:6379/0", tenant="acme")
    app.add_middleware(SessionMiddleware, store=store)          # Starlette's arguments, plus store

    @app.get("/")
    async def home(session: SessionDep):                        # FastAPI: loaded, typed
        session["views"] = session.get("views", 0) + 1

    async def endpoint(request):                                # Starlette
        await load_session(request)                             # or SessionMiddleware(autoload=True)
        request.session["theme"] = "dark"

``request.session`` has the interface of Starlette's ``SessionMiddleware``
(a dict) plus ``sid``, ``subject``, ``login(subject)``, ``logout(reason)``,
``rotate()``, ``revoked_reason``. It is lazy: a request that never loads it
costs no Redis call. Since an asyncio read cannot happen inside a plain
``dict`` access, it is loaded by ``await load_session(request)``, by the
FastAPI dependency, or for every request that carries a session cookie with
``autoload=True`` (``autoload`` may also be a list of path prefixes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .web import RequestSession, SessionNotLoaded, arun, client_meta

if TYPE_CHECKING:
    from . import AsyncSessionStore

__all__ = [
    "AsyncRequestSession",
    "SessionDep",
    "SessionMiddleware",
    "SessionNotLoaded",
    "get_session",
    "load_session",
]


class AsyncRequestSession(RequestSession):
    """``request.session`` under the middleware: `RequestSession` plus ``aload``."""

    def __init__(self, cookie_sid: str | None, store: AsyncSessionStore[Any], **kwargs: Any) -> None:
        super().__init__(cookie_sid, **kwargs)
        self._store = store

    async def aload(self) -> AsyncRequestSession:
        if not self.loaded:
            await arun(self._store, self.load_steps())
        self.accessed = True
        return self


class SessionMiddleware:
    """Starlette's ``SessionMiddleware`` arguments (no ``secret_key``: the
    cookie holds only a random sid), plus ``store`` and ``autoload``.
    ``max_age`` None makes a browser-session cookie."""

    def __init__(
        self,
        app: ASGIApp,
        store: AsyncSessionStore[Any],
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        autoload: bool | Sequence[str] = False,
    ) -> None:
        self.app = app
        self.store = store
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.path = path
        self.autoload = autoload
        flags = f"path={path}; httponly; samesite={same_site}"
        if https_only:
            flags += "; secure"
        if domain is not None:
            flags += f"; domain={domain}"
        self.security_flags = flags

    def _autoload(self, path: str) -> bool:
        if isinstance(self.autoload, bool):
            return self.autoload
        return any(path.startswith(p) for p in self.autoload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        client = scope.get("client")
        session = AsyncRequestSession(
            conn.cookies.get(self.session_cookie),
            self.store,
            meta=client_meta(client[0] if client else None, conn.headers.get("user-agent")),
        )
        scope["session"] = session
        if session.cookie_sid is not None and self._autoload(scope.get("path", "")):
            await session.aload()
        if scope["type"] == "websocket":  # readable; a websocket has no response to save with
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                result = await arun(self.store, session.save_steps())
                if result.cookie is not None:
                    headers = MutableHeaders(scope=message)
                    if session.accessed:
                        headers.add_vary_header("Cookie")
                    if result.cookie == "delete":
                        headers.append(
                            "set-cookie",
                            f"{self.session_cookie}=null; expires=Thu, 01 Jan 1970 00:00:00 GMT; {self.security_flags}",
                        )
                    elif result.sid is not None and (result.sid != session.cookie_sid or self.max_age is not None):
                        age = f"; Max-Age={self.max_age}" if self.max_age is not None else ""
                        headers.append("set-cookie", f"{self.session_cookie}={result.sid}{age}; {self.security_flags}")
            await send(message)

        await self.app(scope, receive, send_wrapper)


def _session_of(conn: HTTPConnection) -> AsyncRequestSession:
    session = conn.scope.get("session")
    if not isinstance(session, AsyncRequestSession):
        raise RuntimeError("redis_session.starlette.SessionMiddleware is not installed")
    return session


async def load_session(conn: HTTPConnection) -> AsyncRequestSession:
    """Load ``request.session`` (one ``get ... touch``; nothing when there is
    no session cookie). Idempotent."""
    return await _session_of(conn).aload()


async def get_session(request: Request) -> AsyncRequestSession:
    """FastAPI dependency (or a plain helper): the request's session, loaded."""
    return await load_session(request)


try:
    from fastapi import Depends

    #: ``async def view(session: SessionDep)``: the request's session, loaded, typed
    SessionDep = Annotated[AsyncRequestSession, Depends(get_session)]
except ImportError:  # Starlette without FastAPI
    SessionDep = AsyncRequestSession  # type: ignore[misc]
