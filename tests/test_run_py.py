"""`python run.py` from a fresh checkout: the embedded Redis, the start-up log, flags."""

from __future__ import annotations

import os
import re
import signal
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


def test_a_second_instance_on_the_same_port_or_data_directory_is_refused_in_words(tmp_path):
    data = tmp_path / "data"
    first = RunPy(tmp_path, "--embedded-redis", "redis-server", "--embedded-redis-dir", str(data))
    try:
        first.start()
        same_port = subprocess.run([sys.executable, "run.py", "--port", str(first.port),
                                    "--embedded-redis-dir", str(tmp_path / "other")],
                                   cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
        assert same_port.returncode == 2 and f"port {first.port} on 127.0.0.1 is in use" in same_port.stderr
        assert not (tmp_path / "other").exists()  # refused before any Redis started
        same_data = subprocess.run([sys.executable, "run.py", "--port", "0", "--embedded-redis", "redis-server",
                                    "--embedded-redis-dir", str(data)],
                                   cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
        assert same_data.returncode == 2, same_data.stderr
        assert f"another Chirp (pid {first.process.pid}) is already running on the data directory {data}" \
            in same_data.stderr
        for answer in (same_port, same_data):
            assert "Traceback" not in answer.stderr and "Listening" not in answer.stderr
    finally:
        first.stop()


def test_a_relative_data_directory_is_next_to_run_py_wherever_it_is_started(tmp_path):
    import run

    assert run.data_directory(".data/redis") == ROOT / ".data" / "redis"
    assert run.data_directory(str(tmp_path)) == tmp_path


def test_ctrl_c_in_a_terminal_stops_the_app_then_its_redis_quietly(tmp_path):
    """A terminal sends SIGINT to its whole foreground process group: the embedded
    redis-server is not in it, so the app shuts down on a live Redis, then stops it."""
    service = RunPy(tmp_path, "--embedded-redis", "redis-server", "--embedded-redis-dir", str(tmp_path / "data"))
    try:
        service.start(start_new_session=True)  # a group of its own, as a shell's job
        os.killpg(service.process.pid, signal.SIGINT)
        assert service.process.wait(TIMEOUT) == 0, service.log()
    finally:
        service.stop()
    log = service.log()
    assert "Shutting down" in log and "Application shutdown complete" in log, log
    shutdown = log[log.index("Shutting down"):]
    assert "WARNING" not in shutdown and "ERROR" not in shutdown and "Traceback" not in shutdown, shutdown


def test_free_ports_are_outside_the_range_outgoing_connections_take_theirs_from():
    # A port from bind(0) is an ephemeral one, which a client's connect can take between
    # our check and the server's bind (it made a test fail with EADDRINUSE).
    from launcher.embedded_redis import _ephemeral_ports, free_port

    low, high = _ephemeral_ports()
    ports = {free_port() for _ in range(20)}
    assert all(not low <= port <= high for port in ports), sorted(ports)
    assert len(ports) > 1  # not one fixed port


def test_free_ports_come_from_the_range_named_and_are_not_picked_twice_in_a_row(monkeypatch):
    from launcher.embedded_redis import FREE_PORTS_ENV, free_port

    monkeypatch.setenv(FREE_PORTS_ENV, "62000-62039")
    ports = [free_port() for _ in range(30)]
    assert all(62000 <= port <= 62039 for port in ports), ports
    assert len(set(ports)) == len(ports)  # picked before any server bound them, yet all different
