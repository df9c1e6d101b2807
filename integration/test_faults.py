"""Faults (issue 6): nothing acknowledged is ever lost, no input crashes the
server, memory comes back.

- failover: writes acknowledged with `WAIT 1` survive `kill -9` of the
  primary and the promotion of its replica (a primary/replica pair with
  REPLICAOF NO ONE, and a cluster with CLUSTER FAILOVER TAKEOVER); the
  promoted node's LIST / COUNT / STATS are right;
- crash recovery: `appendonly yes` + `appendfsync always`, `kill -9` in the
  middle of a write load, restart from the AOF: every acknowledged write is
  there byte for byte (DUMP, PEXPIRETIME, GET), and DEBUG DIGEST equals that
  of a fresh server given the acknowledged values, and that of a second
  server started from a copy of the same AOF;
- corrupt input: thousands of mutated DUMP payloads (raw bit flips,
  truncation, insertion; mutations of the module's own MessagePack record
  with the RDB framing and CRC64 fixed up; structurally valid records with
  hostile field values) fed to RESTORE, and garbage fed to SESSION.APPLY:
  the server stays up, refuses or loads a value that then reads, writes,
  dumps, digests and reloads cleanly, and the index is exact afterwards;
- memory: create/delete cycles bring used_memory back to its baseline;
  allkeys-lru evicts sessions with index and counters right; with
  noeviction the deny-oom commands are refused when full, reads still work.

Short by default; SESSION_SOAK=1 (make soak) runs the @soak versions longer.
"""

import os
import random
import signal
import struct
import threading
import time

import pytest
import redis

from cluster import Cluster, fanout, slot_of
from sessionlib import (
    GET_FIELDS,
    copy_aof,
    dump_join,
    dump_split,
    new_key,
    norm_session,
    pairs_to_dict,
    to_str,
    wait_for,
)

SOAK = os.environ.get("SESSION_SOAK") == "1"
soak_only = pytest.mark.skipif(not SOAK, reason="long version: SESSION_SOAK=1 (make soak)")

TR0 = {"touch-resolution": 0}
TENANTS = ["acme", "globex"]
SUBJECTS = [f"user{i}" for i in range(8)]


def ex(c, *a):
    return c.execute_command(*a)


def s_(x):
    return to_str(x) if isinstance(x, (bytes, bytearray)) else x


# ---------------------------------------------------------------------------
# Snapshots: everything observable about one key, byte for byte.

MISSING = ("missing",)


def snap_from(dump, pexpiretime, get):
    """(DUMP payload, PEXPIRETIME, normalized GET) of a key; MISSING if absent."""
    if dump is None:
        return MISSING
    if isinstance(get, Exception):
        g = ("error", str(get))
    else:
        g = norm_session(get)[1]
    return ("value", bytes(dump), pexpiretime, g)


def snapshot(r, key):
    p = r.pipeline(transaction=False)
    p.dump(key)
    p.execute_command("PEXPIRETIME", key)
    p.execute_command("SESSION.GET", key)
    d, pt, g = p.execute(raise_on_error=False)
    return snap_from(d, pt, g)


def snapshots(r, keys, batch=500):
    out = {}
    keys = list(keys)
    for i in range(0, len(keys), batch):
        chunk = keys[i:i + batch]
        p = r.pipeline(transaction=False)
        for k in chunk:
            p.dump(k)
            p.execute_command("PEXPIRETIME", k)
            p.execute_command("SESSION.GET", k)
        res = p.execute(raise_on_error=False)
        for j, k in enumerate(chunk):
            out[k] = snap_from(*res[3 * j:3 * j + 3])
    return out


def live_of(snap):
    """(subject, data bytes) of a live session snapshot, else None."""
    if snap[0] != "value" or not isinstance(snap[3], dict):
        return None
    g = snap[3]
    nbytes = sum(len(k) + len(v) for k, v in g["data"].items())
    return s_(g["subject"]), nbytes


def check_index(r, snaps, tenants=TENANTS, subjects=SUBJECTS):
    """LIST / COUNT / STATS on one server against the snapshots of its keys."""
    live = {k: live_of(sn) for k, sn in snaps.items() if live_of(sn) is not None}
    for t in tenants:
        mine = {k: v for k, v in live.items() if s_(k).split(":")[1] == t}
        assert ex(r, "SESSION.COUNT", t) == len(mine), t
        st = {s_(k): v for k, v in pairs_to_dict(ex(r, "SESSION.STATS", t)).items()}
        assert st["sessions"] == len(mine), (t, st)
        assert st["data_bytes"] == sum(v[1] for v in mine.values()), (t, st)
        for s in subjects:
            want = sorted(s_(k) for k, v in mine.items() if v[0] == s)
            assert sorted(s_(k) for k in ex(r, "SESSION.LIST", t, s)) == want, (t, s)
            assert ex(r, "SESSION.COUNT", t, s) == len(want)
    st = {s_(k): v for k, v in pairs_to_dict(ex(r, "SESSION.STATS")).items()}
    assert st["sessions"] == len(live)


# ---------------------------------------------------------------------------
# A recorded write load: after every operation the key's full state is read
# back (DUMP, PEXPIRETIME, GET), so the history of every key is known exactly.

class History:
    """key -> list of snapshots (index 0 = MISSING), and the index of the
    last one that was acknowledged (by the reply, or by WAIT)."""

    def __init__(self):
        self.hist = {}
        self.acked = {}
        self.pending = []  # (key, index) recorded but not yet acknowledged
        self.inflight = None  # (key, op, snapshot before) of an op without a recorded outcome

    def new_key(self, key):
        self.hist[key] = [MISSING]
        self.acked[key] = 0

    def last(self, key):
        return self.hist[key][-1]

    def record(self, key, snap, acked):
        self.hist[key].append(snap)
        idx = len(self.hist[key]) - 1
        if acked:
            self.acked[key] = idx
        else:
            self.pending.append((key, idx))

    def ack_pending(self):
        for key, idx in self.pending:
            self.acked[key] = max(self.acked[key], idx)
        self.pending = []

    def allowed(self, key):
        return self.hist[key][self.acked[key]:]


