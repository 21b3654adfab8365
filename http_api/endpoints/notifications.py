"""Notifications: mentions, likes, retweets and follows of the caller."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..requests import before_param, count_param, read_json, signed_in_user
from ..responses import Json, no_content


async def list_notifications(request: Request) -> Json:
    """
    summary: Your notifications, newest first, and how many are unread
    tags: [notifications]
    security: [{bearer: []}]
    parameters: [count, before]
    responses:
      200:
        description: A page; pass next as before for the next page.
        json: NotificationPage
    errors: [400, 401, 403, 422]
    """
    me = await signed_in_user(request)
    engine = request.app.state.engine
    return Json(await engine.notifications.page(me, count=count_param(request), before=before_param(request),
                                                hydrate=engine.tweets.hydrate))


async def mark_read(request: Request) -> Response:
    """
    summary: Mark your notifications read up to one (the mark only moves forward)
    tags: [notifications]
    security: [{bearer: []}]
    body:
      required: [up_to]
      properties:
        up_to: {type: string, pattern: '^[0-9]{1,16}$', description: the id of the newest notification read}
    responses:
      204: {description: Marked.}
    errors: [400, 401, 403, 413, 422]
    """
    me = await signed_in_user(request)
    data = await read_json(request)
    await request.app.state.engine.notifications.mark_read(me, data.get("up_to"))
    return no_content()
