"""A lease on one of the 128 id-generator worker ids, held in Redis.

Two live processes never hold the same worker id, so their ids never collide. The
lease is renewed well before it expires; if it is lost anyway (a long partition), the
process takes whichever id is free next.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets

from . import keys
from .ids import MAX_WORKERS, IdGenerator
from .redis_client import Redis, RedisDown
from .scripts import RENEW_LEASE

__all__ = ["IdLease"]

log = logging.getLogger("chirp.ids")

LEASE_MS = 5 * 60 * 1000
RENEW_EVERY = 60.0


class IdLease:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._owner = secrets.token_hex(8)
        self._renew = redis.register_script(RENEW_LEASE)
        self.generator: IdGenerator | None = None

    async def acquire(self) -> IdGenerator:
        for worker_id in random.sample(range(MAX_WORKERS), MAX_WORKERS):
            if await self._redis.set(keys.id_worker(worker_id), self._owner, nx=True, px=LEASE_MS):
                if self.generator is None:
                    self.generator = IdGenerator(worker_id)
                else:
                    self.generator.worker_id = worker_id
                return self.generator
        raise RuntimeError(f"all {MAX_WORKERS} id-generator worker ids are leased; too many server processes")

    async def keep(self) -> None:
        """Renew the lease forever (run as a task)."""
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                key = keys.id_worker(self.generator.worker_id)
                if not await self._renew(keys=[key], args=[self._owner, LEASE_MS]):
                    log.warning("id worker lease %d was lost; taking a new one", self.generator.worker_id)
                    await self.acquire()
            except RedisDown as exc:
                log.warning("could not renew the id worker lease: %s", exc)

    async def release(self) -> None:
        if self.generator is not None:
            await self._renew(keys=[keys.id_worker(self.generator.worker_id)], args=[self._owner, 1])
