"""SPEC §4 SESSION.LIST / REVOKEALL / COUNT and §5: the per-subject index
stays exact through every path a key can take (create, REVOKE, DEL/UNLINK,
overwrite, active and lazy expiry, eviction, FLUSHDB/FLUSHALL, SWAPDB,
RENAME, MOVE, COPY, RESTORE, MIGRATE, RDB load, a replica's full resync,
separate databases).
"""

import pytest

from sessionlib import E_SYNTAX, err_of, new_key, replicate, to_str, wait_for, wait_sync
from tenants_helpers import (
    cmd,
    count,
    create,
    get,
    physically_present,
    session_list,
    stats,
    wait_key_gone,
)

E_TENANT = "ERR invalid tenant"


class Book:
    """What the test expects to be live: (db, key) -> (tenant, subject, data_bytes)."""

    def __init__(self, server):
        self.server = server
        self.keys = {}
        self.clients = {}

    def r(self, db=0):
        if db not in self.clients:
            self.clients[db] = self.server.client(db=db)
        return self.clients[db]

    def create(self, tenant="acme", subject="", db=0, data=(), key=None, **opts):
        key = key or new_key(tenant)
        args = []
        if subject:
            args += ["SUBJECT", subject]
        for k, v in opts.items():
            args += [k.upper(), v]
        if data:
            args += ["DATA", *data]
        create(self.r(db), key, *args)
        nbytes = sum(len(str(x).encode()) for x in data)
        self.keys[(db, key)] = (tenant, subject, nbytes)
        return key

    def forget(self, *keys, db=0):
        for k in keys:
            self.keys.pop((db, k), None)

    def put(self, key, subject, nbytes, db=0):
        """A session value now at `key` (its tenant taken from the name)."""
        if key.startswith("sess:"):
            self.keys[(db, key)] = (key.split(":")[1], subject, nbytes)

    def move(self, key, new_key=None, db=0, new_db=None):
        """The session at (db, key) went to (new_db, new_key)."""
        _t, s, n = self.keys.pop((db, key))
        self.forget(new_key or key, db=db if new_db is None else new_db)
        self.put(new_key or key, s, n, db=db if new_db is None else new_db)

    def copy(self, key, new_key, db=0, new_db=None):
        _t, s, n = self.keys[(db, key)]
        self.put(new_key, s, n, db=db if new_db is None else new_db)

    def set_bytes(self, key, nbytes, db=0):
        t, s, _ = self.keys[(db, key)]
        self.keys[(db, key)] = (t, s, nbytes)

    def check(self, dbs=(0, 1), tenants=None, subjects=None):
        """LIST / COUNT / STATS of the server equal the book."""
        vals = self.keys.values()
        tenants = tenants or sorted({t for t, _, _ in vals} | {"acme"})
        subjects = subjects or sorted({s for _, s, _ in vals if s} | {"nobody"})
        for db in dbs:
            r = self.r(db)
            for t in tenants:
                mine = {k: v for (d, k), v in self.keys.items() if d == db and v[0] == t}
                assert count(r, t) == len(mine), ("COUNT", db, t)
                for s in subjects:
                    want = sorted(k for k, v in mine.items() if v[1] == s)
                    assert session_list(r, t, s) == want, ("LIST", db, t, s)
                    assert count(r, t, s) == len(want), ("COUNT", db, t, s)
        st = stats(self.r(0))
        assert st["sessions"] == len(self.keys), "STATS sessions"
        assert st["data_bytes"] == sum(v[2] for v in vals), "STATS data_bytes"
        for t in tenants:
            st = stats(self.r(0), t)
            mine = [v for v in vals if v[0] == t]
            assert st["sessions"] == len(mine), ("STATS sessions", t)
            assert st["data_bytes"] == sum(v[2] for v in mine), ("STATS data_bytes", t)


@pytest.fixture
def book(server):
    return Book(server)


# ---------------------------------------------------------------------------
# the commands


