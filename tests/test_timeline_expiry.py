"""A timeline lives the age limit (and a sixteenth) after any entry it gains, yet a busy
author's fan-out sets its followers' TTLs only once per FollowerExpiries.interval: a later
job, a new follower, a re-run and a list created again each keep that promise.

Where these tests want to see whether a job set a TTL, they lower it by hand first: a job
that sets it puts it back up to the full TTL, one that leaves it alone leaves the low one.
"""

from __future__ import annotations

import time

import pytest
import redis.asyncio

from realtime import keys
from realtime.config import Settings
from realtime.engine import Engine
from realtime.fanout import FanoutJob, FanoutWorker
from realtime.timelines import FollowerExpiries

from .conftest import start_redis

HOUR = 3600


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def engine(tmp_path):
    server = start_redis(tmp_path / "redis")
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": server.url, "FANOUT_IN_PROCESS": "0",
                                                      "FANOUT_HOT_FOLLOWERS": "off"}))
    for name in ("writer", "reader", "newcomer"):
        await engine.users.create(name)
    await engine.users.follow("reader", "writer")
    yield engine
    await engine.close()
    server.stop()


@pytest.fixture
def clock():
    return Clock()


def new_worker(engine: Engine, expiries: FollowerExpiries) -> FanoutWorker:
    return FanoutWorker(engine.redis, engine.blocking_redis, engine.timelines, engine.tweets,
                        tags=engine.fanout_queue.tags, expiries=expiries)


@pytest.fixture
def worker(engine, clock):
    """A worker on the test's clock, which never sees Redis connected to anew (the last
    test here is about that): the pools' first connections do not get in the way."""
    return new_worker(engine, FollowerExpiries(engine.timelines.max_age, clock=clock, epoch=lambda: 0))


async def post_and_fan_out(engine: Engine, worker: FanoutWorker, *, resumed: bool = False) -> int:
    """Post as the writer and run the post's job in ``worker``; the tweet's id."""
    tweet_id = await engine.tweets.post("writer", f"tweet at {time.monotonic()}")
    await run_next_job(engine, worker, resumed=resumed)
    return tweet_id


async def run_next_job(engine: Engine, worker: FanoutWorker, *, resumed: bool = False) -> None:
    tag = engine.fanout_queue.tag_of("writer")
    [(_, [(entry_id, fields)])] = await engine.redis.xreadgroup(
        keys.FANOUT_GROUP, worker.consumer, {keys.fanout_stream(tag): ">"}, count=1)
    job = FanoutJob(tag, entry_id, fields, confirmed_at=time.monotonic())
    await worker.run_job(job, resumed=resumed)
    await worker.finish(job)


async def home_ttl(engine: Engine, user: str) -> int:
    return await engine.redis.ttl(keys.home_timeline(user))


async def lower_ttl(engine: Engine, user: str) -> None:
    await engine.redis.expire(keys.home_timeline(user), HOUR)


def full_ttl(engine: Engine) -> float:
    return engine.timelines.ttl_ms / 1000 - 60


async def home(engine: Engine, user: str) -> list[int]:
    return [int(i) for i in await engine.redis.lrange(keys.home_timeline(user), 0, -1)]


async def test_a_busy_authors_followers_get_their_ttl_once_per_interval_not_with_every_post(engine, worker, clock):
    first = await post_and_fan_out(engine, worker)
    assert await home_ttl(engine, "reader") > full_ttl(engine)
    await lower_ttl(engine, "reader")
    second = await post_and_fan_out(engine, worker)
    assert await home(engine, "reader") == [second, first]
    assert await home_ttl(engine, "reader") <= HOUR  # left alone: set moments ago
    clock.now += FollowerExpiries(engine.timelines.max_age).interval
    await post_and_fan_out(engine, worker)
    assert await home_ttl(engine, "reader") > full_ttl(engine)