class Writer:
    """Random CREATE / SET / CAS / RENEW IDLE / GET TOUCH / REVOKE / DEL ops.

    mode "wait": ops then `WAIT 1 <ms>` every `wait_every` ops (acked when
    WAIT counts the replica); mode "reply": the reply acknowledges (AOF with
    appendfsync always); in "multi" steps the op and the read-back run in
    one MULTI/EXEC.
    """

    def __init__(self, r, hist, rnd, tenants=TENANTS, subjects=SUBJECTS, mode="reply", wait_every=10,
                 multi_ratio=0.5, max_keys=400):
        self.r = r
        self.h = hist
        self.rnd = rnd
        self.tenants = tenants
        self.subjects = subjects
        self.mode = mode
        self.wait_every = wait_every
        self.multi_ratio = multi_ratio
        self.max_keys = max_keys
        self.keys = list(hist.hist)
        self.ops = 0
        self.acked_ops = 0
        self.errors = []

    def _op(self, key):
        rnd = self.rnd
        cur = self.h.last(key)
        if cur == MISSING:
            data = []
            for j in range(rnd.randint(0, 4)):
                data += [f"f{j}", rnd.randbytes(rnd.randint(0, 120))]
            args = ["SESSION.CREATE", key, "SUBJECT", rnd.choice(self.subjects),
                    "IDLE", rnd.choice([600000, 3600000]), "ABSOLUTE", rnd.choice([0, 86400000]),
                    "GRACE", rnd.choice([0, 30000]), "META", 1, "ip", f"10.0.0.{rnd.randint(1, 254)}"]
            return args + (["DATA", *data] if data else [])
        if cur[3] is not None and not isinstance(cur[3], dict):  # revoked tombstone
            return rnd.choice([["DEL", key], ["SESSION.REVOKE", key, "REASON", "again"]])
        v = cur[3]["version"]
        x = rnd.random()
        if x < 0.35:
            return ["SESSION.SET", key, "IFVERSION", v, "DATA", f"f{rnd.randint(0, 6)}",
                    rnd.randbytes(rnd.randint(0, 100))]
        if x < 0.45:
            return ["SESSION.SET", key, "META", 1, "ua", f"ua{rnd.randint(0, 99)}", "UNSET", 1,
                    f"f{rnd.randint(0, 6)}"]
        if x < 0.55:
            return ["SESSION.CAS", key, v, "DATA", "c", rnd.randbytes(rnd.randint(0, 60))]
        if x < 0.65:
            return ["SESSION.RENEW", key, "IDLE", rnd.choice([700000, 2400000])]
        if x < 0.80:
            return ["SESSION.GET", key, "TOUCH"]
        if x < 0.92:
            return ["SESSION.REVOKE", key, "REASON", f"r{rnd.randint(0, 9)}"]
        return [rnd.choice(["DEL", "UNLINK"]), key]

    def _check_reply(self, args, before, reply):
        name = args[0]
        if isinstance(reply, Exception):
            self.errors.append(f"{args[:3]}: {reply}")
        elif name == "SESSION.CREATE" and reply != 1:
            self.errors.append(f"{args[:2]}: CREATE answered {reply!r}")
        elif name in ("SESSION.CAS",) or (name == "SESSION.SET" and args[2] == "IFVERSION"):
            if reply != before[3]["version"] + 1:
                self.errors.append(f"{args[:3]}: answered {reply!r}, expected {before[3]['version'] + 1}")

    def step(self):
        rnd = self.rnd
        if len(self.keys) < self.max_keys and (not self.keys or rnd.random() < 0.15):
            key = new_key(rnd.choice(self.tenants))
            self.h.new_key(key)
            self.keys.append(key)
        else:
            key = rnd.choice(self.keys)
        before = self.h.last(key)
        args = self._op(key)
        self.h.inflight = (key, args, before)
        if rnd.random() < self.multi_ratio:
            p = self.r.pipeline(transaction=True)
            p.execute_command(*args)
            p.dump(key)
            p.execute_command("PEXPIRETIME", key)
            p.execute_command("SESSION.GET", key)
            reply, d, pt, g = p.execute(raise_on_error=False)
        else:
            try:
                reply = self.r.execute_command(*args)  # a lost connection: the op stays in flight
            except redis.ResponseError as e:
                reply = e
            p = self.r.pipeline(transaction=False)
            p.dump(key)
            p.execute_command("PEXPIRETIME", key)
            p.execute_command("SESSION.GET", key)
            d, pt, g = p.execute(raise_on_error=False)
        self._check_reply(args, before, reply)
        after = snap_from(d, pt, g)
        self.h.record(key, after, acked=self.mode == "reply")
        self.h.inflight = None
        self.ops += 1
        if self.mode == "wait" and self.ops % self.wait_every == 0:
            self.wait()

    def wait(self, timeout_ms=5000):
        n = self.r.execute_command("WAIT", 1, timeout_ms)
        if n >= 1:
            self.acked_ops += len(self.h.pending)
            self.h.ack_pending()
        else:
            self.errors.append(f"WAIT 1 answered {n}")


def check_recovered(r, hist, allow_inflight=True):
    """Every key's state on r is one the history allows (byte for byte); the
    in-flight op's key may also be in a plausible after-state. Returns the
    snapshots and the in-flight key (or None)."""
    snaps = snapshots(r, hist.hist)
    bad = []
    inflight_key = hist.inflight[0] if (hist.inflight and allow_inflight) else None
    for k, sn in snaps.items():
        allowed = hist.allowed(k)
        if sn in allowed:
            continue
        if k == inflight_key and plausible_after(hist.inflight, sn):
            continue
        bad.append((k, len(hist.hist[k]) - 1, hist.acked[k], describe(sn), [describe(a) for a in allowed]))
    assert not bad, (f"{len(bad)} keys not in an acknowledged state "
                     f"(key, #ops, acked op, got, allowed): {bad[:3]}")
    # nothing else on the server
    extra = [k for k in r.scan_iter(count=1000) if s_(k) not in {s_(x) for x in hist.hist}]
    assert not extra, f"keys nobody wrote: {extra[:5]}"
    return snaps, inflight_key


def describe(sn):
    if sn == MISSING:
        return "missing"
    g = sn[3]
    if isinstance(g, dict):
        return {"version": g["version"], "last_access": g["last_access"], "pexpiretime": sn[2],
                "data": sorted(s_(x) for x in g["data"])}
    return g


def plausible_after(inflight, sn):
    """The in-flight op may have been applied (its reply never came)."""
    key, args, before = inflight
    name = args[0]
    if sn == before:
        return True
    if name in ("DEL", "UNLINK"):
        return sn == MISSING
    if sn == MISSING:
        return False
    g = sn[3]
    if name == "SESSION.REVOKE":
        return not isinstance(g, dict) and "REVOKED" in str(g)
    if not isinstance(g, dict):
        return False
    if name == "SESSION.CREATE":
        return g["version"] == 1 and before == MISSING
    b = before[3]
    if name == "SESSION.GET":  # TOUCH
        return g["version"] == b["version"] and g["data"] == b["data"] and g["last_access"] >= b["last_access"]
    return g["version"] == b["version"] + 1


# ---------------------------------------------------------------------------
# failover


