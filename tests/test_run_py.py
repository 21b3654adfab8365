"""`python run.py` from a fresh checkout: the embedded Redis, the start-up log, flags."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from realtime.embedded_redis import free_port

from .support import ROOT, TIMEOUT, Api, wait_until


def run_service(tmp_path, *args: str, env_extra: dict | None = None) -> tuple[subprocess.Popen, str, object]:
    import os

    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DEV_SIGNIN", "GOOGLE_CLIENT_ID", "PORT", "WEB_CONCURRENCY")}
    env.update(env_extra or {})
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port), "--embedded-redis-dir", str(tmp_path / "data"), *args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", log_path


def healthy(process: subprocess.Popen, url: str, log_path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"run.py exited with {process.returncode}:\n{log_path.read_text()}")
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.parametrize("embedded", ["redis-server", "fakeredis"])
def test_run_py_without_redis_url_serves_the_api_on_an_embedded_redis(tmp_path, embedded, request):
    process, url, log_path = run_service(tmp_path, "--embedded-redis", embedded)
    try:
        wait_until(lambda: healthy(process, url, log_path), what="run.py to serve /healthz")
        api = Api(url)
        alice, bob = api.sign_in(), api.sign_in()
        bob.follow(alice)
        tweet_id = alice.post_tweet("hello from the embedded Redis")
        wait_until(lambda: tweet_id in bob.home_ids(), what="the fan-out to reach bob")
        api.http.close()
    finally:
        stop(process)
    log = log_path.read_text()
    assert "EMBEDDED" in log and ("redis-server" if embedded == "redis-server" else "fakeredis") in log
    assert "DEV SIGN-IN IS ON" in log
    assert "Workers: 1 server process(es)" in log
    assert alice.token not in log and bob.token not in log


def test_run_py_with_two_workers_serves_from_both_processes(tmp_path):
    process, url, log_path = run_service(tmp_path, "--workers", "2")
    try:
        wait_until(lambda: healthy(process, url, log_path), what="run.py to serve /healthz")
        wait_until(lambda: log_path.read_text().count("Application startup complete") >= 2,
                   what="both worker processes to start")
        api = Api(url)
        alice = api.sign_in()
        ids = [alice.post_tweet(f"tweet {n}") for n in range(10)]
        assert len(set(ids)) == 10
        api.http.close()
    finally:
        stop(process)
    assert "Workers: 2 server process(es)" in log_path.read_text()


def test_a_bad_setting_stops_start_up_with_a_message_naming_it(tmp_path):
    answer = subprocess.run([sys.executable, "run.py", "--timeline-max-age", "forever"], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert answer.returncode == 2
    assert "timeline_max_age" in answer.stderr and "forever" in answer.stderr
    assert "Traceback" not in answer.stderr
