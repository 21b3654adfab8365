"""Hybrid fan-out (realtime.hot_fanout): a hot account's tweets are merged into its followers'
home timelines when read, and reach their sockets live, exactly once, without a write per
follower. A service with FANOUT_HOT_FOLLOWERS=3 on each backend: three followers make an
account hot, fewer than two (90% of three) make it cool again."""

from __future__ import annotations

import pytest

from realtime import keys
from realtime.config import Settings
from realtime.engine import Engine
from realtime.fanout import FanoutJob
from realtime.live_protocol import LiveEvent, hot_follow_frame, tweet_frame

from .conftest import FanoutIdle, start_redis
from .support import Api, LiveClient, ServiceProcess

THRESHOLD = 3


@pytest.fixture(scope="module")
def hot_backend(redis_server, started):
    """A Redis (or cluster) of its own: the shared service's fan-out workers would run these
    jobs with the shared threshold."""
    return started.private_backend(redis_server.name)


@pytest.fixture(scope="module")
def hot_service(hot_backend, tmp_path_factory):
    service = ServiceProcess(hot_backend.url, fanout_hot_followers=str(THRESHOLD)).start(
        tmp_path_factory.mktemp("hot"))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def redis_sync(hot_backend):
    client = hot_backend.client()
    yield client
    client.close()


@pytest.fixture
def fanout_idle(redis_sync) -> FanoutIdle:
    return FanoutIdle(redis_sync)


@pytest.fixture
async def hot_api(hot_service):
    client = Api(hot_service.url)
    yield client
    await client.aclose()


async def _account_with_followers(api, count):
    star = await api.aio_sign_in()
    fans = [await api.aio_sign_in() for _ in range(count)]
    for fan in fans:
        await fan.aio.follow(star)
    return star, fans


def _lower(user) -> str:
    return user.username.lower()


async def test_a_hot_accounts_tweets_are_merged_into_home_timelines_not_pushed(hot_api, redis_sync, fanout_idle):
    star, fans = await _account_with_followers(hot_api, THRESHOLD)
    first = await star.aio.post_tweet("the first, which makes me hot")
    second = await star.aio.post_tweet("the second")
    await fanout_idle.wait()
    assert redis_sync.hget(keys.user(_lower(star)), keys.FANOUT_STATE) == "hot"
    for fan in fans:
        assert await fan.aio.home_ids() == [second, first]
        assert redis_sync.lrange(keys.home_timeline(_lower(fan)), 0, -1) == []  # nothing written per follower
        assert redis_sync.zscore(keys.hot_follows(_lower(fan)), _lower(star)) is not None
    assert await star.aio.home_ids() == [second, first]  # the author's own home, as ever


async def test_crossing_the_threshold_both_ways_loses_and_doubles_nothing(hot_api, redis_sync, fanout_idle):
    star, fans = await _account_with_followers(hot_api, THRESHOLD - 1)
    pushed = await star.aio.post_tweet("pushed: two followers")
    late_fan = await hot_api.aio_sign_in()
    await late_fan.aio.follow(star)
    hot = [await star.aio.post_tweet(f"hot {n}") for n in range(2)]
    await fanout_idle.wait()
    assert redis_sync.hget(keys.user(_lower(star)), keys.FANOUT_STATE) == "hot"
    for fan in fans:
        assert await fan.aio.home_ids() == [*reversed(hot), pushed]
    assert (await late_fan.aio.home_ids())[:2] == list(reversed(hot))
    await late_fan.aio.unfollow(star)
    await fans[1].aio.unfollow(star)  # one follower left: below 90% of the threshold
    cooled = await star.aio.post_tweet("pushed again")
    await fanout_idle.wait()
    assert redis_sync.hget(keys.user(_lower(star)), keys.FANOUT_STATE).startswith("cooled:")
    assert redis_sync.lrange(keys.home_timeline(_lower(fans[0])), 0, 0) == [cooled]
    # The tweets posted while hot are in no home timeline: still merged for the follower who stayed.
    assert await fans[0].aio.home_ids() == [cooled, *reversed(hot), pushed]
    assert await late_fan.aio.home_ids() == []  # unfollowed: the account's tweets leave the merge


async def test_merged_pages_walk_newest_first_without_gaps_or_repeats(hot_api, fanout_idle):
    star, (fan, *_) = await _account_with_followers(hot_api, THRESHOLD)
    friend = await hot_api.aio_sign_in()
    await fan.aio.follow(friend)
    posted = []
    for n in range(4):
        posted.append(await star.aio.post_tweet(f"star {n}"))
        posted.append(await friend.aio.post_tweet(f"friend {n}"))
    await fanout_idle.wait()
    seen, before = [], None
    while True:
        params = {"count": 3, **({"before": before} if before else {})}
        page = (await fan.aio.request("GET", "/timelines/home", params=params)).json()
        seen += [tweet["id"] for tweet in page["tweets"]]
        if not page["next"]:
            break
        before = page["next"]
    assert seen == sorted(posted, key=int, reverse=True)


