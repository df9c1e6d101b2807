"""redis_session.django on a real server: the SessionBase contract, sync and
async, through Django's own SessionMiddleware and auth."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from apps_django import DjangoAdapter
from fwlib import commandstats, got, one_read, store_calls
from harness import DELETED, Gate

from redis_session import Revoked, SessionStore
from redis_session.django import SessionStore as DjangoSession


@pytest.fixture
def ours(server: Any) -> Iterator[DjangoAdapter]:
    a = DjangoAdapter("ours", server.port, Gate(), save_every_request=False)
    yield a
    a.close()


def _store(server: Any) -> SessionStore[Any]:
    return SessionStore.from_url(f"redis://127.0.0.1:{server.port}/0", tenant="django")


def test_engine_through_the_middleware_and_auth(ours: DjangoAdapter, server: Any) -> None:
    store = _store(server)
    s0 = got(ours.request("POST", "/set/cart/1", None).cookie)
    assert s0 and len(s0) == 43
    r = ours.request("POST", "/login/alice", s0)
    s1 = r.cookie
    assert s1 and s1 != s0
    new = got(store.get(s1))
    from django.contrib.auth.models import User

    assert new.subject == str(User.objects.get(username="alice").pk)
    assert new.data["cart"] == "1" and new.data["user"] == "alice"
    assert new.meta["ip"] == "127.0.0.1"
    with pytest.raises(Revoked) as e:
        store.get(s0)
    assert e.value.reason == "rotated"
    # logout (flush) revokes and deletes the cookie
    r = ours.request("POST", "/logout", s1)
    assert r.cookie == DELETED
    with pytest.raises(Revoked) as e:
        store.get(s1)
    assert e.value.reason == "logout"


def test_lazy_and_read_only_views_do_not_write(ours: DjangoAdapter, server: Any, backend_kind: str) -> None:
    sid = got(ours.request("POST", "/login/alice", None).cookie)
    server.admin().config_resetstat()
    assert ours.request("GET", "/plain", sid).cookie is None
    assert sum(commandstats(server).values()) == 0
    ours.request("GET", "/view", sid)
    assert store_calls(server, backend_kind) == one_read(backend_kind)


def test_save_after_revoke_or_delete_raises_update_error(server: Any, ours: DjangoAdapter) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    store = _store(server)
    s = DjangoSession()
    s["a"] = 1
    s.save()
    sid = s.session_key
    assert sid is not None and got(store.get(sid)).data == {"a": 1}

    t = DjangoSession(sid)
    t["b"] = 2  # loads
    store.revoke(sid, reason="admin")
    with pytest.raises(UpdateError):
        t.save()
    assert t.revoked_reason == "admin"

    u = DjangoSession()
    u["c"] = 3
    u.save()
    v = DjangoSession(u.session_key)
    v["d"] = 4
    server.admin().delete(f"sess:django:{u.session_key}")
    with pytest.raises(UpdateError):
        v.save()


def test_field_level_saves_keep_both(ours: DjangoAdapter, server: Any) -> None:
    s = DjangoSession()
    s["base"] = 0
    s.create()
    sid = s.session_key
    a, b = DjangoSession(sid), DjangoSession(sid)
    a["a"], b["b"] = 1, 2  # both loaded before either saves
    a.save()
    b.save()
    assert dict(got(_store(server).get(got(sid))).data) == {"base": 0, "a": 1, "b": 2}


def test_exists_clear_expired_and_revoked_load(ours: DjangoAdapter, server: Any) -> None:
    s = DjangoSession()
    s["x"] = 1
    s.save()
    sid = got(s.session_key)
    assert DjangoSession().exists(sid) and not DjangoSession().exists("B" * 43)
    DjangoSession.clear_expired()  # a no-op
    _store(server).revoke(sid, reason="gone")
    assert DjangoSession().exists(sid)  # the tombstone keeps the sid from reuse
    t = DjangoSession(sid)
    assert t.load() == {} and t.session_key is None and t.revoked_reason == "gone"


def test_async_api(ours: DjangoAdapter, server: Any) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    store = _store(server)

    async def scenario() -> None:
        s = DjangoSession()
        await s.aset("a", 1)
        await s.asave()
        sid = s.session_key
        assert sid is not None and await s.aexists(sid)
        t = DjangoSession(sid)
        assert await t.aget("a") == 1
        await t.aset("b", 2)
        await t.asave()
        assert dict(got(store.get(sid)).data) == {"a": 1, "b": 2}
        await t.aset("_auth_user_id", "7")
        await t.acycle_key()
        assert t.session_key != sid
        await t.asave()
        assert got(store.get(got(t.session_key))).subject == "7"
        with pytest.raises(Revoked):
            store.get(got(sid))
        c = DjangoSession()
        await c.acreate()
        assert store.get(got(c.session_key)) is not None
        await c.adelete()
        assert not (await c.aexists("C" * 43))
        with pytest.raises(Revoked):
            store.get(got(c.session_key))
        f = DjangoSession(t.session_key)
        assert await f.aget("b") == 2
        await f.aflush()
        assert f.session_key is None
        g = DjangoSession(t.session_key)
        assert await g.aload() == {} and g.revoked_reason == "logout"
        h = DjangoSession(sid)
        await h.aload()
        await h.aset("z", 1)
        h._session_key = sid  # a stale key: the session is revoked
        with pytest.raises(UpdateError):
            await h.asave()
        await DjangoSession.aclear_expired()

    asyncio.run(scenario())


def test_async_view_through_the_asgi_handler(ours: DjangoAdapter, server: Any) -> None:
    from django.test import AsyncClient

    store = _store(server)

    async def scenario() -> None:
        c = AsyncClient()
        for n in (1, 2, 3):
            r = await c.get("/async")
            assert r.content == f"visits={n}".encode()
        sid = c.cookies["sessionid"].value
        assert got(store.get(sid)).data == {"visits": 3}
        assert got(store.get(sid)).version == 3  # one create, then one field-level set per visit

    asyncio.run(scenario())


def test_store_options_from_settings(ours: DjangoAdapter, server: Any) -> None:
    from django.test.utils import override_settings

    from redis_session.django import get_store

    plain = get_store()
    assert plain.near_cache is None
    with override_settings(SESSION_REDIS_OPTIONS={"near_cache": True}):
        cached = get_store()
        assert cached is not plain and cached.near_cache is not None
        s = DjangoSession()
        s["k"] = "v"
        s.save()
        assert DjangoSession(s.session_key).load() == {"k": "v"}
        cached.close()
