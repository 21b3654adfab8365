"""Sign-in: with Google, dev sign-in, and sign-out.

Both ways of signing in count against the per-address sign-in limit before anything
else is done, failures included: guessing costs the guesser, not us.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from realtime.errors import BadRequest, NotFound
from realtime.text import normalize_username

from ..requests import client_address, current_session, new_username, read_json
from ..responses import Json, no_content


async def google_signin(request: Request) -> Json:
    """
    summary: Sign in with a Google ID token (from Google Identity Services)
    description: >
      The token is verified here: its signature against Google's published certificates,
      `aud` equal to this server's `GOOGLE_CLIENT_ID`, issuer Google, not expired (30 s of
      grace for clocks on `iat`), and a verified email. The session ends when the Google
      token would. A Google account that has not chosen a username yet gets a session with
      `username: null` whose only allowed call is `POST /users`. 404 when this server has
      no `GOOGLE_CLIENT_ID`; 503 when Google's certificates cannot be fetched.
    tags: [auth]
    body:
      required: [credential]
      properties:
        credential: {type: string, description: the ID token Google gave the browser}
    responses:
      200:
        description: A new session; `username` is null until the account chooses one with POST /users.
        json: Session
    errors: [400, 401, 404, 413, 429, 503]
    """
    engine = request.app.state.engine
    await engine.rate_limits.hit("signin", client_address(request))
    data = await read_json(request)
    credential = data.get("credential")
    if credential is None:
        raise BadRequest("credential is required: the ID token Google gave you.", code="missing_field")
    if not isinstance(credential, str):
        raise BadRequest("credential must be a string.", code="wrong_type")
    if engine.google is None:
        raise NotFound("Sign in with Google is not enabled on this server.", code="google_signin_disabled")
    identity = await engine.google.verify(credential)
    user = await engine.users.google_user(identity.sub)
    token = await engine.sessions.create(user, identity.expires_at, google_sub=identity.sub)
    username = await engine.users.canonical(user) if user else None
    return Json({"token": token, "expires_at": identity.expires_at, "username": username})


async def dev_signin(request: Request) -> Json:
    """
    summary: Sign in by username alone (development only; 404 unless enabled)
    tags: [auth]
    body:
      required: [username]
      properties:
        username: {type: string, pattern: '^[A-Za-z0-9_]{1,15}$'}
    responses:
      200:
        description: A new session; the user is created if new.
        json: Session
    errors: [400, 404, 413, 422, 429]
    """
    settings = request.app.state.settings
    if not settings.dev_signin:
        raise NotFound("Dev sign-in is not enabled on this server.", code="dev_signin_disabled")
    engine = request.app.state.engine
    await engine.rate_limits.hit("signin", client_address(request))
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
    errors: [401]
    """
    session = await current_session(request)
    await request.app.state.engine.sessions.revoke(session)
    return no_content()
