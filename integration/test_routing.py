"""Routing rings (SPEC §8): SESSION.RING.SET / NODE / LOAD / GET and
SESSION.ROUTE on a real server, a primary with a replica, the AOF (with and
without the RDB preamble) and a 3-primary cluster; the test vectors in
tests/vectors/route.json answered by the server.
"""

import json
import random
import time

import pytest
import redis

from cluster import Cluster
from sessionlib import (
    E_INT,
    E_SYNTAX,
    E_WRONGTYPE,
    ROOT,
    aof_commands,
    dump_join,
    dump_split,
    err_of,
    pairs_to_dict,
    replicate,
    to_str,
    wait_for,
    wait_sync,
)

VECTORS = json.loads((ROOT / "tests" / "vectors" / "route.json").read_text())


def ring_get(r, key):
    v = r.execute_command("SESSION.RING.GET", key)
    if v is None:
        return None
    d = {to_str(k): v2 for k, v2 in pairs_to_dict(v).items()}
    d["balance"] = to_str(d["balance"])
    d["nodes"] = {
        to_str(n): {to_str(a): to_str(b) for a, b in pairs_to_dict(m).items()}
        for n, m in pairs_to_dict(d["nodes"]).items()
    }
    return d


def routes(r, key, ids, *extra):
    return [to_str(r.execute_command("SESSION.ROUTE", key, i, *extra)) for i in ids]


IDS = [f"sid-{i:05d}-{random.Random(i).getrandbits(64):x}" for i in range(300)]


def test_ring_commands_and_replies(server, proto):
    r = server.client(protocol=proto)
    assert r.execute_command("SESSION.RING.GET", "ring:web") is None
    assert r.execute_command("SESSION.ROUTE", "ring:web", "u1") is None
    assert r.execute_command("SESSION.RING.NODE", "ring:web", "a", "DOWN") is None
    assert r.execute_command("SESSION.RING.LOAD", "ring:web", "a", 1) is None
    assert r.execute_command("SESSION.RING.SET", "ring:web", "NODE", "a", 1, "NODE", "b", 1, "NODE", "c", 2) == 1
    g = ring_get(r, "ring:web")
    assert g["version"] == 1 and g["balance"] == "1.25" and g["loadttl"] == 10000
    assert g["nodes"] == {
        n: {"weight": w, "state": "up", "load": 0, "load_age_ms": -1} for n, w in (("a", 1), ("b", 1), ("c", 2))
    }
    assert r.execute_command("SESSION.RING.SET", "ring:web", "BALANCE", "1.5", "LOADTTL", 3000,
                             "NODE", "a", 1, "NODE", "b", 3, "NODE", "c", 2) == 2
    assert r.execute_command("SESSION.RING.NODE", "ring:web", "b", "DRAIN") == 3
    assert r.execute_command("SESSION.RING.LOAD", "ring:web", "a", 10, "c", 7) in (b"OK", "OK", True)
    g = ring_get(r, "ring:web")
    assert g["version"] == 3, "a load is not a configuration change"
    assert g["balance"] == "1.5" and g["loadttl"] == 3000
    assert g["nodes"]["b"]["state"] == "drain" and g["nodes"]["b"]["weight"] == 3
    assert g["nodes"]["a"]["load"] == 10 and 0 <= g["nodes"]["a"]["load_age_ms"] < 3000
    # RING.SET keeps a staying node's state and load, and the options it is not given
    assert r.execute_command("SESSION.RING.SET", "ring:web", "NODE", "a", 1, "NODE", "b", 3, "NODE", "d", 1) == 4
    g = ring_get(r, "ring:web")
    assert g["nodes"]["b"]["state"] == "drain" and g["nodes"]["a"]["load"] == 10
    assert set(g["nodes"]) == {"a", "b", "d"} and g["balance"] == "1.5"
    # ROUTE: never the DRAIN node without STICKY; COUNT lists distinct nodes
    got = routes(r, "ring:web", IDS)
    assert set(got) <= {"a", "d"}
    many = [[to_str(x) for x in r.execute_command("SESSION.ROUTE", "ring:web", i, "COUNT", 5)] for i in IDS[:20]]
    for m, one in zip(many, got):
        assert m[0] == one and sorted(m) == ["a", "d"]
    assert set(routes(r, "ring:web", IDS[:20], "STICKY", "b")) == {"b"}
    assert routes(r, "ring:web", IDS[:20], "STICKY", "nope") == got[:20]
    # DOWN never, not even STICKY
    r.execute_command("SESSION.RING.NODE", "ring:web", "b", "DOWN")
    assert "b" not in routes(r, "ring:web", IDS[:20], "STICKY", "b")
    for n in ("a", "d"):
        r.execute_command("SESSION.RING.NODE", "ring:web", n, "DOWN")
    assert r.execute_command("SESSION.ROUTE", "ring:web", "x") is None
    assert r.execute_command("SESSION.ROUTE", "ring:web", "x", "COUNT", 3) is None
    assert r.execute_command("TYPE", "ring:web") in ("sess-ring", b"sess-ring")
    small = r.execute_command("MEMORY", "USAGE", "ring:web")
    r.execute_command("SESSION.RING.SET", "ring:big", *sum((["NODE", f"node-{i}", 1] for i in range(500)), []))
    assert 0 < small < r.execute_command("MEMORY", "USAGE", "ring:big")
    # a load is part of the value (and of its digest), not of its version
    d = r.execute_command("DEBUG", "DIGEST-VALUE", "ring:big")
    r.execute_command("SESSION.RING.LOAD", "ring:big", "node-7", 3)
    assert r.execute_command("DEBUG", "DIGEST-VALUE", "ring:big") != d
    assert ring_get(r, "ring:big")["version"] == 1


