"""SPEC §2, §4 SESSION.TENANT: per-tenant settings, their effect on new
sessions (timeouts, MAXDATA, MAXPERSUBJECT with both ONLIMIT policies) and
their persistence (RDB aux data, DEBUG RELOAD, replication, full resync,
AOF with and without the RDB preamble, FLUSHALL).
"""

import pytest

from sessionlib import E_INT, E_SYNTAX, aof_commands, err_of, error_code, new_key, replicate, to_str, wait_for, wait_sync
from tenants_helpers import (
    advance,
    DEF_ABSOLUTE,
    DEF_GRACE,
    DEF_IDLE,
    DEF_MAXDATA,
    TENANT_FIELDS,
    cmd,
    count,
    create,
    expect_error,
    get,
    info_session,
    map_reply,
    session_list,
    stats,
    tenant_get,
    tenant_list,
)

E_TENANT = "ERR invalid tenant"
EVICT_REASON = "REVOKED evicted: session limit"

BAD_TENANTS = ["", "a:b", "ac me", "x" * 65, "acme*", "t/1", "ümlaut", "a\x00b"]
GOOD_TENANTS = ["a", "A-Z_0-9", "x" * 64, "t-1", "_"]


def full(tenant_settings):
    """Expected TENANT GET map from the options given (module defaults elsewhere)."""
    out = {"idle": DEF_IDLE, "absolute": DEF_ABSOLUTE, "grace": DEF_GRACE, "maxdata": DEF_MAXDATA,
           "maxpersubject": 0, "onlimit": "reject"}
    out.update(tenant_settings)
    return out


# ---------------------------------------------------------------------------
# TENANT SET / GET / DEL / LIST


def test_get_unknown_tenant_is_nil(server, proto):
    r = server.client(protocol=proto)
    assert cmd(r, "SESSION.TENANT", "GET", "nobody") is None
    assert cmd(r, "SESSION.TENANT", "LIST") == []
    assert cmd(r, "SESSION.TENANT", "DEL", "nobody") == 0


def test_set_then_get_shows_effective_values(server, proto):
    r = server.client(protocol=proto)
    assert cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 3) in ("OK", b"OK", True)
    names, d = map_reply(cmd(r, "SESSION.TENANT", "GET", "acme"))
    assert names == TENANT_FIELDS
    assert d == full({"maxpersubject": 3})
    assert cmd(r, "SESSION.TENANT", "SET", "globex", "IDLE", 1000, "ABSOLUTE", 0, "GRACE", 0,
               "MAXDATA", 12, "MAXPERSUBJECT", 0, "ONLIMIT", "evict-oldest") == "OK"
    assert tenant_get(r, "globex") == {"idle": 1000, "absolute": 0, "grace": 0, "maxdata": 12,
                                       "maxpersubject": 0, "onlimit": "evict-oldest"}
    assert tenant_list(r) == ["acme", "globex"]


def test_get_uses_module_load_args_as_defaults(make_server):
    srv = make_server(module_args={"idle": 700000, "absolute": 9000000, "grace": 1234, "max-data-bytes": 4096})
    r = srv.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "ONLIMIT", "evict-oldest")
    assert tenant_get(r, "acme") == {"idle": 700000, "absolute": 9000000, "grace": 1234, "maxdata": 4096,
                                     "maxpersubject": 0, "onlimit": "evict-oldest"}


def test_set_merges_with_existing_settings(server):
    r = server.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "IDLE", 1000)
    cmd(r, "SESSION.TENANT", "SET", "acme", "GRACE", 5)
    assert tenant_get(r, "acme") == full({"idle": 1000, "grace": 5})
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 2, "ONLIMIT", "evict-oldest")
    cmd(r, "SESSION.TENANT", "SET", "acme", "IDLE", 2000, "MAXDATA", 10)
    assert tenant_get(r, "acme") == full({"idle": 2000, "grace": 5, "maxdata": 10, "maxpersubject": 2,
                                          "onlimit": "evict-oldest"})
    # ONLIMIT back to reject, MAXPERSUBJECT 0 = no cap: explicit values are kept as given
    cmd(r, "SESSION.TENANT", "SET", "acme", "ONLIMIT", "reject", "MAXPERSUBJECT", 0)
    assert tenant_get(r, "acme") == full({"idle": 2000, "grace": 5, "maxdata": 10})
    # other tenants untouched
    assert tenant_get(r, "globex") is None


