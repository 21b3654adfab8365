"""``GET /ws``: the live home timeline (protocol: docs/API.md; its guarantees: docs/design.md).

One socket's life: check Origin, accept, wait for the auth frame (4408 / 4400 / 4401),
attach to the process's ``LiveHub`` (its lease written before reading, so there is no gap),
replay what arrived after ``since``, send ``ready``, then pump frames from the
subscriber's bounded queue until the client leaves or the hub closes the subscriber
(1013 too slow or Redis lost, 4401 signed out or expired, 4409 the user's oldest socket
beyond ``MAX_SOCKETS_PER_USER``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from realtime import metrics
from realtime.errors import Unauthorized
from realtime.live_hub import LiveSubscriber
from realtime.live_protocol import (PONG_FRAME, CloseCode, LiveClose, is_ping, parse_auth_frame, parse_client_frame,
                                     parse_watch_frame, ready_frame)
from realtime.redis_client import is_transient

from ..errors import error_response
from ..socket_writer import SocketWriter
from ..requests import client_address

log = logging.getLogger("chirp.live")


def origin_allowed(websocket: WebSocket, allowed: str) -> bool:
    """Browsers always send Origin; other clients (no Origin) cannot be tricked into connecting.

    With no ``ALLOWED_ORIGINS``: the page's host must be the one the socket asks for, and its
    scheme https, or http only on a connection not known to be secure (wss, or a proxy's
    ``X-Forwarded-Proto: https``), so a plain-http page cannot reach an https service. Browsers
    send the origin lowercase: any other spelling is not one of theirs."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    if allowed.strip():
        return origin.rstrip("/") in {o.strip().rstrip("/") for o in allowed.split(",")}
    scheme, sep, host = origin.partition("://")
    if not sep or host != websocket.headers.get("host", "").lower():
        return False
    forwarded_proto = websocket.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    secure = websocket.url.scheme == "wss" or forwarded_proto == "https"
    return scheme == "https" or (scheme == "http" and not secure)


class PendingSockets:
    """Sockets of one client address not yet authenticated, in this process: each may wait
    ``LIVE_AUTH_TIMEOUT`` for its auth frame, so without a cap one address could hold
    thousands open for nothing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: collections.Counter[str] = collections.Counter()

    def admit(self, address: str) -> bool:
        if self._counts[address] >= self.limit:
            return False
        self._counts[address] += 1
        return True

    def done(self, address: str) -> None:
        self._counts[address] -= 1
        if self._counts[address] <= 0:
            del self._counts[address]


async def live(websocket: WebSocket) -> None:
    engine, settings = websocket.app.state.engine, websocket.app.state.settings
    if not origin_allowed(websocket, settings.allowed_origins):
        await websocket.close(CloseCode.POLICY)  # before accept: the handshake answers 403
        return
    pending, address = websocket.app.state.pending_sockets, client_address(websocket)
    if not pending.admit(address):
        await _deny(websocket, pending.limit)
        return
    subscriber: LiveSubscriber | None = None
    registered = False
    try:
        try:
            await websocket.accept()
            session, since = await _authenticate(websocket, engine, settings.live_auth_timeout)
        finally:
            pending.done(address)
        subscriber = LiveSubscriber(session.user, session.token_hash, queue_size=settings.live_send_queue,
                                    expires_at=session.expires_at, socket_id=engine.socket_limit.new_socket_id())
        subscriber.last_id = since  # a Redis blip before anything is sent catches up from here
        try:
            await engine.live_hub.attach(subscriber)
            # Counted across processes; beyond MAX_SOCKETS_PER_USER the user's oldest socket,
            # wherever it is, is closed with 4409 (its process hears it on the control channel).
            await engine.socket_limit.register(session.user, subscriber.socket_id)
            registered = True
            replay = await engine.replay.events_after(session.user, since, since)
            # The notifications after ``since``, or with none (a client that shows none yet reads
            # GET /notifications), after the newest now: read once the hub buffers for the socket.
            subscriber.last_notification_id = since if since is not None else (
                await engine.notifications.newest_id(session.user))
            username = await engine.users.canonical(session.user) or session.user
        except Exception as exc:  # Redis away, out of memory, read-only, mid-failover: 1013, never a crash
            if not (is_transient(exc) or isinstance(exc, asyncio.TimeoutError)):
                raise
            raise LiveClose(CloseCode.OVERLOADED, "live delivery is unavailable; reconnect shortly") from None
        try:
            await asyncio.wait_for(_send_replay(websocket, subscriber, replay, username), settings.ws_ping_interval)
        except asyncio.TimeoutError:
            raise LiveClose(CloseCode.OVERLOADED, "client too slow to take its replay") from None
        del replay  # not kept for the socket's lifetime
        subscriber.catch_up([])  # what arrived during the replay, then live
        await _pump(websocket, subscriber, engine.live_hub, settings.ws_ping_interval)
    except LiveClose as close:
        if subscriber is not None:
            await engine.live_hub.detach(subscriber)  # stop counting it before a slow close
        await _close(websocket, close.code, close.reason, settings.ws_ping_interval)
    except WebSocketDisconnect:
        pass
    finally:
        if subscriber is not None:
            await engine.live_hub.detach(subscriber)
        if registered:
            try:
                await engine.socket_limit.unregister(subscriber.user, subscriber.socket_id)
            except Exception as exc:  # its entry lapses with the key, or goes with the next eviction
                if not is_transient(exc):
                    raise


async def _deny(websocket: WebSocket, limit: int) -> None:
    """429 to the handshake where the server can say so (uvicorn's websockets protocols), else 1008."""
    metrics.HTTP_REFUSED.labels("too_many_sockets").inc()
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(
            429, "too_many_sockets", f"At most {limit} sockets per address may wait to authenticate.",
            {"Retry-After": "1"}))
    else:
        await websocket.close(CloseCode.POLICY)


