"""The live-shapes benchmark end to end at its smallest: real redis-server, real service, real sockets."""

from __future__ import annotations

import asyncio

import pytest

from bench import live_shapes

pytestmark = pytest.mark.slow  # runs the benchmark's smallest shapes end to end

TINY = live_shapes.Sizes(celebrity_sockets=50, celebrity_tweets=2, celebrity_rate=4.0, big_followers=500,
                         big_sockets=20, big_tweets=2, storm_users=50, storm_posters=5, storm_per_poster=10,
                         storm_window=1.0, storm_live_rate=4.0, socket_procs=1)


def test_smallest_shapes_deliver_every_tweet_once_and_replay_exactly_fifty():
    result = asyncio.run(asyncio.wait_for(live_shapes.measure(sizes=TINY), 60))
    figures = result["figures"]
    assert result["problems"] == []
    assert figures["celebrity_10k_missing"] == figures["celebrity_10k_duplicated"] == 0
    assert figures["celebrity_100k_missing"] == figures["celebrity_100k_duplicated"] == 0
    assert figures["celebrity_100k_timeline_missing"] == 0
    assert figures["storm_missing"] == figures["storm_duplicated"] == figures["storm_unexpected"] == 0
    assert figures["storm_ready"] == 50
    assert figures["storm_replayed_min"] == figures["storm_replayed_max"] == 50
    assert len(result["series"]["storm_ready_ms"]) == 50
    assert len(result["series"]["celebrity_latency_ms"]) == 2 * 50
    assert result["name"] == "live_shapes" and "### Connection storm" in result["body"]
