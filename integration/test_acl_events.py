"""SPEC §2 ACL isolation of tenants, §5 keyspace events, §4 SESSION.STATS
and the `INFO session` section: every counter checked against the
operations performed.
"""

import pytest

from sessionlib import err_of, error_code, new_key, wait_for
from tenants_helpers import (
    STATS_FIELDS,
    Events,
    acl_client,
    advance,
    cmd,
    count,
    create,
    expect_error,
    get,
    info_session,
    session_list,
    stats,
    stats_full,
    tenant_get,
    tenant_list,
    wait_key_gone,
)

SESSION_CMDS = ["session.create", "session.get", "session.renew", "session.set", "session.cas", "session.revoke",
                "session.ttl", "session.list", "session.revokeall", "session.count", "session.tenant",
                "session.stats"]
RULES = {
    "all": ["~sess:acme:*", "+@all"],
    "session-only": ["~sess:acme:*", "-@all"] + [f"+{c}" for c in SESSION_CMDS],
}


# ---------------------------------------------------------------------------
# ACL


@pytest.fixture
def tenants_setup(server):
    admin = server.client()
    for t in ["acme", "globex", "t-1"]:
        cmd(admin, "SESSION.TENANT", "SET", t, "IDLE", 600000)
    g = [create(admin, new_key("globex"), "SUBJECT", "alice", "DATA", "secret", "1") for _ in range(2)]
    a = create(admin, new_key("acme"), "SUBJECT", "alice")
    return admin, g, a


@pytest.mark.parametrize("rules", list(RULES), ids=list(RULES))
def test_acl_own_tenant_allowed(server, tenants_setup, rules):
    admin, _g, a0 = tenants_setup
    u = acl_client(server, "acmeuser", RULES[rules])
    k = create(u, new_key("acme"), "SUBJECT", "alice", "DATA", "x", "1")
    assert get(u, k)["data"] == {"x": "1"}
    assert cmd(u, "SESSION.SET", k, "DATA", "y", "2") == 2
    assert cmd(u, "SESSION.CAS", k, 2, "DATA", "z", "3") == 3
    assert cmd(u, "SESSION.RENEW", k) is not None
    assert cmd(u, "SESSION.TTL", k) is not None
    assert session_list(u, "acme", "alice") == sorted([a0, k])
    assert count(u, "acme") == 2
    assert count(u, "acme", "alice") == 2
    assert stats(u, "acme")["sessions"] == 2
    assert cmd(u, "SESSION.TENANT", "SET", "acme", "GRACE", 5) == "OK"
    assert tenant_get(u, "acme")["grace"] == 5
    assert tenant_list(u) == ["acme"]
    assert cmd(u, "SESSION.REVOKEALL", "acme", "alice", "EXCEPT", k) == 1
    assert cmd(u, "SESSION.REVOKE", k) == 1
    assert cmd(u, "SESSION.TENANT", "DEL", "acme") == 1
    assert tenant_list(u) == []
    assert tenant_list(admin) == ["globex", "t-1"]


@pytest.mark.parametrize("rules", list(RULES), ids=list(RULES))
def test_acl_other_tenant_refused(server, tenants_setup, rules):
    admin, g, _a = tenants_setup
    u = acl_client(server, "acmeuser", RULES[rules])
    gk = g[0]
    # keyed commands: Redis's own key permission check (the same commands on
    # acme's keys pass in test_acl_own_tenant_allowed, so this is the key check;
    # the text after NOPERM differs between 7.0, 7.2+ and Valkey)
    for args in [
        ["SESSION.CREATE", new_key("globex")],
        ["SESSION.GET", gk],
        ["SESSION.GET", gk, "TOUCH"],
        ["SESSION.RENEW", gk],
        ["SESSION.SET", gk, "DATA", "a", "b"],
        ["SESSION.CAS", gk, 1, "DATA", "a", "b"],
        ["SESSION.REVOKE", gk],
        ["SESSION.TTL", gk],
    ]:
        e = err_of(cmd, u, *args)
        assert error_code(e) == "NOPERM", (args, e)
    # keyless commands naming another tenant
    for args in [
        ["SESSION.LIST", "globex", "alice"],
        ["SESSION.REVOKEALL", "globex", "alice"],
        ["SESSION.REVOKEALL", "globex", "alice", "EXCEPT", gk],
        ["SESSION.COUNT", "globex"],
        ["SESSION.COUNT", "globex", "alice"],
        ["SESSION.TENANT", "SET", "globex", "IDLE", 1000],
        ["SESSION.TENANT", "GET", "globex"],
        ["SESSION.TENANT", "DEL", "globex"],
        ["SESSION.STATS", "globex"],
        ["SESSION.STATS"],  # all tenants: needs sess:*
        ["SESSION.TENANT", "SET", "neverseen", "IDLE", 1000],
        ["SESSION.LIST", "t-1", "alice"],
    ]:
        expect_error("NOPERM", cmd, u, *args)
    # nothing of globex changed
    for k in g:
        assert get(admin, k)["data"] == {"secret": "1"}
    assert session_list(admin, "globex", "alice") == sorted(g)
    assert tenant_get(admin, "globex")["idle"] == 600000
    assert tenant_get(admin, "neverseen") is None
    assert tenant_list(admin) == ["acme", "globex", "t-1"]


