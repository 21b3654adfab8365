"""The live protocol's wire formats, all in one place.

- The frames a socket exchanges with its client (docs/API.md, "Live timeline"): ``auth``,
  ``ping`` and ``watch`` from the client; ``tweet``, ``delete``, ``notification``, ``counts``,
  ``ready`` and ``pong`` to it; and the close codes, ``CloseCode``. (A notification's live frame is
  rendered by realtime.notifications, which must put its id in the script that adds it.)
- The message a write publishes to a server process: the recipients' names, then the
  event, ``"ann bob\\n<event JSON>"``. The Lua scripts (realtime.scripts) build it with
  ``LUA_ADDRESSED``, Python with ``addressed``; the hub reads it with ``unaddress``.
- The control events on that channel (``session_revoked``, ``sockets_evicted``) and the
  hub's probes of its own sharded connections.

An event is parsed once per process, whatever the number of its sockets: ``LiveEvent``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable

import orjson

from .ids import is_id_text

__all__ = ["CloseCode", "LiveClose", "ProtocolError", "AuthFrame", "LiveEvent", "tweet_frame", "delete_frame",
           "ready_frame", "PONG_FRAME", "parse_client_frame", "parse_auth_frame", "is_ping", "parse_watch_frame",
           "MAX_WATCHED", "addressed", "unaddress", "HOT_MARK", "hot_account_of", "hot_follow_frame",
           "LUA_ADDRESSED", "session_revoked_event", "sockets_evicted_event", "probe_message", "probe_nonce"]


class CloseCode(enum.IntEnum):
    """Why the server closed a socket; clients reconnect on OVERLOADED only (docs/API.md)."""

    POLICY = 1008  # Origin not allowed, or too many sockets of one address waiting to authenticate
    OVERLOADED = 1013  # too slow, Redis lost, or shutting down: reconnect with backoff and ``since``
    MALFORMED = 4400
    UNAUTHORIZED = 4401  # bad, missing or expired token; signed out while connected
    AUTH_TIMEOUT = 4408
    REPLACED = 4409  # the user opened more sockets than MAX_SOCKETS_PER_USER; this was the oldest


class LiveClose(Exception):
    """The socket is to be closed with ``code`` and ``reason``."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class ProtocolError(LiveClose):
    """A client frame that breaks the protocol."""

    def __init__(self, reason: str) -> None:
        super().__init__(CloseCode.MALFORMED, reason)


# -- frames to the client -----------------------------------------------------------------

def tweet_frame(tweet: dict) -> str:
    return orjson.dumps({"type": "tweet", "tweet": tweet}).decode()


def delete_frame(tweet_id: int) -> str:
    return orjson.dumps({"type": "delete", "id": str(tweet_id)}).decode()


def ready_frame(username: str, replayed: int) -> str:
    return orjson.dumps({"type": "ready", "username": username, "replayed": replayed}).decode()


PONG_FRAME = '{"type":"pong"}'


# -- frames from the client -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AuthFrame:
    token: str | None
    since: int | None


def parse_client_frame(text: str | None) -> dict:
    """A client frame's JSON object; ProtocolError for anything else."""
    if text is None:
        raise ProtocolError("frames are JSON text")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("frames are JSON objects") from None
    if not isinstance(data, dict):
        raise ProtocolError("frames are JSON objects")
    return data


def parse_auth_frame(data: dict) -> AuthFrame:
    if data.get("type") != "auth":
        raise ProtocolError("the first frame must be {\"type\": \"auth\", ...}")
    token, since = data.get("token"), data.get("since")
    if token is not None and not isinstance(token, str):
        raise ProtocolError("token must be a string")
    if is_id_text(since):
        since = int(since)
    elif not (since is None or (isinstance(since, int) and not isinstance(since, bool) and since >= 0)):
        raise ProtocolError("since must be a tweet id string or null")
    return AuthFrame(token, since)


def is_ping(data: dict) -> bool:
    return data.get("type") == "ping"


#: Tweet ids per watch frame, at most (docs/API.md).
MAX_WATCHED = 100


def parse_watch_frame(data: dict) -> list[int] | None:
    """The tweet ids of a ``watch`` frame; None for a frame of another type."""
    if data.get("type") != "watch":
        return None
    ids = data.get("ids")
    if not isinstance(ids, list) or len(ids) > MAX_WATCHED:
        raise ProtocolError(f"watch ids must be a list of at most {MAX_WATCHED} tweet ids")
    if not all(map(is_id_text, ids)):
        raise ProtocolError("watch ids must be tweet id strings")
    return [int(i) for i in ids]


# -- what a server process hears: recipients, then the event ----------------------------------

_NAMES_END = "\n"  # usernames have no newline (realtime.text), nor does an event's JSON

#: The Lua side of ``addressed``, for scripts that publish (``names`` joined with spaces).
LUA_ADDRESSED = """
local function addressed(names, message) return names .. '\\n' .. message end
"""


