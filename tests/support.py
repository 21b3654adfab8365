"""What the tests share: real servers on free ports, bounded waits, unique names.

Every wait is bounded by ``TIMEOUT`` (scaled by CHIRP_TEST_TIME_SCALE on a slow
machine), so a broken build fails fast instead of hanging.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families


from launcher.embedded_redis import free_port, stop_child

ROOT = Path(__file__).resolve().parent.parent
TIME_SCALE = float(os.environ.get("CHIRP_TEST_TIME_SCALE", "1"))
TIMEOUT = 10.0 * TIME_SCALE
#: The TLS settings of every httpx client here (``verify=LOCAL_TLS``), made once: without it
#: httpx builds a context and loads the CA bundle into it per client, 33 ms of CPU each, which
#: a profile of the fast pass found to be the biggest single cost of the suite's own processes
#: (a /healthz poll is a client per call), though every server here speaks plain HTTP.
LOCAL_TLS = ssl.create_default_context()

_counter = itertools.count()
_run = secrets.token_hex(2)


def unique_name(prefix: str = "u") -> str:
    """A username no other test uses (tests share one Redis and never flush it mid-run)."""
    return f"{prefix[:4]}{_run}{next(_counter):06d}"[:15]


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(0.01)


async def eventually(predicate: Callable[[], object | Awaitable[object]], timeout: float = TIMEOUT,
                     what: str = "condition") -> object:
    """``wait_until`` for async tests: polls without blocking the event loop (the test's own
    WebSocket clients keep reading meanwhile); ``predicate`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(0.01)


class Backend:
    """The Redis the service under test uses: one server, or a cluster (``cluster`` set)."""

    def __init__(self, url: str, cluster=None) -> None:
        self.url = url
        self.cluster = cluster  # tests.redis_cluster.RedisCluster, to kill or move things
        self.name = "cluster" if cluster is not None else "redis"

    @property
    def is_cluster(self) -> bool:
        return self.cluster is not None

    def client(self):
        """A sync client that routes by slot where it must."""
        import redis
        from redis.cluster import RedisCluster

        kind = RedisCluster if self.is_cluster else redis.Redis
        return kind.from_url(self.url, decode_responses=True)

    async def async_client(self):
        from realtime.redis_client import open_redis

        return await open_redis(self.url, cluster=self.is_cluster)

    def __repr__(self) -> str:
        return f"<{self.name} at {self.url}>"


PORT_TRIES = 3


class _PortTaken(Exception):
    """Another process listens on the port a server of ours was to bind."""


def listens_on(pid: int, port: int) -> bool:
    """Whether ``pid``, or a process descended from it, holds the socket listening on
    127.0.0.1:``port`` (/proc: this suite runs on Linux)."""
    from bench.common import process_tree

    listening = {f"socket:[{fields[9]}]" for fields in
                 (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
                 if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port}
    for owner in process_tree(pid):
        try:
            if any(os.readlink(fd) in listening for fd in Path(f"/proc/{owner}/fd").iterdir()):
                return True
        except OSError:  # it exited meanwhile
            continue
    return False


class _ChildServer:
    """A server of ours (``python run.py ...``) in a child process on a free port, started on
    another free port when another process took this one between our pick and its bind."""

    what = "the service"
    log_name = "service"

    def __init__(self, env: dict[str, str], log_dir: Path | None = None) -> None:
        self.env = env
        self.process: subprocess.Popen | None = None
        self._log_dir = log_dir
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self._log_dir / f"{self.log_name}-{self.port}.log" if self._log_dir else None

    def command(self) -> list[str]:
        raise NotImplementedError

    def _start(self, **popen) -> None:
        for attempt in range(1, PORT_TRIES + 1):
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen([sys.executable, *self.command()], cwd=ROOT, env=self.env,
                                                stdout=log, stderr=subprocess.STDOUT, **popen)
            try:
                wait_until(self._ready, what=f"{self.what} on port {self.port} to answer /healthz")
                return
            except _PortTaken:
                stop_child(self.process, TIMEOUT)
                if attempt == PORT_TRIES:
                    raise AssertionError(f"{PORT_TRIES} free ports in turn were taken before {self.what} bound them")
                self.port = free_port()

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            if any(words in self.log() for words in ("address already in use", "is in use (another Chirp")):
                raise _PortTaken()
            raise AssertionError(f"{self.what} exited with {self.process.returncode}:\n{self.log()}")
        try:
            answered = httpx.get(self.url + "/healthz", timeout=1, verify=LOCAL_TLS).status_code == 200
        except httpx.HTTPError:
            return False
        if answered and not listens_on(self.process.pid, self.port):
            raise _PortTaken()  # another process answers there: ours cannot bind it
        return answered

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        """SIGTERM, as a process manager would; SIGKILL only if it does not stop in time."""
        stop_child(self.process, TIMEOUT)


class ServiceProcess(_ChildServer):
    """``python run.py`` (the service as deployed: its uvicorn options, its HTTP limits) in a
    child process on a free port."""

    def __init__(self, redis_url: str, **settings: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_CLIENT_ID",)}
        # Abuse limits off, as for a benchmark: tests sign in, post and open sockets far faster
        # and more than people do; tests/test_rate_limits.py turns them on.
        env.update({"REDIS_URL": redis_url, "DEV_SIGNIN": "on", "LOG_LEVEL": "warning",
                    "FANOUT_CLAIM_IDLE": "2s", "LIVE_AUTH_TIMEOUT": "1s", "RATE_LIMITS": "off",
                    "MAX_SOCKETS_PER_USER": "0", "MAX_UNAUTHENTICATED_SOCKETS": "100000"})
        env.update({key.upper(): str(value) for key, value in settings.items()})
        super().__init__(env)

    def command(self) -> list[str]:
        return ["run.py", "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self, log_dir: Path) -> ServiceProcess:
        self._log_dir = log_dir
        self._start()
        return self


class Api:
    """A thin client of the public API, as any client would speak it. Sync, for sync tests;
    async tests use ``await api.aio_sign_in()`` and ``user.aio``, which never block the loop."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=TIMEOUT, verify=LOCAL_TLS)
        self._async_http: httpx.AsyncClient | None = None

    @property
    def async_http(self) -> httpx.AsyncClient:
        if self._async_http is None:  # made in the test's loop (the session's), and kept for it
            self._async_http = httpx.AsyncClient(base_url=self.http.base_url, timeout=TIMEOUT, verify=LOCAL_TLS)
        return self._async_http

    async def aclose(self) -> None:
        self.http.close()
        if self._async_http is not None:
            await self._async_http.aclose()

    def sign_in(self, username: str | None = None) -> User:
        return self._user(self.http.post("/auth/dev", json={"username": username or unique_name()}))

    async def aio_sign_in(self, username: str | None = None) -> User:
        return self._user(await self.async_http.post("/auth/dev", json={"username": username or unique_name()}))

    def _user(self, answer: httpx.Response) -> User:
        assert answer.status_code == 200, answer.text
        return User(self, answer.json()["username"], answer.json()["token"])


class User:
    def __init__(self, api: Api, username: str, token: str) -> None:
        self.api = api
        self.username = username
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.api.http.request(method, path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post_tweet(self, content: str) -> str:
        return _posted_id(self.request("POST", "/tweets", json={"content": content}))

    def follow(self, other: User | str) -> None:
        _assert_no_content(self.request("PUT", _follow_path(other)))

    def home(self, **params) -> dict:
        answer = self.get("/timelines/home", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def home_ids(self) -> list[str]:
        return [t.get("retweet_id") or t["id"] for t in self.home(count=100)["tweets"]]

    @property
    def aio(self) -> AsyncUser:
        return AsyncUser(self)


class AsyncUser:
    """``User``'s calls for async tests: the same answers, checked the same way."""

    def __init__(self, user: User) -> None:
        self.user = user

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {**self.user.headers, **kwargs.pop("headers", {})}
        return await self.user.api.async_http.request(method, path, headers=headers, **kwargs)

    async def post_tweet(self, content: str) -> str:
        return _posted_id(await self.request("POST", "/tweets", json={"content": content}))

    async def follow(self, other: User | str) -> None:
        _assert_no_content(await self.request("PUT", _follow_path(other)))

    async def unfollow(self, other: User | str) -> None:
        _assert_no_content(await self.request("DELETE", _follow_path(other)))

    async def delete_tweet(self, tweet_id: str) -> None:
        _assert_no_content(await self.request("DELETE", f"/tweets/{tweet_id}"))

    async def home_ids(self, **params) -> list[str]:
        answer = await self.request("GET", "/timelines/home", params={"count": 100, **params})
        assert answer.status_code == 200, answer.text
        return [t.get("retweet_id") or t["id"] for t in answer.json()["tweets"]]


def _posted_id(answer: httpx.Response) -> str:
    """The id of the tweet a POST /tweets made: 201, no body, its address in Location."""
    assert answer.status_code == 201, answer.text
    assert answer.content == b""
    return answer.headers["location"].rsplit("/", 1)[1]


def _follow_path(other: User | str) -> str:
    return f"/users/{other.username if isinstance(other, User) else other}/follow"


def _assert_no_content(answer: httpx.Response) -> None:
    assert answer.status_code == 204, answer.text


class LiveClient:
    """A real ``websockets`` client speaking the /ws protocol. Notification frames are kept
    apart, in ``notifications`` (their own stream, read with ``next_notification``), so that
    a test of tweets reads tweets whoever follows or mentions its users."""

    def __init__(self, base_url: str, token: str | None, since: str | None = None, **connect_options) -> None:
        self.url = base_url.replace("http://", "ws://") + "/ws"
        self.token = token
        self.since = since
        self.options = connect_options
        self.socket = None
        self.replayed: list[dict] = []
        self.ready: dict | None = None
        self.notifications: list[dict] = []  # every one received, replayed or live, oldest first
        self._notifications_read = 0
        self._others: list[dict] = []  # frames read while looking for a notification

    async def __aenter__(self) -> LiveClient:
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.socket.close()

    async def connect(self, auth: bool = True) -> LiveClient:
        import websockets

        self.socket = await websockets.connect(self.url, open_timeout=TIMEOUT, **self.options)
        if auth:
            await self.send({"type": "auth", "token": self.token, "since": self.since})
            while True:
                frame = await self.next_frame()
                if frame["type"] == "ready":
                    self.ready = frame
                    break
                self.replayed.append(frame)
        return self

    async def send(self, data: dict) -> None:
        import orjson

        await self.socket.send(orjson.dumps(data).decode())

    async def next_frame(self, timeout: float = TIMEOUT) -> dict:
        """The next frame that is not a notification."""
        if self._others:
            return self._others.pop(0)
        return await self._read_until(lambda frame: frame.get("type") != "notification", timeout)

    async def next_notification(self, timeout: float = TIMEOUT) -> dict:
        """The next notification not yet returned (other frames meanwhile wait for ``next_frame``)."""
        if self._notifications_read == len(self.notifications):
            await self._read_until(lambda frame: frame.get("type") == "notification", timeout)
        self._notifications_read += 1
        return self.notifications[self._notifications_read - 1]

    async def _read_until(self, wanted: Callable[[dict], bool], timeout: float) -> dict:
        import asyncio

        import orjson

        async def read() -> dict:
            while True:
                frame = orjson.loads(await self.socket.recv())
                if frame.get("type") == "notification":
                    self.notifications.append(frame["notification"])
                if wanted(frame):
                    return frame
                if frame.get("type") != "notification":
                    self._others.append(frame)

        return await asyncio.wait_for(read(), timeout)

    async def next_tweet_id(self, timeout: float = TIMEOUT) -> str:
        frame = await self.next_frame(timeout)
        assert frame["type"] == "tweet", frame
        return frame["tweet"].get("retweet_id") or frame["tweet"]["id"]

    async def close_code(self, timeout: float = TIMEOUT) -> int:
        """Read until the server closes; answer its close code."""
        import asyncio

        import websockets

        async def drain():
            try:
                while True:
                    await self.socket.recv()
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

        return await asyncio.wait_for(drain(), timeout)


class RunPy(_ChildServer):
    """``python run.py ARGS`` as a person starts it, in a child process on a free port."""

    what = "run.py"
    log_name = "run"

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        super().__init__({**{k: v for k, v in os.environ.items()
                             if k not in ("REDIS_URL", "DEV_SIGNIN", "GOOGLE_CLIENT_ID", "PORT", "WEB_CONCURRENCY",
                                          "PROMETHEUS_MULTIPROC_DIR")}, **(env or {})}, log_dir=tmp_path)

    def command(self) -> list[str]:
        return ["run.py", "--port", str(self.port), *self.args]

    def start(self, **popen) -> RunPy:
        """Start it; ``popen`` goes to subprocess.Popen (``start_new_session=True``: a process
        group of its own, as a shell's job)."""
        self._start(**popen)
        return self


def metric(url: str, sample: str, **labels: str) -> float:
    """The value of one sample (e.g. ``chirp_slow_client_closes_total``) in ``url``'s /metrics."""
    return _sample(httpx.get(url + "/metrics", timeout=TIMEOUT, verify=LOCAL_TLS).text, sample, labels)


async def async_metric(url: str, sample: str, **labels: str) -> float:
    """``metric`` for async tests."""
    async with httpx.AsyncClient(timeout=TIMEOUT, verify=LOCAL_TLS) as http:
        return _sample((await http.get(url + "/metrics")).text, sample, labels)


def _sample(text: str, sample: str, labels: dict) -> float:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return 0.0


#: Requests in flight at once from one async client: httpx's pool slows down sharply with many
#: waiting (1,000 sign-ins over 50 connections took 8.5 s at once, 0.9 s eight at a time).
CONCURRENT_REQUESTS = 8


async def at_most(limit: int, calls: Iterable[Awaitable]) -> list:
    """``asyncio.gather`` of ``calls`` with at most ``limit`` running at once."""
    gate = asyncio.Semaphore(limit)

    async def gated(call: Awaitable):
        async with gate:
            return await call

    return await asyncio.gather(*(gated(call) for call in calls))


async def post_tweets(user: User, content: str, count: int) -> list[str]:
    """``count`` tweets by ``user``, sent concurrently (at most CONCURRENT_REQUESTS at once); their ids."""
    return await at_most(CONCURRENT_REQUESTS, (user.aio.post_tweet(content) for _ in range(count)))
