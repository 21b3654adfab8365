"""What Chirp leans on inside its libraries, beyond their documented API, each pinned here.

When one of these fails after an upgrade, the code named in the test must change with the
library (and the bound in pyproject.toml with it): they are the tripwires, so the failure
is a clear assertion here and not a wrong answer somewhere in production.
"""

from __future__ import annotations

import inspect
import signal

import pytest
import redis.asyncio as aioredis
import uvicorn
from redis.asyncio.cluster import RedisCluster

from realtime.redis_client import _is_cluster_pipeline, execute_scripted, queue_script


@pytest.fixture
async def plain_redis(single_redis):
    client = aioredis.Redis.from_url(single_redis.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_redis_py_pipelines_keep_their_scripts_and_commands_where_execute_scripted_reads_them(plain_redis):
    """realtime.redis_client.execute_scripted empties ``pipe.scripts`` (so redis-py skips its
    SCRIPT EXISTS round trip) and, on NOSCRIPT, puts ``scripts`` and ``command_stack`` back
    for a second ``execute()`` that loads what is missing."""
    script = plain_redis.register_script("return ARGV[1]")
    pipe = plain_redis.pipeline(transaction=False)
    await queue_script(pipe, script, [], ["one"])
    assert pipe.scripts == {script}
    assert isinstance(pipe.command_stack, list) and len(pipe.command_stack) == 1
    await plain_redis.script_flush()
    assert await execute_scripted(pipe) == ["one"]  # NOSCRIPT, then loaded and run again
    assert await plain_redis.script_exists(script.sha) == [True]


def test_redis_py_scripts_carry_what_the_cluster_path_reads():
    """On a cluster, queue_script queues a plain EVALSHA and _execute_cluster_scripted loads
    ``script.script`` through ``script.registered_client`` after NOSCRIPT."""
    client = aioredis.Redis()  # never connects: registering a script is local
    script = client.register_script("return 1")
    assert script.registered_client is client
    assert script.script == "return 1" and len(script.sha) == 40


def test_redis_py_cluster_pipelines_are_told_apart_by_their_class_name():
    """realtime.redis_client._is_cluster_pipeline checks the class name, which covers the
    asyncio ClusterPipeline without importing cluster internals on the hot path."""
    cluster = RedisCluster(host="127.0.0.1", port=1)  # never connects: pipeline() is local
    assert type(cluster.pipeline()).__name__ == "ClusterPipeline"
    assert _is_cluster_pipeline(cluster.pipeline())
    assert not _is_cluster_pipeline(aioredis.Redis().pipeline())


def test_uvicorn_installs_the_signal_handlers_that_shutdown_chains_to():
    """http_api.shutdown.close_sockets_before_exit replaces the SIGTERM/SIGINT handlers that
    uvicorn installs while serving (``Server.capture_signals``) with one that closes live
    sockets with 1013 and then calls uvicorn's. That needs uvicorn's to be plain
    ``signal.signal`` handlers taking (signum, frame), installed while the app runs."""
    server = uvicorn.Server(uvicorn.Config(app=None))
    before = signal.getsignal(signal.SIGTERM)
    with server.capture_signals():
        for signum in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(signum)
            assert callable(handler) and handler == server.handle_exit
            assert list(inspect.signature(handler).parameters) == ["sig", "frame"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_uvicorn_httptools_protocol_still_has_what_our_limited_protocol_overrides_and_calls():
    """http_api.http_protocol.LimitedHttpProtocol subclasses uvicorn's httptools protocol and
    rewrites ``data_received`` (to answer over-long or slow headers itself), calling the
    helpers uvicorn's own version calls. If uvicorn's version stops calling one, or renames
    it, ours no longer does what uvicorn's does around the limits."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from http_api.http_protocol import LimitedHttpProtocol

    helpers = ["_unset_keepalive_if_required", "_should_upgrade", "handle_websocket_upgrade",
               "_unsupported_upgrade_warning"]
    for name in helpers:
        assert callable(getattr(HttpToolsProtocol, name, None)), f"uvicorn's HttpToolsProtocol lost {name}"
    theirs, ours = inspect.getsource(HttpToolsProtocol.data_received), inspect.getsource(
        LimitedHttpProtocol.data_received)
    for call in [*helpers, "parser.feed_data", "HttpParserUpgrade", "HttpParserError"]:
        assert call in theirs and call in ours, f"{call} in one data_received and not the other"
    for callback in ("on_message_begin", "on_url", "on_header", "on_headers_complete", "on_message_complete",
                     "connection_made", "connection_lost"):
        assert list(inspect.signature(getattr(HttpToolsProtocol, callback)).parameters) == list(
            inspect.signature(getattr(LimitedHttpProtocol, callback)).parameters), callback


def test_redis_py_writes_through_wait_for_and_has_what_the_in_place_write_reads():
    """realtime.redis_connection replaces the asyncio connection's send_packed_command, whose
    ``asyncio.wait_for`` runs every write in a task on Python 3.11 (when redis-py stops doing
    that, the override can go), and reads ``_writer``, ``is_connected``,
    ``connect_check_health``, ``check_health`` and ``disconnect(nowait=True)``."""
    from redis.asyncio.connection import AbstractConnection

    source = inspect.getsource(AbstractConnection.send_packed_command)
    assert "asyncio.wait_for" in source and "self._writer.writelines" in source
    for name in ("connect_check_health", "check_health", "disconnect"):
        assert callable(getattr(AbstractConnection, name))
    assert "nowait" in inspect.signature(AbstractConnection.disconnect).parameters
    assert isinstance(AbstractConnection.is_connected, property)
    # connections_made counts in connect_check_health, which every connect goes through
    assert "self.connect_check_health(" in inspect.getsource(AbstractConnection.connect)


def test_redis_py_pools_make_connections_of_their_connection_class_attribute():
    """make_redis sets ``pool.connection_class`` after ``from_url`` (whose URL options win
    over keyword arguments, so a TLS or unix-socket URL keeps its transport)."""
    from redis.asyncio.connection import ConnectionPool

    assert "self.connection_class(" in inspect.getsource(ConnectionPool.make_connection)
