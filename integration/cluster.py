"""Redis Cluster helpers for the session tests, and how a client fans out the
module's keyless commands.

`Cluster` starts real `redis-server` processes on loopback (by default 3
primaries + 3 replicas, each in its own directory, with the module loaded),
joins them with `redis-cli --cluster create ... --cluster-replicas 1
--cluster-yes`, and waits until every node reports `cluster_state:ok` and
agrees on the slot map.

Keyed commands (`SESSION.CREATE/GET/RENEW/SET/CAS/REVOKE/TTL`) declare their
key (first key = 1), so any cluster client routes them: with redis-py

    rc = redis.cluster.RedisCluster(host="127.0.0.1", port=7000)
    rc.execute_command("SESSION.GET", "sess:acme:Zx3vQ9tLmP0aB7cD8eF1gH", "TOUCH")

follows `MOVED`/`ASK` like for any built-in command.

Keyless commands act only on the server they are sent to: `SESSION.LIST`,
`SESSION.COUNT`, `SESSION.REVOKEALL` and `SESSION.STATS` see that server's
sessions, and `SESSION.TENANT SET/DEL` change that server's tenant table
(which it replicates to its own replicas). A client on a cluster must send
them to **every primary** and join the answers:

- `SESSION.LIST tenant subject`: concatenate the lists (each key lives on
  exactly one primary); `fanout` sorts the result.
- `SESSION.COUNT`, `SESSION.REVOKEALL`: add the integers.
- `SESSION.STATS [tenant]`: add each counter.
- `SESSION.TENANT SET`: every primary must answer `OK` (retry the ones that
  did not); `TENANT GET`/`LIST` answer the same on every primary that got all
  the `SET`s; `TENANT DEL`: the sum is the number of primaries that had
  settings.

With redis-py's `RedisCluster` the same is one call per command:

    replies = rc.execute_command("SESSION.COUNT", "acme", "user42",
                                 target_nodes=RedisCluster.PRIMARIES)
    # -> {"127.0.0.1:7000": 3, "127.0.0.1:7001": 1, ...}  (a dict per node)
    total = sum(replies.values())

(see `fanout_rc`); `fanout(cluster, ...)` does it with one connection per
primary.
"""

import os
import re
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from sessionlib import Server, ServerDied, free_port, pairs_to_dict, to_str, wait_for

REDIS_CLI = os.environ.get("REDIS_CLI", "redis-cli")
NSLOTS = 16384

CLUSTER_CONFIG = {
    "cluster-enabled": "yes",
    "cluster-config-file": "nodes.conf",
    "cluster-node-timeout": 3000,
    # one failed primary must not stop the others from serving
    "cluster-require-full-coverage": "no",
    # replicas do not wander to other primaries while a test moves slots
    "cluster-allow-replica-migration": "no",
    "appendonly": "no",
    "repl-diskless-sync-delay": 0,
}


