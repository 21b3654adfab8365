"""Deploying: the Procfile and railway.json start what the README says, the started service is
healthy in production mode, and the README's "Deploying" section lists every setting with
its default."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import httpx
import pytest

from realtime.config import SETTINGS
from launcher.embedded_redis import free_port, stop_child

from .google_support import CLIENT_ID
from .support import LOCAL_TLS, ROOT, TIMEOUT, unique_name, wait_until
from .test_api_errors import assert_error


def procfile_command() -> str:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("web: "), lines
    return lines[0].removeprefix("web: ")


def test_procfile_and_railway_json_run_run_py_on_port_with_the_healthz_check():
    assert procfile_command() == "python run.py --host 0.0.0.0 --port $PORT"
    railway = json.loads((ROOT / "railway.json").read_text())
    start = railway["deploy"]["startCommand"]
    assert start.startswith(procfile_command() + " ")
    assert railway["deploy"]["healthcheckPath"] == "/healthz"
    # Every flag in either command is one of run.py's.
    flags = {option.flag for option in SETTINGS}
    for command in (procfile_command(), start):
        for word in shlex.split(command):
            if word.startswith("--"):
                assert word in flags, word


def test_the_procfile_command_serves_in_production_mode(single_redis, tmp_path):
    """As Railway runs it: PORT and REDIS_URL from the environment, Google configured."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DEV_SIGNIN", "LISTEN_HOST", "WEB_CONCURRENCY")}
    env.update({"PORT": str(port), "REDIS_URL": single_redis.url, "GOOGLE_CLIENT_ID": CLIENT_ID,
                # The shared test Redis holds other tests' sign-ins from 127.0.0.1 in the same window.
                "RATE_LIMIT_SIGNIN": "off",
                "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")})  # `python` is ours
    with open(tmp_path / "web.log", "wb") as log:
        process = subprocess.Popen(["sh", "-c", "exec " + procfile_command()], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _serves(process, url, tmp_path / "web.log"), what="the Procfile's web process to serve /healthz")
        assert httpx.get(url + "/healthz", verify=LOCAL_TLS).json() == {"status": "ok"}
        assert_error(httpx.post(url + "/auth/dev", json={"username": unique_name()}, verify=LOCAL_TLS), 404, "dev_signin_disabled")
        assert_error(httpx.post(url + "/auth/google", json={"credential": "a.b.c"}, verify=LOCAL_TLS), 401, "malformed_credential")
    finally:
        stop_child(process, TIMEOUT)
    log = (tmp_path / "web.log").read_text()
    assert f"http://0.0.0.0:{port}" in log and "Dev sign-in: off" in log and "Google sign-in: on" in log


def test_the_deploying_section_lists_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text()
    assert "\n## Deploying\n" in readme
    section = readme.split("\n## Deploying\n", 1)[1].split("\n## ", 1)[0]
    for option in SETTINGS:
        row = re.search(rf"^\| `{option.env}` \| ([^|]+) \|", section, re.MULTILINE)
        assert row, f"{option.env} is missing from the Deploying section"
        default = row.group(1).strip()
        if option.default:
            assert default == f"`{option.default}`", (option.env, default)
        else:
            assert default in ("empty", "unset") or option.env == "DEV_SIGNIN", (option.env, default)


@pytest.mark.parametrize("access_log", ["off", "on"])
def test_the_log_has_a_line_per_request_and_socket_only_with_access_log_on(single_redis, tmp_path, access_log):
    from websockets.sync.client import connect

    port = free_port()
    with open(tmp_path / "web.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "run.py", "--redis-url", single_redis.url, "--port", str(port),
                                    "--dev-signin", "on", "--rate-limits", "off", "--access-log", access_log],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _serves(process, url, tmp_path / "web.log"), what="run.py to serve /healthz")
        token = httpx.post(url + "/auth/dev", json={"username": unique_name()}, verify=LOCAL_TLS).json()["token"]
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT) as socket:
            socket.send(json.dumps({"type": "auth", "token": token}))
            assert json.loads(socket.recv(timeout=TIMEOUT))["type"] == "ready"
    finally:
        stop_child(process, TIMEOUT)
    log = (tmp_path / "web.log").read_text()
    per_connection = ['"POST /auth/dev HTTP/1.1" 200', '"WebSocket /ws" [accepted]', "connection open"]
    if access_log == "on":
        assert all(line in log for line in per_connection), log
    else:
        assert not any(line in log for line in per_connection), log
        assert "Access log: off" in log


def _serves(process: subprocess.Popen, url: str, log_path) -> bool:
    if process.poll() is not None:
        raise AssertionError(log_path.read_text())
    try:
        return httpx.get(url + "/healthz", timeout=1, verify=LOCAL_TLS).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_service_whose_port_another_process_took_starts_on_another(tmp_path, single_redis):
    """The suite's servers pick free ports and bind them a moment later, in another process:
    with many workers, another server may take one first and answer /healthz in its place."""
    import socket

    from .support import ServiceProcess, listens_on

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    service = ServiceProcess(single_redis.url)
    taken = service.port = squatter.getsockname()[1]
    try:
        service.start(tmp_path)
        assert service.port != taken and listens_on(service.process.pid, service.port)
        assert not listens_on(service.process.pid, taken)
    finally:
        service.stop()
        squatter.close()