def test_set_without_options_is_an_arity_error(server):
    r = server.client()
    assert err_of(cmd, r, "SESSION.TENANT", "SET", "acme") == \
        "ERR wrong number of arguments for 'session.tenant|set' command"
    assert tenant_get(r, "acme") is None


@pytest.mark.parametrize("opts", [
    ["BOGUS", 1],
    ["IDLE"],
    ["IDLE", 1000, "GRACE"],
    ["ONLIMIT", "drop"],
    ["ONLIMIT", "evict"],
    ["IDLE", 1000, "IDLE", 2000],
])
def test_set_syntax_errors(server, opts):
    r = server.client()
    assert err_of(cmd, r, "SESSION.TENANT", "SET", "acme", *opts) == E_SYNTAX
    assert tenant_get(r, "acme") is None


@pytest.mark.parametrize("opts", [
    ["IDLE", -1], ["IDLE", "abc"], ["IDLE", 0], ["GRACE", -5], ["ABSOLUTE", "1.5"],
    ["MAXDATA", -1], ["MAXPERSUBJECT", -1], ["MAXPERSUBJECT", "x"],
])
def test_set_bad_numbers(server, opts):
    r = server.client()
    assert err_of(cmd, r, "SESSION.TENANT", "SET", "acme", *opts) == E_INT
    assert tenant_get(r, "acme") is None


@pytest.mark.parametrize("tenant", BAD_TENANTS, ids=range(len(BAD_TENANTS)))
def test_invalid_tenant_name(server, tenant):
    r = server.client()
    assert err_of(cmd, r, "SESSION.TENANT", "SET", tenant, "IDLE", 1000) == E_TENANT
    assert err_of(cmd, r, "SESSION.TENANT", "GET", tenant) == E_TENANT
    assert err_of(cmd, r, "SESSION.TENANT", "DEL", tenant) == E_TENANT
    assert cmd(r, "SESSION.TENANT", "LIST") == []


@pytest.mark.parametrize("tenant", GOOD_TENANTS, ids=range(len(GOOD_TENANTS)))
def test_valid_tenant_names(server, tenant):
    r = server.client()
    assert cmd(r, "SESSION.TENANT", "SET", tenant, "IDLE", 1000) == "OK"
    assert tenant_get(r, tenant)["idle"] == 1000
    assert tenant_list(r) == [tenant]


def test_del_and_list(server):
    r = server.client()
    for t in ["acme", "globex", "t-1"]:
        cmd(r, "SESSION.TENANT", "SET", t, "IDLE", 1000)
    assert tenant_list(r) == ["acme", "globex", "t-1"]
    assert cmd(r, "SESSION.TENANT", "DEL", "globex") == 1
    assert cmd(r, "SESSION.TENANT", "DEL", "globex") == 0
    assert tenant_get(r, "globex") is None
    assert tenant_list(r) == ["acme", "t-1"]
    assert info_session(server)["session_tenants"] == 2


@pytest.mark.parametrize("args", [["SESSION.TENANT"], ["SESSION.TENANT", "GET"], ["SESSION.TENANT", "DEL"],
                                  ["SESSION.TENANT", "GET", "a", "b"], ["SESSION.TENANT", "LIST", "x"],
                                  ["SESSION.TENANT", "FROB", "acme"]])
def test_tenant_bad_subcommand_or_arity(server, args):
    r = server.client()
    e = err_of(cmd, r, *args)
    assert e.startswith("ERR"), e


# ---------------------------------------------------------------------------
# effect on new sessions


