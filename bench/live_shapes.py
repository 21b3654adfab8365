"""Two load shapes from the issue: a celebrity, and a connection storm.

    python -m bench.live_shapes [--quick] [--no-write] [--only celebrity|storm]

**Celebrity A**: one poster, N followers (10,000; quick 1,000) each with a live socket.
The poster posts a few tweets (10 at 1/s; quick 3 at 2/s) from a process of its own; per
tweet: POST sent → first / median / p99 / last delivery over every socket.

**Celebrity B**: one poster with 100,000 followers (quick 10,000) of whom 2,000 (quick
200) are users with a socket; the others exist only as members of the poster's
``followers:{poster}`` sorted set (the fan-out writes a home timeline for each without
asking whether the account exists). Tweets are posted one at a time; the fan-out time is
POST sent → the tweet is at the head of the home timeline of the lexicographically last
follower (the fan-out walks the set in that order), polled every 5 ms; afterwards every
one of the 100,000 timelines is checked for every tweet.

**Connection storm**: U users (5,000; quick 500) each follow P posters (5); P × 10 tweets
are posted after a marker tweet, so every home timeline holds 50 entries newer than it.
The service is restarted, then the U sockets connect at evenly spread times within W s
(10; quick 5), each sending ``{"type": "auth", "token", "since": <marker id>}``, while the
posters keep posting 2 tweets/s. Each socket must replay exactly the 50 (plus any live
tweet already in its timeline), get ``ready`` with that count, and every live tweet once.

Only the public API (HTTP, ``/ws``), the ``followers:{name}`` set and ``tl:home:{name}``
lists are used, so the benchmark does not depend on how the service delivers internally.
Sockets and posts come from processes of their own (``bench.load_generator``'s, or this
module's storm process), whose CPU (utime+stime) is reported; a generator process above
85% of a core is called out as a possible bottleneck. Missing, duplicated or unexpected
deliveries and errors are listed as problems (exit status 1); a time never is.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .common import (PUSH_ONLY, Progress, command_line, finish_cli, machine, private_redis, raise_open_files_limit,
                     rss_bytes, run_in_child)
from .load_generator import (NOISY, SATURATED, SPAWN, BenchError, CpuMark, Plan, PosterProcess, Service,
                             SocketProcesses, check_deliveries, cpu_table, create_users, percentile,
                             recv_from_child, settle)

__all__ = ["Sizes", "FULL", "QUICK", "measure", "main"]

NAME = "live_shapes"
TITLE = "Live shapes: a celebrity's followers, and a connection storm"
SETUP_CONCURRENCY = 32
MAX_SECONDS = 300.0  # one setup step taking longer than this is a failure
DRAIN = 20.0  # seconds to wait for deliveries still on their way after the last POST
GRACE = 0.5  # seconds to keep listening once everything arrived, to catch duplicates
SERIES_POINTS = 5000  # longer series are thinned to this many evenly spaced ranks


@dataclasses.dataclass(frozen=True)
class Sizes:
    celebrity_sockets: int  # A: followers, one socket each
    celebrity_tweets: int
    celebrity_rate: float  # tweets/s, open loop
    big_followers: int  # B: members of followers:{poster}
    big_sockets: int  # B: of which users with a socket
    big_tweets: int
    storm_users: int
    storm_posters: int
    storm_per_poster: int  # tweets per poster after the marker: posters × this are replayed
    storm_window: float  # seconds over which the storm's sockets start
    storm_live_rate: float  # tweets/s posted during the storm
    socket_procs: int  # generator processes holding the sockets


FULL = Sizes(10_000, 10, 1.0, 100_000, 2_000, 3, 5_000, 5, 10, 10.0, 2.0, 2)
QUICK = Sizes(1_000, 3, 2.0, 10_000, 200, 3, 500, 5, 10, 5.0, 2.0, 1)


@dataclasses.dataclass
class Context:
    service: Service
    redis_pid: int
    redis_url: str
    redis: object  # redis.Redis (sync, decode_responses)


# -- helpers ------------------------------------------------------------------------------

async def _post(client, token: str, text: str) -> tuple[str, float]:
    """POST /tweets; answers (id, time.time() just before sending)."""
    sent = time.time()
    answer = await client.post("/tweets", json={"content": text}, headers={"Authorization": f"Bearer {token}"})
    if answer.status_code != 201:
        raise BenchError(f"POST /tweets answered {answer.status_code}: {answer.text[:200]}")
    return answer.headers["location"].rsplit("/", 1)[1], sent


def _thin(values: list[float]) -> list[float]:
    """At most SERIES_POINTS of an ascending list, evenly spaced by rank (first and last kept)."""
    if len(values) <= SERIES_POINTS:
        return [round(v, 2) for v in values]
    step = (len(values) - 1) / (SERIES_POINTS - 1)
    return [round(values[round(i * step)], 2) for i in range(SERIES_POINTS)]


def _generator_shares(cpu: dict) -> dict[str, float]:
    wall = cpu["wall"] or 1e-9
    shares = {f"socket process {i}": s / wall for i, s in enumerate(cpu["sockets"])}
    if cpu["poster"]:
        shares["poster process"] = cpu["poster"] / wall
    shares["main process"] = cpu["main"] / wall
    return shares


def _generator_line(cpu: dict) -> str:
    """Whether a generator process was near a full core; and whether others shared the machine."""
    shares = _generator_shares(cpu)
    text = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    if any(share >= SATURATED for share in shares.values()):
        line = f"**The generator may be the bottleneck**: {text} of a core (≥ {SATURATED:.0%})."
    else:
        line = f"Generator CPU: {text} of a core (none above {SATURATED:.0%}: not the bottleneck)."
    others = cpu["others"] / (cpu["wall"] or 1e-9)
    if others >= NOISY:
        line += f" Processes not ours used {others:.2f} cores meanwhile: the times are disturbed by them."
    return line


def _socket_problems(label: str, opening: dict, rows: list) -> list[str]:
    errors = list(opening["errors"])
    errors += [f"{user}: closed by the server (code {close})" for user, *_, error, close in rows
               if close is not None and not error]
    return [f"{label}: {len(errors)} socket errors, e.g. " + "; ".join(errors[:3])] if errors else []


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


# -- celebrity ----------------------------------------------------------------------------

def _per_tweet(records: list, rows: list, sockets: int) -> list[dict]:
    """For each tweet (in posting order): its deliveries' latency from POST sent (ms)."""
    arrivals: dict[str, list[float]] = {tweet_id: [] for tweet_id, *_ in records}
    pairs: dict[str, set[str]] = {tweet_id: set() for tweet_id in arrivals}
    for user, got, *_ in rows:
        for tweet_id, at, _timestamp in got:
            if tweet_id in arrivals:
                arrivals[tweet_id].append(at)
                pairs[tweet_id].add(user)
    lines = []
    for tweet_id, _author, sent, *_ in sorted(records, key=lambda r: r[2]):
        times = sorted(arrivals[tweet_id])
        ms = [(t - sent) * 1000 for t in times]
        burst = times[-1] - times[0] if len(times) > 1 else 0.0
        lines.append({"id": tweet_id, "n": len(ms), "first": ms[0] if ms else float("nan"),
                      "p50": percentile(ms, 50), "p99": percentile(ms, 99), "last": ms[-1] if ms else float("nan"),
                      "rate": len(ms) / burst if burst > 0 else float("nan"),
                      "missing": sockets - len(pairs[tweet_id]), "duplicated": len(ms) - len(pairs[tweet_id]),
                      "ms": ms})
    return lines