def test_acl_tenant_list_and_stats_filtering(server, tenants_setup):
    admin, _g, _a = tenants_setup
    two = acl_client(server, "two", ["~sess:acme:*", "~sess:t-1:*", "+@all"])
    assert tenant_list(two) == ["acme", "t-1"]
    expect_error("NOPERM", cmd, two, "SESSION.STATS")
    everything = acl_client(server, "ops", ["~sess:*", "+@all"])
    assert tenant_list(everything) == ["acme", "globex", "t-1"]
    assert stats(everything)["sessions"] == 3
    star = acl_client(server, "star", ["~*", "+@all"])
    assert tenant_list(star) == ["acme", "globex", "t-1"]
    assert stats(star)["sessions"] == 3
    nokeys = acl_client(server, "nokeys", ["+@all"])
    assert tenant_list(nokeys) == []
    expect_error("NOPERM", cmd, nokeys, "SESSION.STATS")
    expect_error("NOPERM", cmd, nokeys, "SESSION.COUNT", "acme")


# ---------------------------------------------------------------------------
# events


def keyspace(k, db=0):
    return f"__keyspace@{db}__:{k}"


def events_on(evs, channel):
    return [d for c, d in evs if c == channel]


def test_events_of_session_writes(make_server):
    # a long touch-resolution: a TOUCH right after the create is surely suppressed
    server = make_server(module_args={"touch-resolution": 600000})
    r = server.client()
    cmd(r, "CONFIG", "SET", "notify-keyspace-events", "KEd")
    k = new_key("acme")
    ev = Events(server, channels=[keyspace(k)], patterns=["__keyevent@0__:session.*"])
    create(r, k, "SUBJECT", "alice", "DATA", "a", "1")
    cmd(r, "SESSION.GET", k)  # a read: no event
    cmd(r, "SESSION.GET", k, "TOUCH")  # within touch-resolution of the create: suppressed
    cmd(r, "SESSION.RENEW", k)  # suppressed too
    cmd(r, "SESSION.RENEW", k, "IDLE", 600000)
    cmd(r, "SESSION.SET", k, "DATA", "b", "2")
    expect_error("CONFLICT", cmd, r, "SESSION.SET", k, "IFVERSION", 99, "DATA", "c", "3")
    expect_error("CONFLICT", cmd, r, "SESSION.CAS", k, 99)
    cmd(r, "SESSION.CAS", k, 3, "DATA", "d", "4")
    cmd(r, "SESSION.REVOKE", k, "REASON", "bye")
    cmd(r, "SESSION.REVOKE", k)  # already revoked: no event
    cmd(r, "DEL", k)  # generic event, not enabled
    create(r, k)  # marker
    ev.wait_for(lambda s: len(s) >= 12, what="12 events")
    seen = ev.drain(0.2)  # and nothing more
    assert events_on(seen, keyspace(k)) == ["session.create", "session.renew", "session.set", "session.set",
                                            "session.revoke", "session.create"]
    assert [c for c, d in seen if c.startswith("__keyevent")] == [
        "__keyevent@0__:session.create", "__keyevent@0__:session.renew", "__keyevent@0__:session.set",
        "__keyevent@0__:session.set", "__keyevent@0__:session.revoke", "__keyevent@0__:session.create"]
    assert all(d == k for c, d in seen if c.startswith("__keyevent"))
    ev.close()


