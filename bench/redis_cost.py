"""Redis cost per tweet and per timeline entry: what Chirp spends of the one shared resource.

    python -m bench.redis_cost [--quick] [--online 0.05] [--no-write]

For each shape, in a private redis-server of its own: an author with K followers whose
home timelines are full (800 entries minted over the last week, so every push trims as in
production), ``--online`` of them with a live lease held by a process whose channel one
pub/sub connection reads (so each PUBLISH is written to a subscriber, as in production).
The author posts T tweets through ``Tweets.post`` (the request path), then the production
``FanoutWorker`` runs each job as a worker reads it (``XREADGROUP``, ``run_job``,
``finish``). Redis is measured over each phase with ``CONFIG RESETSTAT`` before it and
``INFO commandstats`` and ``INFO cpu`` (``used_cpu_user + used_cpu_sys`` of redis-server)
after it: commands per tweet (the calls that scripts make counted as commands, script
calls counted apart), Redis CPU per tweet, and per timeline entry written by the fan-out.

Shapes: K=100 with T=300 tweets and K=100,000 with T=5 (``--quick``: K=100 with T=50 and
K=10,000 with T=2). In the same redis-server as the largest shape, the raw cost of one
pipelined ``LPUSH`` onto each of those full lists is measured the same way: the floor any
timeline write pays. Every follower's timeline is checked to hold each tweet once, newest
first (a problem otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import statistics
import time

from realtime import keys
from realtime.config import Settings
from realtime.engine import Engine
from realtime.fanout import FanoutJob, FanoutWorker
from realtime.timelines import FollowerExpiries

from .common import Progress, command_line, finish_cli, machine, private_redis
from .fanout_throughput import create_followers, follower_names, prefill_timelines, redis_cpu

NAME = "redis_cost"
TITLE = "Redis cost per tweet and per timeline entry"
AUTHOR = "costauthor"
TARGET_US_PER_ENTRY = 3.0
PREFILL = 800
RAW_CHUNK = 1000
LEASE_SECONDS = 3600


@dataclasses.dataclass(frozen=True)
class Shape:
    followers: int
    tweets: int
    per_sample: int  # jobs per CPU sample: the per-entry figure is the median over samples


# On this VM a memory-bound run (a million cold list nodes) varies by a third from run to run
# (page faults, the host's memory balancing): samples, and their median, say more than a total.
SHAPES = [Shape(100, 300, 20), Shape(100_000, 5, 1)]
QUICK_SHAPES = [Shape(100, 50, 10), Shape(10_000, 2, 1)]


@dataclasses.dataclass
class Phase:
    """Redis over one phase: CPU seconds and, per command, calls and CPU µs."""

    cpu: float
    commands: dict[str, tuple[int, float]]

    @property
    def calls(self) -> int:
        return sum(calls for calls, _ in self.commands.values())

    @property
    def script_calls(self) -> int:
        return sum(calls for name, (calls, _) in self.commands.items() if name in ("evalsha", "eval"))


async def reset(redis) -> float:
    await redis.config_resetstat()
    return await redis_cpu(redis)


async def phase_since(redis, cpu_before: float) -> Phase:
    cpu = await redis_cpu(redis) - cpu_before
    stats = await redis.info("commandstats")
    commands = {name.removeprefix("cmdstat_"): (int(value["calls"]), float(value["usec"]))
                for name, value in stats.items()}
    # What this measurement itself sent: not the service's cost.
    for own in ("config|resetstat", "config", "info"):
        commands.pop(own, None)
    return Phase(cpu, commands)


async def go_online(engine: Engine, names: list[str], share: float) -> tuple[list[str], asyncio.Task]:
    """Leases for ``share`` of ``names`` held by a process whose channel is read (and drained)."""
    online = names[:: max(1, round(1 / share))] if share > 0 else []
    process_id = "costbench-" + secrets.token_hex(4)
    until = int((time.time() + LEASE_SECONDS) * 1000)
    pipe = engine.redis.pipeline(transaction=False)
    for name in online:
        pipe.zadd(keys.live_presence(name), {process_id: until})
    if online:
        pipe.zadd(keys.LIVE_ONLINE, {name: until for name in online})  # as LiveHub writes leases
    await pipe.execute()
    pubsub = engine.redis.pubsub()
    await pubsub.subscribe(keys.process_channel(process_id))

    async def drain() -> None:
        try:
            async for _ in pubsub.listen():
                pass
        finally:
            await pubsub.aclose()

    return online, asyncio.create_task(drain(), name="redis-cost-subscriber")


async def read_job(engine: Engine, worker: FanoutWorker) -> FanoutJob:
    """The next job, read as the worker reads one (realtime.fanout.FanoutWorker._run_once): one
    at a time, right before it runs, the read counting as its first confirmation (so a job's
    first batch needs no CONFIRM_JOB, as in production)."""
    tag = engine.fanout_queue.tag_of(AUTHOR)
    read_at = time.monotonic()
    answer = await engine.redis.xreadgroup(keys.FANOUT_GROUP, worker.consumer, {keys.fanout_stream(tag): ">"},
                                           count=1)
    jobs = [FanoutJob(tag, entry_id, fields, confirmed_at=read_at) for _, entries in answer
            for entry_id, fields in entries]
    if len(jobs) != 1:
        raise SystemExit(f"{NAME}: a job was posted and none could be read from the stream")
    return jobs[0]


async def check_timelines(redis, names: list[str], tweet_ids: list[int]) -> int:
    """Followers whose home timeline does not start with the tweets, newest first, once each."""
    wrong = 0
    expected = [str(tweet_id) for tweet_id in reversed(tweet_ids)]
    for start in range(0, len(names), RAW_CHUNK):
        pipe = redis.pipeline(transaction=False)
        for name in names[start:start + RAW_CHUNK]:
            pipe.lrange(keys.home_timeline(name), 0, len(tweet_ids))
        for head in await pipe.execute():
            wrong += head[:len(expected)] != expected or head[len(expected):len(expected) + 1] == expected[-1:]
    return wrong


async def raw_lpush(redis, names: list[str]) -> Phase:
    """One pipelined LPUSH onto each follower's (full) home timeline, as a floor."""
    entry = str(int(time.time() * 1000) << 12)
    before = await reset(redis)
    for start in range(0, len(names), RAW_CHUNK):
        pipe = redis.pipeline(transaction=False)
        for name in names[start:start + RAW_CHUNK]:
            pipe.lpush(keys.home_timeline(name), entry)
        await pipe.execute()
    return await phase_since(redis, before)


