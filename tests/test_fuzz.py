"""Property: no input makes the service answer a 5xx, on any route.

Hypothesis generates requests for every operation of the OpenAPI document the app serves
(path values, query values, JSON bodies built from each body schema and anything else,
raw bytes, no token, a real token, a username-less session, garbage), and Google ID tokens
that are properly signed but carry claims of any shape. They go to a real uvicorn process
on a real Redis with Google sign-in configured (certificates from a local server) and the
abuse limits on. Each answer must be below 500 and, if an error, the contract's error JSON.
A small property does the same for the first frame of the WebSocket.

Bounded: a fixed number of examples per operation, the whole file in about a minute (so it is
``slow``: outside the fast loop, in the suite's last pass).
"""

from __future__ import annotations

import itertools
import json
import re
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .google_support import GoogleStandIn
from .support import LOCAL_TLS, TIMEOUT, Api, Backend, ServiceProcess, unique_name
from .test_api_errors import OPERATIONS, SCHEMA, assert_sound, pending_session

pytestmark = pytest.mark.slow  # about 1,300 generated requests

FUZZ = settings(max_examples=25, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def target(single_redis, google, tmp_path_factory):
    service = ServiceProcess(single_redis.url, google_client_id=google.claims()["aud"],
                             google_certs_url=google.server.url, rate_limits="on",
                             # Limits on (their code runs under the fuzz) but high enough not to hide the routes.
                             rate_limit_posts="100000/1m", rate_limit_signin="100000/1m", rate_limit_likes="100000/1m",
                             rate_limit_follows="100000/1m", max_sockets_per_user="3")
    service.start(tmp_path_factory.mktemp("fuzz"))
    yield service
    service.stop()


class World:
    def __init__(self, service: ServiceProcess, redis_url: str) -> None:
        self.api = Api(service.url)
        self.users = [self.api.sign_in() for _ in range(4)]
        self.tweets = [self.users[0].post_tweet(f"fuzz #fuzz @{self.users[1].username}") for _ in range(2)]
        self.pending = [pending_session(Backend(redis_url)) for _ in range(3)]
        self._fresh = itertools.count()

    def token(self, kind: str) -> str | None:
        n = next(self._fresh)
        return {"none": None, "user": self.users[n % len(self.users)].token,
                "pending": self.pending[n % len(self.pending)], "garbage": "garbage-token",
                "new": None}[kind] if kind != "new" else self.api.sign_in().token


@pytest.fixture(scope="module")
def world(target, single_redis):
    world = World(target, single_redis.url)
    yield world
    world.api.http.close()


# -- strategies ------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
odd_text = st.one_of(st.text(max_size=40), st.from_regex(r"\A[A-Za-z0-9_]{0,20}\Z"),
                     st.from_regex(r"\A-?[0-9]{0,22}\Z"), st.sampled_from(["me", "", " ", "%", "..", "#", "@"]))


def path_value(name: str, world: World) -> st.SearchStrategy[str]:
    real = {"username": [u.username for u in world.users] + ["me"], "tweet_id": world.tweets,
            "tag": ["fuzz"], "input": ["fu", "#fu", "@u"]}.get(name, [])
    return st.one_of(st.sampled_from(real), odd_text) if real else odd_text


def json_body(schema: dict) -> st.SearchStrategy[object]:
    """Objects with the schema's properties set to fitting or unfitting values, or any JSON at all."""
    properties = schema.get("properties", {})
    fitting = {name: st.one_of(st.text(max_size=300), st.from_regex(r"\A[A-Za-z0-9_]{1,15}\Z"), json_values)
               for name in properties}
    shaped = st.fixed_dictionaries({}, optional=fitting)
    return st.one_of(shaped, shaped, json_values)


@st.composite
def signed_credentials(draw, google: GoogleStandIn) -> str:
    """Properly signed Google ID tokens: valid claims with one to three removed or replaced by
    any JSON at all, so that each check is reached with the others passing."""
    claims = dict(google.claims(sub="fuzz-account"))
    for name in draw(st.lists(st.sampled_from(sorted(claims) + ["nbf"]), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            claims.pop(name, None)
        else:
            claims[name] = draw(json_values)
    return google.key.sign(claims)


def request(op: tuple[str, str], world: World, google: GoogleStandIn) -> st.SearchStrategy[dict]:
    method, path = op
    operation = SCHEMA["paths"].get(path, {}).get(method.lower(), {})
    names = re.findall(r"{(\w+)(?::\w+)?}", path)
    query_names = [p["name"] for p in (_resolve(p) for p in operation.get("parameters", [])) if p["in"] == "query"]
    body_schema = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
    if op == ("POST", "/auth/google"):  # mostly signed tokens: the deepest input of all
        signed = st.builds(lambda c: {"credential": c}, signed_credentials(google))
        body = st.one_of(signed, signed, signed, json_body(body_schema))
    elif body_schema:
        body = json_body(body_schema)
    else:
        body = st.none()
    return st.fixed_dictionaries({
        "path": st.tuples(*(path_value(name, world) for name in names)) if names else st.just(()),
        "query": st.dictionaries(st.sampled_from(query_names + ["x"]), odd_text, max_size=3),
        "body": st.one_of(body, body, body, st.binary(max_size=64).map(lambda b: ("raw", b))),
        "token": st.sampled_from(["none", "user", "pending", "garbage", "new"]),
    })


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        target = SCHEMA
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


# -- the properties --------------------------------------------------------------------------

def test_the_fuzz_covers_every_operation_the_server_documents(target):
    served = httpx.get(target.url + "/openapi.json", verify=LOCAL_TLS).json()
    documented = {(m.upper(), p) for p, item in served["paths"].items() for m in item if m != "parameters"}
    assert documented <= set(OPERATIONS)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op[0]} {op[1]}")
def test_no_input_makes_any_route_answer_5xx(world, google, op):
    @settings(FUZZ, max_examples=200 if op == ("POST", "/auth/google") else 25)
    @given(data=st.data())
    def run(data):
        call = data.draw(request(op, world, google))
        values = iter(call["path"])
        url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: quote(next(values), safe=""), op[1]) or "/"
        token = world.token(call["token"])
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = call["body"]
        if isinstance(body, tuple):
            content = body[1]
        elif body is None:
            content = b""
        else:
            content = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS) if _orjson_ok(body) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        answer = world.api.http.request(op[0], url, params=call["query"], content=content, headers=headers)
        assert_sound(answer)

    run()


