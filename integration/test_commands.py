"""SPEC §4: every command and option, replies under RESP2 and RESP3, errors.

Out of scope here (not written): SESSION.LIST, REVOKEALL, COUNT, TENANT,
STATS, KEYRING, cluster.
"""

import time

import pytest
import redis

from sessionlib import (
    E_EXISTS,
    E_INT,
    E_SYNTAX,
    GET_FIELDS,
    MAX_TIME,
    TTL_FIELDS,
    err_of,
    new_key,
    norm_session,
    norm_ttl,
    wait_for,
)


def cmd(r, *args):
    return r.execute_command(*args)


def get(r, key, *opts):
    return norm_session(cmd(r, "SESSION.GET", key, *opts))[1]


def get_full(r, key, *opts):
    return norm_session(cmd(r, "SESSION.GET", key, *opts))


def ttl(r, key):
    return norm_ttl(cmd(r, "SESSION.TTL", key))[1]


def pexpiretime(r, key):
    return cmd(r, "PEXPIRETIME", key)


def advance(server, ms):
    """Wait until the server clock has moved on by at least ms."""
    target = server.time_ms() + ms
    time.sleep(ms / 1000.0)
    wait_for(lambda: server.time_ms() >= target, 5, interval=0.002, what="server clock")


def wrong_arity(name):
    return f"ERR wrong number of arguments for '{name}' command"


# ---------------------------------------------------------------------------
# SESSION.CREATE


def test_create_defaults(server, proto):
    r = server.client(proto)
    k = new_key()
    t0 = server.time_ms()
    assert cmd(r, "SESSION.CREATE", k) == 1
    t1 = server.time_ms()
    names, s = get_full(r, k)
    assert names == GET_FIELDS
    assert s["subject"] == ""
    assert t0 <= s["created"] <= t1
    assert s["version"] == 1
    assert s["state"] == "active"
    assert s["last_access"] == s["created"]
    assert s["idle_deadline"] == s["last_access"] + 1800000
    assert s["absolute_deadline"] == s["created"] + 604800000
    assert s["grace_until"] == s["idle_deadline"] + 60000
    assert s["meta"] == {}
    assert s["data"] == {}
    assert pexpiretime(r, k) == s["grace_until"]


def test_create_all_options(server, proto):
    r = server.client(proto)
    k = new_key()
    t0 = server.time_ms()
    assert cmd(r, "SESSION.CREATE", k, "SUBJECT", "alice", "IDLE", 10000, "ABSOLUTE", 50000,
               "GRACE", 2000, "META", 2, "ip", "10.1.2.3", "ua", "Mozilla/5.0 (X11)",
               "DATA", "cart", "3 items", "theme", "dark") == 1
    t1 = server.time_ms()
    names, s = get_full(r, k)
    assert names == GET_FIELDS
    assert s["subject"] == "alice"
    assert t0 <= s["created"] <= t1
    assert s["version"] == 1
    assert s["state"] == "active"
    assert s["last_access"] == s["created"]
    assert s["idle_deadline"] == s["created"] + 10000
    assert s["absolute_deadline"] == s["created"] + 50000
    assert s["grace_until"] == s["created"] + 12000
    assert s["meta"] == {"ip": "10.1.2.3", "ua": "Mozilla/5.0 (X11)"}
    assert s["data"] == {"cart": "3 items", "theme": "dark"}
    assert pexpiretime(r, k) == s["grace_until"]


def test_create_grace_until_capped_by_absolute(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 10000, "ABSOLUTE", 5000, "GRACE", 2000)
    s = get(r, k)
    assert s["idle_deadline"] == s["created"] + 10000
    assert s["absolute_deadline"] == s["created"] + 5000
    assert s["grace_until"] == s["absolute_deadline"]
    assert pexpiretime(r, k) == s["absolute_deadline"]


def test_create_absolute_zero_means_none(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 1000, "ABSOLUTE", 0, "GRACE", 0)
    s = get(r, k)
    assert s["absolute_deadline"] == -1
    assert s["idle_deadline"] == s["created"] + 1000
    assert s["grace_until"] == s["idle_deadline"]
    assert pexpiretime(r, k) == s["grace_until"]
    _, t = norm_ttl(cmd(r, "SESSION.TTL", k))
    assert t["absolute_ms"] == -1


def test_create_max_times_accepted(server, proto):
    r = server.client(proto)
    k = new_key()
    assert cmd(r, "SESSION.CREATE", k, "IDLE", MAX_TIME, "ABSOLUTE", MAX_TIME, "GRACE", MAX_TIME) == 1
    s = get(r, k)
    assert s["idle_deadline"] == s["created"] + MAX_TIME
    assert s["absolute_deadline"] == s["created"] + MAX_TIME
    assert s["grace_until"] == s["absolute_deadline"]
    k2 = new_key()
    assert cmd(r, "SESSION.CREATE", k2, "IDLE", 1, "GRACE", 0, "ABSOLUTE", 0) == 1


def test_create_options_case_insensitive(server, proto):
    r = server.client(proto)
    k = new_key()
    assert cmd(r, "SESSION.CREATE", k, "subject", "bob", "Idle", 5000, "absolute", 0,
               "gRaCe", 10, "meta", 1, "ip", "x", "data", "f", "v") == 1
    s = get(r, k)
    assert s["subject"] == "bob"
    assert s["idle_deadline"] == s["created"] + 5000
    assert s["absolute_deadline"] == -1
    assert s["grace_until"] == s["idle_deadline"] + 10
    assert s["meta"] == {"ip": "x"}
    assert s["data"] == {"f": "v"}


