"""Live load: tweets posted over HTTP, delivered over ``/ws``, checked one by one.

    python -m bench.live_load [--sockets 2000] [--followers-per-poster 100] [--posters 100]
                              [--rate 100] [--duration 5] [--socket-procs 1]
    python -m bench.live_load --idle [--sockets 10000] [--duration 30]
    python -m bench.live_load --quick     # CI smoke check: 200 sockets, K=20, 20 tweets/s, 3 s

Starts a private redis-server and one service process, exactly as an operator would:
``python run.py --redis-url ... --port FREE --dev-signin on``. Creates the users over the
public API (``POST /auth/dev``; then ``PUT /users/{poster}/follow``, many at once with
``httpx.AsyncClient``), restarts the service so that its memory and CPU figures start
clean, and opens one WebSocket per follower (the ``websockets`` client, in a process of
its own). Each poster gets ``--followers-per-poster`` followers, spread evenly over the
sockets. Another process then posts ``--rate`` tweets/s (round robin over the posters,
open loop: on a schedule, not waiting for answers) for ``--duration`` seconds.

Every socket must get every tweet of every poster its user follows exactly once: the
report counts deliveries expected, received, missing, duplicated and unexpected.

Latency is taken at the socket process when its reader has the frame (``time.time()``),
measured from the moment the poster process sent the POST (``time.time()`` just before
the request) and, beside it, from the tweet's ``timestamp`` field (the server's clock
when it stored the tweet). Both are this machine's wall clock.

Memory: the service's VmRSS (its process and any children) from /proc, just before and
after the sockets open. CPU: utime+stime from /proc/PID/stat over the run (first POST to
last delivery) for the service, redis-server and each process of the generator.

``--idle`` opens the sockets to one service process and reports RSS per socket and the
CPU spent while they sit idle (the server pings each every 20 s).

Exit status 1 when a delivery is missing, duplicated or unexpected, or a POST, socket
or step failed; never because of a time or a target. ``--quick`` never writes
BENCHMARKS.md; other runs rewrite the ``live_load`` (or ``live_idle``) section.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .common import (Progress, command_line, git_revision, machine_of, private_redis, raise_open_files_limit,
                     rss_bytes, write_section)
from .load_generator import (BenchError, CpuMark, Plan, PosterProcess, Service, SocketProcesses, settle,
                             stats_connections, check_deliveries, cpu_table, create_users, percentile,
                             saturation_notes, wait_for_quiet)

LOAD_SECTION = "live_load"
IDLE_SECTION = "live_idle"
P99_TARGET_MS = 50.0
RSS_TARGET_KB = 30.0

QUICK = dict(sockets=200, followers_per_poster=20, posters=20, rate=20.0, duration=3.0)


# -- arguments ----------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.live_load", description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", "-n", type=int, default=None,
                        help="follower users, one socket each (default 2000; 10000 with --idle)")
    parser.add_argument("--followers-per-poster", "-k", type=int, default=100,
                        help="followers of each poster, spread evenly over the sockets (default 100)")
    parser.add_argument("--posters", type=int, default=100,
                        help="posting users (no sockets); tweets go round robin over them (default 100)")
    parser.add_argument("--rate", "-r", type=float, default=100.0, help="tweets posted per second (default 100)")
    parser.add_argument("--duration", "-d", type=float, default=None,
                        help="seconds of posting (default 5), or of idling with --idle (default 30)")
    parser.add_argument("--idle", action="store_true", help="open idle sockets only: RSS per socket, idle CPU")
    parser.add_argument("--quick", action="store_true",
                        help="a small run for CI (N=200, K=20, 20 posters, 20/s for 3 s); never writes BENCHMARKS.md")
    parser.add_argument("--socket-procs", type=int, default=1,
                        help="generator processes holding the sockets (default 1)")
    parser.add_argument("--server-workers", type=int, default=1,
                        help="service processes sharing the port (run.py --workers; default 1)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the service (run.py reads every setting from one, "
                             "e.g. FANOUT_IN_PROCESS=4); repeatable")
    parser.add_argument("--connect-concurrency", type=int, default=100,
                        help="sockets being opened at once, per socket process (default 100)")
    parser.add_argument("--setup-concurrency", type=int, default=32, help="setup HTTP calls in flight (default 32)")
    parser.add_argument("--post-concurrency", type=int, default=32,
                        help="POSTs in flight at most; a tweet due while all are busy is sent late (default 32)")
    parser.add_argument("--drain", type=float, default=15.0,
                        help="seconds to wait after the last POST for deliveries still on their way (default 15)")
    parser.add_argument("--grace", type=float, default=0.5,
                        help="seconds to keep listening once every delivery arrived, to catch duplicates (default 0.5)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="wait up to this many seconds for other processes on the machine to go quiet "
                             "before measuring (default 120; 0 with --quick)")
    parser.add_argument("--max-seconds", type=float, default=300,
                        help="give up when one setup step takes longer than this (default 300)")
    parser.add_argument("--py-spy", metavar="SVG", default="",
                        help="record the service with py-spy during the run (or the idle window) into SVG "
                             "(a flame graph; a path ending in .txt gets collapsed stacks)")
    parser.add_argument("--label", default="", help="a note for the table of runs")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.quick:
        if args.idle:
            parser.error("--quick and --idle do not go together")
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.no_write = True
        if args.quiet_wait is None:
            args.quiet_wait = 0.0
    if args.quiet_wait is None:
        args.quiet_wait = 120.0
    if args.sockets is None:
        args.sockets = 10_000 if args.idle else 2000
    if args.duration is None:
        args.duration = 30.0 if args.idle else 5.0
    if args.sockets < 1 or args.posters < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--sockets, --posters, --rate and --duration must be above zero")
    if not args.idle and not 1 <= args.followers_per_poster <= args.sockets:
        parser.error("--followers-per-poster must be 1..--sockets (each follower has one socket)")
    if not 1 <= args.socket_procs <= args.sockets or args.server_workers < 1:
        parser.error("--socket-procs must be 1..--sockets and --server-workers at least 1")
    if any("=" not in item for item in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    if args.py_spy and not shutil.which("py-spy"):
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")
    return args


# -- measuring ------------------------------------------------------------------------


def _start_py_spy(path: str, pid: int, seconds: float) -> subprocess.Popen | None:
    if not path:
        return None
    print(f"  py-spy: recording the service (pid {pid}) for {seconds:.0f}s into {path}", flush=True)
    # A .txt path gets collapsed stacks (one line per stack, with its sample count), else a flame graph.
    output_format = "raw" if path.endswith(".txt") else "flamegraph"
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--output", path, "--format", output_format,
                             "--duration", str(max(1, round(seconds))), "--rate", "100", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish_py_spy(process: subprocess.Popen | None) -> str:
    if process is None:
        return ""
    try:
        _, error = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, error = process.communicate()
    return "" if process.returncode == 0 else f"py-spy failed ({process.returncode}): {error.decode()[-300:]}"


# -- the two runs ------------------------------------------------------------------------

async def load_run(args: argparse.Namespace, service: Service, redis_pid: int) -> dict:
    plan = Plan.make(args.sockets, args.posters, args.followers_per_poster)
    print(f"Setting up: {len(plan.posters):,} posters, {len(plan.followers):,} followers, "
          f"{args.posters * args.followers_per_poster:,} follows", flush=True)
    setup_started = time.perf_counter()
    tokens = await create_users(service.url, plan, args.setup_concurrency, args.max_seconds)
    await service.restart()
    setup_seconds = time.perf_counter() - setup_started
    poster = PosterProcess(service.url, [(p, tokens[p]) for p in plan.posters], args.rate, args.duration,
                           args.post_concurrency)
    sockets = SocketProcesses(service.ws_url,
                              [(f, tokens[f]) for f in plan.followers], args.socket_procs, args.connect_concurrency)
    result: dict = {"plan": plan, "setup_seconds": setup_seconds}
    try:
        await poster.start()
        rss_before = await settle(service)
        opening = await sockets.open(args.max_seconds)
        rss_after = await settle(service)
        result.update(opening=opening, rss_before=rss_before, rss_after=rss_after,
                      stats_connections=await stats_connections(service.url))
        print(f"Posting {poster.total:,} tweets at {args.rate:g}/s for {args.duration:g}s "
              f"(each to {args.followers_per_poster} followers)", flush=True)
        expected_total = poster.total * args.followers_per_poster
        if args.quiet_wait > 0:
            await wait_for_quiet(args.quiet_wait, lambda: [*service.pids(), redis_pid, *sockets.pids,
                                                           poster.process.pid, os.getpid()])
        spy = _start_py_spy(args.py_spy, service.pid, args.duration + 2)
        start = CpuMark.take(service, redis_pid, sockets.pids, poster.process.pid)
        poster.go()
        progress = Progress("deliveries", expected_total)
        deadline = None
        posted = None
        while True:
            await asyncio.sleep(0.05)
            progress.update(sockets.received())
            if posted is None and poster.conn.poll():
                posted = await poster.result(30)
                expected_total = len(posted["records"]) * args.followers_per_poster
                progress.total = expected_total
                deadline = time.monotonic() + args.drain
            if posted is not None and (sockets.received() >= expected_total or time.monotonic() > deadline):
                break
            if posted is None and time.perf_counter() - start.at > args.duration + args.max_seconds:
                raise BenchError("the poster process did not finish")
        end = CpuMark.take(service, redis_pid, sockets.pids, poster.process.pid)
        progress.done(sockets.received())
        await asyncio.sleep(args.grace)
        result["py_spy_error"] = _finish_py_spy(spy)
        rows = await sockets.report()
        result.update(cpu=end.since(start), posted=posted, rows=rows,
                      rss_end=rss_bytes(service.pids()), redis_rss=rss_bytes([redis_pid]),
                      generator_rss=rss_bytes(sockets.pids))
        result["check"] = check_deliveries(plan, posted["records"], rows, args.duration)
    finally:
        await sockets.close()
        poster.stop()
    return result


async def idle_run(args: argparse.Namespace, service: Service, redis_pid: int) -> dict:
    plan = Plan.idle(args.sockets)
    print(f"Setting up: {len(plan.followers):,} users", flush=True)
    setup_started = time.perf_counter()
    tokens = await create_users(service.url, plan, args.setup_concurrency, args.max_seconds)
    await service.restart()
    setup_seconds = time.perf_counter() - setup_started
    sockets = SocketProcesses(service.ws_url,
                              [(f, tokens[f]) for f in plan.followers], args.socket_procs, args.connect_concurrency)
    result: dict = {"plan": plan, "setup_seconds": setup_seconds}
    try:
        rss_before = await settle(service)
        redis_before = rss_bytes([redis_pid])
        opening = await sockets.open(args.max_seconds)
        rss_after = await settle(service, 5.0)
        result.update(opening=opening, rss_before=rss_before, rss_after=rss_after,
                      stats_connections=await stats_connections(service.url),
                      generator_rss=rss_bytes(sockets.pids), redis_rss_delta=rss_bytes([redis_pid]) - redis_before)
        print(f"Idling {args.duration:g}s with {opening['opened']:,} sockets open", flush=True)
        if args.quiet_wait > 0:
            await wait_for_quiet(args.quiet_wait, lambda: [*service.pids(), redis_pid, *sockets.pids, os.getpid()])
        spy = _start_py_spy(args.py_spy, service.pid, args.duration)
        start = CpuMark.take(service, redis_pid, sockets.pids, None)
        progress = Progress("idle seconds", round(args.duration))
        while (elapsed := time.perf_counter() - start.at) < args.duration:
            progress.update(int(elapsed))
            await asyncio.sleep(min(0.5, args.duration - elapsed))
        end = CpuMark.take(service, redis_pid, sockets.pids, None)
        progress.done()
        result["py_spy_error"] = _finish_py_spy(spy)
        rows = await sockets.report()
        result.update(cpu=end.since(start), rows=rows, rss_end=rss_bytes(service.pids()))
    finally:
        await sockets.close()
    return result


# -- reporting ---------------------------------------------------------------------------

def _kib(value: float) -> str:
    return f"{value / 1024:,.1f} KiB"


def socket_errors(result: dict) -> list[str]:
    """Sockets that failed to open, or that the server closed while we listened."""
    errors = list(result["opening"]["errors"])
    for user, _got, _replayed, _other, error, close in result.get("rows", []):
        if close is not None and not error:
            errors.append(f"{user}: closed by the server (code {close})")
    return errors


def service_text(args: argparse.Namespace) -> str:
    processes = "one service process" if args.server_workers == 1 else f"{args.server_workers} service processes"
    env = "".join(f" {item}" for item in args.server_env)
    return f"{processes} (`{env.strip() + ' ' if env else ''}python run.py --workers {args.server_workers}`)"


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def load_report(args: argparse.Namespace, result: dict) -> tuple[str, list[str], bool]:
    """Markdown body, history row, and whether the run is clean (no missing, duplicate, error)."""
    check, cpu, posted, plan = result["check"], result["cpu"], result["posted"], result["plan"]
    opened = result["opening"]["opened"]
    errors = socket_errors(result) + posted["errors"]
    clean = not (check["missing"] or check["duplicated"] or check["unexpected"] or errors)
    per_socket = (result["rss_after"] - result["rss_before"]) / max(opened, 1)
    lp, lt, fd, sp = check["from_post"], check["from_timestamp"], check["first"], check["spread"]
    answered = sorted(r[3] - r[2] for r in posted["records"])
    late = [r[4] for r in posted["records"]]
    sent_rate = len(posted["records"]) / posted["seconds"] if posted["seconds"] else 0.0
    delivered = check["received"] - check["duplicated"] - check["unexpected"]
    replayed = sum(row[2] for row in result["rows"])
    per_follower = Counter(len(v) for v in plan.follows.values())
    lines = [
        f"{len(plan.followers):,} sockets (one per follower user, `websockets` client in {args.socket_procs} "
        f"process(es)), {len(plan.posters):,} posters with {args.followers_per_poster} followers each "
        f"(each follower follows {', '.join(f'{n}' for n in sorted(per_follower))} poster(s)), "
        f"{args.rate:g} tweets/s for {args.duration:g} s from a separate process (httpx, open loop, "
        f"≤ {args.post_concurrency} POSTs in flight), {service_text(args)}, private redis-server. Setup over HTTP took {result['setup_seconds']:.1f} s; "
        f"opening the sockets {result['opening']['seconds']:.1f} s.",
        "",
        "| deliveries expected | received | missing | duplicated | unexpected | out of order (per author) | deliveries/s |",
        "|---|---|---|---|---|---|---|",
        f"| {check['expected']:,} | {check['received']:,} | **{check['missing']:,}** | **{check['duplicated']:,}** | "
        f"{check['unexpected']:,} | {check['out_of_order']:,} | {check['rate']:,.0f} |",
        "",
        f"Tweets posted: {len(posted['records']):,} of {round(args.rate * args.duration):,} "
        f"({sent_rate:,.1f}/s achieved; {len(posted['errors'])} failed POSTs); POST answered in p50 "
        f"{percentile(answered, 50) * 1000:.1f} ms, p99 {percentile(answered, 99) * 1000:.1f} ms; "
        f"sent late by more than 10 ms (all {args.post_concurrency} connections busy): "
        f"{sum(1 for x in late if x > 0.01)}. Sockets: {opened:,} opened, {len(socket_errors(result))} errors, "
        f"{replayed} frames replayed on connect; `/stats` said {result['stats_connections']} connections. "
        f"Deliveries/s = deliveries / (last delivery − first POST sent), {check['span']:.2f} s; offered "
        f"{args.rate * args.followers_per_poster:,.0f}/s.",
        "",
        "Post → delivery latency (ms), at the socket process's reader:",
        "",
        "| measured from | p50 | p90 | p99 | max |",
        "|---|---|---|---|---|",
        f"| POST sent (poster's clock) | {lp['p50']:.1f} | {lp['p90']:.1f} | **{lp['p99']:.1f}** | {lp['max']:.1f} |",
        f"| tweet `timestamp` (server's clock) | {lt['p50']:.1f} | {lt['p90']:.1f} | {lt['p99']:.1f} | {lt['max']:.1f} |",
        f"| per tweet: POST sent → its first delivery | {fd['p50']:.1f} | {fd['p90']:.1f} | {fd['p99']:.1f} | {fd['max']:.1f} |",
        f"| per tweet: first → last of its deliveries | {sp['p50']:.1f} | {sp['p90']:.1f} | {sp['p99']:.1f} | {sp['max']:.1f} |",
        "",
        f"By {check['bucket']:g} s of posting (tweets sent then; from POST sent): " + ", ".join(
            f"{second * check['bucket']:g} s: p50 {line['p50']:.0f} / p99 {line['p99']:.0f} ms"
            for second, line in check["by_second"].items()) + ".",
        "",
        f"Service RSS: {result['rss_before'] / 2**20:.1f} MiB before the sockets, {result['rss_after'] / 2**20:.1f} MiB "
        f"with them open ({_kib(per_socket)} per connection), {result['rss_end'] / 2**20:.1f} MiB after the run "
        f"({_kib((result['rss_end'] - result['rss_after']) / max(opened, 1))} more per connection, after "
        f"{delivered / max(opened, 1):,.0f} deliveries each). "
        f"Generator socket process(es): {result['generator_rss'] / 2**20:.1f} MiB.",
        "",
        f"CPU over the run ({cpu['wall']:.2f} s, first POST to last delivery):",
        "",
        *cpu_table(cpu, delivered),
        "",
        *saturation_notes(cpu),
        "",
        f"Targets: zero missing and zero duplicated: {verdict(not check['missing'] and not check['duplicated'])}; "
        f"p99 under {P99_TARGET_MS:.0f} ms (from POST sent): {verdict(lp['p99'] < P99_TARGET_MS)} "
        + (f"({lp['p99']:.1f} ms)." if lp["n"] else "(nothing was delivered)."),
    ]
    if errors:
        lines += ["", "Errors (first 5): " + "; ".join(f"`{e}`" for e in errors[:5])]
    if result.get("py_spy_error"):
        lines += ["", result["py_spy_error"]]
    history = [git_revision(), args.label, f"{len(plan.followers)}/{args.followers_per_poster}/{args.rate:g}/{args.duration:g}",
               f"{check['missing']}/{check['duplicated']}", f"{lp['p50']:.1f}/{lp['p99']:.1f}/{lp['max']:.1f}",
               f"{check['rate']:,.0f}", f"{cpu['server']:.2f} ({cpu['server'] / cpu['wall']:.0%})",
               f"{per_socket / 1024:.1f}"]
    return "\n".join(lines), history, clean


def idle_report(args: argparse.Namespace, result: dict) -> tuple[str, list[str], bool]:
    cpu = result["cpu"]
    opened = result["opening"]["opened"]
    errors = socket_errors(result)
    clean = not errors and opened == args.sockets
    per_socket = (result["rss_after"] - result["rss_before"]) / max(opened, 1)
    lines = [
        f"{opened:,} of {args.sockets:,} sockets opened and authenticated (one user each, `websockets` client in "
        f"{args.socket_procs} process(es), {result['opening']['seconds']:.1f} s to open) to "
        f"{service_text(args)}, then left idle for {args.duration:g} s "
        f"(the server pings each socket every 20 s). `/stats` said {result['stats_connections']} connections.",
        "",
        "| sockets | service RSS before | with sockets open | per socket | after idling | redis-server RSS Δ per socket | generator RSS per socket |",
        "|---|---|---|---|---|---|---|",
        f"| {opened:,} | {result['rss_before'] / 2**20:.1f} MiB | {result['rss_after'] / 2**20:.1f} MiB | "
        f"**{_kib(per_socket)}** | {result['rss_end'] / 2**20:.1f} MiB | {_kib(result['redis_rss_delta'] / max(opened, 1))} | "
        f"{_kib(result['generator_rss'] / max(opened, 1))} |",
        "",
        f"CPU while idle ({cpu['wall']:.1f} s):",
        "",
        *cpu_table(cpu),
        "",
        f"Target: {args.sockets:,} sockets in one process at under {RSS_TARGET_KB:.0f} KB RSS per socket: "
        f"{verdict(clean and per_socket / 1000 < RSS_TARGET_KB)} ({per_socket / 1000:.1f} KB = {_kib(per_socket)}).",
    ]
    if errors:
        lines += ["", f"Socket errors: {len(errors)} (first 5): " + "; ".join(f"`{e}`" for e in errors[:5])]
    if result.get("py_spy_error"):
        lines += ["", result["py_spy_error"]]
    history = [git_revision(), args.label, f"{opened:,}", f"{per_socket / 1024:.1f}",
               f"{cpu['server']:.2f} ({cpu['server'] / cpu['wall']:.1%})"]
    return "\n".join(lines), history, clean


LOAD_NOTES = """### Where the time goes (notes written by hand, kept across re-runs)

