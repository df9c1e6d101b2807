"""Helpers of the framework tests (imported by name: `conftest` is ambiguous
with the package's own conftest one directory up)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
if str(ROOT / "integration") not in sys.path:
    sys.path.insert(0, str(ROOT / "integration"))

from sessionlib import Server, wait_sync  # noqa: E402

T = TypeVar("T")

#: screenshots, the proof table and logs land here (not committed)
OUTPUT = ROOT / "test-output" / "frameworks"


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


#: what the Lua fallback's scripts read with (INFO commandstats counts a
#: script's own commands too); anything else a script runs is a write
SCRIPT_READS = {"exists", "hgetall", "hkeys", "hmget", "scan", "time", "type", "zrange", "zscore"}


def one_read(kind: str) -> dict[str, int]:
    """`store_calls` after one read that wrote nothing."""
    return {"session.get": 1} if kind == "module" else {"evalsha": 1}


def store_calls(server: Server, kind: str) -> dict[str, int]:
    """The commands the store sent, by the backend's own names (`kind` is
    the `backend_kind` fixture): the module's ``session.*`` commands; on the
    Lua fallback one ``evalsha`` per script run (a ``NOSCRIPT`` answer and the
    ``EVAL`` that loads the script count as that one run), the scripts' reads
    left out and their writes (``hset``, ``pexpireat``, ...) kept by name, so
    a read that writes shows."""
    stats = commandstats(server)
    if kind == "module":
        return stats
    noscript = int(server.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0))
    runs = sum(stats.pop(c, 0) for c in ("evalsha", "evalsha_ro", "eval", "eval_ro")) - noscript
    out = {k: v for k, v in stats.items() if k not in SCRIPT_READS}
    if runs:
        out["evalsha"] = runs
    return out


def got(value: T | None) -> T:
    """The value, asserted present (for mypy and for the test)."""
    assert value is not None
    return value
