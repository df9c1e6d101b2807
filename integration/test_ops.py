"""Operations (issue 19): the exporter script, the Prometheus configuration,
its rules, the Grafana dashboard and the runbooks of docs/operations.md,
against real processes.

- `test_rules_promtool`: `promtool test rules` on ops/prometheus/tests/.
- `test_metrics_end_to_end`: redis-server with the module (primary and
  replica), prometheus-redis-exporter with ops/redis-session-exporter.lua
  (as the ACL user the docs give it), an application's store with
  redis_session.prometheus on its own /metrics, and Prometheus with
  ops/prometheus/ (1 s scrapes), a small workload, then Prometheus's HTTP API must hold every
  SESSION.STATS counter, in all and per tenant, with the server's values;
  every recording rule has a value, the eviction alert fires, and every
  panel query of ops/grafana/redis-session.json returns data.
- `test_runbook_*`: each runbook of docs/operations.md runs as written.

Skips with a clear message where the Debian packages are missing; `make
test` installs them.
"""

import json
import math
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from opslib import (
    EXPORTER,
    exporter_acl,
    MISSING,
    OPS,
    PROMETHEUS,
    PROMTOOL,
    RUNBOOK_PATH,
    PromAPI,
    exporter,
    has_number,
    prometheus,
    prometheus_config,
    run_runbook,
    runbooks,
)
from sessionlib import (
    MODULE_PATH,
    REDIS_SERVER,
    free_port,
    new_key,
    pairs_to_dict,
    replicate,
    to_str,
    wait_for,
    wait_sync,
)

try:  # the Python package (python/, in the venv)
    from redis_session import Conflict, SessionStore

    PKG = True
except ImportError:
    PKG = False
try:  # the application side: its Prometheus extra
    import prometheus_client
    from redis_session.prometheus import PrometheusMetrics

    APP = PKG
except ImportError:
    APP = False

needs_prometheus = pytest.mark.skipif(not (EXPORTER and PROMETHEUS and PROMTOOL), reason=MISSING)

COUNTERS = [
    "sessions", "created", "hits", "misses", "touches", "touches_propagated", "renewals",
    "grace_renewals", "cas_conflicts", "revocations", "expired", "evicted", "data_bytes",
]


def stats(r, tenant=None):
    reply = r.execute_command("SESSION.STATS", *([tenant] if tenant else []))
    return {to_str(k): v for k, v in pairs_to_dict(reply).items()}


