"""redis_session.flask on a real server: laziness, cookies, field-level
writes, rotation, revocation, configuration."""

from __future__ import annotations

from typing import Any

import pytest
from apps_flask import FlaskAdapter
from flask import Flask, session
from fwlib import commandstats, got, one_read, store_calls
from harness import DELETED, Gate

from redis_session import Revoked, SessionStore
from redis_session.flask import RedisSessionInterface


@pytest.fixture
def ours(server: Any) -> Any:
    a = FlaskAdapter("ours", server.port, Gate())
    yield a
    a.close()


def _store(server: Any, tenant: str = "flask") -> SessionStore[Any]:
    return SessionStore.from_url(f"redis://127.0.0.1:{server.port}/0", tenant=tenant)


def _calls(server: Any) -> int:
    return sum(commandstats(server).values())


def test_lazy_no_redis_call_when_the_session_is_not_used(ours: Any, server: Any) -> None:
    sid = got(ours.request("POST", "/login/alice", None).cookie)
    server.admin().config_resetstat()
    for path_sid in (None, sid, "not a valid sid!"):
        r = ours.request("GET", "/plain", path_sid)
        assert r.status == 200 and r.cookie is None
    assert _calls(server) == 0
    r = ours.request("GET", "/view", "x" * 10)  # malformed: not worth a round trip
    assert "stranger" in r.text
    assert _calls(server) == 0


def test_cookie_flags_and_sid(server: Any) -> None:
    app = Flask("flags")
    RedisSessionInterface(_store(server)).init_app(app)

    @app.post("/login")
    def login() -> str:
        session.login("alice")  # type: ignore[attr-defined]
        return "ok"

    r = app.test_client().post("/login")
    (cookie,) = r.headers.getlist("Set-Cookie")
    name, _, rest = cookie.partition("=")
    sid = rest.split(";")[0]
    assert name == "session" and len(sid) == 43  # secrets.token_urlsafe(32): 256 bits
    low = cookie.lower()
    assert "httponly" in low and "samesite=lax" in low and "path=/" in low and "secure" not in low
    assert "expires=" in low  # SESSION_PERMANENT: PERMANENT_SESSION_LIFETIME

    app2 = Flask("flags2")
    app2.config.update(
        SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="sid", SESSION_COOKIE_SAMESITE="Strict", SESSION_PERMANENT=False
    )
    RedisSessionInterface(_store(server)).init_app(app2)
    app2.post("/login")(login)
    cookie = app2.test_client().post("/login").headers["Set-Cookie"].lower()
    assert cookie.startswith("sid=") and "secure" in cookie and "samesite=strict" in cookie
    assert "expires=" not in cookie  # a browser-session cookie


def test_only_changed_keys_are_written(ours: Any, server: Any, backend_kind: str) -> None:
    store = _store(server)
    sid = got(ours.request("POST", "/login/alice", None).cookie)
    v0 = got(store.get(sid)).version
    ours.request("POST", "/set/theme/dark", sid)
    s = got(store.get(sid))
    assert s.version == v0 + 1 and s.data["theme"] == "dark" and s.data["user"] == "alice"
    server.admin().config_resetstat()
    ours.request("POST", "/set/theme/dark", sid)  # the same value: no write
    assert store_calls(server, backend_kind) == one_read(backend_kind)
    assert got(store.get(sid)).version == v0 + 1


def test_in_place_mutation_is_saved(server: Any) -> None:
    app = Flask("mut")
    store = _store(server)
    RedisSessionInterface(store).init_app(app)

    @app.post("/add/<item>")
    def add(item: str) -> str:
        session.setdefault("cart", [])
        session["cart"].append(item)  # no assignment: found by the comparison with what was read
        return "ok"

    c = app.test_client()
    c.post("/add/a")
    c.post("/add/b")
    sid = got(c.get_cookie("session")).value
    assert got(store.get(sid)).data["cart"] == ["a", "b"]


def test_login_rotates_and_records_the_device(server: Any) -> None:
    store = _store(server)
    a = FlaskAdapter("ours", server.port, Gate())
    try:
        s0 = got(a.request("POST", "/set/cart/1", None).cookie)
        assert got(store.get(s0)).subject == ""
        s1 = got(a.request("POST", "/login/alice", s0).cookie)
        assert s1 and s1 != s0
        new = got(store.get(s1))
        assert new.subject == "alice" and new.data == {"cart": "1", "user": "alice"}
        assert new.meta["ip"] == "127.0.0.1" and "Werkzeug" in new.meta["ua"]
        assert store.list("alice") == [s1]
        with pytest.raises(Exception) as e:
            store.get(s0)
        assert getattr(e.value, "reason", None) == "rotated"
    finally:
        a.close()


def test_revoked_elsewhere_reason_and_cookie_deleted(ours: Any, server: Any) -> None:
    store = _store(server)
    sid = got(ours.request("POST", "/login/alice", None).cookie)
    store.revoke(sid, reason="admin: password reset")
    r = ours.request("GET", "/me", sid)
    assert r.text == "user=;reason=admin: password reset"
    assert r.cookie == DELETED