def test_list_and_count(server, proto):
    r = server.client(protocol=proto)
    alice = sorted(create(r, new_key("acme"), "SUBJECT", "alice") for _ in range(3))
    bob = create(r, new_key("acme"), "SUBJECT", "bob")
    anon = [create(r, new_key("acme")) for _ in range(2)]
    other = create(r, new_key("globex"), "SUBJECT", "alice")
    weird = create(r, new_key("acme"), "SUBJECT", "x:y z\x00")
    assert [to_str(k) for k in cmd(r, "SESSION.LIST", "acme", "alice")] == alice
    assert session_list(r, "acme", "bob") == [bob]
    assert session_list(r, "acme", "x:y z\x00") == [weird]
    assert session_list(r, "acme", "nobody") == []
    assert session_list(r, "acme", "") == []  # sessions without subject are not listed
    assert session_list(r, "globex", "alice") == [other]
    assert session_list(r, "initech", "alice") == []
    assert count(r, "acme") == 7
    assert count(r, "acme", "alice") == 3
    assert count(r, "acme", "nobody") == 0
    assert count(r, "globex") == 1
    assert count(r, "initech") == 0
    assert len(anon) == 2


def test_sessions_in_grace_are_live(server):
    r = server.client()
    k = create(r, new_key("acme"), "SUBJECT", "g", "IDLE", 50, "GRACE", 600000)
    wait_for(lambda: get(r, k, "NODATA")["state"] == "grace", 10, what="grace")
    assert session_list(r, "acme", "g") == [k]
    assert count(r, "acme", "g") == 1
    assert count(r, "acme") == 1


def test_revoke_removes_from_index(book):
    r = book.r()
    a = book.create(subject="alice", data=("f", "12345"))
    b = book.create(subject="alice")
    assert cmd(r, "SESSION.REVOKE", a) == 1
    book.forget(a)
    book.check()
    assert cmd(r, "SESSION.REVOKE", a) == 0
    book.check()
    assert session_list(r, "acme", "alice") == [b]


def test_revokeall(book):
    r = book.r()
    alice = [book.create(subject="alice", data=("k", "v" * i)) for i in range(4)]
    bob = book.create(subject="bob")
    anon = book.create()
    other_db = book.create(subject="alice", db=1)
    other_tenant = book.create(tenant="globex", subject="alice")
    keep = alice[2]
    assert cmd(r, "SESSION.REVOKEALL", "acme", "alice", "EXCEPT", keep, "REASON", "password changed") == 3
    for k in alice:
        if k != keep:
            assert err_of(cmd, r, "SESSION.GET", k) == "REVOKED password changed"
            book.forget(k)
    book.check()
    assert session_list(r, "acme", "alice") == [keep]
    assert get(r, bob) is not None and get(r, anon) is not None
    assert get(book.r(1), other_db) is not None and get(r, other_tenant) is not None
    assert cmd(r, "SESSION.REVOKEALL", "acme", "alice", "EXCEPT", keep) == 0
    # EXCEPT naming a key that is not one of the subject's: all go
    assert cmd(r, "SESSION.REVOKEALL", "acme", "alice", "EXCEPT", bob) == 1
    assert err_of(cmd, r, "SESSION.GET", keep).startswith("REVOKED")
    book.forget(keep)
    book.check()
    assert cmd(r, "SESSION.REVOKEALL", "acme", "alice") == 0
    assert cmd(r, "SESSION.REVOKEALL", "acme", "nobody") == 0
    # REASON before EXCEPT, and the default reason
    assert cmd(book.r(1), "SESSION.REVOKEALL", "acme", "alice") == 1
    assert err_of(cmd, book.r(1), "SESSION.GET", other_db).startswith("REVOKED")
    book.forget(other_db, db=1)
    book.check()


@pytest.mark.parametrize("opts", [["EXCEPT"], ["BOGUS", "x"], ["REASON", "a\r\nb"], ["REASON", "a", "REASON", "b"]])
def test_revokeall_syntax(server, opts):
    r = server.client()
    k = create(r, new_key("acme"), "SUBJECT", "u")
    assert err_of(cmd, r, "SESSION.REVOKEALL", "acme", "u", *opts) == E_SYNTAX
    assert get(r, k) is not None


@pytest.mark.parametrize("args", [
    ["SESSION.LIST", "a:b", "u"], ["SESSION.COUNT", ""], ["SESSION.COUNT", "a b", "u"],
    ["SESSION.REVOKEALL", "x" * 65, "u"], ["SESSION.STATS", "a*"],
])
def test_invalid_tenant(server, args):
    assert err_of(cmd, server.client(), *args) == E_TENANT


