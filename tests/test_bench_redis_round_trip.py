"""bench.redis_round_trip compares what it says it compares, and reports both."""

from __future__ import annotations

import redis.asyncio as aioredis

from bench import redis_round_trip
from realtime.redis_client import make_redis
from realtime.redis_connection import without_write_task


def test_it_compares_redis_pys_connection_with_chirps():
    url = "redis://127.0.0.1:1/0"  # never connects: the pools are made locally
    assert redis_round_trip.redis_py_client(url).connection_pool.connection_class is aioredis.Connection
    assert make_redis(url).connection_pool.connection_class is without_write_task(aioredis.Connection)


async def test_quick_run_reports_both_clients_per_round_trip():
    result = await redis_round_trip.measure(quick=True)
    assert result["problems"] == []
    figures = result["figures"]
    assert figures["redis_py_us"] > 0 and figures["chirp_us"] > 0
    assert figures["saved_us"] == round(figures["redis_py_us"] - figures["chirp_us"], 2)
    assert "| redis-py's connection |" in result["body"] and "| Chirp's (writes in place) |" in result["body"]
