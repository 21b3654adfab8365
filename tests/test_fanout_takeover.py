"""A fan-out worker killed in the middle of a 10,000-follower fan-out: another worker
takes the job over, and every follower gets the tweet exactly once (in the timeline and
live, named once in the messages to the process holding the sockets)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from realtime import keys
from realtime.config import Settings
from realtime.engine import Engine
from realtime.live_protocol import unaddress

from .conftest import start_redis
from .support import ROOT, TIMEOUT, eventually

pytestmark = pytest.mark.slow  # kills a fan-out worker mid-job

FOLLOWERS = 10_000


def start_worker(redis_url: str, log_path, **settings: str) -> subprocess.Popen:
    # Fan-out on write: at the default threshold an author of 10,000 followers would be hot.
    env = {**os.environ, "REDIS_URL": redis_url, "FANOUT_IN_PROCESS": "1", "FANOUT_BATCH_SIZE": "100",
           "FANOUT_CLAIM_IDLE": "1s", "LOG_LEVEL": "info", "FANOUT_HOT_FOLLOWERS": "off", **settings}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "run.py", "worker"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


@pytest.fixture
def private_redis(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


def watch_live(client: redis.Redis, users: list[str], process_id: str = "test-watcher"):
    """Lease ``users`` to a pretend server process and listen on its channel, as LiveHub does."""
    until = int((time.time() + 600) * 1000)
    pipe = client.pipeline(transaction=False)
    for user in users:
        pipe.zadd(keys.live_presence(user), {process_id: until})
        pipe.zadd(keys.LIVE_ONLINE, {user: until})  # as LiveHub writes a lease (read on one Redis)
    pipe.execute()
    live = client.pubsub()
    live.subscribe(keys.process_channel(process_id))
    assert live.get_message(timeout=TIMEOUT)["type"] == "subscribe"
    return live


async def post_to_many_followers(redis_url: str) -> tuple[int, list[str]]:
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": redis_url, "FANOUT_IN_PROCESS": "0"}))
    try:
        await engine.users.create("celebrity")
        followers = [f"fan{n:05d}" for n in range(FOLLOWERS)]
        pipe = engine.redis.pipeline(transaction=False)
        pipe.zadd(keys.followers("celebrity"), {name: 0 for name in followers})
        await pipe.execute()
        tweet_id = await engine.tweets.post("celebrity", "to all of you")
        return tweet_id, followers
    finally:
        await engine.close()


async def test_a_killed_worker_is_taken_over_and_every_follower_gets_the_tweet_exactly_once(private_redis, tmp_path):
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    live = watch_live(client, ["celebrity", *(f"fan{n:05d}" for n in range(FOLLOWERS))])

    tweet_id, followers = await post_to_many_followers(private_redis.url)
    progress = None

    tag = keys.fanout_tag_of("celebrity", Settings.fanout_shards)

    def halfway() -> bool:
        nonlocal progress
        [entry] = client.xrange(keys.fanout_stream(tag)) or [(None, None)]
        progress = client.hgetall(keys.fanout_progress(tag, entry[0])) if entry and entry[0] else {}
        return progress.get("cursor", "") >= "fan02000"

    first = start_worker(private_redis.url, tmp_path / "worker-1.log", FANOUT_BATCH_PAUSE="20ms")
    try:
        await eventually(halfway, what="the first worker to get part of the way")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    def has_entry() -> list[int]:
        pipe = client.pipeline(transaction=False)
        for name in followers:
            pipe.lpos(keys.home_timeline(name), tweet_id, count=0)
        return [len(positions) for positions in pipe.execute()]

    counts = has_entry()
    assert 0 < sum(counts) < FOLLOWERS, "the kill must land in the middle of the fan-out"
    assert max(counts) == 1

    second = start_worker(private_redis.url, tmp_path / "worker-2.log")
    try:
        await eventually(lambda: client.xlen(keys.fanout_stream(tag)) == 0, timeout=4 * TIMEOUT,
                         what="the second worker to take over and finish the job")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=TIMEOUT)

    assert has_entry() == [1] * FOLLOWERS
    assert "resumes abandoned job" in (tmp_path / "worker-2.log").read_text()

    # Live: each follower (and the author) named once, never twice, across the messages.
    delivered: dict[str, int] = {}

    def count(message) -> None:
        if message and message["type"] == "message":
            names, frame = unaddress(message["data"])
            assert str(tweet_id) in frame
            for name in names:
                delivered[name] = delivered.get(name, 0) + 1

    deadline = time.monotonic() + TIMEOUT
    while len(delivered) < FOLLOWERS + 1 and time.monotonic() < deadline:
        count(live.get_message(timeout=1))
    while (message := live.get_message(timeout=0.2)) is not None:  # anything extra would be a duplicate
        count(message)
    assert len(delivered) == FOLLOWERS + 1
    assert set(delivered.values()) == {1}
    live.close()
    client.close()
