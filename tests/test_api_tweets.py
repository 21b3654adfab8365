"""Tweets end to end over HTTP: a real uvicorn, a real redis-server."""

from __future__ import annotations

from .support import unique_name


def test_post_answers_201_with_location_and_no_body_then_get_returns_it(api):
    alice = api.sign_in()
    tweet_id = alice.post_tweet("hello #World and @nobody_here")
    tweet = alice.get(f"/tweets/{tweet_id}").json()
    assert tweet["id"] == tweet_id and isinstance(tweet["id"], str)
    assert tweet["from"] == alice.username
    assert tweet["content"] == "hello #World and @nobody_here"
    assert tweet["hashtags"] == ["#world"]
    assert tweet["mentions"] == []  # only existing users are mentions
    assert tweet["likes"] == 0 and tweet["retweets"] == 0
    assert isinstance(tweet["timestamp"], float)


def test_followers_and_mentioned_users_receive_the_tweet_others_do_not(api, fanout_idle):
    alice, bob, carol, dave = (api.sign_in() for _ in range(4))
    bob.follow(alice)
    tweet_id = alice.post_tweet(f"hi @{carol.username.upper()}")
    fanout_idle()
    assert tweet_id in alice.home_ids()
    assert tweet_id in bob.home_ids()
    assert tweet_id in carol.home_ids()
    assert tweet_id not in dave.home_ids()
    assert alice.get(f"/tweets/{tweet_id}").json()["mentions"] == [carol.username]
    mentions = dave.get(f"/users/{carol.username}/mentions").json()
    assert [t["id"] for t in mentions["tweets"]] == [tweet_id]


def test_content_is_counted_in_code_points(api):
    alice = api.sign_in()
    assert alice.request("POST", "/tweets", json={"content": "😀" * 280}).status_code == 201
    too_long = alice.request("POST", "/tweets", json={"content": "😀" * 281})
    assert too_long.status_code == 422
    assert too_long.json()["error"]["code"] == "tweet_too_long"
    for empty in ("", "   \n "):
        assert alice.request("POST", "/tweets", json={"content": empty}).status_code == 422


def test_delete_is_for_the_author_only_and_removes_the_tweet_from_every_timeline(api, fanout_idle):
    alice, bob, carol = api.sign_in(), api.sign_in(), api.sign_in()
    bob.follow(alice)
    tag = unique_name("t")
    tweet_id = alice.post_tweet(f"bye #{tag} @{carol.username}")
    fanout_idle()
    assert bob.request("DELETE", f"/tweets/{tweet_id}").status_code == 403
    assert alice.request("DELETE", f"/tweets/{tweet_id}").status_code == 204
    assert alice.get(f"/tweets/{tweet_id}").status_code == 404
    fanout_idle()
    for user in (alice, bob, carol):
        assert tweet_id not in user.home_ids()
    assert bob.get(f"/hashtags/{tag}/tweets").json()["tweets"] == []
    assert bob.get(f"/users/{carol.username}/mentions").json()["tweets"] == []
    assert bob.get(f"/users/{alice.username}/tweets").json()["tweets"] == []
    assert alice.request("DELETE", f"/tweets/{tweet_id}").status_code == 404


def test_likes_are_idempotent_and_counted_on_the_tweet(api):
    alice, bob = api.sign_in(), api.sign_in()
    tweet_id = alice.post_tweet("like me")
    for _ in range(2):
        assert bob.request("PUT", f"/tweets/{tweet_id}/like").status_code == 204
    assert alice.request("PUT", f"/tweets/{tweet_id}/like").status_code == 204
    assert bob.get(f"/tweets/{tweet_id}").json()["likes"] == 2
    for _ in range(2):
        assert bob.request("DELETE", f"/tweets/{tweet_id}/like").status_code == 204
    assert bob.get(f"/tweets/{tweet_id}").json()["likes"] == 1
    assert bob.request("PUT", "/tweets/123456/like").status_code == 404


def test_retweet_reaches_the_retweeters_followers_once_with_retweeted_by(api, fanout_idle):
    alice, bob, carol = api.sign_in(), api.sign_in(), api.sign_in()
    carol.follow(bob)
    tweet_id = alice.post_tweet("worth sharing")
    for _ in range(2):
        assert bob.request("PUT", f"/tweets/{tweet_id}/retweet").status_code == 204
    fanout_idle()
    assert bob.get(f"/tweets/{tweet_id}").json()["retweets"] == 1
    entries = carol.home(count=100)["tweets"]
    assert len(entries) == 1
    assert entries[0]["id"] == tweet_id
    assert entries[0]["retweeted_by"] == bob.username
    assert entries[0]["from"] == alice.username
    assert bob.request("DELETE", f"/tweets/{tweet_id}/retweet").status_code == 204
    fanout_idle()
    assert carol.home(count=100)["tweets"] == []
    assert bob.get(f"/tweets/{tweet_id}").json()["retweets"] == 0


def test_deleting_a_tweet_removes_its_retweets_too(api, fanout_idle):
    alice, bob, carol = api.sign_in(), api.sign_in(), api.sign_in()
    carol.follow(bob)
    tweet_id = alice.post_tweet("short-lived")
    bob.request("PUT", f"/tweets/{tweet_id}/retweet")
    fanout_idle()
    assert len(carol.home()["tweets"]) == 1
    alice.request("DELETE", f"/tweets/{tweet_id}")
    fanout_idle()
    assert carol.home()["tweets"] == []
    assert bob.get(f"/users/{bob.username}/tweets").json()["tweets"] == []
