"""Client CPU per Redis round trip: what one command costs the service's Python.

    python -m bench.redis_round_trip [--quick] [--no-write]

Every request and every fan-out batch waits on Redis round trips, and the service's side of
each is redis-py's Python: pick a pooled connection, pack the command, write it, read and
parse the reply. This times N sequential ``GET``s of a short value on a private redis-server
with the client Chirp makes (``realtime.redis_client.make_redis``) and with the same client
on redis-py's own connection class, in alternating rounds on the same event loop, and
reports the client's CPU (``time.process_time``) and wall time per round trip: the median of
the rounds. The difference is what ``realtime.redis_connection`` saves (redis-py writes each
command through ``asyncio.wait_for``, which runs it in a task of its own on Python 3.11).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import redis
import redis.asyncio as aioredis

from realtime.redis_client import make_redis

from .common import Progress, command_line, finish_cli, machine, private_redis

NAME = "redis_round_trip"
TITLE = "Client CPU per Redis round trip"
ROUNDS, QUICK_ROUNDS = 5, 2
CALLS, QUICK_CALLS = 20_000, 2_000
KEY = "round-trip"


def redis_py_client(url: str) -> aioredis.Redis:
    """Chirp's client as ``make_redis`` makes it, but on redis-py's own connection class."""
    client = make_redis(url)
    client.connection_pool.connection_class = aioredis.Connection
    return client


async def time_round_trips(client, calls: int) -> tuple[float, float]:
    """(client CPU µs, wall µs) per sequential GET."""
    await client.get(KEY)  # a connection is open and ready before the clock starts
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await client.get(KEY)
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


async def measure(quick: bool = False) -> dict:
    rounds, calls = (QUICK_ROUNDS, QUICK_CALLS) if quick else (ROUNDS, CALLS)
    samples: dict[str, list[tuple[float, float]]] = {"redis-py's connection": [], "Chirp's (writes in place)": []}
    with private_redis() as server:
        clients = {"redis-py's connection": redis_py_client(server.url), "Chirp's (writes in place)": make_redis(server.url)}
        try:
            info = await clients["Chirp's (writes in place)"].info("server")
            await clients["Chirp's (writes in place)"].set(KEY, "x" * 16)
            progress = Progress("Redis round trips, alternating clients", rounds * len(clients))
            for _ in range(rounds):
                for name, client in clients.items():
                    samples[name].append(await time_round_trips(client, calls))
                    progress.update(sum(map(len, samples.values())))
            progress.done()
        finally:
            for client in clients.values():
                await client.aclose()
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    medians = {name: (statistics.median(cpu for cpu, _ in runs), statistics.median(wall for _, wall in runs))
               for name, runs in samples.items()}
    lines = [f"{rounds} rounds of {calls:,} sequential `GET`s per client, alternating, on one {loop} event loop "
             f"(Python {sys.version.split()[0]}, redis-py {redis.__version__}); medians of the rounds (their range "
             "in brackets).", "",
             "| client | client CPU µs per round trip | wall µs per round trip |", "|---|---|---|"]
    for name, runs in samples.items():
        cpus, walls = [cpu for cpu, _ in runs], [wall for _, wall in runs]
        lines.append(f"| {name} | **{medians[name][0]:.1f}** ({min(cpus):.1f}–{max(cpus):.1f}) "
                     f"| {medians[name][1]:.1f} ({min(walls):.1f}–{max(walls):.1f}) |")
    figures = {"redis_py_us": round(medians["redis-py's connection"][0], 2),
               "chirp_us": round(medians["Chirp's (writes in place)"][0], 2)}
    figures["saved_us"] = round(figures["redis_py_us"] - figures["chirp_us"], 2)
    lines += ["", f"Writing in place saves {figures['saved_us']:.1f} µs of client CPU per round trip here."]
    return {"name": NAME, "title": TITLE, "command": command_line("bench.redis_round_trip", ["--quick"] if quick else []),
            "body": "\n".join(lines), "figures": figures, "problems": [], "machine": machine(info)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_round_trip", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds of {QUICK_CALLS:,} calls")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(measure(args.quick))
    return finish_cli(NAME, result, write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
