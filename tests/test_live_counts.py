"""Live counts (docs/API.md, ``watch`` and ``counts``): a socket watches the tweets it shows
and hears their like and retweet counts change, at most once a second per tweet, the last one
final. Real uvicorn, real websockets clients, real Redis and Redis Cluster; the coalescing on
its own with a short interval."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from realtime import keys
from realtime.redis_client import execute_scripted, queue_script
from realtime.watches import CountWatches

from .support import LiveClient


async def next_counts(live: LiveClient) -> dict:
    frame = await live.next_frame()
    while frame["type"] == "tweet":  # a retweet enters the retweeter's followers' timelines, not ours
        frame = await live.next_frame()
    assert frame["type"] == "counts", frame
    return frame


async def test_a_watched_tweets_likes_and_retweets_arrive_live(api, service):
    alice, bob, carol = await api.aio_sign_in(), await api.aio_sign_in(), await api.aio_sign_in()
    tweet_id = await alice.aio.post_tweet("count me")
    async with LiveClient(service.url, carol.token) as live:
        await live.send({"type": "watch", "ids": [tweet_id]})
        await live.send({"type": "ping"})  # the watch is recorded before the pong answers
        assert (await live.next_frame())["type"] == "pong"
        assert (await bob.aio.request("PUT", f"/tweets/{tweet_id}/like")).status_code == 204
        assert await next_counts(live) == {"type": "counts", "id": tweet_id, "likes": 1, "retweets": 0}
        assert (await bob.aio.request("PUT", f"/tweets/{tweet_id}/retweet")).status_code == 204
        assert await next_counts(live) == {"type": "counts", "id": tweet_id, "likes": 1, "retweets": 1}


async def test_each_watch_frame_replaces_the_set(api, service):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    first, second = await alice.aio.post_tweet("first"), await alice.aio.post_tweet("second")
    async with LiveClient(service.url, bob.token) as live:
        await live.send({"type": "watch", "ids": [first]})
        await live.send({"type": "watch", "ids": [second]})
        await live.send({"type": "ping"})
        assert (await live.next_frame())["type"] == "pong"
        assert (await bob.aio.request("PUT", f"/tweets/{first}/like")).status_code == 204
        assert (await bob.aio.request("PUT", f"/tweets/{second}/like")).status_code == 204
        assert (await next_counts(live))["id"] == second, "the first is no longer watched"


@pytest.mark.parametrize("frame", [
    {"type": "watch"}, {"type": "watch", "ids": "1"}, {"type": "watch", "ids": [1]},
    {"type": "watch", "ids": ["12a"]}, {"type": "watch", "ids": [str(n) for n in range(1, 102)]}])
async def test_a_malformed_watch_frame_closes_4400(api, service, frame):
    user = await api.aio_sign_in()
    async with LiveClient(service.url, user.token) as live:
        await live.send(frame)
        assert await live.close_code() == 4400


class Watcher:
    """A stand-in subscriber: what it was offered, and an event per offer."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.offered = asyncio.Event()

    def offer(self, event) -> None:
        self.frames.append(event.frame)
        self.offered.set()

    async def next(self) -> str:
        await asyncio.wait_for(self.offered.wait(), 5)
        self.offered.clear()
        return self.frames[-1]


def counts(likes: int, version: int) -> str:
    return '{"type":"counts","id":"7","likes":%d,"retweets":0,"v":%d}' % (likes, version)


async def test_counts_go_out_at_once_then_at_most_one_per_interval_the_newest_last():
    watches = CountWatches(fakeredis.FakeAsyncRedis(decode_responses=True), "p", lease_ms=60_000, interval=0.2)
    watcher = Watcher()
    await watches.watch(watcher, [7])
    loop = asyncio.get_running_loop()
    started = loop.time()
    watches.deliver(counts(1, 1))
    assert '"likes":1' in await watcher.next() and '"v"' not in watcher.frames[0]
    for likes in range(2, 6):
        watches.deliver(counts(likes, likes))
    watches.deliver(counts(3, 3))  # older than one heard: dropped
    assert '"likes":5' in await watcher.next()
    assert loop.time() - started >= 0.2 - 0.01 and len(watcher.frames) == 2
    watches.deliver(counts(4, 4))  # a version older than one sent
    watches.forget(watcher)
    watches.deliver(counts(6, 6))  # nobody watches it any more
    assert len(watcher.frames) == 2 and watches.watched == 0


async def test_watch_frames_sent_in_a_burst_are_folded_into_the_last_one(api, service, redis_sync):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    tweets = [await alice.aio.post_tweet(f"burst {n}") for n in range(6)]
    async with LiveClient(service.url, bob.token) as live:
        for tweet_id in tweets:
            await live.send({"type": "watch", "ids": [tweet_id]})
        await live.send({"type": "ping"})  # answered once the last watch holds
        assert (await live.next_frame())["type"] == "pong"
        leased = [bool(redis_sync.exists(keys.count_watchers(tweet_id))) for tweet_id in tweets]
        assert leased[0] and leased[-1], "the first at once, the last when its time was up"
        assert not any(leased[1:-1]), "the ones in between were never applied"
        assert (await bob.aio.request("PUT", f"/tweets/{tweets[-1]}/like")).status_code == 204
        assert (await next_counts(live))["id"] == tweets[-1]


async def test_a_changes_counts_are_read_after_it_even_where_redis_had_lost_the_changes_script(redis_server):
    """A like and the read of its counts share a pipeline. Where the node has lost the like's
    script but not the read's (a new master after a failover has none until first used), the
    read runs again after the like instead of answering the counts from before it."""
    client = await redis_server.async_client()
    try:
        change = client.register_script("return redis.call('HINCRBY', KEYS[1], 'likes', 1)")
        read = client.register_script("return redis.call('HGET', KEYS[1], 'likes')")
        key = keys.tweet(987654321)
        await client.delete(key)
        await client.script_flush()
        await client.script_load(read.script)
        answers = []
        for _ in range(2):  # the second time both are loaded: nothing runs twice
            pipe = client.pipeline(transaction=False)
            await queue_script(pipe, change, [key], [])
            await queue_script(pipe, read, [key], [], reads_earlier=True)
            answers.append(await execute_scripted(pipe))
        assert answers == [[1, "1"], [2, "2"]]
    finally:
        await client.delete(keys.tweet(987654321))
        await client.aclose()
