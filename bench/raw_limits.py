"""The two raw limits of this machine, so that every other figure reads as a fraction of
what is possible:

1. Redis PUBLISH messages/s through one redis-py asyncio subscriber (a ``PubSub`` read in
   a loop of ``get_message(timeout=None)``, as ``realtime.live_hub`` reads it), for a
   ~450-byte tweet frame, and for the planned "one message per tweet per process" format
   (~100 recipients' names, a newline, the frame);
2. frames/s a bare uvicorn WebSocket endpoint (``bench.bare_ws_app``) pushes to N
   clients, for each of uvicorn's WebSocket implementations.

    python -m bench.raw_limits [--quick] [--no-write]

Every process of the load runs on its own (``spawn``) and its CPU (utime+stime from
/proc) is reported beside the figure: a generator above SATURATED of a core is named,
and its figure is then a lower bound. Exit status 1 when a process failed or a message
or frame went missing; never because of a time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from launcher.embedded_redis import free_port, stop_child
from realtime import live_protocol

from .common import (ROOT, finish_cli, run_in_child, cpu_seconds, machine, machine_busy_seconds, private_redis, process_tree,
                     raise_open_files_limit)

__all__ = ["measure", "tweet_frame", "recipients_message", "publish_limit", "push_limit", "IMPLEMENTATIONS",
           "available_implementations", "main"]

NAME = "raw_limits"
TITLE = "Raw limits: Redis PUBLISH through one asyncio subscriber, bare uvicorn WebSocket push"
SATURATED = 0.85  # share of one core above which a process is called saturated
NOISY = 0.15  # cores used by processes not ours above which the machine is not quiet
SPAWN = multiprocessing.get_context("spawn")
CHANNEL = "live:{bench}"
STOP = "stop"  # the last message published: the subscriber reports when it reads it
BATCH = 500  # PUBLISH commands per pipeline
WINDOW = 20 * BATCH  # messages the publisher may be ahead of the subscriber (see publisher_process)
RECIPIENTS = 100
#: uvicorn's WebSocket implementations, each measured; "websockets-sansio" is newer than
#: the others (uvicorn 0.35), so ``available_implementations`` leaves it out where it is missing.
IMPLEMENTATIONS = ("websockets", "websockets-sansio", "wsproto")
_MODULES = {"websockets": "websockets_impl", "websockets-sansio": "websockets_sansio_impl", "wsproto": "wsproto_impl"}

FULL = dict(publish_seconds=5.0, clients=2000, rounds=200)
#: The implementation the service runs (WS_IMPL's default): also measured round robin.
ROUND_ROBIN_IMPL = "websockets-sansio"
QUICK = dict(publish_seconds=1.5, clients=200, rounds=250)
#: One client process reading 450-byte frames saturates a core before uvicorn does; two
#: keep the generator below the server on 2 cores.
CLIENT_PROCS = 2


# -- what is sent --------------------------------------------------------------------

def tweet_frame() -> str:
    """A live tweet frame as the service sends it (``realtime.live_protocol.tweet_frame``), ~450 bytes."""
    tweet = {"id": "7234567890123456", "from": "Ada Lovelace", "timestamp": 1717171717.123456,
             "content": ("Benchmarks measure what is possible before what we built: one redis-py subscriber "
                         "and one bare uvicorn endpoint set the ceiling for the live timeline, so that each "
                         "figure we report reads as a share of the possible. #bench @grace #python #redis"),
             "likes": 12, "retweets": 3, "mentions": ["Grace Hopper"], "hashtags": ["#bench", "#python", "#redis"]}
    return live_protocol.tweet_frame(tweet)


def recipients_message(frame: str, count: int = RECIPIENTS) -> str:
    """The planned per-process message: the local recipients' names, a newline, the frame."""
    return live_protocol.addressed((f"follower{i:05d}" for i in range(count)), frame)