def test_create_command_name_case_insensitive(server):
    r = server.client()
    k = new_key()
    assert cmd(r, "session.create", k) == 1
    assert get(r, k)["version"] == 1
    assert cmd(r, "Session.Get", k) is not None


def test_create_data_takes_all_remaining_args(server, proto):
    r = server.client(proto)
    k = new_key()
    assert cmd(r, "SESSION.CREATE", k, "DATA", "f", "v", "IDLE", "5", "META", "1") == 1
    s = get(r, k)
    assert s["data"] == {"f": "v", "IDLE": "5", "META": "1"}
    assert s["idle_deadline"] == s["created"] + 1800000


def test_create_existing_is_refused_and_untouched(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "SUBJECT", "a", "DATA", "f", "1")
    before = get(r, k)
    assert err_of(cmd, r, "SESSION.CREATE", k, "SUBJECT", "b", "DATA", "f", "2") == E_EXISTS
    assert get(r, k) == before


def test_create_binary_safe(server, proto):
    r = server.client(proto, decode=False)
    k = new_key()
    val = bytes(range(256)) + b"\r\n\x00end"
    subj = b"user\x00\xff\r\nx"
    cmd(r, "SESSION.CREATE", k, "SUBJECT", subj, "META", 1, b"m\x00", b"\xfe\r\n",
        "DATA", b"f\x00\n", val, b"", b"")
    s = get(r, k)
    assert s["subject"] == subj
    assert s["meta"] == {b"m\x00": b"\xfe\r\n"}
    assert s["data"] == {b"f\x00\n": val, b"": b""}


@pytest.mark.parametrize(
    "opts,error",
    [
        (["IDLE", "0"], E_INT),
        (["IDLE", "-1"], E_INT),
        (["IDLE", "abc"], E_INT),
        (["IDLE", "1.5"], E_INT),
        (["IDLE", ""], E_INT),
        (["IDLE", str(MAX_TIME + 1)], E_INT),
        (["IDLE", "99999999999999999999999"], E_INT),
        (["ABSOLUTE", "-1"], E_INT),
        (["ABSOLUTE", str(MAX_TIME + 1)], E_INT),
        (["ABSOLUTE", "x"], E_INT),
        (["GRACE", "-1"], E_INT),
        (["GRACE", str(MAX_TIME + 1)], E_INT),
        (["GRACE", "1e3"], E_INT),
        (["IDLE", "5", "IDLE", "6"], E_SYNTAX),
        (["SUBJECT", "a", "SUBJECT", "b"], E_SYNTAX),
        (["ABSOLUTE", "5", "absolute", "6"], E_SYNTAX),
        (["GRACE", "5", "GRACE", "6"], E_SYNTAX),
        (["META", "1", "a", "b", "META", "1", "c", "d"], E_SYNTAX),
        (["FOO"], E_SYNTAX),
        (["FOO", "bar"], E_SYNTAX),
        (["SUBJECT", "a", "BAR", "b"], E_SYNTAX),
        (["META", "2", "a", "b"], E_SYNTAX),
        (["META", "1", "a"], E_SYNTAX),
        (["META", "3", "a", "b", "c", "d"], E_SYNTAX),
        (["DATA"], "ERR wrong number of arguments for 'session.create' command"),
        (["DATA", "f"], "ERR wrong number of arguments for 'session.create' command"),
        (["DATA", "f", "v", "g"], "ERR wrong number of arguments for 'session.create' command"),
        (["SUBJECT", "s", "DATA", "f", "v", "g"], "ERR wrong number of arguments for 'session.create' command"),
    ],
)
def test_create_errors(server, proto, opts, error):
    r = server.client(proto)
    k = new_key()
    assert err_of(cmd, r, "session.create", k, *opts) == error
    assert cmd(r, "EXISTS", k) == 0


@pytest.mark.parametrize("opts", [["SUBJECT"], ["IDLE"], ["GRACE"], ["ABSOLUTE"], ["META"], ["META", "x"],
                                  ["META", "-1"]])
def test_create_missing_option_value_is_an_error(server, opts):
    r = server.client()
    k = new_key()
    e = err_of(cmd, r, "session.create", k, *opts)
    assert e.startswith("ERR "), e
    assert cmd(r, "EXISTS", k) == 0


def test_create_arity(server):
    r = server.client()
    assert err_of(cmd, r, "session.create") == wrong_arity("session.create")


# ---------------------------------------------------------------------------
# SESSION.GET


def test_get_missing_is_nil(server, proto):
    r = server.client(proto)
    k = new_key()
    assert cmd(r, "SESSION.GET", k) is None
    assert cmd(r, "SESSION.GET", k, "TOUCH") is None
    assert cmd(r, "SESSION.GET", k, "NODATA") is None
    assert cmd(r, "SESSION.GET", k, "FIELDS", 1, "a") is None
    assert cmd(r, "EXISTS", k) == 0


