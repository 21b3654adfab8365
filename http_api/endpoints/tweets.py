"""Tweets: post, read, delete, like, retweet."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from realtime.tweets import parse_tweet_id

from ..requests import read_json, signed_in_user, viewer
from ..responses import Json, no_content


async def post_tweet(request: Request) -> Response:
    """
    summary: Post a tweet (answers once its fan-out is recorded)
    tags: [tweets]
    security: [{bearer: []}]
    body:
      required: [content]
      properties:
        content: {type: string, minLength: 1, maxLength: 280, description: 1 to 280 Unicode code points}
    responses:
      201:
        description: Posted; no body.
        headers:
          Location: {description: 'the new tweet, /tweets/{id}', schema: {type: string}}
    errors: [400, 401, 413, 422, 429]
    """
    me = await signed_in_user(request)
    await request.app.state.engine.rate_limits.hit("posts", me)
    data = await read_json(request)
    tweet_id = await request.app.state.engine.tweets.post(me, data.get("content"))
    return Response(status_code=201, headers={"Location": f"/tweets/{tweet_id}"})


async def get_tweet(request: Request) -> Json:
    """
    summary: One tweet
    tags: [tweets]
    parameters: [tweet_id]
    responses:
      200:
        description: The tweet.
        json: Tweet
    errors: [404]
    """
    tweet_id = parse_tweet_id(request.path_params["tweet_id"])
    return Json(await request.app.state.engine.tweets.get(tweet_id, viewer=await viewer(request)))


async def delete_tweet(request: Request):
    """
    summary: Delete your tweet; it leaves every timeline
    tags: [tweets]
    security: [{bearer: []}]
    parameters: [tweet_id]
    responses:
      204: {description: Deleted.}
    errors: [401, 403, 404]
    """
    me = await signed_in_user(request)
    await request.app.state.engine.tweets.delete(me, parse_tweet_id(request.path_params["tweet_id"]))
    return no_content()


async def like(request: Request):
    """
    summary: Like a tweet (idempotent)
    tags: [tweets]
    security: [{bearer: []}]
    parameters: [tweet_id]
    responses:
      204: {description: Liked.}
    errors: [401, 404, 429]
    """
    me = await signed_in_user(request)
    await request.app.state.engine.rate_limits.hit("likes", me)
    await request.app.state.engine.tweets.like(me, parse_tweet_id(request.path_params["tweet_id"]))
    return no_content()


async def unlike(request: Request):
    """
    summary: Take a like back (idempotent)
    tags: [tweets]
    security: [{bearer: []}]
    parameters: [tweet_id]
    responses:
      204: {description: Not liked.}
    errors: [401, 404, 429]
    """
    me = await signed_in_user(request)
    await request.app.state.engine.rate_limits.hit("likes", me)
    await request.app.state.engine.tweets.like(me, parse_tweet_id(request.path_params["tweet_id"]), liked=False)
    return no_content()


async def retweet(request: Request):
    """
    summary: Retweet to your followers (idempotent)
    tags: [tweets]
    security: [{bearer: []}]
    parameters: [tweet_id]
    responses:
      204: {description: Retweeted.}
    errors: [401, 404, 429]
    """
    me = await signed_in_user(request)
    await request.app.state.engine.rate_limits.hit("posts", me)
    await request.app.state.engine.tweets.retweet(me, parse_tweet_id(request.path_params["tweet_id"]))
    return no_content()


async def unretweet(request: Request):
    """
    summary: Undo a retweet (idempotent)
    tags: [tweets]
    security: [{bearer: []}]
    parameters: [tweet_id]
    responses:
      204: {description: Not retweeted.}
    errors: [401, 404, 429]
    """
    me = await signed_in_user(request)
    await request.app.state.engine.rate_limits.hit("posts", me)
    await request.app.state.engine.tweets.unretweet(me, parse_tweet_id(request.path_params["tweet_id"]))
    return no_content()