def test_ring_bad_input_changes_nothing(server):
    r = server.client()
    r.execute_command("SESSION.RING.SET", "ring", "NODE", "a", 1, "NODE", "b", 2)
    before = r.execute_command("DEBUG", "DIGEST-VALUE", "ring")
    bad = [
        (("SESSION.RING.SET", "ring"), "ERR wrong number of arguments for 'session.ring.set' command"),
        (("SESSION.RING.SET", "ring", "NODE", "a"), "ERR wrong number of arguments for 'session.ring.set' command"),
        (("SESSION.RING.SET", "ring", "NODE", "a", 1, "NODE"), E_SYNTAX),
        (("SESSION.RING.SET", "ring", "BALANCE", "2", "NODE", "a", 1, "BALANCE", "3"), E_SYNTAX),
        (("SESSION.RING.SET", "ring", "NODE", "a", 0), E_INT),
        (("SESSION.RING.SET", "ring", "NODE", "a", "x"), E_INT),
        (("SESSION.RING.SET", "ring", "NODE", "a", 1_000_001), E_INT),
        (("SESSION.RING.SET", "ring", "LOADTTL", 0, "NODE", "a", 1), E_INT),
        (("SESSION.RING.SET", "ring", "BOGUS", 1, "NODE", "a", 1), E_SYNTAX),
        (("SESSION.RING.SET", "ring", "NODE", "a", 1, "NODE", "a", 2), "ERR node 'a' is named twice"),
        (("SESSION.RING.SET", "ring", "NODE", "", 1), "ERR a node name is 1 to 256 bytes"),
        (("SESSION.RING.NODE", "ring", "zz", "UP"), "ERR no such node 'zz'"),
        (("SESSION.RING.NODE", "ring", "a", "SIDEWAYS"), E_SYNTAX),
        (("SESSION.RING.NODE", "ring", "a", "UP", "WEIGHT"), E_SYNTAX),
        (("SESSION.RING.NODE", "ring", "a", "UP", "WEIGHT", 0), E_INT),
        (("SESSION.RING.NODE", "ring", "a", "UP", "HEAVY", 2), E_SYNTAX),
        (("SESSION.RING.LOAD", "ring", "a", 1, "zz", 2), "ERR no such node 'zz'"),
        (("SESSION.RING.LOAD", "ring", "a", -1), E_INT),
        (("SESSION.RING.LOAD", "ring", "a", 1, "b"), E_SYNTAX),
        (("SESSION.ROUTE", "ring", "id", "COUNT", 0), E_INT),
        (("SESSION.ROUTE", "ring", "id", "COUNT"), E_SYNTAX),
        (("SESSION.ROUTE", "ring", "id", "STICKY", "a", "STICKY", "b"), E_SYNTAX),
        (("SESSION.ROUTE", "ring", "id", "NEAR", "a"), E_SYNTAX),
    ]
    for args, want in bad:
        e = err_of(r.execute_command, *args)
        if want is not None:
            assert e == want, (args, e)
    for b in ("1", "0.99", "1.0001", "x", "1000.5", "-2"):
        assert err_of(r.execute_command, "SESSION.RING.SET", "ring", "BALANCE", b, "NODE", "a", 1).startswith(
            "ERR BALANCE")
    assert r.execute_command("DEBUG", "DIGEST-VALUE", "ring") == before
    # wrong types, both ways
    r.set("plain", "1")
    for args in (("SESSION.RING.SET", "plain", "NODE", "a", 1), ("SESSION.RING.GET", "plain"),
                 ("SESSION.ROUTE", "plain", "x"), ("SESSION.RING.NODE", "plain", "a", "UP"),
                 ("SESSION.RING.LOAD", "plain", "a", 1)):
        assert err_of(r.execute_command, *args) == E_WRONGTYPE
    assert err_of(r.get, "ring") == E_WRONGTYPE
    r.execute_command("SESSION.RING.SET", "sess:acme:AAAAAAAAAAAAAAAAAAAAAA", "NODE", "a", 1)
    assert err_of(r.execute_command, "SESSION.GET", "sess:acme:AAAAAAAAAAAAAAAAAAAAAA") == E_WRONGTYPE


