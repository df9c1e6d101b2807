"""Helpers for the redis-session integration tests.

Real `redis-server` processes only: `Server` starts one on a free loopback
port with the module loaded, in its own directory, and stops it again.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis._parsers.resp2 import _RESP2Parser
from redis._parsers.resp3 import _RESP3Parser

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = os.environ.get("REDIS_SERVER", shutil.which("redis-server") or "/usr/bin/redis-server")
MODULE_PATH = os.environ.get(
    "SESSION_MODULE", str(ROOT / "target" / "release" / "libredis_session.so")
)

# error strings of the contract ------------------------------------------------
E_INT = "ERR value is not an integer or out of range"
E_SYNTAX = "ERR syntax error"
E_KEY = "ERR invalid session key"
E_EXISTS = "EXISTS session already exists"
E_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"

MAX_TIME = 3153600000000

GET_FIELDS = [
    "subject",
    "created",
    "version",
    "state",
    "last_access",
    "idle_deadline",
    "absolute_deadline",
    "grace_until",
    "meta",
    "data",
]
TTL_FIELDS = ["state", "idle_ms", "absolute_ms", "grace_ms"]


# redis-py parsers that keep the whole error line ("ERR syntax error", not
# "syntax error"), so that tests can compare error codes exactly.
class _FullErrorMixin:
    @classmethod
    def parse_error(cls, response):
        return redis.ResponseError(response)


class FullErrRESP2Parser(_FullErrorMixin, _RESP2Parser):
    pass


class FullErrRESP3Parser(_FullErrorMixin, _RESP3Parser):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_sid(n=22):
    """A fresh URL-safe base64 session id (n characters, default 22 = 128 bit)."""
    s = ""
    while len(s) < n:
        s += secrets.token_urlsafe(n)
    return s[:n]


def new_key(tenant="acme", prefix="sess:", sid_len=22):
    return f"{prefix}{tenant}:{new_sid(sid_len)}"


def wait_for(pred, timeout=10.0, interval=0.01, what="condition"):
    """Poll pred() until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")
        time.sleep(interval)


def to_str(x):
    return x.decode() if isinstance(x, (bytes, bytearray)) else x


def pairs_to_dict(v):
    """A RESP2 flat name/value array (or a RESP3 dict) as a dict."""
    if isinstance(v, dict):
        return dict(v)
    assert isinstance(v, list), f"expected a map or a flat array, got {v!r}"
    assert len(v) % 2 == 0, f"flat map array of odd length: {v!r}"
    return {v[i]: v[i + 1] for i in range(0, len(v), 2)}


def norm_session(reply):
    """SESSION.GET reply (either protocol) -> (list of names in order, dict).

    meta and data are turned into dicts too. None stays None.
    """
    if reply is None:
        return None, None
    d = pairs_to_dict(reply)
    names = [to_str(k) for k in d.keys()]
    out = {to_str(k): v for k, v in d.items()}
    for sub in ("meta", "data"):
        if sub in out:
            out[sub] = pairs_to_dict(out[sub])
    if "state" in out:
        out["state"] = to_str(out["state"])
    return names, out


def norm_ttl(reply):
    if reply is None:
        return None, None
    d = pairs_to_dict(reply)
    names = [to_str(k) for k in d.keys()]
    out = {to_str(k): v for k, v in d.items()}
    out["state"] = to_str(out["state"])
    return names, out


def error_code(e):
    """An error reply's code, its first word (NOPERM, READONLY, CONFLICT, ...).

    Tests of errors the server writes (ACL, replicas, OOM) compare this, not
    the text after it: Redis 7.2+ and Valkey word NOPERM differently from 7.0.
    """
    return str(e).split(" ", 1)[0]


def err_of(fn, *args, **kw):
    """Run fn; return the full error string it raised (fails if no error)."""
    try:
        r = fn(*args, **kw)
    except redis.ResponseError as e:
        return str(e)
    raise AssertionError(f"expected an error reply, got {r!r}")


# CRC64 as used by Redis for DUMP payloads (Jones polynomial, reflected,
# init 0, no final xor).  crc64(b"123456789") == 0xe9c6d914c4b8d9ca.
_CRC64_POLY = 0x95AC9329AC4BC9B5
_CRC64_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _CRC64_POLY if _c & 1 else _c >> 1
    _CRC64_TABLE.append(_c)


