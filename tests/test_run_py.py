"""`python run.py` from a fresh checkout: the embedded Redis, the start-up log, flags."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


from .support import ROOT, TIMEOUT, Api, RunPy, wait_until


@pytest.mark.parametrize("embedded", ["redis-server", "fakeredis"])
def test_run_py_without_redis_url_serves_the_api_on_an_embedded_redis(tmp_path, embedded, request):
    service = RunPy(tmp_path, "--embedded-redis", embedded, "--embedded-redis-dir", str(tmp_path / "data"))
    try:
        service.start()
        api = Api(service.url)
        alice, bob = api.sign_in(), api.sign_in()
        bob.follow(alice)
        tweet_id = alice.post_tweet("hello from the embedded Redis")
        wait_until(lambda: tweet_id in bob.home_ids(), what="the fan-out to reach bob")
        api.http.close()
    finally:
        service.stop()
    log = service.log()
    assert "EMBEDDED" in log and ("redis-server" if embedded == "redis-server" else "fakeredis") in log
    assert "DEV SIGN-IN IS ON" in log
    assert "Workers: 1 server process(es)" in log
    assert alice.token not in log and bob.token not in log


def test_run_py_with_two_workers_serves_from_both_processes(tmp_path):
    service = RunPy(tmp_path, "--workers", "2", "--embedded-redis-dir", str(tmp_path / "data"))
    try:
        service.start()
        wait_until(lambda: service.log().count("Application startup complete") >= 2,
                   what="both worker processes to start")
        api = Api(service.url)
        alice = api.sign_in()
        ids = [alice.post_tweet(f"tweet {n}") for n in range(10)]
        assert len(set(ids)) == 10
        api.http.close()
    finally:
        service.stop()
    log = service.log()
    assert "Workers: 2 server process(es)" in log
    # Each worker process logs at INFO in the service's one format (they printed bare warnings and no INFO before)
    holders = re.findall(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO chirp.engine: Process \S+ \(pid (\d+)\) holds id worker", log,
                         re.MULTILINE)
    assert len(set(holders)) == 2, log
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO uvicorn.error: Application startup complete", log, re.MULTILINE), log


def test_a_bad_setting_stops_start_up_with_a_message_naming_it(tmp_path):
    answer = subprocess.run([sys.executable, "run.py", "--timeline-max-age", "forever"], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert answer.returncode == 2
    assert "timeline_max_age" in answer.stderr and "forever" in answer.stderr
    assert "Traceback" not in answer.stderr
