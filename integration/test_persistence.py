"""Persistence: RDB (SAVE / BGSAVE + restart, DEBUG RELOAD) and AOF (with and
without the RDB preamble, before and after BGREWRITEAOF). Every observable
part of every key (SESSION.GET reply, PEXPIRETIME, DEBUG DIGEST-VALUE) and
DEBUG DIGEST must be the same after loading.
"""

import time

import pytest

from sessionlib import (
    INTERNAL_COMMANDS,
    SESSION_COMMANDS,
    aof_commands,
    new_key,
    norm_session,
    run_workload,
    snapshot,
    wait_for,
)

TR0 = {"touch-resolution": 0}


def cmd(r, *a):
    return r.execute_command(*a)


def add_special(srv, r):
    """Sessions that exercise every field and corner; returns their keys."""
    ks = {}
    ks["empty"] = new_key("t")
    cmd(r, "SESSION.CREATE", ks["empty"])
    ks["bin"] = new_key("bin_tenant-1", sid_len=128)
    cmd(r, "SESSION.CREATE", ks["bin"], "SUBJECT", b"u\x00\xff\r\n", "IDLE", 900000, "ABSOLUTE", 0,
        "GRACE", 0, "META", 2, b"\x00m", b"v\r\n", "ua", "x" * 1024,
        "DATA", b"\x00", bytes(range(256)), b"", b"", "big", b"\xff" * 60000)
    ks["many"] = new_key("acme", sid_len=16)
    fields = []
    for i in range(200):
        fields += [f"field{i}", f"value{i}"]
    cmd(r, "SESSION.CREATE", ks["many"], "SUBJECT", "many", "DATA", *fields)
    ks["revoked"] = new_key()
    cmd(r, "SESSION.CREATE", ks["revoked"], "DATA", "a", "1")
    cmd(r, "SESSION.REVOKE", ks["revoked"], "REASON", "rotated keys")
    ks["revoked_default"] = new_key()
    cmd(r, "SESSION.CREATE", ks["revoked_default"])
    cmd(r, "SESSION.REVOKE", ks["revoked_default"])
    ks["versioned"] = new_key()
    cmd(r, "SESSION.CREATE", ks["versioned"], "SUBJECT", "v", "META", 1, "ip", "1.2.3.4", "DATA", "a", "1")
    cmd(r, "SESSION.SET", ks["versioned"], "META", 1, "node", "n7", "DATA", "b", "2")
    cmd(r, "SESSION.CAS", ks["versioned"], 2, "DATA", "c", "3")
    cmd(r, "SESSION.RENEW", ks["versioned"], "IDLE", 1200000)
    ks["pexpire"] = new_key()
    cmd(r, "SESSION.CREATE", ks["pexpire"])
    cmd(r, "PEXPIRE", ks["pexpire"], 9000000)
    ks["grace"] = new_key()
    cmd(r, "SESSION.CREATE", ks["grace"], "IDLE", 150, "GRACE", 600000, "ABSOLUTE", 0, "DATA", "g", "1")
    wait_for(lambda: norm_session(cmd(r, "SESSION.GET", ks["grace"], "NODATA"))[1]["state"] in ("grace", b"grace"),
             5, what="grace state")
    return ks


def prepare(srv, seed):
    r = srv.client(decode=False)
    keys = run_workload(r, seed=seed)
    special = add_special(srv, r)
    return r, keys, special


def assert_same(before, after):
    assert set(after["keys"]) == set(before["keys"])
    for k in before["keys"]:
        assert after["keys"][k] == before["keys"][k], k
    assert after["digest"] == before["digest"]


@pytest.mark.parametrize("how", ["SAVE", "BGSAVE"])
def test_rdb_restart_keeps_everything(make_server, how):
    srv = make_server(module_args=TR0)
    r, _, special = prepare(srv, seed=11)
    before = snapshot(srv)
    assert before["keys"][special["grace"].encode()]["get"][1]["state"] == "grace"
    if how == "SAVE":
        assert r.save()
    else:
        r.bgsave()

        def done():
            i = srv.info("persistence")
            return i["rdb_bgsave_in_progress"] == 0 and i["rdb_changes_since_last_save"] == 0
        wait_for(done, 30, what="BGSAVE")
        assert srv.info("persistence")["rdb_last_bgsave_status"] == "ok"
    srv.restart()
    assert srv.info("keyspace")["db0"]["keys"] == len(before["keys"])
    assert_same(before, snapshot(srv))


