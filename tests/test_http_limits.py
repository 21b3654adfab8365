"""The HTTP limits of a public server, from outside, over raw sockets to a real uvicorn
(``python run.py``): header size and count (431), header and body read timeouts (408),
unauthenticated sockets per address (429), the kernel send buffer of a stalled client, a
client leaving mid-body (no traceback), bodies that are not JSON (415), and the scheme in
the WebSocket Origin check. Each reproduces a finding of issue 13 that answered 200, held
a connection forever or logged a traceback before."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time

import orjson
import pytest
import websockets

from .support import TIMEOUT, Api, LiveClient, ServiceProcess, async_metric, metric, post_tweets, wait_until
from .test_live_faults import BIG_TWEET

LIMITS = {"max_header_bytes": "4096", "max_headers": "20", "header_timeout": "1s", "body_timeout": "1s",
          "max_unauthenticated_sockets": "3", "live_auth_timeout": "5s"}


@pytest.fixture(scope="module")
def limited(single_redis, tmp_path_factory):
    service = ServiceProcess(single_redis.url, **LIMITS)
    yield service.start(tmp_path_factory.mktemp("http-limits"))
    service.stop()


def raw_request(port: int, data: bytes, *, timeout: float = TIMEOUT) -> bytes:
    """Send ``data`` and read until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, orjson.loads(body)["error"]["code"]


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_headers_within_the_limits_are_answered(limited):
    answer = raw_request(limited.port, get("/healthz", "X-Padding: " + "p" * 3000, *[f"X-{n}: {n}" for n in range(15)]))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_headers_above_the_size_limit_answer_431(limited):
    answer = raw_request(limited.port, get("/healthz", "X-Big: " + "b" * 5000))
    assert status_and_error(answer) == (431, "headers_too_large")


def test_more_headers_than_allowed_answer_431(limited):
    answer = raw_request(limited.port, get("/healthz", *[f"X-{n}: {n}" for n in range(25)]))
    assert status_and_error(answer) == (431, "too_many_headers")


