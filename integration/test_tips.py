"""Cluster routing without helpers (issue 15): the keyless commands carry
command tips (`RedisModule_SetCommandInfo`), visible in `COMMAND INFO`, and
a fan-out that knows nothing of this module but those tips gives the
cluster-wide answer. Also: a cluster replica serves reads after `READONLY`
and refuses a touch.

redis-py's RedisCluster (5.x) does not read tips (it routes unknown
keyless commands to one random node), so the fan-out is written here from
the tips alone, as a tip-aware client does it.
"""

import random

import pytest
import redis

from cluster import Cluster
from sessionlib import new_key, norm_session, pairs_to_dict, to_str

N = 240
TENANTS = ["acme", "globex"]
SUBJECTS = [f"u{i}" for i in range(8)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("tips"), primaries=3, replicas=1, name="t")
    c.start()
    yield c
    crashed = c.crashed()
    for s in crashed:
        s.proc = None
    c.stop()
    assert not crashed, f"nodes crashed: {crashed}"


@pytest.fixture(scope="module")
def population(cluster):
    """N sessions over the slot space; key -> (tenant, subject)."""
    rc = cluster.client()
    rnd = random.Random(15)
    pop = {}
    for _ in range(N):
        t, s = rnd.choice(TENANTS), rnd.choice(SUBJECTS)
        k = new_key(t)
        assert rc.execute_command("SESSION.CREATE", k, "SUBJECT", s, "DATA", "a", "1") == 1
        pop[k] = (t, s)
    rc.close()
    cluster.wait_replicas_synced()
    return pop


def raw_info(node, name):
    """COMMAND INFO name as plain lists, through a raw connection."""
    c = node.raw()
    try:
        r = c.call("COMMAND", "INFO", name)
    finally:
        c.close()

    def plain(x):
        if x.kind in "*~>":
            return [plain(i) for i in x.value]
        return to_str(x.value)

    return plain(r)[0]


def tips_of(node, cmd):
    """The tips of a command (or of its subcommand) as a dict policy -> value."""
    name = to_str(cmd[0]).lower()
    info = raw_info(node, name)
    if len(cmd) > 1 and info[9]:
        sub = f"{name}|{to_str(cmd[1]).lower()}"
        info = next((s for s in info[9] if s[0] == sub), info)
    tips = {}
    for t in info[7]:
        k, _, v = t.partition(":")
        tips[k] = v
    return tips


def tip_guided(cluster, *cmd):
    """Sends a keyless command where its tips say and joins the replies as
    they say; knows nothing else of the command."""
    entry = cluster.nodes[0]
    tips = tips_of(entry, cmd)
    policy = tips.get("request_policy")
    if policy == "all_shards":
        targets = cluster.primaries()
    elif policy == "all_nodes":
        targets = cluster.alive()
    else:
        targets = [entry]
    replies = [t.admin().execute_command(*cmd) for t in targets]
    resp = tips.get("response_policy")
    if resp == "agg_sum":
        if all(isinstance(r, int) for r in replies):
            return sum(replies)
        total = {}  # a map: summed name by name
        for r in replies:
            for k, v in pairs_to_dict(r).items():
                total[to_str(k)] = total.get(to_str(k), 0) + int(v)
        return total
    if resp == "all_succeeded":
        return replies[0]  # an error on any node was raised above
    if policy in ("all_shards", "all_nodes"):
        return [to_str(x) for r in replies for x in r]  # default: concatenate
    return replies[0]


def test_tips_are_visible(cluster):
    n = cluster.nodes[0]
    assert tips_of(n, ["SESSION.COUNT"]) == {"request_policy": "all_shards", "response_policy": "agg_sum"}
    assert tips_of(n, ["SESSION.REVOKEALL"]) == {"request_policy": "all_shards", "response_policy": "agg_sum"}
    assert tips_of(n, ["SESSION.STATS"]) == {"request_policy": "all_shards", "response_policy": "agg_sum"}
    assert tips_of(n, ["SESSION.LIST"])["request_policy"] == "all_shards"
    assert "response_policy" not in tips_of(n, ["SESSION.LIST"])
    for sub in ("SET", "DEL"):
        assert tips_of(n, ["SESSION.TENANT", sub]) == {"request_policy": "all_shards",
                                                      "response_policy": "all_succeeded"}
    for keyed in ("SESSION.GET", "SESSION.SET", "SESSION.TTL"):
        assert tips_of(n, [keyed]) == {}
    assert tips_of(n, ["SESSION.TENANT", "GET"]) == {}
    c = n.raw()
    try:
        docs = c.call("COMMAND", "DOCS", "session.count").value[1].value
    finally:
        c.close()
    assert b"summary" in [x.value for x in docs[::2]]


def test_fanout_guided_by_tips_gives_the_cluster_answer(cluster, population):
    for t in TENANTS:
        truth = [k for k, (tt, _) in population.items() if tt == t]
        assert tip_guided(cluster, "SESSION.COUNT", t) == len(truth)
        for s in SUBJECTS[:3]:
            keys = sorted(k for k, ts in population.items() if ts == (t, s))
            assert sorted(tip_guided(cluster, "SESSION.LIST", t, s)) == keys
            assert tip_guided(cluster, "SESSION.COUNT", t, s) == len(keys)
    assert tip_guided(cluster, "SESSION.STATS")["sessions"] == len(population)
    assert tip_guided(cluster, "SESSION.STATS", "acme")["sessions"] == sum(
        1 for t, _ in population.values() if t == "acme")
    victims = [k for k, ts in population.items() if ts == ("globex", "u7")]
    assert tip_guided(cluster, "SESSION.REVOKEALL", "globex", "u7") == len(victims)
    assert tip_guided(cluster, "SESSION.COUNT", "globex", "u7") == 0
    assert to_str(tip_guided(cluster, "SESSION.TENANT", "SET", "acme", "IDLE", 700000)) == "OK"
    for p in cluster.primaries():
        assert pairs_to_dict(p.admin().execute_command("SESSION.TENANT", "GET", "acme"))["idle"] == 700000
    tip_guided(cluster, "SESSION.TENANT", "DEL", "acme")
    for p in cluster.primaries():
        assert p.admin().execute_command("SESSION.TENANT", "GET", "acme") is None


def test_cluster_replica_reads_after_readonly(cluster, population):
    k = next(k for k, ts in population.items() if ts[0] == "acme")
    primary = cluster.owner(k)
    replica = cluster.replicas_of(primary)[0]
    cluster.wait_replicas_synced()
    c = replica.client()
    with pytest.raises(redis.ResponseError) as ei:
        c.execute_command("SESSION.GET", k)
    assert str(ei.value).split()[0] == "MOVED"
    assert c.execute_command("READONLY") in (True, "OK")
    got = norm_session(c.execute_command("SESSION.GET", k))[1]
    assert got["data"] == {"a": "1"}
    assert c.execute_command("SESSION.TTL", k) is not None
    with pytest.raises(redis.ResponseError) as ei:
        c.execute_command("SESSION.GET", k, "TOUCH")
    assert str(ei.value).split()[0] == "READONLY"
    # a key of another shard still moves
    other = next(x for x in population if cluster.owner(x).port != primary.port)
    with pytest.raises(redis.ResponseError) as ei:
        c.execute_command("SESSION.GET", other)
    assert str(ei.value).split()[0] == "MOVED"
