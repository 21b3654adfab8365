"""Search by prefix: usernames and hashtags, in time that does not grow with their number.

- **Users**: the sorted set ``keys.usernames`` (every lowercase name, score 0) read with
  ``ZRANGEBYLEX [prefix [prefix\\xff LIMIT 0 10``: O(log N + 10), shown as chosen.
- **Hashtags**: ``HashtagIndex`` keeps, in keys that share the hash tag ``{tags}`` (one
  slot, so each Lua call is atomic on Redis Cluster too):

  ``{tags}:uses``  sorted set, tag -> times used (the ranking)
  ``{tags}:last``  sorted set, tag -> id of its newest tweet (an id carries its time)
  ``{tags}:names`` sorted set, every tag not known to be dead, score 0 (lexicographic)
  ``{tags}:recorded`` sorted set, the last ``RECORDED_KEPT`` tweets whose uses were counted
  ``{tags}:top:P`` sorted set, the ``KEEP`` most used live tags starting with P, scored by
                   uses; only for a *crowded* prefix P, one that more than ``KEEP`` tags share

  A use bumps the count and, for each prefix of the tag that has a top set, puts the tag
  in with its new count and trims the set back to ``KEEP``: counts only grow, so this
  keeps the exact top ``KEEP``. A prefix becomes crowded (gets its set) when its
  ``ZLEXCOUNT`` passes ``KEEP``. A query reads the prefix's top set (at most ``KEEP``
  entries), or, for an uncrowded prefix, the at most ``KEEP`` names that start with it.
  Either way a query reads a bounded number of entries, whatever the number of tags.
  Only crowded prefixes get a key, so deep prefixes (almost all of them: most tags are
  the only one with their first five letters) cost nothing.

A tag whose newest tweet is older than the timelines' age limit has aged out of its
timeline: a query that meets it drops it from the names and from that prefix's set,
and it is never suggested; its next use brings it back, with its count. The newest
tweet's id is kept in ``{tags}:last`` when the tweet is posted, rather than read from the
head of ``tl:tag:{tag}``: that list is written by the fan-out a moment later (a tag just
used would look dead), and it lives in another slot, out of reach of the Lua call on a
cluster. Both say the same once the fan-out ran; a deleted tweet still counts as a use.

Caveat: a tag pushed out of a prefix's top ``KEEP`` stays out until its next use. That
is harmless while the set has 3 live tags (each was used more than it); when tags that
aged out leave fewer, the query rebuilds the set from at most ``REBUILD_LIMIT`` names of
the prefix (lexicographic order, dead ones dropped): exact when the prefix has at most
that many, bounded in cost when it has more.

The input is only ever a lexicographic range bound, never a glob pattern: ``parse_query``
lets through one leading ``@`` or ``#`` and ``[A-Za-z0-9_]`` only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence

from . import keys
from .errors import BadRequest, Unprocessable
from .redis_client import Redis, queue_script
from .text import normalize_username
from .timelines import Timelines
from .tweets import Tweets
from .users import Users

__all__ = ["SearchQuery", "parse_query", "HashtagIndex", "Search", "MAX_INPUT", "MAX_USERS", "MAX_HASHTAGS",
           "DEFAULT_TWEETS"]

#: How many tweets the index remembers having counted: a re-run of a tweet's counting must
#: come within this many hashtag tweets of the first (it comes within the fan-out's claim
#: time) to be recognised; past that, a crash between counting and marking counts one use twice.
RECORDED_KEPT = 10_000

#: The longest hashtag ``realtime.text.parse_hashtags`` keeps; a longer input matches nothing.
MAX_INPUT = 100
MAX_USERNAME = 15
MAX_USERS = 10
MAX_HASHTAGS = 3
DEFAULT_TWEETS = 10
#: Tags kept per crowded prefix: 3 are answered, the rest is slack for tags that age out.
KEEP = 10
#: Names read, at most, to build or mend a prefix's top set.
REBUILD_LIMIT = 500

_PREFIX = re.compile(r"[A-Za-z0-9_]+")


@dataclasses.dataclass(frozen=True)
class SearchQuery:
    """What to look for: ``prefix`` is lowercase, without its ``@`` or ``#``."""

    prefix: str
    users: bool      # no leading '#'
    hashtags: bool   # no leading '@'
    tweets: bool     # a leading '#': the latest tweets with exactly this tag too


