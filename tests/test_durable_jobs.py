"""The job is the source of truth of every write: a job that keeps failing is
dead-lettered instead of killing worker after worker; a re-run after a delete never brings
the tweet back; a retweet racing a delete never recreates the original; a post whose request
died after recording its job still reaches everyone."""

from __future__ import annotations

import time

import orjson
import pytest

from realtime import keys
from realtime.config import Settings
from realtime.engine import Engine
from realtime.fanout import RECORDED_TTL_MS, shards_per_worker

from .conftest import start_redis
from .support import eventually


@pytest.fixture
async def engine(tmp_path):
    server = start_redis(tmp_path / "redis")
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": server.url, "FANOUT_IN_PROCESS": "0",
                                                      "FANOUT_CLAIM_IDLE": "1s"}))
    await engine.users.create("writer")
    await engine.users.create("reader")
    await engine.redis.zadd(keys.followers("writer"), {"reader": 0})
    yield engine
    await engine.close()
    server.stop()


async def home(engine: Engine) -> list[int]:
    return [int(i) for i in await engine.redis.lrange(keys.home_timeline("reader"), 0, -1)]


async def test_a_poison_job_goes_to_the_dead_letters_and_the_authors_next_job_runs(engine):
    await engine.fanout_queue.enqueue("post", 12345, "writer", tweet="{this is not json")
    good = await engine.tweets.post("writer", "after the poison")
    workers = engine.start_fanout_workers(1)
    tag = engine.fanout_queue.tag_of("writer")
    await eventually(lambda: _empty(engine, tag), what="both jobs to be done")
    [(_, dead)] = await engine.redis.xrange(keys.fanout_dead_letters(tag))
    assert dead["id"] == "12345" and "JSONDecodeError" in dead["error"]
    assert await home(engine) == [good]
    assert not engine._fanout_workers[workers[0]].done(), "the worker died"


async def test_a_job_recorded_twice_is_one_job(engine):
    """The same record sent again (a lost reply, a retry: tests/test_kill_steps.py) answers the
    first one's id and adds nothing; the mark lapses after fanout.RECORDED_TTL_MS."""
    first = await engine.fanout_queue.enqueue("post", 777, "writer", tweet="{}")
    assert await engine.fanout_queue.enqueue("post", 777, "writer", tweet="{}") == first
    tag = engine.fanout_queue.tag_of("writer")
    assert [job for job, _ in await engine.redis.xrange(keys.fanout_stream(tag))] == [first]
    assert 0 < await engine.redis.pttl(keys.fanout_recorded(tag, "post", 777)) <= RECORDED_TTL_MS


async def _empty(engine: Engine, tag: str) -> bool:
    return await engine.redis.xlen(keys.fanout_stream(tag)) == 0


async def test_a_post_whose_request_died_after_its_job_was_recorded_still_reaches_everyone(engine):
    """As if the process was killed right after the job's one atomic step: nothing else was
    written, and the worker does it all."""
    fields = {"kind": "tweet", "from": "writer", "author": "writer", "ts": repr(time.time()),
              "content": "only the job exists", "likes": "0", "retweets": "0", "mentions": "[]",
              "hashtags": '["orphan"]'}
    tweet_id = engine.id_lease.generator.next_id()
    await engine.fanout_queue.enqueue("post", tweet_id, "writer", tweet=orjson.dumps(fields).decode())
    assert not await engine.redis.exists(keys.tweet(tweet_id))
    engine.start_fanout_workers(1)
    assert await eventually(lambda: home(engine), what="the reader's home timeline") == [tweet_id]
    assert (await engine.tweets.get(tweet_id))["content"] == "only the job exists"
    assert [int(i) for i in await engine.redis.lrange(keys.user_timeline("writer"), 0, -1)] == [tweet_id]
    assert [int(i) for i in await engine.redis.lrange(keys.hashtag_timeline("orphan"), 0, -1)] == [tweet_id]
    assert (await engine.users.profile("writer"))["tweets"] == 1