def test_events_renewal_applied_with_touch_resolution_0(server0):
    r = server0.client()
    cmd(r, "CONFIG", "SET", "notify-keyspace-events", "Kd")
    k = new_key("acme")
    create(r, k)
    ev = Events(server0, channels=[keyspace(k)])
    cmd(r, "SESSION.GET", k, "TOUCH")
    cmd(r, "SESSION.RENEW", k)
    cmd(r, "SESSION.GET", k)  # no event
    cmd(r, "SESSION.SET", k, "DATA", "m", "1")  # marker
    assert events_on(ev.until(keyspace(k), "session.set"), keyspace(k)) == [
        "session.renew", "session.renew", "session.set"]
    ev.close()


def test_events_only_in_module_class(server):
    r = server.client()
    cmd(r, "CONFIG", "SET", "notify-keyspace-events", "Kg")  # generic only, no 'd'
    k = new_key("acme")
    ev = Events(server, channels=[keyspace(k)])
    create(r, k)
    cmd(r, "SESSION.SET", k, "DATA", "a", "1")
    cmd(r, "SESSION.RENEW", k, "IDLE", 600000)
    cmd(r, "SESSION.REVOKE", k)
    cmd(r, "DEL", k)  # marker
    assert events_on(ev.until(keyspace(k), "del"), keyspace(k)) == ["del"]
    ev.close()


def test_events_revokeall_and_evict_oldest(server):
    r = server.client()
    cmd(r, "CONFIG", "SET", "notify-keyspace-events", "Kd")
    keys = [new_key("acme") for _ in range(4)]
    ev = Events(server, channels=[keyspace(k) for k in keys])
    for k in keys[:3]:
        create(r, k, "SUBJECT", "alice")
        advance(server, 2)
    assert cmd(r, "SESSION.REVOKEALL", "acme", "alice", "EXCEPT", keys[2]) == 2
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 1, "ONLIMIT", "evict-oldest")
    create(r, keys[3], "SUBJECT", "alice")  # evicts keys[2]
    seen = ev.until(keyspace(keys[3]), "session.create")
    assert seen[:3] == [(keyspace(k), "session.create") for k in keys[:3]]
    assert sorted(seen[3:5]) == sorted((keyspace(k), "session.revoke") for k in keys[:2])
    assert seen[5:] == [(keyspace(keys[2]), "session.revoke"), (keyspace(keys[3]), "session.create")]
    assert err_of(cmd, r, "SESSION.GET", keys[2]) == "REVOKED evicted: session limit"
    ev.close()


def test_events_expired(server):
    r = server.client()
    cmd(r, "CONFIG", "SET", "notify-keyspace-events", "KEdx")
    k = new_key("acme")
    ev = Events(server, channels=[keyspace(k)])
    create(r, k, "SUBJECT", "alice", "IDLE", 50, "GRACE", 0)
    seen = ev.until(keyspace(k), "expired", timeout=10)
    assert events_on(seen, keyspace(k)) == ["session.create", "expired"]
    assert stats(r)["expired"] == 1
    assert session_list(r, "acme", "alice") == []
    ev.close()


def test_events_evicted(make_server):
    srv = make_server(config={"maxmemory-policy": "allkeys-random"})
    r = srv.client()
    cmd(r, "CONFIG", "SET", "notify-keyspace-events", "Ee")
    ev = Events(srv, patterns=["__keyevent@0__:evicted"])
    keys = [new_key("acme") for _ in range(800)]
    used = srv.info("memory")["used_memory"]
    cmd(r, "CONFIG", "SET", "maxmemory", used + 200 * 1024)
    p = r.pipeline(transaction=False)
    for k in keys:
        p.execute_command("SESSION.CREATE", k, "SUBJECT", "alice", "DATA", "blob", "z" * 1000)
    p.execute(raise_on_error=False)
    cmd(r, "CONFIG", "SET", "maxmemory", 0)
    st = stats(r)
    assert st["evicted"] > 0
    evicted = set(d for c, d in ev.wait_for(lambda s: len(s) >= st["evicted"], 10, what="evicted events"))
    ev.drain(0.1)
    p = r.pipeline(transaction=False)
    for k in keys:
        p.exists(k)
    remaining = {k for k, e in zip(keys, p.execute()) if e}
    assert evicted == set(keys) - remaining
    assert st["evicted"] == len(evicted)
    assert st["sessions"] == len(remaining) == count(r, "acme")
    ev.close()


