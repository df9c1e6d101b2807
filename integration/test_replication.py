"""Replication: a primary and a replica hold exactly the same sessions
(DEBUG DIGEST), and so does a server started from the primary's AOF, with and
without the RDB preamble; a replica attached after the data exists gets it by
full resync.
"""

import time

import pytest
import redis

from sessionlib import (
    INTERNAL_COMMANDS,
    SESSION_COMMANDS,
    aof_commands,
    aof_size,
    copy_aof,
    error_code,
    new_key,
    norm_session,
    replicate,
    run_workload,
    snapshot,
    wait_for,
    wait_sync,
)
from tenants_helpers import stats

TR0 = {"touch-resolution": 0}


def cmd(r, *a):
    return r.execute_command(*a)


def explicit_ops(r):
    """One of each operation of the contract, on fresh keys."""
    k = [new_key("rep") for _ in range(8)]
    cmd(r, "SESSION.CREATE", k[0], "SUBJECT", "alice", "META", 1, "ip", "1.1.1.1", "DATA", "a", "1", "b", "2")
    time.sleep(0.003)
    cmd(r, "SESSION.GET", k[0], "TOUCH")
    time.sleep(0.003)
    cmd(r, "SESSION.GET", k[0], "TOUCH", "FIELDS", 1, "a", "VALUES")
    time.sleep(0.003)
    cmd(r, "SESSION.RENEW", k[0])
    cmd(r, "SESSION.RENEW", k[0], "IDLE", 1234567)
    cmd(r, "SESSION.SET", k[0], "META", 1, "ua", "curl", "UNSET", 1, "a", "DATA", "c", "3")
    cmd(r, "SESSION.SET", k[0], "IFVERSION", 3, "DATA", "d", "4")
    try:
        cmd(r, "SESSION.SET", k[0], "IFVERSION", 1, "DATA", "never", "x")
    except redis.ResponseError as e:
        assert str(e).startswith("CONFLICT")
    cmd(r, "SESSION.CAS", k[0], 4, "DATA", "e", "5")
    cmd(r, "SESSION.CREATE", k[1], "ABSOLUTE", 0, "GRACE", 0)
    cmd(r, "SESSION.REVOKE", k[1], "REASON", "logout")
    cmd(r, "SESSION.CREATE", k[2])
    cmd(r, "DEL", k[2])
    cmd(r, "SESSION.CREATE", k[3], "IDLE", 777777, "ABSOLUTE", 8888888, "GRACE", 99999)
    cmd(r, "SESSION.CAS", k[3], 1)
    cmd(r, "SESSION.CREATE", k[4], "DATA", "x", "y")
    cmd(r, "UNLINK", k[4])
    cmd(r, "SESSION.CREATE", k[4], "DATA", "x", "z")  # re-created after delete
    cmd(r, "SESSION.CREATE", k[5])
    cmd(r, "SESSION.REVOKE", k[5])
    return k


def assert_same_keyspace(a, b, with_get=None):
    """Same keys, values (DEBUG DIGEST-VALUE), expiry times and DEBUG DIGEST.

    SESSION.GET replies are compared too when both servers are primaries
    (replica reads are checked on their own in test_replica_serves_reads...).
    """
    if with_get is None:
        with_get = all(s.info("replication")["role"] == "master" for s in (a, b))
    sa, sb = snapshot(a, with_get=with_get), snapshot(b, with_get=with_get)
    allk = sorted(set(sa["keys"]) | set(sb["keys"]))
    diff = [(k, sa["keys"].get(k), sb["keys"].get(k)) for k in allk if sa["keys"].get(k) != sb["keys"].get(k)]
    assert sa["digest"] == sb["digest"], f"DEBUG DIGEST differs; {len(diff)} keys differ, first: {diff[:3]}"
    assert not diff, f"{len(diff)} keys differ, first: {diff[:3]}"
    return sa


def server_from_aof(make_server, primary):
    """A third server loaded from a copy of the primary's AOF."""
    third = make_server(module_args=primary.module_args, name="from-aof", start=False,
                        config={"appendonly": "yes"})
    copy_aof(primary, third.dir)
    third.start()
    return third


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_workload_primary_replica_aof_identical(make_pair, make_server, preamble):
    primary, replica = make_pair(module_args=TR0,
                                 config={"appendonly": "yes", "aof-use-rdb-preamble": preamble})
    r = primary.client(decode=False)
    keys = run_workload(r, seed=101, n=30)
    explicit_ops(r)
    wait_sync(primary, replica)
    before = assert_same_keyspace(primary, replica)
    assert len(before["keys"]) > 10

    # only internal, deterministic commands went out
    names = {c[0].upper() for c in aof_commands(primary)}
    assert not (names & SESSION_COMMANDS), names & SESSION_COMMANDS
    assert not ({n for n in names if n.startswith(b"SESSION.")} - INTERNAL_COMMANDS), names

    third = server_from_aof(make_server, primary)
    assert_same_keyspace(primary, third)

    # after a rewrite (aof_rewrite callback when the preamble is off) too
    r.bgrewriteaof()
    primary.wait_aof_rewrite_done()
    run_workload(r, seed=102, n=5, keys=keys)
    wait_sync(primary, replica)
    assert_same_keyspace(primary, replica)
    third2 = server_from_aof(make_server, primary)
    assert_same_keyspace(primary, third2)