def promote_and_check(replica, hist):
    ra = replica.client(decode=False)
    ex(ra, "REPLICAOF", "NO", "ONE")
    assert replica.info("replication")["role"] == "master"
    snaps, _ = check_recovered(ra, hist)
    check_index(ra, snaps)
    return ra, snaps


@pytest.mark.parametrize("tail", ["acked", "unacked-tail"])
def test_failover_pair_keeps_acknowledged_writes(make_pair, tail):
    _failover_pair(make_pair, tail, steps=1200, seed=f"fo-{tail}")


@pytest.mark.soak
@soak_only
def test_failover_pair_soak(make_pair):
    for i in range(int(os.environ.get("SESSION_SOAK_FAILOVERS", 10))):
        _failover_pair(make_pair, "unacked-tail", steps=10000, seed=f"fo-soak-{i}")


def _failover_pair(make_pair, tail, steps, seed):
    primary, replica = make_pair(module_args=TR0)
    hist = History()
    w = Writer(primary.client(decode=False), hist, random.Random(seed), mode="wait", wait_every=7,
               max_keys=max(400, steps // 5))
    for _ in range(steps):
        w.step()
    w.wait()
    assert not w.errors, w.errors[:5]
    assert w.acked_ops >= steps and not hist.pending
    if tail == "unacked-tail":
        # writes the replica may or may not have seen when the primary dies:
        # a thread keeps writing without WAIT while the primary is killed
        stop = threading.Event()

        died = []
        w.wait_every = 10 ** 9  # no more WAIT: these writes stay unacknowledged

        def run():
            try:
                while not stop.is_set():
                    w.step()
            except Exception as e:  # noqa: BLE001 - checked below
                died.append(e)

        th = threading.Thread(target=run, daemon=True)
        th.start()
        time.sleep(0.4)
        os.kill(primary.proc.pid, signal.SIGKILL)
        th.join(30)
        stop.set()
        assert not th.is_alive()
        assert died and isinstance(died[0], (redis.ConnectionError, redis.TimeoutError, OSError)), died
        assert not w.errors, w.errors[:5]
    else:
        os.kill(primary.proc.pid, signal.SIGKILL)
    primary.proc.wait(10)
    primary.proc = None
    ra, snaps = promote_and_check(replica, hist)
    unacked_lost = sum(1 for k, sn in snaps.items() if sn != hist.last(k))
    print(f"failover ({tail}): {w.ops} writes, {w.acked_ops} acknowledged by WAIT, "
          f"{unacked_lost} keys not at their last (unacknowledged) state")
    live = sum(1 for sn in snaps.values() if live_of(sn))
    assert live > 50
    # the promoted node takes writes, versions go on from the replicated ones
    k = next(k for k, sn in snaps.items() if live_of(sn))
    v = snaps[k][3]["version"]
    assert ex(ra, "SESSION.SET", k, "IFVERSION", v, "DATA", "after", "failover") == v + 1
    n = new_key("acme")
    assert ex(ra, "SESSION.CREATE", n, "SUBJECT", "user0") == 1
    assert s_(n) in {s_(x) for x in ex(ra, "SESSION.LIST", "acme", "user0")}


@pytest.fixture
def cluster(tmp_path_factory, request):
    c = Cluster(tmp_path_factory.mktemp("fcluster"), module_args=TR0, name="f")
    request.node._redis_servers = c.nodes
    c.start()
    yield c
    crashed = [s for s in c.crashed() if not s.expect_dead]
    for s in c.nodes:
        if s.proc is not None and s.proc.poll() is not None:
            s.proc = None
    c.stop()
    if crashed:
        pytest.fail("redis-server crashed:\n" + "\n".join(f"{s.name}: {s.log_tail(60)}" for s in crashed),
                    pytrace=False)


def test_failover_cluster_takeover(cluster):
    """Writes to one primary acked with WAIT 1; kill -9 it; CLUSTER FAILOVER
    TAKEOVER on its replica; the cluster answers every acknowledged write and
    the fanned-out LIST / COUNT / STATS are right."""
    c = cluster
    victim = c.primaries()[0]
    others = [p for p in c.primaries() if p is not victim]
    replica = c.replicas_of(victim)[0]
    vslots = {sl for sl, port in c.slot_map().items() if port == victim.port}
    rnd = random.Random(99)

    # sessions on every primary through the cluster client ...
    rc = c.client()
    elsewhere = {}
    for i in range(600):
        k = new_key(TENANTS[i % 2])
        s = SUBJECTS[rnd.randrange(len(SUBJECTS))]
        assert ex(rc, "SESSION.CREATE", k, "SUBJECT", s, "DATA", "i", str(i)) == 1
        if slot_of(k) not in vslots:
            elsewhere[k] = s
    rc.close()
    # ... and a recorded load on the victim's own keys, acked by WAIT 1
    hist = History()
    while len(hist.hist) < 200:
        k = new_key(rnd.choice(TENANTS))
        if slot_of(k) in vslots:
            hist.new_key(k)
    r = victim.client(decode=False)
    # pre-existing keys of the victim (created above) are part of its state
    for k in [s_(x) for x in r.scan_iter(match="sess:*", count=1000)]:
        hist.new_key(k)
        hist.record(k, snapshot(r, k), acked=False)
    w = Writer(r, hist, rnd, mode="wait", wait_every=5, max_keys=len(hist.hist))
    w.wait()
    for _ in range(800):
        w.step()
    w.wait()
    assert not w.errors, w.errors[:5]
    assert not hist.pending

    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    victim.proc = None
    ex(replica.admin(), "CLUSTER", "FAILOVER", "TAKEOVER")
    wait_for(lambda: replica.info("replication")["role"] == "master", 20, what="replica promoted")

    def new_map():
        m = c.slot_map(others[0])
        return all(m.get(sl) == replica.port for sl in vslots)

    wait_for(new_map, 30, interval=0.1, what="the other primaries route the victim's slots to the replica")
    c.wait_ok(30, check=False)

    snaps, _ = check_recovered(replica.client(decode=False), hist, allow_inflight=False)
    check_index(replica.client(decode=False), snaps)
    # the cluster as a whole, through the cluster client and the fan-out
    rc = c.client()
    for k, s in elsewhere.items():
        g = norm_session(ex(rc, "SESSION.GET", k))[1]
        assert g is not None and g["subject"] == s
    live = {k: live_of(sn) for k, sn in snaps.items() if live_of(sn)}
    for t in TENANTS:
        want_t = [k for k in elsewhere if k.split(":")[1] == t] + [k for k in live if k.split(":")[1] == t]
        assert fanout(c, "SESSION.COUNT", t) == len(want_t)
        assert fanout(c, "SESSION.STATS", t)["sessions"] == len(want_t)
        for s in SUBJECTS:
            want = sorted([k for k in elsewhere if k.split(":")[1] == t and elsewhere[k] == s]
                          + [k for k, v in live.items() if k.split(":")[1] == t and v[0] == s])
            assert fanout(c, "SESSION.LIST", t, s) == want, (t, s)
    # and the promoted primary takes writes through the cluster client
    k = next(iter(live))
    v = snaps[k][3]["version"]
    assert ex(rc, "SESSION.SET", k, "IFVERSION", v, "DATA", "post", "1") == v + 1
    rc.close()


# ---------------------------------------------------------------------------
# crash recovery from the AOF


def restore_all(r, snaps):
    """A fresh server given the acknowledged values: RESTORE ... ABSTTL."""
    p = r.pipeline(transaction=False)
    for k, sn in snaps.items():
        if sn == MISSING:
            continue
        _, dump, pexpiretime, _ = sn
        if pexpiretime is not None and pexpiretime > 0:
            p.restore(k, pexpiretime, dump, absttl=True)
        else:
            p.restore(k, 0, dump)
    p.execute()


def _crash_cycle(srv, hist, rnd, seconds, rewrite_at):
    """Run the write load in a thread, kill -9 the server mid-load, restart."""
    r = srv.client(decode=False, socket_timeout=10)
    w = Writer(r, hist, rnd, mode="reply", multi_ratio=0.5, max_keys=600)
    died = []

    def run():
        try:
            while True:
                w.step()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            died.append(e)
        except Exception as e:  # noqa: BLE001 - reported below
            died.append(e)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    t0 = time.monotonic()
    rewrote = False
    while time.monotonic() - t0 < seconds and th.is_alive():
        if not rewrote and time.monotonic() - t0 > rewrite_at:
            ex(srv.admin(), "BGREWRITEAOF")
            rewrote = True
        time.sleep(0.02)
    assert th.is_alive(), f"the load stopped by itself: {died}"
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(10)
    th.join(30)
    assert not th.is_alive()
    assert died and isinstance(died[0], (redis.ConnectionError, redis.TimeoutError, OSError)), died
    assert not w.errors, w.errors[:5]
    srv._clients = []
    srv._admin = None
    srv.proc = None
    srv.start()
    return w


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_crash_recovery_from_aof(make_server, preamble):
    _crash_recovery(make_server, preamble, cycles=2, seconds=1.5)


@pytest.mark.soak
@soak_only
@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_crash_recovery_from_aof_soak(make_server, preamble):
    _crash_recovery(make_server, preamble, cycles=12, seconds=6.0)


def _crash_recovery(make_server, preamble, cycles, seconds):
    cfg = {"appendonly": "yes", "appendfsync": "always", "aof-use-rdb-preamble": preamble,
           "aof-load-truncated": "yes"}
    srv = make_server(module_args=TR0, config=cfg, name=f"crash-{preamble}")
    hist = History()
    rnd = random.Random(f"crash-{preamble}")
    total = 0
    for cycle in range(cycles):
        w = _crash_cycle(srv, hist, rnd, seconds, rewrite_at=seconds * rnd.uniform(0.2, 0.7))
        total += w.ops
        r = srv.client(decode=False)
        assert srv.info("persistence")["aof_enabled"] == 1
        # 1. every acknowledged write, byte for byte
        snaps, inflight_key = check_recovered(r, hist)
        check_index(r, snaps)
        # 2. a second server from a copy of the same AOF holds the same data
        twin = make_server(module_args=TR0, config=cfg, name=f"twin-{preamble}-{cycle}", start=False)
        copy_aof(srv, twin.dir)
        twin.start()
        assert twin.digest() == srv.digest()
        twin_snaps = snapshots(twin.client(decode=False), hist.hist)
        assert twin_snaps == snaps
        twin.stop()
        # 3. a fresh server given the acknowledged values has the same DEBUG DIGEST
        #    (the in-flight op's key, if any, as the restarted server holds it)
        expect = {k: hist.hist[k][hist.acked[k]] for k in hist.hist}
        if inflight_key is not None:
            expect[inflight_key] = snaps[inflight_key]
        fresh = make_server(module_args=TR0, name=f"replay-{preamble}-{cycle}")
        restore_all(fresh.client(decode=False), expect)
        assert fresh.digest() == srv.digest(), "DEBUG DIGEST of the restart != replay of the acknowledged values"
        fresh.stop()
        # the history goes on from what the server holds now
        for k, sn in snaps.items():
            if hist.last(k) != sn:
                hist.record(k, sn, acked=True)
            hist.acked[k] = len(hist.hist[k]) - 1
        hist.inflight = None
        hist.pending = []
    live = sum(1 for sn in snapshots(srv.client(decode=False), hist.hist).values() if live_of(sn))
    print(f"crash recovery (preamble {preamble}): {cycles} crashes, {total} acknowledged ops, "
          f"{len(hist.hist)} keys, {live} live")
    assert total > 300 * cycles, f"only {total} ops in {cycles} load phases"
    assert live > 20


# ---------------------------------------------------------------------------
# corrupt input: RESTORE of mutated DUMP payloads, SESSION.APPLY of garbage

def rdb_len(n):
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    if n < 2 ** 32:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def read_rdb_len(b, i):
    t = b[i] >> 6
    if t == 0:
        return b[i] & 0x3F, i + 1
    if t == 1:
        return ((b[i] & 0x3F) << 8) | b[i + 1], i + 2
    if b[i] == 0x80:
        return struct.unpack(">I", b[i + 1:i + 5])[0], i + 5
    if b[i] == 0x81:
        return struct.unpack(">Q", b[i + 1:i + 9])[0], i + 9
    raise ValueError("encoded length")


def split_module_dump(payload):
    """DUMP of a module value (rdbcompression no) -> (head, record, tail, ver):
    head = type byte + module id + string opcode; record = the module's own
    bytes; tail = EOF opcode."""
    body, ver = dump_split(payload)
    assert body[0] == 7, "RDB_TYPE_MODULE_2"
    _, i = read_rdb_len(body, 1)  # module id
    op, i = read_rdb_len(body, i)
    assert op == 5, "RDB_MODULE_OPCODE_STRING"
    head = body[:i]
    n, j = read_rdb_len(body, i)
    record, tail = body[j:j + n], body[j + n:]
    assert tail == b"\x00", tail
    return head, record, tail, ver


def join_module_dump(head, record, tail, ver):
    return dump_join(head + rdb_len(len(record)) + record + tail, ver)


# a small MessagePack codec, enough for the module's record
def mp_int(v):
    if 0 <= v < 128:
        return bytes([v])
    if -32 <= v < 0:
        return struct.pack("b", v)
    if 0 <= v < 2 ** 8:
        return b"\xcc" + bytes([v])
    if 0 <= v < 2 ** 16:
        return b"\xcd" + struct.pack(">H", v)
    if 0 <= v < 2 ** 32:
        return b"\xce" + struct.pack(">I", v)
    if 0 <= v < 2 ** 64:
        return b"\xcf" + struct.pack(">Q", v)
    return b"\xd3" + struct.pack(">q", v)


def mp_bin(b):
    if len(b) < 256:
        return b"\xc4" + bytes([len(b)]) + b
    if len(b) < 65536:
        return b"\xc5" + struct.pack(">H", len(b)) + b
    return b"\xc6" + struct.pack(">I", len(b)) + b


def mp_array(items):
    n = len(items)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
    return head + b"".join(items)


def mp_decode(b, i=0):
    t = b[i]
    if t < 0x80:
        return t, i + 1
    if t >= 0xE0:
        return t - 256, i + 1
    if 0x90 <= t <= 0x9F:
        out, i = [], i + 1
        for _ in range(t & 0x0F):
            v, i = mp_decode(b, i)
            out.append(v)
        return out, i
    if t in (0xC4, 0xC5, 0xC6):
        w = {0xC4: 1, 0xC5: 2, 0xC6: 4}[t]
        n = int.from_bytes(b[i + 1:i + 1 + w], "big")
        s = i + 1 + w
        return bytes(b[s:s + n]), s + n
    if t in (0xCC, 0xCD, 0xCE, 0xCF):
        w = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}[t]
        return int.from_bytes(b[i + 1:i + 1 + w], "big"), i + 1 + w
    if t in (0xD0, 0xD1, 0xD2, 0xD3):
        w = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}[t]
        return int.from_bytes(b[i + 1:i + 1 + w], "big", signed=True), i + 1 + w
    raise ValueError(f"msgpack type {t:#x}")


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def flatmap(pairs):
    return b"".join(varint(len(k)) + varint(len(v)) + k + v for k, v in pairs)


