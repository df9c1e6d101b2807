"""Redis Cluster (issue 6): 3 primaries + 3 replicas with the module loaded.

- thousands of sessions over the whole slot space, created and used through
  redis-py's RedisCluster; every keyed command is routed by its key (and a
  node that does not own the slot answers MOVED to the right one);
- the keyless commands (LIST, COUNT, REVOKEALL, STATS, TENANT SET/GET/DEL/
  LIST) sent to every primary and joined (`cluster.fanout`) give the right
  cluster-wide answer;
- resharding under load: slots holding sessions move between primaries (by
  hand with CLUSTER SETSLOT + MIGRATE, clients getting ASK half-way, and
  with `redis-cli --cluster reshard`) while a client keeps reading
  (GET TOUCH) and writing (SET IFVERSION); no session is lost, no version
  goes backwards, deadlines are those of the client's own touches, and the
  per-subject index of every node is right.

The long version (`@soak`, SESSION_SOAK=1, make soak) keeps moving slots
around all three primaries for a few minutes under the same load.
"""

import os
import random
import threading
import time

import pytest
import redis

from cluster import Cluster, fanout, fanout_replies, fanout_rc, slot_of
from sessionlib import new_key, norm_session, pairs_to_dict, to_str

SOAK = os.environ.get("SESSION_SOAK") == "1"
soak_only = pytest.mark.skipif(not SOAK, reason="long version: SESSION_SOAK=1 (make soak)")
N_SESSIONS = 3000
TENANTS = ["acme", "globex"]
SUBJECTS = [f"user{i}" for i in range(25)]


def ex(c, *a, **kw):
    return c.execute_command(*a, **kw)


def get(rc, key, *opts):
    """SESSION.GET through the cluster client -> dict (or None)."""
    return norm_session(ex(rc, "SESSION.GET", key, *opts))[1]


def data_bytes(data):
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())


# ---------------------------------------------------------------------------
# fixtures