def test_effects_are_internal_and_checked(make_fed):
    srv, feeder = make_fed(name="ringfx")
    r = srv.client()
    r.execute_command("SESSION.RING.SET", "ring", "NODE", "a", 1, "NODE", "b", 2)
    d = r.execute_command("DEBUG", "DIGEST-VALUE", "ring")
    # clients cannot send the effects, whatever their ACL
    for args in (("SESSION.RING.APPLY", "ring", b"\x01x"), ("SESSION.RING.APPLYLOAD", "ring", 1, "a", 1)):
        assert "is internal" in err_of(r.execute_command, *args)
    # from the primary's link: a bad payload or load is refused and changes nothing
    for args in (("SESSION.RING.APPLY", "ring", b"\x01garbage"), ("SESSION.RING.APPLY", "ring"),
                 ("SESSION.RING.APPLYLOAD", "ring", 5, "zz", 1), ("SESSION.RING.APPLYLOAD", "ring", 5, "a", -1),
                 ("SESSION.RING.APPLYLOAD", "ring", "x", "a", 1)):
        with pytest.raises(redis.ResponseError):
            feeder.call(*args)
    assert r.execute_command("DEBUG", "DIGEST-VALUE", "ring") == d
    # a good load at an absolute time, then a whole ring over it
    feeder.call("SESSION.RING.APPLYLOAD", "ring", srv.time_ms() - 2500, "a", 9)
    g = ring_get(r, "ring")
    assert g["nodes"]["a"]["load"] == 9 and g["nodes"]["a"]["load_age_ms"] >= 2500
    assert g["version"] == 1, "a load carries no version"