# --- promtool ------------------------------------------------------------------
@needs_prometheus
def test_rules_promtool():
    files = sorted(str(p) for p in (OPS / "prometheus" / "tests").glob("*.test.yml"))
    assert len(files) >= 2
    p = subprocess.run([PROMTOOL, "test", "rules", *files], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run(
        [PROMTOOL, "check", "config", str(OPS / "prometheus" / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stdout + p.stderr


@needs_prometheus
def test_every_rule_has_a_unit_test():
    """Every recording rule and alert is named in a promtool test."""
    names = []
    for f in ("session-rules.yml", "session-alerts.yml"):
        names += re.findall(r"^\s*- (?:record|alert): (\S+)", (OPS / "prometheus" / f).read_text(), re.M)
    assert len(names) >= 15
    tests = "".join(p.read_text() for p in (OPS / "prometheus" / "tests").glob("*.test.yml"))
    untested = [n for n in names if f"expr: {n}\n" not in tests and f"alertname: {n}\n" not in tests]
    assert not untested, f"rules without a promtool test: {untested}"


# --- the exporter script alone ------------------------------------------------------
def test_exporter_script_names(make_server):
    """The script's names, run as the exporter runs it (EVAL, RESP2), including
    a tenant without settings and one with settings but no sessions."""
    srv = make_server(name="script")
    r = srv.client()
    r.execute_command("SESSION.TENANT", "SET", "gamma", "IDLE", 60000)
    k = new_key("beta")
    r.execute_command("SESSION.CREATE", k, "SUBJECT", "u1", "DATA", "f", "v")
    r.execute_command("SESSION.GET", k)
    out = r.execute_command("EVAL", (OPS / "redis-session-exporter.lua").read_text(), 0)
    assert len(out) % 2 == 0
    got = {to_str(out[i]): to_str(out[i + 1]) for i in range(0, len(out), 2)}
    assert all(isinstance(v, str) and re.fullmatch(r"-?\d+", v) for v in got.values()), got
    want = {f"session_{c}" for c in COUNTERS} | {"session_tenants"}
    for t in ("beta", "gamma"):
        want |= {f"session_tenant_{c}:{t}" for c in COUNTERS}
    assert set(got) == want
    assert got["session_tenant_hits:beta"] == "1" and got["session_tenant_sessions:beta"] == "1"
    assert got["session_tenant_sessions:gamma"] == "0" and got["session_tenants"] == "1"
    # INFO session carries the same per-tenant figures, keyspace style.
    # (redis-py parses `name=value,...` as it does INFO keyspace's lines.)
    info = srv.info("session")
    fields = info["session_tenant_beta"]
    assert list(fields) == COUNTERS
    assert info["session_tenant_gamma"]["sessions"] == 0
    assert {k: int(v) for k, v in fields.items()} == stats(r, "beta")


def test_info_lists_tenants_after_a_restart(make_server):
    """After a restart the counters start again, but a tenant whose sessions
    came back from the RDB (no settings, no activity yet) is still listed."""
    srv = make_server(name="restart")
    r = srv.client()
    for t in ("acme", "beta", "beta"):
        r.execute_command("SESSION.CREATE", new_key(t), "DATA", "f", "v")
    r.execute_command("SELECT", 3)
    r.execute_command("SESSION.CREATE", new_key("delta"))
    r.execute_command("SAVE")
    srv.restart()
    info = srv.info("session")
    assert {k for k in info if k.startswith("session_tenant_")} == {
        "session_tenant_acme", "session_tenant_beta", "session_tenant_delta",
    }
    assert info["session_tenant_beta"]["sessions"] == 2 and info["session_tenant_beta"]["created"] == 0
    out = srv.client().execute_command("EVAL", (OPS / "redis-session-exporter.lua").read_text(), 0)
    got = {to_str(out[i]): to_str(out[i + 1]) for i in range(0, len(out), 2)}
    assert got["session_tenant_sessions:delta"] == "1" and got["session_sessions"] == "4"


# --- the whole stack -------------------------------------------------------------
def workload(primary):
    """A little of everything SESSION.STATS counts, on tenants acme (with
    settings), beta (none), gamma (settings, no sessions) and bulk."""
    r = primary.client()
    ex = r.execute_command
    before = stats(r)
    ex("SESSION.TENANT", "SET", "acme", "IDLE", 600000)
    ex("SESSION.TENANT", "SET", "gamma", "IDLE", 60000)
    acme = [new_key("acme") for _ in range(5)]
    beta = [new_key("beta") for _ in range(3)]
    for i, k in enumerate(acme + beta):
        ex("SESSION.CREATE", k, "SUBJECT", f"u{i % 3}", "DATA", "cart", "1", "theme", "dark")
    for k in acme[:4] + beta[:2]:
        ex("SESSION.GET", k)
    for t in ("acme", "acme", "acme", "beta"):
        ex("SESSION.GET", new_key(t))
    # Touches absorbed by touch-resolution, then touches that became writes.
    ex("CONFIG", "SET", "session.touch-resolution", 3600000)
    for k in acme[:3]:
        ex("SESSION.GET", k, "TOUCH")
    ex("CONFIG", "SET", "session.touch-resolution", 0)
    for k in acme[:2]:
        ex("SESSION.GET", k, "TOUCH")
    ex("CONFIG", "SET", "session.touch-resolution", 1000)
    ex("SESSION.RENEW", beta[0])
    # A renewal in grace.
    g = new_key("beta")
    ex("SESSION.CREATE", g, "IDLE", 100, "GRACE", 600000)
    time.sleep(0.3)
    ex("SESSION.GET", g, "TOUCH")
    # CAS conflicts and revocations.
    for k in (acme[0], beta[1]):
        with pytest.raises(Exception, match="CONFLICT"):
            ex("SESSION.SET", k, "IFVERSION", 99, "DATA", "cart", "2")
    ex("SESSION.SET", acme[1], "IFVERSION", 1, "DATA", "cart", "2")
    ex("SESSION.REVOKE", acme[4], "REASON", "logout")
    # Expiry: two sessions past their end, deleted on access.
    gone = [new_key("beta") for _ in range(2)]
    for k in gone:
        ex("SESSION.CREATE", k, "IDLE", 1, "GRACE", 0)
    time.sleep(0.05)
    wait_for(lambda: [r.exists(k) for k in gone] == [0, 0] and stats(r)["expired"] == before["expired"] + 2,
             what="2 expiries")
    # Evictions: tenant bulk fills a small maxmemory under allkeys-lru.
    ex("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    used = int(primary.info("memory")["used_memory"])
    ex("CONFIG", "SET", "maxmemory", used + 2 * 1024 * 1024)
    for _ in range(60):
        p = r.pipeline(transaction=False)
        for _ in range(200):
            p.execute_command("SESSION.CREATE", new_key("bulk"), "DATA", "blob", "z" * 1000)
        p.execute()
        if int(primary.info("stats")["evicted_keys"]) > 0:
            break
    ex("CONFIG", "SET", "maxmemory", 0)
    ex("CONFIG", "SET", "maxmemory-policy", "noeviction")
    st = stats(r)
    d = {c: st[c] - before[c] for c in st}
    assert d["evicted"] > 0 and d["expired"] == 2
    assert d["cas_conflicts"] == 2 and d["revocations"] == 1 and d["grace_renewals"] == 1
    assert d["touches"] == 6 and d["touches_propagated"] == 3 and d["misses"] == 4



def panel_queries():
    dash = json.loads((OPS / "grafana" / "redis-session.json").read_text())
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return dash, out


def concrete(expr):
    """A panel query with the dashboard's variables set to "all"."""
    return expr.replace("$instance", ".*").replace("$tenant", ".*").replace("$__rate_interval", "5m")


def test_dashboard_shape():
    """The dashboard imports as Grafana expects: unique ids, panels on the
    24-column grid without overlap, every query on the datasource variable."""
    dash, queries = panel_queries()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}" and t["expr"].strip(), p["title"]
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "instance", "tenant"]
    for _, q in queries:
        assert "$instance" in q or "$tenant" in q or "redis_session_client" in q, q


@needs_prometheus
def test_metrics_end_to_end(make_server, tmp_path):
    primary = make_server(name="primary", config={"repl-diskless-sync-delay": 0})
    replica = make_server(name="replica")
    replicate(replica, primary)
    for s in (primary, replica):
        s.admin().execute_command("ACL", "SETUSER", "redis-exporter", *exporter_acl("exporter-secret"))
    daemons = []
    try:
        ex1 = exporter(primary.port, tmp_path, "exporter-primary", "redis-exporter", "exporter-secret")
        daemons.append(ex1.start())
        ex2 = exporter(replica.port, tmp_path, "exporter-replica", "redis-exporter", "exporter-secret")
        daemons.append(ex2.start())
        app = App(primary) if APP else None
        if app is not None:
            daemons.append(app)
        app_targets = [app.addr] if app is not None else []
        prom = prometheus(prometheus_config([ex1.addr, ex2.addr], tmp_path, app_targets), tmp_path)
        daemons.append(prom.start())
        api = PromAPI(prom.addr)
        # Every tenant exists before the workload: a series born with its
        # counts has no increase for rate() to see.
        r0 = primary.client()
        r0.execute_command("SESSION.TENANT", "SET", "gamma", "IDLE", 60000)
        for t in ("acme", "beta", "bulk"):
            r0.execute_command("SESSION.CREATE", new_key(t))
        wait_for(lambda: len(api.query(f'redis_session_tenant_sessions{{instance="{ex1.addr}"}}')) == 4,
                 30, 0.2, "first scrapes")
        if app is not None:
            wait_for(lambda: api.query('redis_session_client_errors_total{kind="Conflict"}'), 30, 0.2,
                     "first scrape of the application")
            app.workload()

        workload(primary)
        r = primary.client()
        wait_sync(primary, replica)
        tenants = ["acme", "beta", "bulk", "gamma"]
        want = {("", c): v for c, v in stats(r).items()}
        for t in tenants:
            want.update({(t, c): v for c, v in stats(r, t).items()})
        # (allkeys-lru may have evicted any of them: beta is known by its counters)
        assert want[("gamma", "created")] == 0 and want[("beta", "created")] > 0

        def scraped():
            got = {}
            for (t, c) in want:
                if t:
                    q = f'redis_session_tenant_{c}{{instance="{ex1.addr}",tenant="{t}"}}'
                else:
                    q = f'redis_session_{c}{{instance="{ex1.addr}"}}'
                got[(t, c)] = api.value(q)
            return got if got == want else None

        try:
            wait_for(scraped, 30, 0.5, "Prometheus to hold SESSION.STATS' values")
        except AssertionError:
            raise AssertionError(f"scraped {scraped() or 'differs'} want {want}\n{ex1.log_tail()}")
        # Every tenant, and only those, with the names the docs give.
        got_tenants = {m["tenant"] for m, _ in api.query(f'redis_session_tenant_sessions{{instance="{ex1.addr}"}}')}
        assert got_tenants == set(tenants)
        assert api.value(f'redis_session_tenants{{instance="{ex1.addr}"}}') == 2
        assert api.query('redis_script_values') == [], "script values left under their raw name"
        # The ACL user lets the exporter run everything it runs.
        assert {v for _, v in api.query("redis_exporter_last_scrape_error")} == {0.0}
        assert {v for _, v in api.query("redis_up")} == {1.0}
        # The replica's exporter sees the same sessions (its own counters).
        wait_for(
            lambda: api.value(f'redis_session_sessions{{instance="{ex2.addr}"}}') == want[("", "sessions")],
            30, 0.5, "replica's session count",
        )
        # The exporter's own per-command series the rules use.
        assert api.value(
            f'redis_commands_total{{instance="{ex1.addr}",cmd="session.create"}}'
        ) >= want[("", "created")]

        # Recording rules: each has a value; the ratios are ratios.
        rules = api.get("rules")["groups"]
        records = [x["name"] for g in rules for x in g["rules"] if x["type"] == "recording"]
        alerts = [x["name"] for g in rules for x in g["rules"] if x["type"] == "alerting"]
        assert len(records) == 14 and len(alerts) == 8, (records, alerts)
        if app is None:
            records = [n for n in records if "client" not in n]

        def all_recorded():
            return all(
                has_number(api.query(n if n.startswith("tenant") else f'{n}{{instance="{ex1.addr}"}}'))
                for n in records
            )

        try:
            wait_for(all_recorded, 30, 0.5, "every recording rule to have a value")
        except AssertionError:
            missing = [n for n in records if not has_number(api.query(n))]
            raise AssertionError(f"recording rules without a value: {missing}") from None
        # (rules run on their own 1 s tick: their latest result may predate the last scrape)
        def rule_value(name):
            v = api.value(f'{name}{{instance="{ex1.addr}"}}')
            return v if v is not None and not math.isnan(v) else None

        wait_for(lambda: 0 < (rule_value("instance:redis_session_hit_ratio:rate5m") or 0) < 1, 30, 0.5, "hit ratio")
        wait_for(lambda: (rule_value("instance:redis_session_evicted:rate5m") or 0) > 0, 30, 0.5, "eviction rate")
        wait_for(lambda: (rule_value("instance:redis_session_get_latency_p99_seconds:since_reset") or 0) > 0,
                 30, 0.5, "SESSION.GET p99")

        # The eviction alert fires (it has no `for`), for the primary only.
        def evicted_alert():
            return [a for a in api.alerts() if a["labels"]["alertname"] == "RedisSessionsEvicted"
                    and a["state"] == "firing"]

        firing = wait_for(evicted_alert, 30, 0.5, "RedisSessionsEvicted to fire")
        assert [a["labels"]["instance"] for a in firing] == [ex1.addr]

        # Every panel of the dashboard has data.
        dash, queries = panel_queries()
        assert len(queries) >= 20
        if app is None:
            queries = [(t, q) for t, q in queries if not t.startswith("App:")]
        empty = [(title, q) for title, q in queries if not has_number(api.query(concrete(q)))]
        assert not empty, f"dashboard panels without data: {empty}"
        for var in dash["templating"]["list"][1:]:
            q = var["query"]["query"]
            m = re.fullmatch(r"label_values\((.*), (\w+)\)", q)
            assert m, q
            vals = {x[m.group(2)] for x, _ in api.query(concrete(m.group(1)))}
            assert vals, f"dashboard variable {var['name']} has no values"
    finally:
        for d in reversed(daemons):
            d.stop()


class App:
    """An application's side: a store with redis_session.prometheus, its
    /metrics served by prometheus_client on a free port."""

    def __init__(self, server):
        self.registry = prometheus_client.CollectorRegistry()
        self.metrics = PrometheusMetrics(registry=self.registry)
        self.store = SessionStore(
            redis.Redis(port=server.port), tenant="acme", near_cache=True, hooks=[self.metrics.hooks("acme")]
        )
        self.metrics.watch(self.store)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.http, _ = prometheus_client.start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        # series that exist before the first scrape, so that rate() sees the workload
        self.sid = self.store.create(data={"n": 1}).sid
        self.store.get(self.sid)
        with pytest.raises(Conflict):
            self.store.set(self.sid, data={"n": 2}, if_version=99)

    def workload(self):
        for _ in range(3):
            sid = self.store.create(data={"n": 1}).sid
            wait_for(lambda sid=sid: (g := self.store.get(sid)) is not None and g.cached, 10, 0.05,
                     what="the near-cache filled")
            for _ in range(5):
                self.store.get(sid)
        with pytest.raises(Conflict):
            self.store.set(self.sid, data={"n": 2}, if_version=99)

    def stop(self):
        self.http.shutdown()
        self.http.server_close()
        self.store.close()


# --- runbooks ----------------------------------------------------------------------
def test_runbooks_are_all_tested():
    """Every runbook in docs/operations.md has a test here."""
    names = set(runbooks())
    src = Path(__file__).read_text()
    assert names >= {"exporter", "failover", "key-rotation", "restore-rdb", "drain-node", "fallback-to-module"}
    for n in names:
        assert f'run_runbook("{n}"' in src, f"runbook {n} is not run by any test"


@needs_prometheus
def test_runbook_exporter(make_server, tmp_path):
    """The exporter's setup as the docs give it: ACL user, script, first scrape."""
    srv = make_server(name="exp")
    srv.client().execute_command("SESSION.CREATE", new_key("acme"))
    port = free_port()
    out = run_runbook("exporter", {
        "REDIS_HOST": "127.0.0.1", "REDIS_PORT": srv.port, "EXPORTER_PASSWORD": "s3cret-" + secrets.token_hex(4),
        "SCRIPT": OPS / "redis-session-exporter.lua", "EXPORTER_ADDR": f"127.0.0.1:{port}",
        "EXPORTER_PIDFILE": tmp_path / "exporter.pid", "EXPORTER_LOG": tmp_path / "exporter.log",
    })
    try:
        assert 'redis_script_values{key="session_sessions"} 1' in out
        assert 'redis_script_values{key="session_tenant_created:acme"} 1' in out
    finally:
        stop_pidfile(tmp_path / "exporter.pid")


def test_runbook_failover(make_server):
    primary = make_server(name="primary", config={"repl-diskless-sync-delay": 0})
    replica = make_server(name="replica")
    replicate(replica, primary)
    r = primary.client()
    keys = [new_key("acme") for _ in range(20)]
    for k in keys:
        r.execute_command("SESSION.CREATE", k, "SUBJECT", "u1", "DATA", "cart", "1")
    digest = primary.digest()
    run_runbook("failover", {
        "PRIMARY_HOST": "127.0.0.1", "PRIMARY_PORT": primary.port,
        "REPLICA_HOST": "127.0.0.1", "REPLICA_PORT": replica.port, "TENANT": "acme",
    })
    # Roles swapped, nothing lost, the new primary takes writes and the old
    # one follows it.
    assert to_str(replica.admin().execute_command("ROLE")[0]) == "master"
    assert to_str(primary.admin().execute_command("ROLE")[0]) == "slave"
    assert replica.digest() == digest
    nr = replica.client()
    assert nr.execute_command("SESSION.COUNT", "acme", "u1") == 20
    assert nr.execute_command("SESSION.SET", keys[0], "IFVERSION", 1, "DATA", "cart", "2") == 2
    wait_sync(replica, primary)
    assert primary.digest() == replica.digest()


def test_runbook_key_rotation(make_server, tmp_path):
    keyfile = tmp_path / "session.keys"
    keyfile.write_text(f"k2025:{secrets.token_hex(32)}\n")
    os.chmod(keyfile, 0o600)
    aof = {"appendonly": "yes"}
    primary = make_server(module_args={"keyfile": keyfile}, config={**aof, "repl-diskless-sync-delay": 0}, name="primary")
    replica = make_server(module_args={"keyfile": keyfile}, config=aof, name="replica")
    replicate(replica, primary)
    r = primary.client()
    keys = [new_key("acme") for _ in range(10)]
    for k in keys:
        r.execute_command("SESSION.CREATE", k, "DATA", "secret", "v-" + k[-6:])
    # replication is asynchronous: the replica holds the ten before the runbook starts
    assert r.execute_command("WAIT", 1, 10000) == 1
    out = run_runbook("key-rotation", {
        "KEYFILE": keyfile, "PRIMARY_HOST": "127.0.0.1", "PRIMARY_PORT": primary.port,
        "REPLICA_HOST": "127.0.0.1", "REPLICA_PORT": replica.port,
    })
    lines = [x for x in keyfile.read_text().splitlines() if x and not x.startswith("#")]
    assert len(lines) == 1 and not lines[0].startswith("k2025:"), "old key still in the file"
    new_id = lines[0].split(":")[0]
    assert new_id in out
    for s in (primary, replica):
        def rotated(s=s):
            info = s.info("session")
            return (to_str(info["session_keyring_active"]) == new_id
                    and info.get(f"session_sealed_values_{new_id}") == 10)

        wait_for(rotated, 10, what=f"{s.name}: ten values counted under the new key")
    # What the server wrote since opens with the new key alone.
    primary.restart()
    r = primary.client()
    assert [pairs_to_dict(pairs_to_dict(r.execute_command("SESSION.GET", k))["data"])["secret"] for k in keys] == [
        "v-" + k[-6:] for k in keys
    ]


def test_runbook_restore_rdb(make_server, tmp_path):
    source = make_server(name="source")
    r = source.client()
    keys = [new_key("acme") for _ in range(15)] + [new_key("beta") for _ in range(5)]
    for i, k in enumerate(keys):
        r.execute_command("SESSION.CREATE", k, "SUBJECT", f"u{i % 2}", "DATA", "n", str(i))
    r.execute_command("SESSION.TENANT", "SET", "acme", "MAXPERSUBJECT", 50)
    digest = source.digest()
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    port = free_port()
    pidfile = target_dir / "redis.pid"
    start = (
        f"{REDIS_SERVER} --port {port} --bind 127.0.0.1 --dir {target_dir} --dbfilename dump.rdb "
        f"--daemonize yes --pidfile {pidfile} --logfile {target_dir / 'redis.log'} --save '' "
        f"--enable-debug-command yes --loadmodule {MODULE_PATH}"
    )
    # A target that runs already (with other data) and is replaced.
    subprocess.run(start, shell=True, check=True, timeout=30)
    try:
        out = run_runbook("restore-rdb", {
            "SOURCE_HOST": "127.0.0.1", "SOURCE_PORT": source.port, "SOURCE_DIR": source.dir,
            "BACKUP_RDB": tmp_path / "backup.rdb", "TARGET_HOST": "127.0.0.1", "TARGET_PORT": port,
            "TARGET_DIR": target_dir, "START_TARGET": start, "TENANT": "acme",
        })
        assert "15" in out
        t = redis.Redis(port=port, decode_responses=True)
        assert to_str(t.execute_command("DEBUG", "DIGEST")) == digest
        assert t.execute_command("SESSION.COUNT", "acme") == 15
        assert t.execute_command("SESSION.LIST", "acme", "u0") == sorted(keys[0:15:2])
        assert pairs_to_dict(t.execute_command("SESSION.TENANT", "GET", "acme"))["maxpersubject"] == 50
        t.close()
    finally:
        stop_pidfile(pidfile)


def stop_pidfile(pidfile):
    """Stops the daemon whose pid `pidfile` holds (if it runs) and waits."""
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return

    def gone():
        # SIGTERM again on each poll: Redis refuses a shutdown while it
        # writes its first AOF, and goes on running.
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 20, 0.1, f"process {pid} to stop")


def _has_command(srv, *cmd):
    """Whether the server knows `cmd` (it may answer anything but unknown command)."""
    try:
        srv.client().execute_command(*cmd)
    except redis.ResponseError as e:
        return "unknown command" not in str(e).lower()
    return True


def test_runbook_drain_node(make_server):
    srv = make_server(name="ring")
    if not _has_command(srv, "SESSION.RING.GET", "ring:probe"):
        pytest.skip("routing rings (SESSION.RING.*) are not in this build yet: issue 20")
    r = srv.client()
    r.execute_command("SESSION.RING.SET", "ring:web", "NODE", "app1", 1, "NODE", "app2", 1, "NODE", "app3", 1)
    run_runbook("drain-node", {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": srv.port, "RING": "ring:web", "NODE": "app2"})
    ids = [new_key("acme") for _ in range(200)]
    assert all(to_str(r.execute_command("SESSION.ROUTE", "ring:web", i)) != "app2" for i in ids)


def test_runbook_fallback_to_module(make_server):
    if not PKG or not shutil.which("redis-session", path=RUNBOOK_PATH):
        pytest.skip("the fallback backend and its `redis-session migrate` are not in this build yet: issue 17")
    srv = make_server(name="migrate")
    fb = SessionStore(redis.Redis(port=srv.port), tenant="acme", backend="lua")
    sids = [fb.create(subject="u1", data={"i": i}).sid for i in range(5)]
    out = run_runbook("fallback-to-module", {"REDIS_URL": f"redis://127.0.0.1:{srv.port}/0", "TENANT": "acme",
                                             "REDIS_HOST": "127.0.0.1", "REDIS_PORT": srv.port})
    assert out.strip().splitlines()[-1] == "5"
    r = srv.client()
    assert {r.type(f"sess:acme:{sid}") for sid in sids} == {"sessionT1"}
    assert r.execute_command("SESSION.COUNT", "acme", "u1") == 5
