"""Idle sockets: the service's RSS as sockets are opened step by step, then the CPU while they idle.

    python -m bench.idle_sockets [--quick] [--no-write]

A private redis-server and one service process (``python run.py --rate-limits off``), the
users created over HTTP, the service restarted so its memory starts clean; then sockets
are opened in steps (0, 2,500, 5,000, 7,500, 10,000; ``--quick``: 0, 250, 500), each step's
sockets in a generator process of its own, and the service's VmRSS (all its processes) is
read once it settles after each step. Then every socket sits idle for ``IDLE_SECONDS``
(the server pings each every 20 s) while the CPU of each process is counted.
KiB per socket = (RSS with every socket open − RSS with none) / sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .common import (Progress, command_line, finish_cli, machine_of, private_redis, raise_open_files_limit,
                     rss_bytes)
from .load_generator import BenchError, CpuMark, Plan, Service, SocketProcesses, settle, cpu_table, create_users

__all__ = ["NAME", "TITLE", "measure", "main"]

NAME = "idle_sockets"
TITLE = "Idle sockets: RSS as sockets grow, CPU while idle"
RSS_TARGET_KB = 30.0
FULL = dict(steps=[0, 2500, 5000, 7500, 10_000], idle=30.0, settle=5.0)
QUICK = dict(steps=[0, 250, 500], idle=3.0, settle=1.5)


async def run_steps(setup: dict) -> tuple[list[dict], dict, str, dict]:
    """(RSS samples, idle CPU, machine line, facts)."""
    total = setup["steps"][-1]
    raise_open_files_limit(total + 1024)
    samples: list[dict] = []
    cpu: dict = {}
    facts: dict = {"opened": 0, "errors": []}
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="chirp-idle-") as logs:
        machine_line = machine_of(redis_server.url)
        service = Service(redis_server.url, 1, Path(logs))
        groups: list[SocketProcesses] = []
        try:
            await service.start()
            plan = Plan.idle(total)
            print(f"Setting up: {total:,} users", flush=True)
            tokens = await create_users(service.url, plan, 32, 300)
            await service.restart()
            ws_url = service.ws_url
            redis_pid = redis_server.process.pid
            previous = 0
            for count in setup["steps"]:
                if count > previous:
                    group = SocketProcesses(ws_url, [(f, tokens[f]) for f in plan.followers[previous:count]], 1, 100)
                    groups.append(group)
                    opening = await group.open(300)
                    facts["opened"] += opening["opened"]
                    facts["errors"] += opening["errors"]
                    previous = count
                rss = await settle(service, setup["settle"])
                samples.append({"sockets": facts["opened"], "rss": rss, "redis_rss": rss_bytes([redis_pid])})
                print(f"  {facts['opened']:,} sockets open: service RSS {rss / 2**20:.1f} MiB", flush=True)
            pids = [pid for group in groups for pid in group.pids]
            start = CpuMark.take(service, redis_pid, pids, None)
            progress = Progress("idle seconds", round(setup["idle"]))
            while (elapsed := time.perf_counter() - start.at) < setup["idle"]:
                progress.update(int(elapsed))
                await asyncio.sleep(min(0.5, setup["idle"] - elapsed))
            cpu = CpuMark.take(service, redis_pid, pids, None).since(start)
            progress.done()
            for group in groups:  # the server closing an idle socket is an error here
                for user, *_, error, close in await group.report():
                    if close is not None and not error:
                        facts["errors"].append(f"{user}: closed by the server (code {close})")
            facts["generator_rss"] = rss_bytes(pids)
        except BenchError as exc:
            facts["error"] = f"{exc}\n{service.log_tail(10)}"
        finally:
            for group in groups:
                await group.close()
            service.stop()
    return samples, cpu, machine_line, facts


def render(samples: list[dict], cpu: dict, setup: dict, facts: dict) -> tuple[str, dict, dict, list[str]]:
    """(Markdown body, figures, series for the plot, problems)."""
    problems = [f"{NAME}: {facts['error'].splitlines()[0]}"] if "error" in facts else []
    wanted = setup["steps"][-1]
    if facts["errors"]:
        problems.append(f"{NAME}: {len(facts['errors'])} socket errors, first: {facts['errors'][0]}")
    if "error" not in facts and facts["opened"] < wanted:
        problems.append(f"{NAME}: only {facts['opened']:,} of {wanted:,} sockets opened")
    base = samples[0]["rss"] if samples else 0
    last = samples[-1] if samples else {"sockets": 0, "rss": 0, "redis_rss": 0}
    per_socket = (last["rss"] - base) / last["sockets"] if last["sockets"] else float("nan")
    lines = [
        f"{facts['opened']:,} of {wanted:,} sockets opened to one service process (`python run.py --rate-limits off`), "
        f"in steps of {setup['steps'][1] if len(setup['steps']) > 1 else wanted:,}, each step in a `websockets` "
        "generator process of its own; service VmRSS (all its processes) read once it settled after each step.",
        "",
        "| sockets open | service RSS | Δ from 0 sockets | per socket | redis-server RSS |",
        "|---|---|---|---|---|",
    ]
    for sample in samples:
        delta = sample["rss"] - base
        each = f"{delta / sample['sockets'] / 1024:.1f} KiB" if sample["sockets"] else "-"
        lines.append(f"| {sample['sockets']:,} | {sample['rss'] / 2**20:.1f} MiB | {delta / 2**20:+.1f} MiB | {each} "
                     f"| {sample['redis_rss'] / 2**20:.1f} MiB |")
    lines += ["", f"Per socket at {last['sockets']:,}: **{per_socket / 1024:.1f} KiB** ({per_socket / 1000:.1f} KB); "
                  f"target under {RSS_TARGET_KB:.0f} KB: "
                  f"**{'met' if per_socket / 1000 < RSS_TARGET_KB and not problems else 'not met'}**."]
    if cpu:
        lines += ["", f"CPU while idle ({cpu['wall']:.1f} s):", "", *cpu_table(cpu)]
    if facts["errors"]:
        lines += ["", f"Socket errors: {len(facts['errors'])} (first 5): "
                  + "; ".join(f"`{error}`" for error in facts["errors"][:5])]
    figures = {"sockets": last["sockets"], "kib_per_socket": per_socket / 1024, "kb_per_socket": per_socket / 1000,
               "idle_service_cpu_share": cpu["server"] / cpu["wall"] if cpu and cpu["wall"] else None}
    series = {"sockets": [sample["sockets"] for sample in samples],
              "rss_mib": [sample["rss"] / 2**20 for sample in samples]}
    return "\n".join(lines), figures, series, problems


async def measure(quick: bool = False) -> dict:
    """The ``python -m bench`` interface."""
    setup = QUICK if quick else FULL
    samples, cpu, machine_line, facts = await run_steps(setup)
    body, figures, series, problems = render(samples, cpu, setup, facts)
    return {"name": NAME, "title": TITLE, "command": command_line("bench.idle_sockets", ["--quick"] if quick else []),
            "body": body, "figures": figures, "series": series, "problems": problems, "machine": machine_line}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_sockets", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="0, 250, 500 sockets; 3 s idle")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    return finish_cli(NAME, asyncio.run(measure(args.quick)), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
