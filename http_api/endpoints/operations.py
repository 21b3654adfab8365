"""Operations: health."""

from __future__ import annotations

from starlette.requests import Request

from realtime.redis_client import RedisDown

from ..errors import error_response
from ..responses import Json


async def healthz(request: Request) -> Json:
    """
    summary: 200 when this process can reach Redis, else 503
    tags: [operations]
    responses:
      200:
        description: Healthy.
        content: {application/json: {schema: {type: object, properties: {status: {type: string, example: ok}}}}}
      503: {$ref: '#/components/responses/Error'}
    """
    try:
        await request.app.state.engine.ping()
    except RedisDown:
        return error_response(503, "redis_unavailable", "Redis does not answer.")
    return Json({"status": "ok"})
