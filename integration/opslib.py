"""Helpers for the operations tests (integration/test_ops.py): the Debian
packages' daemons (prometheus-redis-exporter, prometheus) on free loopback
ports, Prometheus's HTTP API, and the runbooks of docs/operations.md as
shell scripts.
"""

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from sessionlib import ROOT, free_port

OPS = ROOT / "ops"
#: the venv's bin (console scripts such as `redis-session`), first on the runbooks' PATH
VENV_BIN = os.path.dirname(sys.executable)
RUNBOOK_PATH = VENV_BIN + os.pathsep + os.environ.get("PATH", "")
DOCS = ROOT / "docs" / "operations.md"
EXPORTER = shutil.which("prometheus-redis-exporter")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
MISSING = (
    "Debian packages prometheus / prometheus-redis-exporter are not installed "
    "(`make test` installs them; by hand: apt-get install prometheus prometheus-redis-exporter)"
)

def exporter_acl(password):
    """The exporter user's ACL rules exactly as the `exporter` runbook of
    docs/operations.md sets them (everything after `ACL SETUSER <name>`)."""
    script = runbooks()["exporter"].replace("\\\n", " ")
    line = next(x for x in script.splitlines() if " ACL SETUSER " in x)
    words = shlex.split(line.rsplit("| grep", 1)[0])
    rules = words[words.index("SETUSER") + 2:]
    return [w.replace("$EXPORTER_PASSWORD", password) for w in rules]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


class Daemon:
    """One exporter or Prometheus process; `port` is free when it starts."""

    def __init__(self, name, argv_for_port, ready_path, directory):
        self.name = name
        self.argv_for_port = argv_for_port
        self.ready_path = ready_path
        self.dir = Path(directory)
        self.log = self.dir / f"{name}.log"
        self.proc = None
        self.port = None

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=30.0):
        for attempt in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                self.argv_for_port(self.port), stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                cwd=str(self.dir),
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if http_get(f"http://{self.addr}{self.ready_path}", timeout=2)[0] == 200:
                        return self
                except (OSError, urllib.error.URLError):
                    pass
                time.sleep(0.1)
            self.stop()
            if "address already in use" not in self.log_tail().lower() or attempt == 2:
                raise AssertionError(f"{self.name} did not start:\n{self.log_tail()}")
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_tail(self, n=30):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def exporter(redis_port, directory, name="exporter", user=None, password=None):
    def argv(port):
        a = [
            EXPORTER,
            "-redis.addr", f"redis://127.0.0.1:{redis_port}",
            "-web.listen-address", f"127.0.0.1:{port}",
            "-script", str(OPS / "redis-session-exporter.lua"),
        ]
        if user:
            a += ["-redis.user", user, "-redis.password", password]
        return a

    return Daemon(name, argv, "/metrics", directory)


def prometheus_config(targets, directory, app_targets=()):
    """ops/prometheus/ copied into `directory`, scraping the exporters
    `targets` and the applications `app_targets` every second."""
    d = Path(directory)
    for f in ("session-rules.yml", "session-alerts.yml"):
        shutil.copy(OPS / "prometheus" / f, d / f)
    text = (OPS / "prometheus" / "prometheus.yml").read_text()
    for old, new in (
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
        ('targets: ["127.0.0.1:9121"]', "targets: " + json.dumps(targets)),
        ('targets: ["127.0.0.1:8000"]', "targets: " + json.dumps(list(app_targets))),
    ):
        assert text.count(old) == 1, f"ops/prometheus/prometheus.yml no longer has {old!r}"
        text = text.replace(old, new)
    (d / "prometheus.yml").write_text(text)
    return d / "prometheus.yml"


def prometheus(config, directory):
    def argv(port):
        return [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={Path(directory) / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ]

    return Daemon("prometheus", argv, "/-/ready", directory)


class PromAPI:
    def __init__(self, addr):
        self.base = f"http://{addr}/api/v1"

    def get(self, path, **params):
        url = f"{self.base}/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        _, body = http_get(url)
        d = json.loads(body)
        assert d.get("status") == "success", d
        return d["data"]

    def query(self, expr):
        """Instant query: [(labels, float value)]."""
        data = self.get("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def value(self, expr):
        """The single value of an instant query, or None when it has none."""
        res = self.query(expr)
        assert len(res) <= 1, (expr, res)
        return res[0][1] if res else None

    def alerts(self):
        return self.get("alerts")["alerts"]


def has_number(result):
    return any(not math.isnan(v) for _, v in result)


# ---------------------------------------------------------------------------
# Runbooks: docs/operations.md holds each runbook as fenced `sh` blocks whose
# first line is `# runbook: <name>`; the tests run them as they are.
_BLOCK = re.compile(r"```sh\n# runbook: ([a-z0-9-]+)\n(.*?)```", re.S)


def runbooks():
    """{name: script} for every runbook block of docs/operations.md (blocks of
    one name are joined in order)."""
    out = {}
    for name, body in _BLOCK.findall(DOCS.read_text()):
        out[name] = out.get(name, "") + body
    return out


def run_runbook(name, env, timeout=120):
    """Runs runbook `name` under bash -euo pipefail with `env`; returns stdout."""
    script = runbooks()[name]
    full_env = dict(os.environ)
    full_env["PATH"] = RUNBOOK_PATH
    full_env.update({k: str(v) for k, v in env.items()})
    p = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, (
        f"runbook {name!r} failed with exit {p.returncode}\n--- script ---\n{script}\n"
        f"--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}"
    )
    return p.stdout