def crc64(data, crc=0):
    for b in data:
        crc = _CRC64_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def dump_split(payload):
    """DUMP payload -> (body, rdb_version_bytes)."""
    assert len(payload) >= 10
    body, ver, crc = payload[:-10], payload[-10:-8], payload[-8:]
    assert crc64(payload[:-8]).to_bytes(8, "little") == crc, "CRC64 mismatch in DUMP payload"
    return body, ver


def dump_join(body, ver):
    data = bytes(body) + bytes(ver)
    return data + crc64(data).to_bytes(8, "little")


# ---------------------------------------------------------------------------
# A minimal raw RESP client, for checks of the exact wire types (simple string
# vs bulk string, map vs flat array, RESP2 nil vs RESP3 null).
class Raw:
    """A typed reply: kind is the RESP type byte ('+', '$', ':', '*', '%', '_', '-', ...)."""

    __slots__ = ("kind", "value")

    def __init__(self, kind, value):
        self.kind = kind
        self.value = value

    def __repr__(self):
        return f"Raw({self.kind!r}, {self.value!r})"


class RawClient:
    def __init__(self, port, protocol=2, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if protocol == 3:
            r = self.call("HELLO", "3")
            assert r.kind == "%", r

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def _read(self):
        line = self._line()
        kind, rest = chr(line[0]), line[1:]
        if kind in "+-":
            return Raw(kind, rest.decode())
        if kind in ":(":
            return Raw(":", int(rest))
        if kind in "$=!":
            n = int(rest)
            if n < 0:
                return Raw("nil", None)
            return Raw(kind, self._bytes(n))
        if kind in "*~>":
            n = int(rest)
            if n < 0:
                return Raw("nil", None)
            return Raw(kind, [self._read() for _ in range(n)])
        if kind == "%":
            n = int(rest)
            return Raw("%", [(self._read(), self._read()) for _ in range(n)])
        if kind == "_":
            return Raw("_", None)
        if kind == "#":
            return Raw("#", rest == b"t")
        if kind == ",":
            return Raw(",", float(rest))
        raise ValueError(f"unknown RESP type {line!r}")

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, int):
                a = str(a)
            if isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()


# ---------------------------------------------------------------------------
class ServerDied(AssertionError):
    pass


