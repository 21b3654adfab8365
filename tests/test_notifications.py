"""Notifications (docs/API.md, "Notifications"): one per (type, from, tweet) for a mention, a
like, a retweet or a follow, none for one's own actions, gone with a deleted tweet, trimmed by
the timelines' age and length, read marks, pages; and live: each goes out once to the user's
sockets, is replayed after ``since``, and a Redis blip's catch-up sends none twice. Real uvicorn,
real WebSocket clients, real Redis (and the cluster)."""

from __future__ import annotations

import time

import pytest

from realtime import keys
from realtime.ids import min_id_at
from realtime.live_hub import LiveSubscriber
from realtime.live_protocol import LiveEvent

from .support import Api, LiveClient, User, wait_until


def notifications(user: User, **params) -> dict:
    answer = user.get("/notifications", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def kinds(user: User) -> list[tuple[str, str, str | None]]:
    """(type, from, tweet id) of each notification, newest first."""
    return [(n["type"], n["from"], n.get("tweet", {}).get("id")) for n in notifications(user, count=100)["notifications"]]


def test_a_mention_a_like_a_retweet_and_a_follow_each_notify_the_user_they_concern(api, fanout_idle):
    alice, bob = api.sign_in(), api.sign_in()
    tweet_id = alice.post_tweet("something to like")
    bob.follow(alice)
    assert bob.request("PUT", f"/tweets/{tweet_id}/like").status_code == 204
    assert bob.request("PUT", f"/tweets/{tweet_id}/retweet").status_code == 204
    mention = bob.post_tweet(f"hello @{alice.username}")
    fanout_idle()
    assert kinds(alice) == [("mention", bob.username, mention), ("retweet", bob.username, tweet_id),
                            ("like", bob.username, tweet_id), ("follow", bob.username, None)]
    page = notifications(alice)
    assert page["unread"] == 4 and page["next"] is None
    newest = page["notifications"][0]
    assert newest["tweet"]["content"] == f"hello @{alice.username}" and newest["tweet"]["display_name"]
    liked = page["notifications"][2]["tweet"]
    assert (liked["liked"], liked["retweeted"]) == (False, False)  # alice's own flags: she did neither
    assert all(isinstance(n["timestamp"], float) and n["id"].isdigit() for n in page["notifications"])
    assert kinds(bob) == []


def test_nobody_is_notified_of_their_own_actions(api, fanout_idle):
    alice = api.sign_in()
    tweet_id = alice.post_tweet(f"talking to myself @{alice.username}")
    assert alice.request("PUT", f"/tweets/{tweet_id}/like").status_code == 204
    assert alice.request("PUT", f"/tweets/{tweet_id}/retweet").status_code == 204
    fanout_idle()
    assert notifications(alice) == {"notifications": [], "next": None, "unread": 0}


def test_one_notification_per_type_sender_and_tweet_however_often_it_is_undone_and_redone(api, fanout_idle):
    alice, bob = api.sign_in(), api.sign_in()
    tweet_id = alice.post_tweet("like me, unlike me")
    for _ in range(3):
        assert bob.request("PUT", f"/tweets/{tweet_id}/like").status_code == 204
        assert bob.request("DELETE", f"/tweets/{tweet_id}/like").status_code == 204
        assert bob.request("PUT", f"/tweets/{tweet_id}/retweet").status_code == 204
        fanout_idle()
        assert bob.request("DELETE", f"/tweets/{tweet_id}/retweet").status_code == 204
        bob.follow(alice)
        assert bob.request("DELETE", f"/users/{alice.username}/follow").status_code == 204
    fanout_idle()
    assert sorted(kinds(alice)) == [("follow", bob.username, None), ("like", bob.username, tweet_id),
                                    ("retweet", bob.username, tweet_id)]


def test_a_deleted_tweets_notifications_go_with_it(api, fanout_idle):
    alice, bob = api.sign_in(), api.sign_in()
    liked = alice.post_tweet("to be liked, then deleted")
    assert bob.request("PUT", f"/tweets/{liked}/like").status_code == 204
    mention = bob.post_tweet(f"@{alice.username} soon gone")
    bob.follow(alice)
    fanout_idle()
    assert notifications(alice)["unread"] == 3
    assert alice.request("DELETE", f"/tweets/{liked}").status_code == 204
    assert bob.request("DELETE", f"/tweets/{mention}").status_code == 204
    assert kinds(alice) == [("follow", bob.username, None)]  # at once: reads skip a deleted tweet's
    fanout_idle()
    assert notifications(alice)["unread"] == 1  # and the delete jobs removed them
    assert kinds(alice) == [("follow", bob.username, None)]


def test_unread_counts_only_what_is_newer_than_the_read_mark_which_only_moves_forward(api):
    alice = api.sign_in()
    followers = [api.sign_in() for _ in range(3)]
    for follower in followers:
        follower.follow(alice)
    ids = [n["id"] for n in notifications(alice)["notifications"]]  # newest first
    assert len(ids) == 3 and ids == sorted(ids, key=int, reverse=True)
    assert alice.request("POST", "/notifications/read", json={"up_to": ids[1]}).status_code == 204
    assert notifications(alice)["unread"] == 1
    assert alice.request("POST", "/notifications/read", json={"up_to": ids[2]}).status_code == 204
    assert notifications(alice)["unread"] == 1, "a stale tab does not make read ones unread"
    assert alice.request("POST", "/notifications/read", json={"up_to": ids[0]}).status_code == 204
    assert notifications(alice)["unread"] == 0
    assert len(notifications(alice)["notifications"]) == 3, "read ones are still listed"


@pytest.mark.parametrize("body, status, code", [
    ({}, 400, "missing_field"), ({"up_to": 12}, 400, "wrong_type"), ({"up_to": "12a"}, 422, "invalid_notification_id"),
    ({"up_to": "1" * 17}, 422, "invalid_notification_id")])
def test_a_bad_read_mark_is_refused_in_words(api, body, status, code):
    answer = api.sign_in().request("POST", "/notifications/read", json=body)
    assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text


def test_pages_newest_first_with_count_before_and_next(api):
    alice = api.sign_in()
    followers = [api.sign_in() for _ in range(5)]
    for follower in followers:
        follower.follow(alice)
    expected = [f.username for f in reversed(followers)]
    seen, before = [], None
    while True:
        page = notifications(alice, count=2, **({"before": before} if before else {}))
        seen += [n["from"] for n in page["notifications"]]
        assert len(page["notifications"]) <= 2 and page["unread"] == 5
        before = page["next"]
        if before is None:
            break
    assert seen == expected


def test_notifications_older_than_the_timelines_age_are_never_answered(api, redis_sync):
    alice = api.sign_in()
    api.sign_in().follow(alice)
    too_old = min_id_at(int((time.time() - 31 * 86400) * 1000))
    redis_sync.zadd(keys.notifications(alice.username.lower()), {"follow|someone_old|": too_old})
    page = notifications(alice)
    assert [n["from"] for n in page["notifications"]] != [] and "someone_old" not in [
        n["from"] for n in page["notifications"]]
    assert page["unread"] == 1


def test_notifications_are_kept_for_the_timelines_length_and_age(short_lived_service):
    api = Api(short_lived_service.url)
    alice = api.sign_in()
    followers = [api.sign_in() for _ in range(7)]
    for follower in followers:
        follower.follow(alice)
    page = notifications(alice)
    assert [n["from"] for n in page["notifications"]] == [f.username for f in reversed(followers)][:5]
    assert page["unread"] == 5
    wait_until(lambda: notifications(alice)["notifications"] == [], what="notifications to age out")
    assert notifications(alice)["unread"] == 0
    api.http.close()


# -- live --------------------------------------------------------------------------------

async def test_each_notification_goes_out_live_once_to_every_socket_of_the_user(api, service, fanout_idle):
    alice, bob, carol = await api.aio_sign_in(), await api.aio_sign_in(), await api.aio_sign_in()
    tweet_id = await alice.aio.post_tweet("watch my notifications")
    async with LiveClient(service.url, alice.token) as phone, LiveClient(service.url, alice.token) as laptop:
        assert (await bob.aio.request("PUT", f"/tweets/{tweet_id}/like")).status_code == 204
        await bob.aio.follow(alice)
        mention = await bob.aio.post_tweet(f"hi @{alice.username}")
        for live in (phone, laptop):
            like, follow, mentioned = [await live.next_notification() for _ in range(3)]
            assert (like["type"], like["from"], like["tweet"]["id"]) == ("like", bob.username, tweet_id)
            assert (follow["type"], follow["from"], "tweet" in follow) == ("follow", bob.username, False)
            assert (mentioned["type"], mentioned["tweet"]["id"]) == ("mention", mention)
            assert int(like["id"]) < int(follow["id"]) < int(mentioned["id"])
        listed = (await alice.aio.request("GET", "/notifications")).json()["notifications"]
        assert [n["id"] for n in listed] == [mentioned["id"], follow["id"], like["id"]]
        # Redone: nothing goes out again. Carol's follow is the next thing either socket hears.
        assert (await bob.aio.request("DELETE", f"/tweets/{tweet_id}/like")).status_code == 204
        assert (await bob.aio.request("PUT", f"/tweets/{tweet_id}/like")).status_code == 204
        await carol.aio.follow(alice)
        for live in (phone, laptop):
            assert (await live.next_notification())["from"] == carol.username


async def test_notifications_missed_while_offline_are_replayed_after_since(api, service, fanout_idle):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    await alice.aio.follow(bob)
    last_seen = await bob.aio.post_tweet("the last tweet alice saw")
    await fanout_idle.wait()
    await bob.aio.follow(alice)
    mention = await bob.aio.post_tweet(f"while you were away @{alice.username}")
    await fanout_idle.wait()
    async with LiveClient(service.url, alice.token, since=last_seen) as live:
        assert [frame["tweet"]["id"] for frame in live.replayed] == [mention]
        assert [(n["type"], n["from"]) for n in live.notifications] == [("follow", bob.username),
                                                                        ("mention", bob.username)]
        assert live.ready["replayed"] == 3
    async with LiveClient(service.url, alice.token, since=None) as fresh:
        assert fresh.notifications == []  # a client that holds none reads GET /notifications
        await (await api.aio_sign_in()).aio.follow(alice)
        assert (await fresh.next_notification())["type"] == "follow"


def note(note_id: int) -> LiveEvent:
    return LiveEvent.of_notification({"id": str(note_id), "type": "follow", "from": "x", "timestamp": 1.0})


def test_a_catch_up_after_a_redis_blip_sends_the_notifications_after_the_last_one_sent_and_none_twice():
    sub = LiveSubscriber("notejon", "token-hash", queue_size=8)
    sub.last_notification_id = 5  # what the socket's replay left it at
    sub.catch_up([])
    sub.offer(note(6))
    assert sub.pop().notification_id == 6 and sub.last_notification_id == 6
    sub.offer(LiveEvent('{"type": "tweet", "tweet": {"id": "9"}}'))
    assert sub.pop().entry_id == 9 and sub.last_notification_id == 6, "a tweet does not move the cursor"
    sub.begin_buffering()  # a Redis blip
    sub.offer(note(8))  # live while catching up, and read by the catch-up too
    assert sub.catch_up([note(7), note(8)]) == 2
    assert [sub.pop().notification_id, sub.pop().notification_id, sub.pop()] == [7, 8, None]
    assert sub.last_notification_id == 8
