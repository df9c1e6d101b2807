"""`SESSION.GET ... PACKED` (issue 15): one bulk string holding the reply as
MessagePack, layout v1 (README "Packed replies", tests/vectors/packed.json).

- the repository's vectors decode with msgpack to what they claim, and
  msgpack re-encodes them to the same bytes (the module's encoder is held to
  the same bytes by tests/packed_vectors.rs);
- on a real server the packed reply carries exactly the map reply's names
  and values, byte for byte as msgpack encodes that map, with FIELDS,
  NODATA and TOUCH, under RESP2 and RESP3; nil, REVOKED, WRONGTYPE and
  syntax errors stay RESP replies; sealed data comes out in plaintext.
"""

import json
import secrets
import time
from pathlib import Path

import msgpack
import pytest
import redis

from sessionlib import ROOT, err_of, new_key, norm_session

VECTORS = json.loads((ROOT / "tests" / "vectors" / "packed.json").read_text())
ORDER = ["v", "subject", "created", "version", "state", "last_access", "idle_deadline",
         "absolute_deadline", "grace_until", "meta", "data"]


def code(e):
    return e.split()[0]


def from_vector(expected):
    """A vector's `expected` (hex byte strings) as the decoded Python value."""
    out = {}
    for k, v in expected.items():
        if k == "subject":
            v = bytes.fromhex(v)
        elif k in ("meta", "data"):
            v = {bytes.fromhex(a): bytes.fromhex(b) for a, b in v}
        out[k] = v
    return out


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_vectors_decode_and_reencode(case):
    raw = bytes.fromhex(case["packed_hex"])
    decoded = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    want = from_vector(case["expected"])
    assert decoded == want
    assert list(decoded) == [k for k in ORDER if k in want]
    assert isinstance(decoded["state"], str) and isinstance(decoded["subject"], bytes)
    assert msgpack.packb(decoded, use_bin_type=True) == raw


def as_packed(map_reply, data=True):
    """The bytes PACKED must answer for a map reply (both protocols, decode=False)."""
    _names, d = norm_session(map_reply)
    out = {"v": 1}
    for k in ORDER[1:]:
        if k == "data" and not data:
            continue
        v = d[k]
        if k == "state":
            v = v.decode() if isinstance(v, bytes) else v
        out[k] = v
    return msgpack.packb(out, use_bin_type=True)


@pytest.mark.parametrize("protocol", [2, 3])
def test_packed_equals_the_map_reply(server, protocol):
    r = server.client(protocol=protocol, decode=False)
    k = new_key()
    blob = secrets.token_bytes(300)
    r.execute_command("SESSION.CREATE", k, "SUBJECT", b"u\x00\xff", "META", 2, "ip", "10.0.0.7", "ua", "x",
                      "DATA", "cart", "3", "blob", blob, "theme", "dark")
    for opts, data in ([[], True], [["NODATA"], False], [["FIELDS", 3, "theme", "nope", "theme"], True],
                       [["FIELDS", 0], True]):
        p = r.pipeline(transaction=True)
        p.execute_command("SESSION.GET", k, *opts)
        p.execute_command("SESSION.GET", k, *opts, "PACKED")
        m, packed = p.execute()
        assert isinstance(packed, bytes)
        assert packed == as_packed(m, data), opts
    d = msgpack.unpackb(r.execute_command("SESSION.GET", k, "PACKED"))
    assert d["data"] == {b"blob": blob, b"cart": b"3", b"theme": b"dark"}
    assert d["subject"] == b"u\x00\xff" and d["state"] == "active" and d["v"] == 1
    d = msgpack.unpackb(r.execute_command("SESSION.GET", k, "FIELDS", 3, "theme", "nope", "cart", "PACKED"))
    assert list(d["data"].items()) == [(b"theme", b"dark"), (b"cart", b"3")]


def test_packed_touch_renews_and_options_combine(server0):
    r = server0.client(decode=False)
    k = new_key()
    r.execute_command("SESSION.CREATE", k, "IDLE", 600000, "DATA", "a", "1")
    before = msgpack.unpackb(r.execute_command("SESSION.GET", k, "PACKED"))
    for opts in (["TOUCH", "PACKED"], ["packed", "touch"], ["PACKED", "NODATA", "TOUCH"],
                 ["TOUCH", "FIELDS", 1, "a", "PACKED"]):
        time.sleep(0.005)
        d = msgpack.unpackb(r.execute_command("SESSION.GET", k, *opts))
        assert d["last_access"] > before["last_access"], opts
        assert d["idle_deadline"] == d["last_access"] + 600000
        assert ("data" in d) == ("NODATA" not in opts)
        assert d["version"] == before["version"] == 1
        before = d


def test_packed_nil_errors_and_syntax(server):
    r = server.client(decode=False)
    assert r.execute_command("SESSION.GET", new_key(), "PACKED") is None
    k = new_key()
    r.execute_command("SESSION.CREATE", k, "DATA", "a", "1")
    r.execute_command("SESSION.REVOKE", k, "REASON", "logout")
    e = err_of(r.execute_command, "SESSION.GET", k, "PACKED")
    assert code(e) == "REVOKED" and "logout" in e
    r.set("sess:acme:plainstringkey0001", "x")
    assert code(err_of(r.execute_command, "SESSION.GET", "sess:acme:plainstringkey0001", "PACKED")) == "WRONGTYPE"
    k2 = new_key()
    r.execute_command("SESSION.CREATE", k2, "DATA", "a", "1")
    for bad in (["PACKED", "PACKED"], ["FIELDS", 1, "a", "VALUES", "PACKED"], ["PACKED", "VALUES"],
                ["PACKED", "NODATA", "NODATA"], ["PACKED", "FIELDS", 2, "a"]):
        assert code(err_of(r.execute_command, "SESSION.GET", k2, *bad)) == "ERR", bad


def test_packed_sealed_data_is_plaintext(make_server, tmp_path):
    kf = Path(tmp_path) / "session.keys"
    kf.write_text(f"k1:{secrets.token_hex(32)}\n")
    kf.chmod(0o600)
    s = make_server(module_args={"keyfile": str(kf)}, name="sealed")
    r = s.client(decode=False)
    k = new_key()
    r.execute_command("SESSION.CREATE", k, "DATA", "secret", "plain-value")
    d = msgpack.unpackb(r.execute_command("SESSION.GET", k, "TOUCH", "PACKED"))
    assert d["data"] == {b"secret": b"plain-value"}


def test_packed_in_a_script(server):
    r = server.client(decode=False)
    k = new_key()
    r.execute_command("SESSION.CREATE", k, "DATA", "a", "1")
    packed = r.eval("return redis.call('SESSION.GET', KEYS[1], 'PACKED')", 1, k)
    assert msgpack.unpackb(packed)["data"] == {b"a": b"1"}
    with pytest.raises(redis.ResponseError):
        r.eval_ro("return redis.call('SESSION.GET', KEYS[1], 'PACKED')", 1, k)
