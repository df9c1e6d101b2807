"""redis_session.starlette on a real server: the pure ASGI middleware,
load_session / autoload, the FastAPI dependency, cookies, revocation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from fwlib import commandstats, got, one_read, store_calls
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from redis_session import AsyncSessionStore, SessionStore
from redis_session.starlette import (
    AsyncRequestSession,
    SessionDep,
    SessionMiddleware,
    SessionNotLoaded,
    load_session,
)


def _url(server: Any) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


def run(
    server: Any,
    build: Callable[[AsyncSessionStore[Any]], Any],
    body: Callable[[httpx.AsyncClient], Awaitable[None]],
) -> None:
    async def main() -> None:
        store = AsyncSessionStore.from_url(_url(server), tenant="starlette")
        app = build(store)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            await body(c)
        await store.aclose()

    asyncio.run(main())


def _starlette(store: AsyncSessionStore[Any], **mw: Any) -> Starlette:
    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("plain")

    async def unloaded(request: Request) -> PlainTextResponse:
        try:
            request.session.get("x")
        except SessionNotLoaded:
            return PlainTextResponse("not loaded")
        return PlainTextResponse(f"loaded {request.session.get('x')}")

    async def put(request: Request) -> PlainTextResponse:
        session = await load_session(request)
        session["x"] = request.path_params["v"]
        if request.query_params.get("login"):
            session.login("carol")
        return PlainTextResponse("ok")

    async def me(request: Request) -> PlainTextResponse:
        session = await load_session(request)
        return PlainTextResponse(f"{session.subject}|{session.revoked_reason}")

    app = Starlette(
        routes=[
            Route("/plain", plain),
            Route("/unloaded", unloaded),
            Route("/put/{v}", put),
            Route("/me", me),
            Route("/auto/unloaded", unloaded),
        ]
    )
    app.add_middleware(SessionMiddleware, store=store, **mw)
    return app


def test_lazy_cookie_flags_and_not_loaded_error(server: Any, backend_kind: str) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/put/1")
        cookie = r.headers["set-cookie"]
        sid = cookie.split(";")[0].split("=", 1)[1]
        assert len(sid) == 43
        low = cookie.lower()
        assert "httponly" in low and "samesite=lax" in low and "path=/" in low and "max-age=1209600" in low
        assert "secure" not in low
        server.admin().config_resetstat()
        r = await c.get("/plain", headers={"cookie": f"session={sid}"})
        assert "set-cookie" not in r.headers
        r = await c.get("/unloaded", headers={"cookie": f"session={sid}"})
        assert r.text == "not loaded"
        assert sum(commandstats(server).values()) == 0
        r = await c.get("/auto/unloaded", headers={"cookie": f"session={sid}"})
        assert r.text == "loaded 1"
        assert store_calls(server, backend_kind) == one_read(backend_kind)

    run(server, lambda s: _starlette(s, autoload=["/auto"]), body)


def test_https_only_and_rotation_and_revocation(server: Any) -> None:
    sync = SessionStore.from_url(_url(server), tenant="starlette")

    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/put/1")
        assert "; secure" in r.headers["set-cookie"] and "samesite=strict" in r.headers["set-cookie"]
        s0 = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        r = await c.get("/put/2?login=1", headers={"cookie": f"s={s0}"})
        s1 = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        assert s1 != s0 and got(sync.get(s1)).subject == "carol" and got(sync.get(s1)).data == {"x": "2"}
        r = await c.get("/me", headers={"cookie": f"s={s0}"})
        assert r.text == "|rotated" and "1970" in r.headers["set-cookie"]
        sync.revoke_all("carol", reason="logout-others")
        r = await c.get("/me", headers={"cookie": f"s={s1}"})
        assert r.text == "|logout-others"

    run(server, lambda s: _starlette(s, session_cookie="s", https_only=True, same_site="strict"), body)


def test_fastapi_dependency(server: Any, backend_kind: str) -> None:
    def build(store: AsyncSessionStore[Any]) -> FastAPI:
        app = FastAPI()
        app.add_middleware(SessionMiddleware, store=store)

        @app.post("/visit")
        async def visit(session: SessionDep) -> dict[str, Any]:
            assert isinstance(session, AsyncRequestSession) and session.loaded
            session["visits"] = session.get("visits", 0) + 1
            return {"visits": session["visits"]}

        @app.get("/peek")
        async def peek(session: SessionDep) -> dict[str, Any]:
            return dict(session.items())

        return app

    async def body(c: httpx.AsyncClient) -> None:
        r = await c.post("/visit")
        sid = r.cookies["session"]
        for n in (2, 3):
            r = await c.post("/visit", headers={"cookie": f"session={sid}"})
            assert r.json() == {"visits": n}
        server.admin().config_resetstat()
        r = await c.get("/peek", headers={"cookie": f"session={sid}"})
        assert r.json() == {"visits": 3}
        assert store_calls(server, backend_kind) == one_read(backend_kind)  # a page view is not a write

    run(server, build, body)


def test_overlapping_requests_keep_both_keys(server: Any) -> None:
    """Two tasks on one loop: each loads, then both save different keys."""
    sync = SessionStore.from_url(_url(server), tenant="starlette")
    both_loaded = asyncio.Event

    def build(store: AsyncSessionStore[Any]) -> Starlette:
        gate: dict[str, Any] = {}

        async def put(request: Request) -> PlainTextResponse:
            session = await load_session(request)
            session[request.path_params["k"]] = 1
            gate.setdefault("n", 0)
            gate["n"] += 1
            ev = gate.setdefault("ev", both_loaded())
            if gate["n"] == 2:
                ev.set()
            await asyncio.wait_for(ev.wait(), 10)
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/k/{k}", put)])
        app.add_middleware(SessionMiddleware, store=store)
        return app

    async def body(c: httpx.AsyncClient) -> None:
        s = sync.create(data={"base": 0})
        h = {"cookie": f"session={s.sid}"}
        await asyncio.gather(c.get("/k/a", headers=h), c.get("/k/b", headers=h))
        assert dict(got(sync.get(s.sid)).data) == {"base": 0, "a": 1, "b": 1}

    run(server, build, body)


def test_websocket_reads_the_session(server: Any) -> None:
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket

    sync = SessionStore.from_url(_url(server), tenant="starlette")
    s = sync.create(subject="wendy", data={"room": "blue"})

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        session = await load_session(websocket)
        await websocket.send_text(f"{session.subject}:{session.get('room')}")
        await websocket.close()

    store = AsyncSessionStore.from_url(_url(server), tenant="starlette")
    app = Starlette(routes=[WebSocketRoute("/ws", ws)])
    app.add_middleware(SessionMiddleware, store=store)
    with TestClient(app) as client, client.websocket_connect("/ws", headers={"cookie": f"session={s.sid}"}) as w:
        assert w.receive_text() == "wendy:blue"