class Server:
    """One real redis-server process with the session module loaded."""

    def __init__(self, directory, module=None, module_args=None, config=None, name="redis", load_module=True):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.module = module or MODULE_PATH
        self.module_args = dict(module_args or {})
        self.config = dict(config or {})
        self.name = name
        self.load_module = load_module
        self.port = None
        self.proc = None
        self.logfile = self.dir / "server.log"
        self._clients = []
        self.expect_dead = False

    # -- lifecycle ---------------------------------------------------------
    def argv(self):
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", str(self.dir),
            "--logfile", str(self.logfile),
            "--daemonize", "no",
            "--enable-debug-command", "yes",
            "--enable-module-command", "yes",
            "--appendfsync", "always",
        ]
        for k, v in self.config.items():
            args += [f"--{k}", str(v)]
        if self.load_module:
            args += ["--loadmodule", str(self.module)]
            for k, v in self.module_args.items():
                args += [str(k), str(v)]
        return args

    def start(self, timeout=30):
        if self.load_module and not Path(self.module).exists():
            raise FileNotFoundError(
                f"module not built: {self.module} (cd /work/main && cargo build --release, or set SESSION_MODULE)"
            )
        attempts = 3 if self.port is None else 1
        for attempt in range(attempts):
            if self.port is None or attempt > 0:
                self.port = free_port()
            self.expect_dead = False
            self.proc = subprocess.Popen(
                self.argv(), stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr.log", "ab"),
                cwd=str(self.dir),
            )
            try:
                self._wait_ready(timeout)
                return self
            except ServerDied:
                if attempt + 1 < attempts and "Address already in use" in self.log_tail(20):
                    continue
                raise

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerDied(
                    f"{self.name} exited with {self.proc.returncode} on start\n{self.log_tail(40)}"
                )
            try:
                c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=1)
                try:
                    if c.ping():
                        return
                finally:
                    c.close()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            except redis.ResponseError as e:
                if "LOADING" not in str(e):
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not become ready in {timeout}s\n{self.log_tail(40)}")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _close_clients(self):
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients = []

    def stop(self, timeout=20):
        """SHUTDOWN NOSAVE (AOF is still flushed), then wait; kill if needed."""
        self._close_clients()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
                c.execute_command("SHUTDOWN", "NOSAVE")
            except (redis.ConnectionError, redis.ResponseError, redis.TimeoutError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self):
        self._close_clients()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self, config=None, module_args=None, timeout=30):
        """Stop and start again on the same port and data dir."""
        self.stop()
        if config:
            self.config.update(config)
        if module_args:
            self.module_args.update(module_args)
        return self.start(timeout=timeout)

    def crashed(self):
        """True when the process died without being asked to."""
        return self.proc is not None and self.proc.poll() is not None and not self.expect_dead

    # -- clients -------------------------------------------------------------
    def client(self, protocol=2, decode=True, **kw):
        pool = redis.ConnectionPool(
            host="127.0.0.1",
            port=self.port,
            protocol=protocol,
            decode_responses=decode,
            parser_class=FullErrRESP3Parser if protocol == 3 else FullErrRESP2Parser,
            socket_timeout=kw.pop("socket_timeout", 30),
            **kw,
        )
        c = redis.Redis(connection_pool=pool)
        self._clients.append(c)
        return c

    def admin(self):
        """A cached RESP2 client for the helpers below."""
        if getattr(self, "_admin", None) is None or self._admin not in self._clients:
            self._admin = self.client()
        return self._admin

    def raw(self, protocol=2):
        return RawClient(self.port, protocol=protocol)

    # -- introspection -------------------------------------------------------
    def info(self, section=None):
        c = self.admin()
        return c.info(section) if section else c.info()

    def digest(self):
        return to_str(self.admin().execute_command("DEBUG", "DIGEST"))

    def time_ms(self):
        s, us = self.admin().time()
        return int(s) * 1000 + int(us) // 1000

    def log_tail(self, n=60):
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def aof_dir(self):
        return self.dir / self.config.get("appenddirname", "appendonlydir")

    def wait_aof_rewrite_done(self, timeout=30):
        def done():
            i = self.info("persistence")
            return i.get("aof_rewrite_in_progress") == 0 and i.get("aof_rewrite_scheduled") == 0
        wait_for(done, timeout, what="AOF rewrite to finish")

    def wait_bgsave_done(self, timeout=30):
        wait_for(lambda: self.info("persistence").get("rdb_bgsave_in_progress") == 0, timeout,
                 what="BGSAVE to finish")

    def __repr__(self):
        return f"<Server {self.name} port={self.port} dir={self.dir}>"


def replicate(replica, primary, timeout=30):
    """Attach replica to primary and wait for the link and offsets."""
    replica.admin().execute_command("REPLICAOF", "127.0.0.1", primary.port)
    wait_for(lambda: replica.info("replication").get("master_link_status") == "up", timeout,
             what="master_link_status:up")

    def online():
        # after a diskless sync the primary holds the stream back until the
        # replica's first REPLCONF ACK (sent once a second): wait for "online"
        for k, v in primary.info("replication").items():
            if k.startswith("slave") and isinstance(v, dict) and int(v.get("port", -1)) == replica.port:
                return v.get("state") == "online"
        return False
    wait_for(online, timeout, what="replica online on the primary")
    wait_sync(primary, replica, timeout)


def wait_sync(primary, replica, timeout=30):
    """Wait until the replica has processed everything the primary sent."""
    def synced():
        p = primary.info("replication")
        r = replica.info("replication")
        if r.get("master_link_status") != "up":
            return False
        # the replica must also be acked on the primary's side
        return p["master_repl_offset"] == r.get("slave_repl_offset") and r.get("master_sync_in_progress") == 0
    wait_for(synced, timeout, what="replica offset == primary offset")