def parse_query(raw: object) -> SearchQuery:
    """The search input as typed, or 422.

    One optional leading ``@`` (users only) or ``#`` (hashtags and tweets), then 1..100 of
    ``[A-Za-z0-9_]``. Anything else, whitespace included, cannot begin a username or a
    hashtag, so it is refused rather than answered with nothing.
    """
    if not isinstance(raw, str):
        raise BadRequest("The search input must be a string.", code="wrong_type")
    marker = raw[:1] if raw[:1] in ("@", "#") else ""
    body = raw[len(marker):]
    if not body.strip():
        raise Unprocessable("Type at least one letter, digit or underscore to search for.", code="empty_search")
    if len(body) > MAX_INPUT:
        raise Unprocessable(f"A search is at most {MAX_INPUT} characters after its '@' or '#'.",
                            code="search_too_long")
    if not _PREFIX.fullmatch(body):
        raise Unprocessable("Usernames and hashtags are letters, digits and underscores: search for those, "
                            "after at most one leading '@' or '#'.", code="invalid_search")
    return SearchQuery(prefix=body.lower(), users=marker != "#", hashtags=marker != "@", tweets=marker == "#")


def _lex_range(prefix: str) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds of every member that starts with ``prefix`` (members are ASCII)."""
    low = prefix.encode()
    return b"[" + low, b"[" + low + b"\xff"


# -- the hashtag index, in Lua -------------------------------------------------------

_LUA_COMMON = r"""
local uses_key, names_key, last_key = KEYS[1], KEYS[2], KEYS[3]

local function is_live(tag, min_id)
  local last = redis.call('ZSCORE', last_key, tag)
  return last ~= false and tonumber(last) >= min_id
end