(none yet)
"""

IDLE_NOTES = """### Notes (written by hand, kept across re-runs)

(none yet)
"""


# -- main ----------------------------------------------------------------------------------

async def run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    needed = args.sockets + 1024
    limit = raise_open_files_limit(needed)
    if limit < needed:
        print(f"warning: RLIMIT_NOFILE is {limit} (hard limit), below the {needed} that {args.sockets:,} "
              "sockets want; some may fail to open", file=sys.stderr)
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="chirp-live-load-") as logs:
        machine_line = machine_of(redis_server.url)
        service = Service(redis_server.url, args.server_workers, Path(logs), args.server_env)
        print(f"redis-server on port {redis_server.port}; service: {' '.join(service.command()[1:])}", flush=True)
        try:
            await service.start()
            runner = idle_run if args.idle else load_run
            result = await runner(args, service, redis_server.process.pid)
        except BenchError as exc:
            print(f"\nFAILED: {exc}", file=sys.stderr)
            if service.process is not None:
                print(f"service log (tail):\n{service.log_tail()}", file=sys.stderr)
            return 1
        finally:
            service.stop()
    body, history, clean = (idle_report if args.idle else load_report)(args, result)
    print("\n" + body + "\n", flush=True)
    if not args.no_write:
        if args.idle:
            write_section(IDLE_SECTION, f"Idle sockets: memory and CPU of {args.sockets:,} sockets on one process",
                          command=command_line("bench.live_load", argv), machine_line=machine_line, body=body,
                          history_header=["revision", "label", "sockets", "KiB/socket", "service CPU s (idle)"],
                          history_row=history, notes=IDLE_NOTES)
        else:
            write_section(LOAD_SECTION, "Live load: posts over HTTP, deliveries over WebSockets",
                          command=command_line("bench.live_load", argv), machine_line=machine_line, body=body,
                          history_header=["revision", "label", "N/K/R/D", "missing/dup", "p50/p99/max ms",
                                          "deliveries/s", "service CPU s", "KiB/socket"],
                          history_row=history, notes=LOAD_NOTES)
        print(f"Wrote the {IDLE_SECTION if args.idle else LOAD_SECTION} section of BENCHMARKS.md", flush=True)
    if not clean:
        print("FAILED: deliveries missing, duplicated or unexpected, or errors (see above)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args, argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
