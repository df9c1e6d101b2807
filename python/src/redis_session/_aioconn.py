"""redis-py's asyncio connection and blocking pool, minus two per-call costs
that `AsyncSessionStore.from_url` clients need not pay. Same timeouts, same
errors, same fairness:

- `Connection.send_packed_command` bounds the write with
  ``asyncio.wait_for``, which wraps the write in a new task (an extra turn of
  the event loop per call). Here the bound is a timer around the same write
  (``asyncio.timeout``): the write still fails after ``socket_timeout`` with
  redis-py's ``TimeoutError("Timeout writing to socket")`` and the connection
  is dropped, as before. Reads are redis-py's own (``socket_timeout`` bounds them).
- `BlockingConnectionPool.get_connection` takes the pool's condition lock and
  arms a timer for every call. When nobody waits for a connection and one is
  free, that path never suspends and always takes it: here it is taken
  directly. Otherwise (the pool exhausted, callers queued) redis-py's path
  runs unchanged, so a waiter is not overtaken and ``pool_timeout`` holds.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# as redis-py chooses (asyncio.timeout is broken before 3.11.3)
async_timeout: Any
if sys.version_info >= (3, 11, 3):
    async_timeout = asyncio.__dict__["timeout"]
else:  # pragma: no cover
    from async_timeout import timeout as async_timeout  # type: ignore[import-not-found,no-redef,unused-ignore]

__all__ = ["BlockingPool", "Connection"]

# The shortcuts lean on redis-py 5.x internals; where a release lacks one,
# each class takes redis-py's own path instead of failing.
_FAST_WRITE = hasattr(aredis.Connection, "_send_packed_command")
_FAST_CHECKOUT = all(
    hasattr(aredis.BlockingConnectionPool, name)
    for name in ("can_get_connection", "get_available_connection", "ensure_connection")
)


class Connection(aredis.Connection):
    async def send_packed_command(self, command: str | bytes | Iterable[bytes], check_health: bool = True) -> None:
        if not self.socket_timeout or not _FAST_WRITE:
            await super().send_packed_command(command, check_health)
            return
        me: Any = self  # redis-py's methods are untyped
        if not self.is_connected:
            await me.connect()
        elif check_health:
            await me.check_health()
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            async with async_timeout(self.socket_timeout):
                await self._send_packed_command(command)
        except asyncio.TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as e:
            await self.disconnect(nowait=True)
            if len(e.args) == 1:
                err_no, errmsg = "UNKNOWN", e.args[0]
            else:
                err_no, errmsg = e.args[0], e.args[1]
            raise RedisConnectionError(f"Error {err_no} while writing to socket. {errmsg}.") from e
        except BaseException:
            # as redis-py: a write cut short leaves the connection unusable
            await self.disconnect(nowait=True)
            raise


class BlockingPool(aredis.BlockingConnectionPool):
    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        cond = getattr(self, "_condition", None)
        # no waiter (an attribute missing: take redis-py's path), the lock free
        if (
            _FAST_CHECKOUT
            and cond is not None
            and not getattr(cond, "_waiters", True)
            and not cond.locked()
            and self.can_get_connection()
        ):
            me: Any = self
            connection = me.get_available_connection()
            try:
                await self.ensure_connection(connection)
                return connection
            except BaseException:
                await self.release(connection)
                raise
        return await super().get_connection(*args, **kwargs)
