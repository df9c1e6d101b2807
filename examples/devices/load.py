"""`make example-load`: the example app under several worker processes, driven
at a fixed concurrency, with our store and with the anchor for the same
framework (starsessions), side by side: requests/s, p50/p99 latency and Redis
commands per request.

Each virtual user is one keep-alive connection and one browser session: it
signs in once, then loops over the session page (GET /) with one cart write
(POST /cart) every tenth request. A local redis-server with the module is
started for the run (or REDIS_URL is used, and flushed: give it a scratch
database).

    python examples/devices/load.py [--workers 3] [--concurrency 32] [--seconds 15] [--warmup 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "integration"))

import redis  # noqa: E402
from sessionlib import Server, free_port  # noqa: E402

_IGNORED = {"info", "config", "ping", "client", "hello", "select", "command", "flushall"}


def commands(r: redis.Redis) -> dict[str, int]:
    out: dict[str, int] = {}
    info: dict[str, Any] = r.info("commandstats")  # type: ignore[assignment]
    for k, v in info.items():
        name = k.removeprefix("cmdstat_")
        if name.split("|")[0] not in _IGNORED:
            out[name] = int(v["calls"])
    return out


class Conn:
    """One keep-alive HTTP/1.1 connection with its own cookie (a virtual user)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""

    async def open(self) -> None:
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        head = f"{method} {path} HTTP/1.1\r\nHost: load\r\nUser-Agent: load/1 device-load\r\n"
        if self.cookie:
            head += f"Cookie: session={self.cookie}\r\n"
        if body:
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        self.w.write(head.encode() + b"\r\n" + body)
        status_line = await self.r.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            name = name.lower()
            if name == "content-length":
                length = int(value)
            elif name == "set-cookie" and value.strip().startswith("session="):
                v = value.strip().split(";")[0].split("=", 1)[1].strip("'\"")
                self.cookie = "" if v in ("", "null") or "1970" in value else v
        if length:
            await self.r.readexactly(length)
        return status


async def drive(port: int, concurrency: int, warmup: float, seconds: float, on_measure: Any) -> dict[str, Any]:
    conns = [Conn(port) for _ in range(concurrency)]
    for i, c in enumerate(conns):
        await c.open()
        st = await c.request("POST", "/login", f"user=user{i % 8}&password=demo".encode())
        assert st == 303 and c.cookie, f"login failed: {st}"
    t_start = time.monotonic()
    t_measure = t_start + warmup
    t_end = t_measure + seconds
    lat: list[float] = []
    counts = {"requests": 0, "errors": 0}
    measuring = asyncio.Event()

    async def user(c: Conn) -> None:
        n = 0
        while True:
            now = time.monotonic()
            if now >= t_end:
                return
            n += 1
            t0 = time.perf_counter()
            if n % 10 == 0:
                st = await c.request("POST", "/cart", f"item=tea{n}".encode())
                ok = st == 303
            else:
                st = await c.request("GET", "/")
                ok = st == 200
            dt = time.perf_counter() - t0
            if measuring.is_set() and time.monotonic() < t_end:
                lat.append(dt)
                counts["requests"] += 1
                counts["errors"] += not ok

    async def switch() -> None:
        await asyncio.sleep(max(0.0, t_measure - time.monotonic()))
        on_measure()
        measuring.set()

    await asyncio.gather(switch(), *(user(c) for c in conns))
    for c in conns:
        c.w.close()
    lat.sort()
    return {
        "requests": counts["requests"],
        "errors": counts["errors"],
        "rps": counts["requests"] / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else 0.0,
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
        "mean_ms": 1000 * statistics.fmean(lat) if lat else 0.0,
    }


def run_backend(backend: str, url: str, r: redis.Redis, args: argparse.Namespace) -> dict[str, Any]:
    r.flushall()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": url,
        "SESSION_BACKEND": backend,
        "MAX_DEVICES": "1000",
        "PYTHONPATH": str(ROOT / "python" / "src"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--app-dir",
            str(HERE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the app ({backend}) did not start")
            time.sleep(0.2)
        time.sleep(1.0)  # let every worker come up
        before: dict[str, int] = {}

        def on_measure() -> None:
            before.update(commands(r))

        res = asyncio.run(drive(port, args.concurrency, args.warmup, args.seconds, on_measure))
        after = commands(r)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        delta = {k: v for k, v in delta.items() if v > 0}
        # commands of requests still in flight at the end are within one request per connection
        res["redis_per_request"] = sum(delta.values()) / max(1, res["requests"])
        res["commands"] = delta
        res["backend"] = backend
        return res
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--out", default=str(HERE / "load-results.md"))
    ap.add_argument("--readme", action="store_true", help="also put the table into python/README.md")
    args = ap.parse_args()

    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        server = Server(tempfile.mkdtemp(prefix="example-load-"), name="example-load").start()
        url = f"redis://127.0.0.1:{server.port}/0"
    r = redis.Redis.from_url(url)
    try:
        load_before = os.getloadavg()[0]
        results = [run_backend(b, url, r, args) for b in ("ours", "starsessions")]
        load_after = os.getloadavg()[0]
    finally:
        r.close()
        if server is not None:
            server.stop()

    labels = {"ours": "redis_session.starlette", "starsessions": "starsessions (rolling)"}
    lines = [
        f"`make example-load` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.machine()} with {os.cpu_count()} cores (shared), Python {platform.python_version()}: "
        f"the example app (FastAPI) under {args.workers} uvicorn workers, {args.concurrency} keep-alive "
        f"connections (one signed-in session each), {args.seconds:g} s measured after {args.warmup:g} s "
        "of warm-up; 9 of 10 requests are the session page (GET /), 1 of 10 adds to the cart (POST /cart). "
        f"Load average before/after the run: {load_before:.1f} / {load_after:.1f} (the machine is shared).",
        "",
        "| session library | requests/s | p50 ms | p99 ms | errors | Redis commands / request | commands |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for res in results:
        cmds = ", ".join(f"{k} {v:,}" for k, v in sorted(res["commands"].items()))
        lines.append(
            f"| {labels[res['backend']]} | {res['rps']:,.0f} | {res['p50_ms']:.1f} | {res['p99_ms']:.1f} | "
            f"{res['errors']} | {res['redis_per_request']:.2f} | {cmds} |"
        )
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    if args.readme:
        readme = ROOT / "python" / "README.md"
        begin, end = "<!-- example-load:begin -->", "<!-- example-load:end -->"
        doc = readme.read_text()
        head, rest = doc.split(begin, 1)
        readme.write_text(head + begin + "\n" + text + end + rest.split(end, 1)[1])
        print(f"table put into {readme}")


if __name__ == "__main__":
    main()