async def measure_shape(shape: Shape, online_share: float, with_raw: bool) -> dict:
    names = follower_names(shape.followers)
    with private_redis() as server:
        print(f"K={shape.followers:,}, T={shape.tweets}: private redis-server on port {server.port}", flush=True)
        # Hybrid fan-out on, as deployed, with a threshold above K: every tweet is pushed, and
        # each job pays the read of the author's state and follower count (realtime.hot_fanout).
        below_threshold = {"FANOUT_HOT_FOLLOWERS": str(shape.followers + 1)}
        engine = await Engine.open(Settings.load(environ={"REDIS_URL": server.url, **below_threshold}))
        subscriber = None
        try:
            info = await engine.redis.info("server")
            await engine.users.create(AUTHOR)
            await create_followers(engine.redis, names, author=AUTHOR)
            await prefill_timelines(engine.redis, names, PREFILL, engine.settings.timeline_max_length)
            online, subscriber = await go_online(engine, names, online_share)
            worker = engine.new_fanout_worker([engine.fanout_queue.tag_of(AUTHOR)])

            before = await reset(engine.redis)
            tweet_ids = [await engine.tweets.post(AUTHOR, f"cost {n}") for n in range(shape.tweets)]
            posting = await phase_since(engine.redis, before)

            progress = Progress(f"K={shape.followers:,}: jobs fanned out", shape.tweets)
            before = await reset(engine.redis)
            samples, sample_cpu, sample_entries = [], await redis_cpu(engine.redis), 0
            for number in range(1, shape.tweets + 1):
                job = await read_job(engine, worker)
                await worker.run_job(job, resumed=False)
                await worker.finish(job)
                progress.update(number)
                if number % shape.per_sample == 0:
                    cpu = await redis_cpu(engine.redis)
                    samples.append((cpu - sample_cpu) / (worker.entries_written - sample_entries) * 1e6)
                    sample_cpu, sample_entries = cpu, worker.entries_written
            fanout = await phase_since(engine.redis, before)
            progress.done()
            entries = worker.entries_written
            wrong = await check_timelines(engine.redis, names, tweet_ids)
            raw = await raw_lpush(engine.redis, names) if with_raw else None
        finally:
            if subscriber is not None:
                subscriber.cancel()
            await engine.close()
    return {"shape": shape, "online": len(online), "posting": posting, "fanout": fanout, "entries": entries,
            "samples": samples,
            "wrong": wrong, "raw": raw, "machine": machine(info)}


def per_tweet(phase: Phase, tweets: int) -> str:
    return f"{phase.calls / tweets:,.1f} ({phase.script_calls / tweets:,.1f} script calls)"