@pytest.mark.parametrize("args", [["SESSION.LIST", "acme"], ["SESSION.LIST", "acme", "u", "v"], ["SESSION.COUNT"],
                                  ["SESSION.REVOKEALL", "acme"]])
def test_arity(server, args):
    e = err_of(cmd, server.client(), *args)
    assert e.startswith("ERR wrong number of arguments"), e


def test_count_too_many_args(server):
    e = err_of(cmd, server.client(), "SESSION.COUNT", "acme", "u", "v")
    assert e.startswith("ERR"), e


def test_del_unlink_and_overwrite(book):
    r = book.r()
    ks = [book.create(subject="alice", data=("a", "b")) for _ in range(4)]
    assert cmd(r, "DEL", ks[0]) == 1
    assert cmd(r, "UNLINK", ks[1]) == 1
    book.forget(ks[0], ks[1])
    book.check()
    # overwritten by another type
    assert r.set(ks[2], "plain") is True
    book.forget(ks[2])
    book.check()
    # deleting a revoked tombstone changes nothing in the index
    cmd(r, "SESSION.REVOKE", ks[3])
    book.forget(ks[3])
    cmd(r, "DEL", ks[3])
    book.check()
    # re-creating a deleted key counts once
    book.create(key=ks[0], subject="alice")
    book.check()


def test_data_bytes_exact(book):
    r = book.r()
    k = book.create(subject="u", data=("ab", "cde", "f", ""))  # 5 + 1
    book.check()
    assert cmd(r, "SESSION.SET", k, "DATA", "ab", "x", "gg", "hhh") == 2  # ab:3 f:1 gg:5
    book.set_bytes(k, 9)
    book.check()
    assert cmd(r, "SESSION.SET", k, "UNSET", 2, "f", "nope", "META", 1, "m", "metadata-not-counted") == 3
    book.set_bytes(k, 8)
    book.check()
    assert cmd(r, "SESSION.CAS", k, 3, "DATA", "z", "0123456789") == 4
    book.set_bytes(k, 11)
    book.check()
    assert cmd(r, "SESSION.CAS", k, 4) == 5
    book.set_bytes(k, 0)
    book.check()
    k2 = book.create(tenant="globex", subject="u", data=("\u00e9", "\u00e9\u00e9"))  # utf-8: 2 + 4
    assert book.keys[(0, k2)][2] == 6
    book.check()
    cmd(r, "SESSION.REVOKE", k2)
    book.forget(k2)
    book.check()


# ---------------------------------------------------------------------------
# expiry and eviction


def test_active_expiry(book):
    r = book.r()
    srv = book.server
    before = stats(r)
    short = [book.create(subject="alice", data=("f", "v"), idle=100, grace=0) for _ in range(3)]
    long = book.create(subject="alice")
    tomb = book.create(subject="alice", idle=100, grace=50)
    cmd(r, "SESSION.REVOKE", tomb)
    book.forget(tomb)
    for k in short + [tomb]:
        wait_key_gone(r, k)
        book.forget(k)
    book.check()
    after = stats(r)
    # a revoked tombstone going away is not an expired session
    assert after["expired"] - before["expired"] == 3
    assert stats(r, "acme")["expired"] == 3
    assert session_list(r, "acme", "alice") == [long]
    assert srv.info("stats")["expired_keys"] >= 4


