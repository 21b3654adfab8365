"""Every Redis key and channel name, in one place.

Keys that belong to one user carry the user's lowercase name as a hash tag
(``tl:home:{alice}``, ``live:at:{alice}``), keys of one tweet carry its id
(``tweet:{123}``, ``likes:{123}``), so every Lua script touches a single slot and the
same code runs on Redis Cluster.
"""

from __future__ import annotations

import functools

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = [
    "home_timeline", "home_deletes", "user_timeline", "mentions_timeline", "hashtag_timeline", "live_presence",
    "process_channel", "CONTROL_CHANNEL", "HOME_TIMELINE_PREFIX",
    "user", "counted_tweets", "followers", "following", "usernames", "session", "user_sessions",
    "tweet", "likes", "retweets", "FANOUT_GROUP", "fanout_shard_tags", "fanout_tag_of", "fanout_stream", "fanout_last_job",
    "fanout_progress", "fanout_dead_letters", "user_process_channel", "id_worker", "google_account",
    "rate_limit", "user_sockets", "notifications", "notifications_read", "count_watchers", "popular_users", "LIVE_ONLINE",
    "hot_timeline", "hot_deletes", "hot_follows", "hot_channel", "FANOUT_STATE",
]


#: Every home timeline key starts with this; pushes onto home timelines are the ones
#: that go out live (realtime.scripts).
HOME_TIMELINE_PREFIX = "tl:home:{"


def home_timeline(user: str) -> str:
    return f"{HOME_TIMELINE_PREFIX}{user}}}"


def home_deletes(user: str) -> str:
    """List, newest first: the entries that left ``user``'s home timeline, as ``id:head:ms``
    (realtime.scripts.REMOVE_FROM_TIMELINES), for replaying deletes to a reconnecting socket."""
    return f"tl:gone:{{{user}}}"


def user_timeline(user: str) -> str:
    return f"tl:user:{{{user}}}"


def hot_timeline(tag: str, user: str) -> str:
    """List: the entries ``user`` posted while hot (realtime.hot_fanout), written by their
    fan-out job, merged into followers' home timelines. In the slot of the author's fan-out
    shard ``tag``, with the shard's hot channel, which the write publishes to atomically."""
    return f"tl:hot:{{{tag}}}:{user}"


def hot_deletes(tag: str, user: str) -> str:
    """List, newest first: the entries that left ``user``'s hot timeline, as ``id:head:ms``
    (as ``home_deletes``), replayed to followers who reconnect."""
    return f"tl:hotgone:{{{tag}}}:{user}"


def mentions_timeline(user: str) -> str:
    return f"tl:mentions:{{{user}}}"


def hashtag_timeline(tag: str) -> str:
    return f"tl:tag:{{{tag}}}"


def live_presence(user: str) -> str:
    """Sorted set: the server processes holding a live socket of ``user``, scored by the
    end of their lease (Unix ms). In the user's slot, so a timeline push reads it atomically."""
    return f"live:at:{{{user}}}"


#: On one Redis, sorted set: user -> the latest end of any of their live leases (ms), written
#: with each lease (realtime.live_hub): one read tells a fan-out batch who may be online.
LIVE_ONLINE = "live:online"


def process_channel(process_id: str) -> str:
    """The pub/sub channel of one server process: ``"name name ...\n<event JSON>"`` messages
    naming the local recipients of one event. On one Redis."""
    return f"live:process:{process_id}"


def user_process_channel(user: str, process_id: str) -> str:
    """On Redis Cluster: the sharded channel of one user's sockets on one process, in the
    user's slot, so that a timeline script in that slot may SPUBLISH to it. Messages have the
    same format as on ``process_channel``, naming just this user."""
    return f"live:{{{user}}}:{process_id}"


#: Channel every process hears: control events (sign-out, sockets evicted), same format.
CONTROL_CHANNEL = "live:control"


def user(name: str) -> str:
    """Hash: username (as chosen), display_name, bio, created_at, tweets."""
    return f"user:{{{name}}}"


def counted_tweets(name: str) -> str:
    """Sorted set: the posts and deletes last added to ``name``'s tweet count (COUNT_TWEET)."""
    return f"counted:{{{name}}}"


def followers(name: str) -> str:
    """Sorted set, all scores 0, read in lexicographic order: who follows ``name``."""
    return f"followers:{{{name}}}"