# An RDB file (or AOF preamble) starts with "REDIS" and a 4-digit version;
# Valkey 9 writes "VALKEY" and a 3-digit one ("VALKEY080").
RDB_MAGICS = (b"REDIS", b"VALKEY")


def is_rdb(data):
    return bytes(data[:6]).startswith(RDB_MAGICS)


def copy_aof(src_server, dst_dir):
    """Copy a server's AOF directory (manifest + files) into dst_dir."""
    src = src_server.aof_dir()
    dst = Path(dst_dir) / src.name
    shutil.copytree(src, dst)
    return dst


def parse_resp_commands(data):
    """Parse a RESP command stream (AOF increment file) into a list of argv lists."""
    cmds = []
    i = 0
    n = len(data)
    while i < n:
        if data[i:i + 1] != b"*":
            raise ValueError(f"bad AOF at {i}: {data[i:i + 20]!r}")
        j = data.index(b"\r\n", i)
        argc = int(data[i + 1:j])
        i = j + 2
        argv = []
        for _ in range(argc):
            assert data[i:i + 1] == b"$", data[i:i + 20]
            j = data.index(b"\r\n", i)
            ln = int(data[i + 1:j])
            i = j + 2
            argv.append(data[i:i + ln])
            i += ln + 2
        cmds.append(argv)
    return cmds


def aof_commands(server):
    """All commands in the server's AOF files that are RESP text (not RDB preamble)."""
    d = server.aof_dir()
    manifest = (d / (server.config.get("appendfilename", "appendonly.aof") + ".manifest")).read_text()
    files = []
    for line in manifest.splitlines():
        parts = line.split()
        kv = dict(zip(parts[0::2], parts[1::2]))
        files.append((kv["file"], kv["type"], int(kv.get("seq", 0))))
    # base first, then increments in sequence order
    files.sort(key=lambda f: (0 if f[1] == "b" else 1, f[2]))
    cmds = []
    for fname, _type, _seq in files:
        raw = (d / fname).read_bytes()
        if is_rdb(raw):
            continue  # RDB preamble base file
        cmds.extend(parse_resp_commands(raw))
    return cmds


def aof_size(server):
    return sum(p.stat().st_size for p in server.aof_dir().iterdir() if p.is_file())


# ---------------------------------------------------------------------------
# A deterministic mixed workload and a full snapshot of a server's keyspace.

SESSION_COMMANDS = {b"SESSION.CREATE", b"SESSION.GET", b"SESSION.RENEW", b"SESSION.SET", b"SESSION.CAS",
                    b"SESSION.REVOKE", b"SESSION.TTL"}
INTERNAL_COMMANDS = {b"SESSION.APPLY", b"SESSION.APPLYSET", b"SESSION.APPLYRENEW"}

_SID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _rnd_sid(rnd, n=22):
    return "".join(rnd.choice(_SID_ALPHABET) for _ in range(n))


def _rnd_bytes(rnd, n):
    return bytes(rnd.randrange(256) for _ in range(n))


