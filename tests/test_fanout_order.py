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
        await engine.redis.zadd(keys.live_presence(followers[-1]), {"watcher": int((time.time() + 600) * 1000)})
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
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while worker.jobs_done < 1:
            assert asyncio.get_running_loop().time() < deadline, "the job never finished"
            await asyncio.sleep(0.01)  # the worker has no completion event; its counter is polled
        pipe = engine.redis.pipeline(transaction=False)
        for name in followers:
            pipe.lpos(keys.home_timeline(name), tweet_id)
        assert all(position is not None for position in await pipe.execute())
        stats = await engine.redis.info("commandstats")
        assert stats["cmdstat_zrangebylex"]["calls"] == 2
    finally:
        await engine.close()


async def test_a_job_waits_past_order_wait_while_its_authors_earlier_job_runs_in_this_process(private_redis,
                                                                                                monkeypatch):
    """After a Redis blip both workers retry with backoff; ORDER_WAIT must not let the later
    job overtake an earlier one that is alive in the same process."""
    from realtime import fanout

    monkeypatch.setattr(fanout, "ORDER_WAIT", 0.05)
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": private_redis.url, "FANOUT_IN_PROCESS": "0"}))
    try:
        worker = engine.new_fanout_worker()
        in_flight = engine._authors_in_flight
        in_flight.begin("writer", 1)  # another worker of this process holds writer's job #1
        waiting = asyncio.create_task(worker._wait_for_previous_job_of(
            fanout.FanoutJob("2-0", {"kind": "post", "id": "2", "author": "writer", "seq": "2"})))
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done, "job #2 went ahead of #1, which is still running here"
        in_flight.end("writer", 1)
        await asyncio.wait_for(waiting, TIMEOUT)  # #1 gone: ORDER_WAIT is long past, so #2 goes
        # With no earlier job here (its worker elsewhere may be dead), ORDER_WAIT bounds the wait.
        await asyncio.wait_for(worker._wait_for_previous_job_of(
            fanout.FanoutJob("3-0", {"kind": "post", "id": "3", "author": "other", "seq": "5"})), TIMEOUT)
    finally:
        await engine.close()
