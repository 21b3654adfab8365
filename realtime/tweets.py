"""Tweets: post, read, delete, like, retweet; and turning timeline ids into tweets.

A tweet lives in the hash ``tweet:{id}``. A retweet is an entry of its own (its own
id, ``kind=retweet``, ``of=<original id>``) so that a timeline entry stays one integer;
it is shown as the original tweet plus ``retweeted_by`` and ``retweet_id``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from . import keys
from .errors import Forbidden, NotFound
from .fanout import FanoutQueue
from .ids import IdGenerator
from .redis_client import Redis
from .scripts import TOGGLE_MEMBER
from .text import clean_content, parse_hashtags, parse_mentions
from .timelines import Timelines
from .users import Users

__all__ = ["Tweets", "parse_tweet_id", "tweet_event", "delete_event"]

MAX_TWEET_ID = (1 << 53) - 1


def parse_tweet_id(raw: object) -> int:
    """A tweet id from a path or query, or 404 (nothing can be found under a non-id)."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 16:
        value = int(raw)
        if 0 < value <= MAX_TWEET_ID:
            return value
    raise NotFound("No such tweet.", code="tweet_not_found")


def tweet_event(tweet: dict) -> str:
    return orjson.dumps({"type": "tweet", "tweet": tweet}).decode()


def delete_event(tweet_id: int) -> str:
    return orjson.dumps({"type": "delete", "id": str(tweet_id)}).decode()


def _render(tweet_id: int, fields: dict) -> dict:
    return {
        "id": str(tweet_id),
        "from": fields["from"],
        "timestamp": float(fields["ts"]),
        "content": fields["content"],
        "likes": max(0, int(fields.get("likes", 0))),
        "retweets": max(0, int(fields.get("retweets", 0))),
        "mentions": orjson.loads(fields.get("mentions", "[]")),
        "hashtags": ["#" + tag for tag in orjson.loads(fields.get("hashtags", "[]"))],
    }


