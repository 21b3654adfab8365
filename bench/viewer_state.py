"""What a like costs with sockets watching the tweet, and what per-viewer state adds to a read.

    python -m bench.viewer_state [--quick] [--watchers 1000] [--likes 200] [--reads 1000] [--no-write]

One private redis-server and one service process (``python run.py``, rate limits off), real
HTTP and real WebSocket clients (this process):

- **Likes.** ``--likes`` users each like one tweet nobody watches, then one tweet that
  ``--watchers`` sockets watch (``{"type": "watch"}``, confirmed by a ping). Redis is
  measured over each phase (``CONFIG RESETSTAT``, then ``INFO commandstats`` and redis-server's
  CPU): commands and Redis µs per like. Every socket must end with the final counts (a problem
  otherwise), and the frames each socket got are counted: at most one a second per tweet.
- **Reads.** A reader follows 20 authors whose tweets fill the home timeline, and liked and
  retweeted some of them. ``GET /timelines/home?count=20`` (``--reads`` times, one at a time on
  one keep-alive connection) answers ``display_name`` and the reader's ``liked``/``retweeted`` on
  each tweet; ``GET /users/<author>/tweets?count=20`` is read the same way anonymously (no flags)
  and as the reader (flags). Server time is the ``Server-Timing`` header (the handler's own
  time); client time is the request as httpx sees it. Target: home p99 under 5 ms server-side.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from .common import Progress, command_line, finish_cli, machine, private_redis, raise_open_files_limit
from .fanout_throughput import redis_cpu
from .load_generator import Service

NAME = "viewer_state"
TITLE = "Per-viewer state: a like with watchers, and a read with flags"
TARGET_HOME_P99_MS = 5.0
AUTHORS = 20
_DUR = re.compile(r"dur=([0-9.]+)")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


async def sign_in(client: httpx.AsyncClient, names: list[str], concurrency: int = 50) -> dict[str, str]:
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> tuple[str, str]:
        async with gate:
            answer = await client.post("/auth/dev", json={"username": name})
        answer.raise_for_status()
        return name, answer.json()["token"]

    return dict(await asyncio.gather(*(one(name) for name in names)))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(client: httpx.AsyncClient, token: str, content: str) -> str:
    answer = await client.post("/tweets", json={"content": content}, headers=auth(token))
    answer.raise_for_status()
    return answer.headers["location"].rsplit("/", 1)[1]


class Watcher:
    """One socket watching ``tweet_id``: the counts frames it got."""

    def __init__(self, ws_url: str, token: str, tweet_id: str) -> None:
        self.ws_url, self.token, self.tweet_id = ws_url, token, tweet_id
        self.counts: list[dict] = []
        self.socket = None

    async def open(self) -> None:
        import websockets

        self.socket = await websockets.connect(self.ws_url, open_timeout=30, max_queue=None)
        await self.socket.send(orjson.dumps({"type": "auth", "token": self.token, "since": None}).decode())
        while orjson.loads(await self.socket.recv())["type"] != "ready":
            pass
        await self.socket.send(orjson.dumps({"type": "watch", "ids": [self.tweet_id]}).decode())
        await self.socket.send('{"type":"ping"}')  # answered once the watch is recorded
        while orjson.loads(await self.socket.recv())["type"] != "pong":
            pass

    async def until_counts(self, likes: int, timeout: float) -> bool:
        """Read frames until one says ``likes``; False when none does within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not (self.counts and self.counts[-1]["likes"] == likes):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                frame = orjson.loads(await asyncio.wait_for(self.socket.recv(), left))
            except asyncio.TimeoutError:
                return False
            if frame["type"] == "counts":
                self.counts.append(frame)
        return True


async def redis_phase(redis, run) -> dict:
    await redis.config_resetstat()
    cpu = await redis_cpu(redis)
    started = time.monotonic()
    await run()
    seconds = time.monotonic() - started
    cpu = await redis_cpu(redis) - cpu
    stats = await redis.info("commandstats")
    commands = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
                if name.removeprefix("cmdstat_") not in ("config|resetstat", "config", "info")}
    return {"cpu": cpu, "commands": commands, "seconds": seconds}


async def like_all(client: httpx.AsyncClient, tokens: list[str], tweet_id: str) -> None:
    for token in tokens:
        answer = await client.put(f"/tweets/{tweet_id}/like", headers=auth(token))
        answer.raise_for_status()


