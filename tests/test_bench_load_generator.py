"""The benchmarks' setup survives a kept-alive connection the service closed under it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bench.load_generator import SETUP_TRIES, BenchError, request_again_if_dropped


async def serve(drops: int):
    """An HTTP server that closes its first ``drops`` connections on their request, unanswered."""
    seen = {"connections": 0}

    async def handle(reader, writer):
        seen["connections"] += 1
        await reader.readuntil(b"\r\n\r\n")
        if seen["connections"] <= drops:
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n"
                     b'{"token":"t"}')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


async def test_a_request_whose_connection_dropped_goes_again_on_a_fresh_one():
    server, url, seen = await serve(drops=1)
    async with server, httpx.AsyncClient(base_url=url, trust_env=False) as client:
        answer = await request_again_if_dropped(client, "POST", "/auth/dev", json={"username": "a"})
    assert answer.json() == {"token": "t"} and seen["connections"] == 2


async def test_a_connection_that_keeps_dropping_is_a_bench_error_in_words():
    server, url, seen = await serve(drops=SETUP_TRIES)
    async with server, httpx.AsyncClient(base_url=url, trust_env=False) as client:
        with pytest.raises(BenchError, match=f"the connection dropped {SETUP_TRIES} times"):
            await request_again_if_dropped(client, "POST", "/auth/dev", json={"username": "a"})
    assert seen["connections"] == SETUP_TRIES