-- Byte order, as sorted sets order their members (Lua's '<' on strings follows the locale).
local function bytes_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- most used first, then alphabetical
local function better(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return bytes_before(a[1], b[1])
end

-- The live tags that start with prefix, best first, from at most limit names
-- (lexicographic order); the dead ones met leave the names.
local function collect(prefix, limit, min_id)
  local names = redis.call('ZRANGEBYLEX', names_key, '[' .. prefix, '[' .. prefix .. '\255', 'LIMIT', 0, limit)
  local found = {}
  for _, tag in ipairs(names) do
    if is_live(tag, min_id) then
      found[#found + 1] = {tag, tonumber(redis.call('ZSCORE', uses_key, tag) or '0')}
    else
      redis.call('ZREM', names_key, tag)
    end
  end
  table.sort(found, better)
  return found
end

local function store(top_key, found, keep)
  redis.call('DEL', top_key)
  for i = 1, math.min(keep, #found) do redis.call('ZADD', top_key, found[i][2], found[i][1]) end
end

-- Back to keep entries, dropping the least used; among equals, the alphabetically last.
local function trim(top_key, keep)
  while redis.call('ZCARD', top_key) > keep do
    local lowest = redis.call('ZRANGE', top_key, 0, 0, 'WITHSCORES')
    local ties = redis.call('ZRANGEBYSCORE', top_key, lowest[2], lowest[2])
    redis.call('ZREM', top_key, ties[#ties])
  end
end

local function crowded(prefix, keep)
  return redis.call('ZLEXCOUNT', names_key, '[' .. prefix, '[' .. prefix .. '\255') > keep
end
"""

#: KEYS: uses, names, last, recorded, then for each tag the top-set key of each of its
#: prefixes, shortest first. ARGV: keep, rebuild_limit, min_id, the tweet whose uses these
#: are ('' for none: bulk loading), how many such tweets ``recorded`` remembers, then per
#: tag: tag, increment, tweet id. A tweet ``recorded`` holds was counted before (a re-run
#: after a crash between counting and marking the tweet counted): nothing is done.
#: Returns 1 when it counted, 0 when not.
RECORD_USES = _LUA_COMMON + r"""
local keep, limit, min_id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tweet = ARGV[4]
if tweet ~= '' then
  if redis.call('ZADD', KEYS[4], 'NX', tweet, tweet) == 0 then return 0 end
  local extra = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[5])
  if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, extra - 1) end
end
local next_key = 5
for a = 6, #ARGV, 3 do
  local tag, increment, id = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local uses = tonumber(redis.call('ZINCRBY', uses_key, increment, tag))
  redis.call('ZADD', names_key, 0, tag)
  local last = redis.call('ZSCORE', last_key, tag)
  if last == false or tonumber(last) < id then redis.call('ZADD', last_key, id, tag) end
  for length = 1, #tag do
    local top_key, prefix = KEYS[next_key], string.sub(tag, 1, length)
    next_key = next_key + 1
    if redis.call('EXISTS', top_key) == 1 then
      -- a tag already in the set only moves up: the set keeps its size
      if redis.call('ZADD', top_key, uses, tag) == 1 then trim(top_key, keep) end
    elseif crowded(prefix, keep) then
      store(top_key, collect(prefix, limit, min_id), keep)
    end
  end
end
return 1
"""

#: KEYS: uses, names, last, the prefix's top-set key. ARGV: prefix, want, keep,
#: rebuild_limit, min_id. Returns tag, uses, tag, uses... for at most ``want`` live tags.
TOP_HASHTAGS = _LUA_COMMON + r"""
local top_key = KEYS[4]
local prefix, want, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, min_id = tonumber(ARGV[4]), tonumber(ARGV[5])
local found
if redis.call('EXISTS', top_key) == 1 then
  local flat, ranked = redis.call('ZRANGE', top_key, 0, -1, 'WITHSCORES'), {}
  for i = 1, #flat, 2 do ranked[#ranked + 1] = {flat[i], tonumber(flat[i + 1])} end
  table.sort(ranked, better)
  -- Best first, until want are live: the dead ones met leave the set and the names.
  found = {}
  for _, entry in ipairs(ranked) do
    if #found == want then break end
    if is_live(entry[1], min_id) then
      found[#found + 1] = entry
    else
      redis.call('ZREM', top_key, entry[1])
      redis.call('ZREM', names_key, entry[1])
    end
  end
  -- Too few left, and the prefix has names the set lacks (pushed out, then their betters aged out).
  if #found < want and redis.call('ZLEXCOUNT', names_key, '[' .. prefix, '[' .. prefix .. '\255') > #found then
    found = collect(prefix, limit, min_id)
    store(top_key, found, keep)
  end
else
  found = collect(prefix, limit, min_id)
  if #found > keep then store(top_key, found, keep) end
end
local answer = {}
for i = 1, math.min(want, #found) do
  answer[#answer + 1] = found[i][1]
  answer[#answer + 1] = string.format('%.0f', found[i][2])
end
return answer
"""


class HashtagIndex:
    """Use counts and the per-prefix top sets of hashtags (see the module docstring)."""

    def __init__(self, redis: Redis, timelines: Timelines, *, namespace: str = "tags", keep: int = KEEP,
                 rebuild_limit: int = REBUILD_LIMIT) -> None:
        self._redis = redis
        self._timelines = timelines
        self._base = f"{{{namespace}}}:"
        self.uses_key = self._base + "uses"
        self.names_key = self._base + "names"
        self.last_key = self._base + "last"
        self.recorded_key = self._base + "recorded"
        self.keep = keep
        self.rebuild_limit = rebuild_limit
        self._record = redis.register_script(RECORD_USES)
        self._top = redis.register_script(TOP_HASHTAGS)

    def oldest_allowed_id(self) -> int:
        """A tag whose newest tweet is older than this id has aged out of its timeline."""
        return self._timelines.oldest_allowed_id()

    def top_key(self, prefix: str) -> str:
        return f"{self._base}top:{prefix}"

    def _record_call(self, uses: Sequence[tuple[str, int, int]], tweet_id: int | str = "") -> tuple[list[str], list]:
        call_keys = [self.uses_key, self.names_key, self.last_key, self.recorded_key]
        args: list = [self.keep, self.rebuild_limit, self.oldest_allowed_id(), tweet_id, RECORDED_KEPT]
        for tag, increment, tweet_id in uses:
            call_keys += [self.top_key(tag[:length]) for length in range(1, len(tag) + 1)]
            args += [tag, increment, tweet_id]
        return call_keys, args

    async def record(self, tags: Sequence[str], tweet_id: int) -> None:
        """One use of each of ``tags`` (lowercase, without '#') at the time of ``tweet_id``: one
        call. (A tweet's own uses go through ``queue_record`` with its id, counted once.)"""
        if tags:
            call_keys, args = self._record_call([(tag, 1, tweet_id) for tag in tags])
            await self._record(keys=call_keys, args=args)

    async def queue_record(self, pipe, uses: Sequence[tuple[str, int, int]], *, tweet_id: int | str = "") -> None:
        """Queue ``(tag, increment, newest tweet id)`` uses in ``pipe``: those of the tweet
        ``tweet_id``, counted once however often they are queued (among the last RECORDED_KEPT
        tweets), or with no ``tweet_id`` any uses (bulk loading)."""
        if uses:
            call_keys, args = self._record_call(uses, tweet_id)
            await queue_script(pipe, self._record, call_keys, args)

    async def top(self, prefix: str, count: int = MAX_HASHTAGS) -> list[tuple[str, int]]:
        """Up to ``count`` live tags starting with ``prefix``, most used first, with their uses."""
        flat = await self._top(
            keys=[self.uses_key, self.names_key, self.last_key, self.top_key(prefix)],
            args=[prefix, count, self.keep, self.rebuild_limit, self.oldest_allowed_id()])
        return [(flat[i], int(flat[i + 1])) for i in range(0, len(flat), 2)]


class Search:
    """``GET /tweet/search/{input}``: users and hashtags by prefix, and a hashtag's latest tweets."""

    def __init__(self, redis: Redis, users: Users, tweets: Tweets, hashtags: HashtagIndex) -> None:
        self._redis = redis
        self._users = users
        self._tweets = tweets
        self.hashtags = hashtags

    async def users(self, prefix: str, count: int = MAX_USERS) -> list[str]:
        """Up to ``count`` usernames (as chosen) starting with ``prefix``, alphabetically."""
        prefix = normalize_username(prefix)
        if len(prefix) > MAX_USERNAME:
            return []
        low, high = _lex_range(prefix)
        lowers = await self._redis.zrangebylex(keys.usernames, low, high, 0, count)
        chosen = await self._users.existing(lowers)
        return [chosen[lower] for lower in lowers if lower in chosen]

    async def _hashtags(self, prefix: str) -> list[str]:
        return ["#" + tag for tag, _ in await self.hashtags.top(prefix, MAX_HASHTAGS)]

    async def _tweets_with(self, tag: str, count: int, viewer: str | None) -> list[dict]:
        page = await self._tweets.page(keys.hashtag_timeline(tag), count=count, before=None, viewer=viewer)
        return page["tweets"]

    async def search(self, query: SearchQuery, *, count: int = DEFAULT_TWEETS, viewer: str | None = None) -> dict:
        """``{"users", "hashtags", "tweets"}``; the three parts are read concurrently; the
        tweets carry ``viewer``'s flags (realtime.tweets.Tweets.render_stored)."""
        async def nothing() -> list:
            return []

        users, hashtags, tweets = await asyncio.gather(
            self.users(query.prefix) if query.users else nothing(),
            self._hashtags(query.prefix) if query.hashtags else nothing(),
            self._tweets_with(query.prefix, count, viewer) if query.tweets else nothing(),
        )
        return {"users": users, "hashtags": hashtags, "tweets": tweets}