# -- child process: the subscriber ------------------------------------------------------

def subscriber_process(url: str, received, conn) -> None:
    """Child: subscribe, say "ready", count messages until STOP, send the counts."""
    run_in_child(_subscribe(url, received, conn))


async def _subscribe(url: str, received, conn) -> None:
    from realtime.redis_client import make_redis

    client = make_redis(url, blocking=True, retries=0)  # the live hub's own pub/sub client
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    messages = deliveries = 0
    first_at = last_at = 0.0
    ready = False
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
        if message is None:
            continue
        if message["type"] == "subscribe" and not ready:
            ready = True
            conn.send("ready")
        elif message["type"] == "message":
            data = message["data"]
            if data == STOP:
                break
            last_at = time.monotonic()
            first_at = first_at or last_at
            messages += 1
            # The hub would look each name up: splitting them is part of the cost.
            deliveries += len(live_protocol.unaddress(data)[0]) if "\n" in data else 1
            if not messages & 255:
                received.value = messages  # shared memory, for the publisher's window
    await pubsub.aclose()
    await client.aclose()
    conn.send({"messages": messages, "deliveries": deliveries, "first_at": first_at, "last_at": last_at})


# -- child process: the publisher -------------------------------------------------------

def publisher_process(port: int, message: str, seconds: float, received, conn) -> None:
    """Child: on "go", PUBLISH ``message`` in pipelines of BATCH for ``seconds``, then STOP.

    It never runs more than WINDOW messages ahead of the subscriber: a backlog would only
    grow in redis-server's memory, and a publisher spinning on it would take CPU the
    subscriber and redis-server need on a 2-core machine."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    conn.recv()  # "go"
    published, waits = 0, 0
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        if published - received.value > WINDOW:
            waits += 1
            time.sleep(0.0005)  # polling shared memory written by another process
            continue
        pipe = client.pipeline(transaction=False)
        for _ in range(BATCH):
            pipe.publish(CHANNEL, message)
        pipe.execute()
        published += BATCH
    ended = time.monotonic()
    client.publish(CHANNEL, STOP)
    client.close()
    conn.send({"published": published, "started": started, "seconds": ended - started, "waits": waits})


async def publish_limit(url: str, port: int, redis_pid: int, message: str, seconds: float) -> dict:
    """Messages/s one asyncio subscriber reads while a publisher process pipelines PUBLISH."""
    received = SPAWN.Value("q", 0, lock=False)
    sub_conn, sub_theirs = SPAWN.Pipe()
    pub_conn, pub_theirs = SPAWN.Pipe()
    subscriber = SPAWN.Process(target=subscriber_process, args=(url, received, sub_theirs), daemon=True,
                               name="raw-limits-subscriber")
    publisher = SPAWN.Process(target=publisher_process, args=(port, message, seconds, received, pub_theirs),
                              daemon=True, name="raw-limits-publisher")
    try:
        subscriber.start()
        publisher.start()
        await _answer(sub_conn, 30, "subscriber", subscriber)  # "ready": subscribed
        pids = {"subscriber": [subscriber.pid], "publisher": [publisher.pid], "redis-server": [redis_pid]}
        before = _cpu(pids)
        pub_conn.send("go")
        published = await _answer(pub_conn, seconds + 30, "publisher", publisher)
        read = await _answer(sub_conn, 60, "subscriber", subscriber)
        cpu = _shares(before, _cpu(pids))
    finally:
        for process in (publisher, subscriber):
            _join(process)
    wall = max(read["last_at"] - published["started"], 1e-9)
    return {"message_bytes": len(message.encode()), "published": published["published"],
            "published_per_s": published["published"] / published["seconds"], "waits": published["waits"],
            "received": read["messages"], "deliveries": read["deliveries"], "seconds": wall,
            "received_per_s": read["messages"] / wall, "deliveries_per_s": read["deliveries"] / wall, "cpu": cpu}


# -- child process: the WebSocket clients -----------------------------------------------

def clients_process(url: str, count: int, conn) -> None:
    """Child: open ``count`` sockets, count frames; on ("expect", M) report once each has M."""
    run_in_child(_clients(url, count, conn))


async def _clients(url: str, count: int, conn) -> None:
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    counts = [0] * count
    state = {"last_at": 0.0}
    gate = asyncio.Semaphore(100)
    errors: list[str] = []

    async def read(index: int, ws) -> None:
        try:
            while True:
                await ws.recv(decode=False)  # bytes: no UTF-8 decoding, the least a client can do
                counts[index] += 1
                state["last_at"] = time.monotonic()
        except Exception:  # closed: the count says whether anything was missing
            pass

    async def open_one(index: int):
        async with gate:
            try:
                # No compression, no pings, no proxy, no queue limit: only frames, as fast as they come.
                ws = await connect(url, compression=None, ping_interval=None, proxy=None, open_timeout=30,
                                   close_timeout=2, max_queue=None)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return None
        asyncio.create_task(read(index, ws))
        return ws

    sockets = [ws for ws in await asyncio.gather(*(open_one(i) for i in range(count))) if ws is not None]
    conn.send({"opened": len(sockets), "errors": errors[:5]})
    command = await loop.run_in_executor(None, conn.recv)  # ("expect", M, seconds), or "close" on a failure
    if command == "close":
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return
    _, rounds, timeout = command
    deadline = time.monotonic() + timeout
    while sum(counts) < len(sockets) * rounds and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    conn.send({"received": sum(counts), "last_at": state["last_at"],
               "short": sum(1 for n in counts if n < rounds), "extra": sum(1 for n in counts if n > rounds)})
    await loop.run_in_executor(None, conn.recv)  # "close"
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    conn.send("closed")


# -- the bare uvicorn server ---------------------------------------------------------------

class BareServer:
    """``uvicorn bench.bare_ws_app:app`` in its own process, with one WebSocket implementation."""

    def __init__(self, impl: str, log_path: Path) -> None:
        self.impl, self.port, self.log_path = impl, free_port(), log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "uvicorn", "bench.bare_ws_app:app", "--host", "127.0.0.1",
                   "--port", str(self.port), "--ws", self.impl, "--loop", "uvloop", "--http", "httptools",
                   "--lifespan", "off", "--ws-per-message-deflate", "false", "--backlog", "4096",
                   "--log-level", "warning", "--no-access-log"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    async def call(self, client, method: str, path: str, **kwargs) -> dict:
        answer = await client.request(method, f"http://127.0.0.1:{self.port}{path}", **kwargs)
        answer.raise_for_status()
        return answer.json()

    async def wait_ready(self, client, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn --ws {self.impl} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                await self.call(client, "GET", "/count")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn --ws {self.impl} did not answer within {timeout:.0f}s")
                await asyncio.sleep(0.05)

    def log_tail(self) -> str:
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines()
                 if "DeprecationWarning" not in line and "warnings.warn" not in line]
        return " | ".join(lines[-3:])[:300]

    def stop(self) -> None:
        stop_child(self.process)


async def push_limit(impl: str, clients: int, rounds: int, log_dir: Path, client_procs: int = CLIENT_PROCS,
                     order: str = "socket") -> dict:
    """Frames/s one uvicorn process pushes: ``clients`` sockets, ``rounds`` frames to each,
    each socket's frames back to back (``order="socket"``) or round after round (``"round"``)."""
    import httpx

    frame = tweet_frame()
    server = BareServer(impl, log_dir / f"uvicorn-{impl}.log")
    children = []
    async with httpx.AsyncClient(trust_env=False, timeout=120) as http:
        try:
            server.start()
            await server.wait_ready(http)
            for index in range(client_procs):
                conn, theirs = SPAWN.Pipe()
                share = clients // client_procs + (index < clients % client_procs)
                process = SPAWN.Process(target=clients_process, args=(f"ws://127.0.0.1:{server.port}/", share, theirs),
                                        daemon=True, name=f"raw-limits-clients-{index}")
                process.start()
                children.append((process, conn))
            opened = [await _answer(conn, 120, "client process", process) for process, conn in children]
            errors = [error for answer in opened for error in answer["errors"]]
            open_count = sum(answer["opened"] for answer in opened)
            await _wait_sockets(server, http, open_count)
            pids = {"server": [server.process.pid]}
            pids.update({f"client-{i}": [process.pid] for i, (process, _) in enumerate(children)})
            for _, conn in children:
                conn.send(("expect", rounds, 60.0))
            before = _cpu(pids)
            started = time.monotonic()
            burst = await server.call(http, "POST", f"/burst?frames={rounds}&order={order}", content=frame.encode())
            reports = [await _answer(conn, 90, "client process", process) for process, conn in children]
            cpu = _shares(before, _cpu(pids))
        finally:
            for process, conn in children:
                if process.is_alive():
                    conn.send("close")
                _join(process)
            server.stop()
    received = sum(report["received"] for report in reports)
    wall = max(max(report["last_at"] for report in reports) - started, 1e-9)
    return {"impl": impl, "order": order, "clients": clients, "opened": open_count, "rounds": rounds,
            "expected": open_count * rounds,
            "received": received, "short": sum(r["short"] for r in reports), "extra": sum(r["extra"] for r in reports),
            "failed_sends": burst["failed"], "server_seconds": burst["seconds"], "seconds": wall,
            "frames_per_s": received / wall, "cpu": _with_client_totals(cpu), "errors": errors,
            "client_procs": client_procs}


