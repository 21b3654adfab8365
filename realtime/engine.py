"""The engine: every part of the service that is not HTTP, wired together once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os

from .config import Settings
from .fanout import FanoutQueue, FanoutWorker, JobsInFlight, shards_per_worker
from .google_auth import GoogleCerts, GoogleVerifier
from .hot_fanout import HotFanout
from .id_lease import IdLease
from .live_hub import LiveHub
from .notifications import Notifications
from .presence import Presence
from .rate_limits import RateLimits
from .redis_client import Redis, ReplicaAcks, cluster_health, is_cluster, open_redis, warm_up
from .replay import Replay
from .search import HashtagIndex, Search
from .sessions import Sessions
from .socket_limit import SocketLimit
from .supervision import supervise
from .timelines import Timelines
from .tweets import Tweets
from .watches import CountsPublisher
from .users import Users

__all__ = ["Engine"]

log = logging.getLogger("chirp.engine")

#: Pooled Redis connections opened at start-up: about as many as a burst of requests and
#: the fan-out workers use at once.
WARM_CONNECTIONS = 16


class Engine:
    """Holds the Redis clients and the parts built on them. Start with ``Engine.open``."""

    def __init__(self, settings: Settings, redis: Redis, blocking_redis: Redis, id_lease: IdLease,
                 fanout_writes: Redis | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self.blocking_redis = blocking_redis
        self.fanout_writes = fanout_writes or redis
        self.id_lease = id_lease
        self.sessions = Sessions(redis)
        self.timelines = Timelines(redis, max_age=settings.timeline_max_age,
                                   max_length=settings.timeline_max_length, cluster=settings.redis_cluster,
                                   shards=settings.fanout_shards)
        self.notifications = Notifications(redis, id_lease.generator, self.timelines)
        # Hybrid fan-out: the largest accounts' tweets are merged in when a timeline is read.
        self.hot_fanout = HotFanout(redis, self.timelines, threshold=settings.fanout_hot_followers)
        self.users = Users(redis, self.notifications, hot=self.hot_fanout, timelines=self.timelines)
        # On a cluster, posts and fan-out writes wait for a replica (realtime.redis_client.ReplicaAcks).
        self.replica_acks = (ReplicaAcks(redis, settings.replica_ack_timeout)
                             if settings.redis_cluster and settings.replica_ack_timeout else None)
        # Jobs and fan-out batches go as one pipeline per master on a cluster, waiting for
        # replicas or not, on clients that never send a write again by themselves (docs/design.md).
        self._node_writes = self.replica_acks or (ReplicaAcks(redis, 0) if settings.redis_cluster else None)
        self.fanout_queue = FanoutQueue(redis, settings.fanout_shards, acks=self._node_writes,
                                        writes=self.fanout_writes)
        self.hashtag_index = HashtagIndex(redis, self.timelines)
        self.tweets = Tweets(redis, id_lease.generator, self.users, self.timelines, self.fanout_queue,
                             hashtag_index=self.hashtag_index, notifications=self.notifications,
                             counts=CountsPublisher(redis))
        self.search = Search(redis, self.users, self.tweets, self.hashtag_index)
        # What a (re)connecting socket missed.
        self.replay = Replay(self.timelines, self.tweets, self.notifications, hot=self.hot_fanout)
        self.live_hub = LiveHub(redis, self._make_pubsub_client, self.replay.events_after,
                                sharded=settings.redis_cluster,
                                hot_channels=self.hot_fanout.channels(settings.fanout_shards))
        self.presence = Presence(redis, self.live_hub)
        self.rate_limits = RateLimits(redis, settings)
        self.socket_limit = SocketLimit(redis, self.presence.process_id, settings.max_sockets_per_user)
        # Sign in with Google, when a client id is configured: Google's certificates are
        # fetched on the first sign-in and cached for their max-age (realtime.google_auth).
        self.google: GoogleVerifier | None = (
            GoogleVerifier(settings.google_client_id, GoogleCerts(settings.google_certs_url))
            if settings.google_client_id else None)
        self._jobs_in_flight = JobsInFlight()  # one per process
        self._tasks: list[asyncio.Task] = []
        self._fanout_workers: dict[FanoutWorker, asyncio.Task] = {}

    @classmethod
    async def open(cls, settings: Settings) -> Engine:
        if not settings.redis_url:
            raise ValueError("Engine.open needs settings.redis_url (run.py starts an embedded Redis)")
        if settings.redis_cluster is None:
            settings = dataclasses.replace(settings, redis_cluster=await is_cluster(settings.redis_url))
        redis = await open_redis(settings.redis_url, cluster=settings.redis_cluster)
        blocking = await open_redis(settings.redis_url, cluster=settings.redis_cluster, blocking=True)
        # Fan-out writes on a client that never sends a command again by itself: a job's first
        # run writes follower batches with no dedupe, and redis-py, whose reply was lost, would
        # send one again as it was (realtime.fanout). On a cluster they go through ReplicaAcks'
        # clients, which are such, and through the cluster client only after a redirect.
        writes = redis if settings.redis_cluster else await open_redis(settings.redis_url, retries=0)
        if settings.redis_cluster:
            log.info("Redis Cluster masters: %s", ", ".join(sorted(node.name for node in redis.get_primaries())))
        lease = IdLease(redis)
        await lease.acquire()
        engine = cls(settings, redis, blocking, lease, writes)
        await engine.fanout_queue.ensure_groups()
        await warm_up(redis, WARM_CONNECTIONS)
        engine._start(lease.keep(), "id-lease")
        log.info("Process %s (pid %d) holds id worker %d", engine.presence.process_id, os.getpid(),
                 lease.generator.worker_id)
        return engine

    def _start(self, coroutine, name: str) -> None:
        """A background loop of the engine's. Each catches, logs and counts its own failures;
        one that ends anyway is a bug, said loudly."""
        self._tasks.append(supervise(asyncio.create_task(coroutine, name=name), forever=True))

    def new_fanout_worker(self, tags: list[str]) -> FanoutWorker:
        s = self.settings
        return FanoutWorker(
            self.redis, self.blocking_redis, self.timelines, self.tweets, tags=tags, cluster=s.redis_cluster,
            writes=self.fanout_writes,
            batch_size=s.fanout_batch_size, batch_pause=s.fanout_batch_pause, claim_idle=s.fanout_claim_idle,
            in_flight=self._jobs_in_flight, acks=self._node_writes, hot=self.hot_fanout,
        )

    async def _make_pubsub_client(self) -> Redis:
        known = [(node.host, node.port) for node in self.redis.get_nodes()] if self.settings.redis_cluster else []
        return await open_redis(self.settings.redis_url, cluster=self.settings.redis_cluster, blocking=True,
                                retries=0, known_nodes=known)

    async def start_live(self) -> None:
        """Start the pub/sub listener and the presence heartbeat; return once listening."""
        self._start(self.live_hub.run(), "live-hub")
        self._start(self.presence.run(), "presence")
        self._start(self.live_hub.expire_sessions(), "live-session-expiry")
        self._start(self.live_hub.keep_leases(), "live-leases")
        await asyncio.wait_for(self.live_hub.connected.wait(), timeout=10)

    def start_fanout_workers(self, count: int) -> list[FanoutWorker]:
        """``count`` workers over every shard (realtime.fanout.shards_per_worker)."""
        workers = [self.new_fanout_worker(shards) for shards in shards_per_worker(self.fanout_queue.tags, count)]
        for number, worker in enumerate(workers):
            self._fanout_workers[worker] = supervise(asyncio.create_task(worker.run(), name=f"fanout-worker-{number}"),
                                                     forever=True)
        return workers

    async def health_problem(self) -> str | None:
        """Why this process cannot serve now, or None. Raises RedisDown when Redis does not answer."""
        if not self.settings.redis_cluster:
            await self.redis.ping()
            return None
        await self.redis.ping(target_nodes=self.redis.PRIMARIES)  # not replicas: one may be down
        return await cluster_health(self.redis)

    async def close(self) -> None:
        for worker, task in self._fanout_workers.items():
            worker.stop()
            if worker.waiting_for_jobs:  # nothing in hand: no need to sit out its blocking read
                task.cancel()
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
        if self._node_writes is not None:  # replica_acks itself when there is one
            with contextlib.suppress(Exception):
                await self._node_writes.aclose()
        if self.google is not None:
            with contextlib.suppress(Exception):
                await self.google.aclose()
        extra = [self.fanout_writes] if self.fanout_writes is not self.redis else []
        for client in [self.redis, self.blocking_redis, *extra]:
            with contextlib.suppress(Exception):
                await client.aclose()

