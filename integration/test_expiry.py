"""SPEC §3: active -> grace -> expired, revival in grace, the absolute cap,
key expiry at the end of the last state, and touch-resolution suppression
(a suppressed touch is neither propagated to replicas nor written to the AOF).

Timing: short timeouts (a few hundred ms), every observation bracketed by the
server clock (TIME before / after the command), polling with deadlines.
"""

import time

import pytest

from sessionlib import (
    INTERNAL_COMMANDS,
    aof_commands,
    aof_size,
    new_key,
    norm_session,
    norm_ttl,
    wait_for,
    wait_sync,
)


def cmd(r, *a):
    return r.execute_command(*a)


def get(r, k, *o):
    return norm_session(cmd(r, "SESSION.GET", k, *o))[1]


def ttl(r, k):
    return norm_ttl(cmd(r, "SESSION.TTL", k))[1]


def bracketed(server, fn):
    """(t_before, result, t_after) with the server clock."""
    t0 = server.time_ms()
    res = fn()
    t1 = server.time_ms()
    return t0, res, t1


def check_state(s0, t0, state, t1):
    """The observed state must be possible at some instant in [t0, t1]."""
    idle_dl = s0["idle_deadline"]
    abs_dl = s0["absolute_deadline"]
    gu = s0["grace_until"]
    if state == "active":
        assert t0 < idle_dl, (t0, idle_dl)
        assert abs_dl == -1 or t0 < abs_dl
    elif state == "grace":
        assert t1 >= idle_dl, (t1, idle_dl)
        assert t0 < gu
    elif state is None:
        assert t1 >= gu, f"session vanished at {t1} before grace_until {gu}"
    else:
        raise AssertionError(f"unknown state {state!r}")


def observe(server, r, k, s0, until_missing=True, timeout=10):
    """Poll GET NODATA until the session is missing; check every sample."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t0, rep, t1 = bracketed(server, lambda: get(r, k, "NODATA"))
        state = rep["state"] if rep else None
        check_state(s0, t0, state, t1)
        if rep is not None:
            # a read never changes anything
            assert rep["last_access"] == s0["last_access"]
            assert rep["grace_until"] == s0["grace_until"]
        if not seen or seen[-1] != state:
            seen.append(state)
        if state is None and until_missing:
            return seen
        time.sleep(0.015)
    raise AssertionError(f"session did not expire in {timeout}s; states seen {seen}")


def gone(server, r, k, expire_at):
    """The Redis key is removed too. Redis expires a key when now > its
    PEXPIRETIME (strictly), the module treats the session as gone when
    now >= grace_until: allow that one millisecond."""
    wait_for(lambda: server.time_ms() > expire_at, 2, interval=0.001, what="clock past the expiry")
    assert cmd(r, "EXISTS", k) == 0


def wait_state(server, r, k, want, timeout=10):
    def f():
        rep = get(r, k, "NODATA")
        return rep if rep and rep["state"] == want else None
    return wait_for(f, timeout, interval=0.01, what=f"state {want}")


# ---------------------------------------------------------------------------


def test_active_grace_expired(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 400, "GRACE", 400, "ABSOLUTE", 0)
    s0 = get(r, k)
    assert s0["state"] == "active"
    assert cmd(r, "PEXPIRETIME", k) == s0["grace_until"] == s0["last_access"] + 800
    seen = observe(server0, r, k, s0)
    assert seen == ["active", "grace", None]
    gone(server0, r, k, s0["grace_until"])


def test_ttl_in_each_state(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 400, "GRACE", 600, "ABSOLUTE", 0)
    s0 = get(r, k)
    t0, t, t1 = bracketed(server0, lambda: ttl(r, k))
    assert t["state"] == "active"
    assert s0["idle_deadline"] - t1 <= t["idle_ms"] <= s0["idle_deadline"] - t0
    assert t["absolute_ms"] == -1
    assert s0["grace_until"] - t1 <= t["grace_ms"] <= s0["grace_until"] - t0
    wait_state(server0, r, k, "grace")
    t0, t, t1 = bracketed(server0, lambda: ttl(r, k))
    if t is not None and t["state"] == "grace":
        assert t["idle_ms"] == 0
        assert s0["grace_until"] - t1 <= t["grace_ms"] <= s0["grace_until"] - t0
        assert t["absolute_ms"] == -1
    wait_for(lambda: cmd(r, "SESSION.TTL", k) is None, 5, what="TTL nil")
    assert server0.time_ms() >= s0["grace_until"]


def test_expired_key_is_freed_by_redis(server0):
    """Nobody touches the key: Redis's active expiry removes it at grace_until."""
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 300, "GRACE", 300, "ABSOLUTE", 0, "DATA", "blob", "x" * 10000)
    s0 = get(r, k)
    assert r.dbsize() == 1
    wait_for(lambda: r.dbsize() == 0, 10, interval=0.02, what="active expiry of the session key")
    assert server0.time_ms() >= s0["grace_until"]
    assert int(r.info("stats")["expired_keys"]) >= 1


