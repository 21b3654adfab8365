"""Prometheus metrics of this process (several worker processes are summed through
prometheus-client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set; run.py
sets it for --workers > 1)."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

__all__ = [
    "OPEN_SOCKETS", "EVENTS_DELIVERED", "WRITES_DEFERRED", "EVENTS_DROPPED", "SLOW_CLIENT_CLOSES", "REPLAYED_EVENTS", "COUNTS_FRAMES",
    "USERS_ONLINE", "PUBSUB_RECONNECTS", "PUBSUB_RESUBSCRIBES", "PUBSUB_PROBES", "LOOP_FAILURES",
    "FANOUT_DEAD_LETTERS", "FANOUT_JOBS_LOST", "FANOUT_FENCE_OVERRUNS", "REPLICA_ACK_TIMEOUTS", "HTTP_REFUSED", "REQUESTS_ABANDONED", "FANOUT_QUEUE_LENGTH", "FANOUT_PENDING", "FANOUT_LAG", "DELIVERY_LATENCY",
    "render_metrics", "CONTENT_TYPE_LATEST",
]

OPEN_SOCKETS = Gauge("chirp_open_sockets", "WebSocket connections open now", multiprocess_mode="livesum")
USERS_ONLINE = Gauge("chirp_users_online", "Distinct users with a live socket on a process (summed over processes)",
                     multiprocess_mode="livesum")
EVENTS_DELIVERED = Counter("chirp_events_delivered", "Live events written to sockets", ["kind"])
WRITES_DEFERRED = Counter("chirp_socket_writes_deferred",
                          "Live frames whose write had to wait for a slow socket (finished by a task, not inline)")
EVENTS_DROPPED = Counter("chirp_events_dropped", "Live events not delivered because the socket was closed as slow")
SLOW_CLIENT_CLOSES = Counter("chirp_slow_client_closes", "Sockets closed with 1013 because their send queue filled")
COUNTS_FRAMES = Counter("chirp_counts_frames", "Live counts frames queued to sockets watching a tweet")
REPLAYED_EVENTS = Counter("chirp_replayed_events", "Tweets sent from the timeline on connect or after a Redis blip")
PUBSUB_RECONNECTS = Counter("chirp_pubsub_reconnects", "Times the pub/sub connection was re-established")
PUBSUB_RESUBSCRIBES = Counter("chirp_pubsub_resubscribes",
                              "Pub/sub rebuilds for a topology change (a slot moved, a failover, a deaf connection)",
                              ["reason"])
PUBSUB_PROBES = Counter("chirp_pubsub_probes", "Probes published to our own sharded channels, by outcome", ["outcome"])
LOOP_FAILURES = Counter("chirp_loop_failures", "Failures of a supervised background loop (each is logged and retried)",
                        ["loop"])
REPLICA_ACK_TIMEOUTS = Counter("chirp_replica_ack_timeouts",
                               "Jobs answered 201 before a replica acknowledged them (REPLICA_ACK_TIMEOUT passed)")
FANOUT_DEAD_LETTERS = Counter("chirp_fanout_dead_letters", "Fan-out jobs moved to the dead letters after failing")
FANOUT_JOBS_LOST = Counter("chirp_fanout_jobs_lost",
                           "Fan-out jobs a worker stopped because another had taken them over (it was silent too long)")
FANOUT_FENCE_OVERRUNS = Counter("chirp_fanout_fence_overruns",
                                "Fan-out batches written without a dedupe that landed later than the claim allows")
HTTP_REFUSED = Counter("chirp_http_refused",
                       "Connections answered and closed by an HTTP limit (header size, count or time, body time, "
                       "unauthenticated sockets per address), by the error code answered", ["code"])
REQUESTS_ABANDONED = Counter("chirp_requests_abandoned", "Requests whose client left before its body arrived")
FANOUT_QUEUE_LENGTH = Gauge("chirp_fanout_queue_length", "Fan-out jobs recorded and not yet read",
                            multiprocess_mode="mostrecent")
FANOUT_PENDING = Gauge("chirp_fanout_pending", "Fan-out jobs read and not yet acknowledged",
                       multiprocess_mode="mostrecent")
FANOUT_LAG = Gauge("chirp_fanout_lag_seconds", "Age of the oldest fan-out job not yet done",
                   multiprocess_mode="mostrecent")
DELIVERY_LATENCY = Histogram(
    "chirp_delivery_latency_seconds", "Time from a post being accepted to its frame being written to a socket",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def render_metrics() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