def test_lazy_expiry(book):
    r = book.r()
    srv = book.server
    cmd(r, "DEBUG", "SET-ACTIVE-EXPIRE", 0)
    before = stats(r)
    a = book.create(subject="alice", data=("f", "v"), idle=100, grace=100)
    b = book.create(subject="alice", data=("f", "v"), idle=100, grace=100)
    d = book.create(subject="bob", data=("f", "v"), idle=100, grace=100)
    c = book.create(subject="alice")
    end = max(get(r, k, "NODATA")["grace_until"] for k in (a, b, d))
    wait_for(lambda: srv.time_ms() > end + 1, 10, what="past the end of the short sessions")
    for k in (a, b, d):
        assert physically_present(r, k), k
    # lazy expiry by a plain Redis command
    assert cmd(r, "EXISTS", a) == 0
    assert not physically_present(r, a)
    assert stats(r)["expired"] - before["expired"] == 1
    # lazy expiry by a session command
    assert cmd(r, "SESSION.GET", b) is None
    assert not physically_present(r, b)
    assert stats(r)["expired"] - before["expired"] == 2
    # the exact per-subject views never show an expired session
    assert session_list(r, "acme", "bob") == []
    assert count(r, "acme", "bob") == 0
    book.forget(a, b)
    if not physically_present(r, d):
        book.forget(d)  # the read above expired it on access
    else:
        assert cmd(r, "EXISTS", d) == 0
        book.forget(d)
    book.check()
    assert session_list(r, "acme", "alice") == [c]
    assert stats(r)["expired"] - before["expired"] == 3


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-random"])
def test_eviction(make_server, policy):
    srv = make_server(config={"maxmemory-policy": policy})
    book = Book(srv)
    r = book.r()
    subjects = [f"u{i}" for i in range(8)]
    # some live sessions and some revoked tombstones before the pressure starts
    tombs = []
    for i in range(60):
        k = book.create(tenant=["acme", "globex"][i % 2], subject=subjects[i % 8], data=("d", "x" * 200))
        if i % 3 == 0:
            cmd(r, "SESSION.REVOKE", k)
            book.forget(k)
            tombs.append(k)
    used = srv.info("memory")["used_memory"]
    cmd(r, "CONFIG", "SET", "maxmemory", used + 300 * 1024)
    created = []
    p = r.pipeline(transaction=False)
    planned = []
    for i in range(1500):
        t = ["acme", "globex", "t-1"][i % 3]
        s = subjects[(i * 7) % 8]
        k = new_key(t)
        planned.append((k, t, s))
        p.execute_command("SESSION.CREATE", k, "SUBJECT", s, "DATA", "blob", "y" * 1000)
        if len(p) == 100:
            for (kk, tt, ss), res in zip(planned, p.execute(raise_on_error=False)):
                if res == 1:
                    created.append((kk, tt, ss))
            planned = []
    cmd(r, "CONFIG", "SET", "maxmemory", 0)
    assert srv.info("stats")["evicted_keys"] > 0
    for k, t, s in created:
        book.keys[(0, k)] = (t, s, 4 + 1000)
    # what is left
    all_keys = [k for _, k in book.keys]
    ex = r.pipeline(transaction=False)
    for k in all_keys:
        ex.exists(k)
    gone = [k for k, e in zip(all_keys, ex.execute()) if not e]
    assert gone, "no session was evicted"
    book.forget(*gone)
    book.check(dbs=(0,), subjects=subjects + ["nobody"])
    st = stats(r)
    assert st["created"] == 60 + len(created)
    assert st["evicted"] == len(gone)
    assert stats(r, "acme")["evicted"] + stats(r, "globex")["evicted"] + stats(r, "t-1")["evicted"] == len(gone)
    assert len(tombs) == 20


# ---------------------------------------------------------------------------
# keyspace-wide operations


@pytest.mark.parametrize("flush", [["FLUSHDB"], ["FLUSHDB", "ASYNC"], ["FLUSHALL"], ["FLUSHALL", "ASYNC"]])
def test_flush(book, flush):
    keys0 = [book.create(subject="alice", data=("a", "1")) for _ in range(3)]
    keys1 = [book.create(subject="alice", db=1, data=("b", "22")) for _ in range(2)]
    book.create(tenant="globex", subject="bob")
    book.check()
    cmd(book.r(0), *flush)
    for db, k in list(book.keys):
        if flush[0] == "FLUSHALL" or db == 0:
            book.forget(k, db=db)
    book.check()
    # the same names again: counted once each, nothing stale
    for k in keys0:
        book.create(key=k, subject="alice")
    if flush[0] == "FLUSHALL":
        for k in keys1:
            book.create(key=k, subject="alice", db=1)
    book.check()