def test_corrupt_restore_is_refused(server):
    r = server.client(decode=False)
    r.execute_command("SESSION.RING.SET", "ring", "NODE", "a", 1, "NODE", "b", 2)
    r.execute_command("SESSION.RING.LOAD", "ring", "a", 5)
    payload = r.dump("ring")
    body, ver = dump_split(payload)
    r.restore("copy", 0, payload)
    assert r.execute_command("DEBUG", "DIGEST-VALUE", "copy") == r.execute_command("DEBUG", "DIGEST-VALUE", "ring")
    refused = 0
    rnd = random.Random(5)
    # the ring's own bytes start after the module type id (9) and the
    # encoding version/length prefixes: corrupt every region
    for i in list(range(10, len(body))) + [rnd.randrange(10, len(body)) for _ in range(20)]:
        b = bytearray(body)
        b[i] ^= 0xFF
        try:
            r.restore("bad", 0, dump_join(b, ver), replace=True)
        except redis.ResponseError:
            refused += 1
            assert r.exists("bad") == 0
            continue
        # accepted only if it is a well-formed ring (a changed count or byte
        # that still decodes); it must then answer like one
        r.execute_command("SESSION.RING.GET", "bad")
        r.delete("bad")
    assert refused >= len(body) // 2
    trunc = dump_join(body[:-3], ver)
    with pytest.raises(redis.ResponseError):
        r.restore("bad", 0, trunc)
    assert r.exists("bad") == 0


def test_events_acl_flags_and_tracking(server):
    r = server.client()
    r.config_set("notify-keyspace-events", "KEA")
    p = r.pubsub()
    p.psubscribe("__keyspace@0__:ring:*")
    wait_for(lambda: p.get_message(timeout=0.2) is not None, 5, what="psubscribe")
    r.execute_command("SESSION.RING.SET", "ring:web", "NODE", "a", 1, "NODE", "b", 1)
    r.execute_command("SESSION.RING.NODE", "ring:web", "a", "DRAIN")
    r.execute_command("SESSION.RING.LOAD", "ring:web", "a", 3)
    r.execute_command("SESSION.ROUTE", "ring:web", "x")
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(seen) < 2:
        m = p.get_message(timeout=0.2)
        if m and m["type"] == "pmessage":
            seen.append(m["data"])
    assert seen == ["ring.set", "ring.node"]
    p.close()

    # COMMAND INFO: reads are readonly (replicas, tracking), writes are writes
    info = r.execute_command("COMMAND", "INFO", "session.route", "session.ring.get", "session.ring.set",
                             "session.ring.load")
    flags = {to_str(name): {to_str(f) for f in c["flags"]} for name, c in info.items()}
    assert {"readonly", "fast"} <= flags["session.route"]
    assert {"readonly", "fast"} <= flags["session.ring.get"]
    assert "write" in flags["session.ring.set"] and "write" in flags["session.ring.load"]

    # ACL key patterns confine the ring commands like any other
    r.execute_command("ACL", "SETUSER", "router", "on", ">pw", "~ring:*", "+session.route", "+session.ring.get", "+session.ring.load")
    u = server.client(username="router", password="pw")
    assert to_str(u.execute_command("SESSION.ROUTE", "ring:web", "x")) in ("a", "b")
    assert u.execute_command("SESSION.RING.LOAD", "ring:web", "b", 1) in ("OK", True)
    assert err_of(u.execute_command, "SESSION.RING.NODE", "ring:web", "a", "UP").startswith("NOPERM")
    r.execute_command("SESSION.RING.SET", "other:web", "NODE", "a", 1)
    assert err_of(u.execute_command, "SESSION.ROUTE", "other:web", "x").startswith("NOPERM")
    assert err_of(u.execute_command, "SESSION.RING.GET", "other:web").startswith("NOPERM")

    # a read-only key pattern (%R~) admits the reads and refuses the writes
    r.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "%R~ring:*", "+session.route", "+session.ring.get",
                      "+session.ring.load")
    ro = server.client(username="reader", password="pw")
    assert to_str(ro.execute_command("SESSION.ROUTE", "ring:web", "x")) in ("a", "b")
    assert ring_get(ro, "ring:web")["version"] >= 1
    assert err_of(ro.execute_command, "SESSION.RING.LOAD", "ring:web", "b", 1).startswith("NOPERM")

    # client-side caching: RING.GET is tracked, every ring write invalidates
    # (RESP2 REDIRECT to a connection subscribed to __redis__:invalidate)
    sub = server.raw()
    target = sub.call("CLIENT", "ID").value
    sub.call("SUBSCRIBE", "__redis__:invalidate")
    t = server.raw()
    assert t.call("CLIENT", "TRACKING", "ON", "REDIRECT", target).value == "OK"
    for write in (("SESSION.RING.NODE", "ring:web", "a", "UP"), ("SESSION.RING.LOAD", "ring:web", "a", 9),
                  ("SESSION.RING.SET", "ring:web", "NODE", "a", 1)):
        assert t.call("SESSION.RING.GET", "ring:web").kind == "*"
        r.execute_command(*write)
        msg = sub._read()
        assert msg.kind == "*" and msg.value[2].value[0].value == b"ring:web", (write, msg)
    sub.close()
    t.close()


