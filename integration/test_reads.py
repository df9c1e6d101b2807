"""Reads that replicas and client-side caches can serve (issue 15).

- flags: SESSION.GET is `readonly fast may-replicate`; TTL, LIST, COUNT,
  TENANT GET|LIST, STATS and KEYRING LIST are `readonly`; key specs say
  GET and TTL only read their key;
- a read-only replica answers every read; `GET ... TOUCH` there is refused
  whole with READONLY and changes nothing; a touch on the primary reaches
  the replica and the AOF (DEBUG DIGEST equal after an AOF reload);
- ACL: a `%R~` user reads but cannot touch (NOPERM), a `~` user can;
- `CLIENT PAUSE ... WRITE` holds a touch (and a plain GET: the command is
  may-replicate) until unpaused; TTL still runs;
- EVAL_RO / FCALL_RO refuse GET (may-replicate) and run the other reads;
  EVAL runs GET and GET TOUCH;
- WATCH: a pure renewal does not abort a transaction, a reader-visible
  change does;
- invalidation with real tracking clients (RESP3 default, RESP2 REDIRECT,
  BCAST): data, meta, version, grace revival, revocation, deletion and
  expiry invalidate; a renewal that only moves the deadlines does not;
  the same on a replica tracking keys the primary changes;
- what Redis's write gates leave to a touch: deny-oom and
  min-replicas-to-write do not hold it back;
- features found by API presence: the cached command clock (7.2+), ACL
  categories (7.2+), the `session` category (7.4+, Valkey 8+).
"""

import threading
import time

import pytest
import redis

from sessionlib import err_of, new_key, norm_session, replicate, wait_for, wait_sync, to_str

TR0 = {"touch-resolution": 0}


def code(e):
    return e.split()[0]


def ex(r, *a):
    return r.execute_command(*a)


def get(r, k, *opts):
    return norm_session(ex(r, "SESSION.GET", k, *opts))[1]


def plain(x):
    """A RawClient reply as plain Python values (bytes decoded)."""
    v = x.value
    if x.kind in "*~>":
        return [plain(i) for i in v]
    if x.kind == "%":
        return [[plain(a), plain(b)] for a, b in v]
    return v.decode() if isinstance(v, bytes) else v


def command_info(server, name):
    """COMMAND INFO name, unparsed: [name, arity, flags, first, last, step,
    categories, tips, key specs, subcommands]."""
    c = server.raw()
    try:
        return plain(c.call("COMMAND", "INFO", name))[0]
    finally:
        c.close()


def flags_of(server, name):
    return set(command_info(server, name)[2])


def server_features(r):
    """What this server's module API offers, by its version (the tests may
    use versions; the module finds the APIs by their presence)."""
    i = r.info("server")
    if "valkey_version" in i or i.get("server_name") == "valkey":
        return {"cached_time": True, "categories": True, "session_category": True}
    major, minor = (int(x) for x in str(i["redis_version"]).split(".")[:2])
    v = (major, minor)
    return {"cached_time": v >= (7, 2), "categories": v >= (7, 2), "session_category": v >= (7, 4)}


# -- flags -------------------------------------------------------------------

def test_command_flags_and_key_specs(server):
    r = server
    assert {"readonly", "fast"} <= flags_of(r, "session.get")
    assert "write" not in flags_of(r, "session.get")
    for name in ("session.ttl", "session.list", "session.count", "session.stats", "session.tenant|get",
                 "session.tenant|list", "session.keyring|list"):
        assert "readonly" in flags_of(r, name), name
        assert "write" not in flags_of(r, name), name
    for name in ("session.create", "session.renew", "session.set", "session.cas", "session.revoke",
                 "session.revokeall", "session.tenant|set", "session.tenant|del"):
        assert "write" in flags_of(r, name), name
    for name in ("session.get", "session.ttl"):
        specs = command_info(r, name)[8]
        flags = set(dict((a, b) for a, b in zip(specs[0][::2], specs[0][1::2]))["flags"])
        assert flags == {"RO", "access"}, (name, specs)
    # Redis derives first/last/step from the key spec: 1, 1, 1
    assert command_info(r, "session.get")[3:6] == [1, 1, 1]


# -- replicas ----------------------------------------------------------------

