"""Abuse limits, kept in Redis so that they hold across every server process.

Each limit is a sliding window: at most ``count`` calls in any ``per`` seconds, by one
user (posting, following, likes) or one client address (sign-in). One Lua call per
check reads Redis's own clock (so processes with skewed clocks agree), drops the calls
that left the window, and either records this call or answers how long until the oldest
one leaves it, which becomes the ``Retry-After`` of the 429. Refused calls are not
recorded: a client that keeps hammering is served again as soon as its window allows.

Caveat: the window is a log of the calls in it (a sorted set of up to ``count``
entries per key, expiring with the window), exact but sized by the limit; the limits
here are tens to hundreds, so that is a few KB per active user at most.
"""

from __future__ import annotations

import itertools
import math
import secrets

from . import keys
from .config import RateLimit, Settings
from .errors import RateLimited
from .redis_client import Redis

__all__ = ["RateLimits", "SLIDING_WINDOW"]

#: KEYS: the window's log. ARGV: limit, window (µs), a member unique to this call.
#: Returns {1, calls left} when the call is recorded, {0, µs until one leaves} when refused.
SLIDING_WINDOW = """
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, limit - used - 1}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""

#: What each limit counts, for the 429's message.
_WHAT = {
    "posts": ("posting", "tweets and retweets"),
    "follows": ("following", "follows and unfollows"),
    "likes": ("liking", "likes and unlikes"),
    "signin": ("signing in", "sign-ins from your address"),
}


def _period(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{unit}" if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"


class RateLimits:
    """``await limits.hit("posts", user)``: records the call, or raises ``RateLimited``."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._script = redis.register_script(SLIDING_WINDOW)
        self.enabled = settings.rate_limits
        self.limits: dict[str, RateLimit] = {
            "posts": settings.rate_limit_posts,
            "follows": settings.rate_limit_follows,
            "likes": settings.rate_limit_likes,
            "signin": settings.rate_limit_signin,
        }
        self._calls = itertools.count()
        self._prefix = secrets.token_hex(4)  # members differ across processes calling in the same µs

    async def hit(self, name: str, who: str) -> None:
        limit = self.limits[name]
        if not (self.enabled and limit.enabled):
            return
        member = f"{self._prefix}:{next(self._calls)}"
        allowed, value = await self._script(keys=[keys.rate_limit(name, who)],
                                            args=[limit.count, int(limit.per * 1_000_000), member])
        if allowed:
            return
        retry_after = max(1, math.ceil(int(value) / 1_000_000))
        doing, counted = _WHAT[name]
        raise RateLimited(
            f"You are {doing} too fast: at most {limit.count} {counted} per {_period(limit.per)}. "
            f"Try again in {retry_after} s.", retry_after=retry_after)