async def _send_replay(websocket: WebSocket, subscriber: LiveSubscriber, replay: list, username: str) -> None:
    for event in replay:
        await websocket.send_text(event.frame)
        subscriber.mark_sent(event)
    metrics.REPLAYED_EVENTS.inc(len(replay))
    await websocket.send_text(ready_frame(username, len(replay)))


async def _authenticate(websocket: WebSocket, engine, timeout: float):
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout)
    except asyncio.TimeoutError:
        raise LiveClose(CloseCode.AUTH_TIMEOUT, "no auth frame in time") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    auth = parse_auth_frame(parse_client_frame(message.get("text")))  # or LiveClose(4400)
    try:
        session = await engine.sessions.lookup(auth.token)
    except Unauthorized as exc:
        raise LiveClose(CloseCode.UNAUTHORIZED, exc.message) from None
    except Exception as exc:
        if not is_transient(exc):
            raise
        raise LiveClose(CloseCode.OVERLOADED, "the service is unavailable; reconnect shortly") from None
    if session.user is None:
        raise LiveClose(CloseCode.UNAUTHORIZED, "choose a username first")
    return session, auth.since


async def _pump(websocket: WebSocket, subscriber: LiveSubscriber, hub, close_timeout: float) -> None:
    """Read client frames here; frames to the client are written as they are queued
    (``SocketWriter``), by a task only while the socket is too slow to take them."""

    async def close_socket() -> None:
        await hub.detach(subscriber)  # stop counting it before a slow close
        await _close(websocket, subscriber.close_code, subscriber.close_reason, close_timeout)

    writer = SocketWriter(websocket, subscriber, close_socket)
    subscriber.on_wake = writer.wake
    if subscriber.queued or subscriber.close_code is not None:
        writer.wake()
    try:
        await _receive_frames(websocket, subscriber, hub)  # returns when the client leaves or our close is sent
    except LiveClose as close:
        subscriber.close(close.code, close.reason)  # the writer sends the close frame
    finally:
        subscriber.on_wake = None
        await writer.wait_closed()


#: At most one watch frame a socket sends is applied per this many seconds; those in between
#: are folded into the last one, applied when the time is up (or before the next pong, which
#: waits for it). Each applied frame can cost Redis a few hundred commands (a lease per new
#: tweet): a client sending them in a loop must not multiply that. The browser client settles
#: for 0.3 s before it sends one.
WATCH_INTERVAL = 0.25


async def _receive_frames(websocket: WebSocket, subscriber: LiveSubscriber, hub) -> None:
    """Returns when the client leaves; answers pings, takes watch frames (``WATCH_INTERVAL``);
    raises LiveClose on a malformed frame."""
    loop = asyncio.get_running_loop()
    pending: list[int] | None = None  # the newest watch frame not applied yet
    applied_at = float("-inf")

    async def apply_pending() -> None:
        nonlocal pending, applied_at
        await _watch(hub, subscriber, pending)
        pending, applied_at = None, loop.time()

    while True:
        wait = None if pending is None else applied_at + WATCH_INTERVAL - loop.time()
        if wait is not None and wait <= 0:
            await apply_pending()
            continue
        try:
            # Cancelling a receive loses no frame (websockets' recv, wsproto's queue).
            message = await (websocket.receive() if wait is None else asyncio.wait_for(websocket.receive(), wait))
        except asyncio.TimeoutError:
            continue  # the pending frame is due
        if message["type"] == "websocket.disconnect":
            return
        data = parse_client_frame(message.get("text"))
        if is_ping(data):
            if pending is not None:  # frames are taken in order: a pong says the watch before it holds
                await asyncio.sleep(max(0.0, applied_at + WATCH_INTERVAL - loop.time()))
                await apply_pending()
            await websocket.send_text(PONG_FRAME)
        elif (watched := parse_watch_frame(data)) is not None:
            pending = watched
        else:
            raise LiveClose(CloseCode.MALFORMED, "unexpected frame after auth")


async def _watch(hub, subscriber: LiveSubscriber, ids: list[int]) -> None:
    try:
        await hub.watches.watch(subscriber, ids)
    except Exception as exc:  # Redis away: counts are a nicety; the socket stays
        if not is_transient(exc):
            raise
        log.warning("could not record the tweets a socket of %s watches: %s", subscriber.user, exc)


async def _close(websocket: WebSocket, code: int, reason: str, timeout: float) -> None:
    # A stalled client takes the close frame only after reading what was written before it.
    # Wait for that as long as the keepalive tolerates a silent peer: giving up sooner frees
    # nothing (the transport keeps its buffer until the peer reads or the connection dies)
    # and would leave a client that was merely slow with 1006 instead of 1013.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason[:120]), timeout)
