"""Your devices: a FastAPI app on redis-session.

Sign in (any user name, password ``demo``), a page that keeps a cart and a
theme in the session, "your devices" (each session of the user: device, IP,
last seen, from ``store.list``), "log out this device", "log out everywhere
else", and a cap on devices per user (the tenant's ``MAXPERSUBJECT`` with
``evict-oldest``: signing in on one device too many signs the oldest out).

    make example                              # a local redis-server with the module, then this app
    make example REDIS_URL=redis://host:6379/0 # any Redis with the module loaded

Environment: REDIS_URL, SESSION_TENANT (devices), MAX_DEVICES (3),
COOKIE_SECURE (0; set 1 behind HTTPS), SESSION_BACKEND (ours | starsessions:
the anchor, for `make example-load`; it has no "your devices").
"""

from __future__ import annotations

import hashlib
import html
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TENANT = os.environ.get("SESSION_TENANT", "devices")
MAX_DEVICES = int(os.environ.get("MAX_DEVICES", "3"))
COOKIE_SECURE = os.environ.get("COOKIE_SECURE", "0") == "1"
BACKEND = os.environ.get("SESSION_BACKEND", "ours")
PASSWORD = "demo"

REASONS = {
    "logout": "You signed out.",
    "logout-others": "You were signed out: “log out everywhere else” was chosen on another of your devices.",
    "device-revoked": "You were signed out: this device was removed from another of your devices.",
    "evicted: session limit": f"You were signed out: your account signed in on more than {MAX_DEVICES} devices, "
    "and this was the oldest.",
    "rotated": "Your session was renewed; please sign in again.",
}


# -- the session backend: ours, or starsessions for the load comparison -------------------
class Ours:
    name = "redis-session"

    def __init__(self) -> None:
        from redis_session import AsyncSessionStore

        self.store = AsyncSessionStore.from_url(REDIS_URL, tenant=TENANT)

    def install(self, app: FastAPI) -> None:
        from redis_session.starlette import SessionMiddleware

        app.add_middleware(SessionMiddleware, store=self.store, https_only=COOKIE_SECURE, max_age=None)

    async def startup(self) -> None:
        await self.store.configure_tenant(maxpersubject=MAX_DEVICES, onlimit="evict-oldest")

    async def shutdown(self) -> None:
        await self.store.aclose()

    async def load(self, request: Request) -> Any:
        from redis_session.starlette import load_session

        return await load_session(request)

    def user(self, session: Any) -> str:
        return str(session.subject)

    def login(self, request: Request, session: Any, user: str) -> None:
        session.login(user)  # new sid bound to the user; the pre-login sid is revoked ("rotated")

    def logout(self, request: Request, session: Any) -> None:
        session.logout("logout")

    def reason(self, session: Any) -> str | None:
        return session.revoked_reason  # type: ignore[no-any-return]


class Anchor:
    name = "starsessions"

    def __init__(self) -> None:
        from redis.asyncio import Redis

        self.redis = Redis.from_url(REDIS_URL)

    def install(self, app: FastAPI) -> None:
        import starsessions
        from starsessions.stores.redis import RedisStore

        app.add_middleware(
            starsessions.SessionMiddleware,
            store=RedisStore(connection=self.redis),
            lifetime=1800,
            rolling=True,
            cookie_https_only=COOKIE_SECURE,
        )

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        await self.redis.aclose()

    async def load(self, request: Request) -> Any:
        import starsessions

        await starsessions.load_session(request)
        return request.session

    def user(self, session: Any) -> str:
        return str(session.get("user", ""))

    def login(self, request: Request, session: Any, user: str) -> None:
        import starsessions

        starsessions.regenerate_session_id(request)
        session["user"] = user

    def logout(self, request: Request, session: Any) -> None:
        session.clear()

    def reason(self, session: Any) -> str | None:
        return None


backend: Ours | Anchor = Anchor() if BACKEND == "starsessions" else Ours()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await backend.startup()
    yield
    await backend.shutdown()


app = FastAPI(title="Your devices", lifespan=lifespan)
backend.install(app)