def _tweet_table(lines: list[dict], fanout: dict[str, float] | None = None) -> list[str]:
    head = "| tweet | deliveries | first ms | p50 ms | p99 ms | last ms | deliveries/s in the burst | missing | duplicated |"
    rule = "|---|---|---|---|---|---|---|---|---|"
    if fanout is not None:
        head, rule = head.replace("| deliveries |", "| fan-out s | deliveries |", 1), rule + "---|"
    table = [head, rule]
    for number, line in enumerate(lines, 1):
        cells = [str(number)]
        if fanout is not None:
            seconds = fanout.get(line["id"])
            cells.append(f"{seconds:.2f}" if seconds is not None else "not seen")
        cells += [f"{line['n']:,}", _ms(line["first"]), _ms(line["p50"]), _ms(line["p99"]), _ms(line["last"]),
                  f"{line['rate']:,.0f}", str(line["missing"]), str(line["duplicated"])]
        table.append("| " + " | ".join(cells) + " |")
    return table


async def _celebrity_setup(ctx: Context, label: str, followers: int, sockets: int) -> tuple[Plan, dict, list[str]]:
    """The poster, ``sockets`` users following it over the API, the rest as bare set members."""
    from realtime import keys

    poster = f"celeb_{label}"
    names = [f"f{label}{i:06d}" for i in range(followers)]
    step = followers // sockets
    users = names[::step][:sockets]  # spread over the fan-out's (lexicographic) order
    plan = Plan([poster], users, {name: [poster] for name in users})
    print(f"Celebrity {label.upper()}: {sockets:,} users with sockets"
          + (f", {followers - sockets:,} bare followers" if followers > sockets else ""), flush=True)
    tokens = await _create_users(ctx, plan)
    with_account = set(users)
    bare = [name for name in names if name not in with_account]
    for start in range(0, len(bare), 10_000):
        ctx.redis.zadd(keys.followers(poster), {name: 0 for name in bare[start:start + 10_000]})
    if ctx.redis.zcard(keys.followers(poster)) != followers:
        raise BenchError(f"followers:{{{poster}}} holds {ctx.redis.zcard(keys.followers(poster))}, not {followers}")
    return plan, tokens, names


