"""Search: usernames and hashtags by prefix, and a hashtag's latest tweets."""

from __future__ import annotations

import time

from starlette.requests import Request

from realtime.search import DEFAULT_TWEETS, parse_query

from ..requests import count_param, viewer
from ..responses import Json


async def search(request: Request) -> Json:
    """
    summary: Usernames and hashtags starting with the input; with '#', that hashtag's latest tweets
    description: >
      `users`: up to 10 usernames (as chosen) starting with the input, case-insensitively,
      alphabetically; a leading `@` is stripped and asks for users only. `hashtags`: up to 3
      hashtags (lowercase, with their `#`) starting with the input, most used first; a leading
      `#` (sent as `%23`) is stripped and asks for hashtags only, plus `tweets`: the `count`
      latest tweets with exactly that hashtag (else `[]`). Hashtags whose tweets have all aged
      out of their timeline are not suggested. An input that is empty, longer than 100
      characters, or has anything but letters, digits and underscores after its `@`/`#`
      (whitespace included) is 422. The server's own time is in the `Server-Timing` header.
    tags: [timelines]
    parameters:
      - in: path
        name: input
        required: true
        description: What was typed (the contract's `{input}`), e.g. `al`, `@al` or `%23py`.
        schema: {type: string, maxLength: 101}
      - in: query
        name: count
        description: tweets to answer when the input starts with '#'
        schema: {type: integer, minimum: 1, maximum: 100, default: 10}
    responses:
      200:
        description: What starts with the input.
        headers:
          Server-Timing: {description: 'search;dur=<milliseconds spent in the handler>', schema: {type: string}}
        content:
          application/json:
            schema:
              type: object
              required: [users, hashtags, tweets]
              properties:
                users: {type: array, maxItems: 10, items: {type: string}}
                hashtags: {type: array, maxItems: 3, items: {type: string, example: '#python'}}
                tweets: {type: array, items: {$ref: '#/components/schemas/Tweet'}}
    errors: [400, 422]
    """
    started = time.perf_counter()
    query = parse_query(request.path_params["input"])
    count = count_param(request, default=DEFAULT_TWEETS)
    answer = Json(await request.app.state.engine.search.search(query, count=count, viewer=await viewer(request)))
    answer.headers["Server-Timing"] = f"search;dur={(time.perf_counter() - started) * 1000:.3f}"
    return answer
