"""The server process tunes its garbage collector once started (http_api.gc_tuning);
an app embedded in a test process leaves the collector alone."""

from __future__ import annotations

import gc
import subprocess
import sys

from http_api.gc_tuning import YOUNG_THRESHOLD

from .support import ROOT

PROBE = """
import asyncio, gc
from http_api.app import create_app_from_env

async def started():
    app = create_app_from_env()
    async with app.router.lifespan_context(app):
        print(gc.get_threshold()[0], gc.get_freeze_count() > 0)

asyncio.run(started())
"""


def test_the_server_process_raises_the_young_threshold_and_freezes_what_startup_made(single_redis):
    env = {"REDIS_URL": single_redis.url, "PATH": "/usr/bin:/bin", "FANOUT_IN_PROCESS": "0"}
    answer = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == [str(YOUNG_THRESHOLD), "True"]


def test_an_app_built_by_create_app_leaves_the_collector_alone(api):
    assert gc.get_threshold()[0] != YOUNG_THRESHOLD
