"""Load under faults, shared by tests/test_cluster_faults.py and bench/cluster.py: a ledger
of every POST /tweets and its answer, a poster, and a follower's live socket that records
every tweet frame (reconnecting with ``since`` when the server closes it)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import websockets

from realtime import keys
from realtime.config import Settings

from .redis_cluster import RedisCluster
from .support import LOCAL_TLS, TIMEOUT, LiveClient, User, wait_until

__all__ = ["Ledger", "LiveLedger", "post_until", "cluster_client", "wait_fanout_idle", "POST_LIMIT", "POST_SECONDS"]

POST_LIMIT = 600  # the posting loop is bounded in count...
POST_SECONDS = 40.0  # ...and in time


def cluster_client(cluster: RedisCluster):
    from redis.cluster import RedisCluster as ClusterClient

    # Through a node that is up now: cluster.url names the first node, which may be the one killed.
    return ClusterClient.from_url(f"redis://127.0.0.1:{cluster.masters()[0]}/0", decode_responses=True)


class Ledger:
    """Every POST /tweets and its answer."""

    def __init__(self) -> None:
        self.acked: dict[str, list[str]] = {}  # author -> ids that got 201, in posting order
        self.statuses: Counter[int] = Counter()
        self.bad: list[str] = []  # answers that break the contract
        self.acked_at: dict[str, float] = {}
        self.sent_at: dict[str, float] = {}  # when each acknowledged POST was sent
        self.refused_at: list[float] = []  # when each 503 came back

    @property
    def answered(self) -> int:
        return sum(self.statuses.values()) + len(self.bad)

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.acked.values())

    def all_ids(self) -> set[str]:
        return {tweet_id for ids in self.acked.values() for tweet_id in ids}


async def post_until(base_url: str, authors: list[User], ledger: Ledger, done: asyncio.Event, *,
                     rate: float | None = None, limit: int = POST_LIMIT, seconds: float = POST_SECONDS) -> None:
    """Post round robin from ``authors`` until ``done`` (or the bounds), recording each
    answer; ``rate`` posts a second at most (no burst to catch up after a slow answer)."""
    next_at = time.monotonic()
    deadline = next_at + seconds
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, verify=LOCAL_TLS) as http:
        for n in range(limit):
            if done.is_set() or time.monotonic() > deadline:
                return
            if rate:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + 1 / rate, time.monotonic())
            author = authors[n % len(authors)]
            sent = time.monotonic()
            try:
                answer = await http.post("/tweets", json={"content": f"tweet {n}"}, headers=author.headers)
            except httpx.HTTPError as exc:
                ledger.bad.append(f"POST {n}: no answer ({type(exc).__name__})")
                continue
            ledger.statuses[answer.status_code] += 1
            if answer.status_code == 201:
                tweet_id = answer.headers["location"].rsplit("/", 1)[1]
                ledger.acked.setdefault(author.username, []).append(tweet_id)
                ledger.acked_at[tweet_id], ledger.sent_at[tweet_id] = time.monotonic(), sent
            elif answer.status_code != 503 or "retry-after" not in answer.headers:
                ledger.bad.append(f"POST {n}: {answer.status_code} {answer.text[:200]}")
            else:
                ledger.refused_at.append(time.monotonic())
                if not rate:
                    await asyncio.sleep(0.05)  # a client's retry backoff


class LiveLedger:
    """One follower's live socket: every tweet frame it got, reconnecting with ``since``
    when the server closes it (1013 is allowed: the client catches up)."""

    def __init__(self, base_url: str, user: User) -> None:
        self.base_url, self.user = base_url, user
        self.frames: list[dict] = []
        self.arrived_at: dict[str, float] = {}
        self.reconnects = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> LiveLedger:
        self._client = await LiveClient(self.base_url, self.user.token).connect()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            try:
                frame = await self._client.next_frame(timeout=3600)
            except websockets.ConnectionClosed:
                self.reconnects += 1
                since = self.frames[-1]["tweet"]["id"] if self.frames else None
                self._client = LiveClient(self.base_url, self.user.token, since=since)
                for attempt in range(100):
                    try:
                        await self._client.connect()
                        break
                    except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
                        await asyncio.sleep(0.1)
                for replayed in self._client.replayed:
                    self._note(replayed)
                continue
            self._note(frame)

    def _note(self, frame: dict) -> None:
        if frame.get("type") == "tweet":
            self.frames.append(frame)
            self.arrived_at.setdefault(frame["tweet"]["id"], time.monotonic())

    def ids(self) -> list[str]:
        return [frame["tweet"]["id"] for frame in self.frames]

    async def wait_for(self, wanted: set[str], timeout: float = 3 * TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.ids()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # polling our own reader task's list, bounded

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._client.socket.close()


def wait_fanout_idle(client, timeout: float = 4 * TIMEOUT) -> None:
    tags = keys.fanout_shard_tags(Settings.fanout_shards)
    wait_until(lambda: all(client.xlen(keys.fanout_stream(tag)) == 0 for tag in tags), timeout=timeout,
               what="every fan-out job to be done")
