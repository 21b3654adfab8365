"""Search by prefix: GET /tweet/search/{input} over HTTP, and the hashtag index's Lua scripts.

The index tests run the same checks on fakeredis and on the real redis-server, against a
brute-force answer computed in Python.
"""

from __future__ import annotations

import random
from urllib.parse import quote

import fakeredis
import httpx
import pytest
import redis

from realtime.ids import min_id_at
from realtime.search import HashtagIndex, parse_query
from realtime.timelines import Timelines

from .conftest import start_redis
from .support import CONCURRENT_REQUESTS, LOCAL_TLS, TIMEOUT, Api, ServiceProcess, at_most, unique_name, wait_until

# -- helpers ----------------------------------------------------------------------------------


def search(api: Api, text: str, **params) -> httpx.Response:
    """GET /tweet/search/<text>, percent-encoded as a browser's encodeURIComponent would."""
    return api.http.get("/tweet/search/" + quote(text, safe=""), params=params)


def found(api: Api, text: str, **params) -> dict:
    answer = search(api, text, **params)
    assert answer.status_code == 200, (text, answer.text)
    body = answer.json()
    assert set(body) == {"users", "hashtags", "tweets"}, body
    return body


def assert_422(api: Api, text: str, code: str) -> None:
    answer = search(api, text)
    assert answer.status_code == 422, (text, answer.status_code, answer.text)
    assert answer.json()["error"]["code"] == code, (text, answer.text)
    assert answer.json()["error"]["message"]


def prefix(kind: str = "q") -> str:
    """A prefix no other test's names or tags start with: 12 characters, room for 3 more."""
    return unique_name(kind) + "_"


# -- what an input may be ---------------------------------------------------------------------

def test_parse_query_strips_one_marker_and_lowercases():
    assert parse_query("AbC") == parse_query("abc")
    plain, at, tag = parse_query("AbC"), parse_query("@AbC"), parse_query("#AbC")
    assert (plain.prefix, plain.users, plain.hashtags, plain.tweets) == ("abc", True, True, False)
    assert (at.prefix, at.users, at.hashtags, at.tweets) == ("abc", True, False, False)
    assert (tag.prefix, tag.users, tag.hashtags, tag.tweets) == ("abc", False, True, True)


@pytest.mark.parametrize("text, code", [
    (" ", "empty_search"), ("\t\u00a0\u3000", "empty_search"), ("@", "empty_search"), ("#", "empty_search"),
    ("# ", "empty_search"), ("@\t", "empty_search"),
    (" bob", "invalid_search"), ("bob ", "invalid_search"), ("bob\n", "invalid_search"), (" #py", "invalid_search"),
    ("*", "invalid_search"), ("?", "invalid_search"), ("[", "invalid_search"), ("a*", "invalid_search"),
    ("[a-z]", "invalid_search"), ("a?c", "invalid_search"), ("\\*", "invalid_search"), ("^a", "invalid_search"),
    ("-", "invalid_search"), ("+", "invalid_search"), ("(a", "invalid_search"), ("%", "invalid_search"),
    ("a b", "invalid_search"), ("a.b", "invalid_search"), ("a-b", "invalid_search"), ("bob!", "invalid_search"),
    ("@@bob", "invalid_search"), ("##py", "invalid_search"), ("#@py", "invalid_search"), ("b@b", "invalid_search"),
    ("\u00e9clair", "invalid_search"), ("\u540d\u524d", "invalid_search"), ("\uff41\uff42", "invalid_search"),
    ("\u0661\u0662", "invalid_search"), ("emoji\U0001F600", "invalid_search"), ("\u0130", "invalid_search"),
    ("nul\x00", "invalid_search"), ("a\nb", "invalid_search"),
    ("a" * 101, "search_too_long"), ("#" + "a" * 101, "search_too_long"),
])
def test_input_that_cannot_begin_a_username_or_hashtag_is_422_never_a_500(api, text, code):
    assert_422(api, text, code)


def test_glob_characters_are_refused_and_never_match_everything(api):
    base = prefix()
    for suffix in ("aa", "ab"):
        api.sign_in(base + suffix)
    assert found(api, base)["users"] == [base + "aa", base + "ab"]
    for pattern in (base + "*", base[:-1] + "?", base + "[a]a", "*", "?*", "[", "*" + base):
        assert search(api, pattern).status_code == 422, pattern


