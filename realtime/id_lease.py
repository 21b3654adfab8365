"""A lease on one of the 128 id-generator worker ids, held in Redis.

Two live processes never hold the same worker id, so their ids never collide. The
lease is renewed well before it expires, by a supervised loop that retries every failure
(a READONLY or OOM answer as much as a lost connection). While no renewal succeeds, id
issuing stops ``SAFETY`` before the lease could lapse (posts answer 503), so another
process that takes the id once it lapses can never mint an id this one also mints; once
a renewal or a new lease succeeds, ids flow again. (Measured on this process's monotonic
clock against a TTL kept by Redis: no wall clocks compared between hosts.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time

from . import keys, metrics
from .ids import MAX_WORKERS, IdGenerator
from .redis_client import Redis
from .scripts import RENEW_LEASE

__all__ = ["IdLease"]

log = logging.getLogger("chirp.ids")

LEASE_MS = 5 * 60 * 1000
RENEW_EVERY = 60.0
RETRY_EVERY = 5.0
SAFETY = 30.0  # seconds before the lease could lapse at which ids stop


class IdLease:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._owner = secrets.token_hex(8)
        self._renew = redis.register_script(RENEW_LEASE)
        self.generator: IdGenerator | None = None

    async def acquire(self) -> IdGenerator:
        for worker_id in random.sample(range(MAX_WORKERS), MAX_WORKERS):
            asked_at = time.monotonic()
            if await self._redis.set(keys.id_worker(worker_id), self._owner, nx=True, px=LEASE_MS):
                if self.generator is None:
                    self.generator = IdGenerator(worker_id)
                else:
                    self.generator.worker_id = worker_id
                self._held_from(asked_at)
                return self.generator
        raise RuntimeError(f"all {MAX_WORKERS} id-generator worker ids are leased; too many server processes")

    def _held_from(self, asked_at: float) -> None:
        """The lease runs LEASE_MS from when we asked at the latest: ids stop SAFETY before."""
        self.generator.valid_until = asked_at + LEASE_MS / 1000 - SAFETY

    async def keep(self) -> None:
        """Renew the lease forever (run as a task); a failure is logged, counted and retried."""
        pause = RENEW_EVERY
        while True:
            await asyncio.sleep(pause)
            try:
                await self.renew()
                pause = RENEW_EVERY
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # READONLY, OOM, a lost connection...: never the end of renewals
                metrics.LOOP_FAILURES.labels("id-lease").inc()
                left = self.generator.valid_until - time.monotonic()
                log.warning("could not renew the id worker lease (%s: %s); retrying in %.0fs, ids stop in %.0fs",
                            type(exc).__name__, exc, RETRY_EVERY, max(0.0, left))
                pause = RETRY_EVERY

    async def renew(self) -> None:
        asked_at = time.monotonic()
        key = keys.id_worker(self.generator.worker_id)
        if await self._renew(keys=[key], args=[self._owner, LEASE_MS]):
            self._held_from(asked_at)
        else:
            log.warning("id worker lease %d was lost; taking a new one", self.generator.worker_id)
            self.generator.valid_until = asked_at  # not ours any more: no id until the new lease
            await self.acquire()

    async def release(self) -> None:
        if self.generator is not None:
            await self._renew(keys=[keys.id_worker(self.generator.worker_id)], args=[self._owner, 1])