def _orjson_ok(value) -> bool:
    try:
        orjson.dumps(value)
        return True
    except TypeError:  # an integer beyond 64 bits: the standard library writes it
        return False


@FUZZ
@given(frame=st.one_of(json_values.map(lambda v: json.dumps(v)),
                       st.fixed_dictionaries({"type": st.just("auth")},
                                             optional={"token": st.one_of(json_values, st.just("valid")),
                                                       "since": json_values}).map(json.dumps),
                       st.text(max_size=100), st.binary(max_size=100)))
def test_no_first_frame_makes_the_websocket_fail_inside(world, target, frame):
    if '"valid"' in frame if isinstance(frame, str) else False:
        frame = frame.replace('"valid"', json.dumps(world.users[0].token))
    url = target.url.replace("http://", "ws://") + "/ws"
    with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as socket:
        socket.send(frame)
        try:
            while True:
                message = json.loads(socket.recv(timeout=TIMEOUT))
                if message.get("type") == "ready":
                    return  # a valid auth frame: served
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in (4400, 4401, 1009), closed


def test_sign_in_still_works_after_the_fuzz(target, google):
    answer = httpx.post(target.url + "/auth/google", json={"credential": google.token()}, verify=LOCAL_TLS)
    assert answer.status_code == 200, answer.text
    assert httpx.post(target.url + "/auth/dev", json={"username": unique_name("f")}, verify=LOCAL_TLS).status_code == 200
