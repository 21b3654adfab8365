"""Writing live frames to a socket with no task and no wrapper per frame.

A live tweet reaches thousands of sockets at once, so what one frame costs is paid per
delivery. Starlette's ``WebSocket.send_text`` goes through its state checks and the
exception middleware's send wrapper before uvicorn's; and a writer task per wake-up (the
socket was idle, a frame arrived) costs a task, its scheduling and a loop turn. Neither
is needed in the common case, where uvicorn's send has nothing to wait for (the transport
is not paused) and returns without suspending:

- ``RawWebSocketSend`` (outermost of our middleware) keeps uvicorn's own ``send`` in the
  socket's scope, where nothing has wrapped it yet;
- ``SocketWriter.wake`` writes queued frames right away, stepping each send coroutine by
  hand; only when one does suspend (the peer is slow and the transport paused) does the
  rest move to a task, which finishes that send and writes what is queued behind it. So
  frames are never reordered: while that task lives, wake-ups leave the writing to it.

Every frame still goes through the ASGI send of the server in use, so this holds for
each of uvicorn's WebSocket implementations.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from realtime import metrics
from realtime.live_hub import LiveSubscriber
from realtime.live_protocol import LiveEvent

__all__ = ["RawWebSocketSend", "SocketWriter"]

RAW_SEND = "chirp.raw_send"


class RawWebSocketSend:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[RAW_SEND] = send
        await self.app(scope, receive, send)


class SocketWriter:
    """Writes a live subscriber's queued frames, then its close frame once it is closed.

    ``close_socket`` sends the close (the endpoint's own routine, bounded in time)."""

    __slots__ = ("_send", "_subscriber", "_close_socket", "_task", "_gone")

    def __init__(self, websocket: WebSocket, subscriber: LiveSubscriber,
                 close_socket: Callable[[], Awaitable[None]]) -> None:
        self._send: Send = websocket.scope.get(RAW_SEND) or websocket.send
        self._subscriber = subscriber
        self._close_socket = close_socket
        self._task: asyncio.Task | None = None
        self._gone = False  # the peer left: later frames are dropped, the endpoint detaches

    def wake(self) -> None:
        """Called by the subscriber when it has frames to write or has closed."""
        if self._task is not None and not self._task.done():
            return  # it writes what is queued, in order
        subscriber, written = self._subscriber, []
        try:
            while (event := subscriber.pop()) is not None:
                if self._gone:
                    continue  # dropped: the endpoint detaches the subscriber as its receive ends
                step = self._send({"type": "websocket.send", "text": event.frame})
                try:
                    waiting_on = step.send(None)
                except StopIteration:
                    written.append(event)
                    continue
                metrics.WRITES_DEFERRED.inc()
                self._task = asyncio.create_task(self._write_later(step, waiting_on, event))
                return
            if subscriber.close_code is not None:
                self._task = asyncio.create_task(self._write_later())
        except Exception:  # the peer is gone (uvicorn's ClientDisconnected); its receive ends the socket
            self._gone = True
        finally:
            _count_delivered(written)

    async def wait_closed(self) -> None:
        """Waits for a close in progress; cancels a write the client will never read."""
        task = self._task
        if task is None:
            return
        if self._subscriber.close_code is None:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _write_later(self, step: Coroutine[Any, Any, None] | None = None, waiting_on: Any = None,
                           event: LiveEvent | None = None) -> None:
        subscriber = self._subscriber
        try:
            if step is not None:
                await _finish(step, waiting_on)
                _count_delivered([event])
            while (event := subscriber.pop()) is not None:
                await self._send({"type": "websocket.send", "text": event.frame})
                _count_delivered([event])
        except Exception:  # the peer is gone, as in wake()
            self._gone = True
            return
        if subscriber.close_code is not None:
            await self._close_socket()


async def _finish(step: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Drives a coroutine that suspended outside a task to its end, as a task would: wait
    for what it yielded, then resume it. Cancelled, it is closed (the write is abandoned)."""
    try:
        while True:
            if waiting_on is None:
                await asyncio.sleep(0)  # a bare yield: let the loop turn
            else:
                # Taken over, as a task takes what its coroutine yields: else asyncio's future
                # refuses a second await while it is pending.
                waiting_on._asyncio_future_blocking = False
                with contextlib.suppress(Exception):  # resumed, the coroutine reads the outcome itself
                    await waiting_on
            try:
                waiting_on = step.send(None)
            except StopIteration:
                return
    finally:
        step.close()


_uncounted_deliveries: collections.Counter[str] = collections.Counter()


def _count_delivered(events: list[LiveEvent]) -> None:
    """Latency per frame; the count per kind once per loop turn, summed over every socket
    written in it (a tweet's frames to this process's sockets go out in one turn)."""
    if not events:
        return
    if not _uncounted_deliveries:
        asyncio.get_running_loop().call_soon(_add_uncounted_deliveries)
    now = time.time()
    for event in events:
        _uncounted_deliveries[event.kind] += 1
        if event.posted_at is not None:
            metrics.DELIVERY_LATENCY.observe(max(0.0, now - event.posted_at))


def _add_uncounted_deliveries() -> None:
    for kind, count in _uncounted_deliveries.items():
        metrics.EVENTS_DELIVERED.labels(kind).inc(count)
    _uncounted_deliveries.clear()
