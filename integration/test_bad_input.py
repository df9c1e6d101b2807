"""SPEC §2, §6: bad keys, arity, bad integers, unknown options, WRONGTYPE both
ways, limits (TOOBIG), corrupt RESTORE payloads (CRC64 recomputed so that the
module's decoder is reached), garbage for the internal SESSION.APPLY, and every
other Redis command on a session key.
"""

import random
import re

import pytest
import redis

from sessionlib import (
    E_INT,
    E_KEY,
    E_SYNTAX,
    E_WRONGTYPE,
    aof_commands,
    crc64,
    dump_join,
    dump_split,
    err_of,
    new_key,
    new_sid,
    norm_session,
)


def cmd(r, *a):
    return r.execute_command(*a)


def get(r, k, *o):
    return norm_session(cmd(r, "SESSION.GET", k, *o))[1]


def wrong_arity(name):
    return f"ERR wrong number of arguments for '{name}' command"


# ---------------------------------------------------------------------------
# keys

SID = "A" * 8 + "b" * 8 + "-_0123"  # 22 valid chars

BAD_KEYS = [
    ("short sid", "sess:acme:" + "a" * 15),
    ("long sid", "sess:acme:" + "a" * 129),
    ("sid with dot", "sess:acme:" + "a" * 16 + ".x"),
    ("sid with plus", "sess:acme:" + "a" * 16 + "+x"),
    ("sid with slash", "sess:acme:" + "a" * 16 + "/x"),
    ("sid with equals", "sess:acme:" + "a" * 20 + "=="),
    ("sid with space", "sess:acme:" + "a" * 16 + " x"),
    ("sid with colon", "sess:acme:" + "a" * 16 + ":x"),
    ("sid with nul", "sess:acme:" + "a" * 16 + "\x00x"),
    ("sid non-ascii", "sess:acme:" + "a" * 16 + "\u00e9"),
    ("trailing colon", "sess:acme:" + SID + ":"),
    ("empty sid", "sess:acme:"),
    ("empty tenant", "sess::" + SID),
    ("no tenant", "sess:" + SID),
    ("tenant too long", "sess:" + "t" * 65 + ":" + SID),
    ("tenant bad char", "sess:ac.me:" + SID),
    ("tenant with space", "sess:ac me:" + SID),
    ("wrong prefix", "session:acme:" + SID),
    ("upper-case prefix", "SESS:acme:" + SID),
    ("no prefix", "acme:" + SID),
    ("dash prefix", "sess-acme:" + SID),
    ("empty key", ""),
    ("prefix only", "sess:"),
]

GOOD_KEYS = [
    ("sid 16", "sess:acme:" + "a" * 16),
    ("sid 128", "sess:acme:" + "Z" * 128),
    ("tenant 64", "sess:" + "t" * 64 + ":" + SID),
    ("tenant 1", "sess:x:" + SID),
    ("all chars", "sess:Az09_-:" + "ABCXYZabcxyz0189-_"),
]


def all_commands_on(key):
    return [
        ["SESSION.CREATE", key],
        ["SESSION.CREATE", key, "SUBJECT", "s", "DATA", "a", "1"],
        ["SESSION.GET", key],
        ["SESSION.GET", key, "TOUCH"],
        ["SESSION.RENEW", key],
        ["SESSION.RENEW", key, "IDLE", 1000],
        ["SESSION.SET", key, "DATA", "a", "1"],
        ["SESSION.CAS", key, 1, "DATA", "a", "1"],
        ["SESSION.REVOKE", key],
        ["SESSION.TTL", key],
    ]


@pytest.mark.parametrize("what,key", BAD_KEYS, ids=[b[0] for b in BAD_KEYS])
def test_bad_key(server, what, key):
    r = server.client()
    for args in all_commands_on(key):
        assert err_of(cmd, r, *args) == E_KEY, args
    assert r.dbsize() == 0


@pytest.mark.parametrize("what,key", GOOD_KEYS, ids=[g[0] for g in GOOD_KEYS])
def test_good_key(server, what, key):
    r = server.client()
    assert cmd(r, "SESSION.CREATE", key) == 1
    assert get(r, key)["version"] == 1


def test_key_prefix_option(make_server):
    srv = make_server(module_args={"key-prefix": "app:s:"})
    r = srv.client()
    assert r.config_get("session.key-prefix") == {"session.key-prefix": "app:s:"}
    good = "app:s:acme:" + new_sid()
    assert cmd(r, "SESSION.CREATE", good) == 1
    assert get(r, good)["state"] == "active"
    for bad in ("sess:acme:" + new_sid(), "app:acme:" + new_sid(), "app:s:" + new_sid(), "app:s::" + new_sid()):
        for args in all_commands_on(bad):
            assert err_of(cmd, r, *args) == E_KEY, args
    assert r.dbsize() == 1


# ---------------------------------------------------------------------------
# arity, integers, options


@pytest.mark.parametrize("name", ["session.create", "session.get", "session.renew", "session.set",
                                  "session.cas", "session.revoke", "session.ttl"])
def test_arity_no_key(server, name):
    r = server.client()
    assert err_of(cmd, r, name) == wrong_arity(name)


