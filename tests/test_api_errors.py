"""Every route answers bad input with the contract's error JSON and the right status, never a 500.

The routes come from the app itself (``create_app(...).routes``) and the bodies they take from
the OpenAPI document it serves, so a new route is covered without touching this file. A path
parameter this file has no sample value for fails loudly rather than being skipped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time

import httpx
import pytest
from starlette.routing import Route

from http_api.app import create_app
from http_api.openapi import schema_generator
from realtime.config import Settings
from launcher.embedded_redis import RedisServerProcess
from realtime.sessions import Sessions

from .conftest import start_redis
from .support import LOCAL_TLS, TIME_SCALE, Api, ServiceProcess, unique_name, wait_until

# -- what the app serves ----------------------------------------------------------------

APP = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))  # never started: only its routes are read


def run_async(coroutine):
    """Run ``coroutine`` to its end in a thread of its own, away from any loop pytest-asyncio holds."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _schema() -> dict:
    """The app's OpenAPI document, without a running server (test_openapi checks what it serves)."""
    return json.loads(json.dumps(schema_generator.get_schema(routes=APP.routes)))


SCHEMA = _schema()

#: (method, path template) of every route, HEAD aside (Starlette adds it to every GET).
OPERATIONS = sorted({(method, route.path) for route in APP.routes if isinstance(route, Route)
                     for method in route.methods if method != "HEAD"})


def _operation(method: str, path: str) -> dict:
    return SCHEMA["paths"].get(path, {}).get(method.lower(), {})


def _json_body_schema(method: str, path: str) -> dict | None:
    body = _operation(method, path).get("requestBody")
    return body["content"]["application/json"]["schema"] if body else None


def _needs_token(method: str, path: str) -> bool:
    return bool(_operation(method, path).get("security"))


JSON_OPERATIONS = [op for op in OPERATIONS if _json_body_schema(*op)]
OTHER_OPERATIONS = [op for op in OPERATIONS if not _json_body_schema(*op)]
TOKEN_OPERATIONS = [op for op in OPERATIONS if _needs_token(*op)]
PAGINATED_OPERATIONS = [op for op in OPERATIONS
                        if any(p.get("$ref", "").endswith("/count") for p in _operation(*op).get("parameters", []))]

#: The one call a session without a username may make (a Google account's first session).
PENDING_SESSION_OPERATIONS = {("POST", "/users")}

#: What the shared service (no GOOGLE_CLIENT_ID) answers a valid body with, where that is not
#: a 2xx; it still shows the body got past every check. tests/test_google_auth.py signs real
#: tokens for a service that has a client id.
NOT_CONFIGURED_HERE = {("POST", "/auth/google"): (404, "google_signin_disabled")}

USERNAME_PATTERN = "^[A-Za-z0-9_]{1,15}$"
ID_PATTERN = "^[0-9]{1,16}$"


def op_id(op: tuple[str, str]) -> str:
    return f"{op[0]} {op[1]}"


def path_params(path: str) -> list[str]:
    return re.findall(r"{(\w+)(?::\w+)?}", path)


# -- helpers ------------------------------------------------------------------------------

#: Words that give away the implementation: no answer may contain them.
LEAKS = ("Traceback", 'File "', "Error:", "Exception", "NoneType", "<class", "TypeError", "KeyError",
         "ValueError", "AttributeError", "orjson", "starlette", "redis.exceptions", "http_api", "realtime.")


def assert_error(response: httpx.Response, status: int, code: str | set[str] | None = None) -> dict:
    """``response`` is the contract's error JSON with ``status`` (and ``code``), and leaks nothing."""
    where = f"{response.request.method} {response.request.url.raw_path.decode()}"
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("content-type") == "application/json; charset=utf-8", where
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, f"{where}: {body}"
    assert re.fullmatch(r"[a-z][a-z0-9_]*", body["error"]["code"]), f"{where}: {body}"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"].strip(), f"{where}: {body}"
    if code is not None:
        codes = {code} if isinstance(code, str) else code
        assert body["error"]["code"] in codes, f"{where}: {body}"
    for leak in LEAKS:
        assert leak not in response.text, f"{where} leaks {leak!r}: {response.text[:300]}"
    return body["error"]


def assert_sound(response: httpx.Response) -> None:
    """Any answer but a 5xx; an error answer has the contract's shape."""
    assert response.status_code < 500, f"{response.request.method} {response.request.url}: {response.text[:300]}"
    if response.status_code >= 400:
        assert_error(response, response.status_code)


