"""Flask integration: a `SessionInterface` on the package's store.

    from redis_session.flask import RedisSessionInterface
    app.config["SESSION_REDIS_URL"] = "redis://localhost:6379/0"
    app.config["SESSION_TENANT"] = "acme"
    RedisSessionInterface().init_app(app)      # or RedisSessionInterface(store).init_app(app)

    session["cart"] = [1, 2]                     # only "cart" is written, as one field-level set
    session.login("user42")                      # new sid; the old one revoked ("rotated")
    session.logout()                             # revoked ("logout"), cookie deleted
    session.revoked_reason                       # why the browser's session is gone

Configuration names follow Flask's and Flask-Session's where they mean the
same: ``SESSION_COOKIE_NAME``, ``SESSION_COOKIE_DOMAIN``, ``SESSION_COOKIE_PATH``,
``SESSION_COOKIE_HTTPONLY``, ``SESSION_COOKIE_SECURE``, ``SESSION_COOKIE_SAMESITE``,
``SESSION_COOKIE_PARTITIONED``, ``PERMANENT_SESSION_LIFETIME`` (the cookie's
lifetime), ``SESSION_PERMANENT``, ``SESSION_REFRESH_EACH_REQUEST`` (re-send
the cookie on each request that used the session: a header, not a write).
Our own: ``SESSION_REDIS_URL``, ``SESSION_TENANT``, ``SESSION_STORE`` (a
ready `SessionStore`). ``SESSION_COOKIE_SAMESITE`` defaults to ``Lax`` here.

With Flask-Login, nothing more is needed: ``login_user`` rotates the session
(bound to ``user.get_id()``) and ``logout_user`` revokes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

from .web import LOGOUT, RequestSession, client_meta, run

if TYPE_CHECKING:
    from . import SessionStore

__all__ = ["FlaskSession", "RedisSessionInterface"]


class FlaskSession(RequestSession, SessionMixin):
    """Flask's ``session``: a `RequestSession` with Flask's ``permanent``
    and ``new`` attributes (kept out of the stored data)."""

    def __init__(self, *args: Any, permanent: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._permanent = permanent

    @property
    def permanent(self) -> bool:
        return self._permanent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._permanent = bool(value)

    @property
    def new(self) -> bool:  # type: ignore[override]
        return self.stored is None


class RedisSessionInterface(SessionInterface):
    """Flask's session on the module's store. ``store``: a `SessionStore`
    (or configure ``SESSION_STORE`` / ``SESSION_REDIS_URL`` + ``SESSION_TENANT``)."""

    def __init__(self, store: SessionStore[Any] | None = None) -> None:
        self._store = store

    def init_app(self, app: Flask) -> None:
        app.config.setdefault("SESSION_PERMANENT", True)
        app.config.setdefault("SESSION_TENANT", "default")
        if app.config.get("SESSION_COOKIE_SAMESITE") is None:
            app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
        if self._store is None:
            self._store = app.config.get("SESSION_STORE")
        if self._store is None:
            from . import SessionStore

            url = app.config.get("SESSION_REDIS_URL", "redis://localhost:6379/0")
            self._store = SessionStore.from_url(url, tenant=app.config["SESSION_TENANT"])
        app.session_interface = self
        app.extensions["redis_session"] = self
        _connect_flask_login(app)

    @property
    def store(self) -> SessionStore[Any]:
        if self._store is None:
            raise RuntimeError("RedisSessionInterface: call init_app(app) first")
        return self._store

    # -- SessionInterface ----------------------------------------------------------
    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        store = self.store

        def load(s: RequestSession) -> None:
            run(store, s.load_steps())

        return FlaskSession(
            request.cookies.get(self.get_cookie_name(app)),
            meta=client_meta(request.remote_addr, request.headers.get("User-Agent")),
            loader=load,
            permanent=bool(app.config["SESSION_PERMANENT"]),
        )

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, FlaskSession):
            return
        if session.accessed:
            response.vary.add("Cookie")
        result = run(self.store, session.save_steps())
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        if result.cookie == "delete":
            response.delete_cookie(
                name,
                domain=domain,
                path=path,
                secure=self.get_cookie_secure(app),
                httponly=self.get_cookie_httponly(app),
                samesite=self.get_cookie_samesite(app),
            )
            response.vary.add("Cookie")
            return
        if result.cookie != "set" or result.sid is None:
            return
        fresh = result.sid != session.cookie_sid
        if not fresh and not self.should_set_cookie(app, session):
            return
        extra: dict[str, Any] = {}
        if hasattr(self, "get_cookie_partitioned"):  # Flask 3.1+
            extra["partitioned"] = self.get_cookie_partitioned(app)
        response.set_cookie(
            name,
            result.sid,
            expires=self.get_expiration_time(app, session),
            httponly=self.get_cookie_httponly(app),
            domain=domain,
            path=path,
            secure=self.get_cookie_secure(app),
            samesite=self.get_cookie_samesite(app),
            **extra,
        )
        response.vary.add("Cookie")


def _connect_flask_login(app: Flask) -> None:
    """With Flask-Login installed, its ``login_user`` rotates the session
    (bound to ``user.get_id()``) and its ``logout_user`` revokes it."""
    try:
        from flask_login import user_logged_in, user_logged_out
    except ImportError:
        return

    def logged_in(sender: Any, user: Any = None, **extra: Any) -> None:
        from flask import session

        if isinstance(session, FlaskSession) and user is not None:
            session.login(str(user.get_id()))

    def logged_out(sender: Any, user: Any = None, **extra: Any) -> None:
        from flask import session

        if isinstance(session, FlaskSession):
            session.logout(LOGOUT)

    user_logged_in.connect(logged_in, app, weak=False)
    user_logged_out.connect(logged_out, app, weak=False)


def logout(reason: str = LOGOUT) -> None:
    """``session.logout(reason)`` for the current request (a convenience)."""
    from flask import session

    if isinstance(session, FlaskSession):
        session.logout(reason)
