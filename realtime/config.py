"""Every setting of the service, read in one place and checked at start-up.

Each setting comes from a command-line flag of ``run.py``, else an environment
variable, else its default. A bad value stops start-up with a message naming the
setting, what was given and what is accepted.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping

__all__ = ["Settings", "SettingsError", "SETTINGS", "RateLimit", "parse_duration"]


class SettingsError(ValueError):
    pass


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> float:
    """'30d', '12h', '90s', '250ms' or a plain number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError("expected a duration such as 30d, 12h, 90s, 250ms or a number of seconds")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected on/off, true/false, yes/no or 1/0")


def _cluster_mode(text: str) -> bool | None:
    if text.strip().lower() == "auto":
        return None
    return _parse_bool(text)


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise ValueError("expected a whole number of at least 0")
    return value


def _port(text: str) -> int:
    value = _whole_number(text)
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number 0..65535")
    return value


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("expected a duration above zero")
    return value


def _embedded_kind(text: str) -> str:
    if text not in ("auto", "redis-server", "fakeredis"):
        raise ValueError("expected auto, redis-server or fakeredis")
    return text


def _ws_impl(text: str) -> str:
    if text not in WS_IMPLEMENTATIONS:
        raise ValueError("expected " + ", ".join(WS_IMPLEMENTATIONS))
    return text


#: uvicorn's WebSocket implementations; websockets-sansio pushed the most frames per CPU
#: second here (bench.raw_limits).
WS_IMPLEMENTATIONS = ("websockets-sansio", "websockets", "wsproto")


def _hot_threshold(text: str) -> int:
    """FANOUT_HOT_FOLLOWERS: a follower count of at least 1, or ``off`` (also written 0)."""
    if text.strip().lower() in ("off", "0"):
        return 0
    value = _whole_number(text)
    if value < 1:
        raise ValueError("expected a follower count of at least 1, or off")
    return value


