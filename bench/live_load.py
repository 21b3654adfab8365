"""Live load: tweets posted over HTTP, delivered over ``/ws``, checked one by one.

    python -m bench.live_load [--sockets 2000] [--followers-per-poster 100] [--posters 100]
                              [--rate 100] [--duration 5] [--socket-procs 1]
    python -m bench.live_load --idle [--sockets 10000] [--duration 30]
    python -m bench.live_load --quick     # CI smoke check: 200 sockets, K=20, 20 tweets/s, 3 s

Starts a private redis-server and one service process, exactly as an operator would:
``python run.py --redis-url ... --port FREE --dev-signin on``. Creates the users over the
public API (``POST /auth/dev``; then ``PUT /users/{poster}/follow``, many at once with
``httpx.AsyncClient``), restarts the service so that its memory and CPU figures start
clean, and opens one WebSocket per follower (the ``websockets`` client, in a process of
its own). Each poster gets ``--followers-per-poster`` followers, spread evenly over the
sockets. Another process then posts ``--rate`` tweets/s (round robin over the posters,
open loop: on a schedule, not waiting for answers) for ``--duration`` seconds.

Every socket must get every tweet of every poster its user follows exactly once: the
report counts deliveries expected, received, missing, duplicated and unexpected.

Latency is taken at the socket process when its reader has the frame (``time.time()``),
measured from the moment the poster process sent the POST (``time.time()`` just before
the request) and, beside it, from the tweet's ``timestamp`` field (the server's clock
when it stored the tweet). Both are this machine's wall clock.

Memory: the service's VmRSS (its process and any children) from /proc, just before and
after the sockets open. CPU: utime+stime from /proc/PID/stat over the run (first POST to
last delivery) for the service, redis-server and each process of the generator.

``--idle`` opens the sockets to one service process and reports RSS per socket and the
CPU spent while they sit idle (the server pings each every 20 s).

Exit status 1 when a delivery is missing, duplicated or unexpected, or a POST, socket
or step failed; never because of a time or a target. ``--quick`` never writes
BENCHMARKS.md; other runs rewrite the ``live_load`` (or ``live_idle``) section.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .common import (ROOT, run_in_child, Progress, command_line, cpu_seconds, git_revision, machine_of, machine_busy_seconds,
                     private_redis, process_tree, raise_open_files_limit, rss_bytes, write_section)

LOAD_SECTION = "live_load"
IDLE_SECTION = "live_idle"
P99_TARGET_MS = 50.0
RSS_TARGET_KB = 30.0
SATURATED = 0.85  # share of one core above which a process is called saturated
NOISY = 0.15  # cores used by processes not ours above which the machine is not quiet
SPAWN = multiprocessing.get_context("spawn")

QUICK = dict(sockets=200, followers_per_poster=20, posters=20, rate=20.0, duration=3.0)


# -- arguments ----------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.live_load", description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", "-n", type=int, default=None,
                        help="follower users, one socket each (default 2000; 10000 with --idle)")
    parser.add_argument("--followers-per-poster", "-k", type=int, default=100,
                        help="followers of each poster, spread evenly over the sockets (default 100)")
    parser.add_argument("--posters", type=int, default=100,
                        help="posting users (no sockets); tweets go round robin over them (default 100)")
    parser.add_argument("--rate", "-r", type=float, default=100.0, help="tweets posted per second (default 100)")
    parser.add_argument("--duration", "-d", type=float, default=None,
                        help="seconds of posting (default 5), or of idling with --idle (default 30)")
    parser.add_argument("--idle", action="store_true", help="open idle sockets only: RSS per socket, idle CPU")
    parser.add_argument("--quick", action="store_true",
                        help="a small run for CI (N=200, K=20, 20 posters, 20/s for 3 s); never writes BENCHMARKS.md")
    parser.add_argument("--socket-procs", type=int, default=1,
                        help="generator processes holding the sockets (default 1)")
    parser.add_argument("--server-workers", type=int, default=1,
                        help="service processes sharing the port (run.py --workers; default 1)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the service (run.py reads every setting from one, "
                             "e.g. FANOUT_IN_PROCESS=4); repeatable")
    parser.add_argument("--connect-concurrency", type=int, default=100,
                        help="sockets being opened at once, per socket process (default 100)")
    parser.add_argument("--setup-concurrency", type=int, default=32, help="setup HTTP calls in flight (default 32)")
    parser.add_argument("--post-concurrency", type=int, default=32,
                        help="POSTs in flight at most; a tweet due while all are busy is sent late (default 32)")
    parser.add_argument("--drain", type=float, default=15.0,
                        help="seconds to wait after the last POST for deliveries still on their way (default 15)")
    parser.add_argument("--grace", type=float, default=0.5,
                        help="seconds to keep listening once every delivery arrived, to catch duplicates (default 0.5)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="wait up to this many seconds for other processes on the machine to go quiet "
                             "before measuring (default 120; 0 with --quick)")
    parser.add_argument("--max-seconds", type=float, default=300,
                        help="give up when one setup step takes longer than this (default 300)")
    parser.add_argument("--py-spy", metavar="SVG", default="",
                        help="record the service with py-spy during the run (or the idle window) into SVG "
                             "(a flame graph; a path ending in .txt gets collapsed stacks)")
    parser.add_argument("--label", default="", help="a note for the table of runs")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.quick:
        if args.idle:
            parser.error("--quick and --idle do not go together")
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.no_write = True
        if args.quiet_wait is None:
            args.quiet_wait = 0.0
    if args.quiet_wait is None:
        args.quiet_wait = 120.0
    if args.sockets is None:
        args.sockets = 10_000 if args.idle else 2000
    if args.duration is None:
        args.duration = 30.0 if args.idle else 5.0
    if args.sockets < 1 or args.posters < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--sockets, --posters, --rate and --duration must be above zero")
    if not args.idle and not 1 <= args.followers_per_poster <= args.sockets:
        parser.error("--followers-per-poster must be 1..--sockets (each follower has one socket)")
    if not 1 <= args.socket_procs <= args.sockets or args.server_workers < 1:
        parser.error("--socket-procs must be 1..--sockets and --server-workers at least 1")
    if any("=" not in item for item in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    if args.py_spy and not shutil.which("py-spy"):
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")
    return args


# -- the users ----------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    """Who posts, who listens, who follows whom."""

    posters: list[str]
    followers: list[str]
    follows: dict[str, list[str]]  # follower -> posters it follows

    @classmethod
    def make(cls, sockets: int, posters: int, per_poster: int) -> Plan:
        poster_names = [f"poster{i:05d}" for i in range(posters)]
        follower_names = [f"fan{i:06d}" for i in range(sockets)]
        follows: dict[str, list[str]] = {name: [] for name in follower_names}
        for p, poster in enumerate(poster_names):
            for k in range(per_poster):  # consecutive followers, so every socket gets a fair share
                follows[follower_names[(p * per_poster + k) % sockets]].append(poster)
        return cls(poster_names, follower_names, follows)

    @classmethod
    def idle(cls, sockets: int) -> Plan:
        return cls([], [f"idle{i:06d}" for i in range(sockets)], {})


# -- the service, started as an operator would -----------------------------------------

class Service:
    """``python run.py`` in a child process on a free port; stopped by its pid."""

    def __init__(self, redis_url: str, workers: int, log_dir: Path, extra_env: Sequence[str] = ()) -> None:
        from launcher.embedded_redis import free_port

        self.redis_url, self.workers, self.log_dir = redis_url, workers, log_dir
        self.extra_env = dict(item.split("=", 1) for item in extra_env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    def command(self) -> list[str]:
        return [sys.executable, "run.py", "--redis-url", self.redis_url, "--host", "127.0.0.1",
                "--port", str(self.port), "--dev-signin", "on", "--rate-limits", "off", "--log-level", "warning",
                "--max-unauthenticated-sockets", "100000",  # storms connect thousands from one address
                "--workers", str(self.workers)]

    async def start(self, timeout: float = 60.0) -> Service:
        import httpx

        self.starts += 1
        env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_CLIENT_ID", "REDIS_URL", "PORT")}
        env.update(self.extra_env)
        with open(self.log_dir / f"service-{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2, trust_env=False) as client:
            while True:
                if self.process.poll() is not None:
                    raise BenchError(f"the service exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"the service did not answer /healthz within {timeout:.0f}s")
                await asyncio.sleep(0.1)
        if self.workers > 1:  # every worker process must be up, not only the first to answer
            while len(self.pids()) < self.workers + 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in reversed(self.pids()):  # our own child and its workers, by pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait()

    async def restart(self) -> None:
        """A fresh process: its memory and CPU then belong to the next measurement alone."""
        self.stop()
        await self.start()

    def log_tail(self, lines: int = 30) -> str:
        path = self.log_dir / f"service-{self.starts}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class BenchError(Exception):
    """A step failed: the run cannot say anything about deliveries."""


# -- setup over HTTP ------------------------------------------------------------------

async def create_users(base_url: str, plan: Plan, concurrency: int, max_seconds: float) -> dict[str, str]:
    """Dev sign-in for every user (creating it); then every follow. Returns {user: token}."""
    import httpx

    tokens: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30, trust_env=False) as client:

        async def call(method: str, path: str, expected: int, **kwargs) -> httpx.Response:
            async with gate:
                answer = await client.request(method, path, **kwargs)
            if answer.status_code != expected:
                raise BenchError(f"{method} {path} answered {answer.status_code}: {answer.text[:200]}")
            return answer

        async def sign_in(name: str) -> None:
            tokens[name] = (await call("POST", "/auth/dev", 200, json={"username": name})).json()["token"]

        names = plan.posters + plan.followers
        await _with_progress("users signed in", len(names), lambda: len(tokens), max_seconds,
                             asyncio.gather(*(sign_in(name) for name in names)))
        pairs = [(fan, poster) for fan, posters in plan.follows.items() for poster in posters]
        done = [0]

        async def follow(fan: str, poster: str) -> None:
            await call("PUT", f"/users/{poster}/follow", 204, headers={"Authorization": f"Bearer {tokens[fan]}"})
            done[0] += 1

        if pairs:
            await _with_progress("follows", len(pairs), lambda: done[0], max_seconds,
                                 asyncio.gather(*(follow(fan, poster) for fan, poster in pairs)))
    return tokens


async def _with_progress(label: str, total: int, count, max_seconds: float, awaitable) -> float:
    """Await ``awaitable`` within ``max_seconds``, printing ``count()`` against ``total``."""
    progress = Progress(label, total)
    task = asyncio.ensure_future(awaitable)
    deadline = time.monotonic() + max_seconds
    try:
        while not task.done():
            if time.monotonic() > deadline:
                raise BenchError(f"gave up: {label} took longer than --max-seconds={max_seconds:.0f}")
            await asyncio.wait({task}, timeout=0.2)
            progress.update(count())
        task.result()
    finally:
        task.cancel()
    return progress.done(count())


# -- child process: the sockets ---------------------------------------------------------

class _Socket:
    """One follower's live connection, as the generator's socket process holds it."""

    __slots__ = ("user", "token", "ws", "received", "replayed", "other", "error", "server_close", "closing")

    def __init__(self, user: str, token: str) -> None:
        self.user, self.token = user, token
        self.ws = None
        self.received: list[tuple[str, float, float]] = []  # (tweet id, time received, tweet timestamp)
        self.replayed = 0
        self.other: Counter[str] = Counter()
        self.error = ""
        self.server_close: int | None = None  # set when the server closed it while we listened
        self.closing = False

    async def open(self, url: str, timeout: float) -> None:
        import orjson
        from websockets.asyncio.client import connect

        # No compression (the server has it off), no client pings (browsers send none; the
        # server pings every 20 s), no proxy: all traffic stays on 127.0.0.1.
        self.ws = await connect(url, compression=None, ping_interval=None, proxy=None, open_timeout=timeout,
                                close_timeout=2, max_queue=None)
        await self.ws.send(orjson.dumps({"type": "auth", "token": self.token, "since": None}).decode())
        while True:
            frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame.get("type") == "ready":
                return
            self.replayed += 1

    async def read(self) -> None:
        import orjson
        from websockets.exceptions import ConnectionClosed

        now, loads, append = time.time, orjson.loads, self.received.append
        try:
            async for message in self.ws:
                at = now()
                frame = loads(message)
                if frame.get("type") == "tweet":
                    tweet = frame["tweet"]
                    append((tweet["id"], at, tweet["timestamp"]))
                else:
                    self.other[frame.get("type", "?")] += 1
        except ConnectionClosed:
            pass
        if not self.closing:
            self.server_close = self.ws.close_code if self.ws.close_code is not None else -1


def socket_process(url: str, users: list[tuple[str, str]], concurrency: int, opened, received, conn) -> None:
    """Child process: open a socket per user, read until told to report, then close."""
    run_in_child(_socket_process(url, users, concurrency, opened, received, conn))


async def _socket_process(url, users, concurrency, opened, received, conn) -> None:
    loop = asyncio.get_running_loop()
    sockets = [_Socket(user, token) for user, token in users]
    gate = asyncio.Semaphore(concurrency)
    readers = []

    async def open_one(sock: _Socket) -> None:
        async with gate:
            try:
                await sock.open(url, timeout=30)
            except Exception as exc:  # counted and reported, never fatal to the others
                sock.error = f"{type(exc).__name__}: {exc}"[:200]
                return
        opened.value += 1
        readers.append(asyncio.create_task(sock.read()))

    started = time.perf_counter()
    await asyncio.gather(*(open_one(sock) for sock in sockets))
    conn.send({"opened": opened.value, "seconds": time.perf_counter() - started,
               "errors": [f"{s.user}: {s.error}" for s in sockets if s.error]})

    async def count() -> None:
        while True:
            received.value = sum(len(sock.received) for sock in sockets)
            await asyncio.sleep(0.05)

    counter = asyncio.create_task(count())
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command in ("report", "report-clear"):
            conn.send([(s.user, s.received, s.replayed, dict(s.other), s.error, s.server_close) for s in sockets])
            if command == "report-clear":  # a fresh count for the next step of a stepped run
                for sock in sockets:
                    sock.received.clear()  # in place: the reader holds its append
                    sock.other.clear()
                received.value = 0
        elif command == "close":
            counter.cancel()
            for sock in sockets:
                sock.closing = True
            await asyncio.gather(*(s.ws.close() for s in sockets if s.ws is not None), return_exceptions=True)
            await asyncio.gather(*readers, return_exceptions=True)
            conn.send("closed")
            return


# -- child process: the poster ----------------------------------------------------------

def poster_process(base_url: str, posters: list[tuple[str, str]], rate: float, duration: float,
                   concurrency: int, conn) -> None:
    """Child process: post ``rate`` tweets/s for ``duration`` s once told "go"; send the records."""
    run_in_child(_poster_process(base_url, posters, rate, duration, concurrency, conn))


async def _poster_process(base_url, posters, rate, duration, concurrency, conn) -> None:
    import httpx

    loop = asyncio.get_running_loop()
    total = max(1, round(rate * duration))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    records: list[tuple[str, str, float, float, float]] = []  # id, author, sent, answered, late by
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30, trust_env=False) as client:
        await asyncio.gather(*(client.get("/healthz") for _ in range(concurrency)))  # open the connections
        conn.send("ready")
        await loop.run_in_executor(None, conn.recv)  # "go"

        async def post(number: int, due: float, author: str, token: str) -> None:
            async with gate:
                late = time.perf_counter() - due
                sent = time.time()
                try:
                    answer = await client.post("/tweets", json={"content": f"live load tweet {number}"},
                                               headers={"Authorization": f"Bearer {token}"})
                except httpx.HTTPError as exc:
                    errors.append(f"POST /tweets: {type(exc).__name__}: {exc}"[:200])
                    return
                answered = time.time()
            if answer.status_code != 201:
                errors.append(f"POST /tweets answered {answer.status_code}: {answer.text[:120]}")
                return
            records.append((answer.headers["location"].rsplit("/", 1)[1], author, sent, answered, late))

        start = time.perf_counter()
        tasks = []
        for number in range(total):
            due = start + number / rate
            if due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            author, token = posters[number % len(posters)]
            tasks.append(asyncio.create_task(post(number, due, author, token)))
        await asyncio.gather(*tasks)
    conn.send({"records": records, "errors": errors, "seconds": time.perf_counter() - start})


# -- the generator's processes, seen from the main one ------------------------------------

class SocketProcesses:
    """The socket process(es): sockets split evenly over them."""

    def __init__(self, ws_url: str, users: list[tuple[str, str]], procs: int, concurrency: int) -> None:
        self.total = len(users)
        self.children = []
        for index in range(procs):
            opened, received = SPAWN.Value("q", 0, lock=False), SPAWN.Value("q", 0, lock=False)
            mine, theirs = SPAWN.Pipe()
            process = SPAWN.Process(target=socket_process, name=f"live-load-sockets-{index}", daemon=True,
                                    args=(ws_url, users[index::procs], concurrency, opened, received, theirs))
            self.children.append((process, mine, opened, received))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, *_ in self.children if process.pid]

    def opened(self) -> int:
        return sum(opened.value for _, _, opened, _ in self.children)

    def received(self) -> int:
        return sum(received.value for *_, received in self.children)

    async def open(self, max_seconds: float) -> dict:
        for process, *_ in self.children:
            process.start()
        answers = []

        async def wait_all() -> None:
            for _, conn, *_ in self.children:
                answers.append(await _recv(conn, max_seconds))

        seconds = await _with_progress("sockets open (auth, ready)", self.total, self.opened, max_seconds, wait_all())
        errors = [error for answer in answers for error in answer["errors"]]
        return {"opened": sum(a["opened"] for a in answers), "seconds": seconds, "errors": errors}

    async def report(self, *, clear: bool = False) -> list:
        """Every socket's row; ``clear`` then forgets what they received (a stepped run's next step)."""
        rows = []
        for _, conn, *_ in self.children:
            conn.send("report-clear" if clear else "report")
            rows += await _recv(conn, 120)
        return rows

    async def close(self) -> None:
        for process, conn, *_ in self.children:
            if process.is_alive():
                try:
                    conn.send("close")
                    await _recv(conn, 30)
                except (BenchError, OSError, EOFError):
                    pass
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


class PosterProcess:
    def __init__(self, base_url: str, posters: list[tuple[str, str]], rate: float, duration: float,
                 concurrency: int) -> None:
        self.total = max(1, round(rate * duration))
        self.conn, theirs = SPAWN.Pipe()
        self.process = SPAWN.Process(target=poster_process, name="live-load-poster", daemon=True,
                                     args=(base_url, posters, rate, duration, concurrency, theirs))

    async def start(self) -> None:
        self.process.start()
        if await _recv(self.conn, 60) != "ready":
            raise BenchError("the poster process did not get ready")

    def go(self) -> None:
        self.conn.send("go")

    async def result(self, timeout: float) -> dict:
        return await _recv(self.conn, timeout)

    def stop(self) -> None:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


async def _recv(conn, timeout: float):
    """The next message from a child, waited for off the event loop, within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while not conn.poll():
        if time.monotonic() > deadline:
            raise BenchError(f"a generator process sent nothing for {timeout:.0f}s")
        await asyncio.sleep(0.02)
    return await loop.run_in_executor(None, conn.recv)