def test_new_sessions_take_tenant_timeouts(server):
    r = server.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "IDLE", 111111, "ABSOLUTE", 2222222, "GRACE", 3333)
    k = create(r, new_key("acme"))
    s = get(r, k)
    assert s["idle_deadline"] - s["last_access"] == 111111
    assert s["absolute_deadline"] - s["created"] == 2222222
    assert s["grace_until"] - s["idle_deadline"] == 3333

    # explicit CREATE options win, the others still come from the tenant
    k2 = create(r, new_key("acme"), "IDLE", 5000)
    s = get(r, k2)
    assert s["idle_deadline"] - s["last_access"] == 5000
    assert s["absolute_deadline"] - s["created"] == 2222222
    assert s["grace_until"] - s["idle_deadline"] == 3333
    k3 = create(r, new_key("acme"), "ABSOLUTE", 0, "GRACE", 7)
    s = get(r, k3)
    assert s["idle_deadline"] - s["last_access"] == 111111
    assert s["absolute_deadline"] == -1
    assert s["grace_until"] - s["idle_deadline"] == 7

    # another tenant keeps the module defaults
    k4 = create(r, new_key("globex"))
    s = get(r, k4)
    assert s["idle_deadline"] - s["last_access"] == DEF_IDLE
    assert s["absolute_deadline"] - s["created"] == DEF_ABSOLUTE
    assert s["grace_until"] - s["idle_deadline"] == DEF_GRACE

    # a tenant ABSOLUTE 0 means no absolute deadline
    cmd(r, "SESSION.TENANT", "SET", "acme", "ABSOLUTE", 0)
    s = get(r, create(r, new_key("acme")))
    assert s["absolute_deadline"] == -1
    assert s["idle_deadline"] - s["last_access"] == 111111

    # after TENANT DEL new sessions are back on the defaults
    assert cmd(r, "SESSION.TENANT", "DEL", "acme") == 1
    s = get(r, create(r, new_key("acme")))
    assert s["idle_deadline"] - s["last_access"] == DEF_IDLE
    assert s["absolute_deadline"] - s["created"] == DEF_ABSOLUTE
    assert s["grace_until"] - s["idle_deadline"] == DEF_GRACE


def test_tenant_timeouts_over_module_load_args(make_server):
    srv = make_server(module_args={"idle": 400000, "grace": 4000})
    r = srv.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "GRACE", 9)
    s = get(r, create(r, new_key("acme")))
    assert s["idle_deadline"] - s["last_access"] == 400000  # module option
    assert s["grace_until"] - s["idle_deadline"] == 9  # tenant
    s = get(r, create(r, new_key("globex")))
    assert s["grace_until"] - s["idle_deadline"] == 4000


def test_maxdata_toobig_on_create_set_cas(server):
    r = server.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXDATA", 10)
    assert tenant_get(r, "acme")["maxdata"] == 10
    # exactly at the limit: len("a") + len("123456789") == 10
    k = create(r, new_key("acme"), "DATA", "a", "123456789")
    expect_error("TOOBIG", cmd, r, "SESSION.CREATE", new_key("acme"), "DATA", "a", "1234567890")
    k2 = new_key("acme")
    expect_error("TOOBIG", cmd, r, "SESSION.CREATE", k2, "DATA", "a", "12345", "b", "1234")
    assert cmd(r, "EXISTS", k2) == 0

    # SET: growing past the limit refused, session unchanged
    expect_error("TOOBIG", cmd, r, "SESSION.SET", k, "DATA", "b", "x")
    s = get(r, k)
    assert s["version"] == 1 and s["data"] == {"a": "123456789"}
    assert cmd(r, "SESSION.SET", k, "UNSET", 1, "a", "DATA", "b", "x") == 2
    # CAS: replacing with too much refused
    expect_error("TOOBIG", cmd, r, "SESSION.CAS", k, 2, "DATA", "c", "0123456789")
    assert get(r, k)["data"] == {"b": "x"}
    assert cmd(r, "SESSION.CAS", k, 2, "DATA", "c", "012345678") == 3

    # another tenant still has the module limit
    create(r, new_key("globex"), "DATA", "a", "x" * 1000)

    # raising the limit applies to existing sessions' later writes
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXDATA", 100)
    assert cmd(r, "SESSION.SET", k, "DATA", "d", "y" * 50) == 4


def test_maxdata_above_module_limit(make_server):
    srv = make_server(module_args={"max-data-bytes": 100})
    r = srv.client()
    cmd(r, "SESSION.TENANT", "SET", "big", "MAXDATA", 1000)
    create(r, new_key("big"), "DATA", "f", "x" * 900)
    expect_error("TOOBIG", cmd, r, "SESSION.CREATE", new_key("small"), "DATA", "f", "x" * 900)
    assert tenant_get(r, "big")["maxdata"] == 1000
    cmd(r, "SESSION.TENANT", "SET", "other", "IDLE", 1000)
    assert tenant_get(r, "other")["maxdata"] == 100