def addressed(recipients: Iterable[str], event: str) -> str:
    return " ".join(recipients) + _NAMES_END + event


def unaddress(data: str) -> tuple[list[str], str]:
    """``addressed``'s recipients and event."""
    names, _, event = data.partition(_NAMES_END)
    return names.split(" "), event


#: A hot account's event (realtime.hot_fanout) is addressed to ``*<account>`` and then the
#: users it must skip (built by the timeline scripts, realtime.scripts): every process hears
#: it, for its users who follow the account.
HOT_MARK = "*"  # never in a username (realtime.text)


def hot_account_of(names: list[str]) -> str | None:
    """The hot account of an event addressed to ``HOT_MARK`` + account, else None."""
    return names[0][1:] if names and names[0].startswith(HOT_MARK) else None


_SESSION_REVOKED, _SOCKETS_EVICTED, _HOT_FOLLOW = "session_revoked", "sockets_evicted", "hot_follow"


def session_revoked_event(token_hash: str) -> str:
    return orjson.dumps({"type": _SESSION_REVOKED, "token_hash": token_hash}).decode()


def hot_follow_frame(account: str, from_id: int | None) -> str:
    """A user now merges hot ``account``'s entries from ``from_id`` on (None: no longer), for
    the hub of the user's sockets (realtime.hot_fanout); never sent to a client."""
    return orjson.dumps({"type": _HOT_FOLLOW, "account": account,
                         "from": None if from_id is None else str(from_id)}).decode()


def sockets_evicted_event(socket_ids: list[str]) -> str:
    return orjson.dumps({"type": _SOCKETS_EVICTED, "socket_ids": socket_ids}).decode()


_PROBE = _NAMES_END + "probe:"  # no recipients: never mistaken for an event


def probe_message(nonce: str) -> str:
    return _PROBE + nonce


def probe_nonce(data: str) -> str | None:
    """The nonce of a probe, or None when ``data`` is not one."""
    return data[len(_PROBE):] if data.startswith(_PROBE) else None


class LiveEvent:
    """A published event, parsed once per process, whatever the number of sockets."""

    __slots__ = ("frame", "kind", "entry_id", "deleted_id", "notification_id", "posted_at", "token_hash",
                 "socket_ids", "account", "followed_from")

    def __init__(self, frame: str) -> None:
        self.frame = frame
        data = orjson.loads(frame)
        self.kind: str = data.get("type", "")
        self.entry_id: int | None = None
        self.deleted_id: int | None = int(data["id"]) if self.kind == "delete" else None
        self.notification_id: int | None = int(data["notification"]["id"]) if self.kind == "notification" else None
        self.posted_at: float | None = None
        self.token_hash: str | None = data.get("token_hash")
        self.socket_ids: list[str] | tuple = data.get("socket_ids") or ()  # sockets_evicted
        if not isinstance(self.socket_ids, (list, tuple)):
            raise ValueError("socket_ids must be a list")
        self.account: str | None = None
        self.followed_from: int | None = None
        if self.kind == _HOT_FOLLOW:  # realtime.hot_fanout.hot_follow_frame
            self.account = str(data["account"])
            self.followed_from = None if data["from"] is None else int(data["from"])
        if self.kind == "tweet":
            tweet = data["tweet"]
            self.entry_id = int(tweet.get("retweet_id") or tweet["id"])
            self.posted_at = tweet.get("timestamp")

    @classmethod
    def of_tweet(cls, tweet: dict) -> LiveEvent:
        """The event of ``tweet``, rendered here: nothing to parse back."""
        event = cls.__new__(cls)
        event.frame, event.kind, event.token_hash, event.socket_ids = tweet_frame(tweet), "tweet", None, ()
        event.entry_id = int(tweet.get("retweet_id") or tweet["id"])
        event.posted_at, event.deleted_id, event.notification_id = tweet.get("timestamp"), None, None
        event.account = event.followed_from = None
        return event

    @classmethod
    def of_notification(cls, notification: dict) -> LiveEvent:
        return cls(orjson.dumps({"type": "notification", "notification": notification}).decode())

    @classmethod
    def of_delete(cls, tweet_id: int) -> LiveEvent:
        return cls(delete_frame(tweet_id))

    @property
    def dedupe_key(self) -> int | tuple | None:
        """What a catch-up must not send twice: a tweet's entry, a delete (negated), a notification."""
        if self.entry_id is not None:
            return self.entry_id
        if self.notification_id is not None:
            return ("notification", self.notification_id)  # its ids are not tweet ids
        return -self.deleted_id if self.deleted_id is not None else None

    @property
    def is_control(self) -> bool:
        return self.kind in (_SESSION_REVOKED, _SOCKETS_EVICTED, _HOT_FOLLOW)

    @property
    def changes_hot_follows(self) -> bool:
        return self.kind == _HOT_FOLLOW

    @property
    def revokes_session(self) -> bool:
        return self.kind == _SESSION_REVOKED