# -- measuring ------------------------------------------------------------------------

@dataclasses.dataclass
class CpuMark:
    """CPU seconds of each process of interest at one moment."""

    at: float
    server: float
    redis: float
    sockets: list[float]
    poster: float
    main: float
    machine: float  # every process on the machine, ours or not

    @classmethod
    def take(cls, service: Service, redis_pid: int, socket_pids: Sequence[int], poster_pid: int | None) -> CpuMark:
        return cls(time.perf_counter(), cpu_seconds(service.pids()), cpu_seconds([redis_pid]),
                   [cpu_seconds([pid]) for pid in socket_pids], cpu_seconds([poster_pid]) if poster_pid else 0.0,
                   cpu_seconds([os.getpid()]), machine_busy_seconds())

    def since(self, start: CpuMark) -> dict:
        used = {"wall": self.at - start.at, "server": self.server - start.server, "redis": self.redis - start.redis,
                "sockets": [a - b for a, b in zip(self.sockets, start.sockets)],
                "poster": self.poster - start.poster, "main": self.main - start.main}
        ours = used["server"] + used["redis"] + sum(used["sockets"]) + used["poster"] + used["main"]
        used["others"] = max(0.0, self.machine - start.machine - ours)
        return used


async def wait_for_quiet(max_wait: float, ours) -> float:
    """Wait (up to ``max_wait`` s) until processes not ours use under NOISY cores; answer their load."""
    deadline = time.monotonic() + max_wait
    told = False
    while True:
        machine_before, ours_before = machine_busy_seconds(), cpu_seconds(ours())
        await asyncio.sleep(1.0)
        others = max(0.0, machine_busy_seconds() - machine_before - (cpu_seconds(ours()) - ours_before))
        if others < NOISY or time.monotonic() > deadline:
            if told:
                print(f"  other processes now use {others:.2f} cores; going on", flush=True)
            return others
        if not told:
            print(f"  other processes on this machine use {others:.2f} cores: waiting up to "
                  f"{max_wait:.0f}s for quiet (--quiet-wait)", flush=True)
            told = True


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def latency_line(values_s: list[float]) -> dict:
    values = sorted(v * 1000 for v in values_s)
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "max": values[-1] if values else float("nan"), "n": len(values)}