def test_maxpersubject_reject(server):
    r = server.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 2)
    a = create(r, new_key("acme"), "SUBJECT", "alice")
    b = create(r, new_key("acme"), "SUBJECT", "alice")
    created = stats(r)["created"]
    c = new_key("acme")
    e = expect_error("LIMIT", cmd, r, "SESSION.CREATE", c, "SUBJECT", "alice")
    assert cmd(r, "EXISTS", c) == 0
    assert stats(r)["created"] == created
    assert session_list(r, "acme", "alice") == sorted([a, b])
    assert get(r, a) is not None and get(r, b) is not None, e

    # other subjects and sessions without subject are not capped by alice's count
    create(r, new_key("acme"), "SUBJECT", "bob")
    create(r, new_key("acme"), "SUBJECT", "bob")
    expect_error("LIMIT", cmd, r, "SESSION.CREATE", new_key("acme"), "SUBJECT", "bob")
    for _ in range(5):
        create(r, new_key("acme"))
    # other tenants are not capped
    for _ in range(4):
        create(r, new_key("globex"), "SUBJECT", "alice")

    # a revoked session frees its slot
    assert cmd(r, "SESSION.REVOKE", a) == 1
    c = create(r, c, "SUBJECT", "alice")
    expect_error("LIMIT", cmd, r, "SESSION.CREATE", new_key("acme"), "SUBJECT", "alice")
    # so does a deleted one
    assert cmd(r, "DEL", b) == 1
    d = create(r, new_key("acme"), "SUBJECT", "alice")
    assert session_list(r, "acme", "alice") == sorted([c, d])
    # raising the cap lets more in
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 3)
    create(r, new_key("acme"), "SUBJECT", "alice")
    expect_error("LIMIT", cmd, r, "SESSION.CREATE", new_key("acme"), "SUBJECT", "alice")
    # MAXPERSUBJECT 0 = no cap
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 0)
    for _ in range(3):
        create(r, new_key("acme"), "SUBJECT", "alice")
    assert count(r, "acme", "alice") == 6


def test_maxpersubject_expired_sessions_do_not_count(server):
    r = server.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 1)
    k = create(r, new_key("acme"), "SUBJECT", "carol", "IDLE", 100, "GRACE", 0)
    expect_error("LIMIT", cmd, r, "SESSION.CREATE", new_key("acme"), "SUBJECT", "carol")
    # once the session is expired (whether or not Redis removed the key yet)
    wait_for(lambda: cmd(r, "SESSION.TTL", k) is None, 10, what="session expired")
    create(r, new_key("acme"), "SUBJECT", "carol")


def test_maxpersubject_evict_oldest(server):
    r = server.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 2, "ONLIMIT", "evict-oldest")
    s1 = create(r, new_key("acme"), "SUBJECT", "alice", "DATA", "a", "1")
    advance(server, 2)  # s1 strictly older than s2
    s2 = create(r, new_key("acme"), "SUBJECT", "alice")
    before = stats(r)
    s3 = create(r, new_key("acme"), "SUBJECT", "alice")
    assert err_of(cmd, r, "SESSION.GET", s1) == EVICT_REASON
    assert get(r, s2) is not None and get(r, s3) is not None
    assert session_list(r, "acme", "alice") == sorted([s2, s3])
    after = stats(r)
    assert after["revocations"] - before["revocations"] == 1
    assert after["created"] - before["created"] == 1
    assert after["sessions"] == before["sessions"]
    assert count(r, "acme", "alice") == 2
    # sessions without subject are never capped, nor evicted
    free = [create(r, new_key("acme")) for _ in range(4)]
    for k in free:
        assert get(r, k) is not None
    assert count(r, "acme") == 6


def test_evict_oldest_order_and_several_victims(server):
    """Victims are the oldest live sessions by (created, key); lowering the
    cap below the current count revokes as many as needed."""
    r = server.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 10, "ONLIMIT", "evict-oldest")
    # several sessions created in one MULTI usually share a created ms: the
    # key then decides
    keys = [new_key("acme") for _ in range(6)]
    p = r.pipeline(transaction=True)
    for k in keys:
        p.execute_command("SESSION.CREATE", k, "SUBJECT", "dave")
    assert p.execute() == [1] * 6
    other = create(r, new_key("acme"), "SUBJECT", "erin")
    info = {k: get(r, k)["created"] for k in keys}
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 3)
    before = stats(r, "acme")
    new = create(r, new_key("acme"), "SUBJECT", "dave")
    order = sorted(keys, key=lambda k: (info[k], k))
    victims, kept = order[:4], order[4:]
    for k in victims:
        assert err_of(cmd, r, "SESSION.GET", k) == EVICT_REASON, (k, order)
    for k in kept:
        assert get(r, k) is not None, (k, order)
    assert session_list(r, "acme", "dave") == sorted(kept + [new])
    assert get(r, other) is not None
    after = stats(r, "acme")
    assert after["revocations"] - before["revocations"] == 4
    assert after["sessions"] - before["sessions"] == -3