def test_a_64_mb_header_is_cut_off_long_before_its_end(limited):
    """uvicorn's own protocol read all 64 MB (httptools buffers an unfinished header) and answered 200."""
    sent = 0
    with socket.create_connection(("127.0.0.1", limited.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        chunk = b"h" * 65536
        with pytest.raises(OSError):  # the server closed: a reset, or a broken pipe
            for _ in range(1024):  # 64 MB, bounded
                sock.sendall(chunk)
                sent += len(chunk)
    assert sent < 16 * 2**20, f"{sent} bytes of one header were read before the server gave up"
    assert metric(limited.url, "chirp_http_refused_total", code="headers_too_large") >= 1


def test_a_request_line_with_no_headers_after_it_is_closed_408(limited):
    started = time.monotonic()
    answer = raw_request(limited.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert status_and_error(answer) == (408, "request_timeout")
    assert time.monotonic() - started < 1 + TIMEOUT / 2


def test_a_connection_that_sends_nothing_is_closed(limited):
    with socket.create_connection(("127.0.0.1", limited.port), timeout=TIMEOUT) as sock:
        assert status_and_error(read_until_closed(sock)) == (408, "request_timeout")


def test_slow_headers_are_closed_even_while_bytes_trickle_in(limited):
    """One byte every 0.2 s is still too slow: the limit is on the whole of the headers."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=TIMEOUT) as sock:
        started = time.monotonic()
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 100:  # bounded
                sock.send(bytes([byte]))
                time.sleep(0.2)  # the client's own pace, which is what is being tested
        except OSError:
            pass
        assert status_and_error(read_until_closed(sock)) == (408, "request_timeout")
        assert time.monotonic() - started < 1 + TIMEOUT / 2


def test_a_declared_body_that_does_not_arrive_is_answered_408_without_a_traceback(limited):
    token = Api(limited.url).sign_in().token
    head = (f"POST /tweets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{").encode()
    assert status_and_error(raw_request(limited.port, head)) == (408, "request_timeout")
    wait_until(lambda: metric(limited.url, "chirp_requests_abandoned_total") >= 1, what="the request to be dropped")
    assert "Traceback" not in limited.log() and "unhandled error" not in limited.log()


def test_a_client_leaving_mid_body_is_counted_not_logged_as_an_error(limited):
    token = Api(limited.url).sign_in().token
    before = metric(limited.url, "chirp_requests_abandoned_total")
    with socket.create_connection(("127.0.0.1", limited.port), timeout=TIMEOUT) as sock:
        sock.sendall((f"POST /tweets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"content\": ").encode())
    wait_until(lambda: metric(limited.url, "chirp_requests_abandoned_total") > before,
               what="the abandoned request to be counted")
    assert "Traceback" not in limited.log() and "unhandled error" not in limited.log()


async def test_unauthenticated_sockets_per_address_are_capped_with_429(limited):
    waiting = [await websockets.connect(limited.url.replace("http", "ws") + "/ws", open_timeout=TIMEOUT)
               for _ in range(3)]
    with pytest.raises(websockets.InvalidStatus) as denied:
        await websockets.connect(limited.url.replace("http", "ws") + "/ws", open_timeout=TIMEOUT)
    assert denied.value.response.status_code == 429
    assert orjson.loads(denied.value.response.body)["error"]["code"] == "too_many_sockets"
    # One of them authenticates: its place is free again, and a signed-in client gets in.
    user = await Api(limited.url).aio_sign_in()
    await waiting[0].send(orjson.dumps({"type": "auth", "token": user.token}).decode())
    assert orjson.loads(await asyncio.wait_for(waiting[0].recv(), TIMEOUT))["type"] == "ready"
    async with LiveClient(limited.url, user.token) as client:
        assert client.ready["type"] == "ready"
    for socket_ in waiting:
        await socket_.close()


def server_send_buffer(port: int, client_port: int) -> int:
    """The kernel's send buffer (``tb`` in ``ss -m``) of the server's end of one connection."""
    listing = subprocess.run(["ss", "-tmnH", "state", "established", f"( sport = :{port} and dport = :{client_port} )"],
                             capture_output=True, text=True, check=True).stdout
    sizes = re.findall(r"\btb(\d+)", listing)
    assert len(sizes) == 1, listing
    return int(sizes[0])


@pytest.mark.slow  # posts until the kernel's buffers are full: hundreds of posts (autotuned: ~3,000 to fill 4 MB)
@pytest.mark.parametrize("send_buffer", ["0", "131072"], ids=["autotuned", "capped"])
async def test_a_stalled_client_holds_no_more_than_the_send_buffer_setting(single_redis, tmp_path, send_buffer):
    """Left to the kernel, the server's send buffer to a client that stopped reading grew to
    about 4 MB before the 1013; ``SOCKET_SEND_BUFFER`` caps it (Linux doubles what is set)."""
    service = ServiceProcess(single_redis.url, socket_send_buffer=send_buffer, live_send_queue="4").start(tmp_path)
    try:
        api = Api(service.url)
        alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
        await bob.aio.follow(alice)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.connect(("127.0.0.1", service.port))  # rcvbuf left to autotuning: the stall is the only limit
        client = await LiveClient(service.url, bob.token, sock=sock, max_queue=1, ping_interval=None,
                                  compression=None).connect()
        client_port = sock.getsockname()[1]
        closes = 0.0
        for _ in range(300):  # bounded: until the server gives up on the stalled client
            await post_tweets(alice, BIG_TWEET, 20)
            if closes := await async_metric(service.url, "chirp_slow_client_closes_total"):
                break
        assert closes, "the stalled client was never closed as slow"
        held = server_send_buffer(service.port, client_port)
        if send_buffer == "0":
            assert held > 1 * 2**20, f"autotuning grew the send buffer to {held} bytes only"
        else:
            assert held <= 2 * int(send_buffer), held
        client.socket.transport.abort()  # a closing handshake would wait behind megabytes unread
        await asyncio.wait_for(client.socket.wait_closed(), TIMEOUT)
    finally:
        service.stop()


def test_a_body_that_is_not_declared_json_answers_415(api):
    user = api.sign_in()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        answer = user.request("POST", "/tweets", content=b'{"content": "sneaky"}', headers={"Content-Type": content_type})
        assert answer.status_code == 415, (content_type, answer.text)
        assert answer.json()["error"]["code"] == "unsupported_media_type"
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json", None):
        headers = {"Content-Type": content_type} if content_type else {}
        answer = user.request("POST", "/tweets", content=b'{"content": "declared right"}', headers=headers)
        assert answer.status_code == 201, (content_type, answer.text)


@pytest.mark.parametrize("content", ["\u200b" * 280, "\u3164", "\u200d\ufeff", "\u2800 \u200c", "\u0301\ufe0f"],
                         ids=["zero-width-spaces", "hangul-filler", "zwj-bom", "braille-blank", "lone-marks"])
def test_a_tweet_of_only_invisible_characters_is_empty(api, content):
    answer = api.sign_in().request("POST", "/tweets", json={"content": content})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "empty_tweet"


async def test_the_websocket_origin_check_looks_at_the_scheme(service):
    host = service.url.removeprefix("http://")
    url = service.url.replace("http", "ws") + "/ws"

    async def handshake(origin: str, **headers: str) -> int:
        try:
            socket_ = await websockets.connect(url, origin=origin, additional_headers=headers, open_timeout=TIMEOUT)
        except websockets.InvalidStatus as refused:
            return refused.response.status_code
        await socket_.close()
        return 101

    assert await handshake(f"http://{host}") == 101
    assert await handshake(f"https://{host}") == 101  # a TLS proxy in front
    assert await handshake(f"HTTP://{host}") == 403  # no browser spells it so
    assert await handshake(f"ftp://{host}") == 403
    assert await handshake(f"http://{host}", **{"X-Forwarded-Proto": "https"}) == 403  # a plain page, an https service
    assert await handshake(f"https://{host}", **{"X-Forwarded-Proto": "https"}) == 101