def test_get_wire_types(server, proto):
    """Exact RESP types: map (RESP3) / flat array (RESP2); state a simple string."""
    r = server.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "SUBJECT", "u1", "META", 1, "ip", "x", "DATA", "f", "v")
    raw = server.raw(proto)
    try:
        rep = raw.call("SESSION.GET", k)
        if proto == 2:
            assert rep.kind == "*"
            items = rep.value
            assert len(items) == 20
            pairs = [(items[i], items[i + 1]) for i in range(0, 20, 2)]
        else:
            assert rep.kind == "%"
            pairs = rep.value
            assert len(pairs) == 10
        names = [p[0].value.decode() if isinstance(p[0].value, bytes) else p[0].value for p in pairs]
        assert names == GET_FIELDS
        kinds = {n: p[1].kind for n, p in zip(names, pairs)}
        assert kinds["subject"] == "$"
        assert kinds["state"] == "+"
        assert pairs[3][1].value == "active"
        for n in ("created", "version", "last_access", "idle_deadline", "absolute_deadline", "grace_until"):
            assert kinds[n] == ":", (n, kinds[n])
        mapkind = "*" if proto == 2 else "%"
        assert kinds["meta"] == mapkind
        assert kinds["data"] == mapkind
        # nil for a missing session
        nil = raw.call("SESSION.GET", new_key())
        assert nil.kind == ("nil" if proto == 2 else "_")
        nil = raw.call("SESSION.TTL", new_key())
        assert nil.kind == ("nil" if proto == 2 else "_")
        nil = raw.call("SESSION.RENEW", new_key())
        assert nil.kind == ("nil" if proto == 2 else "_")
        # TTL map types
        t = raw.call("SESSION.TTL", k)
        if proto == 2:
            assert t.kind == "*" and len(t.value) == 8
            tp = [(t.value[i], t.value[i + 1]) for i in range(0, 8, 2)]
        else:
            assert t.kind == "%" and len(t.value) == 4
            tp = t.value
        tnames = [p[0].value.decode() if isinstance(p[0].value, bytes) else p[0].value for p in tp]
        assert tnames == TTL_FIELDS
        assert tp[0][1].kind == "+" and tp[0][1].value == "active"
        assert [p[1].kind for p in tp[1:]] == [":", ":", ":"]
    finally:
        raw.close()


def test_get_nodata(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "META", 1, "ip", "x", "DATA", "a", "1", "b", "2")
    names, s = get_full(r, k, "NODATA")
    assert names == GET_FIELDS[:-1]
    assert "data" not in s
    assert s["meta"] == {"ip": "x"}
    full = get(r, k)
    del full["data"]
    assert s == full
    names, s = get_full(r, k, "nodata")
    assert names == GET_FIELDS[:-1]


def test_get_fields(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1", "b", "2", "c", "3")
    names, s = get_full(r, k, "FIELDS", 3, "a", "c", "zz")
    assert names == GET_FIELDS
    assert s["data"] == {"a": "1", "c": "3"}
    assert get(r, k, "FIELDS", 1, "nope")["data"] == {}
    assert get(r, k, "fields", 1, "b")["data"] == {"b": "2"}


def test_get_touch_renews_and_shows_new_values(server0, proto):
    r = server0.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 60000, "GRACE", 5000, "DATA", "a", "1")
    created = get(r, k)
    advance(server0, 20)
    t0 = server0.time_ms()
    names, s = get_full(r, k, "TOUCH")
    t1 = server0.time_ms()
    assert names == GET_FIELDS
    assert t0 <= s["last_access"] <= t1
    assert s["last_access"] > created["last_access"]
    assert s["created"] == created["created"]
    assert s["version"] == 1  # a plain renewal does not change the version
    assert s["state"] == "active"
    assert s["idle_deadline"] == s["last_access"] + 60000
    assert s["grace_until"] == s["idle_deadline"] + 5000
    assert s["data"] == {"a": "1"}
    assert get(r, k) == s
    assert pexpiretime(r, k) == s["grace_until"]


def test_get_touch_with_fields_and_nodata(server0, proto):
    r = server0.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1", "b", "2")
    c = get(r, k)
    advance(server0, 5)
    names, s = get_full(r, k, "TOUCH", "FIELDS", 1, "b")
    assert s["data"] == {"b": "2"}
    assert s["last_access"] > c["last_access"]
    advance(server0, 5)
    names, s2 = get_full(r, k, "NODATA", "touch")
    assert names == GET_FIELDS[:-1]
    assert s2["last_access"] > s["last_access"]


def test_get_fields_values_answers_like_hmget(server, proto):
    """FIELDS ... VALUES: the values alone, in the order asked, nil for a
    field the session lacks, a field asked twice answered twice."""
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "META", 1, "ip", "x", "DATA", "a", "1", "b", "", "c", "3")
    before = get(r, k)
    assert cmd(r, "SESSION.GET", k, "FIELDS", 4, "c", "zz", "a", "b", "VALUES") == ["3", None, "1", ""]
    assert cmd(r, "SESSION.GET", k, "values", "FIELDS", 2, "a", "a") == ["1", "1"]
    assert cmd(r, "SESSION.GET", k, "FIELDS", 1, "nope", "VALUES") == [None]
    assert cmd(r, "SESSION.GET", new_key(), "FIELDS", 1, "a", "VALUES") is None
    assert get(r, k) == before
    raw = server.raw(proto)
    try:
        v = raw.call("SESSION.GET", k, "FIELDS", 2, "a", "zz", "VALUES")
        assert v.kind == "*" and [e.kind for e in v.value] == ["$", "nil" if proto == 2 else "_"]
        assert v.value[0].value == b"1"
    finally:
        raw.close()


