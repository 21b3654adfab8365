"""What an answer says about its caller (docs/API.md): ``liked``/``retweeted`` on every tweet
answered over HTTP to a signed-in caller, ``you_follow``/``follows_you`` on someone else's
profile, and each tweet's ``display_name``, its author's as it is now. Real uvicorn, real Redis."""

from __future__ import annotations

import pytest

from .support import LiveClient, User, unique_name
from .test_api_errors import pending_session


def flags(tweet: dict) -> tuple[bool, bool]:
    return tweet["liked"], tweet["retweeted"]


def every_read_of(user: User, tweet_id: str, tag: str, author: User) -> list[dict]:
    """The tweet as each kind of read shows it to ``user`` (each read must find it)."""
    reads = [user.get(f"/tweets/{tweet_id}").json(),
             *user.get(f"/users/{author.username}/tweets").json()["tweets"][:1],
             *user.get(f"/hashtags/{tag}/tweets").json()["tweets"][:1],
             *user.get(f"/tweet/search/%23{tag}").json()["tweets"][:1]]
    assert len(reads) == 4 and all(read["id"] == tweet_id for read in reads), reads
    return reads


def test_a_signed_in_caller_sees_whether_they_liked_and_retweeted_each_tweet_on_every_read(api, fanout_idle):
    alice, bob = api.sign_in(), api.sign_in()
    tag = unique_name("v")
    tweet_id = alice.post_tweet(f"flags #{tag}")
    assert [flags(read) for read in every_read_of(bob, tweet_id, tag, alice)] == [(False, False)] * 4

    assert bob.request("PUT", f"/tweets/{tweet_id}/like").status_code == 204
    assert [flags(read) for read in every_read_of(bob, tweet_id, tag, alice)] == [(True, False)] * 4
    assert [flags(read) for read in every_read_of(alice, tweet_id, tag, alice)] == [(False, False)] * 4

    assert bob.request("PUT", f"/tweets/{tweet_id}/retweet").status_code == 204
    assert [flags(read) for read in every_read_of(bob, tweet_id, tag, alice)] == [(True, True)] * 4
    fanout_idle()
    bobs_entry = bob.get(f"/users/{bob.username}/tweets").json()["tweets"][0]
    assert bobs_entry["retweeted_by"] == bob.username and bobs_entry["id"] == tweet_id
    assert flags(bobs_entry) == (True, True)  # a retweet entry shows the original's flags
    assert flags(bob.home()["tweets"][0]) == (True, True)

    assert bob.request("DELETE", f"/tweets/{tweet_id}/like").status_code == 204
    assert bob.request("DELETE", f"/tweets/{tweet_id}/retweet").status_code == 204
    assert [flags(read) for read in every_read_of(bob, tweet_id, tag, alice)] == [(False, False)] * 4


@pytest.mark.parametrize("caller", ["anonymous", "invalid token", "no username yet"])
def test_flags_and_relations_are_left_out_for_a_caller_who_is_nobody(api, redis_server, caller):
    alice, bob = api.sign_in(), api.sign_in()
    bob.follow(alice)
    tweet_id = alice.post_tweet("no flags for nobody")
    assert bob.request("PUT", f"/tweets/{tweet_id}/like").status_code == 204
    token = {"anonymous": None, "invalid token": "not-a-token",
             "no username yet": pending_session(redis_server)}[caller]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    tweet = api.http.get(f"/tweets/{tweet_id}", headers=headers)
    page = api.http.get(f"/users/{alice.username}/tweets", headers=headers)
    profile = api.http.get(f"/users/{alice.username}", headers=headers)
    assert [answer.status_code for answer in (tweet, page, profile)] == [200] * 3  # public: answered to anyone
    assert "liked" not in tweet.json() and "retweeted" not in tweet.json()
    assert all("liked" not in shown for shown in page.json()["tweets"])
    assert "you_follow" not in profile.json() and "follows_you" not in profile.json()


def test_a_profile_says_whether_you_follow_them_and_they_follow_you(api):
    alice, bob = api.sign_in(), api.sign_in()

    def relation(viewer: User, other: User) -> tuple[bool, bool]:
        profile = viewer.get(f"/users/{other.username}").json()
        return profile["you_follow"], profile["follows_you"]

    assert relation(alice, bob) == (False, False)
    alice.follow(bob)
    assert relation(alice, bob) == (True, False) and relation(bob, alice) == (False, True)
    bob.follow(alice.username.upper())  # usernames are case-insensitive
    assert relation(alice, bob) == (True, True) and relation(bob, alice) == (True, True)
    assert alice.request("DELETE", f"/users/{bob.username}/follow").status_code == 204
    assert relation(alice, bob) == (False, True)
    for own in (alice.get(f"/users/{alice.username}").json(), alice.get("/users/me").json()):
        assert "you_follow" not in own and "follows_you" not in own  # nothing to say about yourself


async def test_a_tweet_shows_its_authors_display_name_as_it_is_now_over_http_and_live(api, service, fanout_idle):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    await bob.aio.follow(alice)
    assert (await alice.aio.request("PATCH", "/users/me", json={"display_name": "Alice A."})).status_code == 200
    async with LiveClient(service.url, bob.token) as live:
        tweet_id = await alice.aio.post_tweet("who am I")
        event = await live.next_frame()
    assert event["tweet"]["id"] == tweet_id and event["tweet"]["display_name"] == "Alice A."

    assert (await alice.aio.request("PATCH", "/users/me", json={"display_name": "Alice B."})).status_code == 200
    await fanout_idle.wait()
    assert (await bob.aio.request("PUT", f"/tweets/{tweet_id}/retweet")).status_code == 204
    reads = [(await bob.aio.request("GET", f"/tweets/{tweet_id}")).json(),
             (await bob.aio.request("GET", "/timelines/home")).json()["tweets"][0],  # bob's retweet entry
             (await bob.aio.request("GET", f"/users/{alice.username}/tweets")).json()["tweets"][0]]
    assert [read["id"] for read in reads] == [tweet_id] * 3
    assert reads[1]["retweeted_by"] == bob.username
    assert [read["display_name"] for read in reads] == ["Alice B."] * 3  # the name as it is now
    assert reads[0]["from"] == alice.username  # the username never changes
