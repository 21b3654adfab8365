"""A RESP-aware TCP proxy between a process under test and a Redis the tests started.

It relays bytes both ways on 127.0.0.1 and reads what it relays: the commands a client
sends (RESP arrays; a pipeline is several in one write) and, in step, the replies Redis
sends back (one per command, in order, on each connection). A test arms a ``Rule``: when the
``nth`` command it matches arrives, either

- ``Moment.BEFORE``: the command is held and the rule's action runs (the test kills the
  client process there); Redis never sees the command, nor anything sent after it on that
  connection; or
- ``Moment.AFTER``: the command goes to Redis, and once Redis's whole reply is in (the write
  is done) the action runs before the reply is passed on; the client never learns it.

Either way the connection is then cut. Actions run on the proxy's one thread, so nothing is
relayed on any connection while one runs; what the killed process had already sent on its
other connections still reaches Redis afterwards, as it would after a real crash. Inside
MULTI ... EXEC, AFTER means after the EXEC (a queued command runs only then).

Caveats: a connection that subscribes (pub/sub) is relayed as raw bytes from then on and is
never matched. Both RESP2 and RESP3 are read (redis-py 8 says ``HELLO 3``); RESP3 push
frames (``>``, out of band) are not counted as replies. An AFTER rule whose command Redis
answers with an error fails instead of firing: NOSCRIPT, say, which the client follows with
SCRIPT LOAD and the same call again, so load the scripts beforehand (``script_names`` maps
their SHA1s to names).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import threading
from collections.abc import Callable, Mapping

__all__ = ["Moment", "Command", "Rule", "RedisProxy", "script_names", "parse_command", "reply_end"]

_SUBSCRIBING = {b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE"}
_SCRIPT_CALLS = {b"EVALSHA", b"EVALSHA_RO", b"EVAL", b"EVAL_RO"}


def script_names(scripts: Mapping[str, str]) -> dict[str, str]:
    """SHA1 -> name for ``{name: Lua source}``, as redis-py's ``register_script`` names them."""
    return {hashlib.sha1(source.encode()).hexdigest(): name for name, source in scripts.items()}


class Moment(enum.Enum):
    BEFORE = "before"  # held: Redis never runs the command
    AFTER = "after"  # run by Redis; its reply held


@dataclasses.dataclass(frozen=True)
class Command:
    """One command as a client sent it."""

    args: tuple[bytes, ...]
    script: str | None = None  # the name of the script an EVALSHA/EVAL runs, when known

    @property
    def name(self) -> str:
        return self.args[0].decode(errors="replace").upper() if self.args else ""

    @property
    def keys(self) -> tuple[str, ...]:
        """A script call's declared keys; for any other command its first argument (the key of
        every command these tests match on)."""
        if self.args and self.args[0].upper() in _SCRIPT_CALLS and len(self.args) > 2:
            count = int(self.args[2])
            return tuple(key.decode(errors="replace") for key in self.args[3:3 + count])
        return (self.args[1].decode(errors="replace"),) if len(self.args) > 1 else ()

    def has(self, value: str) -> bool:
        """Whether ``value`` is one of the arguments."""
        return value.encode() in self.args[1:]

    def __str__(self) -> str:
        shown = " ".join(arg.decode(errors="replace")[:40] for arg in self.args[:6])
        return f"{self.script or self.name}: {shown}{' ...' if len(self.args) > 6 else ''}"


class Rule:
    """Run ``action`` at the ``nth`` command that ``matches`` (counted from when it is armed),
    ``moment`` BEFORE or AFTER Redis runs it. Fires once."""

    def __init__(self, matches: Callable[[Command], bool], moment: Moment, action: Callable[[], None], *,
                 nth: int = 1, what: str = "") -> None:
        self.matches = matches
        self.moment = moment
        self.action = action
        self.nth = nth
        self.what = what or "the armed command"
        self.seen = 0
        self.command: Command | None = None  # the command it fired at
        self.fired = threading.Event()
        self.error: str | None = None
        self._done = threading.Event()

    def wait(self, timeout: float) -> Command:
        """The command the rule fired at, once its action has run; fails on timeout or error."""
        if not self._done.wait(timeout):
            raise AssertionError(f"{self.what} ({self.moment.value}) never came within {timeout:.1f}s "
                                 f"({self.seen} of {self.nth} matching commands seen)")
        if self.error:
            raise AssertionError(f"{self.what} ({self.moment.value}): {self.error}")
        return self.command

    def _fire(self, command: Command) -> None:
        self.command = command
        try:
            self.action()
            self.fired.set()
        except Exception as exc:  # reported by wait(), in the test's thread
            self.error = f"the action failed: {type(exc).__name__}: {exc}"
        finally:
            self._done.set()

    def _fail(self, error: str) -> None:
        self.error = error
        self._done.set()