RECORD_FIELDS = ["encoding", "subject", "created", "version", "last_access", "idle", "absolute_deadline",
                 "grace", "flags", "revoked_until", "reason", "meta", "data"]
TIME_MAX = 3153600000000
INTS = [0, 1, -1, 2, 127, 128, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32,
        TIME_MAX - 1, TIME_MAX, TIME_MAX + 1, 2 ** 53, 2 ** 62, 2 ** 63 - 1, -(2 ** 63), 2 ** 64 - 1,
        -2 ** 31, 1800000, 1 << 40]
EDGES = [2 ** 63 - 1, 2 ** 63 - 2, -(2 ** 63), TIME_MAX, TIME_MAX + 1, 2 ** 64 - 1, 2 ** 53, 2 ** 53 + 1]


class Mutator:
    def __init__(self, rnd, records, seeds):
        self.rnd = rnd
        self.records = records  # decoded records (lists) of the seeds
        self.seeds = seeds  # (head, record bytes, tail, ver)

    def bytes_mutation(self, b):
        rnd = self.rnd
        b = bytearray(b)
        for _ in range(rnd.choice([1, 1, 1, 2, 3, 8])):
            kind = rnd.randrange(7)
            if not b:
                b = bytearray(rnd.randbytes(rnd.randint(1, 8)))
            pos = rnd.randrange(len(b))
            if kind == 0:
                b[pos] ^= 1 << rnd.randrange(8)
            elif kind == 1:
                b[pos] = rnd.choice([0x00, 0xFF, 0x7F, 0x80, 0xC0, 0xC1, 0xC4, 0xCF, 0xD3, 0xDC, 0xDD, 0x9F])
            elif kind == 2:
                del b[pos:]  # truncate
            elif kind == 3:
                b[pos:pos] = rnd.randbytes(rnd.randint(1, 16))  # insert
            elif kind == 4:
                del b[pos:pos + rnd.randint(1, 8)]
            elif kind == 5:
                n = rnd.randint(1, 16)
                b[pos:pos] = b[pos:pos + n]  # duplicate a chunk
            else:
                b[pos] = rnd.randrange(256)
        return bytes(b)

    def hostile_map(self):
        rnd = self.rnd
        kind = rnd.randrange(6)
        pairs = [(rnd.randbytes(rnd.randint(0, 6)), rnd.randbytes(rnd.randint(0, 20)))
                 for _ in range(rnd.randint(0, 5))]
        if kind == 0:
            return flatmap(sorted(pairs))
        if kind == 1:
            return flatmap(pairs + pairs)  # duplicates / unordered
        if kind == 2:
            return flatmap(sorted(pairs, reverse=True))
        if kind == 3:  # a length that runs past the end
            return varint(rnd.choice([1 << 20, 2 ** 34, 2 ** 35 - 1])) + varint(1) + b"kv"
        if kind == 4:  # an endless varint
            return b"\xff" * rnd.randint(1, 12)
        return flatmap(sorted(pairs))[:-1] if pairs else b"\x01"

    def structured(self):
        """A well-formed MessagePack record with hostile field values."""
        rnd = self.rnd
        rec = list(rnd.choice(self.records))
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(len(rec))
            f = RECORD_FIELDS[i]
            if f in ("subject", "reason"):
                rec[i] = rnd.randbytes(rnd.choice([0, 1, 511, 512, 513, 257, 4000]))
            elif f in ("meta", "data"):
                rec[i] = self.hostile_map()
            elif f == "flags":
                rec[i] = rnd.choice([0, 1, 2, 3, 4, 7, 255, 2 ** 31, 2 ** 32 - 1])
            elif f == "encoding":
                rec[i] = rnd.choice([0, 1, 2, 127])
            else:
                rec[i] = rnd.choice(EDGES if rnd.random() < 0.3 else INTS)
        if rnd.random() < 0.1:  # too few / too many fields
            rec = rec[:rnd.randrange(len(rec))] if rnd.random() < 0.5 else rec + [0]
        items = [mp_bin(v) if isinstance(v, bytes) else mp_int(v) for v in rec]
        if items and rnd.random() < 0.1:  # a field of the wrong type
            j = rnd.randrange(len(items))
            items[j] = mp_bin(b"x") if items[j][0] != 0xC4 else mp_int(5)
        return mp_array(items)

    def payload(self):
        """A full DUMP payload (CRC fixed) and the family it came from."""
        head, record, tail, ver = self.rnd.choice(self.seeds)
        x = self.rnd.random()
        if x < 0.15:  # the RDB framing around the record
            body = head + rdb_len(len(record)) + record + tail
            return dump_join(self.bytes_mutation(body), ver), "framing"
        if x < 0.6:
            return join_module_dump(head, self.bytes_mutation(record), tail, ver), "record-bytes"
        return join_module_dump(head, self.structured(), tail, ver), "record-fields"


