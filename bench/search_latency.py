"""Search latency over the HTTP API: our prefix indexes against the seed's SSCAN, 100k and 1M users.

    python -m bench.search_latency [--sizes 100000,1000000] [--hashtags 100000] [--tweets 100000]
                                   [--queries 2000] [--baseline-queries 100]

For each number of users: a private redis-server, filled by ``bench.seed_data.seed``
(``--hashtags`` Zipf-used hashtags, ``--tweets`` tweets), then two real uvicorn processes
on it, each asked the same inputs one at a time over keep-alive HTTP:

- ours: the service (``http_api.app:create_app_from_env``), ``GET /tweet/search/{input}``;
- the seed's approach, implemented here only (``baseline_app``): the usernames and the
  hashtags kept in plain sets (``bench:sscan:*``, filled from the same data), answered by
  ``SSCAN ... MATCH prefix* COUNT 1000`` to the end of the set, matches sorted, the 10 first
  usernames shown as chosen, the 3 most used tags (by the same use counts).

Inputs, a quarter each, drawn from the data: a bare prefix of 1-4 letters of a username
(users and hashtags), ``@`` + 2-5 letters (users), ``#`` + 1-3 letters of a tag (hashtags,
tweets when the prefix is a tag), ``#`` + a whole popular tag (hashtags and its 10 latest
tweets). The baseline is asked the bare prefixes (``--baseline-queries`` of them: it reads
the whole set each time). Client time is the request as httpx sees it; server time is
the ``Server-Timing`` header, the handler's own time (input parsing, Redis calls, JSON),
which both apps set the same way. Redis ``INFO commandstats`` gives the time per command
inside Redis. The result goes to the ``search_latency`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from launcher.embedded_redis import free_port, stop_child
from realtime.redis_client import make_redis
from realtime.ids import IdGenerator
from realtime.search import MAX_HASHTAGS, MAX_USERS, HashtagIndex, parse_query
from realtime.timelines import Timelines

from .common import ROOT, command_line, git_revision, machine, private_redis, write_section
from .seed_data import seed, zipf_weights

NAME = "search_latency"
TARGET_P99_MS = 5.0
BASELINE_USERS = "bench:sscan:usernames"
BASELINE_TAGS = "bench:sscan:hashtags"
SSCAN_COUNT = 1000
KINDS = ("prefix", "@user", "#prefix", "#tag")
BLOCK = 50
WORKER_FOR_RECORDS = 126
COMMANDS = ("evalsha", "zrangebylex", "hget", "lrange", "hgetall", "sscan", "zmscore")


# -- the seed's approach, served the same way -------------------------------------------------

def baseline_app():
    """A uvicorn factory: GET /tweet/search/{tag} answered with SSCAN MATCH over plain sets."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from http_api.errors import EXCEPTION_HANDLERS
    from http_api.responses import Json

    redis = make_redis(os.environ["BASELINE_REDIS_URL"])

    async def scan(key: str, prefix: str) -> list[str]:
        matches, cursor = [], 0
        while True:
            cursor, found = await redis.sscan(key, cursor, match=prefix + "*", count=SSCAN_COUNT)
            matches += found
            if cursor == 0:
                return matches

    async def search(request):
        started = time.perf_counter()
        query = parse_query(request.path_params["tag"])
        users, hashtags = [], []
        if query.users:
            lowers = sorted(await scan(BASELINE_USERS, query.prefix))[:MAX_USERS]
            if lowers:
                pipe = redis.pipeline(transaction=False)
                for lower in lowers:
                    pipe.hget(f"user:{{{lower}}}", "username")
                users = [name for name in await pipe.execute() if name]
        if query.hashtags:
            tags = await scan(BASELINE_TAGS, query.prefix)
            if tags:
                counts = await redis.zmscore("{tags}:uses", tags)
                ranked = sorted(zip(tags, counts), key=lambda item: (-(item[1] or 0), item[0]))
                hashtags = ["#" + tag for tag, _ in ranked[:MAX_HASHTAGS]]
        answer = Json({"users": users, "hashtags": hashtags, "tweets": []})
        answer.headers["Server-Timing"] = f"search;dur={(time.perf_counter() - started) * 1000:.3f}"
        return answer

    return Starlette(routes=[Route("/tweet/search/{tag}", search), Route("/healthz", lambda r: Json({}))],
                     exception_handlers=EXCEPTION_HANDLERS)