@pytest.mark.parametrize("how", ["renew", "touch"])
def test_renewal_in_grace_revives(server0, how):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 400, "GRACE", 3000, "ABSOLUTE", 0, "DATA", "a", "1")
    s0 = get(r, k)
    wait_state(server0, r, k, "grace")
    if how == "renew":
        t0, ms, t1 = bracketed(server0, lambda: cmd(r, "SESSION.RENEW", k))
        assert 400 - (t1 - t0) <= ms <= 400
        s = get(r, k)
    else:
        t0, s, t1 = bracketed(server0, lambda: get(r, k, "TOUCH"))
        assert s == get(r, k)
    assert s["state"] == "active"
    assert t0 <= s["last_access"] <= t1
    assert s["idle_deadline"] == s["last_access"] + 400
    assert s["grace_until"] == s["idle_deadline"] + 3000
    assert s["version"] == s0["version"] == 1
    assert s["data"] == {"a": "1"}
    assert cmd(r, "PEXPIRETIME", k) == s["grace_until"]
    # and it goes through the states again from the new renewal
    assert observe(server0, r, k, s, timeout=15) == ["active", "grace", None]


def test_grace_touch_revives_despite_touch_resolution(make_server):
    """touch-resolution only suppresses renewals of an active session."""
    srv = make_server(module_args={"touch-resolution": 60000})
    r = srv.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 300, "GRACE", 5000, "ABSOLUTE", 0)
    s0 = get(r, k)
    # while active: suppressed
    s1 = get(r, k, "TOUCH")
    if s1["state"] == "active":
        assert s1["last_access"] == s0["last_access"]
    wait_state(srv, r, k, "grace")
    t0, s, t1 = bracketed(srv, lambda: get(r, k, "TOUCH"))
    assert s["state"] == "active"
    assert t0 <= s["last_access"] <= t1
    assert s["idle_deadline"] == s["last_access"] + 300
    assert cmd(r, "PEXPIRETIME", k) == s["grace_until"]


def test_writes_in_grace_are_accepted_and_do_not_revive(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 300, "GRACE", 5000, "ABSOLUTE", 0, "DATA", "a", "1")
    s0 = get(r, k)
    wait_state(server0, r, k, "grace")
    assert cmd(r, "SESSION.SET", k, "DATA", "b", "2") == 2
    assert cmd(r, "SESSION.CAS", k, 2, "DATA", "c", "3") == 3
    s = get(r, k)
    assert s["state"] == "grace"
    assert s["data"] == {"c": "3"}
    assert s["version"] == 3
    assert s["last_access"] == s0["last_access"]
    assert s["grace_until"] == s0["grace_until"]
    assert cmd(r, "PEXPIRETIME", k) == s0["grace_until"]


def test_revoke_in_grace(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 300, "GRACE", 5000, "ABSOLUTE", 0)
    s0 = get(r, k)
    wait_state(server0, r, k, "grace")
    assert cmd(r, "SESSION.REVOKE", k, "REASON", "late") == 1
    # tombstone lives to min(grace_until, now + retention) = grace_until here
    assert cmd(r, "PEXPIRETIME", k) == s0["grace_until"]


def test_absolute_deadline_has_no_grace(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 20000, "GRACE", 20000, "ABSOLUTE", 600)
    s0 = get(r, k)
    assert s0["absolute_deadline"] == s0["created"] + 600
    assert s0["grace_until"] == s0["absolute_deadline"]
    assert cmd(r, "PEXPIRETIME", k) == s0["absolute_deadline"]
    seen = observe(server0, r, k, s0)
    assert seen == ["active", None]
    gone(server0, r, k, s0["grace_until"])


def test_absolute_deadline_cuts_grace_short(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 300, "GRACE", 20000, "ABSOLUTE", 900)
    s0 = get(r, k)
    assert s0["grace_until"] == s0["absolute_deadline"] == s0["created"] + 900
    assert observe(server0, r, k, s0) == ["active", "grace", None]


