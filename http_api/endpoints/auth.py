"""Sign-in: dev sign-in and sign-out (Google sign-in has its own issue)."""

from __future__ import annotations

import time

from starlette.requests import Request

from realtime.errors import NotFound
from realtime.text import normalize_username

from ..requests import current_session, new_username, read_json
from ..responses import Json, no_content


async def dev_signin(request: Request) -> Json:
    """
    summary: Sign in by username alone (development only; 404 unless enabled)
    tags: [auth]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [username]
            properties:
              username: {type: string, pattern: '^[A-Za-z0-9_]{1,15}$'}
    responses:
      200:
        description: A new session; the user is created if new.
        content: {application/json: {schema: {$ref: '#/components/schemas/Session'}}}
      400: {$ref: '#/components/responses/Error'}
      404: {$ref: '#/components/responses/Error'}
      413: {$ref: '#/components/responses/Error'}
      422: {$ref: '#/components/responses/Error'}
    """
    settings = request.app.state.settings
    if not settings.dev_signin:
        raise NotFound("Dev sign-in is not enabled on this server.", code="dev_signin_disabled")
    engine = request.app.state.engine
    data = await read_json(request)
    username = await engine.users.ensure(new_username(data))
    expires_at = time.time() + settings.session_ttl
    token = await engine.sessions.create(normalize_username(username), expires_at)
    return Json({"token": token, "expires_at": expires_at, "username": username})


async def signout(request: Request):
    """
    summary: End this session at once
    tags: [auth]
    security: [{bearer: []}]
    responses:
      204: {description: Signed out.}
      401: {$ref: '#/components/responses/Error'}
    """
    session = await current_session(request)
    await request.app.state.engine.sessions.revoke(session)
    return no_content()
