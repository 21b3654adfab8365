"""The Starlette application, readable top to bottom: ``create_app(settings)``."""

from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route, WebSocketRoute

from realtime.config import Settings
from realtime.engine import Engine
from .gc_tuning import tune_garbage_collector

from .body_limit import BodyLimit
from .endpoints import auth, live, notifications, operations, pages, search, timelines, tweets, users
from .errors import EXCEPTION_HANDLERS
from .openapi import docs_init, docs_page, openapi_json, swagger_assets
from .security_headers import SecurityHeaders
from .shutdown import close_sockets_before_exit
from .socket_writer import RawWebSocketSend

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("chirp.app")


def create_app(settings: Settings, *, tune_gc: bool = False) -> Starlette:
    """``tune_gc``: this process is the server (not a test embedding the app), so set its
    garbage collector for thousands of sockets once started (http_api.gc_tuning)."""
    routes = [
        # Sign-in
        Route("/auth/google", auth.google_signin, methods=["POST"]),
        Route("/auth/dev", auth.dev_signin, methods=["POST"]),
        Route("/auth/signout", auth.signout, methods=["POST"]),
        # Users ("/users/me" before "/users/{username}")
        Route("/users", users.create_user, methods=["POST"]),
        Route("/users/me", users.edit_profile, methods=["PATCH"]),
        Route("/users/me/suggestions", users.suggestions, methods=["GET"]),
        Route("/users/{username}", users.get_profile, methods=["GET"]),
        Route("/users/{username}/follow", users.follow, methods=["PUT"]),
        Route("/users/{username}/follow", users.unfollow, methods=["DELETE"]),
        Route("/users/{username}/followers", users.followers, methods=["GET"]),
        Route("/users/{username}/following", users.following, methods=["GET"]),
        Route("/users/{username}/tweets", timelines.user_tweets, methods=["GET"]),
        Route("/users/{username}/mentions", timelines.user_mentions, methods=["GET"]),
        # Tweets
        Route("/tweets", tweets.post_tweet, methods=["POST"]),
        Route("/tweets/{tweet_id}", tweets.get_tweet, methods=["GET"]),
        Route("/tweets/{tweet_id}", tweets.delete_tweet, methods=["DELETE"]),
        Route("/tweets/{tweet_id}/like", tweets.like, methods=["PUT"]),
        Route("/tweets/{tweet_id}/like", tweets.unlike, methods=["DELETE"]),
        Route("/tweets/{tweet_id}/retweet", tweets.retweet, methods=["PUT"]),
        Route("/tweets/{tweet_id}/retweet", tweets.unretweet, methods=["DELETE"]),
        # Timelines
        Route("/timelines/home", timelines.home, methods=["GET"]),
        Route("/hashtags/{tag}/tweets", timelines.hashtag, methods=["GET"]),
        Route("/tweet/search/{input}", search.search, methods=["GET"]),

        Route("/notifications", notifications.list_notifications, methods=["GET"]),
        Route("/notifications/read", notifications.mark_read, methods=["POST"]),
        # Live
        WebSocketRoute("/ws", live.live),
        # Operations
        Route("/healthz", operations.healthz, methods=["GET"]),
        Route("/stats", operations.stats, methods=["GET"]),
        Route("/metrics", operations.prometheus_metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=True),
        Route("/docs", docs_page, methods=["GET"]),
        Route("/docs/swagger-init.js", docs_init, methods=["GET"], include_in_schema=False),
        Mount("/docs/assets", app=swagger_assets, name="swagger-assets"),
        # The browser client and the monitor page (static/), and the settings they start from
        Route("/", pages.app_page, methods=["GET"]),
        Route("/monitor", pages.monitor_page, methods=["GET"]),
        Route("/config", pages.client_config, methods=["GET"]),
        *pages.static_routes(),  # GET /static/<file>, one route per file
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        engine = await Engine.open(settings)
        app.state.engine = engine
        engine.start_fanout_workers(settings.fanout_in_process)
        await engine.start_live()
        close_sockets_before_exit(engine.live_hub)
        if tune_gc:
            tune_garbage_collector()
        try:
            yield
        finally:
            await engine.close()

    middleware = [
        Middleware(RawWebSocketSend),  # live frames skip Starlette's send wrappers (socket_writer.py)
        Middleware(SecurityHeaders),  # nosniff on every answer, a CSP on HTML ones
        *([Middleware(CORSMiddleware, allow_origins=settings.cors_origins.split(","),
                      allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      allow_headers=["Authorization", "Content-Type"], expose_headers=["Location", "Retry-After"],
                      max_age=600)]
          if settings.cors_origins else []),  # no CORS headers at all unless CORS_ORIGINS names origins
        Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.settings = settings
    app.state.pending_sockets = live.PendingSockets(settings.max_unauthenticated_sockets)
    return app


def create_app_from_env() -> Starlette:
    """For ``uvicorn --factory`` and worker processes: settings from the environment."""
    return create_app(Settings.load(), tune_gc=True)