def seed_sessions(r, rnd=None):
    """Sessions of many shapes, and their DUMPs."""
    rnd = rnd or random.Random(5)
    keys = []

    def mk(*args, revoke=None):
        k = new_key(rnd.choice(TENANTS))
        assert ex(r, "SESSION.CREATE", k, *args) == 1
        if revoke:
            ex(r, "SESSION.REVOKE", k, "REASON", revoke)
        keys.append(k)

    mk()
    mk("SUBJECT", "alice", "DATA", "cart", "[1,2,3]", "theme", "dark")
    mk("SUBJECT", "bob", "IDLE", 60000, "ABSOLUTE", 0, "GRACE", 0, "META", 2, "ip", "10.1.1.1", "ua", "curl",
       "DATA", *[x for j in range(30) for x in (f"field{j:02d}", "v" * j)])
    mk("SUBJECT", "carol", "DATA", "big", rnd.randbytes(5000))
    mk("SUBJECT", "dave", "DATA", "x", "y", revoke="logout")
    mk("SUBJECT", "\u00e9\u00e8", "META", 1, "node", "n1", "DATA", "", "")
    seeds = [split_module_dump(r.dump(k)) for k in keys]
    for k in keys:
        r.delete(k)
    return seeds


def check_loaded(r, key, other):
    """A value RESTORE/APPLY accepted: every path reads it without harm."""
    problems = []

    def call(*a):
        try:
            return ex(r, *a)
        except redis.ResponseError as e:
            msg = str(e)
            if "internal error" in msg.lower() or msg.startswith("ERR internal"):
                problems.append(f"{a[0]}: {msg}")
            return e

    t = s_(call("TYPE", key))
    if t != "sessionT1":
        # a framing mutation can make a valid payload of a plain type (an
        # empty string, say): Redis's own business, nothing to check here
        return problems
    for args in (("SESSION.GET",), ("SESSION.GET", "NODATA"), ("SESSION.GET", "FIELDS", 1, "x"),
                 ("SESSION.TTL",), ("SESSION.GET", "TOUCH"), ("SESSION.RENEW",)):
        g = call(args[0], key, *args[1:])
        if args[0] == "SESSION.GET" and isinstance(g, list):
            names = [s_(n) for n in g[0::2]]
            if names[:2] != GET_FIELDS[:2] or not set(GET_FIELDS) - {"data"} <= set(names):
                problems.append(f"GET reply fields {names}")
            d = dict(zip(names, g[1::2]))
            if not (isinstance(d.get("version"), int) and d["version"] >= 1):
                problems.append(f"GET version {d.get('version')!r}")
    call("SESSION.SET", key, "DATA", "z", "1")
    call("SESSION.CAS", key, 1)
    call("MEMORY", "USAGE", key)
    dig = call("DEBUG", "DIGEST-VALUE", key)
    d = call("DUMP", key)
    if isinstance(d, bytes):
        # a loaded value dumps to a payload that loads back to the same value
        try:
            # (DIGEST-VALUE marks whether the key has an expire: keep it)
            at = ex(r, "PEXPIRETIME", key)
            ex(r, "RESTORE", other, max(at, 0), d, "REPLACE", *(["ABSTTL"] if at > 0 else []))
            dig2 = ex(r, "DEBUG", "DIGEST-VALUE", key)
            same = ex(r, "DEBUG", "DIGEST-VALUE", other) == dig2 and ex(r, "DUMP", other) == ex(r, "DUMP", key)
            # a deadline a few ms away (a fuzzed idle of 255 ms, say) may pass
            # between these reads and expire one copy: only both alive counts
            if not same and ex(r, "EXISTS", key, other) == 2:
                problems.append("DUMP/RESTORE round trip of a loaded value changed it")
        except redis.ResponseError as e:
            problems.append(f"its own DUMP refused by RESTORE: {e}")
        r.delete(other)
    return problems


