"""Fan-out throughput: timeline entries written per second for one tweet to many followers.

    python -m bench.fanout_throughput [--followers 100000] [--prefill 800]
                                      [--batch-sizes 250,500,1000,2000] [--repeat 2]

In a private redis-server: creates an author with ``Users.create`` and ``--followers``
followers directly in Redis (user hashes, the author's followers sorted set, each
follower's following set), fills every follower's home timeline with ``--prefill``
entries minted over the last week (full 800-entry lists by default, so the dedupe and
the trims cost what they cost in production), then for each batch size posts a tweet
with ``Tweets.post`` and times one ``FanoutWorker.run_job`` of the job read from the
stream (as a worker reads it, with ``XREADGROUP``). The worker is the production one,
built by ``Engine.new_fanout_worker`` with ``FANOUT_BATCH_SIZE`` set.

Nobody is subscribed to the live channels, so each PUBLISH finds no receiver. The
result goes to the ``fanout_throughput`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time

from realtime import keys
from realtime.config import Settings
from realtime.engine import Engine
from realtime.fanout import FanoutJob, FanoutWorker
from realtime.ids import IdGenerator
from realtime.scripts import TRIM_EVERY

from .common import PUSH_ONLY, Progress, command_line, git_revision, machine, private_redis, write_section

NAME = "fanout_throughput"
TARGET = 100_000
AUTHOR = "celebrity"
TEMPLATE_KEY = "bench:prefill-template"
SETUP_CHUNK = 2000
DAY = 86400.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, default=100_000, help="followers of the author (default 100000)")
    parser.add_argument("--prefill", type=int, default=800,
                        help="entries already in each follower's home timeline (default 800, a full list)")
    parser.add_argument("--batch-sizes", default="250,500,1000,2000",
                        help="comma-separated FANOUT_BATCH_SIZE values to time (default 250,500,1000,2000)")
    parser.add_argument("--repeat", type=int, default=2, help="timed fan-outs per batch size (default 2)")
    parser.add_argument("--max-seconds", type=float, default=300,
                        help="give up when one step takes longer than this (default 300)")
    parser.add_argument("--label", default="", help="a note for the table of runs (e.g. 'before: seed push path')")
    parser.add_argument("--profile", metavar="FILE", default="",
                        help="cProfile the timed fan-outs into FILE (slows them down; figures not written)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = [int(size) for size in args.batch_sizes.split(",") if size.strip()]
    except ValueError:
        parser.error("--batch-sizes must be whole numbers separated by commas")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error("--batch-sizes needs at least one size of at least 1")
    if args.followers < 1 or args.prefill < 0 or not 1 <= args.repeat <= 20:
        parser.error("--followers >= 1, --prefill >= 0 and --repeat in 1..20, please")
    if args.profile:
        args.no_write = True
    return args


def follower_names(count: int) -> list[str]:
    return [f"fan{n:07d}" for n in range(count)]


async def within(seconds: float, what: str, awaitable):
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        raise SystemExit(f"gave up: {what} took longer than --max-seconds={seconds:.0f}") from None


async def create_followers(redis, names: list[str], *, author: str = AUTHOR) -> None:
    """User hashes, the author's followers set, each follower's following set: pipelined chunks."""
    progress = Progress("followers created", len(names))
    now = repr(time.time())
    for start in range(0, len(names), SETUP_CHUNK):
        chunk = names[start:start + SETUP_CHUNK]
        pipe = redis.pipeline(transaction=False)
        for name in chunk:
            pipe.hset(keys.user(name), mapping={"username": name, "display_name": name, "bio": "",
                                                "created_at": now, "tweets": 0})
            pipe.zadd(keys.following(name), {author: 0})
        pipe.zadd(keys.usernames, {name: 0 for name in chunk})
        pipe.zadd(keys.followers(author), {name: 0 for name in chunk})
        await pipe.execute()
        progress.update(start + len(chunk))
    progress.done()


async def prefill_timelines(redis, names: list[str], entries: int, max_length: int) -> None:
    """Give every follower a home timeline of ``entries`` ids minted over the last week.

    One template list is built and copied (``COPY``, Redis 6.2+) to each follower: the
    lists are as long and encoded as production ones, and the setup takes seconds.
    """
    if entries == 0:
        return
    now = time.time()
    span = 7 * DAY
    moment = [now - span]
    generator = IdGenerator(worker_id=0, clock=lambda: moment[0])
    ids: list[int] = []
    for n in range(entries):  # oldest first: each LPUSH puts the next newer id at the head
        moment[0] = now - span + span * n / entries
        ids.append(generator.next_id())
    await redis.delete(TEMPLATE_KEY)
    for start in range(0, entries, 1000):
        await redis.lpush(TEMPLATE_KEY, *ids[start:start + 1000])
    await redis.ltrim(TEMPLATE_KEY, 0, max_length - 1)
    version = tuple(int(part) for part in (await redis.info("server"))["redis_version"].split(".")[:2])
    progress = Progress("home timelines pre-filled", len(names))
    for start in range(0, len(names), SETUP_CHUNK):
        chunk = names[start:start + SETUP_CHUNK]
        pipe = redis.pipeline(transaction=False)
        for name in chunk:
            if version >= (6, 2):
                pipe.copy(TEMPLATE_KEY, keys.home_timeline(name), replace=True)
            else:
                pipe.delete(keys.home_timeline(name))
                pipe.lpush(keys.home_timeline(name), *ids[-max_length:])
        await pipe.execute()
        progress.update(start + len(chunk))
    progress.done()
    await redis.delete(TEMPLATE_KEY)


async def next_job(engine: Engine, worker: FanoutWorker) -> FanoutJob:
    """Post a tweet and read its job from the stream as a worker would."""
    await engine.tweets.post(AUTHOR, "hello to all of you")
    tag = engine.fanout_queue.tag_of(AUTHOR)
    answer = await engine.redis.xreadgroup(keys.FANOUT_GROUP, worker.consumer, {keys.fanout_stream(tag): ">"},
                                           count=1)
    [(_, [(entry_id, fields)])] = answer
    return FanoutJob(tag, entry_id, fields)


async def finish_job(engine: Engine, job: FanoutJob, worker: FanoutWorker) -> None:
    await worker.finish(job)


async def redis_cpu(redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def length_after(prefill: int, pushes: int, max_length: int) -> int:
    """A list's length after ``pushes`` onto ``prefill`` entries (capped), as the push script
    trims it: to ``max_length`` each time the length reaches a multiple of ``TRIM_EVERY``."""
    length = min(prefill, max_length)
    for _ in range(pushes):
        length += 1
        if length % TRIM_EVERY == 0 and length > max_length:
            length = max_length
    return length


async def check_delivery(redis, names: list[str], tweet_id: int, expected_length: int) -> None:
    """A sample of followers has the tweet at the head, once, and a capped list."""
    sample = random.sample(names, min(2000, len(names)))
    pipe = redis.pipeline(transaction=False)
    for name in sample:
        pipe.lindex(keys.home_timeline(name), 0)
        pipe.llen(keys.home_timeline(name))
        pipe.lpos(keys.home_timeline(name), tweet_id, count=0)
    answers = await pipe.execute()
    for name, head, length, positions in zip(sample, answers[0::3], answers[1::3], answers[2::3]):
        if head is None or int(head) != tweet_id or length != expected_length or positions != [0]:
            raise SystemExit(f"fan-out check failed for {name}: head {head}, length {length}, at {positions}")


async def open_fanout(url: str, environ: dict) -> tuple[Engine, FanoutWorker, FanoutJob]:
    """An engine on ``url``, a worker of the author's shard, and the job of a new tweet."""
    engine = await Engine.open(Settings.load(environ={"REDIS_URL": url, **PUSH_ONLY, **environ}))
    worker = engine.new_fanout_worker([engine.fanout_queue.tag_of(AUTHOR)])
    return engine, worker, await next_job(engine, worker)


