"""start_eagerly: a coroutine runs in the call until it waits; only then is there a task."""

from __future__ import annotations

import asyncio

import pytest

from http_api.eager import start_eagerly


async def test_a_coroutine_that_never_waits_finishes_in_the_call_with_no_task():
    ran = []

    async def write() -> str:
        ran.append("written")
        return "done"

    tasks_before = len(asyncio.all_tasks())
    future = start_eagerly(write())
    assert ran == ["written"] and future.done() and future.result() == "done"
    assert len(asyncio.all_tasks()) == tasks_before


async def test_an_error_is_kept_in_the_future_not_raised_at_the_caller():
    async def broken() -> None:
        raise ConnectionResetError("peer gone")

    future = start_eagerly(broken())
    assert future.done()
    with pytest.raises(ConnectionResetError):
        await future


async def test_a_coroutine_that_waits_goes_on_in_a_task_once_its_future_is_done():
    writable = asyncio.Event()
    steps = []

    async def write() -> int:
        steps.append("before")
        await writable.wait()
        await asyncio.sleep(0)  # a bare yield, as asyncio.sleep(0) makes
        steps.append("after")
        return 7

    future = start_eagerly(write())
    assert steps == ["before"] and not future.done()
    writable.set()
    assert await asyncio.wait_for(future, 5) == 7
    assert steps == ["before", "after"]


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits():
    never = asyncio.Event()
    cleaned = asyncio.Event()

    async def write() -> None:
        try:
            await never.wait()
        finally:
            cleaned.set()

    future = start_eagerly(write())
    await asyncio.sleep(0)  # let the task reach its wait
    future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await future
    assert cleaned.is_set()
    assert not never._waiters  # Event.wait removed its waiter on the way out
