"""The Python router (redis_session.routing): the test vectors, the same
answers as SESSION.ROUTE on a real server, freshness through client-side
caching invalidation, load reports, and the signed routing cookie."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from sessionlib import wait_for

from redis_session import ServerError, SessionStore, StoreUnavailable
from redis_session.routing import RingNode, RingSnapshot, RouteCookie, RouteCookieMiddleware, Router


@pytest.fixture
def server(make_server_any: Any) -> Any:
    """Rings are module values: these tests always load the module (no Lua row)."""
    return make_server_any(name="ring")


VECTORS = json.loads((Path(__file__).resolve().parents[2] / "tests" / "vectors" / "route.json").read_text())
IDS = [f"sid-{i:04d}-python" for i in range(200)]


def snapshot_of(case: dict[str, Any]) -> RingSnapshot:
    nodes = [
        RingNode(
            name=n["name"],
            weight=n["weight"],
            state=n["state"],
            load=n["load"] or 0,
            load_age_ms=-1 if n["load_age_ms"] is None else n["load_age_ms"],
        )
        for n in case["nodes"]
    ]
    return RingSnapshot(1, case["balance"], case["loadttl"], nodes, read_at=100.0)


def test_vectors() -> None:
    checked = 0
    for case in VECTORS["cases"]:
        snap = snapshot_of(case)
        for q in case["queries"]:
            if q["count"] is None:
                got: Any = snap.route(q["id"], q["sticky"], now=100.0)
            else:
                got = snap.route_count(q["id"], q["count"], q["sticky"], now=100.0) or None
            assert got == q["expect"], (case["title"], q)
            checked += 1
        for id_, order in case["preference"].items():
            assert snap.preference(id_) == order
    assert checked > 300


def test_the_router_agrees_with_the_server_and_stays_fresh(server: Any) -> None:
    r = server.client(decode=False)
    r.execute_command("SESSION.RING.SET", "ring:web", "NODE", "a", 1, "NODE", "b", 2, "NODE", "c", 1)
    with Router(r, "ring:web", interval=0.2) as router:
        assert set(router.nodes()) == {"a", "b", "c"}

        def server_routes() -> list[str]:
            return [r.execute_command("SESSION.ROUTE", "ring:web", i).decode() for i in IDS]

        assert [router.route(i) for i in IDS] == server_routes()
        reads = router.reads
        # a change by another client invalidates the router's copy
        r.execute_command("SESSION.RING.NODE", "ring:web", "b", "DOWN")
        wait_for(
            lambda: router.route(IDS[0]) is not None and router.nodes()["b"].state == "down",
            5,
            what="the router to see b DOWN",
        )
        assert router.invalidations >= 1 and router.reads > reads
        assert [router.route(i) for i in IDS] == server_routes()
        assert "b" not in {router.route(i) for i in IDS}
        # the router's own writes
        assert router.up("b", weight=5) is not None
        assert router.drain("c") is not None
        wait_for(lambda: router.nodes()["c"].state == "drain", 5, what="drain seen")
        assert [router.route(i) for i in IDS] == server_routes()
        assert all(router.route(i, sticky="c") == "c" for i in IDS[:20])
        # loads: the bounded-load rule computed locally, same as the server
        r.execute_command("SESSION.RING.LOAD", "ring:web", "a", 100, "b", 1)
        wait_for(lambda: router.nodes()["a"].load == 100, 5, what="load seen")
        assert [router.route(i) for i in IDS] == server_routes()
        assert "a" not in {router.route(i) for i in IDS}
        assert router.route_count(IDS[0], 3) == [
            x.decode() for x in r.execute_command("SESSION.ROUTE", "ring:web", IDS[0], "COUNT", 3)
        ]
        with pytest.raises(ServerError):
            router.down("nope")
    # a missing ring routes nowhere
    with Router(r, "ring:none", interval=0.2) as router:
        assert router.route("x") is None and router.nodes() == {}


def test_load_reports_and_a_store(server: Any) -> None:
    r = server.client(decode=False)
    r.execute_command("SESSION.RING.SET", "ring:web", "NODE", "app-1", 1, "NODE", "app-2", 1)
    store: SessionStore[Any] = SessionStore(server.client(), tenant="acme")
    try:
        with Router(store, "ring:web", node="app-1", load=lambda: 42, interval=0.2):

            def load() -> int:
                g = r.execute_command("SESSION.RING.GET", "ring:web")
                d = dict(zip(g[::2], g[1::2], strict=False))
                n = dict(zip(d[b"nodes"][::2], d[b"nodes"][1::2], strict=False))[b"app-1"]
                return int(dict(zip(n[::2], n[1::2], strict=False))[b"load"])

            wait_for(lambda: load() == 42, 5, what="the load report")
    finally:
        store.close()


def test_router_keeps_serving_the_last_ring_when_redis_goes(make_server_any: Any) -> None:
    srv = make_server_any(name="router-loss")
    r = srv.client(decode=False)
    r.execute_command("SESSION.RING.SET", "ring:web", "NODE", "a", 1, "NODE", "b", 1)
    router = Router(r, "ring:web", interval=0.1)
    try:
        before = [router.route(i) for i in IDS[:20]]
        srv.kill()
        srv.expect_dead = True
        time.sleep(0.5)
        assert [router.route(i) for i in IDS[:20]] == before
        with pytest.raises(StoreUnavailable):
            router.drain("a")
    finally:
        router.close()


def test_route_cookie_and_middleware(server: Any) -> None:
    r = server.client(decode=False)
    r.execute_command("SESSION.RING.SET", "ring:web", "NODE", "a", 1, "NODE", "b", 1)
    c = RouteCookie(b"0123456789abcdef-secret", secure=False)
    v = c.value("a")
    assert c.verify(v) == "a"
    assert c.verify("b" + v[1:]) is None, "a client cannot name another node"
    assert c.verify(v[:-1] + ("A" if v[-1] != "A" else "B")) is None
    assert c.verify(None) is None and c.verify("garbage") is None
    assert "HttpOnly" in c.header("a") and c.header("a").startswith(f"route={v};")
    with pytest.raises(ValueError):
        RouteCookie(b"short")

    with Router(r, "ring:web", interval=0.2) as router:
        sid = IDS[3]
        routed = router.route(sid)
        assert routed is not None
        home: str = routed
        other = "b" if home == "a" else "a"
        assert c.decide(router, sid, None) == (home, c.header(home))
        assert c.decide(router, sid, c.value(home)) == (home, None)
        # a valid cookie for the other node keeps it (STICKY), a forged one does not
        assert c.decide(router, sid, c.value(other)) == (other, None)
        assert c.decide(router, sid, other + ".forged") == (home, c.header(home))

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        mw = RouteCookieMiddleware(app, router, c, sid_of=lambda env: sid)
        seen: list[list[tuple[str, str]]] = []
        env: dict[str, Any] = {}
        mw(env, lambda status, headers: seen.append(headers))
        assert ("Set-Cookie", c.header(home)) in seen[-1] and env["redis_session.node"] == home
        mw({"HTTP_COOKIE": f"x=1; route={c.value(home)}"}, lambda status, headers: seen.append(headers))
        assert not any(h == "Set-Cookie" for h, _ in seen[-1])
        # the node goes DOWN: the next answer moves the cookie
        router.down(home)
        wait_for(lambda: router.route(sid) == other, 5, what="the move")
        mw({"HTTP_COOKIE": f"route={c.value(home)}"}, lambda status, headers: seen.append(headers))
        assert ("Set-Cookie", c.header(other)) in seen[-1]


def test_router_on_a_plain_client(make_server_any: Any) -> None:
    # (on a 3-primary cluster: integration/test_routing.py::test_cluster_rings)
    srv = make_server_any(name="router-plain")
    r = redis.Redis(port=srv.port)
    r.execute_command("SESSION.RING.SET", "ring:web", "NODE", "a", 1)  # type: ignore[no-untyped-call]
    with Router(r, "ring:web") as router:
        assert router.route("x") == "a"
    r.close()
