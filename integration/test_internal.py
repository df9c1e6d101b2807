"""The internal effect commands (SESSION.APPLY / APPLYSET / APPLYRENEW) are
closed to clients: they run only from a primary's replication link and
while the AOF loads. A client allowed everything (`+@all`, the default
user) cannot forge, resize or un-revoke a session with them, not in MULTI,
not from Lua; no category an operator grants covers them. Replication, AOF
replay (RDB preamble on and off), MIGRATE and RESTORE still work, with
DEBUG DIGEST equal everywhere."""

import pytest
import redis

from sessionlib import err_of, new_key, norm_session, replicate, run_workload, wait_for, wait_sync

INTERNAL = ("SESSION.APPLY", "SESSION.APPLYSET", "SESSION.APPLYRENEW")


def cmd(r, *args):
    return r.execute_command(*args)


def get(r, k):
    reply = cmd(r, "SESSION.GET", k)
    return None if reply is None else norm_session(reply)[1]


def dump_record(r, k):
    """A session's own encoded value, as SESSION.APPLY carries it: taken
    from the AOF-less path, DUMP (rdbcompression off)."""
    from test_faults import split_module_dump
    return split_module_dump(r.dump(k))[1]


def refused(fn, *args):
    e = err_of(fn, *args)
    # where the server knows the `internal` flag (Redis 8) they are hidden:
    # an unknown command to any client
    assert (e.startswith("ERR 'session.apply") and "primary's replication link" in e) \
        or "unknown command" in e.lower(), e


def test_all_powerful_clients_cannot_forge_resize_or_unrevoke(make_server):
    srv = make_server(config={"rdbcompression": "no"}, module_args={"max-data-bytes": 100}, name="sec")
    admin = srv.client(decode=False)
    cmd(admin, "ACL", "SETUSER", "boss", "on", ">pw", "~*", "&*", "+@all")
    r = srv.client(decode=False, username="boss", password="pw")
    victim, other, dead = new_key(), new_key(), new_key()
    assert cmd(r, "SESSION.CREATE", victim, "SUBJECT", "alice", "DATA", "role", "user") == 1
    assert cmd(r, "SESSION.CREATE", other, "SUBJECT", "mallory", "DATA", "role", "admin") == 1
    assert cmd(r, "SESSION.CREATE", dead, "SUBJECT", "alice") == 1
    payload = dump_record(r, other)  # a value of another subject, to forge with
    live_dead = dump_record(r, dead)
    assert cmd(r, "SESSION.REVOKE", dead, "REASON", "stolen") == 1
    before = {k: cmd(admin, "DEBUG", "DIGEST-VALUE", k) for k in (victim, other, dead)}
    digest = srv.digest()
    for client in (r, admin):  # +@all, and the default user
        # forge: another subject's value, any version, under the victim's key
        refused(cmd, client, "SESSION.APPLY", victim, payload)
        refused(cmd, client, "SESSION.APPLY", new_key(), payload, "NOEXPIRE")
        # resize: past max-data-bytes, with a version of its choosing
        refused(cmd, client, "SESSION.APPLYSET", victim, 999, "DATA", "blob", "x" * 10000)
        # un-revoke: the value as it was before the revoke, or a renewal of the tombstone
        refused(cmd, client, "SESSION.APPLY", dead, live_dead)
        refused(cmd, client, "SESSION.APPLYRENEW", dead, 2**40, 10**12, 5)
        refused(cmd, client, "SESSION.APPLYRENEW", victim, 2**40, 10**12, 5)
        # not in a transaction either, nor from a script
        p = client.pipeline(transaction=True)
        p.execute_command("SESSION.APPLYSET", victim, 7, "DATA", "role", "admin")
        p.execute_command("SESSION.APPLY", dead, live_dead)
        for res in p.execute(raise_on_error=False):
            assert isinstance(res, redis.ResponseError), res
        e = err_of(cmd, client, "EVAL", "return redis.call('SESSION.APPLYSET', KEYS[1], 7, 'DATA', 'role', 'admin')",
                   1, victim)
        assert "script" in e.lower() or "primary's replication link" in e, e
        # no arity or argument check runs first, so nothing is learnt either
        refused(cmd, client, "SESSION.APPLY")
    assert {k: cmd(admin, "DEBUG", "DIGEST-VALUE", k) for k in (victim, other, dead)} == before
    assert srv.digest() == digest
    assert get(r, victim)["data"] == {b"role": b"user"}
    assert err_of(cmd, r, "SESSION.GET", dead) == "REVOKED stolen"