def test_a_slash_is_not_part_of_an_input_and_an_empty_input_is_no_route(api):
    for path in ("/tweet/search/", "/tweet/search/a/b", "/tweet/search/a%2Fb"):
        answer = api.http.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"]["code"] == "not_found"


def test_whitespace_around_a_prefix_is_refused_too(api):
    base = prefix()
    name = api.sign_in(base + "ws").username
    assert found(api, base)["users"] == [name]
    for text in (f" {base}", f"{base}\t", f"@{base} ", f"{base}\n"):
        assert_422(api, text, "invalid_search")


def test_the_longest_inputs_answer_empty_lists(api):
    assert found(api, "a" * 16)["users"] == []
    assert found(api, "#" + "a" * 100) == {"users": [], "hashtags": [], "tweets": []}
    assert found(api, "@" + "a" * 100) == {"users": [], "hashtags": [], "tweets": []}


# -- users ------------------------------------------------------------------------------------

def test_users_match_case_insensitively_and_are_shown_as_they_chose_them(api):
    base = prefix()
    chosen = [api.sign_in(base + suffix).username for suffix in ("MiX", "low", "UP")]
    assert found(api, base)["users"] == sorted(chosen, key=str.lower)
    assert found(api, base.upper())["users"] == sorted(chosen, key=str.lower)
    assert found(api, "@" + base + "m")["users"] == [base + "MiX"]
    assert found(api, "@" + base.upper() + "MIX")["users"] == [base + "MiX"]
    assert found(api, base + "mixx")["users"] == []


def test_an_at_sign_asks_for_users_only_and_a_hash_for_hashtags_only(api):
    base = prefix()
    user = api.sign_in(base + "u")
    user.post_tweet(f"#{base}tag")
    assert found(api, base) == {"users": [user.username], "hashtags": [f"#{base}tag"], "tweets": []}
    assert found(api, "@" + base) == {"users": [user.username], "hashtags": [], "tweets": []}
    assert found(api, "#" + base)["users"] == []
    assert found(api, "#" + base)["hashtags"] == [f"#{base}tag"]


def test_at_most_ten_users_alphabetically_and_a_longer_prefix_narrows_them(api):
    base = prefix()
    names = [api.sign_in(base + suffix).username for suffix in ["b", "A", "c9", "c1", "D", "e", "F", "g", "h", "I",
                                                              "j", "K"]]
    in_order = sorted(names, key=str.lower)
    assert found(api, base)["users"] == in_order[:10]
    assert found(api, base + "c")["users"] == [base + "c1", base + "c9"]
    assert found(api, base + "k")["users"] == [base + "K"]


@pytest.mark.slow  # 2,100 requests
async def test_a_thousand_users_created_concurrently_are_all_found_by_prefix(service):
    base = prefix()
    names = [f"{base}{n:03d}" for n in range(1000)]
    async with httpx.AsyncClient(base_url=service.url, timeout=TIMEOUT, verify=LOCAL_TLS) as client:
        async def sign_in(name: str) -> str:
            answer = await client.post("/auth/dev", json={"username": name})
            assert answer.status_code == 200, answer.text
            return answer.json()["username"]

        async def users(text: str) -> list[str]:
            answer = await client.get("/tweet/search/" + text)
            assert answer.status_code == 200, answer.text
            return answer.json()["users"]

        assert sorted(await at_most(CONCURRENT_REQUESTS, map(sign_in, names))) == names
        every_one = await at_most(CONCURRENT_REQUESTS, (users(name) for name in names))
        assert all(shown == [name] for name, shown in zip(names, every_one))
        tens = await at_most(CONCURRENT_REQUESTS, (users(f"{base}{n:02d}") for n in range(100)))
        assert all(shown == names[10 * n: 10 * n + 10] for n, shown in enumerate(tens))
        assert await users(base) == names[:10]


# -- hashtags ---------------------------------------------------------------------------------

