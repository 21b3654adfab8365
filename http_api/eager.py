"""Run a coroutine at once, in the caller, and make a task only if it has to wait.

This is Python 3.12's eager task start (``asyncio.eager_task_factory``), for one call site
on 3.11. It serves socket writes: a frame sent to a socket whose buffer has room never
waits, so most of the 20,000 writes a second of a busy process finish inside the call that
queued them, with no task created, scheduled and collected for each (measured in
BENCHMARKS.md). A write to a socket whose buffer is full waits in a task as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["start_eagerly"]


def start_eagerly(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future:
    """Run ``coroutine`` until it finishes or first waits. Answers a future that is already
    done (with its result or exception, as a task's would be) or the task finishing it."""
    loop = asyncio.get_running_loop()
    try:
        waited_on = coroutine.send(None)
    except StopIteration as stop:
        return _done(loop, result=stop.value)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - kept for whoever awaits it, as a task would
        return _done(loop, exception=exc)
    return loop.create_task(_finish(coroutine, waited_on))


def _done(loop: asyncio.AbstractEventLoop, *, result: object = None,
          exception: BaseException | None = None) -> asyncio.Future:
    future = loop.create_future()
    if exception is None:
        future.set_result(result)
    elif isinstance(exception, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exception)
    return future


async def _finish(coroutine: Coroutine[Any, Any, Any], waited_on: object) -> object:
    """Drive ``coroutine`` on from where it first waited, as a task's steps would."""
    try:
        while True:
            if waited_on is None:  # a bare yield: asyncio.sleep(0)
                await asyncio.sleep(0)
            else:
                # Resume it once its future is done; it reads the outcome itself.
                await asyncio.wait([waited_on])
            waited_on = coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    except asyncio.CancelledError as cancelled:
        # Cancelled while it waited: deliver the cancel where it waits, as a task would.
        try:
            coroutine.throw(cancelled)
        except (StopIteration, asyncio.CancelledError):
            pass
        else:
            coroutine.close()  # it chose to wait again; a cancelled task does not
        raise