async def _create_users(ctx: Context, plan: Plan) -> dict[str, str]:
    """Sign in every user of ``plan`` and make its follows, over the API; {user: token}."""
    return await create_users(ctx.service.url, plan, SETUP_CONCURRENCY, MAX_SECONDS)


async def _wait_deliveries(sockets: SocketProcesses, expected: int, until: float) -> None:
    progress = Progress("deliveries", expected)
    while sockets.received() < expected and time.monotonic() < until:
        progress.update(sockets.received())
        await asyncio.sleep(0.05)
    progress.done(sockets.received())


async def celebrity_a(ctx: Context, sizes: Sizes) -> dict:
    plan, tokens, _ = await _celebrity_setup(ctx, "a", sizes.celebrity_sockets, sizes.celebrity_sockets)
    await ctx.service.restart()
    poster = PosterProcess(ctx.service.url, [(plan.posters[0], tokens[plan.posters[0]])], sizes.celebrity_rate,
                           sizes.celebrity_tweets / sizes.celebrity_rate, 4)
    sockets = SocketProcesses(ctx.service.ws_url,
                              [(f, tokens[f]) for f in plan.followers], sizes.socket_procs, 100)
    try:
        await poster.start()
        opening = await sockets.open(MAX_SECONDS)
        print(f"  posting {poster.total} tweets at {sizes.celebrity_rate:g}/s", flush=True)
        start = CpuMark.take(ctx.service, ctx.redis_pid, sockets.pids, poster.process.pid)
        poster.go()
        posted = await poster.result(poster.total / sizes.celebrity_rate + MAX_SECONDS)
        await _wait_deliveries(sockets, len(posted["records"]) * len(plan.followers), time.monotonic() + DRAIN)
        end = CpuMark.take(ctx.service, ctx.redis_pid, sockets.pids, poster.process.pid)
        await asyncio.sleep(GRACE)
        rows = await sockets.report()
        rss = rss_bytes(ctx.service.pids())
    finally:
        await sockets.close()
        poster.stop()
    check = check_deliveries(plan, posted["records"], rows, sizes.celebrity_tweets / sizes.celebrity_rate)
    return {"plan": plan, "opening": opening, "posted": posted, "rows": rows, "cpu": end.since(start),
            "check": check, "tweets": _per_tweet(posted["records"], rows, len(plan.followers)), "rss": rss}


async def _watch_head(redis_url: str, key: str, seen: dict[str, float], stop: asyncio.Event) -> None:
    """Record when each id first shows among the first 10 entries of ``key`` (polled every 5 ms)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        while not stop.is_set():
            head = await client.lrange(key, 0, 9)
            now = time.time()
            for tweet_id in head:
                seen.setdefault(tweet_id, now)
            await asyncio.sleep(0.005)
    finally:
        await client.aclose()


async def celebrity_b(ctx: Context, sizes: Sizes) -> dict:
    import httpx

    from realtime import keys

    plan, tokens, names = await _celebrity_setup(ctx, "b", sizes.big_followers, sizes.big_sockets)
    author = plan.posters[0]
    await ctx.service.restart()
    sockets = SocketProcesses(ctx.service.ws_url,
                              [(f, tokens[f]) for f in plan.followers], sizes.socket_procs, 100)
    last = max(names)  # the fan-out walks followers:{poster} in lexicographic order
    seen: dict[str, float] = {}
    stop = asyncio.Event()
    records, fanout = [], {}
    try:
        opening = await sockets.open(MAX_SECONDS)
        watcher = asyncio.create_task(_watch_head(ctx.redis_url, keys.home_timeline(last), seen, stop))
        start = CpuMark.take(ctx.service, ctx.redis_pid, sockets.pids, None)
        async with httpx.AsyncClient(base_url=ctx.service.url, timeout=30, trust_env=False) as client:
            for number in range(sizes.big_tweets):  # one at a time: each fan-out measured alone
                tweet_id, sent = await _post(client, tokens[author], f"celebrity tweet {number}")
                records.append((tweet_id, author, sent, time.time(), 0.0))
                deadline = time.monotonic() + MAX_SECONDS
                while tweet_id not in seen and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                if tweet_id in seen:
                    fanout[tweet_id] = seen[tweet_id] - sent
                    print(f"  tweet {number + 1}: fan-out to {sizes.big_followers:,} timelines in "
                          f"{fanout[tweet_id]:.2f} s", flush=True)
                await _wait_deliveries(sockets, len(records) * len(plan.followers), time.monotonic() + DRAIN)
        end = CpuMark.take(ctx.service, ctx.redis_pid, sockets.pids, None)
        stop.set()
        await watcher
        await asyncio.sleep(GRACE)
        rows = await sockets.report()
    finally:
        stop.set()
        await sockets.close()
    # Every follower's home timeline, bare or not, must hold every tweet exactly once.
    ids = [r[0] for r in records]
    timeline_missing = timeline_duplicated = 0
    for begin in range(0, len(names), 5000):
        pipe = ctx.redis.pipeline(transaction=False)
        for name in names[begin:begin + 5000]:
            pipe.lrange(keys.home_timeline(name), 0, 20)
        for entries in pipe.execute():
            counts = Counter(entries)
            timeline_missing += sum(1 for i in ids if counts[i] == 0)
            timeline_duplicated += sum(counts[i] - 1 for i in ids if counts[i] > 1)
    check = check_deliveries(plan, records, rows, 1.0)
    return {"plan": plan, "opening": opening, "records": records, "rows": rows, "cpu": end.since(start),
            "check": check, "fanout": fanout, "timeline_missing": timeline_missing,
            "timeline_duplicated": timeline_duplicated, "followers": sizes.big_followers,
            "tweets": _per_tweet(records, rows, len(plan.followers))}


# -- connection storm -----------------------------------------------------------------------

def storm_process(url: str, users: list[tuple[str, str, float]], since: str, ready, frames, conn) -> None:
    """Child process: open each user's socket at its offset from the start time main sends."""
    run_in_child(_storm_process(url, users, since, ready, frames, conn))


