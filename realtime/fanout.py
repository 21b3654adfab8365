"""Durable fan-out: jobs in sharded Redis Streams, run by workers of a consumer group.

A job is the source of truth of a post, a retweet or a delete: ``FanoutQueue.enqueue``
records it in one atomic step (one Lua call, in the shard's slot) before the HTTP call
answers, and everything else is derived from it by steps that are safe to redo (see
``JobSource``). The stream is split into ``shards`` hash-tagged streams (spread over a
cluster's masters); an author's jobs all go to the shard of the author's name.

A ``FanoutWorker`` reads its shards with ``XREADGROUP``, pushes to (or removes from) every
recipient's timelines in pipelined batches, records its progress once each batch has
landed, and finishes the job (acknowledge, delete, forget) in one Lua call. A job
whose worker died stays pending; after ``claim_idle`` seconds another worker takes it
with ``XAUTOCLAIM`` and resumes from the recorded progress. The batch that was in flight
is re-run with a whole-list dedupe, so every timeline gets the entry exactly once and
every live event goes out once.

A job's first run writes its follower batches with no dedupe at all (the look for the id
near each list's head is the push's largest cost): only its own worker can have written
them, as long as nobody took the job over. The worker makes sure of that: before each such
batch it has confirmed, within ``claim_idle / 3``, in one atomic step with the reset of the
job's idle time, that the job is still pending with it (``CONFIRM_JOB``; the read that delivered the job
counts as the first, since a delivery resets the idle time too); a takeover needs
``claim_idle`` of silence, and a batch's write gives up well within the rest (2 s timeouts,
2 quick retries). A worker that finds the job taken stops it, writing nothing more. What is
left is a write delayed past the claim by a stalled process or a partitioned network,
counted in ``chirp_fanout_fence_overruns`` when it lands.

Order per author: each job names the author's previous job not yet done (``after``). A
worker runs a job only once that one is gone from the stream: it waits for it while it
runs somewhere, and takes it over (runs it first) once its worker has been silent for
``claim_idle``. So a worker killed mid-job delays the author's later jobs; it never lets
them overtake.

A job that fails ``MAX_ATTEMPTS`` times for a reason other than Redis being unavailable
moves to the shard's dead-letter stream with its error (logged and counted) instead of
killing worker after worker.

Recipients of a post: the author's followers (home), every existing mentioned user
(home and mentions), and each hashtag's timeline. A retweet entry goes to the
retweeter's followers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from redis.exceptions import ResponseError

from . import keys, metrics
from .hot_fanout import HotFanout
from .progress import AwaitableCount
from .redis_client import Redis, ReplicaAcks, execute_scripted, is_redirect, is_transient, queue_script
from .scripts import CONFIRM_JOB, ENQUEUE_JOB, FINISH_JOB
from .timelines import FULL_DEDUPE, NO_DEDUPE, RECENT_DEDUPE_WINDOW, FollowerExpiries, Timelines

__all__ = ["FanoutQueue", "FanoutWorker", "FanoutJob", "Delivery", "JobSource", "JobsInFlight", "MAX_ATTEMPTS",
           "shards_per_worker"]

log = logging.getLogger("chirp.fanout")

PROGRESS_TTL = 7 * 86400
#: Runs of a job that may fail (other than for Redis being away) before it is dead-lettered.
MAX_ATTEMPTS = 3
DEAD_LETTER_CAP = 10_000
#: How long a job's record mark stays (keys.fanout_recorded): longer than any resend of the
#: record takes (redis-py's retries, a cluster redirect: seconds), short enough to cost little
#: (~100 bytes per post: 2 MB at 200 posts/s).
RECORDED_TTL_MS = 120_000
#: The longest pause between retries while Redis is away: a cluster failover takes a few
#: seconds, and work should resume within a second of it.
MAX_BACKOFF = 1.0


@dataclasses.dataclass
class Delivery:
    """What a job sends to its recipients, once its source has applied it."""

    message: str  # the live event
    mentions: list[str] = dataclasses.field(default_factory=list)  # lowercase names
    hashtags: list[str] = dataclasses.field(default_factory=list)
    #: The author's own timelines, written again with the job's first batch (no round trip of
    #: their own): the request that recorded the job may have died before writing them.
    own: list[str] = dataclasses.field(default_factory=list)


class Writes(NamedTuple):
    """Timelines written in one script call of a batch, and how."""

    targets: list[str]
    dedupe: int  # the dedupe window (realtime.timelines)
    refresh_ttl: bool = True  # False: lists that exist keep their TTL (realtime.timelines.FollowerExpiries)


class JobSource(Protocol):
    """The tweets side of a job (realtime.tweets.Tweets): apply it to the tweet and the
    author's own timelines, idempotently, and say what goes to the recipients (None: nothing,
    for example a post deleted before it was fanned out)."""

    async def apply(self, job: FanoutJob) -> Delivery | None: ...


class FanoutQueue:
    """Records jobs. On Redis Cluster with ``replica_ack_timeout``, a job is recorded only
    once a replica of its shard's master has it too (``WAIT 1``, on the connection that
    wrote it) or the timeout has passed: replication is asynchronous, and a master that dies
    before it replicates takes its last writes with it."""

    def __init__(self, redis: Redis, shards: int = 1, *, acks: ReplicaAcks | None = None,
                 writes: Redis | None = None) -> None:
        self._redis = redis
        self.shards = shards
        self.tags = keys.fanout_shard_tags(shards)
        # A record sent again (its reply lost) finds its mark and records nothing (ENQUEUE_JOB),
        # whoever sends it again: redis-py's retries, or the cluster client after a redirect.
        # On ``writes`` when given, a client that never sends a command again by itself.
        self._enqueue = (writes or redis).register_script(ENQUEUE_JOB)
        self._acks = acks

    def tag_of(self, author: str) -> str:
        return keys.fanout_tag_of(author, self.shards)

    async def enqueue(self, kind: str, tweet_id: int, author: str, **fields: str) -> str:
        """Record a job; answers its stream id. ``fields``: what the job needs to redo its work."""
        tag = self.tag_of(author)
        pairs = ["kind", kind, "id", tweet_id, "author", author]
        for name, value in fields.items():
            pairs += [name, value]
        call_keys = [keys.fanout_stream(tag), keys.fanout_last_job(tag), keys.fanout_recorded(tag, kind, tweet_id)]
        args = [author, RECORDED_TTL_MS, *pairs]
        if self._acks is not None:
            master = self._acks.master_of(call_keys[0])
            pipe = self._acks.pipeline(master)
            await queue_script(pipe, self._enqueue, call_keys, args)
            try:
                (entry_id,), replicas = await self._acks.execute(pipe, master)
            except ResponseError as exc:
                if not is_redirect(exc):
                    raise
            else:
                if replicas == 0:
                    _no_replica_ack(f"job {entry_id}", self._acks.timeout_ms)
                return entry_id
        return await self._enqueue(keys=call_keys, args=args)

    async def ensure_groups(self) -> None:
        await ensure_groups(self._redis, self.tags)

    async def backlog(self) -> tuple[int, int]:
        """(jobs waiting to be read, jobs read but not yet done), over every shard."""
        waiting = pending = 0
        for tag in self.tags:
            try:
                groups = await self._redis.xinfo_groups(keys.fanout_stream(tag))
            except ResponseError:
                continue
            for group in groups:
                if group["name"] == keys.FANOUT_GROUP:
                    waiting += int(group.get("lag") or 0)
                    pending += int(group["pending"])
        return waiting, pending

    async def backlog_with_age(self) -> tuple[int, int, int | None]:
        """(waiting, pending, Unix ms of the oldest job not yet done, or None when idle).

        Done jobs are deleted from the streams, so each one's first entry is its oldest undone one.
        """
        waiting, pending = await self.backlog()
        oldest = None
        for tag in self.tags:
            first = await self._redis.xrange(keys.fanout_stream(tag), count=1)
            if first:
                at = int(first[0][0].split("-")[0])
                oldest = at if oldest is None else min(oldest, at)
        return waiting, pending, oldest


async def ensure_groups(redis: Redis, tags) -> None:
    """Create each shard's stream and consumer group unless they exist (Redis may have restarted empty)."""
    for tag in tags:
        try:
            await redis.xgroup_create(keys.fanout_stream(tag), keys.FANOUT_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _no_replica_ack(what: str, timeout_ms: int) -> None:
    metrics.REPLICA_ACK_TIMEOUTS.inc()
    log.warning("%s: no replica acknowledged it within %d ms", what, timeout_ms)


def shards_per_worker(tags: Sequence[str], count: int) -> list[list[str]]:
    """The shards each of ``count`` workers reads: every shard has a worker, and the shards
    share them evenly (more workers than shards: several read the same shard)."""
    tags = list(tags)
    if count >= len(tags):
        return [[tags[number % len(tags)]] for number in range(count)]
    return [tags[number::count] for number in range(count)] if count else []


class FanoutJob:
    """One job as read from the stream."""

    def __init__(self, tag: str, entry_id: str, fields: dict, *, confirmed_at: float = float("-inf")) -> None:
        self.tag = tag
        self.entry_id = entry_id
        self.kind = fields["kind"]
        self.tweet_id = int(fields["id"])
        self.author = fields["author"]
        self.after = fields.get("after", "")
        self.fields = fields  # the rest is the job source's (realtime.tweets)
        self.confirmed_at = confirmed_at  # when this worker last made sure the job was its own (monotonic)

    @property
    def stream(self) -> str:
        return keys.fanout_stream(self.tag)

    @property
    def progress_key(self) -> str:
        return keys.fanout_progress(self.tag, self.entry_id)


class JobsInFlight:
    """The jobs running in this process's workers, so that a job waiting for its author's
    previous one waits on an event when that one runs here, instead of asking Redis."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Event] = {}

    def begin(self, entry_id: str) -> None:
        self._running.setdefault(entry_id, asyncio.Event())

    def end(self, entry_id: str) -> None:
        done = self._running.pop(entry_id, None)
        if done is not None:
            done.set()

    def get(self, entry_id: str) -> asyncio.Event | None:
        return self._running.get(entry_id)


class _JobFailed(Exception):
    """A job raised; it stays pending and is retried (or dead-lettered) by the worker loop."""


class _JobLost(Exception):
    """Another worker took the job over (this one was silent for ``claim_idle``): it is
    theirs now, and this worker writes nothing more of it."""


class FanoutWorker:
    """Runs fan-out jobs of some shards until stopped. Several may run, in any processes."""

    def __init__(self, redis: Redis, blocking_redis: Redis, timelines: Timelines, source: JobSource, *,
                 tags: list[str], cluster: bool = False, batch_size: int = 1000, batch_pause: float = 0.0,
                 claim_idle: float = 30.0, in_flight: JobsInFlight | None = None,
                 acks: ReplicaAcks | None = None, hot: HotFanout | None = None,
                 expiries: FollowerExpiries | None = None, writes: Redis | None = None) -> None:
        self._redis = redis
        # The timeline writes' client, when not ``redis``: one that never sends a command again
        # by itself, as a batch written with no dedupe must not be (Engine.open).
        self._writes = writes or redis
        self._hot = hot if hot is not None and hot.enabled else None  # hybrid fan-out (realtime.hot_fanout)
        self._acks = acks
        self._blocking = blocking_redis
        self._timelines = timelines
        self._expiries = expiries if expiries is not None else FollowerExpiries(timelines.max_age)
        self._source = source
        self.tags = list(tags)
        self._cluster = cluster
        self.batch_size = batch_size
        self.batch_pause = batch_pause
        self.claim_idle_ms = int(claim_idle * 1000)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.finished_jobs = AwaitableCount()  # await worker.finished_jobs.reached(n)
        self.entries_written = 0
        self.reconnects = 0
        self._stopping = False
        #: True while the worker waits in its blocking read with no job in hand: a cancel
        #: then loses nothing (an entry read as it lands is taken over, as after a crash).
        self.waiting_for_jobs = False
        self._next_claim_check = 0.0
        self._finish_job = redis.register_script(FINISH_JOB)
        self._confirm_job = redis.register_script(CONFIRM_JOB)
        #: How long a confirmation that the job is ours lets batches go without a dedupe.
        self.fence = claim_idle / 3
        self._in_flight = in_flight or JobsInFlight()  # shared by the workers of one process

    def stop(self) -> None:
        """Finish the job in hand and return from ``run`` within about a second.

        Preferred to cancelling a worker in a job: a job stopped between batches needs no
        takeover. One waiting for jobs (``waiting_for_jobs``) the engine cancels at once.
        """
        self._stopping = True

    async def run(self) -> None:
        """The worker's supervised loop: every failure is logged and counted, and the loop
        backs off and goes on (a failed job stays pending and is retried first)."""
        backoff, outage = 0.1, 0
        while not self._stopping:
            try:
                await ensure_groups(self._redis, self.tags)
                await self._resume_own_pending()
                if outage:
                    log.info("fan-out worker %s: Redis is back after %d failed attempts", self.consumer, outage)
                    outage = 0
                while not self._stopping:
                    await self._run_once()
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except _JobFailed as exc:
                log.error("fan-out worker %s: %s; retrying in %.1fs", self.consumer, exc, backoff)
            except _JobLost as exc:
                metrics.FANOUT_JOBS_LOST.inc()
                log.warning("fan-out worker %s: %s; going on with the next", self.consumer, exc)
            except Exception as exc:
                self.reconnects += 1
                metrics.LOOP_FAILURES.labels("fanout-worker").inc()
                if is_transient(exc):
                    self._expiries.forget()  # a restart or failover may have lost the TTLs it set
                    outage += 1
                    if outage & (outage - 1) == 0:  # the 1st, 2nd, 4th, 8th... attempt: a line, not a flood
                        log.warning("fan-out worker %s: Redis unavailable (%s); retrying every %.1fs at most",
                                    self.consumer, exc, MAX_BACKOFF)
                elif not (isinstance(exc, ResponseError) and "NOGROUP" in str(exc)):
                    log.exception("fan-out worker %s failed; retrying in %.1fs", self.consumer, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _resume_own_pending(self) -> None:
        """Finish the jobs this worker had read when it last failed, before any newer job,
        so that an author's jobs still run in order after a blip."""
        for tag in self.tags:
            while not self._stopping:
                answer = await self._redis.xreadgroup(
                    keys.FANOUT_GROUP, self.consumer, {keys.fanout_stream(tag): "0"}, count=1)
                entries = answer[0][1] if answer else []
                if not entries:
                    break
                for entry_id, fields in entries:
                    await self._run_entry(tag, entry_id, fields, resumed=True)

    async def _run_once(self) -> None:
        """Resume one abandoned job if there is one, else wait up to 1 s for new jobs.

        Abandoned jobs are looked for at most every ``claim_idle / 2`` (and at most every
        second), not before every read: a job is abandoned only after ``claim_idle``, so
        this adds at most half that to a takeover and saves a round trip per job.
        """
        now = time.monotonic()
        if now >= self._next_claim_check:
            claimed_any = False
            for tag in self.tags:
                _, claimed, *_ = await self._redis.xautoclaim(
                    keys.fanout_stream(tag), keys.FANOUT_GROUP, self.consumer, self.claim_idle_ms,
                    start_id="0-0", count=1)
                for entry_id, fields in claimed:
                    log.info("fan-out worker %s resumes abandoned job %s", self.consumer, entry_id)
                    await self._run_entry(tag, entry_id, fields, resumed=True)
                    claimed_any = True
            if claimed_any:
                return  # there may be more: look again at once
            self._next_claim_check = now + min(1.0, self.claim_idle_ms / 2000)
        # One blocking read for every shard where a read may span keys (one Redis); on a
        # cluster a read stays in one slot, so the shards are read in turn.
        groups = [self.tags] if not self._cluster else [[tag] for tag in self.tags]
        block = max(10, 1000 // len(groups))
        for group in groups:
            # A new entry's delivery resets its idle time: reading it is a first confirmation
            # that the job is this worker's (later than this, so the fence errs early).
            read_at = time.monotonic()
            self.waiting_for_jobs = True
            try:
                answer = await self._blocking.xreadgroup(
                    keys.FANOUT_GROUP, self.consumer, {keys.fanout_stream(tag): ">" for tag in group}, count=1,
                    block=block)
            finally:
                self.waiting_for_jobs = False
            for stream, entries in answer or []:
                tag = _tag_of_stream(stream)
                for entry_id, fields in entries:
                    await self._run_entry(tag, entry_id, fields, resumed=False, read_at=read_at)

    async def _run_entry(self, tag: str, entry_id: str, fields: dict | None, *, resumed: bool,
                         read_at: float = float("-inf")) -> None:
        try:
            job = FanoutJob(tag, entry_id, fields, confirmed_at=read_at) if fields else None
        except (KeyError, ValueError):
            log.error("fan-out job %s is malformed: %r", entry_id, fields)
            await self._finish(tag, entry_id, None, error="malformed job")
            return
        if job is None:  # deleted from the stream while pending: nothing left to do
            await self._finish(tag, entry_id, None)
            return
        self._in_flight.begin(entry_id)
        try:
            await self._wait_for_previous_job_of(job)
            await self._run_counted(job, resumed=resumed)
            await self._finish(tag, entry_id, job)
        finally:
            self._in_flight.end(entry_id)  # a waiter then looks in Redis: a failed job is still there

    async def _run_counted(self, job: FanoutJob, *, resumed: bool) -> None:
        """Run the job; a failure that is not Redis being away counts against it, and the
        last allowed one sends it to the dead letters."""
        try:
            await self.run_job(job, resumed=resumed)
        except (asyncio.CancelledError, _JobLost):
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            failures = await self._redis.hincrby(job.progress_key, "failures", 1)
            await self._redis.expire(job.progress_key, PROGRESS_TTL)
            error = f"{type(exc).__name__}: {exc}"
            if failures < MAX_ATTEMPTS:
                log.warning("fan-out job %s (%s by %s) failed (%d of %d): %s", job.entry_id, job.kind, job.author,
                            failures, MAX_ATTEMPTS, error)
                raise _JobFailed(f"job {job.entry_id} failed: {error}") from exc
            log.error("fan-out job %s (%s by %s) failed %d times; moved to the dead letters: %s", job.entry_id,
                      job.kind, job.author, failures, error, exc_info=exc)
            metrics.FANOUT_DEAD_LETTERS.inc()
            await self._finish(job.tag, job.entry_id, job, error=error[:1000])
            raise _JobFailed(f"job {job.entry_id} dead-lettered") from exc

    async def _wait_for_previous_job_of(self, job: FanoutJob) -> None:
        """Keep each author's tweets and deletes in order for every follower: run a job only
        once the author's previous job is done, taking that one over if its worker died.

        Jobs are read one at a time (COUNT 1) in stream order, so a job only ever waits for
        one that entered the stream before it: there is no cycle to deadlock on.
        """
        if not job.after:
            return
        pause, refreshed = 0.002, time.monotonic()
        while not self._stopping:
            if not await self._redis.xrange(job.stream, job.after, job.after):
                return  # done
            running_here = self._in_flight.get(job.after)
            if running_here is not None:
                await running_here.wait()
                continue
            abandoned = await self._redis.xpending_range(job.stream, keys.FANOUT_GROUP, min=job.after,
                                                         max=job.after, count=1, idle=self.claim_idle_ms)
            if abandoned:
                claimed = await self._redis.xclaim(job.stream, keys.FANOUT_GROUP, self.consumer, self.claim_idle_ms,
                                                   [job.after])
                for entry_id, fields in claimed:
                    log.info("fan-out job %s takes over its predecessor %s first", job.entry_id, entry_id)
                    await self._run_entry(job.tag, entry_id, fields, resumed=True)
                continue
            # Running in another process: poll its progress, and keep our own claim fresh
            # meanwhile so that nobody takes this job over while it waits.
            if time.monotonic() - refreshed > self.claim_idle_ms / 3000:
                await self.confirm(job)
                refreshed = time.monotonic()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def confirm(self, job: FanoutJob, progress: dict | None = None) -> None:
        """Make sure ``job`` is still ours and reset its idle time, writing ``progress`` with it;
        raises _JobLost when another worker has taken it over."""
        args = [keys.FANOUT_GROUP, job.entry_id, self.consumer, PROGRESS_TTL]
        for field, value in (progress or {}).items():
            args += [field, value]
        asked_at = time.monotonic()  # before the call: the idle time is reset later than this
        if not await self._confirm_job(keys=[job.stream, job.progress_key], args=args):
            raise _JobLost(f"job {job.entry_id} ({job.kind} by {job.author}) was taken over by another worker")
        job.confirmed_at = asked_at

    async def finish(self, job: FanoutJob) -> None:
        """Acknowledge and forget ``job`` (done)."""
        await self._finish(job.tag, job.entry_id, job)

    async def _finish(self, tag: str, entry_id: str, job: FanoutJob | None, *, error: str = "") -> None:
        await self._finish_job(
            keys=[keys.fanout_stream(tag), keys.fanout_last_job(tag), keys.fanout_progress(tag, entry_id),
                  keys.fanout_dead_letters(tag)],
            args=[keys.FANOUT_GROUP, entry_id, job.author if job else "", error, DEAD_LETTER_CAP])
        self.finished_jobs.add()

    async def run_job(self, job: FanoutJob, *, resumed: bool) -> None:
        delivery = await self._source.apply(job)
        if delivery is not None:
            await self._deliver(job, delivery, resumed=resumed)

    async def _deliver(self, job: FanoutJob, delivery: Delivery, *, resumed: bool) -> None:
        progress = await self._redis.hgetall(job.progress_key) if resumed else {}
        hot = self._hot is not None and await self._is_hot(job, progress, resumed=resumed)
        # The author's own timelines and the extras were written by the request too, and any
        # batch by a worker that died mid-job: those look for the id first. Other batches
        # cannot hold it yet (see the module's docstring).
        dedupe = FULL_DEDUPE if resumed else RECENT_DEDUPE_WINDOW
        followers_dedupe = FULL_DEDUPE if resumed else NO_DEDUPE
        mentions = [name for name in delivery.mentions if name != job.author]
        extras = [key for name in mentions for key in (keys.home_timeline(name), keys.mentions_timeline(name))]
        extras += [keys.hashtag_timeline(tag) for tag in delivery.hashtags]
        own = list(delivery.own)  # joins the first batch written
        if extras and not progress.get("extras"):  # none: no batch, one round trip fewer per job
            await self._write_batch(job, [Writes(own + extras, dedupe)], delivery.message, progress={"extras": 1})
            dedupe, own = RECENT_DEDUPE_WINDOW, []
        if hot:  # to the author's hot timeline, which goes live to every process that listens for it,
            # and is merged into the followers' timelines when they are read (realtime.hot_fanout)
            await self._write_batch(job, [Writes(own + [self._timelines.hot_timeline(job.author)], dedupe)], delivery.message,
                                    progress=None, hot_skip=[job.author, *mentions])
            return
        skip = set(mentions) | {job.author}  # mentioned users already have it
        # The followers' TTLs are set at most every FollowerExpiries.interval per author.
        refresh, began = resumed or self._expiries.due(job.author), self._expiries.begin()
        # The next page is read while the current batch is written: a read on another
        # connection, so the writes and their progress marks keep their order.
        page = asyncio.ensure_future(self._follower_page(job.author, progress.get("cursor", "")))
        try:
            while True:
                names = await page
                if not names:
                    if own:
                        await self._write_batch(job, [Writes(own, dedupe)], delivery.message, progress=None)
                    break
                cursor = names[-1]
                last = len(names) < self.batch_size  # a short page is the end: no read of an empty one
                if not last:
                    page = asyncio.ensure_future(self._follower_page(job.author, cursor))
                followers = [keys.home_timeline(name) for name in names if name not in skip]
                # No mark after the last batch: the job is finished next, and if it is not, the
                # re-run of this one batch dedupes the whole list.
                refresh_batch = refresh or self._expiries.due(job.author)  # the interval may end mid-job
                await self._write_batch(job, [Writes(own, dedupe), Writes(followers, followers_dedupe, refresh_batch)],
                                        delivery.message, progress=None if last else {"cursor": cursor})
                own, followers_dedupe = [], NO_DEDUPE
                if last:
                    break
                if self.batch_pause:
                    await asyncio.sleep(self.batch_pause)
        finally:
            if not page.done():
                page.cancel()
            elif not page.cancelled():
                page.exception()  # a failed read we no longer need is not reported as never retrieved
        if refresh and not resumed and job.kind == "post":
            self._expiries.set_since(job.author, began)

    async def _is_hot(self, job: FanoutJob, progress: dict, *, resumed: bool) -> bool:
        """Whether the job's entry skips the followers' timelines: a post, as its author's
        state says; a delete, as its post was (its entry is in the author's hot timeline).

        A post is decided once: a re-run must not flip it (each way would deliver live
        twice). A hot decision is kept in the progress before anything hot is done; a push
        is not (no round trip per job), so a re-run without one may have pushed: it pushes
        again rather than warm a pushed account, which the author's next post does.
        """
        mode = progress.get("mode")
        if job.kind != "post":  # recorded too: a re-run would not find the entry it removed
            if mode is None and await self._hot.was_posted_hot(job.author, job.tweet_id):
                mode = "hot"
                await self.confirm(job, {"mode": mode})
            return mode == "hot"
        if mode is None:
            mode = await self._hot.mode_of(job.author)
            if mode == "warm" and resumed:
                mode = "push"
            if mode in ("warm", "warming"):
                await self._warm(job, progress)
                mode = "hot"
            if mode == "hot":
                await self.confirm(job, {"mode": mode})
        return mode == "hot"

    async def _warm(self, job: FanoutJob, progress: dict) -> None:
        """Make the author hot: every follower merges their entries from this job's on
        (realtime.hot_fanout), in batches with progress marks, before the state says so."""
        await self._hot.begin_warming(job.author)
        from_id = self._hot.warm_from(job.tweet_id)
        cursor, walked = progress.get("warm_cursor", ""), int(progress.get("warmed", 0))
        while True:
            names = await self._follower_page(job.author, cursor)
            if names:
                await self._hot.add_followers(job.author, names, from_id)
            walked += len(names)
            if len(names) < self.batch_size:
                break
            cursor = names[-1]
            await self.confirm(job, {"warm_cursor": cursor, "warmed": walked})
        await self._hot.finish_warming(job.author, walked)

    async def _follower_page(self, author: str, after: str) -> list[str]:
        low = f"({after}" if after else "-"
        return await self._redis.zrangebylex(keys.followers(author), low, "+", 0, self.batch_size)

    async def _write_batch(self, job: FanoutJob, groups: list[Writes], message: str, *,
                           progress: dict | None, hot_skip: Sequence[str] = ()) -> None:
        """Write one batch (groups of keys, each with its dedupe window), then the progress
        mark with a fresh claim.

        Home timelines send ``message`` live as they gain (or lose) the entry: one message
        per server process per batch (see Timelines.queue_push). The mark is written only
        once the whole batch has landed: a pipeline is no transaction (and on a cluster it
        is split by node), so a mark in the same pipeline could land without its batch.
        """
        groups = [group for group in groups if group.targets]
        unchecked = any(group.dedupe == NO_DEDUPE for group in groups) and job.kind == "post"
        if unchecked and time.monotonic() - job.confirmed_at >= self.fence:
            await self.confirm(job)
        if groups:
            await self._write_timelines(job, groups, message, hot_skip)
            if unchecked and time.monotonic() - job.confirmed_at >= self.claim_idle_ms / 1000:
                metrics.FANOUT_FENCE_OVERRUNS.inc()
                log.error("fan-out job %s: a batch written without a dedupe landed %.1fs after the job was "
                          "last confirmed ours; another worker may have written it too", job.entry_id,
                          time.monotonic() - job.confirmed_at)
        self.entries_written += sum(len(group.targets) for group in groups)
        if progress is not None:
            await self.confirm(job, progress)

    async def _write_timelines(self, job: FanoutJob, groups: list[Writes], message: str,
                               hot_skip: Sequence[str] = ()) -> None:
        """Push (or remove) in pipelines, safe to run twice. On a cluster, one pipeline per
        master holding one script call for all of the batch's keys there, each waiting for a
        replica when REPLICA_ACK_TIMEOUT is set: a job is finished only once its writes would
        survive a failover."""
        if self._acks is not None:
            by_master: dict[str, list[Writes]] = {}
            for group in groups:
                split: dict[str, list[str]] = {}
                for key in group.targets:
                    split.setdefault(self._acks.master_of(key), []).append(key)
                for master, part in split.items():
                    by_master.setdefault(master, []).append(group._replace(targets=part))
            try:
                # Every master's write ends before any failure is acted on: the fallback below
                # must not race a write still in flight.
                outcomes = await asyncio.gather(*(self._write_acked(master, job, master_groups, message, hot_skip)
                                                  for master, master_groups in by_master.items()),
                                                return_exceptions=True)
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome
                return
            except ResponseError as exc:
                if not (is_redirect(exc) or _is_not_local(exc)):
                    raise
                # A slot moved: write through the cluster client, which follows the redirect.
                # Part of the batch may have landed: this time every key is looked at first.
                log.info("fan-out job %s: a slot moved under a batch (%s); writing it again slot by slot",
                         job.entry_id, str(exc)[-160:])  # the end: the command itself names every key
                groups = [group._replace(dedupe=RECENT_DEDUPE_WINDOW) if group.dedupe == NO_DEDUPE else group
                          for group in groups]
        pipe = self._writes.pipeline(transaction=False)
        for group in groups:
            await self._queue_write(pipe, job, group, message, hot_skip=hot_skip)
        await execute_scripted(pipe)

    async def _write_acked(self, master: str, job: FanoutJob, groups: list[Writes],
                           message: str, hot_skip: Sequence[str]) -> None:
        pipe = self._acks.pipeline(master)
        for group in groups:
            await self._queue_write(pipe, job, group, message, on_node=True, hot_skip=hot_skip)
        _, replicas = await self._acks.execute(pipe, master)
        if replicas == 0:
            _no_replica_ack(f"job {job.entry_id}'s timelines on {master}", self._acks.timeout_ms)
            self._expiries.forget()  # a failover now may lose the TTLs it set

    async def _queue_write(self, pipe, job: FanoutJob, group: Writes, message: str, *,
                           on_node: bool = False, hot_skip: Sequence[str] = ()) -> None:
        if job.kind == "post":
            await self._timelines.queue_push(pipe, group.targets, job.tweet_id, message=message,
                                             dedupe_window=group.dedupe, on_node=on_node, hot_skip=hot_skip,
                                             refresh_ttl=group.refresh_ttl)
        else:
            await self._timelines.queue_remove(pipe, group.targets, job.tweet_id, message=message, on_node=on_node,
                                               hot_skip=hot_skip)


def _is_not_local(exc: ResponseError) -> bool:
    """A script sent to one node for keys of its slots met a key of a slot it no longer
    serves (moved or moving): the keys before it were written."""
    return "non local key" in str(exc) or "TRYAGAIN" in str(exc)


def _tag_of_stream(stream: str) -> str:
    return stream[stream.index("{") + 1: stream.rindex("}")]
