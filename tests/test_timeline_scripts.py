"""The timeline Lua scripts on fakeredis (with Lua): dedupe, order, age trim, cap, TTL, publish."""

from __future__ import annotations

import asyncio
import time

import fakeredis
import pytest

from realtime import keys
from realtime.ids import IdGenerator
from realtime.scripts import TRIM_EVERY
from realtime.timelines import FULL_DEDUPE, Timelines

DAY = 86400.0
HOME = keys.home_timeline("a")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis():
    return fakeredis.FakeAsyncRedis(decode_responses=True)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def timelines(redis, clock):
    return Timelines(redis, max_age=30 * DAY, max_length=5, clock=clock)


def mint(clock: Clock, count: int, worker: int = 0) -> list[int]:
    ids = IdGenerator(worker, clock=clock)
    return [ids.next_id() for _ in range(count)]


async def test_a_repeated_push_adds_nothing(redis, timelines, clock):
    [tweet] = mint(clock, 1)
    assert await timelines.push(["tl:{a}"], tweet) == 1
    assert await timelines.push(["tl:{a}"], tweet) == 0
    assert await redis.lrange("tl:{a}", 0, -1) == [str(tweet)]


async def test_a_full_dedupe_finds_an_entry_beyond_the_recent_window(redis, clock):
    timelines = Timelines(redis, max_age=30 * DAY, max_length=800, clock=clock)
    first, *later = mint(clock, 80)
    for tweet in [first, *later]:
        await timelines.push(["tl:{a}"], tweet)
    assert await timelines.push(["tl:{a}"], first, dedupe_window=FULL_DEDUPE) == 0
    assert (await redis.lrange("tl:{a}", 0, -1)).count(str(first)) == 1


async def test_out_of_order_pushes_keep_arrival_order_and_pages_sort_by_id(redis, timelines, clock):
    early, late = mint(clock, 2)
    await timelines.push([HOME], late)
    await timelines.push([HOME], early)  # a slow fan-out finishing after a fast one
    assert await redis.lrange(HOME, 0, -1) == [str(early), str(late)]
    assert await timelines.ids_before(HOME) == [late, early]
    assert await timelines.ids_before(HOME, before=late) == [early]
    # Replay finds the late arrival by position although its id is smaller than `since`.
    assert await timelines.changes_after("a", late) == ([early], [])


async def test_the_length_is_capped_for_reads_at_once_and_in_redis_every_trim_every_pushes(redis, timelines, clock):
    tweets = mint(clock, TRIM_EVERY + 8)
    for tweet in tweets[:8]:
        await timelines.push([HOME], tweet)
    assert await timelines.ids_before(HOME) == tweets[8 - 1::-1][:5]
    assert await redis.llen(HOME) == 8  # not trimmed yet: no RPOP on every push
    for tweet in tweets[8:]:
        await timelines.push([HOME], tweet)
    assert 5 <= await redis.llen(HOME) < 5 + TRIM_EVERY
    assert await timelines.ids_before(HOME) == tweets[::-1][:5]
    assert [int(i) for i in await redis.lrange(HOME, 0, 4)] == tweets[::-1][:5]


async def test_entries_older_than_the_age_limit_leave_the_tail_at_the_next_trim(redis, clock):
    timelines = Timelines(redis, max_age=30 * DAY, max_length=800, clock=clock)
    old = mint(clock, 3)
    for tweet in old:
        await timelines.push(["tl:{a}"], tweet)
    clock.now += 31 * DAY
    new = mint(clock, TRIM_EVERY - 3)
    for tweet in new:
        await timelines.push(["tl:{a}"], tweet)
    assert [int(i) for i in await redis.lrange("tl:{a}", 0, -1)] == new[::-1]


async def test_reads_never_answer_entries_past_the_age_limit_even_before_a_trim(redis, timelines, clock):
    [old] = mint(clock, 1)
    await timelines.push([HOME], old)
    clock.now += 20 * DAY
    [young] = mint(clock, 1)
    await timelines.push([HOME], young)
    clock.now += 11 * DAY  # old is now 31 days old, young 11: no push has trimmed yet
    assert len(await redis.lrange(HOME, 0, -1)) == 2
    assert await timelines.ids_before(HOME) == [young]
    assert await timelines.changes_after("a", None) == ([young], [])


async def test_a_push_sets_the_ttl_to_the_age_limit_and_a_sixteenth(redis, timelines, clock):
    await timelines.push(["tl:{a}"], mint(clock, 1)[0])
    assert 31.8 * DAY < await redis.ttl("tl:{a}") <= 30 * DAY * 17 / 16


async def test_a_push_told_not_to_refresh_leaves_an_existing_ttl_and_sets_a_new_lists(redis, timelines, clock):
    first, second = mint(clock, 2)
    await timelines.push(["tl:{a}"], first)
    await redis.expire("tl:{a}", 3600)
    await timelines.push(["tl:{a}", "tl:{b}"], second, refresh_ttl=False)
    assert await redis.lrange("tl:{a}", 0, -1) == [str(second), str(first)]
    assert 3500 < await redis.ttl("tl:{a}") <= 3600
    assert await redis.ttl("tl:{b}") > 30 * DAY