def test_evict_oldest_skips_revoked_and_expired(server):
    r = server.client()
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 2, "ONLIMIT", "evict-oldest")
    old = create(r, new_key("acme"), "SUBJECT", "u")
    cmd(r, "SESSION.REVOKE", old, "REASON", "logout")
    short = create(r, new_key("acme"), "SUBJECT", "u", "IDLE", 50, "GRACE", 0)
    keep = create(r, new_key("acme"), "SUBJECT", "u")
    wait_for(lambda: cmd(r, "SESSION.TTL", short) is None, 10, what="short session expired")
    new = create(r, new_key("acme"), "SUBJECT", "u")
    # only one live session (keep) existed: nothing is evicted
    assert get(r, keep) is not None
    assert err_of(cmd, r, "SESSION.GET", old) == "REVOKED logout"
    assert session_list(r, "acme", "u") == sorted([keep, new])


# ---------------------------------------------------------------------------
# persistence and replication of the settings

SETTINGS = {
    "acme": ["IDLE", 123456, "GRACE", 7, "MAXPERSUBJECT", 2, "ONLIMIT", "evict-oldest"],
    "globex": ["ABSOLUTE", 0, "MAXDATA", 99],
    "t-1": ["ONLIMIT", "reject"],
}


def set_all(r):
    for t, opts in SETTINGS.items():
        assert cmd(r, "SESSION.TENANT", "SET", t, *opts) == "OK"
    return {t: tenant_get(r, t) for t in SETTINGS}


def assert_settings(r, expected):
    assert tenant_list(r) == sorted(expected)
    for t, v in expected.items():
        assert tenant_get(r, t) == v, t


def test_settings_survive_save_and_restart(make_server):
    srv = make_server()
    r = srv.client()
    expected = set_all(r)
    k = create(r, new_key("acme"), "SUBJECT", "u", "DATA", "a", "1")
    assert cmd(r, "SAVE") in ("OK", True)
    srv.restart()
    r = srv.client()
    assert_settings(r, expected)
    assert info_session(srv)["session_tenants"] == 3
    # and they still act: acme evicts at 2 per subject
    create(r, new_key("acme"), "SUBJECT", "u")
    create(r, new_key("acme"), "SUBJECT", "u")
    assert err_of(cmd, r, "SESSION.GET", k) == EVICT_REASON
    expect_error("TOOBIG", cmd, r, "SESSION.CREATE", new_key("globex"), "DATA", "x", "y" * 99)


def test_settings_survive_restart_with_empty_keyspace(make_server):
    srv = make_server()
    r = srv.client()
    expected = set_all(r)
    cmd(r, "SAVE")
    srv.restart()
    assert_settings(srv.client(), expected)


def test_del_survives_save_and_restart(make_server):
    srv = make_server()
    r = srv.client()
    expected = set_all(r)
    cmd(r, "SAVE")
    cmd(r, "SESSION.TENANT", "DEL", "globex")
    del expected["globex"]
    cmd(r, "SAVE")
    srv.restart()
    assert_settings(srv.client(), expected)


def test_settings_survive_debug_reload(server):
    r = server.client()
    expected = set_all(r)
    create(r, new_key("acme"), "SUBJECT", "u")
    assert cmd(r, "DEBUG", "RELOAD") in ("OK", True)
    assert_settings(r, expected)


@pytest.mark.parametrize("flush", [["FLUSHALL"], ["FLUSHALL", "ASYNC"], ["FLUSHDB"], ["FLUSHALL", "SYNC"]])
def test_flush_keeps_settings(make_server, flush):
    srv = make_server()
    r = srv.client()
    expected = set_all(r)
    create(r, new_key("acme"), "SUBJECT", "u")
    cmd(r, *flush)
    assert_settings(r, expected)
    assert cmd(r, "DBSIZE") == 0
    # still there after a save and restart of the empty keyspace
    cmd(r, "SAVE")
    srv.restart()
    assert_settings(srv.client(), expected)


def promote(replica):
    replica.admin().execute_command("REPLICAOF", "NO", "ONE")
    return replica.client()


