"""Who may do what: every route of the app, walked with no token, with another user's token and
with a new Google account's username-less session, against what belongs to alice.

Only the author deletes a tweet; only the owner edits a profile (there is no route to edit
someone else's); nobody learns who received a tweet. A route this file does not classify
fails the walk, so a new route has to be thought about here.
"""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.routing import Route

from .support import Api, LiveClient, unique_name
from .test_api_errors import APP, assert_error, pending_session

PUBLIC = "public"  # anyone, token or not: 2xx
OWN = "own"  # needs a token; acts on the caller's own things only: 2xx for bob, about bob
TOKENLESS = "tokenless"  # sign-in routes: no token needed, a token changes nothing

#: (method, path) -> kind, for every route but the per-file ``/static/...`` ones (public).
ROUTES = {
    ("POST", "/auth/google"): TOKENLESS,
    ("POST", "/auth/dev"): TOKENLESS,
    ("POST", "/auth/signout"): OWN,
    ("POST", "/users"): OWN,
    ("PATCH", "/users/me"): OWN,
    ("GET", "/users/me/suggestions"): OWN,
    ("GET", "/users/{username}"): PUBLIC,
    ("PUT", "/users/{username}/follow"): OWN,
    ("DELETE", "/users/{username}/follow"): OWN,
    ("GET", "/users/{username}/followers"): PUBLIC,
    ("GET", "/users/{username}/following"): PUBLIC,
    ("GET", "/users/{username}/tweets"): PUBLIC,
    ("GET", "/users/{username}/mentions"): PUBLIC,
    ("POST", "/tweets"): OWN,
    ("GET", "/tweets/{tweet_id}"): PUBLIC,
    ("DELETE", "/tweets/{tweet_id}"): "author",
    ("PUT", "/tweets/{tweet_id}/like"): OWN,
    ("DELETE", "/tweets/{tweet_id}/like"): OWN,
    ("PUT", "/tweets/{tweet_id}/retweet"): OWN,
    ("DELETE", "/tweets/{tweet_id}/retweet"): OWN,
    ("GET", "/timelines/home"): OWN,
    ("GET", "/hashtags/{tag}/tweets"): PUBLIC,
    ("GET", "/tweet/search/{input}"): PUBLIC,
    ("GET", "/notifications"): OWN,
    ("POST", "/notifications/read"): OWN,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/stats"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/swagger-init.js"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/monitor"): PUBLIC,
    ("GET", "/config"): PUBLIC,
}

#: Every key a tweet or a profile may show: none of them says who received a tweet.
TWEET_KEYS = {"id", "from", "display_name", "timestamp", "content", "likes", "retweets", "mentions", "hashtags",
              "retweeted_by", "retweet_id", "liked", "retweeted"}
PROFILE_KEYS = {"username", "display_name", "bio", "created_at", "followers", "following", "tweets",
                "you_follow", "follows_you"}


def operations() -> list[tuple[str, str]]:
    ops = sorted({(method, route.path) for route in APP.routes if isinstance(route, Route)
                  for method in route.methods if method != "HEAD"})
    unclassified = [op for op in ops if op not in ROUTES and not op[1].startswith("/static/")]
    assert not unclassified, f"classify these routes in ROUTES: {unclassified}"
    return ops


def kind(op: tuple[str, str]) -> str:
    return PUBLIC if op[1].startswith("/static/") else ROUTES[op]


