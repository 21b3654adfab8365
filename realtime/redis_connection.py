"""redis-py's connections, writing each command without a task of its own.

With ``socket_timeout`` set, redis-py's asyncio connection sends every command through
``asyncio.wait_for``, which on Python 3.11 runs the write in a new task: a task, two futures,
a timer and a loop turn before the command even leaves, on every round trip of every
request and fan-out batch (`docs/performance-log.md`, row 32). Here the command goes into the
transport at once, as redis-py does when there is no timeout, and only a wait for the
transport's buffer to drain (what the kernel did not take at once: the peer reads slowly) is
bounded by the timeout, with ``asyncio.timeout``, which needs no task. The errors are
redis-py's own, as before, and a write on a socket that a dying node closed under it is a
``ConnectionError`` too (redis-py lets uvloop's bare ``RuntimeError`` through).

They also count the connections this process makes (``connections_made``): when that grows
once the pools are full, a server restarted, failed over or dropped a link, and what was
written just before may be lost (realtime.timelines.FollowerExpiries forgets what it set).

Used for one Redis (``make_redis``); a cluster client keeps redis-py's own connections. Pinned
by tests/test_library_internals.py: the override reads the connection's ``_writer``.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

__all__ = ["without_write_task", "connections_made"]

_made = 0


def connections_made() -> int:
    """How many connections to Redis this process has made: when it grows after the pools
    have filled, a server restarted, failed over or dropped a link (realtime.timelines)."""
    return _made


class _WritesInPlace:
    async def connect_check_health(self, *args, **kwargs) -> None:
        global _made
        was_connected = self.is_connected
        await super().connect_check_health(*args, **kwargs)
        if not was_connected:
            _made += 1

    async def send_packed_command(self, command, check_health: bool = True) -> None:
        timeout = self.socket_timeout
        if not timeout:
            return await super().send_packed_command(command, check_health)
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            writer = self._writer
            writer.writelines(command)
            if writer.transport.get_write_buffer_size():  # not all written at once: the wait is bounded
                async with asyncio.timeout(timeout):
                    await writer.drain()
            else:  # nothing left to write: drain only reports a lost connection, and does not wait
                await writer.drain()
        except TimeoutError:  # before OSError, whose subclass it is
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error {exc.errno} while writing to socket. {exc.strerror or exc}.") from exc
        except (AttributeError, RuntimeError) as exc:  # a socket a dying node closed under us (uvloop's words)
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Connection closed while writing to socket ({exc}).") from exc
        except BaseException:  # a write cut short leaves the connection unusable, as in redis-py
            await self.disconnect(nowait=True)
            raise


class _Connection(_WritesInPlace, aioredis.Connection):
    pass


class _SSLConnection(_WritesInPlace, SSLConnection):
    pass


class _UnixDomainSocketConnection(_WritesInPlace, UnixDomainSocketConnection):
    pass


_VARIANTS = {aioredis.Connection: _Connection, SSLConnection: _SSLConnection,
             UnixDomainSocketConnection: _UnixDomainSocketConnection}


def without_write_task(connection_class: type) -> type:
    """The variant of ``connection_class`` that writes in place (itself if there is none)."""
    return _VARIANTS.get(connection_class, connection_class)