def following(name: str) -> str:
    return f"following:{{{name}}}"


#: Sorted set of every lowercase username, scores 0, for lexicographic prefix search.
usernames = "usernames"

#: Sorted set: lowercase username -> followers gained less followers lost since it was kept
#: (realtime.users.Users.suggestions: who to follow).
popular_users = "popular"


#: Field of the user hash (``user``): how the account's tweets fan out, absent while they are
#: pushed into followers' timelines (realtime.hot_fanout: "warming", "hot", "cooled:<ms>").
FANOUT_STATE = "fanout"


def hot_follows(name: str) -> str:
    """Sorted set: the hot accounts ``name`` follows, each scored by the smallest entry id of
    theirs merged into ``name``'s home timeline (realtime.hot_fanout)."""
    return f"hotfollow:{{{name}}}"


def hot_channel(tag: str) -> str:
    """The pub/sub channel of the tweets and deletes of the hot accounts of fan-out shard
    ``tag`` (sharded on a cluster), published by the writes of their hot timelines; every
    server process listens to every shard's."""
    return f"live:hot:{{{tag}}}"


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


def notifications(name: str) -> str:
    """Sorted set: the user's notifications, ``type|from|tweet id`` scored by the notification's
    id (realtime.notifications). In the user's slot, with the presence that its script reads."""
    return f"notes:{{{name}}}"


def notifications_read(name: str) -> str:
    """String: the id of the newest notification the user has read."""
    return f"notes:read:{{{name}}}"


def tweet(tweet_id: int | str) -> str:
    return f"tweet:{{{tweet_id}}}"


def likes(tweet_id: int | str) -> str:
    return f"likes:{{{tweet_id}}}"


def count_watchers(tweet_id: int | str) -> str:
    """Sorted set: the server processes with a socket watching the tweet's counts, scored by
    the end of their lease (Unix ms); in the tweet's slot (realtime.watches)."""
    return f"watch:{{{tweet_id}}}"


def retweets(tweet_id: int | str) -> str:
    """Hash: retweeter's lowercase name -> id of the retweet entry."""
    return f"retweets:{{{tweet_id}}}"


FANOUT_GROUP = "fanout-workers"


@functools.cache
def fanout_shard_tags(shards: int) -> tuple[str, ...]:
    """The hash tags of the fan-out stream shards: shard i's tag hashes into the i-th of
    ``shards`` equal ranges of slots, so that the shards spread over a cluster's masters
    the way ``redis-cli --cluster create`` spreads slots. The same in every process."""
    tags = []
    for shard in range(shards):
        low, high = (shard * REDIS_CLUSTER_HASH_SLOTS // shards, (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards)
        tags.append(next(tag for n in range(1_000_000) if low <= key_slot((tag := f"f{shard}.{n}").encode()) < high))
    return tuple(tags)


def fanout_tag_of(author: str, shards: int) -> str:
    """The shard of an author's fan-out jobs: all of them in one, so they keep their order."""
    return fanout_shard_tags(shards)[key_slot(author.encode()) % shards]


def fanout_stream(tag: str) -> str:
    """Stream: the fan-out jobs of one shard (one author's jobs are all in one shard)."""
    return f"fanout:jobs:{{{tag}}}"


def fanout_recorded(tag: str, kind: str, tweet_id: int) -> str:
    """String, kept ``fanout.RECORDED_TTL_MS``: the stream id of the job recorded for this
    kind and tweet, so that a record sent again (a reply lost, a client's retry) records no
    second job."""
    return f"fanout:recorded:{{{tag}}}:{kind}:{tweet_id}"


def fanout_last_job(tag: str) -> str:
    """Hash: author -> stream id of the author's newest job in this shard not yet done. A new
    job records it as the one it must wait for (realtime.fanout)."""
    return f"fanout:last:{{{tag}}}"


def fanout_progress(tag: str, job_id: str) -> str:
    """Hash: how far a job has got (a follower cursor, extras done, failures)."""
    return f"fanout:progress:{{{tag}}}:{job_id}"


def fanout_dead_letters(tag: str) -> str:
    """Stream: jobs of the shard that failed too often, with their error."""
    return f"fanout:dead:{{{tag}}}"


def id_worker(worker_id: int) -> str:
    return f"idgen:worker:{worker_id}"