def test_replica_answers_reads_and_refuses_touch(make_pair):
    primary, replica = make_pair(module_args=TR0, config={"appendonly": "yes"})
    r = primary.client()
    k = new_key()
    ex(r, "SESSION.CREATE", k, "SUBJECT", "u1", "DATA", "a", "1")
    ex(r, "SESSION.TENANT", "SET", "acme", "IDLE", 900000)
    wait_sync(primary, replica)
    rr = replica.client()
    assert get(rr, k)["data"] == {"a": "1"}
    assert get(rr, k, "NODATA")["version"] == 1
    assert ex(rr, "SESSION.GET", k, "FIELDS", 1, "a", "VALUES") == ["1"]
    assert replica.client(decode=False).execute_command("SESSION.GET", k, "PACKED")[:1] == b"\x8b"
    assert ex(rr, "SESSION.TTL", k) is not None
    assert ex(rr, "SESSION.LIST", "acme", "u1") == [k]
    assert ex(rr, "SESSION.COUNT", "acme") == 1
    assert ex(rr, "SESSION.TENANT", "GET", "acme") is not None
    assert ex(rr, "SESSION.TENANT", "LIST") == ["acme"]
    assert ex(rr, "SESSION.STATS") is not None
    assert ex(rr, "SESSION.KEYRING", "LIST") in ([], {})
    before = replica.digest()
    time.sleep(0.01)
    for opts in (["TOUCH"], ["NODATA", "TOUCH"], ["TOUCH", "PACKED"], ["TOUCH", "FIELDS", 1, "a", "VALUES"]):
        assert code(err_of(ex, rr, "SESSION.GET", k, *opts)) == "READONLY", opts
    # refused whole inside a transaction too, the reads around it answered
    p = rr.pipeline(transaction=True)
    p.execute_command("SESSION.GET", k, "NODATA")
    p.execute_command("SESSION.GET", k, "TOUCH")
    res = p.execute(raise_on_error=False)
    assert isinstance(res[1], redis.ResponseError) and code(str(res[1])) == "READONLY"
    # a script on the replica may read, not touch
    assert norm_session(rr.eval("return redis.call('SESSION.GET', KEYS[1], 'NODATA')", 1, k))[1]["version"] == 1
    assert code(err_of(rr.eval, "return redis.call('SESSION.GET', KEYS[1], 'TOUCH')", 1, k)) == "READONLY"
    assert replica.digest() == before == primary.digest()
    # a touch on the primary reaches the replica and the AOF
    la = get(r, k)["last_access"]
    time.sleep(0.01)
    assert get(r, k, "TOUCH")["last_access"] > la
    wait_sync(primary, replica)
    assert get(rr, k)["last_access"] == get(r, k)["last_access"]
    d = primary.digest()
    assert replica.digest() == d
    r.execute_command("DEBUG", "LOADAOF")
    assert primary.digest() == d


# -- ACL ---------------------------------------------------------------------

def test_acl_read_only_key_pattern_reads_but_cannot_touch(server0):
    admin = server0.client()
    k = new_key("acme")
    ex(admin, "SESSION.CREATE", k, "DATA", "a", "1")
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "%R~sess:acme:*", "+@all")
    admin.execute_command("ACL", "SETUSER", "writer", "on", ">pw", "~sess:acme:*", "+@all")
    reader = server0.client(username="reader", password="pw")
    writer = server0.client(username="writer", password="pw")
    assert get(reader, k)["data"] == {"a": "1"}
    assert ex(reader, "SESSION.TTL", k) is not None
    la = get(admin, k)["last_access"]
    time.sleep(0.01)
    for opts in (["TOUCH"], ["TOUCH", "PACKED"], ["NODATA", "TOUCH"]):
        assert code(err_of(ex, reader, "SESSION.GET", k, *opts)) == "NOPERM", opts
    assert code(err_of(ex, reader, "SESSION.RENEW", k)) == "NOPERM"
    assert get(admin, k)["last_access"] == la
    assert get(writer, k, "TOUCH")["last_access"] > la


# -- pause, scripts ----------------------------------------------------------

