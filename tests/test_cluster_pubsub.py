"""The live hub on a real Redis Cluster: a node connection that no longer hears its own
probes (TCP-healthy but deaf, as after a failover) is rebuilt, and the socket caught up."""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime import keys, live_hub, metrics
from realtime.config import Settings
from realtime.engine import Engine
from realtime.live_hub import LiveSubscriber

from .support import TIMEOUT, eventually


def resubscribes(reason: str) -> float:
    return metrics.PUBSUB_RESUBSCRIBES.labels(reason)._value.get()


@pytest.mark.parametrize("redis_server", ["cluster"], indirect=True)  # sharded pub/sub: the cluster only
async def test_a_deaf_node_connection_is_found_by_its_probe_and_rebuilt(redis_server, monkeypatch):
    cluster = redis_server
    monkeypatch.setattr(live_hub, "PROBE_EVERY", 0.2)
    monkeypatch.setattr(live_hub, "PROBE_TIMEOUT", 0.3)
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": cluster.url, "FANOUT_IN_PROCESS": "1"}))
    try:
        engine.start_fanout_workers(1)
        await engine.start_live()
        hub = engine.live_hub
        await engine.users.create("deafwriter")
        await engine.users.create("deafreader")
        await engine.redis.zadd(keys.followers("deafwriter"), {"deafreader": 0})
        await engine.redis.hset(keys.session("deaf-token"), "user", "deafreader")
        sub = LiveSubscriber("deafreader", "deaf-token", queue_size=64)
        await hub.attach(sub)
        sub.catch_up([])
        before, reconnects = resubscribes("deaf"), hub.reconnected.value
        heard = hub._probe_heard
        hub._probe_heard = lambda data: None  # from now on no probe comes back: deaf
        missed = await engine.tweets.post("deafwriter", "while deaf")
        deadline = time.monotonic() + TIMEOUT
        while resubscribes("deaf") == before and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # polling the hub's counter, bounded
        hub._probe_heard = heard
        assert resubscribes("deaf") > before, "the deaf connection was never noticed"
        await asyncio.wait_for(hub.reconnected.reached(reconnects + 1), TIMEOUT)
        await eventually(lambda: sub.state is live_hub.SubscriberState.LIVE, what="the socket to be caught up")
        assert sub.state is live_hub.SubscriberState.LIVE and sub.close_code is None
        after = await engine.tweets.post("deafwriter", "after the rebuild")
        got = []
        while len(got) < 2 and time.monotonic() < deadline:
            event = sub.pop()
            if event is None:
                await asyncio.sleep(0.01)
            elif event.kind == "tweet":
                got.append(event.entry_id)
        assert got == [missed, after]  # each once, in order, the first one from the live path or the catch-up
        await hub.detach(sub)
    finally:
        await engine.close()


@pytest.mark.parametrize("redis_server", ["cluster"], indirect=True)
async def test_many_sockets_attaching_at_once_are_all_subscribed_without_a_rebuild(redis_server):
    """Concurrent first SSUBSCRIBEs to new nodes: a node connection still being opened is not
    read before it exists (it once made the hub rebuild, and every attaching socket 1013)."""
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": redis_server.url, "FANOUT_IN_PROCESS": "0"}))
    try:
        await engine.start_live()
        hub = engine.live_hub
        before = hub.reconnected.value
        subs = [LiveSubscriber(f"burst{n:03d}", "burst-token", queue_size=8) for n in range(150)]
        await asyncio.gather(*(hub.attach(sub) for sub in subs))
        assert hub.reconnected.value == before and hub.connected.is_set()
        assert len(hub._subscribed) == len(subs)
        for sub in subs:
            await hub.detach(sub)
    finally:
        await engine.close()