def show_progress(worker: FanoutWorker, label: str, total: int) -> tuple[Progress, asyncio.Task]:
    """A progress bar of the entries ``worker`` writes, updated four times a second."""
    progress = Progress(label, total)

    async def update() -> None:
        while True:
            await asyncio.sleep(0.25)
            progress.update(worker.entries_written)

    return progress, asyncio.create_task(update())


async def timed_fanout(url: str, batch_size: int, names: list[str], args, runs_before: int,
                       profiler=None) -> dict:
    engine, worker, job = await open_fanout(url, {"FANOUT_BATCH_SIZE": str(batch_size)})
    try:
        progress, shower = show_progress(worker, f"batch {batch_size}: entries written", len(names))
        cpu_redis, cpu_self = await redis_cpu(engine.redis), time.process_time()
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        try:
            await within(args.max_seconds, f"the fan-out with batch size {batch_size}",
                         worker.run_job(job, resumed=False))
        finally:
            elapsed = time.perf_counter() - started
            if profiler:
                profiler.disable()
            shower.cancel()
        cpu_self = time.process_time() - cpu_self
        cpu_redis = await redis_cpu(engine.redis) - cpu_redis
        progress.done(worker.entries_written)
        await finish_job(engine, job, worker)
        await check_delivery(engine.redis, names, job.tweet_id,
                             length_after(args.prefill, runs_before + 1, engine.settings.timeline_max_length))
        entries = max(worker.entries_written, 1)
        return {"batch_size": batch_size, "entries": worker.entries_written, "seconds": elapsed,
                "rate": worker.entries_written / elapsed, "python_cpu": cpu_self / elapsed,
                "redis_cpu": cpu_redis / elapsed, "redis_us": cpu_redis / entries * 1e6,
                "python_us": cpu_self / entries * 1e6}
    finally:
        await engine.close()


