"""``redis-session migrate``: convert the fallback's sessions into module
sessions, in place, while the application keeps serving them.

Each session is converted alone and atomically: ``WATCH key``, read its
hash, ``MULTI; DEL key; SESSION.IMPORT key <record>; EXEC``. The record
(``record.py``) carries everything the hash held — subject, created,
version, last access, idle, absolute deadline, grace, meta, data, and for a
revoked session its reason and tombstone end — so no user is logged out,
no deadline moves and a client holding version v can still CAS on v. A
session that changes between the read and the EXEC (a renewal, a write)
makes EXEC fail and is simply read again.

Resumable: every step is idempotent. A converted key is no longer a hash,
so a second run skips it; kill the run at any point and start it again.
Tenant settings (``<prefix><tenant>:@settings``) become ``SESSION.TENANT
SET`` on every primary. When a pass finds no fallback session left, the
fallback's own keys (subject indexes, settings, the
``<prefix><tenant>:@fallback`` markers) are deleted; until then they stay, so stores in the fallback's
migrating mode keep finding the sessions not yet converted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import RedisCluster

from .record import NotASession, record_of_hash
from .wire import Layout, TenantSettings, glob_escape

log = logging.getLogger("redis_session.migrate")

__all__ = ["MigrationError", "MigrationReport", "main", "migrate"]


class MigrationError(RuntimeError):
    pass


@dataclass
class MigrationReport:
    converted: int = 0
    tombstones: int = 0
    not_sessions: int = 0
    retries: int = 0
    failed: list[bytes] = field(default_factory=list)
    tenants: int = 0
    passes: int = 0
    cleaned: int = 0
    finished: bool = False

    def __str__(self) -> str:
        return (
            f"converted {self.converted} sessions ({self.tombstones} revoked tombstones), "
            f"{len(self.failed)} failed, {self.not_sessions} foreign hashes skipped, "
            f"{self.tenants} tenant settings, {self.retries} retries, {self.passes} passes, "
            f"{self.cleaned} fallback keys removed, {'finished' if self.finished else 'NOT finished'}"
        )


def _primaries(client: Any) -> list[Any]:
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(n) for n in client.get_primaries()]
    return [client]


def _scan(node: Any, match: bytes, type_: str, count: int) -> Iterator[bytes]:
    cursor = 0
    while True:
        cursor, keys = node.scan(cursor, match=match, count=count, _type=type_)
        yield from keys
        if cursor == 0:
            return


def _has_module(node: Any) -> bool:
    # the command's arity error proves it exists (redis-py cannot parse
    # COMMAND INFO's nil for a command that does not)
    try:
        node.execute_command("SESSION.IMPORT")
    except redis.ResponseError as e:
        return "unknown command" not in str(e).lower()
    return True


def convert_key(node: Any, key: bytes, report: MigrationReport, max_retries: int = 50, dry_run: bool = False) -> bool:
    """Converts one fallback session held by `node`; True when it is (or
    already was) a module session or gone."""
    for attempt in range(max_retries):
        with node.pipeline(transaction=True) as p:
            try:
                p.watch(key)
                if p.type(key) not in (b"hash", "hash"):
                    return True  # converted meanwhile, or gone
                h = p.hgetall(key)
                try:
                    rec = record_of_hash(h)
                except NotASession:
                    report.not_sessions += 1
                    return True
                if dry_run:
                    report.converted += 1
                    return True
                p.multi()
                p.delete(key)
                p.execute_command("SESSION.IMPORT", key, rec)
                p.execute()
                report.converted += 1
                if b"ru" in h:
                    report.tombstones += 1
                return True
            except redis.WatchError:
                report.retries += 1
                time.sleep(min(0.001 * 2**attempt, 0.1))
    return False


def migrate(
    client: Any,
    prefix: str | bytes = "sess:",
    *,
    batch: int = 500,
    dry_run: bool = False,
    finish: bool = True,
    max_passes: int = 5,
    progress: Callable[[MigrationReport], None] | None = None,
) -> MigrationReport:
    """Converts every fallback session (and tenant setting) reachable from
    `client` (a ``redis.Redis`` or ``RedisCluster`` with bytes replies) into
    module sessions. See the module docstring."""
    lay = Layout(prefix.encode() if isinstance(prefix, str) else prefix)
    nodes = _primaries(client)
    for n in nodes:
        if not _has_module(n):
            port = n.connection_pool.connection_kwargs.get("port")
            raise MigrationError(f"the session module is not loaded on port {port} (load it first: MODULE LOAD)")
    report = MigrationReport()
    pat = glob_escape(lay.prefix)
    # tenant settings first, so sessions created during the run get them
    for n in nodes:
        for skey in _scan(n, pat + b"*:@settings", "hash", batch):
            tenant = skey[len(lay.prefix) : -len(b":@settings")]
            s = TenantSettings.from_hash(n.hgetall(skey))
            args: list[Any] = []
            for name, v in s.to_hash().items():
                args += [name.upper(), v]
            if args and not dry_run:
                for p in nodes:
                    p.execute_command("SESSION.TENANT", "SET", tenant, *args)
            report.tenants += 1
    for _ in range(max_passes):
        report.passes += 1
        seen = 0
        report.failed = []
        foreign = report.not_sessions
        for n in nodes:
            for key in _scan(n, pat + b"*", "hash", batch):
                if lay.split(key) is None:
                    continue
                before = report.converted
                if not convert_key(n, key, report, dry_run=dry_run):
                    report.failed.append(key)
                seen += report.converted - before
                if progress is not None and report.converted % batch == 0:
                    progress(report)
        log.info("migrate pass %d: %s", report.passes, report)
        if report.passes > 1:
            report.not_sessions = foreign  # counted once, in the first pass
        if (seen == 0 and not report.failed) or dry_run:
            break
    else:
        return report
    if dry_run or report.failed:
        return report
    report.finished = True
    if finish:
        for n in nodes:
            doomed = list(_scan(n, pat + b"*:@subject:*", "zset", batch))
            doomed += list(_scan(n, pat + b"*:@settings", "hash", batch))
            doomed += list(_scan(n, pat + b"*:@fallback", "string", batch))
            for k in doomed:
                report.cleaned += n.delete(k)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="redis-session migrate",
        description="Convert fallback sessions (plain Redis hashes) into module sessions in place. "
        "Safe to run while applications serve traffic, and to run again after an interruption.",
    )
    ap.add_argument("url", help="redis://host:port/db of the server (any node of a cluster)")
    ap.add_argument("--prefix", default="sess:", help="key prefix (default sess:)")
    ap.add_argument("--batch", type=int, default=500, help="SCAN COUNT per step")
    ap.add_argument("--cluster", action="store_true", help="the URL names a cluster node (default: detected)")
    ap.add_argument("--dry-run", action="store_true", help="count what would be converted, change nothing")
    ap.add_argument(
        "--no-finish",
        action="store_true",
        help="keep the fallback's indexes and settings keys even when no session is left",
    )
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    probe: Any = redis.Redis.from_url(a.url)
    try:
        cluster = a.cluster or probe.info("cluster").get("cluster_enabled") == 1
    finally:
        probe.close()
    client: Any = RedisCluster.from_url(a.url) if cluster else redis.Redis.from_url(a.url)
    try:
        rep = migrate(
            client,
            a.prefix,
            batch=a.batch,
            dry_run=a.dry_run,
            finish=not a.no_finish,
            progress=lambda r: log.info("... %d converted", r.converted),
        )
    except MigrationError as e:
        print(f"redis-session migrate: {e}", file=sys.stderr)
        return 2
    finally:
        client.close()
    print(f"redis-session migrate: {rep}")
    return 0 if (rep.finished or a.dry_run) and not rep.failed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