class Problems:
    """What went wrong with accepted values, grouped by kind (one example each)."""

    def __init__(self):
        self.kinds = {}

    def add(self, kind, family, payload):
        e = self.kinds.setdefault(kind, [0, family, payload.hex()[:300]])
        e[0] += 1

    def __bool__(self):
        return bool(self.kinds)

    def __str__(self):
        return "; ".join(f"{n}x [{kind}] (first: {fam}, payload {hexp})"
                         for kind, (n, fam, hexp) in sorted(self.kinds.items()))


def fuzz_restore(r, m, n, seconds, rnd, problems):
    # the unmutated seeds load back exactly (the harness itself is right)
    for head, rec, tail, ver in m.seeds:
        k = new_key("fz")
        assert ex(r, "RESTORE", k, 0, join_module_dump(head, rec, tail, ver)) in (b"OK", "OK", True)
        r.delete(k)
        assert ex(r, "RESTORE", k, 0, join_module_dump(head, mp_array(
            [mp_bin(v) if isinstance(v, bytes) else mp_int(v) for v in mp_decode(rec)[0]]), tail, ver)) \
            in (b"OK", "OK", True)
        r.delete(k)
    stats = {}
    kept = []
    t0 = time.monotonic()
    done = 0
    while done < n and time.monotonic() - t0 < seconds:
        payload, fam = m.payload()
        k = new_key(rnd.choice(TENANTS))
        try:
            ex(r, "RESTORE", k, 0, payload)
            ok = True
        except redis.ResponseError as e:
            ok = False
            if "internal" in str(e).lower():
                problems.add(f"RESTORE: {e}", fam, payload)
        stats.setdefault(fam, [0, 0])[ok] += 1
        if ok:
            found = check_loaded(r, k, new_key("fzcopy"))
            for p in found:
                problems.add(p, fam, payload)
            if not found and len(kept) < 200 and rnd.random() < 0.5:
                kept.append(k)  # sound values stay for the RDB round trip below
            else:
                ex(r, rnd.choice(["DEL", "UNLINK"]), k)
        done += 1
        if done % 200 == 0:
            assert r.ping(), "server stopped answering"
    return stats, kept, done


def fuzz_apply(r, feed, n, seconds, rnd, seeds_records, problems):
    stats = [0, 0]
    records = [mp_decode(s)[0] for s in seeds_records]
    t0 = time.monotonic()
    for i in range(n):
        if time.monotonic() - t0 > seconds:
            break
        k = new_key(rnd.choice(TENANTS))
        x = rnd.random()
        if x < 0.3:
            payload = rnd.randbytes(rnd.randint(0, 64))
        elif x < 0.65:
            payload = Mutator(rnd, [], []).bytes_mutation(rnd.choice(seeds_records))
        else:
            payload = Mutator(rnd, records, []).structured()
        args = ["SESSION.APPLY", k, payload] + (["NOEXPIRE"] if rnd.random() < 0.3 else [])
        try:
            feed.call(*args)
            ok = True
        except redis.ResponseError as e:
            ok = False
            if "internal" in str(e).lower():
                problems.add(f"APPLY: {e}", "apply", payload)
        stats[ok] += 1
        if ok:
            for p in check_loaded(r, k, new_key("fzcopy")):
                problems.add(p, "apply", payload)
            r.delete(k)
        if i % 200 == 0:
            assert r.ping()
    return stats


