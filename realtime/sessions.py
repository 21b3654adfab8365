"""Sign-in sessions: opaque 256-bit random tokens, stored in Redis only as a SHA-256 hash."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time

from . import keys
from .errors import Unauthorized
from .live_protocol import addressed, session_revoked_event
from .redis_client import Redis, queue_publish

__all__ = ["Session", "Sessions", "hash_token"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Session:
    token_hash: str
    user: str | None  # lowercase name; None until a new Google account picks a username
    expires_at: float
    google_sub: str | None = None


class Sessions:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def create(self, user: str | None, expires_at: float, *, google_sub: str | None = None) -> str:
        token = secrets.token_urlsafe(32)
        token_hash = hash_token(token)
        expires_ms = int(expires_at * 1000)
        fields = {"user": user or "", "expires_at": repr(expires_at), "google_sub": google_sub or ""}
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(keys.session(token_hash), mapping=fields)
        pipe.pexpireat(keys.session(token_hash), expires_ms)
        if user:
            pipe.zadd(keys.user_sessions(user), {token_hash: expires_ms})
        await pipe.execute()
        return token

    async def lookup(self, token: str | None) -> Session:
        """The live session behind ``token``, else 401."""
        if not token:
            raise Unauthorized("Sign in first: send Authorization: Bearer <token>.", code="missing_token")
        if len(token) > 200:
            raise Unauthorized("That token is not valid.", code="invalid_token")
        token_hash = hash_token(token)
        fields = await self._redis.hgetall(keys.session(token_hash))
        if not fields:
            raise Unauthorized("That token is not valid, or has expired or been signed out.", code="invalid_token")
        expires_at = float(fields["expires_at"])
        if expires_at <= time.time():  # Redis expiry is lazy to the millisecond; be exact
            raise Unauthorized("That session has expired; sign in again.", code="expired_token")
        return Session(token_hash, fields.get("user") or None, expires_at, fields.get("google_sub") or None)

    async def bind_user(self, session: Session, user: str) -> None:
        """Give a username-less session its new user (after POST /users)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(keys.session(session.token_hash), "user", user)
        pipe.zadd(keys.user_sessions(user), {session.token_hash: int(session.expires_at * 1000)})
        await pipe.execute()

    async def revoke(self, session: Session) -> None:
        """End the session now; its live sockets, on any process, are closed with 4401."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(keys.session(session.token_hash))
        if session.user:
            pipe.zrem(keys.user_sessions(session.user), session.token_hash)
            revoked = session_revoked_event(session.token_hash)
            queue_publish(pipe, keys.CONTROL_CHANNEL, addressed([session.user], revoked))
        await pipe.execute()