class Alice:
    """What belongs to alice, and a look at it that must not change whoever calls what."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.user = api.sign_in()
        self.carol = api.sign_in()
        self.tweet_id = self.user.post_tweet(f"alice's own tweet for @{self.carol.username} #authz")
        assert self.user.request("PATCH", "/users/me", json={"display_name": "Alice", "bio": "mine"}).status_code == 200

    def url(self, path: str) -> str:
        samples = {"username": self.user.username, "tweet_id": self.tweet_id, "tag": "authz", "input": "authz"}
        return re.sub(r"{(\w+)(?::\w+)?}", lambda m: samples[m.group(1)], path)

    def state(self) -> dict:
        me = self.user.get("/users/me")
        assert me.status_code == 200, "alice's session must survive whatever others do"
        profile = me.json()
        return {"display_name": profile["display_name"], "bio": profile["bio"],
                "following": self.user.get(f"/users/{self.user.username}/following").json()["users"],
                "tweet": self.api.http.get(f"/tweets/{self.tweet_id}").status_code,
                "tweets": profile["tweets"]}


@pytest.fixture(scope="module")
def alice(service):
    api = Api(service.url)
    yield Alice(api)
    api.http.close()


def body_for(method: str, path: str) -> dict | None:
    return {("POST", "/auth/dev"): {"username": unique_name("z")},
            ("POST", "/auth/google"): {"credential": "a.b.c"},
            ("POST", "/users"): {"username": unique_name("z")},
            ("PATCH", "/users/me"): {"display_name": "Not Alice", "bio": "taken over"},
            ("POST", "/tweets"): {"content": "from whoever calls"},
            ("POST", "/notifications/read"): {"up_to": "1"}}.get((method, path))


def call(alice: Alice, op: tuple[str, str], token: str | None) -> httpx.Response:
    method, path = op
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return alice.api.http.request(method, alice.url(path), json=body_for(method, path), headers=headers)


def assert_nothing_shows_who_received_a_tweet(answer: httpx.Response) -> None:
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return

    def walk(node):
        if isinstance(node, dict):
            if "content" in node and "from" in node:
                assert set(node) <= TWEET_KEYS, node
            elif "display_name" in node:
                assert set(node) <= PROFILE_KEYS, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(answer.json())


@pytest.mark.parametrize("op", operations(), ids=lambda op: f"{op[0]} {op[1]}")
def test_without_a_token(alice, op):
    before = alice.state()
    answer = call(alice, op, None)
    expected = kind(op)
    if expected in (OWN, "author"):
        assert_error(answer, 401, "missing_token")
    elif op == ("POST", "/auth/google"):
        assert_error(answer, 404, "google_signin_disabled")  # the shared service has no GOOGLE_CLIENT_ID
    else:
        assert 200 <= answer.status_code < 300, (op, answer.status_code, answer.text[:200])
    assert_nothing_shows_who_received_a_tweet(answer)
    assert alice.state() == before


@pytest.mark.parametrize("op", operations(), ids=lambda op: f"{op[0]} {op[1]}")
def test_with_another_users_token(alice, op):
    bob = alice.api.sign_in()
    before = alice.state()
    answer = call(alice, op, bob.token)
    expected = kind(op)
    if expected == "author":
        assert_error(answer, 403, "not_author")
    elif op == ("POST", "/users"):
        assert_error(answer, 409, "username_already_chosen")  # bob has one; nobody else's can be taken
    elif op == ("POST", "/auth/google"):
        assert_error(answer, 404, "google_signin_disabled")
    else:
        assert 200 <= answer.status_code < 300, (op, answer.status_code, answer.text[:200])
    assert_nothing_shows_who_received_a_tweet(answer)
    assert alice.state() == before  # whatever bob did, he did as bob

    if op == ("PATCH", "/users/me"):
        assert answer.json()["username"] == bob.username and answer.json()["bio"] == "taken over"
    if op == ("POST", "/tweets"):
        assert alice.api.http.get(answer.headers["location"]).json()["from"] == bob.username
    if op == ("GET", "/timelines/home"):
        assert alice.tweet_id not in [t["id"] for t in answer.json()["tweets"]]  # bob follows nobody
    if op == ("GET", "/notifications"):
        assert answer.json() == {"notifications": [], "next": None, "unread": 0}  # bob's: nobody did a thing
    if op == ("POST", "/auth/signout"):
        assert_error(bob.get("/timelines/home"), 401)  # bob's session ended, alice's did not (state above)


@pytest.mark.parametrize("op", operations(), ids=lambda op: f"{op[0]} {op[1]}")
def test_with_a_session_that_has_no_username_yet(alice, redis_server, op):
    before = alice.state()
    answer = call(alice, op, pending_session(redis_server))
    expected = kind(op)
    if op == ("POST", "/users"):
        assert answer.status_code == 201, answer.text
    elif op == ("POST", "/auth/signout"):
        assert answer.status_code == 204
    elif expected in (OWN, "author"):
        assert_error(answer, 403, "username_required")
    elif op == ("POST", "/auth/google"):
        assert_error(answer, 404, "google_signin_disabled")
    else:
        assert 200 <= answer.status_code < 300, (op, answer.status_code, answer.text[:200])
    assert alice.state() == before


def test_only_the_mentioned_and_the_followers_receive_a_tweet_and_nobody_else_can_tell(alice):
    bob = alice.api.sign_in()
    carol_home = alice.carol.get("/timelines/home").json()["tweets"]
    assert alice.tweet_id in [t["id"] for t in carol_home]  # mentioned: received
    assert alice.tweet_id not in [t["id"] for t in bob.get("/timelines/home").json()["tweets"]]
    shown = alice.api.http.get(f"/tweets/{alice.tweet_id}").json()
    assert set(shown) <= TWEET_KEYS and shown["mentions"] == [alice.carol.username]


async def test_the_live_socket_is_the_callers_own_and_needs_a_token(alice, service):
    bob = alice.api.sign_in()
    async with LiveClient(service.url, bob.token) as live:
        assert live.ready["username"] == bob.username
    anonymous = await LiveClient(service.url, None).connect(auth=False)
    await anonymous.send({"type": "auth", "token": None, "since": None})
    assert await anonymous.close_code() == 4401
