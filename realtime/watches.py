"""Live like and retweet counts of the tweets a client shows (docs/API.md, ``watch`` and
``counts``).

A socket sends the ids it shows; ``CountWatches`` keeps, per process, which local sockets
watch which tweet, and tells Redis which processes watch a tweet with a lease per (tweet,
process) in ``watch:{id}``, in the tweet's slot, renewed with the users' leases. A change
of a tweet's counts (realtime.tweets) runs ``COUNTS_CHANGED`` there: it bumps the counts'
version, reads the counts and the watching processes in one atomic step, and the changer
publishes one message per watching process, whatever its number of sockets. Each process
then sends at most one ``counts`` frame per tweet per second to its watchers: the first at
once, later ones held and sent when the second is up, the newest version (the final counts)
last. A version older than one already sent (two changers publishing out of order) is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import orjson

from . import keys, metrics
from .live_protocol import MAX_WATCHED, LiveEvent, addressed
from .redis_client import LEASE_WRITE_CHUNK, Redis, queue_lease, queue_publish, queue_script
from .scripts import COUNTS_CHANGED

__all__ = ["CountWatches", "CountsPublisher", "MAX_WATCHED", "COUNTS_INTERVAL"]

COUNTS_INTERVAL = 1.0  # seconds between two counts frames of one tweet to a socket


class CountsPublisher:
    """The changer's side: queue ``COUNTS_CHANGED`` after a change, then publish its answer."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._changed = redis.register_script(COUNTS_CHANGED)

    async def queue_changed(self, pipe, tweet_id: int) -> None:
        await queue_script(pipe, self._changed, [keys.tweet(tweet_id), keys.count_watchers(tweet_id)],
                           [int(time.time() * 1000)], reads_earlier=True)  # the counts the change wrote

    async def publish(self, tweet_id: int, answer: list) -> None:
        """``answer``: what the queued ``COUNTS_CHANGED`` returned."""
        likes, retweets, version, *processes = answer
        if not processes:
            return
        message = addressed((), orjson.dumps({"type": "counts", "id": str(tweet_id), "likes": max(0, int(likes)),
                                              "retweets": max(0, int(retweets)), "v": int(version)}).decode())
        pipe = self._redis.pipeline(transaction=False)
        for process in processes:
            queue_publish(pipe, keys.process_channel(process), message)
        await pipe.execute()


class _Tweet:
    """One watched tweet in this process: its watchers and what was last sent to them."""

    __slots__ = ("watchers", "sent_at", "version", "pending", "timer")

    def __init__(self) -> None:
        self.watchers: set = set()
        self.sent_at = float("-inf")
        self.version = -1
        self.pending: LiveEvent | None = None
        self.timer: asyncio.TimerHandle | None = None


class CountWatches:
    def __init__(self, redis: Redis, process_id: str, *, lease_ms: int, interval: float = COUNTS_INTERVAL,
                 clock=time.monotonic) -> None:
        self._redis = redis
        self._process_id = process_id
        self._lease_ms = lease_ms  # as the users' (realtime.live_hub.LEASE), renewed with them
        self.interval = interval
        self._clock = clock
        self._tweets: dict[int, _Tweet] = {}
        self._watching: dict[object, frozenset[int]] = {}  # subscriber -> the ids it watches
        self._leased: set[int] = set()  # tweets whose lease on this process Redis holds

    @property
    def watched(self) -> int:
        return len(self._tweets)

    async def watch(self, subscriber, ids: Iterable[int]) -> None:
        """``subscriber`` now watches ``ids`` (and only those); returns once Redis knows."""
        wanted = frozenset(ids)
        before = self._watching.pop(subscriber, frozenset())
        if wanted:
            self._watching[subscriber] = wanted
        for tweet_id in before - wanted:
            self._unwatch(subscriber, tweet_id)
        for tweet_id in wanted - before:
            self._tweets.setdefault(tweet_id, _Tweet()).watchers.add(subscriber)
        new = [tweet_id for tweet_id in wanted if tweet_id not in self._leased]
        if new:
            await self._write_leases(new)

    def forget(self, subscriber) -> None:
        for tweet_id in self._watching.pop(subscriber, ()):
            self._unwatch(subscriber, tweet_id)

    def _unwatch(self, subscriber, tweet_id: int) -> None:
        tweet = self._tweets.get(tweet_id)
        if tweet is None:
            return
        tweet.watchers.discard(subscriber)
        if not tweet.watchers:
            if tweet.timer is not None:
                tweet.timer.cancel()
            del self._tweets[tweet_id]  # its lease goes with the next renewal

    async def renew(self) -> None:
        """Renew the leases of the tweets watched here, drop the others (with the users')."""
        gone = self._leased - self._tweets.keys()
        if gone:
            pipe = self._redis.pipeline(transaction=False)
            for tweet_id in gone:
                pipe.zrem(keys.count_watchers(tweet_id), self._process_id)
            await pipe.execute()
            self._leased -= gone
        await self._write_leases(list(self._tweets))

    async def release(self) -> None:
        """On shutdown: no more counts for this process."""
        self._tweets, leased, self._leased = {}, self._leased, set()
        pipe = self._redis.pipeline(transaction=False)
        for tweet_id in leased:
            pipe.zrem(keys.count_watchers(tweet_id), self._process_id)
        await pipe.execute()

    async def _write_leases(self, tweet_ids: list[int]) -> None:
        now_ms = int(time.time() * 1000)
        for start in range(0, len(tweet_ids), LEASE_WRITE_CHUNK):
            chunk = tweet_ids[start:start + LEASE_WRITE_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for tweet_id in chunk:
                queue_lease(pipe, keys.count_watchers(tweet_id), self._process_id, now_ms, self._lease_ms)
            await pipe.execute()
            self._leased.update(tweet_id for tweet_id in chunk if tweet_id in self._tweets)

    def deliver(self, frame: str) -> None:
        """A counts message heard on this process's channel: to the tweet's watchers here,
        at most one frame a second each, the newest last."""
        data = orjson.loads(frame)
        tweet = self._tweets.get(int(data["id"]))
        version = int(data.pop("v", 0))
        if tweet is None or version <= tweet.version:
            return  # nobody watches it here any more, or a newer one was heard first
        tweet.version = version
        event = LiveEvent(orjson.dumps(data).decode())
        wait = tweet.sent_at + self.interval - self._clock()
        if wait <= 0 and tweet.timer is None:
            self._send(tweet, event)
            return
        tweet.pending = event
        if tweet.timer is None:
            tweet.timer = asyncio.get_running_loop().call_later(max(wait, 0), self._flush, tweet)

    def _flush(self, tweet: _Tweet) -> None:
        tweet.timer = None
        if tweet.pending is not None and tweet.watchers:
            self._send(tweet, tweet.pending)
        tweet.pending = None

    def _send(self, tweet: _Tweet, event: LiveEvent) -> None:
        tweet.sent_at = self._clock()
        metrics.COUNTS_FRAMES.inc(len(tweet.watchers))
        for subscriber in list(tweet.watchers):
            subscriber.offer(event)
