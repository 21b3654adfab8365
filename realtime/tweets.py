"""Tweets: post, read, delete, like, retweet; and turning timeline ids into tweets.

A tweet lives in the hash ``tweet:{id}``. A retweet is an entry of its own (its own
id, ``kind=retweet``, ``of=<original id>``) so that a timeline entry stays one integer;
it is shown as the original tweet plus ``retweeted_by`` and ``retweet_id``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

import orjson

from . import keys
from .errors import Forbidden, NotFound
from .fanout import Delivery, FanoutJob, FanoutQueue
from .ids import IdGenerator, is_id_text
from .live_protocol import delete_frame, tweet_frame
from .notifications import Notifications
from .watches import CountsPublisher
from .redis_client import Redis, execute_scripted, queue_script
from .scripts import (CLAIM_RETWEET, COUNT_TWEET, CREATE_TWEET, DELETE_TWEET, MARK_COUNTED, RELEASE_RETWEET,
                      TOGGLE_MEMBER, VIEWER_FLAGS)
from .text import clean_content, normalize_username, parse_hashtags, parse_mentions
from .timelines import Timelines
from .users import Users

__all__ = ["Tweets", "parse_tweet_id"]

log = logging.getLogger("chirp.tweets")

MAX_TWEET_ID = (1 << 53) - 1


def parse_tweet_id(raw: object) -> int:
    """A tweet id from a path or query, or 404 (nothing can be found under a non-id)."""
    if is_id_text(raw):
        value = int(raw)
        if 0 < value <= MAX_TWEET_ID:
            return value
    raise NotFound("No such tweet.", code="tweet_not_found")


def _render(tweet_id: int, fields: dict, display_names: dict[str, str | None]) -> dict:
    return {
        "id": str(tweet_id),
        "from": fields["from"],
        "display_name": display_names.get(fields["author"]) or fields["from"],
        "timestamp": float(fields["ts"]),
        "content": fields["content"],
        "likes": max(0, int(fields.get("likes", 0))),
        "retweets": max(0, int(fields.get("retweets", 0))),
        "mentions": orjson.loads(fields.get("mentions", "[]")),
        "hashtags": ["#" + tag for tag in orjson.loads(fields.get("hashtags", "[]"))],
    }


#: What the tweet count remembers of the posts and deletes it took, per author: a re-run
#: comes within the fan-out's claim time (or once Redis is back), far fewer posts than this at
#: the default rate limits. Past either, a crash between a count and its mark counts twice.
COUNTED_KEPT, COUNTED_TTL_MS = 32, 86_400_000
#: A merged page reads this many more of each hot account's entries than it shows: some may
#: have been deleted.
MERGE_MARGIN = 10


class Tweets:
    """Every write goes the same way: record the fan-out job (the one atomic step, the
    source of truth), then apply it here with steps that are safe to redo, which the job's
    worker redoes whatever happened to this call (``apply``). See docs/design.md, "What a 201 promises"."""

    def __init__(self, redis: Redis, ids: IdGenerator, users: Users, timelines: Timelines,
                 fanout: FanoutQueue, hashtag_index=None, notifications: Notifications | None = None,
                 counts: CountsPublisher | None = None) -> None:
        self._redis = redis
        self._notifications = notifications
        self._counts = counts  # live counts to the sockets that watch a tweet
        self._ids = ids
        self._users = users
        self._timelines = timelines
        self._fanout = fanout
        self._hashtag_index = hashtag_index  # realtime.search.HashtagIndex: counts uses
        self._toggle = redis.register_script(TOGGLE_MEMBER)
        self._create = redis.register_script(CREATE_TWEET)
        self._count = redis.register_script(COUNT_TWEET)
        self._mark_counted = redis.register_script(MARK_COUNTED)
        self._tombstone = redis.register_script(DELETE_TWEET)
        self._claim_retweet = redis.register_script(CLAIM_RETWEET)
        self._release_retweet = redis.register_script(RELEASE_RETWEET)
        self._viewer_flags = redis.register_script(VIEWER_FLAGS)
        #: How long a deleted tweet's tombstone stops a late re-run of its post from bringing it back.
        self.tombstone_ttl_ms = int(timelines.max_age * 1000)

    # -- writing ---------------------------------------------------------------------

    async def post(self, author: str, content: object) -> int:
        """Record the tweet's job, then store it and put it in the author's timelines."""
        text = clean_content(content)
        tweet_id = self._ids.next_id()
        mentioned = await self._users.existing(parse_mentions(text))
        fields = {
            "kind": "tweet", "from": await self._users.name_of_author(author), "author": author,
            "ts": repr(time.time()), "content": text, "likes": "0", "retweets": "0",
            "mentions": orjson.dumps(list(mentioned.values())).decode(),
            "hashtags": orjson.dumps(parse_hashtags(text)).decode(),
        }
        await self._record_and_apply("post", tweet_id, author, tweet=orjson.dumps(fields).decode())
        return tweet_id

    async def _record_and_apply(self, kind: str, tweet_id: int, author: str, **job_fields: str) -> None:
        """Once the job is recorded the write will happen: a failure to apply it now is the
        worker's to mend, not the caller's to retry (a retry would post twice)."""
        entry_id = await self._fanout.enqueue(kind, tweet_id, author, **job_fields)
        try:
            await self.apply(FanoutJob(self._fanout.tag_of(author), entry_id,
                                       {"kind": kind, "id": tweet_id, "author": author, **job_fields}),
                             in_request=True)
        except Exception as exc:
            log.warning("%s %s is recorded; its worker will finish applying it (%s: %s)", kind, tweet_id,
                        type(exc).__name__, exc)

    async def apply(self, job: FanoutJob, *, in_request: bool = False) -> Delivery | None:
        """The tweet side of a job, safe to run again and again (realtime.fanout.JobSource).
        ``in_request``: the call that recorded the job, which writes the author's own and the
        hashtags' timelines now (a read right after the 201 sees the tweet) and leaves the work
        that grows with the tweet's retweets to the job's worker; the worker writes them again
        with its first batch."""
        unmarked = False  # the counts were added and their "counted" mark is still to write
        if job.kind == "post":
            delivery, unmarked = await self._apply_post(job.tweet_id, job.author, orjson.loads(job.fields["tweet"]),
                                                        in_request=in_request)
        elif job.kind == "delete" and "of" in job.fields:
            delivery = await self._apply_unretweet(job.tweet_id, job.author, int(job.fields["of"]))
        elif job.kind == "delete":
            delivery = await self._apply_delete(job.tweet_id, job.author, job.fields)
            if not in_request:
                await self._delete_retweets_of(job.tweet_id)
                if self._notifications is not None:
                    await self._notifications.forget_tweet([job.author, *delivery.mentions], job.tweet_id)
        else:
            raise ValueError(f"unknown kind of job {job.kind!r}")
        if in_request and (delivery is not None or unmarked):
            # The hashtags' timelines too: a search for the tag right after the 201 finds it.
            pipe = self._redis.pipeline(transaction=False)
            if delivery is not None:
                queue = self._timelines.queue_push if job.kind == "post" else self._timelines.queue_remove
                await queue(pipe, delivery.own + [keys.hashtag_timeline(tag) for tag in delivery.hashtags],
                            job.tweet_id, message=delivery.message)
            if unmarked:
                await self._queue_mark_counted(pipe, job.tweet_id)
            await execute_scripted(pipe)
        return delivery

    async def _apply_post(self, tweet_id: int, author: str, fields: dict, *,
                          in_request: bool) -> tuple[Delivery | None, bool]:
        """Returns what to deliver, and whether the tweet was counted with its mark left to
        the caller (``in_request``: written with the author's timelines)."""
        if fields["kind"] == "retweet":
            if (await self._redis.hgetall(keys.tweet(tweet_id))).get("deleted"):
                return None, False  # un-retweeted before this (re-)run: not to be counted again
            original = int(fields["of"])
            claim = await self._claim_retweet(keys=[keys.tweet(original), keys.retweets(original)],
                                              args=[author, tweet_id])
            if claim in (-1, 2):
                return None, False  # the original is gone, or the user retweeted it already
            if claim == 1:
                await self._counts_changed(original)
        stored = fields if fields["kind"] == "tweet" else {**fields, "counted": "1"}  # a retweet counts nothing
        if fields["kind"] == "tweet" and in_request:
            created = await self._create_and_count(tweet_id, author, stored)
        else:
            created = await self._create(keys=[keys.tweet(tweet_id)], args=_flat(stored))
            if created in (1, 2) and fields["kind"] == "tweet":  # 2: its creator died before the mark
                await self._count_new(tweet_id, author, fields)
                await self._queue_mark_counted(self._redis, tweet_id)
        if created == -1:
            return None, False  # deleted before this (re-)run
        unmarked = created in (1, 2) and in_request and fields["kind"] == "tweet"
        shown = await self.render_stored([(tweet_id, fields)])
        if not shown:
            return None, unmarked
        if not in_request:  # the job's worker, which always runs, notifies: once, however often it runs
            await self._notify_of_post(author, fields, shown[0])
        own = _own_timelines(author)
        if fields["kind"] != "tweet":
            return Delivery(tweet_frame(shown[0]), own=own), unmarked
        return Delivery(tweet_frame(shown[0]), _lower_names(fields), orjson.loads(fields.get("hashtags", "[]")),
                        own=own), unmarked

    async def _counts_changed(self, tweet_id: int) -> None:
        if self._counts is not None:
            pipe = self._redis.pipeline(transaction=False)
            await self._counts.queue_changed(pipe, tweet_id)
            await self._counts.publish(tweet_id, (await execute_scripted(pipe))[0])

    async def _notify_of_post(self, author: str, fields: dict, shown: dict) -> None:
        """A tweet's mentioned users, or a retweet's original author, are notified."""
        if self._notifications is None:
            return
        pipe, queued = self._redis.pipeline(transaction=False), False
        if fields["kind"] == "retweet":
            original = {key: value for key, value in shown.items() if key not in ("retweeted_by", "retweet_id")}
            queued = await self._notifications.queue_notify(pipe, normalize_username(original["from"]), "retweet",
                                                            fields["from"], original)
        else:
            for name in _lower_names(fields):
                queued |= await self._notifications.queue_notify(pipe, name, "mention", fields["from"], shown)
        if queued:
            await execute_scripted(pipe)

    async def _create_and_count(self, tweet_id: int, author: str, stored: dict) -> int:
        """The request's CREATE_TWEET and counts in one round trip: the counts go whatever
        the create answers, which only their guards make right. The id is new, so a create
        that finds the tweet (0, 2) or its tombstone (-1) was beaten by the job's worker
        moments ago, within the guards' memory: a count it made is not made again, and one
        it had not made yet is owed (a delete's ``-id`` is a member of its own)."""
        pipe = self._redis.pipeline(transaction=False)
        await queue_script(pipe, self._create, [keys.tweet(tweet_id)], _flat(stored))
        await self._queue_counts(pipe, tweet_id, author, stored)
        return (await execute_scripted(pipe))[0]

    async def _count_new(self, tweet_id: int, author: str, fields: dict) -> None:
        """The author's tweet count and the hashtags' uses. Each count remembers the tweets
        it took, so a re-run after a crash before the mark (``MARK_COUNTED``, written once
        this has returned) adds nothing twice."""
        pipe = self._redis.pipeline(transaction=False)
        await self._queue_counts(pipe, tweet_id, author, fields)
        await execute_scripted(pipe)

    async def _queue_counts(self, pipe, tweet_id: int, author: str, fields: dict) -> None:
        await self._count_change(pipe, author, tweet_id, +1)
        if self._hashtag_index is not None:
            tags = orjson.loads(fields.get("hashtags", "[]"))
            await self._hashtag_index.queue_record(pipe, [(tag, 1, tweet_id) for tag in tags], tweet_id=tweet_id)

    async def _queue_mark_counted(self, client, tweet_id: int) -> None:
        """On ``client``: a pipeline (queued there) or the Redis client (now)."""
        await queue_script(client, self._mark_counted, [keys.tweet(tweet_id)], [])

    async def _count_change(self, client, author: str, tweet_id: int, increment: int) -> None:
        """Add ``increment`` to the author's tweet count once for this tweet, on ``client``: a
        pipeline (queued there) or the Redis client (now)."""
        member = f"{'+' if increment > 0 else '-'}{tweet_id}"
        await queue_script(client, self._count, [keys.user(author), keys.counted_tweets(author)],
                           [member, tweet_id, increment, COUNTED_KEPT, COUNTED_TTL_MS])

    async def _apply_delete(self, tweet_id: int, author: str, job_fields: dict) -> Delivery:
        await self._bury(tweet_id)
        await self._count_change(self._redis, author, tweet_id, -1)  # once, whichever run gets here first
        return Delivery(delete_frame(tweet_id), orjson.loads(job_fields.get("mentions", "[]")),
                        orjson.loads(job_fields.get("hashtags", "[]")), own=_own_timelines(author))

    async def _bury(self, tweet_id: int) -> None:
        """Replace the tweet by its tombstone (once: a tombstone stays as it is)."""
        await self._tombstone(keys=[keys.tweet(tweet_id), keys.likes(tweet_id), keys.retweets(tweet_id)],
                              args=[self.tombstone_ttl_ms])

    async def _delete_retweets_of(self, tweet_id: int) -> None:
        """Each retweet of a deleted tweet leaves as a job of its own (in its retweeter's order)."""
        for retweeter, retweet_id in (await self._redis.hgetall(keys.retweets(tweet_id))).items():
            await self._fanout.enqueue("delete", int(retweet_id), retweeter, of=str(tweet_id))

    async def _apply_unretweet(self, retweet_id: int, retweeter: str, original: int) -> Delivery:
        if await self._release_retweet(keys=[keys.tweet(original), keys.retweets(original)],
                                       args=[retweeter, retweet_id]) == 1:
            await self._counts_changed(original)
        await self._bury(retweet_id)
        return Delivery(delete_frame(retweet_id), own=_own_timelines(retweeter))

    async def delete(self, me: str, tweet_id: int) -> None:
        fields = await self._fields(tweet_id)
        if fields["author"] != me:
            raise Forbidden("Only the author can delete a tweet.", code="not_author")
        if fields["kind"] == "retweet":
            await self.unretweet(me, tweet_id)
            return
        await self._record_and_apply("delete", tweet_id, me, mentions=orjson.dumps(_lower_names(fields)).decode(),
                                     hashtags=fields.get("hashtags", "[]"))

    async def like(self, me: str, tweet_id: int, *, liked: bool = True) -> None:
        original, fields = await self._original(tweet_id)
        pipe = self._redis.pipeline(transaction=False)  # one round trip: both in the tweet's slot
        await queue_script(pipe, self._toggle, [keys.tweet(original), keys.likes(original)],
                           ["add" if liked else "remove", me, "likes"])
        if self._counts is not None:
            await self._counts.queue_changed(pipe, original)
        changed, *counts = await execute_scripted(pipe)
        if changed == -1:
            raise NotFound("No such tweet.", code="tweet_not_found")
        if counts:  # sent even when this call changed nothing: a watcher then hears the counts as they are
            await self._counts.publish(original, counts[0])
        if liked and self._notifications is not None:  # liked before too: a retry mends a lost one
            shown = await self.render_stored([(original, fields)])
            if shown:
                await self._notifications.notify(fields["author"], "like", await self._users.name_of_author(me),
                                                 shown[0])

    async def retweet(self, me: str, tweet_id: int) -> None:
        original = await self._original_id(tweet_id)
        if await self._redis.hexists(keys.retweets(original), me):
            return  # already retweeted: idempotent
        retweet_id = self._ids.next_id()
        fields = {"kind": "retweet", "of": str(original), "from": await self._users.name_of_author(me), "author": me,
                  "ts": repr(time.time())}
        await self._record_and_apply("post", retweet_id, me, tweet=orjson.dumps(fields).decode())

    async def unretweet(self, me: str, tweet_id: int) -> None:
        original = await self._original_id(tweet_id)
        retweet_id = await self._redis.hget(keys.retweets(original), me)
        if retweet_id is None:
            return
        await self._record_and_apply("delete", int(retweet_id), me, of=str(original))

    # -- reading ---------------------------------------------------------------------

    async def _fields(self, tweet_id: int) -> dict:
        fields = await self._redis.hgetall(keys.tweet(tweet_id))
        if not fields or "deleted" in fields:
            raise NotFound("No such tweet.", code="tweet_not_found")
        return fields

    async def _original_id(self, tweet_id: int) -> int:
        fields = await self._fields(tweet_id)
        return int(fields["of"]) if fields["kind"] == "retweet" else tweet_id

    async def _original(self, tweet_id: int) -> tuple[int, dict]:
        """The id and fields of the tweet itself, or of the original of a retweet entry."""
        fields = await self._fields(tweet_id)
        if fields["kind"] != "retweet":
            return tweet_id, fields
        return int(fields["of"]), await self._fields(int(fields["of"]))

    async def get(self, tweet_id: int, *, viewer: str | None = None) -> dict:
        shown = await self.hydrate([tweet_id], viewer=viewer)
        if not shown:
            raise NotFound("No such tweet.", code="tweet_not_found")
        return shown[0]

    async def hydrate(self, ids: Sequence[int], *, viewer: str | None = None) -> list[dict]:
        """The tweets behind timeline ids, in the same order; deleted ones are skipped."""
        pipe = self._redis.pipeline(transaction=False)
        for tweet_id in ids:
            pipe.hgetall(keys.tweet(tweet_id))
        return await self.render_stored(list(zip(ids, await pipe.execute())), viewer=viewer)

    async def render_stored(self, entries: Sequence[tuple[int, dict]], *, viewer: str | None = None) -> list[dict]:
        """Tweets from (id, stored fields) pairs already read, each with its author's display
        name as it is now (within ``users.DISPLAY_NAMES_TTL``: names are remembered a few seconds)
        and, for a ``viewer`` (a lowercase username), whether they liked and retweeted it. One
        more round trip reads all of that and retweets' originals; a third, only when an
        original's author's name was neither remembered nor among the others, that name."""
        entries = [(tweet_id, fields) for tweet_id, fields in entries if fields and "deleted" not in fields]
        if not entries:
            return []
        originals = list({int(f["of"]) for _, f in entries if f.get("kind") == "retweet"})
        shown_ids = list(dict.fromkeys(int(f["of"]) if f.get("kind") == "retweet" else tweet_id
                                       for tweet_id, f in entries))
        pipe = self._redis.pipeline(transaction=False)
        for original in originals:
            pipe.hgetall(keys.tweet(original))
        display_names, authors = self._users.queue_display_names(
            pipe, {f["author"] for _, f in entries if f.get("kind") != "retweet"})
        one_node = not self._timelines.cluster
        if viewer is not None and one_node:  # one call for every flag, not two commands a tweet
            await queue_script(pipe, self._viewer_flags, [*map(keys.likes, shown_ids), *map(keys.retweets, shown_ids)],
                               [viewer])
        elif viewer is not None:  # each tweet's keys in a slot of its own
            for tweet_id in shown_ids:
                pipe.sismember(keys.likes(tweet_id), viewer)
                pipe.hexists(keys.retweets(tweet_id), viewer)
        answers = iter(await (execute_scripted(pipe) if one_node else pipe.execute()))
        original_fields = {original: next(answers) for original in originals}
        display_names.update(self._users.take_display_names(authors, [next(answers) for _ in authors]))
        flags = {}
        if viewer is not None:
            answered = iter(next(answers)) if one_node else answers
            flags = {tweet_id: (bool(next(answered)), bool(next(answered))) for tweet_id in shown_ids}
        await self._read_display_names(display_names, original_fields.values())
        shown = []
        for tweet_id, fields in entries:
            if fields.get("kind") == "retweet":
                source = original_fields.get(int(fields["of"]))
                if not source or "deleted" in source:
                    continue
                tweet = _render(int(fields["of"]), source, display_names)
                tweet["retweeted_by"] = fields["from"]
                tweet["retweet_id"] = str(tweet_id)
            else:
                tweet = _render(tweet_id, fields, display_names)
            if viewer is not None:
                tweet["liked"], tweet["retweeted"] = flags[int(tweet["id"])]
            shown.append(tweet)
        return shown

    async def _read_display_names(self, display_names: dict[str, str | None], more: Iterable[dict]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        known, missing = self._users.queue_display_names(
            pipe, {f["author"] for f in more if f and "deleted" not in f} - display_names.keys())
        display_names.update(known)
        if missing:
            display_names.update(self._users.take_display_names(missing, await pipe.execute()))

    async def page(self, timeline_key: str, *, count: int, before: int | None, viewer: str | None = None,
                   merged: dict[str, int] | None = None) -> dict:
        """One page of a timeline: ``{"tweets": [...newest first], "next": id | None}``.
        ``merged``: the hot accounts whose user timelines are merged in (a home timeline,
        realtime.hot_fanout), each with its first entry to merge."""
        unread = False
        if merged:
            candidates, unread = await self._timelines.merged_ids_before(timeline_key, merged, before,
                                                                         want=count + MERGE_MARGIN)
        else:
            candidates = await self._timelines.ids_before(timeline_key, before)
        shown: list[dict] = []
        position = 0
        while len(shown) < count and position < len(candidates):
            chunk = candidates[position: position + count - len(shown)]
            position += len(chunk)
            shown.extend(await self.hydrate(chunk, viewer=viewer))
        more = position < len(candidates) or (unread and len(shown) >= count)
        last = shown[-1] if shown else None
        next_id = (last.get("retweet_id") or last["id"]) if (more and last) else None
        return {"tweets": shown, "next": next_id}


def _own_timelines(author: str) -> list[str]:
    return [keys.user_timeline(author), keys.home_timeline(author)]


def _flat(fields: dict) -> list[str]:
    return [str(item) for pair in fields.items() for item in pair]


def _lower_names(fields: dict) -> list[str]:
    return [name.lower() for name in orjson.loads(fields.get("mentions", "[]"))]
