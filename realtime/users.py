"""Users: profiles, unique names, the follow graph."""

from __future__ import annotations

import time
from collections.abc import Iterable

from . import keys
from .errors import Conflict, NotFound, Unprocessable
from .redis_client import Redis
from .text import (MAX_BIO, MAX_DISPLAY_NAME, check_username, clean_profile_field, normalize_username)

__all__ = ["Users", "UserFieldCache", "CLAIM_SECONDS"]

#: How long a Google account's claim on a username being created lasts, should we die meanwhile.
CLAIM_SECONDS = 30


#: Names of signed-in users remembered per process (``Users.name_of_author``), at most.
AUTHOR_NAMES_KEPT = 10_000
#: The most followed users looked at for suggestions (``Users.suggestions``).
SUGGESTION_POOL = 50
#: Display names remembered per process for rendering tweets (``Users.cached_display_names``):
#: how long, and how many. A name changed on another process shows there within the TTL.
DISPLAY_NAMES_TTL = 5.0
DISPLAY_NAMES_KEPT = 50_000


class UserFieldCache:
    """One field of users' hashes as read within ``ttl`` seconds, per process, at most ``kept``
    users: a stale answer is one changed on another process in the last ``ttl``."""

    def __init__(self, field: str, ttl: float, kept: int) -> None:
        self.field, self.ttl, self.kept = field, ttl, kept
        self._entries: dict[str, tuple[float, str | None]] = {}  # lower -> (read at, value), oldest first

    def queue(self, pipe, lowers) -> tuple[dict[str, str | None], list[str]]:
        """The values read within the TTL, and the users whose reads this queued in ``pipe``,
        in order: hand their answers to ``take``."""
        now = time.monotonic()
        known, missing = {}, []
        for lower in lowers:
            entry = self._entries.get(lower)
            if entry is not None and now - entry[0] < self.ttl:
                known[lower] = entry[1]
            else:
                missing.append(lower)
                pipe.hget(keys.user(lower), self.field)
        return known, missing

    def take(self, missing: list[str], answers) -> dict[str, str | None]:
        """``missing``'s values from their queued reads' ``answers``, remembered."""
        read, now = dict(zip(missing, answers)), time.monotonic()
        for lower, value in read.items():
            self._entries.pop(lower, None)  # re-inserted at the young end
            self._entries[lower] = (now, value)
        while len(self._entries) > self.kept:
            del self._entries[next(iter(self._entries))]
        return read

    def forget(self, lower: str) -> None:
        self._entries.pop(lower, None)