def test_field_write_sends_only_its_fields(make_pair, make_server):
    """A field-level SET goes out as SESSION.APPLYSET key <new version> and
    the options as the client sent them, less IFVERSION: a one-field write
    to a 20 kB session adds a few dozen bytes to the AOF, and the replica
    and an AOF replay merge it to the primary's value, index included."""
    primary, replica = make_pair(config={"appendonly": "yes", "aof-use-rdb-preamble": "no"})
    r = primary.client(decode=False)
    k = new_key("rep")
    cmd(r, "SESSION.CREATE", k, "SUBJECT", "al", "DATA", "big", b"x" * 20000, "cart", "1")
    wait_sync(primary, replica)
    bytes0 = stats(r, "rep")["data_bytes"]
    size0 = aof_size(primary)
    assert cmd(r, "SESSION.SET", k, "META", 1, "ip", "1.2.3.4", "IFVERSION", 1, "UNSET", 1, "cart",
               "DATA", "theme", "dark") == 2
    assert aof_size(primary) - size0 < 300
    last = [c for c in aof_commands(primary) if c[0].upper().startswith(b"SESSION.")][-1]
    assert list(last) == [b"SESSION.APPLYSET", k.encode(), b"2", b"META", b"1", b"ip", b"1.2.3.4",
                          b"UNSET", b"1", b"cart", b"DATA", b"theme", b"dark"]
    assert cmd(r, "SESSION.SET", k, "IFVERSION", 2, "DATA", "theme", "light") == 3
    wait_sync(primary, replica)
    assert_same_keyspace(primary, replica)
    rr = replica.client(decode=False)
    moved = stats(r, "rep")["data_bytes"]
    assert moved != bytes0
    assert stats(rr, "rep")["data_bytes"] == moved
    third = server_from_aof(make_server, primary)
    assert_same_keyspace(primary, third)
    assert stats(third.client(decode=False), "rep")["data_bytes"] == moved


@pytest.mark.parametrize("diskless", ["yes", "no"])
def test_full_resync(make_pair, diskless):
    primary, replica = make_pair(module_args=TR0, config={"repl-diskless-sync": diskless,
                                                          "repl-diskless-sync-delay": 0}, link=False)
    r = primary.client(decode=False)
    run_workload(r, seed=201, n=30)
    explicit_ops(r)
    replicate(replica, primary)
    assert replica.info("replication")["role"] == "slave"
    assert_same_keyspace(primary, replica)
    # and the stream after the resync keeps them equal
    run_workload(r, seed=202, n=5)
    wait_sync(primary, replica)
    assert_same_keyspace(primary, replica)


def test_replica_reconnect_partial_resync(make_pair):
    primary, replica = make_pair(module_args=TR0)
    r = primary.client(decode=False)
    run_workload(r, seed=301, n=10)
    wait_sync(primary, replica)
    cmd(replica.client(), "CLIENT", "KILL", "TYPE", "master")
    run_workload(r, seed=302, n=10)
    wait_for(lambda: replica.info("replication").get("master_link_status") == "up", 20, what="relink")
    wait_sync(primary, replica)
    assert_same_keyspace(primary, replica)


def test_replica_serves_reads_and_refuses_writes(make_pair):
    """TTL, LIST, COUNT and GET are read-only and run on a replica; GET ...
    TOUCH renews, so the replica refuses it like a write (test_reads.py)."""
    primary, replica = make_pair(module_args=TR0)
    r = primary.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "SUBJECT", "s", "DATA", "a", "1")
    wait_sync(primary, replica)
    rr = replica.client()
    assert cmd(rr, "SESSION.TTL", k) is not None
    assert cmd(rr, "SESSION.GET", k, "NODATA") is not None
    for args in (["SESSION.CREATE", new_key()], ["SESSION.SET", k, "DATA", "b", "2"], ["SESSION.CAS", k, 1],
                 ["SESSION.REVOKE", k], ["SESSION.RENEW", k], ["SESSION.GET", k, "TOUCH"]):
        with pytest.raises(redis.ResponseError) as ei:
            cmd(rr, *args)
        assert error_code(ei.value) == "READONLY", (args, str(ei.value))
    assert primary.digest() == replica.digest()


def test_expiry_reaches_replica(make_pair):
    primary, replica = make_pair(module_args=TR0)
    r = primary.client()
    k_short, k_long = new_key(), new_key()
    cmd(r, "SESSION.CREATE", k_short, "IDLE", 1500, "GRACE", 0, "ABSOLUTE", 0)
    cmd(r, "SESSION.CREATE", k_long)
    gu = cmd(r, "PEXPIRETIME", k_short)
    wait_sync(primary, replica)
    rr = replica.client()
    keys = sorted(rr.keys("*"))
    if primary.time_ms() < gu - 200:
        assert keys == sorted([k_short, k_long]), (keys, k_short, k_long)
        assert cmd(rr, "PEXPIRETIME", k_short) == gu
    # the primary expires the key by itself and sends DEL
    wait_for(lambda: r.dbsize() == 1, 10, interval=0.02, what="expiry on the primary")
    wait_sync(primary, replica)
    wait_for(lambda: rr.dbsize() == 1, 10, interval=0.02, what="expiry on the replica")
    assert cmd(rr, "EXISTS", k_short) == 0
    assert primary.digest() == replica.digest()


def test_replica_chain_and_restart_from_replica_rdb(make_pair, make_server):
    """A replica's own SAVE loads back to the same digest (replica RDB path)."""
    primary, replica = make_pair(module_args=TR0)
    r = primary.client(decode=False)
    run_workload(r, seed=401, n=15)
    wait_sync(primary, replica)
    d = primary.digest()
    rr = replica.client()
    rr.save()
    other = make_server(module_args=TR0, name="from-replica-rdb", start=False)
    import shutil
    shutil.copy(replica.dir / "dump.rdb", other.dir / "dump.rdb")
    other.start()
    assert other.digest() == d
