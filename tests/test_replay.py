"""ReplayCache: events rendered in the last seconds are shared; older ones are read again."""

from __future__ import annotations

from realtime.live_protocol import LiveEvent, tweet_frame
from realtime.replay import ReplayCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def event(tweet_id: int, retweet_id: int | None = None) -> LiveEvent:
    tweet = {"id": str(tweet_id), "timestamp": 1.0, **({"retweet_id": str(retweet_id)} if retweet_id else {})}
    return LiveEvent.of_tweet(tweet)


def test_an_event_is_served_until_its_ttl_then_read_again():
    clock = Clock()
    cache = ReplayCache(ttl=2.0, clock=clock)
    cache.put(event(1))
    clock.now += 1.9
    assert cache.get(1).entry_id == 1
    clock.now += 0.2
    assert cache.get(1) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_retweet_is_kept_under_its_own_entry_id():
    cache = ReplayCache(clock=Clock())
    cache.put(event(1, retweet_id=7))
    assert cache.get(1) is None and cache.get(7).entry_id == 7


def test_the_oldest_entries_leave_first_when_full():
    cache = ReplayCache(max_entries=3, clock=Clock())
    for tweet_id in (1, 2, 3):
        cache.put(event(tweet_id))
    cache.put(event(1))  # put again: now the youngest
    cache.put(event(4))
    assert [tweet_id for tweet_id in (1, 2, 3, 4) if cache.get(tweet_id)] == [1, 3, 4]


def test_of_tweet_matches_parsing_the_frame():
    tweet = {"id": "5", "timestamp": 12.5, "retweet_id": "9"}
    built, parsed = LiveEvent.of_tweet(tweet), LiveEvent(tweet_frame(tweet))
    assert [getattr(built, name) for name in LiveEvent.__slots__] == [getattr(parsed, name) for name in LiveEvent.__slots__]


async def test_a_second_replay_of_the_same_tweets_reads_none_of_them_again(redis_server):
    from realtime.config import Settings
    from realtime.engine import Engine

    engine = await Engine.open(Settings.load(environ={"REDIS_URL": redis_server.url, "FANOUT_IN_PROCESS": "0"}))
    try:
        await engine.users.create("cachewriter")
        ids = [await engine.tweets.post("cachewriter", f"tweet {n}") for n in range(3)]
        first = await engine.replay.events_after("cachewriter", None, None)
        assert [event.entry_id for event in first] == ids  # oldest first
        misses = engine.replay.cache.misses
        second = await engine.replay.events_after("cachewriter", ids[0], None)
        assert [event.entry_id for event in second] == ids[1:]
        assert engine.replay.cache.misses == misses and [e.frame for e in second] == [e.frame for e in first[1:]]
    finally:
        await engine.close()
