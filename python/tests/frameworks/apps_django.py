"""The proof app on Django: the cache backend on django-redis (anchor) and
redis_session.django (ours). Also the ROOT_URLCONF of the Django tests."""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import django
from django.conf import settings

_DB_DIR = Path(tempfile.mkdtemp(prefix="rs-django-"))

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="proof-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="apps_django",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"],
        MIDDLEWARE=["redis_session.django.SessionMiddleware"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_DB_DIR / "db.sqlite3")}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        SESSION_ENGINE="redis_session.django",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

from django.contrib.auth import login as auth_login  # noqa: E402
from django.contrib.auth import logout as auth_logout  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from harness import HOLD, Adapter, Gate, Resp, parse_set_cookies  # noqa: E402

GATE: list[Gate] = []  # the current test's gate


def _hold(request: HttpRequest) -> None:
    h = request.GET.get("hold")
    if h == "view":
        GATE[-1].hold()
    elif h == "write":
        HOLD.set("write")


def login_view(request: HttpRequest, user: str) -> HttpResponse:
    u, _ = User.objects.get_or_create(username=user)
    auth_login(request, u, backend="django.contrib.auth.backends.ModelBackend")
    request.session["user"] = user
    return HttpResponse("ok")


def me_view(request: HttpRequest) -> HttpResponse:
    user = request.session.get("user", "")
    reason = getattr(request.session, "revoked_reason", None) or ""
    return HttpResponse(f"user={user};reason={reason}")


def set_view(request: HttpRequest, k: str, v: str) -> HttpResponse:
    request.session[k] = v
    _hold(request)
    return HttpResponse("ok")


def data_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(json.dumps({k: v for k, v in request.session.items() if not k.startswith("_")}))


def view_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello {request.session.get('user', 'stranger')}")


def plain_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no session here")


async def async_view(request: HttpRequest) -> HttpResponse:
    """An async view on the session's async API (Django 5+)."""
    visits = await request.session.aget("visits", 0) + 1
    await request.session.aset("visits", visits)
    return HttpResponse(f"visits={visits}")


def logout_view(request: HttpRequest) -> HttpResponse:
    auth_logout(request)
    return HttpResponse("bye")


urlpatterns = [
    path("login/<str:user>", login_view),
    path("me", me_view),
    path("set/<str:k>/<str:v>", set_view),
    path("data", data_view),
    path("view", view_view),
    path("plain", plain_view),
    path("logout", logout_view),
    path("async", async_view),
]


def settings_for(kind: str, port: int, save_every_request: bool = True) -> dict[str, Any]:
    if kind == "anchor":
        return {
            "SESSION_ENGINE": "django.contrib.sessions.backends.cache",
            "CACHES": {
                "default": {
                    "BACKEND": "django_redis.cache.RedisCache",
                    "LOCATION": f"redis://127.0.0.1:{port}/0",
                }
            },
            "MIDDLEWARE": ["django.contrib.sessions.middleware.SessionMiddleware"],
            "SESSION_SAVE_EVERY_REQUEST": save_every_request,
        }
    return {
        "SESSION_ENGINE": "redis_session.django",
        "SESSION_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "SESSION_REDIS_TENANT": "django",
        "MIDDLEWARE": ["redis_session.django.SessionMiddleware"],
        "SESSION_SAVE_EVERY_REQUEST": save_every_request,
    }


class DjangoAdapter(Adapter):
    framework = "Django"

    def __init__(self, kind: str, port: int, gate: Gate, save_every_request: bool = True) -> None:
        super().__init__(gate)
        self.kind = kind
        self.library = (
            f"django-redis {version('django-redis')} (cache backend)" if kind == "anchor" else "redis_session.django"
        )
        if kind == "anchor" and save_every_request:
            self.config = "SESSION_SAVE_EVERY_REQUEST=True, for a sliding expiry like ours"
        GATE.append(gate)
        self._override = override_settings(**settings_for(kind, port, save_every_request))
        self._override.enable()

    def write_targets(self) -> list[tuple[Any, str]]:
        if self.kind == "anchor":
            from django_redis.cache import RedisCache

            return [(RedisCache, "set")]
        from redis_session import SessionStore

        return [(SessionStore, "set")]

    def request(self, method: str, path: str, sid: str | None) -> Resp:
        c = Client()
        if sid:
            c.cookies["sessionid"] = sid
        r = c.generic(method, path)
        morsel = r.cookies.get("sessionid")
        cookie = parse_set_cookies([morsel.OutputString()], "sessionid") if morsel is not None else None
        return Resp(r.status_code, r.content.decode(), cookie)

    def close(self) -> None:
        super().close()
        self._override.disable()
        GATE.remove(self.gate)
