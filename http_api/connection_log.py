"""Which of the server's per-connection lines reach the log.

uvicorn logs a line per HTTP request (``uvicorn.access``) and, per WebSocket, one when it is
accepted and, from the websockets library on the same logger, one when it opens and one
when it closes (``uvicorn.error``). At thousands of sockets and tweets a second those lines
cost more CPU than the deliveries they describe and bury the lines that matter. With
``ACCESS_LOG=off`` (the default) they are left out; counts of sockets, deliveries and
refusals are on ``/metrics`` and ``/stats``. ``ACCESS_LOG=on`` brings them all back.
"""

from __future__ import annotations

import logging

__all__ = ["QuietConnections"]

_PER_SOCKET_MESSAGES = frozenset({"connection open", "connection closed"})
_WEBSOCKET_PREFIX = '%s - "WebSocket %s"'  # uvicorn's "[accepted]", "403" and denial lines


class QuietConnections(logging.Filter):
    """Drops uvicorn's per-WebSocket info lines; warnings and errors always pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.msg, str):
            return True
        return not (record.msg in _PER_SOCKET_MESSAGES or record.msg.startswith(_WEBSOCKET_PREFIX))
