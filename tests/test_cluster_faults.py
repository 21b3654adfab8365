"""Chirp on a real Redis Cluster while it breaks: a master killed under load (its replica
promoted), slots moved under load, two separate service instances with one killed.

Each test starts its own cluster (it kills or moves things) and its own service
processes, posts from several authors while it happens, and keeps a ledger of every
answer: every tweet that got 201 must be in every recipient's timeline exactly once and
reach every live socket exactly once, in order per author; any other answer must be 503
with Retry-After, never 500.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest

from realtime import keys
from realtime.config import Settings
from realtime.text import normalize_username

from .cluster_load import Ledger, LiveLedger, cluster_client, post_until, wait_fanout_idle
from .redis_cluster import RedisCluster
from .support import TIMEOUT, Api, LiveClient, ServiceProcess, User, eventually, unique_name

pytestmark = pytest.mark.slow

AFTER = 40  # acknowledged posts wanted after the fault, as before it


@pytest.fixture
def cluster(tmp_path):
    cluster = RedisCluster(tmp_path / "cluster").start()
    yield cluster
    cluster.stop()


def assert_nothing_lost_or_doubled(ledger: Ledger, live: LiveLedger, cluster_client, follower: User) -> None:
    assert not ledger.bad, ledger.bad[:10]
    assert set(ledger.statuses) <= {201, 503}, ledger.statuses
    acked = ledger.all_ids()
    home = cluster_client.lrange(keys.home_timeline(normalize_username(follower.username)), 0, -1)
    counts = Counter(home)
    assert [tweet_id for tweet_id in acked if counts[tweet_id] != 1] == [], "acknowledged tweets lost or doubled"
    got = Counter(live.ids())
    assert [tweet_id for tweet_id in acked if got[tweet_id] == 0] == [], "acknowledged tweets never delivered live"
    assert [tweet_id for tweet_id, n in got.items() if n > 1] == [], "tweets delivered twice"
    for author, ids in ledger.acked.items():  # per author, in posting order
        arrived = [tweet_id for tweet_id in live.ids() if tweet_id in set(ids)]
        assert arrived == ids, f"{author}'s tweets arrived out of order"


def world(service: ServiceProcess, authors: int = 3, follower: str | None = None) -> tuple[Api, list[User], User]:
    api = Api(service.url)
    writers = [api.sign_in() for _ in range(authors)]
    follower = api.sign_in(follower)
    for writer in writers:
        follower.follow(writer)
    return api, writers, follower


async def run_fault_under_load(service: ServiceProcess, fault, authors: list[User], follower: User):
    """Post, wait for AFTER acks, cause ``fault()``, post AFTER acks more; answer the ledgers
    and when the fault happened."""
    ledger, done = Ledger(), asyncio.Event()
    live = await LiveLedger(service.url, follower).start()
    poster = asyncio.create_task(post_until(service.url, authors, ledger, done))
    try:
        while ledger.count < AFTER and not poster.done():
            await asyncio.sleep(0.02)  # polling the poster task's ledger, bounded by its limits
        at = time.monotonic()
        await asyncio.to_thread(fault)
        before = ledger.count
        while ledger.count < before + AFTER and not poster.done():
            await asyncio.sleep(0.02)
    finally:
        done.set()
        await poster
    await live.wait_for(ledger.all_ids())
    await live.stop()
    return ledger, live, at


async def test_a_master_killed_under_live_load_loses_no_acknowledged_tweet_and_doubles_none(cluster, tmp_path):
    # The master killed holds the follower's keys and live channel, and is the one node the
    # service was told about (REDIS_URL): it must carry on from the nodes it learnt of since.
    name = unique_name("fol")
    victim = cluster.node_for_key(keys.home_timeline(normalize_username(name)))
    service = ServiceProcess(f"redis://127.0.0.1:{victim}/0").start(tmp_path)
    try:
        api, authors, follower = world(service, follower=name)
        health: list[int] = []

        def kill_and_watch_health() -> None:
            cluster.kill(victim)
            health.append(api.http.get("/healthz").status_code)

        ledger, live, killed_at = await run_fault_under_load(service, kill_and_watch_health, authors, follower)
        assert health == [503], "/healthz must say so while a master is down"
        promoted = cluster.wait_failover(victim)
        await eventually(lambda: api.http.get("/healthz").status_code == 200, timeout=3 * TIMEOUT,
                         what="/healthz to answer 200 once the failover has completed")
        with cluster_client(cluster) as client:
            wait_fanout_idle(client)
            assert_nothing_lost_or_doubled(ledger, live, client, follower)
        after = [tweet_id for tweet_id, at in ledger.acked_at.items() if at > killed_at]
        worst = max(live.arrived_at[tweet_id] - ledger.acked_at[tweet_id] for tweet_id in after)
        print(f"\nfailover of master {victim} to {promoted}: worst 201-to-live delay after the kill {worst:.2f}s; "
              f"answers {dict(ledger.statuses)}; socket reconnects {live.reconnects}; /healthz just after: {health}")
        assert "unhandled error" not in service.log()
    finally:
        service.stop()


async def test_slots_moved_under_live_load_lose_nothing_and_delivery_goes_on(cluster, tmp_path):
    service = ServiceProcess(cluster.url).start(tmp_path)
    try:
        api, authors, follower = world(service)
        lower = normalize_username(follower.username)
        shard = keys.fanout_stream(keys.fanout_tag_of(normalize_username(authors[0].username),
                                                      Settings.fanout_shards))
        with cluster_client(cluster) as client:
            slots = {client.keyslot(keys.home_timeline(lower)), client.keyslot(shard)}

        def move_slots() -> None:
            for slot in slots:
                owner = cluster.node_for_key(cluster.key_in_slot(slot))
                target = next(port for port in cluster.masters() if port != owner)
                cluster.migrate_slot(slot, target)

        ledger, live, moved_at = await run_fault_under_load(service, move_slots, authors, follower)
        with cluster_client(cluster) as client:
            wait_fanout_idle(client)
            assert_nothing_lost_or_doubled(ledger, live, client, follower)
        assert any(at > moved_at for tweet_id, at in live.arrived_at.items()), "live delivery stopped"
        assert "unhandled error" not in service.log()
    finally:
        service.stop()


async def test_two_instances_on_one_cluster_share_users_and_one_finishes_the_others_job(cluster, tmp_path):
    """Two separate run.py-like instances (not --workers): a user with a socket on each gets
    every tweet once on each; /stats counts both; one is killed with a big fan-out job in
    hand, and the other takes the job over and finishes it."""
    slow = {"fanout_batch_size": "100", "fanout_batch_pause": "20ms", "log_level": "info"}
    first = ServiceProcess(cluster.url, **slow).start(tmp_path)
    second = ServiceProcess(cluster.url, **slow).start(tmp_path)
    try:
        api, (author,), follower = world(first, authors=1)
        on_first = await LiveClient(first.url, follower.token).connect()
        on_second = await LiveClient(second.url, follower.token).connect()
        def both_counted() -> bool:
            stats = [Api(s.url).http.get("/stats").json() for s in (first, second)]
            return all(s["connections"] == 2 and len(s["processes"]) == 2 for s in stats)

        await eventually(both_counted, what="/stats on each instance to count both instances' sockets")
        ids = [await author.aio.post_tweet(f"to both {n}") for n in range(5)]
        for client in (on_first, on_second):
            assert [await client.next_tweet_id() for _ in ids] == ids
        await on_first.socket.close()

        fans = [f"fan{n:05d}" for n in range(3000)]
        author_key = normalize_username(author.username)
        with cluster_client(cluster) as client:
            client.zadd(keys.followers(author_key), {name: 0 for name in fans})
            big = await author.aio.post_tweet("to three thousand")
            tag = keys.fanout_tag_of(author_key, Settings.fanout_shards)
            stream = keys.fanout_stream(tag)

            def holder() -> str | None:
                pending = client.xpending_range(stream, keys.FANOUT_GROUP, "-", "+", 1)
                return pending[0]["consumer"] if pending else None

            consumer = await eventually(holder, what="a worker to take the big job")  # ...and the killed one had it
            victim, survivor = ((first, second) if f"-{first.process.pid}-" in consumer else (second, first))
            if victim is second:
                await on_second.socket.close()
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait()
            wait_fanout_idle(client)
            home_counts = [len(positions) for positions in
                           _lpos_all(client, [keys.home_timeline(name) for name in fans], big)]
            assert home_counts == [1] * len(fans)
        assert Api(survivor.url).http.get("/healthz").status_code == 200
        await eventually(lambda: len(Api(survivor.url).http.get("/stats").json()["processes"]) == 1,
                         what="/stats to forget the killed instance")
    finally:
        first.stop()
        second.stop()


def _lpos_all(client, timeline_keys: list[str], tweet_id: str) -> list[list[int]]:
    pipe = client.pipeline(transaction=False)
    for key in timeline_keys:
        pipe.lpos(key, tweet_id, count=0)
    return pipe.execute()


async def test_a_batch_is_one_script_call_per_master_and_one_whose_slot_moved_is_written_again_slot_by_slot(cluster):
    from redis.crc import key_slot

    from realtime.engine import Engine
    from realtime.fanout import FanoutJob

    engine = await Engine.open(Settings.load(environ={"REDIS_URL": cluster.url, "FANOUT_IN_PROCESS": "0"}))
    try:
        await engine.users.create("batcher")
        followers = [f"batched{n:03d}" for n in range(300)]
        await engine.redis.zadd(keys.followers("batcher"), {name: 0 for name in followers})
        worker = engine.new_fanout_worker([engine.fanout_queue.tag_of("batcher")])
        stream = keys.fanout_stream(engine.fanout_queue.tag_of("batcher"))

        masters = {port: cluster._client(port) for port in cluster.masters()}

        async def fan_out() -> int:
            tweet_id = await engine.tweets.post("batcher", "to every follower")
            for client in masters.values():
                client.config_resetstat()  # the worker's calls only
            [(_, [(entry_id, fields)])] = await engine.redis.xreadgroup(keys.FANOUT_GROUP, worker.consumer,
                                                                       {stream: ">"}, count=1)
            job = FanoutJob(engine.fanout_queue.tag_of("batcher"), entry_id, fields)
            await worker.run_job(job, resumed=False)
            await worker.finish(job)
            return tweet_id

        first = await fan_out()
        calls = {port: int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
                 for port, client in masters.items()}
        # Per master the followers' one call, and a few scripts of the tweet, the author's own
        # timelines and the job; one call per follower would be 300 and more.
        assert sum(calls.values()) <= 20, f"not one call per master: {calls}"

        # A follower's slot moves behind the worker's back: its call to the old master meets a key
        # that master no longer serves, and the batch goes again through the cluster client.
        moved = key_slot(keys.home_timeline(followers[0]).encode())
        owner = engine.redis.get_node_from_key(keys.home_timeline(followers[0])).port
        cluster.migrate_slot(moved, next(port for port in masters if port != owner))
        second = await fan_out()
        for name in followers:
            assert await engine.redis.lrange(keys.home_timeline(name), 0, -1) == [str(second), str(first)], name
    finally:
        await engine.close()
