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

from .ids import min_id_at
from .keys import live_channel
from .redis_client import Redis
from .scripts import PUSH_TO_TIMELINES, REMOVE_FROM_TIMELINES

__all__ = ["Timelines", "RECENT_DEDUPE_WINDOW", "FULL_DEDUPE"]

#: A push looks this far from the head for the same id: a re-run soon after the first
#: run finds it there. Re-runs of an interrupted batch use FULL_DEDUPE instead.
RECENT_DEDUPE_WINDOW = 50
FULL_DEDUPE = 0

# A live channel is these two around its owner's name; the push script rebuilds it from a
# timeline key's hash tag when the caller asks for owner channels.
_OWNER_BEFORE, _, _OWNER_AFTER = live_channel("\0").partition("\0")


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

    def _groups(self, keys: Sequence[str], channels: Sequence[str] | None) -> list[tuple[list[str], list[str]]]:
        """One group per script call: all keys together, or one group per slot on a cluster.

        Without ``channels`` every group's channel list is empty.
        """
        if not self._cluster:
            return [(list(keys), list(channels) if channels is not None else [])]
        by_slot: dict[int, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        if channels is None:
            for key in keys:
                by_slot[key_slot(key.encode())][0].append(key)
        else:
            for key, channel in zip(keys, channels):
                group = by_slot[key_slot(key.encode())]
                group[0].append(key)
                group[1].append(channel)
        return list(by_slot.values())

    async def queue_push(self, pipe, keys: Sequence[str], tweet_id: int, *, message: str = "",
                         channels: Sequence[str] | None = None, owner_channels: bool = False,
                         dedupe_window: int = RECENT_DEDUPE_WINDOW) -> int:
        """Queue pushes of ``tweet_id`` onto ``keys`` in ``pipe``; returns the number of calls queued.

        Each key whose list really gains the entry publishes ``message`` on its channel:
        ``channels[i]`` for ``keys[i]``, or with ``owner_channels`` the live channel of the
        user named by the key's hash tag (``tl:home:{bob}`` publishes on ``live:{bob}``),
        which the script works out itself, so a big fan-out sends one argument per key, not two.
        """
        if owner_channels and channels is not None:
            raise ValueError("pass channels or owner_channels=True, not both")
        ttl_ms = int(self.max_age * 1000)
        owner = [_OWNER_BEFORE, _OWNER_AFTER] if owner_channels else ["", ""]
        common = [tweet_id, self.oldest_allowed_id(), self.max_length, ttl_ms, dedupe_window, message, *owner]
        groups = self._groups(keys, channels)
        for group_keys, group_channels in groups:
            await self._push(keys=group_keys, args=common + group_channels, client=pipe)
        return len(groups)

    async def queue_remove(self, pipe, keys: Sequence[str], tweet_id: int, *, message: str = "",
                           channels: Sequence[str] | None = None, owner_channels: bool = False) -> int:
        """Queue removals of ``tweet_id`` from ``keys``; channels as for ``queue_push``."""
        if owner_channels and channels is not None:
            raise ValueError("pass channels or owner_channels=True, not both")
        owner = [_OWNER_BEFORE, _OWNER_AFTER] if owner_channels else ["", ""]
        groups = self._groups(keys, channels)
        for group_keys, group_channels in groups:
            await self._remove(keys=group_keys, args=[tweet_id, message, *owner] + group_channels, client=pipe)
        return len(groups)

    async def push(self, keys: Sequence[str], tweet_id: int, **options) -> int:
        """Push now; returns how many timelines gained the entry."""
        pipe = self._redis.pipeline(transaction=False)
        await self.queue_push(pipe, keys, tweet_id, **options)
        return sum(await pipe.execute())

    async def remove(self, keys: Sequence[str], tweet_id: int, **options) -> int:
        pipe = self._redis.pipeline(transaction=False)
        await self.queue_remove(pipe, keys, tweet_id, **options)
        return sum(await pipe.execute())

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