def _redis_url(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if not re.match(r"^(redis|rediss|unix)://", text):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return text


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """At most ``count`` calls per ``per`` seconds; ``count == 0`` is no limit. Written ``30/1m``."""

    count: int
    per: float

    def __str__(self) -> str:
        per = int(self.per) if self.per == int(self.per) else self.per
        return f"{self.count}/{per}s" if self.count else "off"

    @property
    def enabled(self) -> bool:
        return self.count > 0


def parse_rate_limit(text: str) -> RateLimit:
    """'30/1m' (30 calls a minute), '100/1h', '5/90s'; 'off' or '0' for none."""
    text = text.strip().lower()
    if text in ("off", "0", "none"):
        return RateLimit(0, 0.0)
    count, slash, per = text.partition("/")
    if not slash or not count.strip().isdigit() or int(count) < 1:
        raise ValueError("expected calls/period such as 30/1m, 100/1h or 5/90s, or off")
    seconds = _positive_duration(per)
    if seconds < 1:
        raise ValueError("expected a period of at least 1s")
    return RateLimit(int(count), seconds)


def _url(text: str) -> str:
    text = text.strip()
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError("expected an http:// or https:// URL")
    return text


def _origins(text: str) -> str:
    origins = [o.strip() for o in text.split(",") if o.strip()]
    for origin in origins:
        if origin == "*" or not re.fullmatch(r"https?://[^/\s*]+", origin):
            raise ValueError("expected comma-separated origins such as https://app.example.com (no '*', no path)")
    return ",".join(origins)


def _addresses(text: str) -> str:
    """Comma-separated IP addresses or networks, as uvicorn's ``forwarded_allow_ips`` takes them."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network such as 10.0.0.0/8") from None
    return ",".join(entries)


def _header_name(text: str) -> str:
    text = text.strip()
    if text and not re.fullmatch(r"[A-Za-z0-9-]+", text):
        raise ValueError("expected an HTTP header name such as X-Real-IP, or empty")
    return text


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: its field, flag, environment variable, parser and default text."""

    field: str
    env: str
    parse: object
    default: str | None
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


SETTINGS: tuple[Option, ...] = (
    Option("host", "LISTEN_HOST", str, "127.0.0.1", "address to listen on"),
    Option("port", "PORT", _port, "8000", "port to listen on"),
    Option("redis_url", "REDIS_URL", _redis_url, None,
           "Redis to use; unset starts an embedded Redis for this run"),
    Option("redis_cluster", "REDIS_CLUSTER", _cluster_mode, "auto",
           "on: REDIS_URL names a Redis Cluster node; off: a single Redis; auto: ask the server (INFO cluster)"),
    Option("workers", "WEB_CONCURRENCY", _positive_int, "1", "server processes sharing the port"),
    Option("dev_signin", "DEV_SIGNIN", _parse_bool, None,
           "allow POST /auth/dev; default on unless GOOGLE_CLIENT_ID is set"),
    Option("google_client_id", "GOOGLE_CLIENT_ID", str, "", "OAuth client id for Sign in with Google"),
    Option("google_certs_url", "GOOGLE_CERTS_URL", _url, "https://www.googleapis.com/oauth2/v1/certs",
           "where Google's ID-token signing certificates are fetched (cached for their Cache-Control max-age)"),
    Option("timeline_max_age", "TIMELINE_MAX_AGE", _positive_duration, "30d",
           "entries older than this leave every timeline (an idle one is gone a sixteenth of this after its newest)"),
    Option("timeline_max_length", "TIMELINE_MAX_LENGTH", _positive_int, "800",
           "entries kept per timeline"),
    Option("session_ttl", "SESSION_TTL", _positive_duration, "30d", "lifetime of a dev sign-in session"),
    Option("max_body_bytes", "MAX_BODY_BYTES", _positive_int, "65536",
           "largest request body accepted (413 above)"),
    Option("max_header_bytes", "MAX_HEADER_BYTES", _positive_int, "16384",
           "largest request line plus headers accepted (431 above)"),
    Option("max_headers", "MAX_HEADERS", _positive_int, "100", "most headers a request may carry (431 above)"),
    Option("header_timeout", "HEADER_TIMEOUT", _positive_duration, "10s",
           "time a connection has to send a request's headers, from its first byte (else 408 and closed)"),
    Option("body_timeout", "BODY_TIMEOUT", _positive_duration, "10s",
           "time a request has to send its whole body after its headers (else 408 and closed)"),
    Option("socket_send_buffer", "SOCKET_SEND_BUFFER", _non_negative_int, "131072",
           "kernel send buffer per connection, in bytes (0: the kernel's autotuning, up to 4 MB per stalled client)"),
    Option("trusted_proxies", "TRUSTED_PROXIES", _addresses, "",
           "comma-separated proxy addresses or networks whose X-Forwarded-For is believed; empty: none"),
    Option("fanout_in_process", "FANOUT_IN_PROCESS", _non_negative_int, "8",
           "fan-out workers run inside each server process, each one job at a time (0: only `run.py worker`)"),
    Option("fanout_shards", "FANOUT_SHARDS", _positive_int, "8",
           "fan-out stream shards, spread over a cluster's masters; the same in every process, kept across restarts"),
    Option("replica_ack_timeout", "REPLICA_ACK_TIMEOUT", parse_duration, "250ms",
           "Redis Cluster: a post waits up to this long for a replica to have its job before the 201 (0: never)"),
    Option("fanout_batch_size", "FANOUT_BATCH_SIZE", _positive_int, "1000",
           "timelines written per pipelined fan-out batch"),
    Option("fanout_batch_pause", "FANOUT_BATCH_PAUSE", parse_duration, "0s",
           "pause between fan-out batches, to bound the Redis load of a huge fan-out"),
    Option("fanout_hot_followers", "FANOUT_HOT_FOLLOWERS", _hot_threshold, "10000",
           "accounts with this many followers or more are hot: their tweets are merged into followers' "
           "home timelines when read, not pushed (off: every account's are pushed)"),
    Option("fanout_claim_idle", "FANOUT_CLAIM_IDLE", _positive_duration, "30s",
           "a fan-out job untouched this long is taken over by another worker"),
    Option("live_send_queue", "LIVE_SEND_QUEUE", _positive_int, "256",
           "frames waiting per socket; a client that lets it fill is closed with 1013"),
    Option("max_unauthenticated_sockets", "MAX_UNAUTHENTICATED_SOCKETS", _positive_int, "50",
           "live sockets one client address may hold open before they authenticate, per server process"),
    Option("live_auth_timeout", "LIVE_AUTH_TIMEOUT", _positive_duration, "10s",
           "time a new socket has to send its auth frame (else 4408)"),
    Option("ws_ping_interval", "WS_PING_INTERVAL", _positive_duration, "20s",
           "WebSocket ping interval; a peer that misses a pong for as long is dropped"),
    Option("ws_max_size", "WS_MAX_SIZE", _positive_int, "65536", "largest WebSocket frame accepted from a client"),
    Option("ws_impl", "WS_IMPL", _ws_impl, "websockets-sansio",
           "uvicorn's WebSocket implementation: websockets-sansio, websockets or wsproto"),
    Option("allowed_origins", "ALLOWED_ORIGINS", str, "",
           "comma-separated Origins allowed to open /ws; empty: same host only"),
    Option("embedded_redis", "EMBEDDED_REDIS", _embedded_kind, "auto",
           "with no REDIS_URL: auto (a real redis-server if found, else fakeredis), redis-server or fakeredis"),
    Option("embedded_redis_dir", "EMBEDDED_REDIS_DIR", str, ".data/redis",
           "where the embedded Redis keeps its data"),
    Option("rate_limits", "RATE_LIMITS", _parse_bool, "on",
           "abuse limits below (off: none, e.g. for benchmarks)"),
    Option("rate_limit_posts", "RATE_LIMIT_POSTS", parse_rate_limit, "30/1m",
           "tweets and retweets per user (calls/period, or off)"),
    Option("rate_limit_follows", "RATE_LIMIT_FOLLOWS", parse_rate_limit, "60/1m",
           "follows and unfollows per user"),
    Option("rate_limit_likes", "RATE_LIMIT_LIKES", parse_rate_limit, "120/1m", "likes and unlikes per user"),
    Option("rate_limit_signin", "RATE_LIMIT_SIGNIN", parse_rate_limit, "20/1m",
           "sign-ins (Google and dev) per client IP address"),
    Option("client_ip_header", "CLIENT_IP_HEADER", _header_name, "",
           "header naming the client's address, set by the proxy in front (Railway: X-Real-IP); "
           "empty: the connection's address"),
    Option("max_sockets_per_user", "MAX_SOCKETS_PER_USER", _non_negative_int, "10",
           "live sockets one user may hold across every process; the oldest is closed with 4401 (0: no limit)"),
    Option("cors_origins", "CORS_ORIGINS", _origins, "",
           "comma-separated origins allowed to call the API from other sites (CORS); empty: no CORS headers"),
    Option("log_level", "LOG_LEVEL", str, "info", "debug, info, warning or error"),
    Option("access_log", "ACCESS_LOG", _parse_bool, "off",
           "a log line per HTTP request and per WebSocket opened or closed (on), at info level; "
           "off: /metrics and /stats count them instead"),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    redis_cluster: bool | None = None  # None: auto, resolved when the engine opens
    workers: int = 1
    dev_signin: bool = True
    google_client_id: str = ""
    google_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    timeline_max_age: float = 30 * 86400.0
    timeline_max_length: int = 800
    session_ttl: float = 30 * 86400.0
    max_body_bytes: int = 65536
    max_header_bytes: int = 16384
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    socket_send_buffer: int = 131072
    trusted_proxies: str = ""
    fanout_in_process: int = 8
    fanout_shards: int = 8
    replica_ack_timeout: float = 0.25
    fanout_batch_size: int = 1000
    fanout_batch_pause: float = 0.0
    fanout_claim_idle: float = 30.0
    fanout_hot_followers: int = 10_000  # 0: off
    live_send_queue: int = 256
    max_unauthenticated_sockets: int = 50
    live_auth_timeout: float = 10.0
    ws_ping_interval: float = 20.0
    ws_max_size: int = 65536
    ws_impl: str = "websockets-sansio"
    allowed_origins: str = ""
    embedded_redis: str = "auto"
    embedded_redis_dir: str = ".data/redis"
    rate_limits: bool = True
    rate_limit_posts: RateLimit = RateLimit(30, 60.0)
    rate_limit_follows: RateLimit = RateLimit(60, 60.0)
    rate_limit_likes: RateLimit = RateLimit(120, 60.0)
    rate_limit_signin: RateLimit = RateLimit(20, 60.0)
    client_ip_header: str = ""
    max_sockets_per_user: int = 10
    cors_origins: str = ""
    log_level: str = "info"
    access_log: bool = False

    @classmethod
    def load(cls, overrides: Mapping[str, str | None] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Flags (``overrides``, raw text) win over the environment, which wins over defaults."""
        overrides = overrides or {}
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for option in SETTINGS:
            raw = overrides.get(option.field)
            source = option.flag
            if raw is None:
                raw, source = environ.get(option.env), option.env
            if raw is None:
                raw, source = option.default, "default"
            if raw is None:
                continue
            try:
                values[option.field] = option.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{source}={raw!r} is not valid for {option.field}: {exc}") from None
        if "dev_signin" not in values:
            values["dev_signin"] = not values.get("google_client_id")
        if values["log_level"] not in ("debug", "info", "warning", "error"):
            raise SettingsError(f"log_level={values['log_level']!r}: expected debug, info, warning or error")
        return cls(**values)

    def to_environ(self) -> dict[str, str]:
        """These settings as environment variables, for worker processes to load again."""
        env = {}
        for option in SETTINGS:
            value = getattr(self, option.field)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "on" if value else "off"
            elif isinstance(value, float):
                value = repr(value)
            env[option.env] = str(value)
        return env
