"""The fallback's server-side Lua scripts, each the shared prelude plus one
operation (``lua/*.lua``), run with ``EVALSHA`` and sent whole once when a
server answers ``NOSCRIPT`` (a restart, ``SCRIPT FLUSH``, a failover to a
replica that never saw them). Nothing here needs ``SCRIPT LOAD`` rights,
``FUNCTION`` or server configuration.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

__all__ = ["Script", "SCRIPTS", "script"]


@dataclass(frozen=True)
class Script:
    """One script: its name, its full source and the SHA1 EVALSHA names it by."""

    name: str
    source: bytes
    sha: str
    #: Changes nothing, so it may run with EVALSHA_RO (a replica answers it).
    readonly: bool = False


_READONLY = frozenset({"ttl", "probe"})
_NAMES = ("get", "renew", "ttl", "set", "cas", "create", "revoke", "index", "probe")


def _load() -> dict[str, Script]:
    pkg = resources.files(__package__) / "lua"
    prelude = (pkg / "prelude.lua").read_bytes()
    out: dict[str, Script] = {}
    for name in _NAMES:
        src = prelude + b"\n" + (pkg / f"{name}.lua").read_bytes()
        out[name] = Script(name, src, hashlib.sha1(src).hexdigest(), name in _READONLY)
    return out


SCRIPTS: dict[str, Script] = _load()


def script(name: str) -> Script:
    return SCRIPTS[name]
