"""Every benchmark, one after the other, then BENCHMARKS.md rewritten as a whole with its plots.

    python -m bench [--quick] [--output BENCHMARKS.md] [--only NAME,...]

Each benchmark is a module of ``bench`` with ``async def measure(quick: bool = False) -> dict``
(see ``bench.report`` for the dict); each starts what it measures itself (private
redis-servers on free ports, the service with rate limits off) and stops it again. A
benchmark that fails (or a module that is missing) is a problem of the run, and the others
still run. The PNG figures go to ``docs/bench/`` beside the output file.

Exit status 1 when any benchmark reports a problem (an error, a missing or a duplicated
delivery), never because of a time or a target. ``--quick`` is the one-minute version
(``.ci/run`` runs it as a smoke check, writing to a temporary file).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import plots, report
from .common import BENCHMARKS_MD, git_revision, machine

__all__ = ["PHASES", "main", "run_phase", "write_report"]

# (module under bench, what the progress bar says), in the order they run.
PHASES: list[tuple[str, str]] = [
    ("timeline_memory", "timeline memory"),
    ("fanout_throughput", "fan-out throughput"),
    ("redis_cost", "Redis cost per tweet and per timeline entry"),
    ("redis_round_trip", "client CPU per Redis round trip"),
    ("viewer_state", "a like with watchers, a read with flags"),
    ("hot_fanout", "hybrid fan-out (a million followers, the merged read)"),
    ("search_latency", "search latency"),
    ("raw_limits", "raw limits (bare uvicorn)"),
    ("steady_load", "steady load, rising R"),
    ("live_shapes", "live shapes (celebrity, storm)"),
    ("idle_sockets", "idle sockets"),
    ("cluster", "Redis Cluster (fan-out per node, master kill)"),
    ("soak", "soak (mixed load, Redis restarts, kills, stalled clients)"),
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the one-minute version (small sizes)")
    parser.add_argument("--output", type=Path, default=BENCHMARKS_MD,
                        help="the file to rewrite (default: BENCHMARKS.md of the repository); "
                             "the PNGs go to docs/bench/ beside it")
    parser.add_argument("--only", default="", help="comma-separated benchmark names to run (default: all)")
    args = parser.parse_args(argv)
    names = [name for name, _ in PHASES]
    args.only = [name.strip() for name in args.only.split(",") if name.strip()] or names
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    return args


def _failed(name: str, command: str, problem: str, body: str = "") -> dict:
    return {"name": name, "title": name.replace("_", " ").capitalize(), "command": command,
            "body": body or f"Not measured: {problem}", "figures": {}, "problems": [problem]}


async def run_phase(name: str, quick: bool) -> dict:
    """``bench.NAME.measure(quick)``, imported now; any failure becomes a problem of the result."""
    module_name = f"bench.{name}"
    command = f"python -m {module_name}" + (" --quick" if quick else "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return _failed(name, command, f"{module_name} not present")
    try:
        result = dict(await module.measure(quick=quick))
    except (Exception, SystemExit) as exc:  # one benchmark failing must not stop the others
        traceback.print_exc()
        return _failed(name, command, f"{name} failed: {type(exc).__name__}: {exc}",
                       body=f"Failed: `{type(exc).__name__}: {exc}`")
    result.setdefault("name", name)
    result.setdefault("title", name)
    result.setdefault("command", command)
    result.setdefault("body", "")
    result["figures"] = dict(result.get("figures") or {})
    result["problems"] = list(result.get("problems") or [])
    return result


def redis_version() -> dict[str, str]:
    """``redis_version`` and ``mem_allocator`` from ``redis-server --version`` (no server started)."""
    from launcher.embedded_redis import find_redis_server

    binary = find_redis_server()
    if binary is None:
        return {}
    try:
        text = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    return {"redis_version": fields.get("v", "?"), "mem_allocator": fields.get("malloc", "")}


def write_report(results: list[dict], output: Path, *, command: str, seconds: float,
                 machine_line: str | None = None) -> list[str]:
    """Draw the plots and rewrite ``output`` as a whole; answer every problem of the run."""
    images = plots.draw_all(results, output.parent / "docs" / "bench")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = report.render(results, output=output, date=date, commit=git_revision(("realtime", "http_api", "bench")),
                         machine_line=machine_line or machine(redis_version()), command=command,
                         seconds=seconds, images=images)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return [problem for result in results
            for problem in [*result["problems"], *report.delivery_problems(result)]]


async def run_all(names: Sequence[str], quick: bool) -> list[dict]:
    from tqdm import tqdm

    labels = dict(PHASES)
    results = []
    with tqdm(total=len(names), unit="benchmark", desc="benchmarks", file=sys.stderr) as bar:
        for number, name in enumerate(names, 1):
            bar.set_description(f"{labels[name]}")
            tqdm.write(f"\n== {number}/{len(names)}: {labels[name]} (bench.{name})", file=sys.stderr)
            started = time.perf_counter()
            result = await run_phase(name, quick)
            result["seconds"] = time.perf_counter() - started
            results.append(result)
            status = "ok" if not result["problems"] else f"{len(result['problems'])} problem(s)"
            tqdm.write(f"== {labels[name]}: {status}, {result['seconds']:.0f} s", file=sys.stderr)
            bar.update(1)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.perf_counter()
    results = asyncio.run(run_all(args.only, args.quick))
    problems = write_report(results, args.output, command=shlex.join(["python", "-m", "bench", *argv]),
                            seconds=time.perf_counter() - started)
    print(f"\nwrote {args.output} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