def test_hashtags_are_ranked_by_use_then_alphabetically_and_at_most_three(api):
    base = prefix("t")
    alice = api.sign_in()
    # tag "a" used 4 times, "b" 3, "c" and "d" 2 (a tie, alphabetical), "e" once.
    for tags in (["a", "b", "c", "d", "e"], ["a", "b", "c", "d"], ["a", "b"], ["a"]):
        alice.post_tweet(" ".join(f"#{base}{tag}" for tag in tags))
    assert found(api, "#" + base)["hashtags"] == [f"#{base}a", f"#{base}b", f"#{base}c"]
    alice.post_tweet(f"#{base}d #{base}e #{base}e")  # one use per tweet: d 3, e 2
    assert found(api, base)["hashtags"] == [f"#{base}a", f"#{base}b", f"#{base}d"]
    alice.post_tweet(f"#{base}d and #{base}E")  # d 4, e 3
    assert found(api, base)["hashtags"] == [f"#{base}a", f"#{base}d", f"#{base}b"]
    alice.post_tweet(f"#{base}d")  # d 5
    assert found(api, base)["hashtags"] == [f"#{base}d", f"#{base}a", f"#{base}b"]
    assert found(api, "#" + base + "E")["hashtags"] == [f"#{base}e"]


def test_the_top_three_of_a_crowded_prefix_follow_the_uses(api):
    """Fifteen tags share the prefix (more than the index keeps per prefix): tag n used n times."""
    base = prefix("t")
    alice = api.sign_in()
    tags = [f"{base}{n:02d}" for n in range(1, 16)]
    for first in range(15):
        alice.post_tweet(" ".join("#" + tag for tag in tags[first:]))
    assert found(api, "#" + base)["hashtags"] == ["#" + tags[14], "#" + tags[13], "#" + tags[12]]
    assert found(api, "#" + base + "0")["hashtags"] == ["#" + tags[8], "#" + tags[7], "#" + tags[6]]
    for _ in range(15):
        alice.post_tweet(f"#{tags[0]}")  # the least used becomes the most used
    assert found(api, "#" + base)["hashtags"] == ["#" + tags[0], "#" + tags[14], "#" + tags[13]]


def test_hashtags_are_found_whatever_case_they_were_written_in_and_shown_lowercase(api):
    base = prefix("t")
    api.sign_in().post_tweet(f"Big news #{base.upper()}CamelCase!")
    for text in (base, base.upper(), "#" + base + "camel", "#" + base.upper() + "CAMELCASE"):
        assert found(api, text)["hashtags"] == [f"#{base}camelcase"], text


def test_only_hashtags_as_the_contract_parses_them_are_counted(api):
    base = prefix("t")
    api.sign_in().post_tweet(f"mail{base}#{base}no #{base}yes-and #{base}{'x' * 101}")
    assert found(api, "#" + base)["hashtags"] == [f"#{base}yes"]


# -- a hashtag's latest tweets ----------------------------------------------------------------

def test_a_hash_input_answers_that_hashtags_latest_tweets_rendered_like_its_timeline(api, fanout_idle):
    base = prefix("t")
    alice, bob = api.sign_in(), api.sign_in()
    posted = [(alice if n % 2 else bob).post_tweet(f"#{base}news number {n}") for n in range(12)]
    alice.post_tweet(f"#{base}newsy is another tag")
    fanout_idle()
    timeline = api.http.get(f"/hashtags/{base}news/tweets", params={"count": 10}).json()["tweets"]
    answer = found(api, f"#{base}news")  # both anonymous: no liked/retweeted flags in either
    assert answer["tweets"] == timeline
    assert [t["id"] for t in answer["tweets"]] == posted[::-1][:10]
    assert answer["hashtags"] == [f"#{base}news", f"#{base}newsy"]
    assert [t["id"] for t in found(api, f"#{base.upper()}NEWS", count=1)["tweets"]] == posted[-1:]
    assert [t["id"] for t in found(api, f"#{base}news", count=100)["tweets"]] == posted[::-1]
    assert found(api, f"#{base}new")["tweets"] == []  # exactly that tag, not a prefix
    assert found(api, f"{base}news")["tweets"] == []  # only with '#'