async def test_a_hot_tweet_reaches_each_connected_follower_once(hot_api, hot_service, fanout_idle):
    star, (fan, mentioned, other) = await _account_with_followers(hot_api, THRESHOLD)
    await star.aio.post_tweet("warming up")  # the job that makes the account hot
    await fanout_idle.wait()
    async with LiveClient(hot_service.url, fan.token) as fan_live, \
            LiveClient(hot_service.url, mentioned.token) as mentioned_live, \
            LiveClient(hot_service.url, star.token) as own_live:
        tweet_id = await star.aio.post_tweet(f"hello @{mentioned.username}")
        assert await fan_live.next_tweet_id() == tweet_id
        assert await mentioned_live.next_tweet_id() == tweet_id  # pushed as a mention, not sent twice
        assert await own_live.next_tweet_id() == tweet_id
        await fanout_idle.wait()
        sentinel = await other.aio.post_tweet(f"sentinel @{fan.username} @{mentioned.username} @{star.username}")
        for live in (fan_live, mentioned_live, own_live):
            assert await live.next_tweet_id() == sentinel  # nothing else arrived before it


async def test_a_follow_made_while_connected_hears_the_next_hot_tweet(hot_api, hot_service, fanout_idle):
    star, _ = await _account_with_followers(hot_api, THRESHOLD)
    await star.aio.post_tweet("warming up")
    await fanout_idle.wait()
    newcomer = await hot_api.aio_sign_in()
    async with LiveClient(hot_service.url, newcomer.token) as live:
        await newcomer.aio.follow(star)
        tweet_id = await star.aio.post_tweet("for my new follower")
        assert await live.next_tweet_id() == tweet_id
        await newcomer.aio.unfollow(star)
        await star.aio.post_tweet("not for them any more")
        await fanout_idle.wait()
        sentinel = await newcomer.aio.post_tweet("sentinel")
        assert await live.next_tweet_id() == sentinel


async def test_a_hot_accounts_deletes_go_live_and_are_replayed(hot_api, hot_service, fanout_idle):
    star, (fan, *_) = await _account_with_followers(hot_api, THRESHOLD)
    held = [await star.aio.post_tweet(f"held {n}") for n in range(3)]
    await fanout_idle.wait()
    async with LiveClient(hot_service.url, fan.token) as live:
        await star.aio.delete_tweet(held[0])
        assert await live.next_frame() == {"type": "delete", "id": held[0]}
    await star.aio.delete_tweet(held[1])
    missed = await star.aio.post_tweet("missed")
    await fanout_idle.wait()
    async with LiveClient(hot_service.url, fan.token, since=held[2]) as again:
        # Every delete made after `since` arrived, as for a home timeline's own entries.
        assert [frame["type"] for frame in again.replayed] == ["tweet", "delete", "delete"]
        assert again.replayed[0]["tweet"]["id"] == missed
        assert again.replayed[1:] == [{"type": "delete", "id": held[0]}, {"type": "delete", "id": held[1]}]
    assert await fan.aio.home_ids() == [missed, held[2]]


async def test_reconnecting_with_since_replays_the_merged_timeline_oldest_first(hot_api, hot_service, fanout_idle):
    star, (fan, *_) = await _account_with_followers(hot_api, THRESHOLD)
    friend = await hot_api.aio_sign_in()
    await fan.aio.follow(friend)
    seen = await friend.aio.post_tweet("seen")
    await fanout_idle.wait()
    missed = []
    for n in range(2):
        missed.append(await star.aio.post_tweet(f"hot {n}"))
        missed.append(await friend.aio.post_tweet(f"pushed {n}"))
    await fanout_idle.wait()
    async with LiveClient(hot_service.url, fan.token, since=seen) as again:
        assert [frame["tweet"]["id"] for frame in again.replayed] == missed
    async with LiveClient(hot_service.url, fan.token) as fresh:  # since null: the whole timeline
        assert [frame["tweet"]["id"] for frame in fresh.replayed] == [seen, *missed]


# -- the worker's decisions and the hub's memory, on an engine in this process -------------

@pytest.fixture
async def engine(tmp_path):
    server = start_redis(tmp_path / "redis")
    engine = await Engine.open(Settings.load(environ={
        "REDIS_URL": server.url, "FANOUT_IN_PROCESS": "0", "FANOUT_HOT_FOLLOWERS": str(THRESHOLD),
        "FANOUT_BATCH_SIZE": "2"}))
    await engine.users.create("star")
    yield engine
    await engine.close()
    server.stop()