def test_swapdb(book):
    a = [book.create(subject="alice", data=("x", "1")) for _ in range(2)]
    b = [book.create(subject="alice", db=1) for _ in range(3)]
    book.create(tenant="globex", subject="bob", db=1)
    assert cmd(book.r(), "SWAPDB", 0, 1) in ("OK", True)
    book.keys = {(1 - db, k): v for (db, k), v in book.keys.items()}
    book.check()
    assert session_list(book.r(0), "acme", "alice") == sorted(b)
    assert session_list(book.r(1), "acme", "alice") == sorted(a)
    # swapping with an empty db
    assert cmd(book.r(), "SWAPDB", 1, 2) in ("OK", True)
    book.keys = {(2 if db == 1 else db, k): v for (db, k), v in book.keys.items()}
    book.check(dbs=(0, 1, 2))


def test_rename(book):
    r = book.r()
    a = book.create(subject="alice", data=("f", "123"))
    b = book.create(subject="bob")
    c = book.create(tenant="globex", subject="carol")
    # within the tenant
    a2 = new_key("acme")
    assert cmd(r, "RENAME", a, a2) in ("OK", True)
    book.move(a, a2)
    book.check()
    # onto an existing session: bob's key now holds alice's session
    assert cmd(r, "RENAME", a2, b) in ("OK", True)
    book.move(a2, b)
    book.check()
    assert session_list(r, "acme", "bob") == []
    assert session_list(r, "acme", "alice") == [b]
    # into another tenant: the tenant comes from the key
    g = new_key("globex")
    assert cmd(r, "RENAME", b, g) in ("OK", True)
    book.move(b, g)
    book.check()
    assert session_list(r, "globex", "alice") == [g]
    # to a name that is not a session key, and back
    assert cmd(r, "RENAME", c, "parked") in ("OK", True)
    book.move(c, "parked")
    book.check()
    c2 = new_key("acme")
    assert cmd(r, "RENAME", "parked", c2) in ("OK", True)
    book.put(c2, "carol", 0)
    book.check()
    # RENAMENX onto an existing key does nothing
    assert cmd(r, "RENAMENX", c2, g) in (0, False)
    book.check()
    # a revoked tombstone renamed stays out of the index
    cmd(r, "SESSION.REVOKE", c2)
    book.forget(c2)
    t2 = new_key("acme")
    cmd(r, "RENAME", c2, t2)
    book.check()
    assert err_of(cmd, r, "SESSION.GET", t2).startswith("REVOKED")


def test_move(book):
    r = book.r()
    a = book.create(subject="alice", data=("f", "1"))
    b = book.create(subject="alice")
    assert cmd(r, "MOVE", a, 1) in (1, True)
    book.move(a, new_db=1)
    book.check()
    assert session_list(book.r(1), "acme", "alice") == [a]
    assert session_list(r, "acme", "alice") == [b]
    # MOVE onto an existing key in the target db fails and changes nothing
    book.create(key=b, subject="zed", db=1)
    assert cmd(r, "MOVE", b, 1) in (0, False)
    book.check(subjects=["alice", "zed"])
    # tombstones move without entering the index
    cmd(r, "SESSION.REVOKE", b)
    book.forget(b)
    cmd(book.r(1), "DEL", b)
    book.forget(b, db=1)
    assert cmd(r, "MOVE", b, 1) in (1, True)
    book.check(subjects=["alice", "zed"])


def test_copy(book):
    r = book.r()
    a = book.create(subject="alice", data=("f", "12345"))
    b = book.create(subject="bob")
    a2 = new_key("acme")
    assert cmd(r, "COPY", a, a2) in (1, True)
    book.copy(a, a2)
    book.check()
    # into another db, same name and another name
    assert cmd(r, "COPY", a, a, "DB", 1) in (1, True)
    book.copy(a, a, new_db=1)
    a3 = new_key("acme")
    assert cmd(r, "COPY", a, a3, "DB", 1) in (1, True)
    book.copy(a, a3, new_db=1)
    book.check()
    assert session_list(book.r(1), "acme", "alice") == sorted([a, a3])
    # COPY onto an existing key fails; with REPLACE bob loses his session
    assert cmd(r, "COPY", a, b) in (0, False)
    book.check()
    assert cmd(r, "COPY", a, b, "REPLACE") in (1, True)
    book.copy(a, b)
    book.check()
    assert session_list(r, "acme", "bob") == []
    # to another tenant
    g = new_key("globex")
    assert cmd(r, "COPY", a, g) in (1, True)
    book.copy(a, g)
    book.check()
    # copies are independent sessions
    cmd(r, "SESSION.REVOKE", a)
    book.forget(a)
    book.check()
    assert get(r, a2)["data"] == {"f": "12345"}
    # a copied tombstone is not listed
    t = new_key("acme")
    assert cmd(r, "COPY", a, t) in (1, True)
    book.check()
    assert err_of(cmd, r, "SESSION.GET", t).startswith("REVOKED")


