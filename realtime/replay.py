"""What a socket missed: ``Replay.events_after`` reads what entered (and left) a home
timeline after a given id, and the notifications after another, and renders them as live events, through the ``ReplayCache`` of
tweet events rendered recently in this process, shared by the sockets that replay them.

A connection storm (thousands of sockets reconnecting with ``since`` after a deploy or a
network blip) replays mostly the same recent tweets to everyone. Reading and rendering
each of them once per process, not once per socket, is most of the work saved. An entry
lives ``ttl`` seconds. A replayed tweet's like and retweet counts are therefore at most
that old, as a live event's are. A tweet deleted within that time is dropped from the
timelines by its delete job, and that job's live event reaches every attached socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .live_protocol import LiveEvent
from .hot_fanout import HotFanout
from .notifications import Notifications
from .timelines import Timelines
from .tweets import Tweets

__all__ = ["Replay", "ReplayCache"]


class ReplayCache:
    def __init__(self, *, ttl: float = 2.0, max_entries: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[int, tuple[float, LiveEvent]] = {}  # in insertion order: oldest first
        self.hits = self.misses = 0

    def get(self, entry_id: int) -> LiveEvent | None:
        entry = self._entries.get(entry_id)
        if entry is None or entry[0] < self._clock():
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def put(self, event: LiveEvent) -> None:
        if event.entry_id is None:
            return
        self._entries.pop(event.entry_id, None)  # re-inserted at the young end
        self._entries[event.entry_id] = (self._clock() + self.ttl, event)
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]


class Replay:
    def __init__(self, timelines: Timelines, tweets: Tweets, notifications: Notifications,
                 cache: ReplayCache | None = None, hot: HotFanout | None = None) -> None:
        self._timelines, self._tweets, self._notifications = timelines, tweets, notifications
        self.cache = cache or ReplayCache()
        self._hot = hot if hot is not None and hot.enabled else None  # hot accounts' entries merged in

    async def events_after(self, user: str, since: int | None, notifications_after: int | None) -> list[LiveEvent]:
        """What entered ``user``'s home timeline after ``since``, oldest first, then what was
        deleted from it after ``since`` arrived, then the notifications newer than
        ``notifications_after`` (None: none), as events."""
        hot = await self._hot.follows_of(user) if self._hot is not None else None
        changes = self._timelines.changes_after(user, since, hot)
        if notifications_after is None:
            (ids, deleted), notes = await changes, []
        else:
            (ids, deleted), notes = await asyncio.gather(
                changes, self._notifications.after(user, notifications_after, self._tweets.hydrate))
        events = {entry_id: event for entry_id in ids if (event := self.cache.get(entry_id))}
        missing = [entry_id for entry_id in ids if entry_id not in events]
        for tweet in await self._tweets.hydrate(missing) if missing else []:
            event = LiveEvent.of_tweet(tweet)
            self.cache.put(event)
            events[event.entry_id] = event
        return [events[entry_id] for entry_id in ids if entry_id in events] + [
            LiveEvent.of_delete(entry_id) for entry_id in deleted] + [LiveEvent.of_notification(note) for note in notes]