def test_no_granted_category_covers_them(make_server):
    """Registered without write/readonly/fast: a user granted the usual
    categories gets NOPERM (7.0 gives module commands no category at all;
    7.2+ would derive @write/@read/@fast from those flags). `admin` keeps
    them out of MONITOR and within -@dangerous."""
    srv = make_server(name="acl")
    admin = srv.client()
    cmd(admin, "ACL", "SETUSER", "app", "on", ">pw", "~*", "+@read", "+@write", "+@fast", "+@keyspace",
        "+@string", "+@hash", "+@transaction", "+@connection", "+session.create", "+session.get")
    cmd(admin, "ACL", "SETUSER", "ops", "on", ">pw", "~*", "+@all", "-@dangerous")
    for user in ("app", "ops"):
        r = srv.client(username=user, password="pw")
        k = new_key()
        if user == "app":
            assert cmd(r, "SESSION.CREATE", k) == 1
        for name in INTERNAL:
            e = err_of(cmd, r, name, k, 1, 1, 1)
            if user == "app":
                assert e.startswith("NOPERM"), (user, name, e)
            else:  # 7.0: no category, so +@all grants it; the run-time check refuses it
                assert e.startswith("NOPERM") or "primary's replication link" in e, (user, name, e)
    for info in srv.raw().call("COMMAND", "INFO", *INTERNAL).value:
        if info.value is None:  # hidden (the `internal` flag)
            continue
        flags = {f.value if isinstance(f.value, str) else f.value.decode() for f in info.value[2].value}
        assert "admin" in flags and "noscript" in flags, flags
        assert not flags & {"write", "readonly", "fast"}, flags


