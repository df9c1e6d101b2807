#!/usr/bin/env python3
"""Server CPU per request: a reading that a busy shared machine disturbs far
less than throughput.

    SESSION_MODULE=target/release/libredis_session.so .venv/bin/python bench/cpu_cost.py [--rounds 3] [--requests 400000]

Starts a plain server and one with the module (bench.py's servers, shapes
and populations), drives each row with redis-benchmark or loadgen (50
clients, -P 16) and reads the server process's own CPU time (utime + stime
from /proc, all its threads) before and after: microseconds of server CPU
per request. Where the server is the bottleneck, throughput is the inverse
of this, so a ratio of costs reads like a ratio of throughputs (inverted);
unlike throughput it does not move when other processes take the cores.
Rows alternate within each round; the table shows medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def server_secs(s: bench.Server) -> float:
    return bench._pid_ticks(s.proc.pid) / CLK


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=400_000)
    ap.add_argument("--keys", type=int, default=100_000)
    cfg = ap.parse_args()
    module = str(Path(os.environ.get("SESSION_MODULE", bench.ROOT / "target/release/libredis_session.so")).resolve())
    bench.build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="session-cpu-"))
    shape = bench.Shape()
    n = cfg.keys
    m = bench.Server("module", work, module)
    p = bench.Server("plain", work)
    try:
        bench.populate(m, bench.gen_sessions(shape, n), n, "sessions")
        size = bench.packed_size(m, n)
        bench.populate(p, bench.gen_strn(shape, n, size), n, "packed-size strings")
        bench.populate(p, bench.gen_blobs(shape, n, bench.BLOB_PREFIX), n, "JSON blobs")
        sk, pk = bench.rand_key(bench.SESS_PREFIX), bench.rand_key(bench.PK_PREFIX)
        ttl = str(bench.IDLE_MS)
        blob = shape.blob(12345)

        def rb(srv, command, res=None):
            def run():
                if res:
                    m.r.config_set("session.touch-resolution", res)
                try:
                    bench.redis_benchmark(srv, command, 16, cfg.requests, n, quiet=False)
                finally:
                    if res:
                        m.r.config_set("session.touch-resolution", "1000")
            return srv, run

        def lg(srv, mode, template, prefix, probe="none"):
            def run():
                bench.loadgen(srv, mode, template, 16, requests=cfg.requests, keys=n, prefix=prefix, probe=probe)
            return srv, run

        rows = {
            f"GET string of {size} B": rb(p, ["GET", pk]),
            "SESSION.GET TOUCH PACKED": rb(m, ["SESSION.GET", sk, "TOUCH", "PACKED"]),
            "SESSION.GET TOUCH (map)": rb(m, ["SESSION.GET", sk, "TOUCH"]),
            f"GETEX PX string of {size} B": rb(p, ["GETEX", pk, "PX", ttl]),
            "SESSION.GET TOUCH PACKED, touch-resolution 0": rb(m, ["SESSION.GET", sk, "TOUCH", "PACKED"], "0"),
            "SESSION.GET TOUCH (map), touch-resolution 0": rb(m, ["SESSION.GET", sk, "TOUCH"], "0"),
            "SET PX blob over an existing key": lg(p, "over", ["SET", "{key}", blob, "PX", ttl], bench.BLOB_PREFIX),
            "SESSION.SET IFVERSION DATA cart": lg(m, "cas", ["SESSION.SET", "{key}", "IFVERSION", "{ver}", "DATA",
                                                             "cart", shape.new_cart], bench.SESS_PREFIX, "session"),
        }
        costs: dict[str, list[float]] = {name: [] for name in rows}
        for r in range(cfg.rounds):
            for name, (srv, run) in rows.items():
                before = server_secs(srv)
                run()
                costs[name].append((server_secs(srv) - before) / cfg.requests * 1e6)
                print(f"round {r + 1} {name}: {costs[name][-1]:.2f} us/request", file=sys.stderr)
        med = {k: statistics.median(v) for k, v in costs.items()}
        print(f"server CPU per request, -P 16, 50 clients, {cfg.requests:,} requests x {cfg.rounds} rounds, "
              f"PACKED reply {size} B")
        for k, v in med.items():
            print(f"  {k:48s} {v:6.2f} us   (rounds: {', '.join(f'{x:.2f}' for x in costs[k])})")
        names = list(rows)
        pairs = [(1, 0), (1, 2), (4, 3), (5, 3), (7, 6)]
        print("cost ratios (a / b: b's throughput share a can reach when the server is the bottleneck = b / a)")
        for a, b in pairs:
            print(f"  {names[b]:44s} / {names[a]:44s} = {med[names[b]] / med[names[a]]:.3f}")
    finally:
        m.stop()
        p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
