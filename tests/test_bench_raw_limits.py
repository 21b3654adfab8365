"""bench.raw_limits at tiny sizes: real processes, a real redis-server, real uvicorn.

Only the counts are checked (every message and every frame arrives exactly once, and
the figures come from them); the rates depend on the machine.
"""

from __future__ import annotations

import pytest

from bench import raw_limits
from realtime.live_protocol import unaddress


def test_the_frame_is_a_realistic_tweet_and_the_batched_message_names_its_recipients():
    frame = raw_limits.tweet_frame()
    assert 400 <= len(frame.encode()) <= 500
    assert unaddress(raw_limits.recipients_message(frame, 3)) == (
        ["follower00000", "follower00001", "follower00002"], frame)


@pytest.mark.parametrize("batched", [False, True], ids=["frame", "recipients"])
async def test_the_subscriber_reads_every_message_published(single_redis, batched):
    frame = raw_limits.tweet_frame()
    message = raw_limits.recipients_message(frame) if batched else frame
    result = await raw_limits.publish_limit(single_redis.url, single_redis.port, single_redis.process.pid,
                                            message, seconds=0.5)
    assert result["published"] > 0
    assert result["received"] == result["published"]
    assert result["deliveries"] == result["received"] * (raw_limits.RECIPIENTS if batched else 1)
    assert result["received_per_s"] > 0 and set(result["cpu"]) >= {"subscriber", "publisher", "redis-server", "others"}


@pytest.mark.parametrize("impl", raw_limits.available_implementations())
async def test_every_socket_gets_every_frame_of_the_burst(tmp_path, impl):
    result = await raw_limits.push_limit(impl, clients=20, rounds=10, log_dir=tmp_path)
    assert (result["opened"], result["received"], result["short"], result["extra"]) == (20, 20 * 10, 0, 0)
    assert result["failed_sends"] == 0 and result["errors"] == []
    assert raw_limits._push_problems(result) == []
    assert result["frames_per_s"] > 0 and result["cpu"]["busiest_client"] >= 0


async def test_round_robin_order_also_gets_every_frame_to_every_socket(tmp_path):
    result = await raw_limits.push_limit(raw_limits.ROUND_ROBIN_IMPL, clients=20, rounds=10, log_dir=tmp_path,
                                         order="round")
    assert result["order"] == "round"
    assert (result["opened"], result["received"], result["short"], result["extra"]) == (20, 20 * 10, 0, 0)
    assert result["failed_sends"] == 0 and raw_limits._push_problems(result) == []