def run_workload(r, seed=1, n=24, steps=None, keys=None):
    """Mixed session workload on client r (RESP2, decode=False or True).

    All timeouts are long (>= 10 min), so nothing changes state while a test
    compares servers. Returns the list of session keys that may exist.
    Every op of the contract is used: CREATE, GET, GET TOUCH, RENEW,
    RENEW IDLE, SET (DATA/META/UNSET/IFVERSION), CAS, REVOKE, TTL, DEL.
    """
    import random

    rnd = random.Random(seed)
    keys = list(keys or [])
    ex = r.execute_command

    def create(k):
        opts = []
        if rnd.random() < 0.7:
            opts += ["SUBJECT", f"user{rnd.randint(1, 5)}"]
        opts += ["IDLE", rnd.choice([600000, 1800000, 3600000])]
        if rnd.random() < 0.6:
            opts += ["ABSOLUTE", rnd.choice([0, 86400000, 7200000])]
        if rnd.random() < 0.6:
            opts += ["GRACE", rnd.choice([0, 1000, 60000])]
        nm = rnd.randint(0, 3)
        if nm:
            opts += ["META", nm]
            for j in range(nm):
                opts += [f"m{j}", f"meta-{rnd.randint(0, 99999)}"]
        nd = rnd.randint(0, 5)
        if nd:
            opts += ["DATA"]
            for j in range(nd):
                opts += [f"f{j}", _rnd_bytes(rnd, rnd.randint(0, 300))]
        assert ex("SESSION.CREATE", k, *opts) == 1

    for _ in range(n):
        k = f"sess:{rnd.choice(['acme', 'globex', 't-1'])}:{_rnd_sid(rnd, rnd.choice([16, 22, 43]))}"
        create(k)
        keys.append(k)

    def version(k):
        rep = ex("SESSION.GET", k, "NODATA")
        if rep is None:
            return None
        d = pairs_to_dict(rep)
        return d.get(b"version", d.get("version"))

    ops = ["touch", "renew", "renew_idle", "set_data", "set_meta", "set_unset", "set_ifversion",
           "set_conflict", "cas", "cas_conflict", "revoke", "del", "get", "ttl", "recreate"]
    for _ in range(steps if steps is not None else n * 5):
        k = rnd.choice(keys)
        op = rnd.choice(ops)
        try:
            if op == "touch":
                ex("SESSION.GET", k, "TOUCH")
            elif op == "renew":
                ex("SESSION.RENEW", k)
            elif op == "renew_idle":
                ex("SESSION.RENEW", k, "IDLE", rnd.choice([900000, 2400000]))
            elif op == "set_data":
                ex("SESSION.SET", k, "DATA", f"f{rnd.randint(0, 7)}", _rnd_bytes(rnd, rnd.randint(0, 200)))
            elif op == "set_meta":
                ex("SESSION.SET", k, "META", 1, f"m{rnd.randint(0, 4)}", f"v{rnd.randint(0, 999)}")
            elif op == "set_unset":
                ex("SESSION.SET", k, "UNSET", 2, f"f{rnd.randint(0, 7)}", f"f{rnd.randint(0, 7)}",
                   "DATA", "u", str(rnd.randint(0, 9)))
            elif op == "set_ifversion":
                v = version(k)
                if v is not None:
                    ex("SESSION.SET", k, "IFVERSION", v, "DATA", "iv", str(v))
            elif op == "set_conflict":
                ex("SESSION.SET", k, "IFVERSION", 10 ** 6, "DATA", "never", "x")
            elif op == "cas":
                v = version(k)
                if v is not None:
                    ex("SESSION.CAS", k, v, "DATA", "cas", str(v), "blob", _rnd_bytes(rnd, 50))
            elif op == "cas_conflict":
                ex("SESSION.CAS", k, 10 ** 6)
            elif op == "revoke":
                if rnd.random() < 0.5:
                    ex("SESSION.REVOKE", k, "REASON", f"reason {rnd.randint(0, 9)}")
                else:
                    ex("SESSION.REVOKE", k)
            elif op == "del":
                ex("DEL", k)
            elif op == "get":
                ex("SESSION.GET", k)
            elif op == "ttl":
                ex("SESSION.TTL", k)
            elif op == "recreate":
                if ex("EXISTS", k) == 0:
                    create(k)
        except redis.ResponseError as e:
            msg = str(e)
            assert msg.startswith(("CONFLICT ", "REVOKED ")), f"unexpected error in workload {op}: {msg}"
    # some plain keys next to the sessions
    r.set("plain:str", "value")
    r.hset("plain:hash", mapping={"a": "1", "b": "2"})
    r.set("plain:ttl", "x", px=3600000)
    return keys


def snapshot(server, with_get=True):
    """Everything observable about the keyspace (without changing it)."""
    r = server.client(protocol=3, decode=False)
    keys = sorted(r.keys("*"))
    out = {}
    for k in keys:
        e = {
            "type": r.type(k),
            "pexpiretime": r.execute_command("PEXPIRETIME", k),
            "digest": r.execute_command("DEBUG", "DIGEST-VALUE", k),
        }
        if with_get and k.startswith(b"sess:"):
            try:
                e["get"] = norm_session(r.execute_command("SESSION.GET", k))
            except redis.ResponseError as ex:
                e["get"] = "error: " + str(ex)
        out[k] = e
    return {"digest": server.digest(), "keys": out}