def test_get_touch_values_renews_like_the_full_read(server0, proto):
    r = server0.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 60000, "DATA", "cart", "c1", "u", "7")
    c = get(r, k)
    advance(server0, 20)
    t0 = server0.time_ms()
    assert cmd(r, "SESSION.GET", k, "TOUCH", "FIELDS", 1, "cart", "VALUES") == ["c1"]
    s = get(r, k)
    assert t0 <= s["last_access"] and s["last_access"] > c["last_access"]
    assert s["version"] == c["version"]
    assert pexpiretime(r, k) == s["grace_until"]
    assert cmd(r, "SESSION.REVOKE", k, "REASON", "gone") == 1
    assert err_of(cmd, r, "SESSION.GET", k, "TOUCH", "FIELDS", 1, "cart", "VALUES") == "REVOKED gone"


@pytest.mark.parametrize("opts", [["VALUES"], ["TOUCH", "VALUES"], ["NODATA", "VALUES"],
                                  ["FIELDS", 1, "a", "VALUES", "VALUES"], ["VALUES", "NODATA", "FIELDS", 1, "a"]])
def test_get_values_without_fields_is_a_syntax_error(server, opts):
    r = server.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1")
    before = get(r, k)
    assert err_of(cmd, r, "SESSION.GET", k, *opts) == E_SYNTAX
    assert get(r, k) == before


def test_get_touch_within_resolution_is_suppressed(server, proto):
    """Default touch-resolution 1000: an immediate TOUCH changes nothing."""
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    s0 = get(r, k)
    pt0 = pexpiretime(r, k)
    s1 = get(r, k, "TOUCH")
    t = server.time_ms()
    if t - s0["last_access"] >= 900:
        pytest.skip("machine too slow for a 1000 ms resolution check")
    assert s1 == s0
    assert pexpiretime(r, k) == pt0


def test_get_does_not_renew(server0, proto):
    r = server0.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    s0 = get(r, k)
    advance(server0, 10)
    assert get(r, k) == s0
    assert get(r, k, "NODATA")["last_access"] == s0["last_access"]


@pytest.mark.parametrize("opts", [["FOO"], ["TOUCH", "BAR"], ["TOUCHX"]])
def test_get_unknown_option(server, proto, opts):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    assert err_of(cmd, r, "SESSION.GET", k, *opts) == E_SYNTAX


def test_get_arity(server):
    r = server.client()
    assert err_of(cmd, r, "session.get") == wrong_arity("session.get")


# ---------------------------------------------------------------------------
# SESSION.RENEW


def test_renew_missing_is_nil(server, proto):
    r = server.client(proto)
    k = new_key()
    assert cmd(r, "SESSION.RENEW", k) is None
    assert cmd(r, "SESSION.RENEW", k, "IDLE", 1000) is None
    assert cmd(r, "EXISTS", k) == 0


def test_renew_returns_ms_to_new_idle_deadline(server0, proto):
    r = server0.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 10000, "GRACE", 3000)
    c = get(r, k)
    advance(server0, 20)
    t0 = server0.time_ms()
    ms = cmd(r, "SESSION.RENEW", k)
    t1 = server0.time_ms()
    s = get(r, k)
    assert t0 <= s["last_access"] <= t1
    assert s["last_access"] > c["last_access"]
    assert s["idle_deadline"] == s["last_access"] + 10000
    assert s["grace_until"] == s["idle_deadline"] + 3000
    assert s["version"] == 1
    assert s["idle_deadline"] - t1 <= ms <= s["idle_deadline"] - t0
    assert ms <= 10000
    assert pexpiretime(r, k) == s["grace_until"]


def test_renew_capped_by_absolute(server0, proto):
    r = server0.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 100000, "ABSOLUTE", 5000, "GRACE", 1000)
    c = get(r, k)
    advance(server0, 20)
    t0 = server0.time_ms()
    ms = cmd(r, "SESSION.RENEW", k)
    t1 = server0.time_ms()
    assert c["absolute_deadline"] - t1 <= ms <= c["absolute_deadline"] - t0
    s = get(r, k)
    assert s["grace_until"] == s["absolute_deadline"] == c["absolute_deadline"]
    assert pexpiretime(r, k) == c["absolute_deadline"]


def test_renew_suppressed_within_resolution(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 10000)
    s0 = get(r, k)
    ms = cmd(r, "SESSION.RENEW", k)
    t = server.time_ms()
    if t - s0["last_access"] >= 900:
        pytest.skip("machine too slow for a 1000 ms resolution check")
    assert get(r, k) == s0
    # the answer is the time left to the (unchanged) idle deadline
    assert s0["idle_deadline"] - t <= ms <= 10000


