"""Helpers for the package's tests on both backends (imported by the tests;
not named conftest, which tests/frameworks/ also has)."""

from __future__ import annotations

import pytest


def module_only(kind: str, row: str) -> None:
    """Skip on the fallback: `row` names the row of python/README.md's
    differences table that says why."""
    if kind != "module":
        pytest.skip(f"fallback: see python/README.md, differences table, row '{row}'")


def raw_set(client: object, key: bytes, field: str, value: bytes, kind: str) -> None:
    """Another writer changes one field, below the store (the module's
    SESSION.SET or the fallback's script), as a second application would."""
    if kind == "module":
        client.execute_command("SESSION.SET", key, "DATA", field, value)  # type: ignore[attr-defined]
        return
    from redis_session.fallback import wire

    tenant = key.split(b":")[1]
    c = wire.set_fields(key, tenant, wire.Options(), True, data={field.encode(): value})
    client.execute_command("EVAL", c.script.source, len(c.keys), *c.keys, *c.args)  # type: ignore[attr-defined]