async def _storm_process(url, users, since, ready, frames, conn) -> None:
    import orjson
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    conn.send("loaded")
    start_wall = await loop.run_in_executor(None, conn.recv)
    base = time.perf_counter() + (start_wall - time.time())
    sockets: list = []
    closing = False

    async def one(user: str, token: str, offset: float) -> dict:
        due = base + offset
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        started = time.perf_counter()
        rec = {"user": user, "lag": started - due, "replay": [], "live": [], "ready_s": None, "replayed": None,
               "other": 0, "error": "", "close": None}
        try:
            ws = await connect(url, compression=None, ping_interval=None, proxy=None, open_timeout=60,
                               close_timeout=2, max_queue=None)
        except Exception as exc:  # counted and reported, never fatal to the others
            rec["error"] = f"connect: {type(exc).__name__}: {exc}"[:200]
            return rec
        sockets.append(ws)
        try:
            await ws.send(orjson.dumps({"type": "auth", "token": token, "since": since}).decode())
            async for message in ws:
                frame = orjson.loads(message)
                kind = frame.get("type")
                if kind == "tweet":
                    frames.value += 1
                    if rec["ready_s"] is None:
                        rec["replay"].append(frame["tweet"]["id"])
                    else:
                        rec["live"].append((frame["tweet"]["id"], time.time()))
                elif kind == "ready" and rec["ready_s"] is None:
                    rec["ready_s"] = time.perf_counter() - started
                    rec["replayed"] = frame.get("replayed")
                    ready.value += 1
                else:
                    rec["other"] += 1
        except ConnectionClosed:
            pass
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"[:200]
        if not closing:
            rec["close"] = ws.close_code if ws.close_code is not None else -1
        return rec

    tasks = [asyncio.create_task(one(*user)) for user in users]
    await loop.run_in_executor(None, conn.recv)  # "finish"
    closing = True
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    done, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:
        task.cancel()
    rows = []
    for task, (user, _token, _offset) in zip(tasks, users):
        if task in done and task.exception() is None:
            rows.append(task.result())
        else:
            rows.append({"user": user, "lag": 0.0, "replay": [], "live": [], "ready_s": None, "replayed": None,
                         "other": 0, "error": "still connecting when the run ended", "close": None})
    conn.send(rows)


class StormProcesses:
    """The storm's socket processes: users dealt round robin, each with its start offset."""

    def __init__(self, ws_url: str, users: list[tuple[str, str, float]], since: str, procs: int) -> None:
        self.children = []
        for index in range(procs):
            ready, frames = SPAWN.Value("q", 0, lock=False), SPAWN.Value("q", 0, lock=False)
            mine, theirs = SPAWN.Pipe()
            process = SPAWN.Process(target=storm_process, name=f"live-shapes-storm-{index}", daemon=True,
                                    args=(ws_url, users[index::procs], since, ready, frames, theirs))
            self.children.append((process, mine, ready, frames))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, *_ in self.children if process.pid]

    def ready(self) -> int:
        return sum(ready.value for _, _, ready, _ in self.children)

    def frames(self) -> int:
        return sum(frames.value for *_, frames in self.children)

    async def start(self) -> None:
        for process, conn, *_ in self.children:
            process.start()
        for _, conn, *_ in self.children:
            if await recv_from_child(conn, 60) != "loaded":
                raise BenchError("a storm process did not start")

    def go(self, start_wall: float) -> None:
        for _, conn, *_ in self.children:
            conn.send(start_wall)

    async def finish(self) -> list[dict]:
        rows = []
        for _, conn, *_ in self.children:
            conn.send("finish")
            rows += await recv_from_child(conn, 120)
        return rows

    def stop(self) -> None:
        for process, *_ in self.children:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


