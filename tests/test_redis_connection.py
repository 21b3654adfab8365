"""Commands are written without a task of their own (realtime.redis_connection), and a
write that cannot drain still gives up after ``socket_timeout`` with redis-py's error."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.redis_client import is_transient, make_redis, open_redis
from realtime.redis_connection import without_write_task

from .support import eventually


async def test_commands_are_sent_without_asyncio_wait_for(single_redis, monkeypatch):
    client = await open_redis(single_redis.url)
    try:
        await client.ping()  # connected before the watch: only the command's write is looked at

        def no_wait_for(*args, **kwargs):
            raise AssertionError("a command's write went through asyncio.wait_for (a task per command)")

        monkeypatch.setattr(asyncio, "wait_for", no_wait_for)
        assert await client.set("redis-connection-test", "1") is True
        assert await client.get("redis-connection-test") == "1"
    finally:
        monkeypatch.undo()
        await client.delete("redis-connection-test")
        await client.aclose()


async def test_a_write_the_server_never_reads_times_out_as_redis_py_says_and_drops_the_connection():
    held, connected = [], asyncio.Event()

    async def answer_the_handshake_then_stop_reading(reader, writer):
        held.append(writer)  # kept open, and after the handshake never read: the client's buffer fills
        while not connected.is_set():
            data = await reader.read(65536)
            writer.write(b"+OK\r\n" * sum(line.startswith(b"*") for line in data.split(b"\r\n")))

    server = await asyncio.start_server(answer_the_handshake_then_stop_reading, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = make_redis(f"redis://127.0.0.1:{port}/0", retries=0, max_connections=1)
    connection = await client.connection_pool.get_connection()
    try:
        connected.set()
        with pytest.raises(RedisTimeoutError, match="Timeout writing to socket") as raised:
            for _ in range(100):  # 64 MiB at most: far past any socket buffer, bounded
                await connection.send_command("SET", "k", b"x" * (640 * 1024))
        assert is_transient(raised.value)
        assert not connection.is_connected
    finally:
        await client.connection_pool.release(connection)
        await client.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def test_every_kind_of_url_keeps_its_transport_and_writes_in_place():
    from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

    for base in (Connection, SSLConnection, UnixDomainSocketConnection):
        assert issubclass(without_write_task(base), base) and without_write_task(base) is not base
    for url, base in (("redis://127.0.0.1:1/0", Connection), ("rediss://127.0.0.1:1/0", SSLConnection),
                      ("unix:///tmp/no-such-redis.sock", UnixDomainSocketConnection)):
        assert make_redis(url).connection_pool.connection_class is without_write_task(base), url


async def test_chirps_clients_of_one_redis_write_in_place_and_of_a_cluster_as_redis_py_does(redis_server):
    from redis.asyncio.connection import Connection

    client = await redis_server.async_client()
    try:
        if redis_server.is_cluster:
            assert {node.connection_class for node in client.get_nodes()} == {Connection}
        else:
            assert client.connection_pool.connection_class is without_write_task(Connection)
        await client.ping()
    finally:
        await client.aclose()


async def test_a_write_on_a_socket_closed_under_it_is_a_lost_connection_never_a_bare_error(single_redis, monkeypatch):
    """uvloop refuses a write on a transport a dying node closed with a bare RuntimeError
    (seen in a master kill: /healthz answered 500); it must read as Redis being away."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = await open_redis(single_redis.url)
    connection = await client.connection_pool.get_connection()
    try:
        def refused(data):
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

        monkeypatch.setattr(connection._writer, "writelines", refused)
        with pytest.raises(RedisConnectionError) as raised:
            await connection.send_command("PING")
        assert is_transient(raised.value) and not connection.is_connected
    finally:
        await client.connection_pool.release(connection)
        await client.aclose()


async def test_a_connection_redis_closed_while_idle_is_replaced_before_a_command_goes_on_it(single_redis):
    """As after a restart of Redis: on a client that never retries, the next command must not
    be sent on the dead connection (redis-py 8 skips its look for one with maintenance
    notifications on, realtime.redis_client.no_maintenance_notifications)."""
    client = await open_redis(single_redis.url, retries=0)
    admin = await open_redis(single_redis.url, retries=0)
    try:
        name = f"idle-{id(client)}"
        await client.client_setname(name)
        [killed] = [c["id"] for c in await admin.client_list() if c.get("name") == name]
        await admin.client_kill_filter(_id=killed)
        await eventually(lambda: client.connection_pool._available_connections[0]._parser._stream.at_eof(),
                         what="the client to see the close")
        assert await client.ping() is True
    finally:
        await client.aclose()
        await admin.aclose()
