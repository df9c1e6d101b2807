#!/usr/bin/env python3
"""redis-session benchmark: the session commands side by side with what
users run on plain Redis today.

    SESSION_MODULE=target/release/libredis_session.so .venv/bin/python bench/bench.py
    SESSION_MODULE=...                                 .venv/bin/python bench/bench.py --smoke

Starts its own redis-server processes on free loopback ports (one plain, one
with the module; `--save "" --appendonly no`), populates sessions of a
realistic shape and their plain-Redis equivalents, and measures:

- reads with `redis-benchmark` (50 clients, -P 1 and -P 16, random keys):
  SESSION.GET TOUCH against GET / GETEX of a 600-byte value, a Lua
  read-and-renew on a hash, and the narrow SESSION.GET TOUCH FIELDS 1;
- compare-and-set writes with bench/loadgen (Rust, pipelined, follows each
  key's version): SESSION.SET IFVERSION against a Lua CAS on a hash and
  against WATCH/MULTI/EXEC (and, like for like, both from a pool of redis-py
  processes);
- creates of fresh keys with bench/loadgen: SESSION.CREATE against SET PX of
  a JSON blob and HSET + PEXPIRE pipelined;
- memory per session (INFO used_memory delta) and DEBUG RELOAD time against
  the same content as a JSON string blob and as a hash.

Rounds alternate the variants (A B C ... A B C ...); the table shows medians.
Output: a table on stdout and bench/results.json (bench/results-smoke.json
with --smoke). Exits non-zero when something fails (a server, an error
reply, a lost key); a missed target is reported, not a failure.

On a machine with 2 or more cores the servers run on CPU 0 and every client
(redis-benchmark, loadgen, redis-py, this script) on the others.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LOADGEN_DIR = BENCH_DIR / "loadgen"
LOADGEN = LOADGEN_DIR / "target" / "release" / "loadgen"

TENANT = "bench"
SID20 = "bQ7xZ2vK9mLp4TnR8wYc"  # 20 fixed URL-safe chars + 12 digits = a 32-char sid
IDLE_MS = 1_800_000
CLIENTS = 50
PIPELINES = (1, 16)

SESS_PREFIX = f"sess:{TENANT}:"
STR_PREFIX = f"str:{TENANT}:"
HASH_PREFIX = f"hash:{TENANT}:"
PK_PREFIX = f"pk:{TENANT}:"  # strings the size of a PACKED reply
BLOB_PREFIX = f"blob:{TENANT}:"

# -------------------------------------------------------------- CPU pinning

NCPU = os.cpu_count() or 1
PIN = NCPU >= 2 and shutil.which("taskset") is not None
SERVER_CPUS = "0" if PIN else None
# the server binary, as in integration/sessionlib.py (make test-matrix sets it)
REDIS_SERVER = os.environ.get("REDIS_SERVER") or "redis-server"
CLIENT_CPUS = (",".join(str(c) for c in range(1, NCPU))) if PIN else None
CLIENT_CPU_SET = set(range(1, NCPU)) if PIN else None


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


BUSY_CORES = 0.15  # other processes' CPU above which a run is flagged as unreliable


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------- background CPU meter

LIVE_SERVER_PIDS: set[int] = set()
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(f[:8]) - f[3] - f[4]  # all but idle and iowait


def _pid_ticks(pid: int) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def _our_ticks() -> float:
    t = os.times()  # this process and its waited-for children (clients)
    own = (t.user + t.system + t.children_user + t.children_system) * CLK_TCK
    return own + sum(_pid_ticks(p) for p in LIVE_SERVER_PIDS)


class CpuMeter:
    """CPU used on this machine by processes that are not the benchmark's own
    (servers, clients, this script) while a measurement runs, in cores: a
    busy shared machine shows here, and makes the figures unreliable."""

    def __enter__(self):
        self.t, self.busy, self.ours = time.monotonic(), _busy_ticks(), _our_ticks()
        return self

    def __exit__(self, *exc):
        secs = max(1e-6, time.monotonic() - self.t)
        foreign = (_busy_ticks() - self.busy) - (_our_ticks() - self.ours)
        self.bg_cores = max(0.0, foreign / CLK_TCK / secs)
        return False


# ------------------------------------------------------------ session shape

def sid(i: int) -> str:
    return f"{SID20}{i:012d}"


def key(prefix: str, i: int) -> str:
    return f"{prefix}{sid(i)}"


def rand_key(prefix: str) -> str:
    """The key as redis-benchmark writes it: `__rand_int__` is 12 zero-padded digits."""
    return f"{prefix}{SID20}__rand_int__"


USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0 (compatible; ExampleCorp-SSO/2.3)",
]
LOCALES = ["en-GB", "de-DE", "fr-FR"]
WORDS = ["alpha", "berry", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper"]
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

# Data fields: 3, 4 or 5 of them, about 600 bytes in all; every session has
# `csrf` and `cart`.
DATA_LAYOUTS = {
    3: [("csrf", 43), ("cart", 360), ("prefs", 197)],
    4: [("csrf", 43), ("cart", 300), ("prefs", 157), ("flash", 100)],
    5: [("csrf", 43), ("cart", 260), ("prefs", 137), ("flash", 100), ("ab", 60)],
}
NARROW_FIELD = "cart"
VARIANTS = 64


def _token(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choice(ALNUM) for _ in range(n))


def json_of_len(field: str, length: int, rnd: random.Random) -> str:
    """A JSON text of exactly `length` bytes that looks like the field's content."""
    sep = (",", ":")
    if field == "cart":
        items = []
        while True:
            items.append({"sku": _token(rnd, 8), "q": rnd.randint(1, 5), "p": rnd.randint(199, 99999),
                          "n": rnd.choice(WORDS)})
            if len(json.dumps({"items": items, "cur": "EUR", "x": ""}, separators=sep)) > length - 4:
                items.pop()
                break
        base = {"items": items, "cur": "EUR", "x": ""}
    elif field == "prefs":
        base = {"theme": rnd.choice(["dark", "light"]), "tz": "Europe/Berlin", "news": rnd.random() < 0.5,
                "recent": [rnd.choice(WORDS) for _ in range(3)], "x": ""}
    elif field == "flash":
        base = {"level": "info", "msg": f"Your {rnd.choice(WORDS)} order was saved", "x": ""}
    else:
        base = {"exp": f"checkout-{rnd.randint(1, 9)}", "arm": rnd.choice("ab"), "x": ""}
    pad = length - len(json.dumps(base, separators=sep))
    if pad < 0:
        raise BenchError(f"layout too small for {field}: {length}")
    base["x"] = _token(rnd, pad)
    s = json.dumps(base, separators=sep)
    assert len(s) == length, (field, length, len(s))
    return s