def pending_session(backend) -> str:
    """A token whose session has no username yet, as a new Google account's first session."""
    async def create() -> str:
        client = await backend.async_client()
        try:
            return await Sessions(client).create(None, time.time() + 3600)
        finally:
            await client.aclose()
    return run_async(create())


def sample_body(schema: dict) -> dict:
    """A valid body for a JSON request schema: every property, each a fitting string."""
    body = {}
    for name, prop in schema.get("properties", {}).items():
        assert prop.get("type") == "string", f"no sample value for {name}: {prop}; teach sample_body"
        if prop.get("pattern") == ID_PATTERN:
            body[name] = "1"
        elif "pattern" in prop:
            assert prop["pattern"] == USERNAME_PATTERN, f"no sample value for pattern {prop['pattern']}"
            body[name] = unique_name("e")
        else:
            body[name] = "hello"
    return body


class World:
    """Who and what the filled-in paths point at: another user and that user's tweet."""

    def __init__(self, api: Api, backend, settings: Settings) -> None:
        self.api = api
        self.backend = backend
        self.max_body_bytes = settings.max_body_bytes
        self.other = api.sign_in()
        self.tweet_id = self.other.post_tweet("a tweet for the error tests #errors")

    def url(self, path: str, **overrides: str) -> str:
        samples = {"username": self.other.username, "tweet_id": self.tweet_id, "tag": "errors", "input": "errors"}
        for name in path_params(path):
            if name not in overrides and name not in samples:
                pytest.fail(f"no sample value for the path parameter {name!r} of {path}; add one to World.url")
            value = overrides.get(name, samples.get(name))
            path = re.sub(r"{%s(?::\w+)?}" % name, value, path)
        return path

    def headers(self, method: str, path: str) -> dict[str, str]:
        """A fresh token fit for the call (a fresh user, so sign-out or a delete harms no other case)."""
        if (method, path) in PENDING_SESSION_OPERATIONS:
            return {"Authorization": f"Bearer {pending_session(self.backend)}"}
        if _needs_token(method, path):
            return {"Authorization": f"Bearer {self.api.sign_in().token}"}
        return {}

    def call(self, method: str, path: str, *, url_overrides: dict | None = None, **kwargs) -> httpx.Response:
        headers = {**self.headers(method, path), **kwargs.pop("headers", {})}
        return self.api.http.request(method, self.url(path, **(url_overrides or {})), headers=headers, **kwargs)


@pytest.fixture(scope="module")
def world(service, redis_server):
    api = Api(service.url)
    yield World(api, redis_server, Settings.load(environ=service.env))
    api.http.close()


# -- request bodies -----------------------------------------------------------------------

MALFORMED_BODIES = {
    "truncated": b'{"content": "x"',
    "single_quotes": b"{'username': 'x'}",
    "bare_word": b"hello",
    "trailing_comma": b'{"username": "x",}',
    "nan": b'{"username": NaN}',
    "not_utf8": b'\xff\xfe{"username": "x"}',
    "lone_surrogate": b'{"username": "\\ud800"}',
    "deeply_nested": b"[" * 10_000 + b"]" * 10_000,
    "two_documents": b'{"a": 1} {"b": 2}',
    "nul_byte": b'{"username": "x"}\x00',
}


@pytest.mark.parametrize("op", JSON_OPERATIONS, ids=op_id)
@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_malformed_json_is_400_malformed_json(world, op, body):
    response = world.call(*op, content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "malformed_json")


NOT_OBJECTS = {"array": [], "array_of_object": [{"content": "x"}], "string": "content", "number": 1,
               "float": 1.5, "null": None, "true": True}


@pytest.mark.parametrize("op", JSON_OPERATIONS, ids=op_id)
@pytest.mark.parametrize("value", NOT_OBJECTS.values(), ids=NOT_OBJECTS.keys())
def test_json_that_is_not_an_object_is_400_wrong_type(world, op, value):
    assert_error(world.call(*op, content=json.dumps(value).encode()), 400, "wrong_type")


@pytest.mark.parametrize("op", JSON_OPERATIONS, ids=op_id)
def test_an_empty_body_is_400(world, op):
    assert_error(world.call(*op, content=b""), 400)


WRONG_TYPES = {"int": 1, "float": 2.5, "true": True, "array": ["x"], "empty_array": [], "object": {"a": "b"},
               "empty_object": {}, "nested": {"a": {"b": ["c"]}}}

FIELD_CASES = [(op, field) for op in JSON_OPERATIONS for field in _json_body_schema(*op)["properties"]]


