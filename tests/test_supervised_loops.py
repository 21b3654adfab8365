"""Background loops never die of an error: a READONLY or OOM answer (not only a lost
connection) is logged, counted and retried; an id lease that cannot be renewed stops id
issuing before the lease could lapse, and ids flow again once it is renewed."""

from __future__ import annotations

import asyncio
import time

import fakeredis
import pytest
from redis.exceptions import ResponseError

from realtime import id_lease, metrics, presence
from realtime.errors import Unavailable
from realtime.id_lease import IdLease

from .support import eventually


def failures(loop: str) -> float:
    return metrics.LOOP_FAILURES.labels(loop)._value.get()


async def test_an_id_lease_that_cannot_be_renewed_stops_ids_in_time_and_resumes(monkeypatch):
    monkeypatch.setattr(id_lease, "RENEW_EVERY", 0.02)
    monkeypatch.setattr(id_lease, "RETRY_EVERY", 0.02)
    lease = IdLease(fakeredis.FakeAsyncRedis(decode_responses=True))
    generator = await lease.acquire()
    renew = lease._renew

    async def refuse(**_):
        raise ResponseError("READONLY You can't write against a read only replica.")

    lease._renew = refuse
    before = failures("id-lease")
    generator.valid_until = time.monotonic() + 0.2  # as if the lease were about to lapse
    keeper = asyncio.create_task(lease.keep())
    try:
        await eventually(lambda: failures("id-lease") >= before + 3, what="renewals to fail and be retried")
        assert not keeper.done(), "the renewal loop ended on an error"
        await asyncio.sleep(max(0.0, generator.valid_until - time.monotonic()) + 0.01)
        with pytest.raises(Unavailable):
            generator.next_id()
        lease._renew = renew
        await eventually(lambda: generator.valid_until > time.monotonic() + 60, what="a renewal to succeed")
        assert generator.next_id() > 0
    finally:
        keeper.cancel()


async def test_the_presence_heartbeat_survives_errors_that_are_not_lost_connections(monkeypatch):
    monkeypatch.setattr(presence, "BEAT_EVERY", 0.01)
    beats = []

    class Failing(presence.Presence):
        async def beat(self) -> None:
            beats.append(time.monotonic())
            if len(beats) <= 3:
                raise ResponseError("OOM command not allowed when used memory > 'maxmemory'.")

    class Hub:
        process_id = "test-process"

    before = failures("presence")
    heart = asyncio.create_task(Failing(fakeredis.FakeAsyncRedis(), Hub()).run())
    try:
        await eventually(lambda: len(beats) >= 5, what="the heartbeat to go on after three failures")
        assert failures("presence") == before + 3
    finally:
        heart.cancel()
