"""A seeded, reproducible model-based test of tenants, the per-subject index
and the counters (SPEC §4 LIST / REVOKEALL / COUNT / STATS / TENANT, §5).

Random operations over a few tenants, subjects and databases run against a
real server and against a Python model; after every step LIST, COUNT and
STATS (every counter) must equal the model.

    SESSION_MODEL_SEED=1234        replay one seed
    SESSION_MODEL_STEPS=n          steps per seed (default 2500)
    SESSION_SOAK=1 pytest -m soak  the long version (make soak)

On failure the message names the seed, the step and the last operations.
"""

import collections
import os
import random
import time

import pytest
import redis

from sessionlib import norm_session, to_str
from tenants_helpers import STATS_FIELDS, map_reply

SOAK = os.environ.get("SESSION_SOAK") == "1"
STEPS = int(os.environ.get("SESSION_MODEL_STEPS", "2500"))
SOAK_STEPS = int(os.environ.get("SESSION_SOAK_STEPS", "40000"))

DBS = [0, 1, 2]
SUBJECTS = ["u1", "u2", "u3"]
TENANTS = ["acme", "globex", "cap", "lim"]
SIDS_PER_TENANT = 8
PARKING = ["park:0", "park:1"]
FIELDS = ["f0", "f1", "f2", "f3"]
GLOBEX_MAXDATA = 64
EVICT_REASON = "evicted: session limit"
DEFAULT_REASON = "revoked"
SID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class Val:
    """A session value as the model sees it (the tenant comes from the key name)."""

    __slots__ = ("subject", "data", "version", "revoked", "reason", "created")

    def __init__(self, subject, data, created):
        self.subject = subject
        self.data = dict(data)
        self.version = 1
        self.revoked = False
        self.reason = None
        self.created = created

    def clone(self):
        v = Val(self.subject, self.data, self.created)
        v.version, v.revoked, v.reason = self.version, self.revoked, self.reason
        return v

    def nbytes(self):
        return sum(len(k) + len(x) for k, x in self.data.items())


def tenant_of(name):
    return name.split(":")[1] if name.startswith("sess:") else None


class Model:
    def __init__(self):
        self.dbs = {d: {} for d in DBS}
        self.counters = {}  # tenant -> dict; a row exists once the module made one
        self.global_misses = 0
        self.cap = {"cap": 2, "lim": 2}
        self.policy = {"cap": "evict-oldest", "lim": "reject"}

    def bump(self, tenant, what, n=1, new_row_ok=True):
        if what == "misses":
            self.global_misses += n
        if tenant not in self.counters:
            if not new_row_ok:
                return
            self.counters[tenant] = {f: 0 for f in STATS_FIELDS}
        self.counters[tenant][what] += n

    def live(self, db, tenant=None, subject=None):
        out = []
        for name, v in self.dbs[db].items():
            t = tenant_of(name)
            if t is None or v.revoked:
                continue
            if tenant is not None and t != tenant:
                continue
            if subject is not None and v.subject != subject:
                continue
            out.append((name, v))
        return out

    def expected_stats(self, tenant=None):
        out = {f: 0 for f in STATS_FIELDS}
        rows = [self.counters.get(tenant, {})] if tenant else list(self.counters.values())
        for row in rows:
            for f, n in row.items():
                out[f] += n
        if tenant is None:
            # global misses include those of tenants without a row
            out["misses"] = self.global_misses
        out["sessions"] = 0
        out["data_bytes"] = 0
        for db in DBS:
            for _name, v in self.live(db, tenant):
                out["sessions"] += 1
                out["data_bytes"] += v.nbytes()
        return out


