"""The one place where Redis clients are made, with every option set on purpose.

Library defaults change between majors (redis-py 8 made ``socket_timeout`` 5 s, which
breaks blocking reads), so nothing here relies on them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.maint_notifications import MaintNotificationsConfig
from redis.asyncio.retry import Retry
from redis.exceptions import (AskError, BusyLoadingError, ClusterDownError, ConnectionError as RedisConnectionError,
                              MasterDownError, MovedError, NoScriptError, OutOfMemoryError, ReadOnlyError, RedisError,
                              SlotNotCoveredError, TimeoutError as RedisTimeoutError, TryAgainError)

from .redis_connection import without_write_task

__all__ = ["make_redis", "open_redis", "warm_up", "execute_scripted", "RedisDown", "Redis", "cluster_health",
           "is_cluster", "is_transient", "queue_publish", "queue_script", "queue_lease", "LEASE_WRITE_CHUNK", "ReplicaAcks", "is_redirect"]

Redis = aioredis.Redis | RedisCluster

#: What a caller catches to mean "Redis does not answer".
RedisDown = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

#: Error replies that mean "not now" (out of memory, a failover, a slot moving), not "never".
#: Redis 6 wraps one raised inside a script: "Error running script (...): @user_script:3:
#: @user_script: 3: -OOM command not allowed ...", hence the "-OOM " looked for inside too.
_TRANSIENT_REPLIES = ("OOM", "READONLY", "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "MOVED",
                      "ASK", "NOREPLICAS", "NOSCRIPT")
#: The classes redis-py parses some of those replies into (and a slot no node serves).
_TRANSIENT_ERRORS = (ClusterDownError, TryAgainError, MasterDownError, ReadOnlyError, BusyLoadingError,
                     OutOfMemoryError, SlotNotCoveredError)


def is_transient(exc: BaseException) -> bool:
    """Redis is away, or refuses writes for now: answer 503 and retry later, never 500, and
    never count it against a fan-out job."""
    if isinstance(exc, (*RedisDown, *_TRANSIENT_ERRORS)) or is_redirect(exc):
        return True
    if not isinstance(exc, RedisError):
        return _raised_in_a_redis_connection(exc)
    text = str(exc)
    return text.split(" ", 1)[0].upper() in _TRANSIENT_REPLIES or any(f"-{reply} " in text for reply in _TRANSIENT_REPLIES)


def make_redis(url: str, *, cluster: bool = False, blocking: bool = False, max_connections: int = 200,
               retries: int = 2, known_nodes: Sequence[tuple[str, int]] = ()) -> Redis:
    """A client for ``url``.

    ``blocking`` clients serve ``XREADGROUP BLOCK`` and pub/sub: they must never time
    out on a quiet socket. Others fail fast (2 s) so that an HTTP call answers 503
    instead of hanging when Redis is gone; a blip is retried ``retries`` times within
    ~0.3 s. The live pub/sub connection takes ``retries=0``: redis-py would otherwise
    reconnect and resubscribe silently, and we must know, to catch sockets up.

    ``known_nodes`` (host, port) seed a cluster client besides ``url``'s node, which may be
    the very master that just died. On one Redis, connections write without a task per
    command (realtime.redis_connection).
    """
    options = dict(
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=None if blocking else 2.0,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=retries),
        health_check_interval=30 if blocking else 0,
        maint_notifications_config=no_maintenance_notifications(),
    )
    if cluster:
        seeds = [ClusterNode(host, port) for host, port in known_nodes]
        # redis-py's own connections: a cluster client's recovery from a master kill is what
        # tests/test_cluster_faults.py holds it to, and was seen to stall once with the in-place
        # write below (realtime.redis_connection), not yet understood.
        return RedisCluster.from_url(url, startup_nodes=seeds or None, **options)
    # A blocking pool makes a burst wait for a free connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5, **options)
    pool.connection_class = without_write_task(pool.connection_class)  # the URL's: plain, TLS or unix socket
    return aioredis.Redis(connection_pool=pool)


def no_maintenance_notifications() -> MaintNotificationsConfig:
    """Off: with redis-py 8's default ("auto"), a pool hands out a connection the server has
    closed without looking (its check for one is skipped then), and the command sent on it
    fails. Retried, that hid it; a client that never retries (below) meets it after every
    restart of Redis. The notifications are a managed-Redis feature that we do not use."""
    return MaintNotificationsConfig(enabled=False)


async def open_redis(url: str, *, cluster: bool = False, **options) -> Redis:
    """``make_redis``, ready to use: a cluster client has read the slot map (an uninitialised
    one fails with a bare ``KeyError: <slot>``, redis-py #4296)."""
    client = make_redis(url, cluster=cluster, **options)
    if cluster:
        await client.initialize()
    return client


async def is_cluster(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster node (``INFO cluster``; a server that refuses
    INFO, as some managed ones do, counts as a single Redis: say REDIS_CLUSTER=on there)."""
    client = make_redis(url, max_connections=1, retries=0)
    try:
        return str((await client.info("cluster")).get("cluster_enabled", 0)) == "1"
    except RedisError:
        return False
    finally:
        await client.aclose()


async def cluster_health(client: RedisCluster) -> str | None:
    """Why the cluster cannot serve every slot now, or None when it can: every master
    answers ``cluster_state:ok`` and their slots add up to all 16384."""
    covered = 0
    for node in client.get_primaries():
        info = await client.cluster_info(target_nodes=node)
        if info.get("cluster_state") != "ok":
            return f"node {node.name} reports cluster_state:{info.get('cluster_state')}"
        covered = max(covered, int(info.get("cluster_slots_ok", 0)))
    if covered < 16384:
        return f"only {covered} of 16384 slots are served"
    return None


class ReplicaAcks:
    """On Redis Cluster: writes that return only once a replica of their master has them.

    Replication is asynchronous: a master killed just after a write takes it along, and
    its promoted replica never saw it. ``WAIT 1 <ms>`` after a write, on the connection
    that made it, closes that window, so the writes go in one plain pipeline per master,
    each ending with WAIT. A master with no replica online (a promoted one, until its old
    master returns) is not waited on: WAIT would only sit out its timeout. Who has a
    replica is asked of the master itself (``INFO replication``, every REPLICA_CHECK), not
    read from the slot map, which leaves out replicas that have not reported yet. A slot
    that moved since the cluster client's last look answers MOVED or ASK: the caller then
    writes through the cluster client, which follows the redirect, without the ack."""

    REPLICA_CHECK = 2.0

    def __init__(self, cluster: RedisCluster, timeout: float) -> None:
        self._cluster = cluster
        self.timeout_ms = int(timeout * 1000)
        self._clients: dict[str, aioredis.Redis] = {}
        self._replicas: dict[str, tuple[int, float]] = {}  # master -> (replicas online, when asked)

    def master_of(self, key: str) -> str:
        return self._cluster.get_node_from_key(key).name

    def pipeline(self, master: str):
        return self._client(master).pipeline(transaction=False)

    def _client(self, master: str) -> aioredis.Redis:
        client = self._clients.get(master)
        if client is None:
            host, _, port = master.rpartition(":")
            # No retry: redis-py's default sends a pipeline again, up to 10 times with up to 10 s
            # between, after a lost reply (a batch of no dedupe landing twice) or to a dead master.
            client = self._clients[master] = aioredis.Redis(
                host=host, port=int(port), decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0,
                max_connections=64, retry=Retry(NoBackoff(), 0),
                maint_notifications_config=no_maintenance_notifications())
        return client

    async def replicas_online(self, master: str) -> int:
        count, asked_at = self._replicas.get(master, (0, float("-inf")))
        if time.monotonic() - asked_at >= self.REPLICA_CHECK:
            info = await self._client(master).info("replication")
            count = int(info.get("connected_slaves", 0))
            self._replicas[master] = (count, time.monotonic())
        return count

    async def execute(self, pipe, master: str) -> tuple[list, int | None]:
        """Run ``pipe``, then WAIT when ``master`` has a replica online (never with a timeout of
        0: writes per master, not waited on). Answers its results and how many replicas
        acknowledged them (None: none to wait for)."""
        if not self.timeout_ms or not await self.replicas_online(master):
            return await execute_scripted(pipe), None
        pipe.execute_command("WAIT", 1, self.timeout_ms)
        *results, replicas = await execute_scripted(pipe)
        return results, replicas

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()


def _raised_in_a_redis_connection(exc: BaseException) -> bool:
    """redis-py 8.1 can fail on a socket that a dying node closed under it with a bare
    AttributeError ('NoneType' object has no attribute 'writelines') or RuntimeError
    (unable to perform operation on a closed transport), seen here in a master kill: a
    connection failure all the same, told apart by being raised inside its connection code."""
    traceback = exc.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith(("redis.asyncio.connection", "redis._parsers",
                                                                       "realtime.redis_connection")):
            return True
        traceback = traceback.tb_next
    return False


def is_redirect(exc: BaseException) -> bool:
    """MOVED or ASK, as raised from a plain (not cluster) client."""
    return isinstance(exc, (MovedError, AskError)) or (
        isinstance(exc, RedisError) and str(exc).startswith(("MOVED", "ASK")))


def queue_publish(pipe, channel: str, message: str) -> None:
    """PUBLISH on one Redis; SPUBLISH (sharded, routed to the channel's slot) on a cluster,
    where every process SSUBSCRIBEs the channels it hears (realtime.live_hub)."""
    if type(pipe).__name__ == "ClusterPipeline":
        pipe.spublish(channel, message)
    else:
        pipe.publish(channel, message)


#: Keys per pipeline when a process writes many leases: a renewal of 10,000 must not stall the loop.
LEASE_WRITE_CHUNK = 200


def queue_lease(pipe, key: str, holder: str, now_ms: int, lease_ms: int) -> None:
    """Queue ``holder``'s lease in the sorted set ``key`` (holder -> end of the lease, Unix ms),
    pruning the leases of holders that stopped renewing (dead processes), the key itself
    expiring with the lease: where a user's sockets are, which processes watch a tweet."""
    pipe.zadd(key, {holder: now_ms + lease_ms})
    pipe.zremrangebyscore(key, "-inf", now_ms)
    pipe.pexpire(key, lease_ms)


async def warm_up(redis: Redis, connections: int) -> None:
    """Open ``connections`` pooled connections now. redis-py opens them on demand, each with
    its own handshake round trips, which made the first second of a burst of posts slower
    than the rest (see BENCHMARKS.md)."""
    await asyncio.gather(*(redis.execute_command("PING") for _ in range(connections)))


def _is_cluster_pipeline(pipe) -> bool:
    return type(pipe).__name__ == "ClusterPipeline"


async def queue_script(pipe, script, keys: Sequence, args: Sequence, *, reads_earlier: bool = False) -> None:
    """Queue a call of ``script`` (from ``register_script``) in ``pipe``, either kind.

    redis-py refuses ``evalsha`` in a cluster pipeline (its scripts would need every key in
    one slot, which ours have), so there the call is queued as a plain ``EVALSHA``, routed
    by its keys, and remembered, so that ``execute_scripted`` can load the script and run
    the call again where a node answers NOSCRIPT (a new master after a failover has no
    scripts: they are not replicated). ``reads_earlier``: the call reads what an earlier
    call of the pipeline writes, so it runs again after any of those that ran again (it
    must be safe to repeat); otherwise it would have read the state before it."""
    if _is_cluster_pipeline(pipe):
        pipe.__dict__.setdefault("_chirp_script_calls", []).append((script, list(keys), list(args), reads_earlier))
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    else:
        await script(keys=keys, args=args, client=pipe)


async def execute_scripted(pipe) -> list:
    """``pipe.execute()`` without the ``SCRIPT EXISTS`` round trip that redis-py sends
    before every pipeline holding a script. The scripts are loaded after their first use;
    when Redis has lost them (a restart, ``SCRIPT FLUSH``, a failover), they are loaded and
    the calls run again.

    Only for pipelines that are safe to run twice and whose other commands may land
    without the scripts' (timeline pushes and removals); on a cluster, for pipelines of
    script calls queued with ``queue_script`` only. Not for one that writes a mark of what
    the scripts did (the fan-out progress): a pipeline is no transaction, so on NOSCRIPT
    the mark would be written without the batch, and the batch lost if the process died
    before the re-run.

    It reads redis-py's pipeline internals (``scripts``, ``command_stack``), pinned by
    tests/test_library_internals.py."""
    if _is_cluster_pipeline(pipe):
        return await _execute_cluster_scripted(pipe)
    scripts, stack = pipe.scripts, list(pipe.command_stack)
    pipe.scripts = set()
    try:
        return await pipe.execute()
    except NoScriptError:
        pipe.command_stack, pipe.scripts = stack, scripts  # execute() loads what is missing
        return await pipe.execute()


async def _execute_cluster_scripted(pipe) -> list:
    calls = pipe.__dict__.pop("_chirp_script_calls", [])
    results = await pipe.execute(raise_on_error=False)
    missing = [n for n, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        for script in {calls[n][0] for n in missing}:
            await script.registered_client.script_load(script.script)  # on every master
        missing += [n for n in range(missing[0] + 1, len(calls)) if calls[n][3] and n not in missing]
        missing.sort()
        retry = calls[missing[0]][0].registered_client.pipeline(transaction=False)
        for n in missing:
            script, keys, args, _ = calls[n]
            retry.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        for n, result in zip(missing, await retry.execute(raise_on_error=False)):
            results[n] = result
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results
