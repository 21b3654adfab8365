"""Users end to end over HTTP: sign-in, unique names, profiles, the follow graph, sign-out."""

from __future__ import annotations

import time

import httpx
import pytest

from realtime import keys

from .support import LOCAL_TLS, Api, ServiceProcess, unique_name
from .test_api_errors import assert_error, pending_session

PROFILE_FIELDS = {"username", "display_name", "bio", "created_at", "followers", "following", "tweets"}
INVALID_USERNAMES = ["", "a" * 16, "has space", "dash-ed", "dot.ted", "\u00e9clair", "emoji\U0001F600",
                     "new\nline", "trailing\n", "\nleading", "tab\t", "nul\x00", "\uff21\uff22", "\u0661\u0662"]


def profile(api: Api, name: str) -> dict:
    answer = api.http.get(f"/users/{name}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def counts(api: Api, name: str) -> tuple[int, int, int]:
    shown = profile(api, name)
    return shown["followers"], shown["following"], shown["tweets"]


def new_account(api: Api, redis_server) -> dict[str, str]:
    """Headers of a session without a username, as a Google account's first session."""
    return {"Authorization": f"Bearer {pending_session(redis_server)}"}


# -- sign-in and choosing a name --------------------------------------------------------------

def test_dev_signin_creates_the_user_and_answers_a_token_that_works(api):
    name = unique_name("Dev")
    answer = api.http.post("/auth/dev", json={"username": name})
    assert answer.status_code == 200, answer.text
    session = answer.json()
    assert set(session) == {"token", "expires_at", "username"}
    assert session["username"] == name
    assert isinstance(session["token"], str) and len(session["token"]) >= 32
    assert session["expires_at"] > time.time()
    shown = profile(api, name)
    assert set(shown) == PROFILE_FIELDS
    me = api.http.get("/users/me", headers={"Authorization": f"Bearer {session['token']}"})
    assert me.status_code == 200 and me.json()["username"] == name


def test_dev_signin_in_another_case_is_the_same_user_shown_as_first_chosen(api):
    name = unique_name("Mix")
    first = api.sign_in(name)
    again = api.sign_in(name.swapcase())
    assert again.username == first.username == name
    assert again.token != first.token
    assert first.get("/users/me").json()["username"] == name
    assert again.get("/users/me").json()["username"] == name
    assert profile(api, name.lower())["username"] == name
    assert profile(api, name.upper())["username"] == name


@pytest.mark.parametrize("bad", INVALID_USERNAMES, ids=repr)
def test_dev_signin_refuses_invalid_usernames_with_422(api, bad):
    assert_error(api.http.post("/auth/dev", json={"username": bad}), 422, "invalid_username")


@pytest.mark.parametrize("reserved", ["me", "Me", "ME"])
def test_dev_signin_refuses_the_reserved_name_me(api, reserved):
    assert_error(api.http.post("/auth/dev", json={"username": reserved}), 422, "reserved_username")


def test_a_new_account_chooses_its_username_then_the_same_token_can_post(api, redis_server):
    headers = new_account(api, redis_server)
    # Before choosing a name, the session may do nothing else.
    assert_error(api.http.post("/tweets", json={"content": "too early"}, headers=headers), 403, "username_required")
    assert_error(api.http.get("/users/me", headers=headers), 403, "username_required")

    name = unique_name("New")
    created = api.http.post("/users", json={"username": name}, headers=headers)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert set(shown) == PROFILE_FIELDS
    assert shown["username"] == name and shown["display_name"] == name and shown["bio"] == ""
    assert (shown["followers"], shown["following"], shown["tweets"]) == (0, 0, 0)
    assert abs(shown["created_at"] - time.time()) < 60

    posted = api.http.post("/tweets", json={"content": "my first"}, headers=headers)
    assert posted.status_code == 201, posted.text
    tweet = api.http.get(posted.headers["location"]).json()
    assert tweet["from"] == name
    assert api.http.get("/users/me", headers=headers).json()["tweets"] == 1
    # The session now has a name: it cannot choose another.
    assert_error(api.http.post("/users", json={"username": unique_name()}, headers=headers), 409,
                 "username_already_chosen")
    # Dev sign-in finds the same user.
    assert api.sign_in(name.lower()).username == name


def test_a_new_account_may_set_display_name_and_bio_when_choosing_its_name(api, redis_server):
    name = unique_name("Bio")
    created = api.http.post("/users", json={"username": name, "display_name": "  Ada L.  ", "bio": "maths"},
                            headers=new_account(api, redis_server))
    assert created.status_code == 201, created.text
    assert created.json()["display_name"] == "Ada L." and created.json()["bio"] == "maths"
    assert profile(api, name)["display_name"] == "Ada L."
    too_long = api.http.post("/users", json={"username": unique_name(), "bio": "b" * 161},
                             headers=new_account(api, redis_server))
    assert_error(too_long, 422, "bio_too_long")


def test_usernames_are_unique_case_insensitively(api, redis_server):
    taken = api.sign_in(unique_name("Tkn")).username
    for variant in (taken, taken.lower(), taken.upper(), taken.swapcase()):
        answer = api.http.post("/users", json={"username": variant}, headers=new_account(api, redis_server))
        assert_error(answer, 409, "username_taken")
    assert profile(api, taken)["username"] == taken


@pytest.mark.parametrize("bad", INVALID_USERNAMES, ids=repr)
def test_post_users_refuses_invalid_usernames_with_422(api, redis_server, bad):
    headers = new_account(api, redis_server)
    assert_error(api.http.post("/users", json={"username": bad}, headers=headers), 422, "invalid_username")
    # The session is still free to choose a good one.
    assert api.http.post("/users", json={"username": unique_name()}, headers=headers).status_code == 201


@pytest.mark.parametrize("reserved", ["me", "Me", "mE"])
def test_post_users_refuses_the_reserved_name_me(api, redis_server, reserved):
    answer = api.http.post("/users", json={"username": reserved}, headers=new_account(api, redis_server))
    assert_error(answer, 422, "reserved_username")
    assert_error(api.http.get("/users/me"), 401)  # "me" is never a profile, only the caller


def test_post_users_without_a_session_is_401(api):
    assert_error(api.http.post("/users", json={"username": unique_name()}), 401, "missing_token")


# -- profiles -----------------------------------------------------------------------------

def test_profile_counts_follow_followers_following_and_tweets(api, fanout_idle):
    alice, bob, carol = api.sign_in(), api.sign_in(), api.sign_in()
    assert counts(api, alice.username) == (0, 0, 0)
    bob.follow(alice)
    carol.follow(alice)
    alice.follow(bob)
    assert counts(api, alice.username) == (2, 1, 0)
    assert counts(api, bob.username) == (1, 1, 0)
    first = alice.post_tweet("one")
    alice.post_tweet("two")
    assert counts(api, alice.username) == (2, 1, 2)
    assert alice.request("DELETE", f"/tweets/{first}").status_code == 204
    assert counts(api, alice.username) == (2, 1, 1)
    # A retweet is not a tweet of one's own.
    bob.request("PUT", f"/tweets/{alice.post_tweet('three')}/retweet")
    assert counts(api, bob.username)[2] == 0
    assert bob.request("DELETE", f"/users/{alice.username}/follow").status_code == 204
    assert counts(api, alice.username) == (1, 1, 2)
    assert counts(api, bob.username) == (1, 0, 0)
    fanout_idle()


def test_get_profile_of_an_unknown_user_is_404(api):
    assert_error(api.http.get(f"/users/{unique_name('nobody')}"), 404, "user_not_found")


def test_get_users_me_is_the_callers_profile_and_401_without_a_token(api):
    alice = api.sign_in()
    me = alice.get("/users/me")
    assert me.status_code == 200
    assert me.json() == profile(api, alice.username)
    assert_error(api.http.get("/users/me"), 401, "missing_token")
    assert_error(api.http.get("/users/me", headers={"Authorization": "Bearer nope"}), 401, "invalid_token")


def test_patch_users_me_changes_display_name_and_bio_within_their_limits(api):
    alice = api.sign_in()
    answer = alice.request("PATCH", "/users/me", json={"display_name": "A" * 50, "bio": "b" * 160})
    assert answer.status_code == 200, answer.text
    assert answer.json()["display_name"] == "A" * 50 and answer.json()["bio"] == "b" * 160
    assert profile(api, alice.username) == answer.json()
    # Limits count characters (code points), not bytes.
    emoji = alice.request("PATCH", "/users/me", json={"display_name": "\U0001F600" * 50, "bio": "\u00e9" * 160})
    assert emoji.status_code == 200, emoji.text

    assert_error(alice.request("PATCH", "/users/me", json={"display_name": "A" * 51}), 422, "display_name_too_long")
    assert_error(alice.request("PATCH", "/users/me", json={"bio": "b" * 161}), 422, "bio_too_long")
    assert_error(alice.request("PATCH", "/users/me", json={"display_name": ""}), 422, "display_name_empty")
    assert_error(alice.request("PATCH", "/users/me", json={"display_name": "   \n"}), 422, "display_name_empty")
    # Nothing of a refused edit was kept.
    assert profile(api, alice.username)["display_name"] == "\U0001F600" * 50

    # A field left out is left alone; an empty bio clears it.
    only_bio = alice.request("PATCH", "/users/me", json={"bio": ""})
    assert only_bio.status_code == 200
    assert only_bio.json()["bio"] == "" and only_bio.json()["display_name"] == "\U0001F600" * 50
    unchanged = alice.request("PATCH", "/users/me", json={})
    assert unchanged.status_code == 200 and unchanged.json() == only_bio.json()


def test_a_refused_edit_with_one_bad_field_changes_neither_field(api):
    alice = api.sign_in()
    answer = alice.request("PATCH", "/users/me", json={"display_name": "Fine", "bio": "b" * 161})
    assert_error(answer, 422, "bio_too_long")
    assert profile(api, alice.username)["display_name"] == alice.username


def test_patch_users_me_needs_a_token(api):
    assert_error(api.http.patch("/users/me", json={"bio": "x"}), 401, "missing_token")


# -- the follow graph ---------------------------------------------------------------------

def test_follow_and_unfollow_are_idempotent(api):
    alice, bob = api.sign_in(), api.sign_in()
    for _ in range(3):
        assert alice.request("PUT", f"/users/{bob.username}/follow").status_code == 204
    assert counts(api, bob.username)[0] == 1
    assert alice.get(f"/users/{alice.username}/following").json() == {"users": [bob.username], "next": None}
    for _ in range(3):
        assert alice.request("DELETE", f"/users/{bob.username}/follow").status_code == 204
    assert counts(api, bob.username)[0] == 0
    assert alice.get(f"/users/{bob.username}/followers").json() == {"users": [], "next": None}


def test_follow_accepts_the_name_in_any_case(api):
    alice, bob = api.sign_in(), api.sign_in(unique_name("Cap"))
    assert alice.request("PUT", f"/users/{bob.username.swapcase()}/follow").status_code == 204
    assert alice.get(f"/users/{bob.username}/followers").json()["users"] == [alice.username]


def test_following_yourself_is_422_in_any_case(api):
    alice = api.sign_in(unique_name("Slf"))
    for name in (alice.username, alice.username.upper(), alice.username.lower()):
        for method in ("PUT", "DELETE"):
            assert_error(alice.request(method, f"/users/{name}/follow"), 422, "cannot_follow_self")
    assert counts(api, alice.username)[:2] == (0, 0)


def test_following_an_unknown_user_is_404(api):
    alice = api.sign_in()
    for method in ("PUT", "DELETE"):
        assert_error(alice.request(method, f"/users/{unique_name('ghost')}/follow"), 404, "user_not_found")
    assert counts(api, alice.username)[1] == 0


def test_follow_needs_a_token(api):
    bob = api.sign_in()
    assert_error(api.http.put(f"/users/{bob.username}/follow"), 401, "missing_token")


def _walk(user, path: str, count: int | None) -> list[list[str]]:
    pages, cursor = [], None
    for _ in range(100):
        params = {key: value for key, value in (("count", count), ("cursor", cursor)) if value is not None}
        answer = user.get(path, params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert set(page) == {"users", "next"}
        pages.append(page["users"])
        cursor = page["next"]
        if cursor is None:
            return pages
    raise AssertionError("pagination did not end")


def test_followers_and_following_pages_cover_every_user_exactly_once_in_order(api):
    star = api.sign_in(unique_name("Star"))
    fans = [api.sign_in(unique_name(prefix)) for prefix in ("Zed", "amy", "Bob", "cat", "DAN", "eve", "Fay")]
    for fan in fans:
        fan.follow(star)
        star.follow(fan)
    expected = sorted((fan.username for fan in fans), key=str.lower)
    for relation in ("followers", "following"):
        path = f"/users/{star.username}/{relation}"
        for count in (1, 2, 3, 7, 100):
            pages = _walk(star, path, count)
            assert [name for page in pages for name in page] == expected, (relation, count)
            assert all(len(page) <= count for page in pages)
            assert len(pages) == -(-len(expected) // count), (relation, count)  # no empty trailing page
        assert _walk(star, path, None) == [expected]  # default count 20
    # Someone who follows nobody has an empty first page.
    loner = api.sign_in()
    assert loner.get(f"/users/{loner.username}/following").json() == {"users": [], "next": None}


def test_followers_of_an_unknown_user_is_404(api):
    for relation in ("followers", "following"):
        assert_error(api.http.get(f"/users/{unique_name('ghost')}/{relation}"), 404, "user_not_found")


# -- sign-out and dev sign-in switched off ------------------------------------------------

def test_sign_out_makes_the_token_401_at_once_and_leaves_other_sessions_alone(api):
    name = unique_name("Out")
    phone, laptop = api.sign_in(name), api.sign_in(name)
    assert phone.get("/users/me").status_code == 200
    assert phone.request("POST", "/auth/signout").status_code == 204
    for method, path, body in (("GET", "/users/me", None), ("GET", "/timelines/home", None),
                               ("POST", "/tweets", {"content": "after sign-out"}),
                               ("POST", "/auth/signout", None)):
        assert_error(phone.request(method, path, json=body), 401, "invalid_token")
    assert laptop.get("/users/me").status_code == 200
    assert laptop.post_tweet("still signed in")


def test_dev_signin_answers_404_when_the_service_runs_with_dev_signin_off(redis_server, tmp_path):
    service = ServiceProcess(redis_server.url, dev_signin="off")
    try:
        service.start(tmp_path)
        answer = httpx.post(service.url + "/auth/dev", json={"username": unique_name()}, verify=LOCAL_TLS)
        assert_error(answer, 404, "dev_signin_disabled")
        assert httpx.get(service.url + "/healthz", verify=LOCAL_TLS).status_code == 200  # the rest of the service runs
    finally:
        service.stop()


def test_suggestions_are_the_most_followed_users_you_do_not_follow_yet(api, redis_sync):
    star, known, newcomer, me = api.sign_in(), api.sign_in(), api.sign_in(), api.sign_in()
    fans = [api.sign_in() for _ in range(3)]
    for fan in fans:
        fan.follow(star)
    fans[0].follow(known)
    fans[1].follow(known)
    fans[0].follow(newcomer)
    me.follow(known)

    def suggested(count: int = 20) -> list[str]:
        answer = me.get("/users/me/suggestions", params={"count": count})
        assert answer.status_code == 200, answer.text
        return [user["username"] for user in answer.json()["users"]]

    # Other tests share this Redis: the rule, checked on whatever it holds now.
    ranked = [name for name, score in redis_sync.zrevrange(keys.popular_users, 0, 49, withscores=True)
              if score > 0 and name != me.username.lower() and name != known.username.lower()]
    assert [name.lower() for name in suggested()] == ranked[:20]
    assert known.username not in suggested() and me.username not in suggested(), "followed already, or yourself"
    assert redis_sync.zscore(keys.popular_users, star.username.lower()) == 3
    assert redis_sync.zscore(keys.popular_users, newcomer.username.lower()) == 1
    if star.username.lower() in ranked[:20] and newcomer.username.lower() in ranked[:20]:
        assert suggested().index(star.username) < suggested().index(newcomer.username)
    # Unfollowing counts too, and a follow repeated counts once.
    fans[0].follow(star)
    for fan in fans:
        assert fan.request("DELETE", f"/users/{star.username}/follow").status_code == 204
    assert redis_sync.zscore(keys.popular_users, star.username.lower()) == 0
    assert star.username not in suggested()
    assert len(suggested(1)) <= 1