if isinstance(backend, Ours):
    from redis_session import StoreUnavailable

    @app.exception_handler(StoreUnavailable)
    async def unavailable(request: Request, exc: StoreUnavailable) -> Response:
        """Redis is out of reach (after the store's retries and breaker): say so, with 503."""
        return PlainTextResponse("Sessions are unavailable for a moment; please retry.", status_code=503)


# -- pages ------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
body.dark{background:#1d1f21;color:#ddd} a{color:#2a6ebb} nav a{margin-right:1rem}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ccc;padding:.4rem;text-align:left}
.msg{background:#fff3cd;border:1px solid #e0c060;padding:.6rem;margin:1rem 0;color:#222}
.this{font-weight:bold;color:#1a7f37} button{margin:.2rem 0} form.inline{display:inline}
"""


def page(title: str, body: str, theme: str = "light", user: str = "") -> HTMLResponse:
    nav = (
        f'<nav><a href="/">Home</a><a href="/devices">Your devices</a> signed in as <b>{html.escape(user)}</b></nav>'
        if user
        else ""
    )
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body class={theme}>{nav}<h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def device_name(ua: str) -> str:
    browser = next(
        (
            b
            for k, b in (
                ("Edg/", "Edge"),
                ("Firefox/", "Firefox"),
                ("Chrome/", "Chrome"),
                ("Safari/", "Safari"),
                ("curl/", "curl"),
                ("python", "Python"),
            )
            if k in ua
        ),
        "Browser",
    )
    os_ = next(
        (
            o
            for k, o in (
                ("Android", "Android"),
                ("iPhone", "iPhone"),
                ("iPad", "iPad"),
                ("Windows", "Windows"),
                ("Mac OS", "macOS"),
                ("Linux", "Linux"),
            )
            if k in ua
        ),
        "",
    )
    label = f"{browser} on {os_}" if os_ else browser
    tag = next((t for t in ua.split() if t.startswith("device-")), "")  # the browser test names its profiles
    return f"{label} ({tag})" if tag else label


def device_id(sid: str) -> str:
    """What a page may show of another device's session: a short hash, never the sid."""
    return hashlib.sha256(sid.encode()).hexdigest()[:12]


def ago(ms: int) -> str:
    s = max(0, int(time.time() - ms / 1000))
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    return f"{s // 3600} h ago"


def login_page(message: str | None = None, status: int = 200) -> HTMLResponse:
    msg = f'<p class="msg" id="message">{html.escape(message)}</p>' if message else ""
    r = page(
        "Sign in",
        f"""{msg}<form method="post" action="/login">
        <p><label>User <input name="user" id="user" required maxlength="64" pattern="[A-Za-z0-9_-]+"></label></p>
        <p><label>Password <input name="password" id="password" type="password" required></label>
        <small>(any user name; the password is <code>{PASSWORD}</code>)</small></p>
        <p><button id="signin">Sign in</button></p></form>""",
    )
    r.status_code = status
    return r


@app.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> str:
    return f"ok {backend.name}"


@app.get("/login", response_model=None)
async def login_form(request: Request, msg: str | None = None) -> Response:
    return login_page(REASONS.get(msg or ""))


@app.post("/login", response_model=None)
async def login(request: Request, user: str = Form(...), password: str = Form(...)) -> Response:
    session = await backend.load(request)
    if password != PASSWORD or not user.replace("-", "").replace("_", "").isalnum() or len(user) > 64:
        return login_page("Wrong user name or password.", status=401)
    backend.login(request, session, user)
    session["signed_in_at"] = int(time.time())
    return RedirectResponse("/", status_code=303)


async def signed_in(request: Request) -> tuple[Any, str] | Response:
    """The session and its user, or the answer for a visitor who is not signed in:
    the login page, saying why when the session was revoked."""
    session = await backend.load(request)
    user = backend.user(session)
    if user:
        return session, user
    reason = backend.reason(session)
    if reason:
        return login_page(REASONS.get(reason, f"You were signed out ({reason})."), status=401)
    return RedirectResponse("/login", status_code=303)


@app.get("/", response_model=None)
async def home(request: Request) -> Response:
    got = await signed_in(request)
    if isinstance(got, Response):
        return got
    session, user = got
    cart = session.get("cart", [])
    theme = session.get("theme", "light")
    items = "".join(f"<li>{html.escape(str(i))}</li>" for i in cart) or "<li><i>empty</i></li>"
    body = f"""<p id="hello">Hello, <b>{html.escape(user)}</b>. This page reads your session
    (one <code>SESSION.GET … TOUCH</code>; a page view is not a write).</p>
    <h2>Cart</h2><ul id="cart">{items}</ul>
    <form method="post" action="/cart"><input name="item" id="item" required maxlength="40">
    <button id="add">Add</button></form>
    <h2>Theme</h2><form method="post" action="/theme">
    <button name="theme" value="light">Light</button> <button name="theme" value="dark">Dark</button></form>
    <p>Only the key you change is written (<code>SESSION.SET … DATA cart …</code>), so two tabs
    changing the cart and the theme at once both keep their change.</p>"""
    return page("Home", body, theme=theme, user=user)


@app.post("/cart", response_model=None)
async def add_to_cart(request: Request, item: str = Form(...)) -> Response:
    got = await signed_in(request)
    if isinstance(got, Response):
        return got
    session, _ = got
    session["cart"] = [*session.get("cart", []), item[:40]][-20:]
    return RedirectResponse("/", status_code=303)


@app.post("/theme", response_model=None)
async def set_theme(request: Request, theme: str = Form(...)) -> Response:
    got = await signed_in(request)
    if isinstance(got, Response):
        return got
    session, _ = got
    session["theme"] = "dark" if theme == "dark" else "light"
    return RedirectResponse("/", status_code=303)


@app.get("/devices", response_model=None)
async def devices(request: Request) -> Response:
    got = await signed_in(request)
    if isinstance(got, Response):
        return got
    session, user = got
    if not isinstance(backend, Ours):
        return page("Your devices", "<p>Not available with starsessions.</p>", user=user)
    rows = []
    for sid in await backend.store.list(user):
        try:
            s = await backend.store.get(sid, nodata=True)
        except Exception:  # revoked or gone between list and get
            continue
        if s is None:
            continue
        this = sid == session.sid
        ua = s.meta.get("ua", "")
        action = (
            '<span class="this">this device</span>'
            if this
            else f'<form class="inline" method="post" action="/devices/revoke">'
            f'<button name="device" value="{device_id(sid)}">Log out</button></form>'
        )
        rows.append(
            f'<tr class="device{" current" if this else ""}"><td title="{html.escape(ua)}">'
            f"{html.escape(device_name(ua))}</td><td>{html.escape(s.meta.get('ip', '?'))}</td>"
            f"<td>{ago(s.last_access)}</td><td>{ago(s.created)}</td><td>{action}</td></tr>"
        )
    body = f"""<p>Signed in on <b id="count">{len(rows)}</b> of at most {MAX_DEVICES} devices.</p>
    <table id="devices"><tr><th>Device</th><th>IP</th><th>Last seen</th><th>Signed in</th><th></th></tr>
    {"".join(rows)}</table>
    <form class="inline" method="post" action="/logout"><button id="logout">Log out this device</button></form>
    <form class="inline" method="post" action="/logout-others">
    <button id="logout-others">Log out everywhere else</button></form>"""
    return page("Your devices", body, theme=session.get("theme", "light"), user=user)


@app.post("/devices/revoke", response_model=None)
async def revoke_device(request: Request, device: str = Form(...)) -> Response:
    got = await signed_in(request)
    if isinstance(got, Response):
        return got
    _, user = got
    if isinstance(backend, Ours):
        for sid in await backend.store.list(user):
            if device_id(sid) == device:
                await backend.store.revoke(sid, reason="device-revoked")
    return RedirectResponse("/devices", status_code=303)


@app.post("/logout-others", response_model=None)
async def logout_others(request: Request) -> Response:
    got = await signed_in(request)
    if isinstance(got, Response):
        return got
    session, user = got
    if isinstance(backend, Ours):
        await backend.store.revoke_all(user, except_sid=session.sid, reason="logout-others")
    return RedirectResponse("/devices", status_code=303)


@app.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    session = await backend.load(request)
    backend.logout(request, session)
    return RedirectResponse("/login?msg=logout", status_code=303)
