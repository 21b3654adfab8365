"""Live delivery inside one server process.

``LiveHub`` holds this process's single Redis pub/sub connection, subscribed to two
channels: the process's own (``live:process:<id>``) and the control channel. A timeline
write sends one message per process that has a socket of a recipient, naming them (the
format is realtime.live_protocol's); the hub parses the event once and offers the same
frame to every local ``LiveSubscriber`` of those users. Each subscriber has a bounded queue; one that fills (the client stopped reading) is closed with 1013 and never
slows anyone else.

Where a user's sockets are is a lease per (user, process) in ``live:at:{user}``: written
when the user's first socket attaches here, renewed every ``LEASE / 3``, removed by the
renewal once the user has no socket here. A process that dies leaves leases that lapse
within ``LEASE``; until then writes name its users on a channel nobody reads.

On Redis Cluster a script may only publish to a channel of its own slot, so the hub uses
sharded pub/sub there: it SSUBSCRIBEs the control channel, its own channel (the counts of
watched tweets, realtime.watches, which are published from Python, not from a script) and,
for each user with a socket here, that user's channel on this process (``live:{user}:<process>``, in the
user's slot), before the user's lease is written. Topology changes end in the same path
as a lost connection (rebuild, resubscribe, rewrite leases, catch everyone up): a
``sunsubscribe`` we did not ask for (the server drops shard channels of a slot that moved
away), and a node connection that no longer hears its own probes (TCP-healthy but deaf
after a failover), checked every ``PROBE_EVERY`` seconds.

With hybrid fan-out (realtime.hot_fanout) the hub also listens to every fan-out shard's hot
channel, which carries the hot accounts' tweets and deletes to every process, and hands each
to the local users who follow the account (``LocalHotFollows``, read as a user's first socket
attaches, before its replay, and again after every reconnect).

No gap, no duplicate:
- a subscriber is attached (its lease written and confirmed by Redis, after the process
  channel is subscribed) before its timeline is read for replay: a write before the lease
  is in the replay, a write after it is published to us; events arriving meanwhile are
  buffered, then flushed with ids already sent skipped;
- when the pub/sub connection drops, the hub reconnects with backoff (``run``, the
  named reconnect loop), resubscribes, rewrites every lease (Redis may have restarted
  empty), and catches every subscriber up from the last id it was sent, through the
  same buffer-then-flush path.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable


from . import keys, metrics
from .hot_fanout import LocalHotFollows
from .live_protocol import CloseCode, LiveEvent, hot_account_of, probe_message, probe_nonce, unaddress
from .progress import AwaitableCount
from .redis_client import LEASE_WRITE_CHUNK, Redis, RedisDown, queue_lease
from .supervision import supervise
from .watches import CountWatches

__all__ = ["LiveHub", "LiveSubscriber", "SubscriberState", "TopologyChanged"]

log = logging.getLogger("chirp.live")

#: How long a process's claim to a user's sockets lasts without renewal (seconds).
LEASE = 60.0
#: Without a renewal for this long, the hub reconnects: rewriting every lease and catching
#: every socket up, before a lease can lapse unnoticed.
RENEWAL_OVERDUE = LEASE / 2
RENEWAL_RETRY = 2.0
#: Sharded pub/sub: how often each node connection is probed, and how long a probe may take.
PROBE_EVERY = 10.0
PROBE_TIMEOUT = 5.0

#: How often every live socket's session is looked up again (sign-outs missed, lost sessions).
SESSION_RECHECK = 30.0



def new_process_id() -> str:
    # 32 random bits: containers often share a hostname and run as pid 1.
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class TopologyChanged(Exception):
    """The subscriptions no longer match the cluster (or the leases lapsed): rebuild them."""


class SubscriberState(enum.Enum):
    REPLAYING = "replaying"  # the socket's first replay: live events wait in the buffer
    BUFFERING = "buffering"  # catching up after a Redis blip: live events wait in the buffer
    LIVE = "live"
    CLOSED = "closed"


class LiveSubscriber:
    """One socket as the hub sees it: a bounded queue of frames waiting to be written.

    Kept small on purpose (10,000 idle sockets per process): a deque, and ``on_wake``,
    called when there is something to write or the subscriber closes, so that the
    socket's writer task needs to exist only while there is work. The set of ids sent
    exists only while catching up, the one time a duplicate can arise (an event both
    read from the timeline and received live). Deletes sent since the last tweet are
    kept (usually none): a catch-up from that tweet finds them again.
    """

    __slots__ = ("user", "token_hash", "socket_id", "expires_at", "max_queue", "state", "last_id",
                 "last_notification_id", "close_code", "close_reason", "on_wake", "_frames", "_buffer", "_seen",
                 "_deletes_sent")

    def __init__(self, user: str, token_hash: str, *, queue_size: int, expires_at: float = float("inf"),
                 socket_id: str | None = None) -> None:
        self.user = user
        self.token_hash = token_hash
        self.socket_id = socket_id  # its entry in the user's socket count (realtime.socket_limit)
        self.expires_at = expires_at
        self.max_queue = queue_size
        self.state = SubscriberState.REPLAYING
        self.last_id: int | None = None
        #: The newest notification sent (ids grow per user, realtime.notifications): a catch-up
        #: sends the ones after it. None: none sent, and none to catch up on.
        self.last_notification_id: int | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.on_wake: Callable[[], None] | None = None
        # Each None while unused: an empty deque alone is 600 bytes, times every socket.
        self._frames: collections.deque[LiveEvent] | None = None
        self._buffer: list[LiveEvent] | None = []
        self._seen: set[int] | None = set()
        self._deletes_sent: set[int] | None = None

    @property
    def queued(self) -> int:
        return len(self._frames) if self._frames else 0

    def pop(self) -> LiveEvent | None:
        """The next frame to write, or None when there is none now."""
        if not self._frames:
            return None
        event = self._frames.popleft()
        if not self._frames:
            self._frames = None
        return event

    def offer(self, event: LiveEvent) -> None:
        if self.state is SubscriberState.LIVE:
            self._enqueue(event)
        elif self.state is not SubscriberState.CLOSED:
            if len(self._buffer) >= 4 * self.max_queue:
                self.close(CloseCode.OVERLOADED, "too many events while catching up")
            else:
                self._buffer.append(event)

    def begin_buffering(self) -> None:
        if self.state is SubscriberState.LIVE:
            self.state = SubscriberState.BUFFERING
            self._buffer, self._seen = [], {-deleted for deleted in self._deletes_sent or ()}

    def mark_sent(self, event: LiveEvent) -> None:
        """Record an event written outside the queue (the replay on connect)."""
        if self._seen is not None:  # None once closed (signed out, evicted...) mid-replay
            self._seen.add(event.dedupe_key)
        self._note_sent(event)

    def _note_sent(self, event: LiveEvent) -> None:
        if event.notification_id is not None:
            self.last_notification_id = max(self.last_notification_id or 0, event.notification_id)
        elif event.entry_id is not None:
            self.last_id, self._deletes_sent = event.entry_id, None
        elif event.deleted_id is not None:
            if self._deletes_sent is None:
                self._deletes_sent = set()
            self._deletes_sent.add(event.deleted_id)

    def catch_up(self, events: list[LiveEvent]) -> int:
        """Queue ``events`` (oldest first), then what was buffered meanwhile, skipping
        entries already sent; then go live. Returns how many of ``events`` were queued."""
        if self.state is SubscriberState.CLOSED:
            return 0
        count = 0
        for event in events:
            count += self._enqueue(event, dedupe=True)
        buffered, self._buffer = self._buffer or [], None
        for event in buffered:
            self._enqueue(event, dedupe=True)
        if self.state is not SubscriberState.CLOSED:
            self.state = SubscriberState.LIVE
        self._seen = None
        return count

    def _enqueue(self, event: LiveEvent, dedupe: bool = False) -> int:
        if self.state is SubscriberState.CLOSED:
            return 0
        key = event.dedupe_key
        if dedupe and key is not None and self._seen is not None:
            if key in self._seen:
                return 0
            self._seen.add(key)
        if self._frames is None:
            self._frames = collections.deque()
        elif len(self._frames) >= self.max_queue:
            metrics.SLOW_CLIENT_CLOSES.inc()
            metrics.EVENTS_DROPPED.inc(len(self._frames) + 1)
            self.close(CloseCode.OVERLOADED, "client too slow")
            return 0
        self._frames.append(event)
        self._note_sent(event)
        self._wake()
        return 1

    def close(self, code: int, reason: str = "") -> None:
        if self.state is not SubscriberState.CLOSED:
            self.state = SubscriberState.CLOSED
            self.close_code, self.close_reason = code, reason
            self._buffer = self._seen = self._frames = self._deletes_sent = None
            self._wake()

    def _wake(self) -> None:
        if self.on_wake is not None:
            self.on_wake()


#: What ``user``'s home timeline gained and lost after entry ``since``, and the notifications
#: after the last one sent (None: none), as events (realtime.replay.Replay.events_after).
CatchUp = Callable[[str, int | None, int | None], Awaitable[list[LiveEvent]]]


class LiveHub:
    def __init__(self, redis: Redis, make_pubsub_client: Callable[[], Awaitable[Redis]], catch_up: CatchUp,
                 process_id: str | None = None, *, sharded: bool = False, hot_channels: list[str] = ()) -> None:
        self._redis = redis
        #: Hybrid fan-out: hot accounts' events come on these channels, for the local users who
        #: follow them (realtime.hot_fanout).
        self.hot_channels = list(hot_channels)
        self.hot_follows = LocalHotFollows(redis) if self.hot_channels else None
        self._make_client = make_pubsub_client
        self._catch_up = catch_up
        self.process_id = process_id or new_process_id()
        self.channel = keys.process_channel(self.process_id)
        self.sharded = sharded
        #: The tweets whose counts local sockets watch; their messages come on ``channel``.
        self.watches = CountWatches(redis, self.process_id, lease_ms=int(LEASE * 1000))
        self._leaving: set[str] = set()  # sharded channels we unsubscribe from ourselves
        self._subscribed: dict[str, asyncio.Future] = {}  # sharded: user -> their channel's confirmation
        self._probes: dict[str, asyncio.Future] = {}  # nonce -> its echo
        self._background: set[asyncio.Task] = set()  # tasks we start and must not lose
        self._nodes_changed = asyncio.Event()  # sharded: a node connection may have been added
        self._rebuild_requested = asyncio.Event()  # set by the lease renewal when it is overdue
        self._subscribers: dict[str, set[LiveSubscriber]] = {}
        self._connections = 0  # kept, not summed: 10,000 sockets closing must not cost 10,000² steps
        self._leased: set[str] = set()  # users whose lease on this process Redis has confirmed
        self._removal_done = asyncio.Event()  # cleared while lapsed leases are being removed
        self._removal_done.set()
        self._unconfirmed: dict[str, asyncio.Future] = {}
        self._renewed_at = time.monotonic()  # the last time every lease was written
        self._client: Redis | None = None
        self._pubsub = None
        self.connected = asyncio.Event()
        self.empty = asyncio.Event()
        self.empty.set()
        self.reconnected = AwaitableCount()  # reconnections done, each with its leases rewritten
        self._connection_number = 0  # bumped when the connection drops; stale catch-ups stop

    # -- numbers for presence and /stats ----------------------------------------------

    @property
    def connections(self) -> int:
        return self._connections

    @property
    def users_online(self) -> int:
        return len(self._subscribers)

    def users(self) -> set[str]:
        """Users with at least one socket attached here."""
        return set(self._subscribers)

    def subscribers(self) -> list[LiveSubscriber]:
        return [sub for subs in self._subscribers.values() for sub in subs]

    # -- attaching sockets ------------------------------------------------------------

    async def attach(self, subscriber: LiveSubscriber) -> None:
        """Register ``subscriber`` (buffering); return once Redis has its user's lease here."""
        if not self.connected.is_set():
            raise ConnectionError("the live pub/sub connection is down")
        subs = self._subscribers.setdefault(subscriber.user, set())
        if subscriber not in subs:
            subs.add(subscriber)
            self._connections += 1
        self._update_gauges()
        if self.sharded:
            await asyncio.wait_for(self._subscribe_user(subscriber.user), timeout=5)
        if subscriber.user not in self._leased:
            await asyncio.wait_for(self._write_leases([subscriber.user]), timeout=5)
        if self.hot_follows is not None and not self.hot_follows.loaded(subscriber.user):
            await asyncio.wait_for(self.hot_follows.load([subscriber.user]), timeout=5)

    def _user_channel(self, user: str) -> str:
        return keys.user_process_channel(user, self.process_id)

    async def _subscribe_user(self, user: str) -> None:
        """Sharded: SSUBSCRIBE the user's channel here unless done; return once confirmed."""
        confirmed = self._subscribed.get(user)
        if confirmed is None:
            confirmed = self._unconfirmed[self._user_channel(user)] = asyncio.get_running_loop().create_future()
            self._subscribed[user] = confirmed
            await self._pubsub.ssubscribe(self._user_channel(user))
            self._nodes_changed.set()  # its node may be new: the reader starts a reader for it
        await asyncio.shield(confirmed)

    async def detach(self, subscriber: LiveSubscriber) -> None:
        """Forget ``subscriber``. Its user's lease stays until the next renewal (no Redis call
        per socket that leaves; events for the user meanwhile are ignored here)."""
        subscriber.close(subscriber.close_code or 1000)
        self.watches.forget(subscriber)
        subs = self._subscribers.get(subscriber.user)
        if subs is None or subscriber not in subs:
            return
        subs.discard(subscriber)
        self._connections -= 1
        if not subs:
            del self._subscribers[subscriber.user]
            if self.hot_follows is not None:
                self.hot_follows.forget(subscriber.user)
        self._update_gauges()

    # -- leases: where each user's sockets are ----------------------------------------

    async def _write_leases(self, users: list[str]) -> None:
        # After a removal in flight, so that its ZREM cannot land after our ZADD.
        await self._removal_done.wait()
        now_ms, lease_ms = int(time.time() * 1000), int(LEASE * 1000)
        until = now_ms + lease_ms
        for start in range(0, len(users), LEASE_WRITE_CHUNK):
            chunk = users[start:start + LEASE_WRITE_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for user in chunk:
                queue_lease(pipe, keys.live_presence(user), self.process_id, now_ms, lease_ms)
            if not self.sharded:  # one Redis: who may be online, for a fan-out batch (realtime.scripts)
                pipe.zadd(keys.LIVE_ONLINE, {user: until for user in chunk}, gt=True)
                pipe.zremrangebyscore(keys.LIVE_ONLINE, "-inf", now_ms)
            await pipe.execute()
            # Only users still here: one who left meanwhile is the renewal's to remove.
            self._leased.update(user for user in chunk if user in self._subscribers)

    async def keep_leases(self) -> None:
        """Renew the leases of users with a socket here, drop the others; every LEASE / 3.

        A renewal that fails is retried every few seconds; once none has succeeded for
        RENEWAL_OVERDUE, the pub/sub connection is dropped, so that the reconnect loop
        rewrites every lease and catches every socket up (or, while Redis refuses writes,
        keeps new sockets out) before a lease can lapse with its sockets still counting on it.
        """
        while True:
            await asyncio.sleep(LEASE / 3)
            while True:
                try:
                    await self.renew_leases()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # RedisDown, READONLY, OOM...: never the end of renewals
                    log.warning("lease renewal failed (%s); retrying in %.0fs", exc, RENEWAL_RETRY)
                if time.monotonic() - self._renewed_at > RENEWAL_OVERDUE:
                    log.error("no lease renewed for %.0fs: reconnecting to rewrite them", RENEWAL_OVERDUE)
                    await self._drop_connection()
                await asyncio.sleep(RENEWAL_RETRY)

    async def _drop_connection(self) -> None:
        """Make ``run`` go through its reconnect path. Signalled, not done by closing the
        pub/sub under the reader: closing a cluster pub/sub waits for locks that a stuck node
        connection may hold, which is when this is needed most."""
        self._rebuild_requested.set()

    async def release_leases(self) -> None:
        """On shutdown: this process no longer takes anyone's events."""
        leased, self._leased = self._leased, set()
        await self._remove_leases(leased)
        await self.watches.release()

    async def _remove_leases(self, users: set[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for user in users:
            pipe.zrem(keys.live_presence(user), self.process_id)
        await pipe.execute()

    async def renew_leases(self) -> None:
        gone = self._leased - self._subscribers.keys()
        if gone:
            self._leased -= gone
            self._removal_done.clear()
            try:
                await self._remove_leases(gone)
            finally:
                self._removal_done.set()
            await self._unsubscribe_users(gone - self._subscribers.keys())
        await self._write_leases(list(self._subscribers))
        await self.watches.renew()
        self._renewed_at = time.monotonic()

    async def _unsubscribe_users(self, users: set[str]) -> None:
        if not self.sharded or self._pubsub is None:
            return
        channels = []
        for user in users:
            if self._subscribed.pop(user, None) is not None:
                channels.append(self._user_channel(user))
        if channels:
            self._leaving.update(channels)
            await self._pubsub.sunsubscribe(*channels)

    def _update_gauges(self) -> None:
        if self._subscribers:
            self.empty.clear()
        else:
            self.empty.set()
        metrics.OPEN_SOCKETS.set(self.connections)
        metrics.USERS_ONLINE.set(self.users_online)

    # -- the named reconnect loop -----------------------------------------------------

    async def run(self) -> None:
        """Listen forever; on a lost connection or a topology change, rebuild with backoff
        and catch everyone up."""
        backoff = 0.05
        first = True
        while True:
            tasks: list[asyncio.Task] = []
            try:
                self._client = await self._make_client()
                self._pubsub = self._client.pubsub()
                confirmations = await self._subscribe_all()
                tasks.append(asyncio.create_task(self._read_messages(), name="live-pubsub-reader"))
                await asyncio.wait_for(asyncio.gather(*confirmations), timeout=10)
                # Redis may have restarted empty: our users' leases before anyone goes live.
                await asyncio.wait_for(self._write_leases(list(self._subscribers)), timeout=10)
                await asyncio.wait_for(self.watches.renew(), timeout=10)
                if self.hot_follows is not None:  # changes of them were missed while away
                    await asyncio.wait_for(self.hot_follows.load(list(self._subscribers)), timeout=10)
                self._renewed_at = time.monotonic()
                self.connected.set()
                if self.sharded:
                    tasks.append(asyncio.create_task(self._probe_nodes(), name="live-pubsub-probes"))
                if not first:
                    self.reconnected.add()
                    metrics.PUBSUB_RECONNECTS.inc()
                    log.info("pub/sub reconnected; leases rewritten for %d users", len(self._subscribers))
                    self._start(self._catch_up_everyone(self._connection_number), "live-catch-up")
                first, backoff = False, 0.05
                self._rebuild_requested.clear()
                tasks.append(asyncio.create_task(self._rebuild_requested.wait(), name="live-rebuild-request"))
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # raises what ended it
                raise TopologyChanged("renewals overdue: rewriting every lease")
            except asyncio.CancelledError:
                raise
            except TopologyChanged as exc:
                metrics.PUBSUB_RESUBSCRIBES.labels(str(exc).split(":", 1)[0]).inc()
                log.warning("pub/sub rebuilt (%s); resubscribing everything", exc)
                backoff = 0.05
            except (*RedisDown, asyncio.TimeoutError) as exc:
                log.warning("pub/sub connection lost (%s); reconnecting in %.2fs", exc or type(exc).__name__, backoff)
            except Exception:
                metrics.LOOP_FAILURES.labels("live-hub").inc()
                log.exception("pub/sub listener failed; reconnecting in %.2fs", backoff)
            finally:
                for task in tasks:
                    task.cancel()
                self._disconnected()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)  # a failover takes seconds: live again within one of its end

    async def _subscribe_all(self) -> list[Awaitable]:
        """Subscribe: the control channel, our own and the hot channels (realtime.hot_fanout),
        and when sharded each local user's channel. Answers what confirms each, once read."""
        loop = asyncio.get_running_loop()
        channels = (keys.CONTROL_CHANNEL, self.channel, *self.hot_channels)
        self._unconfirmed = {channel: loop.create_future() for channel in channels}
        if not self.sharded:
            await self._pubsub.subscribe(*self._unconfirmed)
            return list(self._unconfirmed.values())
        # Our own channel too: the counts of watched tweets come there (realtime.watches).
        self._subscribed = {}
        self._leaving = set()
        await self._pubsub.ssubscribe(*channels)
        return [*self._unconfirmed.values(), *(self._subscribe_user(user) for user in list(self._subscribers))]

    async def _read_messages(self) -> None:
        if self.sharded:
            await self._read_sharded_messages()
            return
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
            if message is None:
                continue
            if message["type"] == "message":
                self._dispatch(message["data"])
            elif message["type"] == "subscribe":
                self._confirm(message["channel"])

    async def _read_sharded_messages(self) -> None:
        """One reader per node connection, each blocking on its own socket.

        redis-py's ``get_sharded_message()`` without a node polls the node connections in
        turn, each for the whole timeout, and returns one message per call: measured here,
        a backlog on one of three nodes drained at one message per two timeouts (100/s at
        5 ms). Readers started per node (``target_node``) keep the library's bookkeeping of
        shard channels and read each node as fast as it sends.
        """
        pubsub = self._pubsub
        readers: dict[str, asyncio.Task] = {}
        try:
            while True:
                for name, node_pubsub in list(pubsub.node_pubsub_mapping.items()):
                    if node_pubsub.connection is None:
                        continue  # its first SSUBSCRIBE is still on its way: that call wakes us when sent
                    if name not in readers or readers[name].done():
                        readers[name] = asyncio.create_task(self._read_node(pubsub, name), name=f"live-pubsub-{name}")
                if not readers:
                    raise TopologyChanged("slot moved: no node connection left")
                self._nodes_changed.clear()
                changed = asyncio.ensure_future(self._nodes_changed.wait())
                try:
                    done, _ = await asyncio.wait([*readers.values(), changed], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                for name, reader in list(readers.items()):
                    if reader in done:
                        reader.result()  # raises what ended it; a reader that returned has no channels left
                        del readers[name]
        finally:
            for reader in readers.values():
                reader.cancel()

    async def _read_node(self, pubsub, name: str) -> None:
        node = pubsub.cluster.get_node(node_name=name)
        while node is not None and getattr(pubsub.node_pubsub_mapping.get(name), "connection", None) is not None:
            try:
                message = await pubsub.get_sharded_message(ignore_subscribe_messages=False, timeout=1.0,
                                                           target_node=node)
            except RuntimeError:
                if name not in pubsub.node_pubsub_mapping:
                    return  # redis-py closed it under us: its last channel left ("connection not set")
                raise
            if message is None:
                continue
            kind = message["type"]
            if kind == "smessage":
                data = message["data"]
                if (nonce := probe_nonce(data)) is not None:
                    self._probe_heard(nonce)
                else:
                    self._dispatch(data)
            elif kind == "ssubscribe":
                self._confirm(message["channel"])
            elif kind == "sunsubscribe":
                channel = message["channel"]
                if channel in self._leaving:
                    self._leaving.discard(channel)
                else:
                    raise TopologyChanged(f"slot moved: the server unsubscribed {channel}")

    def _confirm(self, channel: str) -> None:
        confirmed = self._unconfirmed.pop(channel, None)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(True)

    # -- probes: a node connection can stay TCP-healthy yet deaf after a failover --------

    async def _probe_nodes(self) -> None:
        """Every PROBE_EVERY, publish to one of our channels on each node connection and
        wait for the echo; a connection that does not hear it is deaf: rebuild everything."""
        while True:
            await asyncio.sleep(PROBE_EVERY)
            channels = [next(iter(node.shard_channels)) for node in list(self._pubsub.node_pubsub_mapping.values())
                        if node.shard_channels]
            waits = {}
            for channel in channels:
                channel = channel.decode() if isinstance(channel, bytes) else channel
                nonce = secrets.token_hex(6)
                waits[nonce] = self._probes[nonce] = asyncio.get_running_loop().create_future()
                await self._redis.spublish(channel, probe_message(nonce))
            try:
                _, missing = await asyncio.wait(waits.values(), timeout=PROBE_TIMEOUT)
            finally:
                for nonce in waits:
                    self._probes.pop(nonce, None)
            metrics.PUBSUB_PROBES.labels("heard").inc(len(waits) - len(missing))
            if missing:
                metrics.PUBSUB_PROBES.labels("missed").inc(len(missing))
                raise TopologyChanged(f"deaf: {len(missing)} of {len(waits)} node connections missed their probe")

    def _probe_heard(self, nonce: str) -> None:
        heard = self._probes.get(nonce)
        if heard is not None and not heard.done():
            heard.set_result(True)

    def _start(self, coroutine, name: str) -> asyncio.Task:
        """A background task kept until it ends, its failure reported (realtime.supervision)."""
        task = supervise(asyncio.create_task(coroutine, name=name))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _dispatch(self, data: str) -> None:
        """``data`` names its recipients (realtime.live_protocol): parsed once for all of them here."""
        names, frame = unaddress(data)
        if names == [""]:  # addressed to nobody: a tweet's counts, for whoever watches it here
            try:
                self.watches.deliver(frame)
            except Exception:
                log.error("ignoring a malformed counts message: %s", frame[:100])
            return
        account = hot_account_of(names)
        if account is not None:
            self._dispatch_hot(account, names[1:], frame)
            return
        local = [subs for name in names if (subs := self._subscribers.get(name))]
        if not local:
            return  # a lease not yet dropped, or a control event for users elsewhere
        try:
            event = LiveEvent(frame)
        except Exception:  # anything in it that is not the expected shape: never the reader's end
            log.error("ignoring a malformed live event for %s", " ".join(names)[:100])
            return
        if event.changes_hot_follows:
            for name in names:
                if self.hot_follows is not None and name in self._subscribers:
                    self._offer(name, self.hot_follows.changed(name, event))
            return
        for subs in local:
            if event.is_control:
                self._control(event, subs)
            else:
                for sub in subs:
                    sub.offer(event)

    def _dispatch_hot(self, account: str, skip: list[str], frame: str) -> None:
        """A hot account's tweet or delete, heard by every process: to the local users who follow it."""
        if self.hot_follows is None:
            return
        try:
            event = LiveEvent(frame)
        except Exception:
            log.error("ignoring a malformed hot event of %s", account[:20])
            return
        for user in self.hot_follows.recipients(account, frozenset(skip), event):
            self._offer(user, [event])

    def _offer(self, user: str, events: list[LiveEvent]) -> None:
        for sub in self._subscribers.get(user, ()):
            for event in events:
                sub.offer(event)

    @staticmethod
    def _control(event: LiveEvent, subs: set[LiveSubscriber]) -> None:
        for sub in list(subs):
            if event.revokes_session and sub.token_hash == event.token_hash:
                sub.close(CloseCode.UNAUTHORIZED, "signed out")
            elif sub.socket_id is not None and sub.socket_id in event.socket_ids:
                sub.close(CloseCode.REPLACED, "too many live sockets for this user; the oldest was closed")

    def _disconnected(self) -> None:
        self.connected.clear()
        self._connection_number += 1
        for confirmed in self._unconfirmed.values():
            if not confirmed.done():
                confirmed.set_exception(ConnectionError("the live pub/sub connection is down"))
                confirmed.exception()  # whoever waits on it sees it; nobody else needs to
        self._unconfirmed = {}
        # Sockets still replaying on connect cannot finish without Redis: they reconnect.
        # The others buffer from now on: a message on a channel resubscribed before the
        # catch-up has read the timeline must not go out ahead of what arrived meanwhile.
        for subscriber in self.subscribers():
            if subscriber.state is SubscriberState.REPLAYING:
                subscriber.close(CloseCode.OVERLOADED, "Redis connection lost")
            else:
                subscriber.begin_buffering()
        self._subscribed = {}
        for heard in self._probes.values():
            heard.cancel()
        self._probes = {}
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        if client is not None:
            self._start(_quietly_close(pubsub, client), "live-pubsub-close")

    async def _catch_up_everyone(self, connection_number: int) -> None:
        # A sign-out published while we were away never reached us: look before catching up.
        try:
            await self.recheck_sessions()
        except Exception as exc:
            log.warning("could not re-check live sessions after reconnecting: %s: %s", type(exc).__name__, exc)
        for subscriber in self.subscribers():
            if subscriber.state is not SubscriberState.BUFFERING:
                continue
            try:
                events = await self._catch_up(subscriber.user, subscriber.last_id, subscriber.last_notification_id)
            except Exception as exc:  # any failure: the client reconnects with since, never buffers forever
                log.warning("catch-up of a socket of %s failed (%s); closing it 1013", subscriber.user, exc)
                subscriber.close(CloseCode.OVERLOADED, "could not catch up")
                continue
            if connection_number != self._connection_number:
                # The connection dropped meanwhile: going live now would miss what is published
                # until the next one; that connection's catch-up takes every buffering socket.
                # (Checked rather than cancelling this task: redis-py can swallow a cancel.)
                return
            metrics.REPLAYED_EVENTS.inc(subscriber.catch_up(events))

    async def expire_sessions(self) -> None:
        """Close sockets whose session has expired, once a second (one loop for all sockets
        rather than a timer each), and every SESSION_RECHECK those whose session is gone from
        Redis (a sign-out whose event this process missed)."""
        rechecked = time.monotonic()
        while True:
            now = time.time()
            for subscriber in self.subscribers():
                if subscriber.expires_at <= now:
                    subscriber.close(CloseCode.UNAUTHORIZED, "session expired")
            if time.monotonic() - rechecked >= SESSION_RECHECK:
                rechecked = time.monotonic()
                try:
                    await self.recheck_sessions()
                except Exception as exc:  # Redis away: the next round, or the reconnect, checks again
                    metrics.LOOP_FAILURES.labels("live-session-recheck").inc()
                    log.warning("could not re-check live sessions: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(1.0)

    async def recheck_sessions(self) -> int:
        """Close with 4401 every socket whose session no longer exists in Redis: signed out
        while the sign-out event could not reach us (a pub/sub reconnect), or lost with an
        empty Redis restart. Answers how many were closed."""
        subscribers = [sub for sub in self.subscribers() if sub.state is not SubscriberState.CLOSED]
        token_hashes = sorted({sub.token_hash for sub in subscribers})
        gone: set[str] = set()
        for start in range(0, len(token_hashes), LEASE_WRITE_CHUNK):
            chunk = token_hashes[start:start + LEASE_WRITE_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for token_hash in chunk:
                pipe.exists(keys.session(token_hash))
            gone.update(token_hash for token_hash, exists in zip(chunk, await pipe.execute()) if not exists)
        closed = 0
        for sub in subscribers:
            if sub.token_hash in gone:
                sub.close(CloseCode.UNAUTHORIZED, "signed out")
                closed += 1
        return closed

    def close_all(self, code: int, reason: str = "") -> None:
        for subscriber in self.subscribers():
            subscriber.close(code, reason)


async def _quietly_close(pubsub, client) -> None:
    for closer in (pubsub.aclose, client.aclose):
        try:
            await closer()
        except Exception:
            pass