@pytest.mark.parametrize("count, status, code", [("0", 422, "invalid_count"), ("101", 422, "invalid_count"),
                                                 ("-1", 422, "invalid_count"), ("abc", 400, "wrong_type"),
                                                 ("1.5", 400, "wrong_type"), ("", 400, "wrong_type")])
def test_count_outside_1_to_100_is_422_and_not_a_number_400(api, count, status, code):
    for text in ("#python", "python"):
        answer = search(api, text, count=count)
        assert answer.status_code == status, (text, count, answer.text)
        assert answer.json()["error"]["code"] == code


# -- hashtags that aged out -------------------------------------------------------------------

@pytest.fixture
def short_lived_service(tmp_path):
    """A service on its own Redis whose timelines keep entries for 2 s."""
    server = start_redis(tmp_path / "redis")
    service = ServiceProcess(server.url, timeline_max_age="2s").start(tmp_path)
    yield service, server
    service.stop()
    server.stop()


def test_a_hashtag_whose_tweets_all_aged_out_is_no_longer_suggested_until_used_again(short_lived_service):
    service, server = short_lived_service
    api = Api(service.url)
    alice = api.sign_in()
    base = prefix("t")
    old, new = f"{base}old", f"{base}new"
    for _ in range(3):
        alice.post_tweet(f"#{old}")
    assert found(api, "#" + base)["hashtags"] == ["#" + old]
    wait_until(lambda: found(api, "#" + base)["hashtags"] == [], what="the hashtag to age out")
    assert found(api, "#" + old) == {"users": [], "hashtags": [], "tweets": []}
    with redis.Redis.from_url(server.url, decode_responses=True) as client:
        assert client.zscore("{tags}:names", old) is None, "an aged-out tag stays in the name index"
    alice.post_tweet(f"#{new}")
    assert found(api, base)["hashtags"] == ["#" + new]
    alice.post_tweet(f"#{old} is back")  # its 4th use: ranked above the new one
    assert found(api, base)["hashtags"] == ["#" + old, "#" + new]
    wait_until(lambda: found(api, "#" + base)["hashtags"] == [], what="both hashtags to age out")
    api.http.close()


def test_aged_out_tags_of_a_crowded_prefix_make_way_for_live_ones(short_lived_service):
    service, _ = short_lived_service
    api = Api(service.url)
    alice = api.sign_in()
    base = prefix("t")
    popular = [f"{base}p{n:02d}" for n in range(12)]
    for _ in range(3):
        alice.post_tweet(" ".join("#" + tag for tag in popular))
    assert found(api, base)["hashtags"] == ["#" + tag for tag in popular[:3]]
    wait_until(lambda: found(api, base)["hashtags"] == [], what="the popular tags to age out")
    alice.post_tweet(f"#{base}quiet")
    assert found(api, base)["hashtags"] == [f"#{base}quiet"]
    api.http.close()


# -- the hashtag index on its own: fakeredis and redis-server, against brute force ------------

class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["fakeredis", "redis-server"])
async def index_redis(request, redis_server):
    client = (fakeredis.FakeAsyncRedis(decode_responses=True) if request.param == "fakeredis"
              else await redis_server.async_client())
    yield client
    await client.aclose()


def make_index(client, clock: Clock, keep: int = 4, max_age: float = 100.0) -> HashtagIndex:
    timelines = Timelines(client, max_age=max_age, max_length=800, clock=clock)
    return HashtagIndex(client, timelines, namespace=unique_name("ns"), keep=keep)


def expected_top(uses: dict[str, int], last: dict[str, float], prefix_: str, now: float, max_age: float) -> list:
    oldest_ms = int((now - max_age) * 1000)  # as Timelines.oldest_allowed_id rounds it
    live = [(tag, n) for tag, n in uses.items() if tag.startswith(prefix_) and int(last[tag] * 1000) >= oldest_ms]
    return sorted(live, key=lambda item: (-item[1], item[0]))[:3]


