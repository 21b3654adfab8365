"""Headers and origins: nosniff on every answer, a Content-Security-Policy on every page that
lets in Google's sign-in and nothing else from outside, no CORS unless configured (and never
``*``), the WebSocket Origin check, the WebSocket frame limit, and production mode refusing
dev sign-in even when run.py starts an embedded Redis."""

from __future__ import annotations

import re

import httpx
import pytest
import websockets
from starlette.routing import Route

from realtime.config import Settings, SettingsError

from .google_support import CLIENT_ID
from .support import LOCAL_TLS, Api, LiveClient, RunPy, ServiceProcess, unique_name
from .test_api_errors import APP, assert_error

APP_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def google_configured(single_redis, tmp_path_factory):
    """A service with Google sign-in, a CORS origin and a WebSocket origin configured."""
    service = ServiceProcess(single_redis.url, google_client_id=CLIENT_ID, cors_origins=APP_ORIGIN,
                             allowed_origins=APP_ORIGIN)
    yield service.start(tmp_path_factory.mktemp("security"))
    service.stop()


def sample_urls(api: Api) -> list[tuple[str, str]]:
    """(method, url) for every route of the app, filled in with a real user and tweet."""
    alice = api.sign_in()
    samples = {"username": alice.username, "tweet_id": alice.post_tweet("headers"), "tag": "headers",
               "input": "headers"}
    calls = []
    for route in APP.routes:
        if isinstance(route, Route):
            url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: samples[m.group(1)], route.path)
            calls += [(method, url) for method in sorted(route.methods) if method != "HEAD"]
    return calls


# -- every answer -------------------------------------------------------------------------------

def test_every_answer_says_nosniff_successes_and_errors_alike(api, service):
    calls = sample_urls(api) + [("GET", "/no/such/route"), ("DELETE", "/healthz"), ("GET", "/docs/assets/x.js"),
                                ("GET", "/docs/assets/swagger-ui.css")]
    token = api.sign_in().token
    for method, url in calls:
        for headers in ({}, {"Authorization": f"Bearer {token}"}):
            answer = api.http.request(method, url, headers=headers)
            assert answer.headers.get("x-content-type-options") == "nosniff", (method, url, answer.status_code)
    too_large = api.http.post("/tweets", content=b"x" * 70_000)
    assert too_large.status_code == 413 and too_large.headers["x-content-type-options"] == "nosniff"


def test_every_html_answer_has_a_content_security_policy_loading_nothing_from_outside(api, service):
    html = []
    for method, url in sample_urls(api):
        answer = api.http.request(method, url)
        if answer.headers.get("content-type", "").startswith("text/html"):
            html.append(url)
            policy = answer.headers.get("content-security-policy", "")
            assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, (url, policy)
            assert "object-src 'none'" in policy, (url, policy)
            assert not re.search(r"https?:|\*", policy), (url, policy)  # no host but our own
            assert "unsafe-eval" not in policy and "script-src 'self'" in policy, (url, policy)
            assert "'unsafe-inline'" not in _directive(policy, "script-src"), (url, policy)
    assert {"/", "/monitor", "/docs"} <= set(html), html


def _directive(policy: str, name: str) -> str:
    for part in policy.split(";"):
        if part.strip().startswith(name + " "):
            return part.strip()
    return ""


def test_with_google_configured_the_pages_let_in_googles_sign_in_and_nothing_else_from_outside(google_configured):
    for path in ("/", "/monitor"):
        answer = httpx.get(google_configured.url + path, verify=LOCAL_TLS)
        policy = answer.headers["content-security-policy"]
        assert "https://accounts.google.com/gsi/client" in _directive(policy, "script-src"), policy
        outside = re.findall(r"https?://[^\s;]+", policy)
        assert outside and all(url.startswith("https://accounts.google.com/gsi/") for url in outside), policy
        assert "'unsafe-inline'" not in _directive(policy, "script-src") and "*" not in policy, policy
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(google_configured.url + "/config", verify=LOCAL_TLS).json()["google_client_id"] == CLIENT_ID


# -- CORS ---------------------------------------------------------------------------------------

def test_no_cors_headers_at_all_unless_configured(api, service):
    for method, url in sample_urls(api):
        for answer in (api.http.request(method, url, headers={"Origin": "https://evil.example"}),
                       api.http.options(url, headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": method,
                                                      "Access-Control-Request-Headers": "authorization"})):
            leaked = [h for h in answer.headers if h.lower().startswith("access-control-")]
            assert not leaked, (method, url, leaked)


def test_cors_origins_lets_in_exactly_the_origins_it_names(google_configured):
    url = google_configured.url + "/timelines/home"
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = httpx.options(url, headers={"Origin": APP_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = httpx.options(url, headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers
    simple = httpx.get(google_configured.url + "/healthz", headers={"Origin": "https://evil.example"}, verify=LOCAL_TLS)
    assert "access-control-allow-origin" not in simple.headers


@pytest.mark.parametrize("value", ["*", "https://a.example,*", "app.example", "https://a.example/path"])
def test_a_wildcard_or_malformed_cors_origin_stops_start_up(value):
    with pytest.raises(SettingsError) as error:
        Settings.load(environ={"CORS_ORIGINS": value})
    assert "cors_origins" in str(error.value)


# -- WebSocket ----------------------------------------------------------------------------------

async def test_the_websocket_takes_only_the_configured_origins_when_some_are(google_configured):
    bob = await Api(google_configured.url).aio_sign_in()
    for origin in ("https://evil.example", f"http://127.0.0.1:{google_configured.port}", "null"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await LiveClient(google_configured.url, bob.token, origin=origin).connect()
        assert refused.value.response.status_code == 403, origin
    async with LiveClient(google_configured.url, bob.token, origin=APP_ORIGIN) as live:
        assert live.ready["username"] == bob.username


async def test_production_mode_refuses_dev_sign_in_even_on_an_embedded_redis_and_limits_frames(tmp_path):
    """run.py turns dev sign-in on for an embedded Redis, but never over GOOGLE_CLIENT_ID."""
    service = RunPy(tmp_path, "--embedded-redis", "redis-server", "--embedded-redis-dir", str(tmp_path / "data"),
                    "--ws-max-size", "4096", env={"GOOGLE_CLIENT_ID": CLIENT_ID}).start()
    url = service.url
    try:
        assert_error(httpx.post(url + "/auth/dev", json={"username": unique_name()}, verify=LOCAL_TLS), 404, "dev_signin_disabled")
        assert httpx.get(url + "/config", verify=LOCAL_TLS).json() == {"dev_signin": False, "google_client_id": CLIENT_ID}
        # A frame over WS_MAX_SIZE (here the auth frame itself) closes the socket with 1009.
        client = await LiveClient(url, None).connect(auth=False)
        await client.send({"type": "auth", "token": "x" * 8000, "since": None})
        assert await client.close_code() == 1009
    finally:
        service.stop()
    assert "Dev sign-in: off" in service.log() and "DEV SIGN-IN IS ON" not in service.log()
