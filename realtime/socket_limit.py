"""At most ``max_sockets`` live sockets per user, counted across every server process.

Each socket is registered in ``sockets:{user}`` (a sorted set scored by Redis's clock
at connect time) once it is authenticated. When a registration takes the user over the
limit, the same Lua call removes the oldest registrations; their ids are then published on
the control channel, addressed to the user, and whichever process holds one of those
sockets closes it with 4409 (see ``LiveHub``). (Published after the call, not in it: on
Redis Cluster a script may only publish in its own slot.) A socket that leaves unregisters itself.

Caveat: a process that dies without unregistering leaves its entries behind. They
are dropped when the user next goes over the limit, if their process's presence
heartbeat has lapsed, before any live socket is closed; the whole set also expires a
day after the user's last connect.
"""

from __future__ import annotations

import itertools
import time

from . import keys
from .live_protocol import addressed, sockets_evicted_event
from .presence import INDEX as PRESENCE_INDEX
from .redis_client import Redis, queue_publish

__all__ = ["SocketLimit", "REGISTER_SOCKET"]

KEY_TTL_MS = 24 * 3600 * 1000

#: KEYS: the user's socket set. ARGV: socket id, limit, key TTL (ms).
#: Returns the ids of the sockets to close to make room (oldest first).
REGISTER_SOCKET = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if over <= 0 then return {} end
local evicted = redis.call('ZRANGE', KEYS[1], 0, over - 1)
redis.call('ZREM', KEYS[1], unpack(evicted))
return evicted
"""


class SocketLimit:
    def __init__(self, redis: Redis, process_id: str, max_sockets: int) -> None:
        self._redis = redis
        self._register = redis.register_script(REGISTER_SOCKET)
        self._process_id = process_id
        self._serial = itertools.count(1)
        self.max_sockets = max_sockets

    def new_socket_id(self) -> str:
        return f"{self._process_id}|{next(self._serial)}"

    async def register(self, user: str, socket_id: str) -> list[str]:
        """Count ``socket_id`` as one of ``user``'s; answer the ids closed to make room."""
        if self.max_sockets <= 0:
            return []
        key = keys.user_sockets(user)
        if await self._redis.zcard(key) >= self.max_sockets:
            await self._drop_dead_processes(key)
        evicted = await self._register(keys=[key], args=[socket_id, self.max_sockets, KEY_TTL_MS])
        if evicted:
            pipe = self._redis.pipeline(transaction=False)
            queue_publish(pipe, keys.CONTROL_CHANNEL, addressed([user], sockets_evicted_event(evicted)))
            await pipe.execute()
        return evicted

    async def unregister(self, user: str, socket_id: str) -> None:
        if self.max_sockets > 0:
            await self._redis.zrem(keys.user_sockets(user), socket_id)

    async def _drop_dead_processes(self, key: str) -> None:
        """Remove entries whose process's presence heartbeat has lapsed (it died holding them)."""
        members = await self._redis.zrange(key, 0, -1)
        processes = sorted({member.rpartition("|")[0] for member in members})
        if not processes:
            return
        deadlines = await self._redis.zmscore(PRESENCE_INDEX, processes)
        now_ms = time.time() * 1000
        dead = {p for p, deadline in zip(processes, deadlines) if deadline is None or deadline < now_ms}
        dead.discard(self._process_id)  # this process is alive, heartbeat or not yet
        stale = [member for member in members if member.rpartition("|")[0] in dead]
        if stale:
            await self._redis.zrem(key, *stale)