def test_the_interval_is_half_the_slack_so_every_list_outlives_its_newest_entry():
    expiries = FollowerExpiries(30 * 86400)
    slack = 30 * 86400 / 16
    assert expiries.interval == slack / 2  # set at most this long before a push: it still has age limit + this


async def test_a_new_follower_gets_a_full_ttl_when_following_not_at_the_next_post(engine, worker):
    first = await post_and_fan_out(engine, worker)  # the writer's followers' TTLs are now current
    await engine.timelines.push([keys.home_timeline("newcomer")], first)  # a home timeline from before
    await lower_ttl(engine, "newcomer")
    await engine.users.follow("newcomer", "writer")
    assert await home_ttl(engine, "newcomer") > full_ttl(engine)
    second = await post_and_fan_out(engine, worker)
    assert await home(engine, "newcomer") == [second, first]


async def test_a_re_run_sets_every_followers_ttl_however_recent_the_last_job(engine, worker):
    await post_and_fan_out(engine, worker)
    await lower_ttl(engine, "reader")
    await post_and_fan_out(engine, worker, resumed=True)
    assert await home_ttl(engine, "reader") > full_ttl(engine)


async def test_a_followers_list_emptied_and_created_again_gets_its_ttl_from_the_push(engine, worker):
    first = await post_and_fan_out(engine, worker)
    await engine.tweets.delete("writer", first)
    await run_next_job(engine, worker)  # the delete's: the reader's home loses its one entry, so Redis drops it
    assert not await engine.redis.exists(keys.home_timeline("reader"))
    second = await post_and_fan_out(engine, worker)
    assert await home(engine, "reader") == [second]
    assert await home_ttl(engine, "reader") > full_ttl(engine)


def test_the_worker_forgets_authors_past_the_interval_and_beyond_its_size():
    clock = Clock()
    expiries = FollowerExpiries(16.0, kept=2, clock=clock, epoch=lambda: 0)  # interval 0.5 s
    for author in ("a", "b", "c"):
        expiries.set_since(author, expiries.begin())
    assert expiries.due("a") and not expiries.due("b") and not expiries.due("c")
    clock.now += 0.5
    expiries.set_since("d", expiries.begin())
    assert expiries.due("b") and expiries.due("c") and not expiries.due("d")
    assert len(expiries) == 1


def test_a_new_connection_to_redis_or_an_unacknowledged_write_makes_the_worker_forget_what_it_set():
    """Redis may have lost those TTLs (a restart from older data, a failover): a job then
    sets them all again; one during which it happened lists nobody."""
    clock, made = Clock(), [5]
    expiries = FollowerExpiries(16.0, clock=clock, epoch=lambda: made[0])
    expiries.set_since("a", expiries.begin())
    assert not expiries.due("a")
    made[0] += 1  # a connection was made anew
    assert expiries.due("a")
    began = expiries.begin()
    made[0] += 1
    expiries.set_since("a", began)
    assert expiries.due("a")
    began = expiries.begin()
    expiries.set_since("b", expiries.begin())
    expiries.forget()
    expiries.set_since("a", began)
    assert expiries.due("a") and expiries.due("b")


async def test_after_redis_dropped_every_connection_the_next_job_sets_every_followers_ttl(engine):
    worker = new_worker(engine, FollowerExpiries(engine.timelines.max_age))
    await post_and_fan_out(engine, worker)  # the pools' connections are made
    await post_and_fan_out(engine, worker)  # the TTLs set, and remembered:
    await lower_ttl(engine, "reader")
    await post_and_fan_out(engine, worker)
    assert await home_ttl(engine, "reader") <= HOUR
    admin = redis.asyncio.Redis.from_url(engine.settings.redis_url)  # a client of its own, spared:
    try:  # as a restart would, every link of the service's cut
        assert await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
    finally:
        await admin.aclose()
    await post_and_fan_out(engine, worker)
    assert await home_ttl(engine, "reader") > full_ttl(engine)
