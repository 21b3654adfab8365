"""SocketWriter: frames written as they are queued, in order, by a task only while the
socket's send must wait (the transport paused, as uvicorn's send waits on it).

The end-to-end cases (a stalled client closed 1013 while a healthy one gets every tweet,
1,000 stalled clients) are in test_live_faults.py; these pin the order across the switch
from writing inline to writing from a task, which a real socket makes hard to time."""

from __future__ import annotations

import asyncio

import orjson

from http_api.socket_writer import RAW_SEND, SocketWriter
from realtime.live_hub import LiveSubscriber
from realtime.live_protocol import LiveEvent


class PausableSend:
    """An ASGI send that, like uvicorn's, waits while its transport is paused."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.frames: list[str] = []

    async def __call__(self, message: dict) -> None:
        await self.writable.wait()
        self.frames.append(orjson.loads(message["text"])["tweet"]["id"])


class FakeSocket:
    def __init__(self, send) -> None:
        self.scope = {RAW_SEND: send}


def tweet(n: int) -> LiveEvent:
    return LiveEvent(orjson.dumps({"type": "tweet", "tweet": {"id": str(n), "timestamp": 0.0}}).decode())


def live_subscriber(writer_for) -> tuple[LiveSubscriber, SocketWriter]:
    subscriber = LiveSubscriber("alice", "token-hash", queue_size=100)
    subscriber.catch_up([])  # live: offers are queued
    writer = writer_for(subscriber)
    subscriber.on_wake = writer.wake
    return subscriber, writer


async def test_frames_are_written_inline_while_the_send_need_not_wait():
    send = PausableSend()
    subscriber, writer = live_subscriber(lambda s: SocketWriter(FakeSocket(send), s, close_socket=None))
    tasks_before = len(asyncio.all_tasks())
    for n in range(1, 4):
        subscriber.offer(tweet(n))
        assert send.frames == [str(i) for i in range(1, n + 1)]  # written before offer returns
    assert len(asyncio.all_tasks()) == tasks_before  # no task per frame
    await writer.wait_closed()


async def test_a_paused_send_finishes_in_a_task_and_later_frames_keep_their_order():
    send = PausableSend()
    subscriber, writer = live_subscriber(lambda s: SocketWriter(FakeSocket(send), s, close_socket=None))
    subscriber.offer(tweet(1))
    send.writable.clear()  # the peer stopped reading
    for n in range(2, 6):
        subscriber.offer(tweet(n))
    assert send.frames == ["1"] and subscriber.queued == 3  # 2 waits in the send; 3-5 wait behind it
    send.writable.set()
    for _ in range(100):  # bounded: each loop turn lets the task take a step
        if len(send.frames) == 5:
            break
        await asyncio.sleep(0)
    assert send.frames == ["1", "2", "3", "4", "5"]
    subscriber.offer(tweet(6))  # the task is done: inline again
    assert send.frames[-1] == "6"
    await writer.wait_closed()


async def test_the_close_is_sent_after_the_frames_queued_before_it():
    send, closed = PausableSend(), asyncio.Event()

    async def close_socket() -> None:
        send.frames.append("close")
        closed.set()

    subscriber, writer = live_subscriber(lambda s: SocketWriter(FakeSocket(send), s, close_socket))
    send.writable.clear()
    subscriber.offer(tweet(1))
    subscriber.close(1013, "client too slow")
    send.writable.set()
    await asyncio.wait_for(closed.wait(), 5)
    assert send.frames == ["1", "close"]
    await writer.wait_closed()


async def test_a_client_that_left_mid_write_has_its_write_cancelled():
    send = PausableSend()
    subscriber, writer = live_subscriber(lambda s: SocketWriter(FakeSocket(send), s, close_socket=None))
    send.writable.clear()
    subscriber.offer(tweet(1))
    await asyncio.wait_for(writer.wait_closed(), 5)  # the endpoint's finally, after the client left
    send.writable.set()
    await asyncio.sleep(0)
    assert send.frames == []