async def test_the_index_answers_the_exact_top_three_of_every_prefix_as_uses_and_ages_change(index_redis):
    """Random uses of tags over a small alphabet (so prefixes are crowded: keep=4 per prefix), with time
    passing so that tags age out and come back; after each round every prefix is checked."""
    rng = random.Random(6)
    clock, max_age = Clock(), 100.0
    index = make_index(index_redis, clock, keep=4, max_age=max_age)
    tags = sorted({"".join(rng.choice("ab_") for _ in range(rng.randint(1, 5))) for _ in range(60)})
    weights = [1 / (rank + 1) for rank in range(len(tags))]
    uses: dict[str, int] = {}
    last: dict[str, float] = {}
    prefixes = sorted({tag[:n] for tag in tags for n in range(1, len(tag) + 1)} | {"ba_b", "c"})
    for _ in range(12):
        for tag in rng.choices(tags, weights, k=40):
            clock.now += rng.uniform(0, 3)
            await index.record([tag], min_id_at(int(clock.now * 1000)))
            uses[tag] = uses.get(tag, 0) + 1
            last[tag] = clock.now
        clock.now += rng.choice([0, 30, 70])
        for p in rng.sample(prefixes, len(prefixes)):
            want = expected_top(uses, last, p, clock.now, max_age)
            assert await index.top(p) == want, (p, clock.now)


async def test_prefix_sets_exist_only_where_more_tags_share_a_prefix_than_are_kept(index_redis):
    clock = Clock()
    index = make_index(index_redis, clock, keep=3)
    for tag in ("abc", "abd", "abe", "abf", "abf", "xyz"):
        await index.record([tag], min_id_at(int(clock.now * 1000)))
    assert [await index_redis.exists(index.top_key(p)) for p in ("a", "ab", "abc", "abf", "x", "xy", "xyz")] == [
        1, 1, 0, 0, 0, 0, 0]
    assert await index_redis.zcard(index.top_key("ab")) == 3
    assert await index.top("ab") == [("abf", 2), ("abc", 1), ("abd", 1)]
    assert await index.top("abe") == [("abe", 1)]


async def test_a_pushed_out_tag_comes_back_when_the_tags_above_it_age_out(index_redis):
    clock, max_age = Clock(), 100.0
    index = make_index(index_redis, clock, keep=3, max_age=max_age)
    now_id = lambda: min_id_at(int(clock.now * 1000))  # noqa: E731
    await index.record(["kquiet"], now_id())
    clock.now += 50
    for tag in ("ka", "kb", "kc", "kd"):
        for _ in range(5):
            await index.record([tag], now_id())
    assert await index.top("k") == [("ka", 5), ("kb", 5), ("kc", 5)]
    clock.now += 60  # kquiet aged out; the others are 60 s old
    await index.record(["kslow"], now_id())  # pushed out of "k"'s set of 3 at once
    assert await index.top("k") == [("ka", 5), ("kb", 5), ("kc", 5)]
    clock.now += 50  # all but kslow aged out
    assert await index.top("k") == [("kslow", 1)]
    assert await index.top("ks") == [("kslow", 1)]
    assert await index.top("kq") == []


async def test_a_tweets_uses_are_counted_once_however_often_its_counting_is_run_again(index_redis):
    clock = Clock()
    index = make_index(index_redis, clock, keep=3)
    tweet_id = min_id_at(int(clock.now * 1000))
    for _ in range(3):  # a worker re-running the tweet's counting after a crash before its mark
        pipe = index_redis.pipeline(transaction=False)
        await index.queue_record(pipe, [("once", 1, tweet_id), ("twice", 1, tweet_id)], tweet_id=tweet_id)
        await pipe.execute()
    assert await index.top("once") == [("once", 1)] and await index.top("twice") == [("twice", 1)]
    pipe = index_redis.pipeline(transaction=False)
    await index.queue_record(pipe, [("once", 1, tweet_id + 1)], tweet_id=tweet_id + 1)  # another tweet counts
    await pipe.execute()
    assert await index.top("once") == [("once", 2)]


def test_a_hashtag_search_right_after_the_201_finds_the_tweet_before_its_fan_out_runs(api):
    base = prefix("t")
    alice = api.sign_in()
    for n in range(5):  # the request writes the hashtag's timeline itself; no waiting on the worker
        tweet_id = alice.post_tweet(f"fresh #{base}now {n}")
        assert [t["id"] for t in found(api, f"#{base}now", count=1)["tweets"]] == [tweet_id]
