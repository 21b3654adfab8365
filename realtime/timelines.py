"""Timelines: Redis lists of tweet ids, newest arrival at the head, trimmed by age.

A list is kept in arrival order, which is the order live events went out; pages are
sorted by id when they are answered. Every read filters by age, so nothing older than
``max_age`` is answered whether or not a trim has run yet.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from redis.crc import key_slot

from . import keys
from .ids import id_to_ms, min_id_at
from .redis_client import Redis, execute_scripted, queue_script
from .redis_connection import connections_made
from .scripts import PUSH_ON_NODE, PUSH_TO_TIMELINES, REMOVE_FROM_TIMELINES, REMOVE_ON_NODE

__all__ = ["Timelines", "FollowerExpiries", "RECENT_DEDUPE_WINDOW", "FULL_DEDUPE", "NO_DEDUPE"]

#: A push looks this far from the head for the same id: a re-run soon after the first
#: run finds it there. Re-runs of an interrupted batch use FULL_DEDUPE instead.
RECENT_DEDUPE_WINDOW = 50
FULL_DEDUPE = 0
#: No look at all: only for writes that cannot have happened before (realtime.fanout).
NO_DEDUPE = -1

# The live event arguments of the push and remove scripts (realtime.scripts._LIVE_EVENTS).
_PRESENCE_BEFORE, _, _PRESENCE_AFTER = keys.live_presence("\0").partition("\0")
_PROCESS_CHANNEL = [keys.process_channel(""), ""]
_USER_CHANNEL_PREFIX, _, _USER_CHANNEL_MID = keys.user_process_channel("\0", "").partition("\0")
_DELETES_PREFIX = keys.home_deletes("\0").partition("\0")[0]
_HOT_PREFIX = keys.hot_timeline("\0", "").partition("\0")[0]
_HOT_CHANNEL_PREFIX = keys.hot_channel("\0").partition("\0")[0]
_HOT_DELETES_PREFIX = keys.hot_deletes("\0", "").partition("\0")[0]
#: A delete whose place in the timeline is lost (its neighbours left too) is replayed when it
#: happened after ``since`` was posted, less this: the delete's time is the worker's clock,
#: the id's the posting process's. A delete replayed needlessly is harmless to a client.
DELETE_REPLAY_SLACK_MS = 10_000
#: A timeline lives the age limit and 1/this more after a push sets its TTL (Timelines.ttl_ms).
TTL_SLACK_FRACTION = 16


class FollowerExpiries:
    """The authors whose followers' home timelines one fan-out worker gave a full TTL lately.

    Setting a timeline's TTL on every push is a third of what a push costs Redis. A job of an
    author listed here pushes to the followers' timelines without it: the worker set every
    one of them to live ``Timelines.ttl_ms`` at most ``interval`` ago (half the slack: every
    list that gains an entry still lives the age limit more, clock drift allowed for; each
    batch asks again, so a long job does not eat into it). The followers since then had theirs
    set by the follow (``Timelines.queue_keep``); a list that was emptied and deleted since
    gets its TTL from the push that creates it again. Only a job's first run, when it has
    written to every follower, lists its author: a re-run sets every TTL, and so does a worker
    that does not know the author (another worker, a restart).

    What the worker set may have been lost since, by a Redis that restarted from older data or
    a failover to a replica that had not received it: so it forgets everything as soon as any
    connection of this process to one Redis had to be made anew (``epoch``:
    realtime.redis_connection.connections_made), or the worker met Redis unavailable, or a
    write went unacknowledged by a replica (``forget``), and a job during which that happened
    lists nobody.
    """

    def __init__(self, max_age: float, kept: int = 100_000, clock: Callable[[], float] = time.monotonic,
                 epoch: Callable[[], int] = connections_made) -> None:
        self.interval = max_age / TTL_SLACK_FRACTION / 2
        self._kept, self._clock, self._epoch = kept, clock, epoch
        self._seen_epoch = epoch()
        self._generation = 0  # one more each time everything is forgotten
        self._set_at: dict[str, float] = {}  # author -> when a job began setting their TTLs, oldest first

    def __len__(self) -> int:
        self._current_generation()
        return len(self._set_at)

    def begin(self) -> tuple[float, int]:
        """A job's start: hand it to ``set_since`` when the job has set every follower's TTL."""
        return self._clock(), self._current_generation()

    def due(self, author: str) -> bool:
        self._current_generation()
        set_at = self._set_at.get(author)
        return set_at is None or self._clock() - set_at >= self.interval

    def set_since(self, author: str, began: tuple[float, int]) -> None:
        """Every follower of ``author`` had their TTL set by a job that began at ``began``."""
        at, generation = began
        if generation != self._current_generation():
            return  # forgotten during the job: its writes may be lost
        self._set_at.pop(author, None)
        self._set_at[author] = at
        cutoff = self._clock() - self.interval
        for oldest in list(self._set_at):
            if len(self._set_at) <= self._kept and self._set_at[oldest] > cutoff:
                break
            del self._set_at[oldest]

    def forget(self) -> None:
        """Trust nothing set so far, nor any job now running (a write no replica acknowledged)."""
        self._set_at.clear()
        self._generation += 1

    def _current_generation(self) -> int:
        epoch = self._epoch()
        if epoch != self._seen_epoch:  # Redis was connected to anew
            self._seen_epoch = epoch
            self.forget()
        return self._generation


class Timelines:
    def __init__(self, redis: Redis, *, max_age: float, max_length: int, cluster: bool = False,
                 clock: Callable[[], float] = time.time, shards: int = 1) -> None:
        self._redis = redis
        self._shards = shards  # the fan-out shards, whose slots hold the hot timelines
        self.max_age = max_age
        self.max_length = max_length
        self._cluster = cluster
        self._clock = clock
        self._push = redis.register_script(PUSH_TO_TIMELINES)
        self._remove = redis.register_script(REMOVE_FROM_TIMELINES)
        self._push_on_node = redis.register_script(PUSH_ON_NODE)
        self._remove_on_node = redis.register_script(REMOVE_ON_NODE)

    @property
    def cluster(self) -> bool:
        return self._cluster

    def hot_timeline(self, account: str) -> str:
        """The hot timeline of ``account``, in its fan-out shard's slot (realtime.hot_fanout)."""
        return keys.hot_timeline(keys.fanout_tag_of(account, self._shards), account)

    def hot_deletes(self, account: str) -> str:
        return keys.hot_deletes(keys.fanout_tag_of(account, self._shards), account)

    @property
    def ttl_ms(self) -> int:
        """How long a timeline lives after a push that sets its TTL: the age limit and a
        sixteenth more, the most by which FollowerExpiries lets a busy author's pushes skip it."""
        return int(self.max_age * 1000 * (1 + 1 / TTL_SLACK_FRACTION))

    def queue_keep(self, pipe, key: str) -> None:
        """Give an existing timeline a full TTL (a new follow: FollowerExpiries)."""
        pipe.pexpire(key, self.ttl_ms)

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

    def live_args(self, hot_skip: Sequence[str] = ()) -> list:
        """The live event arguments of a script that publishes (realtime.scripts._LIVE_EVENTS);
        ``hot_skip``: the users a hot timeline's event is not for (realtime.hot_fanout)."""
        # Presence leases are wall-clock deadlines set by each server process (LiveHub).
        prefix, mid = (_USER_CHANNEL_PREFIX, _USER_CHANNEL_MID) if self._cluster else _PROCESS_CHANNEL
        online = "" if self._cluster else keys.LIVE_ONLINE  # a key of no one slot: one Redis only
        return [keys.HOME_TIMELINE_PREFIX, _PRESENCE_BEFORE, _PRESENCE_AFTER, prefix, int(time.time() * 1000), mid,
                online, _HOT_PREFIX, _HOT_CHANNEL_PREFIX, "".join(" " + name for name in hot_skip)]

    async def queue_push(self, pipe, keys: Sequence[str], tweet_id: int, *, message: str = "",
                         dedupe_window: int = RECENT_DEDUPE_WINDOW, on_node: bool = False,
                         hot_skip: Sequence[str] = (), refresh_ttl: bool = True) -> int:
        """Queue pushes of ``tweet_id`` onto ``keys`` in ``pipe``; returns the number of calls queued.

        Each home timeline that really gains the entry sends ``message`` live to its owner's
        sockets, wherever they are: one message per server process, naming its recipients.
        ``on_node``: ``pipe`` is a plain pipeline to the one cluster node that serves every key,
        and one call takes them all (realtime.scripts.PUSH_ON_NODE). A hot timeline's gain goes
        live to every process that listens for its account, for its followers but ``hot_skip``.
        Each list that gains the entry lives ``ttl_ms`` more; with ``refresh_ttl`` false only
        those the push creates (the caller knows the others live long enough: FollowerExpiries).
        """
        common = [tweet_id, self.oldest_allowed_id(), self.max_length, self.ttl_ms, dedupe_window, message,
                  "1" if refresh_ttl else "0", *self.live_args(hot_skip)]
        return await self._queue(pipe, self._push_on_node if on_node else self._push, keys, common, on_node)

    async def queue_remove(self, pipe, keys: Sequence[str], tweet_id: int, *, message: str = "",
                           on_node: bool = False, hot_skip: Sequence[str] = ()) -> int:
        """Queue removals of ``tweet_id`` from ``keys``; live events as for ``queue_push``."""
        common = [tweet_id, message, _DELETES_PREFIX, self.max_length, int(self.max_age * 1000),
                  int(self._clock() * 1000), _HOT_DELETES_PREFIX, *self.live_args(hot_skip)]
        return await self._queue(pipe, self._remove_on_node if on_node else self._remove, keys, common, on_node)

    async def _queue(self, pipe, script, keys: Sequence[str], common: list, on_node: bool) -> int:
        if on_node:
            await queue_script(pipe, script, [], [*common, *keys, len(keys)])
            return 1
        groups = self._groups(keys)
        for group in groups:
            await queue_script(pipe, script, group, common)
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

    async def merged_ids_before(self, key: str, hot: dict[str, int], before: int | None,
                                want: int) -> tuple[list[int], bool]:
        """``ids_before`` of ``key`` merged with the hot timelines of the ``hot`` accounts
        (account -> its first entry to merge; realtime.hot_fanout), newest first, no id twice:
        at least the ``want`` newest of each that qualify. Also whether some hot timeline was
        left partly unread (the pages may go on after these)."""
        ceiling = before if before is not None else 1 << 62
        home, (merged, unread, _) = await asyncio.gather(self.ids_before(key, before),
                                                         self._hot_entries(hot, ceiling=ceiling, want=want))
        return sorted(merged.union(home), reverse=True), unread

    async def _hot_entries(self, hot: dict[str, int], *, ceiling: int = 1 << 62, above: int = 0,
                           want: int | None = None) -> tuple[set[int], bool, dict[str, int]]:
        """The entries of the hot accounts' hot timelines below ``ceiling``, from each one's
        first entry to merge (and from ``above`` on), young enough. Each list is read from its
        head (newest) in growing chunks until ``want`` of it qualify, it ends, or it goes
        below its bound. Answers them, whether a list was left unread with ``want`` found, and
        each account's newest entry read below ``above``."""
        want = want or self.max_length
        floor = self.oldest_allowed_id()
        found: set[int] = set()
        below: dict[str, int] = {}
        counts = dict.fromkeys(hot, 0)
        unread, start, size, todo = False, 0, min(self.max_length, max(want, 20)), list(hot)
        while todo:
            stop = min(start + size, self.max_length)
            pipe = self._redis.pipeline(transaction=False)
            for account in todo:
                pipe.lrange(self.hot_timeline(account), start, stop - 1)
            more = []
            for account, raw in zip(todo, await pipe.execute()):
                lower = max(floor, hot[account], above)
                ids = [int(i) for i in raw]
                taken = [i for i in ids if lower <= i < ceiling]
                found.update(taken)
                if above:
                    older = [i for i in ids if i < above]
                    if older:
                        below[account] = max(below.get(account, 0), *older)
                counts[account] += len(taken)
                if len(ids) < stop - start or min(ids) < lower:
                    continue  # read to its end, or to entries too old for it
                if counts[account] >= want:
                    unread = True
                elif stop < self.max_length:
                    more.append(account)
            todo, start, size = more, stop, size * 2
        return found, unread, below

    async def _hot_deletes(self, hot: dict[str, int], since: int, below: dict[str, int]) -> list[int]:
        """The entries the hot accounts deleted from their hot timelines after ``since`` arrived
        (oldest first), of those merged into the follower's (realtime.hot_fanout). ``below``:
        each account's newest entry up to ``since``, the one the follower had from it then.
        A delete is after when the account's newest entry as it happened was newer than that,
        before when it was older; when it was that one, by its time."""
        pipe = self._redis.pipeline(transaction=False)
        for account in hot:
            pipe.lrange(self.hot_deletes(account), 0, -1)
        since_ms, deleted = id_to_ms(since) - DELETE_REPLAY_SLACK_MS, []
        for account, records in zip(hot, await pipe.execute()):
            had = below.get(account, 0)
            for record in records:
                entry, newest, at_ms = (int(part) for part in record.split(":"))
                after = newest > had or (newest == had and at_ms >= since_ms)
                if after and entry >= hot[account]:
                    deleted.append((at_ms, entry))
        return [entry for _, entry in sorted(deleted)]

    async def changes_after(self, user: str, since: int | None,
                            hot: dict[str, int] | None = None) -> tuple[list[int], list[int]]:
        """``changes_after_home``, with the entries and deletes of the ``hot`` accounts ``user``
        follows merged in (realtime.hot_fanout): theirs are found by id, newer than ``since``."""
        if not hot:
            return await self.changes_after_home(user, since)
        (entries, deleted), (hot_entries, _, below) = await asyncio.gather(
            self.changes_after_home(user, since), self._hot_entries(hot, above=0 if since is None else since + 1))
        merged = list(dict.fromkeys(heapq.merge(entries, sorted(hot_entries))))[-self.max_length:]
        if since is not None:
            deleted = list(dict.fromkeys(deleted + await self._hot_deletes(hot, since, below)))
        return merged, deleted

    async def changes_after_home(self, user: str, since: int | None) -> tuple[list[int], list[int]]:
        """What a socket of ``user`` that last saw entry ``since`` missed in the home timeline:
        the entries that arrived after it and the ids deleted after it arrived, each oldest
        first. ``since`` None: the whole timeline, and no deletes (the client holds nothing).

        Entries are found by position: the list is in arrival order, so a late arrival with a
        smaller id than ``since`` is still found (by id when ``since`` has left the list).
        A delete is after ``since`` when the entry that was newest as it happened is
        ``since`` or later; by its time when either has left the list.
        """
        floor = self.oldest_allowed_id()
        if since is None:
            raw = [int(i) for i in await self._redis.lrange(keys.home_timeline(user), 0, self.max_length - 1)]
            return [i for i in reversed(raw) if i >= floor], []
        pipe = self._redis.pipeline(transaction=False)
        pipe.lrange(keys.home_deletes(user), 0, -1)
        pipe.lrange(keys.home_timeline(user), 0, self.max_length - 1)
        deletes, raw = await pipe.execute()
        raw = [int(i) for i in raw]
        position = {entry: index for index, entry in enumerate(raw)}
        head = raw[: position[since]] if since in position else [i for i in raw if i > since]
        since_at, since_ms = position.get(since), id_to_ms(since) - DELETE_REPLAY_SLACK_MS
        deleted: dict[int, None] = {}
        for record in reversed(deletes):
            entry, newest, at_ms = (int(part) for part in record.split(":"))
            if since_at is not None and (newest in position or newest == 0):
                after = newest != 0 and position[newest] <= since_at  # 0: it emptied the list, before since
            else:
                after = at_ms >= since_ms
            if after:
                deleted[entry] = None
        return [i for i in reversed(head) if i >= floor], list(deleted)