async def _wait_sockets(server: BareServer, http, count: int, timeout: float = 20.0) -> None:
    """Until the app holds every socket the clients opened (it adds one after its accept)."""
    deadline = time.monotonic() + timeout
    while (await server.call(http, "GET", "/count"))["sockets"] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the app holds fewer than the {count} sockets opened after {timeout:.0f}s")
        await asyncio.sleep(0.05)


# -- helpers -----------------------------------------------------------------------------

async def _answer(conn, timeout: float, who: str, process=None):
    """The next message from a child, waited for without blocking the loop, within ``timeout``
    (and no longer than ``process`` lives)."""
    deadline = time.monotonic() + timeout
    while not conn.poll():
        if process is not None and not process.is_alive() and not conn.poll():
            raise RuntimeError(f"the {who} exited with {process.exitcode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {who} sent nothing for {timeout:.0f}s")
        await asyncio.sleep(0.01)
    return conn.recv()


def _join(process) -> None:
    if process.pid is None:  # never started
        return
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join()


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    marks = {name: cpu_seconds([p for pid in group for p in process_tree(pid)]) for name, group in pids.items()}
    marks["machine"] = machine_busy_seconds()
    marks["at"] = time.monotonic()
    return marks


def _with_client_totals(cpu: dict[str, float]) -> dict[str, float]:
    """``cpu`` with "clients" (their sum) and "busiest_client" (the one to call saturated or not)."""
    clients = [share for name, share in cpu.items() if name.startswith("client-")]
    return {**cpu, "clients": sum(clients), "busiest_client": max(clients, default=0.0)}


