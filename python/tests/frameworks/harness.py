"""The proof harness: one app per (framework, library) with the same views,
driven the same way, on the same redis-server.

Every app has the same routes:

    POST /login/<user>      log in (the library's idiom; ours rotates)
    GET  /me                "user=<user>;reason=<revocation reason>"
    POST /set/<k>/<v>       session[k] = v          (?hold=view|write, see below)
    GET  /data              the session as JSON
    GET  /view              a read-only page view: reads session["user"]
    GET  /plain             a page that never touches the session
    POST /logout            log out (the library's idiom)

``hold`` makes a request stop at a chosen point until the test releases it,
so overlapping requests interleave deterministically: ``view`` after the
view has changed the session (before the middleware saves), ``write`` right
before the library's write command (after any check it makes first).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HOLD: contextvars.ContextVar[str | None] = contextvars.ContextVar("HOLD", default=None)
DELETED = ""  # Resp.cookie when the response deleted the session cookie


class Gate:
    """One held request: ``entered`` once it is waiting, ``release`` to let it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        self.entered.set()
        if not self.release.wait(30):
            raise TimeoutError("gate never released")

    async def ahold(self) -> None:
        self.entered.set()
        ok = await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        if not ok:
            raise TimeoutError("gate never released")


def gate_method(owner: Any, name: str, gate: Gate) -> Callable[[], None]:
    """Wrap owner.name so that a call made by a request with HOLD=="write"
    waits on the gate first. Returns the undo function."""
    orig = owner.__dict__.get(name) if isinstance(owner, type) else None
    target = getattr(owner, name)
    if inspect.iscoroutinefunction(target):

        @functools.wraps(target)
        async def awrapped(*a: Any, **kw: Any) -> Any:
            if HOLD.get() == "write":
                HOLD.set(None)
                await gate.ahold()
            return await target(*a, **kw)

        wrapped: Any = awrapped
    else:

        @functools.wraps(target)
        def swrapped(*a: Any, **kw: Any) -> Any:
            if HOLD.get() == "write":
                HOLD.set(None)
                gate.hold()
            return target(*a, **kw)

        wrapped = swrapped
    setattr(owner, name, wrapped)

    def undo() -> None:
        if orig is not None:
            setattr(owner, name, orig)
        else:
            delattr(owner, name)

    return undo


@dataclass
class Resp:
    status: int
    text: str
    #: the session id the response set, DELETED when it deleted the cookie, None when untouched
    cookie: str | None

    def json(self) -> Any:
        return json.loads(self.text)


def parse_set_cookies(values: list[str], name: str) -> str | None:
    out: str | None = None
    for v in values:
        head, _, attrs = v.partition(";")
        k, _, val = head.strip().partition("=")
        if k != name:
            continue
        low = attrs.lower()
        val = val.strip().strip('"').strip("'")
        deleted = not val or val == "null" or "1970" in low or "max-age=0" in low.replace(" ", "")
        out = DELETED if deleted else val
    return out


class Adapter:
    """A running app of one (framework, library) pair; ``request`` is sync and thread-safe."""

    framework: str
    kind: str  # "anchor" | "ours"
    library: str  # what the table names
    config: str = ""  # how the library was configured, when it matters for the table

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._undo: list[Callable[[], None]] = []

    def gate_writes(self) -> None:
        """Make HOLD=="write" requests wait before the library's write."""
        for owner, name in self.write_targets():
            self._undo.append(gate_method(owner, name, self.gate))

    def write_targets(self) -> list[tuple[Any, str]]:
        raise NotImplementedError

    def request(self, method: str, path: str, sid: str | None) -> Resp:
        raise NotImplementedError

    def close(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


class LoopThread:
    """An asyncio loop in a thread, so async apps serve overlapping requests
    sent from the test's threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
