"""Two fan-out workers, one author: the author's tweets reach every follower in the order
they were posted, even when the later job is picked up while the earlier one is running."""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime import keys
from realtime.config import Settings
from realtime.engine import Engine

from .conftest import start_redis
from .support import TIMEOUT

FOLLOWERS = 2_000


@pytest.fixture
def private_redis(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


async def test_one_authors_jobs_stay_in_order_across_two_workers(private_redis):
    settings = Settings.load(environ={"REDIS_URL": private_redis.url, "FANOUT_IN_PROCESS": "0",
                                      "FANOUT_BATCH_SIZE": "100", "FANOUT_BATCH_PAUSE": "10ms"})
    engine = await Engine.open(settings)
    try:
        await engine.users.create("writer")
        followers = [f"reader{n:05d}" for n in range(FOLLOWERS)]
        await engine.redis.zadd(keys.followers("writer"), {name: 0 for name in followers})
        # The last follower's sockets are on a pretend process whose channel we hear.
        until = int((time.time() + 600) * 1000)
        await engine.redis.zadd(keys.live_presence(followers[-1]), {"watcher": until})
        await engine.redis.zadd(keys.LIVE_ONLINE, {followers[-1]: until})  # as LiveHub writes a lease
        last_follower = engine.redis.pubsub()
        await last_follower.subscribe(keys.process_channel("watcher"))

        first = await engine.tweets.post("writer", "first: a slow 2,000-follower fan-out")
        second = await engine.tweets.post("writer", "second")
        engine.start_fanout_workers(2)  # one takes `first`, the other `second` at once

        published = []
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while len(published) < 2:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(published)} of 2 tweets published"
            message = await last_follower.get_message(timeout=1.0)
            if message and message["type"] == "message":
                published.append(message["data"])
        assert str(first) in published[0] and str(second) in published[1]
        pipe = engine.redis.pipeline(transaction=False)
        for name in followers:
            pipe.lrange(keys.home_timeline(name), 0, -1)
        assert all(entries == [str(second), str(first)] for entries in await pipe.execute())
        await last_follower.aclose()
    finally:
        await engine.close()


async def test_a_short_follower_page_ends_the_fan_out_without_reading_an_empty_one(private_redis):
    settings = Settings.load(environ={"REDIS_URL": private_redis.url, "FANOUT_IN_PROCESS": "0",
                                      "FANOUT_BATCH_SIZE": "100"})
    engine = await Engine.open(settings)
    try:
        await engine.users.create("pager")
        followers = [f"page{n:04d}" for n in range(150)]  # one full page, one short one
        await engine.redis.zadd(keys.followers("pager"), {name: 0 for name in followers})
        await engine.redis.config_resetstat()
        tweet_id = await engine.tweets.post("pager", "to 150")
        [worker] = engine.start_fanout_workers(1)
        await asyncio.wait_for(worker.finished_jobs.reached(1), TIMEOUT)
        pipe = engine.redis.pipeline(transaction=False)
        for name in followers:
            pipe.lpos(keys.home_timeline(name), tweet_id)
        assert all(position is not None for position in await pipe.execute())
        stats = await engine.redis.info("commandstats")
        assert stats["cmdstat_zrangebylex"]["calls"] == 2
    finally:
        await engine.close()


@pytest.mark.slow
async def test_a_job_whose_predecessor_was_abandoned_by_a_killed_worker_takes_it_over_first(private_redis):
    """A worker killed with an author's job in hand: the author's next job does not overtake
    it (the contract: in order per author); the next worker runs the abandoned one first."""
    settings = Settings.load(environ={"REDIS_URL": private_redis.url, "FANOUT_IN_PROCESS": "0",
                                      "FANOUT_CLAIM_IDLE": "2500ms"})  # past the old 2 s ORDER_WAIT
    engine = await Engine.open(settings)
    try:
        await engine.users.create("orderly")
        await engine.users.create("reader")
        await engine.redis.zadd(keys.followers("orderly"), {"reader": 0})
        first = await engine.tweets.post("orderly", "first")
        second = await engine.tweets.post("orderly", "second")
        stream = keys.fanout_stream(engine.fanout_queue.tag_of("orderly"))
        # A worker that read the first job and died (never acknowledged it).
        taken = await engine.redis.xreadgroup(keys.FANOUT_GROUP, "killed-worker", {stream: ">"}, count=1)
        assert taken[0][1][0][1]["id"] == str(first)
        [worker] = engine.start_fanout_workers(1)
        home = keys.home_timeline("reader")
        assert await asyncio.wait_for(worker.finished_jobs.reached(2), TIMEOUT) == 2
        assert [int(i) for i in await engine.redis.lrange(home, 0, -1)] == [second, first]  # head: newest arrival
        assert await engine.redis.xlen(stream) == 0
    finally:
        await engine.close()


async def test_a_job_waits_while_its_authors_earlier_job_runs_in_this_process(private_redis):
    """However long the earlier job takes here (a Redis blip, a huge fan-out), it is alive:
    the later one waits for it and is never run ahead of it."""
    from realtime import fanout

    engine = await Engine.open(Settings.load(environ={"REDIS_URL": private_redis.url, "FANOUT_IN_PROCESS": "0",
                                                      "FANOUT_CLAIM_IDLE": "100ms"}))
    try:
        tag = engine.fanout_queue.tag_of("writer")
        earlier = await engine.fanout_queue.enqueue("post", 1, "writer")
        later = await engine.fanout_queue.enqueue("post", 2, "writer")
        stream = keys.fanout_stream(tag)
        await engine.redis.xreadgroup(keys.FANOUT_GROUP, "this-process", {stream: ">"}, count=1)
        worker = engine.new_fanout_worker([tag])
        engine._jobs_in_flight.begin(earlier)  # another worker of this process runs it
        fields = (await engine.redis.xrange(stream, later, later))[0][1]
        waiting = asyncio.create_task(worker._wait_for_previous_job_of(fanout.FanoutJob(tag, later, fields)))
        done, _ = await asyncio.wait({waiting}, timeout=0.5)  # five times the claim idle
        assert not done, "the later job went ahead of the earlier one, which is still running here"
        await engine.redis.xack(stream, keys.FANOUT_GROUP, earlier)
        await engine.redis.xdel(stream, earlier)
        engine._jobs_in_flight.end(earlier)
        await asyncio.wait_for(waiting, TIMEOUT)
    finally:
        await engine.close()
