"""The engine: every part of the service that is not HTTP, wired together once."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from . import keys
from .config import Settings
from .fanout import FanoutQueue, FanoutWorker
from .id_lease import IdLease
from .redis_client import Redis, make_redis
from .sessions import Sessions
from .timelines import Timelines
from .tweets import Tweets, delete_event, tweet_event
from .users import Users

__all__ = ["Engine"]

log = logging.getLogger("chirp.engine")


class Engine:
    """Holds the Redis clients and the parts built on them. Start with ``Engine.open``."""

    def __init__(self, settings: Settings, redis: Redis, blocking_redis: Redis, id_lease: IdLease) -> None:
        self.settings = settings
        self.redis = redis
        self.blocking_redis = blocking_redis
        self.id_lease = id_lease
        self.users = Users(redis)
        self.sessions = Sessions(redis)
        self.timelines = Timelines(redis, max_age=settings.timeline_max_age,
                                   max_length=settings.timeline_max_length, cluster=settings.redis_cluster)
        self.fanout_queue = FanoutQueue(redis)
        self.tweets = Tweets(redis, id_lease.generator, self.users, self.timelines, self.fanout_queue)
        self._tasks: list[asyncio.Task] = []

    @classmethod
    async def open(cls, settings: Settings) -> Engine:
        if not settings.redis_url:
            raise ValueError("Engine.open needs settings.redis_url (run.py starts an embedded Redis)")
        redis = make_redis(settings.redis_url, cluster=settings.redis_cluster)
        blocking = make_redis(settings.redis_url, cluster=settings.redis_cluster, blocking=True)
        lease = IdLease(redis)
        await lease.acquire()
        engine = cls(settings, redis, blocking, lease)
        await engine.fanout_queue.ensure_group()
        engine._tasks.append(asyncio.create_task(lease.keep(), name="id-lease"))
        return engine

    def new_fanout_worker(self) -> FanoutWorker:
        s = self.settings
        return FanoutWorker(
            self.redis, self.blocking_redis, self.timelines,
            load_tweet=self.tweets.stored, render_tweet=self._render_event, delete_message=delete_event,
            batch_size=s.fanout_batch_size, batch_pause=s.fanout_batch_pause, claim_idle=s.fanout_claim_idle,
        )

    async def _render_event(self, tweet_id: int) -> str | None:
        shown = await self.tweets.hydrate([tweet_id])
        return tweet_event(shown[0]) if shown else None

    def start_fanout_workers(self, count: int) -> list[FanoutWorker]:
        workers = [self.new_fanout_worker() for _ in range(count)]
        for number, worker in enumerate(workers):
            self._tasks.append(asyncio.create_task(worker.run(), name=f"fanout-worker-{number}"))
        return workers

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.id_lease.release()
        for client in (self.redis, self.blocking_redis):
            with contextlib.suppress(Exception):
                await client.aclose()