def _shares(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Share of one core each process group used between two marks, and "others": every
    other process on the machine (this one included), to tell a quiet machine from a busy one."""
    wall = max(after["at"] - before["at"], 1e-9)
    shares = {name: (after[name] - before[name]) / wall for name in before if name not in ("at", "machine")}
    shares["others"] = max(0.0, (after["machine"] - before["machine"]) / wall - sum(shares.values()))
    return shares


# -- the measurement ------------------------------------------------------------------------

async def measure(quick: bool = False) -> dict:
    """Both limits, as a section for BENCHMARKS.md and figures for an orchestrator. Never
    raises for a timing: a failed process or a missing message is named in ``problems``."""
    sizes = QUICK if quick else FULL
    raise_open_files_limit(4 * sizes["clients"] + 256)
    problems: list[str] = []
    info: dict = {}
    try:
        publish = await _measure_publish(sizes["publish_seconds"], problems, info)
    except (Exception, SystemExit) as exc:  # no redis-server at all: private_redis exits
        problems.append(f"PUBLISH: {type(exc).__name__}: {exc}")
        publish = {}
    push = await _measure_push(sizes["clients"], sizes["rounds"], problems)
    return _result(quick, publish, push, problems, machine(info))


async def _measure_publish(seconds: float, problems: list[str], info: dict) -> dict[str, dict]:
    """Both message formats against one private redis-server; fills ``info`` with its INFO server."""
    frame = tweet_frame()
    publish: dict[str, dict] = {}
    with private_redis() as redis_server:
        import redis

        with redis.Redis(host="127.0.0.1", port=redis_server.port) as client:
            info.update(client.info("server"))
            # Never drop the subscriber for its backlog: a lost connection is not a limit.
            client.config_set("client-output-buffer-limit", "pubsub 0 0 0")
        for variant, message in (("frame", frame), ("recipients", recipients_message(frame))):
            try:
                result = await publish_limit(redis_server.url, redis_server.port, redis_server.process.pid,
                                             message, seconds)
            except Exception as exc:
                problems.append(f"PUBLISH ({variant}): {type(exc).__name__}: {exc}")
                continue
            publish[variant] = result
            if result["received"] != result["published"]:
                problems.append(f"PUBLISH ({variant}): published {result['published']:,}, "
                                f"the subscriber read {result['received']:,}")
            print(f"PUBLISH {variant} ({result['message_bytes']} B): {result['received']:,} messages read in "
                  f"{result['seconds']:.2f}s = {result['received_per_s']:,.0f}/s "
                  f"({result['deliveries_per_s']:,.0f} deliveries/s)", flush=True)
    return publish


def uvicorn_version() -> str:
    import uvicorn

    return uvicorn.__version__


def available_implementations() -> list[str]:
    """The IMPLEMENTATIONS this uvicorn ships."""
    return [impl for impl in IMPLEMENTATIONS
            if importlib.util.find_spec(f"uvicorn.protocols.websockets.{_MODULES[impl]}") is not None]


async def _measure_push(clients: int, rounds: int, problems: list[str]) -> dict[str, dict]:
    """Each uvicorn WebSocket implementation in turn, in a fresh uvicorn process."""
    push: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="chirp-raw-limits-") as log_dir:
        for impl in available_implementations():
            try:
                result = await push_limit(impl, clients, rounds, Path(log_dir))
            except Exception as exc:
                problems.append(f"uvicorn --ws {impl}: {type(exc).__name__}: {exc}")
                continue
            push[impl] = result
            problems += _push_problems(result)
            _print_push(impl, result)
        # The live shape: one frame to each socket in turn, with the implementation the service runs.
        impl = ROUND_ROBIN_IMPL
        if impl in push:
            try:
                result = await push_limit(impl, clients, rounds, Path(log_dir), order="round")
            except Exception as exc:
                problems.append(f"uvicorn --ws {impl}, round robin: {type(exc).__name__}: {exc}")
            else:
                push[f"{impl}, round robin"] = result
                problems += _push_problems(result)
                _print_push(f"{impl}, round robin", result)
    return push


def _print_push(label: str, result: dict) -> None:
    print(f"uvicorn --ws {label}: {result['received']:,}/{result['expected']:,} frames to "
          f"{result['opened']:,} sockets in {result['seconds']:.2f}s = {result['frames_per_s']:,.0f}/s "
          f"(server {result['cpu']['server']:.0%} of a core, busiest client process "
          f"{result['cpu']['busiest_client']:.0%})", flush=True)


def _push_problems(result: dict) -> list[str]:
    name = f"uvicorn --ws {result['impl']}"
    problems = [f"{name}: {error}" for error in result["errors"]]
    if result["opened"] != result["clients"]:
        problems.append(f"{name}: {result['opened']:,} of {result['clients']:,} sockets opened")
    if result["received"] != result["expected"] or result["short"] or result["extra"]:
        problems.append(f"{name}: {result['received']:,} frames received of {result['expected']:,} "
                        f"({result['short']} sockets short, {result['extra']} over)")
    if result["failed_sends"]:
        problems.append(f"{name}: {result['failed_sends']} sockets failed a send")
    return problems


def _result(quick: bool, publish: dict, push: dict, problems: list[str], machine_line: str) -> dict:
    # Judged per server CPU-second: on shared cores the wall-clock rates of the three swap
    # places from run to run, while what each does with the CPU it gets stays put.
    back_to_back = [impl for impl in push if push[impl]["order"] == "socket"]
    best = max(back_to_back, key=lambda impl: push[impl]["frames_per_s"] / max(push[impl]["cpu"]["server"], 1e-9),
               default="")
    round_robin = next((r for r in push.values() if r["order"] == "round"), None)
    return {
        "name": NAME, "title": TITLE,
        "command": "python -m bench.raw_limits" + (" --quick" if quick else ""),
        "body": report(publish, push, best, quick),
        "figures": {
            "publish_msgs_per_s": publish.get("frame", {}).get("received_per_s", 0.0),
            "publish_batched_deliveries_per_s": publish.get("recipients", {}).get("deliveries_per_s", 0.0),
            "uvicorn_push_frames_per_s": {impl: result["frames_per_s"] for impl, result in push.items()},
            "uvicorn_push_best_impl": best,
            "uvicorn_push_best_frames_per_s": push[best]["frames_per_s"] if best else 0.0,
            # The names bench.report reads for the summary's "share of the raw limits" rows.
            "push_limit_deliveries_per_s": push[best]["frames_per_s"] if best else 0.0,
            "push_round_robin_frames_per_s": round_robin["frames_per_s"] if round_robin else 0.0,
            "publish_limit_msgs_per_s": publish.get("frame", {}).get("received_per_s", 0.0),
        },
        "problems": problems,
        "machine": machine_line,
    }


# -- the report ------------------------------------------------------------------------------

def _share(value: float) -> str:
    mark = " (saturated)" if value > SATURATED else ""
    return f"{value:.0%}{mark}"


def _per_cpu_second(rate: float, share: float) -> str:
    """What the process did per second of CPU it had: a figure that other work on a shared
    machine lowers less than the rate (cache and scheduling still cost something)."""
    return f"{rate / share:,.0f}" if share > 0.05 else "?"


def report(publish: dict, push: dict, best: str, quick: bool) -> str:
    sizes = QUICK if quick else FULL
    lines = [*_publish_table(publish), "", *_push_table(push, best, sizes), "", *_notes(publish, push)]
    return "\n".join(lines)


def _publish_table(publish: dict) -> list[str]:
    lines = ["### 1. Redis PUBLISH through one redis-py asyncio subscriber", "",
             "| message | bytes | published/s | read/s (the limit) | recipient-deliveries/s | subscriber CPU "
             "| read per subscriber CPU-second | publisher CPU | redis-server CPU | others |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    labels = {"frame": "tweet frame", "recipients": f"{RECIPIENTS} names + frame"}
    for variant, r in publish.items():
        lines.append(f"| {labels[variant]} | {r['message_bytes']} | {r['published_per_s']:,.0f} | "
                     f"**{r['received_per_s']:,.0f}** | {r['deliveries_per_s']:,.0f} | "
                     f"{_share(r['cpu']['subscriber'])} | "
                     f"{_per_cpu_second(r['received_per_s'], r['cpu']['subscriber'])} "
                     f"| {_share(r['cpu']['publisher'])} | {_share(r['cpu']['redis-server'])} | "
                     f"{r['cpu']['others']:.0%} |")
    return lines


def _push_table(push: dict, best: str, sizes: dict) -> list[str]:
    lines = [f"### 2. Bare uvicorn WebSocket push, {sizes['clients']:,} sockets × {sizes['rounds']} frames", "",
             f"| `--ws` | frames received | seconds | frames/s | server CPU | frames per server CPU-second "
             f"| client CPU (busiest of {CLIENT_PROCS}) | others |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for impl, r in push.items():
        per_cpu = _per_cpu_second(r["frames_per_s"], r["cpu"]["server"])
        per_cpu = f"**{per_cpu}**" if impl == best else per_cpu
        lines.append(f"| {impl} | {r['received']:,}/{r['expected']:,} | {r['seconds']:.2f} | "
                     f"{r['frames_per_s']:,.0f} | "
                     f"{_share(r['cpu']['server'])} | {per_cpu} | "
                     f"{_share(r['cpu']['busiest_client'])} | {r['cpu']['others']:.0%} |")
    verdict = (f"Fastest: `--ws {best}` (uvicorn {uvicorn_version()}), judged by frames per server CPU-second, "
               "which other work on the shared cores disturbs less than frames/s.")
    lines += ["", verdict if best else "No implementation completed."]
    missing = [impl for impl in IMPLEMENTATIONS if impl not in available_implementations()]
    if missing:
        lines.append(f"Not in this uvicorn ({uvicorn_version()}): {', '.join(missing)}.")
    return lines


def _notes(publish: dict, push: dict) -> list[str]:
    lines = [f"Method: subscriber, publisher (pipelines of {BATCH} PUBLISH, never more than {WINDOW:,} messages ahead "
             f"of the subscriber), redis-server, uvicorn and the WebSocket clients ({CLIENT_PROCS} processes, sockets "
             "split evenly) each run as a process of their own; CPU is utime+stime from /proc over the measured "
             "interval, as a share of one core; \"others\" is every other process on the machine (this script's "
             "main process included), on 2 cores shared with other work.",
             "PUBLISH read/s = messages read / (first PUBLISH to last message read); the subscriber is the measured "
             "thing, so it should be near a full core. Push frames/s = frames received / (the POST /burst trigger to "
             "the last frame received). Per CPU-second: the rate divided by the measured process's CPU share.",
             f"The app (`bench/bare_ws_app.py`, raw ASGI, uvloop, httptools) writes one pre-encoded "
             f"{len(tweet_frame().encode())}-byte text frame per `send`, one task per socket; the clients "
             "(`websockets` asyncio, no compression) only count frames."]
    saturated = [f"the publisher ({variant})" for variant, r in publish.items() if r["cpu"]["publisher"] > SATURATED]
    saturated += [f"the clients (--ws {impl})" for impl, r in push.items() if r["cpu"]["busiest_client"] > SATURATED]
    if saturated:
        lines.append(f"Generator saturated: {', '.join(saturated)} used more than {SATURATED:.0%} of a core, so "
                     "those figures are lower bounds.")
    else:
        lines.append(f"No generator process was saturated (each stayed under {SATURATED:.0%} of a core).")
    busiest = max([r["cpu"]["others"] for r in (*publish.values(), *push.values())], default=0.0)
    if busiest > NOISY:
        lines.append(f"The machine was not quiet: other processes used up to {busiest:.2f} cores during a "
                     "measurement, so these limits are lower than an idle machine would give.")
    return lines


# -- command line ------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_limits", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run: {QUICK['publish_seconds']} s of PUBLISH, {QUICK['clients']} sockets")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return finish_cli(NAME, asyncio.run(measure(quick=args.quick)), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
