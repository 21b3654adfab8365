"""Steady load, rising rate: the highest tweets/s the service holds with p99 ≤ 100 ms and nothing missing.

    python -m bench.steady_load [--quick] [--no-write]

One setup kept for every step (N=2,000 sockets, K=100 followers per poster, 100 posters;
``--quick``: N=200, K=20, 20 posters), built by ``bench.load_generator``'s pieces: a private
redis-server, ``python run.py`` with rate limits off, users and follows over HTTP, the
sockets in a process of their own. Then R rises step by step (50, 100, 150, 200, 250,
300, 400, 500, 600, 800 tweets/s, each ``STEP_SECONDS`` s; quick: 20, 40 for 2 s), a new
poster process per step, and every step gets ``live_load``'s check: each socket must get
each tweet of each poster it follows exactly once. The run stops after the first step whose
p99 (POST sent → delivery) passes 100 ms or that misses a delivery; "highest R held" is the
last step before it.

``run_steps`` takes the Redis to run on (a ``Backend``; one private redis-server by default):
``bench.cluster`` runs the same steps on one Redis and on a Redis Cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from launcher.embedded_redis import RedisServerProcess

from .common import (Progress, command_line, cpu_seconds, finish_cli, machine_of, private_redis,
                     raise_open_files_limit)
from .load_generator import (BenchError, CpuMark, Plan, PosterProcess, Service, SocketProcesses, check_deliveries,
                        create_users, saturation_notes, SATURATED)

__all__ = ["NAME", "TITLE", "Backend", "run_steps", "measure", "main"]

NAME = "steady_load"
TITLE = "Steady load: rising tweets/s until p99 passes 100 ms"
HOLD_P99_MS = 100.0
TARGET_RATE = 200.0
TARGET_P99_MS = 50.0
#: The step whose service CPU per delivery is the figure of record (10,000 deliveries/s at K=100).
CPU_RATE = 100.0
FULL = dict(sockets=2000, followers_per_poster=100, posters=100, duration=5.0,
            rates=[50, 100, 150, 200, 250, 300, 400, 500, 600, 800])
QUICK = dict(sockets=200, followers_per_poster=20, posters=20, duration=2.0, rates=[20, 40])
DRAIN = 10.0
GRACE = 0.5
POST_CONCURRENCY = 32
CDF_POINTS = 200
WARMUP_SECONDS = 1.0
CONNECT_CONCURRENCY = 100  # sockets opening at once


@dataclasses.dataclass(frozen=True)
class Backend:
    """The Redis the service runs on: its URL and the pids of its redis-server processes."""

    url: str
    masters: list[int]  # their CPU is the "redis CPU" of a step (Σ on a cluster)
    replicas: list[int] = dataclasses.field(default_factory=list)  # measured on their own
    connect_concurrency: int = CONNECT_CONCURRENCY

    @classmethod
    def single(cls, server: RedisServerProcess) -> Backend:
        return cls(server.url, [server.process.pid])


@contextlib.contextmanager
def private_backend() -> Iterator[Backend]:
    """The default: ``bench.common.private_redis``."""
    with private_redis() as server:
        yield Backend.single(server)


@dataclasses.dataclass(frozen=True)
class RedisCpuMark:
    """``load_generator.CpuMark`` for any backend: its ``redis`` is the Σ of the masters, and each
    master's and the replicas' CPU seconds are kept besides."""

    mark: CpuMark
    masters: list[float]
    replicas: float

    @classmethod
    def take(cls, service: Service, backend: Backend, socket_pids: Sequence[int], poster_pid: int) -> RedisCpuMark:
        masters = [cpu_seconds([pid]) for pid in backend.masters]
        mark = CpuMark.take(service, backend.masters[0], socket_pids, poster_pid)
        return cls(dataclasses.replace(mark, redis=sum(masters)), masters, cpu_seconds(backend.replicas))

    @property
    def at(self) -> float:
        return self.mark.at

    def since(self, start: RedisCpuMark) -> dict:
        cpu = self.mark.since(start.mark)
        cpu["masters"] = [end - begin for end, begin in zip(self.masters, start.masters)]
        cpu["replicas"] = self.replicas - start.replicas
        # The replicas are our processes too, not "other processes on this machine".
        cpu["others"] = max(0.0, cpu["others"] - cpu["replicas"])
        return cpu


def _notes(cpu: dict) -> list[str]:
    """``load_generator.saturation_notes``, where "redis-server" is the busiest master: saturation is
    of one process. The other nodes still count in the machine's total (added to this process's
    CPU, which the notes only add up). On one Redis this is ``saturation_notes(cpu)`` itself."""
    busiest = max(cpu["masters"])
    rest = cpu["redis"] - busiest + cpu["replicas"]
    return saturation_notes({**cpu, "redis": busiest, "main": cpu["main"] + rest})


def _cdf(sorted_ms: list[float]) -> list[float]:
    """At most CDF_POINTS evenly spaced quantiles of an ascending list (enough for a plot)."""
    if len(sorted_ms) <= CDF_POINTS:
        return list(sorted_ms)
    last = len(sorted_ms) - 1
    return [sorted_ms[round(last * i / (CDF_POINTS - 1))] for i in range(CDF_POINTS)]


async def _step(service: Service, backend: Backend, sockets: SocketProcesses, plan: Plan,
                posters: list[tuple[str, str]], rate: float, setup: dict) -> dict:
    """Post ``rate`` tweets/s for the step's duration; wait for the deliveries; check them."""
    poster = PosterProcess(service.url, posters, rate, setup["duration"], POST_CONCURRENCY)
    try:
        await poster.start()
        expected = poster.total * setup["followers_per_poster"]
        start = RedisCpuMark.take(service, backend, sockets.pids, poster.process.pid)
        poster.go()
        progress = Progress(f"R={rate:g}: deliveries", expected)
        posted, deadline = None, None
        while True:
            await asyncio.sleep(0.05)
            progress.update(sockets.received())
            if posted is None and poster.conn.poll():
                posted = await poster.result(30)
                expected = len(posted["records"]) * setup["followers_per_poster"]
                progress.total = expected
                deadline = time.monotonic() + DRAIN
            if posted is not None and (sockets.received() >= expected or time.monotonic() > deadline):
                break
            if posted is None and time.perf_counter() - start.at > setup["duration"] + 120:
                raise BenchError("the poster process did not finish")
        end = RedisCpuMark.take(service, backend, sockets.pids, poster.process.pid)
        progress.done(sockets.received())
        await asyncio.sleep(GRACE)
        rows = await sockets.report(clear=True)
    finally:
        poster.stop()
    check = check_deliveries(plan, posted["records"], rows, setup["duration"])
    cpu = end.since(start)
    wall = cpu["wall"] or 1e-9
    generator = [*cpu["sockets"], cpu["poster"]]
    closed = [f"{user}: closed by the server (code {close})" for user, *_, error, close in rows
              if close is not None and not error]
    return {"rate": rate, "check": check, "cpu": cpu, "posted": len(posted["records"]),
            "sent_rate": len(posted["records"]) / posted["seconds"] if posted["seconds"] else 0.0,
            "errors": posted["errors"] + closed,
            "service_share": cpu["server"] / wall, "redis_share": cpu["redis"] / wall,
            "service_us_per_delivery": cpu["server"] / check["received"] * 1e6 if check["received"] else None,
            "master_shares": [seconds / wall for seconds in cpu["masters"]], "replica_share": cpu["replicas"] / wall,
            "generator_shares": [seconds / wall for seconds in generator],
            "generator_saturated": any(seconds / wall >= SATURATED for seconds in generator),
            "notes": _notes(cpu)}