def report(runs: list[dict], args) -> tuple[str, dict[int, float]]:
    best: dict[int, float] = {}
    lines = [
        f"One tweet to {args.followers:,} followers whose home timelines already hold {args.prefill} "
        f"entries (full lists: every {TRIM_EVERY}th push onto one also trims it back to 800). Each figure is one timed "
        f"`FanoutWorker.run_job` of a real job (`Tweets.post`, read with `XREADGROUP`), "
        f"{args.repeat} run(s) per batch size; best and median of entries per second. CPU columns: "
        "share of one core used during the run by this Python process and by redis-server "
        "(they take turns: the worker waits for each pipeline before it builds the next); the µs/entry "
        "columns (medians) are CPU time per entry, which other load on the machine disturbs less than "
        f"the rates. Load average when the runs started: {args.load_before}. Nobody is "
        "subscribed to the live channels, so each PUBLISH finds no receiver; online followers would add "
        "the cost of writing to their subscriber connections.",
        "",
        "| FANOUT_BATCH_SIZE | entries | best entries/s | median entries/s | seconds (best) "
        "| Python CPU | redis-server CPU | redis-server µs/entry | Python µs/entry |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in args.batch_sizes:
        mine = [run for run in runs if run["batch_size"] == size]
        top = max(mine, key=lambda run: run["rate"])
        best[size] = top["rate"]
        lines.append(f"| {size} | {top['entries']:,} | **{top['rate']:,.0f}** "
                     f"| {statistics.median(run['rate'] for run in mine):,.0f} | {top['seconds']:.2f} "
                     f"| {top['python_cpu']:.0%} | {top['redis_cpu']:.0%} "
                     f"| {statistics.median(run['redis_us'] for run in mine):.2f} "
                     f"| {statistics.median(run['python_us'] for run in mine):.2f} |")
    winner = max(best, key=best.get)
    verdict = "met" if best[winner] >= TARGET else "MISSED"
    lines += ["", f"Target: at least {TARGET:,} entries/s on this machine: **{verdict}** "
                  f"(best {best[winner]:,.0f} entries/s at batch size {winner})."]
    return "\n".join(lines), best


TITLE = "Fan-out throughput: one tweet to many followers"


async def collect(args) -> tuple[list[dict], dict]:
    """Set up the followers in a private redis-server and time every batch size: (runs, INFO server)."""
    names = follower_names(args.followers)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    runs: list[dict] = []
    with private_redis() as server:
        print(f"private redis-server on port {server.port} (pid {server.process.pid})")
        setup = await Engine.open(Settings.load(environ={"REDIS_URL": server.url}))
        try:
            info = await setup.redis.info("server")
            await setup.users.create(AUTHOR)
            await within(args.max_seconds, "creating the followers", create_followers(setup.redis, names))
            await within(args.max_seconds, "pre-filling the timelines",
                         prefill_timelines(setup.redis, names, args.prefill, setup.settings.timeline_max_length))
            memory = (await setup.redis.info("memory"))["used_memory_human"]
            print(f"  redis used_memory after setup: {memory}")
        finally:
            await setup.close()
        args.load_before = " / ".join(f"{load:.2f}" for load in os.getloadavg())
        for round_number in range(args.repeat):
            for size in args.batch_sizes:
                run = await timed_fanout(server.url, size, names, args, len(runs), profiler)
                runs.append(run)
                print(f"  round {round_number + 1}, batch {size}: {run['rate']:,.0f} entries/s "
                      f"({run['seconds']:.2f}s; Python {run['python_cpu']:.0%}, redis {run['redis_cpu']:.0%} CPU; "
                      f"{run['redis_us']:.2f} µs redis, {run['python_us']:.2f} µs Python per entry)")
    if profiler:
        profiler.dump_stats(args.profile)
        print(f"profile written to {args.profile} (python -m pstats {args.profile})")
    return runs, info


async def measure(quick: bool = False) -> dict:
    """The ``python -m bench`` interface: 100,000 followers (10,000 and one batch size with ``quick``)."""
    argv = ["--followers", "10000", "--batch-sizes", "1000", "--repeat", "1"] if quick else []
    args = parse_args(argv)
    command = command_line("bench.fanout_throughput", argv)
    try:
        runs, _ = await collect(args)
    except SystemExit as exc:  # the checks above stop with SystemExit
        return {"name": NAME, "title": TITLE, "command": command, "body": f"Failed: {exc}", "figures": {},
                "problems": [f"{NAME}: {exc}"]}
    body, best = report(runs, args)
    fastest = min(runs, key=lambda run: run["seconds"])
    figures = {"followers": args.followers, "best_entries_per_s": max(best.values()),
               "seconds_best": fastest["seconds"], "batch_size_best": fastest["batch_size"]}
    return {"name": NAME, "title": TITLE, "command": command, "body": body, "figures": figures, "problems": []}


async def main(args) -> None:
    runs, info = await collect(args)
    body, best = report(runs, args)
    print()
    print(body)
    if not args.no_write:
        write_section(NAME, TITLE,
                      command=command_line("bench.fanout_throughput"), machine_line=machine(info), body=body,
                      notes="", history_header=["revision", "label", "followers × prefill",
                                                "best entries/s by batch size"],
                      history_row=[git_revision(), args.label or "-", f"{args.followers:,}×{args.prefill}",
                                   ", ".join(f"{size}: {best[size]:,.0f}" for size in args.batch_sizes)])
        print("\nwrote the fanout_throughput section of BENCHMARKS.md")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