@pytest.mark.parametrize(
    "args,error",
    [
        (["SESSION.SET", "{k}", "IFVERSION", "99999999999999999999", "DATA", "a", "1"], E_INT),
        (["SESSION.SET", "{k}", "IFVERSION", "1x", "DATA", "a", "1"], E_INT),
        (["SESSION.CAS", "{k}", "1x"], E_INT),
        (["SESSION.CAS", "{k}", ""], E_INT),
        (["SESSION.CAS", "{k}", "-5", "DATA", "a", "1"], E_INT),
        (["SESSION.RENEW", "{k}", "IDLE", "-1"], E_INT),
        (["SESSION.RENEW", "{k}", "IDLE", " 5"], E_INT),
        (["SESSION.RENEW", "{k}", "IDLE", "0x10"], E_INT),
        (["SESSION.GET", "{k}", "BOGUS"], E_SYNTAX),
        (["SESSION.RENEW", "{k}", "TOUCH"], E_SYNTAX),
        (["SESSION.SET", "{k}", "NODATA"], E_SYNTAX),
        (["SESSION.REVOKE", "{k}", "WHY", "x"], E_SYNTAX),
    ],
)
def test_bad_arguments_on_existing_session(server, args, error):
    r = server.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "0")
    before = get(r, k)
    args = [k if a == "{k}" else a for a in args]
    assert err_of(cmd, r, *args) == error
    assert get(r, k) == before


@pytest.mark.parametrize(
    "args",
    [
        ["SESSION.CREATE", "{k}", "META", "99999999999999999999", "a", "b"],
        ["SESSION.CREATE", "{k}", "META", "1000000", "a", "b"],
        ["SESSION.CREATE", "{k}", "META", "-1", "a", "b"],
        ["SESSION.CREATE", "{k}", "META", str(2 ** 63), "a", "b"],
        ["SESSION.GET", "{k}", "FIELDS", "1000000", "a"],
        ["SESSION.GET", "{k}", "FIELDS", "-1"],
        ["SESSION.GET", "{k}", "FIELDS", "2", "a"],
        ["SESSION.GET", "{k}", "FIELDS", "x", "a"],
        ["SESSION.GET", "{k}", "FIELDS"],
        ["SESSION.SET", "{k}", "UNSET", "1000000", "a"],
        ["SESSION.SET", "{k}", "UNSET", "-3", "a"],
        ["SESSION.SET", "{k}", "META", str(2 ** 64), "a", "b"],
    ],
)
def test_hostile_counts_are_errors(server, args):
    r = server.client()
    k = new_key()
    k_new = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "0")
    before = get(r, k)
    target = k_new if args[0] == "SESSION.CREATE" else k
    args = [target if a == "{k}" else a for a in args]
    e = err_of(cmd, r, *args)
    assert e.startswith(("ERR ", "TOOBIG")), e
    assert r.ping()
    assert get(r, k) == before
    assert cmd(r, "EXISTS", k_new) == 0


# ---------------------------------------------------------------------------
# WRONGTYPE both ways


def test_wrongtype_native_commands_on_session(server):
    r = server.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "1")
    before = get(r, k)
    for args in (["GET", k], ["HGET", k, "a"], ["HGETALL", k], ["LLEN", k], ["SADD", k, "x"],
                 ["INCR", k], ["APPEND", k, "x"], ["STRLEN", k], ["ZCARD", k], ["XLEN", k]):
        assert err_of(cmd, r, *args) == E_WRONGTYPE, args
    assert get(r, k) == before


@pytest.mark.parametrize("kind", ["string", "hash", "list"])
def test_wrongtype_session_commands_on_other_types(server, kind):
    r = server.client()
    k = new_key()
    if kind == "string":
        r.set(k, "plain")
    elif kind == "hash":
        r.hset(k, "a", "1")
    else:
        r.rpush(k, "a")
    digest = cmd(r, "DEBUG", "DIGEST-VALUE", k)
    for args in (["SESSION.GET", k], ["SESSION.GET", k, "TOUCH"], ["SESSION.GET", k, "NODATA"],
                 ["SESSION.RENEW", k], ["SESSION.RENEW", k, "IDLE", 5000],
                 ["SESSION.SET", k, "DATA", "a", "2"], ["SESSION.CAS", k, 1, "DATA", "a", "2"],
                 ["SESSION.REVOKE", k], ["SESSION.TTL", k]):
        assert err_of(cmd, r, *args) == E_WRONGTYPE, args
    # CREATE on a key of another type must fail (EXISTS or WRONGTYPE) and leave it alone
    e = err_of(cmd, r, "SESSION.CREATE", k)
    assert e.startswith(("WRONGTYPE", "EXISTS")), e
    assert r.type(k) == kind
    assert cmd(r, "DEBUG", "DIGEST-VALUE", k) == digest


# ---------------------------------------------------------------------------
# limits


@pytest.fixture
def small(make_server):
    return make_server(module_args={"max-data-bytes": 100, "max-fields": 4, "max-meta": 2}, name="small")


def toobig(r, *args):
    e = err_of(cmd, r, *args)
    assert e.startswith("TOOBIG"), e
    return e