def test_settings_replicated(make_pair):
    primary, replica = make_pair()
    r = primary.client()
    expected = set_all(r)
    cmd(r, "SESSION.TENANT", "SET", "acme", "IDLE", 654321)  # merge replicated too
    expected["acme"]["idle"] = 654321
    assert cmd(r, "SESSION.TENANT", "DEL", "t-1") == 1
    assert cmd(r, "SESSION.TENANT", "DEL", "t-1") == 0
    del expected["t-1"]
    wait_sync(primary, replica)
    assert info_session(replica)["session_tenants"] == 2
    rr = promote(replica)
    assert_settings(rr, expected)


def test_settings_reach_replica_by_full_resync(make_pair):
    primary, replica = make_pair(link=False)
    r = primary.client()
    expected = set_all(r)
    for _ in range(3):
        create(r, new_key("acme"), "SUBJECT", "u", "DATA", "a", "b")
    # settings the replica had on its own are replaced by the primary's
    cmd(replica.client(), "SESSION.TENANT", "SET", "stale", "IDLE", 1000)
    replicate(replica, primary)
    assert info_session(replica)["session_tenants"] == 3
    rr = promote(replica)
    assert_settings(rr, expected)


def test_tenant_del_replicated(make_pair):
    """TENANT DEL propagates to a linked replica (settings made before the link)."""
    primary, replica = make_pair(link=False)
    r = primary.client()
    expected = set_all(r)
    replicate(replica, primary)
    assert cmd(r, "SESSION.TENANT", "DEL", "globex") == 1
    del expected["globex"]
    wait_sync(primary, replica)
    assert info_session(replica)["session_tenants"] == 2
    assert_settings(promote(replica), expected)


def test_tenant_get_and_list_work_on_a_read_only_replica(make_pair):
    """GET and LIST only read settings: like other reads they should work on
    a replica (replica-read-only yes), so operators can inspect it."""
    primary, replica = make_pair(link=False)
    expected = set_all(primary.client())
    replicate(replica, primary)  # by full resync: independent of TENANT SET propagation
    rr = replica.client()
    assert tenant_list(rr) == sorted(expected)
    assert tenant_get(rr, "acme") == expected["acme"]
    # writes stay refused on the replica
    e = err_of(cmd, rr, "SESSION.TENANT", "SET", "acme", "IDLE", 1000)
    assert error_code(e) == "READONLY", e


@pytest.mark.parametrize("rewrite", [False, True], ids=["incr", "rewrite"])
def test_settings_survive_aof_restart_with_preamble(make_server, rewrite):
    srv = make_server(config={"appendonly": "yes", "aof-use-rdb-preamble": "yes"})
    r = srv.client()
    expected = set_all(r)
    keys = [create(r, new_key("acme"), "SUBJECT", "u", "DATA", "a", "1")]
    if rewrite:
        cmd(r, "BGREWRITEAOF")
        srv.wait_aof_rewrite_done()
        # changes after the rewrite go to the new increment file
        cmd(r, "SESSION.TENANT", "SET", "globex", "GRACE", 3)
        expected["globex"]["grace"] = 3
        keys.append(create(r, new_key("acme"), "SUBJECT", "u"))
    srv.restart()
    r = srv.client()
    assert_settings(r, expected)
    # the index is rebuilt from the loaded keys
    assert session_list(r, "acme", "u") == sorted(keys)
    assert stats(r)["sessions"] == len(keys)
    assert stats(r)["data_bytes"] == 2


def test_settings_in_rewritten_aof_without_preamble(make_server):
    srv = make_server(config={"appendonly": "yes", "aof-use-rdb-preamble": "no"})
    r = srv.client()
    expected = set_all(r)
    keys = [create(r, new_key("acme"), "SUBJECT", "u") for _ in range(2)]
    r1 = srv.client(db=1)
    create(r1, new_key("globex"), "DATA", "a", "1")
    cmd(r, "BGREWRITEAOF")
    srv.wait_aof_rewrite_done()
    names = [to_str(c[0]).upper() for c in aof_commands(srv)]
    assert "SESSION.TENANT" in names
    assert "SESSION.APPLY" in names
    assert names.index("SESSION.TENANT") < names.index("SESSION.APPLY")
    srv.restart()
    r = srv.client()
    assert_settings(r, expected)
    assert session_list(r, "acme", "u") == sorted(keys)
    assert count(srv.client(db=1), "globex") == 1