@pytest.mark.parametrize("op,field", FIELD_CASES, ids=lambda case: op_id(case) if isinstance(case, tuple) else case)
@pytest.mark.parametrize("value", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_a_field_of_the_wrong_type_is_400_wrong_type(world, op, field, value):
    body = {**sample_body(_json_body_schema(*op)), field: value}
    assert_error(world.call(*op, json=body), 400, "wrong_type")


REQUIRED_CASES = [(op, field) for op in JSON_OPERATIONS for field in _json_body_schema(*op).get("required", [])]


@pytest.mark.parametrize("op,field", REQUIRED_CASES, ids=lambda case: op_id(case) if isinstance(case, tuple) else case)
def test_a_missing_or_null_required_field_is_400(world, op, field):
    body = sample_body(_json_body_schema(*op))
    assert_error(world.call(*op, json={k: v for k, v in body.items() if k != field}), 400)
    assert_error(world.call(*op, json={**body, field: None}), 400)


@pytest.mark.parametrize("op", JSON_OPERATIONS, ids=op_id)
def test_a_valid_sample_body_succeeds_so_the_cases_above_test_what_they_claim(world, op):
    response = world.call(*op, json=sample_body(_json_body_schema(*op)))
    if op in NOT_CONFIGURED_HERE:
        assert_error(response, *NOT_CONFIGURED_HERE[op])
    else:
        assert 200 <= response.status_code < 300, response.text


def _padded(body: dict, size: int) -> bytes:
    """``body`` plus a filler field, serialised to exactly ``size`` bytes."""
    empty = json.dumps({**body, "filler": ""}).encode()
    data = json.dumps({**body, "filler": "x" * (size - len(empty))}).encode()
    assert len(data) == size
    return data


@pytest.mark.parametrize("op", JSON_OPERATIONS, ids=op_id)
def test_a_body_of_exactly_max_body_bytes_is_accepted(world, op):
    response = world.call(*op, content=_padded(sample_body(_json_body_schema(*op)), world.max_body_bytes))
    if op in NOT_CONFIGURED_HERE:
        assert_error(response, *NOT_CONFIGURED_HERE[op])
    else:
        assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize("op", JSON_OPERATIONS, ids=op_id)
def test_a_body_over_max_body_bytes_with_content_length_is_413(world, op):
    body = _padded(sample_body(_json_body_schema(*op)), world.max_body_bytes + 1)
    response = world.call(*op, content=body)
    assert response.request.headers["content-length"] == str(world.max_body_bytes + 1)
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("op", JSON_OPERATIONS, ids=op_id)
def test_a_chunked_body_over_max_body_bytes_without_content_length_is_413(world, op):
    body = _padded(sample_body(_json_body_schema(*op)), world.max_body_bytes + 1)

    def chunks():
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    response = world.call(*op, content=chunks())
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("op", OTHER_OPERATIONS, ids=op_id)
def test_routes_without_a_json_body_never_fail_on_whatever_body_they_are_sent(world, op):
    for body in (b"{", b"[]", b"null", b"\xff" * 100, b"x" * (world.max_body_bytes + 1)):
        assert_sound(world.call(*op, content=body, headers={"Content-Type": "application/json"}))


@pytest.mark.parametrize("op", OTHER_OPERATIONS, ids=op_id)
def test_routes_without_a_json_body_still_refuse_a_declared_oversized_body_with_413(world, op):
    response = world.call(*op, content=b"x" * (world.max_body_bytes + 1))
    assert_error(response, 413, "payload_too_large")


# -- routes and methods -------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/nope", "/tweets/1/nope", "/users/x/y/z", "/timelines", "/timelines/home/extra", "/hashtags/x",
    "/%00", "/%FF%FE", "/users/" + "x/" * 200, "/docs/nope", "/openapi.json/x",
])
def test_unknown_routes_answer_404_json(world, path):
    for method in ("GET", "POST", "DELETE"):
        assert_error(world.api.http.request(method, path), 404, "not_found")


@pytest.mark.parametrize("path", ["/docs/assets/no-such-file.js", "/docs/assets/%2e%2e/%2e%2e/etc/passwd",
                                  "/docs/assets/", "/docs/assets/%00"])
def test_unknown_static_docs_assets_answer_404_json(world, path):
    assert_error(world.api.http.get(path), 404, "not_found")


def _allowed_methods(url_path: str) -> set[str]:
    """What the app answers on a concrete path: every route whose pattern matches it."""
    return {method for route in APP.routes if isinstance(route, Route) and route.path_regex.match(url_path)
            for method in route.methods}