async def measure_likes(service: Service, redis, watchers: int, likes: int) -> dict:
    async with httpx.AsyncClient(base_url=service.url, timeout=30, trust_env=False) as client:
        author, *people = [f"vs{n}" for n in range(1 + watchers + likes)]
        tokens = await sign_in(client, [author, *people])
        unwatched = await post(client, tokens[author], "nobody watches this one")
        watched = await post(client, tokens[author], "a thousand people watch this one")
        sockets = [Watcher(service.ws_url, tokens[name], watched) for name in people[:watchers]]
        progress = Progress("sockets watching", len(sockets))
        gate, opened = asyncio.Semaphore(100), [0]

        async def open_one(socket: Watcher) -> None:
            async with gate:
                await socket.open()
            opened[0] += 1
            progress.update(opened[0])

        await asyncio.gather(*(open_one(socket) for socket in sockets))
        progress.done()
        likers = [tokens[name] for name in people[watchers:]]
        quiet = await redis_phase(redis, lambda: like_all(client, likers, unwatched))
        watched_phase = await redis_phase(redis, lambda: like_all(client, likers, watched))
        final = await asyncio.gather(*(socket.until_counts(likes, 10 + watched_phase["seconds"]) for socket in sockets))
        frames = [len(socket.counts) for socket in sockets]
        for socket in sockets:
            await socket.socket.close()
    return {"quiet": quiet, "watched": watched_phase, "missing_final": final.count(False), "frames": frames,
            "watchers": watchers, "likes": likes}


