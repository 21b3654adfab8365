"""Start the service: ``python run.py`` (HTTP + WebSocket + fan-out) or
``python run.py worker`` (fan-out workers only). ``python run.py --help`` lists every
setting; each flag has an environment variable twin (see README).

With no REDIS_URL an embedded Redis is started for this run and dev sign-in is on.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from realtime.config import SETTINGS, Settings, SettingsError

log = logging.getLogger("chirp")

#: A relative EMBEDDED_REDIS_DIR is taken from here, wherever run.py is started from.
PROJECT_DIR = Path(__file__).resolve().parent


def data_directory(setting: str) -> Path:
    path = Path(setting).expanduser()
    return path if path.is_absolute() else PROJECT_DIR / path


def cannot_listen(host: str, port: int) -> str | None:
    """Why uvicorn would fail to listen on host:port, asked before anything starts (an
    embedded Redis on a data directory that another instance is using, for one)."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use (another Chirp, or another server): stop it, or choose --port"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chirp: a real-time tweet service.")
    parser.add_argument("command", nargs="?", choices=["serve", "worker"], default="serve",
                        help="serve (default): the web service; worker: fan-out workers only")
    for option in SETTINGS:
        default_text = option.default if option.default is not None else "unset"
        parser.add_argument(option.flag, dest=option.field, default=None, metavar=option.env,
                            help=f"{option.help} (env {option.env}, default {default_text})")
    return parser.parse_args(argv)


def redacted(url: str) -> str:
    """A Redis URL fit for a log line: no password."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    return url


def log_settings(settings: Settings, redis_kind: str) -> None:
    log.info("Redis: %s (%s)", redacted(settings.redis_url), redis_kind)
    if settings.dev_signin:
        log.warning("DEV SIGN-IN IS ON: anyone can sign in as any username with POST /auth/dev")
    else:
        log.info("Dev sign-in: off")
    log.info("Google sign-in: %s", "on" if settings.google_client_id else "off (GOOGLE_CLIENT_ID unset)")
    if settings.rate_limits:
        log.info("Rate limits: posts %s, follows %s, likes %s per user; sign-in %s per address",
                 settings.rate_limit_posts, settings.rate_limit_follows, settings.rate_limit_likes,
                 settings.rate_limit_signin)
    else:
        log.warning("RATE LIMITS ARE OFF (RATE_LIMITS=off)")
    log.info("Live sockets per user: %s; unauthenticated per address: %d per process",
             settings.max_sockets_per_user or "no limit", settings.max_unauthenticated_sockets)
    log.info("HTTP limits: headers %d bytes, %d of them, within %.0f s; body %d bytes within %.0f s; "
             "send buffer %s", settings.max_header_bytes, settings.max_headers, settings.header_timeout,
             settings.max_body_bytes, settings.body_timeout,
             f"{settings.socket_send_buffer} bytes" if settings.socket_send_buffer else "kernel autotuning")
    log.info("X-Forwarded-For believed from: %s; client address header: %s",
             settings.trusted_proxies or "nobody", settings.client_ip_header or "none")
    log.info("WebSockets: uvicorn's %s, ping every %.0f s", settings.ws_impl, settings.ws_ping_interval)
    log.info("Access log: %s", "a line per request and per socket" if settings.access_log
             else "off (ACCESS_LOG=on for a line per request and per socket)")
    log.info("Workers: %d server process(es), %d fan-out worker(s) in each, over %d stream shards",
             settings.workers, settings.fanout_in_process, settings.fanout_shards)
    cluster = {None: "auto (asked of the server)", True: "on", False: "off"}[settings.redis_cluster]
    log.info("Redis Cluster: %s; a 201 waits up to %.0f ms for a replica there", cluster,
             settings.replica_ack_timeout * 1000)
    log.info("Hybrid fan-out: %s", f"accounts with {settings.fanout_hot_followers} followers or more are hot "
             "(their tweets merged into home timelines when read)" if settings.fanout_hot_followers
             else "off (every tweet pushed to every follower's home timeline)")
    log.info("Timelines: entries kept %.0f s (%.1f days), at most %d per timeline",
             settings.timeline_max_age, settings.timeline_max_age / 86400, settings.timeline_max_length)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_config(level: str, access_log: bool) -> dict:
    """One format and level for our loggers and uvicorn's, in every worker process (uvicorn
    applies it in each; without it a worker's INFO lines were lost and warnings bare).
    Without ``access_log``, no line per connection (http_api/connection_log.py)."""
    quiet = {} if access_log else {"filters": ["quiet_connections"]}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "filters": {"quiet_connections": {"()": "http_api.connection_log.QuietConnections"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {"uvicorn": {"level": level.upper()}, "uvicorn.error": {"level": level.upper(), **quiet}},
    }


def serve(settings: Settings) -> None:
    import uvicorn

    # Worker processes load their settings from the environment, so hand them ours.
    os.environ.update(settings.to_environ())
    # Several workers: each writes its metrics to files in a fresh directory, and /metrics
    # (answered by any one of them) sums the files. Set before any worker imports prometheus_client.
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="chirp-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from http_api.http_protocol import LimitedHttpProtocol

    log.info("Listening on http://%s:%d", settings.host, settings.port)
    try:
        uvicorn.run(
            "http_api.app:create_app_from_env", factory=True,
            host=settings.host, port=settings.port, workers=settings.workers,
            http=LimitedHttpProtocol,  # header size, count and time limits, body time limit
            log_level=settings.log_level, log_config=log_config(settings.log_level, settings.access_log),
            access_log=settings.access_log,
            ws=settings.ws_impl, ws_per_message_deflate=False, ws_max_size=settings.ws_max_size,
            ws_ping_interval=settings.ws_ping_interval, ws_ping_timeout=settings.ws_ping_interval,
            proxy_headers=bool(settings.trusted_proxies), forwarded_allow_ips=settings.trusted_proxies or None,
            timeout_graceful_shutdown=10,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


async def run_workers(settings: Settings) -> None:
    from realtime.engine import Engine
    from http_api.gc_tuning import tune_garbage_collector

    engine = await Engine.open(settings)
    count = max(1, settings.fanout_in_process)
    workers = engine.start_fanout_workers(count)
    tune_garbage_collector()
    log.info("%d fan-out worker(s) running: %s", count, ", ".join(w.consumer for w in workers))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await engine.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {option.field: getattr(args, option.field) for option in SETTINGS}
    try:
        settings = Settings.load(overrides)
    except SettingsError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)

    if args.command == "serve" and (refusal := cannot_listen(settings.host, settings.port)):
        print(f"run.py: {refusal}", file=sys.stderr)
        return 2
    embedded = None
    redis_kind = "REDIS_URL"
    if not settings.redis_url:
        from launcher.embedded_redis import EmbeddedRedis

        embedded = EmbeddedRedis(data_directory(settings.embedded_redis_dir), settings.embedded_redis)
        try:
            url = embedded.start()
        except RuntimeError as exc:  # each says what is wrong in words
            print(f"run.py: {exc}", file=sys.stderr)
            return 2
        redis_kind = "EMBEDDED: " + embedded.kind
        settings = Settings.load({**overrides, "redis_url": url,
                                  # dev sign-in on, unless Google sign-in is configured (production mode)
                                  "dev_signin": overrides["dev_signin"] or os.environ.get("DEV_SIGNIN")
                                  or ("off" if settings.google_client_id else "on")})
    log_settings(settings, redis_kind)
    try:
        if args.command == "worker":
            asyncio.run(run_workers(settings))
        else:
            serve(settings)
    finally:
        if embedded:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