async def _wait_timelines(ctx: Context, names: list[str], ids: list[str], timeout: float) -> None:
    """Until every user's home timeline holds every one of ``ids``."""
    from realtime import keys

    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        pipe = ctx.redis.pipeline(transaction=False)
        for name in names:
            pipe.lrange(keys.home_timeline(name), 0, len(ids) + 10)
        short = sum(1 for entries in pipe.execute() if not wanted <= set(entries))
        if not short:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{short} home timelines still lack some of the {len(ids)} storm tweets after {timeout:.0f}s")
        await asyncio.sleep(0.5)


def check_storm(rows: list[dict], base: list[str], live: list[str]) -> dict:
    """Each socket: the ``base`` tweets exactly once in its replay, each ``live`` tweet once (replay or live)."""
    base_set, live_set = set(base), set(live)
    wanted = base_set | live_set
    out = Counter()
    replay_base, replay_frames, ready_ms = [], [], []
    examples: list[str] = []
    for row in rows:
        if row["error"] or row["ready_s"] is None:
            out["not_ready"] += 1
            if len(examples) < 3:
                examples.append(f"{row['user']}: {row['error'] or 'no ready'} (close {row['close']})")
        elif row["close"] is not None:
            out["closed"] += 1
            if len(examples) < 3:
                examples.append(f"{row['user']}: closed by the server (code {row['close']})")
        if row["ready_s"] is not None:
            ready_ms.append(row["ready_s"] * 1000)
            if row["replayed"] != len(row["replay"]):
                out["ready_count_wrong"] += 1
        got = row["replay"] + [tweet_id for tweet_id, _ in row["live"]]
        counts = Counter(got)
        out["received"] += len(got)
        out["missing"] += len(wanted - counts.keys())
        out["duplicated"] += sum(c - 1 for c in counts.values() if c > 1)
        out["unexpected"] += sum(c for tweet_id, c in counts.items() if tweet_id not in wanted)
        in_replay = sum(1 for tweet_id in row["replay"] if tweet_id in base_set)
        replay_base.append(in_replay)
        replay_frames.append(len(row["replay"]))
        if in_replay != len(base) or any(tweet_id in base_set for tweet_id, _ in row["live"]):
            out["replay_wrong"] += 1
        out["live_in_replay"] += sum(1 for tweet_id in row["replay"] if tweet_id in live_set)
        out["live_after_ready"] += sum(1 for tweet_id, _ in row["live"] if tweet_id in live_set)
    return {**out, "replay_base": replay_base, "replay_frames": replay_frames, "ready_ms": sorted(ready_ms),
            "lag_max": max((row["lag"] for row in rows), default=0.0), "examples": examples}


async def storm(ctx: Context, sizes: Sizes) -> dict:
    import httpx

    posters = [f"storm_p{i}" for i in range(sizes.storm_posters)]
    users = [f"st{i:05d}" for i in range(sizes.storm_users)]
    plan = Plan(posters, users, {name: list(posters) for name in users})
    print(f"Connection storm: {len(users):,} users following {len(posters)} posters", flush=True)
    tokens = await _create_users(ctx, plan)
    async with httpx.AsyncClient(base_url=ctx.service.url, timeout=30, trust_env=False) as client:
        since, _ = await _post(client, tokens[posters[0]], "storm marker")
        base = []
        for number in range(sizes.storm_per_poster):
            for poster in posters:
                base.append((await _post(client, tokens[poster], f"storm tweet {number} by {poster}"))[0])
    print(f"  {1 + len(base)} tweets posted; waiting for them in every home timeline", flush=True)
    await _wait_timelines(ctx, users, [since, *base], MAX_SECONDS)
    await ctx.service.restart()
    rss_before = await settle(ctx.service)
    window = sizes.storm_window
    schedule = [(name, tokens[name], index * window / len(users)) for index, name in enumerate(users)]
    sockets = StormProcesses(ctx.service.ws_url, schedule, since, sizes.socket_procs)
    poster = PosterProcess(ctx.service.url, [(p, tokens[p]) for p in posters], sizes.storm_live_rate, window, 4)
    try:
        await sockets.start()
        await poster.start()
        print(f"  {len(users):,} sockets connecting over {window:g} s with since={since}, "
              f"{sizes.storm_live_rate:g} tweets/s meanwhile", flush=True)
        start = CpuMark.take(ctx.service, ctx.redis_pid, sockets.pids, poster.process.pid)
        began = time.time() + 0.2
        sockets.go(began)
        await asyncio.sleep(0.2)
        poster.go()
        progress = Progress("sockets ready", len(users))
        deadline = time.monotonic() + window + MAX_SECONDS
        while sockets.ready() < len(users) and time.monotonic() < deadline:
            progress.update(sockets.ready())
            await asyncio.sleep(0.05)
        progress.done(sockets.ready())
        posted = await poster.result(window + MAX_SECONDS)
        expected = len(users) * (len(base) + len(posted["records"]))
        await _wait_deliveries_storm(sockets, expected, time.monotonic() + DRAIN)
        end = CpuMark.take(ctx.service, ctx.redis_pid, sockets.pids, poster.process.pid)
        rss_after = rss_bytes(ctx.service.pids())
        await asyncio.sleep(GRACE)
        rows = await sockets.finish()
    finally:
        sockets.stop()
        poster.stop()
    live = [r[0] for r in posted["records"]]
    sent_at = {r[0]: r[2] for r in posted["records"]}
    live_ms = sorted((at - sent_at[tweet_id]) * 1000 for row in rows for tweet_id, at in row["live"]
                     if tweet_id in sent_at)
    return {"users": len(users), "base": base, "posted": posted, "rows": rows, "check": check_storm(rows, base, live),
            "cpu": end.since(start), "rss_before": rss_before, "rss_after": rss_after, "live_ms": live_ms,
            "window": window, "since": since, "began": began}