@pytest.mark.parametrize("path", sorted({path for _, path in OPERATIONS}))
def test_wrong_methods_answer_405_json_with_an_allow_header_naming_every_method(world, path):
    url = world.url(path)
    allowed = _allowed_methods(url)
    for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - allowed):
        response = world.api.http.request(method, url, content=b"{}")
        assert_error(response, 405, "method_not_allowed")
        assert set(response.headers["allow"].replace(" ", "").split(",")) == allowed, (method, url)


def test_wrong_methods_on_static_docs_assets_answer_405_json(world):
    response = world.api.http.post("/docs/assets/swagger-ui.css")
    assert_error(response, 405, "method_not_allowed")


# -- path parameters ----------------------------------------------------------------------

BAD_TWEET_IDS = ["abc", "0", "-1", "1.5", "1e3", "0x10", "+5", " 5", "99999999999999999999999999999",
                 "9007199254740992", "%D9%A1%D9%A2", "%EF%BC%91%EF%BC%92", "1%00", "%F0%9F%98%80"]
TWEET_ID_OPERATIONS = [op for op in OPERATIONS if "tweet_id" in path_params(op[1])]


@pytest.mark.parametrize("op", TWEET_ID_OPERATIONS, ids=op_id)
def test_bad_tweet_ids_in_the_path_answer_404(world, op):
    for bad in BAD_TWEET_IDS:
        assert_error(world.call(*op, url_overrides={"tweet_id": bad}), 404, "tweet_not_found")


BAD_USERNAMES = ["a" * 16, "a" * 2000, "%C3%A9", "%00", "%F0%9F%98%80", "a%0A", "a%20b", "%20",
                 "%E2%80%AE", "a%E2%80%8Db", "e%CC%81", "%ED%A0%80", "%FF", "%EF%BC%A1", "a.b"]
USERNAME_OPERATIONS = [op for op in OPERATIONS if "username" in path_params(op[1])]


@pytest.mark.parametrize("op", USERNAME_OPERATIONS, ids=op_id)
def test_overlong_or_odd_usernames_in_the_path_answer_404(world, op):
    for bad in BAD_USERNAMES:
        assert_error(world.call(*op, url_overrides={"username": bad}), 404, "user_not_found")


ODD_SEGMENTS = ["x" * 5000, "%00", "%FF", "%ED%A0%80", "%E2%80%AE", "%F0%9F%98%80", "a%0A", "-1", "%25",
                "%22%3E%3Cscript%3E", "%5C", "%7B%7D"]


@pytest.mark.parametrize("op", [op for op in OPERATIONS if path_params(op[1])], ids=op_id)
def test_odd_values_of_every_path_parameter_answer_a_4xx_error(world, op):
    for name in path_params(op[1]):
        for odd in ODD_SEGMENTS:
            response = world.call(*op, url_overrides={name: odd})
            assert 400 <= response.status_code < 500, (op, name, odd, response.text)
            assert_error(response, response.status_code)


def test_odd_hashtags_in_the_path_answer_422_invalid_hashtag(world):
    for bad in ("%F0%9F%98%80", "a%0A", "a%20b", "a" * 101, "%23", "a-b", "%00"):
        assert_error(world.api.http.get(f"/hashtags/{bad}/tweets"), 422, "invalid_hashtag")


# -- query parameters ---------------------------------------------------------------------

@pytest.mark.parametrize("op", PAGINATED_OPERATIONS, ids=op_id)
def test_count_out_of_range_is_422_and_count_that_is_not_a_whole_number_is_400(world, op):
    for count in ("0", "101", "-1", "-0", "1000000", "99999999999999999999"):
        response = world.call(*op, params={"count": count})
        assert response.status_code in (400, 422), (count, response.text)
        assert_error(response, response.status_code, {"invalid_count", "wrong_type"})
    for count in ("0", "101", "-1"):
        assert_error(world.call(*op, params={"count": count}), 422, "invalid_count")
    for count in ("abc", "1e3", "1.5", "", " 5", "0x10", "\uff15", "\u0665", "5\n"):
        assert_error(world.call(*op, params={"count": count}), 400, "wrong_type")
    for count in ("1", "100"):
        assert world.call(*op, params={"count": count}).status_code == 200


@pytest.mark.parametrize("op", [op for op in PAGINATED_OPERATIONS
                                if any(p.get("$ref", "").endswith("/before")
                                       for p in _operation(*op).get("parameters", []))], ids=op_id)