def prepare_rings(r):
    r.execute_command("SESSION.RING.SET", "ring:a", "BALANCE", "1.3", "LOADTTL", 60000,
                      *sum((["NODE", f"n{i}", 1 + i % 3] for i in range(20)), []))
    r.execute_command("SESSION.RING.NODE", "ring:a", "n3", "DRAIN")
    r.execute_command("SESSION.RING.NODE", "ring:a", "n4", "DOWN", "WEIGHT", 5)
    r.execute_command("SESSION.RING.LOAD", "ring:a", *sum(([f"n{i}", i * 10] for i in range(0, 20, 2)), []))
    r.execute_command("SESSION.RING.SET", "ring:b", "NODE", "x", 1)
    r.execute_command("SESSION.RING.SET", "ring:ttl", "NODE", "x", 1)
    r.execute_command("PEXPIRE", "ring:ttl", 9_000_000)
    r.execute_command("SESSION.RING.LOAD", "ring:ttl", "x", 4)


def ring_state(r):
    """What a reader sees of every ring, the routes, and the digest."""
    return {
        "digest": to_str(r.execute_command("DEBUG", "DIGEST")),
        "a": [to_str(r.execute_command("DEBUG", "DIGEST-VALUE", k)[0]) for k in ("ring:a", "ring:b", "ring:ttl")],
        "pexpiretime": r.execute_command("PEXPIRETIME", "ring:ttl"),
        "routes": routes(r, "ring:a", IDS[:100]),
        "count": [r.execute_command("SESSION.ROUTE", "ring:a", i, "COUNT", 4) for i in IDS[:10]],
    }


def test_replica_gets_the_same_rings(make_pair):
    primary, replica = make_pair()
    r = primary.client()
    prepare_rings(r)
    wait_sync(primary, replica)
    rr = replica.client()
    assert ring_state(rr) == ring_state(r)
    assert ring_get(rr, "ring:a")["nodes"]["n2"]["load"] == 20
    # a replica answers the reads and refuses the writes
    assert err_of(rr.execute_command, "SESSION.RING.LOAD", "ring:a", "n1", 1).startswith("READONLY")
    # loads replicate (with the primary's absolute time) but bump no version
    v = ring_get(r, "ring:a")["version"]
    r.execute_command("SESSION.RING.LOAD", "ring:a", "n1", 77, "n5", 3)
    wait_sync(primary, replica)
    assert ring_get(rr, "ring:a")["version"] == v
    assert ring_state(rr) == ring_state(r)
    # a full resync (RDB) gives the same too
    fresh = replica
    fresh.admin().execute_command("REPLICAOF", "NO", "ONE")
    fresh.admin().execute_command("FLUSHALL")
    replicate(fresh, primary)
    assert ring_state(fresh.client()) == ring_state(r)


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_aof_reload_and_rewrite(make_server, preamble):
    srv = make_server(config={"appendonly": "yes", "aof-use-rdb-preamble": preamble})
    r = srv.client()
    prepare_rings(r)
    before = ring_state(r)
    srv.restart()
    assert ring_state(srv.client()) == before
    r = srv.client()
    r.bgrewriteaof()
    srv.wait_aof_rewrite_done()
    srv.restart()
    assert ring_state(srv.client()) == before
    if preamble == "no":
        applies = [c for c in aof_commands(srv) if c[0].upper() == b"SESSION.RING.APPLY"]
        assert sorted(c[1] for c in applies) == [b"ring:a", b"ring:b", b"ring:ttl"]
    # DEBUG RELOAD (RDB) too
    r = srv.client()
    r.execute_command("DEBUG", "RELOAD")
    assert ring_state(r) == before