class Users:
    def __init__(self, redis: Redis, notifications=None, hot=None, timelines=None) -> None:
        self._redis = redis
        self._timelines = timelines  # realtime.timelines.Timelines: a follower's home TTL
        self._hot = hot if hot is not None and hot.enabled else None  # realtime.hot_fanout.HotFanout
        self._notifications = notifications  # realtime.notifications.Notifications: of follows
        self._display_names = UserFieldCache("display_name", DISPLAY_NAMES_TTL, DISPLAY_NAMES_KEPT)
        self._author_names: dict[str, str] = {}

    async def create(self, username: object, display_name: object = None, bio: object = None) -> dict:
        name = check_username(username)
        display = clean_profile_field(display_name, "display_name", MAX_DISPLAY_NAME) if display_name is not None else name
        about = clean_profile_field(bio, "bio", MAX_BIO) if bio is not None else ""
        lower = normalize_username(name)
        # HSETNX on the lowercase key is what makes names unique case-insensitively.
        if not await self._redis.hsetnx(keys.user(lower), "username", name):
            raise Conflict(f"The username {name} is taken.", code="username_taken")
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(keys.user(lower), mapping={"display_name": display or name, "bio": about,
                                             "created_at": repr(time.time()), "tweets": 0})
        pipe.zadd(keys.usernames, {lower: 0})
        await pipe.execute()
        return await self.profile(lower)

    async def google_user(self, sub: str) -> str | None:
        """The lowercase name of the user the Google account ``sub`` chose, or None yet."""
        return await self._redis.get(keys.google_account(sub)) or None

    async def create_for_google(self, sub: str, username: object, display_name: object = None,
                                bio: object = None) -> dict:
        """``create``, and make the user the one of Google account ``sub``, once.

        The account is claimed first (for ``CLAIM_SECONDS``, in case we die half way), so
        two tabs choosing at once cannot give one account two users. ``Conflict`` when the
        account already has a user (``existing`` names it) or another tab is choosing."""
        account = keys.google_account(sub)
        if not await self._redis.set(account, "", nx=True, ex=CLAIM_SECONDS):
            existing = await self.google_user(sub)
            raise Conflict(f"This Google account already has the username {await self.canonical(existing)}."
                           if existing else "This Google account is choosing a username in another tab.",
                           code="username_already_chosen")
        try:
            profile = await self.create(username, display_name, bio)
        except BaseException:
            await self._redis.delete(account)
            raise
        await self._redis.set(account, normalize_username(profile["username"]))  # for good: no TTL
        return profile

    async def ensure(self, username: object) -> str:
        """The canonical name of ``username``, creating the user when new (dev sign-in)."""
        name = check_username(username)
        canonical = await self.canonical(normalize_username(name))
        if canonical is not None:
            return canonical
        try:
            return (await self.create(name))["username"]
        except Conflict:  # created concurrently: fine, it exists now
            return await self.require(normalize_username(name))

    async def canonical(self, lower: str) -> str | None:
        """The username as chosen, or None when nobody has it."""
        return await self._redis.hget(keys.user(lower), "username")

    async def name_of_author(self, lower: str) -> str:
        """``require`` for the user a live session names, remembered: a username never
        changes once chosen, so posting costs no round trip for it. Only where a stale answer
        is harmless: a user whose data Redis lost keeps their name here (sign-in, which
        recreates them, asks Redis)."""
        name = self._author_names.get(lower)
        if name is None:
            name = await self.require(lower)
            if len(self._author_names) >= AUTHOR_NAMES_KEPT:
                del self._author_names[next(iter(self._author_names))]  # the oldest remembered
            self._author_names[lower] = name
        return name

    async def require(self, name: str) -> str:
        """The canonical name of an existing user, else 404."""
        if not isinstance(name, str) or len(name) > 15:
            raise NotFound("No such user.", code="user_not_found")
        canonical = await self.canonical(normalize_username(name))
        if canonical is None:
            raise NotFound("No such user.", code="user_not_found")
        return canonical

    async def existing(self, lowers: Iterable[str]) -> dict[str, str]:
        """{lowercase name: canonical name} for those of ``lowers`` that are users."""
        lowers = list(lowers)
        if not lowers:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for lower in lowers:
            pipe.hget(keys.user(lower), "username")
        return {lower: name for lower, name in zip(lowers, await pipe.execute()) if name}

    async def profile(self, name: str, *, viewer: str | None = None) -> dict:
        """The profile with its counts; for a ``viewer`` (lowercase) other than its owner, also
        whether the viewer follows them and they the viewer."""
        lower = normalize_username(name)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.user(lower))
        pipe.zcard(keys.followers(lower))
        pipe.zcard(keys.following(lower))
        relations = viewer is not None and viewer != lower
        if relations:
            pipe.zscore(keys.following(viewer), lower)
            pipe.zscore(keys.followers(viewer), lower)
        fields, followers, following, *relation = await pipe.execute()
        if not fields.get("username"):
            raise NotFound("No such user.", code="user_not_found")
        shown = {
            "username": fields["username"],
            "display_name": fields.get("display_name", fields["username"]),
            "bio": fields.get("bio", ""),
            "created_at": float(fields.get("created_at", 0)),
            "followers": followers,
            "following": following,
            "tweets": max(0, int(fields.get("tweets", 0))),
        }
        if relations:
            shown["you_follow"], shown["follows_you"] = (score is not None for score in relation)
        return shown

    async def update(self, name: str, *, display_name: object = None, bio: object = None) -> dict:
        changes = {}
        if display_name is not None:
            changes["display_name"] = clean_profile_field(display_name, "display_name", MAX_DISPLAY_NAME)
            if not changes["display_name"]:
                raise Unprocessable("display_name cannot be empty.", code="display_name_empty")
        if bio is not None:
            changes["bio"] = clean_profile_field(bio, "bio", MAX_BIO)
        if changes:
            await self._redis.hset(keys.user(normalize_username(name)), mapping=changes)
            self._display_names.forget(normalize_username(name))  # shown at once, here at least
        return await self.profile(name)

    # -- display names for rendering tweets: a page names up to 20 authors ---------------

    def queue_display_names(self, pipe, lowers) -> tuple[dict[str, str | None], list[str]]:
        """The display names read within ``DISPLAY_NAMES_TTL``, and the names whose reads this
        queued in ``pipe``, in order: hand their answers to ``take_display_names``."""
        return self._display_names.queue(pipe, lowers)

    def take_display_names(self, missing: list[str], answers) -> dict[str, str | None]:
        return self._display_names.take(missing, answers)

    async def follow(self, me: str, other: str) -> None:
        await self._set_follow(me, other, follow=True)

    async def unfollow(self, me: str, other: str) -> None:
        await self._set_follow(me, other, follow=False)

    async def _set_follow(self, me: str, other: str, *, follow: bool) -> None:
        target = normalize_username(await self.require(other))
        me = normalize_username(me)
        if target == me:
            raise Unprocessable("You cannot follow yourself.", code="cannot_follow_self")
        # Two slots on a cluster, so two commands; both are idempotent, a retry mends a half.
        pipe = self._redis.pipeline(transaction=False)
        if follow:
            pipe.zadd(keys.following(me), {target: 0})
            pipe.zadd(keys.followers(target), {me: 0})
            if self._timelines is not None:  # the target's next pushes may not set it (FollowerExpiries)
                self._timelines.queue_keep(pipe, keys.home_timeline(me))
        else:
            pipe.zrem(keys.following(me), target)
            pipe.zrem(keys.followers(target), me)
        if self._hot is not None:  # read after the follower's write, in its slot (realtime.hot_fanout)
            pipe.hget(keys.user(target), keys.FANOUT_STATE)
            pipe.lindex(keys.user_timeline(target), 0)
        answers = await pipe.execute()
        changed, hot = answers[1], answers[-2:]
        if self._hot is not None:
            if not follow:
                await self._hot.unfollowed(me, target)
            elif self._hot.is_hot_state(hot[0]):
                await self._hot.followed(me, target, after=int(hot[1] or 0))
        if changed:  # the ranking of who to follow; a crash just before leaves it one off, no more
            await self._redis.zincrby(keys.popular_users, 1 if follow else -1, target)
        if follow and self._notifications is not None:  # after: a retry of the PUT mends a lost one
            await self._notifications.notify(target, "follow", await self.name_of_author(me))

    async def suggestions(self, me: str, count: int) -> list[dict]:
        """Who ``me`` (lowercase) might follow: the most followed users they do not follow yet,
        most followed first, as ``{"username", "display_name", "followers"}``."""
        candidates = [name for name in await self._redis.zrevrange(keys.popular_users, 0, SUGGESTION_POOL - 1)
                      if name != me]
        if not candidates:
            return []
        pipe = self._redis.pipeline(transaction=False)
        pipe.zmscore(keys.following(me), candidates)
        for name in candidates:
            pipe.hmget(keys.user(name), "username", "display_name")
            pipe.zcard(keys.followers(name))
        followed, *rest = await pipe.execute()
        shown = []
        for name, is_followed, (username, display_name), followers in zip(
                candidates, followed, rest[0::2], rest[1::2]):
            if is_followed is None and username and followers:
                shown.append({"username": username, "display_name": display_name or username,
                              "followers": followers})
        return shown[:count]

    async def follower_names(self, name: str, *, after: str = "", count: int = 1000) -> list[str]:
        """Lowercase follower names in lexicographic order, strictly after ``after``."""
        low = f"({after}" if after else "-"
        return await self._redis.zrangebylex(keys.followers(normalize_username(name)), low, "+", 0, count)

    async def relation_page(self, name: str, relation: str, *, count: int, cursor: str | None) -> tuple[list[str], str | None]:
        """A page of followers or following: canonical names, and the cursor of the next page."""
        lower = normalize_username(await self.require(name))
        key = keys.followers(lower) if relation == "followers" else keys.following(lower)
        low = f"({cursor.lower()}" if cursor else "-"
        page = await self._redis.zrangebylex(key, low, "+", 0, count + 1)
        more = len(page) > count
        page = page[:count]
        names = await self.existing(page)
        return [names.get(lower, lower) for lower in page], (page[-1] if more else None)