def check_deliveries(plan: Plan, poster_records: list, socket_rows: list, duration: float) -> dict:
    """Compare what each socket got with what it should have got."""
    by_author: dict[str, list[str]] = {}
    sent_at: dict[str, float] = {}
    author_of: dict[str, str] = {}
    for tweet_id, author, sent, _answered, _late in poster_records:
        by_author.setdefault(author, []).append(tweet_id)
        sent_at[tweet_id] = sent
        author_of[tweet_id] = author
    expected = received = missing = duplicated = unexpected = out_of_order = 0
    from_post, from_timestamp = [], []
    arrivals: dict[str, list[float]] = {}  # tweet id -> when each socket had it
    first_sent = min(sent_at.values()) if sent_at else 0.0
    last_received = first_sent
    for user, got, _replayed, _other, _error, _close in socket_rows:
        wanted = {tweet_id for poster in plan.follows.get(user, ()) for tweet_id in by_author.get(poster, ())}
        expected += len(wanted)
        seen: set[str] = set()
        newest_per_author: dict[str, int] = {}
        for tweet_id, at, timestamp in got:
            received += 1
            if tweet_id in seen:
                duplicated += 1
                continue
            seen.add(tweet_id)
            if tweet_id not in wanted:
                unexpected += 1
                continue
            author = author_of[tweet_id]
            if int(tweet_id) < newest_per_author.get(author, 0):
                out_of_order += 1
            newest_per_author[author] = max(newest_per_author.get(author, 0), int(tweet_id))
            from_post.append(at - sent_at[tweet_id])
            from_timestamp.append(at - timestamp)
            arrivals.setdefault(tweet_id, []).append(at)
            last_received = max(last_received, at)
        missing += len(wanted - seen)
    span = last_received - first_sent
    # Per tweet: when its first socket had it (the fan-out path) and how long until its last
    # socket had it (writing the frame to every socket); per second of posting: the latency.
    first, spread, by_second = [], [], {}
    bucket = max(1, -(-int(duration) // 10))  # at most ~10 buckets of whole seconds
    for tweet_id, times in arrivals.items():
        first.append(min(times) - sent_at[tweet_id])
        spread.append(max(times) - min(times))
        by_second.setdefault(int((sent_at[tweet_id] - first_sent) // bucket), []).extend(
            t - sent_at[tweet_id] for t in times)
    return {"expected": expected, "received": received, "missing": missing, "duplicated": duplicated,
            "unexpected": unexpected, "out_of_order": out_of_order, "span": span,
            "rate": (received - duplicated - unexpected) / span if span > 0 else 0.0,
            "from_post": latency_line(from_post), "from_timestamp": latency_line(from_timestamp),
            "from_post_ms": sorted(value * 1000 for value in from_post),
            "first": latency_line(first), "spread": latency_line(spread), "bucket": bucket,
            "by_second": {second: latency_line(values) for second, values in sorted(by_second.items())}}


async def _settle(service: Service, seconds: float = 2.0) -> int:
    """Wait until the service's RSS stops moving (at most ``seconds``); answer it."""
    previous = rss_bytes(service.pids())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        current = rss_bytes(service.pids())
        if abs(current - previous) < 64 * 1024:
            return current
        previous = current
    return previous


async def _stats_connections(base_url: str) -> int | None:
    import httpx

    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5, trust_env=False) as client:
            # Presence beats once a second: the figure can lag by that much.
            await asyncio.sleep(1.2)
            return (await client.get("/stats")).json()["connections"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def _start_py_spy(path: str, pid: int, seconds: float) -> subprocess.Popen | None:
    if not path:
        return None
    print(f"  py-spy: recording the service (pid {pid}) for {seconds:.0f}s into {path}", flush=True)
    # A .txt path gets collapsed stacks (one line per stack, with its sample count), else a flame graph.
    output_format = "raw" if path.endswith(".txt") else "flamegraph"
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--output", path, "--format", output_format,
                             "--duration", str(max(1, round(seconds))), "--rate", "100", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish_py_spy(process: subprocess.Popen | None) -> str:
    if process is None:
        return ""
    try:
        _, error = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, error = process.communicate()
    return "" if process.returncode == 0 else f"py-spy failed ({process.returncode}): {error.decode()[-300:]}"


# -- the two runs ------------------------------------------------------------------------

async def load_run(args: argparse.Namespace, service: Service, redis_pid: int) -> dict:
    plan = Plan.make(args.sockets, args.posters, args.followers_per_poster)
    print(f"Setting up: {len(plan.posters):,} posters, {len(plan.followers):,} followers, "
          f"{args.posters * args.followers_per_poster:,} follows", flush=True)
    setup_started = time.perf_counter()
    tokens = await create_users(service.url, plan, args.setup_concurrency, args.max_seconds)
    await service.restart()
    setup_seconds = time.perf_counter() - setup_started
    poster = PosterProcess(service.url, [(p, tokens[p]) for p in plan.posters], args.rate, args.duration,
                           args.post_concurrency)
    sockets = SocketProcesses(service.ws_url,
                              [(f, tokens[f]) for f in plan.followers], args.socket_procs, args.connect_concurrency)
    result: dict = {"plan": plan, "setup_seconds": setup_seconds}
    try:
        await poster.start()
        rss_before = await _settle(service)
        opening = await sockets.open(args.max_seconds)
        rss_after = await _settle(service)
        result.update(opening=opening, rss_before=rss_before, rss_after=rss_after,
                      stats_connections=await _stats_connections(service.url))
        print(f"Posting {poster.total:,} tweets at {args.rate:g}/s for {args.duration:g}s "
              f"(each to {args.followers_per_poster} followers)", flush=True)
        expected_total = poster.total * args.followers_per_poster
        if args.quiet_wait > 0:
            await wait_for_quiet(args.quiet_wait, lambda: [*service.pids(), redis_pid, *sockets.pids,
                                                           poster.process.pid, os.getpid()])
        spy = _start_py_spy(args.py_spy, service.pid, args.duration + 2)
        start = CpuMark.take(service, redis_pid, sockets.pids, poster.process.pid)
        poster.go()
        progress = Progress("deliveries", expected_total)
        deadline = None
        posted = None
        while True:
            await asyncio.sleep(0.05)
            progress.update(sockets.received())
            if posted is None and poster.conn.poll():
                posted = await poster.result(30)
                expected_total = len(posted["records"]) * args.followers_per_poster
                progress.total = expected_total
                deadline = time.monotonic() + args.drain
            if posted is not None and (sockets.received() >= expected_total or time.monotonic() > deadline):
                break
            if posted is None and time.perf_counter() - start.at > args.duration + args.max_seconds:
                raise BenchError("the poster process did not finish")
        end = CpuMark.take(service, redis_pid, sockets.pids, poster.process.pid)
        progress.done(sockets.received())
        await asyncio.sleep(args.grace)
        result["py_spy_error"] = _finish_py_spy(spy)
        rows = await sockets.report()
        result.update(cpu=end.since(start), posted=posted, rows=rows,
                      rss_end=rss_bytes(service.pids()), redis_rss=rss_bytes([redis_pid]),
                      generator_rss=rss_bytes(sockets.pids))
        result["check"] = check_deliveries(plan, posted["records"], rows, args.duration)
    finally:
        await sockets.close()
        poster.stop()
    return result


async def idle_run(args: argparse.Namespace, service: Service, redis_pid: int) -> dict:
    plan = Plan.idle(args.sockets)
    print(f"Setting up: {len(plan.followers):,} users", flush=True)
    setup_started = time.perf_counter()
    tokens = await create_users(service.url, plan, args.setup_concurrency, args.max_seconds)
    await service.restart()
    setup_seconds = time.perf_counter() - setup_started
    sockets = SocketProcesses(service.ws_url,
                              [(f, tokens[f]) for f in plan.followers], args.socket_procs, args.connect_concurrency)
    result: dict = {"plan": plan, "setup_seconds": setup_seconds}
    try:
        rss_before = await _settle(service)
        redis_before = rss_bytes([redis_pid])
        opening = await sockets.open(args.max_seconds)
        rss_after = await _settle(service, 5.0)
        result.update(opening=opening, rss_before=rss_before, rss_after=rss_after,
                      stats_connections=await _stats_connections(service.url),
                      generator_rss=rss_bytes(sockets.pids), redis_rss_delta=rss_bytes([redis_pid]) - redis_before)
        print(f"Idling {args.duration:g}s with {opening['opened']:,} sockets open", flush=True)
        if args.quiet_wait > 0:
            await wait_for_quiet(args.quiet_wait, lambda: [*service.pids(), redis_pid, *sockets.pids, os.getpid()])
        spy = _start_py_spy(args.py_spy, service.pid, args.duration)
        start = CpuMark.take(service, redis_pid, sockets.pids, None)
        progress = Progress("idle seconds", round(args.duration))
        while (elapsed := time.perf_counter() - start.at) < args.duration:
            progress.update(int(elapsed))
            await asyncio.sleep(min(0.5, args.duration - elapsed))
        end = CpuMark.take(service, redis_pid, sockets.pids, None)
        progress.done()
        result["py_spy_error"] = _finish_py_spy(spy)
        rows = await sockets.report()
        result.update(cpu=end.since(start), rows=rows, rss_end=rss_bytes(service.pids()))
    finally:
        await sockets.close()
    return result


# -- reporting ---------------------------------------------------------------------------

def _kib(value: float) -> str:
    return f"{value / 1024:,.1f} KiB"


def socket_errors(result: dict) -> list[str]:
    """Sockets that failed to open, or that the server closed while we listened."""
    errors = list(result["opening"]["errors"])
    for user, _got, _replayed, _other, error, close in result.get("rows", []):
        if close is not None and not error:
            errors.append(f"{user}: closed by the server (code {close})")
    return errors


def service_text(args: argparse.Namespace) -> str:
    processes = "one service process" if args.server_workers == 1 else f"{args.server_workers} service processes"
    env = "".join(f" {item}" for item in args.server_env)
    return f"{processes} (`{env.strip() + ' ' if env else ''}python run.py --workers {args.server_workers}`)"


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def cpu_table(cpu: dict, deliveries: int | None = None) -> list[str]:
    wall = cpu["wall"] or 1e-9
    rows = [("service (run.py, all its processes)", cpu["server"]), ("redis-server", cpu["redis"])]
    rows += [(f"generator: socket process {i}", s) for i, s in enumerate(cpu["sockets"])]
    if cpu["poster"]:
        rows.append(("generator: poster process", cpu["poster"]))
    rows.append(("generator: main process", cpu["main"]))
    per = (lambda seconds: f" {seconds / deliveries * 1e6:,.0f} |") if deliveries else (lambda seconds: "")
    lines = ["| process | CPU seconds | share of one core |" + (" µs per delivery |" if deliveries else ""),
             "|---|---|---|" + ("---|" if deliveries else "")]
    for name, seconds in rows:
        lines.append(f"| {name} | {seconds:.2f} | {seconds / wall:.0%} |" + per(seconds))
    total = sum(seconds for _, seconds in rows)
    lines.append(f"| all of ours | {total:.2f} | {total / wall:.0%} (the machine has {os.cpu_count()} cores) |"
                 + per(total))
    lines.append(f"| other processes on this machine (not ours) | {cpu['others']:.2f} | {cpu['others'] / wall:.0%} |"
                 + (" |" if deliveries else ""))
    return lines


def saturation_notes(cpu: dict) -> list[str]:
    wall = cpu["wall"]
    notes = []
    if wall <= 0:
        return notes
    busy = {"the service": cpu["server"] / wall, "redis-server": cpu["redis"] / wall,
            **{f"the generator's socket process {i}": s / wall for i, s in enumerate(cpu["sockets"])},
            "the generator's poster process": cpu["poster"] / wall}
    hot = [f"{name} ({share:.0%})" for name, share in busy.items() if share >= SATURATED]
    total = (cpu["server"] + cpu["redis"] + sum(cpu["sockets"]) + cpu["poster"] + cpu["main"] + cpu["others"]) / wall
    if cpu["others"] / wall >= NOISY:
        notes.append(f"Other processes on this machine used {cpu['others'] / wall:.2f} cores during the run: "
                     "the figures are disturbed by them; re-run on a quiet machine.")
    if hot:
        notes.append("Saturated (≥ {:.0%} of one core over the run): {}.".format(SATURATED, ", ".join(hot)))
    if total >= 0.9 * (os.cpu_count() or 1):
        notes.append(f"The machine itself was near full ({total:.0%} of {os.cpu_count()} cores): "
                     "the processes were also waiting for each other's CPU.")
    generator = [(f"socket process {i}", seconds / wall) for i, seconds in enumerate(cpu["sockets"])]
    if cpu["poster"]:
        generator.append(("poster process", cpu["poster"] / wall))
    shares = ", ".join(f"{name} {share:.0%}" for name, share in generator)
    if any(share >= SATURATED for _, share in generator):
        notes.append(f"The generator is a bottleneck here ({shares} of a core): the figures include time its "
                     "processes needed to send and to read; try more --socket-procs.")
    else:
        notes.append(f"The generator is not the bottleneck ({shares} of a core).")
    return notes


def load_report(args: argparse.Namespace, result: dict) -> tuple[str, list[str], bool]:
    """Markdown body, history row, and whether the run is clean (no missing, duplicate, error)."""
    check, cpu, posted, plan = result["check"], result["cpu"], result["posted"], result["plan"]
    opened = result["opening"]["opened"]
    errors = socket_errors(result) + posted["errors"]
    clean = not (check["missing"] or check["duplicated"] or check["unexpected"] or errors)
    per_socket = (result["rss_after"] - result["rss_before"]) / max(opened, 1)
    lp, lt, fd, sp = check["from_post"], check["from_timestamp"], check["first"], check["spread"]
    answered = sorted(r[3] - r[2] for r in posted["records"])
    late = [r[4] for r in posted["records"]]
    sent_rate = len(posted["records"]) / posted["seconds"] if posted["seconds"] else 0.0
    delivered = check["received"] - check["duplicated"] - check["unexpected"]
    replayed = sum(row[2] for row in result["rows"])
    per_follower = Counter(len(v) for v in plan.follows.values())
    lines = [
        f"{len(plan.followers):,} sockets (one per follower user, `websockets` client in {args.socket_procs} "
        f"process(es)), {len(plan.posters):,} posters with {args.followers_per_poster} followers each "
        f"(each follower follows {', '.join(f'{n}' for n in sorted(per_follower))} poster(s)), "
        f"{args.rate:g} tweets/s for {args.duration:g} s from a separate process (httpx, open loop, "
        f"≤ {args.post_concurrency} POSTs in flight), {service_text(args)}, private redis-server. Setup over HTTP took {result['setup_seconds']:.1f} s; "
        f"opening the sockets {result['opening']['seconds']:.1f} s.",
        "",
        "| deliveries expected | received | missing | duplicated | unexpected | out of order (per author) | deliveries/s |",
        "|---|---|---|---|---|---|---|",
        f"| {check['expected']:,} | {check['received']:,} | **{check['missing']:,}** | **{check['duplicated']:,}** | "
        f"{check['unexpected']:,} | {check['out_of_order']:,} | {check['rate']:,.0f} |",
        "",
        f"Tweets posted: {len(posted['records']):,} of {round(args.rate * args.duration):,} "
        f"({sent_rate:,.1f}/s achieved; {len(posted['errors'])} failed POSTs); POST answered in p50 "
        f"{percentile(answered, 50) * 1000:.1f} ms, p99 {percentile(answered, 99) * 1000:.1f} ms; "
        f"sent late by more than 10 ms (all {args.post_concurrency} connections busy): "
        f"{sum(1 for x in late if x > 0.01)}. Sockets: {opened:,} opened, {len(socket_errors(result))} errors, "
        f"{replayed} frames replayed on connect; `/stats` said {result['stats_connections']} connections. "
        f"Deliveries/s = deliveries / (last delivery − first POST sent), {check['span']:.2f} s; offered "
        f"{args.rate * args.followers_per_poster:,.0f}/s.",
        "",
        "Post → delivery latency (ms), at the socket process's reader:",
        "",
        "| measured from | p50 | p90 | p99 | max |",
        "|---|---|---|---|---|",
        f"| POST sent (poster's clock) | {lp['p50']:.1f} | {lp['p90']:.1f} | **{lp['p99']:.1f}** | {lp['max']:.1f} |",
        f"| tweet `timestamp` (server's clock) | {lt['p50']:.1f} | {lt['p90']:.1f} | {lt['p99']:.1f} | {lt['max']:.1f} |",
        f"| per tweet: POST sent → its first delivery | {fd['p50']:.1f} | {fd['p90']:.1f} | {fd['p99']:.1f} | {fd['max']:.1f} |",
        f"| per tweet: first → last of its deliveries | {sp['p50']:.1f} | {sp['p90']:.1f} | {sp['p99']:.1f} | {sp['max']:.1f} |",
        "",
        f"By {check['bucket']:g} s of posting (tweets sent then; from POST sent): " + ", ".join(
            f"{second * check['bucket']:g} s: p50 {line['p50']:.0f} / p99 {line['p99']:.0f} ms"
            for second, line in check["by_second"].items()) + ".",
        "",
        f"Service RSS: {result['rss_before'] / 2**20:.1f} MiB before the sockets, {result['rss_after'] / 2**20:.1f} MiB "
        f"with them open ({_kib(per_socket)} per connection), {result['rss_end'] / 2**20:.1f} MiB after the run "
        f"({_kib((result['rss_end'] - result['rss_after']) / max(opened, 1))} more per connection, after "
        f"{delivered / max(opened, 1):,.0f} deliveries each). "
        f"Generator socket process(es): {result['generator_rss'] / 2**20:.1f} MiB.",
        "",
        f"CPU over the run ({cpu['wall']:.2f} s, first POST to last delivery):",
        "",
        *cpu_table(cpu, delivered),
        "",
        *saturation_notes(cpu),
        "",
        f"Targets: zero missing and zero duplicated: {verdict(not check['missing'] and not check['duplicated'])}; "
        f"p99 under {P99_TARGET_MS:.0f} ms (from POST sent): {verdict(lp['p99'] < P99_TARGET_MS)} "
        + (f"({lp['p99']:.1f} ms)." if lp["n"] else "(nothing was delivered)."),
    ]
    if errors:
        lines += ["", "Errors (first 5): " + "; ".join(f"`{e}`" for e in errors[:5])]
    if result.get("py_spy_error"):
        lines += ["", result["py_spy_error"]]
    history = [git_revision(), args.label, f"{len(plan.followers)}/{args.followers_per_poster}/{args.rate:g}/{args.duration:g}",
               f"{check['missing']}/{check['duplicated']}", f"{lp['p50']:.1f}/{lp['p99']:.1f}/{lp['max']:.1f}",
               f"{check['rate']:,.0f}", f"{cpu['server']:.2f} ({cpu['server'] / cpu['wall']:.0%})",
               f"{per_socket / 1024:.1f}"]
    return "\n".join(lines), history, clean


def idle_report(args: argparse.Namespace, result: dict) -> tuple[str, list[str], bool]:
    cpu = result["cpu"]
    opened = result["opening"]["opened"]
    errors = socket_errors(result)
    clean = not errors and opened == args.sockets
    per_socket = (result["rss_after"] - result["rss_before"]) / max(opened, 1)
    lines = [
        f"{opened:,} of {args.sockets:,} sockets opened and authenticated (one user each, `websockets` client in "
        f"{args.socket_procs} process(es), {result['opening']['seconds']:.1f} s to open) to "
        f"{service_text(args)}, then left idle for {args.duration:g} s "
        f"(the server pings each socket every 20 s). `/stats` said {result['stats_connections']} connections.",
        "",
        "| sockets | service RSS before | with sockets open | per socket | after idling | redis-server RSS Δ per socket | generator RSS per socket |",
        "|---|---|---|---|---|---|---|",
        f"| {opened:,} | {result['rss_before'] / 2**20:.1f} MiB | {result['rss_after'] / 2**20:.1f} MiB | "
        f"**{_kib(per_socket)}** | {result['rss_end'] / 2**20:.1f} MiB | {_kib(result['redis_rss_delta'] / max(opened, 1))} | "
        f"{_kib(result['generator_rss'] / max(opened, 1))} |",
        "",
        f"CPU while idle ({cpu['wall']:.1f} s):",
        "",
        *cpu_table(cpu),
        "",
        f"Target: {args.sockets:,} sockets in one process at under {RSS_TARGET_KB:.0f} KB RSS per socket: "
        f"{verdict(clean and per_socket / 1000 < RSS_TARGET_KB)} ({per_socket / 1000:.1f} KB = {_kib(per_socket)}).",
    ]
    if errors:
        lines += ["", f"Socket errors: {len(errors)} (first 5): " + "; ".join(f"`{e}`" for e in errors[:5])]
    if result.get("py_spy_error"):
        lines += ["", result["py_spy_error"]]
    history = [git_revision(), args.label, f"{opened:,}", f"{per_socket / 1024:.1f}",
               f"{cpu['server']:.2f} ({cpu['server'] / cpu['wall']:.1%})"]
    return "\n".join(lines), history, clean


LOAD_NOTES = """### Where the time goes (notes written by hand, kept across re-runs)

(none yet)
"""

IDLE_NOTES = """### Notes (written by hand, kept across re-runs)

(none yet)
"""


# -- main ----------------------------------------------------------------------------------

async def run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    needed = args.sockets + 1024
    limit = raise_open_files_limit(needed)
    if limit < needed:
        print(f"warning: RLIMIT_NOFILE is {limit} (hard limit), below the {needed} that {args.sockets:,} "
              "sockets want; some may fail to open", file=sys.stderr)
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="chirp-live-load-") as logs:
        machine_line = machine_of(redis_server.url)
        service = Service(redis_server.url, args.server_workers, Path(logs), args.server_env)
        print(f"redis-server on port {redis_server.port}; service: {' '.join(service.command()[1:])}", flush=True)
        try:
            await service.start()
            runner = idle_run if args.idle else load_run
            result = await runner(args, service, redis_server.process.pid)
        except BenchError as exc:
            print(f"\nFAILED: {exc}", file=sys.stderr)
            if service.process is not None:
                print(f"service log (tail):\n{service.log_tail()}", file=sys.stderr)
            return 1
        finally:
            service.stop()
    body, history, clean = (idle_report if args.idle else load_report)(args, result)
    print("\n" + body + "\n", flush=True)
    if not args.no_write:
        if args.idle:
            write_section(IDLE_SECTION, f"Idle sockets: memory and CPU of {args.sockets:,} sockets on one process",
                          command=command_line("bench.live_load", argv), machine_line=machine_line, body=body,
                          history_header=["revision", "label", "sockets", "KiB/socket", "service CPU s (idle)"],
                          history_row=history, notes=IDLE_NOTES)
        else:
            write_section(LOAD_SECTION, "Live load: posts over HTTP, deliveries over WebSockets",
                          command=command_line("bench.live_load", argv), machine_line=machine_line, body=body,
                          history_header=["revision", "label", "N/K/R/D", "missing/dup", "p50/p99/max ms",
                                          "deliveries/s", "service CPU s", "KiB/socket"],
                          history_row=history, notes=LOAD_NOTES)
        print(f"Wrote the {IDLE_SECTION if args.idle else LOAD_SECTION} section of BENCHMARKS.md", flush=True)
    if not clean:
        print("FAILED: deliveries missing, duplicated or unexpected, or errors (see above)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args, argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
