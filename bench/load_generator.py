"""The live load generator that the live benchmarks share: users and their follows created over
the API, the service started as an operator would, sockets and posters in processes of their
own, and the measuring of CPU, latency and deliveries.

``bench.live_load`` runs it in its two shapes (load, idle); ``bench.steady_load``,
``bench.live_shapes``, ``bench.idle_sockets`` and ``bench.soak`` drive the same parts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .common import ROOT, Progress, cpu_seconds, machine_busy_seconds, process_tree, rss_bytes, run_in_child

SATURATED = 0.85  # share of one core above which a process is called saturated
NOISY = 0.15  # cores used by processes not ours above which the machine is not quiet
SPAWN = multiprocessing.get_context("spawn")


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


async def create_users(base_url: str, plan: Plan, concurrency: int, max_seconds: float) -> dict[str, str]:
    """Dev sign-in for every user (creating it); then every follow. Returns {user: token}."""
    import httpx

    tokens: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30, trust_env=False) as client:

        async def call(method: str, path: str, expected: int, **kwargs) -> httpx.Response:
            async with gate:
                answer = await request_again_if_dropped(client, method, path, **kwargs)
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


#: Tries of a setup request whose kept-alive connection the service closed as it was reused.
SETUP_TRIES = 3


async def request_again_if_dropped(client, method: str, path: str, **kwargs):
    """``client.request``, sent again on a fresh connection when the one it went out on was
    closed under it (a keep-alive connection the server timed out as the request left): only
    for the setup's requests, each of which may be sent twice (a sign-in, a follow)."""
    import httpx

    for attempt in range(1, SETUP_TRIES + 1):
        try:
            return await client.request(method, path, **kwargs)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            if attempt == SETUP_TRIES:
                raise BenchError(f"{method} {path}: the connection dropped {SETUP_TRIES} times ({exc!r})") from exc


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
                answers.append(await recv_from_child(conn, max_seconds))

        seconds = await _with_progress("sockets open (auth, ready)", self.total, self.opened, max_seconds, wait_all())
        errors = [error for answer in answers for error in answer["errors"]]
        return {"opened": sum(a["opened"] for a in answers), "seconds": seconds, "errors": errors}

    async def report(self, *, clear: bool = False) -> list:
        """Every socket's row; ``clear`` then forgets what they received (a stepped run's next step)."""
        rows = []
        for _, conn, *_ in self.children:
            conn.send("report-clear" if clear else "report")
            rows += await recv_from_child(conn, 120)
        return rows

    async def close(self) -> None:
        for process, conn, *_ in self.children:
            if process.is_alive():
                try:
                    conn.send("close")
                    await recv_from_child(conn, 30)
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
        if await recv_from_child(self.conn, 60) != "ready":
            raise BenchError("the poster process did not get ready")

    def go(self) -> None:
        self.conn.send("go")

    async def result(self, timeout: float) -> dict:
        return await recv_from_child(self.conn, timeout)

    def stop(self) -> None:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


async def recv_from_child(conn, timeout: float):
    """The next message from a child, waited for off the event loop, within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while not conn.poll():
        if time.monotonic() > deadline:
            raise BenchError(f"a generator process sent nothing for {timeout:.0f}s")
        await asyncio.sleep(0.02)
    return await loop.run_in_executor(None, conn.recv)


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


async def settle(service: Service, seconds: float = 2.0) -> int:
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


async def stats_connections(base_url: str) -> int | None:
    import httpx

    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5, trust_env=False) as client:
            # Presence beats once a second: the figure can lag by that much.
            await asyncio.sleep(1.2)
            return (await client.get("/stats")).json()["connections"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None


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