async def timed_reads(client: httpx.AsyncClient, path: str, headers: dict, count: int) -> dict[str, list[float]]:
    server, seen = [], []
    for number in range(count + 20):  # the first 20 warm up
        started = time.perf_counter()
        answer = await client.get(path, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        answer.raise_for_status()
        if number >= 20:
            server.append(float(_DUR.search(answer.headers["server-timing"]).group(1)))
            seen.append(elapsed)
    return {"server": server, "client": seen}


async def home_holds(client: httpx.AsyncClient, token: str, count: int, timeout: float = 30) -> None:
    """Until the reader's home timeline holds ``count`` tweets (the fan-out has landed)."""
    deadline = time.monotonic() + timeout
    while len((await client.get("/timelines/home?count=100", headers=auth(token))).json()["tweets"]) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{NAME}: the home timeline did not fill within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def measure_reads(service: Service, reads: int) -> dict:
    async with httpx.AsyncClient(base_url=service.url, timeout=30, trust_env=False) as client:
        names = [f"vsa{n}" for n in range(AUTHORS)]
        tokens = await sign_in(client, ["vsreader", *names])
        reader = tokens["vsreader"]
        for name in names:
            (await client.put(f"/users/{name}/follow", headers=auth(reader))).raise_for_status()
        posted = [await post(client, tokens[name], f"tweet {n} by {name}") for n in range(3) for name in names]
        for n in range(20):  # a user timeline of as many tweets as the home page, for the comparison
            posted.append(await post(client, tokens[names[0]], f"more by {names[0]}: {n}"))
        for tweet_id in posted[::3]:  # a third liked, a sixth retweeted, as an active reader would
            (await client.put(f"/tweets/{tweet_id}/like", headers=auth(reader))).raise_for_status()
        for tweet_id in posted[::6]:
            (await client.put(f"/tweets/{tweet_id}/retweet", headers=auth(reader))).raise_for_status()
        await home_holds(client, reader, len(posted))
        home = await timed_reads(client, "/timelines/home?count=20", auth(reader), reads)
        anonymous = await timed_reads(client, f"/users/{names[0]}/tweets?count=20", {}, reads)
        flagged = await timed_reads(client, f"/users/{names[0]}/tweets?count=20", auth(reader), reads)
    return {"home": home, "anonymous": anonymous, "flagged": flagged}


def render(likes: dict, reads: dict) -> tuple[str, dict, list[str]]:
    def per_like(phase: dict) -> tuple[float, float]:
        return sum(phase["commands"].values()) / likes["likes"], phase["cpu"] / likes["likes"] * 1e6

    quiet_commands, quiet_us = per_like(likes["quiet"])
    watched_commands, watched_us = per_like(likes["watched"])
    frames = likes["frames"]
    seconds = likes["watched"]["seconds"]
    allowed = math.ceil(seconds) + 1
    lines = [
        f"One service process, one private redis-server; {likes['likes']} users like a tweet one after "
        f"another over HTTP, first one nobody watches, then one that {likes['watchers']:,} sockets watch.",
        "",
        "| like of a tweet | commands per like | Redis µs per like | of which |",
        "|---|---|---|---|",
        f"| nobody watches | {quiet_commands:.1f} | {quiet_us:.0f} | "
        + ", ".join(f"`{n}` {c / likes['likes']:.1f}" for n, c in sorted(likes["quiet"]["commands"].items())) + " |",
        f"| {likes['watchers']:,} sockets watch (one process) | {watched_commands:.1f} | {watched_us:.0f} | "
        + ", ".join(f"`{n}` {c / likes['likes']:.1f}" for n, c in sorted(likes["watched"]["commands"].items())) + " |",
        "",
        f"The {likes['likes']} likes took {seconds:.1f} s; each socket got {min(frames)}–{max(frames)} `counts` "
        f"frames (at most one a second: ≤ {allowed}), the last with the final count for "
        f"{likes['watchers'] - likes['missing_final']:,} of {likes['watchers']:,} sockets. Watchers cost Redis one "
        "`PUBLISH` per like per watching process, whatever the number of sockets there.",
        "",
        "Reads, one at a time on one keep-alive connection, 20 tweets a page (a reader following "
        f"{AUTHORS} authors, a third of the tweets liked and a sixth retweeted by them):",
        "",
        "| read | server p50 ms | server p99 ms | client p50 ms | client p99 ms |",
        "|---|---|---|---|---|",
    ]
    figures = {"like_commands_unwatched": round(quiet_commands, 1), "like_us_unwatched": round(quiet_us, 1),
               "like_commands_watched": round(watched_commands, 1), "like_us_watched": round(watched_us, 1),
               "counts_frames_max": max(frames), "missing": likes["missing_final"]}
    for key, label in (("home", "home timeline, signed in (display names and flags)"),
                       ("anonymous", "a user's tweets, anonymous (display names, no flags)"),
                       ("flagged", "a user's tweets, signed in (display names and flags)")):
        server, client = reads[key]["server"], reads[key]["client"]
        figures[f"{key}_server_p99_ms"] = round(percentile(server, 99), 3)
        lines.append(f"| {label} | {percentile(server, 50):.2f} | {percentile(server, 99):.2f} "
                     f"| {percentile(client, 50):.2f} | {percentile(client, 99):.2f} |")
    home_p99 = figures["home_server_p99_ms"]
    added = figures["flagged_server_p99_ms"] - figures["anonymous_server_p99_ms"]
    lines += ["", f"Home p99 server-side: **{home_p99:.2f} ms** (target < {TARGET_HOME_P99_MS:g} ms: "
                  f"{'met' if home_p99 < TARGET_HOME_P99_MS else '**not met**'}); the flags add "
                  f"{added:+.2f} ms at p99 to the same page (the session lookup, and one script call in the page's "
                  "second round trip on one Redis; display names are remembered 5 s per process)."]
    problems = []
    if likes["missing_final"]:
        problems.append(f"{NAME}: {likes['missing_final']} sockets never got the final counts")
    if max(frames) > allowed:
        problems.append(f"{NAME}: a socket got {max(frames)} counts frames in {seconds:.1f} s (at most {allowed})")
    return "\n".join(lines), figures, problems


async def run(watchers: int, likes: int, reads: int) -> dict:
    raise_open_files_limit(watchers * 2 + 1000)
    with private_redis() as server, tempfile.TemporaryDirectory(prefix="chirp-viewer-") as logs:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
        service = await Service(server.url, 1, Path(logs)).start()
        try:
            info = await client.info("server")
            print(f"{NAME}: service on {service.url}, redis-server on port {server.port}", flush=True)
            like_result = await measure_likes(service, client, watchers, likes)
            read_result = await measure_reads(service, reads)
        finally:
            service.stop()
            await client.aclose()
    body, figures, problems = render(like_result, read_result)
    return {"body": body, "figures": figures, "problems": problems, "machine": machine(info)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.viewer_state", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 watchers, 20 likes, 100 reads")
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--likes", type=int, default=200)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    return parser.parse_args(argv)


async def measure(quick: bool = False, watchers: int = 1000, likes: int = 200, reads: int = 1000) -> dict:
    """The ``python -m bench`` interface."""
    if quick:
        watchers, likes, reads = 100, 20, 100
    argv = ["--quick"] if quick else ([] if (watchers, likes, reads) == (1000, 200, 1000) else
                                      ["--watchers", str(watchers), "--likes", str(likes), "--reads", str(reads)])
    result = await run(watchers, likes, reads)
    return {"name": NAME, "title": TITLE, "command": command_line("bench.viewer_state", argv), **result}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(measure(args.quick, args.watchers, args.likes, args.reads))
    return finish_cli(NAME, result, write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