# ---------------------------------------------------------------------------
# A fake primary: the only way a test can send the internal effect commands
# (SESSION.APPLY / APPLYSET / APPLYRENEW) now that clients are refused them.

# An empty RDB: magic and version, EOF, a zero checksum (not checked).
_EMPTY_RDB = b"REDIS0009\xff" + b"\x00" * 8


def _resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class FakePrimary:
    """Stands in for a primary: a server made its replica (`replicaof` this
    port) gets an empty full sync, then whatever `call` streams, run by the
    server's primary link exactly as a real primary's effects are. A
    replica's replies to its primary are never sent, but Redis logs each
    error it answers there; `call` reads the log and raises that error as a
    `redis.ResponseError`, so tests read like calls from a client."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.conn = None
        self.buf = b""
        self.offset = 0
        self.replica = None

    @classmethod
    def feed(cls, server, timeout=20):
        """Makes a running `server` a writable replica of a new fake primary."""
        primary = cls()
        c = server.admin()
        c.execute_command("CONFIG", "SET", "replica-read-only", "no")
        c.execute_command("REPLICAOF", "127.0.0.1", primary.port)
        return primary.attach(server, timeout)

    def attach(self, replica, timeout=20):
        """Completes the handshake and full sync of `replica` (a `Server`
        started with `replicaof 127.0.0.1 <self.port>`)."""
        self.replica = replica
        self.listener.settimeout(timeout)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(timeout)
        while True:
            cmd = self._read_command()
            name = cmd[0].upper()
            if name == b"PING":
                self.conn.sendall(b"+PONG\r\n")
            elif name in (b"REPLCONF", b"AUTH"):
                self.conn.sendall(b"+OK\r\n")
            elif name in (b"PSYNC", b"SYNC"):
                self.conn.sendall(b"+FULLRESYNC %s 0\r\n" % (b"f" * 40))
                self.conn.sendall(b"$%d\r\n%s" % (len(_EMPTY_RDB), _EMPTY_RDB))
                break
        wait_for(lambda: replica.info("replication").get("master_link_status") == "up",
                 timeout=timeout, what="the replica to sync with the fake primary")
        # a full sync restarts the AOF: let that rewrite finish first
        replica.wait_aof_rewrite_done(timeout)
        self._send(_resp("SELECT", 0))
        return self

    def _fill(self):
        chunk = self.conn.recv(65536)
        if not chunk:
            raise AssertionError("the replica closed its link to the fake primary")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_command(self):
        head = self._line()
        if not head.startswith(b"*"):
            return head.split()
        args = []
        for _ in range(int(head[1:])):
            n = int(self._line()[1:])
            while len(self.buf) < n + 2:
                self._fill()
            args.append(self.buf[:n])
            self.buf = self.buf[n + 2:]
        return args

    def _send(self, data):
        self.conn.sendall(data)
        self.offset += len(data)

    def sync(self, timeout=20):
        """Returns once the replica has run everything sent so far."""
        target = self.offset
        self._send(_resp("REPLCONF", "GETACK", "*"))
        deadline = time.time() + timeout
        while time.time() < deadline:
            cmd = self._read_command()
            if len(cmd) >= 3 and cmd[0].upper() == b"REPLCONF" and cmd[1].upper() == b"ACK" \
                    and int(cmd[2]) >= target:
                return
        raise AssertionError("the replica did not acknowledge the fake primary's stream")

    def _log_size(self):
        try:
            return self.replica.logfile.stat().st_size
        except FileNotFoundError:
            return 0

    def call(self, *args):
        """Streams one command and waits until the replica ran it; raises
        the error it answered, if any."""
        start = self._log_size()
        self._send(_resp(*args))
        self.sync()
        with open(self.replica.logfile, "rb") as f:
            f.seek(start)
            new = f.read().decode(errors="replace")
        # Redis logs "... to its master: '", Valkey "... to its primary: '"
        for line in new.splitlines():
            m = re.search(r"sending an error to its (?:master|primary): '", line)
            if m:
                msg = line[m.end():].rsplit("' after processing the command", 1)[0]
                raise redis.ResponseError(msg.lstrip("-"))

    def close(self):
        for s in (self.conn, self.listener):
            if s is not None:
                s.close()