class _Link:
    """One client connection and its connection to Redis."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.pubsub = False
        self.sent = 0  # commands relayed to Redis
        self.received = 0  # replies relayed back
        self.armed: dict[int, list[tuple[Rule, Command]]] = {}  # command index -> rules waiting for its reply
        self.transaction: list[tuple[Rule, Command]] | None = None  # inside MULTI: rules waiting for EXEC

    def cut(self) -> None:
        """Close both sides. Redis still gets what was relayed before (close flushes); the
        client, whose process is gone, gets nothing more."""
        self.upstream.close()
        self.client.transport.abort()


class RedisProxy:
    """Relays 127.0.0.1:``port`` to the Redis on 127.0.0.1:``upstream_port``, on a thread of its own
    (tests drive it from blocking code). ``scripts``: SHA1 -> script name (``script_names``)."""

    def __init__(self, upstream_port: int, scripts: Mapping[str, str] | None = None) -> None:
        self.upstream_port = upstream_port
        self.scripts = dict(scripts or {})
        self.port = 0
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._relays: set[asyncio.Task] = set()  # one per connection
        self._pumps: set[asyncio.Task] = set()  # two per connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisProxy:
        self._loop = asyncio.new_event_loop()
        listening = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name="redis-proxy", daemon=True)
        self._thread.start()
        listening.result(timeout)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()
        self._loop = None

    async def _shutdown(self) -> None:
        self._server.close()
        for link in list(self._links):
            link.cut()
        for pump in list(self._pumps):
            pump.cancel()  # a relay ends with its pumps (cancelling it would be logged as an error)
        await asyncio.gather(*self._relays, return_exceptions=True)

    def arm(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def disarm(self, rule: Rule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    # -- relaying -------------------------------------------------------------------

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        link = _Link(client_writer, upstream_writer)
        self._links.add(link)
        pumps = {asyncio.create_task(self._commands(link, client_reader)),
                 asyncio.create_task(self._replies(link, upstream_reader))}
        relay = asyncio.current_task()
        self._relays.add(relay)
        self._pumps |= pumps
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._pumps -= pumps
            self._relays.discard(relay)
            self._links.discard(link)
            link.upstream.close()
            link.client.close()

    async def _commands(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Client -> Redis, one whole command at a time (a partial one waits for its end)."""
        buffer = bytearray()
        while data := await reader.read(65536):
            buffer += data
            position = 0
            while not link.pubsub and (parsed := parse_command(buffer, position)) is not None:
                args, end = parsed
                command = Command(args, self._script_of(args))
                verb = args[0].upper() if args else b""
                if verb in _SUBSCRIBING:
                    link.pubsub = True
                rule = self._matching_rule(command)
                if rule is not None and rule.moment is Moment.BEFORE:
                    link.upstream.write(bytes(buffer[:position]))  # what the client sent before it
                    rule._fire(command)
                    link.cut()
                    return
                self._await_reply(link, verb, rule, command)
                link.sent += 1
                position = end
            if link.pubsub:
                position = len(buffer)  # from the subscription on, raw bytes
            link.upstream.write(bytes(buffer[:position]))
            del buffer[:position]
            await link.upstream.drain()

    async def _replies(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Redis -> client, counting replies to find the one an AFTER rule waits for."""
        buffer = bytearray()
        while data := await reader.read(65536):
            buffer += data
            position = 0
            while not link.pubsub and (end := reply_end(buffer, position)) is not None:
                kind = buffer[position:position + 1]
                if kind != b">":  # RESP3 push frames are not replies
                    waiting = link.armed.pop(link.received, [])
                    link.received += 1
                    if kind in (b"-", b"!"):
                        for rule, command in waiting:
                            rule._fail(f"Redis answered {bytes(buffer[position:end]).strip()!r} to {command}: "
                                       "an error, not a write to kill after")
                    elif waiting:
                        link.client.write(bytes(buffer[:position]))  # the replies before it
                        for rule, command in waiting:
                            rule._fire(command)
                        link.cut()
                        return
                position = end
            if link.pubsub:
                position = len(buffer)
            link.client.write(bytes(buffer[:position]))
            del buffer[:position]
            await link.client.drain()

    @staticmethod
    def _await_reply(link: _Link, verb: bytes, rule: Rule | None, command: Command) -> None:
        """Arm ``rule`` (AFTER) on this command's reply; inside MULTI, on the reply of its EXEC
        (a queued command's own reply, QUEUED, comes before it runs)."""
        if verb == b"MULTI":
            link.transaction = []
        elif verb in (b"EXEC", b"DISCARD") and link.transaction is not None:
            queued, link.transaction = link.transaction, None
            if verb == b"EXEC":
                link.armed.setdefault(link.sent, []).extend(queued)
            for queued_rule, queued_command in queued if verb == b"DISCARD" else ():
                queued_rule._fail(f"{queued_command} was discarded with its transaction")
        if rule is None:
            return
        if link.transaction is not None and verb != b"MULTI":
            link.transaction.append((rule, command))
        else:
            link.armed.setdefault(link.sent, []).append((rule, command))

    def _script_of(self, args: tuple[bytes, ...]) -> str | None:
        if len(args) < 2:
            return None
        verb = args[0].upper()
        if verb in (b"EVALSHA", b"EVALSHA_RO"):
            return self.scripts.get(args[1].decode(errors="replace").lower())
        if verb in (b"EVAL", b"EVAL_RO"):
            return self.scripts.get(hashlib.sha1(args[1]).hexdigest())
        return None

    def _matching_rule(self, command: Command) -> Rule | None:
        """The armed rule this command fires, if any: the first armed of those it fires (the
        command counts for every rule it matches; another that fires too is failed, not skipped)."""
        firing = None
        with self._lock:
            for rule in list(self._rules):
                try:
                    matched = rule.matches(command)
                except Exception as exc:
                    self._rules.remove(rule)
                    rule._fail(f"its matcher raised {type(exc).__name__}: {exc} on {command}")
                    continue
                if matched:
                    rule.seen += 1
                    if rule.seen == rule.nth:
                        self._rules.remove(rule)
                        if firing is None:
                            firing = rule
                        else:
                            rule._fail(f"{command} fires another rule too ({firing.what})")
        return firing


# -- RESP -----------------------------------------------------------------------------


def parse_command(buffer: bytearray, position: int) -> tuple[tuple[bytes, ...], int] | None:
    """One command at ``position``: (arguments, end), or None while it is incomplete. A client
    sends an array of bulk strings, or an inline command (a line of words)."""
    line_end = buffer.find(b"\r\n", position)
    if line_end < 0:
        return None
    if buffer[position:position + 1] != b"*":
        return tuple(bytes(buffer[position:line_end]).split()), line_end + 2
    count = int(buffer[position + 1:line_end])
    args = []
    position = line_end + 2
    for _ in range(max(count, 0)):
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        if buffer[position:position + 1] != b"$":
            raise ValueError(f"expected a bulk string in a command, got {bytes(buffer[position:line_end])!r}")
        size = int(buffer[position + 1:line_end])
        start = line_end + 2
        if len(buffer) < start + size + 2:
            return None
        args.append(bytes(buffer[start:start + size]))
        position = start + size + 2
    return tuple(args), position


def reply_end(buffer: bytearray, position: int) -> int | None:
    """Where the reply (RESP2 or RESP3) that starts at ``position`` ends, or None while it is incomplete."""
    frames = 1  # still to read
    while frames:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        kind, head = buffer[position:position + 1], buffer[position + 1:line_end]
        position = line_end + 2
        frames -= 1
        if kind in (b"$", b"!", b"="):  # bulk string, bulk error, verbatim string
            size = int(head)
            if size >= 0:  # -1: a null
                if len(buffer) < position + size + 2:
                    return None
                position += size + 2
        elif kind in (b"*", b"~", b">"):  # array, set, push
            frames += max(int(head), 0)
        elif kind == b"%":  # map
            frames += 2 * max(int(head), 0)
        elif kind == b"|":  # attributes, then the reply they describe
            frames += 2 * int(head) + 1
        # + - : _ , ( # are one line each
    return position