def workload_with_multi_and_fanout(r):
    """Writes that reach replicas as several effects in one transaction:
    MULTI/EXEC, REVOKEALL, a create that evicts the subject's oldest."""
    keys = run_workload(r, seed=14, n=16)
    cmd(r, "SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 2, "ONLIMIT", "evict-oldest")
    mine = [new_key("acme") for _ in range(4)]
    for k in mine:
        assert cmd(r, "SESSION.CREATE", k, "SUBJECT", "zed", "DATA", "a", "1") == 1
    p = r.pipeline(transaction=True)
    p.execute_command("SESSION.SET", mine[-1], "DATA", "b", "2")
    p.execute_command("SESSION.GET", mine[-1], "TOUCH")
    p.execute_command("SESSION.RENEW", mine[-1], "IDLE", 900000)
    p.execute_command("SESSION.CAS", mine[-1], 3, "DATA", "c", "3")
    p.execute()
    subj = new_key("globex")
    for _ in range(3):
        cmd(r, "SESSION.CREATE", new_key("globex"), "SUBJECT", "yan")
    cmd(r, "SESSION.CREATE", subj, "SUBJECT", "yan")
    assert cmd(r, "SESSION.REVOKEALL", "globex", "yan", "EXCEPT", subj) == 3
    return keys + mine


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_replication_and_aof_replay_hold_the_primary_digest(make_pair, preamble):
    config = {"appendonly": "yes", "aof-use-rdb-preamble": preamble}
    primary, replica = make_pair(module_args={"touch-resolution": 0}, config=config)
    primary.wait_aof_rewrite_done()
    replica.wait_aof_rewrite_done()
    r = primary.client(decode=False)
    workload_with_multi_and_fanout(r)
    wait_sync(primary, replica)
    digest = primary.digest()
    assert replica.digest() == digest
    # the replica's own AOF (effects it received, passed on) and the
    # primary's, replayed as written, then rewritten and replayed again
    for srv in (primary, replica):
        assert cmd(srv.client(), "DEBUG", "LOADAOF") in (b"OK", "OK", True)
        assert srv.digest() == digest, srv.name
    cmd(r, "BGREWRITEAOF")
    primary.wait_aof_rewrite_done()
    primary.restart()
    assert primary.digest() == digest
    replicate(replica, primary)
    wait_sync(primary, replica)
    assert replica.digest() == digest
    replica.wait_aof_rewrite_done()  # a full sync rewrites its AOF; SHUTDOWN waits for none


def test_migrate_and_restore_still_work(make_server):
    a = make_server(name="a")
    b = make_server(name="b")
    ra, rb = a.client(decode=False), b.client(decode=False)
    k1, k2 = new_key(), new_key()
    for k in (k1, k2):
        assert cmd(ra, "SESSION.CREATE", k, "SUBJECT", "u9", "DATA", "cart", "3") == 1
    dv = cmd(ra, "DEBUG", "DIGEST-VALUE", k1)
    at = cmd(ra, "PEXPIRETIME", k1)
    assert cmd(rb, "RESTORE", k1, at, ra.dump(k1), "ABSTTL") in (b"OK", "OK", True)
    assert cmd(rb, "DEBUG", "DIGEST-VALUE", k1) == dv
    assert cmd(ra, "MIGRATE", "127.0.0.1", b.port, k2, 0, 5000) in (b"OK", "OK", True)
    assert cmd(ra, "EXISTS", k2) == 0
    wait_for(lambda: sorted(cmd(rb, "SESSION.LIST", "acme", "u9")) == sorted([k1.encode(), k2.encode()]),
             what="the index of the restored and migrated keys")
    assert get(rb, k2)["data"] == {b"cart": b"3"}
    assert cmd(rb, "SESSION.SET", k2, "IFVERSION", 1, "DATA", "cart", "4") == 2


def test_import_is_the_operators_way_in(make_pair):
    """SESSION.IMPORT key <record>: what a migration uses instead of the
    effect command: a whole record, checked like an RDB value, never over an
    existing key, replicated; in @admin @dangerous only (like RESTORE)."""
    primary, replica = make_pair(config={"rdbcompression": "no"})
    r = primary.client(decode=False)
    src, dst = new_key(), new_key()
    assert cmd(r, "SESSION.CREATE", src, "SUBJECT", "u1", "DATA", "a", "1") == 1
    rec = dump_record(r, src)
    assert cmd(r, "SESSION.IMPORT", dst, rec) in (b"OK", "OK")
    assert get(r, dst) == get(r, src)
    assert sorted(cmd(r, "SESSION.LIST", "acme", "u1")) == sorted([src.encode(), dst.encode()])
    assert err_of(cmd, r, "SESSION.IMPORT", dst, rec).startswith("EXISTS")
    assert err_of(cmd, r, "SESSION.IMPORT", new_key(), b"garbage").startswith("ERR")
    cmd(r, "SET", "plain", "x")
    assert err_of(cmd, r, "SESSION.IMPORT", "plain", rec).startswith("WRONGTYPE")
    wait_sync(primary, replica)
    assert replica.digest() == primary.digest()
    rr = replica.client(decode=False)
    assert err_of(cmd, rr, "SESSION.IMPORT", new_key(), rec).startswith("READONLY")
    cmd(r, "ACL", "SETUSER", "app", "on", ">pw", "~*", "+@read", "+@write", "+@fast", "+@keyspace")
    app = primary.client(decode=False, username="app", password="pw")
    assert err_of(cmd, app, "SESSION.IMPORT", new_key(), rec).startswith("NOPERM")
    replica.wait_aof_rewrite_done()