def test_renewal_cannot_pass_absolute_deadline(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 400, "GRACE", 5000, "ABSOLUTE", 1200)
    s0 = get(r, k)
    abs_dl = s0["absolute_deadline"]
    states = []
    max_gap = 0
    last_renew = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        t0, ms, t1 = bracketed(server0, lambda: cmd(r, "SESSION.RENEW", k))
        if last_renew is not None:
            max_gap = max(max_gap, t1 - last_renew)
        last_renew = t0
        if ms is None:
            assert t1 >= abs_dl, f"session gone at {t1}, before absolute deadline {abs_dl}"
            break
        assert t0 < abs_dl
        assert min(400, abs_dl - t1) <= ms <= min(400, abs_dl - t0), (ms, t0, t1, abs_dl)
        s = get(r, k, "NODATA")
        if s is not None:
            states.append(s["state"])
            assert s["absolute_deadline"] == abs_dl
            assert s["grace_until"] == min(s["idle_deadline"] + 5000, abs_dl) == abs_dl
            pt = cmd(r, "PEXPIRETIME", k)
            assert pt == abs_dl or (pt == -2 and server0.time_ms() >= abs_dl), pt
        time.sleep(0.08)
    else:
        raise AssertionError("session outlived its absolute deadline")
    if max_gap < 350:  # renewed well within every idle period: never in grace
        assert "grace" not in states, states
    assert cmd(r, "SESSION.GET", k, "TOUCH") is None
    gone(server0, r, k, abs_dl)


def test_renew_idle_past_absolute_is_capped(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 1000, "GRACE", 1000, "ABSOLUTE", 5000)
    s0 = get(r, k)
    t0, ms, t1 = bracketed(server0, lambda: cmd(r, "SESSION.RENEW", k, "IDLE", 100000))
    assert s0["absolute_deadline"] - t1 <= ms <= s0["absolute_deadline"] - t0
    s = get(r, k)
    assert s["version"] == 2
    assert s["idle_deadline"] == s["last_access"] + 100000
    assert s["grace_until"] == s0["absolute_deadline"]
    assert cmd(r, "PEXPIRETIME", k) == s0["absolute_deadline"]


def test_pexpiretime_follows_grace_until(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 50000, "GRACE", 7000, "ABSOLUTE", 0)
    for step in (lambda: cmd(r, "SESSION.RENEW", k),
                 lambda: cmd(r, "SESSION.GET", k, "TOUCH"),
                 lambda: cmd(r, "SESSION.RENEW", k, "IDLE", 70000),
                 lambda: cmd(r, "SESSION.SET", k, "DATA", "a", "1"),
                 lambda: cmd(r, "SESSION.CAS", k, 3)):
        time.sleep(0.01)
        step()
        s = get(r, k)
        assert cmd(r, "PEXPIRETIME", k) == s["grace_until"] == s["idle_deadline"] + 7000


def test_touch_resolution_window(make_server):
    srv = make_server(module_args={"touch-resolution": 400})
    r = srv.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 60000)
    s0 = get(r, k)
    t0, s1, t1 = bracketed(srv, lambda: get(r, k, "TOUCH"))
    if t1 - s0["last_access"] < 400:
        assert s1 == s0
    ms = cmd(r, "SESSION.RENEW", k)
    t2 = srv.time_ms()
    if t2 - s0["last_access"] < 400:
        assert get(r, k) == s0
        assert ms <= 60000
    # past the resolution the renewal is applied
    wait_for(lambda: srv.time_ms() >= s0["last_access"] + 450, 5, what="clock")
    t0, s2, t1 = bracketed(srv, lambda: get(r, k, "TOUCH"))
    assert t0 <= s2["last_access"] <= t1
    assert s2["idle_deadline"] == s2["last_access"] + 60000
    assert cmd(r, "PEXPIRETIME", k) == s2["grace_until"]
    # CONFIG SET changes the resolution at run time
    r.config_set("session.touch-resolution", 0)
    time.sleep(0.01)
    t0, s3, t1 = bracketed(srv, lambda: get(r, k, "TOUCH"))
    assert s3["last_access"] > s2["last_access"]


