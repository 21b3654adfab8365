"""Hybrid fan-out: a tweet of an account with a million followers, and the merged home read.

    python -m bench.hot_fanout [--quick] [--no-write]

One private redis-server; the service (``python run.py``, one process, rate limits off) on it,
with hybrid fan-out at its default threshold (``FANOUT_HOT_FOLLOWERS=10000``), then with it off:

- **One big account.** ``hotstar`` has ``followers`` followers (1,000,000; quick 20,000): ``sockets``
  of them (2,000; quick 200) are users made over the API, each holding a live socket; the others
  are bare members of ``followers:{hotstar}`` (the fan-out writes a home timeline for each without
  asking whether the account exists). Its first tweet crosses the threshold: the job that warms
  the account (every follower's ``hot_follows`` gains it) is timed. Then ``tweets`` tweets, one at
  a time; per tweet, until every socket has it and its job is done: Redis commands (``INFO
  commandstats``), Redis CPU (``used_cpu_user + used_cpu_sys``), Redis memory added
  (``used_memory``) and bytes sent to Redis (``total_net_input_bytes``), and POST sent → each
  socket's delivery. Then the same with ``FANOUT_HOT_FOLLOWERS=off`` (every follower's timeline
  written), for comparison, ``tweets_off`` tweets. The sockets reconnect between the two.
- **The merged read.** ``reader_hot`` follows ``hot_accounts`` hot accounts (20; quick 5; each
  with 10,000 bare followers and 45 tweets) and ``ordinary`` ordinary ones (500; quick 50; 2
  tweets each, posted among 5 more of each hot account's, so the stored home timeline is full); ``reader_plain`` follows the ordinary ones
  only. ``GET /timelines/home?count=20``, ``reads`` times each, one at a time; server time is the
  ``Server-Timing`` header. The hot accounts' tweets (posted concurrently) are counted too, for
  the Redis commands per hot tweet of a 10,000-follower account beside the million's.

Targets (issue 15): the commands and bytes of a hot tweet independent of the follower count;
POST → the last connected follower p99 < 100 ms; the merged read's server p99 < 5 ms and within
2× of the plain reader's. Missing or duplicated deliveries are problems; a time never is.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from realtime import keys

from .common import (Progress, command_line, finish_cli, machine, private_redis, raise_open_files_limit)
from .fanout_throughput import redis_cpu
from .live_shapes import _ms, _per_tweet, _post
from .load_generator import BenchError, Plan, Service, SocketProcesses, check_deliveries, create_users, percentile
from .viewer_state import auth, timed_reads

__all__ = ["Sizes", "FULL", "QUICK", "measure", "main"]

NAME = "hot_fanout"
TITLE = "Hybrid fan-out: a tweet of an account with a million followers"
STAR = "hotstar"
THRESHOLD = 10_000
TARGET_LAST_P99_MS = 100.0
TARGET_READ_P99_MS = 5.0
MAX_SECONDS = 600.0  # one step taking longer than this is a failure
SETUP_CONCURRENCY = 32
BARE_CHUNK = 10_000


@dataclasses.dataclass(frozen=True)
class Sizes:
    followers: int
    sockets: int
    tweets: int
    tweets_off: int
    hot_accounts: int
    hot_tweets_each: int
    ordinary: int
    reads: int
    socket_procs: int


FULL = Sizes(1_000_000, 2_000, 5, 2, 20, 40, 500, 300, 2)
QUICK = Sizes(20_000, 200, 3, 1, 5, 10, 50, 100, 1)


@dataclasses.dataclass
class Snapshot:
    commands: int
    cpu: float
    memory: int
    net_in: int

    @classmethod
    async def take(cls, redis) -> Snapshot:
        stats, memory, calls = await redis.info("stats"), await redis.info("memory"), await redis.info("commandstats")
        commands = sum(int(value["calls"]) for name, value in calls.items()
                       if name.removeprefix("cmdstat_") not in ("info", "config|resetstat"))
        return cls(commands, await redis_cpu(redis), int(memory["used_memory"]), int(stats["total_net_input_bytes"]))

    def since(self, start: Snapshot) -> dict:
        return {"commands": self.commands - start.commands, "cpu_ms": (self.cpu - start.cpu) * 1000,
                "memory": self.memory - start.memory, "net_in": self.net_in - start.net_in}


async def jobs_left(redis) -> int:
    return sum([await redis.xlen(keys.fanout_stream(tag)) for tag in keys.fanout_shard_tags(8)])


async def until(what: str, check, timeout: float = MAX_SECONDS) -> float:
    """Poll ``check`` (a coroutine function) every 10 ms until true; the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise BenchError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def add_bare_followers(redis, account: str, names: list[str]) -> None:
    progress = Progress(f"bare followers of {account}", len(names))
    for start in range(0, len(names), BARE_CHUNK):
        await redis.zadd(keys.followers(account), dict.fromkeys(names[start:start + BARE_CHUNK], 0))
        progress.update(start + BARE_CHUNK)
    progress.done(len(names))


