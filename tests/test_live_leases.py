"""Leases: where each user's live sockets are, as the timeline scripts read it.

A process writes ``live:at:{user}`` before a socket of that user reads its replay, keeps
it while any such socket is attached, drops it at the renewal after the last one leaves,
and writes it again, in order, when the user comes back during that removal.
"""

from __future__ import annotations

import asyncio

import pytest

from realtime import keys
from realtime.config import Settings
from realtime.engine import Engine
from realtime.live_hub import LiveSubscriber
from realtime.live_protocol import LiveEvent


@pytest.fixture
async def engine(redis_server):
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": redis_server.url, "FANOUT_IN_PROCESS": "0"}))
    await engine.start_live()
    yield engine
    await engine.close()


def subscriber(user: str) -> LiveSubscriber:
    return LiveSubscriber(user, "token-hash", queue_size=8)


async def leased(engine: Engine, user: str) -> bool:
    return await engine.redis.zscore(keys.live_presence(user), engine.live_hub.process_id) is not None


async def test_attach_writes_the_lease_and_the_renewal_after_the_last_socket_drops_it(engine):
    hub = engine.live_hub
    first, second = subscriber("leaseann"), subscriber("leaseann")
    connections = hub.connections
    await hub.attach(first)
    assert await leased(engine, "leaseann")
    await hub.attach(second)
    assert hub.connections == connections + 2
    await hub.detach(first)
    await hub.detach(first)  # twice: counted once
    assert hub.connections == connections + 1
    await hub.renew_leases()
    assert await leased(engine, "leaseann"), "a socket of the user is still here"
    await hub.detach(second)
    assert await leased(engine, "leaseann"), "kept until the renewal: no Redis call per socket that leaves"
    await hub.renew_leases()
    assert not await leased(engine, "leaseann")


async def test_a_user_who_comes_back_during_the_removal_keeps_the_lease(engine):
    hub = engine.live_hub
    gone = subscriber("leasebob")
    await hub.attach(gone)
    await hub.detach(gone)
    back = subscriber("leasebob")
    # The removal and the new attach race: the attach must write after the removal's ZREM.
    await asyncio.gather(hub.renew_leases(), hub.attach(back))
    assert await leased(engine, "leasebob")
    await hub.detach(back)


async def test_a_push_reaches_an_attached_socket_through_the_process_channel(engine):
    hub = engine.live_hub
    sub = subscriber("leasecat")
    arrived = asyncio.Event()
    sub.on_wake = arrived.set
    await hub.attach(sub)
    sub.catch_up([])  # live from here
    await engine.users.create("leasecat")
    await engine.users.create("leasedan")
    await engine.users.follow("leasecat", "leasedan")
    tweet_id = await engine.tweets.post("leasedan", "hello cat")
    engine.start_fanout_workers(1)
    await asyncio.wait_for(arrived.wait(), timeout=10)
    assert sub.pop().entry_id == tweet_id
    await hub.detach(sub)


async def test_release_on_close_drops_every_lease(redis_server):
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": redis_server.url, "FANOUT_IN_PROCESS": "0"}))
    await engine.start_live()
    await engine.live_hub.attach(subscriber("leaseeve"))
    assert await leased(engine, "leaseeve")
    process_id = engine.live_hub.process_id
    await engine.close()
    check = await Engine.open(Settings.load(environ={"REDIS_URL": redis_server.url, "FANOUT_IN_PROCESS": "0"}))
    try:
        assert await check.redis.zscore(keys.live_presence("leaseeve"), process_id) is None
    finally:
        await check.close()


async def test_timeline_writes_survive_redis_losing_its_scripts(tmp_path):
    """Pipelines call scripts by SHA without asking SCRIPT EXISTS first; after a SCRIPT
    FLUSH (or a restart) they load them and run again, with nothing written twice."""
    from .conftest import start_redis

    server = start_redis(tmp_path / "redis")
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": server.url, "FANOUT_IN_PROCESS": "0"}))
    try:
        home = keys.home_timeline("flushed")
        first, second = (engine.id_lease.generator.next_id() for _ in range(2))
        assert await engine.timelines.push([home], first) == 1
        await engine.redis.script_flush()
        assert await engine.timelines.push([home], second) == 1
        await engine.redis.script_flush()
        assert await engine.timelines.remove([home], first) == 1
        assert await engine.redis.lrange(home, 0, -1) == [str(second)]
        await engine.timelines.push([home], engine.id_lease.generator.next_id())  # loads it again
        await engine.redis.config_resetstat()
        for _ in range(3):
            await engine.timelines.push([home], engine.id_lease.generator.next_id())
        stats = await engine.redis.info("commandstats")
        assert "cmdstat_evalsha" in stats and not any(name.startswith("cmdstat_script") for name in stats)
    finally:
        await engine.close()
        server.stop()