def test_suppressed_touch_is_not_propagated(make_pair):
    """Default touch-resolution (1000 ms): GET TOUCH and RENEW right after a
    write change nothing, so the replication offset and the AOF do not move;
    an applied renewal moves both and the replica holds the same deadlines."""
    cfg = {"appendonly": "yes", "repl-ping-replica-period": 3600}
    primary, replica = make_pair(config=cfg, replica_config={"appendonly": "no"})
    r = primary.client()
    rr = replica.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 600000, "DATA", "a", "1")
    s0 = get(r, k)
    wait_sync(primary, replica)
    off0 = primary.info("replication")["master_repl_offset"]
    aof0 = aof_size(primary)
    for _ in range(5):
        cmd(r, "SESSION.GET", k, "TOUCH")
        cmd(r, "SESSION.RENEW", k)
    cmd(r, "SESSION.GET", k)
    cmd(r, "SESSION.TTL", k)
    r.ping()
    t = primary.time_ms()
    if t - s0["last_access"] >= 900:
        pytest.skip("machine too slow for a 1000 ms resolution check")
    assert get(r, k) == s0
    assert primary.info("replication")["master_repl_offset"] == off0
    assert aof_size(primary) == aof0
    # an applied renewal is propagated with absolute times
    wait_for(lambda: primary.time_ms() >= s0["last_access"] + 1100, 5, what="clock")
    s1 = get(r, k, "TOUCH")
    assert s1["last_access"] > s0["last_access"]
    r.ping()
    assert primary.info("replication")["master_repl_offset"] > off0
    assert aof_size(primary) > aof0
    wait_sync(primary, replica)
    assert rr.execute_command("PEXPIRETIME", k) == s1["grace_until"]
    assert cmd(rr, "DEBUG", "DIGEST-VALUE", k) == cmd(r, "DEBUG", "DIGEST-VALUE", k)
    assert primary.digest() == replica.digest()
    # what reached the AOF for it: internal commands only, with absolute times
    cmds = aof_commands(primary)
    names = [c[0].upper() for c in cmds]
    assert not ({n for n in names if n.startswith(b"SESSION.")} - INTERNAL_COMMANDS), names
    renews = [c for c in cmds if c[0].upper() == b"SESSION.APPLYRENEW"]
    if renews:
        last = renews[-1]
        assert last[1].decode() == k
        assert [int(x) for x in last[2:5]] == [s1["last_access"], 600000, 1]


def test_suppressed_touch_not_replicated_with_resolution_0_everything_is(make_pair):
    """With touch-resolution 0 every touch is applied and replicated."""
    primary, replica = make_pair(module_args={"touch-resolution": 0},
                                 config={"repl-ping-replica-period": 3600})
    r = primary.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 600000)
    wait_sync(primary, replica)
    for _ in range(3):
        off = primary.info("replication")["master_repl_offset"]
        time.sleep(0.005)
        cmd(r, "SESSION.GET", k, "TOUCH")
        assert primary.info("replication")["master_repl_offset"] > off
    wait_sync(primary, replica)
    rr = replica.client()
    assert cmd(rr, "DEBUG", "DIGEST-VALUE", k) == cmd(r, "DEBUG", "DIGEST-VALUE", k)
    assert cmd(rr, "PEXPIRETIME", k) == get(r, k)["grace_until"]
    assert primary.digest() == replica.digest()


def test_create_over_an_expired_session(server0):
    """Once past grace_until the session is gone: CREATE makes a new one."""
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 100, "GRACE", 0, "ABSOLUTE", 0, "DATA", "old", "1")
    gu = get(r, k)["grace_until"]
    wait_for(lambda: server0.time_ms() > gu, 5, what="clock")
    assert cmd(r, "SESSION.CREATE", k, "DATA", "new", "2") == 1
    s = get(r, k)
    assert s["version"] == 1
    assert s["data"] == {"new": "2"}
    assert s["state"] == "active"


def test_all_commands_treat_expired_as_missing(server0):
    r = server0.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 100, "GRACE", 100, "ABSOLUTE", 0)
    gu = get(r, k)["grace_until"]
    wait_for(lambda: server0.time_ms() > gu, 5, what="clock")
    assert cmd(r, "SESSION.GET", k, "TOUCH") is None
    assert cmd(r, "SESSION.RENEW", k) is None
    assert cmd(r, "SESSION.RENEW", k, "IDLE", 5000) is None
    assert cmd(r, "SESSION.SET", k, "DATA", "a", "1") is None
    assert cmd(r, "SESSION.CAS", k, 1) is None
    assert cmd(r, "SESSION.TTL", k) is None
    assert cmd(r, "SESSION.REVOKE", k) == 0
    assert cmd(r, "EXISTS", k) == 0