def _fail_if_crashed(c):
    crashed = c.crashed()
    if crashed:
        msgs = "\n\n".join(f"--- {s.name} (port {s.port}) died ---\n{s.log_tail(60)}" for s in crashed)
        pytest.fail(f"redis-server crashed:\n{msgs}", pytrace=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"), module_args={"touch-resolution": 0}, name="n")
    c.start()
    yield c
    crashed = c.crashed()
    for s in crashed:
        s.proc = None
    c.stop()
    assert not crashed, f"nodes crashed: {crashed}"


@pytest.fixture
def fresh_cluster(tmp_path_factory, request):
    c = Cluster(tmp_path_factory.mktemp("rcluster"), module_args={"touch-resolution": 0}, name="r")
    request.node._redis_servers = c.nodes
    c.start()
    yield c
    crashed = c.crashed()
    for s in crashed:
        s.proc = None
    c.stop()
    if crashed:
        logs = "\n".join(f"--- {s.name} (port {s.port}) died ---\n{s.log_tail(60)}" for s in crashed)
        pytest.fail(f"redis-server crashed:\n{logs}", pytrace=False)


@pytest.fixture(autouse=True)
def _watch_cluster(request):
    """Server logs in failure reports; a crashed node fails the test."""
    if "cluster" not in request.fixturenames:
        yield
        return
    c = request.getfixturevalue("cluster")
    request.node._redis_servers = c.nodes
    yield
    _fail_if_crashed(c)


@pytest.fixture(scope="module")
def rc(cluster):
    c = cluster.client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def population(cluster, rc):
    """N_SESSIONS sessions over all slots: key -> {tenant, subject, data}."""
    rnd = random.Random(6)
    model = {}
    keys = []
    for i in range(N_SESSIONS):
        t = TENANTS[i % len(TENANTS)]
        k = new_key(t)
        s = SUBJECTS[rnd.randrange(len(SUBJECTS))]
        data = {"n": str(i), "blob": "x" * rnd.randint(0, 40)}
        model[k] = {"tenant": t, "subject": s, "data": data}
        keys.append(k)
    p = rc.pipeline()
    for k in keys:
        m = model[k]
        p.execute_command("SESSION.CREATE", k, "SUBJECT", m["subject"], "IDLE", 3600000,
                          "DATA", *[x for kv in m["data"].items() for x in kv])
    assert p.execute() == [1] * len(keys)
    return model


def owned_keys(cluster, keys):
    """port -> set of keys whose slot that primary owns now."""
    smap = cluster.slot_map()
    out = {}
    for k in keys:
        out.setdefault(smap[slot_of(k)], set()).add(k)
    return out


# ---------------------------------------------------------------------------
# topology and placement


def test_cluster_has_three_primaries_with_a_replica_each(cluster):
    prim = cluster.primaries()
    assert len(prim) == 3
    for p in prim:
        reps = cluster.replicas_of(p)
        assert len(reps) == 1, f"primary {p.port} has replicas {reps}"
    for s in cluster.nodes:
        mods = [to_str(pairs_to_dict(m)["name"]) for m in ex(s.admin(), "MODULE", "LIST")]
        assert "session" in mods, f"module not loaded on {s.port}: {mods}"
    # every keyed command declares key 1, the keyless ones none (COMMAND INFO)
    info = ex(cluster.nodes[0].admin(), "COMMAND", "INFO", "session.get", "session.list")
    g, l = info["session.get"], info["session.list"]
    assert (g["first_key_pos"], g["last_key_pos"], g["step_count"]) == (1, 1, 1), g
    assert (l["first_key_pos"], l["last_key_pos"], l["step_count"]) == (0, 0, 0), l


def test_sessions_spread_over_all_slots_and_primaries(cluster, rc, population):
    keys = list(population)
    slots = {slot_of(k) for k in keys}
    # 3000 random keys hit ~2700 distinct slots, spread over the whole space
    assert len(slots) > 0.8 * len(keys)
    assert min(slots) < 200 and max(slots) > 16384 - 200
    per_node = owned_keys(cluster, keys)
    prim = cluster.primaries()
    assert sorted(per_node) == sorted(p.port for p in prim)
    for p in prim:
        have = {to_str(k) for k in p.admin().scan_iter(match="sess:*", count=1000)}
        want = per_node[p.port]
        assert have == want, f"primary {p.port}: {len(have - want)} unexpected, {len(want - have)} missing"
        assert 0.2 * len(keys) < len(want) < 0.5 * len(keys)
        for t in TENANTS:
            want_t = sum(1 for k in want if population[k]["tenant"] == t)
            assert ex(p.admin(), "SESSION.COUNT", t) == want_t
    # the replicas hold the same sessions, and their index says so too
    cluster.wait_replicas_synced()
    for p in prim:
        for rep in cluster.replicas_of(p):
            assert rep.admin().dbsize() == p.admin().dbsize()
            for t in TENANTS:
                assert ex(rep.admin(), "SESSION.COUNT", t) == ex(p.admin(), "SESSION.COUNT", t)
    # every session reads back through the cluster client
    pipe = rc.pipeline()
    for k in keys:
        pipe.execute_command("SESSION.GET", k)
    for k, reply in zip(keys, pipe.execute()):
        s = norm_session(reply)[1]
        assert s is not None, k
        assert s["subject"] == population[k]["subject"]
        assert s["data"] == population[k]["data"]
        assert s["version"] == 1


KEYED = [
    ("SESSION.CREATE",),
    ("SESSION.GET",),
    ("SESSION.GET", "TOUCH"),
    ("SESSION.RENEW",),
    ("SESSION.SET", "DATA", "a", "b"),
    ("SESSION.CAS", 1),
    ("SESSION.REVOKE",),
    ("SESSION.TTL",),
    ("SESSION.APPLYRENEW", 1, 1000, 1),
    ("SESSION.APPLYSET", 2, "DATA", "a", "b"),
    ("SESSION.APPLY", "garbage"),
]


def test_keyed_commands_answer_moved_on_the_wrong_node(cluster):
    """Each keyed command is refused with MOVED <slot> <owner> by a primary
    that does not own the key's slot: Redis finds the key at position 1."""
    prim = cluster.primaries()
    for i in range(12):
        key = new_key("acme")
        owner = cluster.owner(key)
        wrong = [p for p in prim if p.port != owner.port][i % 2]
        for c in KEYED:
            name, rest = c[0], list(c[1:])
            with pytest.raises(redis.ResponseError) as e:
                ex(wrong.admin(), name, key, *rest)
            assert str(e.value) == f"MOVED {slot_of(key)} 127.0.0.1:{owner.port}", (name, str(e.value))
        # keyless commands run wherever they are sent
        assert ex(wrong.admin(), "SESSION.COUNT", "acme", "nobody-here") == 0
        assert ex(wrong.admin(), "SESSION.LIST", "acme", "nobody-here") == []


def test_every_keyed_command_through_the_cluster_client(cluster, rc):
    """CREATE/GET/RENEW/SET/CAS/REVOKE/TTL through RedisCluster on keys of
    every primary, with the replies of the contract."""
    keys = [new_key("kc") for _ in range(300)]
    assert len({cluster.owner(k).port for k in keys[:60]}) == 3
    for i, k in enumerate(keys):
        assert ex(rc, "SESSION.CREATE", k, "SUBJECT", f"s{i % 7}", "IDLE", 600000, "META", 1, "ip", "10.0.0.1",
                  "DATA", "a", "1", "b", "2") == 1
        with pytest.raises(redis.ResponseError, match="^EXISTS"):
            ex(rc, "SESSION.CREATE", k)
        s = get(rc, k)
        assert (s["version"], s["state"], s["meta"], s["data"]) == (1, "active", {"ip": "10.0.0.1"},
                                                                   {"a": "1", "b": "2"})
        assert get(rc, k, "FIELDS", 1, "b")["data"] == {"b": "2"}
        assert get(rc, k, "NODATA").get("data", {}) == {}
        t = get(rc, k, "TOUCH")
        assert t["version"] == 1 and t["last_access"] >= s["last_access"]
        left = ex(rc, "SESSION.RENEW", k)
        assert 0 < left <= 600000
        assert ex(rc, "SESSION.RENEW", k, "IDLE", 900000) > 600000
        assert get(rc, k)["version"] == 2  # RENEW IDLE counts as a change
        assert ex(rc, "SESSION.SET", k, "META", 1, "ua", "curl", "UNSET", 1, "a", "DATA", "c", "3") == 3
        assert ex(rc, "SESSION.SET", k, "IFVERSION", 3, "DATA", "d", "4") == 4
        with pytest.raises(redis.ResponseError, match="^CONFLICT 4$"):
            ex(rc, "SESSION.SET", k, "IFVERSION", 3, "DATA", "never", "x")
        with pytest.raises(redis.ResponseError, match="^CONFLICT 4$"):
            ex(rc, "SESSION.CAS", k, 1, "DATA", "never", "x")
        assert ex(rc, "SESSION.CAS", k, 4, "DATA", "e", "5") == 5
        s = get(rc, k)
        assert s["data"] == {"e": "5"} and s["meta"] == {"ip": "10.0.0.1", "ua": "curl"}
        ttl = pairs_to_dict(ex(rc, "SESSION.TTL", k))
        assert to_str(ttl["state"]) == "active" and 0 < ttl["idle_ms"] <= 900000
        if i % 3 == 0:
            assert ex(rc, "SESSION.REVOKE", k, "REASON", "bye") == 1
            with pytest.raises(redis.ResponseError, match="^REVOKED bye"):
                ex(rc, "SESSION.GET", k)
            assert ex(rc, "SESSION.REVOKE", k) in (0, 1)
    missing = new_key("kc")
    assert ex(rc, "SESSION.GET", missing) is None
    assert ex(rc, "SESSION.RENEW", missing) is None
    assert ex(rc, "SESSION.SET", missing, "DATA", "a", "b") is None
    assert ex(rc, "SESSION.CAS", missing, 1) is None
    assert ex(rc, "SESSION.TTL", missing) is None
    assert ex(rc, "SESSION.REVOKE", missing) == 0
    # joined counts: 200 live, 100 revoked; subjects s0..s6
    assert fanout(cluster, "SESSION.COUNT", "kc") == 200
    live = [k for i, k in enumerate(keys) if i % 3 != 0]
    for j in range(7):
        want = sorted(k for i, k in enumerate(keys) if i % 3 != 0 and i % 7 == j)
        assert fanout(cluster, "SESSION.LIST", "kc", f"s{j}") == want
    st = fanout(cluster, "SESSION.STATS", "kc")
    assert st["sessions"] == 200 and st["created"] == 300 and st["revocations"] == 100
    assert st["cas_conflicts"] == 600  # one SET IFVERSION and one CAS conflict per key
    assert st["data_bytes"] == 2 * len(live)  # {"e": "5"}


def test_fanout_list_and_count(cluster, rc, population):
    by_subject = {}
    for k, m in population.items():
        by_subject.setdefault((m["tenant"], m["subject"]), []).append(k)
    per_node = owned_keys(cluster, population)
    for t in TENANTS:
        total = sum(1 for m in population.values() if m["tenant"] == t)
        assert fanout(cluster, "SESSION.COUNT", t) == total
        assert fanout_rc(rc, "SESSION.COUNT", t) == total
        for s in SUBJECTS:
            want = sorted(by_subject.get((t, s), []))
            assert fanout(cluster, "SESSION.LIST", t, s) == want
            assert fanout(cluster, "SESSION.COUNT", t, s) == len(want)
            # each primary lists exactly the keys of its own slots
            replies = fanout_replies(cluster, "SESSION.LIST", t, s)
            for port, lst in replies.items():
                assert sorted(lst) == sorted(set(want) & per_node[port]), (t, s, port)
        assert fanout_rc(rc, "SESSION.LIST", t, SUBJECTS[0]) == sorted(by_subject.get((t, SUBJECTS[0]), []))
        st = fanout(cluster, "SESSION.STATS", t)
        assert st["sessions"] == total
        assert st["data_bytes"] == sum(data_bytes(m["data"]) for m in population.values() if m["tenant"] == t)
    # the same answers from the replicas (read-only commands)
    cluster.wait_replicas_synced()
    for p in cluster.primaries():
        for rep in cluster.replicas_of(p):
            for s in SUBJECTS[:5]:
                assert sorted(ex(rep.admin(), "SESSION.LIST", "acme", s)) == \
                    sorted(ex(p.admin(), "SESSION.LIST", "acme", s))


def test_fanout_revokeall(cluster, rc, population):
    t, s = "acme", SUBJECTS[3]
    mine = sorted(k for k, m in population.items() if (m["tenant"], m["subject"]) == (t, s))
    assert len(mine) >= 20
    assert len({cluster.owner(k).port for k in mine}) == 3, "subject should have sessions on every primary"
    others_before = fanout(cluster, "SESSION.COUNT", t) - len(mine)
    keep = mine[len(mine) // 2]
    n = fanout(cluster, "SESSION.REVOKEALL", t, s, "EXCEPT", keep, "REASON", "logout-all")
    assert n == len(mine) - 1
    assert fanout(cluster, "SESSION.LIST", t, s) == [keep]
    assert fanout(cluster, "SESSION.COUNT", t, s) == 1
    for k in mine:
        if k == keep:
            assert get(rc, k)["version"] == 1
        else:
            with pytest.raises(redis.ResponseError, match="^REVOKED logout-all"):
                ex(rc, "SESSION.GET", k)
    # through the cluster client alone, and idempotent
    assert fanout_rc(rc, "SESSION.REVOKEALL", t, s) == 1
    assert fanout(cluster, "SESSION.REVOKEALL", t, s) == 0
    assert fanout(cluster, "SESSION.LIST", t, s) == []
    # nobody else lost a session
    assert fanout(cluster, "SESSION.COUNT", t) == others_before
    for s2 in SUBJECTS[:6]:
        if s2 != s:
            want = sorted(k for k, m in population.items() if (m["tenant"], m["subject"]) == (t, s2))
            assert fanout(cluster, "SESSION.LIST", t, s2) == want
    st = fanout(cluster, "SESSION.STATS", t)
    assert st["revocations"] == len(mine)
    for k in mine:
        del population[k]


def test_fanout_tenant_settings(cluster, rc):
    t = "tset"
    # sent to one primary only: sessions on the others keep the defaults
    one = cluster.primaries()[0]
    assert to_str(ex(one.admin(), "SESSION.TENANT", "SET", t, "IDLE", 111000)) == "OK"
    keys = [new_key(t) for _ in range(90)]
    for k in keys:
        assert ex(rc, "SESSION.CREATE", k) == 1
    for k in keys:
        s = get(rc, k)
        want = 111000 if cluster.owner(k).port == one.port else 1800000
        assert s["idle_deadline"] - s["last_access"] == want
    # the fan-out: every primary answers OK and holds the same settings
    assert fanout(cluster, "SESSION.TENANT", "SET", t, "IDLE", 120000, "ABSOLUTE", 3600000, "GRACE", 5000) == "OK"
    got = fanout(cluster, "SESSION.TENANT", "GET", t)
    assert (got["idle"], got["absolute"], got["grace"]) == (120000, 3600000, 5000)
    assert fanout_rc(rc, "SESSION.TENANT", "GET", t) == got
    assert t in fanout(cluster, "SESSION.TENANT", "LIST")
    cluster.wait_replicas_synced()
    for s in cluster.alive():  # replicas got it from their primary
        g = pairs_to_dict(ex(s.admin(), "SESSION.TENANT", "GET", t))
        assert g["idle"] == 120000, s.port
    keys2 = [new_key(t) for _ in range(90)]
    assert len({cluster.owner(k).port for k in keys2}) == 3
    for k in keys2:
        assert ex(rc, "SESSION.CREATE", k) == 1
        s = get(rc, k)
        assert s["idle_deadline"] - s["last_access"] == 120000
        assert s["absolute_deadline"] - s["created"] == 3600000
        assert s["grace_until"] - s["idle_deadline"] == 5000
    assert fanout(cluster, "SESSION.COUNT", t) == 180
    # DEL everywhere: the sum is the number of primaries that had settings
    assert fanout(cluster, "SESSION.TENANT", "DEL", t) == 3
    assert fanout(cluster, "SESSION.TENANT", "GET", t) is None
    assert fanout(cluster, "SESSION.TENANT", "DEL", t) == 0


# ---------------------------------------------------------------------------
# resharding under load


class Load:
    """One client thread: GET TOUCH and SET IFVERSION on the sessions, with
    the expected version of each key tracked; the last op on a key is always
    a GET TOUCH, whose reply is kept (its deadlines are the client's own)."""

    def __init__(self, rc, model, hot, seconds, max_ops):
        self.rc = rc
        self.model = model
        self.hot = hot  # keys picked 3 times out of 4
        self.all = list(model)
        self.seconds = seconds
        self.max_ops = max_ops
        self.stop = threading.Event()
        self.errors = []
        self.ops = 0
        self.writes = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def touch(self, k):
        s = get(self.rc, k, "TOUCH")
        m = self.model[k]
        if s is None:
            self.errors.append(f"{k}: missing")
            return
        if s["version"] != m["version"]:
            self.errors.append(f"{k}: version {s['version']} != expected {m['version']}")
        if s["data"].get("n") != m["data"]["n"]:
            self.errors.append(f"{k}: data n {s['data'].get('n')} != expected {m['data']['n']}")
        if s["last_access"] < m["last"]["last_access"]:
            self.errors.append(f"{k}: last_access went back")
        m["version"] = max(m["version"], s["version"])
        m["last"] = s
        m["touched"] += 1

    def step(self, rnd):
        k = rnd.choice(self.hot) if self.hot and rnd.random() < 0.75 else rnd.choice(self.all)
        m = self.model[k]
        if rnd.random() < 0.5:
            n = str(int(m["data"]["n"]) + 1)
            try:
                v = ex(self.rc, "SESSION.SET", k, "IFVERSION", m["version"], "DATA", "n", n)
            except redis.ResponseError as e:
                self.errors.append(f"{k}: SET IFVERSION {m['version']}: {e}")
                m["ambiguous"] = True
                return
            if v != m["version"] + 1:
                self.errors.append(f"{k}: SET answered {v}, expected {m['version'] + 1}")
            m["version"] = v if isinstance(v, int) else m["version"]
            m["data"]["n"] = n
            self.writes += 1
        self.touch(k)

    def run(self):
        rnd = random.Random(7)
        end = time.monotonic() + self.seconds
        try:
            while not self.stop.is_set() and self.ops < self.max_ops and time.monotonic() < end:
                self.step(rnd)
                self.ops += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(f"client thread died: {type(e).__name__}: {e}")
        finally:
            self.rc.close()

    def start(self):
        self.thread.start()
        return self

    def finish(self):
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_reshard_under_load(fresh_cluster):
    _reshard_under_load(fresh_cluster, n=2000, moves=[(0, 1, 3000), (1, 0, 1500)], seconds=0)


@pytest.mark.soak
@soak_only
def test_reshard_under_load_soak(fresh_cluster):
    rounds = [(0, 1, 3000), (1, 2, 3000), (2, 0, 3000), (0, 2, 2000), (2, 1, 2000), (1, 0, 2000)]
    _reshard_under_load(fresh_cluster, n=8000, moves=rounds, seconds=int(os.environ.get("SESSION_SOAK_SECONDS", 180)))


def _reshard_under_load(c, n, moves, seconds):
    """moves: (from, to, nslots) by index into the primaries, run in turn (again
    and again until `seconds` have passed, when seconds > 0)."""
    rc = c.client()
    rnd = random.Random(11)
    subjects = [f"u{i}" for i in range(20)]
    model = {}
    for i in range(n):
        k = new_key("mv")
        model[k] = {"subject": subjects[rnd.randrange(20)], "data": {"n": "0", "pad": "p" * 30},
                    "version": 1, "touched": 0}
    p = rc.pipeline()
    for k, m in model.items():
        p.execute_command("SESSION.CREATE", k, "SUBJECT", m["subject"], "IDLE", 3600000,
                          "ABSOLUTE", 86400000, "GRACE", 1000, "DATA", "n", "0", "pad", m["data"]["pad"])
    assert p.execute() == [1] * n
    p = rc.pipeline()
    for k in model:
        p.execute_command("SESSION.GET", k)
    for k, reply in zip(model, p.execute()):
        s = norm_session(reply)[1]
        model[k]["orig"] = s
        model[k]["last"] = s
    prim = c.primaries()
    src, dst = prim[0], prim[1]
    before = owned_keys(c, model)

    # -- phase 1: one slot by hand, clients getting ASK while it is half-moved
    src_slots = sorted({slot_of(k) for k in before[src.port]},
                       key=lambda sl: -sum(1 for k in before[src.port] if slot_of(k) == sl))
    slot = src_slots[0]
    slot_keys = sorted(k for k in model if slot_of(k) == slot)
    assert len(slot_keys) >= 2
    load = Load(rc, model, hot=slot_keys, seconds=0, max_ops=0)
    checked_half = []

    def between(moved):
        moved = [to_str(k) for k in moved]
        if len(checked_half) or len(moved) >= len(slot_keys):
            return
        checked_half.append(moved)
        # the moved key answers ASK on the source; the cluster client follows it
        with pytest.raises(redis.ResponseError, match=f"^ASK {slot} 127.0.0.1:{dst.port}$"):
            ex(src.admin(), "SESSION.GET", moved[0])
        for k in slot_keys:
            load.step(random.Random(k))
            load.touch(k)
        # each node's index lists what it holds right now
        for s in subjects:
            want_src = sorted(k for k in before[src.port] if model[k]["subject"] == s and k not in moved)
            want_dst = sorted(k for k in before[dst.port] | set(moved) if model[k]["subject"] == s)
            assert sorted(ex(src.admin(), "SESSION.LIST", "mv", s)) == want_src
            assert sorted(ex(dst.admin(), "SESSION.LIST", "mv", s)) == want_dst
        assert fanout(c, "SESSION.COUNT", "mv") == n

    moved = c.move_slot(slot, src, dst, batch=1, between=between)
    assert sorted(map(to_str, moved)) == slot_keys
    assert checked_half, "slot was never observed half-moved"
    assert not load.errors, load.errors[:10]
    c.wait_ok()

    # -- phase 2: redis-cli --cluster reshard both ways under a client load
    hot = sorted(before[src.port] | before[dst.port])
    load = Load(c.client(socket_timeout=20), model, hot=hot, seconds=seconds + 120, max_ops=10 ** 7).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    done = 0
    port_before = {k: port for port, ks in before.items() for k in ks}
    # Sessions that sat on another primary at some point. (redis-cli moves
    # a node's lowest slots, so every third move puts them all back: the
    # layout at the end says little.)
    moved_keys = set()
    while done < len(moves) or (time.monotonic() - t0 < seconds and done < 1000):
        a, b, nslots = moves[done % len(moves)]
        out = c.reshard(prim[a], prim[b], nslots)
        assert "Moving slot" in out
        done += 1
        assert not load.errors, load.errors[:5]
        now_owned = owned_keys(c, model)
        moved_keys |= {k for port, ks in now_owned.items() for k in ks if port_before[k] != port}
    time.sleep(0.3)
    load.finish()
    assert not load.errors, f"{len(load.errors)} client errors, first: {load.errors[:10]}"
    assert load.writes > 100, f"only {load.writes} writes ran during the reshard"
    c.wait_ok()
    c.wait_replicas_synced()

    after = owned_keys(c, model)
    assert len(moved_keys) > 100, f"only {len(moved_keys)} sessions changed primaries"
    touched_moved = sum(1 for k in moved_keys if model[k]["touched"])
    print(f"reshard: {done} reshards, {load.ops} client ops ({load.writes} writes), "
          f"{len(moved_keys)} sessions on another primary, "
          f"{touched_moved} of them used by the client")
    assert touched_moved > 20, f"only {touched_moved} moved sessions were used during the reshard"

    # -- every session is there, as the client last saw it (fresh client and old one)
    rc2 = c.client()
    p = rc2.pipeline()
    for k in model:
        p.execute_command("SESSION.GET", k)
    lost, wrong = [], []
    for k, reply in zip(model, p.execute()):
        s = norm_session(reply)[1]
        m = model[k]
        if s is None:
            lost.append(k)
            continue
        o, last = m["orig"], m["last"]
        checks = {
            "created": (s["created"], o["created"]),
            "absolute_deadline": (s["absolute_deadline"], o["absolute_deadline"]),
            "subject": (s["subject"], o["subject"]),
            "version": (s["version"], m["version"]),
            "last_access": (s["last_access"], last["last_access"]),
            "idle_deadline": (s["idle_deadline"], last["idle_deadline"]),
            "grace_until": (s["grace_until"], last["grace_until"]),
            "data": (s["data"], m["data"]),
        }
        bad = {name: v for name, v in checks.items() if v[0] != v[1]}
        if bad:
            wrong.append((k, k in moved_keys, bad))
    assert not lost, f"{len(lost)} sessions lost, e.g. {lost[:5]}"
    assert not wrong, f"{len(wrong)} sessions differ (key, moved, field: (got, expected)): {wrong[:5]}"
    assert get(rc, hot[0])["version"] == model[hot[0]]["version"]  # the old client follows MOVED

    # -- the per-subject index on every node (source and target included)
    for prim_node in c.primaries():
        mine = after.get(prim_node.port, set())
        a = prim_node.admin()
        assert ex(a, "SESSION.COUNT", "mv") == len(mine), prim_node.port
        st = pairs_to_dict(ex(a, "SESSION.STATS", "mv"))
        assert st["sessions"] == len(mine)
        assert st["data_bytes"] == sum(data_bytes(model[k]["data"]) for k in mine)
        for s in subjects:
            want = sorted(k for k in mine if model[k]["subject"] == s)
            assert sorted(ex(a, "SESSION.LIST", "mv", s)) == want, (prim_node.port, s)
            assert ex(a, "SESSION.COUNT", "mv", s) == len(want)
        for rep in c.replicas_of(prim_node):
            assert ex(rep.admin(), "SESSION.COUNT", "mv") == len(mine), f"replica {rep.port}"
            for s in subjects[:5]:
                assert sorted(ex(rep.admin(), "SESSION.LIST", "mv", s)) == \
                    sorted(k for k in mine if model[k]["subject"] == s)
    assert fanout(c, "SESSION.COUNT", "mv") == n
    for s in subjects:
        assert fanout(c, "SESSION.LIST", "mv", s) == sorted(k for k in model if model[k]["subject"] == s)
    rc.close()
    rc2.close()
