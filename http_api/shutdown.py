"""Graceful shutdown for live sockets.

On SIGTERM (or SIGINT) uvicorn would close every WebSocket with 1012. We close them
first with 1013 ("try again later"), which our clients answer by reconnecting with
``since`` to another process, and only then hand the signal on to uvicorn. That relies on
how uvicorn installs its handlers, pinned by tests/test_library_internals.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from realtime.live_hub import LiveHub
from realtime.live_protocol import CloseCode

__all__ = ["close_sockets_before_exit"]

log = logging.getLogger("chirp.shutdown")

DRAIN_TIMEOUT = 3.0


def close_sockets_before_exit(hub: LiveHub) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue  # not under uvicorn's signal capture: nothing to chain to

        def handler(number, frame, previous=previous):
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_drain_then(hub, previous, number, frame)))

        signal.signal(signum, handler)


async def _drain_then(hub: LiveHub, previous, number, frame) -> None:
    if hub.connections:
        log.info("closing %d live sockets with 1013 before shutting down", hub.connections)
        hub.close_all(CloseCode.OVERLOADED, "server shutting down; reconnect")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(hub.empty.wait(), DRAIN_TIMEOUT)
    previous(number, frame)
