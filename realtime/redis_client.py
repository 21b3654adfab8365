"""The one place where Redis clients are made, with every option set on purpose.

Library defaults change between majors (redis-py 8 made ``socket_timeout`` 5 s, which
breaks blocking reads), so nothing here relies on them.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import ExponentialBackoff
from redis.asyncio.retry import Retry
from redis.exceptions import ConnectionError as RedisConnectionError, NoScriptError, TimeoutError as RedisTimeoutError

__all__ = ["make_redis", "warm_up", "execute_scripted", "RedisDown", "Redis"]

Redis = aioredis.Redis | RedisCluster

#: What a caller catches to mean "Redis does not answer".
RedisDown = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def make_redis(url: str, *, cluster: bool = False, blocking: bool = False, max_connections: int = 200,
               retries: int = 2) -> Redis:
    """A client for ``url``.

    ``blocking`` clients serve ``XREADGROUP BLOCK`` and pub/sub: they must never time
    out on a quiet socket. Others fail fast (2 s) so that an HTTP call answers 503
    instead of hanging when Redis is gone; a blip is retried ``retries`` times within
    ~0.3 s. The live pub/sub connection takes ``retries=0``: redis-py would otherwise
    reconnect and resubscribe silently, and we must know, to catch sockets up.
    """
    options = dict(
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=None if blocking else 2.0,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=retries),
        health_check_interval=30 if blocking else 0,
    )
    if cluster:
        return RedisCluster.from_url(url, **options)
    # A blocking pool makes a burst wait for a free connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5, **options)
    return aioredis.Redis(connection_pool=pool)


async def warm_up(redis: Redis, connections: int) -> None:
    """Open ``connections`` pooled connections now. redis-py opens them on demand, each with
    its own handshake round trips, which made the first second of a burst of posts slower
    than the rest (see BENCHMARKS.md)."""
    await asyncio.gather(*(redis.execute_command("PING") for _ in range(connections)))


async def execute_scripted(pipe) -> list:
    """``pipe.execute()`` without the ``SCRIPT EXISTS`` round trip that redis-py sends
    before every pipeline holding a script. The scripts are loaded after their first use;
    when Redis has lost them (a restart, ``SCRIPT FLUSH``), they are loaded and the
    pipeline runs again.

    Only for pipelines that are safe to run twice and whose other commands may land
    without the scripts' (timeline pushes and removals; a fan-out job's acknowledgement).
    Not for one that writes a mark of what the scripts did (the fan-out progress): a
    pipeline is no transaction, so on NOSCRIPT the mark would be written without the
    batch, and the batch lost if the process died before the re-run."""
    if not isinstance(getattr(pipe, "scripts", None), set):
        return await pipe.execute()  # a cluster pipeline: redis-py's own way
    scripts, stack = pipe.scripts, list(pipe.command_stack)
    pipe.scripts = set()
    try:
        return await pipe.execute()
    except NoScriptError:
        pipe.command_stack, pipe.scripts = stack, scripts  # execute() loads what is missing
        return await pipe.execute()