def test_limit_data_bytes_create(small):
    r = small.client()
    k = new_key()
    assert cmd(r, "SESSION.CREATE", k, "DATA", "f", "v" * 99) == 1            # 1 + 99 = 100
    k2 = new_key()
    toobig(r, "SESSION.CREATE", k2, "DATA", "f", "v" * 100)                   # 101
    toobig(r, "SESSION.CREATE", k2, "DATA", "ab", "c" * 40, "de", "f" * 57)   # 2+40+2+57 = 101
    assert cmd(r, "EXISTS", k2) == 0
    assert cmd(r, "SESSION.CREATE", k2, "DATA", "ab", "c" * 40, "de", "f" * 56) == 1


def test_limit_data_bytes_set_and_cas(small):
    r = small.client()
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "x" * 49, "b", "y" * 49)        # 100
    before = get(r, k)
    toobig(r, "SESSION.SET", k, "DATA", "c", "")                              # 101
    toobig(r, "SESSION.SET", k, "DATA", "a", "x" * 50)                        # 101
    assert get(r, k) == before
    assert cmd(r, "SESSION.SET", k, "DATA", "a", "z" * 49) == 2               # replace, still 100
    # the limit applies to the result: removing one field makes room
    assert cmd(r, "SESSION.SET", k, "UNSET", 1, "b", "DATA", "c", "w" * 49) == 3
    assert get(r, k)["data"] == {"a": "z" * 49, "c": "w" * 49}
    before = get(r, k)
    toobig(r, "SESSION.CAS", k, 3, "DATA", "q", "q" * 100)
    assert get(r, k) == before
    assert cmd(r, "SESSION.CAS", k, 3, "DATA", "q", "q" * 99) == 4


