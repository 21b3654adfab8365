"""The engine: every part of the service that is not HTTP, wired together once."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from . import keys
from .config import Settings
from .fanout import AuthorsInFlight, FanoutQueue, FanoutWorker
from .google_auth import GoogleCerts, GoogleVerifier
from .id_lease import IdLease
from .live_hub import LiveEvent, LiveHub
from .presence import Presence
from .rate_limits import RateLimits
from .redis_client import Redis, make_redis, warm_up
from .replay_cache import ReplayCache
from .search import HashtagIndex, Search
from .sessions import Sessions
from .socket_limit import SocketLimit
from .timelines import Timelines
from .tweets import Tweets, delete_event, tweet_event
from .users import Users

__all__ = ["Engine"]

log = logging.getLogger("chirp.engine")

#: Pooled Redis connections opened at start-up: about as many as a burst of requests and
#: the fan-out workers use at once.
WARM_CONNECTIONS = 16


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
        self.hashtag_index = HashtagIndex(redis, self.timelines)
        self.tweets = Tweets(redis, id_lease.generator, self.users, self.timelines, self.fanout_queue,
                             hashtag_index=self.hashtag_index)
        self.search = Search(redis, self.users, self.tweets, self.hashtag_index)
        self.replay_cache = ReplayCache()
        self.live_hub = LiveHub(redis, self._make_pubsub_client, self.live_catch_up)
        self.presence = Presence(redis, self.live_hub)
        self.rate_limits = RateLimits(redis, settings)
        self.socket_limit = SocketLimit(redis, self.presence.process_id, settings.max_sockets_per_user)
        # Sign in with Google, when a client id is configured: Google's certificates are
        # fetched on the first sign-in and cached for their max-age (realtime.google_auth).
        self.google: GoogleVerifier | None = (
            GoogleVerifier(settings.google_client_id, GoogleCerts(settings.google_certs_url))
            if settings.google_client_id else None)
        self._authors_in_flight = AuthorsInFlight(hold=settings.fanout_claim_idle)  # one per process
        self._tasks: list[asyncio.Task] = []
        self._fanout_workers: dict[FanoutWorker, asyncio.Task] = {}

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
        await warm_up(redis, WARM_CONNECTIONS)
        engine._tasks.append(asyncio.create_task(lease.keep(), name="id-lease"))
        return engine

    def new_fanout_worker(self) -> FanoutWorker:
        s = self.settings
        return FanoutWorker(
            self.redis, self.blocking_redis, self.timelines,
            load_tweet=self.tweets.stored, render_tweet=self._render_event, delete_message=delete_event,
            batch_size=s.fanout_batch_size, batch_pause=s.fanout_batch_pause, claim_idle=s.fanout_claim_idle,
            in_flight=self._authors_in_flight,
        )

    async def _render_event(self, tweet_id: int, fields: dict) -> str | None:
        shown = await self.tweets.render_stored([(tweet_id, fields)])
        return tweet_event(shown[0]) if shown else None

    def _make_pubsub_client(self) -> Redis:
        return make_redis(self.settings.redis_url, cluster=self.settings.redis_cluster, blocking=True, retries=0)

    async def live_catch_up(self, user: str, since: int | None) -> list[LiveEvent]:
        """The tweets that entered ``user``'s home timeline after ``since``, oldest first, as
        events; those rendered in the last seconds come from the replay cache."""
        ids = await self.timelines.newer_than(keys.home_timeline(user), since)
        events = {entry_id: event for entry_id in ids if (event := self.replay_cache.get(entry_id))}
        missing = [entry_id for entry_id in ids if entry_id not in events]
        for tweet in await self.tweets.hydrate(missing) if missing else []:
            event = LiveEvent.of_tweet(tweet_event(tweet), tweet)
            self.replay_cache.put(event)
            events[event.entry_id] = event
        return [events[entry_id] for entry_id in ids if entry_id in events]

    async def start_live(self) -> None:
        """Start the pub/sub listener and the presence heartbeat; return once listening."""
        self._tasks.append(asyncio.create_task(self.live_hub.run(), name="live-hub"))
        self._tasks.append(asyncio.create_task(self.presence.run(), name="presence"))
        self._tasks.append(asyncio.create_task(self.live_hub.expire_sessions(), name="live-session-expiry"))
        self._tasks.append(asyncio.create_task(self.live_hub.keep_leases(), name="live-leases"))
        await asyncio.wait_for(self.live_hub.connected.wait(), timeout=10)

    def start_fanout_workers(self, count: int) -> list[FanoutWorker]:
        workers = [self.new_fanout_worker() for _ in range(count)]
        for number, worker in enumerate(workers):
            self._fanout_workers[worker] = asyncio.create_task(worker.run(), name=f"fanout-worker-{number}")
        return workers

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        for worker in self._fanout_workers:
            worker.stop()
        if self._fanout_workers:
            await asyncio.wait(self._fanout_workers.values(), timeout=3)
        tasks = self._tasks + list(self._fanout_workers.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5)
            for task in stuck:
                log.error("task %s did not stop within 5 s of being cancelled", task.get_name())
        with contextlib.suppress(Exception):
            await self.id_lease.release()
        with contextlib.suppress(Exception):
            await self.presence.leave()
        with contextlib.suppress(Exception):
            await self.live_hub.release_leases()
        if self.google is not None:
            with contextlib.suppress(Exception):
                await self.google.aclose()
        for client in (self.redis, self.blocking_redis):
            with contextlib.suppress(Exception):
                await client.aclose()
