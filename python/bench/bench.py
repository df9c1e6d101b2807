"""make bench-python: the package's read path against what stores do today.

Rows (one run, side by side, on one redis-server with the module):
- store.get(sid, touch=True) against redis-py reading the same session as a
  hash (HGETALL + PEXPIRE in a pipeline, values msgspec-decoded) and against
  GET of a blob of the same bytes + one msgspec decode; sync on one
  connection, and asyncio with 100 concurrent tasks;
- a near-cache hit against a network read (store.get), and the hit rate of
  a bounded near-cache on a Zipf-distributed workload;
- the module backend against the Lua fallback (the same store API on plain
  Redis, server-side scripts), same server, same run: read-and-renew, field
  write, CAS, create — what loading the module buys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import redis
import redis.asyncio as aredis
from redis.client import NEVER_DECODE

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integration"))
from sessionlib import Server  # noqa: E402

from redis_session import AsyncSessionStore, NearCache, SessionStore  # noqa: E402

DATA = {
    "user_id": 4242,
    "cart": list(range(40)),
    "theme": "dark",
    "csrf": "x" * 43,
    "flash": ["Saved.", "Welcome back"],
    "prefs": {"lang": "en", "tz": "Europe/Paris", "beta": True, "notes": "y" * 200},
}
META = {"ip": "10.0.0.7", "ua": "Mozilla/5.0 (X11; Linux x86_64)"}
FLOOR_KEY = b"bench:floor"
FLOOR_LEN = [0]
ROWS = ("store.get touch", "HGETALL+PEXPIRE pipeline", "GET blob + msgspec", "GET floor")


def per_call(fn: Any, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def best(fn: Any, n: int, rounds: int = 3) -> float:
    return min(per_call(fn, n) for _ in range(rounds))


def interleaved(fns: dict[str, Any], n: int, rounds: int = 30) -> dict[str, float]:
    """Best per-call time of each, the functions taking turns round by round,
    so that a burst of load on the shared machine hits them all alike."""
    out = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k] = min(out[k], per_call(fn, n // rounds))
    return out


def setup_keys(r: Any, store: SessionStore[Any]) -> tuple[str, bytes, bytes]:
    s = store.create(subject="user42", data=DATA, meta=META, idle=1_800_000)
    enc = {k.encode(): msgspec.msgpack.encode(v) for k, v in DATA.items()}
    hkey = b"hsess:" + s.sid.encode()
    header = {
        b"subject": b"user42",
        b"created": str(s.created).encode(),
        b"version": b"1",
        b"last_access": str(s.last_access).encode(),
        b"idle": b"1800000",
        b"meta:ip": META["ip"].encode(),
        b"meta:ua": META["ua"].encode(),
    }
    r.hset(hkey, mapping={**header, **{b"d:" + k: v for k, v in enc.items()}})
    bkey = b"bsess:" + s.sid.encode()
    r.set(bkey, msgspec.msgpack.encode({"header": {k.decode(): v for k, v in header.items()}, "data": DATA}))
    # the floor: a blob as long as the session's PACKED reply, read with no decode
    packed = r.execute_command("SESSION.GET", store._core.keys.key(s.sid), "PACKED", **{NEVER_DECODE: True})
    FLOOR_LEN[0] = len(packed)
    r.set(FLOOR_KEY, b"x" * len(packed))
    return s.sid, hkey, bkey


def sync_rows(port: int, n: int) -> dict[str, float]:
    r: Any = redis.Redis(port=port)
    store: SessionStore[Any] = SessionStore(r, tenant="bench")
    sid, hkey, bkey = setup_keys(r, store)
    dec = msgspec.msgpack.Decoder()
    pipe_r: Any = redis.Redis(port=port)

    def hash_read() -> Any:
        p = pipe_r.pipeline(transaction=False)
        p.hgetall(hkey)
        p.pexpire(hkey, 1_800_000)
        h, _ = p.execute()
        return {k: dec.decode(v) for k, v in h.items() if k.startswith(b"d:")}

    def blob_read() -> Any:
        return dec.decode(r.get(bkey))

    def floor() -> Any:
        return r.get(FLOOR_KEY)

    out = interleaved(
        {
            "store.get touch": lambda: store.get(sid, touch=True),
            "HGETALL+PEXPIRE pipeline": hash_read,
            "GET blob + msgspec": blob_read,
            "GET floor": floor,
        },
        n * 3,
    )
    out["packed"] = 1.0 if store.backend.packed else 0.0  # type: ignore[attr-defined]
    r.close()
    pipe_r.close()
    return out


def async_rows(port: int, n: int, tasks: int = 100, timeouts: bool = False) -> dict[str, float]:
    """``timeouts``: 1 s socket timeouts as an app would set them; the
    store on `AsyncSessionStore.from_url`'s client, redis-py's own rows on a
    `BlockingConnectionPool` with the same settings. Otherwise one shared
    client without timeouts."""

    async def main() -> dict[str, float]:
        kw: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0} if timeouts else {}
        pool = aredis.BlockingConnectionPool(port=port, max_connections=tasks, **kw)
        r: Any = aredis.Redis(connection_pool=pool)
        sync_store: SessionStore[Any] = SessionStore(redis.Redis(port=port), tenant="bench")
        sid, hkey, bkey = setup_keys(redis.Redis(port=port), sync_store)
        if timeouts:
            store: AsyncSessionStore[Any] = AsyncSessionStore.from_url(
                f"redis://127.0.0.1:{port}/0", tenant="bench", max_connections=tasks, **kw
            )
        else:
            store = AsyncSessionStore(r, tenant="bench")
        dec = msgspec.msgpack.Decoder()

        async def store_get() -> Any:
            return await store.get(sid, touch=True)

        async def hash_read() -> Any:
            p = r.pipeline(transaction=False)
            p.hgetall(hkey)
            p.pexpire(hkey, 1_800_000)
            h, _ = await p.execute()
            return {k: dec.decode(v) for k, v in h.items() if k.startswith(b"d:")}

        async def blob_read() -> Any:
            return dec.decode(await r.get(bkey))

        async def floor() -> Any:
            return await r.get(FLOOR_KEY)

        async def run(fn: Any) -> float:
            per = n // tasks

            async def worker() -> None:
                for _ in range(per):
                    await fn()

            await asyncio.gather(*(worker() for _ in range(tasks)))  # warm
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(tasks)))
            return (time.perf_counter() - t0) / (per * tasks)

        fns = dict(zip(ROWS, (store_get, hash_read, blob_read, floor), strict=True))
        out = {k: float("inf") for k in ROWS}
        for _ in range(3):  # taking turns
            for name, fn in fns.items():
                out[name] = min(out[name], await run(fn))
        await store.aclose()
        await r.aclose()
        return out

    return asyncio.run(main())


def cpu_rows(n: int) -> dict[str, float]:
    """The package's own CPU per read, no network: ``store.get(sid,
    touch=True)`` through the real driver on a client that answers at once
    with a canned reply (PACKED: the one-command path; the RESP2 map: the
    generator path), against one msgspec decode of the blob."""
    from redis_session.module import ModuleBackend

    enc = {k.encode(): msgspec.msgpack.encode(v) for k, v in DATA.items()}
    meta = {k.encode(): v.encode() for k, v in META.items()}
    head = {"subject": b"user42", "created": 1796452928844, "version": 3, "state": "active",
            "last_access": 1796452933844, "idle_deadline": 1796454733844,
            "absolute_deadline": 1797057728844, "grace_until": 1796454793844}  # fmt: skip
    packed = msgspec.msgpack.encode({"v": 1, **head, "meta": meta, "data": enc})
    flat: list[Any] = []
    for k, v in head.items():
        flat += [k.encode(), v.encode() if isinstance(v, str) else v]
    flat += [b"meta", [x for kv in meta.items() for x in kv], b"data", [x for kv in enc.items() for x in kv]]
    sid = "A" * 43

    class Canned:
        def __init__(self, reply: Any) -> None:
            self.reply = reply

        def execute_command(self, *args: Any, **kw: Any) -> Any:
            return self.reply

    out = {}
    for name, packed_mode, reply in (("cpu: store.get, PACKED", True, packed),
                                     ("cpu: store.get, map reply", False, flat)):  # fmt: skip
        store: SessionStore[Any] = SessionStore(Canned(reply), tenant="acme", backend=ModuleBackend(packed=packed_mode))
        out[name] = best(lambda store=store: store.get(sid, touch=True), n * 4, 5)
    dec = msgspec.msgpack.Decoder()
    blob = msgspec.msgpack.encode({"header": head, "data": DATA})
    out["cpu: msgspec decode of the blob"] = best(lambda: dec.decode(blob), n * 4, 5)
    return out


def cache_rows(port: int, n: int, sessions: int, zipf_reads: int) -> dict[str, float]:
    cache = NearCache(max_entries=max(10, sessions // 10))
    store: SessionStore[Any] = SessionStore(redis.Redis(port=port), tenant="bench", near_cache=cache)
    assert store._tracker.wait_up(10)
    s = store.create(data=DATA, meta=META)
    store.get(s.sid)
    for _ in range(100):
        if (g := store.get(s.sid)) is not None and g.cached:
            break
    r = interleaved(
        {
            "hit": lambda: store.get(s.sid),
            "net": lambda: store.get(s.sid, fresh=True),
            "hit_touch": lambda: store.get(s.sid, touch=True),
        },
        n * 2,
    )
    hit, net, hit_touch = r["hit"], r["net"], r["hit_touch"]
    # Zipf (s = 1.1) over `sessions` sessions, cache holding a tenth of them
    sids = [store.create(data={"i": i}).sid for i in range(sessions)]
    weights = [1.0 / (i + 1) ** 1.1 for i in range(sessions)]
    rnd = random.Random(7)
    draws = rnd.choices(range(sessions), weights=weights, k=zipf_reads)
    snap0: Any = store.metrics.snapshot()["cache"]
    for i in draws:
        store.get(sids[i], touch=True)
    snap1: Any = store.metrics.snapshot()["cache"]
    hits = snap1.get("hits", 0) - snap0.get("hits", 0)
    store.close()
    return {
        "near-cache hit": hit,
        "near-cache hit, touch": hit_touch,
        "network read (store.get)": net,
        "zipf hit rate": hits / zipf_reads,
        "zipf sessions": float(sessions),
        "zipf cache entries": float(cache.max_entries),
    }


def backend_rows(port: int, n: int, rounds: int = 5) -> dict[str, dict[str, float]]:
    """Per-call time of four operations through each backend (sync, one
    connection). The backends take turns, round by round, so both meet the
    same load on a shared machine; the best round of each counts."""
    stores: dict[str, SessionStore[Any]] = {}
    sids: dict[str, str] = {}
    version: dict[str, int] = {}
    for kind in ("module", "lua"):
        st: SessionStore[Any] = SessionStore(redis.Redis(port=port), tenant="bench", backend=kind)
        stores[kind] = st
        sids[kind] = st.create(subject="user42", data=DATA, meta=META).sid

    def op(kind: str, name: str) -> Any:
        st, sid = stores[kind], sids[kind]
        if name == "read-and-renew":
            return lambda: st.get(sid, touch=True)
        if name == "field write":
            return lambda: st.set(sid, data={"theme": "light"})
        if name == "CAS":
            cur = st.get(sid, nodata=True)
            version[kind] = cur.version if cur is not None else 0

            def cas() -> None:
                version[kind] = st.cas(sid, version[kind], DATA) or 0

            return cas
        return lambda: st.create(subject="user42", data=DATA, meta=META)

    admin: Any = redis.Redis(port=port)

    def server_usec() -> int:
        st = admin.info("commandstats")
        skip = ("cmdstat_info", "cmdstat_config")
        return sum(int(v["usec"]) for k, v in st.items() if not str(k).startswith(skip))

    out: dict[str, dict[str, float]] = {"module": {}, "lua": {}, "module server": {}, "lua server": {}}
    for name in ("read-and-renew", "field write", "CAS", "create"):
        for _ in range(rounds):
            for kind in ("module", "lua"):
                fn = op(kind, name)
                fn()
                admin.config_resetstat()
                t = per_call(fn, n)
                srv = server_usec() / (n + 1) / 1e6  # per_call runs fn once more to warm up
                out[kind][name] = min(out[kind].get(name, t), t)
                out[kind + " server"][name] = min(out[kind + " server"].get(name, srv), srv)
    for st in stores.values():
        st.close()
    return out


def us(x: float) -> str:
    return f"{x * 1e6:,.1f} µs"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny run (keeps the bench from rotting)")
    ap.add_argument("--json", default=str(ROOT / "python" / "bench" / "results.json"))
    args = ap.parse_args()
    n = 200 if args.smoke else 5000
    load0 = os.getloadavg()
    d = tempfile.mkdtemp(prefix="pybench")
    srv = Server(d, name="bench").start()
    try:
        cpu = cpu_rows(n)
        sync = sync_rows(srv.port, n)
        asy = async_rows(srv.port, n * 2)
        asy_t = async_rows(srv.port, n * 2, timeouts=True)
        cache = cache_rows(srv.port, n, 500 if args.smoke else 10_000, 2_000 if args.smoke else 50_000)
        backends = backend_rows(srv.port, n)
    finally:
        srv.stop()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = f"load average {load0[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    machine = f"{os.cpu_count()}-core {cpu_model}, Python {platform.python_version()}, redis-py {redis.__version__}"
    path = "PACKED" if sync["packed"] else "map reply (module without PACKED)"
    rows = []
    for mode, res in (("sync, 1 connection", sync), ("asyncio, 100 tasks", asy),
                      ("asyncio, 100 tasks, 1 s timeouts", asy_t)):  # fmt: skip
        g, h, b = res["store.get touch"], res["HGETALL+PEXPIRE pipeline"], res["GET blob + msgspec"]
        fl = res["GET floor"]
        rows.append(f"| {mode} | store.get(touch=True) | {us(g)} | | |")
        rows.append(f"| {mode} | HGETALL + PEXPIRE pipeline | {us(h)} | {h / g:.2f}× slower than store.get | ≥ 2× |")
        rows.append(f"| {mode} | GET blob + msgspec decode | {us(b)} | store.get = {g / b:.2f}× its time | ≤ 1.25× |")
        rows.append(f"| {mode} | floor: GET of {FLOOR_LEN[0]} bytes, no decode | {us(fl)} | "
                    f"store.get = {g / fl:.2f}×, blob = {b / fl:.2f}× | |")
    speedup = cache["network read (store.get)"] / cache["near-cache hit"]
    rows.append(f"| sync | near-cache hit (store.get) | {us(cache['near-cache hit'])} | "
                f"{speedup:.0f}× faster than a network read | ≥ 100× |")
    for k, v in cpu.items():
        rows.append(f"| no network | {k[5:]} | {us(v)} | | |")
    rows.append(f"| sync | near-cache hit with touch (renewal queued) | {us(cache['near-cache hit, touch'])} | | |")
    rows.append(f"| sync | network read (store.get, fresh=True) | {us(cache['network read (store.get)'])} | | |")
    rows.append(f"| sync | Zipf(1.1) hit rate, {int(cache['zipf sessions'])} sessions, "
                f"cache of {int(cache['zipf cache entries'])} | {cache['zipf hit rate'] * 100:.1f} % | | |")
    print(f"make bench-python — {when}; {machine}; {load}; read path: {path}" + (" (smoke)" if args.smoke else ""))
    print()
    print("| mode | row | per call | ratio | target |")
    print("|---|---|---:|---|---|")
    for r in rows:
        print(r)
    print()
    print("Module backend against the Lua fallback (same store API, same server, sync, 1 connection):")
    print()
    print("| operation | module | Lua fallback | ratio | server time, module | server time, Lua | ratio |")
    print("|---|---:|---:|---|---:|---:|---|")
    for op in ("read-and-renew", "field write", "CAS", "create"):
        m, lua = backends["module"][op], backends["lua"][op]
        ms, ls = backends["module server"][op], backends["lua server"][op]
        print(f"| {op} | {us(m)} | {us(lua)} | Lua = {lua / m:.2f}× | {us(ms)} | {us(ls)} | Lua = {ls / ms:.2f}× |")
    if not args.smoke:
        Path(args.json).write_text(
            json.dumps({"when": when, "machine": machine, "load": load, "path": path, "sync": sync, "async": asy,
                        "async_timeouts": asy_t, "cache": cache,
                        "cpu": cpu, "backends": backends},
                       indent=2)
        )


if __name__ == "__main__":
    main()
