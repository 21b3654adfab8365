"""Users: create, profile, edit, follow, followers and following."""

from __future__ import annotations

import re

from starlette.requests import Request

from realtime.errors import BadRequest, Conflict
from realtime.text import normalize_username

from ..requests import count_param, current_session, new_username, optional_str, read_json, signed_in_user, viewer
from ..responses import Json, no_content

_CURSOR = re.compile(r"^[a-z0-9_]{1,15}$")


async def create_user(request: Request) -> Json:
    """
    summary: Choose a username (the first call of a new Google account)
    tags: [users]
    security: [{bearer: []}]
    body:
      required: [username]
      properties:
        username: {type: string, pattern: '^[A-Za-z0-9_]{1,15}$'}
        display_name: {type: string, maxLength: 50}
        bio: {type: string, maxLength: 160}
    responses:
      201:
        description: The new profile.
        json: Profile
    errors: [400, 401, 409, 413, 422]
    """
    engine = request.app.state.engine
    session = await current_session(request)
    if session.user is not None:
        raise Conflict("This session already has a username.", code="username_already_chosen")
    data = await read_json(request)
    username = new_username(data)
    display_name, bio = optional_str(data, "display_name"), optional_str(data, "bio")
    if session.google_sub is None:
        profile = await engine.users.create(username, display_name, bio)
    else:  # the Google account's one user, keyed by its sub
        try:
            profile = await engine.users.create_for_google(session.google_sub, username, display_name, bio)
        except Conflict as conflict:
            existing = await engine.users.google_user(session.google_sub)
            if existing:  # chosen meanwhile (another tab): this session is that user's from now on
                await engine.sessions.bind_user(session, existing)
            raise conflict
    await engine.sessions.bind_user(session, normalize_username(profile["username"]))
    return Json(profile, status_code=201)


async def get_profile(request: Request) -> Json:
    """
    summary: A user's profile with counts (the username me is the caller)
    tags: [users]
    parameters: [username]
    responses:
      200:
        description: The profile.
        json: Profile
    errors: [404]
    """
    engine = request.app.state.engine
    name = request.path_params["username"]
    if name == "me":
        name = looking = await signed_in_user(request)
    else:
        looking = await viewer(request)
    return Json(await engine.users.profile(await engine.users.require(name), viewer=looking))


async def edit_profile(request: Request) -> Json:
    """
    summary: Edit your display name or bio
    tags: [users]
    security: [{bearer: []}]
    body:
      properties:
        display_name: {type: string, minLength: 1, maxLength: 50}
        bio: {type: string, maxLength: 160}
    responses:
      200:
        description: The updated profile.
        json: Profile
    errors: [400, 401, 413, 422]
    """
    me = await signed_in_user(request)
    data = await read_json(request)
    display_name, bio = optional_str(data, "display_name"), optional_str(data, "bio")
    return Json(await request.app.state.engine.users.update(me, display_name=display_name, bio=bio))


async def follow(request: Request):
    """
    summary: Follow a user (idempotent)
    tags: [users]
    security: [{bearer: []}]
    parameters: [username]
    responses:
      204: {description: Following.}
    errors: [401, 404, 422, 429]
    """
    me = await signed_in_user(request)
    await request.app.state.engine.rate_limits.hit("follows", me)
    await request.app.state.engine.users.follow(me, request.path_params["username"])
    return no_content()


async def unfollow(request: Request):
    """
    summary: Stop following a user (idempotent)
    tags: [users]
    security: [{bearer: []}]
    parameters: [username]
    responses:
      204: {description: Not following.}
    errors: [401, 404, 422, 429]
    """
    me = await signed_in_user(request)
    await request.app.state.engine.rate_limits.hit("follows", me)
    await request.app.state.engine.users.unfollow(me, request.path_params["username"])
    return no_content()


async def _relation(request: Request, relation: str) -> Json:
    count = count_param(request)
    cursor = request.query_params.get("cursor") or None
    if cursor is not None and not _CURSOR.fullmatch(cursor.lower()):
        raise BadRequest("cursor must be a value from a previous page's next.", code="invalid_cursor")
    names, next_cursor = await request.app.state.engine.users.relation_page(
        request.path_params["username"], relation, count=count, cursor=cursor)
    return Json({"users": names, "next": next_cursor})


async def followers(request: Request) -> Json:
    """
    summary: Who follows a user, in alphabetical order
    tags: [users]
    parameters: [username, count, cursor]
    responses:
      200: UserPage
    errors: [404]
    """
    return await _relation(request, "followers")


async def following(request: Request) -> Json:
    """
    summary: Whom a user follows, in alphabetical order
    tags: [users]
    parameters: [username, count, cursor]
    responses:
      200: UserPage
    errors: [404]
    """
    return await _relation(request, "following")


async def suggestions(request: Request) -> Json:
    """
    summary: Who to follow, for you - the most followed users you do not follow yet
    tags: [users]
    security: [{bearer: []}]
    parameters:
      - {in: query, name: count, schema: {type: integer, minimum: 1, maximum: 20, default: 5}}
    responses:
      200:
        description: Suggestions, most followed first.
        json:
          type: object
          required: [users]
          properties:
            users:
              type: array
              items:
                type: object
                required: [username, display_name, followers]
                properties:
                  username: {type: string}
                  display_name: {type: string}
                  followers: {type: integer}
    errors: [400, 401, 403, 422]
    """
    me = await signed_in_user(request)
    count = count_param(request, default=5, maximum=20)
    return Json({"users": await request.app.state.engine.users.suggestions(me, count)})
