"""Every failure becomes the contract's error JSON, here and nowhere else.

- ``ChirpError`` (the engine's hierarchy): its own status and code.
- Starlette's ``HTTPException`` (unknown route 404, wrong method 405): same shape.
- Redis not answering, or refusing writes for now (OOM, READONLY, a failover): 503
  ``redis_unavailable`` with ``Retry-After``.
- The client leaving mid-body: counted, never a traceback.
- Anything else: 500 ``internal_error`` with no detail; the traceback goes to the log only.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route

from realtime import metrics
from realtime.errors import ChirpError, RateLimited, Unavailable
from realtime.redis_client import RedisDown, is_transient

from .responses import Json

__all__ = ["EXCEPTION_HANDLERS", "error_response"]

log = logging.getLogger("chirp.http")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "payload_too_large"}


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> Json:
    return Json({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def chirp_error(request: Request, exc: ChirpError) -> Json:
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, Unavailable):
        headers = {"Retry-After": "1"}
    return error_response(exc.status, exc.code, exc.message, headers)


async def http_exception(request: Request, exc: HTTPException) -> Json:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = {404: "There is no such route.", 405: f"{request.method} is not allowed here."}.get(
        exc.status_code, str(exc.detail))
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), **_allow_header(request)}
    return error_response(exc.status_code, code, message, headers)


def _allow_header(request: Request) -> dict[str, str]:
    """Every method of the path. Starlette's 405 names only the first route that matched the
    path, and several of ours share one (GET and DELETE /tweets/{id} are separate routes)."""
    methods = {method for route in request.app.routes
               if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE
               for method in route.methods}
    return {"Allow": ", ".join(sorted(methods))} if methods else {}


async def redis_down(request: Request, exc: Exception) -> Json:
    log.warning("Redis unavailable during %s %s: %s", request.method, request.url.path, exc)
    unavailable = Unavailable("The data store is not answering; try again shortly.", code="redis_unavailable")
    return error_response(503, unavailable.code, unavailable.message, {"Retry-After": "1"})


async def redis_error(request: Request, exc: RedisError) -> Json:
    """Every redis-py error is answered here (a class handler: the connection stays usable;
    Starlette's catch-all would answer and then re-raise, which drops keep-alive clients)."""
    if is_transient(exc):
        return await redis_down(request, exc)
    log.error("Redis error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong on our side.")


async def maybe_redis(request: Request, exc: Exception) -> Json:
    """AttributeError and RuntimeError: raised inside redis-py's connection code they are a
    lost connection (realtime.redis_client.is_transient); else a bug, logged, answered 500."""
    if is_transient(exc):
        return await redis_down(request, exc)
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong on our side.")


async def client_left(request: Request, exc: ClientDisconnect) -> Response:
    """The client went away before its body arrived (or a body timeout cut it off): nobody
    reads the answer, and it is no error of ours."""
    metrics.REQUESTS_ABANDONED.inc()
    log.debug("client left during %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def unexpected(request: Request, exc: Exception) -> Json:
    if is_transient(exc):  # also out of memory, read-only replicas, a cluster mid-failover
        return await redis_down(request, exc)
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "Something went wrong on our side.")


EXCEPTION_HANDLERS = {
    ChirpError: chirp_error,
    ClientDisconnect: client_left,
    HTTPException: http_exception,
    RedisError: redis_error,
    AttributeError: maybe_redis,
    RuntimeError: maybe_redis,
    **{kind: redis_down for kind in RedisDown},
    Exception: unexpected,
}
