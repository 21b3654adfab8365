"""Which Redis failures mean "not now" (503 with Retry-After, a socket closed 1013, a
fan-out job retried without counting it against the job) and which are bugs."""

from __future__ import annotations

import pytest
import redis.asyncio.connection
from redis.exceptions import (ConnectionError, MovedError, OutOfMemoryError, ReadOnlyError, ResponseError,
                              TryAgainError)

from realtime.redis_client import is_redirect, is_transient


@pytest.mark.parametrize("error", [
    ConnectionError("Error 111 connecting to 127.0.0.1:7000. Connection refused."),
    OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    ReadOnlyError("You can't write against a read only replica."),
    TryAgainError("Multiple keys request during rehashing of slot"),
    MovedError("15845 127.0.0.1:15772"),
    ResponseError("CLUSTERDOWN The cluster is down"),
    ResponseError("NOSCRIPT No matching script."),
    ResponseError("Error running script (call to f_071cc0): @user_script:3: @user_script: 3: -OOM command not "
                  "allowed when used memory > 'maxmemory'."),  # Redis 6.2, inside a script
])
def test_these_mean_not_now(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [ResponseError("ERR wrong number of arguments"), ValueError("bad"),
                                   KeyError("kind")])
def test_these_are_bugs(error):
    assert not is_transient(error)


def test_a_redirect_from_a_plain_client_is_told_apart_by_its_class():
    assert is_redirect(MovedError("15845 127.0.0.1:15772"))  # its text does not start with MOVED
    assert not is_redirect(OutOfMemoryError("command not allowed"))


def _raise_inside_redis_connection_code(error: Exception) -> None:
    """As redis-py does on a socket a dying node closed under it: a bare AttributeError from
    inside its connection module."""
    scope = {"__name__": redis.asyncio.connection.__name__, "error": error}
    exec(compile("def send():\n    raise error\n", redis.asyncio.connection.__file__, "exec"), scope)
    scope["send"]()


def test_a_bare_error_raised_inside_redis_py_connection_code_is_a_lost_connection():
    with pytest.raises(AttributeError) as raised:
        _raise_inside_redis_connection_code(AttributeError("'NoneType' object has no attribute 'writelines'"))
    assert is_transient(raised.value)
    try:
        raise AttributeError("ours")
    except AttributeError as ours:
        assert not is_transient(ours)