class Runner:
    def __init__(self, server, seed):
        self.srv = server
        self.rnd = random.Random(seed)
        self.seed = seed
        self.m = Model()
        self.c = {d: server.client(db=d) for d in DBS}
        self.cb = {d: server.client(db=d, decode=False) for d in DBS}
        self.history = []
        self.outcomes = collections.Counter()
        self.pool = {t: [f"sess:{t}:" + "".join(self.rnd.choice(SID_ALPHABET) for _ in range(22))
                         for _ in range(SIDS_PER_TENANT)] for t in TENANTS}
        self.all_session_names = [k for t in TENANTS for k in self.pool[t]]
        r = self.c[0]
        r.execute_command("SESSION.TENANT", "SET", "globex", "MAXDATA", GLOBEX_MAXDATA)
        r.execute_command("SESSION.TENANT", "SET", "cap", "MAXPERSUBJECT", 2, "ONLIMIT", "evict-oldest")
        r.execute_command("SESSION.TENANT", "SET", "lim", "MAXPERSUBJECT", 2, "ONLIMIT", "reject")

    # -- helpers -------------------------------------------------------------
    def log(self, *what):
        self.history.append(" ".join(str(w) for w in what))

    def ex(self, db, *args):
        return self.c[db].execute_command(*args)

    def err(self, db, *args):
        """Run a command expected to fail; return the error text."""
        try:
            r = self.ex(db, *args)
        except redis.ResponseError as e:
            self.outcomes[f"{args[0].lower()} {str(e).split()[0]}"] += 1
            return str(e)
        raise AssertionError(f"expected an error from {args!r}, got {r!r}")

    def rand_data(self, n_max=3):
        fields = self.rnd.sample(FIELDS, self.rnd.randint(0, n_max))
        return {f: "".join(self.rnd.choice("abcdefghij") for _ in range(self.rnd.randint(0, 30))) for f in fields}

    def pick_db(self):
        return self.rnd.choice(DBS)

    def pick_key(self):
        return self.rnd.choice(self.all_session_names)

    def pick_existing(self, db, with_parking=True):
        names = [n for n in self.m.dbs[db] if with_parking or tenant_of(n)]
        return self.rnd.choice(names) if names else None

    def toobig(self, tenant, data):
        return tenant == "globex" and sum(len(k) + len(v) for k, v in data.items()) > GLOBEX_MAXDATA

    def check_get_reply(self, db, key, reply, v):
        _names, s = norm_session(reply)
        assert s["subject"] == v.subject, (key, s["subject"], v.subject)
        assert s["version"] == v.version, (key, s["version"], v.version)
        if "data" in s:
            assert s["data"] == v.data, (key, s["data"], v.data)
        assert s["created"] == v.created

    # -- operations ----------------------------------------------------------
    def op_create(self):
        db, key = self.pick_db(), self.pick_key()
        t = tenant_of(key)
        subject = self.rnd.choice(SUBJECTS + [""])
        data = self.rand_data()
        args = ["SESSION.CREATE", key]
        if subject:
            args += ["SUBJECT", subject]
        if data:
            args += ["DATA"] + [x for kv in data.items() for x in kv]
        self.log("db", db, *args)
        m = self.m
        if self.toobig(t, data):
            assert self.err(db, *args).startswith("TOOBIG")
            return
        if key in m.dbs[db]:
            assert self.err(db, *args) == "EXISTS session already exists"
            return
        victims = []
        cap = m.cap.get(t, 0)
        if cap and subject:
            live = m.live(db, t, subject)
            if len(live) >= cap:
                if m.policy[t] == "reject":
                    assert self.err(db, *args).startswith("LIMIT")
                    return
                live.sort(key=lambda nv: (nv[1].created, nv[0]))
                victims = live[: len(live) + 1 - cap]
        assert self.ex(db, *args) == 1
        self.outcomes["session.create ok"] += 1
        self.outcomes["evict-oldest victims"] += len(victims)
        for _name, v in victims:
            v.revoked, v.reason, v.data = True, EVICT_REASON, {}
            m.bump(t, "revocations")
        m.bump(t, "created")
        # learn the created time (a hit)
        s = norm_session(self.ex(db, "SESSION.GET", key, "NODATA"))[1]
        m.bump(t, "hits")
        m.dbs[db][key] = Val(subject, data, s["created"])
        for name, _v in victims:
            assert self.err(db, "SESSION.GET", name) == "REVOKED " + EVICT_REASON
            m.bump(t, "misses")

    def op_get(self, touch):
        db, key = self.pick_db(), self.pick_key()
        t = tenant_of(key)
        args = ["SESSION.GET", key] + (["TOUCH"] if touch else [])
        # a third of the reads ask for named fields' values alone (VALUES)
        names = self.rnd.sample(FIELDS + ["nope"], self.rnd.randint(1, 3)) if self.rnd.random() < 0.33 else None
        if names:
            args += ["FIELDS", len(names), *names, "VALUES"]
        self.log("db", db, *args)
        v = self.m.dbs[db].get(key)
        if v is None:
            assert self.ex(db, *args) is None
            self.m.bump(t, "misses", new_row_ok=False)
        elif v.revoked:
            assert self.err(db, *args) == "REVOKED " + v.reason
            self.m.bump(t, "misses", new_row_ok=False)
        else:
            got = self.ex(db, *args)
            if names:
                assert got == [v.data.get(f) for f in names], (key, names, got, v.data)
            else:
                self.check_get_reply(db, key, got, v)
            self.m.bump(t, "hits")
            if touch:
                self.m.bump(t, "touches")
                self.m.bump(t, "touches_propagated")

    def op_set(self):
        db, key = self.pick_db(), self.pick_key()
        t = tenant_of(key)
        v = self.m.dbs[db].get(key)
        args = ["SESSION.SET", key]
        ifv = None
        if self.rnd.random() < 0.4:
            ifv = v.version if v is not None and self.rnd.random() < 0.6 else self.rnd.randint(1, 5)
            args += ["IFVERSION", ifv]
        unset = self.rnd.sample(FIELDS, self.rnd.randint(0, 2))
        if unset:
            args += ["UNSET", len(unset)] + unset
        data = self.rand_data(2)
        if data or not unset:
            data = data or {"f0": "x"}
            args += ["DATA"] + [x for kv in data.items() for x in kv]
        self.log("db", db, *args)
        if v is None:
            assert self.ex(db, *args) is None
            return
        if v.revoked:
            assert self.err(db, *args) == "REVOKED " + v.reason
            return
        if ifv is not None and ifv != v.version:
            assert self.err(db, *args) == f"CONFLICT {v.version}"
            self.m.bump(t, "cas_conflicts")
            return
        new = {k: x for k, x in v.data.items() if k not in unset}
        new.update(data)
        if self.toobig(t, new):
            assert self.err(db, *args).startswith("TOOBIG")
            return
        assert self.ex(db, *args) == v.version + 1
        v.version += 1
        v.data = new

    def op_cas(self):
        db, key = self.pick_db(), self.pick_key()
        t = tenant_of(key)
        v = self.m.dbs[db].get(key)
        ver = v.version if v is not None and self.rnd.random() < 0.7 else self.rnd.randint(1, 5)
        data = self.rand_data()
        args = ["SESSION.CAS", key, ver]
        if data:
            args += ["DATA"] + [x for kv in data.items() for x in kv]
        self.log("db", db, *args)
        if v is None:
            assert self.ex(db, *args) is None
        elif v.revoked:
            assert self.err(db, *args) == "REVOKED " + v.reason
        elif ver != v.version:
            assert self.err(db, *args) == f"CONFLICT {v.version}"
            self.m.bump(t, "cas_conflicts")
        elif self.toobig(t, data):
            assert self.err(db, *args).startswith("TOOBIG")
        else:
            assert self.ex(db, *args) == v.version + 1
            v.version += 1
            v.data = dict(data)

    def op_revoke(self):
        db, key = self.pick_db(), self.pick_key()
        reason = self.rnd.choice([None, "logout", "admin action"])
        args = ["SESSION.REVOKE", key] + (["REASON", reason] if reason else [])
        self.log("db", db, *args)
        v = self.m.dbs[db].get(key)
        if v is None or v.revoked:
            assert self.ex(db, *args) == 0
        else:
            assert self.ex(db, *args) == 1
            v.revoked, v.reason, v.data = True, reason or DEFAULT_REASON, {}
            self.m.bump(tenant_of(key), "revocations")

    def op_revokeall(self):
        db = self.pick_db()
        t = self.rnd.choice(TENANTS)
        s = self.rnd.choice(SUBJECTS)
        live = self.m.live(db, t, s)
        args = ["SESSION.REVOKEALL", t, s]
        except_key = None
        if live and self.rnd.random() < 0.5:
            except_key = self.rnd.choice(live)[0]
            args += ["EXCEPT", except_key]
        reason = self.rnd.choice([None, "password changed"])
        if reason:
            args += ["REASON", reason]
        self.log("db", db, *args)
        n = 0
        for name, v in live:
            if name != except_key:
                v.revoked, v.reason, v.data = True, reason or DEFAULT_REASON, {}
                n += 1
        assert self.ex(db, *args) == n
        self.outcomes["revokeall revoked"] += n
        if n:
            self.m.bump(t, "revocations", n)

    def op_del(self, how):
        db = self.pick_db()
        key = self.pick_existing(db) if self.rnd.random() < 0.8 else self.pick_key()
        if key is None:
            return
        self.log("db", db, how, key)
        existed = self.m.dbs[db].pop(key, None) is not None
        assert self.ex(db, how, key) == int(existed)

    def op_rename(self):
        db = self.pick_db()
        src = self.pick_existing(db)
        if src is None:
            return
        dst = self.rnd.choice(self.all_session_names + PARKING + [src])
        nx = self.rnd.random() < 0.2
        self.log("db", db, "RENAMENX" if nx else "RENAME", src, dst)
        d = self.m.dbs[db]
        if nx:
            if dst in d:
                assert self.ex(db, "RENAMENX", src, dst) in (0, False)
                return
            assert self.ex(db, "RENAMENX", src, dst) in (1, True)
        else:
            assert self.ex(db, "RENAME", src, dst) in ("OK", True)
        if src != dst:
            d[dst] = d.pop(src)

    def op_move(self):
        db = self.pick_db()
        src = self.pick_existing(db)
        if src is None:
            return
        to = self.rnd.choice([x for x in DBS if x != db])
        self.log("db", db, "MOVE", src, to)
        if src in self.m.dbs[to]:
            assert self.ex(db, "MOVE", src, to) in (0, False)
        else:
            assert self.ex(db, "MOVE", src, to) in (1, True)
            self.m.dbs[to][src] = self.m.dbs[db].pop(src)

    def op_copy(self):
        db = self.pick_db()
        src = self.pick_existing(db)
        if src is None:
            return
        to = self.rnd.choice(DBS)
        dst = self.rnd.choice(self.all_session_names + PARKING)
        if to == db and dst == src:
            return
        replace = self.rnd.random() < 0.5
        args = ["COPY", src, dst] + (["DB", to] if to != db or self.rnd.random() < 0.5 else []) + (
            ["REPLACE"] if replace else [])
        self.log("db", db, *args)
        if dst in self.m.dbs[to] and not replace:
            assert self.ex(db, *args) in (0, False)
        else:
            assert self.ex(db, *args) in (1, True)
            self.m.dbs[to][dst] = self.m.dbs[db][src].clone()

    def op_restore(self):
        db = self.pick_db()
        src = self.pick_existing(db)
        if src is None:
            return
        payload = self.cb[db].dump(src)
        v = self.m.dbs[db][src]
        if self.rnd.random() < 0.5:
            self.log("db", db, "DUMP+DEL+RESTORE", src)
            assert self.ex(db, "DEL", src) == 1
            assert self.cb[db].execute_command("RESTORE", src, 0, payload) in (b"OK", True)
            return
        to = self.pick_db()
        dst = self.rnd.choice(self.all_session_names + PARKING)
        replace = self.rnd.random() < 0.5
        args = ["RESTORE", dst, 0, payload] + (["REPLACE"] if replace else [])
        self.log("db", db, "DUMP", src, "-> db", to, "RESTORE", dst, "REPLACE" if replace else "")
        if dst in self.m.dbs[to] and not replace:
            try:
                self.cb[to].execute_command(*args)
                raise AssertionError("RESTORE onto an existing key without REPLACE succeeded")
            except redis.ResponseError as e:
                assert str(e).startswith("BUSYKEY"), str(e)
            return
        assert self.cb[to].execute_command(*args) in (b"OK", True)
        self.m.dbs[to][dst] = v.clone()

    def op_swapdb(self):
        a, b = self.rnd.sample(DBS, 2)
        self.log("SWAPDB", a, b)
        assert self.ex(0, "SWAPDB", a, b) in ("OK", True)
        self.m.dbs[a], self.m.dbs[b] = self.m.dbs[b], self.m.dbs[a]

    def op_flushdb(self):
        db = self.pick_db()
        how = self.rnd.choice([[], ["ASYNC"], ["SYNC"]])
        self.log("db", db, "FLUSHDB", *how)
        assert self.ex(db, "FLUSHDB", *how) in ("OK", True)
        self.m.dbs[db] = {}

    def op_reload(self):
        self.log("DEBUG RELOAD")
        assert self.ex(0, "DEBUG", "RELOAD") in ("OK", True)

    def op_tenant(self):
        t = self.rnd.choice(["cap", "lim"])
        n = self.rnd.randint(1, 3)
        self.log("SESSION.TENANT SET", t, "MAXPERSUBJECT", n)
        assert self.ex(0, "SESSION.TENANT", "SET", t, "MAXPERSUBJECT", n) == "OK"
        self.m.cap[t] = n

    OPS = [
        ("create", 24), ("get", 5), ("touch", 8), ("set", 10), ("cas", 6), ("revoke", 5), ("revokeall", 3),
        ("del", 6), ("unlink", 3), ("rename", 4), ("move", 3), ("copy", 3), ("restore", 3), ("swapdb", 1),
        ("flushdb", 0.4), ("reload", 0.4), ("tenant", 1),
    ]

    def step(self):
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        op = self.rnd.choices(names, weights)[0]
        if op == "get":
            self.op_get(False)
        elif op == "touch":
            self.op_get(True)
        elif op in ("del", "unlink"):
            self.op_del(op.upper())
        else:
            getattr(self, "op_" + op)()

    # -- the comparison --------------------------------------------------------
    def check(self):
        m = self.m
        for db in DBS:
            p = self.c[db].pipeline(transaction=False)
            want = []
            for t in TENANTS:
                p.execute_command("SESSION.COUNT", t)
                want.append((("COUNT", db, t), len(m.live(db, t))))
                for s in SUBJECTS:
                    keys = sorted(n for n, _ in m.live(db, t, s))
                    p.execute_command("SESSION.LIST", t, s)
                    want.append((("LIST", db, t, s), keys))
                    p.execute_command("SESSION.COUNT", t, s)
                    want.append((("COUNT", db, t, s), len(keys)))
            got = p.execute()
            for (what, w), g in zip(want, got):
                if isinstance(g, list):
                    g = [to_str(x) for x in g]
                assert g == w, f"{what}: expected {w!r}, got {g!r}"
        p = self.c[0].pipeline(transaction=False)
        p.execute_command("SESSION.STATS")
        for t in TENANTS:
            p.execute_command("SESSION.STATS", t)
        got = p.execute()
        for t, g in zip([None] + TENANTS, got):
            g = map_reply(g)[1]
            w = m.expected_stats(t)
            assert g == w, f"STATS {t or '(all)'}: expected {w}, got {g}"

    def run(self, steps):
        i = -1
        try:
            self.check()
            for i in range(steps):
                self.step()
                self.check()
        except AssertionError as e:
            last = "\n  ".join(self.history[-25:])
            raise AssertionError(
                f"model test failed: seed={self.seed} step={i} "
                f"(replay: SESSION_MODEL_SEED={self.seed} SESSION_MODEL_STEPS={i + 1})\n"
                f"{e}\nlast operations:\n  {last}"
            ) from e


