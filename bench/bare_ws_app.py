"""A bare ASGI app for ``bench.raw_limits``: the most a uvicorn process can push.

No Starlette, no Redis, no JSON per socket: the app keeps the ``send`` callable of each
open WebSocket, and ``POST /burst?frames=M`` (the frame as the body) writes that one
pre-encoded text frame M times to every socket, then answers how long it took.
``GET /count`` answers how many sockets are open. Run with ``--lifespan off``.
``&order=round`` writes one frame to every socket, round after round, instead.

Each socket gets its own task that writes its M frames in a loop: a slow socket waits
on its own flow control without holding up the others. (One loop of rounds over every
socket measured slower: ~126,000 against ~193,000 frames/s with ``--ws websockets-sansio``,
200 sockets, on the 2-core machine of BENCHMARKS.md.)
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

__all__ = ["app"]

_sockets: set = set()


async def app(scope, receive, send) -> None:
    if scope["type"] == "websocket":
        await _hold_socket(receive, send)
    elif scope["type"] == "http":
        await _answer_http(scope, receive, send)


async def _hold_socket(receive, send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    _sockets.add(send)
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        _sockets.discard(send)


async def _push(send, message: dict, rounds: int) -> None:
    for _ in range(rounds):
        await send(message)


async def _round_robin(targets: list, message: dict, rounds: int) -> list:
    """One frame to each socket, then the next round: the shape of live tweets, where every
    write goes to another socket (no back-to-back writes for the kernel to merge)."""
    failed = []
    for _ in range(rounds):
        for send in targets:
            try:
                await send(message)
            except Exception as exc:  # noqa: BLE001 - counted, as gather's are
                failed.append(exc)
    return failed


async def _burst(frame: str, rounds: int, order: str) -> bytes:
    message = {"type": "websocket.send", "text": frame}  # one dict for every send: nothing per socket
    targets = list(_sockets)
    started = time.perf_counter()
    if order == "round":
        results = await _round_robin(targets, message, rounds)
    else:
        results = await asyncio.gather(*(_push(send, message, rounds) for send in targets), return_exceptions=True)
    failed = sum(isinstance(result, BaseException) for result in results)
    return (f'{{"sockets": {len(targets)}, "frames": {rounds}, "failed": {failed}, '
            f'"seconds": {time.perf_counter() - started}}}').encode()


async def _answer_http(scope, receive, send) -> None:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    status, answer = 200, f'{{"sockets": {len(_sockets)}}}'.encode()
    if scope["path"] == "/burst" and scope["method"] == "POST":
        query = parse_qs(scope["query_string"].decode())
        rounds = int(query.get("frames", ["1"])[0])
        answer = await _burst(body.decode(), rounds, query.get("order", ["socket"])[0])
    elif scope["path"] != "/count":
        status, answer = 404, b'{"error": "not found"}'
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})
