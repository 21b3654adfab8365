"""uvicorn's httptools HTTP/1.1 protocol with the limits a public server needs.

uvicorn's own httptools protocol accepts headers of any size and count, and waits forever
for a client that sends its headers or its body one byte at a time (one 64 MB header was
answered 200; 1,000 slow-header connections were never closed). This subclass:

- refuses headers above ``MAX_HEADER_BYTES`` in all (request line included) or more than
  ``MAX_HEADERS`` of them: 431, connection closed;
- closes a connection whose headers have not all arrived ``HEADER_TIMEOUT`` after it opened
  (or after the first byte of a later keep-alive request): 408;
- closes a connection whose declared body has not all arrived ``BODY_TIMEOUT`` after its
  headers: 408 when no answer has started, else just closed;
- caps the kernel's send buffer at ``SOCKET_SEND_BUFFER``: left to autotuning, a client that
  stops reading holds up to 4 MB of it before the live hub gives up on it.

The limits apply to the WebSocket handshake too: it is an HTTP request until upgraded. The
answers are the contract's error JSON, written here because no ASGI app runs for them.
``data_received`` mirrors uvicorn's own, whose helpers it calls: pinned by
tests/test_library_internals.py.
"""

from __future__ import annotations

import asyncio
import functools
import socket

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from realtime import metrics
from realtime.config import Settings

__all__ = ["LimitedHttpProtocol"]

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _Refused(Exception):
    """Raised inside a parser callback: httptools stops parsing and ``data_received`` answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


#: Every process of the service loads its settings from the environment (run.py hands them
#: on), so the protocol, which uvicorn builds from a class, reads them the same way, once.
_settings = functools.cache(Settings.load)


class LimitedHttpProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, server_state: ServerState, app_state: dict, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.settings = _settings()
        self._raw_header_bytes = 0  # bytes read since the request began: what httptools may be buffering
        self._header_bytes = 0  # the request line and the headers parsed so far
        self._header_count = 0
        self._in_headers = False  # between a request's first byte and the end of its headers
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        send_buffer = self.settings.socket_send_buffer
        sock = transport.get_extra_info("socket")
        if send_buffer and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self._arm(self.settings.header_timeout, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's handler turns any parser error into a plain-text 400; ours answer first.
        self._unset_keepalive_if_required()
        if self._in_headers:
            self._raw_header_bytes += len(data)
        try:
            self.parser.feed_data(data)
            # httptools hands a header over only once it has ended: bound what it buffers meanwhile
            if self._in_headers and self._raw_header_bytes > self.settings.max_header_bytes:
                raise self._headers_too_large()
        except _Refused as refused:
            self._refuse(refused)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refused):
                self._refuse(exc.__context__)
            else:
                self._bad_request()
        except httptools.HttpParserError:
            self._bad_request()
        except httptools.HttpParserUpgrade:
            self._disarm()
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._raw_header_bytes = self._header_bytes = self._header_count = 0
        if self._deadline is None:  # a later keep-alive request: its clock starts with its first byte
            self._arm(self.settings.header_timeout, self._headers_too_slow)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.settings.max_headers:
            raise _Refused(431, "too_many_headers", f"A request carries at most {self.settings.max_headers} headers.")
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()
        if not self.parser.should_upgrade():  # else the WebSocket protocol takes the connection
            self._arm(self.settings.body_timeout, self._body_too_slow)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # Limits
    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes += count
        if self._header_bytes > self.settings.max_header_bytes:
            raise self._headers_too_large()

    def _headers_too_large(self) -> _Refused:
        return _Refused(431, "headers_too_large",
                        f"The request's headers are larger than {self.settings.max_header_bytes} bytes.")

    def _headers_too_slow(self) -> None:
        self._deadline = None
        self._refuse(_Refused(408, "request_timeout",
                              f"The request's headers did not arrive within {self.settings.header_timeout:g} s."))

    def _body_too_slow(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self._refuse(_Refused(408, "request_timeout",
                                  f"The request's body did not arrive within {self.settings.body_timeout:g} s."))
        else:
            self.transport.close()
        if cycle is not None:  # the app, waiting for more body, hears a disconnect; its answer goes nowhere
            cycle.disconnected = True
            cycle.message_event.set()

    def _arm(self, delay: float, callback) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _bad_request(self) -> None:
        self._refuse(_Refused(400, "bad_request", "The request is not valid HTTP/1.1."))

    def _refuse(self, refused: _Refused) -> None:
        """Answer with the contract's error JSON and close: the rest of the stream is not read."""
        self._disarm()
        if self.transport.is_closing():
            return
        metrics.HTTP_REFUSED.labels(refused.code).inc()
        body = orjson.dumps({"error": {"code": refused.code, "message": refused.message}})
        reason = _REASONS.get(refused.status, b"Bad Request")
        head = [b"HTTP/1.1 %d %s\r\n" % (refused.status, reason)]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json; charset=utf-8\r\n",
                 b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        self.transport.close()

