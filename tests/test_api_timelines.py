"""Timelines over HTTP: pages, cursors, the length cap and the age limit."""

from __future__ import annotations

import re

from .support import Api, unique_name, wait_until


def test_pages_walk_the_home_timeline_newest_first_without_gaps_or_repeats(api, fanout_idle):
    alice, bob = api.sign_in(), api.sign_in()
    bob.follow(alice)
    posted = [alice.post_tweet(f"number {n}") for n in range(25)]
    fanout_idle()
    seen, before = [], None
    while True:
        params = {"count": 10, **({"before": before} if before else {})}
        page = bob.home(**params)
        seen += [t["id"] for t in page["tweets"]]
        assert len(page["tweets"]) <= 10
        before = page["next"]
        if before is None:
            break
    assert seen == posted[::-1]


def test_user_and_hashtag_timelines_show_the_right_tweets(api, fanout_idle):
    alice, bob = api.sign_in(), api.sign_in()
    tag = unique_name("tag")
    tagged = alice.post_tweet(f"#{tag.upper()} first")
    bob.post_tweet("no tag here")
    second = bob.post_tweet(f"second #{tag}")
    fanout_idle()
    assert [t["id"] for t in alice.get(f"/hashtags/{tag}/tweets").json()["tweets"]] == [second, tagged]
    assert [t["id"] for t in alice.get(f"/hashtags/%23{tag}/tweets").json()["tweets"]] == [second, tagged]
    assert [t["id"] for t in bob.get(f"/users/{alice.username}/tweets").json()["tweets"]] == [tagged]
    assert alice.get(f"/users/{unique_name()}/tweets").status_code == 404


def test_the_home_timeline_needs_a_token(api):
    answer = api.http.get("/timelines/home")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "missing_token"


def test_timelines_are_capped_in_length_and_never_answer_entries_past_the_age_limit(short_lived_service):
    api = Api(short_lived_service.url)
    alice, bob = api.sign_in(), api.sign_in()
    bob.follow(alice)
    posted = [alice.post_tweet(f"n{n}") for n in range(7)]
    wait_until(lambda: bob.home_ids() == posted[::-1][:5], what="bob's home timeline to hold the newest 5")
    assert [t["id"] for t in bob.get(f"/users/{alice.username}/tweets").json()["tweets"]] == posted[::-1][:5]
    # Nothing trims these lists from now on (no more pushes); reads must still drop old entries.
    wait_until(lambda: bob.home(count=100)["tweets"] == [], what="entries to age out of the home timeline")
    assert bob.get(f"/users/{alice.username}/tweets").json() == {"tweets": [], "next": None}
    api.http.close()


def test_every_timeline_page_says_the_servers_own_time(api):
    alice = api.sign_in()
    alice.post_tweet("timed")
    for path in ("/timelines/home", f"/users/{alice.username}/tweets", f"/users/{alice.username}/mentions",
                 "/hashtags/timed/tweets"):
        timing = alice.get(path).headers["server-timing"]
        assert re.fullmatch(r"page;dur=\d+\.\d{3}", timing), (path, timing)
