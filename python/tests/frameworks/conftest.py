"""Fixtures of the framework tests: one primary + replica with the module for
a whole test module, the proof recorder, and the test-output folder."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "integration"))

from sessionlib import Server, replicate, wait_sync  # noqa: E402

#: screenshots, the proof table and logs land here (not committed)
OUTPUT = ROOT / "test-output" / "frameworks"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


class Pair:
    """A primary with a replica attached: the replica's INFO commandstats
    counts exactly what the primary propagated."""

    def __init__(self, primary: Server, replica: Server) -> None:
        self.primary = primary
        self.replica = replica
        self.port = primary.port

    def reset(self) -> None:
        p = self.primary.admin()
        p.flushall()
        wait_sync(self.primary, self.replica)
        self.reset_stats()

    def reset_stats(self) -> int:
        wait_sync(self.primary, self.replica)
        self.primary.admin().config_resetstat()
        self.replica.admin().config_resetstat()
        return int(self.primary.info("replication")["master_repl_offset"])

    def stats(self, offset0: int) -> dict[str, Any]:
        wait_sync(self.primary, self.replica)
        return {
            "primary": commandstats(self.primary),
            "replicated": commandstats(self.replica),
            "repl_bytes": int(self.primary.info("replication")["master_repl_offset"]) - offset0,
        }


_IGNORED = {
    "info",
    "config",
    "ping",
    "replconf",
    "psync",
    "client",
    "hello",
    "select",
    "command",
    "debug",
    "wait",
    "flushall",
    "flushdb",
    "module",
}


def commandstats(server: Server) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in server.info("commandstats").items():
        name = k.removeprefix("cmdstat_")
        if name.split("|")[0] in _IGNORED:
            continue
        out[name] = int(v["calls"])
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    cfg = {"repl-diskless-sync-delay": 0, "repl-ping-replica-period": 3600}
    primary = Server(tmp_path_factory.mktemp("fw-primary"), config=cfg, name="primary").start()
    replica = Server(tmp_path_factory.mktemp("fw-replica"), config=cfg, name="replica")
    try:
        replica.start()
        replicate(replica, primary)
        yield Pair(primary, replica)
    finally:
        replica.stop()
        primary.stop()


# -- the proof table ---------------------------------------------------------------------
_RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture
def record() -> Any:
    """record(framework, scenario, kind, library, ok, text, config="")"""

    def rec(framework: str, scenario: str, kind: str, library: str, ok: bool, text: str, config: str = "") -> None:
        _RESULTS[f"{framework}|{scenario}|{kind}"] = {
            "framework": framework,
            "scenario": scenario,
            "kind": kind,
            "library": library,
            "ok": ok,
            "text": text,
            "config": config,
            "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }

    return rec


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _RESULTS:
        return
    from proof_table import render

    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "proof.json"
    old: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
    old.update(_RESULTS)
    path.write_text(json.dumps(old, indent=1, sort_keys=True))
    (OUTPUT / "proof.md").write_text(render(old))
