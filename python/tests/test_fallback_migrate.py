"""`redis-session migrate`: fallback sessions become module sessions in
place, with every clock, version, meta and data entry kept, resumable, while
clients keep writing."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integration"))
sys.path.insert(0, str(ROOT / "python" / "src"))

from sessionlib import Server, new_sid, norm_session, norm_ttl  # noqa: E402

from redis_session.fallback import migrate as mig  # noqa: E402
from redis_session.fallback import wire  # noqa: E402
from redis_session.fallback.wire import Layout, Options  # noqa: E402
from test_fallback_scripts import run  # noqa: E402

OPTS = Options()
L = Layout()


@pytest.fixture
def srv(tmp_path: Any) -> Any:
    s = Server(tmp_path / "m", name="module")
    s.start()
    yield s
    s.stop()


def fb_get(r: Any, k: Any) -> Any:
    return wire.decode_get(run(r, wire.get(k, OPTS)))


def module_get(r: Any, k: Any) -> Any:
    return norm_session(r.execute_command("SESSION.GET", k))[1]


def test_migrate_keeps_every_session_whole(srv: Any) -> None:
    r = srv.client(decode=False)
    keys = {}
    for n in range(30):
        k = L.session("acme" if n % 2 else "globex", new_sid())
        kw: dict[str, Any] = dict(
            subject=f"user{n % 4}".encode() if n % 3 else b"",
            meta={b"ip": b"10.0.0.%d" % n} if n % 5 else None,
            data={b"cart": b"%d" % n, b"bin": bytes(range(256))[: n * 7]},
            absolute=0 if n % 7 == 0 else None,
            idle=600_000 + n,
        )
        assert len(run(r, wire.create(k, k.split(b":")[1], OPTS, True, **kw))) == 4
        keys[k] = kw
    ks = list(keys)
    # versions > 1, a renewal with a new idle, a tombstone, an empty CAS
    run(r, wire.set_fields(ks[0], b"globex", OPTS, True, data={b"x": b"1"}, meta={b"ua": b"m"}))
    run(r, wire.renew(ks[1], OPTS, idle=900_000))
    run(r, wire.revoke(ks[2], b"globex", OPTS, True, reason=b"stolen cookie"))
    run(r, wire.cas(ks[3], b"acme", OPTS, True, 1, {}))
    r.hset(L.settings("acme"), mapping={"idle": 700_000, "maxpersubject": 9})
    foreign = L.session("acme", new_sid())
    r.hset(foreign, "not", "ours")
    before = {k: (fb_get(r, k) if k != ks[2] else None, r.pexpiretime(k)) for k in ks}
    subjects_before = {s: run(r, wire.index_list(L.index("acme", s), s)) for s in (b"user1", b"user2")}

    rep = mig.migrate(srv.client(decode=False))
    assert rep.finished and rep.converted == 30 and rep.tombstones == 1 and rep.not_sessions == 1, str(rep)
    for k in ks:
        assert r.type(k) == b"sessionT1"
        if k == ks[2]:
            with pytest.raises(redis.ResponseError, match="REVOKED stolen cookie"):
                r.execute_command("SESSION.GET", k)
            assert r.pexpiretime(k) == before[k][1]
            continue
        got = module_get(r, k)
        want: Any
        want, pexp = before[k]
        for name in wire.GET_NAMES:
            if name == "state":
                continue
            assert got[name] == want[name], (name, got[name], want[name])
        assert r.pexpiretime(k) == pexp
    assert norm_ttl(r.execute_command("SESSION.TTL", ks[5]))[1]["state"] == "active"
    # the module's own index has the subjects' sessions
    for s, listed in subjects_before.items():
        assert sorted(r.execute_command("SESSION.LIST", "acme", s)) == listed
    # tenant settings moved; the fallback's own keys are gone
    tg = r.execute_command("SESSION.TENANT", "GET", "acme")
    t = dict(zip(tg[::2], tg[1::2], strict=True))
    assert t[b"idle"] == 700_000 and t[b"maxpersubject"] == 9
    assert r.keys(b"*@subject*") == [] and r.keys(b"*@settings") == []
    assert r.type(foreign) == b"hash"
    # a CAS on the version the client last saw still works
    assert r.execute_command("SESSION.CAS", ks[0], 2, "DATA", "after", "1") == 3
    # a second run finds nothing to do
    rep2 = mig.migrate(srv.client(decode=False))
    assert rep2.converted == 0 and rep2.finished


def test_migrate_resumes_after_interruption(srv: Any) -> None:
    r = srv.client(decode=False)
    ks = [L.session("acme", new_sid()) for _ in range(40)]
    for k in ks:
        run(r, wire.create(k, b"acme", OPTS, True, subject=b"u", data={b"a": b"1"}))

    class Stop(Exception):
        pass

    def boom(rep: Any) -> Any:
        raise Stop

    with pytest.raises(Stop):
        mig.migrate(srv.client(decode=False), batch=10, progress=boom)
    types = [r.type(k) for k in ks]
    assert b"hash" in types and b"sessionT1" in types  # stopped half-way
    assert sorted(run(r, wire.index_list(L.index("acme", "u"), b"u"))) != []  # fallback index kept
    rep = mig.migrate(srv.client(decode=False))
    assert rep.finished and all(r.type(k) == b"sessionT1" for k in ks)
    assert sorted(r.execute_command("SESSION.LIST", "acme", "u")) == sorted(ks)


def test_migrate_under_concurrent_writes_loses_nothing(srv: Any) -> None:
    """Writers keep changing fields while the migration converts the keys:
    each write lands either in the hash before the conversion (and is
    carried over) or in the module session after it."""
    r = srv.client(decode=False)
    ks = [L.session("acme", new_sid()) for _ in range(20)]
    for k in ks:
        run(r, wire.create(k, b"acme", OPTS, True))
    stop = threading.Event()
    written: dict[bytes, int] = {k: 0 for k in ks}

    def writer(idx: Any) -> Any:
        c = srv.client(decode=False)
        n = 0
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            k = ks[(idx + n) % len(ks)]
            field = b"w%d" % idx
            val = b"%d" % n
            try:
                run(c, wire.set_fields(k, b"acme", OPTS, True, data={field: val}))
            except redis.ResponseError as e:
                assert str(e).startswith("WRONGTYPE")
                c.execute_command("SESSION.SET", k, "DATA", field, val)
            n += 1
        written[ks[idx]] = n

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    rep = mig.migrate(srv.client(decode=False), batch=5)
    time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(40)
    assert rep.finished, str(rep)
    # every writer's last value for every key it wrote is there
    for i in range(3):
        n = written[ks[i]]
        last = {}
        for j in range(n):
            last[ks[(i + j) % len(ks)]] = b"%d" % j
        for k, v in last.items():
            assert module_get(r, k)["data"][b"w%d" % i] == v


def test_migrate_refuses_without_module(tmp_path: Any) -> None:
    s = Server(tmp_path / "p", load_module=False, name="plain").start()
    try:
        with pytest.raises(mig.MigrationError):
            mig.migrate(s.client(decode=False))
    finally:
        s.stop()


def test_cli_dry_run_and_run(srv: Any, capsys: Any) -> None:
    r = srv.client(decode=False)
    k = L.session("acme", new_sid())
    run(r, wire.create(k, b"acme", OPTS, True, data={b"a": b"1"}))
    url = f"redis://127.0.0.1:{srv.port}/0"
    assert mig.main([url, "--dry-run"]) == 0
    assert r.type(k) == b"hash"
    assert mig.main([url]) == 0
    assert r.type(k) == b"sessionT1"
    assert "converted 1 sessions" in capsys.readouterr().out