# ---------------------------------------------------------------------------
# STATS and INFO session


def test_stats_reply_shape(server, proto):
    r = server.client(protocol=proto)
    names, d = stats_full(r)
    assert names == STATS_FIELDS
    assert all(v == 0 for v in d.values())
    names, d = stats_full(r, "acme")
    assert names == STATS_FIELDS
    assert all(v == 0 for v in d.values())
    assert err_of(cmd, r, "SESSION.STATS", "acme", "extra").startswith("ERR")


class Expect:
    """Expected counters per tenant; `total` adds them up (plus global-only misses)."""

    def __init__(self):
        self.t = {}
        self.extra_misses = 0

    def add(self, tenant, **kw):
        row = self.t.setdefault(tenant, {f: 0 for f in STATS_FIELDS})
        for k, v in kw.items():
            row[k] += v

    def total(self):
        out = {f: 0 for f in STATS_FIELDS}
        for row in self.t.values():
            for f in STATS_FIELDS:
                out[f] += row[f]
        out["misses"] += self.extra_misses
        return out


def check_stats(srv, r, exp, tenants):
    assert stats(r) == exp.total()
    for t in tenants:
        want = exp.t.get(t, {f: 0 for f in STATS_FIELDS})
        assert stats(r, t) == want, t
    info = info_session(srv)
    for f in STATS_FIELDS:
        assert info[f"session_{f}"] == exp.total()[f], f


