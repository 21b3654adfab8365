"""Bytes per home-timeline entry: our integer ids against the seed's UUID strings.

    python -m bench.timeline_memory [--timelines 1000] [--entries 800]

Fills ``--timelines`` lists with ``--entries`` entries each, twice, in a private
redis-server:

- ours: 53-bit ids from ``realtime.ids.IdGenerator``, pushed through the production
  path (``Timelines.push``, the Lua push script), so each list has the encoding
  production gets (an integer per entry inside the list's listpack nodes; ziplist
  nodes before Redis 7);
- the seed's: one UUID4 string per entry, pushed with plain ``LPUSH``.

Both are measured the same way: ``MEMORY USAGE key SAMPLES 0`` summed over the lists
(exact, every node counted), divided by the number of entries; ``used_memory`` before
and after is shown as a cross-check (it also counts the key table and expiry entries).
The result goes to the ``timeline_memory`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from realtime import keys
from realtime.ids import IdGenerator
from realtime.redis_client import make_redis
from realtime.timelines import Timelines

from .common import Progress, command_line, git_revision, machine, private_redis, write_section

NAME = "timeline_memory"
TARGET_BYTES = 12.0
USERS = 400_000_000
MAX_AGE = 30 * 86400.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.timeline_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--timelines", type=int, default=1000, help="lists per layout (default 1000)")
    parser.add_argument("--entries", type=int, default=800, help="entries per list (default 800)")
    parser.add_argument("--max-seconds", type=float, default=600, help="give up after this long (default 600)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.timelines < 1 or args.entries < 1:
        parser.error("--timelines and --entries must be at least 1")
    return args


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.seconds = seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.at:
            raise SystemExit(f"gave up: {what} did not finish within --max-seconds={self.seconds:.0f}")


async def used_memory(redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def list_usage(redis, names: list[str]) -> tuple[int, int, str]:
    """(sum of MEMORY USAGE, sum of LLEN, encoding of the first list)."""
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.execute_command("MEMORY", "USAGE", name, "SAMPLES", 0)
        pipe.llen(name)
    answers = await pipe.execute()
    encoding = await redis.object("encoding", names[0])
    return sum(answers[0::2]), sum(answers[1::2]), encoding


async def fill_ours(redis, names: list[str], entries: int, deadline: Deadline) -> None:
    timelines = Timelines(redis, max_age=MAX_AGE, max_length=entries)
    ids = IdGenerator(worker_id=1)
    progress = Progress("ours: Timelines.push", entries * len(names), unit=" entries")
    for done in range(entries):
        # One id per round to every list, as a fan-out does; ids are minted now, so
        # none is old enough to be trimmed.
        added = await timelines.push(names, ids.next_id())
        if added != len(names):
            raise SystemExit(f"push added {added} of {len(names)} entries: the push path is broken")
        progress.update((done + 1) * len(names))
        deadline.check("filling our timelines")
    progress.done()


async def fill_seed(redis, names: list[str], entries: int, deadline: Deadline) -> None:
    progress = Progress("seed: LPUSH uuid4", entries * len(names), unit=" entries")
    ttl_ms = int(MAX_AGE * 1000)
    for done in range(entries):
        pipe = redis.pipeline(transaction=False)
        for name in names:
            pipe.lpush(name, str(uuid.uuid4()))
            pipe.pexpire(name, ttl_ms)
        await pipe.execute()
        progress.update((done + 1) * len(names))
        deadline.check("filling the seed's timelines")
    progress.done()


async def run_layout(redis, label: str, names: list[str], entries: int, fill, deadline: Deadline) -> dict:
    before = await used_memory(redis)
    await fill(redis, names, entries, deadline)
    after = await used_memory(redis)
    usage, length, encoding = await list_usage(redis, names)
    if length != entries * len(names):
        raise SystemExit(f"{label}: expected {entries * len(names)} entries, found {length}")
    result = {"label": label, "entries": length, "usage": usage, "per_entry": usage / length,
              "used_memory_per_entry": (after - before) / length, "encoding": encoding}
    print(f"  {label}: {result['per_entry']:.2f} bytes/entry by MEMORY USAGE, "
          f"{result['used_memory_per_entry']:.2f} by used_memory, encoding {encoding}")
    return result


def terabytes(per_entry: float, entries: int) -> float:
    return USERS * entries * per_entry / 1e12


def report(results: list[dict], args: argparse.Namespace, sample_id: int) -> str:
    ours, seed = results
    lines = [
        f"{args.timelines:,} lists × {args.entries} entries per layout, one private redis-server. "
        "Bytes per entry = Σ `MEMORY USAGE key SAMPLES 0` / entries (the key's own overhead is "
        "spread over its entries); `used_memory` Δ is the same fill seen from `INFO memory`.",
        "",
        f"| layout | encoding | bytes/entry (MEMORY USAGE) | bytes/entry (used_memory Δ) "
        f"| per user ({args.entries} entries) | {USERS // 1_000_000}M users × {args.entries} entries |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['label']} | {r['encoding']} | **{r['per_entry']:.2f}** | {r['used_memory_per_entry']:.2f} "
                     f"| {r['per_entry'] * args.entries / 1024:.1f} KiB | {terabytes(r['per_entry'], args.entries):.2f} TB |")
    verdict = "met" if ours["per_entry"] <= TARGET_BYTES else "MISSED"
    lines += [
        "",
        f"Target: at most {TARGET_BYTES:g} bytes per entry for ours: **{verdict}** "
        f"({ours['per_entry']:.2f}). UUID strings cost {seed['per_entry'] / ours['per_entry']:.1f}× as much.",
        "",
        f"Ours: ids from `IdGenerator` (e.g. {sample_id}, {sample_id.bit_length()} bits: too big for the "
        "32-bit integer encodings, so each entry is an 8-byte integer plus 2 bytes of entry header in the "
        "list's listpack (ziplist before Redis 7) nodes) "
        "pushed with `Timelines.push` (the production Lua push: LPOS dedupe, LPUSH, trim, PEXPIRE). "
        "Seed: `LPUSH` of `str(uuid4())` (36 characters plus 2 bytes of header). "
        "Both lists also carry a TTL, which `MEMORY USAGE` does not count.",
        "",
        f"At {USERS // 1_000_000}M users × {args.entries} entries, ours needs "
        f"{terabytes(ours['per_entry'], args.entries):.1f} TB of timeline RAM against "
        f"{terabytes(seed['per_entry'], args.entries):.1f} TB for UUID strings (the seed's own estimate of "
        "1.25 MB per user was 500 TB). Trimming by age lowers ours further for users whose lists "
        "are not full.",
    ]
    return "\n".join(lines)


TITLE = "Timeline memory: bytes per home-timeline entry"


async def collect(args: argparse.Namespace) -> tuple[list[dict], int, dict]:
    """Fill both layouts in a private redis-server: (results, a sample id, INFO server)."""
    deadline = Deadline(args.max_seconds)
    with private_redis() as server:
        print(f"private redis-server on port {server.port} (pid {server.process.pid})")
        redis = make_redis(server.url)
        try:
            info = await redis.info("server")
            # Load the push script first, so used_memory Δ counts list memory only.
            scratch = keys.home_timeline("scratch")
            await Timelines(redis, max_age=MAX_AGE, max_length=args.entries).push([scratch], 1)
            await redis.delete(scratch)
            ours_names = [keys.home_timeline(f"mem{i:07d}") for i in range(args.timelines)]
            seed_names = [f"seed:home:{{mem{i:07d}}}" for i in range(args.timelines)]
            results = [
                await run_layout(redis, "ours: 53-bit integer ids", ours_names, args.entries, fill_ours, deadline),
                await run_layout(redis, "seed: UUID4 strings", seed_names, args.entries, fill_seed, deadline),
            ]
            sample_id = int((await redis.lindex(ours_names[0], 0)))
        finally:
            await redis.aclose()
    return results, sample_id, info


async def measure(quick: bool = False) -> dict:
    """The ``python -m bench`` interface: 1,000 lists (100 with ``quick``) × 800 entries."""
    argv = ["--timelines", "100"] if quick else []
    args = parse_args(argv)
    figures: dict = {}
    try:
        results, sample_id, _ = await collect(args)
    except SystemExit as exc:
        return {"name": NAME, "title": TITLE, "command": command_line("bench.timeline_memory", argv),
                "body": f"Failed: {exc}", "figures": figures, "problems": [f"{NAME}: {exc}"]}
    ours, seed = results
    figures = {"bytes_per_entry": ours["per_entry"], "uuid_bytes_per_entry": seed["per_entry"],
               "target_met": ours["per_entry"] <= TARGET_BYTES}
    return {"name": NAME, "title": TITLE, "command": command_line("bench.timeline_memory", argv),
            "body": report(results, args, sample_id), "figures": figures, "problems": []}


async def main(args: argparse.Namespace) -> None:
    results, sample_id, info = await collect(args)
    body = report(results, args, sample_id)
    print()
    print(body)
    if not args.no_write:
        ours, seed = results
        write_section(NAME, TITLE, command=command_line("bench.timeline_memory"),
                      machine_line=machine(info), body=body,
                      history_header=["revision", "lists × entries", "ours B/entry", "UUID B/entry"],
                      history_row=[git_revision(), f"{args.timelines}×{args.entries}",
                                   f"{ours['per_entry']:.2f}", f"{seed['per_entry']:.2f}"])
        print("\nwrote the timeline_memory section of BENCHMARKS.md")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
