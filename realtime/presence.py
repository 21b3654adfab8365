"""Presence: each server process writes its live counts to Redis under a heartbeat with a
TTL, so ``/stats`` sums the processes that are alive and forgets a killed one within
``TTL`` seconds."""

from __future__ import annotations

import asyncio
import logging
import time

from . import metrics
from .live_hub import LiveHub
from .redis_client import Redis

__all__ = ["Presence", "cluster_stats"]

log = logging.getLogger("chirp.presence")

INDEX = "presence:processes"  # sorted set: process id -> heartbeat deadline (ms)
BEAT_EVERY = 1.0
TTL = 5.0


def _process_key(process_id: str) -> str:
    return f"presence:process:{{{process_id}}}"


def _users_key(process_id: str) -> str:
    return f"presence:users:{{{process_id}}}"


class Presence:
    def __init__(self, redis: Redis, hub: LiveHub) -> None:
        self._redis = redis
        self._hub = hub
        self.process_id = hub.process_id
        self.started_at = time.time()
        self._published: set[str] = set()  # users in our Redis set as of the last beat

    async def run(self) -> None:
        """Beat forever; a failed beat (Redis away, READONLY, OOM...) is logged, counted and
        tried again a second later: a process whose beats fail drops out of /stats."""
        failures = 0
        while True:
            try:
                await self.beat()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                metrics.LOOP_FAILURES.labels("presence").inc()
                if failures & (failures - 1) == 0:  # the 1st, 2nd, 4th... failure in a row
                    log.warning("presence heartbeat failed %d time(s) in a row: %s: %s", failures,
                                type(exc).__name__, exc)
            await asyncio.sleep(BEAT_EVERY)

    async def beat(self) -> None:
        """Refresh this process's counts and TTLs; rewrite its user set only when it is
        missing (first beat, or Redis lost it), so a beat costs the same at 10 users or 10,000."""
        ttl_ms = int(TTL * 1000)
        users = self._hub.users()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(_process_key(self.process_id), mapping={
            "id": self.process_id, "connections": self._hub.connections, "users_online": len(users),
            "started_at": repr(self.started_at)})
        pipe.pexpire(_process_key(self.process_id), ttl_ms)
        pipe.zadd(INDEX, {self.process_id: int(time.time() * 1000) + ttl_ms})
        users_key = _users_key(self.process_id)
        arrived, left = users - self._published, self._published - users
        if arrived:
            pipe.sadd(users_key, *arrived)
        if left:
            pipe.srem(users_key, *left)
        pipe.pexpire(users_key, ttl_ms)
        *_, kept = await pipe.execute()
        self._published = set(users)
        if users and not kept:
            await self._rewrite_users(users, ttl_ms)

    async def _rewrite_users(self, users: set[str], ttl_ms: int) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(_users_key(self.process_id))
        pipe.sadd(_users_key(self.process_id), *users)
        pipe.pexpire(_users_key(self.process_id), ttl_ms)
        await pipe.execute()

    async def leave(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(INDEX, self.process_id)
        pipe.delete(_process_key(self.process_id), _users_key(self.process_id))
        await pipe.execute()


async def cluster_stats(redis: Redis) -> dict:
    """Connections and distinct users online, in total and per live process."""
    now_ms = int(time.time() * 1000)
    await redis.zremrangebyscore(INDEX, "-inf", now_ms)
    process_ids = await redis.zrange(INDEX, 0, -1)
    pipe = redis.pipeline(transaction=False)
    for process_id in process_ids:
        pipe.hgetall(_process_key(process_id))
        pipe.smembers(_users_key(process_id))
    answers = await pipe.execute()
    processes, users = [], set()
    for fields, members in zip(answers[::2], answers[1::2]):
        if not fields:
            continue
        processes.append({"id": fields["id"], "connections": int(fields["connections"]),
                          "users_online": int(fields["users_online"]), "started_at": float(fields["started_at"])})
        users |= members
    processes.sort(key=lambda p: p["started_at"])
    return {"connections": sum(p["connections"] for p in processes), "users_online": len(users),
            "processes": processes}
