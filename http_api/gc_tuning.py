"""Garbage collector settings for a process holding thousands of live sockets.

Measured here (``bench.live_load`` at 200 tweets/s to 2,000 sockets, GC callbacks timing
each collection): with CPython's default thresholds (700, 10, 10) full collections ran
every few seconds and took 40-320 ms each, over the ~350,000 objects that the sockets
keep alive. They were the p99 latency spikes. Almost every object made per delivery dies
by reference counting, so a first generation that collects after 50,000 allocations (not
700) catches few of them alive, little is promoted to the oldest generation, and the full
collections that promotion triggers stop: none ran in the same benchmark.
"""

from __future__ import annotations

import gc

__all__ = ["tune_garbage_collector"]

YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Call once the process has started: what exists now lives as long as the process, so
    it leaves the collector's scans for good (``gc.freeze``)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
