"""Timelines: Redis lists of tweet ids, newest arrival at the head, trimmed by age.

A list is kept in arrival order, which is the order live events went out; pages are
sorted by id when they are answered. Every read filters by age, so nothing older than
``max_age`` is answered whether or not a trim has run yet.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from redis.crc import key_slot

from . import keys
from .ids import min_id_at
from .redis_client import Redis, execute_scripted, queue_script
from .scripts import PUSH_TO_TIMELINES, REMOVE_FROM_TIMELINES

__all__ = ["Timelines", "RECENT_DEDUPE_WINDOW", "FULL_DEDUPE"]

#: A push looks this far from the head for the same id: a re-run soon after the first
#: run finds it there. Re-runs of an interrupted batch use FULL_DEDUPE instead.
RECENT_DEDUPE_WINDOW = 50
FULL_DEDUPE = 0

# The live event arguments of the push and remove scripts (realtime.scripts._LIVE_EVENTS).
_PRESENCE_BEFORE, _, _PRESENCE_AFTER = keys.live_presence("\0").partition("\0")
_PROCESS_CHANNEL = [keys.process_channel(""), ""]
_USER_CHANNEL_PREFIX, _, _USER_CHANNEL_MID = keys.user_process_channel("\0", "").partition("\0")


class Timelines:
    def __init__(self, redis: Redis, *, max_age: float, max_length: int, cluster: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self.max_age = max_age
        self.max_length = max_length
        self._cluster = cluster
        self._clock = clock
        self._push = redis.register_script(PUSH_TO_TIMELINES)
        self._remove = redis.register_script(REMOVE_FROM_TIMELINES)

    def oldest_allowed_id(self) -> int:
        return min_id_at(int((self._clock() - self.max_age) * 1000))

    def _groups(self, keys: Sequence[str]) -> list[list[str]]:
        """One group per script call: all keys together, or one group per slot on a cluster."""
        if not self._cluster:
            return [list(keys)]
        by_slot: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            by_slot[key_slot(key.encode())].append(key)
        return list(by_slot.values())

    def _live_args(self) -> list:
        # Presence leases are wall-clock deadlines set by each server process (LiveHub).
        prefix, mid = (_USER_CHANNEL_PREFIX, _USER_CHANNEL_MID) if self._cluster else _PROCESS_CHANNEL
        return [keys.HOME_TIMELINE_PREFIX, _PRESENCE_BEFORE, _PRESENCE_AFTER, prefix, int(time.time() * 1000), mid]

    async def queue_push(self, pipe, keys: Sequence[str], tweet_id: int, *, message: str = "",
                         dedupe_window: int = RECENT_DEDUPE_WINDOW) -> int:
        """Queue pushes of ``tweet_id`` onto ``keys`` in ``pipe``; returns the number of calls queued.

        Each home timeline that really gains the entry sends ``message`` live to its owner's
        sockets, wherever they are: one message per server process, naming its recipients.
        """
        common = [tweet_id, self.oldest_allowed_id(), self.max_length, int(self.max_age * 1000), dedupe_window,
                  message, *self._live_args()]
        groups = self._groups(keys)
        for group in groups:
            await queue_script(pipe, self._push, group, common)
        return len(groups)

    async def queue_remove(self, pipe, keys: Sequence[str], tweet_id: int, *, message: str = "") -> int:
        """Queue removals of ``tweet_id`` from ``keys``; live events as for ``queue_push``."""
        common = [tweet_id, message, *self._live_args()]
        groups = self._groups(keys)
        for group in groups:
            await queue_script(pipe, self._remove, group, common)
        return len(groups)

    async def push(self, keys: Sequence[str], tweet_id: int, **options) -> int:
        """Push now; returns how many timelines gained the entry."""
        pipe = self._redis.pipeline(transaction=False)
        await self.queue_push(pipe, keys, tweet_id, **options)
        return sum(await execute_scripted(pipe))

    async def remove(self, keys: Sequence[str], tweet_id: int, **options) -> int:
        pipe = self._redis.pipeline(transaction=False)
        await self.queue_remove(pipe, keys, tweet_id, **options)
        return sum(await execute_scripted(pipe))

    async def ids_before(self, key: str, before: int | None = None) -> list[int]:
        """Every id in the timeline that is young enough and older than ``before``, newest first."""
        floor = self.oldest_allowed_id()
        ceiling = before if before is not None else 1 << 62
        raw = await self._redis.lrange(key, 0, self.max_length - 1)
        return sorted({i for i in map(int, raw) if floor <= i < ceiling}, reverse=True)

    async def newer_than(self, key: str, since: int | None) -> list[int]:
        """The entries that arrived after ``since``, oldest first (for replay).

        Found by position: the list is in arrival order, so a late arrival with a smaller
        id than ``since`` is still found. Falls back to comparing ids when ``since`` has
        left the list.
        """
        floor = self.oldest_allowed_id()
        raw = [int(i) for i in await self._redis.lrange(key, 0, self.max_length - 1)]
        if since is None:
            head = raw
        elif since in raw:
            head = raw[: raw.index(since)]
        else:
            head = [i for i in raw if i > since]
        return [i for i in reversed(head) if i >= floor]