def zero_index(r):
    assert r.dbsize() == 0
    for t in TENANTS:
        assert ex(r, "SESSION.COUNT", t) == 0
        for s in ("alice", "bob", "carol", "dave"):
            assert ex(r, "SESSION.LIST", t, s) == []
    st = {s_(k): v for k, v in pairs_to_dict(ex(r, "SESSION.STATS")).items()}
    assert (st["sessions"], st["data_bytes"]) == (0, 0), st


def _corrupt_input(make_server, make_fed, n_restore, n_apply, seconds):
    srv = make_server(config={"rdbcompression": "no"}, name="fuzz")
    r = srv.client(decode=False)
    rnd = random.Random(2026)
    seeds = seed_sessions(r)
    records = [mp_decode(rec)[0] for _, rec, _, _ in seeds]
    assert all(len(rec) == len(RECORD_FIELDS) for rec in records), records
    problems = Problems()
    stats, kept, done = fuzz_restore(r, Mutator(rnd, records, seeds), n_restore, seconds, rnd, problems)
    assert r.ping()
    # the sound values that were accepted survive an RDB round trip, digest
    # intact (their writes gave them an expire, maybe a past one: drop it so
    # that nothing expires between the two digests)
    for k in kept:
        r.persist(k)
    kept = [k for k in kept if r.exists(k)]
    before = srv.digest()
    assert ex(r, "DEBUG", "RELOAD") in (b"OK", "OK", True)
    assert srv.digest() == before
    assert r.dbsize() == len(kept)
    # and the index/counters are exact once every fuzzed key is gone
    if kept:
        r.delete(*kept)
    zero_index(r)
    # effects come from a primary (clients are refused them): a fed server
    fsrv, feed = make_fed(name="fuzz-apply")
    fr = fsrv.client(decode=False)
    astats = fuzz_apply(fr, feed, n_apply, seconds / 2, rnd, [rec for _, rec, _, _ in seeds], problems)
    assert fr.ping()
    zero_index(fr)
    print(f"RESTORE: {done} mutated payloads, (refused, accepted) per family {stats}; "
          f"APPLY (refused, accepted) {astats}; problems: {problems or 'none'}")
    assert done >= min(n_restore, 1000)
    assert stats["record-bytes"][0] > 0 and stats["record-fields"][0] > 0 and astats[0] > 0
    assert not problems, f"accepted values that misbehave: {problems}"


def test_corrupt_dump_payloads_and_apply_garbage(make_server, make_fed):
    _corrupt_input(make_server, make_fed, n_restore=8000, n_apply=3000, seconds=25)


@pytest.mark.soak
@soak_only
def test_corrupt_input_soak(make_server, make_fed):
    _corrupt_input(make_server, make_fed, n_restore=200000, n_apply=50000, seconds=600)


@pytest.mark.parametrize("how,write", [
    ("RESTORE", ["SESSION.SET", "DATA", "z", "1"]),
    ("RESTORE", ["SESSION.CAS", "{v}"]),
    ("RESTORE", ["SESSION.RENEW", "IDLE", 900000]),
    ("APPLY", ["SESSION.SET", "DATA", "z", "1"]),
], ids=["restore-set", "restore-cas", "restore-renew-idle", "apply-set"])
def test_restored_extreme_version_stays_persistable(make_server, make_fed, how, write):
    """Found by the fuzzer: a value with version i64::MAX loaded, a SET then
    wrapped the version negative and the value no longer loaded (its own
    DUMP refused, DEBUG RELOAD failing, a restart from the RDB impossible).
    A value with an extreme version is either refused, or every write on it
    leaves a value that still dumps, restores and reloads."""
    if how == "APPLY":
        srv, feed = make_fed(config={"rdbcompression": "no"}, name="extreme")
    else:
        srv = make_server(config={"rdbcompression": "no"}, name="extreme")
    r = srv.client(decode=False)
    head, rec, tail, ver = seed_sessions(r)[1]
    outcomes = []
    for version in (2 ** 63 - 1, 2 ** 63 - 2, 2 ** 62, 2 ** 53 + 1, 2 ** 53, 2 ** 53 - 1, 2 ** 31):
        fields = mp_decode(rec)[0]
        fields[RECORD_FIELDS.index("version")] = version
        record = mp_array([mp_bin(v) if isinstance(v, bytes) else mp_int(v) for v in fields])
        k = new_key("acme")
        try:
            if how == "RESTORE":
                ex(r, "RESTORE", k, 0, join_module_dump(head, record, tail, ver))
            else:
                feed.call("SESSION.APPLY", k, record)
        except redis.ResponseError as e:
            outcomes.append((version, f"refused: {e}"))
            continue
        args = [a.format(v=version) if isinstance(a, str) else a for a in write]
        for _ in range(3):
            try:
                reply = ex(r, args[0], k, *args[1:])
            except redis.ResponseError as e:
                reply = e
            g = norm_session(ex(r, "SESSION.GET", k, "NODATA"))[1]
            assert 1 <= g["version"], f"v{version}: {args[0]} answered {reply!r}; the version is now {g['version']}"
            if args[0] == "SESSION.CAS":
                args[1] = str(g["version"])
        outcomes.append((version, f"accepted, then {reply!r}, version {g['version']}"))
        d = r.dump(k)
        ex(r, "RESTORE", new_key("acme"), 0, d)
    n = r.dbsize()
    assert ex(r, "DEBUG", "RELOAD") in (b"OK", "OK", True), outcomes
    assert r.dbsize() == n
    print(outcomes)


# ---------------------------------------------------------------------------
# memory


def used_memory(srv):
    return srv.info("memory")["used_memory"]