def test_renew_idle_changes_timeout_and_version(server0, proto):
    r = server0.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 10000, "GRACE", 1000, "ABSOLUTE", 0)
    advance(server0, 5)
    t0 = server0.time_ms()
    ms = cmd(r, "SESSION.RENEW", k, "IDLE", 20000)
    t1 = server0.time_ms()
    s = get(r, k)
    assert s["version"] == 2
    assert t0 <= s["last_access"] <= t1
    assert s["idle_deadline"] == s["last_access"] + 20000
    assert s["grace_until"] == s["idle_deadline"] + 1000
    assert 20000 - (t1 - t0) <= ms <= 20000
    assert pexpiretime(r, k) == s["grace_until"]
    # the new idle timeout sticks for later plain renewals
    advance(server0, 5)
    cmd(r, "SESSION.RENEW", k)
    s2 = get(r, k)
    assert s2["version"] == 2
    assert s2["idle_deadline"] == s2["last_access"] + 20000
    # lowercase option, and shrinking the timeout
    assert cmd(r, "SESSION.RENEW", k, "idle", 500) <= 500
    s3 = get(r, k)
    assert s3["version"] == 3
    assert s3["idle_deadline"] == s3["last_access"] + 500


def test_renew_idle_never_suppressed(server, proto):
    """Default touch-resolution: RENEW IDLE right after CREATE still applies."""
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 10000)
    ms = cmd(r, "SESSION.RENEW", k, "IDLE", 30000)
    s = get(r, k)
    assert s["version"] == 2
    assert s["idle_deadline"] == s["last_access"] + 30000
    assert 29000 < ms <= 30000
    assert pexpiretime(r, k) == s["grace_until"]


@pytest.mark.parametrize(
    "opts,error",
    [
        (["IDLE", "0"], E_INT),
        (["IDLE", "-5"], E_INT),
        (["IDLE", "abc"], E_INT),
        (["IDLE", str(MAX_TIME + 1)], E_INT),
        (["FOO"], E_SYNTAX),
        (["IDLE", "5", "IDLE", "6"], E_SYNTAX),
        (["IDLE", "5", "BAR"], E_SYNTAX),
    ],
)
def test_renew_errors(server, proto, opts, error):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    s0 = get(r, k)
    assert err_of(cmd, r, "SESSION.RENEW", k, *opts) == error
    assert get(r, k) == s0


def test_renew_arity(server):
    r = server.client()
    assert err_of(cmd, r, "session.renew") == wrong_arity("session.renew")


# ---------------------------------------------------------------------------
# SESSION.SET


def test_set_missing_is_nil(server, proto):
    r = server.client(proto)
    k = new_key()
    assert cmd(r, "SESSION.SET", k, "DATA", "a", "1") is None
    assert cmd(r, "SESSION.SET", k, "IFVERSION", 1, "DATA", "a", "1") is None
    assert cmd(r, "EXISTS", k) == 0