def slot_of(key):
    """The cluster hash slot of a key (CRC16 mod 16384, as CLUSTER KEYSLOT)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


class ClusterError(AssertionError):
    pass


class Cluster:
    """N primaries with R replicas each, on loopback, module loaded on all."""

    def __init__(self, root, primaries=3, replicas=1, module_args=None, config=None, name="cl", load_module=True):
        self.root = Path(root)
        self.load_module = load_module  # False: plain servers (the Python package's Lua fallback)
        self.n_primaries = primaries
        self.n_replicas = replicas
        self.module_args = dict(module_args or {})
        self.config = {**CLUSTER_CONFIG, **(config or {})}
        self.name = name
        self.nodes = []

    # -- lifecycle -----------------------------------------------------------
    def _start_node(self, i):
        d = self.root / f"{self.name}{i}"
        for attempt in range(4):
            # The bus port is chosen explicitly: port + 10000 may be above 65535.
            cfg = dict(self.config, **{"cluster-port": free_port()})
            s = Server(d, module_args=self.module_args, config=cfg, name=f"{self.name}{i}",
                       load_module=self.load_module)
            try:
                s.start()
                return s
            except ServerDied:
                if attempt == 3 or "Address already in use" not in s.log_tail(20):
                    raise
        raise AssertionError("unreachable")

    def start(self, timeout=60):
        n = self.n_primaries * (1 + self.n_replicas)
        try:
            for i in range(n):
                self.nodes.append(self._start_node(i))
            addrs = [f"127.0.0.1:{s.port}" for s in self.nodes]
            cmd = [REDIS_CLI, "--cluster", "create", *addrs, "--cluster-replicas", str(self.n_replicas),
                   "--cluster-yes"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if out.returncode != 0 or "[OK] All 16384 slots covered" not in out.stdout:
                raise ClusterError(f"redis-cli --cluster create failed:\n{out.stdout}\n{out.stderr}")
            self.wait_ok(timeout)
            self.wait_replicas_synced(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for s in self.nodes:
            if s.proc is not None and s.proc.poll() is not None:
                s.proc = None  # died (or was killed) already
            s.stop()

    def crashed(self):
        return [s for s in self.nodes if s.crashed()]

    def alive(self):
        return [s for s in self.nodes if s.alive()]

    def node(self, port):
        for s in self.nodes:
            if s.port == int(port):
                return s
        raise KeyError(port)

    # -- topology --------------------------------------------------------------
    def cluster_nodes(self, via=None):
        """Parsed CLUSTER NODES as seen by `via` (default: the first live node).

        A dict node-id -> {port, flags, master (id or None), slots (set)}.
        """
        via = via or self.alive()[0]
        text = to_str(via.admin().execute_command("CLUSTER", "NODES"))
        out = {}
        for line in text.strip().splitlines():
            parts = line.split()
            nid, addr, flags, master = parts[0], parts[1], parts[2].split(","), parts[3]
            slots = set()
            for spec in parts[8:]:
                if spec.startswith("["):
                    continue  # a slot being imported/migrated
                a, _, b = spec.partition("-")
                slots.update(range(int(a), int(b or a) + 1))
            out[nid] = {
                "port": int(addr.split("@")[0].rsplit(":", 1)[1]),
                "flags": flags,
                "master": None if master == "-" else master,
                "slots": slots,
            }
        return out

    def node_id(self, server):
        return to_str(server.admin().execute_command("CLUSTER", "MYID"))

    def primaries(self):
        """Live nodes that are primaries now (asked of each node: ROLE)."""
        out = []
        for s in self.alive():
            role = s.admin().execute_command("ROLE")
            if to_str(role[0]) == "master":
                out.append(s)
        return out

    def replicas_of(self, primary):
        out = []
        for s in self.alive():
            role = s.admin().execute_command("ROLE")
            if to_str(role[0]) == "slave" and int(role[2]) == primary.port:
                out.append(s)
        return out

    def slot_map(self, via=None):
        """slot -> port of the primary owning it (from CLUSTER SLOTS)."""
        via = via or self.alive()[0]
        m = {}
        for start, end, primary, *_ in via.admin().execute_command("CLUSTER", "SLOTS"):
            port = int(primary[1])
            for slot in range(int(start), int(end) + 1):
                m[slot] = port
        return m

    def owner(self, key):
        """The Server owning `key`'s slot now."""
        via = self.alive()[0]
        r = via.admin().execute_command("CLUSTER", "SLOTS")
        slot = slot_of(key)
        for start, end, primary, *_ in r:
            if int(start) <= slot <= int(end):
                return self.node(int(primary[1]))
        raise ClusterError(f"slot {slot} has no owner")

    def wait_ok(self, timeout=60, check=True):
        """Every live node: cluster_state:ok, all live nodes known, same slot
        map; with `check`, also `redis-cli --cluster check` clean (which
        needs every node of the cluster to be up)."""
        live = self.alive()

        def ok():
            maps = []
            for s in live:
                try:
                    info = to_str(s.admin().execute_command("CLUSTER", "INFO"))
                except redis.RedisError:
                    return False
                kv = dict(line.split(":", 1) for line in info.strip().splitlines() if ":" in line)
                if kv.get("cluster_state") != "ok" or int(kv.get("cluster_slots_assigned", 0)) != NSLOTS:
                    return False
                if int(kv.get("cluster_known_nodes", 0)) < len(live):
                    return False
                maps.append(self.slot_map(s))
            return all(m == maps[0] for m in maps) and len(maps[0]) == NSLOTS

        wait_for(ok, timeout, interval=0.1, what="cluster_state:ok and one slot map on every node")
        if check:
            wait_for(self.check, timeout, interval=0.2, what="redis-cli --cluster check: nodes agree, no open slots")

    def check(self):
        """`redis-cli --cluster check`: all nodes agree about the slots, none
        is open (importing/migrating), all are covered. True or False."""
        node = self.primaries()[0]
        out = subprocess.run([REDIS_CLI, "--cluster", "check", f"127.0.0.1:{node.port}"],
                             capture_output=True, text=True, timeout=30)
        return (out.returncode == 0 and "[ERR]" not in out.stdout and "[WARNING]" not in out.stdout
                and "All nodes agree about slots configuration" in out.stdout)

    def wait_replicas_synced(self, timeout=60):
        def synced():
            for p in self.primaries():
                pi = p.info("replication")
                reps = self.replicas_of(p)
                for r in reps:
                    ri = r.info("replication")
                    if ri.get("master_link_status") != "up" or ri.get("master_sync_in_progress"):
                        return False
                    if ri.get("slave_repl_offset") != pi["master_repl_offset"]:
                        return False
            return True

        wait_for(synced, timeout, interval=0.05, what="every replica in sync with its primary")

    # -- clients ---------------------------------------------------------------
    def client(self, **kw):
        """A redis-py RedisCluster client (decode_responses=True by default)."""
        kw.setdefault("decode_responses", True)
        kw.setdefault("socket_timeout", 30)
        start = [ClusterNode("127.0.0.1", s.port) for s in self.alive()]
        return RedisCluster(startup_nodes=start, **kw)

    def reshard(self, src, dst, nslots, timeout=120, pipeline=10):
        """Move `nslots` slots from primary src to primary dst with
        `redis-cli --cluster reshard` (MIGRATE in batches of `pipeline` keys).
        redis-cli refuses to start while nodes disagree, so this first waits
        for the gossip of any earlier move to settle.

        Valkey 8+ replicates `CLUSTER SETSLOT ... NODE` to the replicas first
        and answers NOREPLICAS when one does not acknowledge it in time (a
        loaded machine); redis-cli then stops with that slot still open. The
        harness finishes that slot itself and reshards the rest."""
        dst_id = self.node_id(dst)
        before = len(self.cluster_nodes(dst)[dst_id]["slots"])
        out = None
        for _attempt in range(5):
            self.wait_ok(timeout)
            left = nslots - (len(self.cluster_nodes(dst)[dst_id]["slots"]) - before)
            if left <= 0:
                return out.stdout if out is not None else ""
            cmd = [REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{src.port}",
                   "--cluster-from", self.node_id(src), "--cluster-to", dst_id,
                   "--cluster-slots", str(left), "--cluster-yes", "--cluster-pipeline", str(pipeline)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if out.returncode == 0 and "[ERR]" not in out.stdout:
                return out.stdout
            moving = re.findall(r"Moving slot (\d+) from", out.stdout)
            if "NOREPLICAS" not in out.stdout or not moving:
                break
            self._finish_slot(int(moving[-1]), src, dst)
        raise ClusterError(f"reshard failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")

    def _finish_slot(self, slot, src, dst, timeout_ms=5000):
        """Complete a slot move that stopped after SETSLOT IMPORTING/MIGRATING."""
        sa = src.admin()
        while keys := sa.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000):
            r = sa.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, timeout_ms, "KEYS", *keys)
            assert to_str(r) in ("OK", "NOKEY"), r
        did = self.node_id(dst)
        self._setslot_node(dst, slot, did)
        self._setslot_node(src, slot, did)
        for p in self.primaries():
            if p not in (src, dst):
                self._setslot_node(p, slot, did)

    @staticmethod
    def _setslot_node(server, slot, node_id, timeout=60):
        """CLUSTER SETSLOT slot NODE id, again while Valkey answers NOREPLICAS
        (its replicas have not acknowledged the change yet)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return server.admin().execute_command("CLUSTER", "SETSLOT", slot, "NODE", node_id)
            except redis.ResponseError as e:
                if not str(e).startswith("NOREPLICAS") or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def move_slot(self, slot, src, dst, batch=None, between=None, timeout_ms=5000):
        """Move one slot by hand: SETSLOT IMPORTING/MIGRATING, MIGRATE the
        keys (in batches; `between(moved_so_far)` runs after each batch, while
        the slot is half-moved and clients get ASK), then SETSLOT NODE on all
        primaries."""
        sid, did = self.node_id(src), self.node_id(dst)
        sa, da = src.admin(), dst.admin()
        da.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
        sa.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", did)
        moved = []
        while True:
            keys = sa.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch or 1000)
            if not keys:
                break
            r = sa.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, timeout_ms, "KEYS", *keys)
            assert to_str(r) in ("OK", "NOKEY"), r
            moved.extend(keys)
            if between is not None:
                between(list(moved))
        # the target first, then the source, then everyone else (as redis-cli does)
        self._setslot_node(dst, slot, did)
        self._setslot_node(src, slot, did)
        for p in self.primaries():
            if p not in (src, dst):
                self._setslot_node(p, slot, did)
        return moved

    def __repr__(self):
        return f"<Cluster {[s.port for s in self.nodes]}>"


# ---------------------------------------------------------------------------
# fan-out of the keyless commands

def _cmd_name(cmd):
    name = to_str(cmd[0]).upper()
    if name == "SESSION.TENANT" and len(cmd) > 1:
        name += " " + to_str(cmd[1]).upper()
    return name


def _is_ok(v):
    return v is True or (isinstance(v, (str, bytes)) and to_str(v) == "OK")


def join(cmd, replies):
    """Join the per-primary replies (a dict node -> reply) of a keyless command.

    - LIST: sorted concatenation (a key found on two primaries is an error);
    - COUNT, REVOKEALL, TENANT DEL: sum;
    - STATS: a dict of summed counters;
    - TENANT SET: "OK" when every primary said OK;
    - TENANT GET, TENANT LIST: the common answer (primaries must agree);
    - anything else: integers are summed, lists concatenated and sorted,
      "OK" when all are OK.
    """
    name = _cmd_name(cmd)
    vals = list(replies.values())
    if name == "SESSION.STATS":
        total = {}
        for v in vals:
            for k, n in pairs_to_dict(v).items():
                total[to_str(k)] = total.get(to_str(k), 0) + int(n)
        return total
    if name in ("SESSION.TENANT GET", "SESSION.TENANT LIST"):
        norm = [sorted(map(to_str, v)) if name.endswith("LIST") else
                (None if v is None else {to_str(k): to_str(x) for k, x in pairs_to_dict(v).items()})
                for v in vals]
        if any(n != norm[0] for n in norm):
            raise ClusterError(f"primaries disagree on {name}: {replies!r}")
        return norm[0]
    if name == "SESSION.TENANT SET" or all(_is_ok(v) for v in vals):
        bad = {n: v for n, v in replies.items() if not _is_ok(v)}
        if bad:
            raise ClusterError(f"{name} not OK on every primary: {bad!r}")
        return "OK"
    if all(isinstance(v, int) for v in vals):
        return sum(vals)
    if all(isinstance(v, list) for v in vals):
        out = [to_str(x) for v in vals for x in v]
        if name == "SESSION.LIST" and len(set(out)) != len(out):
            raise ClusterError(f"a key listed by two primaries: {replies!r}")
        return sorted(out)
    raise ClusterError(f"cannot join replies of {name}: {replies!r}")


def fanout_replies(cluster, *cmd):
    """Send a keyless command to every primary; a dict port -> reply.

    An error reply from any primary is raised (naming the primary)."""
    out = {}
    for p in cluster.primaries():
        try:
            out[p.port] = p.admin().execute_command(*cmd)
        except redis.ResponseError as e:
            raise redis.ResponseError(f"{e} (from primary {p.port})") from e
    if not out:
        raise ClusterError("no live primary")
    return out


def fanout(cluster, *cmd):
    """Send a keyless command to every primary and join the answers (see `join`)."""
    return join(cmd, fanout_replies(cluster, *cmd))


def fanout_rc(rc, *cmd):
    """The same through a redis-py RedisCluster client only:
    `target_nodes=RedisCluster.PRIMARIES` sends the command to each primary of
    the client's current slot map, and redis-py answers a dict node -> reply."""
    res = rc.execute_command(*cmd, target_nodes=RedisCluster.PRIMARIES)
    if not isinstance(res, dict):  # a single primary: redis-py unwraps the reply
        res = {"only": res}
    return join(cmd, res)