async def big_account(service: Service, redis, plan: Plan, tokens: dict, sizes: Sizes, label: str) -> dict:
    """Open every socket, post ``tweets`` one at a time, each measured until it is everywhere."""
    count = sizes.tweets if label == "hybrid" else sizes.tweets_off
    sockets = SocketProcesses(service.ws_url, [(name, tokens[name]) for name in plan.followers],
                              sizes.socket_procs, 100)
    records, costs = [], []
    try:
        opening = await sockets.open(MAX_SECONDS)
        async with httpx.AsyncClient(base_url=service.url, timeout=60, trust_env=False) as client:
            for number in range(count):
                before = await Snapshot.take(redis)
                tweet_id, sent = await _post(client, tokens[STAR], f"{label} tweet {number}")
                records.append((tweet_id, STAR, sent, time.time(), 0.0))
                expected = len(records) * len(plan.followers)

                async def landed() -> bool:
                    return sockets.received() >= expected and await jobs_left(redis) == 0

                seconds = await until(f"{label} tweet {number + 1} everywhere", landed)
                costs.append({**(await Snapshot.take(redis)).since(before), "seconds": seconds})
                print(f"  {label} tweet {number + 1}: {costs[-1]['commands']:,} Redis commands, "
                      f"{costs[-1]['cpu_ms']:.1f} ms Redis CPU, everywhere in {seconds:.2f} s", flush=True)
        await asyncio.sleep(0.5)  # anything doubled arrives meanwhile
        rows = await sockets.report()
    finally:
        await sockets.close()
    return {"opening": opening, "records": records, "costs": costs, "rows": rows,
            "check": check_deliveries(plan, records, rows, 1.0),
            "tweets": _per_tweet(records, rows, len(plan.followers))}


