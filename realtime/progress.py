"""A count that can be awaited, so that waiting for the engine's progress (fan-out jobs done,
pub/sub reconnections) is an event and not a polling loop."""

from __future__ import annotations

import asyncio

__all__ = ["AwaitableCount"]


class AwaitableCount:
    def __init__(self) -> None:
        self.value = 0
        self._changed = asyncio.Event()

    def add(self, amount: int = 1) -> None:
        self.value += amount
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()  # wakes every waiter once; each looks at the new value

    async def reached(self, target: int) -> int:
        """Returns once the count is at least ``target``: the count then."""
        while self.value < target:
            await self._changed.wait()
        return self.value
