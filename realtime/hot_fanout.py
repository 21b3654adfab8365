"""Hybrid fan-out: the tweets of the largest accounts are merged in when a timeline is read.

Fan-out on write costs one timeline write per follower: right for most accounts, wrong for
one with a million followers. An account with at least ``threshold`` followers is *hot*: its
tweets and retweets go to its own timelines (and to the users it mentions, and its hashtags)
and to its *hot timeline*, not into its followers' home timelines. A home timeline is read as
the stored list merged with the hot timelines of the hot accounts its owner follows
(``hot_follows``, a small sorted set per user: account -> the first entry id of theirs to
merge), newest first, with no duplicates. So a tweet costs the same few writes whatever the
follower count.

The account's state is a field of its user hash (``keys.FANOUT_STATE``), changed only by its
fan-out jobs, which run one at a time in the author's order (realtime.fanout):

- absent, or ``cooled:<ms>``: pushed. A post job that finds ``threshold`` followers or more
  first *warms* the account: ``warming``, then every follower's ``hot_follows`` gains it
  (batches with progress marks, so a worker killed half way is resumed), then ``hot``; the
  job's own tweet is the first one not pushed. A follow meanwhile reads the state after its
  own write to the followers: one that sees ``warming`` or ``hot`` adds the account itself,
  one that does not came before the walk read the followers. What was pushed before is in
  the home timelines too; reads dedupe.
- ``hot``: a post job that finds fewer than ``cool_below`` followers (90% of the threshold:
  follows and unfollows around the threshold do not flip it back and forth) sets ``cooled``
  and pushes from then on. The followers keep the account in their ``hot_follows``: the
  tweets it posted while hot are in no home timeline. A read drops it from there once the
  account has been cooled longer than the timeline's age limit.

A job decides once: a hot decision is kept in its progress before anything hot is written; a
re-run without one may have pushed already, so it pushes again rather than warm the account
(the author's next post does).

Live, exactly once, no gap: the hot timeline is kept in the slot of the author's fan-out
shard, so the script that writes an entry to it (or removes one) publishes the event on the
shard's hot channel (``keys.hot_channel``) in the same atomic step, as a home timeline's write
publishes to its owner. Every server process listens to every shard's hot channel from its
start, and hands each event to its local users who follow the account (``LocalHotFollows``),
except the author and those it mentions (they have it from their own home timelines). A
process reads a user's ``hot_follows`` when their first socket attaches, after the lease and
before the replay read (an event before the read is in the hot timeline the replay reads, one
after it is handed over), and again after every reconnect. Each change of a user's hot follows
goes to the user's sockets from the script that makes it (``SET_HOT_FOLLOW``), and the hub
applies it; a follow heard after the account's tweet (on a cluster, another node's
connection) is sent the tweet from the hub's memory of recent hot events.

Deletes: the delete job of an entry found in the author's hot timeline removes it from there
(which records it in ``hot_deletes`` for replay, and sends the delete live) and from the
author's own timelines, mentions and hashtags, and looks in no follower's list.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable

from . import keys
from .ids import id_to_ms, min_id_at
from .live_protocol import LiveEvent, hot_follow_frame
from .redis_client import Redis, execute_scripted, queue_script
from .scripts import SET_HOT_FOLLOW
from .timelines import Timelines
from .users import UserFieldCache

__all__ = ["HotFanout", "LocalHotFollows"]

log = logging.getLogger("chirp.hot_fanout")

#: The followers of an account made hot by a job merge its entries from this long before
#: that job's: ids come from each server's clock, and an entry lost to a clock behind by a
#: moment would be worse than one merged twice (reads dedupe).
WARM_SLACK_MS = 2000
#: Hot accounts' states read by ``follows_of`` are kept this long per process, this many.
STATE_TTL, STATES_KEPT = 5.0, 10_000
#: A ``hot_follows`` write batch (a script call per follower, pipelined).
HOT_FOLLOW_BATCH = 1000


def cooled_state(at_ms: int) -> str:
    return f"cooled:{at_ms}"


class HotFanout:
    """The store side of hybrid fan-out: accounts' states and warms, users' hot follows."""

    def __init__(self, redis: Redis, timelines: Timelines, *, threshold: int) -> None:
        self._redis = redis
        self._timelines = timelines
        self.threshold = threshold
        self.cool_below = max(1, threshold * 9 // 10) if threshold else 0
        self._set_follow = redis.register_script(SET_HOT_FOLLOW)
        self._states = UserFieldCache(keys.FANOUT_STATE, STATE_TTL, STATES_KEPT)

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def channels(self, shards: int) -> list[str]:
        """The hot channels every server process listens to: one per fan-out shard."""
        return [keys.hot_channel(tag) for tag in keys.fanout_shard_tags(shards)] if self.enabled else []

    # -- an author's jobs (realtime.fanout), one at a time in the author's order --------

    async def mode_of(self, author: str) -> str:
        """How the author's next post goes: ``push``, ``hot``, ``warm`` (hot once the
        followers know: ``begin_warming``, ``add_followers``, ``finish_warming``) or
        ``warming`` (a warm that a job began and did not finish: go on with it)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(keys.user(author), keys.FANOUT_STATE)
        pipe.zcard(keys.followers(author))
        state, followers = await pipe.execute()
        if state == "warming":
            return "warming"
        if state == "hot":
            if followers >= self.cool_below:
                return "hot"
            await self._redis.hset(keys.user(author), keys.FANOUT_STATE, cooled_state(int(time.time() * 1000)))
            log.info("%s has %d followers, below %d: its tweets are pushed again", author, followers,
                     self.cool_below)
            return "push"
        return "warm" if followers >= self.threshold else "push"

    async def begin_warming(self, author: str) -> None:
        await self._redis.hset(keys.user(author), keys.FANOUT_STATE, "warming")

    @staticmethod
    def warm_from(entry_id: int) -> int:
        """The first entry merged for the followers of an account warmed by ``entry_id``'s job:
        that one, and the moment before it (dedupe makes an entry also pushed harmless)."""
        return min_id_at(id_to_ms(entry_id) - WARM_SLACK_MS)

    async def add_followers(self, author: str, names: Iterable[str], from_id: int) -> None:
        """Each of ``names`` merges ``author``'s entries from ``from_id`` on (their sockets hear it)."""
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            await self._queue_set(pipe, name, author, from_id)
        await execute_scripted(pipe)

    async def finish_warming(self, author: str, followers: int) -> None:
        await self._redis.hset(keys.user(author), keys.FANOUT_STATE, "hot")
        log.info("%s has %d followers: its tweets are merged into their timelines when read, not pushed",
                 author, followers)

    async def was_posted_hot(self, author: str, entry_id: int) -> bool:
        """Whether the entry is in the author's hot timeline (one too old to be is in no
        follower's timeline either, or on its way out of them)."""
        return await self._redis.lpos(self._timelines.hot_timeline(author), str(entry_id)) is not None

    # -- follows ---------------------------------------------------------------------

    @staticmethod
    def is_hot_state(state: str | None) -> bool:
        """A follow seeing this state adds the account to the follower's hot follows."""
        return state in ("warming", "hot")

    async def followed(self, me: str, account: str, *, after: int) -> None:
        """``me`` now follows hot ``account``, whose newest entry was ``after``: the later ones
        are merged (by the entry, not a clock: ids come from each server's own)."""
        pipe = self._redis.pipeline(transaction=False)
        await self._queue_set(pipe, me, account, after + 1)
        await execute_scripted(pipe)

    async def unfollowed(self, me: str, account: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        await self._queue_set(pipe, me, account, None)
        await execute_scripted(pipe)

    async def _queue_set(self, pipe, owner: str, account: str, from_id: int | None) -> None:
        frame = hot_follow_frame(account, from_id)
        await queue_script(pipe, self._set_follow, [keys.hot_follows(owner)],
                           [owner, account, "" if from_id is None else from_id, frame, *self._timelines.live_args()])

    async def follows_of(self, user: str) -> dict[str, int]:
        """The hot accounts ``user`` follows -> the smallest entry id of theirs to merge. An
        account cooled for longer than the age limit has nothing left to merge: it leaves."""
        if not self.enabled:
            return {}
        follows = {account: int(score) for account, score in
                   await self._redis.zrange(keys.hot_follows(user), 0, -1, withscores=True)}
        if follows:
            states = await self._states_of(follows)
            oldest_ms = (time.time() - self._timelines.max_age) * 1000
            done = [account for account in follows if _cooled_before(states.get(account), oldest_ms)]
            if done:
                await self._redis.zrem(keys.hot_follows(user), *done)
                for account in done:
                    del follows[account]
        return follows

    async def _states_of(self, accounts: Iterable[str]) -> dict[str, str | None]:
        pipe = self._redis.pipeline(transaction=False)
        known, missing = self._states.queue(pipe, accounts)
        if missing:
            known.update(self._states.take(missing, await pipe.execute()))
        return known


def _cooled_before(state: str | None, ms: float) -> bool:
    return bool(state) and state.startswith("cooled:") and int(state.split(":", 1)[1]) < ms


#: Hot events a hub remembers, for a follow heard after the account's tweet (see the module).
RECENT_HOT_EVENTS = 1000


class LocalHotFollows:
    """One server process's view of which of its users follow which hot accounts."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._of_user: dict[str, dict[str, int]] = {}
        self._of_account: dict[str, dict[str, int]] = {}
        self._loading: dict[str, list[LiveEvent]] = {}  # user -> changes heard while being read
        self._recent: collections.deque[tuple[str, frozenset, LiveEvent]] = collections.deque(
            maxlen=RECENT_HOT_EVENTS)

    def loaded(self, user: str) -> bool:
        return user in self._of_user

    async def load(self, users: list[str]) -> None:
        """Read the hot follows of ``users`` (replacing what was known); changes heard
        meanwhile are applied after."""
        for start in range(0, len(users), HOT_FOLLOW_BATCH):
            chunk = users[start:start + HOT_FOLLOW_BATCH]
            for user in chunk:
                self._loading.setdefault(user, [])
            try:
                pipe = self._redis.pipeline(transaction=False)
                for user in chunk:
                    pipe.zrange(keys.hot_follows(user), 0, -1, withscores=True)
                answers = await pipe.execute()
            except BaseException:
                for user in chunk:
                    self._loading.pop(user, None)
                raise
            for user, follows in zip(chunk, answers):
                self.forget(user)
                self._of_user[user] = {}
                for account, score in follows:
                    self._add(user, account, int(score))
                for event in self._loading.pop(user, []):
                    self.changed(user, event)

    def forget(self, user: str) -> None:
        for account in self._of_user.pop(user, {}):
            followers = self._of_account.get(account)
            if followers is not None:
                followers.pop(user, None)
                if not followers:
                    del self._of_account[account]

    def _add(self, user: str, account: str, from_id: int) -> None:
        self._of_user[user][account] = from_id
        self._of_account.setdefault(account, {})[user] = from_id

    def changed(self, user: str, event: LiveEvent) -> list[LiveEvent]:
        """Apply a change of ``user``'s hot follows; answers the recent hot events of the
        account now followed, which the user has not been sent."""
        if user in self._loading:
            self._loading[user].append(event)
            return []
        follows = self._of_user.get(user)
        if follows is None:
            return []  # no socket here any more
        account, from_id = event.account, event.followed_from
        if from_id is None:
            if follows.pop(account, None) is not None:
                followers = self._of_account[account]
                followers.pop(user, None)
                if not followers:
                    del self._of_account[account]
            return []
        if account in follows:
            follows[account] = self._of_account[account][user] = min(follows[account], from_id)
            return []
        self._add(user, account, from_id)
        return [event for author, skip, event in self._recent
                if author == account and user not in skip and _entry_of(event) >= from_id]

    def recipients(self, account: str, skip: frozenset, event: LiveEvent) -> list[str]:
        """The local users ``event`` of hot ``account`` goes to; remembers it."""
        self._recent.append((account, skip, event))
        entry = _entry_of(event)
        return [user for user, from_id in self._of_account.get(account, {}).items()
                if entry >= from_id and user not in skip]


def _entry_of(event: LiveEvent) -> int:
    return event.entry_id if event.entry_id is not None else (event.deleted_id or 0)