async def run_steps(setup: dict, backend: Callable[[], contextlib.AbstractContextManager[Backend]] = private_backend
                    ) -> tuple[list[dict], str, dict]:
    """(steps, machine line, setup facts): one service, one set of sockets, R rising, on the
    Redis that ``backend()`` starts (and stops on the way out)."""
    raise_open_files_limit(setup["sockets"] + 1024)
    with backend() as redis, tempfile.TemporaryDirectory(prefix="chirp-steady-") as logs:
        machine_line = machine_of(redis.url)
        service = Service(redis.url, 1, Path(logs))
        steps: list[dict] = []
        try:
            await service.start()
            plan = Plan.make(setup["sockets"], setup["posters"], setup["followers_per_poster"])
            print(f"Setting up: {len(plan.posters):,} posters, {len(plan.followers):,} followers, "
                  f"{setup['posters'] * setup['followers_per_poster']:,} follows", flush=True)
            started = time.perf_counter()
            tokens = await create_users(service.url, plan, 32, 300)
            await service.restart()
            facts = {"setup_seconds": time.perf_counter() - started}
            sockets = SocketProcesses(service.ws_url,
                                      [(f, tokens[f]) for f in plan.followers], 1, redis.connect_concurrency)
            try:
                opening = await sockets.open(300)
                facts.update(opened=opening["opened"], open_errors=opening["errors"])
                posters = [(p, tokens[p]) for p in plan.posters]
                # Warm-up, not in the table: the restarted service's first requests are slow
                # (imports, connection pools, scripts loaded), which is not what a step measures.
                warm = await _step(service, redis, sockets, plan, posters,
                                   setup["rates"][0] / 2, {**setup, "duration": WARMUP_SECONDS})
                facts["warmup"] = warm
                for rate in setup["rates"]:
                    step = await _step(service, redis, sockets, plan, posters, rate, setup)
                    steps.append(step)
                    check = step["check"]
                    print(f"  R={rate:g}: {check['rate']:,.0f} deliveries/s, p99 {check['from_post']['p99']:.1f} ms, "
                          f"missing {check['missing']}, duplicated {check['duplicated']}", flush=True)
                    if not _held(step):
                        break
            finally:
                await sockets.close()
        except BenchError as exc:
            facts = {"error": f"{exc}\n{service.log_tail(10)}"}
        finally:
            service.stop()
    return steps, machine_line, facts


