"""Abuse limits: per-user posting, following and liking, per-address sign-in, live sockets per
user; all kept in Redis, so they hold across server processes. Real uvicorn, real Redis."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest

from realtime import keys
from realtime.config import RateLimit, Settings, SettingsError
from realtime.errors import RateLimited
from realtime.rate_limits import RateLimits

from .support import LOCAL_TLS, TIMEOUT, Api, LiveClient, ServiceProcess, User, eventually, unique_name
from .test_api_errors import assert_error

LIMITS = {"rate_limits": "on", "rate_limit_posts": "3/1m", "rate_limit_follows": "2/1m",
          "rate_limit_likes": "2/1m", "rate_limit_signin": "3/1m",
          # Each test signs in from addresses of its own, named in this header (as a proxy would).
          "client_ip_header": "X-Test-Client"}

_addresses = itertools.count(1)


def new_address() -> str:
    n = next(_addresses)
    return f"10.{(time.time_ns() >> 20) % 250}.{n // 250}.{n % 250}"


@pytest.fixture(scope="module")
def limited(redis_server, tmp_path_factory):
    """Two server processes on one Redis, each with the same small limits."""
    log_dir = tmp_path_factory.mktemp("limits")
    first = ServiceProcess(redis_server.url, **LIMITS).start(log_dir)
    second = ServiceProcess(redis_server.url, **LIMITS).start(log_dir)
    yield first, second
    first.stop()
    second.stop()


def sign_in(service: ServiceProcess, address: str | None = None) -> User:
    """A new user, signed in from an address of its own."""
    api = Api(service.url)
    api.http.headers["X-Test-Client"] = address or new_address()
    return api.sign_in()


def on(service: ServiceProcess, user: User) -> User:
    """``user``'s session, spoken to through ``service``."""
    api = Api(service.url)
    return User(api, user.username, user.token)


def assert_rate_limited(response: httpx.Response, max_wait: int) -> int:
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= max_wait, retry_after
    assert f"{retry_after} s" in response.json()["error"]["message"]
    return int(retry_after)


def test_posting_is_limited_per_user_across_processes(limited):
    first, second = limited
    alice = sign_in(first)
    alice_on_second = on(second, alice)
    assert alice.request("POST", "/tweets", json={"content": "one"}).status_code == 201
    assert alice_on_second.request("POST", "/tweets", json={"content": "two"}).status_code == 201
    tweet = alice.post_tweet("three")
    for who in (alice, alice_on_second):
        assert_rate_limited(who.request("POST", "/tweets", json={"content": "four"}), 60)
        assert_rate_limited(who.request("PUT", f"/tweets/{tweet}/retweet"), 60)  # retweets count as posts
    bob = sign_in(second)
    assert bob.request("POST", "/tweets", json={"content": "bob is not alice"}).status_code == 201
    assert [t["content"] for t in alice.get(f"/users/{alice.username}/tweets").json()["tweets"]] == \
        ["three", "two", "one"]


def test_following_is_limited_per_user(limited):
    first, second = limited
    alice, bob, carol = sign_in(first), sign_in(first), sign_in(second)
    assert alice.request("PUT", f"/users/{bob.username}/follow").status_code == 204
    assert on(second, alice).request("DELETE", f"/users/{bob.username}/follow").status_code == 204
    assert_rate_limited(alice.request("PUT", f"/users/{carol.username}/follow"), 60)
    assert alice.get(f"/users/{carol.username}/followers").json()["users"] == []
    assert bob.request("PUT", f"/users/{carol.username}/follow").status_code == 204


def test_likes_are_limited_per_user(limited):
    first, second = limited
    alice, bob = sign_in(first), sign_in(second)
    tweet = bob.post_tweet("like me")
    assert alice.request("PUT", f"/tweets/{tweet}/like").status_code == 204
    assert on(second, alice).request("DELETE", f"/tweets/{tweet}/like").status_code == 204
    assert_rate_limited(alice.request("PUT", f"/tweets/{tweet}/like"), 60)
    assert alice.get(f"/tweets/{tweet}").json()["likes"] == 0
    assert bob.request("PUT", f"/tweets/{tweet}/like").status_code == 204


def test_sign_in_is_limited_per_address_failed_attempts_included(limited):
    first, second = limited
    address = new_address()
    http = httpx.Client(timeout=TIMEOUT, headers={"X-Test-Client": address}, verify=LOCAL_TLS)
    try:
        assert http.post(first.url + "/auth/dev", json={"username": unique_name()}).status_code == 200
        assert_error(http.post(second.url + "/auth/dev", json={"username": "not valid!"}), 422)
        assert_error(http.post(first.url + "/auth/google", json={"credential": "x.y.z"}), 404)  # no client id here
        for service in limited:
            assert_rate_limited(http.post(service.url + "/auth/dev", json={"username": unique_name()}), 60)
            assert_rate_limited(http.post(service.url + "/auth/google", json={"credential": "x.y.z"}), 60)
        other = http.post(first.url + "/auth/dev", json={"username": unique_name()},
                          headers={"X-Test-Client": new_address()})
        assert other.status_code == 200, other.text
    finally:
        http.close()


def test_retry_after_tells_when_the_window_lets_the_next_call_in(redis_server, tmp_path):
    service = ServiceProcess(redis_server.url, **{**LIMITS, "rate_limit_likes": "2/2s"}).start(tmp_path)
    try:
        alice = sign_in(service)
        tweet = alice.post_tweet("tick")
        started = time.monotonic()
        for _ in range(2):
            assert alice.request("PUT", f"/tweets/{tweet}/like").status_code == 204
        retry_after = assert_rate_limited(alice.request("PUT", f"/tweets/{tweet}/like"), 2)
        time.sleep(max(0.0, started + retry_after + 0.05 - time.monotonic()))
        assert alice.request("PUT", f"/tweets/{tweet}/like").status_code == 204
    finally:
        service.stop()