def test_client_pause_write_holds_a_touch(server0):
    admin = server0.client()
    k = new_key()
    ex(admin, "SESSION.CREATE", k, "DATA", "a", "1")
    la = get(admin, k)["last_access"]
    out = {}

    def touch():
        c = server0.client(socket_timeout=60)
        out["reply"] = get(c, k, "TOUCH")

    def plain_get():  # the flag is the command's: a GET without TOUCH waits too
        out["plain"] = get(server0.client(socket_timeout=60), k)

    def in_multi():
        p = server0.client(socket_timeout=60).pipeline(transaction=True)
        p.execute_command("SESSION.GET", k, "NODATA")
        out["multi"] = p.execute()

    admin.execute_command("CLIENT", "PAUSE", 30000, "WRITE")
    try:
        threads = [threading.Thread(target=f, daemon=True) for f in (touch, plain_get, in_multi)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert all(t.is_alive() for t in threads), "a SESSION.GET ran while writes were paused"
        assert not out
        # reads that never replicate still run
        assert ex(admin, "SESSION.TTL", k) is not None
        assert ex(admin, "SESSION.COUNT", "acme") >= 1
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert out["reply"]["last_access"] > la
    assert out["plain"]["version"] == 1 and len(out["multi"]) == 1


def test_eval_ro_and_functions(server0):
    r = server0.client()
    k = new_key("acme")
    ex(r, "SESSION.CREATE", k, "SUBJECT", "u", "DATA", "a", "1")
    for script in ("return redis.call('SESSION.GET', KEYS[1])",
                   "return redis.call('SESSION.GET', KEYS[1], 'TOUCH')"):
        e = err_of(r.eval_ro, script, 1, k)
        assert code(e) == "ERR", e
    assert r.eval_ro("return redis.call('SESSION.TTL', KEYS[1])", 1, k) is not None
    assert r.eval_ro("return redis.call('SESSION.COUNT', 'acme')", 0) == 1
    assert r.eval_ro("return redis.call('SESSION.LIST', 'acme', 'u')", 0) == [k]
    assert r.eval_ro("return redis.call('SESSION.STATS')", 0) is not None
    assert r.eval_ro("return redis.call('SESSION.TENANT', 'LIST')", 0) == []
    # EVAL may call GET and renew
    la = get(r, k)["last_access"]
    time.sleep(0.01)
    reply = r.eval("return redis.call('SESSION.GET', KEYS[1], 'TOUCH')", 1, k)
    assert norm_session(reply)[1]["last_access"] > la
    lib = """#!lua name=sessreads
redis.register_function{function_name='sttl', callback=function(keys, args)
  return redis.call('SESSION.TTL', keys[1]) end, flags={'no-writes'}}
redis.register_function{function_name='sget', callback=function(keys, args)
  return redis.call('SESSION.GET', keys[1]) end, flags={'no-writes'}}
redis.register_function{function_name='stouch', callback=function(keys, args)
  return redis.call('SESSION.GET', keys[1], 'TOUCH') end}
"""
    r.execute_command("FUNCTION", "LOAD", lib)
    assert r.execute_command("FCALL_RO", "sttl", 1, k) is not None
    assert code(err_of(r.execute_command, "FCALL_RO", "sget", 1, k)) == "ERR"
    assert code(err_of(r.execute_command, "FCALL", "sget", 1, k)) == "ERR"  # no-writes function
    assert r.execute_command("FCALL", "stouch", 1, k) is not None


# -- WATCH -------------------------------------------------------------------

def _watched(server, k, change):
    """Runs `change` (on another connection) between WATCH k and EXEC; True
    if the transaction went through."""
    r = server.client()
    with r.pipeline(transaction=True) as p:
        p.watch(k)
        change(server.client())
        p.multi()
        p.execute_command("SESSION.TTL", k)
        try:
            p.execute()
            return True
        except redis.WatchError:
            return False


def test_watch_survives_a_pure_renewal(server0):
    admin = server0.client()
    k = new_key()
    ex(admin, "SESSION.CREATE", k, "IDLE", 600000, "GRACE", 600000, "DATA", "a", "1")
    time.sleep(0.005)
    assert _watched(server0, k, lambda c: ex(c, "SESSION.GET", k, "TOUCH"))
    assert _watched(server0, k, lambda c: ex(c, "SESSION.RENEW", k))
    assert _watched(server0, k, lambda c: ex(c, "SESSION.GET", k))
    assert not _watched(server0, k, lambda c: ex(c, "SESSION.RENEW", k, "IDLE", 500000))
    assert not _watched(server0, k, lambda c: ex(c, "SESSION.SET", k, "DATA", "a", "2"))
    assert not _watched(server0, k, lambda c: ex(c, "SESSION.SET", k, "META", 1, "ip", "x"))
    # a session in grace brought back to active
    k2 = new_key()
    ex(admin, "SESSION.CREATE", k2, "IDLE", 100, "GRACE", 600000)
    wait_for(lambda: get(admin, k2)["state"] == "grace", 10, what="grace")
    assert not _watched(server0, k2, lambda c: ex(c, "SESSION.GET", k2, "TOUCH"))
    assert not _watched(server0, k, lambda c: ex(c, "SESSION.REVOKE", k))


# -- client-side caching -----------------------------------------------------

class Tracker:
    """A tracking connection (raw RESP) in one of three modes, and what it
    was told: `invalidated()` pings and returns the keys invalidated before
    the PONG (the server queued them before answering the PING)."""

    def __init__(self, server, mode):
        self.mode = mode
        if mode == "resp2-redirect":
            self.sub = server.raw(protocol=2)
            cid = self.sub.call("CLIENT", "ID").value
            r = self.sub.call("SUBSCRIBE", "__redis__:invalidate")
            assert r.kind == "*"
            self.conn = server.raw(protocol=2)
            assert self.conn.call("CLIENT", "TRACKING", "ON", "REDIRECT", cid).value == "OK"
            self.inbox = self.sub
        else:
            self.conn = server.raw(protocol=3)
            opts = ["BCAST", "PREFIX", "sess:"] if mode == "bcast" else []
            assert self.conn.call("CLIENT", "TRACKING", "ON", *opts).value == "OK"
            self.inbox = self.conn

        self.pending = []

    def _take(self, m):
        """Records an invalidation message; False for anything else."""
        items = m.value if m.kind in "*>" else None
        if not items or items[0].value not in (b"invalidate", b"message"):
            return False
        payload = items[-1]
        if payload.kind in "*>":
            self.pending += [x.value.decode() for x in payload.value]
        else:
            self.pending.append(None)  # a flush
        return True

    def read(self, k, *opts):
        r = self.conn.call("SESSION.GET", k, *opts)
        while r.kind == ">" and self._take(r):  # a push ahead of the reply
            r = self.conn._read()
        assert r.kind != "-", r
        return r

    def invalidated(self):
        c = self.inbox
        c.sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        while True:
            m = c._read()
            items = m.value if m.kind in "*>" else None
            if m.kind == "+" or (items and items[0].value in (b"pong", "pong")):
                keys, self.pending = self.pending, []
                return keys
            assert self._take(m), m

    def close(self):
        self.conn.close()
        if self.inbox is not self.conn:
            self.inbox.close()


@pytest.mark.parametrize("mode", ["resp3", "resp2-redirect", "bcast"])
def test_tracking_invalidates_reader_visible_changes_only(server0, mode):
    w = server0.client()
    wb = server0.client(decode=False)
    t = Tracker(server0, mode)
    try:
        k = new_key()
        ex(w, "SESSION.CREATE", k, "IDLE", 600000, "GRACE", 600000, "DATA", "a", "1")
        t.read(k)
        t.invalidated()  # drop what the create said (BCAST)

        def check(change, expect, read_opts=()):
            t.read(k, *read_opts)
            time.sleep(0.003)
            change()
            got = t.invalidated()
            assert (k in got) == expect, (mode, change, got)

        check(lambda: ex(w, "SESSION.GET", k, "TOUCH"), False)
        check(lambda: ex(wb, "SESSION.GET", k, "TOUCH", "PACKED"), False)
        check(lambda: ex(w, "SESSION.RENEW", k), False)
        check(lambda: ex(w, "SESSION.GET", k), False)
        check(lambda: ex(w, "SESSION.TTL", k), False)
        check(lambda: ex(w, "SESSION.SET", k, "DATA", "a", "2"), True, ["PACKED"])
        check(lambda: ex(w, "SESSION.SET", k, "META", 1, "ip", "x"), True, ["NODATA"])
        check(lambda: ex(w, "SESSION.CAS", k, 3, "DATA", "b", "1"), True)
        check(lambda: ex(w, "SESSION.RENEW", k, "IDLE", 500000), True)
        check(lambda: ex(w, "SESSION.REVOKE", k), True, ["FIELDS", 1, "a"])
        # grace -> active, deletion and expiry
        k = new_key()
        ex(w, "SESSION.CREATE", k, "IDLE", 150, "GRACE", 600000, "DATA", "a", "1")
        wait_for(lambda: get(w, k)["state"] == "grace", 10, what="grace")
        check(lambda: ex(w, "SESSION.GET", k, "TOUCH"), True)
        check(lambda: ex(w, "DEL", k), True)
        k = new_key()
        ex(w, "SESSION.CREATE", k, "IDLE", 150, "GRACE", 0, "DATA", "a", "1")
        t.read(k)
        t.invalidated()
        seen = []
        wait_for(lambda: seen.extend(t.invalidated()) or k in seen, 20, interval=0.05, what="expiry invalidation")
    finally:
        t.close()


def test_replica_tracking_follows_the_primary(make_pair):
    primary, replica = make_pair(module_args=TR0)
    w = primary.client()
    k = new_key()
    ex(w, "SESSION.CREATE", k, "IDLE", 600000, "GRACE", 600000, "DATA", "a", "1")
    wait_sync(primary, replica)
    t = Tracker(replica, "resp3")
    try:
        for change, expect in ((lambda: ex(w, "SESSION.GET", k, "TOUCH"), False),
                               (lambda: ex(w, "SESSION.SET", k, "DATA", "a", "2"), True),
                               (lambda: ex(w, "SESSION.RENEW", k), False),
                               (lambda: ex(w, "SESSION.RENEW", k, "IDLE", 400000), True)):
            t.read(k)
            time.sleep(0.003)
            change()
            wait_sync(primary, replica)
            assert (k in t.invalidated()) == expect, change
        assert primary.digest() == replica.digest()
    finally:
        t.close()


# -- what Redis's write gates do not hold back ------------------------------

def test_oom_and_min_replicas_do_not_hold_a_touch(server0):
    r = server0.client()
    k = new_key()
    ex(r, "SESSION.CREATE", k, "DATA", "a", "1")
    try:
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", 1)
        assert code(err_of(ex, r, "SESSION.SET", k, "DATA", "a", "2")) == "OOM"
        la = get(r, k)["last_access"]
        time.sleep(0.005)
        assert get(r, k, "TOUCH")["last_access"] > la
    finally:
        r.config_set("maxmemory", 0)
    try:
        r.config_set("min-replicas-to-write", 1)
        assert code(err_of(ex, r, "SESSION.SET", k, "DATA", "a", "2")) == "NOREPLICAS"
        la = get(r, k)["last_access"]
        time.sleep(0.005)
        assert get(r, k, "TOUCH")["last_access"] > la
    finally:
        r.config_set("min-replicas-to-write", 0)


# -- feature detection -------------------------------------------------------

def test_features_by_api(server0):
    r = server0.client()
    f = server_features(r)
    log = server0.log_tail(400)
    for name, on in f.items():
        assert f"{name}: {'true' if on else 'false'}" in log, (name, on)
    cats = set(command_info(server0, "session.get")[6])
    if f["categories"]:
        assert {"@read", "@fast"} <= cats
        assert "@write" in set(command_info(server0, "session.set")[6])
    if f["session_category"]:
        assert "@session" in cats
        assert "session" in {to_str(n) for n in r.execute_command("ACL", "CAT")}
        assert "@session" not in set(command_info(server0, "session.apply")[6])
        r.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~sess:*", "+@session")
        app = server0.client(username="app", password="pw")
        k = new_key()
        assert ex(app, "SESSION.CREATE", k) == 1
        assert get(app, k, "TOUCH")["version"] == 1
        assert ex(app, "SESSION.COUNT", "acme") >= 1
        assert code(err_of(app.set, "sess:x", "y")) == "NOPERM"
        assert code(err_of(ex, app, "SESSION.APPLYRENEW", k, 1, 1, 1)) == "NOPERM"
    else:
        assert "@session" not in cats
    # the cached clock: one instant for a whole transaction on 7.2+, as
    # Redis's own expiry sees it; the clock itself on 7.0
    k = new_key()
    ex(r, "SESSION.CREATE", k)
    p = r.pipeline(transaction=True)
    p.execute_command("SESSION.GET", k, "TOUCH")
    p.execute_command("DEBUG", "SLEEP", "0.02")
    p.execute_command("SESSION.GET", k, "TOUCH")
    a, _, b = p.execute()
    a, b = norm_session(a)[1], norm_session(b)[1]
    if f["cached_time"]:
        assert a["last_access"] == b["last_access"]
    else:
        assert b["last_access"] >= a["last_access"] + 15