def test_limit_fields(small):
    r = small.client()
    k = new_key()
    toobig(r, "SESSION.CREATE", k, "DATA", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5")
    assert cmd(r, "EXISTS", k) == 0
    assert cmd(r, "SESSION.CREATE", k, "DATA", "a", "1", "b", "2", "c", "3", "d", "4") == 1
    before = get(r, k)
    toobig(r, "SESSION.SET", k, "DATA", "e", "5")
    toobig(r, "SESSION.CAS", k, 1, "DATA", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5")
    assert get(r, k) == before
    assert cmd(r, "SESSION.SET", k, "DATA", "a", "9") == 2


def test_limit_meta(small):
    r = small.client()
    k = new_key()
    toobig(r, "SESSION.CREATE", k, "META", 3, "a", "1", "b", "2", "c", "3")
    assert cmd(r, "EXISTS", k) == 0
    assert cmd(r, "SESSION.CREATE", k, "META", 2, "a", "1", "b", "2") == 1
    before = get(r, k)
    toobig(r, "SESSION.SET", k, "META", 1, "c", "3")
    assert get(r, k) == before
    assert cmd(r, "SESSION.SET", k, "META", 1, "a", "9") == 2


def test_limit_subject_and_meta_sizes(server):
    r = server.client()
    k = new_key()
    assert cmd(r, "SESSION.CREATE", k, "SUBJECT", "s" * 512) == 1
    k2 = new_key()
    toobig(r, "SESSION.CREATE", k2, "SUBJECT", "s" * 513)
    toobig(r, "SESSION.CREATE", k2, "META", 1, "n" * 1025, "v")
    toobig(r, "SESSION.CREATE", k2, "META", 1, "n", "v" * 1025)
    assert cmd(r, "EXISTS", k2) == 0
    assert cmd(r, "SESSION.CREATE", k2, "META", 1, "n" * 1024, "v" * 1024) == 1
    before = get(r, k2)
    toobig(r, "SESSION.SET", k2, "META", 1, "x", "v" * 1025)
    toobig(r, "SESSION.SET", k2, "META", 1, "n" * 1025, "x")
    assert get(r, k2) == before


def test_default_limits(server):
    r = server.client()
    k = new_key()
    assert cmd(r, "SESSION.CREATE", k, "DATA", "f", "v" * 65535) == 1
    k2 = new_key()
    toobig(r, "SESSION.CREATE", k2, "DATA", "f", "v" * 65536)
    fields = []
    for i in range(256):
        fields += [f"{i}", ""]
    assert cmd(r, "SESSION.CREATE", k2, "DATA", *fields) == 1
    k3 = new_key()
    toobig(r, "SESSION.CREATE", k3, "DATA", *(fields + ["256", ""]))
    meta = []
    for i in range(32):
        meta += [f"m{i}", "v"]
    assert cmd(r, "SESSION.CREATE", k3, "META", 32, *meta) == 1
    k4 = new_key()
    toobig(r, "SESSION.CREATE", k4, "META", 33, *(meta + ["m32", "v"]))
    assert cmd(r, "EXISTS", k4) == 0


def test_limits_via_config_set(server):
    r = server.client()
    r.config_set("session.max-data-bytes", 10)
    k = new_key()
    toobig(r, "SESSION.CREATE", k, "DATA", "f", "v" * 10)
    assert cmd(r, "SESSION.CREATE", k, "DATA", "f", "v" * 9) == 1
    r.config_set("session.max-data-bytes", 1000)
    r.config_set("session.max-fields", 1)
    toobig(r, "SESSION.SET", k, "DATA", "g", "")
    assert cmd(r, "SESSION.SET", k, "DATA", "f", "w") == 2
    r.config_set("session.max-meta", 1)
    toobig(r, "SESSION.SET", k, "META", 2, "a", "b", "c", "d")
    assert cmd(r, "SESSION.SET", k, "META", 1, "a", "b") == 3


# ---------------------------------------------------------------------------
# every other Redis command on a session key


def make_session(r, **extra):
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "SUBJECT", "u", "IDLE", 600000, "META", 1, "ip", "1.2.3.4",
        "DATA", "a", "1", "b", "x" * 100)
    return k


def test_type_exists_del_unlink(server):
    r = server.client()
    k1, k2, k3 = make_session(r), make_session(r), make_session(r)
    t = r.type(k1)
    assert t not in ("none", "string", "hash", "list", "set", "zset", "stream")
    assert r.type(k2) == t
    cmd(r, "SESSION.REVOKE", k3)
    assert r.type(k3) == t  # a tombstone is still a session value
    assert cmd(r, "EXISTS", k1, k2, k3) == 3
    assert cmd(r, "DEL", k1) == 1
    assert cmd(r, "SESSION.GET", k1) is None
    assert cmd(r, "UNLINK", k2, k3) == 2
    assert cmd(r, "SESSION.GET", k2) is None
    assert cmd(r, "SESSION.GET", k3) is None
    assert r.dbsize() == 0
    # and a key can be created again after DEL
    assert cmd(r, "SESSION.CREATE", k1) == 1


def test_pexpire_on_session(server):
    r = server.client()
    k = make_session(r)
    before = get(r, k)
    t0 = server.time_ms()
    assert cmd(r, "PEXPIRE", k, 50000) == 1
    t1 = server.time_ms()
    assert t0 + 50000 <= cmd(r, "PEXPIRETIME", k) <= t1 + 50000
    assert get(r, k) == before
    assert cmd(r, "PEXPIRE", k, 1) == 1
    from sessionlib import wait_for
    wait_for(lambda: cmd(r, "EXISTS", k) == 0, 5, what="key expiry")
    assert cmd(r, "SESSION.GET", k) is None


def test_dump_restore_roundtrip(server):
    r = server.client()
    rb = server.client(decode=False)
    k = make_session(r)
    cmd(r, "SESSION.SET", k, "DATA", "c", "3")
    before = get(r, k)
    pt = cmd(r, "PEXPIRETIME", k)
    payload = rb.dump(k)
    dump_split(payload)  # our CRC64 agrees with Redis
    k2 = new_key()
    assert cmd(rb, "RESTORE", k2, pt, payload, "ABSTTL") in (b"OK", True)
    assert get(r, k2) == before
    assert cmd(r, "PEXPIRETIME", k2) == pt
    e = err_of(cmd, rb, "RESTORE", k2, 0, payload)
    assert e.startswith("BUSYKEY"), e
    cmd(r, "SESSION.SET", k2, "DATA", "d", "4")
    assert cmd(rb, "RESTORE", k2, pt, payload, "ABSTTL", "REPLACE") in (b"OK", True)
    assert get(r, k2) == before
    # a revoked tombstone survives DUMP/RESTORE too
    cmd(r, "SESSION.REVOKE", k, "REASON", "gone")
    p2 = rb.dump(k)
    k3 = new_key()
    cmd(rb, "RESTORE", k3, 0, p2)
    assert err_of(cmd, r, "SESSION.GET", k3) == "REVOKED gone"


def test_copy(server):
    r = server.client()
    k = make_session(r)
    before = get(r, k)
    k2 = new_key()
    assert cmd(r, "COPY", k, k2) == 1
    assert get(r, k2) == before
    assert cmd(r, "PEXPIRETIME", k2) == cmd(r, "PEXPIRETIME", k)
    # a deep copy: changing the copy leaves the original alone
    cmd(r, "SESSION.SET", k2, "DATA", "a", "changed")
    assert get(r, k) == before
    assert get(r, k2)["data"]["a"] == "changed"
    assert cmd(r, "COPY", k, k2) == 0
    assert cmd(r, "COPY", k, k2, "REPLACE") == 1
    assert get(r, k2) == before


def test_rename(server):
    r = server.client()
    k = make_session(r)
    before = get(r, k)
    pt = cmd(r, "PEXPIRETIME", k)
    k2 = new_key()
    assert r.rename(k, k2)
    assert cmd(r, "SESSION.GET", k) is None
    assert get(r, k2) == before
    assert cmd(r, "PEXPIRETIME", k2) == pt
    k3 = make_session(r)
    assert r.renamenx(k2, k3) is False
    assert cmd(r, "SESSION.SET", k2, "DATA", "z", "1") == 2


def test_move_and_swapdb(server):
    r = server.client()
    k = make_session(r)
    before = get(r, k)
    assert r.move(k, 1)
    assert cmd(r, "SESSION.GET", k) is None
    r1 = server.client(db=1)
    assert get(r1, k) == before
    cmd(r, "SWAPDB", 0, 1)
    assert get(r, k) == before


def test_memory_usage(server):
    r = server.client()
    small = make_session(r)
    big = new_key()
    cmd(r, "SESSION.CREATE", big, "DATA", "blob", "x" * 30000, "more", "y" * 20000)
    us, ub = r.memory_usage(small), r.memory_usage(big)
    assert isinstance(us, int) and us > 100
    assert ub >= 50000
    assert ub > us


def test_debug_digest_value(server0):
    r = server0.client()
    k = make_session(r)
    d0 = cmd(r, "DEBUG", "DIGEST-VALUE", k)
    d0 = d0[0] if isinstance(d0, list) else d0
    assert re.fullmatch(r"[0-9a-f]{40}", d0) and d0 != "0" * 40
    cmd(r, "SESSION.GET", k)
    cmd(r, "SESSION.TTL", k)
    assert cmd(r, "DEBUG", "DIGEST-VALUE", k) == [d0]
    cmd(r, "SESSION.SET", k, "DATA", "a", "2")
    d1 = cmd(r, "DEBUG", "DIGEST-VALUE", k)[0]
    assert d1 != d0
    import time
    time.sleep(0.01)
    cmd(r, "SESSION.RENEW", k)   # applied (touch-resolution 0): deadlines are part of the value
    d2 = cmd(r, "DEBUG", "DIGEST-VALUE", k)[0]
    assert d2 != d1
    cmd(r, "SESSION.REVOKE", k)
    assert cmd(r, "DEBUG", "DIGEST-VALUE", k)[0] != d2
    assert re.fullmatch(r"[0-9a-f]{40}", server0.digest())


def test_multi_exec_and_watch(server):
    r = server.client()
    k = new_key()
    p = r.pipeline(transaction=True)
    p.execute_command("SESSION.CREATE", k, "DATA", "a", "1")
    p.execute_command("SESSION.SET", k, "DATA", "b", "2")
    p.execute_command("SESSION.CAS", k, 1)
    p.execute_command("SESSION.GET", k, "NODATA")
    res = p.execute(raise_on_error=False)
    assert res[0] == 1 and res[1] == 2
    assert isinstance(res[2], redis.ResponseError) and str(res[2]) == "CONFLICT 2"
    assert norm_session(res[3])[1]["version"] == 2


def test_flushall_and_recreate(server):
    r = server.client()
    ks = [make_session(r) for _ in range(5)]
    r.flushall()
    assert r.dbsize() == 0
    for k in ks:
        assert cmd(r, "SESSION.GET", k) is None
        assert cmd(r, "SESSION.CREATE", k) == 1


# ---------------------------------------------------------------------------
# corrupt RESTORE payloads

RDB_TYPE_MODULE_2 = 7
OP_EOF, OP_SINT, OP_UINT, OP_FLOAT, OP_DOUBLE, OP_STRING = 0, 1, 2, 3, 4, 5


def read_len(b, i):
    t = b[i] >> 6
    if t == 0:
        return b[i] & 0x3F, i + 1, False
    if t == 1:
        return ((b[i] & 0x3F) << 8) | b[i + 1], i + 2, False
    if t == 2:
        if b[i] == 0x80:
            return int.from_bytes(b[i + 1:i + 5], "big"), i + 5, False
        if b[i] == 0x81:
            return int.from_bytes(b[i + 1:i + 9], "big"), i + 9, False
        raise ValueError(f"bad length byte {b[i]:#x}")
    return b[i] & 0x3F, i + 1, True


def read_string(b, i):
    n, i, encoded = read_len(b, i)
    if not encoded:
        return bytes(b[i:i + n]), i + n
    if n in (0, 1, 2):
        size = 1 << n
        v = int.from_bytes(b[i:i + size], "little", signed=True)
        return str(v).encode(), i + size
    raise ValueError("LZF string in payload (rdbcompression must be off)")


def enc_len(n):
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    if n < 2 ** 32:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def parse_module_value(body):
    assert body[0] == RDB_TYPE_MODULE_2, f"not a module value (type {body[0]})"
    moduleid, i, _ = read_len(body, 1)
    fields = []
    while True:
        op, i, _ = read_len(body, i)
        if op == OP_EOF:
            break
        if op in (OP_SINT, OP_UINT):
            v, i, _ = read_len(body, i)
            fields.append((op, v))
        elif op == OP_FLOAT:
            fields.append((op, bytes(body[i:i + 4])))
            i += 4
        elif op == OP_DOUBLE:
            fields.append((op, bytes(body[i:i + 8])))
            i += 8
        elif op == OP_STRING:
            s, i = read_string(body, i)
            fields.append((op, s))
        else:
            raise ValueError(f"unknown module opcode {op}")
    assert i == len(body), "trailing bytes after the module EOF marker"
    return moduleid, fields


def build_module_value(moduleid, fields):
    out = bytearray([RDB_TYPE_MODULE_2]) + enc_len(moduleid)
    for op, v in fields:
        out += enc_len(op)
        if op in (OP_SINT, OP_UINT):
            out += enc_len(v)
        elif op in (OP_FLOAT, OP_DOUBLE):
            out += v
        else:
            out += enc_len(len(v)) + v
    out += enc_len(OP_EOF)
    return bytes(out)


@pytest.fixture
def rsrv(make_server):
    return make_server(module_args={"touch-resolution": 0}, config={"rdbcompression": "no"}, name="restore")


def rich_session(r, field_write=True):
    k = new_key()
    cmd(r, "SESSION.CREATE", k, "SUBJECT", "alice", "IDLE", 600000, "ABSOLUTE", 86400000, "GRACE", 5000,
        "META", 2, "ip", "10.0.0.1", "ua", "Mozilla/5.0",
        "DATA", "cart", "apple,banana,cherry", "n", "12345", "bin", bytes(range(40)))
    if field_write:
        cmd(r, "SESSION.SET", k, "DATA", "theme", "dark")
    return k


def try_restore(rb, key, payload, replace=False):
    args = ["RESTORE", key, 0, payload] + (["REPLACE"] if replace else [])
    try:
        cmd(rb, *args)
        return None
    except redis.ResponseError as e:
        return str(e)


def exercise(r, key):
    """Use a key that RESTORE accepted; any reply or error is fine, a crash is not."""
    for args in (["SESSION.GET", key], ["SESSION.GET", key, "TOUCH", "FIELDS", 1, "cart"],
                 ["SESSION.TTL", key], ["SESSION.RENEW", key], ["SESSION.RENEW", key, "IDLE", 1000],
                 ["SESSION.SET", key, "DATA", "x", "y"], ["SESSION.SET", key, "UNSET", 1, "cart"],
                 ["SESSION.CAS", key, 1], ["DEBUG", "DIGEST-VALUE", key], ["MEMORY", "USAGE", key],
                 ["DUMP", key], ["TYPE", key], ["SESSION.REVOKE", key], ["SESSION.GET", key]):
        try:
            cmd(r, *args)
        except redis.ResponseError:
            pass
    cmd(r, "DEL", key)


def test_crc64_matches_redis(rsrv):
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    rb = rsrv.client(decode=False)
    rb.set("plain", "hello world")
    dump_split(rb.dump("plain"))


def test_restore_rebuilt_payload_is_accepted(rsrv):
    """Sanity for the mutation tests: parse + rebuild + new CRC restores fine."""
    r = rsrv.client()
    rb = rsrv.client(decode=False)
    k = rich_session(r)
    before = get(r, k)
    body, ver = dump_split(rb.dump(k))
    moduleid, fields = parse_module_value(body)
    rebuilt = build_module_value(moduleid, fields)
    k2 = new_key()
    assert try_restore(rb, k2, dump_join(rebuilt, ver)) is None
    assert get(r, k2) == before


def test_restore_wrong_checksum_refused(rsrv):
    r = rsrv.client()
    rb = rsrv.client(decode=False)
    k = rich_session(r)
    p = bytearray(rb.dump(k))
    p[-1] ^= 0xFF
    k2 = new_key()
    assert try_restore(rb, k2, bytes(p)) is not None
    assert cmd(r, "EXISTS", k2) == 0


def test_restore_truncated_payloads_refused(rsrv):
    """The body cut short (CRC recomputed).

    Redis's RESTORE does not check that the value ends where the 10-byte
    footer (RDB version + CRC) begins, so a read past a cut within the last
    10 bytes is filled from the footer and may legitimately decode; those
    cuts only have to leave the server up. Every shorter cut must be refused.
    """
    r = rsrv.client()
    rb = rsrv.client(decode=False)
    k = rich_session(r)
    before = get(r, k)
    body, ver = dump_split(rb.dump(k))
    k2 = new_key()
    for n in range(1, len(body)):
        e = try_restore(rb, k2, dump_join(body[:n], ver))
        if n <= len(body) - 11:
            assert e is not None, f"truncated payload ({n} of {len(body)} bytes) was accepted"
            assert cmd(r, "EXISTS", k2) == 0
            # onto an existing key with REPLACE: the old value must stay
            e = try_restore(rb, k, dump_join(body[:n], ver), replace=True)
            assert e is not None
            assert get(r, k) == before
        elif e is None:
            exercise(rb, k2)
        assert rsrv.alive()
    assert r.ping()
    assert get(r, k) == before


def test_restore_truncated_blob_refused(rsrv):
    """A value saved as one string (an encoded blob) with the blob cut short
    and re-framed correctly: the module's own decoder sees a truncated blob
    and must refuse it rather than load a part of the session."""
    r = rsrv.client()
    rb = rsrv.client(decode=False)
    k = rich_session(r)
    body, ver = dump_split(rb.dump(k))
    moduleid, fields = parse_module_value(body)
    strings = [i for i, (op, _) in enumerate(fields) if op == OP_STRING]
    if len(strings) != 1 or len(fields[strings[0]][1]) < 16:
        pytest.skip("the module does not save its value as one encoded blob")
    i = strings[0]
    blob = fields[i][1]
    k2 = new_key()
    for m in range(0, len(blob)):
        fl = fields[:i] + [(OP_STRING, blob[:m])] + fields[i + 1:]
        e = try_restore(rb, k2, dump_join(build_module_value(moduleid, fl), ver))
        assert e is not None, f"blob cut to {m} of {len(blob)} bytes was accepted"
        assert cmd(r, "EXISTS", k2) == 0
    assert r.ping()


def test_restore_structural_corruption_refused(rsrv):
    r = rsrv.client()
    rb = rsrv.client(decode=False)
    k = rich_session(r)
    before = get(r, k)
    body, ver = dump_split(rb.dump(k))
    moduleid, fields = parse_module_value(body)
    variants = []
    # 1. a field dropped
    for i in range(len(fields)):
        variants.append((f"drop field {i}", fields[:i] + fields[i + 1:]))
    # 2. a field of another kind in its place
    for i, (op, v) in enumerate(fields):
        if op == OP_STRING:
            alt = (OP_UINT, 5)
        else:
            alt = (OP_STRING, b"5")
        variants.append((f"retype field {i}", fields[:i] + [alt] + fields[i + 1:]))
    # 3. an extra field before EOF
    variants.append(("extra uint", fields + [(OP_UINT, 1)]))
    variants.append(("extra string", fields + [(OP_STRING, b"junk")]))
    # 4. no fields at all
    variants.append(("empty", []))
    k2 = new_key()
    for name, fl in variants:
        payload = dump_join(build_module_value(moduleid, fl), ver)
        e = try_restore(rb, k2, payload)
        assert e is not None, f"{name}: accepted"
        assert cmd(r, "EXISTS", k2) == 0, name
        assert r.ping()
    # 5. an encoding version the module does not know
    for encver in (1023, (moduleid & 1023) + 1):
        mid = (moduleid & ~1023) | encver
        payload = dump_join(build_module_value(mid, fields), ver)
        e = try_restore(rb, k2, payload)
        assert e is not None, f"encver {encver} accepted"
        assert cmd(r, "EXISTS", k2) == 0
    assert get(r, k) == before


def test_restore_semantic_mutations_do_not_crash(rsrv):
    """Well-framed payloads with bad contents reach the module's decoder.
    Whatever it decides, the server must stay up and an accepted value must
    be usable."""
    r = rsrv.client()
    rb = rsrv.client(decode=False)
    k = rich_session(r)
    before = get(r, k)
    body, ver = dump_split(rb.dump(k))
    moduleid, fields = parse_module_value(body)
    rnd = random.Random(7)
    variants = []
    for i, (op, v) in enumerate(fields):
        if op == OP_STRING:
            for name, nv in (("half", v[: len(v) // 2]), ("minus1", v[:-1]), ("empty", b""),
                             ("garbage", bytes(rnd.randrange(256) for _ in range(len(v)))),
                             ("ff", b"\xff" * max(1, len(v))), ("extended", v + b"\x00\x01\x02"),
                             ("zeros", b"\x00" * len(v))):
                variants.append(fields[:i] + [(op, nv)] + fields[i + 1:])
            # flip single bytes inside the string
            for pos in range(0, len(v), max(1, len(v) // 64)):
                nv = bytearray(v)
                nv[pos] ^= 0xFF
                variants.append(fields[:i] + [(op, bytes(nv))] + fields[i + 1:])
        elif op in (OP_UINT, OP_SINT):
            for nv in (0, 1, 2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1):
                variants.append(fields[:i] + [(op, nv)] + fields[i + 1:])
    k2 = new_key()
    accepted = 0
    for fl in variants:
        e = try_restore(rb, k2, dump_join(build_module_value(moduleid, fl), ver), replace=True)
        if e is None:
            accepted += 1
            exercise(rb, k2)
        assert rsrv.alive(), f"server died on payload fields {fl!r}"
    # raw byte flips anywhere after the module id (CRC fixed)
    start = 1 + len(enc_len(moduleid))
    for pos in range(start, len(body)):
        for mask in (0x01, 0x80):
            b = bytearray(body)
            b[pos] ^= mask
            e = try_restore(rb, k2, dump_join(bytes(b), ver), replace=True)
            if e is None:
                exercise(rb, k2)
        if pos % 32 == 0:
            assert r.ping()
    assert r.ping()
    assert get(r, k) == before


# ---------------------------------------------------------------------------
# the internal SESSION.APPLY / APPLYRENEW


@pytest.fixture
def fed(make_fed):
    """A server with its AOF on, and the fake primary that sends it effects
    (clients may not)."""
    return make_fed(module_args={"touch-resolution": 0}, config={"appendonly": "yes"}, name="aof")


def apply_payload_of(srv, key):
    for c in reversed(aof_commands(srv)):
        if c[0].upper() == b"SESSION.APPLY" and c[1] == key.encode():
            return c[2]
    raise AssertionError(f"no SESSION.APPLY for {key} in the AOF")


def test_apply_replay_of_own_payload_is_idempotent(fed):
    aofsrv, feed = fed
    r = aofsrv.client()
    rb = aofsrv.client(decode=False)
    k = rich_session(r, field_write=False)  # a SET would go out as APPLYSET, after the payload
    before = get(r, k)
    pt = cmd(r, "PEXPIRETIME", k)
    payload = apply_payload_of(aofsrv, k)
    feed.call("SESSION.APPLY", k, payload)
    assert get(r, k) == before
    assert cmd(r, "PEXPIRETIME", k) == pt


def test_applyset_bad_input_changes_nothing(fed):
    """SESSION.APPLYSET (the effect of a field-level SET) refuses what no
    primary sends: bad arity, versions and options, IFVERSION, a key of
    another type, a revoked session. Nothing changes; a missing key stays so."""
    aofsrv, feed = fed
    r = aofsrv.client()
    k = rich_session(r)
    before = get(r, k)
    dv = cmd(r, "DEBUG", "DIGEST-VALUE", k)
    a = ["SESSION.APPLYSET", k]
    for args in (a, a + [5], a + [5, "DATA"], a + [5, "DATA", "x"], a + ["x", "DATA", "x", "y"],
                 a + [0, "DATA", "x", "y"], a + [-1, "DATA", "x", "y"], a + [2**53 + 1, "DATA", "x", "y"],
                 a + [5, "IFVERSION", 2, "DATA", "x", "y"], a + [5, "META", 2, "ip", "1"],
                 a + [5, "UNSET", "x", "cart"], a + [5, "UNSET", -1], a + [5, "BOGUS", 1],
                 a + [5, "META", 1, "ip", "1", "META", 1, "ua", "2"], a + [5, "DATA", "x", "y", "z"]):
        e = err_of(feed.call, *args)
        assert e.startswith("ERR"), (args, e)
        assert get(r, k) == before
        assert cmd(r, "DEBUG", "DIGEST-VALUE", k) == dv
    fresh = new_key()
    feed.call("SESSION.APPLYSET", fresh, 2, "DATA", "x", "y")
    assert cmd(r, "EXISTS", fresh) == 0
    r.set(fresh, "plain")
    assert err_of(feed.call, "SESSION.APPLYSET", fresh, 2, "DATA", "x", "y").startswith("WRONGTYPE")
    assert r.get(fresh) == "plain"
    cmd(r, "SESSION.REVOKE", k, "REASON", "gone")
    dv = cmd(r, "DEBUG", "DIGEST-VALUE", k)
    assert err_of(feed.call, "SESSION.APPLYSET", k, 9, "DATA", "x", "y") == "REVOKED gone"
    assert cmd(r, "DEBUG", "DIGEST-VALUE", k) == dv


def test_applyset_applies_what_the_primary_merged(fed):
    """From a primary, APPLYSET merges like SET (limits aside: they were the
    primary's to check) and takes the version it is given."""
    aofsrv, feed = fed
    r = aofsrv.client()
    k = rich_session(r)
    cmd(r, "CONFIG", "SET", "session.max-fields", 4)
    try:
        feed.call("SESSION.APPLYSET", k, 77, "META", 1, "ip", "10.9.9.9", "UNSET", 2, "n", "nope",
                  "DATA", "a", "1", "b", "2", "a", "3")
    finally:
        cmd(r, "CONFIG", "SET", "session.max-fields", 256)
    got = get(r, k)
    assert got["version"] == 77
    assert got["meta"] == {"ip": "10.9.9.9", "ua": "Mozilla/5.0"}
    assert set(got["data"]) == {"cart", "bin", "theme", "a", "b"}
    assert got["data"]["a"] == "3"


def test_apply_garbage_refused(fed):
    aofsrv, feed = fed
    r = aofsrv.client()
    rb = aofsrv.client(decode=False)
    k = rich_session(r)
    before = get(r, k)
    dv = cmd(r, "DEBUG", "DIGEST-VALUE", k)
    payload = apply_payload_of(aofsrv, k)
    rnd = random.Random(3)
    garbage = [b"", b"x", b"garbage", b"\x00" * 32, b"\xff" * 64, bytes(rnd.randrange(256) for _ in range(300)),
               payload[:1], payload[:-1], payload[: len(payload) // 2], payload[1:]]
    fresh = new_key()
    for g in garbage:
        e = err_of(feed.call, "SESSION.APPLY", fresh, g)
        assert e.startswith("ERR"), (g[:20], e)
        assert cmd(r, "EXISTS", fresh) == 0
        e = err_of(feed.call, "SESSION.APPLY", k, g)
        assert e.startswith("ERR"), (g[:20], e)
        assert get(r, k) == before
        assert cmd(r, "DEBUG", "DIGEST-VALUE", k) == dv
    # single byte flips: refused or accepted, never a crash
    k2 = new_key()
    for pos in range(len(payload)):
        b = bytearray(payload)
        b[pos] ^= 0x5A
        try:
            feed.call("SESSION.APPLY", k2, bytes(b))
            exercise(rb, k2)
        except redis.ResponseError:
            pass
        assert aofsrv.alive()
    assert r.ping()


def test_apply_arity_and_applyrenew_garbage(fed):
    aofsrv, feed = fed
    r = aofsrv.client()
    k = rich_session(r)
    before = get(r, k)
    for args in (["SESSION.APPLY"], ["SESSION.APPLY", k], ["SESSION.APPLYRENEW", k],
                 ["SESSION.APPLYRENEW", k, 1, 1],
                 ["SESSION.APPLYRENEW", k, "abc", 1000, 1], ["SESSION.APPLYRENEW", k, 1, "x", 1],
                 ["SESSION.APPLYRENEW", k, 1, 1000, "v"], ["SESSION.APPLYRENEW", k, -1, 1000, 1],
                 ["SESSION.APPLYRENEW", k, 1, -1000, 1], ["SESSION.APPLYRENEW", k, 1, 0, 1]):
        e = err_of(feed.call, *args)
        assert e.startswith("ERR"), (args, e)
        assert get(r, k) == before
    # on a missing key nothing is created
    fresh = new_key()
    try:
        feed.call("SESSION.APPLYRENEW", fresh, 1, 1000, 1)
    except redis.ResponseError:
        pass
    assert cmd(r, "EXISTS", fresh) == 0
    # on a key of another type: an error, and the key is untouched
    r.set(fresh, "plain")
    e = err_of(feed.call, "SESSION.APPLYRENEW", fresh, 1, 1000, 1)
    assert e.startswith(("WRONGTYPE", "ERR")), e
    assert r.get(fresh) == "plain"
