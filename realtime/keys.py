"""Every Redis key and channel name, in one place.

Keys that belong to one user carry the user's lowercase name as a hash tag
(``tl:home:{alice}``, ``live:at:{alice}``), keys of one tweet carry its id
(``tweet:{123}``, ``likes:{123}``), so every Lua script touches a single slot and the
same code runs on Redis Cluster.
"""

from __future__ import annotations

__all__ = [
    "home_timeline", "user_timeline", "mentions_timeline", "hashtag_timeline", "live_presence",
    "process_channel", "CONTROL_CHANNEL", "HOME_TIMELINE_PREFIX",
    "user", "followers", "following", "usernames", "session", "user_sessions",
    "tweet", "likes", "retweets", "FANOUT_STREAM", "FANOUT_GROUP", "fanout_progress", "fanout_author_seq",
    "fanout_author_done", "id_worker", "google_account", "rate_limit", "user_sockets",
]


#: Every home timeline key starts with this; pushes onto home timelines are the ones
#: that go out live (realtime.scripts).
HOME_TIMELINE_PREFIX = "tl:home:{"


def home_timeline(user: str) -> str:
    return f"{HOME_TIMELINE_PREFIX}{user}}}"


def user_timeline(user: str) -> str:
    return f"tl:user:{{{user}}}"


def mentions_timeline(user: str) -> str:
    return f"tl:mentions:{{{user}}}"


def hashtag_timeline(tag: str) -> str:
    return f"tl:tag:{{{tag}}}"


def live_presence(user: str) -> str:
    """Sorted set: the server processes holding a live socket of ``user``, scored by the
    end of their lease (Unix ms). In the user's slot, so a timeline push reads it atomically."""
    return f"live:at:{{{user}}}"


def process_channel(process_id: str) -> str:
    """The pub/sub channel of one server process: ``"name name ...\n<event JSON>"`` messages
    naming the local recipients of one event."""
    return f"live:process:{process_id}"


#: Channel every process hears: control events (sign-out, sockets evicted), same format.
CONTROL_CHANNEL = "live:control"


def user(name: str) -> str:
    """Hash: username (as chosen), display_name, bio, created_at, tweets."""
    return f"user:{{{name}}}"


def followers(name: str) -> str:
    """Sorted set, all scores 0, read in lexicographic order: who follows ``name``."""
    return f"followers:{{{name}}}"


def following(name: str) -> str:
    return f"following:{{{name}}}"


#: Sorted set of every lowercase username, scores 0, for lexicographic prefix search.
usernames = "usernames"


def session(token_hash: str) -> str:
    return f"session:{token_hash}"


def user_sessions(name: str) -> str:
    """Sorted set of a user's session token hashes, scored by expiry (ms)."""
    return f"sessions:{{{name}}}"


def google_account(sub: str) -> str:
    """String: the lowercase username of the Google account ``sub`` ('' while one is being chosen)."""
    return f"google:{{{sub}}}"


def rate_limit(name: str, who: str) -> str:
    """Sorted set: the times (µs) of ``who``'s recent calls counted by the limit ``name``."""
    return f"ratelimit:{name}:{{{who}}}"


def user_sockets(name: str) -> str:
    """Sorted set: the user's live sockets on every process (``process|n``), scored by connect time (µs)."""
    return f"sockets:{{{name}}}"


def tweet(tweet_id: int | str) -> str:
    return f"tweet:{{{tweet_id}}}"


def likes(tweet_id: int | str) -> str:
    return f"likes:{{{tweet_id}}}"


def retweets(tweet_id: int | str) -> str:
    """Hash: retweeter's lowercase name -> id of the retweet entry."""
    return f"retweets:{{{tweet_id}}}"


FANOUT_STREAM = "fanout:jobs"
FANOUT_GROUP = "fanout-workers"


def fanout_progress(job_id: str) -> str:
    return f"fanout:progress:{job_id}"


def fanout_author_seq(author: str) -> str:
    """Counter: the sequence number of the author's latest fan-out job."""
    return f"fanout:seq:{{{author}}}"


def fanout_author_done(author: str) -> str:
    """The highest sequence number of the author's fan-out jobs that is done."""
    return f"fanout:done:{{{author}}}"


def id_worker(worker_id: int) -> str:
    return f"idgen:worker:{worker_id}"
