"""/stats and /metrics: presence summed over live processes, Prometheus text, run.py workers.

Each test that counts sockets or processes runs on a redis-server of its own, so nothing
else connected to the session's Redis shows up in its numbers.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from realtime import presence

from .conftest import start_redis
from .support import LOCAL_TLS, TIMEOUT, Api, LiveClient, RunPy, ServiceProcess, eventually, wait_until

CHIRP_METRICS = {
    "chirp_open_sockets": "gauge",
    "chirp_events_delivered": "counter",
    "chirp_events_dropped": "counter",
    "chirp_slow_client_closes": "counter",
    "chirp_replayed_events": "counter",
    "chirp_pubsub_reconnects": "counter",
    "chirp_fanout_queue_length": "gauge",
    "chirp_fanout_lag_seconds": "gauge",
    "chirp_delivery_latency_seconds": "histogram",
}


# -- helpers --------------------------------------------------------------------------


def scrape(url: str) -> dict:
    """/metrics parsed as Prometheus text: {family name: family}; fails on anything else."""
    answer = httpx.get(url + "/metrics", timeout=TIMEOUT, verify=LOCAL_TLS)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(answer.text)}


def value(families: dict, sample: str, **labels: str) -> float:
    for family in families.values():
        for found in family.samples:
            if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return 0.0


def stats(url: str) -> dict:
    answer = httpx.get(url + "/stats", timeout=TIMEOUT, verify=LOCAL_TLS)
    assert answer.status_code == 200, answer.text
    return answer.json()


def stats_when(url: str, predicate, what: str) -> dict:
    """Poll /stats (presence beats every second) until ``predicate(answer)``; the answer."""
    return wait_until(lambda: (lambda answer: answer if predicate(answer) else None)(stats(url)), what=what)


def scrape_when(url: str, predicate, what: str) -> dict:
    return wait_until(lambda: (lambda families: families if predicate(families) else None)(scrape(url)), what=what)


def process_of(stats_answer: dict, service: ServiceProcess) -> dict | None:
    """The /stats entry of ``service`` (a process id names its pid)."""
    found = [p for p in stats_answer["processes"] if f"-{service.process.pid}-" in p["id"]]
    return found[0] if found else None


@pytest.fixture
def own_redis(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def two_processes(own_redis, tmp_path):
    """Two server processes sharing one Redis, as behind a load balancer."""
    first = ServiceProcess(own_redis.url)
    second = ServiceProcess(own_redis.url)
    try:
        yield first.start(tmp_path), second.start(tmp_path)
    finally:
        first.stop()
        second.stop()


# -- /stats ---------------------------------------------------------------------------


async def test_stats_counts_connections_and_users_online_in_total_and_per_process(two_processes):
    first, second = two_processes
    api = Api(first.url)
    bob, carol = await api.aio_sign_in(), await api.aio_sign_in()
    async with LiveClient(first.url, bob.token), LiveClient(first.url, bob.token), \
            LiveClient(first.url, carol.token), LiveClient(second.url, bob.token):
        # bob: two sockets on the first process and one on the second; carol: one on the first
        expected = {"connections": 4, "users_online": 2}
        answer = stats_when(second.url, lambda s: {k: s[k] for k in expected} == expected,
                            what="/stats to count every socket")
        assert len(answer["processes"]) == 2
        on_first, on_second = process_of(answer, first), process_of(answer, second)
        assert (on_first["connections"], on_first["users_online"]) == (3, 2)
        assert (on_second["connections"], on_second["users_online"]) == (1, 1)
        for entry in (on_first, on_second):
            assert set(entry) == {"id", "connections", "users_online", "started_at"}
            assert 0 < time.time() - entry["started_at"] < 600
        assert {k: stats(first.url)[k] for k in expected} == expected  # any process answers the same
    await eventually(lambda: stats(first.url)["connections"] == 0, what="/stats to forget closed sockets")
    assert stats(first.url)["users_online"] == 0


@pytest.mark.slow
async def test_a_process_killed_with_sigkill_drops_out_of_stats_within_the_presence_ttl(two_processes):
    first, second = two_processes
    api = Api(first.url)
    bob, carol = await api.aio_sign_in(), await api.aio_sign_in()
    survivor = await LiveClient(first.url, bob.token).connect()
    doomed = await LiveClient(second.url, carol.token).connect()
    await eventually(lambda: stats(first.url)["connections"] == 2, what="/stats to count both sockets")
    assert len(stats(first.url)["processes"]) == 2

    second.process.kill()  # SIGKILL: no chance to leave; only the heartbeat's TTL tells
    killed_at = time.monotonic()
    second.process.wait(timeout=TIMEOUT)
    await eventually(lambda: process_of(stats(first.url), second) is None, what="the killed process to leave /stats")
    assert time.monotonic() - killed_at < presence.TTL + 2 * presence.BEAT_EVERY
    answer = stats(first.url)
    assert [p["id"] for p in answer["processes"]] == [process_of(answer, first)["id"]]
    assert (answer["connections"], answer["users_online"]) == (1, 1)
    await survivor.socket.close()
    with pytest.raises(websockets.ConnectionClosed):
        await doomed.next_frame()  # its server is gone


# -- /metrics -------------------------------------------------------------------------


async def test_metrics_answers_prometheus_text_with_every_chirp_metric_and_counts_deliveries(
        redis_server, tmp_path, fanout_idle):
    service = ServiceProcess(redis_server.url).start(tmp_path)  # its own process: its own numbers
    try:
        api = Api(service.url)
        alice, bob, carol = await api.aio_sign_in(), await api.aio_sign_in(), await api.aio_sign_in()
        await bob.aio.follow(alice)
        await carol.aio.follow(alice)
        before = scrape(service.url)
        for name, kind in CHIRP_METRICS.items():
            assert name in before and before[name].type == kind, name
        assert value(before, "chirp_open_sockets") == 0

        async with LiveClient(service.url, bob.token) as bob_live, LiveClient(service.url, carol.token) as carol_live:
            assert value(scrape(service.url), "chirp_open_sockets") == 2
            tweet_id = await alice.aio.post_tweet("measured")
            assert await bob_live.next_tweet_id() == tweet_id
            assert await carol_live.next_tweet_id() == tweet_id
            latencies_before = value(before, "chirp_delivery_latency_seconds_count")
            after = scrape_when(service.url,
                                lambda m: value(m, "chirp_delivery_latency_seconds_count") >= latencies_before + 2,
                                what="two deliveries to be measured")
            assert value(after, "chirp_events_delivered_total", kind="tweet") == \
                value(before, "chirp_events_delivered_total", kind="tweet") + 2
            assert value(after, "chirp_delivery_latency_seconds_bucket", le="+Inf") == \
                value(after, "chirp_delivery_latency_seconds_count")
            assert value(after, "chirp_delivery_latency_seconds_sum") >= 0
            await carol_live.socket.close()
            await eventually(lambda: value(scrape(service.url), "chirp_open_sockets") == 1, what="the gauge to drop")
        await eventually(lambda: value(scrape(service.url), "chirp_open_sockets") == 0, what="the gauge to reach 0")

        missed = [await alice.aio.post_tweet(f"missed {n}") for n in range(3)]
        await fanout_idle.wait()
        async with LiveClient(service.url, bob.token, since=tweet_id) as again:
            assert [f["tweet"]["id"] for f in again.replayed] == missed
        final = scrape(service.url)
        assert value(final, "chirp_replayed_events_total") == value(before, "chirp_replayed_events_total") + 3
        assert value(final, "chirp_pubsub_reconnects_total") == 0
        assert value(final, "chirp_fanout_queue_length") >= 0 and value(final, "chirp_fanout_lag_seconds") >= 0
    finally:
        service.stop()


# -- python run.py --workers 2 --------------------------------------------------------


async def test_run_py_with_two_workers_delivers_to_sockets_on_both_and_sums_them_in_stats_and_metrics(
        own_redis, tmp_path):
    service = RunPy(tmp_path, "--workers", "2", env={"REDIS_URL": own_redis.url, "DEV_SIGNIN": "on",
                                                    "MAX_SOCKETS_PER_USER": "0", "RATE_LIMITS": "off"})
    url = service.url
    clients: list[LiveClient] = []
    try:
        service.start()
        await eventually(lambda: service.log().count("Application startup complete") >= 2,
                         what="both worker processes to start")
        api = Api(url)
        alice, bob, carol = await api.aio_sign_in(), await api.aio_sign_in(), await api.aio_sign_in()
        await bob.aio.follow(alice)
        await carol.aio.follow(alice)

        # The kernel hands each new connection to either worker; open sockets until both hold some.
        for _ in range(6):  # bounded: 60 sockets at most
            clients += await asyncio.gather(*(LiveClient(url, user.token).connect() for user in [bob, carol] * 5))
            answer = stats_when(url, lambda s: s["connections"] == len(clients), what="/stats to count every socket")
            if len(answer["processes"]) == 2 and all(p["connections"] > 0 for p in answer["processes"]):
                break
        else:
            raise AssertionError(f"every socket landed on one process: {answer}")
        assert answer["users_online"] == 2

        for n in range(4):  # each through a fresh connection, so through either worker
            poster = await Api(url).aio_sign_in(alice.username)
            tweet_id = await poster.aio.post_tweet(f"to every socket {n}")
            poster.api.http.close()
            ids = await asyncio.gather(*(client.next_tweet_id() for client in clients))
            assert ids == [tweet_id] * len(clients)

        for _ in range(4):  # whichever worker answers, it sums the open sockets of both
            assert value(scrape(url), "chirp_open_sockets") == len(clients)
        assert value(scrape(url), "chirp_events_delivered_total", kind="tweet") == 4 * len(clients)
        api.http.close()
    finally:
        service.stop()
    codes = await asyncio.gather(*(client.close_code() for client in clients))
    assert codes == [1013] * len(clients)  # SIGTERM: every worker closes its sockets with 1013
    assert "Workers: 2 server process(es)" in service.log()
