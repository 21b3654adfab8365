"""Tweet ids: 53-bit, time-ordered integers, unique across processes.

    | 41 bits: milliseconds since EPOCH_MS | 7 bits: worker id | 5 bits: sequence |

41 bits of milliseconds last until 2093; 2^53 keeps every id exact as a JavaScript
number and as a Lua (double) number. The worker id is leased from Redis (see
``IdLease``) so that two processes never mint the same id. 32 ids per millisecond per
process is 32,000 tweets/s per process; past that the generator borrows the next
millisecond rather than repeating an id.
"""

from __future__ import annotations

import threading
import time

from .errors import Unavailable

__all__ = ["EPOCH_MS", "WORKER_BITS", "IdGenerator", "id_to_ms", "min_id_at", "MAX_WORKERS", "is_id_text"]

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WORKER_BITS = 7
SEQUENCE_BITS = 5
TIME_SHIFT = WORKER_BITS + SEQUENCE_BITS
MAX_WORKERS = 1 << WORKER_BITS
_MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


def is_id_text(value: object) -> bool:
    """Whether ``value`` is an id as the API writes one (tweets, notifications, cursors): a
    string of at most 16 ASCII digits (53 bits take 16)."""
    return isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16


def id_to_ms(tweet_id: int) -> int:
    """The Unix time in milliseconds at which ``tweet_id`` was minted."""
    return (tweet_id >> TIME_SHIFT) + EPOCH_MS


def min_id_at(unix_ms: int) -> int:
    """The smallest id that could have been minted at ``unix_ms`` or later."""
    return max(0, unix_ms - EPOCH_MS) << TIME_SHIFT


class IdGenerator:
    def __init__(self, worker_id: int, clock=time.time) -> None:
        self.worker_id = worker_id
        self._clock = clock
        self._last_ms = 0
        self._sequence = 0
        self._lock = threading.Lock()
        #: time.monotonic() past which the worker id may be someone else's (IdLease sets it)
        self.valid_until = float("inf")

    @property
    def worker_id(self) -> int:
        return self._worker_id

    @worker_id.setter
    def worker_id(self, value: int) -> None:
        if not 0 <= value < MAX_WORKERS:
            raise ValueError(f"worker id must be in 0..{MAX_WORKERS - 1}, got {value}")
        self._worker_id = value

    def next_id(self) -> int:
        if time.monotonic() >= self.valid_until:
            raise Unavailable("Tweet ids are paused: this process could not renew its id lease.",
                              code="redis_unavailable")
        with self._lock:
            # Never go back in time, even if the wall clock does.
            now_ms = max(int(self._clock() * 1000), self._last_ms)
            if now_ms == self._last_ms:
                self._sequence += 1
                if self._sequence > _MAX_SEQUENCE:
                    now_ms += 1
                    self._sequence = 0
            else:
                self._sequence = 0
            self._last_ms = now_ms
            return ((now_ms - EPOCH_MS) << TIME_SHIFT) | (self._worker_id << SEQUENCE_BITS) | self._sequence
