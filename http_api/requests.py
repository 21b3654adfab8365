"""Reading what a client sent: JSON bodies, query parameters, the bearer token."""

from __future__ import annotations

import orjson
from starlette.requests import HTTPConnection, Request

from realtime.errors import BadRequest, Forbidden, Unauthorized, Unprocessable, UnsupportedMediaType
from realtime.ids import is_id_text
from realtime.sessions import Session
from realtime.text import check_username

__all__ = ["read_json", "count_param", "before_param", "bearer_token", "current_session", "signed_in_user", "viewer",
           "optional_str", "new_username", "client_address", "RESERVED_USERNAMES"]

DEFAULT_COUNT = 20
MAX_COUNT = 100

#: Names that are routes, not people.
RESERVED_USERNAMES = frozenset({"me"})


async def read_json(request: Request) -> dict:
    """The body as a JSON object, else 400; 415 when it is declared as something else, such
    as the ``text/plain`` a cross-site form may send without a CORS preflight (``BodyLimit``
    has already refused oversized ones)."""
    declared = request.headers.get("content-type")
    if declared is not None and not _is_json(declared):
        raise UnsupportedMediaType(f"The body must be application/json, not {declared[:60]}.")
    body = await request.body()
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not valid JSON.", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.", code="wrong_type")
    return data


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def client_address(connection: HTTPConnection) -> str:
    """Who is calling, for per-address limits: the header the proxy in front sets when one is
    configured (``CLIENT_IP_HEADER``), else the connection's address (which uvicorn takes from
    X-Forwarded-For only when the connection comes from one of ``TRUSTED_PROXIES``)."""
    header = connection.app.state.settings.client_ip_header
    if header:
        value = connection.headers.get(header, "").split(",")[0].strip()
        if value:
            return value[:64]
    return connection.client.host if connection.client else "unknown"


def optional_str(data: dict, field: str) -> str | None:
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{field} must be a string.", code="wrong_type")
    return value


def new_username(data: dict) -> str:
    """The ``username`` field of a sign-up: 400 missing or not a string, 422 invalid or reserved."""
    name = check_username(data.get("username"))
    if name.lower() in RESERVED_USERNAMES:
        raise Unprocessable(f"'{name}' is reserved; choose another username.", code="reserved_username")
    return name


def count_param(request: Request, default: int = DEFAULT_COUNT, maximum: int = MAX_COUNT) -> int:
    raw = request.query_params.get("count")
    if raw is None:
        return default
    if not (raw.isascii() and raw.lstrip("-").isdigit()) or len(raw) > 6:
        raise BadRequest("count must be a whole number.", code="wrong_type")
    count = int(raw)
    if not 1 <= count <= maximum:
        raise Unprocessable(f"count must be between 1 and {maximum}.", code="invalid_count")
    return count


def before_param(request: Request) -> int | None:
    raw = request.query_params.get("before")
    if raw is None or raw == "":
        return None
    if not is_id_text(raw):
        raise BadRequest("before must be a tweet id.", code="wrong_type")
    return int(raw)


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def current_session(request: Request) -> Session:
    """The caller's session (401 without a valid one), whether or not it has a username yet."""
    return await request.app.state.engine.sessions.lookup(bearer_token(request))


async def signed_in_user(request: Request) -> str:
    """The caller's lowercase username; 401 without a session, 403 before choosing a username."""
    session = await current_session(request)
    if session.user is None:
        raise Forbidden("Choose a username first with POST /users.", code="username_required")
    return session.user


async def viewer(request: Request) -> str | None:
    """Who is looking, for a public call: the caller's lowercase username when the request
    carries a live session that has one, else None. A public call answers anyone, so a token
    that is not (or no longer) valid only leaves out what is the caller's own (their flags)."""
    if bearer_token(request) is None:
        return None
    try:
        return (await current_session(request)).user
    except Unauthorized:
        return None