def render(runs: list[dict], online_share: float) -> tuple[str, dict]:
    lines = [
        f"Each shape in a redis-server of its own: K followers with full home timelines ({PREFILL} entries), "
        f"{online_share:.0%} of them online (a live lease, and a subscriber reading the process's channel); "
        "the author posts T tweets (`Tweets.post`), then the production `FanoutWorker` runs each job. "
        "Redis CPU is redis-server's `used_cpu_user + used_cpu_sys` over the phase; commands are "
        "`INFO commandstats` calls, the commands a script runs counted one by one. Redis µs per entry: "
        "the median over samples of a few jobs each (their range in brackets): on this VM a memory-bound "
        "run varies by a third between runs, a median of samples less.",
        "",
        "| K followers (online) | tweets | post: commands per tweet | post: Redis µs per tweet "
        "| fan-out: commands per tweet | fan-out: Redis µs per tweet | timeline entries | **Redis µs per entry** |",
        "|---|---|---|---|---|---|---|---|",
    ]
    figures: dict = {}
    for run in runs:
        shape, posting, fanout = run["shape"], run["posting"], run["fanout"]
        per_entry = statistics.median(run["samples"])
        spread = f"{min(run['samples']):.1f}–{max(run['samples']):.1f}"
        figures[f"k{shape.followers}_us_per_entry"] = round(per_entry, 3)
        figures[f"k{shape.followers}_commands_per_tweet"] = round((posting.calls + fanout.calls) / shape.tweets, 1)
        lines.append(f"| {shape.followers:,} ({run['online']:,}) | {shape.tweets} | {per_tweet(posting, shape.tweets)} "
                     f"| {posting.cpu / shape.tweets * 1e6:,.0f} | {per_tweet(fanout, shape.tweets)} "
                     f"| {fanout.cpu / shape.tweets * 1e6:,.0f} | {run['entries']:,} "
                     f"| **{per_entry:.2f}** ({spread}, {len(run['samples'])} samples) |")
    average = sum(figures[f"k{run['shape'].followers}_us_per_entry"] for run in runs) / len(runs)
    figures["us_per_entry_average"] = round(average, 3)
    raw_run = next(run for run in runs if run["raw"] is not None)
    raw = raw_run["raw"]
    raw_us = raw.cpu / max(raw.calls, 1) * 1e6
    figures["raw_lpush_us"] = round(raw_us, 3)
    verdict = "met" if average <= TARGET_US_PER_ENTRY else "**not met**"
    max_age = Settings().timeline_max_age  # the benchmark's, as deployed
    interval = FollowerExpiries(max_age).interval
    lines += ["", f"Average Redis µs per entry over the shapes: **{average:.2f}** (target ≤ {TARGET_US_PER_ENTRY:g}: "
                  f"{verdict}); a raw pipelined `LPUSH` onto the same full lists, measured in the same run: "
                  f"**{raw_us:.2f} µs** ({raw.calls:,} of them), so the fan-out pays {average / raw_us:.1f}× the floor.",
              "", "Each shape's first sample holds the job that sets every follower's TTL (a worker sets an "
                  f"author's followers' TTLs once per `FollowerExpiries.interval`, {interval / 3600:g} h at the "
                  f"{max_age / 86400:g}-day age limit; the pushes in between leave them: realtime.timelines): "
                  + ", ".join(f"{run['samples'][0]:.2f} µs per entry at K={run['shape'].followers:,} "
                              f"({run['shape'].per_sample} job{'s' if run['shape'].per_sample > 1 else ''})"
                              for run in runs)
                  + ". The medians are what an author who posts more often than that pays.",
              "", "Where the fan-out's Redis time goes (calls per tweet, and µs per call as `INFO commandstats` "
                  "reports it; a script's `evalsha` time includes the commands it runs):", ""]
    names = sorted({name for run in runs for name in run["fanout"].commands},
                   key=lambda name: -max(run["fanout"].commands.get(name, (0, 0.0))[1] for run in runs))
    lines.append("| command | " + " | ".join(f"K={run['shape'].followers:,}: calls/tweet, µs/call" for run in runs) + " |")
    lines.append("|---|" + "---|" * len(runs))
    for name in names:
        cells = []
        for run in runs:
            calls, usec = run["fanout"].commands.get(name, (0, 0.0))
            cells.append(f"{calls / run['shape'].tweets:,.1f}, {usec / calls:.2f}" if calls else "-")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines), figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="K=100 × 50 tweets and K=10,000 × 1 tweet")
    parser.add_argument("--online", type=float, default=0.05, help="share of followers online (default 0.05)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if not 0 <= args.online <= 1:
        parser.error("--online is a share between 0 and 1")
    return args


async def measure(quick: bool = False, online_share: float = 0.05) -> dict:
    """The ``python -m bench`` interface."""
    shapes = QUICK_SHAPES if quick else SHAPES
    command = command_line("bench.redis_cost", ["--quick"] if quick else [])
    runs = [await measure_shape(shape, online_share, with_raw=shape is shapes[-1]) for shape in shapes]
    body, figures = render(runs, online_share)
    problems = [f"{NAME}: K={run['shape'].followers:,}: {run['wrong']:,} home timelines without each tweet once"
                for run in runs if run["wrong"]]
    figures["missing"] = sum(run["wrong"] for run in runs)
    return {"name": NAME, "title": TITLE, "command": command, "body": body, "figures": figures,
            "problems": problems, "machine": runs[0]["machine"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(measure(args.quick, args.online))
    return finish_cli(NAME, result, write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