def test_before_that_is_not_an_id_is_400(world, op):
    for before in ("abc", "-1", "1.5", "1e3", "99999999999999999999", "\u0665", "5\n"):
        assert_error(world.call(*op, params={"before": before}), 400, "wrong_type")
    assert world.call(*op, params={"before": world.tweet_id}).status_code == 200


@pytest.mark.parametrize("op", [op for op in PAGINATED_OPERATIONS
                                if any(p.get("$ref", "").endswith("/cursor")
                                       for p in _operation(*op).get("parameters", []))], ids=op_id)
def test_cursor_that_no_page_could_have_given_is_400(world, op):
    for cursor in ("a b", "x" * 16, "\u00e9", "a\n", "!"):
        assert_error(world.call(*op, params={"cursor": cursor}), 400, "invalid_cursor")


# -- tokens -------------------------------------------------------------------------------

@pytest.mark.parametrize("op", TOKEN_OPERATIONS, ids=op_id)
def test_missing_garbage_or_unknown_bearer_tokens_answer_401(world, op):
    signed_out = world.api.sign_in()
    assert signed_out.request("POST", "/auth/signout").status_code == 204
    cases = {
        "missing": {},
        "empty": {"Authorization": ""},
        "scheme only": {"Authorization": "Bearer"},
        "other scheme": {"Authorization": f"Basic {signed_out.token}"},
        "unknown": {"Authorization": "Bearer " + "A" * 43},
        "garbage": {"Authorization": "Bearer %%%<>{}\t!"},
        "huge": {"Authorization": "Bearer " + "x" * 8000},
        "not ascii": {"Authorization": "Bearer \u00e9\u00e9".encode("latin-1")},
        "signed out": {"Authorization": f"Bearer {signed_out.token}"},
    }
    for name, headers in cases.items():
        response = world.api.http.request(op[0], world.url(op[1]), headers=headers, json={})
        error = assert_error(response, 401)
        assert error["code"] in ("missing_token", "invalid_token", "expired_token"), (name, error)


# -- Redis going away ---------------------------------------------------------------------

@pytest.mark.slow
def test_calls_answer_503_redis_unavailable_while_redis_is_down_and_recover_when_it_returns(tmp_path):
    # A Redis and a service of our own: this test kills its Redis, the session's must live on.
    first = start_redis(tmp_path / "redis")
    service = ServiceProcess(first.url)
    second: RedisServerProcess | None = None
    # Every call is bounded: a hang fails the test instead of stalling it.
    http = httpx.Client(base_url=service.url, timeout=5.0 * TIME_SCALE, verify=LOCAL_TLS)
    try:
        service.start(tmp_path)
        api = Api(service.url)
        api.http = http
        alice, bob = api.sign_in(), api.sign_in()
        bob.follow(alice)
        tweet_id = alice.post_tweet("before the outage")
        assert http.get("/healthz").json() == {"status": "ok"}

        first.kill()

        calls = [
            ("GET", "/healthz", {}),
            ("POST", "/tweets", {"json": {"content": "during the outage"}}),
            ("GET", "/timelines/home", {}),
            ("GET", f"/tweets/{tweet_id}", {}),
            ("PUT", f"/tweets/{tweet_id}/like", {}),
            ("GET", f"/users/{alice.username}", {}),
            ("GET", f"/users/{alice.username}/followers", {}),
            ("PATCH", "/users/me", {"json": {"bio": "down"}}),
            ("POST", "/auth/dev", {"json": {"username": unique_name()}}),
            ("POST", "/auth/signout", {}),
        ]
        for method, path, kwargs in calls:
            response = alice.request(method, path, **kwargs)
            assert_error(response, 503, "redis_unavailable")

        second = RedisServerProcess(first.binary, tmp_path / "redis", port=first.port).start()
        wait_until(lambda: http.get("/healthz").status_code == 200, what="/healthz to answer 200 again")
        assert http.get("/healthz").json() == {"status": "ok"}

        # The new Redis is empty (no persistence): sign in anew, post, and see the fan-out work.
        carol, dave = api.sign_in(), api.sign_in()
        dave.follow(carol)
        new_id = carol.post_tweet("after the outage")
        assert carol.get(f"/tweets/{new_id}").json()["content"] == "after the outage"
        wait_until(lambda: new_id in dave.home_ids(), what="the fan-out to reach a follower after recovery")
    finally:
        http.close()
        service.stop()
        first.stop()
        if second is not None:
            second.stop()