async def test_a_post_job_re_run_after_the_delete_does_not_bring_the_tweet_back(engine):
    tweet_id = await engine.tweets.post("writer", "soon gone")
    tag = engine.fanout_queue.tag_of("writer")
    [(_, [(entry_id, fields)])] = await engine.redis.xreadgroup(
        keys.FANOUT_GROUP, "test", {keys.fanout_stream(tag): ">"}, count=1)
    await engine.tweets.delete("writer", tweet_id)
    from realtime.fanout import FanoutJob

    assert await engine.tweets.apply(FanoutJob(tag, entry_id, fields)) is None  # the late re-run
    assert await engine.redis.hgetall(keys.tweet(tweet_id)) == {"deleted": "1"}
    assert tweet_id not in [int(i) for i in await engine.redis.lrange(keys.user_timeline("writer"), 0, -1)]


async def test_a_retweet_racing_a_delete_does_not_recreate_the_original(engine):
    original = await engine.tweets.post("writer", "to be retweeted")
    await engine.tweets.delete("writer", original)
    retweet = {"kind": "retweet", "of": str(original), "from": "reader", "author": "reader", "ts": repr(time.time())}
    # The retweet's request had checked the original before the delete; its job runs after.
    delivery, _ = await engine.tweets._apply_post(engine.id_lease.generator.next_id(), "reader", retweet,
                                                   in_request=False)
    assert delivery is None
    assert await engine.redis.hgetall(keys.tweet(original)) == {"deleted": "1"}


async def test_deleting_a_much_retweeted_tweet_leaves_the_retweets_to_the_job(engine):
    """The request does a bounded amount of work however many retweets there are; the job
    removes each retweet (as a job of its retweeter's), and meanwhile none is shown."""
    original = await engine.tweets.post("writer", "retweet me")
    retweeters = [f"fan{n:02d}" for n in range(20)]
    for name in retweeters:
        await engine.users.create(name)
        await engine.tweets.retweet(name, original)
    await engine.tweets.delete("writer", original)
    assert await engine.redis.hlen(keys.retweets(original)) == 20  # untouched by the request
    assert await engine.tweets.page(keys.user_timeline("fan00"), count=20, before=None) == {"tweets": [],
                                                                                           "next": None}
    engine.start_fanout_workers(2)
    for name in retweeters:
        await eventually(lambda name=name: _timeline_empty(engine, name),
                         what=f"{name}'s retweet to leave their timeline")
    assert await eventually(lambda: _gone(engine, original), what="the retweets hash to empty")


async def _timeline_empty(engine: Engine, name: str) -> bool:
    return await engine.redis.llen(keys.user_timeline(name)) == 0


async def _gone(engine: Engine, tweet_id: int) -> bool:
    return await engine.redis.hlen(keys.retweets(tweet_id)) == 0


async def read_job(engine: Engine, worker):
    from realtime.fanout import FanoutJob

    tag = engine.fanout_queue.tag_of("writer")
    [(_, [(entry_id, fields)])] = await engine.redis.xreadgroup(
        keys.FANOUT_GROUP, worker.consumer, {keys.fanout_stream(tag): ">"}, count=1)
    return FanoutJob(tag, entry_id, fields)


async def test_a_worker_whose_job_was_taken_over_writes_nothing_more_of_it(engine):
    """A first run writes follower batches with no dedupe, so it must hold the job: one that
    was silent long enough to be taken over finds out before its next batch, and stops."""
    from realtime.fanout import _JobLost

    await engine.redis.zadd(keys.followers("writer"), {f"fan{n}": 0 for n in range(5)})
    tweet_id = await engine.tweets.post("writer", "taken over")
    tags = [engine.fanout_queue.tag_of("writer")]
    slow, other = engine.new_fanout_worker(tags), engine.new_fanout_worker(tags)
    job = await read_job(engine, slow)
    await engine.redis.xclaim(job.stream, keys.FANOUT_GROUP, other.consumer, 0, [job.entry_id])  # the takeover
    with pytest.raises(_JobLost):
        await slow.run_job(job, resumed=False)
    for name in ("reader", *(f"fan{n}" for n in range(5))):
        assert await engine.redis.llen(keys.home_timeline(name)) == 0, name
    await other.run_job(job, resumed=True)  # the new holder writes each follower's entry once
    for name in ("reader", *(f"fan{n}" for n in range(5))):
        assert await engine.redis.lrange(keys.home_timeline(name), 0, -1) == [str(tweet_id)], name


