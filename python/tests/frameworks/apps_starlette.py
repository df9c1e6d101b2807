"""The proof app on Starlette: starsessions (anchor) and redis_session.starlette (ours)."""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import httpx
from harness import HOLD, Adapter, Gate, LoopThread, Resp, parse_set_cookies
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


def build_app(kind: str, port: int, gate: Gate, tenant: str = "starlette") -> tuple[Starlette, Any]:
    handle: Any
    load: Any
    if kind == "anchor":
        import starsessions
        from redis.asyncio import Redis
        from starsessions.stores.redis import RedisStore

        handle = Redis(host="127.0.0.1", port=port)
        load = starsessions.load_session

        def install(app: Starlette) -> None:
            app.add_middleware(
                starsessions.SessionMiddleware,
                store=RedisStore(connection=handle),
                lifetime=1800,
                rolling=True,
                cookie_https_only=False,
            )

    else:
        from redis_session import AsyncSessionStore
        from redis_session.starlette import SessionMiddleware, load_session

        handle = AsyncSessionStore.from_url(f"redis://127.0.0.1:{port}/0", tenant=tenant)
        load = load_session

        def install(app: Starlette) -> None:
            app.add_middleware(SessionMiddleware, store=handle, max_age=1800)

    async def hold(request: Request) -> None:
        h = request.query_params.get("hold")
        if h == "view":
            await gate.ahold()
        elif h == "write":
            HOLD.set("write")

    async def login(request: Request) -> PlainTextResponse:
        await load(request)
        user = request.path_params["user"]
        if kind == "ours":
            request.session.login(user)  # type: ignore[attr-defined]
        request.session["user"] = user
        return PlainTextResponse("ok")

    async def me(request: Request) -> PlainTextResponse:
        await load(request)
        reason = getattr(request.session, "revoked_reason", None) or ""
        return PlainTextResponse(f"user={request.session.get('user', '')};reason={reason}")

    async def set_(request: Request) -> PlainTextResponse:
        await load(request)
        request.session[request.path_params["k"]] = request.path_params["v"]
        await hold(request)
        return PlainTextResponse("ok")

    async def data(request: Request) -> PlainTextResponse:
        await load(request)
        return PlainTextResponse(json.dumps({k: v for k, v in request.session.items() if not k.startswith("__")}))

    async def view(request: Request) -> PlainTextResponse:
        await load(request)
        return PlainTextResponse(f"hello {request.session.get('user', 'stranger')}")

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("no session here")

    async def logout(request: Request) -> PlainTextResponse:
        await load(request)
        if kind == "ours":
            request.session.logout()  # type: ignore[attr-defined]
        else:
            request.session.clear()
        return PlainTextResponse("bye")

    app = Starlette(
        routes=[
            Route("/login/{user}", login, methods=["POST"]),
            Route("/me", me),
            Route("/set/{k}/{v}", set_, methods=["POST"]),
            Route("/data", data),
            Route("/view", view),
            Route("/plain", plain),
            Route("/logout", logout, methods=["POST"]),
        ]
    )
    install(app)
    return app, handle


class StarletteAdapter(Adapter):
    framework = "Starlette"

    def __init__(self, kind: str, port: int, gate: Gate) -> None:
        super().__init__(gate)
        self.kind = kind
        self.library = f"starsessions {version('starsessions')}" if kind == "anchor" else "redis_session.starlette"
        if kind == "anchor":
            self.config = "rolling=True"
        self.loop = LoopThread()
        self.app, self.handle = build_app(kind, port, gate)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver")

    def write_targets(self) -> list[tuple[Any, str]]:
        if self.kind == "anchor":
            from starsessions.stores.redis import RedisStore

            return [(RedisStore, "write")]
        return [(type(self.handle), "set")]

    async def _request(self, method: str, path: str, sid: str | None) -> Resp:
        headers = {"cookie": f"session={sid}"} if sid else {}
        r = await self.client.request(method, path, headers=headers)
        return Resp(r.status_code, r.text, parse_set_cookies(r.headers.get_list("set-cookie"), "session"))

    def request(self, method: str, path: str, sid: str | None) -> Resp:
        return self.loop.run(self._request(method, path, sid))  # type: ignore[no-any-return]

    def close(self) -> None:
        super().close()
        try:
            self.loop.run(self.client.aclose())
            aclose = getattr(self.handle, "aclose", None) or getattr(self.handle, "close", None)
            if aclose is not None:
                res = aclose()
                if hasattr(res, "__await__"):
                    self.loop.run(res)
        finally:
            self.loop.close()
