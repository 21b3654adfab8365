"""Background tasks whose failure is never lost unseen: counted in ``chirp_loop_failures``
by task name and logged with its traceback.

Each loop catches, logs and retries its own failures (realtime.fanout, realtime.live_hub,
realtime.id_lease, realtime.presence); this is the last line for what escapes one anyway,
and for one-shot tasks (a catch-up after a reconnect)."""

from __future__ import annotations

import asyncio
import logging

from . import metrics

__all__ = ["supervise"]

log = logging.getLogger("chirp.supervision")


def supervise(task: asyncio.Task, *, forever: bool = False) -> asyncio.Task:
    """Report ``task``'s failure when it ends. ``forever``: a loop meant never to end, whose
    failure is a bug said loudly (critical)."""
    task.add_done_callback(_report_forever if forever else _report)
    return task


def _report(task: asyncio.Task, level: int = logging.ERROR) -> None:
    if task.cancelled() or task.exception() is None:
        return
    metrics.LOOP_FAILURES.labels(task.get_name()).inc()
    log.log(level, "%s failed: %s", task.get_name(), task.exception(), exc_info=task.exception())


def _report_forever(task: asyncio.Task) -> None:
    _report(task, logging.CRITICAL)