def test_clear_logs_out(server: Any) -> None:
    app = Flask("clear")
    store = _store(server)
    RedisSessionInterface(store).init_app(app)

    @app.post("/in")
    def sign_in() -> str:
        session.login("bob")  # type: ignore[attr-defined]
        session["x"] = 1
        return "ok"

    @app.post("/out")
    def sign_out() -> str:
        session.clear()
        return "ok"

    @app.post("/in-bare")
    def sign_in_bare() -> str:
        session.login("bob")  # type: ignore[attr-defined]
        return "ok"

    for path in ("/in", "/in-bare"):  # with data, and with only a subject
        c = app.test_client()
        c.post(path)
        assert store.count("bob") == 1
        r = c.post("/out")
        assert "session=;" in r.headers["Set-Cookie"]
        assert store.count("bob") == 0


def test_unknown_sid_is_not_adopted(ours: Any, server: Any) -> None:
    store = _store(server)
    forged = "A" * 43
    r = ours.request("POST", "/set/k/v", forged)
    assert r.cookie and r.cookie != forged
    assert store.get(forged) is None and got(store.get(r.cookie)).data == {"k": "v"}


def test_config_from_url(server: Any) -> None:
    app = Flask("cfg")
    app.config.update(SESSION_REDIS_URL=f"redis://127.0.0.1:{server.port}/0", SESSION_TENANT="cfgtenant")
    RedisSessionInterface().init_app(app)

    @app.post("/")
    def index() -> str:
        session["a"] = 1
        return "ok"

    c = app.test_client()
    c.post("/")
    sid = got(c.get_cookie("session")).value
    assert got(_store(server, "cfgtenant").get(sid)).data == {"a": 1}


def test_with_the_near_cache(server: Any) -> None:
    """A store with the near-cache: page views are served from it, an
    in-place change never alters the cached copy, and a revocation from
    another client reaches the app once the invalidation has arrived."""
    import time

    store = SessionStore.from_url(f"redis://127.0.0.1:{server.port}/0", tenant="nc", near_cache=True)
    other = _store(server, "nc")
    app = Flask("nc")
    RedisSessionInterface(store).init_app(app)

    @app.post("/in")
    def sign_in() -> str:
        session.login("nina")  # type: ignore[attr-defined]
        session["cart"] = ["a"]
        return "ok"

    @app.post("/add")
    def add() -> str:
        session["cart"].append("b")
        return "ok"

    @app.get("/me")
    def me() -> str:
        return f"{session.get('cart')}|{getattr(session, 'revoked_reason', None)}"

    try:
        c = app.test_client()
        c.post("/in")
        sid = got(c.get_cookie("session")).value
        deadline = time.monotonic() + 10
        while got(store.get(sid)).cached is False:  # the cache fills on a read after the create's invalidation
            assert time.monotonic() < deadline, "the near-cache never filled"
            time.sleep(0.05)
        assert c.get("/me").text == "['a']|None"
        c.post("/add")
        assert got(other.get(sid)).data["cart"] == ["a", "b"]
        deadline = time.monotonic() + 10
        while c.get("/me").text != "['a', 'b']|None":
            assert time.monotonic() < deadline, "the write never reached the cached reader"
            time.sleep(0.05)
        other.revoke(sid, reason="admin")
        deadline = time.monotonic() + 10
        while (text := c.get("/me").text) != "None|admin":
            assert time.monotonic() < deadline, f"the revocation never reached the app: {text}"
            time.sleep(0.05)
    finally:
        store.close()
        other.close()


def test_redis_down_is_store_unavailable(make_server: Any) -> None:
    """Redis gone: the load raises the package's StoreUnavailable, which the
    app maps to 503; nothing else escapes."""
    from redis_session import StoreUnavailable

    srv = make_server(name="down")
    store = SessionStore.from_url(f"redis://127.0.0.1:{srv.port}/0", tenant="flask", breaker=False)
    app = Flask("down")
    RedisSessionInterface(store).init_app(app)
    app.register_error_handler(StoreUnavailable, lambda e: ("sessions unavailable", 503))

    @app.post("/in")
    def sign_in() -> str:
        session.login("dan")  # type: ignore[attr-defined]
        return "ok"

    @app.get("/me")
    def me() -> str:
        return str(session.get("x"))

    c = app.test_client()
    c.post("/in")
    assert c.get("/me").status_code == 200
    srv.kill()
    r = c.get("/me")
    assert r.status_code == 503 and r.text == "sessions unavailable"
    store.close()


def test_flask_login_rotates_and_revokes(server: Any) -> None:
    from flask_login import LoginManager, UserMixin, login_user, logout_user

    class User(UserMixin):  # type: ignore[misc]
        def __init__(self, uid: str) -> None:
            self.id = uid

    store = _store(server)
    app = Flask("fl")
    app.secret_key = "flask-login wants one"
    RedisSessionInterface(store).init_app(app)
    lm = LoginManager(app)
    lm.user_loader(User)

    @app.post("/cart")
    def cart() -> str:
        session["cart"] = [1]
        return "ok"

    @app.post("/in")
    def sign_in() -> str:
        login_user(User("42"))
        return "ok"

    @app.post("/out")
    def sign_out() -> str:
        logout_user()
        return "ok"

    c = app.test_client()
    c.post("/cart")
    s0 = got(c.get_cookie("session")).value
    c.post("/in")
    s1 = got(c.get_cookie("session")).value
    assert s1 != s0
    new = got(store.get(s1))
    assert new.subject == "42" and new.data["cart"] == [1] and new.data["_user_id"] == "42"
    with pytest.raises(Revoked) as e:
        store.get(s0)
    assert e.value.reason == "rotated"
    c.post("/out")
    assert c.get_cookie("session") is None
    with pytest.raises(Revoked) as e:
        store.get(s1)
    assert e.value.reason == "logout"