async def measure_big(server_url: str, redis, logs: Path, sizes: Sizes) -> dict:
    fans = [f"hf{n:07d}" for n in range(sizes.followers)]
    users = fans[:: sizes.followers // sizes.sockets][: sizes.sockets]  # spread over the walk's order
    plan = Plan([STAR], users, {name: [STAR] for name in users})
    hybrid = Service(server_url, 1, logs, [f"FANOUT_HOT_FOLLOWERS={THRESHOLD}"])
    await hybrid.start()
    try:
        tokens = await create_users(hybrid.url, plan, SETUP_CONCURRENCY, MAX_SECONDS)
        chosen = set(users)
        await add_bare_followers(redis, STAR, [name for name in fans if name not in chosen])
        async with httpx.AsyncClient(base_url=hybrid.url, timeout=60, trust_env=False) as client:
            await _post(client, tokens[STAR], "the tweet that makes me hot")
        print(f"  warming {STAR}: {sizes.followers:,} followers gain it", flush=True)
        warm = await until("the warm", lambda: _state_is(redis, "hot"))
        await until("the warm's job", lambda: _no_jobs(redis))
        print(f"  warm: {warm:.1f} s", flush=True)
        on = await big_account(hybrid, redis, plan, tokens, sizes, "hybrid")
    finally:
        hybrid.stop()
    pushed = Service(server_url, 1, logs, ["FANOUT_HOT_FOLLOWERS=off"])
    await pushed.start()
    try:
        off = await big_account(pushed, redis, plan, tokens, sizes, "pushed")
        last = max(fans)
        heads = await redis.lrange(keys.home_timeline(last), 0, len(off["records"]) - 1)
        off["last_follower_ok"] = heads == [r[0] for r in reversed(off["records"])]
    finally:
        pushed.stop()
    return {"warm_s": warm, "on": on, "off": off, "followers": sizes.followers, "sockets": len(users)}


async def _state_is(redis, state: str) -> bool:
    return await redis.hget(keys.user(STAR), keys.FANOUT_STATE) == state


async def _no_jobs(redis) -> bool:
    return await jobs_left(redis) == 0


async def measure_reads(server_url: str, redis, logs: Path, sizes: Sizes) -> dict:
    hot = [f"hh{n:02d}" for n in range(sizes.hot_accounts)]
    ordinary = [f"ho{n:04d}" for n in range(sizes.ordinary)]
    plan = Plan(hot + ordinary, ["reader_hot", "reader_plain"],
                {"reader_hot": hot + ordinary, "reader_plain": ordinary})
    service = Service(server_url, 1, logs, [f"FANOUT_HOT_FOLLOWERS={THRESHOLD}"])
    await service.start()
    try:
        tokens = await create_users(service.url, plan, SETUP_CONCURRENCY, MAX_SECONDS)
        for account in hot:
            await add_bare_followers(redis, account, [f"{account}b{n:05d}" for n in range(THRESHOLD)])
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)
        async with httpx.AsyncClient(base_url=service.url, timeout=60, trust_env=False) as client:
            async def post_all(name: str, count: int) -> None:
                for number in range(count):  # one author's in order
                    async with gate:
                        await _post(client, tokens[name], f"{name} says {number}")

            await asyncio.gather(*(post_all(name, 1) for name in hot))  # the warms
            await until("the hot accounts' warms", lambda: _no_jobs(redis))
            before = await Snapshot.take(redis)
            await asyncio.gather(*(post_all(name, sizes.hot_tweets_each) for name in hot))
            await until("the hot accounts' tweets", lambda: _no_jobs(redis))
            hot_cost = (await Snapshot.take(redis)).since(before)
            # The ordinary tweets, with some more of the hot accounts' among them: pages mix both.
            await asyncio.gather(*(post_all(name, 2) for name in ordinary), *(post_all(name, 5) for name in hot))
            await until("the ordinary tweets", lambda: _no_jobs(redis))
            states = [await redis.hget(keys.user(name), keys.FANOUT_STATE) for name in hot]
            first = (await client.get("/timelines/home?count=20", headers=auth(tokens["reader_hot"]))).json()
            merged = sum(1 for tweet in first["tweets"] if tweet["from"] in hot)
            readers = {name: await timed_reads(client, "/timelines/home?count=20", auth(tokens[name]), sizes.reads)
                       for name in ("reader_hot", "reader_plain")}
    finally:
        service.stop()
    return {"readers": readers, "hot_cost": hot_cost, "hot_tweets": sizes.hot_tweets_each * len(hot),
            "states": states, "merged_on_first_page": merged, "hot": len(hot), "ordinary": len(ordinary)}


def _per_tweet_cost(costs: list[dict], key: str) -> float:
    return statistics.median([cost[key] for cost in costs]) if costs else float("nan")