class Tweets:
    def __init__(self, redis: Redis, ids: IdGenerator, users: Users, timelines: Timelines,
                 fanout: FanoutQueue, hashtag_index=None) -> None:
        self._redis = redis
        self._ids = ids
        self._users = users
        self._timelines = timelines
        self._fanout = fanout
        self._hashtag_index = hashtag_index  # realtime.search.HashtagIndex: counts uses
        self._toggle = redis.register_script(TOGGLE_MEMBER)

    # -- writing ---------------------------------------------------------------------

    async def post(self, author: str, content: object) -> int:
        """Store the tweet, put it in the author's timelines and record the fan-out job."""
        text = clean_content(content)
        tweet_id = self._ids.next_id()
        mentioned = await self._users.existing(parse_mentions(text))
        fields = {
            "kind": "tweet", "from": await self._users.require(author), "author": author,
            "ts": repr(time.time()), "content": text, "likes": 0, "retweets": 0,
            "mentions": orjson.dumps(list(mentioned.values())).decode(),
            "hashtags": orjson.dumps(parse_hashtags(text)).decode(),
        }
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(keys.tweet(tweet_id), mapping=fields)
        pipe.hincrby(keys.user(author), "tweets", 1)
        await pipe.execute()
        if self._hashtag_index is not None:
            await self._hashtag_index.record(parse_hashtags(text), tweet_id)
        await self._enter_own_timelines(author, tweet_id, tweet_event(_render(tweet_id, fields)))
        await self._fanout.enqueue("post", tweet_id, author)
        return tweet_id

    async def _enter_own_timelines(self, author: str, tweet_id: int, message: str) -> None:
        await self._timelines.push([keys.user_timeline(author), keys.home_timeline(author)], tweet_id,
                                   message=message)

    async def _leave_own_timelines(self, author: str, tweet_id: int) -> None:
        await self._timelines.remove([keys.user_timeline(author), keys.home_timeline(author)], tweet_id,
                                     message=delete_event(tweet_id))

    async def delete(self, me: str, tweet_id: int) -> None:
        fields = await self._fields(tweet_id)
        if fields["author"] != me:
            raise Forbidden("Only the author can delete a tweet.", code="not_author")
        if fields["kind"] == "retweet":
            await self.unretweet(me, tweet_id)
            return
        retweeters = await self._redis.hgetall(keys.retweets(tweet_id))
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(keys.tweet(tweet_id), keys.likes(tweet_id), keys.retweets(tweet_id))
        pipe.hincrby(keys.user(me), "tweets", -1)
        for retweet_id in retweeters.values():
            pipe.delete(keys.tweet(retweet_id))
        await pipe.execute()
        await self._leave_own_timelines(me, tweet_id)
        await self._fanout.enqueue("delete", tweet_id, me, mentions=list(_lower_names(fields)),
                                   hashtags=orjson.loads(fields["hashtags"]))
        for retweeter, retweet_id in retweeters.items():
            await self._leave_own_timelines(retweeter, int(retweet_id))
            await self._fanout.enqueue("delete", int(retweet_id), retweeter)

    async def like(self, me: str, tweet_id: int, *, liked: bool = True) -> None:
        original = await self._original_id(tweet_id)
        changed = await self._toggle(keys=[keys.tweet(original), keys.likes(original)],
                                     args=["add" if liked else "remove", me, "likes"])
        if changed == -1:
            raise NotFound("No such tweet.", code="tweet_not_found")

    async def retweet(self, me: str, tweet_id: int) -> None:
        original = await self._original_id(tweet_id)
        retweet_id = self._ids.next_id()
        if not await self._redis.hsetnx(keys.retweets(original), me, retweet_id):
            return  # already retweeted: idempotent
        fields = {"kind": "retweet", "of": original, "from": await self._users.require(me), "author": me,
                  "ts": repr(time.time())}
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(keys.tweet(retweet_id), mapping=fields)
        pipe.hincrby(keys.tweet(original), "retweets", 1)
        await pipe.execute()
        shown = await self.render_stored([(retweet_id, fields)])
        if shown:
            await self._enter_own_timelines(me, retweet_id, tweet_event(shown[0]))
        await self._fanout.enqueue("post", retweet_id, me)

    async def unretweet(self, me: str, tweet_id: int) -> None:
        original = await self._original_id(tweet_id)
        retweet_id = await self._redis.hget(keys.retweets(original), me)
        if retweet_id is None or not await self._redis.hdel(keys.retweets(original), me):
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(keys.tweet(retweet_id))
        pipe.hincrby(keys.tweet(original), "retweets", -1)
        await pipe.execute()
        await self._leave_own_timelines(me, int(retweet_id))
        await self._fanout.enqueue("delete", int(retweet_id), me)

    # -- reading ---------------------------------------------------------------------

    async def _fields(self, tweet_id: int) -> dict:
        fields = await self._redis.hgetall(keys.tweet(tweet_id))
        if not fields:
            raise NotFound("No such tweet.", code="tweet_not_found")
        return fields

    async def _original_id(self, tweet_id: int) -> int:
        fields = await self._fields(tweet_id)
        return int(fields["of"]) if fields["kind"] == "retweet" else tweet_id

    async def get(self, tweet_id: int) -> dict:
        shown = await self.hydrate([tweet_id])
        if not shown:
            raise NotFound("No such tweet.", code="tweet_not_found")
        return shown[0]

    async def stored(self, tweet_id: int) -> dict | None:
        """The raw stored fields of a tweet or retweet entry, or None."""
        return await self._redis.hgetall(keys.tweet(tweet_id)) or None

    async def hydrate(self, ids: Sequence[int]) -> list[dict]:
        """The tweets behind timeline ids, in the same order; deleted ones are skipped."""
        pipe = self._redis.pipeline(transaction=False)
        for tweet_id in ids:
            pipe.hgetall(keys.tweet(tweet_id))
        return await self.render_stored(list(zip(ids, await pipe.execute())))

    async def render_stored(self, entries: Sequence[tuple[int, dict]]) -> list[dict]:
        """Tweets from (id, stored fields) pairs already read; only retweets' originals are read."""
        originals = {int(f["of"]) for _, f in entries if f and f.get("kind") == "retweet"}
        original_fields: dict[int, dict] = {}
        if originals:
            pipe = self._redis.pipeline(transaction=False)
            for original in originals:
                pipe.hgetall(keys.tweet(original))
            original_fields = dict(zip(originals, await pipe.execute()))
        shown = []
        for tweet_id, fields in entries:
            if not fields:
                continue
            if fields.get("kind") == "retweet":
                source = original_fields.get(int(fields["of"]))
                if not source:
                    continue
                tweet = _render(int(fields["of"]), source)
                tweet["retweeted_by"] = fields["from"]
                tweet["retweet_id"] = str(tweet_id)
            else:
                tweet = _render(tweet_id, fields)
            shown.append(tweet)
        return shown

    async def page(self, timeline_key: str, *, count: int, before: int | None) -> dict:
        """One page of a timeline: ``{"tweets": [...newest first], "next": id | None}``."""
        candidates = await self._timelines.ids_before(timeline_key, before)
        shown: list[dict] = []
        position = 0
        while len(shown) < count and position < len(candidates):
            chunk = candidates[position: position + count - len(shown)]
            position += len(chunk)
            shown.extend(await self.hydrate(chunk))
        more = position < len(candidates)
        last = shown[-1] if shown else None
        next_id = (last.get("retweet_id") or last["id"]) if (more and last) else None
        return {"tweets": shown, "next": next_id}


def _lower_names(fields: dict) -> list[str]:
    return [name.lower() for name in orjson.loads(fields.get("mentions", "[]"))]