async def _wait_deliveries_storm(sockets: StormProcesses, expected: int, until: float) -> None:
    progress = Progress("tweet frames (replayed and live)", expected)
    while sockets.frames() < expected and time.monotonic() < until:
        progress.update(sockets.frames())
        await asyncio.sleep(0.05)
    progress.done(sockets.frames())


# -- report -----------------------------------------------------------------------------------

def _celebrity_a_report(a: dict, sizes: Sizes) -> tuple[list[str], dict, list[str]]:
    check, cpu = a["check"], a["cpu"]
    everything = sorted(ms for line in a["tweets"] for ms in line["ms"])
    body = [f"### Celebrity A: {len(a['plan'].followers):,} connected followers, {len(a['tweets'])} tweets at "
            f"{sizes.celebrity_rate:g}/s", "",
            *_tweet_table(a["tweets"]), "",
            f"All {check['received']:,} deliveries (expected {check['expected']:,}): p50 "
            f"{_ms(percentile(everything, 50))} ms, p99 **{_ms(percentile(everything, 99))} ms**, max "
            f"{_ms(everything[-1]) if everything else 'n/a'} ms from POST sent; missing **{check['missing']}**, "
            f"duplicated **{check['duplicated']}**, unexpected {check['unexpected']}; {check['rate']:,.0f} deliveries/s "
            f"over the run (first POST to last delivery: a tweet whose predecessor's deliveries are not done "
            f"waits behind them). Service CPU "
            f"{cpu['server']:.1f} s ({cpu['server'] / cpu['wall']:.0%} of a core over {cpu['wall']:.1f} s), redis "
            f"{cpu['redis']:.1f} s, RSS {a['rss'] / 2**20:.0f} MiB. " + _generator_line(cpu), ""]
    figures = {"celebrity_10k_sockets": len(a["plan"].followers),
               "celebrity_10k_p50_ms": percentile(everything, 50), "celebrity_10k_p99_ms": percentile(everything, 99),
               "celebrity_10k_last_ms": max((line["last"] for line in a["tweets"]), default=float("nan")),
               "celebrity_10k_first_ms": statistics.median([line["first"] for line in a["tweets"]] or [float("nan")]),
               "celebrity_10k_deliveries_per_s": statistics.median([line["rate"] for line in a["tweets"]] or [0.0]),
               "celebrity_10k_run_deliveries_per_s": check["rate"],
               "celebrity_10k_missing": check["missing"], "celebrity_10k_duplicated": check["duplicated"],
               "celebrity_10k_service_cpu_s": cpu["server"],
               "celebrity_10k_generator_max_core": max(_generator_shares(cpu).values())}
    problems = _socket_problems("celebrity A", a["opening"], a["rows"]) + [
        f"celebrity A: {e}" for e in a["posted"]["errors"]]
    if check["missing"] or check["duplicated"] or check["unexpected"]:
        problems.append(f"celebrity A: {check['missing']} missing, {check['duplicated']} duplicated, "
                        f"{check['unexpected']} unexpected deliveries")
    return body, figures, problems