async def test_a_first_run_writes_followers_without_looking_and_resumed_runs_look(engine):
    tweet_id = await engine.tweets.post("writer", "once")
    worker = engine.new_fanout_worker([engine.fanout_queue.tag_of("writer")])
    job = await read_job(engine, worker)
    await worker.run_job(job, resumed=False)
    await worker.run_job(job, resumed=True)  # a takeover re-runs the batch in flight: found, not pushed
    assert await engine.redis.lrange(keys.home_timeline("reader"), 0, -1) == [str(tweet_id)]
    await worker.run_job(job, resumed=False)  # a first run does not look: only its holder wrote them
    assert await engine.redis.lrange(keys.home_timeline("reader"), 0, -1) == [str(tweet_id)] * 2
    assert await engine.redis.lrange(keys.home_timeline("writer"), 0, -1) == [str(tweet_id)]  # own: looked


async def test_a_job_just_read_needs_no_confirmation_before_its_first_batch(engine):
    """Reading a new job resets its idle time as a confirmation does: its first batch (no
    dedupe) goes without another round trip; one that waited past the fence confirms first."""
    await engine.redis.zadd(keys.followers("writer"), {f"fan{n}": 0 for n in range(5)})
    tweet_id = await engine.tweets.post("writer", "fresh")
    worker = engine.new_fanout_worker([engine.fanout_queue.tag_of("writer")])
    confirmations = []
    real_confirm = worker.confirm

    async def counted_confirm(job, progress=None):
        confirmations.append(progress)
        await real_confirm(job, progress)

    worker.confirm = counted_confirm
    await worker._run_once()
    assert confirmations == []  # five followers: one batch, no progress mark, no confirmation
    for name in ("reader", *(f"fan{n}" for n in range(5))):
        assert await engine.redis.lrange(keys.home_timeline(name), 0, -1) == [str(tweet_id)], name

    await engine.tweets.post("writer", "read, then held")
    original_run = worker._run_counted

    async def held(job, *, resumed):
        job.confirmed_at -= worker.fence  # as if it had waited that long after its read
        await original_run(job, resumed=resumed)

    worker._run_counted = held
    await worker._run_once()
    assert confirmations == [None]  # confirmed before its unchecked batch


async def test_a_request_whose_worker_beat_it_counts_the_tweet_once(engine):
    """The request creates and counts in one round trip, the counts whatever the create
    answers: a worker that got there first (or a delete after it) is not counted again."""
    tweet_id = await engine.tweets.post("writer", "counted once")
    stored = await engine.redis.hgetall(keys.tweet(tweet_id))
    assert await engine.tweets._create_and_count(tweet_id, "writer", stored) == 0  # found: counted already
    assert await engine.redis.hget(keys.user("writer"), "tweets") == "1"
    await engine.tweets.delete("writer", tweet_id)
    assert await engine.tweets._create_and_count(tweet_id, "writer", stored) == -1  # its tombstone
    assert await engine.redis.hget(keys.user("writer"), "tweets") == "0"


async def test_authors_names_are_remembered_up_to_a_bound_and_unknown_users_are_not(engine, monkeypatch):
    from realtime import users as users_module
    from realtime.errors import NotFound

    monkeypatch.setattr(users_module, "AUTHOR_NAMES_KEPT", 2)
    for name in ("Ann", "Ben", "Cy"):
        await engine.users.create(name)
        assert await engine.users.name_of_author(name.lower()) == name
    assert list(engine.users._author_names) == ["ben", "cy"]  # the oldest went
    with pytest.raises(NotFound):
        await engine.users.name_of_author("nobody")
    assert "nobody" not in engine.users._author_names


@pytest.mark.parametrize("count, expected", [
    (0, []),
    (1, [["a", "b", "c", "d"]]),
    (3, [["a", "d"], ["b"], ["c"]]),
    (6, [["a"], ["b"], ["c"], ["d"], ["a"], ["b"]]),
])
def test_every_shard_has_a_worker_and_the_shards_share_them_evenly(count, expected):
    assert shards_per_worker(["a", "b", "c", "d"], count) == expected