def test_server_answers_the_vectors(make_fed):
    # loads with given ages go in as the primary's effect (RING.APPLYLOAD at
    # an absolute time), streamed by a stand-in primary
    server, feeder = make_fed(name="vectors")
    r = server.client()
    for n, case in enumerate(VECTORS["cases"]):
        key = f"vec:{n}"
        ttl = case["loadttl"]
        args = ["SESSION.RING.SET", key, "BALANCE", case["balance"], "LOADTTL", ttl]
        for node in case["nodes"]:
            args += ["NODE", node["name"], node["weight"]]
        r.execute_command(*args)
        now = server.time_ms()
        for node in case["nodes"]:
            r.execute_command("SESSION.RING.NODE", key, node["name"], node["state"].upper())
            if node["load"] is not None:
                # ages move away from the TTL's edge (same side): the server's
                # clock runs on while the test talks to it
                age = node["load_age_ms"]
                age = max(0, age - 1000) if age <= ttl else age + 1000
                feeder.call("SESSION.RING.APPLYLOAD", key, now - age, node["name"], node["load"])
        for q in case["queries"]:
            args = ["SESSION.ROUTE", key, q["id"]]
            if q["sticky"] is not None:
                args += ["STICKY", q["sticky"]]
            if q["count"] is not None:
                args += ["COUNT", q["count"]]
            got = r.execute_command(*args)
            got = [to_str(x) for x in got] if isinstance(got, list) else to_str(got)
            assert got == q["expect"], (case["title"], q)


def test_cluster_rings(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("ringcluster"), primaries=3, replicas=1, name="rc")
    c.start()
    try:
        rc = c.client()
        keys = [f"ring:{i}" for i in range(12)]
        owners = {c.owner(k).port for k in keys}
        assert len(owners) == 3, "the rings spread over the three primaries"
        for k in keys:
            rc.execute_command("SESSION.RING.SET", k, "NODE", "a", 1, "NODE", "b", 2, "NODE", "c", 1)
            rc.execute_command("SESSION.RING.NODE", k, "b", "DRAIN")
            rc.execute_command("SESSION.RING.LOAD", k, "a", 3)
        want = routes(rc, keys[0], IDS[:30])
        for k in keys:
            assert routes(rc, k, IDS[:30]) == want, "the same ring answers the same on every shard"
            assert ring_get(rc, k)["version"] == 2
        c.wait_replicas_synced()
        for k in keys:
            prim = c.owner(k)
            for rep in c.replicas_of(prim):
                rr = rep.client()
                rr.execute_command("READONLY")
                assert routes(rr, k, IDS[:5]) == want[:5]
                d1 = prim.admin().execute_command("DEBUG", "DIGEST-VALUE", k)
                assert rr.execute_command("DEBUG", "DIGEST-VALUE", k) == d1
        # the Python router on a cluster client reads each ring from its primary
        routing = pytest.importorskip("redis_session.routing")
        for k in keys[:3]:
            with routing.Router(rc, k, interval=0.2) as router:
                assert [router.route(i) for i in IDS[:30]] == want
        rc.close()
        assert not c.crashed()
    finally:
        c.stop()