def _celebrity_b_report(b: dict) -> tuple[list[str], dict, list[str]]:
    check, cpu = b["check"], b["cpu"]
    everything = sorted(ms for line in b["tweets"] for ms in line["ms"])
    fanouts = list(b["fanout"].values())
    body = [f"### Celebrity B: {b['followers']:,} followers, {len(b['plan'].followers):,} of them connected, "
            f"{len(b['records'])} tweets one after another", "",
            *_tweet_table(b["tweets"], b["fanout"]), "",
            f"Fan-out: POST sent → the tweet at the head of the lexicographically last follower's `tl:home` "
            f"(the fan-out's last batch), polled every 5 ms. Afterwards all {b['followers']:,} home timelines were "
            f"read: {b['timeline_missing']} lacked a tweet, {b['timeline_duplicated']} held one twice. Socket "
            f"deliveries: missing **{check['missing']}**, duplicated **{check['duplicated']}**, unexpected "
            f"{check['unexpected']}; p99 **{_ms(percentile(everything, 99))} ms** from POST sent. Service CPU "
            f"{cpu['server']:.1f} s, redis {cpu['redis']:.1f} s over {cpu['wall']:.1f} s. " + _generator_line(cpu), ""]
    figures = {"celebrity_100k_followers": b["followers"], "celebrity_100k_sockets": len(b["plan"].followers),
               "celebrity_100k_fanout_s": statistics.median(fanouts) if fanouts else float("nan"),
               "celebrity_100k_fanout_max_s": max(fanouts, default=float("nan")),
               "celebrity_100k_p50_ms": percentile(everything, 50), "celebrity_100k_p99_ms": percentile(everything, 99),
               "celebrity_100k_last_ms": max((line["last"] for line in b["tweets"]), default=float("nan")),
               "celebrity_100k_missing": check["missing"], "celebrity_100k_duplicated": check["duplicated"],
               "celebrity_100k_timeline_missing": b["timeline_missing"]}
    problems = _socket_problems("celebrity B", b["opening"], b["rows"])
    if len(fanouts) < len(b["records"]):
        problems.append(f"celebrity B: {len(b['records']) - len(fanouts)} tweets never reached the last follower's timeline")
    if check["missing"] or check["duplicated"] or check["unexpected"]:
        problems.append(f"celebrity B: {check['missing']} missing, {check['duplicated']} duplicated, "
                        f"{check['unexpected']} unexpected deliveries")
    if b["timeline_missing"] or b["timeline_duplicated"]:
        problems.append(f"celebrity B: {b['timeline_missing']} timeline entries missing, "
                        f"{b['timeline_duplicated']} duplicated")
    return body, figures, problems


def _storm_report(s: dict) -> tuple[list[str], dict, list[str]]:
    check, cpu = s["check"], s["cpu"]
    ready = check["ready_ms"]
    n_base = len(s["base"])
    live_ms = s["live_ms"]
    body = [f"### Connection storm: {s['users']:,} sockets connecting over {s['window']:g} s, each replaying "
            f"{n_base} tweets", "",
            "| sockets ready | connect → ready p50 ms | p99 ms | max ms | base tweets replayed per socket (min–max) "
            "| replay frames total | live tweets: in replay / after ready | missing | duplicated | unexpected |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {len(ready):,} of {s['users']:,} | {_ms(percentile(ready, 50))} | **{_ms(percentile(ready, 99))}** | "
            f"{_ms(ready[-1]) if ready else 'n/a'} | {min(check['replay_base'], default=0)}–"
            f"{max(check['replay_base'], default=0)} | {sum(check['replay_frames']):,} | "
            f"{check.get('live_in_replay', 0):,} / {check.get('live_after_ready', 0):,} | "
            f"**{check.get('missing', 0)}** | **{check.get('duplicated', 0)}** | {check.get('unexpected', 0)} |", "",
            f"{len(s['posted']['records'])} tweets posted during the storm ({len(s['posted']['errors'])} failed), "
            f"each to every socket: after ready, POST sent → delivery p50 {_ms(percentile(live_ms, 50))} ms, p99 "
            f"{_ms(percentile(live_ms, 99))} ms. Socket start lag (generator behind its schedule) at most "
            f"{check['lag_max'] * 1000:.0f} ms. Service RSS {s['rss_before'] / 2**20:.0f} MiB before, "
            f"{s['rss_after'] / 2**20:.0f} MiB with the sockets open.", "",
            f"CPU from the first connect to the last frame ({cpu['wall']:.1f} s):", "", *cpu_table(cpu), "",
            _generator_line(cpu), ""]
    figures = {"storm_sockets": s["users"], "storm_ready": len(ready),
               "storm_ready_p50_ms": percentile(ready, 50), "storm_ready_p99_ms": percentile(ready, 99),
               "storm_ready_max_ms": ready[-1] if ready else float("nan"),
               "storm_replayed_min": min(check["replay_base"], default=0),
               "storm_replayed_max": max(check["replay_base"], default=0),
               "storm_replay_frames": sum(check["replay_frames"]),
               "storm_missing": int(check.get("missing", 0)), "storm_duplicated": int(check.get("duplicated", 0)),
               "storm_unexpected": int(check.get("unexpected", 0)),
               "storm_live_p99_ms": percentile(live_ms, 99), "storm_service_cpu_s": cpu["server"],
               "storm_service_rss_mib": s["rss_after"] / 2**20,
               "storm_generator_max_core": max(_generator_shares(cpu).values())}
    problems = [f"storm: {e}" for e in s["posted"]["errors"]]
    if check.get("not_ready") or check.get("closed"):
        problems.append(f"storm: {check.get('not_ready', 0)} sockets never ready, {check.get('closed', 0)} closed "
                        "by the server; e.g. " + "; ".join(check["examples"]))
    if check.get("missing") or check.get("duplicated") or check.get("unexpected"):
        problems.append(f"storm: {check.get('missing', 0)} missing, {check.get('duplicated', 0)} duplicated, "
                        f"{check.get('unexpected', 0)} unexpected deliveries")
    if check.get("replay_wrong"):
        problems.append(f"storm: {check['replay_wrong']} sockets did not replay exactly the {n_base} base tweets")
    if check.get("ready_count_wrong"):
        problems.append(f"storm: {check['ready_count_wrong']} ready frames gave a replayed count other than the "
                        "tweets sent before them")
    return body, figures, problems