def test_restore(book):
    r = book.r()
    rb = book.server.client(decode=False)
    a = book.create(subject="alice", data=("f", "123"))
    b = book.create(subject="bob")
    dump = rb.dump(a)
    assert cmd(r, "DEL", a) == 1
    book.forget(a)
    book.check()
    rb.restore(a, 0, dump)
    book.put(a, "alice", 4)
    book.check()
    # under another name, another tenant, another db
    g = new_key("globex")
    rb.restore(g, 0, dump)
    book.put(g, "alice", 4)
    book.server.client(db=1, decode=False).restore(a, 0, dump)
    book.put(a, "alice", 4, db=1)
    book.check()
    # RESTORE REPLACE over bob's session
    rb.restore(b, 0, dump, replace=True)
    book.put(b, "alice", 4)
    book.check()
    assert session_list(r, "acme", "bob") == []
    # a restored tombstone is not listed
    cmd(r, "SESSION.REVOKE", a)
    book.forget(a)
    tomb = rb.dump(a)
    t = new_key("acme")
    rb.restore(t, 0, tomb)
    book.check()
    assert err_of(cmd, r, "SESSION.GET", t).startswith("REVOKED")
    # RESTORE with a TTL
    k = new_key("acme")
    rb.restore(k, 600000, dump)
    book.put(k, "alice", 4)
    book.check()


def test_migrate(make_server):
    src = make_server(name="src")
    dst = make_server(name="dst")
    bs, bd = Book(src), Book(dst)
    a = bs.create(subject="alice", data=("f", "1"))
    b = bs.create(subject="alice")
    r = bs.r()
    assert cmd(r, "MIGRATE", "127.0.0.1", dst.port, a, 0, 5000) in ("OK", True)
    bd.keys[(0, a)] = bs.keys.pop((0, a))
    bs.check()
    bd.check()
    assert cmd(r, "MIGRATE", "127.0.0.1", dst.port, b, 0, 5000, "COPY") in ("OK", True)
    bd.keys[(0, b)] = bs.keys[(0, b)]
    bs.check()
    bd.check()
    assert session_list(bd.r(), "acme", "alice") == sorted([a, b])


def test_select_separate_databases(book):
    r0, r1 = book.r(0), book.r(1)
    x0 = [book.create(subject="alice", db=0, data=("a", "1")) for _ in range(2)]
    x1 = [book.create(subject="alice", db=1, data=("a", "22")) for _ in range(3)]
    book.check()
    assert session_list(r0, "acme", "alice") == sorted(x0)
    assert session_list(r1, "acme", "alice") == sorted(x1)
    # SELECT on one connection
    c = book.server.client()
    p = c.pipeline(transaction=True)
    p.execute_command("SELECT", 1)
    p.execute_command("SESSION.COUNT", "acme")
    p.execute_command("SESSION.LIST", "acme", "alice")
    p.execute_command("SELECT", 0)
    res = p.execute()
    assert res[1] == 3 and sorted(to_str(k) for k in res[2]) == sorted(x1)
    # the same key name in two dbs: two sessions
    book.create(key=x0[0], subject="alice", db=1)
    book.check()
    assert count(r1, "acme", "alice") == 4 and count(r0, "acme", "alice") == 2
    assert stats(r0)["sessions"] == 6
    # REVOKEALL stays in its db
    assert cmd(r1, "SESSION.REVOKEALL", "acme", "alice") == 4
    book.forget(x0[0], *x1, db=1)
    book.check()


# ---------------------------------------------------------------------------
# loading and replicas