def test_debug_reload(make_server):
    srv = make_server(module_args=TR0)
    r, _, _ = prepare(srv, seed=12)
    before = snapshot(srv)
    assert cmd(r, "DEBUG", "RELOAD") in (b"OK", "OK", True)
    assert_same(before, snapshot(srv))
    # a second round trip of what was just loaded
    cmd(r, "DEBUG", "RELOAD")
    assert_same(before, snapshot(srv))


def test_rdb_drops_sessions_expired_while_down(make_server):
    srv = make_server(module_args=TR0)
    r = srv.client()
    short, long_ = new_key(), new_key()
    cmd(r, "SESSION.CREATE", short, "IDLE", 300, "GRACE", 0, "ABSOLUTE", 0)
    cmd(r, "SESSION.CREATE", long_, "IDLE", 600000)
    s_long = norm_session(cmd(r, "SESSION.GET", long_))[1]
    gu = norm_session(cmd(r, "SESSION.GET", short))[1]["grace_until"]
    r.save()
    srv.stop()
    wait_for(lambda: time.time() * 1000 > gu + 100, 5, what="clock")
    srv.start()
    r = srv.client()
    assert cmd(r, "SESSION.GET", short) is None
    assert cmd(r, "EXISTS", short) == 0
    assert norm_session(cmd(r, "SESSION.GET", long_))[1] == s_long


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_aof_restart_and_rewrite(make_server, preamble):
    srv = make_server(module_args=TR0, config={"appendonly": "yes", "aof-use-rdb-preamble": preamble})
    r, keys, special = prepare(srv, seed=21)

    # 1. incremental AOF only
    before = snapshot(srv)
    srv.restart()
    assert_same(before, snapshot(srv))

    # 2. rewrite, then more changes on top of the rewritten base
    r = srv.client(decode=False)
    r.bgrewriteaof()
    srv.wait_aof_rewrite_done()
    assert srv.info("persistence")["aof_last_bgrewrite_status"] == "ok"
    # (the grace session is left alone: a renewal would give it a 150 ms idle clock)
    run_workload(r, seed=22, n=6, keys=keys + [v for n, v in special.items() if n != "grace"])
    before = snapshot(srv)
    srv.restart()
    assert_same(before, snapshot(srv))

    # 3. a pure rewrite of what was loaded
    r = srv.client(decode=False)
    r.bgrewriteaof()
    srv.wait_aof_rewrite_done()
    assert srv.info("persistence")["aof_last_bgrewrite_status"] == "ok"
    srv.restart()
    assert_same(before, snapshot(srv))

    if preamble == "no":
        # the base file was written by the type's aof_rewrite callback:
        # one SESSION.APPLY per session key (tombstones included)
        cmds = aof_commands(srv)
        applies = [c for c in cmds if c[0].upper() == b"SESSION.APPLY"]
        session_keys = [k for k in before["keys"] if k.startswith(b"sess:")]
        assert sorted(c[1] for c in applies) == sorted(session_keys)


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_aof_holds_only_deterministic_effects(make_server, preamble):
    srv = make_server(module_args=TR0, config={"appendonly": "yes", "aof-use-rdb-preamble": preamble})
    r, keys, special = prepare(srv, seed=31)
    cmds = aof_commands(srv)
    names = {c[0].upper() for c in cmds}
    assert not (names & SESSION_COMMANDS), f"client commands reached the AOF: {names & SESSION_COMMANDS}"
    assert not ({n for n in names if n.startswith(b"SESSION.")} - INTERNAL_COMMANDS), names
    assert b"SESSION.APPLY" in names
    # a read adds nothing
    from sessionlib import aof_size
    size = aof_size(srv)
    for k in keys[:5]:
        try:
            cmd(r, "SESSION.GET", k)
            cmd(r, "SESSION.TTL", k)
        except Exception:
            pass
    r.ping()
    assert aof_size(srv) == size


def test_aof_after_rdb_switch(make_server):
    """CONFIG SET appendonly yes on a running server with data: the initial
    rewrite (RDB preamble off) must reproduce everything."""
    srv = make_server(module_args=TR0, config={"aof-use-rdb-preamble": "no"})
    r, _, _ = prepare(srv, seed=41)
    before = snapshot(srv)
    r.config_set("appendonly", "yes")
    wait_for(lambda: srv.info("persistence")["aof_enabled"] == 1, 10, what="aof_enabled")
    srv.wait_aof_rewrite_done()
    srv.restart(config={"appendonly": "yes"})
    assert_same(before, snapshot(srv))
