"""Notifications: what others did that concerns a user (a mention, a like or a retweet of
their tweet, a follow), kept per user and sent live to their sockets.

A user's notifications are one sorted set, ``notes:{alice}``: each member says what it is
about, ``type|from|tweet id`` (``follow|bob|`` for a follow), scored by the notification's
id. The member is what makes it one per (type, from, tweet), however often a like is undone
and redone; undoing leaves it (it happened). The ids are tweet ids' kind (realtime.ids),
made to grow with every notification the user gets (realtime.scripts.ADD_NOTIFICATION), so
that "every notification after N" is exact for a socket catching up (realtime.replay).
They are kept for the timelines' age and length; a deleted tweet's go with it (its delete
job removes them; until then reads skip them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import orjson

from . import keys
from .errors import BadRequest, Unprocessable
from .ids import IdGenerator, id_to_ms, is_id_text
from .redis_client import Redis, execute_scripted, queue_script
from .scripts import ADD_NOTIFICATION, COUNT_UNREAD, FORGET_NOTIFICATIONS, MARK_NOTIFICATIONS_READ
from .timelines import Timelines

__all__ = ["Notifications", "KINDS"]

KINDS = ("mention", "like", "retweet", "follow")

#: Tweets from ids, for a viewer, deleted ones left out (realtime.tweets.Tweets.hydrate).
Hydrate = Callable[..., Awaitable[list[dict]]]


class Notifications:
    def __init__(self, redis: Redis, ids: IdGenerator, timelines: Timelines) -> None:
        self._redis = redis
        self._ids = ids
        self._timelines = timelines  # their age and length are ours, and their live arguments
        self._add = redis.register_script(ADD_NOTIFICATION)
        self._forget = redis.register_script(FORGET_NOTIFICATIONS)
        self._mark_read = redis.register_script(MARK_NOTIFICATIONS_READ)
        self._count_unread = redis.register_script(COUNT_UNREAD)

    @property
    def _ttl_ms(self) -> int:
        return int(self._timelines.max_age * 1000)

    # -- writing ---------------------------------------------------------------------

    async def queue_notify(self, pipe, recipient: str, kind: str, sender: str, tweet: dict | None = None) -> bool:
        """Queue in ``pipe`` the notification of ``recipient`` (lowercase) that ``sender`` (as
        they spell it) did ``kind``, about ``tweet`` (rendered) for all but a follow. Safe to
        run again: the user gets it once. Returns False (nothing queued) for one's own action."""
        if sender.lower() == recipient:
            return False
        note_id = self._ids.next_id()
        note = _shown(note_id, kind, sender, shown_id="")
        if tweet is not None:
            note["tweet"] = tweet
        # The script knows the final id: the frame goes in two parts, either side of it. "id"
        # comes first in the notification, after only the frame's "type": its first match.
        head, _, tail = orjson.dumps({"type": "notification", "notification": note}).decode().partition('"id":""')
        member = f"{kind}|{sender}|{tweet['id'] if tweet is not None else ''}"
        await queue_script(pipe, self._add, [keys.notifications(recipient)], [
            recipient, member, note_id, self._timelines.oldest_allowed_id(), self._timelines.max_length,
            self._ttl_ms, head + '"id":"', '"' + tail, *self._timelines.live_args()])
        return True

    async def notify(self, recipient: str, kind: str, sender: str, tweet: dict | None = None) -> None:
        pipe = self._redis.pipeline(transaction=False)
        if await self.queue_notify(pipe, recipient, kind, sender, tweet):
            await execute_scripted(pipe)

    async def forget_tweet(self, users: Sequence[str], tweet_id: int) -> None:
        """A deleted tweet's notifications leave ``users``' (lowercase): its author's likes and
        retweets of it, the mentioned users' mentions."""
        pipe = self._redis.pipeline(transaction=False)
        for user in dict.fromkeys(users):
            await queue_script(pipe, self._forget, [keys.notifications(user)], [f"|{tweet_id}"])
        await execute_scripted(pipe)

    async def mark_read(self, user: str, up_to: object) -> None:
        if up_to is None:
            raise BadRequest("up_to is required.", code="missing_field")
        if not isinstance(up_to, str):
            raise BadRequest("up_to must be a string.", code="wrong_type")
        if not is_id_text(up_to):
            raise Unprocessable("up_to must be a notification id.", code="invalid_notification_id")
        await self._mark_read(keys=[keys.notifications_read(user)], args=[int(up_to), self._ttl_ms])

    # -- reading ---------------------------------------------------------------------

    async def page(self, user: str, *, count: int, before: int | None, hydrate: Hydrate) -> dict:
        """``{"notifications": [...newest first], "next": id | None, "unread": n}``; their
        tweets as ``user`` sees them (``hydrate``, with their flags)."""
        floor = self._timelines.oldest_allowed_id()
        pipe = self._redis.pipeline(transaction=False)
        await queue_script(pipe, self._count_unread, [keys.notifications(user), keys.notifications_read(user)],
                           [floor])
        # Read twice the page: a deleted tweet's notifications, until its job removes them, are skipped.
        limit = 2 * count + 1
        pipe.zrevrangebyscore(keys.notifications(user), f"({before}" if before else "+inf", floor,
                              start=0, num=limit, withscores=True)
        unread, entries = await execute_scripted(pipe)
        shown: list[dict] = []
        position = 0
        while len(shown) < count and position < len(entries):
            chunk = entries[position: position + count - len(shown)]
            position += len(chunk)
            shown.extend(await self._render(chunk, hydrate, viewer=user))
        more = position < len(entries) or len(entries) == limit
        return {"notifications": shown, "next": str(int(entries[position - 1][1])) if more else None,
                "unread": unread}

    async def after(self, user: str, after_id: int, hydrate: Hydrate) -> list[dict]:
        """Every notification of ``user`` newer than ``after_id``, oldest first, as live events
        show them (no viewer's flags)."""
        floor = max(after_id + 1, self._timelines.oldest_allowed_id())
        entries = await self._redis.zrangebyscore(keys.notifications(user), floor, "+inf", withscores=True)
        return await self._render(entries, hydrate, viewer=None)

    async def newest_id(self, user: str) -> int:
        """The id of the user's newest notification, 0 when none."""
        newest = await self._redis.zrevrange(keys.notifications(user), 0, 0, withscores=True)
        return int(newest[0][1]) if newest else 0

    async def _render(self, entries: Sequence[tuple[str, float]], hydrate: Hydrate, *,
                      viewer: str | None) -> list[dict]:
        parsed = [(int(score), *member.split("|", 2)) for member, score in entries]
        tweet_ids = list(dict.fromkeys(int(tweet_id) for *_, tweet_id in parsed if tweet_id))
        tweets = {tweet["id"]: tweet for tweet in await hydrate(tweet_ids, viewer=viewer)} if tweet_ids else {}
        shown = []
        for note_id, kind, sender, tweet_id in parsed:
            note = _shown(note_id, kind, sender)
            if tweet_id:
                if tweet_id not in tweets:
                    continue  # deleted; its delete job removes the notification
                note["tweet"] = tweets[tweet_id]
            shown.append(note)
        return shown


def _shown(note_id: int, kind: str, sender: str, *, shown_id: str | None = None) -> dict:
    """A notification as the API shows it, but for its tweet; ``shown_id`` stands in for its id."""
    return {"id": str(note_id) if shown_id is None else shown_id, "type": kind, "from": sender,
            "timestamp": id_to_ms(note_id) / 1000}
