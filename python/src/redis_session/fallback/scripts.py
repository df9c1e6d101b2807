"""The fallback's server-side Lua scripts, each the shared prelude plus one
operation (``lua/*.lua``). The drivers run them with ``EVALSHA`` and send
the source once when a server answers ``NOSCRIPT`` (a restart, ``SCRIPT
FLUSH``, a failover to a replica that never saw them): nothing needs
``SCRIPT LOAD`` rights, ``FUNCTION`` or server configuration.
"""

from __future__ import annotations

from importlib import resources

from ..protocol import LuaScript

__all__ = ["READONLY", "SCRIPTS"]

#: scripts that change nothing
READONLY = frozenset({"ttl", "probe", "count"})
_NAMES = ("get", "renew", "ttl", "set", "cas", "create", "revoke", "index", "probe", "count")


def _load() -> dict[str, LuaScript]:
    pkg = resources.files(__package__) / "lua"
    prelude = (pkg / "prelude.lua").read_text(encoding="utf-8")
    return {
        name: LuaScript(name, prelude + "\n" + (pkg / f"{name}.lua").read_text(encoding="utf-8")) for name in _NAMES
    }


SCRIPTS: dict[str, LuaScript] = _load()