def render(big: dict, reads: dict, sizes: Sizes) -> tuple[str, dict, list[str]]:
    on, off = big["on"], big["off"]
    problems = []
    lines_by = {}
    for label, phase in (("hybrid", on), ("pushed", off)):
        everything = sorted(ms for line in phase["tweets"] for ms in line["ms"])
        lasts = sorted(line["last"] for line in phase["tweets"])
        lines_by[label] = (everything, lasts)
        check = phase["check"]
        if check["missing"] or check["duplicated"] or check["unexpected"]:
            problems.append(f"{label}: {check['missing']} missing, {check['duplicated']} duplicated, "
                            f"{check['unexpected']} unexpected deliveries")
        errors = phase["opening"].get("errors") or []
        if errors:
            problems.append(f"{label}: {len(errors)} sockets failed to open, e.g. {errors[0]}")
    if not off.get("last_follower_ok"):
        problems.append("pushed: the last follower's home timeline lacks a tweet")
    hot_states_ok = all(state == "hot" for state in reads["states"])
    if not hot_states_ok:
        problems.append(f"reads: not every hot account became hot: {reads['states']}")
    if not reads["merged_on_first_page"]:
        problems.append("reads: the hot reader's first page holds no hot account's tweet")
    hot_server = {name: values["server"] for name, values in reads["readers"].items()}
    p99 = {name: percentile(sorted(values), 99) for name, values in hot_server.items()}
    p50 = {name: percentile(sorted(values), 50) for name, values in hot_server.items()}
    small = reads["hot_cost"]
    small_commands = small["commands"] / reads["hot_tweets"]
    table = ["| fan-out | tweets | Redis commands per tweet | Redis CPU ms per tweet | Redis memory added per tweet "
             "| bytes sent to Redis per tweet | POST → delivery p50 ms | p99 ms | POST → last socket, worst tweet, ms "
             "| missing | duplicated |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, phase in (("hybrid (hot account)", on), ("pushed (FANOUT_HOT_FOLLOWERS=off)", off)):
        everything, lasts = lines_by["hybrid" if phase is on else "pushed"]
        costs = phase["costs"]
        table.append(f"| {label} | {len(costs)} | **{_per_tweet_cost(costs, 'commands'):,.0f}** | "
                     f"{_per_tweet_cost(costs, 'cpu_ms'):,.1f} | {_per_tweet_cost(costs, 'memory') / 1024:,.0f} KiB | "
                     f"{_per_tweet_cost(costs, 'net_in') / 1024:,.1f} KiB | {_ms(percentile(everything, 50))} | "
                     f"{_ms(percentile(everything, 99))} | **{_ms(lasts[-1] if lasts else float('nan'))}** | "
                     f"{phase['check']['missing']} | {phase['check']['duplicated']} |")
    ratio = p99["reader_hot"] / p99["reader_plain"] if p99["reader_plain"] else float("nan")
    body = [f"### One account with {big['followers']:,} followers, {big['sockets']:,} of them connected", "",
            *table, "",
            f"Medians over the tweets, each measured alone from just before its POST until every socket had it and "
            f"its job was done. Crossing the threshold (the first tweet's job adding the account to every one of "
            f"the {big['followers']:,} followers' `hot_follows`, once): **{big['warm_s']:.1f} s**. The same "
            f"accounts' hot tweets with 10,000 followers each ({reads['hot_tweets']} tweets, posted "
            f"{SETUP_CONCURRENCY} at a time): **{small_commands:.1f}** Redis commands per tweet, against "
            f"{_per_tweet_cost(on['costs'], 'commands'):,.0f} with {big['followers']:,} followers (the figures "
            "include the service's own background commands meanwhile: lease renewals, presence).", "",
            f"### The merged home read: {reads['hot']} hot accounts and {reads['ordinary']} ordinary ones followed", "",
            "| reader | reads | server p50 ms | server p99 ms |", "|---|---|---|---|",
            f"| follows {reads['hot']} hot + {reads['ordinary']} ordinary | {len(hot_server['reader_hot'])} | "
            f"{p50['reader_hot']:.2f} | **{p99['reader_hot']:.2f}** |",
            f"| follows the {reads['ordinary']} ordinary only | {len(hot_server['reader_plain'])} | "
            f"{p50['reader_plain']:.2f} | {p99['reader_plain']:.2f} |", "",
            f"`GET /timelines/home?count=20`, one at a time on one connection, after 20 reads to warm up; server "
            f"time is the `Server-Timing` header. Merged p99 / plain p99: **{ratio:.2f}×** (target ≤ 2×); the "
            f"merged first page held {reads['merged_on_first_page']} hot accounts' tweets of 20.", ""]
    on_everything, on_lasts = lines_by["hybrid"]
    figures = {"hot_followers": big["followers"], "hot_sockets": big["sockets"], "hot_warm_s": big["warm_s"],
               "hot_commands_per_tweet": _per_tweet_cost(on["costs"], "commands"),
               "hot_commands_per_tweet_10k": small_commands,
               "hot_redis_cpu_ms_per_tweet": _per_tweet_cost(on["costs"], "cpu_ms"),
               "hot_memory_bytes_per_tweet": _per_tweet_cost(on["costs"], "memory"),
               "hot_net_in_bytes_per_tweet": _per_tweet_cost(on["costs"], "net_in"),
               "hot_delivery_p99_ms": percentile(on_everything, 99),
               "hot_last_socket_ms": on_lasts[-1] if on_lasts else float("nan"),
               "pushed_commands_per_tweet": _per_tweet_cost(off["costs"], "commands"),
               "pushed_redis_cpu_ms_per_tweet": _per_tweet_cost(off["costs"], "cpu_ms"),
               "pushed_everywhere_s": _per_tweet_cost(off["costs"], "seconds"),
               "read_merged_p99_ms": p99["reader_hot"], "read_plain_p99_ms": p99["reader_plain"],
               "read_p99_ratio": ratio,
               "hot_missing": on["check"]["missing"], "hot_duplicated": on["check"]["duplicated"],
               "pushed_missing": off["check"]["missing"], "pushed_duplicated": off["check"]["duplicated"]}
    return "\n".join(body), figures, problems


async def measure(quick: bool = False, *, sizes: Sizes | None = None) -> dict:
    import redis.asyncio as aioredis

    sizes = sizes or (QUICK if quick else FULL)
    needed = sizes.sockets + 2048
    if raise_open_files_limit(needed) < needed:
        print(f"warning: RLIMIT_NOFILE is below {needed}; some sockets may fail to open", file=sys.stderr)
    with private_redis() as server, tempfile.TemporaryDirectory(prefix="chirp-hot-fanout-") as logs:
        redis = aioredis.Redis.from_url(server.url, decode_responses=True)
        try:
            machine_line = machine(await redis.info("server"))
            print(f"redis-server on port {server.port}", flush=True)
            try:
                big = await measure_big(server.url, redis, Path(logs), sizes)
                reads = await measure_reads(server.url, redis, Path(logs), sizes)
            except BenchError as exc:
                return {"name": NAME, "title": TITLE, "machine": machine_line, "body": f"Failed: {exc}",
                        "figures": {}, "problems": [str(exc)]}
        finally:
            await redis.aclose()
    body, figures, problems = render(big, reads, sizes)
    return {"name": NAME, "title": TITLE, "command": "python -m bench.hot_fanout" + (" --quick" if quick else ""),
            "machine": machine_line, "body": body, "figures": figures, "problems": problems}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_fanout", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 followers, 200 sockets")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    result = asyncio.run(measure(args.quick))
    print(result["body"])
    print(f"({time.perf_counter() - started:.0f} s in all)", flush=True)
    return finish_cli(NAME, result, write=not args.no_write and bool(result["figures"]),
                      command=command_line("bench.hot_fanout", argv))


if __name__ == "__main__":
    sys.exit(main())