async def test_a_write_for_a_user_who_left_meanwhile_is_not_counted_as_leased(engine):
    hub = engine.live_hub
    await hub._write_leases(["leaseghost"])  # e.g. the reconnect's snapshot, the socket gone since
    assert await leased(engine, "leaseghost") and "leaseghost" not in hub._leased


async def test_writing_a_lease_drops_the_lapsed_leases_of_dead_processes(engine):
    await engine.redis.zadd(keys.live_presence("leasefay"), {"dead-process": 1})
    sub = subscriber("leasefay")
    await engine.live_hub.attach(sub)
    assert await engine.redis.zrange(keys.live_presence("leasefay"), 0, -1) == [engine.live_hub.process_id]
    await engine.live_hub.detach(sub)


async def test_malformed_messages_are_ignored_and_the_reader_goes_on(engine):
    hub = engine.live_hub
    sub = subscriber("leasegus")
    await hub.attach(sub)
    sub.catch_up([])
    for junk in ("leasegus\n[1, 2]", 'leasegus\n{"type": "tweet", "tweet": 5}',
                 'leasegus\n{"type": "sockets_evicted", "socket_ids": 5}', "leasegus\nnot json"):
        hub._dispatch(junk)
    assert sub.state.value == "live" and sub.queued == 0
    await hub.detach(sub)


async def test_a_subscriber_closed_during_its_replay_takes_the_rest_of_it_quietly():
    sub = subscriber("leasehal")
    sub.close(4401, "signed out")
    sub.mark_sent(LiveEvent('{"type": "tweet", "tweet": {"id": "5"}}'))  # the replay loop has not noticed yet
    assert sub.last_id == 5 and sub.close_code == 4401


async def test_renewals_failing_for_too_long_make_the_hub_reconnect_and_rewrite_the_leases(engine, monkeypatch):
    from realtime import live_hub
    from redis.exceptions import ResponseError

    hub = engine.live_hub
    sub = subscriber("leaseivy")
    await engine.redis.hset(keys.session(sub.token_hash), "user", "leaseivy")  # the reconnect re-checks it
    await hub.attach(sub)
    sub.catch_up([])
    await engine.redis.delete(keys.live_presence("leaseivy"))  # as if it had lapsed

    async def refused() -> None:
        raise ResponseError("READONLY You can't write against a read only replica.")

    monkeypatch.setattr(hub, "renew_leases", refused)
    monkeypatch.setattr(live_hub, "LEASE", 0.15)
    monkeypatch.setattr(live_hub, "RENEWAL_RETRY", 0.05)
    monkeypatch.setattr(live_hub, "RENEWAL_OVERDUE", 0.1)
    reconnects = hub.reconnected.value
    renewing = asyncio.create_task(hub.keep_leases())
    try:
        async with asyncio.timeout(10):
            await hub.reconnected.reached(reconnects + 1)
    finally:
        renewing.cancel()
    assert await leased(engine, "leaseivy"), "the reconnect rewrote the lease"
    assert sub.close_code is None
    await hub.detach(sub)


def delete_of(tweet_id: int) -> LiveEvent:
    return LiveEvent('{"type": "delete", "id": "%d"}' % tweet_id)


def test_a_delete_goes_out_once_across_a_catch_up_that_reads_it_again():
    sub = subscriber("leasejon")
    sub.catch_up([])
    sub.offer(delete_of(7))  # sent live, after the last tweet the socket was sent
    assert sub.pop().deleted_id == 7
    sub.begin_buffering()  # a Redis blip
    sub.offer(delete_of(8))  # live while catching up, and read by the catch-up too
    assert sub.catch_up([delete_of(7), delete_of(8)]) == 1
    assert [sub.pop().deleted_id, sub.pop()] == [8, None]


def test_a_tweet_sent_after_a_delete_makes_the_next_catch_up_start_from_it():
    sub = subscriber("leasekim")
    sub.catch_up([])
    sub.offer(delete_of(7))
    sub.offer(LiveEvent('{"type": "tweet", "tweet": {"id": "9"}}'))
    assert sub.last_id == 9
    sub.begin_buffering()  # deletes recorded after 9 are new to this socket
    assert sub.catch_up([delete_of(7)]) == 1