def test_rate_limits_off_lets_a_benchmark_through(api):
    """The shared test service runs with RATE_LIMITS=off, as benchmarks do."""
    alice, bob = api.sign_in(), api.sign_in()
    tweet = bob.post_tweet("x")
    for n in range(40):  # over every default limit
        assert alice.request("POST", "/tweets", json={"content": f"n{n}"}).status_code == 201
        assert alice.request("PUT", f"/tweets/{tweet}/like").status_code == 204
        assert alice.request("PUT", f"/users/{bob.username}/follow").status_code == 204


async def test_the_window_admits_exactly_the_limit_under_concurrent_calls(redis_server):
    client = await redis_server.async_client()
    settings = Settings(rate_limit_posts=RateLimit(25, 60.0))
    limiters = [RateLimits(client, settings) for _ in range(3)]  # three processes' worth
    who = unique_name("rl")

    async def hit(limiter: RateLimits) -> bool:
        try:
            await limiter.hit("posts", who)
            return True
        except RateLimited as refused:
            assert refused.retry_after >= 1
            return False

    try:
        results = await asyncio.gather(*(hit(limiters[n % 3]) for n in range(100)))
        assert results.count(True) == 25
        assert 0 < await client.pttl(keys.rate_limit("posts", who)) <= 60_000
    finally:
        await client.aclose()


@pytest.mark.parametrize("text, limit", [("30/1m", RateLimit(30, 60.0)), ("100/1h", RateLimit(100, 3600.0)),
                                         ("5/90s", RateLimit(5, 90.0)), ("off", RateLimit(0, 0.0)),
                                         ("0", RateLimit(0, 0.0))])
def test_limits_read_as_calls_per_period(text, limit):
    assert Settings.load(environ={"RATE_LIMIT_POSTS": text}).rate_limit_posts == limit


@pytest.mark.parametrize("text", ["30", "30 per minute", "0/1m", "-1/1m", "5/0s", "5/0.5s", "x/1m", "5/forever"])
def test_a_bad_limit_stops_start_up_naming_it(text):
    with pytest.raises(SettingsError) as error:
        Settings.load(environ={"RATE_LIMIT_LIKES": text})
    assert "rate_limit_likes" in str(error.value) and text in str(error.value)


# -- live sockets per user ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def capped(redis_server, tmp_path_factory):
    """Two processes, at most two sockets per user between them."""
    log_dir = tmp_path_factory.mktemp("sockets")
    first = ServiceProcess(redis_server.url, max_sockets_per_user="2").start(log_dir)
    second = ServiceProcess(redis_server.url, max_sockets_per_user="2").start(log_dir)
    yield first, second
    first.stop()
    second.stop()


async def test_beyond_the_socket_limit_the_oldest_socket_anywhere_is_closed_with_4409(capped):
    first, second = capped
    alice = await Api(first.url).aio_sign_in()
    oldest = await LiveClient(first.url, alice.token).connect()
    middle = await LiveClient(second.url, alice.token).connect()
    newest = await LiveClient(first.url, alice.token).connect()  # the third: the oldest goes
    try:
        assert await oldest.close_code() == 4409
        tweet = await alice.aio.post_tweet("still live on the two newest")
        assert await middle.next_tweet_id() == tweet
        assert await newest.next_tweet_id() == tweet
        latest = await LiveClient(second.url, alice.token).connect()  # the middle one goes, on another process
        assert await middle.close_code() == 4409
        tweet = await alice.aio.post_tweet("again")
        assert await newest.next_tweet_id() == tweet
        assert await latest.next_tweet_id() == tweet
        await latest.socket.close()
    finally:
        await newest.socket.close()


async def test_a_socket_that_leaves_frees_its_place(capped, redis_sync):
    first, second = capped
    alice = await Api(first.url).aio_sign_in()
    one = await LiveClient(first.url, alice.token).connect()
    two = await LiveClient(second.url, alice.token).connect()
    await one.socket.close()
    await eventually(lambda: redis_sync.zcard(keys.user_sockets(alice.username.lower())) == 1,
                     what="the closed socket to leave the count")
    three = await LiveClient(first.url, alice.token).connect()
    try:
        tweet = await alice.aio.post_tweet("both stay")
        assert await two.next_tweet_id() == tweet
        assert await three.next_tweet_id() == tweet
    finally:
        await two.socket.close()
        await three.socket.close()


async def test_sockets_left_behind_by_a_dead_process_do_not_count(capped, redis_sync):
    first, _ = capped
    alice = await Api(first.url).aio_sign_in()
    # A process that died holding two of alice's sockets: no presence heartbeat, entries older than any.
    redis_sync.zadd(keys.user_sockets(alice.username.lower()), {"deadhost-1-dead|1": 1, "deadhost-1-dead|2": 2})
    one = await LiveClient(first.url, alice.token).connect()
    two = await LiveClient(first.url, alice.token).connect()
    try:
        tweet = await alice.aio.post_tweet("nobody was closed")
        assert await one.next_tweet_id() == tweet
        assert await two.next_tweet_id() == tweet
        assert set(redis_sync.zrange(keys.user_sockets(alice.username.lower()), 0, -1)).isdisjoint(
            {"deadhost-1-dead|1", "deadhost-1-dead|2"})
    finally:
        await one.socket.close()
        await two.socket.close()
