"""Long runs (make soak, SESSION_SOAK=1): the near-cache's staleness bound
holds through repeated faults.

A writer bumps sessions' versions through a plain store; readers read them
through a near-cached store while the server is killed, paused and restarted
(AOF on, so nothing acknowledged is lost) and the invalidation connections
are killed. No read that starts more than BOUND seconds after a write was
acknowledged may return an older version.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any

import pytest
import redis

from redis_session import SessionError, SessionStore

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(os.environ.get("SESSION_SOAK") != "1", reason="soak: SESSION_SOAK=1 (make soak)"),
]

SECONDS = float(os.environ.get("SESSION_SOAK_SECONDS", 60))
BOUND = 0.5  # s: invalidation delivery plus a loaded machine's scheduling


def test_near_cache_staleness_through_faults(make_server: Any) -> None:
    server = make_server(config={"appendonly": "yes"}, name="soak")
    url = f"redis://127.0.0.1:{server.port}/0"
    writer: SessionStore[Any] = SessionStore.from_url(url, tenant="soak", socket_timeout=0.5)
    reader: SessionStore[Any] = SessionStore.from_url(
        url, tenant="soak", socket_timeout=0.5, near_cache=True, tracking_interval=0.1
    )
    sids = [writer.create(data={"n": 0}).sid for _ in range(16)]
    acked: dict[str, list[tuple[float, int]]] = {sid: [(time.monotonic(), 1)] for sid in sids}
    stale: list[tuple[str, int, int]] = []
    foreign: list[BaseException] = []
    stop = threading.Event()
    reads = [0]

    def write() -> None:
        rnd = random.Random(1)
        while not stop.is_set():
            sid = rnd.choice(sids)
            try:
                cur = writer.get(sid, fresh=True)
                if cur is None:
                    continue
                v = writer.set(sid, data={"n": cur.data["n"] + 1}, if_version=cur.version)
                if v is not None:
                    acked[sid].append((time.monotonic(), v))
            except SessionError:
                time.sleep(0.01)
            except BaseException as e:
                foreign.append(e)
                return

    def read() -> None:
        rnd = random.Random(2)
        while not stop.is_set():
            sid = rnd.choice(sids)
            t0 = time.monotonic()
            try:
                got = reader.get(sid, touch=rnd.random() < 0.5)
            except SessionError:
                time.sleep(0.01)
                continue
            except BaseException as e:
                foreign.append(e)
                return
            reads[0] += 1
            if got is None:
                continue
            must = max((v for t, v in list(acked[sid]) if t < t0 - BOUND), default=0)
            if got.version < must:
                stale.append((sid[:6], got.version, must))

    threads = [threading.Thread(target=write, daemon=True)] + [
        threading.Thread(target=read, daemon=True) for _ in range(3)
    ]
    for t in threads:
        t.start()
    admin = redis.Redis(port=server.port, socket_timeout=2)
    rnd = random.Random(3)
    deadline = time.monotonic() + SECONDS
    faults = 0
    try:
        while time.monotonic() < deadline:
            time.sleep(rnd.uniform(0.5, 2.0))
            fault = rnd.choice(["kill", "pause", "restart", "drop-link"])
            faults += 1
            if fault == "kill":
                server.kill()
                time.sleep(rnd.uniform(0.1, 1.0))
                server.start()
                admin = redis.Redis(port=server.port, socket_timeout=2)
            elif fault == "pause":
                server.proc.send_signal(signal.SIGSTOP)
                time.sleep(rnd.uniform(0.1, 1.5))
                server.proc.send_signal(signal.SIGCONT)
            elif fault == "restart":
                server.restart()
                admin = redis.Redis(port=server.port, socket_timeout=2)
            else:
                try:
                    admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
                except redis.RedisError:
                    pass
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        reader.close()
        writer.close()
    print(f"soak: {faults} faults, {reads[0]} reads, {sum(len(v) for v in acked.values())} acked writes")
    assert not foreign, foreign[:3]
    assert not stale, stale[:10]
    assert reads[0] > 0