def _held(step: dict) -> bool:
    check = step["check"]
    p99 = check["from_post"]["p99"]
    return bool(check["from_post"]["n"]) and p99 <= HOLD_P99_MS and not check["missing"]


def _us(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "-"


def _verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def render(steps: list[dict], setup: dict, facts: dict) -> tuple[str, dict, dict, list[str]]:
    """(Markdown body, figures, series for the plots, problems)."""
    problems: list[str] = []
    if "error" in facts:
        problems.append(f"{NAME}: {facts['error'].splitlines()[0]}")
    problems += [f"{NAME}: socket failed to open: {error}" for error in facts.get("open_errors", [])[:5]]
    warm = facts.get("warmup")
    if warm and (warm["check"]["missing"] or warm["check"]["duplicated"] or warm["check"]["unexpected"]):
        problems.append(f"{NAME}: warm-up at R={warm['rate']:g}: {warm['check']['missing']} missing, "
                        f"{warm['check']['duplicated']} duplicated, {warm['check']['unexpected']} unexpected")
    problems += [f"{NAME}: warm-up: {error}" for error in (warm["errors"][:5] if warm else [])]
    held = [step for step in steps if _held(step)]
    best = held[-1] if held else None
    at_target = next((step for step in steps if step["rate"] == TARGET_RATE), None)
    at_cpu_rate = next((step for step in steps if step["rate"] == CPU_RATE), None)
    checked = steps + ([warm] if warm else [])
    missing = sum(step["check"]["missing"] for step in checked)
    duplicated = sum(step["check"]["duplicated"] for step in checked)
    unexpected = sum(step["check"]["unexpected"] for step in checked)
    for step in steps:
        check = step["check"]
        if check["duplicated"] or check["unexpected"]:
            problems.append(f"{NAME}: R={step['rate']:g}: {check['duplicated']} duplicated, "
                            f"{check['unexpected']} unexpected deliveries")
        if check["missing"]:
            problems.append(f"{NAME}: R={step['rate']:g}: {check['missing']} deliveries missing")
        problems += [f"{NAME}: R={step['rate']:g}: {error}" for error in step["errors"][:5]]
    lines = [
        f"{setup['sockets']:,} sockets (one per follower, `websockets` client in one process), "
        f"{setup['posters']} posters with K={setup['followers_per_poster']} followers each, one service process "
        f"(`python run.py --rate-limits off`), private redis-server; one setup for every step "
        f"({facts.get('setup_seconds', 0):.1f} s over HTTP). Each step posts R tweets/s for {setup['duration']:g} s "
        "from a new poster process (httpx, open loop), after an unreported warm-up of "
        f"{WARMUP_SECONDS:g} s at half the first rate (checked all the same); latency is POST sent → frame read "
        "at the socket process. "
        f"The run stops after the first step with p99 > {HOLD_P99_MS:.0f} ms or a delivery missing.",
        "",
        "| R tweets/s | sent/s | deliveries/s | p50 ms | p99 ms | max ms | missing | duplicated | service CPU "
        "| service µs per delivery | redis CPU | generator CPU (sockets, poster) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        check, latency = step["check"], step["check"]["from_post"]
        generator = ", ".join(f"{share:.0%}" for share in step["generator_shares"])
        lines.append(f"| {step['rate']:g} | {step['sent_rate']:,.1f} | {check['rate']:,.0f} | {latency['p50']:.1f} "
                     f"| {latency['p99']:.1f} | {latency['max']:.1f} | {check['missing']:,} | {check['duplicated']:,} "
                     f"| {step['service_share']:.0%} | {_us(step.get('service_us_per_delivery'))} "
                     f"| {step['redis_share']:.0%} | {generator}"
                     f"{' (saturated)' if step['generator_saturated'] else ''} |")
    if best:
        lines += ["", f"Highest R held (p99 ≤ {HOLD_P99_MS:.0f} ms, nothing missing): **{best['rate']:g} tweets/s** × "
                      f"{setup['followers_per_poster']} followers = {best['check']['rate']:,.0f} deliveries/s "
                      f"(p99 {best['check']['from_post']['p99']:.1f} ms)."]
    else:
        lines += ["", "Highest R held: **none** (the first step already failed)."]
    if len(steps) == len(setup["rates"]) and best is steps[-1]:
        lines += ["", "Every step was held; the highest is the last one tried, not a limit."]
    if at_target:
        p99 = at_target["check"]["from_post"]["p99"]
        lines += ["", f"R = {TARGET_RATE:g} with p99 < {TARGET_P99_MS:.0f} ms and nothing missing: "
                      f"{_verdict(p99 < TARGET_P99_MS and not at_target['check']['missing'])} ({p99:.1f} ms)."]
    else:
        lines += ["", f"R = {TARGET_RATE:g} was not reached by this run."]
    saturated = [f"R={step['rate']:g}" for step in steps if step["generator_saturated"]]
    if saturated:
        lines += ["", f"A generator process was saturated (≥ {SATURATED:.0%} of a core) at {', '.join(saturated)}: "
                      "there the figures include the generator's own waiting."]
    last = steps[-1] if steps else None
    if last:
        lines += ["", f"At the last step (R={last['rate']:g}): " + " ".join(last["notes"])]
    figures = {"highest_rate_held": best["rate"] if best else 0,
               "followers_per_poster": setup["followers_per_poster"],
               "deliveries_per_s_held": best["check"]["rate"] if best else 0.0,
               "max_deliveries_per_s": max((step["check"]["rate"] for step in steps), default=0.0),
               "p99_ms_at_target_rate": at_target["check"]["from_post"]["p99"] if at_target else None,
               "missing_at_target_rate": at_target["check"]["missing"] if at_target else None,
               "service_us_per_delivery_at_cpu_rate": at_cpu_rate.get("service_us_per_delivery") if at_cpu_rate else None,
               "cpu_rate": CPU_RATE,
               "missing": missing, "duplicated": duplicated, "unexpected": unexpected,
               "generator_saturated": bool(saturated)}
    series = {"rate": [step["rate"] for step in steps],
              "deliveries_per_s": [step["check"]["rate"] for step in steps],
              "p99_ms": [step["check"]["from_post"]["p99"] for step in steps],
              "latency_rate": best["rate"] if best else (last["rate"] if last else None),
              "latency_ms": _cdf((best or last)["check"]["from_post_ms"]) if (best or last) else []}
    return "\n".join(lines), figures, series, problems


def command(quick: bool) -> str:
    return command_line("bench.steady_load", ["--quick"] if quick else [])


async def measure(quick: bool = False) -> dict:
    """The ``python -m bench`` interface."""
    setup = QUICK if quick else FULL
    steps, machine_line, facts = await run_steps(setup)
    body, figures, series, problems = render(steps, setup, facts)
    return {"name": NAME, "title": TITLE, "command": command(quick), "body": body, "figures": figures,
            "series": series, "problems": problems, "machine": machine_line}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.steady_load", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=200, K=20, R 20 then 40, 2 s each")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    return finish_cli(NAME, asyncio.run(measure(args.quick)), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