async def _read_job(engine, worker) -> FanoutJob:
    tag = engine.fanout_queue.tag_of("star")
    [(_, [(entry_id, fields)])] = await engine.redis.xreadgroup(
        keys.FANOUT_GROUP, worker.consumer, {keys.fanout_stream(tag): ">"}, count=1)
    return FanoutJob(tag, entry_id, fields)


async def _homes(engine, names) -> dict[str, list[str]]:
    return {name: await engine.redis.lrange(keys.home_timeline(name), 0, -1) for name in names}


async def test_a_warm_cut_short_is_resumed_and_every_follower_merges_the_account(engine, monkeypatch):
    fans = [f"fan{n}" for n in range(5)]
    await engine.redis.zadd(keys.followers("star"), dict.fromkeys(fans, 0))
    tweet_id = await engine.tweets.post("star", "the one that warms")
    worker = engine.new_fanout_worker([engine.fanout_queue.tag_of("star")])
    job = await _read_job(engine, worker)
    real_add, calls = engine.hot_fanout.add_followers, []

    async def dies_on_the_second_batch(author, names, from_id):
        calls.append(list(names))
        if len(calls) == 2:
            raise ConnectionError("killed half way through the followers")
        await real_add(author, names, from_id)

    monkeypatch.setattr(engine.hot_fanout, "add_followers", dies_on_the_second_batch)
    with pytest.raises(ConnectionError):
        await worker.run_job(job, resumed=False)
    assert await engine.redis.hget(keys.user("star"), keys.FANOUT_STATE) == "warming"
    monkeypatch.setattr(engine.hot_fanout, "add_followers", real_add)
    await worker.run_job(job, resumed=True)  # as a takeover would: on from the last mark
    assert await engine.redis.hget(keys.user("star"), keys.FANOUT_STATE) == "hot"
    for fan in fans:
        assert await engine.redis.zscore(keys.hot_follows(fan), "star") is not None, fan
    assert await _homes(engine, fans) == {fan: [] for fan in fans}
    assert await engine.redis.lrange(engine.timelines.hot_timeline("star"), 0, -1) == [str(tweet_id)]


async def test_a_rerun_that_may_have_pushed_pushes_again_and_does_not_turn_hot(engine):
    fans = ["fan0", "fan1"]
    await engine.redis.zadd(keys.followers("star"), dict.fromkeys(fans, 0))
    tweet_id = await engine.tweets.post("star", "pushed to two")
    worker = engine.new_fanout_worker([engine.fanout_queue.tag_of("star")])
    job = await _read_job(engine, worker)
    await worker.run_job(job, resumed=False)
    await engine.redis.zadd(keys.followers("star"), {"fan2": 0, "fan3": 0})  # over the threshold now
    await worker.run_job(job, resumed=True)  # the worker died before finishing the job, say
    assert await engine.redis.hget(keys.user("star"), keys.FANOUT_STATE) is None
    assert await _homes(engine, fans) == {fan: [str(tweet_id)] for fan in fans}
    assert await engine.redis.llen(engine.timelines.hot_timeline("star")) == 0
    await engine.tweets.post("star", "the next one warms")
    await worker.run_job(await _read_job(engine, worker), resumed=False)
    assert await engine.redis.hget(keys.user("star"), keys.FANOUT_STATE) == "hot"


async def test_a_follow_heard_after_the_accounts_tweet_is_sent_it_from_the_hubs_memory(engine):
    follows = engine.live_hub.hot_follows
    await follows.load(["bob"])
    tweet = LiveEvent(tweet_frame({"id": "900", "from": "star", "timestamp": 1.0, "content": "x"}))
    assert follows.recipients("star", frozenset({"star"}), tweet) == []  # heard before the follow
    assert follows.changed("bob", LiveEvent(hot_follow_frame("star", 900))) == [tweet]
    assert follows.changed("bob", LiveEvent(hot_follow_frame("star", 800))) == []  # followed already
    assert follows.recipients("star", frozenset({"star"}), tweet) == ["bob"]
    assert follows.recipients("star", frozenset({"star", "bob"}), tweet) == []  # mentioned: pushed to bob
    follows.changed("bob", LiveEvent(hot_follow_frame("star", None)))
    assert follows.recipients("star", frozenset(), tweet) == []
    later = LiveEvent(tweet_frame({"id": "1000", "from": "star", "timestamp": 2.0, "content": "y"}))
    follows.recipients("star", frozenset(), later)
    assert follows.changed("bob", LiveEvent(hot_follow_frame("star", 950))) == [later]  # not the older one
