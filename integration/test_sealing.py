"""Sealed data at rest (SPEC §7, issue 5): module option `keyfile`,
SESSION.KEYRING LIST/RELOAD, `INFO session` sealing counters, and the promise
that RDB files, AOF files (with and without the RDB preamble), DUMP payloads
and replication traffic hold no plaintext data value, while SESSION.GET still
answers plaintext.

Every "no plaintext" check has a control run on a server without a key file
that must find the very same markers in the very same artefacts, so a broken
search (compression, wrong file, nothing written yet) cannot pass silently.

Sealed value layout (as implemented): 0x01 | id_len | id | nonce(24) | ct+tag(16),
associated data = tenant, sid, field name.
"""

import os
import secrets
import socket
import time
import uuid
from pathlib import Path

import pytest
import redis

from sessionlib import (
    FakePrimary,
    ServerDied,
    dump_join,
    dump_split,
    is_rdb,
    new_sid,
    norm_session,
    parse_resp_commands,
    replicate,
    to_str,
    wait_for,
    wait_sync,
)

pytestmark = pytest.mark.timeout(120)

NONCE = 24
TAG = 16
AUTH_ERR = "SEALED sealed data failed authentication"
NO_KEYFILE_ERR = "SEALED data is sealed and no key file is loaded"


def unknown_key_err(kid):
    return f"SEALED data sealed under key '{kid}', which is not in the key file"


# ---------------------------------------------------------------------------
# key files


def new_hex():
    return secrets.token_hex(32)


class KeyFile:
    """A key file on disk; keys is a list of (id, 64-hex) with the active first."""

    def __init__(self, path, keys=None, mode=0o600):
        self.path = Path(path)
        self.all_hex = []
        if keys is not None:
            self.write(keys, mode=mode)

    def write(self, keys, mode=0o600, header="# redis-session key file\n\n", raw=None):
        """Atomically replace the file. raw: write this text instead of `keys`."""
        text = raw if raw is not None else header + "".join(f"{i}:{h}\n" for i, h in keys)
        for _i, h in keys or []:
            self.all_hex.append(h)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text)
        os.chmod(tmp, mode)
        os.replace(tmp, self.path)
        return self

    def secrets_in(self, blob):
        """Key material (hex in either case, or raw bytes) found in blob."""
        if isinstance(blob, str):
            blob = blob.encode("utf-8", "surrogateescape")
        found = []
        for h in self.all_hex:
            for needle in (h.encode(), h.upper().encode(), bytes.fromhex(h), h[:16].encode(), h[-16:].encode()):
                if needle in blob:
                    found.append(needle)
        return found


@pytest.fixture
def keys():
    """Stable key material for one test: k1, k2, k3."""
    return {"k1": new_hex(), "k2": new_hex(), "k3": new_hex()}


@pytest.fixture
def keyfile(tmp_path, keys):
    return KeyFile(tmp_path / "session.keys", [("k1", keys["k1"])])


def sealed_server(make_server, keyfile, name="sealed", config=None, **module_args):
    cfg = {"rdbcompression": "no", **(config or {})}
    return make_server(module_args={"keyfile": str(keyfile.path), **module_args}, config=cfg, name=name)


def plain_server(make_server, name="plain", config=None, **module_args):
    cfg = {"rdbcompression": "no", **(config or {})}
    return make_server(module_args=module_args or None, config=cfg, name=name)


def start_refused(make_server, keyfile_path, name="refused"):
    """Start a server with keyfile_path; it must refuse to load. Returns its log."""
    srv = make_server(module_args={"keyfile": str(keyfile_path)}, name=name, start=False)
    try:
        srv.start(timeout=15)
    except ServerDied:
        srv.proc = None  # it was supposed to die
        return srv.logfile.read_text(errors="replace")
    pytest.fail(f"server started with a bad key file {keyfile_path} (module loaded): {srv}")


# ---------------------------------------------------------------------------
# small helpers


def marker(tag="M"):
    return f"MARKER-{tag}-{uuid.uuid4().hex}".encode()


def cmd(r, *a):
    return r.execute_command(*a)


def err(r, *a):
    try:
        rep = r.execute_command(*a)
    except redis.ResponseError as e:
        return str(e)
    raise AssertionError(f"{a[:2]}: expected an error reply, got {rep!r}")


def data_of(r, key, *opts):
    """SESSION.GET key ... -> data dict (bytes -> bytes), or None if missing."""
    _names, d = norm_session(cmd(r, "SESSION.GET", key, *opts))
    if d is None:
        return None
    return {bytes(k) if isinstance(k, (bytes, bytearray)) else k.encode(): v for k, v in d["data"].items()}


def session_of(r, key, *opts):
    return norm_session(cmd(r, "SESSION.GET", key, *opts))[1]


def info_session(srv):
    """INFO session as a dict of str -> str (no type guessing by redis-py)."""
    raw = srv.raw()
    try:
        rep = raw.call("INFO", "session")
    finally:
        raw.close()
    out = {}
    for line in rep.value.decode().splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        out[k] = v
    return out


def sealed_counts(srv):
    """{key id: count} from INFO session (zero counts dropped)."""
    out = {}
    for k, v in info_session(srv).items():
        if k.startswith("session_sealed_values_"):
            n = int(v)
            if n:
                out[k[len("session_sealed_values_"):]] = n
    return out


def keyring_list(srv):
    """SESSION.KEYRING LIST under RESP2 as an ordered list of (id, status)."""
    rep = cmd(srv.client(), "SESSION.KEYRING", "LIST")
    assert isinstance(rep, list) and len(rep) % 2 == 0, rep
    return [(to_str(rep[i]), to_str(rep[i + 1])) for i in range(0, len(rep), 2)]


def prefix(kid):
    return b"\x02" + bytes([len(kid)]) + kid.encode()


def segments(blob, kid):
    """Offsets of the sealed values under key id kid in blob."""
    p = prefix(kid)
    out, i = [], blob.find(p)
    while i >= 0:
        out.append(i)
        i = blob.find(p, i + 1)
    return out


def seg_len(kid, plain_len):
    return 2 + len(kid) + NONCE + plain_len + TAG


def dump(r, key):
    payload = cmd(r, "DUMP", key)
    assert payload is not None, f"DUMP {key}: no such key"
    return payload


def restore(r, key, payload, replace=True):
    args = ["RESTORE", key, 0, payload] + (["REPLACE"] if replace else [])
    return cmd(r, *args)


def ttl_idle(r, key):
    rep = cmd(r, "SESSION.TTL", key)
    d = rep if isinstance(rep, dict) else {to_str(rep[i]): rep[i + 1] for i in range(0, len(rep), 2)}
    return {to_str(k): v for k, v in d.items()}["idle_ms"]


def files_bytes(directory):
    """{name: bytes} of every regular file under directory (recursive)."""
    out = {}
    for p in sorted(Path(directory).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(directory))] = p.read_bytes()
    return out


