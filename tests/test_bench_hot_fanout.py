"""The hybrid fan-out benchmark end to end at its smallest: real redis-server, real services, real sockets."""

from __future__ import annotations

import asyncio

import pytest

from bench import hot_fanout

pytestmark = pytest.mark.slow  # runs the benchmark's smallest shapes end to end

TINY = hot_fanout.Sizes(followers=10_000, sockets=20, tweets=2, tweets_off=1, hot_accounts=2, hot_tweets_each=3,
                        ordinary=5, reads=10, socket_procs=1)


def test_a_hot_tweet_costs_what_a_small_accounts_does_and_reaches_every_socket_once():
    result = asyncio.run(asyncio.wait_for(hot_fanout.measure(sizes=TINY), 120))
    figures = result["figures"]
    assert result["problems"] == []
    assert figures["hot_missing"] == figures["hot_duplicated"] == 0
    assert figures["pushed_missing"] == figures["pushed_duplicated"] == 0
    # Pushed, a tweet is a write per follower; hot, a few dozen commands, as for 10,000 followers.
    assert figures["pushed_commands_per_tweet"] > TINY.followers
    assert figures["hot_commands_per_tweet"] < 200
    assert "### The merged home read" in result["body"]