METHOD = """Method: one service process (`python run.py --rate-limits off --dev-signin on`) on a private
redis-server, restarted before each shape so its CPU and RSS belong to that shape. Users are created over the API
(`POST /auth/dev`, `PUT /users/{name}/follow`); celebrity B's bare followers are `ZADD followers:{poster}` only.
Latencies are wall-clock: POST sent (poster's `time.time()`) → frame read by the socket process; connect → ready is
measured inside the storm process from the start of the WebSocket handshake. Sockets use the `websockets` client in
processes of their own; CPU is utime+stime from /proc."""


# -- entry points -------------------------------------------------------------------------------

async def measure(quick: bool = False, *, only: str | None = None, sizes: Sizes | None = None) -> dict:
    """Run the shapes; answer the section (title, command, Markdown body), figures, series and problems."""
    import redis as redis_sync

    sizes = sizes or (QUICK if quick else FULL)
    needed = max(sizes.celebrity_sockets, sizes.storm_users) + 2048
    if raise_open_files_limit(needed) < needed:
        print(f"warning: RLIMIT_NOFILE is below {needed}; some sockets may fail to open", file=sys.stderr)
    body, figures, series, problems = [], {}, {}, []
    with private_redis() as server, tempfile.TemporaryDirectory(prefix="chirp-live-shapes-") as logs:
        client = redis_sync.Redis.from_url(server.url, decode_responses=True)
        machine_line = machine(client.info("server"))
        # Fan-out on write for these shapes (10,000 followers and more); bench.hot_fanout has the hybrid.
        service = Service(server.url, 1, Path(logs), [f"{key}={value}" for key, value in PUSH_ONLY.items()])
        ctx = Context(service, server.process.pid, server.url, client)
        print(f"redis-server on port {server.port}; service: {' '.join(ctx.service.command()[1:])}", flush=True)
        try:
            await ctx.service.start()
            if only in (None, "celebrity"):
                a = await celebrity_a(ctx, sizes)
                part, numbers, trouble = _celebrity_a_report(a, sizes)
                body += part
                figures.update(numbers)
                problems += trouble
                series["celebrity_latency_ms"] = _thin(sorted(ms for line in a["tweets"] for ms in line["ms"]))
                b = await celebrity_b(ctx, sizes)
                part, numbers, trouble = _celebrity_b_report(b)
                body += part
                figures.update(numbers)
                problems += trouble
            if only in (None, "storm"):
                s = await storm(ctx, sizes)
                part, numbers, trouble = _storm_report(s)
                body += part
                figures.update(numbers)
                problems += trouble
                series["storm_ready_ms"] = _thin(s["check"]["ready_ms"])
        except BenchError as exc:
            problems.append(f"{exc}\nservice log (tail):\n{ctx.service.log_tail()}")
        finally:
            ctx.service.stop()
            client.close()
    body.append(METHOD)
    return {"name": NAME, "title": TITLE, "command": "python -m bench.live_shapes" + (" --quick" if quick else ""),
            "machine": machine_line, "body": "\n".join(body), "figures": figures, "series": series,
            "problems": problems}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.live_shapes", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (1,000 / 10,000+200 / 500 sockets)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--only", choices=["celebrity", "storm"], help="run one shape")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        result = asyncio.run(measure(args.quick, only=args.only))
    except KeyboardInterrupt:
        return 130
    print(f"({time.perf_counter() - started:.0f} s in all)", flush=True)
    return finish_cli(NAME, result, write=not args.no_write and bool(result["figures"]),
                      command=command_line("bench.live_shapes", argv))


if __name__ == "__main__":
    sys.exit(main())