def test_set_merges_data_fields(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1", "b", "2")
    assert cmd(r, "SESSION.SET", k, "DATA", "b", "20", "c", "3") == 2
    s = get(r, k)
    assert s["data"] == {"a": "1", "b": "20", "c": "3"}
    assert s["version"] == 2
    assert cmd(r, "SESSION.SET", k, "data", "d", "4") == 3
    assert get(r, k)["data"] == {"a": "1", "b": "20", "c": "3", "d": "4"}


def test_set_two_writers_different_fields_both_kept(server, proto):
    r1 = server.client(proto)
    r2 = server.client(proto)
    k = new_key()
    cmd(r1, "SESSION.CREATE", k, "DATA", "x", "0")
    assert cmd(r1, "SESSION.SET", k, "DATA", "cart", "A") == 2
    assert cmd(r2, "SESSION.SET", k, "DATA", "prefs", "B") == 3
    assert get(r1, k)["data"] == {"x": "0", "cart": "A", "prefs": "B"}


def test_set_meta_merges(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "META", 1, "ip", "1.1.1.1", "DATA", "a", "1")
    assert cmd(r, "SESSION.SET", k, "META", 1, "ua", "curl") == 2
    assert get(r, k)["meta"] == {"ip": "1.1.1.1", "ua": "curl"}
    assert cmd(r, "SESSION.SET", k, "META", 2, "ip", "2.2.2.2", "node", "n1") == 3
    s = get(r, k)
    assert s["meta"] == {"ip": "2.2.2.2", "ua": "curl", "node": "n1"}
    assert s["data"] == {"a": "1"}


def test_set_unset(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1", "b", "2", "c", "3")
    assert cmd(r, "SESSION.SET", k, "UNSET", 2, "a", "zz") == 2
    assert get(r, k)["data"] == {"b": "2", "c": "3"}
    # unset of a field that does not exist still counts as a write
    assert cmd(r, "SESSION.SET", k, "UNSET", 1, "nope") == 3
    assert get(r, k)["data"] == {"b": "2", "c": "3"}


def test_set_all_parts_together(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "META", 1, "ip", "x", "DATA", "a", "1", "b", "2")
    assert cmd(r, "SESSION.SET", k, "IFVERSION", 1, "META", 1, "ua", "y",
               "UNSET", 1, "a", "DATA", "c", "3") == 2
    s = get(r, k)
    assert s["version"] == 2
    assert s["meta"] == {"ip": "x", "ua": "y"}
    assert s["data"] == {"b": "2", "c": "3"}


def test_set_data_takes_all_remaining_args(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    assert cmd(r, "SESSION.SET", k, "DATA", "a", "1", "META", "1") == 2
    s = get(r, k)
    assert s["data"] == {"a": "1", "META": "1"}
    assert s["meta"] == {}


def test_set_ifversion(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1")
    assert cmd(r, "SESSION.SET", k, "IFVERSION", 1, "DATA", "a", "2") == 2
    before = get(r, k)
    pt = pexpiretime(r, k)
    assert err_of(cmd, r, "SESSION.SET", k, "IFVERSION", 1, "DATA", "a", "3") == "CONFLICT 2"
    assert err_of(cmd, r, "SESSION.SET", k, "IFVERSION", 3, "UNSET", 1, "a") == "CONFLICT 2"
    assert err_of(cmd, r, "SESSION.SET", k, "ifversion", 0, "META", 1, "m", "v") == "CONFLICT 2"
    assert get(r, k) == before
    assert pexpiretime(r, k) == pt
    assert cmd(r, "SESSION.SET", k, "IFVERSION", 2, "DATA", "a", "3") == 3
    assert get(r, k)["data"] == {"a": "3"}


def test_set_does_not_renew(server0, proto):
    r = server0.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 10000)
    s0 = get(r, k)
    pt = pexpiretime(r, k)
    advance(server0, 20)
    cmd(r, "SESSION.SET", k, "DATA", "a", "1")
    s = get(r, k)
    assert s["last_access"] == s0["last_access"]
    assert s["idle_deadline"] == s0["idle_deadline"]
    assert s["grace_until"] == s0["grace_until"]
    assert pexpiretime(r, k) == pt


@pytest.mark.parametrize(
    "opts,error",
    [
        ([], "ERR wrong number of arguments for 'session.set' command"),
        (["IFVERSION", "1"], E_SYNTAX),
        (["FOO", "bar"], E_SYNTAX),
        (["IFVERSION", "abc", "DATA", "a", "1"], E_INT),
        (["IFVERSION", "-1", "DATA", "a", "1"], E_INT),
        (["IFVERSION", "1.0", "DATA", "a", "1"], E_INT),
        (["META", "1", "a", "b", "FOO"], E_SYNTAX),
    ],
)
def test_set_errors(server, proto, opts, error):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "0")
    s0 = get(r, k)
    assert err_of(cmd, r, "SESSION.SET", k, *opts) == error
    assert get(r, k) == s0


@pytest.mark.parametrize("opts", [["DATA"], ["DATA", "a"], ["DATA", "a", "1", "b"], ["UNSET", "2", "a"],
                                  ["META", "2", "a", "b"], ["UNSET"], ["META"]])
def test_set_malformed_lists_are_errors(server, opts):
    r = server.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "0")
    s0 = get(r, k)
    e = err_of(cmd, r, "session.set", k, *opts)
    assert e.startswith("ERR "), e
    assert get(r, k) == s0


def test_set_arity(server):
    r = server.client()
    assert err_of(cmd, r, "session.set") == wrong_arity("session.set")


# ---------------------------------------------------------------------------
# SESSION.CAS


def test_cas_replaces_whole_data(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "META", 1, "ip", "x", "DATA", "a", "1", "b", "2")
    assert cmd(r, "SESSION.CAS", k, 1, "DATA", "c", "3") == 2
    s = get(r, k)
    assert s["data"] == {"c": "3"}
    assert s["meta"] == {"ip": "x"}
    assert s["version"] == 2
    assert cmd(r, "SESSION.CAS", k, 2) == 3
    s = get(r, k)
    assert s["data"] == {}
    assert s["version"] == 3
    assert cmd(r, "SESSION.CAS", k, 3, "data", "x", "1", "y", "2") == 4
    assert get(r, k)["data"] == {"x": "1", "y": "2"}


def test_cas_conflict_changes_nothing(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1")
    cmd(r, "SESSION.SET", k, "DATA", "a", "2")
    before = get(r, k)
    pt = pexpiretime(r, k)
    assert err_of(cmd, r, "SESSION.CAS", k, 1, "DATA", "z", "9") == "CONFLICT 2"
    assert err_of(cmd, r, "SESSION.CAS", k, 3) == "CONFLICT 2"
    assert get(r, k) == before
    assert pexpiretime(r, k) == pt


def test_cas_missing_is_nil(server, proto):
    r = server.client(proto)
    k = new_key()
    assert cmd(r, "SESSION.CAS", k, 1, "DATA", "a", "1") is None
    assert cmd(r, "SESSION.CAS", k, 1) is None
    assert cmd(r, "EXISTS", k) == 0


def test_cas_does_not_renew(server0, proto):
    r = server0.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    s0 = get(r, k)
    advance(server0, 10)
    cmd(r, "SESSION.CAS", k, 1, "DATA", "a", "1")
    assert get(r, k)["last_access"] == s0["last_access"]


@pytest.mark.parametrize(
    "args,error",
    [
        (["abc"], E_INT),
        (["-1"], E_INT),
        (["1.5"], E_INT),
        (["1", "FOO"], E_SYNTAX),
        (["1", "FOO", "bar"], E_SYNTAX),
    ],
)
def test_cas_errors(server, proto, args, error):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1")
    s0 = get(r, k)
    assert err_of(cmd, r, "SESSION.CAS", k, *args) == error
    assert get(r, k) == s0


@pytest.mark.parametrize("args", [["1", "DATA"], ["1", "DATA", "a"], ["1", "DATA", "a", "1", "b"]])
def test_cas_bad_data_list(server, args):
    r = server.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1")
    s0 = get(r, k)
    e = err_of(cmd, r, "session.cas", k, *args)
    assert e.startswith("ERR "), e
    assert get(r, k) == s0


def test_cas_arity(server):
    r = server.client()
    assert err_of(cmd, r, "session.cas") == wrong_arity("session.cas")
    assert err_of(cmd, r, "session.cas", new_key()) == wrong_arity("session.cas")


# ---------------------------------------------------------------------------
# SESSION.REVOKE


def test_revoke_default_reason(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1")
    assert cmd(r, "SESSION.REVOKE", k) == 1
    assert cmd(r, "SESSION.REVOKE", k) == 0
    assert cmd(r, "EXISTS", k) == 1
    for args in (["SESSION.GET", k], ["SESSION.GET", k, "TOUCH"], ["SESSION.GET", k, "NODATA"],
                 ["SESSION.RENEW", k], ["SESSION.RENEW", k, "IDLE", 5000],
                 ["SESSION.SET", k, "DATA", "a", "2"], ["SESSION.SET", k, "IFVERSION", 1, "DATA", "a", "2"],
                 ["SESSION.CAS", k, 1, "DATA", "a", "2"], ["SESSION.TTL", k]):
        assert err_of(cmd, r, *args) == "REVOKED revoked", args
    assert err_of(cmd, r, "SESSION.CREATE", k) == E_EXISTS
    assert err_of(cmd, r, "SESSION.GET", k) == "REVOKED revoked"


def test_revoke_with_reason(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    assert cmd(r, "SESSION.REVOKE", k, "REASON", "password changed") == 1
    assert err_of(cmd, r, "SESSION.GET", k) == "REVOKED password changed"
    assert err_of(cmd, r, "SESSION.TTL", k) == "REVOKED password changed"
    assert err_of(cmd, r, "SESSION.RENEW", k) == "REVOKED password changed"
    # revoking again answers 0 and keeps the first reason
    assert cmd(r, "SESSION.REVOKE", k, "reason", "other") == 0
    assert err_of(cmd, r, "SESSION.GET", k) == "REVOKED password changed"


def test_revoke_missing(server, proto):
    r = server.client(proto)
    k = new_key()
    assert cmd(r, "SESSION.REVOKE", k) == 0
    assert cmd(r, "SESSION.REVOKE", k, "REASON", "x") == 0
    assert cmd(r, "EXISTS", k) == 0
    assert cmd(r, "SESSION.GET", k) is None


@pytest.mark.parametrize("reason", ["a\r\nb", "line\n", "\rx"])
def test_revoke_reason_crlf_refused(server, proto, reason):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    assert err_of(cmd, r, "SESSION.REVOKE", k, "REASON", reason) == E_SYNTAX
    assert get(r, k)["state"] == "active"


@pytest.mark.parametrize("opts", [["FOO"], ["REASON"], ["REASON", "a", "b"], ["REASON", "a", "REASON", "b"]])
def test_revoke_bad_options(server, opts):
    r = server.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    e = err_of(cmd, r, "SESSION.REVOKE", k, *opts)
    assert e.startswith("ERR "), e
    assert get(r, k)["state"] == "active"


def test_revoke_tombstone_expiry_is_session_grace_until(server, proto):
    """Default retention 1h > session's remaining life: tombstone ends at grace_until."""
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 600000, "GRACE", 60000)
    s = get(r, k)
    cmd(r, "SESSION.REVOKE", k)
    assert pexpiretime(r, k) == s["grace_until"]


def test_revoke_tombstone_expiry_capped_by_retention(make_server, proto):
    srv = make_server(module_args={"revoked-retention": 5000})
    r = srv.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)  # default 30 min idle
    t0 = srv.time_ms()
    cmd(r, "SESSION.REVOKE", k)
    t1 = srv.time_ms()
    assert t0 + 5000 <= pexpiretime(r, k) <= t1 + 5000
    # and via CONFIG SET
    cmd(r, "CONFIG", "SET", "session.revoked-retention", 20000)
    k2 = new_key()
    cmd(r, "SESSION.CREATE", k2)
    t0 = srv.time_ms()
    cmd(r, "SESSION.REVOKE", k2)
    t1 = srv.time_ms()
    assert t0 + 20000 <= pexpiretime(r, k2) <= t1 + 20000


def test_revoke_then_del_allows_create(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    cmd(r, "SESSION.REVOKE", k)
    assert cmd(r, "DEL", k) == 1
    assert cmd(r, "SESSION.GET", k) is None
    assert cmd(r, "SESSION.CREATE", k) == 1
    assert get(r, k)["version"] == 1


def test_revoke_arity(server):
    r = server.client()
    assert err_of(cmd, r, "session.revoke") == wrong_arity("session.revoke")


# ---------------------------------------------------------------------------
# SESSION.TTL


def test_ttl(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 100000, "ABSOLUTE", 500000, "GRACE", 7000)
    s = get(r, k)
    t0 = server.time_ms()
    names, t = norm_ttl(cmd(r, "SESSION.TTL", k))
    t1 = server.time_ms()
    assert names == TTL_FIELDS
    assert t["state"] == "active"
    assert s["idle_deadline"] - t1 <= t["idle_ms"] <= s["idle_deadline"] - t0
    assert s["absolute_deadline"] - t1 <= t["absolute_ms"] <= s["absolute_deadline"] - t0
    assert s["grace_until"] - t1 <= t["grace_ms"] <= s["grace_until"] - t0
    # TTL is a read: nothing moved
    assert get(r, k) == s


def test_ttl_no_absolute(server, proto):
    r = server.client(proto)
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "IDLE", 100000, "ABSOLUTE", 0, "GRACE", 0)
    t = ttl(r, k)
    assert t["absolute_ms"] == -1
    assert 99000 < t["idle_ms"] <= 100000
    assert t["grace_ms"] == t["idle_ms"] or abs(t["grace_ms"] - t["idle_ms"]) <= 1


def test_ttl_missing(server, proto):
    r = server.client(proto)
    assert cmd(r, "SESSION.TTL", new_key()) is None


def test_ttl_arity(server):
    r = server.client()
    assert err_of(cmd, r, "session.ttl") == wrong_arity("session.ttl")
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    assert err_of(cmd, r, "session.ttl", k, "extra") == wrong_arity("session.ttl")


# ---------------------------------------------------------------------------
# module options and keyspace events


DEFAULTS = {
    "idle": "1800000",
    "absolute": "604800000",
    "grace": "60000",
    "touch-resolution": "1000",
    "revoked-retention": "3600000",
    "max-data-bytes": "65536",
    "max-fields": "256",
    "max-meta": "32",
    "key-prefix": "sess:",
}


def test_config_defaults(server):
    r = server.client()
    for name, val in DEFAULTS.items():
        assert r.config_get(f"session.{name}") == {f"session.{name}": val}, name


def test_load_args_set_options(make_server, proto):
    srv = make_server(module_args={"idle": 5000, "absolute": 0, "grace": 250, "max-fields": 3})
    r = srv.client(proto)
    assert r.config_get("session.idle") == {"session.idle": "5000"}
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    s = get(r, k)
    assert s["idle_deadline"] == s["created"] + 5000
    assert s["absolute_deadline"] == -1
    assert s["grace_until"] == s["idle_deadline"] + 250


def test_config_set_changes_new_sessions_only(server, proto):
    r = server.client(proto)
    k1 = new_key()
    cmd(r, "SESSION.CREATE", k1)
    s1 = get(r, k1)
    assert r.config_set("session.idle", 7000)
    assert r.config_set("session.grace", 100)
    assert r.config_set("session.absolute", 0)
    k2 = new_key()
    cmd(r, "SESSION.CREATE", k2)
    s2 = get(r, k2)
    assert s2["idle_deadline"] == s2["created"] + 7000
    assert s2["grace_until"] == s2["idle_deadline"] + 100
    assert s2["absolute_deadline"] == -1
    assert get(r, k1) == s1


def test_keyspace_events(server0):
    r = server0.client()
    r.config_set("notify-keyspace-events", "KEA")
    k = new_key()
    p = server0.client().pubsub()
    p.subscribe(f"__keyspace@0__:{k}")
    wait_for(lambda: p.get_message(timeout=0.1), 5, what="subscribe confirmation")
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1")
    advance(server0, 5)
    cmd(r, "SESSION.GET", k, "TOUCH")
    advance(server0, 5)
    cmd(r, "SESSION.RENEW", k)
    cmd(r, "SESSION.SET", k, "DATA", "b", "2")
    cmd(r, "SESSION.CAS", k, 2, "DATA", "c", "3")
    cmd(r, "SESSION.REVOKE", k)
    cmd(r, "DEL", k)
    events = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not events or events[-1] != "del"):
        m = p.get_message(timeout=0.2)
        if m and m["type"] == "message":
            events.append(m["data"])
    p.close()
    assert events == ["session.create", "session.renew", "session.renew", "session.set", "session.set",
                      "session.revoke", "del"]


def test_keyspace_event_not_sent_for_suppressed_renewal(server):
    r = server.client()
    r.config_set("notify-keyspace-events", "KEA")
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    p = server.client().pubsub()
    p.subscribe(f"__keyspace@0__:{k}")
    wait_for(lambda: p.get_message(timeout=0.1), 5, what="subscribe confirmation")
    cmd(r, "SESSION.GET", k, "TOUCH")   # suppressed (resolution 1000)
    cmd(r, "SESSION.RENEW", k)          # suppressed
    cmd(r, "SESSION.GET", k)            # a read
    cmd(r, "SESSION.TTL", k)            # a read
    cmd(r, "SESSION.RENEW", k, "IDLE", 9000)  # applied
    cmd(r, "DEL", k)
    events = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not events or events[-1] != "del"):
        m = p.get_message(timeout=0.2)
        if m and m["type"] == "message":
            events.append(m["data"])
    p.close()
    assert events == ["session.renew", "del"]


def test_commands_trigger_watch(server):
    """A session write invalidates WATCH like a native write; a suppressed touch is no write."""
    r = server.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k)
    r2 = server.client()
    for write in (["SESSION.SET", k, "DATA", "a", "1"], ["SESSION.CAS", k, 2], ["SESSION.RENEW", k, "IDLE", 5000]):
        p = r.pipeline(transaction=True)
        p.watch(k)
        cmd(r2, *write)
        p.multi()
        p.execute_command("SESSION.GET", k)
        with pytest.raises(redis.WatchError):
            p.execute()
        p.reset()
