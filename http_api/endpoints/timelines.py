"""Timelines: home, a user's tweets, a user's mentions, a hashtag."""

from __future__ import annotations

import re
import time

from starlette.requests import Request

from realtime import keys
from realtime.errors import Unprocessable
from realtime.text import normalize_username

from ..requests import before_param, count_param, signed_in_user, viewer
from ..responses import Json

_TAG = re.compile(r"^#?([A-Za-z0-9_]{1,100})$")



async def _page(request: Request, key: str, me: str | None = None, started: float | None = None,
                home: bool = False) -> Json:
    """``me``: the caller, known already (home); else whoever the token names, if anyone.
    The handler's own time goes in ``Server-Timing`` (from ``started``, when it began earlier).
    ``home``: the caller's home timeline, with the hot accounts they follow merged in."""
    started = started or time.perf_counter()
    count, before = count_param(request), before_param(request)
    looking = me or await viewer(request)
    engine = request.app.state.engine
    merged = await engine.hot_fanout.follows_of(me) if home else None
    answer = Json(await engine.tweets.page(key, count=count, before=before, viewer=looking, merged=merged))
    answer.headers["Server-Timing"] = f"page;dur={(time.perf_counter() - started) * 1000:.3f}"
    return answer


async def home(request: Request) -> Json:
    """
    summary: Your home timeline
    tags: [timelines]
    security: [{bearer: []}]
    parameters: [count, before]
    responses:
      200: TweetPage
    errors: [400, 401, 422]
    """
    started = time.perf_counter()
    me = await signed_in_user(request)
    return await _page(request, keys.home_timeline(me), me, started, home=True)


async def user_tweets(request: Request) -> Json:
    """
    summary: Tweets sent by a user
    tags: [timelines]
    parameters: [username, count, before]
    responses:
      200: TweetPage
    errors: [400, 404, 422]
    """
    name = await request.app.state.engine.users.require(request.path_params["username"])
    return await _page(request, keys.user_timeline(normalize_username(name)))


async def user_mentions(request: Request) -> Json:
    """
    summary: Tweets that mention a user
    tags: [timelines]
    parameters: [username, count, before]
    responses:
      200: TweetPage
    errors: [400, 404, 422]
    """
    name = await request.app.state.engine.users.require(request.path_params["username"])
    return await _page(request, keys.mentions_timeline(normalize_username(name)))


async def hashtag(request: Request) -> Json:
    """
    summary: Tweets with a hashtag (tag without its '#')
    tags: [timelines]
    parameters:
      - {in: path, name: tag, required: true, schema: {type: string}}
      - count
      - before
    responses:
      200: TweetPage
    errors: [400, 422]
    """
    match = _TAG.fullmatch(request.path_params["tag"])
    if not match:
        raise Unprocessable("A hashtag is letters, digits and underscores.", code="invalid_hashtag")
    return await _page(request, keys.hashtag_timeline(match.group(1).lower()))


