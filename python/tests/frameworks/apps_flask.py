"""The proof app on Flask: Flask-Session (anchor) and redis_session.flask (ours)."""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import redis
from flask import Flask, request, session
from harness import HOLD, Adapter, Gate, Resp, parse_set_cookies

from redis_session import SessionStore
from redis_session.flask import RedisSessionInterface


def build_app(kind: str, port: int, gate: Gate, tenant: str = "flask") -> tuple[Flask, Any]:
    app = Flask("proof_" + kind)
    app.secret_key = "not-used-for-sessions"
    app.config["TESTING"] = True
    handle: Any
    if kind == "anchor":
        import flask_session

        handle = redis.Redis(host="127.0.0.1", port=port)
        app.config.update(
            SESSION_TYPE="redis",
            SESSION_REDIS=handle,
            SESSION_PERMANENT=True,
            SESSION_SERIALIZATION_FORMAT="msgpack",
        )
        flask_session.Session(app)
    else:
        handle = SessionStore.from_url(f"redis://127.0.0.1:{port}/0", tenant=tenant)
        RedisSessionInterface(handle).init_app(app)

    def hold() -> None:
        h = request.args.get("hold")
        if h == "view":
            gate.hold()
        elif h == "write":
            HOLD.set("write")

    @app.post("/login/<user>")
    def login(user: str) -> str:
        if kind == "ours":
            session.login(user)  # type: ignore[attr-defined]
        session["user"] = user
        return "ok"

    @app.get("/me")
    def me() -> str:
        reason = getattr(session, "revoked_reason", None) or ""
        return f"user={session.get('user', '')};reason={reason}"

    @app.post("/set/<k>/<v>")
    def set_(k: str, v: str) -> str:
        session[k] = v
        hold()
        return "ok"

    @app.get("/data")
    def data() -> str:
        return json.dumps(dict(session.items()))

    @app.get("/view")
    def view() -> str:
        return f"hello {session.get('user', 'stranger')}"

    @app.get("/plain")
    def plain() -> str:
        return "no session here"

    @app.post("/logout")
    def logout() -> str:
        if kind == "ours":
            session.logout()  # type: ignore[attr-defined]
        else:
            session.clear()
        return "bye"

    return app, handle


class FlaskAdapter(Adapter):
    framework = "Flask"

    def __init__(self, kind: str, port: int, gate: Gate) -> None:
        super().__init__(gate)
        self.kind = kind
        self.library = f"Flask-Session {version('Flask-Session')}" if kind == "anchor" else "redis_session.flask"
        self.app, self.handle = build_app(kind, port, gate)

    def write_targets(self) -> list[tuple[Any, str]]:
        if self.kind == "anchor":
            from flask_session.redis import RedisSessionInterface as FS

            return [(FS, "_upsert_session")]
        return [(type(self.handle), "set")]

    def request(self, method: str, path: str, sid: str | None) -> Resp:
        client = self.app.test_client(use_cookies=False)
        headers = {"Cookie": f"session={sid}"} if sid else {}
        r = client.open(path, method=method, headers=headers)
        cookie = parse_set_cookies(r.headers.getlist("Set-Cookie"), "session")
        return Resp(r.status_code, r.get_data(as_text=True), cookie)

    def close(self) -> None:
        super().close()
        self.handle.close()