# -- servers ----------------------------------------------------------------------------------

class Server:
    """A uvicorn child process running an app factory on a free port, stopped by its pid."""

    def __init__(self, factory: str, env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{factory.split(':')[-1]}-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
                cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{factory} exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{factory} did not answer /healthz within 30 s")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_child(self.process)


# -- inputs and timing ------------------------------------------------------------------------

def make_inputs(report, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, input) pairs, a quarter of each kind, in a random order."""
    names, tags = report.usernames, report.hashtag_names
    popular = tags[:1000]
    inputs = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        if kind == "prefix":
            text = rng.choice(names)[:rng.choice((1, 2, 2, 3, 3, 4))].lower()
        elif kind == "@user":
            text = "@" + rng.choice(names)[:rng.randint(2, 5)]
        elif kind == "#prefix":
            text = "#" + rng.choice(tags)[:rng.randint(1, 3)]
        else:
            text = "#" + popular[min(int(rng.paretovariate(1.0)) - 1, len(popular) - 1)]
        inputs.append((kind, text))
    rng.shuffle(inputs)
    return inputs


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


_DUR = re.compile(r"dur=([0-9.]+)")


def run_queries(url: str, inputs: list[tuple[str, str]], warmup: int) -> dict[str, dict[str, list[float]]]:
    """{kind: {"client": [ms], "server": [ms]}}, one request at a time on one keep-alive connection."""
    timings: dict[str, dict[str, list[float]]] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for number, (kind, text) in enumerate(inputs[:warmup] + inputs):
            path = "/tweet/search/" + text.replace("#", "%23")
            started = time.perf_counter()
            answer = client.get(path)
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                raise SystemExit(f"{url}{path} answered {answer.status_code}: {answer.text}")
            if number < warmup:
                continue
            server = float(_DUR.search(answer.headers["server-timing"]).group(1))
            entry = timings.setdefault(kind, {"client": [], "server": []})
            entry["client"].append(elapsed)
            entry["server"].append(server)
    return timings


async def command_stats(url: str, *, reset: bool = False) -> dict[str, tuple[int, float]]:
    """{command: (calls, µs per call)} from INFO commandstats; ``reset`` zeroes them first."""
    redis = make_redis(url)
    try:
        if reset:
            await redis.config_resetstat()
            return {}
        stats = await redis.info("commandstats")
    finally:
        await redis.aclose()
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec_per_call"]))
            for name, v in stats.items() if name.removeprefix("cmdstat_") in COMMANDS}


async def fill_baseline_sets(url: str, report) -> None:
    redis = make_redis(url)
    try:
        for key, members in ((BASELINE_USERS, [name.lower() for name in report.usernames]),
                             (BASELINE_TAGS, report.hashtag_names)):
            for start in range(0, len(members), 5000):
                await redis.sadd(key, *members[start:start + 5000])
    finally:
        await redis.aclose()


async def seed_redis(url: str, users: int, args) -> tuple:
    redis = make_redis(url)
    try:
        report = await seed(redis, users=users, hashtags=args.hashtags, tweets=args.tweets, rng_seed=args.seed)
        info = await redis.info()
        usernames_bytes = await redis.memory_usage("usernames", samples=0)
    finally:
        await redis.aclose()
    return report, info, usernames_bytes


async def record_cost(url: str, report, uses: int, rng: random.Random) -> dict[str, tuple[int, float]]:
    """What ``Tweets.post`` adds per hashtag: ``HashtagIndex.record`` of Zipf-drawn tags (one in ten new),
    one call at a time; {"evalsha": (calls, µs per call inside Redis)}."""
    redis = make_redis(url)
    try:
        index = HashtagIndex(redis, Timelines(redis, max_age=30 * 86400.0, max_length=800))
        ids = IdGenerator(WORKER_FOR_RECORDS)
        cumulative = zipf_weights(len(report.hashtag_names))
        await redis.config_resetstat()
        for n in range(uses):
            if n % 10 == 0:
                tag = f"{rng.choice(report.hashtag_names)[:90]}{n}x"
            else:
                tag = report.hashtag_names[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]
            await index.record([tag], ids.next_id())
        stats = await redis.info("commandstats")
    finally:
        await redis.aclose()
    entry = stats["cmdstat_evalsha"]
    return {"evalsha": (int(entry["calls"]), float(entry["usec_per_call"]))}


def merge(into: dict, timings: dict) -> None:
    for kind, entry in timings.items():
        target = into.setdefault(kind, {"client": [], "server": []})
        target["client"] += entry["client"]
        target["server"] += entry["server"]


def measure_sizes(args, log_dir: Path) -> list[dict]:
    """Seed every size, then time ours on all of them in interleaved blocks (so that whatever else
    runs on the machine weighs on each size alike), then the SSCAN baseline on each."""
    with contextlib.ExitStack() as stack:
        results = []
        for users in args.sizes:
            server = stack.enter_context(private_redis())
            print(f"\n== {users:,} users, {args.hashtags:,} hashtags, {args.tweets:,} tweets "
                  f"(redis-server pid {server.process.pid}, port {server.port})")
            report, info, usernames_bytes = asyncio.run(seed_redis(server.url, users, args))
            asyncio.run(fill_baseline_sets(server.url, report))
            inputs = make_inputs(report, args.queries, random.Random(args.seed))
            env = {"REDIS_URL": server.url, "DEV_SIGNIN": "on", "LOG_LEVEL": "warning", "TIMELINE_MAX_AGE": "30d"}
            ours = Server("http_api.app:create_app_from_env", env, log_dir)
            stack.callback(ours.stop)
            results.append({"users": users, "info": info, "usernames_bytes": usernames_bytes, "report": report,
                            "redis_url": server.url, "server": ours, "ours_url": ours.url, "inputs": inputs, "ours": {},
                            "load": [os.getloadavg()[0]]})
        for result in results:
            run_queries(result["ours_url"], result["inputs"], warmup=0)  # meets and drops the aged-out tags
            run_queries(result["ours_url"], result["inputs"][:200], warmup=0)
            asyncio.run(command_stats(result["redis_url"], reset=True))
        print(f"\n  ours: {args.queries:,} queries per size, in blocks of {BLOCK} taking turns")
        for start in range(0, args.queries, BLOCK):
            for result in results:
                merge(result["ours"], run_queries(result["ours_url"], result["inputs"][start:start + BLOCK], warmup=0))
        for result in results:
            result["ours_redis"] = asyncio.run(command_stats(result["redis_url"]))
            result["load"].append(os.getloadavg()[0])
            result.pop("server").stop()  # nothing of ours runs beside the baseline
        for result in results:
            result["record_redis"] = asyncio.run(record_cost(result["redis_url"], result["report"], args.records,
                                                             random.Random(args.seed)))
        for result in results:
            baseline_inputs = [item for item in result["inputs"] if item[0] == "prefix"][:args.baseline_queries]
            baseline = Server("bench.search_latency:baseline_app", {"BASELINE_REDIS_URL": result["redis_url"]},
                              log_dir)
            try:
                asyncio.run(command_stats(result["redis_url"], reset=True))
                print(f"  SSCAN baseline, {result['users']:,} users: {len(baseline_inputs):,} queries")
                result["baseline"] = run_queries(baseline.url, baseline_inputs, warmup=5)
                result["baseline_redis"] = asyncio.run(command_stats(result["redis_url"]))
            finally:
                baseline.stop()
        return results


# -- the report -------------------------------------------------------------------------------

def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def report(results: list[dict], args) -> str:
    lines = ["| users | implementation | input | queries | server p50 ms | server p99 ms | client p50 ms | "
             "client p99 ms |", "|---|---|---|---|---|---|---|---|"]
    worst = 0.0
    for result in results:
        for label, key in (("ours", "ours"), ("seed: SSCAN MATCH", "baseline")):
            timings = result[key]
            kinds = [kind for kind in KINDS if kind in timings]
            every = {"client": [v for k in kinds for v in timings[k]["client"]],
                     "server": [v for k in kinds for v in timings[k]["server"]]}
            rows = [(kind, timings[kind]) for kind in kinds] + ([("all", every)] if len(kinds) > 1 else [])
            for kind, t in rows:
                p99 = percentile(t["server"], 99)
                if key == "ours":
                    worst = max(worst, p99)
                bold = "**" if key == "ours" and kind == "all" else ""
                lines.append(f"| {result['users']:,} | {label} | {kind} | {len(t['server']):,} | "
                             f"{_ms(percentile(t['server'], 50))} | {bold}{_ms(p99)}{bold} | "
                             f"{_ms(percentile(t['client'], 50))} | {_ms(percentile(t['client'], 99))} |")
    ours_all = [percentile([v for k in r["ours"].values() for v in k["server"]], 99) for r in results]
    met = "met" if worst < TARGET_P99_MS else "NOT met"
    flat = (f"p99 of all inputs {_ms(ours_all[0])} ms at {results[0]['users']:,} users and "
            f"{_ms(ours_all[-1])} ms at {results[-1]['users']:,}") if len(results) > 1 else ""
    redis_lines = ["| users | implementation | command | calls | µs per call (inside Redis) |", "|---|---|---|---|---|"]
    for result in results:
        for label, key in (("ours", "ours_redis"), ("ours: recording a use (`Tweets.post`)", "record_redis"),
                           ("seed: SSCAN MATCH", "baseline_redis")):
            for command, (calls, usec) in sorted(result[key].items()):
                redis_lines.append(f"| {result['users']:,} | {label} | {command} | {calls:,} | {usec:,.1f} |")
    memory_lines = ["| users | hashtags (live) | seed time | used_memory | `usernames` index | hashtag index | "
                    "load average (1 min) before / after the queries |", "|---|---|---|---|---|---|---|"]
    for result in results:
        seeded = result["report"]
        memory_lines.append(
            f"| {result['users']:,} | {seeded.hashtags:,} ({seeded.live_hashtags:,}) | "
            f"{sum(seeded.seconds.values()):.0f} s | {int(result['info']['used_memory']) / 2**20:,.0f} MiB | "
            f"{result['usernames_bytes'] / 2**20:,.1f} MiB | {seeded.memory['hashtag index'] / 2**20:,.1f} MiB | "
            f"{result['load'][0]:.2f} / {result['load'][1]:.2f} |")
    return "\n".join([
        f"Each size in a fresh private redis-server seeded by `bench.seed_data` ({args.hashtags:,} hashtags with "
        f"Zipf-distributed uses, {args.tweets:,} tweets, 15% of the tags without tweets aged out), one uvicorn "
        "process per implementation, one request at a time over a keep-alive connection (after 200 warm-up "
        "requests, and for ours after a first pass that meets and drops the aged-out tags; ours is timed on "
        f"every size in turn, {BLOCK} requests at a time, so that other load on the machine weighs on each alike). Inputs: `prefix` = 1-4 "
        "letters of a username (users and hashtags), `@user` = `@` + 2-5 letters, `#prefix` = `#` + 1-3 letters of "
        "a tag, `#tag` = `#` + a whole popular tag (with its 10 latest tweets). Server time: the `Server-Timing` "
        "header (the handler's own time: parsing, every Redis call, JSON). The SSCAN baseline is the seed's "
        f"approach implemented in the benchmark only: plain sets, `SSCAN MATCH prefix* COUNT {SSCAN_COUNT}` to the "
        "end, asked the `prefix` inputs.",
        "", *lines, "",
        f"Target: p99 server time under {TARGET_P99_MS:.0f} ms for every input kind, flat from 100k to 1M users: "
        f"**{met}** (worst p99 {_ms(worst)} ms; {flat}).",
        "", "Inside Redis (`INFO commandstats` over each measured run; the recording row: "
        f"{args.records:,} `HashtagIndex.record` calls of Zipf-drawn tags, one in ten new, after the queries):",
        "", *redis_lines, "",
        "Data set and memory (`hashtag index` = `used_memory` growth while the index was written: use counts, "
        "newest use, name index, per-prefix top sets). The machine's load average shows what else ran beside "
        f"the benchmark ({os.cpu_count()} cores):", "", *memory_lines,
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.search_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="numbers of users (default 100000,1000000)")
    parser.add_argument("--hashtags", type=int, default=100_000, help="hashtags (default 100000)")
    parser.add_argument("--tweets", type=int, default=100_000, help="tweets (default 100000)")
    parser.add_argument("--queries", type=int, default=2000, help="timed queries against ours per size (default 2000)")
    parser.add_argument("--baseline-queries", type=int, default=100,
                        help="timed queries against the SSCAN baseline per size (default 100)")
    parser.add_argument("--records", type=int, default=5000,
                        help="hashtag uses recorded to time the write side (default 5000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    except ValueError:
        parser.error("--sizes must be whole numbers separated by commas")
    if not args.sizes or min(args.sizes) < 1 or args.queries < 8 or args.baseline_queries < 1:
        parser.error("--sizes >= 1, --queries >= 8, --baseline-queries >= 1, please")
    return args


TITLE = "Search latency: prefix search over HTTP, 100k and 1M users"
QUICK_ARGV = ["--sizes", "10000", "--hashtags", "5000", "--tweets", "5000", "--queries", "200",
              "--baseline-queries", "20", "--records", "200"]


async def measure(quick: bool = False) -> dict:
    """The ``python -m bench`` interface; ``quick``: 10,000 users, 200 queries. The measuring
    code is synchronous (its own event loops), so it runs in a thread."""
    argv = QUICK_ARGV if quick else []
    args = parse_args(argv)
    command = command_line("bench.search_latency", argv)

    def run() -> list[dict]:
        with tempfile.TemporaryDirectory(prefix="chirp-search-bench-") as log_dir:
            return measure_sizes(args, Path(log_dir))

    try:
        results = await asyncio.to_thread(run)
    except SystemExit as exc:
        return {"name": NAME, "title": TITLE, "command": command, "body": f"Failed: {exc}", "figures": {},
                "problems": [f"{NAME}: {exc}"]}
    worst = max(percentile(timings["server"], 99) for result in results for timings in result["ours"].values())
    figures = {"users": [result["users"] for result in results], "worst_p99_ms": worst,
               "target_met": worst < TARGET_P99_MS}
    return {"name": NAME, "title": TITLE, "command": command, "body": report(results, args), "figures": figures,
            "problems": []}


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="chirp-search-bench-") as log_dir:
        results = measure_sizes(args, Path(log_dir))
    body = report(results, args)
    print()
    print(body)
    if not args.no_write:
        def all_p99(result: dict, key: str) -> str:
            return _ms(percentile([v for kind in result[key].values() for v in kind["server"]], 99))

        write_section(NAME, TITLE,
                      command=command_line("bench.search_latency"), machine_line=machine(results[0]["info"]),
                      body=body,
                      history_header=["revision", "users", "ours p99 server ms (all inputs)",
                                      "SSCAN p99 server ms"],
                      history_row=[git_revision(("realtime", "http_api")),
                                   ", ".join(f"{r['users']:,}" for r in results),
                                   ", ".join(all_p99(r, "ours") for r in results),
                                   ", ".join(all_p99(r, "baseline") for r in results)])
        print("\nwrote the search_latency section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