def make_mixed(book):
    keys = []
    for i in range(12):
        keys.append(book.create(tenant=["acme", "globex"][i % 2], subject=f"u{i % 3}", db=i % 3,
                                data=("f", "x" * i)))
    for i, k in enumerate(keys[:3]):
        cmd(book.r(i % 3), "SESSION.REVOKE", k)
        book.forget(k, db=i % 3)
    book.create(subject="")  # no subject
    return keys


def test_debug_reload(book):
    make_mixed(book)
    before = stats(book.r())
    assert cmd(book.r(), "DEBUG", "RELOAD") in ("OK", True)
    book.check(dbs=(0, 1, 2))
    after = stats(book.r())
    assert after == before  # same process: counters since start unchanged


def test_restart_from_rdb(make_server):
    srv = make_server()
    book = Book(srv)
    make_mixed(book)
    assert cmd(book.r(), "SAVE") in ("OK", True)
    srv.restart()
    book.clients = {}
    book.check(dbs=(0, 1, 2))
    st = stats(book.r())
    assert st["created"] == 0 and st["revocations"] == 0  # counters start from zero


def test_restart_discards_sessions_expired_while_down(make_server):
    """An RDB load indexes each value as it reads it; a primary then drops
    keys whose expiry passed while it was down. Those must not stay in the
    index (the module falls back to a scan when a loaded value is freed)."""
    srv = make_server()
    book = Book(srv)
    make_mixed(book)
    short = [book.create(subject=s, data=("f", "x"), idle=300, grace=0) for s in ("u0", "u1", "")]
    assert cmd(book.r(), "SAVE") in ("OK", True)
    srv.stop()
    import time
    time.sleep(0.6)
    srv.start()
    book.clients = {}
    assert cmd(book.r(), "EXISTS", *short) == 0, "the expired sessions were dropped at load"
    book.forget(*short)
    book.check(dbs=(0, 1, 2))


def test_debug_reload_after_expiry_and_aof_load(make_server):
    """DEBUG RELOAD while sessions expired (dropped on load) and a restart
    that loads the AOF (indexed by a scan: the AOF moves keys around)."""
    srv = make_server(config={"appendonly": "yes", "aof-use-rdb-preamble": "no"})
    book = Book(srv)
    make_mixed(book)
    r = book.r()
    a = book.create(subject="mover", data=("f", "1"))
    b = new_key("acme")
    assert cmd(r, "RENAME", a, b) in ("OK", True)
    book.move(a, b)
    short = book.create(subject="u2", idle=200, grace=0)
    cmd(r, "DEBUG", "SET-ACTIVE-EXPIRE", 0)
    import time
    time.sleep(0.4)
    assert cmd(r, "DEBUG", "RELOAD") in ("OK", True)
    assert cmd(r, "EXISTS", short) == 0
    book.forget(short)
    book.check(dbs=(0, 1, 2))
    srv.restart()
    book.clients = {}
    book.check(dbs=(0, 1, 2))


def test_replica_full_resync(make_pair):
    primary, replica = make_pair(link=False)
    bp = Book(primary)
    make_mixed(bp)
    # the replica's own earlier sessions vanish with the full resync
    br = Book(replica)
    stale = br.create(subject="u0", data=("stale", "1"))
    replicate(replica, primary)
    assert cmd(replica.client(), "EXISTS", stale) == 0
    br.keys = dict(bp.keys)
    br.check(dbs=(0, 1, 2))


def test_replica_index_follows_replicated_writes(make_pair):
    """After the initial sync, writes reach the replica as replicated
    commands; its index (LIST / COUNT / STATS sessions) must follow them."""
    primary, replica = make_pair()
    bp = Book(primary)
    r = bp.r()
    a = [bp.create(subject="alice", data=("f", "12")) for _ in range(3)]
    bp.create(tenant="globex", subject="bob", db=1)
    cmd(r, "SESSION.SET", a[0], "DATA", "g", "345")
    bp.set_bytes(a[0], 7)
    cmd(r, "SESSION.REVOKE", a[1])
    bp.forget(a[1])
    cmd(r, "DEL", a[2])
    bp.forget(a[2])
    wait_sync(primary, replica)
    bp.check()
    br = Book(replica)
    br.keys = dict(bp.keys)
    br.check()