def test_stats_counters_exact(make_server):
    # a long touch-resolution: renewals of an active session are surely suppressed
    srv = make_server(module_args={"touch-resolution": 600000})
    r = srv.client()
    r1 = srv.client(db=1)
    exp = Expect()
    T = ["acme", "globex", "neverseen"]
    check_stats(srv, r, exp, T)

    k1 = create(r, new_key("acme"), "SUBJECT", "alice", "DATA", "a", "1")
    exp.add("acme", created=1, sessions=1, data_bytes=2)
    check_stats(srv, r, exp, T)

    get(r, k1)
    exp.add("acme", hits=1)
    cmd(r, "SESSION.GET", k1, "TOUCH")  # right after create: suppressed by touch-resolution
    exp.add("acme", hits=1, touches=1)
    cmd(r, "SESSION.RENEW", k1)  # suppressed, still a renewal
    exp.add("acme", renewals=1)
    cmd(r, "SESSION.RENEW", k1, "IDLE", 600000)
    exp.add("acme", renewals=1)
    check_stats(srv, r, exp, T)

    # misses: missing key of a tenant with counters; of a tenant without
    assert cmd(r, "SESSION.GET", new_key("acme")) is None
    exp.add("acme", misses=1)
    assert cmd(r, "SESSION.GET", new_key("neverseen")) is None
    assert cmd(r, "SESSION.GET", new_key("neverseen"), "TOUCH") is None
    exp.extra_misses += 2
    # RENEW of a missing session is no renewal
    assert cmd(r, "SESSION.RENEW", new_key("acme")) is None
    check_stats(srv, r, exp, T)

    # conflicts
    expect_error("CONFLICT", cmd, r, "SESSION.SET", k1, "IFVERSION", 99, "DATA", "x", "y")
    expect_error("CONFLICT", cmd, r, "SESSION.CAS", k1, 99, "DATA", "x", "y")
    exp.add("acme", cas_conflicts=2)
    assert cmd(r, "SESSION.CAS", k1, 2, "DATA", "bb", "22") == 3
    exp.add("acme", data_bytes=2)
    assert cmd(r, "SESSION.SET", k1, "IFVERSION", 3, "DATA", "c", "333") == 4
    exp.add("acme", data_bytes=4)
    check_stats(srv, r, exp, T)

    # another tenant in another db
    g1 = create(r1, new_key("globex"), "SUBJECT", "bob", "DATA", "k", "vv")
    exp.add("globex", created=1, sessions=1, data_bytes=3)
    get(r1, g1)
    exp.add("globex", hits=1)
    check_stats(srv, r, exp, T)

    # revocations: REVOKE, REVOKEALL, evict-oldest; a revoked session reads as a miss
    assert cmd(r, "SESSION.REVOKE", k1) == 1
    exp.add("acme", revocations=1, sessions=-1, data_bytes=-8)
    assert cmd(r, "SESSION.REVOKE", k1) == 0
    expect_error("REVOKED", cmd, r, "SESSION.GET", k1)
    expect_error("REVOKED", cmd, r, "SESSION.GET", k1, "TOUCH")
    exp.add("acme", misses=2)
    expect_error("REVOKED", cmd, r, "SESSION.RENEW", k1)
    check_stats(srv, r, exp, T)
    for _ in range(3):
        create(r, new_key("acme"), "SUBJECT", "carol")
    exp.add("acme", created=3, sessions=3)
    assert cmd(r, "SESSION.REVOKEALL", "acme", "carol") == 3
    exp.add("acme", revocations=3, sessions=-3)
    check_stats(srv, r, exp, T)
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 1, "ONLIMIT", "evict-oldest")
    create(r, new_key("acme"), "SUBJECT", "dave")
    create(r, new_key("acme"), "SUBJECT", "dave")
    exp.add("acme", created=2, sessions=1, revocations=1)
    cmd(r, "SESSION.TENANT", "SET", "acme", "ONLIMIT", "reject")
    expect_error("LIMIT", cmd, r, "SESSION.CREATE", new_key("acme"), "SUBJECT", "dave")
    check_stats(srv, r, exp, T)

    # grace renewals, by RENEW and by GET TOUCH
    kg = create(r, new_key("acme"), "IDLE", 60, "GRACE", 600000)
    exp.add("acme", created=1, sessions=1)
    wait_for(lambda: cmd(r, "SESSION.TTL", kg)[1] == "grace", 10, what="grace")
    assert cmd(r, "SESSION.RENEW", kg) > 0
    exp.add("acme", renewals=1, grace_renewals=1)
    wait_for(lambda: cmd(r, "SESSION.TTL", kg)[1] == "grace", 10, what="grace again")
    assert get(r, kg, "TOUCH")["state"] == "active"
    exp.add("acme", hits=1, touches=1, touches_propagated=1, grace_renewals=1)
    check_stats(srv, r, exp, T)

    # expiry: a live session, and a revoked tombstone (not counted)
    ke = create(r1, new_key("globex"), "IDLE", 50, "GRACE", 0, "DATA", "q", "1")
    kt = create(r1, new_key("globex"), "IDLE", 50, "GRACE", 0)
    cmd(r1, "SESSION.REVOKE", kt)
    exp.add("globex", created=2, sessions=1, data_bytes=2, revocations=1)
    check_stats(srv, r, exp, T)
    wait_key_gone(r1, ke)
    wait_key_gone(r1, kt)
    exp.add("globex", expired=1, sessions=-1, data_bytes=-2)
    check_stats(srv, r, exp, T)

    # DEL changes the live totals only
    cmd(r1, "DEL", g1)
    exp.add("globex", sessions=-1, data_bytes=-3)
    check_stats(srv, r, exp, T)
    assert info_session(srv)["session_tenants"] == 1


def test_stats_touches_propagated_with_touch_resolution_0(server0):
    r = server0.client()
    k = create(r, new_key("acme"))
    for _ in range(3):
        get(r, k, "TOUCH")
    st = stats(r, "acme")
    assert (st["hits"], st["touches"], st["touches_propagated"], st["grace_renewals"]) == (3, 3, 3, 0)


def test_info_session_section(server):
    r = server.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "IDLE", 1000)
    cmd(r, "SESSION.TENANT", "SET", "globex", "IDLE", 1000)
    create(r, new_key("acme"), "DATA", "abc", "de")
    info = info_session(server)
    for f in STATS_FIELDS:
        assert isinstance(info[f"session_{f}"], int), f
    assert info["session_sessions"] == 1
    assert info["session_created"] == 1
    assert info["session_data_bytes"] == 5
    assert info["session_tenants"] == 2
    # also part of INFO everything / INFO modules (Redis puts module sections there)
    assert server.admin().info("everything")["session_created"] == 1
    assert server.admin().info("modules")["session_tenants"] == 2