def _create_delete_cycles(srv, cycles, batch=500):
    r = srv.client()
    n = 0
    i = 0
    while n < cycles:
        m = min(batch, cycles - n)
        keys = [new_key(TENANTS[j % 2]) for j in range(m)]
        p = r.pipeline(transaction=False)
        for j, k in enumerate(keys):
            # a fresh subject each time: index entries come and go too
            p.execute_command("SESSION.CREATE", k, "SUBJECT", f"u{i}-{j}", "META", 1, "ip", "10.0.0.1",
                              "DATA", "cart", "x" * (j % 200), "n", str(j))
            if j % 3 == 0:
                p.execute_command("SESSION.SET", k, "DATA", "more", "y" * 64)
            if j % 5 == 0:
                p.execute_command("SESSION.GET", k, "TOUCH")
        res = p.execute()
        assert res.count(1) >= m
        p = r.pipeline(transaction=False)
        for j, k in enumerate(keys):
            if j % 4 == 0:
                p.execute_command("SESSION.REVOKE", k)
            p.execute_command("UNLINK" if j % 2 else "DEL", k)
        p.execute()
        n += m
        i += 1
    return r


def _memory_cycles(make_server, cycles):
    srv = make_server(module_args=TR0, name="mem")
    r = _create_delete_cycles(srv, 5000)  # warm-up: allocator pools, dict sizes, counters rows
    time.sleep(0.2)
    base = used_memory(srv)
    t0 = time.monotonic()
    _create_delete_cycles(srv, cycles)
    took = time.monotonic() - t0
    time.sleep(0.2)
    after = used_memory(srv)
    assert r.dbsize() == 0
    st = {s_(k): v for k, v in pairs_to_dict(ex(r, "SESSION.STATS")).items()}
    assert (st["sessions"], st["data_bytes"]) == (0, 0), st
    assert st["created"] == cycles + 5000
    for t in TENANTS:
        assert ex(r, "SESSION.COUNT", t) == 0
    print(f"{cycles} create/delete cycles in {took:.1f}s: used_memory {base} -> {after} ({after - base:+d} B)")
    assert after - base < max(1 << 20, base // 50), f"used_memory grew from {base} to {after}"


def test_memory_returns_to_baseline(make_server):
    _memory_cycles(make_server, 100000)


@pytest.mark.soak
@soak_only
def test_memory_returns_to_baseline_soak(make_server):
    _memory_cycles(make_server, 1000000)


def test_allkeys_lru_evicts_sessions_cleanly(make_server):
    srv = make_server(config={"maxmemory-policy": "allkeys-lru"}, name="lru")
    r = srv.client()
    subjects = [f"s{i}" for i in range(30)]
    base = used_memory(srv)
    ex(r, "CONFIG", "SET", "maxmemory", base + 4 * 1024 * 1024)
    made = {}
    for b in range(40):
        p = r.pipeline(transaction=False)
        batch = [(new_key(TENANTS[(b + j) % 2]), subjects[(b * 7 + j) % 30]) for j in range(200)]
        for k, s in batch:
            p.execute_command("SESSION.CREATE", k, "SUBJECT", s, "DATA", "blob", "z" * 1000)
        for (k, s), res in zip(batch, p.execute(raise_on_error=False)):
            assert res == 1, res
            made[k] = s
    # Redis evicts before running any command, CONFIG SET included: read the
    # count only once the limit is off, or a last eviction goes uncounted
    ex(r, "CONFIG", "SET", "maxmemory", 0)
    evicted = srv.info("stats")["evicted_keys"]
    assert evicted > 1000, f"only {evicted} keys evicted"
    present = {k for k in made if r.exists(k)}
    assert len(made) - len(present) == evicted
    st = {s_(k): v for k, v in pairs_to_dict(ex(r, "SESSION.STATS")).items()}
    assert st["evicted"] == evicted, (st["evicted"], evicted)
    assert st["sessions"] == len(present) == r.dbsize()
    assert st["created"] == len(made)
    assert st["data_bytes"] == len(present) * (4 + 1000)
    per_tenant = 0
    for t in TENANTS:
        ts = {s_(k): v for k, v in pairs_to_dict(ex(r, "SESSION.STATS", t)).items()}
        mine = {k for k in present if k.split(":")[1] == t}
        assert ts["sessions"] == len(mine) == ex(r, "SESSION.COUNT", t)
        per_tenant += ts["evicted"]
        for s in subjects:
            want = sorted(k for k in mine if made[k] == s)
            assert sorted(ex(r, "SESSION.LIST", t, s)) == want, (t, s)
    assert per_tenant == evicted
    gone = next(k for k in made if k not in present)
    assert ex(r, "SESSION.GET", gone) is None


def test_noeviction_refuses_deny_oom_commands_when_full(make_server):
    srv = make_server(name="oom")
    r = srv.client()
    base = used_memory(srv)
    ex(r, "CONFIG", "SET", "maxmemory", base + 2 * 1024 * 1024)
    made = []
    oom = None
    for i in range(20000):
        k = new_key("acme")
        try:
            ex(r, "SESSION.CREATE", k, "SUBJECT", f"s{i % 5}", "DATA", "blob", "q" * 2000)
        except redis.ResponseError as e:
            oom = str(e)
            break
        made.append(k)
    assert oom is not None, "never hit maxmemory"
    assert oom.startswith("OOM "), oom
    assert len(made) > 100
    # from here on firmly over the limit (a freed query buffer cannot bring
    # used_memory back under it between two commands)
    ex(r, "CONFIG", "SET", "maxmemory", used_memory(srv) - 1024 * 1024)
    k0 = made[0]
    # deny-oom commands are refused ...
    for args in (["SESSION.CREATE", new_key("acme")], ["SESSION.SET", k0, "DATA", "a", "b"],
                 ["SESSION.CAS", k0, 1, "DATA", "a", "b"]):
        with pytest.raises(redis.ResponseError, match="^OOM "):
            ex(r, *args)
    # ... reads and renewals and the keyless reads still work
    g = norm_session(ex(r, "SESSION.GET", k0))[1]
    assert g["data"] == {"blob": "q" * 2000} and g["version"] == 1
    assert norm_session(ex(r, "SESSION.GET", k0, "TOUCH"))[1]["version"] == 1
    assert ex(r, "SESSION.RENEW", k0) > 0
    assert ex(r, "SESSION.TTL", k0) is not None
    assert ex(r, "SESSION.COUNT", "acme") == len(made)
    assert sorted(ex(r, "SESSION.LIST", "acme", "s0")) == sorted(made[0::5])
    st = {s_(k): v for k, v in pairs_to_dict(ex(r, "SESSION.STATS")).items()}
    assert st["sessions"] == len(made) and st["evicted"] == 0
    assert srv.info("stats")["evicted_keys"] == 0
    # revoking and deleting free memory and are allowed
    assert ex(r, "SESSION.REVOKE", made[1]) == 1
    r.delete(*made[2:])
    assert ex(r, "SESSION.COUNT", "acme") == 1
    assert ex(r, "SESSION.CREATE", new_key("acme"), "DATA", "small", "1") == 1
    ex(r, "CONFIG", "SET", "maxmemory", 0)
    assert ex(r, "SESSION.SET", k0, "DATA", "a", "b") == 2
