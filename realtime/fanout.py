"""Durable fan-out: jobs in a Redis Stream, run by workers of a consumer group.

``FanoutQueue.enqueue`` records a job before the HTTP call answers. A ``FanoutWorker``
reads jobs with ``XREADGROUP``, pushes to (or removes from) every recipient's timelines
in pipelined batches, records its progress after each batch in the same pipeline, and
acknowledges the job at the end. A job whose worker died stays pending; after
``claim_idle`` seconds another worker takes it with ``XAUTOCLAIM`` and resumes from the
recorded progress. The batch that was in flight is re-run with a whole-list dedupe, so
every timeline gets the entry exactly once and every live event goes out once.

Recipients of a post: the author's followers (home), every existing mentioned user
(home and mentions), and each hashtag's timeline. The author's own timelines are
written by the HTTP call itself. A retweet entry goes to the retweeter's followers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

import orjson
from redis.exceptions import ResponseError

from . import keys
from .redis_client import Redis, RedisDown, execute_scripted
from .scripts import SET_IF_GREATER
from .timelines import FULL_DEDUPE, RECENT_DEDUPE_WINDOW, Timelines

__all__ = ["FanoutQueue", "FanoutWorker", "FanoutJob", "AuthorsInFlight"]

log = logging.getLogger("chirp.fanout")

PROGRESS_TTL = 7 * 86400
#: How long a job waits for the same author's previous job to finish before going ahead
#: anyway (that job's worker may have died; it is taken over after FANOUT_CLAIM_IDLE).
ORDER_WAIT = 2.0


class FanoutQueue:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def enqueue(self, kind: str, tweet_id: int, author: str, *, mentions: list[str] | None = None,
                      hashtags: list[str] | None = None) -> str:
        # A per-author sequence number lets workers keep one author's jobs in order.
        seq_key = keys.fanout_author_seq(author)
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(seq_key)
        pipe.expire(seq_key, PROGRESS_TTL)
        seq, _ = await pipe.execute()
        job = {"kind": kind, "id": tweet_id, "author": author, "seq": seq}
        if mentions is not None:
            job["mentions"] = orjson.dumps(mentions).decode()
        if hashtags is not None:
            job["hashtags"] = orjson.dumps(hashtags).decode()
        return await self._redis.xadd(keys.FANOUT_STREAM, job)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(keys.FANOUT_STREAM, keys.FANOUT_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def backlog(self) -> tuple[int, int]:
        """(jobs waiting to be read, jobs read but not yet acknowledged)."""
        try:
            groups = await self._redis.xinfo_groups(keys.FANOUT_STREAM)
        except ResponseError:
            return 0, 0
        for group in groups:
            if group["name"] == keys.FANOUT_GROUP:
                return int(group.get("lag") or 0), int(group["pending"])
        return 0, 0


    async def backlog_with_age(self) -> tuple[int, int, int | None]:
        """(waiting, pending, Unix ms of the oldest job not yet done, or None when idle).

        Done jobs are deleted from the stream, so its first entry is the oldest undone one.
        """
        waiting, pending = await self.backlog()
        oldest = await self._redis.xrange(keys.FANOUT_STREAM, count=1)
        return waiting, pending, int(oldest[0][0].split("-")[0]) if oldest else None


class FanoutJob:
    """One job as read from the stream."""

    def __init__(self, entry_id: str, fields: dict) -> None:
        self.entry_id = entry_id
        self.kind = fields["kind"]
        self.tweet_id = int(fields["id"])
        self.author = fields["author"]
        self.seq = int(fields.get("seq", 0))
        self.mentions: list[str] | None = orjson.loads(fields["mentions"]) if "mentions" in fields else None
        self.hashtags: list[str] | None = orjson.loads(fields["hashtags"]) if "hashtags" in fields else None


class AuthorsInFlight:
    """The jobs each author has running in this process's fan-out workers, by sequence number.

    Several workers of one process take one author's jobs in any order. A job waits for the
    author's earlier job in Redis (the done mark), but only ORDER_WAIT long, because that
    job's worker may be dead. An earlier job running *here* is not dead: it is waited for as
    long as it runs, also while Redis is away, which is when both workers fail and retry.
    A job that failed stays counted until its retry finishes it, or ``hold`` seconds pass
    (by then another process may have taken it over).
    """

    def __init__(self, hold: float) -> None:
        self._hold = hold
        self._running: dict[str, dict[int, float]] = {}  # author -> seq -> when it began

    def begin(self, author: str, seq: int) -> None:
        self._running.setdefault(author, {}).setdefault(seq, time.monotonic())

    def end(self, author: str, seq: int) -> None:
        seqs = self._running.get(author)
        if seqs is not None:
            seqs.pop(seq, None)
            if not seqs:
                del self._running[author]

    def earlier_running(self, author: str, seq: int) -> bool:
        now = time.monotonic()
        return any(other < seq and now - began < self._hold
                   for other, began in self._running.get(author, {}).items())


class FanoutWorker:
    """Runs fan-out jobs until cancelled. Several may run, in any processes."""

    def __init__(self, redis: Redis, blocking_redis: Redis, timelines: Timelines, *,
                 load_tweet: Callable[[int], Awaitable[dict | None]],
                 render_tweet: Callable[[int, dict], Awaitable[str | None]],
                 delete_message: Callable[[int], str],
                 batch_size: int = 1000, batch_pause: float = 0.0, claim_idle: float = 30.0,
                 in_flight: AuthorsInFlight | None = None) -> None:
        self._redis = redis
        self._blocking = blocking_redis
        self._timelines = timelines
        self._load_tweet = load_tweet
        self._render_tweet = render_tweet
        self._delete_message = delete_message
        self.batch_size = batch_size
        self.batch_pause = batch_pause
        self.claim_idle_ms = int(claim_idle * 1000)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.jobs_done = 0
        self.entries_written = 0
        self.reconnects = 0
        self._stopping = False
        self._next_claim_check = 0.0
        self._mark_done = redis.register_script(SET_IF_GREATER)
        # Shared by the workers of one process (Engine.start_fanout_workers).
        self._in_flight = in_flight or AuthorsInFlight(hold=claim_idle)

    def stop(self) -> None:
        """Finish the job in hand and return from ``run`` within about a second.

        Preferred to cancelling: a job stopped between batches needs no takeover, and a
        redis-py blocking read does not always give way to a cancel promptly.
        """
        self._stopping = True

    async def run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                await FanoutQueue(self._redis).ensure_group()
                await self._resume_own_pending()
                while not self._stopping:
                    await self._run_once()
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except RedisDown as exc:
                self.reconnects += 1
                log.warning("fan-out worker %s lost Redis (%s); retrying in %.1fs", self.consumer, exc, backoff)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.exception("fan-out worker %s: unexpected Redis error", self.consumer)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _resume_own_pending(self) -> None:
        """Finish the jobs this worker had read when Redis went away, before any newer job,
        so that an author's jobs still run in order after a blip."""
        while not self._stopping:
            answer = await self._redis.xreadgroup(
                keys.FANOUT_GROUP, self.consumer, {keys.FANOUT_STREAM: "0"}, count=1)
            entries = answer[0][1] if answer else []
            if not entries:
                return
            for entry_id, fields in entries:
                await self._run_entry(entry_id, fields, resumed=True)

    async def _run_once(self) -> None:
        """Resume one abandoned job if there is one, else wait up to 1 s for new jobs.

        Abandoned jobs are looked for at most every ``claim_idle / 2`` (and at most every
        second), not before every read: a job is abandoned only after ``claim_idle``, so
        this adds at most half that to a takeover and saves a round trip per job.
        """
        now = time.monotonic()
        if now >= self._next_claim_check:
            _, claimed, *_ = await self._redis.xautoclaim(
                keys.FANOUT_STREAM, keys.FANOUT_GROUP, self.consumer, self.claim_idle_ms, start_id="0-0", count=1)
            for entry_id, fields in claimed:
                log.info("fan-out worker %s resumes abandoned job %s", self.consumer, entry_id)
                await self._run_entry(entry_id, fields, resumed=True)
            if claimed:
                return  # there may be more: look again at once
            self._next_claim_check = now + min(1.0, self.claim_idle_ms / 2000)
        answer = await self._blocking.xreadgroup(
            keys.FANOUT_GROUP, self.consumer, {keys.FANOUT_STREAM: ">"}, count=1, block=1000)
        for _, entries in answer or []:
            for entry_id, fields in entries:
                await self._run_entry(entry_id, fields, resumed=False)

    async def _run_entry(self, entry_id: str, fields: dict | None, *, resumed: bool) -> None:
        try:
            job = FanoutJob(entry_id, fields) if fields else None
        except (KeyError, ValueError):
            log.error("dropping malformed fan-out job %s: %r", entry_id, fields)
            job = None
        if job is not None:
            self._in_flight.begin(job.author, job.seq)
            await self._wait_for_previous_job_of(job)
            await self.run_job(job, resumed=resumed)
        await self._finish(entry_id, job)
        if job is not None:
            self._in_flight.end(job.author, job.seq)  # not on failure: the retry still comes first

    async def _wait_for_previous_job_of(self, job: FanoutJob) -> None:
        """Keep each author's tweets and deletes in order for every follower.

        Jobs are read one at a time (COUNT 1), so a worker only ever waits for a job that
        entered the stream before its own: there is no cycle to deadlock on.
        """
        if job.seq <= 1:
            return
        deadline = time.monotonic() + ORDER_WAIT
        while time.monotonic() < deadline or self._in_flight.earlier_running(job.author, job.seq):
            done = await self._redis.get(keys.fanout_author_done(job.author))
            if done is not None and int(done) >= job.seq - 1:
                return
            await asyncio.sleep(0.005)  # polling another worker's progress, bounded as the loop says
        log.warning("fan-out job %s (%s #%d) goes ahead of its predecessor after %.1fs",
                    job.entry_id, job.author, job.seq, ORDER_WAIT)

    async def _finish(self, entry_id: str, job: FanoutJob | None) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.xack(keys.FANOUT_STREAM, keys.FANOUT_GROUP, entry_id)
        pipe.xdel(keys.FANOUT_STREAM, entry_id)
        pipe.delete(keys.fanout_progress(entry_id))
        if job is not None and job.seq:
            await self._mark_done(keys=[keys.fanout_author_done(job.author)], args=[job.seq, PROGRESS_TTL],
                                  client=pipe)
        # Without SCRIPT EXISTS: on NOSCRIPT the job is acknowledged before its done-mark is
        # set, and if the re-run is lost the author's next job only waits ORDER_WAIT.
        await execute_scripted(pipe)
        self.jobs_done += 1

    async def run_job(self, job: FanoutJob, *, resumed: bool) -> None:
        if job.kind == "post":
            tweet = await self._load_tweet(job.tweet_id)
            if tweet is None:
                return  # deleted before it was fanned out
            message = await self._render_tweet(job.tweet_id, tweet)
            if message is None:
                return
            if tweet.get("kind") == "tweet":
                job.mentions = [name.lower() for name in orjson.loads(tweet.get("mentions", "[]"))]
                job.hashtags = orjson.loads(tweet.get("hashtags", "[]"))
        elif job.kind == "delete":
            message = self._delete_message(job.tweet_id)
        else:
            log.error("dropping fan-out job %s of unknown kind %r", job.entry_id, job.kind)
            return
        await self._deliver(job, message, resumed=resumed)

    async def _deliver(self, job: FanoutJob, message: str, *, resumed: bool) -> None:
        progress_key = keys.fanout_progress(job.entry_id)
        progress = await self._redis.hgetall(progress_key) if resumed else {}
        # Only the first batch after a takeover can have been half-written before.
        dedupe = FULL_DEDUPE if resumed else RECENT_DEDUPE_WINDOW
        mentions = job.mentions or []
        extras = [key for name in mentions for key in (keys.home_timeline(name), keys.mentions_timeline(name))]
        extras += [keys.hashtag_timeline(tag) for tag in job.hashtags or []]
        if extras and not progress.get("extras"):  # none: no batch, one round trip fewer per job
            await self._write_batch(job, extras, message, dedupe, {"extras": 1})
            dedupe = RECENT_DEDUPE_WINDOW
        skip = set(mentions) | {job.author}  # mentioned users already have it
        # The next page is read while the current batch is written: a read on another
        # connection, so the writes and their progress marks keep their order.
        page = asyncio.ensure_future(self._follower_page(job.author, progress.get("cursor", "")))
        try:
            while True:
                names = await page
                if not names:
                    break
                cursor = names[-1]
                last = len(names) < self.batch_size  # a short page is the end: no read of an empty one
                if not last:
                    page = asyncio.ensure_future(self._follower_page(job.author, cursor))
                targets = [keys.home_timeline(name) for name in names if name not in skip]
                await self._write_batch(job, targets, message, dedupe, {"cursor": cursor})
                dedupe = RECENT_DEDUPE_WINDOW
                if last:
                    break
                if self.batch_pause:
                    await asyncio.sleep(self.batch_pause)
        finally:
            if not page.done():
                page.cancel()
            elif not page.cancelled():
                page.exception()  # a failed read we no longer need is not reported as never retrieved

    async def _follower_page(self, author: str, after: str) -> list[str]:
        low = f"({after}" if after else "-"
        return await self._redis.zrangebylex(keys.followers(author), low, "+", 0, self.batch_size)

    async def _write_batch(self, job: FanoutJob, targets: list[str], message: str, dedupe: int,
                           progress: dict) -> None:
        """Write one batch and, in the same pipeline, the progress mark and a fresh claim.

        Home timelines send ``message`` live as they gain (or lose) the entry: one message
        per server process per batch (see Timelines.queue_push).
        """
        pipe = self._redis.pipeline(transaction=False)
        if targets:
            if job.kind == "post":
                await self._timelines.queue_push(pipe, targets, job.tweet_id, message=message, dedupe_window=dedupe)
            else:
                await self._timelines.queue_remove(pipe, targets, job.tweet_id, message=message)
        progress_key = keys.fanout_progress(job.entry_id)
        pipe.hset(progress_key, mapping=progress)
        pipe.expire(progress_key, PROGRESS_TTL)
        # Resets the job's idle time, so nobody takes over a long fan-out that is alive.
        pipe.xclaim(keys.FANOUT_STREAM, keys.FANOUT_GROUP, self.consumer, 0, [job.entry_id], justid=True)
        await pipe.execute()  # with SCRIPT EXISTS: see execute_scripted for why not here
        self.entries_written += len(targets)
