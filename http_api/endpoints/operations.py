"""Operations: health, live statistics, Prometheus metrics."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from realtime import metrics
from realtime.presence import cluster_stats
from realtime.redis_client import RedisDown, is_transient

from ..errors import error_response
from ..responses import Json


async def healthz(request: Request) -> Json:
    """
    summary: 200 when this process can reach Redis (on a cluster, every slot served), else 503 with the reason
    tags: [operations]
    responses:
      200:
        description: Healthy.
        content: {application/json: {schema: {type: object, properties: {status: {type: string, example: ok}}}}}
    errors: [503]
    """
    try:
        problem = await request.app.state.engine.health_problem()
    except Exception as exc:
        if not is_transient(exc):
            raise
        return error_response(503, "redis_unavailable", f"Redis does not answer ({type(exc).__name__}).",
                              {"Retry-After": "1"})
    if problem:
        return error_response(503, "redis_cluster_degraded", f"Redis Cluster: {problem}.", {"Retry-After": "1"})
    return Json({"status": "ok"})


async def stats(request: Request) -> Json:
    """
    summary: Live connections and users online, in total and per live server process
    tags: [operations]
    responses:
      200:
        description: Sums over every process whose heartbeat is fresh.
        content:
          application/json:
            schema:
              type: object
              properties:
                connections: {type: integer}
                users_online: {type: integer}
                processes:
                  type: array
                  items:
                    type: object
                    properties:
                      id: {type: string}
                      connections: {type: integer}
                      users_online: {type: integer}
                      started_at: {type: number}
    errors: [503]
    """
    return Json(await cluster_stats(request.app.state.engine.redis))


async def prometheus_metrics(request: Request) -> Response:
    """
    summary: Prometheus metrics (text format)
    tags: [operations]
    responses:
      200: {description: Metrics., content: {text/plain: {schema: {type: string}}}}
    """
    engine = request.app.state.engine
    try:
        waiting, pending, oldest_ms = await engine.fanout_queue.backlog_with_age()
        metrics.FANOUT_QUEUE_LENGTH.set(waiting)
        metrics.FANOUT_PENDING.set(pending)
        metrics.FANOUT_LAG.set(max(0.0, time.time() - oldest_ms / 1000) if oldest_ms else 0.0)
    except RedisDown:
        pass  # still answer what this process knows
    return Response(metrics.render_metrics(), media_type=metrics.CONTENT_TYPE_LATEST)