def aof_files(srv):
    d = srv.aof_dir()
    return {f"aof/{n}": b for n, b in files_bytes(d).items()}


def assert_markers(artefacts, markers, sealed):
    """sealed: no marker in any artefact; control: every marker somewhere, and
    every artefact that is expected to hold a given marker holds it."""
    if sealed:
        hits = {name: [m.decode() for m in markers if m in blob] for name, blob in artefacts.items()}
        hits = {n: h for n, h in hits.items() if h}
        assert not hits, f"plaintext data values found in sealed artefacts: {hits}"
    else:
        joined = b"\x00".join(artefacts.values())
        missing = [m.decode() for m in markers if m not in joined]
        assert not missing, (
            f"control run: markers not found in the unsealed artefacts {sorted(artefacts)} -> the search "
            f"itself is broken: {missing}"
        )


def assert_no_key_material(kf, artefacts):
    leaks = {name: kf.secrets_in(blob) for name, blob in artefacts.items()}
    leaks = {n: [x[:8] for x in v] for n, v in leaks.items() if v}
    assert not leaks, f"key material found in {sorted(leaks)}"


# ---------------------------------------------------------------------------
# A capture of what a replica receives: a raw SYNC to the primary.


class SyncCapture:
    """Acts as a replica: disk-based SYNC ($<len> + RDB) or, with diskless=True,
    REPLCONF capa eof + PSYNC ? -1 ($EOF:<mark> + RDB streamed from a socket)."""

    def __init__(self, port, diskless=False, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        deadline = time.monotonic() + timeout
        if diskless:
            for c in (b"REPLCONF listening-port 1\r\n", b"REPLCONF capa eof capa psync2\r\n"):
                self.sock.sendall(c)
                assert self._line(deadline) == b"+OK"
            self.sock.sendall(b"PSYNC ? -1\r\n")
            line = self._line(deadline)
            assert line.startswith(b"+FULLRESYNC"), line
        else:
            self.sock.sendall(b"SYNC\r\n")
        line = self._line(deadline)
        assert line.startswith(b"$"), f"unexpected sync reply {line[:80]!r}"
        if line.startswith(b"$EOF:"):
            mark = line[5:]
            assert len(mark) == 40, line
            while not self.buf.endswith(mark):
                self._recv(deadline)
            self.rdb, self.buf = self.buf[:-40], b""
        else:
            n = int(line[1:])
            while len(self.buf) < n:
                self._recv(deadline)
            self.rdb, self.buf = self.buf[:n], self.buf[n:]
        self.stream = b""
        # a diskless replica is put online by an ACK that arrives after the
        # primary has reaped its RDB child: ACK periodically, as replicas do
        self.acks = diskless

    def _line(self, deadline):
        """One reply line, skipping the keepalive newlines sent during BGSAVE."""
        while True:
            self.buf = self.buf.lstrip(b"\n")
            if b"\r\n" in self.buf:
                line, self.buf = self.buf.split(b"\r\n", 1)
                return line
            self._recv(deadline)

    def _recv(self, deadline):
        if time.monotonic() > deadline:
            raise AssertionError("timed out reading the replication stream")
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return
        if not chunk:
            raise AssertionError("primary closed the replication link")
        self.buf += chunk

    def read_until(self, needle, timeout=20):
        """Read the command stream until needle appears; return it all."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while needle not in self.buf:
            if self.acks:
                self.sock.sendall(b"REPLCONF ACK 0\r\n")
            self._recv(deadline)
        self.stream = self.buf
        return self.stream

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------
# A workload that puts one marker in each way data reaches a session.


def write_markers(r, tag="", pre=""):
    """CREATE ... DATA, SET DATA, CAS DATA, binary and multi-field values.

    Returns (keys, markers) where every marker is a live data value."""
    ks, ms = [], []
    k1 = f"sess:acme:{new_sid()}"
    m1, m1b = marker(tag + "create"), marker(tag + "create2")
    cmd(r, "SESSION.CREATE", k1, "SUBJECT", "alice", "META", 1, "ip", "10.1.2.3",
        "DATA", "cart", m1, "bin", b"\x00\xff" + m1b + b"\r\n")
    k2 = f"sess:globex:{new_sid(43)}"
    m2 = marker(tag + "set")
    cmd(r, "SESSION.CREATE", k2, "DATA", "x", "1")
    cmd(r, "SESSION.SET", k2, "DATA", "token", m2)
    k3 = f"sess:t-1:{new_sid(16)}"
    m3 = marker(tag + "cas")
    cmd(r, "SESSION.CREATE", k3, "DATA", "old", "value")
    cmd(r, "SESSION.CAS", k3, 1, "DATA", "profile", m3, "other", "y" * 100)
    cmd(r, "SESSION.GET", k3, "TOUCH")
    ks += [k1, k2, k3]
    ms += [m1, m1b, m2, m3]
    return ks, ms


MARKER_VALUES = 6  # data values write_markers leaves (markers and fillers)


def check_read_back(r, keys, markers):
    seen = b"".join(v for k in keys for v in (data_of(r, k) or {}).values())
    missing = [m.decode() for m in markers if m not in seen]
    assert not missing, f"markers not readable through SESSION.GET: {missing}"


# ===========================================================================
# 1. the key file


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_keyfile_loads_with_owner_only_modes(make_server, tmp_path, keys, mode):
    kf = KeyFile(tmp_path / "k.keys")
    text = (
        "# keys for redis-session\n\n"
        f"k2:{keys['k2']}\n"
        "   \n"
        f"# k9:{'0' * 64}\n"
        f"old_key-1:{keys['k1'].upper()}\n"
    )
    kf.write([("k2", keys["k2"]), ("old_key-1", keys["k1"])], raw=text, mode=mode)
    srv = sealed_server(make_server, kf)
    assert keyring_list(srv) == [("k2", "active"), ("old_key-1", "available")]
    r3 = srv.client(protocol=3)
    assert cmd(r3, "SESSION.KEYRING", "LIST") == {"k2": "active", "old_key-1": "available"}
    info = info_session(srv)
    assert info.get("session_keyring_active") == "k2", info
    # sealing works with it, and nothing echoes the key bytes
    r = srv.client(decode=False)
    k = f"sess:acme:{new_sid()}"
    cmd(r, "SESSION.CREATE", k, "DATA", "a", "secret-a")
    assert data_of(r, k) == {b"a": b"secret-a"}
    assert len(segments(dump(r, k), "k2")) == 1
    assert_no_key_material(kf, {
        "log": srv.logfile.read_bytes(),
        "info": repr(srv.info()).encode() + repr(info).encode(),
        "config": repr(cmd(srv.client(), "CONFIG", "GET", "*")).encode(),
        "keyring-list": repr(keyring_list(srv)).encode(),
    })


def _bad_keyfile_cases(keys):
    h1, h2 = keys["k1"], keys["k2"]
    return {
        "mode-0644": (f"k1:{h1}\n", 0o644),
        "mode-0640": (f"k1:{h1}\n", 0o640),
        "mode-0604": (f"k1:{h1}\n", 0o604),
        "mode-0660": (f"k1:{h1}\n", 0o660),
        "mode-0700": (f"k1:{h1}\n", 0o700),
        "mode-0666": (f"k1:{h1}\n", 0o666),
        "bad-hex": (f"k1:{h1[:-2]}zz\n", 0o600),
        "short-key": (f"k1:{h1[:-2]}\n", 0o600),
        "long-key": (f"k1:{h1}ab\n", 0o600),
        "duplicate-id": (f"k1:{h1}\nk1:{h2}\n", 0o600),
        "no-key-empty": ("", 0o600),
        "no-key-comments-only": (f"# k1:{h1}\n\n# nothing\n", 0o600),
        "no-colon": (f"k1{h1}\n", 0o600),
        "empty-id": (f":{h1}\n", 0o600),
        "bad-id-char": (f"k.1:{h1}\n", 0o600),
        "bad-id-space": (f"k 1:{h1}\n", 0o600),
        "id-too-long": (f"{'a' * 33}:{h1}\n", 0o600),
        "bad-second-line": (f"k1:{h1}\nk2:{h2[:10]}\n", 0o600),
    }


BAD_CASES = list(_bad_keyfile_cases({"k1": "0" * 64, "k2": "1" * 64}))


@pytest.mark.parametrize("case", BAD_CASES)
def test_keyfile_refused(make_server, tmp_path, keys, case):
    text, mode = _bad_keyfile_cases(keys)[case]
    kf = KeyFile(tmp_path / "bad.keys")
    kf.write([("k1", keys["k1"]), ("k2", keys["k2"])], raw=text, mode=mode)
    log = start_refused(make_server, kf.path)
    assert "session: refusing to load:" in log, log[-2000:]
    assert_no_key_material(kf, {"log": log.encode()})


def test_keyfile_missing_refused(make_server, tmp_path):
    log = start_refused(make_server, tmp_path / "no-such.keys")
    assert "session: refusing to load:" in log, log[-2000:]
    line = [ln for ln in log.splitlines() if "refusing to load" in ln][0]
    assert "no-such.keys" in line, f"the refusal should name the file: {line}"


def test_keyfile_option_is_immutable(make_server, keyfile, tmp_path, keys):
    srv = sealed_server(make_server, keyfile)
    r = srv.client()
    other = KeyFile(tmp_path / "other.keys", [("k2", keys["k2"])])
    e = err(r, "CONFIG", "SET", "session.keyfile", str(other.path))
    assert e.startswith("ERR"), e
    assert keyring_list(srv) == [("k1", "active")]
    assert cmd(r, "CONFIG", "GET", "session.keyfile") == ["session.keyfile", str(keyfile.path)]


def test_no_keyfile_keyring_and_plaintext(make_server):
    srv = plain_server(make_server)
    r = srv.client(decode=False)
    assert keyring_list(srv) == []
    assert err(r, "SESSION.KEYRING", "RELOAD").startswith("ERR"), "RELOAD without a key file"
    assert info_session(srv).get("session_keyring_active", "") == ""
    assert sealed_counts(srv) == {}
    k = f"sess:acme:{new_sid()}"
    m = marker()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", m)
    assert m in dump(r, k), "control: without a key file the value is stored as is"
    assert err(r, "SESSION.KEYRING", "BOGUS").startswith("ERR"), "unknown KEYRING subcommand"
    assert err(r, "SESSION.KEYRING", "LIST", "extra").startswith("ERR")


# ===========================================================================
# 2. values are sealed, reads answer plaintext


def test_values_sealed_and_read_back(make_server, keyfile):
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    k = f"sess:acme:{new_sid()}"
    m = marker()
    values = {
        b"cart": m,
        b"empty": b"",
        b"allbytes": bytes(range(256)),
        b"big": m + b"z" * 20000,
        b"\x00fld": b"\r\n" + m + b"\x00",
    }
    args = [x for kv in values.items() for x in kv]
    cmd(r, "SESSION.CREATE", k, "SUBJECT", "subject-bob", "META", 1, "ua", "agent-007", "DATA", *args)
    assert data_of(r, k) == values
    assert data_of(r, k, "FIELDS", 2, "cart", "allbytes") == {b"cart": m, b"allbytes": bytes(range(256))}
    assert cmd(r, "SESSION.GET", k, "TOUCH", "FIELDS", 3, "allbytes", "nope", "\x00fld", "VALUES") == [
        bytes(range(256)), None, values[b"\x00fld"]]
    assert data_of(r, k, "TOUCH") == values
    r3 = srv.client(protocol=3, decode=False)
    _n, d3 = norm_session(cmd(r3, "SESSION.GET", k))
    assert {bytes(a): b for a, b in d3["data"].items()} == values

    payload = dump(r, k)
    body, _ver = dump_split(payload)
    assert m not in payload
    assert bytes(range(256)) not in payload
    offs = segments(body, "k1")
    assert len(offs) == len(values), f"expected one sealed value per field, found {len(offs)}"
    # only values are sealed: field names, subject and meta stay readable (documented)
    for clear in (b"cart", b"allbytes", b"subject-bob", b"agent-007"):
        assert clear in body, clear
    assert sealed_counts(srv) == {"k1": len(values)}

    # field-level SET keeps other fields, values still sealed, counts follow
    m2 = marker("set")
    cmd(r, "SESSION.SET", k, "UNSET", 1, "big", "DATA", "new", m2)
    exp = {kk: v for kk, v in values.items() if kk != b"big"}
    exp[b"new"] = m2
    assert data_of(r, k) == exp
    payload = dump(r, k)
    assert m not in payload and m2 not in payload
    assert len(segments(payload, "k1")) == len(exp)
    assert sealed_counts(srv) == {"k1": len(exp)}


def test_nonces_are_fresh(make_server, keyfile):
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    k = f"sess:acme:{new_sid()}"
    n = 120
    args = []
    for i in range(n):
        args += [f"f{i:03d}", "same-value"]
    cmd(r, "SESSION.CREATE", k, "DATA", *args)
    body, _ = dump_split(dump(r, k))
    offs = segments(body, "k1")
    assert len(offs) == n
    nonces = {body[o + 4:o + 4 + NONCE] for o in offs}
    assert len(nonces) == n, f"{n - len(nonces)} repeated nonces"
    # the same plaintext written again is sealed afresh
    k2 = f"sess:acme:{new_sid()}"
    cmd(r, "SESSION.CREATE", k2, "DATA", "a", "v")
    before = dump(r, k2)
    cmd(r, "SESSION.SET", k2, "DATA", "a", "v")
    after = dump(r, k2)
    o1, o2 = segments(before, "k1")[0], segments(after, "k1")[0]
    assert before[o1:o1 + seg_len("k1", 1)] != after[o2:o2 + seg_len("k1", 1)]
    assert data_of(r, k2) == {b"a": b"v"}


def test_sealed_counts_follow_lifecycle(make_server, keyfile):
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    a, b, c = (f"sess:acme:{new_sid()}" for _ in range(3))
    cmd(r, "SESSION.CREATE", a, "DATA", "x", "1", "y", "2")
    cmd(r, "SESSION.CREATE", b, "DATA", "x", "1", "y", "2", "z", "3")
    cmd(r, "SESSION.CREATE", c)  # no data, nothing sealed
    assert sealed_counts(srv) == {"k1": 5}
    cmd(r, "SESSION.REVOKE", a)
    assert sealed_counts(srv) == {"k1": 3}
    cmd(r, "SESSION.CAS", b, 1, "DATA", "only", "one")
    assert sealed_counts(srv) == {"k1": 1}
    cmd(r, "DEL", b)
    assert sealed_counts(srv) == {}
    cmd(r, "SESSION.SET", c, "DATA", "p", "q")
    assert sealed_counts(srv) == {"k1": 1}
    r.save()
    srv.restart()
    assert sealed_counts(srv) == {"k1": 1}, "counts are rebuilt when the RDB loads"
    assert data_of(srv.client(decode=False), c) == {b"p": b"q"}


# ===========================================================================
# 3. artefacts: RDB, DUMP, AOF, replication


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "control-plain"])
def test_rdb_and_dump_hold_no_plaintext(make_server, keyfile, sealed):
    srv = sealed_server(make_server, keyfile) if sealed else plain_server(make_server)
    r = srv.client(decode=False)
    keys, markers = write_markers(r)
    check_read_back(r, keys, markers)
    r.save()
    arte = {"dump.rdb": (srv.dir / "dump.rdb").read_bytes()}
    for k in keys:
        arte[f"DUMP {k}"] = dump(r, k)
    assert_markers(arte, markers, sealed)
    if sealed:
        assert_no_key_material(keyfile, arte)
        assert any(prefix("k1") in b for b in arte.values())
        # with RDB compression on as well (default configuration)
        r.config_set("rdbcompression", "yes")
        r.save()
        arte2 = {"dump.rdb (compressed)": (srv.dir / "dump.rdb").read_bytes()}
        arte2.update({f"DUMP {k} (compressed)": dump(r, k) for k in keys})
        assert_markers(arte2, markers, True)
    # and the file loads back to the same plaintext
    srv.restart()
    check_read_back(srv.client(decode=False), keys, markers)


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "control-plain"])
@pytest.mark.parametrize("preamble", ["yes", "no"], ids=["preamble-yes", "preamble-no"])
def test_aof_holds_no_plaintext(make_server, keyfile, preamble, sealed):
    cfg = {"appendonly": "yes", "aof-use-rdb-preamble": preamble}
    srv = sealed_server(make_server, keyfile, config=cfg) if sealed else plain_server(make_server, config=cfg)
    r = srv.client(decode=False)
    srv.wait_aof_rewrite_done()
    keys, markers = write_markers(r, "a")

    # 1) the appended commands
    arte = aof_files(srv)
    assert_markers(arte, markers, sealed)
    cmds = [c for name, b in arte.items() if not is_rdb(b) and name.endswith(".incr.aof")
            for c in parse_resp_commands(b)]
    assert any(c[0].upper().startswith(b"SESSION.") for c in cmds), "no session command in the AOF"
    if sealed:
        assert any(prefix("k1") in a for c in cmds for a in c), "no sealed value in the appended commands"
        assert_no_key_material(keyfile, arte)

    # 2) after a rewrite, plus writes appended after it
    r.bgrewriteaof()
    srv.wait_aof_rewrite_done()
    keys2, markers2 = write_markers(r, "b")
    arte = aof_files(srv)
    base = [b for name, b in arte.items() if ".base." in name]
    assert base, f"no base file after BGREWRITEAOF: {sorted(arte)}"
    assert is_rdb(base[0]) == (preamble == "yes")
    assert_markers({n: b for n, b in arte.items() if ".base." in n}, markers, sealed)
    assert_markers(arte, markers + markers2, sealed)
    if sealed:
        assert any(prefix("k1") in b for b in base), "the rewritten base holds no sealed value"
        assert_no_key_material(keyfile, arte)

    # 3) a restart from the AOF gives the plaintext back: the same digest
    # (it is over the plaintext) and the same counts
    digest, counts = srv.digest(), sealed_counts(srv)
    srv.restart()
    check_read_back(srv.client(decode=False), keys + keys2, markers + markers2)
    assert srv.digest() == digest
    assert sealed_counts(srv) == counts


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "control-plain"])
@pytest.mark.parametrize("diskless", [False, True], ids=["disk-sync", "diskless-sync"])
def test_replication_traffic_holds_no_plaintext(make_server, keyfile, sealed, diskless):
    cfg = {"repl-diskless-sync": "yes" if diskless else "no", "repl-diskless-sync-delay": 0}
    srv = sealed_server(make_server, keyfile, config=cfg) if sealed else plain_server(make_server, config=cfg)
    r = srv.client(decode=False)
    keys, markers = write_markers(r, "pre")       # travel in the full-sync RDB
    cap = SyncCapture(srv.port, diskless=diskless)
    try:
        keys2, markers2 = write_markers(r, "post")  # travel as commands
        end = f"sync-end-{uuid.uuid4().hex}"
        r.set(end, "1")
        needle = end.encode() + b"\r\n$1\r\n1\r\n"
        stream = cap.read_until(needle)
    finally:
        cap.close()
    assert is_rdb(cap.rdb), cap.rdb[:20]
    for k in keys:
        assert k.encode() in cap.rdb, f"{k} not in the full-sync RDB"
    cmds = parse_resp_commands(stream[:stream.index(needle) + len(needle)])
    for k in keys2:
        assert any(k.encode() in c for c in cmds), f"no command for {k} in the stream"
    arte = {"full-sync RDB": cap.rdb, "command stream": stream}
    assert_markers({"full-sync RDB": cap.rdb}, markers, sealed)
    assert_markers(arte, markers + markers2, sealed)
    if sealed:
        assert prefix("k1") in stream, "no sealed value in the command stream"
        assert_no_key_material(keyfile, arte)
    check_read_back(r, keys + keys2, markers + markers2)


def test_replica_with_same_keyfile(make_pair, keyfile):
    primary, replica = make_pair(
        module_args={"keyfile": str(keyfile.path)},
        config={"rdbcompression": "no"},
        replica_config={"appendonly": "yes"},
        link=False,
    )
    r = primary.client(decode=False)
    keys, markers = write_markers(r, "pre")
    replicate(replica, primary)
    keys2, markers2 = write_markers(r, "post")
    m3 = marker("post-set")
    cmd(r, "SESSION.SET", keys[0], "DATA", "late", m3)
    wait_sync(primary, replica)
    replica.wait_aof_rewrite_done()
    all_keys, all_markers = keys + keys2, markers + markers2 + [m3]

    # both hold the same plaintext (digests agree); what each writes out is
    # sealed under k1 with its own fresh nonces
    assert primary.digest() == replica.digest()
    rr = replica.client(decode=False)
    for k in all_keys:
        assert cmd(rr, "DEBUG", "DIGEST-VALUE", k) == cmd(r, "DEBUG", "DIGEST-VALUE", k), k
        pd, rd = cmd(r, "DUMP", k), cmd(rr, "DUMP", k)
        assert pd != rd, "every DUMP seals afresh"
        assert len(segments(pd, "k1")) == len(segments(rd, "k1")) > 0, k
    assert sealed_counts(primary) == sealed_counts(replica) == {"k1": 2 * MARKER_VALUES + 1}

    rr.save()
    arte = {"replica dump.rdb": (replica.dir / "dump.rdb").read_bytes()}
    arte.update({f"replica {n}": b for n, b in aof_files(replica).items()})
    assert_markers(arte, all_markers, True)
    assert_no_key_material(keyfile, arte)
    assert any(prefix("k1") in b for b in arte.values())

    # restarted from its own AOF (sealed SESSION.APPLY commands), the
    # replica holds the primary's plaintext: same digest
    digest = primary.digest()
    replica.restart()
    rr = replica.client(decode=False)
    assert replica.digest() == digest

    # promoted, the replica opens everything with its (same) key file
    cmd(rr, "REPLICAOF", "NO", "ONE")
    wait_for(lambda: replica.info("replication")["role"] == "master", 10, what="promotion")
    check_read_back(rr, all_keys, all_markers)


def test_replica_sealed_counts_match_primary(make_pair, keyfile):
    """INFO session_sealed_values_<id> on a replica follows the full sync and
    the command stream (SESSION.APPLY) like on the primary."""
    primary, replica = make_pair(module_args={"keyfile": str(keyfile.path)}, link=False)
    r = primary.client(decode=False)
    keys, _ = write_markers(r, "pre")
    replicate(replica, primary)
    assert sealed_counts(replica) == sealed_counts(primary) == {"k1": MARKER_VALUES}, "after the full sync"
    write_markers(r, "post")
    cmd(r, "SESSION.SET", keys[0], "DATA", "late", "L")
    cmd(r, "DEL", keys[1])
    wait_sync(primary, replica)
    expected = {"k1": 2 * MARKER_VALUES + 1 - 2}
    assert sealed_counts(primary) == expected
    assert sealed_counts(replica) == expected, "replica counts after stream-applied writes"


def test_replica_without_the_key_keeps_data_sealed(make_server, keyfile, tmp_path, keys):
    """A replica loaded with another key file keeps the sealed bytes it
    received as they are (so it writes them out unchanged) but cannot open
    them; its digest is over those bytes, not the primary's plaintext."""
    primary = sealed_server(make_server, keyfile, name="primary", config={"repl-diskless-sync-delay": 0})
    other = KeyFile(tmp_path / "other.keys", [("k2", keys["k2"])])
    replica = sealed_server(make_server, other, name="replica", config={"repl-diskless-sync-delay": 0})
    r = primary.client(decode=False)
    ks, ms = write_markers(r)
    replicate(replica, primary)
    rr = replica.client(decode=False)
    assert sealed_counts(replica) == {"k1": MARKER_VALUES}
    d1 = replica.digest()
    rr.save()
    replica.restart()
    rr = replica.client(decode=False)
    assert replica.digest() == d1, "the sealed bytes were written out unchanged"
    # the replica's copy, carried back to the primary, opens there
    for k in ks:
        assert restore(r, k, dump(rr, k)) == b"OK"
    check_read_back(r, ks, ms)
    cmd(rr, "REPLICAOF", "NO", "ONE")
    wait_for(lambda: replica.info("replication")["role"] == "master", 10, what="promotion")
    for k in ks:
        assert err(rr, "SESSION.GET", k) == unknown_key_err("k1"), k


# ===========================================================================
# 4. rotation


def test_rotation_with_reload(make_server, keyfile, keys):
    """Sessions are held in plaintext; what leaves the server is sealed under
    the key active at that moment. Values that arrive under a key the ring
    does not hold stay sealed (and unreadable) until the key comes back."""
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    s1, s2, s4 = (f"sess:acme:{new_sid()}" for _ in range(3))
    cmd(r, "SESSION.CREATE", s1, "DATA", "a", "A1", "b", "B1")
    cmd(r, "SESSION.CREATE", s2, "DATA", "c", "C1")
    cmd(r, "SESSION.CREATE", s4, "DATA", "f", "F1")
    assert sealed_counts(srv) == {"k1": 4}
    old_dump = dump(r, s4)
    assert segments(old_dump, "k1")

    # rotate: k2 becomes active, k1 stays available
    keyfile.write([("k2", keys["k2"]), ("k1", keys["k1"])])
    assert cmd(r, "SESSION.KEYRING", "RELOAD") == b"OK"
    assert keyring_list(srv) == [("k2", "active"), ("k1", "available")]
    assert info_session(srv)["session_keyring_active"] == "k2"
    assert data_of(r, s1) == {b"a": b"A1", b"b": b"B1"}
    assert sealed_counts(srv) == {"k2": 4}, "everything now goes out under k2"
    p = dump(r, s1)
    assert len(segments(p, "k2")) == 2 and not segments(p, "k1")
    # a DUMP taken under k1 still opens: k1 is in the file
    assert restore(r, s4, old_dump) == b"OK"
    assert data_of(r, s4) == {b"f": b"F1"}

    s3 = f"sess:acme:{new_sid()}"
    cmd(r, "SESSION.CREATE", s3, "DATA", "d", "D1")
    assert sealed_counts(srv) == {"k2": 5}

    # drop k1 from the file: sessions in memory stay readable (they are held
    # in plaintext), a k1 artefact arriving now cannot be opened
    keyfile.write([("k2", keys["k2"])])
    assert cmd(r, "SESSION.KEYRING", "RELOAD") == b"OK"
    assert keyring_list(srv) == [("k2", "active")]
    assert data_of(r, s1) == {b"a": b"A1", b"b": b"B1"}
    assert data_of(r, s4) == {b"f": b"F1"}
    assert restore(r, s4, old_dump) == b"OK"
    assert err(r, "SESSION.GET", s4) == unknown_key_err("k1")
    assert err(r, "SESSION.GET", s4, "FIELDS", 1, "f") == unknown_key_err("k1")
    assert err(r, "SESSION.SET", s4, "DATA", "g", "G1") == unknown_key_err("k1")
    assert sealed_counts(srv) == {"k1": 1, "k2": 4}, "values held under a missing key are counted under it"
    assert segments(dump(r, s4), "k1"), "a value that cannot be opened goes out as it came"

    # k3 active, k1 back: the reload opens s4, which is then held like any
    # other session (and digests like one loaded afresh)
    keyfile.write([("k3", keys["k3"]), ("k2", keys["k2"]), ("k1", keys["k1"])])
    assert cmd(r, "SESSION.KEYRING", "RELOAD") == b"OK"
    assert keyring_list(srv) == [("k3", "active"), ("k2", "available"), ("k1", "available")]
    assert sealed_counts(srv) == {"k3": 5}
    assert data_of(r, s4) == {b"f": b"F1"}
    cmd(r, "SESSION.SET", s4, "DATA", "g", "G1")
    assert sealed_counts(srv) == {"k3": 6}
    assert info_session(srv)["session_keyring_active"] == "k3"

    # a restart with only k3 reads back everything the save wrote
    r.save()
    keyfile.write([("k3", keys["k3"])])
    srv.restart()
    r = srv.client(decode=False)
    assert sealed_counts(srv) == {"k3": 6}
    assert data_of(r, s1) == {b"a": b"A1", b"b": b"B1"}
    assert data_of(r, s4) == {b"f": b"F1", b"g": b"G1"}
    assert_no_key_material(keyfile, {"log": srv.logfile.read_bytes()})


@pytest.mark.parametrize("case", ["bad-hex", "mode-0644", "missing", "empty", "duplicate-id", "bad-id"])
def test_reload_of_bad_file_keeps_old_keys(make_server, keyfile, keys, case):
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    s1 = f"sess:acme:{new_sid()}"
    cmd(r, "SESSION.CREATE", s1, "DATA", "a", "A1")
    h2 = keys["k2"]
    if case == "missing":
        keyfile.path.unlink()
    else:
        text, mode = {
            "bad-hex": (f"k2:{h2[:-1]}g\nk1:{keys['k1']}\n", 0o600),
            "mode-0644": (f"k2:{h2}\nk1:{keys['k1']}\n", 0o644),
            "empty": ("# rotated away\n", 0o600),
            "duplicate-id": (f"k2:{h2}\nk2:{keys['k1']}\n", 0o600),
            "bad-id": (f"k/2:{h2}\nk1:{keys['k1']}\n", 0o600),
        }[case]
        keyfile.write([("k2", h2)], raw=text, mode=mode)
    e = err(r, "SESSION.KEYRING", "RELOAD")
    assert e.startswith("ERR "), e
    assert_no_key_material(keyfile, {"error": e.encode()})
    assert keyring_list(srv) == [("k1", "active")]
    assert info_session(srv)["session_keyring_active"] == "k1"
    assert data_of(r, s1) == {b"a": b"A1"}
    s2 = f"sess:acme:{new_sid()}"
    cmd(r, "SESSION.CREATE", s2, "DATA", "b", "B1")
    assert segments(dump(r, s2), "k1") and not segments(dump(r, s2), "k2")
    assert data_of(r, s2) == {b"b": b"B1"}

    # once the file is fixed, RELOAD takes it
    keyfile.write([("k2", h2), ("k1", keys["k1"])])
    assert cmd(r, "SESSION.KEYRING", "RELOAD") == b"OK"
    assert keyring_list(srv) == [("k2", "active"), ("k1", "available")]
    assert data_of(r, s1) == {b"a": b"A1"}
    assert_no_key_material(keyfile, {"log": srv.logfile.read_bytes()})


# ===========================================================================
# 5. tampering and moving values


def _tamper_session(r):
    k = f"sess:acme:{new_sid()}"
    cmd(r, "SESSION.CREATE", k, "IDLE", 600000, "DATA", "cart", "C" * 40, "note", "N" * 40)
    return k


TAMPER = {
    "nonce": lambda o, n: o + 4 + 5,
    "ciphertext-first": lambda o, n: o + 4 + NONCE,
    "ciphertext-last": lambda o, n: o + 4 + NONCE + n - 1,
    "tag": lambda o, n: o + 4 + NONCE + n + TAG - 1,
    "format-byte": lambda o, n: o,
}


@pytest.mark.parametrize("where", list(TAMPER) + ["key-id"])
def test_tampered_value_fails_authentication(make_server, keyfile, where):
    srv = sealed_server(make_server, keyfile, **{"touch-resolution": 0})
    r = srv.client(decode=False)
    k = _tamper_session(r)
    payload = dump(r, k)
    body, ver = dump_split(payload)
    offs = segments(body, "k1")
    assert len(offs) == 2
    b = bytearray(body)
    if where == "key-id":
        b[offs[0] + 3] = ord("9")  # k1 -> k9
        expected = unknown_key_err("k9")
    else:
        b[TAMPER[where](offs[0], 40)] ^= 0x01
        expected = AUTH_ERR
    bad = dump_join(bytes(b), ver)

    # control: the untouched payload restores and opens
    restore(r, k, payload)
    assert data_of(r, k) == {b"cart": b"C" * 40, b"note": b"N" * 40}

    assert restore(r, k, bad) == b"OK"
    time.sleep(0.05)
    digest = cmd(r, "DEBUG", "DIGEST-VALUE", k)
    idle_before = ttl_idle(r, k)
    version = session_of(r, k, "NODATA")["version"]
    assert err(r, "SESSION.GET", k) == expected
    assert err(r, "SESSION.GET", k, "FIELDS", 1, "note") == expected
    time.sleep(0.05)
    assert err(r, "SESSION.GET", k, "TOUCH") == expected
    assert ttl_idle(r, k) <= idle_before, "a failed GET TOUCH renewed the session"
    # a write cannot re-seal what it cannot open
    assert err(r, "SESSION.SET", k, "DATA", "cart", "D").startswith("SEALED"), "SET on a tampered session"
    assert cmd(r, "DEBUG", "DIGEST-VALUE", k) == digest, "a failed read/write changed the session"
    assert session_of(r, k, "NODATA")["version"] == version
    assert cmd(r, "EXISTS", k) == 1


def test_swapped_fields_fail_authentication(make_server, keyfile):
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    k = f"sess:acme:{new_sid()}"
    cmd(r, "SESSION.CREATE", k, "DATA", "role", "user_", "plan", "admin")
    payload = dump(r, k)
    body, ver = dump_split(payload)
    offs = segments(body, "k1")
    assert len(offs) == 2
    n = seg_len("k1", 5)
    (a, b) = offs
    sa, sb = body[a:a + n], body[b:b + n]
    swapped = bytearray(body)
    swapped[a:a + n], swapped[b:b + n] = sb, sa
    assert restore(r, k, dump_join(bytes(swapped), ver)) == b"OK"
    assert err(r, "SESSION.GET", k) == AUTH_ERR
    # the original payload is fine
    restore(r, k, payload)
    assert data_of(r, k) == {b"role": b"user_", b"plan": b"admin"}


@pytest.mark.parametrize("target", ["other-sid", "other-tenant"])
def test_value_transplanted_from_another_session(make_server, keyfile, target):
    """One sealed value copied byte for byte into another session's payload
    (same field name and length) fails: sid and tenant are bound."""
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    sid = new_sid()
    src = f"sess:acme:{sid}"
    dst = f"sess:acme:{new_sid()}" if target == "other-sid" else f"sess:globex:{sid}"
    cmd(r, "SESSION.CREATE", src, "DATA", "role", "admin")
    cmd(r, "SESSION.CREATE", dst, "DATA", "role", "guest")
    n = seg_len("k1", 5)
    sbody, _ = dump_split(dump(r, src))
    so = segments(sbody, "k1")[0]
    dbody, ver = dump_split(dump(r, dst))
    do = segments(dbody, "k1")[0]
    forged = bytearray(dbody)
    forged[do:do + n] = sbody[so:so + n]
    assert restore(r, dst, dump_join(bytes(forged), ver)) == b"OK"
    assert err(r, "SESSION.GET", dst) == AUTH_ERR
    assert data_of(r, src) == {b"role": b"admin"}


def _source_and_target(make_server, keyfile, how):
    """A sealed server, a session at src, and dst: another sid of the same
    tenant ("...-sid") or the same sid under another tenant."""
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    sid = new_sid()
    src = f"sess:acme:{sid}"
    dst = f"sess:acme:{new_sid()}" if how.endswith("-sid") else f"sess:globex:{sid}"
    cmd(r, "SESSION.CREATE", src, "SUBJECT", "eve", "DATA", "cart", "secret-cart", "x", "y")
    return srv, r, src, dst, {b"cart": b"secret-cart", b"x": b"y"}


@pytest.mark.parametrize("how", ["restore-sid", "restore-tenant"])
def test_session_restored_under_another_key_fails_authentication(make_server, keyfile, how):
    _srv, r, src, dst, expect = _source_and_target(make_server, keyfile, how)
    assert restore(r, dst, dump(r, src), replace=False) == b"OK"
    assert cmd(r, "EXISTS", dst) == 1
    assert err(r, "SESSION.GET", dst) == AUTH_ERR
    assert err(r, "SESSION.GET", dst, "TOUCH") == AUTH_ERR
    assert data_of(r, src) == expect, "the original stays readable"
    # the stuck copy goes out as it came: restored at its own name, it opens
    assert restore(r, src, dump(r, dst)) == b"OK"
    assert data_of(r, src) == expect


MOVES = ["rename-sid", "rename-tenant", "copy-sid", "copy-tenant", "move-db-then-rename"]


@pytest.mark.parametrize("how", MOVES)
def test_session_moved_in_memory_is_rebound(make_server, keyfile, how):
    """RENAME, COPY and MOVE act on the session held in memory like on any
    value (the client holds write access to both keys); from then on it is
    sealed for its new name, and its sealed form opens only there."""
    srv, r, src, dst, expect = _source_and_target(make_server, keyfile, how)
    if how.startswith("rename"):
        assert cmd(r, "RENAME", src, dst) in (True, b"OK")
    elif how.startswith("copy"):
        assert cmd(r, "COPY", src, dst) == 1
    else:
        dst = f"sess:acme:{new_sid()}"
        assert cmd(r, "MOVE", src, 1) == 1
        r1 = srv.client(decode=False, db=1)
        assert cmd(r1, "RENAME", src, dst) in (True, b"OK")
        assert cmd(r1, "MOVE", dst, 0) == 1
    assert data_of(r, dst) == expect
    if how.startswith("copy"):
        assert data_of(r, src) == expect
    p = dump(r, dst)
    assert b"secret-cart" not in p
    other = f"sess:acme:{new_sid()}"
    assert restore(r, other, p) == b"OK"
    assert err(r, "SESSION.GET", other) == AUTH_ERR, "the new seal is bound to the new name"
    r.save()
    srv.restart()
    r = srv.client(decode=False)
    assert data_of(r, dst) == expect, "saved under its new name, it loads there"


# ===========================================================================
# 6. a server without the key


def test_restart_without_keyfile_refuses_sealed_data(make_server, keyfile, tmp_path, keys):
    srv = sealed_server(make_server, keyfile, **{"touch-resolution": 0})
    r = srv.client(decode=False)
    ks, ms = write_markers(r)
    k = ks[0]
    r.save()

    # 1) no key file at all
    srv.stop()
    del srv.module_args["keyfile"]
    srv.start()
    r = srv.client(decode=False)
    assert cmd(r, "EXISTS", *ks) == len(ks), "the sealed RDB must still load"
    for kk in ks:
        assert err(r, "SESSION.GET", kk) == NO_KEYFILE_ERR, kk
    digest = cmd(r, "DEBUG", "DIGEST-VALUE", k)
    idle = ttl_idle(r, k)
    time.sleep(0.05)
    assert err(r, "SESSION.GET", k, "TOUCH") == NO_KEYFILE_ERR
    assert err(r, "SESSION.GET", k, "FIELDS", 1, "cart") == NO_KEYFILE_ERR
    assert ttl_idle(r, k) <= idle, "a failed GET TOUCH renewed the session"
    assert err(r, "SESSION.SET", k, "DATA", "cart", "overwrite").startswith("SEALED")
    assert cmd(r, "DEBUG", "DIGEST-VALUE", k) == digest
    assert keyring_list(srv) == []
    assert sealed_counts(srv) == {"k1": MARKER_VALUES}, "INFO still counts the sealed values it holds"

    # 2) a key file without k1
    other = KeyFile(tmp_path / "other.keys", [("k2", keys["k2"])])
    srv.stop()
    srv.module_args["keyfile"] = str(other.path)
    srv.start()
    r = srv.client(decode=False)
    for kk in ks:
        assert err(r, "SESSION.GET", kk) == unknown_key_err("k1"), kk

    # 3) with the key again: everything is there
    srv.stop()
    srv.module_args["keyfile"] = str(keyfile.path)
    srv.start()
    check_read_back(srv.client(decode=False), ks, ms)


def test_keyring_reload_opens_sessions_held_sealed(make_server, keyfile, tmp_path, keys):
    """Sessions loaded without their key stay sealed; a KEYRING RELOAD that
    brings the key opens them in place, so the server digests like one that
    loads the same RDB with the key (and the index counts follow)."""
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    ks, ms = write_markers(r)
    r.save()
    fresh_digest = srv.digest()

    other = KeyFile(tmp_path / "other.keys", [("k2", keys["k2"])])
    srv.stop()
    srv.module_args["keyfile"] = str(other.path)
    srv.start()
    r = srv.client(decode=False)
    assert sealed_counts(srv) == {"k1": MARKER_VALUES}
    assert srv.digest() != fresh_digest, "held sealed: digested as sealed bytes"
    other.write([("k2", keys["k2"]), ("k1", keys["k1"])])
    assert cmd(r, "SESSION.KEYRING", "RELOAD") == b"OK"
    assert sealed_counts(srv) == {"k2": MARKER_VALUES}
    assert srv.digest() == fresh_digest
    check_read_back(r, ks, ms)
    assert b"could now be opened" in srv.logfile.read_bytes()


def test_apply_payload_in_plaintext_goes_into_the_aof_sealed(make_server, keyfile):
    """SESSION.APPLY is passed on in the form this server writes out: a
    plaintext payload (from a primary without a key file) reaches a sealed
    server's AOF sealed."""
    plain = plain_server(make_server, name="plain", config={"appendonly": "yes", "aof-use-rdb-preamble": "no"})
    plain.wait_aof_rewrite_done()
    rp = plain.client(decode=False)
    k = f"sess:acme:{new_sid()}"
    m = marker("apply")
    cmd(rp, "SESSION.CREATE", k, "DATA", "cart", m)
    applies = [c for name, b in aof_files(plain).items() if name.endswith(".incr.aof")
               for c in parse_resp_commands(b) if c[0].upper() == b"SESSION.APPLY"]
    assert applies and m in applies[-1][2], "the plain server's AOF holds the plaintext APPLY"
    payload = applies[-1][2]

    srv = sealed_server(make_server, keyfile, config={"appendonly": "yes", "aof-use-rdb-preamble": "no"})
    feed = FakePrimary.feed(srv)
    srv.wait_aof_rewrite_done()
    r = srv.client(decode=False)
    feed.call("SESSION.APPLY", k, payload)
    feed.call("SESSION.APPLY", k, payload, "NOEXPIRE")
    feed.close()
    assert data_of(r, k) == {b"cart": m}
    arte = aof_files(srv)
    assert_markers(arte, [m], True)
    assert any(prefix("k1") in b for b in arte.values())
    digest = srv.digest()
    srv.restart()
    assert data_of(srv.client(decode=False), k) == {b"cart": m}
    assert srv.digest() == digest


def test_field_writes_from_a_plain_primary_reach_a_sealed_replica_sealed(make_server, keyfile):
    """A primary without a key file sends a field write as SESSION.APPLYSET
    (its fields in plaintext). A replica with a key file merges it and passes
    the whole value on to its own AOF sealed, never the fields as they came."""
    primary = plain_server(make_server, name="primary", config={"repl-diskless-sync-delay": 0})
    replica = sealed_server(make_server, keyfile, name="replica",
                            config={"appendonly": "yes", "aof-use-rdb-preamble": "no"})
    r = primary.client(decode=False)
    k = f"sess:acme:{new_sid()}"
    m0, m1 = marker("create"), marker("field")
    cmd(r, "SESSION.CREATE", k, "DATA", "cart", m0)
    replicate(replica, primary)
    replica.wait_aof_rewrite_done()
    assert cmd(r, "SESSION.SET", k, "IFVERSION", 1, "DATA", "late", m1) == 2
    wait_sync(primary, replica)
    assert primary.digest() == replica.digest()
    arte = aof_files(replica)
    assert_markers(arte, [m0, m1], True)
    assert any(prefix("k1") in b for b in arte.values())
    digest = replica.digest()
    replica.restart()
    assert replica.digest() == digest
    cmd(replica.client(decode=False), "REPLICAOF", "NO", "ONE")
    assert data_of(replica.client(decode=False), k) == {b"cart": m0, b"late": m1}


def test_seals_do_not_depend_on_the_key_prefix(make_server, keyfile):
    """Seals bind the whole key name, not the parts the configured prefix
    yields: an RDB written while key-prefix was changed loads and opens."""
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    ks, ms = write_markers(r)
    assert cmd(r, "CONFIG", "SET", "session.key-prefix", "app:") == b"OK"
    r.save()
    assert cmd(r, "CONFIG", "SET", "session.key-prefix", "sess:") == b"OK"
    assert cmd(r, "DEBUG", "RELOAD", "NOSAVE") == b"OK"
    check_read_back(r, ks, ms)
    assert sealed_counts(srv) == {"k1": MARKER_VALUES}


def test_crash_report_holds_no_key_material(make_server, keyfile):
    """The crash report (INFO, module info, client list) never shows key bytes."""
    srv = sealed_server(make_server, keyfile)
    r = srv.client(decode=False)
    write_markers(r)
    cmd(r, "SESSION.KEYRING", "RELOAD")
    srv.expect_dead = True
    try:
        cmd(srv.client(), "DEBUG", "SEGFAULT")
    except (redis.ConnectionError, redis.ResponseError):
        pass
    wait_for(lambda: srv.proc.poll() is not None, 20, what="the crash")
    log = srv.logfile.read_bytes()
    assert b"REDIS BUG REPORT" in log or b"crashed by signal" in log, log[-1500:]
    assert b"session_keyring_active:k1" in log, "the crash report should include INFO session"
    assert_no_key_material(keyfile, {"crash log": log})


def test_plaintext_sessions_get_sealed_when_key_added(make_server, keyfile):
    srv = plain_server(make_server)
    r = srv.client(decode=False)
    k, k2 = f"sess:acme:{new_sid()}", f"sess:acme:{new_sid()}"
    m = marker()
    cmd(r, "SESSION.CREATE", k, "DATA", "a", m, "b", "2")
    cmd(r, "SESSION.CREATE", k2, "DATA", "c", "3")
    assert m in dump(r, k)
    r.save()
    srv.stop()
    srv.module_args["keyfile"] = str(keyfile.path)
    srv.start()
    r = srv.client(decode=False)
    assert data_of(r, k) == {b"a": m, b"b": b"2"}, "plaintext sessions stay readable"
    assert sealed_counts(srv) == {"k1": 3}
    p = dump(r, k)
    assert m not in p and len(segments(p, "k1")) == 2, "what goes out now is sealed"
    r.save()
    assert m not in (srv.dir / "dump.rdb").read_bytes()
    cmd(r, "SESSION.SET", k, "DATA", "b", "3")
    assert data_of(r, k) == {b"a": m, b"b": b"3"}
    assert sealed_counts(srv) == {"k1": 3}


def test_dump_restored_elsewhere(make_server, keyfile, tmp_path, keys):
    """A DUMP carried to another server opens only where the same key is loaded."""
    src = sealed_server(make_server, keyfile, name="src")
    r = src.client(decode=False)
    ks, ms = write_markers(r)
    payloads = {k: dump(r, k) for k in ks}

    same = sealed_server(make_server, keyfile, name="same-key")
    plain = plain_server(make_server, name="no-key")
    other = sealed_server(make_server, KeyFile(tmp_path / "o.keys", [("k2", keys["k2"])]), name="other-key")
    for srv, expected in ((same, None), (plain, NO_KEYFILE_ERR), (other, unknown_key_err("k1"))):
        rr = srv.client(decode=False)
        for k, p in payloads.items():
            assert restore(rr, k, p, replace=False) == b"OK"
        if expected is None:
            check_read_back(rr, ks, ms)
            assert sealed_counts(srv) == sealed_counts(src)
        else:
            for k in ks:
                assert err(rr, "SESSION.GET", k) == expected, (srv.name, k)