def seeds(n):
    if os.environ.get("SESSION_MODEL_SEED"):
        return [int(os.environ["SESSION_MODEL_SEED"])]
    return [1000 + i for i in range(n)]


@pytest.mark.parametrize("seed", seeds(2))
def test_model(make_server, seed):
    srv = make_server(module_args={"touch-resolution": 0}, name="model")
    t0 = time.monotonic()
    runner = Runner(srv, seed)
    runner.run(STEPS)
    print(f"seed {seed}: {STEPS} steps in {time.monotonic() - t0:.1f}s; {dict(runner.outcomes)}")


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="the long model test runs with SESSION_SOAK=1 (make soak)")
@pytest.mark.parametrize("seed", [int(os.environ["SESSION_MODEL_SEED"])] if os.environ.get("SESSION_MODEL_SEED")
                         else [50000 + i for i in range(int(os.environ.get("SESSION_SOAK_SEEDS", "6")))])
def test_model_soak(make_server, seed):
    srv = make_server(module_args={"touch-resolution": 0}, name="soak")
    t0 = time.monotonic()
    runner = Runner(srv, seed)
    runner.run(SOAK_STEPS)
    print(f"seed {seed}: {SOAK_STEPS} steps in {time.monotonic() - t0:.1f}s; {dict(runner.outcomes)}")