class Shape:
    """Deterministic session content for index i (csrf tokens are random)."""

    def __init__(self, seed: int = 7):
        rnd = random.Random(seed)
        self.pool = {
            (f, n): [json_of_len(f, n, rnd) for _ in range(VARIANTS)]
            for layout in DATA_LAYOUTS.values() for (f, n) in layout if f != "csrf"
        }
        self.now_ms = int(time.time() * 1000)
        self.new_cart = json_of_len("cart", 300, rnd)  # the value CAS writes

    def subject(self, i: int) -> str:
        return f"user-{(i * 2654435761) % 10_000_000:07d}"

    def meta(self, i: int) -> list[tuple[str, str]]:
        return [("ip", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"),
                ("ua", USER_AGENTS[i % len(USER_AGENTS)]),
                ("node", f"web-{i % 6:02d}"),
                ("locale", LOCALES[i % len(LOCALES)])]

    def data(self, i: int) -> list[tuple[str, str]]:
        layout = DATA_LAYOUTS[3 + i % 3]
        v = (i * 40503) % VARIANTS
        out = []
        for f, n in layout:
            if f == "csrf":
                out.append((f, base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()))
            else:
                out.append((f, self.pool[(f, n)][v]))
        return out

    # --- the four representations -------------------------------------
    def create_args(self, i: int, k: str) -> list[str]:
        meta, data = self.meta(i), self.data(i)
        args = ["SESSION.CREATE", k, "SUBJECT", self.subject(i), "META", str(len(meta))]
        for n, v in meta:
            args += [n, v]
        args.append("DATA")
        for f, v in data:
            args += [f, v]
        return args

    def blob(self, i: int) -> str:
        return json.dumps({
            "subject": self.subject(i), "created": self.now_ms, "version": 1, "last_access": self.now_ms,
            "idle": IDLE_MS, "absolute": 604_800_000, "grace": 60_000,
            "meta": dict(self.meta(i)), "data": dict(self.data(i)),
        }, separators=(",", ":"))

    def hash_fields(self, i: int) -> list[str]:
        args = ["subject", self.subject(i), "created", str(self.now_ms), "version", "1",
                "last_access", str(self.now_ms), "idle", str(IDLE_MS)]
        for n, v in self.meta(i) + self.data(i):
            args += [n, v]
        return args

    def str600(self, i: int) -> str:
        s = json.dumps(dict(self.data(i)), separators=(",", ":"))
        return (s + " " * 600)[:600]


QUIET_WAITED = 0.0
QUIET_WAIT = 0.0  # --quiet-wait: seconds to wait, before each measurement, for other processes to go idle


def wait_quiet() -> None:
    """On a shared machine: wait (up to QUIET_WAIT s) until other processes
    use less than BUSY_CORES for half a second."""
    global QUIET_WAITED
    if QUIET_WAIT <= 0 or patience_spent():
        return
    t0 = time.monotonic()
    deadline = t0 + QUIET_WAIT
    while True:
        with CpuMeter() as cpu:
            time.sleep(0.25)
        if cpu.bg_cores < BUSY_CORES or time.monotonic() > deadline:
            QUIET_WAITED += time.monotonic() - t0
            return


RETRIES = 0  # --retries: measurements repeated when other processes were busy
RETRY_SPENT = 0.0
PATIENCE = 300.0  # --patience: total seconds the two above may add to a run


def patience_spent() -> bool:
    return QUIET_WAITED + RETRY_SPENT >= PATIENCE


def retrying(run):
    """Runs a measurement; when other processes used more than BUSY_CORES
    during it, runs it again (up to RETRIES times) and keeps the quietest."""
    global RETRY_SPENT
    best = None
    for attempt in range(1 + RETRIES):
        t0 = time.monotonic()
        s = run()
        if attempt:
            RETRY_SPENT += time.monotonic() - t0
        s["attempts"] = attempt + 1
        if best is None or s["bg_cores"] < best["bg_cores"]:
            best = s
        if s["bg_cores"] <= BUSY_CORES or patience_spent():
            break
        if attempt < RETRIES:
            log(f"    (other processes used {s['bg_cores']:.2f} cores: measuring again)")
    best["attempts"] = s["attempts"]
    return best


# ------------------------------------------------------------------ servers

def routing_targets(sim: dict) -> list[dict]:
    """Issue 20's algorithm targets from the simulation's figures."""
    out = []

    def t(what: str, ratio: float, target: str, ok: bool) -> None:
        out.append({"what": what, "ratio": round(ratio, 4), "target": target, "status": "PASS" if ok else "MISS"})
    for n in (10, 100):
        if f"balance.rendezvous.n{n}" in sim:
            v = sim[f"balance.rendezvous.n{n}"]
            t(f"routing balance, N = {n}: max/mean ids per node", v, "<=1.05", v <= 1.05)
    if "balance.rendezvous.n1000" in sim:
        v = sim["balance.rendezvous.n1000"] / sim["balance.uniform.n1000"]
        t("routing balance, N = 1000: max/mean over uniform placement's", v, "<=1.1", v <= 1.1)
    v = sim["weights_124.worst_error.rendezvous"]
    t("routing weights 1:2:4: worst relative error", v, "<=0.03", v <= 0.03)
    for key, v in sim.items():
        if key.startswith("remove.others_moved.rendezvous") or key.startswith("add.moved_elsewhere.rendezvous"):
            t(f"routing {key}: ids moved that need not", v, "==0", v == 0)
        if key.startswith("add.moved_x_n1.rendezvous"):
            t(f"routing {key}: share moved x (N+1)", v, "<=1.05", v <= 1.05)
    v, lim = sim["zipf.bounded.max_over_mean"], sim["zipf.bounded.limit_c_plus_one_weight"]
    t(f"routing Zipf, c = 1.25: max/mean load (plain hashing {sim['zipf.plain.max_over_mean']:.3f})", v,
      f"<={lim:.3f}", v <= lim and sim["zipf.bounded.rule_held"] == 1)
    return out


def print_routing(sim: dict) -> None:
    print("")
    print(f"{'routing algorithms (1M ids; smoke 100k)':<44} {'N':>5} {'max/mean':>9} {'moved/others':>13} "
          f"{'add x(N+1)':>11} {'lookup ns':>10}")
    algos = sorted({k.split(".")[1] for k in sim if k.startswith("balance.") and "uniform" not in k})
    for n in (10, 100, 1000):
        if f"balance.uniform.n{n}" not in sim:
            continue
        print(f"{'uniform placement (binomial floor)':<44} {n:>5} {sim[f'balance.uniform.n{n}']:>9.4f}")
        for a in algos:
            if f"balance.{a}.n{n}" in sim:
                print(f"{a:<44} {n:>5} {sim[f'balance.{a}.n{n}']:>9.4f} "
                      f"{sim[f'remove.others_moved.{a}.n{n}']:>13,.0f} {sim[f'add.moved_x_n1.{a}.n{n}']:>11.3f} "
                      f"{sim[f'lookup_ns.{a}.n{n}']:>10.0f}")
    print(f"Zipf request weights, 100k ids, 10 nodes, c = 1.25: bounded max/mean "
          f"{sim['zipf.bounded.max_over_mean']:.3f} (limit c + one weight/mean "
          f"{sim['zipf.bounded.limit_c_plus_one_weight']:.3f}), plain rendezvous {sim['zipf.plain.max_over_mean']:.3f}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, workdir: Path, module: str | None = None, module_args: list[str] | None = None,
                 extra_modules: list[str] | None = None):
        self.name = name
        self.port = free_port()
        self.workdir = workdir
        self.logfile = workdir / f"{name}.log"
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(workdir),
                "--dbfilename", f"{name}.rdb", "--logfile", str(self.logfile),
                "--enable-debug-command", "yes", "--daemonize", "no"]
        if module:
            args += ["--loadmodule", module] + list(module_args or [])
        for extra in extra_modules or []:
            args += ["--loadmodule", extra]
        self.proc = subprocess.Popen(pinned(args, SERVER_CPUS), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        LIVE_SERVER_PIDS.add(self.proc.pid)
        self.r = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.time() + 15
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"redis-server {name} exited at start:\n{self.log_tail()}")
            try:
                if self.r.ping():
                    break
            except redis.ConnectionError:
                pass
            if time.time() > deadline:
                raise BenchError(f"redis-server {name} did not answer PING:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"redis-server {self.name} died:\n{self.log_tail()}")

    def used_memory(self) -> int:
        return int(self.r.info("memory")["used_memory"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.r.shutdown(nosave=True)
            except (redis.ConnectionError, redis.ResponseError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        LIVE_SERVER_PIDS.discard(self.proc.pid)
        self.r.close()


# ------------------------------------------------------------- population

def resp(args: list[str]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def pipe_load(server: Server, commands, what: str) -> int:
    """Sends RESP commands through `redis-cli --pipe`; fails on any error reply."""
    out = server.workdir / f"pipe-{server.name}.out"
    with open(out, "wb") as fout:
        p = subprocess.Popen(pinned(["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), "--pipe"],
                                    CLIENT_CPUS), stdin=subprocess.PIPE, stdout=fout, stderr=subprocess.STDOUT)
        buf: list[bytes] = []
        size = 0
        for c in commands:
            buf.append(c)
            size += len(c)
            if size > 1 << 20:
                p.stdin.write(b"".join(buf))
                buf, size = [], 0
        p.stdin.write(b"".join(buf))
        p.stdin.close()
        rc = p.wait()
    text = out.read_text(errors="replace")
    summary = [ln for ln in text.splitlines() if "errors:" in ln and "replies:" in ln]
    if rc != 0 or not summary:
        raise BenchError(f"redis-cli --pipe ({what}) failed (rc {rc}):\n{text[-2000:]}")
    parts = dict(kv.strip().split(": ") for kv in summary[-1].split(","))
    if int(parts["errors"]) != 0:
        raise BenchError(f"redis-cli --pipe ({what}): {parts['errors']} error replies:\n{text[:2000]}")
    return int(parts["replies"])


def gen_sessions(shape: Shape, n: int, prefix: str = SESS_PREFIX):
    for i in range(n):
        yield resp(shape.create_args(i, key(prefix, i)))


def gen_blobs(shape: Shape, n: int, prefix: str):
    for i in range(n):
        yield resp(["SET", key(prefix, i), shape.blob(i), "PX", str(IDLE_MS)])


def gen_str600(shape: Shape, n: int, prefix: str = STR_PREFIX):
    for i in range(n):
        yield resp(["SET", key(prefix, i), shape.str600(i), "PX", str(IDLE_MS)])


def packed_size(m: "Server", n: int, sample: int = 64) -> int:
    """Mean length of `SESSION.GET key TOUCH PACKED` over a sample of the
    population: the size of the plain strings PACKED is measured against."""
    step = max(1, n // sample)
    sizes = [len(m.r.execute_command("SESSION.GET", key(SESS_PREFIX, i), "PACKED")) for i in range(0, n, step)]
    return round(statistics.mean(sizes))


def gen_strn(shape: Shape, n: int, size: int, prefix: str = PK_PREFIX):
    for i in range(n):
        yield resp(["SET", key(prefix, i), (shape.str600(i) * (size // 600 + 1))[:size], "PX", str(IDLE_MS)])


def gen_hashes(shape: Shape, n: int, prefix: str):
    for i in range(n):
        k = key(prefix, i)
        yield resp(["HSET", k, *shape.hash_fields(i)]) + resp(["PEXPIRE", k, str(IDLE_MS)])


def populate(server: Server, gen, n: int, what: str, per_item: int = 1) -> float:
    t = time.perf_counter()
    replies = pipe_load(server, gen, what)
    if replies != n * per_item:
        raise BenchError(f"{what}: {replies} replies for {n * per_item} commands")
    return time.perf_counter() - t


# ----------------------------------------------------------------- scripts

LUA_READ_RENEW = """
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return nil end
local t = redis.call('TIME')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], 'last_access', string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000)))
return h
"""

LUA_CAS = """
local v = redis.call('HGET', KEYS[1], 'version')
if not v then return nil end
if v ~= ARGV[1] then return redis.error_reply('CONFLICT ' .. v) end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return redis.call('HINCRBY', KEYS[1], 'version', 1)
"""


# ------------------------------------------------------------- the drivers

def run_cmd(cmd: list[str], timeout: float, what: str) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: timed out after {timeout:.0f} s")
    if p.returncode != 0:
        raise BenchError(f"{what}: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p.stdout


def redis_benchmark(server: Server, command: list[str], pipeline: int, n: int, keys: int, quiet: bool = True) -> dict:
    cmd = pinned(["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-c", str(CLIENTS),
                  "-n", str(n), "-P", str(pipeline), "-r", str(keys), "--csv", *command], CLIENT_CPUS)
    if quiet:
        wait_quiet()
    with CpuMeter() as cpu:
        out = run_cmd(cmd, 300, f"redis-benchmark {' '.join(command[:2])}")
    lines = [ln for ln in out.splitlines() if ln.startswith('"') and not ln.startswith('"test"')]
    header = next((ln for ln in out.splitlines() if ln.startswith('"test"')), None)
    if not lines or not header:
        raise BenchError(f"redis-benchmark printed no CSV row:\n{out[-2000:]}")
    cols = [c.strip('"') for c in header.split('","')]
    # The test name (the command line) may itself hold commas: take values from the right.
    vals = [c.strip('"') for c in lines[-1].rsplit('","', len(cols) - 1)]
    row = dict(zip(cols, vals))
    server.check_alive()
    return {"rps": float(row["rps"]), "p50_ms": float(row["p50_latency_ms"]),
            "p99_ms": float(row["p99_latency_ms"]), "avg_ms": float(row["avg_latency_ms"]), "requests": n,
            "bg_cores": cpu.bg_cores}


def loadgen(server: Server, mode: str, template: list[str], pipeline: int, *, duration: float | None = None,
            requests: int | None = None, keys: int = 0, prefix: str = "", sid20: str = SID20,
            probe: str = "none", db: int = 0, conns: int = CLIENTS, seed: int = 1) -> dict:
    cmd = [str(LOADGEN), "--port", str(server.port), "--mode", mode, "--conns", str(conns),
           "--pipeline", str(pipeline), "--key-prefix", prefix, "--sid", sid20, "--probe", probe,
           "--db", str(db), "--seed", str(seed)]
    if keys:
        cmd += ["--keys", str(keys)]
    if duration is not None:
        cmd += ["--duration", str(duration)]
    if requests is not None:
        cmd += ["--requests", str(requests)]
    cmd += ["--", *template]
    wait_quiet()
    with CpuMeter() as cpu:
        out = run_cmd(pinned(cmd, CLIENT_CPUS), 300, f"loadgen {mode} {template[0]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["bg_cores"] = cpu.bg_cores
    server.check_alive()
    if res["ops"] == 0:
        raise BenchError(f"loadgen {mode} {template[0]}: no request completed")
    if res["errors"] or res["missing"] or res.get("probe_missing"):
        raise BenchError(f"loadgen {mode} {template[0]}: {res['errors']} errors, {res['missing']} missing keys, "
                         f"{res.get('probe_missing')} keys missing at probe; first error: {res['first_error']}")
    return res


def build_ceiling(module: str) -> str:
    """Builds the reply floor (examples/reply_ceiling.rs) next to the module."""
    log("building the reply floor (cargo --example reply_ceiling) ...")
    run_cmd(["cargo", "build", "--release", "--quiet", "--example", "reply_ceiling",
             "--manifest-path", str(ROOT / "Cargo.toml")], 600, "cargo build --example reply_ceiling")
    so = Path(module).resolve().parent / "examples" / "libreply_ceiling.so"
    if not so.exists():
        raise BenchError(f"{so} missing after the build (is SESSION_MODULE from this repository's target/?)")
    return str(so)


def build_loadgen() -> None:
    if not shutil.which("cargo"):
        raise BenchError("cargo is needed to build bench/loadgen")
    log("building bench/loadgen ...")
    run_cmd(["cargo", "build", "--release", "--quiet", "--manifest-path", str(LOADGEN_DIR / "Cargo.toml")],
            600, "cargo build bench/loadgen")


# --------------------------------------------------- redis-py process pool

def _py_worker(args) -> dict:
    (port, mode, keys_versions, duration, start_at, value, prefix) = args
    if CLIENT_CPU_SET:
        os.sched_setaffinity(0, CLIENT_CPU_SET)
    r = redis.Redis(host="127.0.0.1", port=port)
    r.ping()
    versions = dict(keys_versions)
    order = list(versions)
    rnd = random.Random(os.getpid())
    lat: list[float] = []
    ok = conflicts = errors = missing = 0
    first_error = None
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + duration
    last = time.time()
    while True:
        now = time.time()
        if now >= end:
            break
        i = order[rnd.randrange(len(order))]
        k = f"{prefix}{sid(i)}"
        t0 = time.perf_counter()
        if mode == "set":
            # The floor: the cheapest whole-session write redis-py can send,
            # one plain SET, no version to check.
            try:
                r.execute_command("SET", k, value, "PX", IDLE_MS)
                ok += 1
            except redis.ResponseError as e:
                errors += 1
                first_error = first_error or str(e)
        elif mode == "session":
            try:
                v = r.execute_command("SESSION.SET", k, "IFVERSION", versions[i], "DATA", "cart", value)
                if v is None:
                    missing += 1
                else:
                    versions[i] = int(v)
                    ok += 1
            except redis.ResponseError as e:
                msg = str(e)
                if msg.startswith("CONFLICT"):
                    conflicts += 1
                    versions[i] = int(msg.split()[1])
                else:
                    errors += 1
                    first_error = first_error or msg
        else:
            with r.pipeline() as pipe:
                try:
                    pipe.watch(k)
                    cur = pipe.hget(k, "version")
                    if cur is None:
                        missing += 1
                    elif int(cur) != versions[i]:
                        conflicts += 1
                        versions[i] = int(cur)
                    else:
                        pipe.multi()
                        pipe.hset(k, "cart", value)
                        pipe.hincrby(k, "version", 1)
                        res = pipe.execute()
                        versions[i] = int(res[-1])
                        ok += 1
                except redis.WatchError:
                    conflicts += 1
                except redis.ResponseError as e:
                    errors += 1
                    first_error = first_error or str(e)
        lat.append(time.perf_counter() - t0)
        last = time.time()
    r.close()
    return {"ops": len(lat), "ok": ok, "conflicts": conflicts, "errors": errors, "missing": missing,
            "first_error": first_error, "lat": lat, "end": last}


def fetch_versions(server: Server, prefix: str, n: int, session: bool) -> list[int]:
    out: list[int] = []
    for base in range(0, n, 1000):
        p = server.r.pipeline(transaction=False)
        for i in range(base, min(n, base + 1000)):
            if session:
                p.execute_command("SESSION.GET", key(prefix, i), "NODATA")
            else:
                p.hget(key(prefix, i), "version")
        for rep in p.execute():
            if rep is None:
                raise BenchError(f"fetch_versions: a key of {prefix} is missing")
            if session:
                d = dict(zip(rep[::2], rep[1::2])) if isinstance(rep, list) else rep
                out.append(int(d[b"version"]))
            else:
                out.append(int(rep))
    return out


def py_pool(server: Server, mode: str, prefix: str, n: int, procs: int, duration: float, value: str) -> dict:
    """`value` is what each request writes: the new cart (session, watch), the whole blob (set)."""
    versions = [0] * n if mode == "set" else fetch_versions(server, prefix, n, session=(mode == "session"))
    wait_quiet()
    start_at = time.time() + 0.5 + 0.05 * procs
    jobs = [(server.port, mode, [(i, versions[i]) for i in range(w, n, procs)], duration, start_at, value, prefix)
            for w in range(procs)]
    ctx = mp.get_context("fork")
    with CpuMeter() as cpu:
        with ctx.Pool(procs) as pool:
            results = pool.map(_py_worker, jobs)
    server.check_alive()
    lat = sorted(x for r in results for x in r["lat"])
    ops = len(lat)
    if ops == 0:
        raise BenchError(f"redis-py {mode}: no request completed")
    errors = sum(r["errors"] for r in results)
    missing = sum(r["missing"] for r in results)
    if errors or missing:
        first = next((r["first_error"] for r in results if r["first_error"]), None)
        raise BenchError(f"redis-py {mode}: {errors} errors, {missing} missing; first error: {first}")
    secs = max(r["end"] for r in results) - start_at
    pct = (lambda p: lat[min(len(lat) - 1, max(0, int(round(p / 100 * len(lat) + 0.5)) - 1))] * 1000) if lat else (lambda p: 0.0)
    return {"rps": ops / secs if secs > 0 else 0.0, "p50_ms": pct(50), "p99_ms": pct(99),
            "avg_ms": (sum(lat) / ops * 1000) if ops else 0.0, "ops": ops,
            "conflicts": sum(r["conflicts"] for r in results), "procs": procs, "bg_cores": cpu.bg_cores}


# ------------------------------------------------------------ bookkeeping

class Rows:
    """Throughput rows: one per (name, pipeline), with one sample per round."""

    def __init__(self):
        self.rows: dict[tuple[str, int], dict] = {}

    def add(self, name: str, pipeline: int, sample: dict, **info) -> None:
        row = self.rows.setdefault((name, pipeline), {"name": name, "pipeline": pipeline, "samples": [], **info})
        row["samples"].append(sample)
        log(f"  {name:<44} P{pipeline:<3} {sample['rps']:>11,.0f}/s  p50 {sample['p50_ms']:.3f}  p99 {sample['p99_ms']:.3f} ms"
            f"  background {sample['bg_cores']:.2f} cores"
            + (f"  conflicts {sample['conflicts']}" if sample.get("conflicts") else ""))

    def med(self, name: str, pipeline: int, field: str = "rps") -> float | None:
        row = self.rows.get((name, pipeline))
        if not row:
            return None
        return statistics.median(s[field] for s in row["samples"])

    def paired_ratio(self, a: str, b: str, pa: int, pb: int) -> float | None:
        """Median over rounds of A's throughput over B's in the same round:
        steadier than a ratio of medians when the machine's load drifts."""
        ra, rb = self.rows.get((a, pa)), self.rows.get((b, pb))
        if not ra or not rb:
            return None
        pairs = [x["rps"] / y["rps"] for x, y in zip(ra["samples"], rb["samples"]) if y["rps"]]
        return statistics.median(pairs) if pairs else None

    def export(self) -> list[dict]:
        out = []
        for row in self.rows.values():
            r = dict(row)
            for f in ("rps", "p50_ms", "p99_ms", "bg_cores"):
                r[f] = statistics.median(s[f] for s in row["samples"])
            r["conflicts"] = sum(s.get("conflicts", 0) for s in row["samples"])
            out.append(r)
        return out


def verdict(value: float | None, target: float | None, op: str) -> str:
    if value is None or target is None:
        return ""
    ok = value >= target if op == ">=" else value <= target
    return "PASS" if ok else "MISS"


# -------------------------------------------------------------- the phases

def rb_requests(smoke: bool, rate_guess: float, secs: float) -> int:
    if smoke:
        return 3000
    return int(min(5_000_000, max(20_000, rate_guess * secs)))


def phase_reads(rows: Rows, m: Server, p: Server, cfg, sealed: Server | None = None) -> None:
    rr_sha = p.r.script_load(LUA_READ_RENEW)
    n = cfg.keys
    sk, tk, hk = rand_key(SESS_PREFIX), rand_key(STR_PREFIX), rand_key(HASH_PREFIX)
    pk = rand_key(PK_PREFIX)
    has_touch_res = True
    try:
        m.r.config_get("session.touch-resolution")["session.touch-resolution"]
    except (redis.ResponseError, KeyError):
        has_touch_res = False

    def set_res(v: str):
        m.r.config_set("session.touch-resolution", v)

    variants = [
        ("GET (600 B string)", p, ["GET", tk], None),
        ("SESSION.GET TOUCH", m, ["SESSION.GET", sk, "TOUCH"], None),
        ("GETEX PX (600 B string)", p, ["GETEX", tk, "PX", str(IDLE_MS)], None),
        ("Lua read-and-renew (hash)", p, ["EVALSHA", rr_sha, "1", hk, str(IDLE_MS)], None),
        (f"SESSION.GET TOUCH FIELDS 1 {NARROW_FIELD}", m, ["SESSION.GET", sk, "TOUCH", "FIELDS", "1", NARROW_FIELD], None),
        (NARROW_VALUES, m, ["SESSION.GET", sk, "TOUCH", "FIELDS", "1", NARROW_FIELD, "VALUES"], None),
        ("HGETALL (hash)", p, ["HGETALL", hk], None),
        ("SESSION.GET (no TOUCH)", m, ["SESSION.GET", sk], None),
        (FLOOR, m, ["CEILING.GET", sk], None),
        (FLOOR_NARROW, m, ["CEILING.GET", sk, "FIELDS1"], None),
        (PACKED, m, ["SESSION.GET", sk, "TOUCH", "PACKED"], None),
        (GET_PK, p, ["GET", pk], None),
        (GETEX_PK, p, ["GETEX", pk, "PX", str(IDLE_MS)], None),
    ]
    if has_touch_res:
        variants.append(("SESSION.GET TOUCH, touch-resolution 0", m, ["SESSION.GET", sk, "TOUCH"], ("0", "1000")))
        variants.append((PACKED_TR0, m, ["SESSION.GET", sk, "TOUCH", "PACKED"], ("0", "1000")))
    if sealed is not None:
        variants.append(("SESSION.GET TOUCH, sealed", sealed, ["SESSION.GET", sk, "TOUCH"], None))
    sizes: dict[tuple[str, int], int] = {}
    for rnd in range(cfg.rounds):
        for pl in PIPELINES:
            log(f"reads, round {rnd + 1}/{cfg.rounds}, -P {pl}")
            for name, srv, command, res in variants:
                if res:
                    set_res(res[0])
                try:
                    quiet = True
                    if (name, pl) not in sizes:
                        if cfg.smoke:
                            sizes[(name, pl)] = rb_requests(True, 0, 0)
                        else:  # a short warm-up run sizes the measured ones to about cfg.secs each
                            warm = redis_benchmark(srv, command, pl, 20_000 if pl == 1 else 60_000, n)
                            sizes[(name, pl)] = rb_requests(False, warm["rps"], cfg.secs)
                            quiet = False  # just checked before the warm-up
                    first = [quiet]

                    def once():
                        q, first[0] = first[0], True
                        return redis_benchmark(srv, command, pl, sizes[(name, pl)], n, quiet=q)
                    s = retrying(once)
                finally:
                    if res:
                        set_res(res[1])
                rows.add(name, pl, s, group="read", client="redis-benchmark", command=" ".join(command))


ROUTE_GET = "GET (600 B string), routing phase"
ROUTE_1000 = "SESSION.ROUTE, 1000-node ring"
ROUTE_10 = "SESSION.ROUTE, 10-node ring"
ROUTE_1 = "SESSION.ROUTE, 1-node ring"
RING_GET_1000 = "SESSION.RING.GET, 1000-node ring"
RING_LOAD_100 = "SESSION.RING.LOAD of 100 nodes"


def phase_routing(rows: Rows, cfg, module: str, workdir: Path) -> dict:
    """Routing rings (issue 20): SESSION.ROUTE (random ids) on rings of 1,
    10 and 1000 nodes, RING.GET of 1000 nodes and RING.LOAD of 100 against
    GET on the same server at -P 16; then the algorithm's figures from
    examples/routing_sim.rs (balance, disruption, bounded loads)."""
    srv = Server("routing", workdir, module)
    try:
        r = srv.r
        r.set("str:route", "x" * 600)
        for n in (1, 10, 100, 1000):
            args: list = []
            for i in range(n):
                args += ["NODE", f"app-{i:04d}", 1 + i % 3]
            r.execute_command("SESSION.RING.SET", f"ring:{n}", *args)
        load = []
        for i in range(100):
            load += [f"app-{i:04d}", str(i * 7)]
        variants = [
            (ROUTE_GET, ["GET", "str:route"]),
            (ROUTE_1000, ["SESSION.ROUTE", "ring:1000", "sid-__rand_int__"]),
            (ROUTE_10, ["SESSION.ROUTE", "ring:10", "sid-__rand_int__"]),
            (ROUTE_1, ["SESSION.ROUTE", "ring:1", "sid-__rand_int__"]),
            (RING_GET_1000, ["SESSION.RING.GET", "ring:1000"]),
            (RING_LOAD_100, ["SESSION.RING.LOAD", "ring:100", *load]),
        ]
        sizes: dict[str, int] = {}
        for rnd in range(cfg.rounds):
            log(f"routing, round {rnd + 1}/{cfg.rounds}, -P 16")
            for name, command in variants:
                if name not in sizes:
                    warm = redis_benchmark(srv, command, 16, 3000 if cfg.smoke else 40_000, 1_000_000)
                    sizes[name] = rb_requests(cfg.smoke, warm["rps"], cfg.secs)
                s = retrying(lambda: redis_benchmark(srv, command, 16, sizes[name], 1_000_000))
                rows.add(name, 16, s, group="routing", client="redis-benchmark", command=" ".join(command[:3]))
    finally:
        srv.stop()
    log("routing: the algorithm's figures (cargo run --release --example routing_sim)")
    sim = ["cargo", "run", "--release", "-q", "--manifest-path", str(ROOT / "Cargo.toml"), "--example",
           "routing_sim", "--", "--json"]
    out = run_cmd(sim + (["--smoke"] if cfg.smoke else []), 900, "routing_sim")
    return json.loads(out[out.index("{"):])


def phase_writes(rows: Rows, m: Server, p: Server, cfg, shape: Shape) -> None:
    cas_sha = p.r.script_load(LUA_CAS)
    n = cfg.keys
    lg = dict(duration=None if cfg.smoke else cfg.secs, requests=3000 if cfg.smoke else None)
    cart = shape.new_cart
    blob = shape.blob(12345)
    for rnd in range(cfg.rounds):
        for pl in PIPELINES:
            log(f"compare-and-set, round {rnd + 1}/{cfg.rounds}, -P {pl}")
            s = retrying(lambda: loadgen(m, "cas", ["SESSION.SET", "{key}", "IFVERSION", "{ver}", "DATA", "cart", cart],
                                         pl, keys=n, prefix=SESS_PREFIX, probe="session", seed=rnd * 2 + pl, **lg))
            rows.add("SESSION.SET IFVERSION", pl, s, group="cas", client="loadgen")
            s = retrying(lambda: loadgen(p, "cas", ["EVALSHA", cas_sha, "1", "{key}", "{ver}", "cart", cart], pl,
                                         keys=n, prefix=HASH_PREFIX, probe="hget", seed=rnd * 2 + pl, **lg))
            rows.add("Lua CAS (hash)", pl, s, group="cas", client="loadgen")
            s = retrying(lambda: loadgen(p, "over", ["SET", "{key}", blob, "PX", str(IDLE_MS)], pl, keys=n,
                                         prefix=BLOB_PREFIX, seed=rnd * 2 + pl, **lg))
            rows.add(WRITE_FLOOR, pl, s, group="cas", client="loadgen")
        log(f"compare-and-set, round {rnd + 1}/{cfg.rounds}, WATCH/MULTI/EXEC and redis-py")
        s = retrying(lambda: loadgen(p, "watch", ["HSET", "{key}", "cart", cart, ";;", "HINCRBY", "{key}", "version",
                                                  "1"], 1, keys=n, prefix=HASH_PREFIX, probe="hget", seed=rnd + 7, **lg))
        rows.add("WATCH/MULTI/EXEC (hash)", 1, s, group="cas", client="loadgen")
        dur = 0.5 if cfg.smoke else cfg.secs
        s = retrying(lambda: py_pool(m, "session", SESS_PREFIX, n, cfg.py_procs, dur, cart))
        rows.add("SESSION.SET IFVERSION, redis-py", 1, s, group="cas", client=f"redis-py x{cfg.py_procs} processes")
        s = retrying(lambda: py_pool(p, "watch", HASH_PREFIX, n, cfg.py_procs, dur, cart))
        rows.add("WATCH/MULTI/EXEC (hash), redis-py", 1, s, group="cas", client=f"redis-py x{cfg.py_procs} processes")
        s = retrying(lambda: py_pool(p, "set", BLOB_PREFIX, n, cfg.py_procs, dur, blob))
        rows.add(PY_FLOOR, 1, s, group="cas", client=f"redis-py x{cfg.py_procs} processes")


def phase_creates(rows: Rows, m: Server, p: Server, cfg, shape: Shape) -> None:
    # Fresh keys in db 1, emptied before every run so that each run starts
    # from the same empty keyspace.
    i = 12345
    create = shape.create_args(i, "{key}")
    create[3] = "user-{n}"  # SUBJECT: one subject per session
    blob = shape.blob(i)
    hfields = shape.hash_fields(i)
    variants = [
        ("SESSION.CREATE", m, create),
        ("SET PX (JSON blob)", p, ["SET", "{key}", blob, "PX", str(IDLE_MS)]),
        ("HSET + PEXPIRE (hash)", p, ["HSET", "{key}", *hfields, ";;", "PEXPIRE", "{key}", str(IDLE_MS)]),
    ]
    lg = dict(duration=None if cfg.smoke else cfg.secs, requests=3000 if cfg.smoke else None)
    run_no = 0
    for rnd in range(cfg.rounds):
        for pl in PIPELINES:
            log(f"creates, round {rnd + 1}/{cfg.rounds}, -P {pl}")
            for name, srv, template in variants:
                def once(name=name, srv=srv, template=template, pl=pl):
                    nonlocal run_no
                    run_no += 1
                    db1 = redis.Redis(host="127.0.0.1", port=srv.port, db=1)
                    db1.flushdb()
                    s = loadgen(srv, "fresh", template, pl, prefix=SESS_PREFIX,
                                sid20=f"N{run_no:05d}qRsTuVwXyZaBcD", db=1, **lg)
                    if db1.dbsize() != s["ok"]:
                        raise BenchError(f"{name}: {db1.dbsize()} keys after {s['ok']} creates")
                    db1.flushdb()
                    db1.close()
                    return s
                rows.add(name, pl, retrying(once), group="create", client="loadgen")


def phase_memory_reload(cfg, shape: Shape, workdir: Path, module: str) -> tuple[dict, dict]:
    n = cfg.mem_keys
    servers = {"sessions": Server("mem-sessions", workdir, module),
               "blobs": Server("mem-blobs", workdir),
               "hashes": Server("mem-hashes", workdir)}
    try:
        memory: dict = {"keys": n}
        gens = {"sessions": (lambda: gen_sessions(shape, n), 1),
                "blobs": (lambda: gen_blobs(shape, n, SESS_PREFIX), 1),
                "hashes": (lambda: gen_hashes(shape, n, SESS_PREFIX), 2)}
        for what, srv in servers.items():
            before = srv.used_memory()
            log(f"memory: populating {n:,} {what} ...")
            secs = populate(srv, gens[what][0](), n, what, gens[what][1])
            after = srv.used_memory()
            if srv.r.dbsize() != n:
                raise BenchError(f"memory: {srv.r.dbsize()} {what} keys, expected {n}")
            sample = [key(SESS_PREFIX, i) for i in random.Random(3).sample(range(n), min(n, 200))]
            usage = [srv.r.memory_usage(k) for k in sample]
            memory[what] = {"used_memory_delta": after - before, "bytes_per_key": (after - before) / n,
                            "memory_usage_avg": sum(usage) / len(usage), "populate_secs": round(secs, 2)}
            log(f"  {what}: {(after - before) / n:,.0f} bytes per key (MEMORY USAGE {sum(usage) / len(usage):,.0f})")
        b = memory["blobs"]["bytes_per_key"]
        memory["ratio_sessions_to_blobs"] = memory["sessions"]["bytes_per_key"] / b
        memory["ratio_hashes_to_blobs"] = memory["hashes"]["bytes_per_key"] / b

        reload: dict = {"keys": n, "samples": {w: [] for w in servers}}
        for rnd in range(cfg.rounds):
            log(f"DEBUG RELOAD, round {rnd + 1}/{cfg.rounds}")
            for what, srv in servers.items():
                def once(what=what, srv=srv):
                    wait_quiet()
                    with CpuMeter() as cpu:
                        t = time.perf_counter()
                        srv.r.execute_command("DEBUG", "RELOAD")
                        total = time.perf_counter() - t
                        t = time.perf_counter()
                        srv.r.execute_command("DEBUG", "RELOAD", "NOSAVE")
                        load = time.perf_counter() - t
                    if srv.r.dbsize() != n:
                        raise BenchError(f"DEBUG RELOAD lost keys: {srv.r.dbsize()} {what}, expected {n}")
                    srv.check_alive()
                    rdb = workdir / f"{srv.name}.rdb"
                    log(f"  {what:<9} DEBUG RELOAD {total:.3f} s (load only {load:.3f} s)  "
                        f"background {cpu.bg_cores:.2f} cores")
                    return {"total_s": total, "load_s": load, "bg_cores": cpu.bg_cores,
                            "rdb_bytes": rdb.stat().st_size if rdb.exists() else None}
                reload["samples"][what].append(retrying(once))
        for what, ss in reload["samples"].items():
            reload[what] = {"total_s": statistics.median(s["total_s"] for s in ss),
                            "load_s": statistics.median(s["load_s"] for s in ss),
                            "save_s": statistics.median(s["total_s"] - s["load_s"] for s in ss),
                            "rdb_bytes": ss[-1]["rdb_bytes"]}
        sm = reload["samples"]
        for what in ("sessions", "hashes"):  # median of same-round ratios
            reload[f"ratio_{what}_to_blobs"] = statistics.median(
                x["total_s"] / y["total_s"] for x, y in zip(sm[what], sm["blobs"]))
        return memory, reload
    finally:
        for srv in servers.values():
            srv.stop()


# ------------------------------------------------------------ comparisons

# (A row, B row, pipeline, target, op, note); target None = shown, not judged.
# The floors: what the contract's reply costs through the module API with
# nothing else done (examples/reply_ceiling.rs), and the cheapest write of a
# whole session plain Redis can do (no version check, no merge).
FLOOR = "CEILING.GET: the contract's map from constants"
FLOOR_NARROW = "CEILING.GET FIELDS1: the narrow map from constants"
WRITE_FLOOR = "SET PX over an existing key (JSON blob)"
# The same write from the redis-py pool: one round trip of plain SET, the
# most any one-command compare-and-set can reach from that client.
PY_FLOOR = "SET PX (JSON blob), redis-py"
# The narrow read with only the named values in the reply (VALUES, beyond
# the contract's map): what the 0.75 target asks of a narrow read.
NARROW_VALUES = f"SESSION.GET TOUCH FIELDS 1 {NARROW_FIELD} VALUES"
PACKED = "SESSION.GET TOUCH PACKED"
PACKED_TR0 = "SESSION.GET TOUCH PACKED, touch-resolution 0"
GET_PK = "GET (string of the PACKED reply's size)"
GETEX_PK = "GETEX PX (string of the PACKED reply's size)"

COMPARISONS = [
    ("SESSION.GET TOUCH", "GET (600 B string)", 16, 0.5, ">=", "read-and-renew vs the ceiling"),
    ("SESSION.GET TOUCH", "GET (600 B string)", 1, None, ">=", ""),
    ("SESSION.GET TOUCH", "GETEX PX (600 B string)", 16, None, ">=", "blob with sliding expiry"),
    ("SESSION.GET TOUCH", "GETEX PX (600 B string)", 1, None, ">=", ""),
    ("SESSION.GET TOUCH", "Lua read-and-renew (hash)", 16, 4.0, ">=", "atomic read-and-renew on a hash"),
    ("SESSION.GET TOUCH", "Lua read-and-renew (hash)", 1, None, ">=", ""),
    ("SESSION.GET TOUCH", "HGETALL (hash)", 16, None, ">=", "non-atomic read libraries use"),
    (f"SESSION.GET TOUCH FIELDS 1 {NARROW_FIELD}", "GET (600 B string)", 16, 0.75, ">=", "narrow read"),
    (f"SESSION.GET TOUCH FIELDS 1 {NARROW_FIELD}", "GET (600 B string)", 1, None, ">=", ""),
    ("SESSION.GET (no TOUCH)", "GET (600 B string)", 16, None, ">=", "full reply, no renewal"),
    ("SESSION.GET TOUCH, touch-resolution 0", "GET (600 B string)", 16, None, ">=", "every TOUCH renews"),
    (FLOOR, "GET (600 B string)", 16, None, ">=", "floor: the full reply alone, through the module API"),
    ("SESSION.GET TOUCH", FLOOR, 16, None, ">=", "share of the floor reached"),
    (FLOOR, "Lua read-and-renew (hash)", 16, None, ">=", "floor of the 4x Lua target"),
    (FLOOR_NARROW, "GET (600 B string)", 16, None, ">=", "floor: the narrow reply alone"),
    (f"SESSION.GET TOUCH FIELDS 1 {NARROW_FIELD}", FLOOR_NARROW, 16, None, ">=", "share of the floor reached"),
    (NARROW_VALUES, "GET (600 B string)", 16, None, ">=", "narrow read, values only (VALUES)"),
    (NARROW_VALUES, "GET (600 B string)", 1, None, ">=", ""),
    (NARROW_VALUES, f"SESSION.GET TOUCH FIELDS 1 {NARROW_FIELD}", 16, None, ">=", "VALUES vs the contract's map"),
    ("SESSION.GET TOUCH, sealed", "SESSION.GET TOUCH", 16, 0.85, ">=", "sealing on vs off (keyfile)"),
    (PACKED, GET_PK, 16, 0.8, ">=", "PACKED vs GET of a string that size"),
    (PACKED, GET_PK, 1, None, ">=", ""),
    (PACKED, "SESSION.GET TOUCH", 16, 1.4, ">=", "PACKED vs the map reply"),
    (PACKED, "SESSION.GET TOUCH", 1, None, ">=", ""),
    (PACKED_TR0, GETEX_PK, 16, 0.9, ">=", "renewing path: every read renews"),
    ("SESSION.GET TOUCH, touch-resolution 0", GETEX_PK, 16, None, ">=", "renewing path, map reply"),
    (GETEX_PK, GET_PK, 16, None, ">=", "Redis's own renewal against its read"),
    ("SESSION.SET IFVERSION", "Lua CAS (hash)", 16, 3.0, ">=", "compare-and-set"),
    ("SESSION.SET IFVERSION", "Lua CAS (hash)", 1, None, ">=", ""),
    (WRITE_FLOOR, "Lua CAS (hash)", 16, None, ">=", "floor: plain Redis's cheapest whole-session write"),
    ("SESSION.SET IFVERSION", WRITE_FLOOR, 16, 1.0, ">=", "CAS vs a blind SET of the whole session"),
    ("SESSION.SET IFVERSION", WRITE_FLOOR, 1, None, ">=", ""),
    ("SESSION.SET IFVERSION, redis-py", "WATCH/MULTI/EXEC (hash), redis-py", 1, 5.0, ">=",
     "same redis-py client pool on both sides"),
    (PY_FLOOR, "WATCH/MULTI/EXEC (hash), redis-py", 1, None, ">=", "floor: plain SET from the same pool"),
    ("SESSION.SET IFVERSION, redis-py", PY_FLOOR, 1, None, ">=", "share of that write reached"),
    ("SESSION.SET IFVERSION", "WATCH/MULTI/EXEC (hash)", 1, None, ">=", "loadgen, 50 connections, server-bound"),
    ("SESSION.SET IFVERSION", "WATCH/MULTI/EXEC (hash), redis-py", (16, 1), None, ">=",
     "mixed: loadgen -P 16 against redis-py"),
    ("SESSION.CREATE", "SET PX (JSON blob)", 16, None, ">=", ""),
    ("SESSION.CREATE", "SET PX (JSON blob)", 1, None, ">=", ""),
    ("SESSION.CREATE", "HSET + PEXPIRE (hash)", 16, None, ">=", ""),
    ("SESSION.CREATE", "HSET + PEXPIRE (hash)", 1, None, ">=", ""),
    # routing rings (phase_routing)
    (ROUTE_1000, ROUTE_GET, 16, 0.8, ">=", "random ids; issue 20's cost target"),
    (ROUTE_10, ROUTE_GET, 16, None, ">=", "random ids"),
    (ROUTE_1, ROUTE_GET, 16, None, ">=", "the module command's floor"),
    (RING_GET_1000, ROUTE_GET, 16, None, ">=", "a reply of 1000 nodes x 4 fields"),
    (RING_LOAD_100, ROUTE_GET, 16, None, ">=", "200 arguments, one write"),
]


def compare(rows: Rows) -> list[dict]:
    out = []
    for a, b, pl, target, op, note in COMPARISONS:
        pa, pb = pl if isinstance(pl, tuple) else (pl, pl)
        ra, rb = rows.med(a, pa), rows.med(b, pb)
        if ra is None or rb is None:
            continue
        ratio = rows.paired_ratio(a, b, pa, pb)
        pl = pa if pa == pb else f"{pa}/{pb}"
        out.append({"a": a, "b": b, "pipeline": pl, "a_rps": ra, "b_rps": rb, "ratio": ratio,
                    "target": target, "op": op, "status": verdict(ratio, target, op), "note": note})
    return out


# ----------------------------------------------------------------- output

def machine_info() -> dict:
    model = "unknown"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal:"):
                mem_gb = round(int(ln.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"nproc": NCPU, "cpu_model": model, "mem_gb": mem_gb, "kernel": platform.release(),
            "pinning": f"servers on CPU {SERVER_CPUS}, clients on CPU {CLIENT_CPUS}" if PIN else "none"}


def module_identity(path: str) -> dict:
    import hashlib
    st = Path(path).stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"path": path, "bytes": st.st_size, "sha256": h.hexdigest()[:16],
            "built": datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")}


def module_commit() -> str | None:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def print_table(res: dict) -> None:
    w = print
    m = res["machine"]
    w("")
    w(f"redis-session benchmark — {res['date']} — {m['nproc']} CPU {m['cpu_model']}, redis {res['redis_version']}"
      f"{' (SMOKE)' if res['smoke'] else ''}")
    w(f"module {res['module']['path']} (sha256 {res['module']['sha256']}, built {res['module']['built']}); "
      f"repository at {res.get('repo_head') or '?'}")
    w(f"{res['config']['clients']} clients, {res['config']['keys']:,} keys, {res['config']['rounds']} round(s), "
      f"medians; {m['pinning']}")
    if res["throughput"]:
        w("")
        w(f"{'throughput':<46} {'-P':>3} {'ops/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'bg cpu':>7}  client")
        for r in res["throughput"]:
            w(f"{r['name']:<46} {r['pipeline']:>3} {fmt_rate(r['rps']):>11} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
              f"{r['bg_cores']:>7.2f}  "
              f"{r['client']}" + (f" (conflicts: {r['conflicts']})" if r.get("conflicts") else ""))
    if res["comparisons"] or res.get("memory"):
        w("")
        w(f"{'ratio':<84} {'-P':>5} {'ratio':>7} {'target':>8}  status")
        for c in res["comparisons"]:
            label = f"{c['a']} / {c['b']}"
            tgt = f"{c['op']}{c['target']:g}" if c["target"] is not None else ""
            w(f"{label:<84} {c['pipeline']!s:>5} {c['ratio']:>7.3f} {tgt:>8}  {c['status']}")
        mem, rel = res.get("memory"), res.get("reload")
        if mem:
            w(f"{'memory per session / same content as JSON string blob':<84} {'':>5} "
              f"{mem['ratio_sessions_to_blobs']:>7.3f} {'<=1.1':>8}  {res['memory_status']}")
            w(f"{'memory per hash / JSON string blob':<84} {'':>5} {mem['ratio_hashes_to_blobs']:>7.3f}")
        if rel:
            w(f"{'DEBUG RELOAD sessions / JSON string blobs':<84} {'':>5} {rel['ratio_sessions_to_blobs']:>7.3f} "
              f"{'<=1.2':>8}  {res['reload_status']}")
            w(f"{'DEBUG RELOAD hashes / JSON string blobs':<84} {'':>5} {rel['ratio_hashes_to_blobs']:>7.3f}")
    mem, rel = res.get("memory"), res.get("reload")
    if mem:
        w("")
        w(f"memory, {mem['keys']:,} keys   {'bytes/key (INFO delta)':>24} {'MEMORY USAGE avg':>18}")
        for what in ("sessions", "blobs", "hashes"):
            w(f"  {what:<18} {mem[what]['bytes_per_key']:>24,.0f} {mem[what]['memory_usage_avg']:>18,.0f}")
    if rel:
        w("")
        w(f"DEBUG RELOAD, {rel['keys']:,} keys   {'total s':>9} {'save s':>8} {'load s':>8} {'RDB MB':>8}")
        for what in ("sessions", "blobs", "hashes"):
            r = rel[what]
            mb = f"{r['rdb_bytes'] / 1e6:.1f}" if r["rdb_bytes"] else "-"
            w(f"  {what:<22} {r['total_s']:>9.3f} {r['save_s']:>8.3f} {r['load_s']:>8.3f} {mb:>8}")
    w("")
    w("ratios: median over rounds of the same-round ratio. bg cpu: cores used by other processes on the machine "
      "during the run (median).")
    bg = res.get("background_cores_max") or 0.0
    if bg > BUSY_CORES and not res["smoke"]:
        w(f"WARNING: other processes used up to {bg:.2f} cores during the measurements: this machine was busy and "
          "the figures are unreliable; run again on a quiet machine.")
    extra = res.get("quiet_wait_s", 0) + res.get("retry_s", 0)
    w(f"took {res['duration_s']:.0f} s" + (f", of which {extra:.0f} s waiting for other processes to go idle or "
                                           "measuring again" if extra >= 1 else ""))


# ------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny run: a few thousand requests per row, 1 round")
    ap.add_argument("--rounds", type=int, help="rounds of A B A B (default 3; smoke 1)")
    ap.add_argument("--secs", type=float, default=3.0, help="target seconds per throughput run (default 3)")
    ap.add_argument("--keys", type=int, help="population for the throughput rows (default 100000; smoke 2000)")
    ap.add_argument("--mem-keys", type=int, help="population for memory and DEBUG RELOAD (default 1000000; smoke 2000)")
    ap.add_argument("--py-procs", type=int, default=8, help="redis-py client processes (default 8)")
    ap.add_argument("--only", default="reads,writes,creates,memory,routing",
                    help="comma-separated phases: reads, writes, creates, memory, routing")
    ap.add_argument("--quiet-wait", type=float,
                    help="before each measurement, wait up to this many seconds for other processes on the machine "
                         "to go idle (default 10; smoke 0 = off)")
    ap.add_argument("--retries", type=int,
                    help="repeat a measurement during which other processes used more than 0.15 cores, up to "
                         "this many times, keeping the quietest (default 2; smoke 0)")
    ap.add_argument("--patience", type=float, default=300.0,
                    help="at most this many seconds in all for --quiet-wait and --retries (default 300)")
    ap.add_argument("--out", help="results file (default bench/results.json; smoke bench/results-smoke.json)")
    cfg = ap.parse_args()
    global QUIET_WAIT
    QUIET_WAIT = cfg.quiet_wait if cfg.quiet_wait is not None else (0.0 if cfg.smoke else 10.0)
    global RETRIES, PATIENCE
    PATIENCE = cfg.patience
    RETRIES = cfg.retries if cfg.retries is not None else (0 if cfg.smoke else 2)
    cfg.rounds = cfg.rounds or (1 if cfg.smoke else 3)
    cfg.keys = cfg.keys or (2000 if cfg.smoke else 100_000)
    cfg.mem_keys = cfg.mem_keys or (2000 if cfg.smoke else 1_000_000)
    phases = set(cfg.only.split(","))
    out_path = Path(cfg.out) if cfg.out else BENCH_DIR / ("results-smoke.json" if cfg.smoke else "results.json")

    module = os.environ.get("SESSION_MODULE") or str(ROOT / "target" / "release" / "libredis_session.so")
    if not Path(module).is_file():
        log(f"bench: module not found: {module} (build with `cargo build --release` or set SESSION_MODULE)")
        return 2
    module = str(Path(module).resolve())
    for tool in (REDIS_SERVER, "redis-cli", "redis-benchmark"):
        if not shutil.which(tool):
            log(f"bench: {tool} not found (make deps-redis)")
            return 2
    if CLIENT_CPU_SET:
        os.sched_setaffinity(0, CLIENT_CPU_SET)

    t_start = time.time()
    redis_version = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True).stdout.split()
    redis_version = next((x.split("=")[1] for x in redis_version if x.startswith("v=")), "?")
    res: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "smoke": cfg.smoke, "machine": machine_info(), "redis_version": redis_version,
        "module": module_identity(module), "repo_head": module_commit(),
        "config": {"clients": CLIENTS, "pipelines": list(PIPELINES), "keys": cfg.keys, "mem_keys": cfg.mem_keys,
                   "rounds": cfg.rounds, "secs_per_run": None if cfg.smoke else cfg.secs,
                   "py_procs": cfg.py_procs, "narrow_field": NARROW_FIELD, "quiet_wait_s": QUIET_WAIT,
                   "retries": RETRIES},
        "throughput": [], "comparisons": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="session-bench-"))
    shape = Shape()
    rows = Rows()
    servers: list[Server] = []
    try:
        if phases & {"writes", "creates"}:
            build_loadgen()
        if phases & {"reads", "writes", "creates"}:
            extra = [build_ceiling(module)] if "reads" in phases else []
            m = Server("module", workdir, module, extra_modules=extra)
            servers.append(m)
            p = Server("plain", workdir)
            servers.append(p)
            n = cfg.keys
            log(f"populating {n:,} sessions, 600-byte strings and hashes ...")
            populate(m, gen_sessions(shape, n), n, "sessions")
            populate(p, gen_str600(shape, n), n, "600-byte strings")
            populate(p, gen_hashes(shape, n, HASH_PREFIX), n, "hashes", per_item=2)
            if "writes" in phases:
                populate(p, gen_blobs(shape, n, BLOB_PREFIX), n, "JSON blobs")
            if "reads" in phases:
                size = packed_size(m, n)
                res["config"]["packed_reply_bytes"] = size
                log(f"populating {n:,} strings of {size} bytes (the PACKED reply's mean size) ...")
                populate(p, gen_strn(shape, n, size), n, "packed-size strings")
                # the same sessions on a third server that seals data at rest
                keyfile = workdir / "bench.keys"
                keyfile.write_text("bench1:" + os.urandom(32).hex() + "\n")
                keyfile.chmod(0o600)
                sealed = Server("sealed", workdir, module, module_args=["keyfile", str(keyfile)])
                servers.append(sealed)
                populate(sealed, gen_sessions(shape, n), n, "sealed sessions")
                phase_reads(rows, m, p, cfg, sealed)
            if "writes" in phases:
                phase_writes(rows, m, p, cfg, shape)
            if "creates" in phases:
                phase_creates(rows, m, p, cfg, shape)
            for s in servers:
                s.stop()
            servers.clear()
        if "routing" in phases:
            res["routing_sim"] = phase_routing(rows, cfg, module, workdir)
        res["throughput"] = rows.export()
        res["comparisons"] = compare(rows)
        if "memory" in phases:
            mem, rel = phase_memory_reload(cfg, shape, workdir, module)
            res["memory"], res["reload"] = mem, rel
            res["memory_status"] = verdict(mem["ratio_sessions_to_blobs"], 1.10, "<=")
            res["reload_status"] = verdict(rel["ratio_sessions_to_blobs"], 1.2, "<=")
    except BenchError as e:
        log(f"bench: FAILED: {e}")
        return 1
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    res["duration_s"] = round(time.time() - t_start, 1)
    bgs = [r["bg_cores"] for r in res["throughput"]]
    if res.get("reload"):
        bgs += [x["bg_cores"] for ss in res["reload"]["samples"].values() for x in ss]
    res["background_cores_max"] = max(bgs) if bgs else 0.0
    res["busy_machine"] = res["background_cores_max"] > BUSY_CORES and not cfg.smoke
    res["quiet_wait_s"] = round(QUIET_WAITED, 1)
    res["retry_s"] = round(RETRY_SPENT, 1)
    targets = [c for c in res["comparisons"] if c["status"]]
    res["targets"] = [{"what": f"{c['a']} / {c['b']} (-P {c['pipeline']})", "ratio": c["ratio"],
                       "target": f"{c['op']}{c['target']:g}", "status": c["status"]} for c in targets]
    if res.get("memory"):
        res["targets"].append({"what": "memory per session / JSON string blob",
                               "ratio": res["memory"]["ratio_sessions_to_blobs"], "target": "<=1.1",
                               "status": res["memory_status"]})
        res["targets"].append({"what": "DEBUG RELOAD sessions / JSON string blobs",
                               "ratio": res["reload"]["ratio_sessions_to_blobs"], "target": "<=1.2",
                               "status": res["reload_status"]})
    sim = res.get("routing_sim")
    if sim:
        res["targets"] += routing_targets(sim)
    out_path.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)
    if sim:
        print_routing(sim)
    print(f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