async def lease(redis, user: str, process: str, seconds: float = 60) -> None:
    """Say that ``process`` holds a live socket of ``user``, as LiveHub does."""
    until = int((time.time() + seconds) * 1000)
    await redis.zadd(keys.live_presence(user), {process: until})
    await redis.zadd(keys.LIVE_ONLINE, {user: until})


async def listen(redis, *processes: str):
    pubsub = redis.pubsub()
    await pubsub.subscribe(*(keys.process_channel(p) for p in processes))
    for _ in processes:
        await pubsub.get_message(timeout=1)  # subscribe confirmations
    return pubsub


async def received(pubsub) -> dict[str, list[str]]:
    """Every message waiting, by process channel."""
    messages: dict[str, list[str]] = {}
    while (message := await pubsub.get_message(timeout=0.05)) is not None:
        messages.setdefault(message["channel"].removeprefix(keys.process_channel("")), []).append(message["data"])
    return messages


async def test_a_push_sends_one_message_per_process_naming_the_home_timelines_that_gained_the_entry(redis, timelines, clock):
    await lease(redis, "a", "p1")
    await lease(redis, "b", "p1")
    await lease(redis, "b", "p2")
    await lease(redis, "c", "p1", seconds=-1)  # lapsed: p1 died holding c
    pubsub = await listen(redis, "p1", "p2")
    first, _ = mint(clock, 2)
    await timelines.push([keys.home_timeline("a")], first)
    home = [keys.home_timeline(name) for name in ("a", "b", "c", "d")]
    added = await timelines.push([*home, keys.user_timeline("b")], first, message="hello")
    assert added == 4  # b, c, d and b's user timeline: a had it already
    assert await received(pubsub) == {"p1": ["b\nhello"], "p2": ["b\nhello"]}
    await pubsub.aclose()


async def test_one_message_names_every_recipient_on_the_process(redis, timelines, clock):
    for name in ("a", "b", "c"):
        await lease(redis, name, "p1")
    pubsub = await listen(redis, "p1")
    [entry] = mint(clock, 1)
    await timelines.push([keys.home_timeline(name) for name in ("a", "b", "c")], entry, message="hi")
    assert await received(pubsub) == {"p1": ["a b c\nhi"]}
    await pubsub.aclose()


async def test_remove_takes_the_entry_out_and_publishes_once(redis, timelines, clock):
    await lease(redis, "a", "p1")
    pubsub = await listen(redis, "p1")
    first, second = mint(clock, 2)
    home = keys.home_timeline("a")
    await timelines.push([home], first)
    await timelines.push([home], second)
    assert await timelines.remove([home], first, message="gone") == 1
    assert await timelines.remove([home], first, message="gone") == 0
    assert await redis.lrange(home, 0, -1) == [str(second)]
    assert await received(pubsub) == {"p1": ["a\ngone"]}
    await pubsub.aclose()


async def test_concurrent_pushes_of_the_same_entry_add_it_once(redis, timelines, clock):
    [tweet] = mint(clock, 1)
    results = await asyncio.gather(*(timelines.push(["tl:{a}"], tweet) for _ in range(20)))
    assert sum(results) == 1


async def test_a_delete_is_replayed_when_the_timeline_had_reached_since_as_it_happened(redis, timelines):
    a, b, c, d = mint(Clock(), 4)
    for tweet in (a, b, c):
        await timelines.push([HOME], tweet)
    assert await timelines.remove([HOME], a) == 1  # the newest was then c
    assert await timelines.changes_after("a", b) == ([c], [a])
    assert await timelines.changes_after("a", c) == ([], [a])  # maybe after the client saw c
    await timelines.push([HOME], d)
    assert await timelines.changes_after("a", d) == ([], [])  # d arrived after the delete
    assert await timelines.changes_after("a", None) == ([b, c, d], [])  # holds nothing


async def test_a_delete_whose_place_is_gone_is_replayed_by_time(redis, timelines, clock):
    [early] = mint(clock, 1)
    await timelines.push([HOME], early)
    await timelines.remove([HOME], early)  # empties the list
    clock.now += 60
    since, newest = mint(clock, 2)
    await timelines.push([HOME], since)
    assert await timelines.changes_after("a", since) == ([], [])  # the list was empty: before since
    await timelines.push([HOME], newest)
    await timelines.remove([HOME], since)
    await timelines.remove([HOME], newest)
    # since has left the list: by time, only the deletes from around since and later
    assert await timelines.changes_after("a", since) == ([], [since, newest])


async def test_the_record_of_deletes_is_kept_for_home_timelines_only_capped_and_aged(redis, timelines, clock):
    tweets = mint(clock, 8)
    for tweet in tweets:
        await timelines.push([HOME, "tl:user:{a}"], tweet)
        await timelines.remove([HOME, "tl:user:{a}"], tweet)
    assert await redis.llen(keys.home_deletes("a")) == timelines.max_length
    assert 29 * DAY < await redis.ttl(keys.home_deletes("a")) <= 30 * DAY
    assert await redis.keys("tl:gone:*") == [keys.home_deletes("a")]
