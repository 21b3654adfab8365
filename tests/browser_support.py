"""What the browser tests share: Debian's Chromium driven by Playwright, one signed-in
person per browser context, screenshots, and checks every page must pass.

Never downloads a browser: Playwright's bundled driver launches ``/usr/bin/chromium``
(``apt-get install -y chromium``); without it the tests fail and say so.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .support import ROOT, TIMEOUT, Api, unique_name

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1100, "height": 760}
PHONE = {"width": 360, "height": 740}
WAIT_MS = TIMEOUT * 1000


def chromium_executable() -> str | None:
    """Debian's Chromium when installed (never a downloaded browser where it is), else None:
    Playwright's own Chromium, which ``python -m tests`` installs on a machine without apt."""
    return str(CHROMIUM) if CHROMIUM.exists() else None


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        if Path(playwright.chromium.executable_path).exists():
            return
    pytest.fail(f"No Chromium: neither {CHROMIUM} nor Playwright's own. `python -m tests` provides one "
                "(Debian's chromium through apt where it can, else `python -m playwright install chromium`).",
                pytrace=False)


def screenshot(page, name: str) -> Path:
    """Save to test-artifacts/ on every run; with CHIRP_UPDATE_SCREENSHOTS=1 also to
    docs/screenshots/, the copies the README shows."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    if os.environ.get("CHIRP_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / path.name)
    return path


UNLABELLED_CONTROLS_JS = """() => [...document.querySelectorAll('input, textarea, select, button, [role=combobox]')]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
                    || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim())))
  .map((el) => el.outerHTML.slice(0, 120))"""


def unlabelled_controls(page) -> list[str]:
    """Visible form controls and buttons that have no accessible name."""
    return page.evaluate(UNLABELLED_CONTROLS_JS)


class Person:
    """One browser context (its own localStorage) signed in through the page's dev form.

    Records uncaught page errors, console errors and every URL the page requested, so
    ``close()`` can check that nothing failed and that the token never appeared in a URL.
    """

    def __init__(self, browser, base_url: str, username: str, viewport: dict = DESKTOP,
                 color_scheme: str = "light") -> None:
        self.username = username
        self.token: str | None = None
        self.context = browser.new_context(base_url=base_url, viewport=viewport, color_scheme=color_scheme)
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", self._console)
        self.page.on("request", lambda request: self.urls.append(request.url))
        self.page.on("websocket", self._socket_opened)
        self.sockets: list = []
        self.frames_sent: list[str] = []  # by the page, on every socket it opened

    def _socket_opened(self, socket) -> None:
        self.urls.append(socket.url)
        self.sockets.append(socket)
        socket.on("framesent", lambda payload: self.frames_sent.append(payload))

    def wait_for_frame_sent(self, predicate) -> str:
        """The first frame the page sent (or sends next, on its newest socket) that ``predicate`` likes."""
        sent = next((frame for frame in self.frames_sent if predicate(frame)), None)
        if sent is not None:
            return sent
        # Events are only dispatched inside a Playwright call: none can slip past between the
        # look above and this wait.
        with self.sockets[-1].expect_event("framesent", predicate=predicate, timeout=WAIT_MS) as event:
            pass
        return event.value

    def _console(self, message) -> None:
        # The browser logs every HTTP error answer ("Failed to load resource: ... 401") as a
        # console error; the page expects some (a 404 profile, a 401 after signing out).
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console error: {message.text}")

    def sign_in(self) -> Person:
        from playwright.sync_api import expect

        self.page.goto("/")
        self.page.get_by_label("Username").fill(self.username)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.indicator).to_have_attribute("data-state", "live")
        self.token = self.page.evaluate("JSON.parse(localStorage.getItem('chirp.session')).token")
        return self

    @property
    def indicator(self):
        return self.page.locator("#live-indicator")

    @property
    def entries(self):
        return self.page.locator("ol.tweets > li")

    def entry(self, entry_id: str):
        return self.page.locator(f'ol.tweets > li[data-entry-id="{entry_id}"]')

    def post(self, text: str) -> None:
        """Post through the composer; returns once the page has its answer (the box is empty again)."""
        from playwright.sync_api import expect

        composer = self.page.get_by_label(re.compile("happening"))
        composer.fill(text)
        self.page.get_by_role("button", name="Post", exact=True).click()
        expect(composer).to_have_value("")

    def go(self, hash_route: str) -> None:
        self.page.evaluate("(hash) => { location.hash = hash; }", hash_route)

    def close(self) -> None:
        try:
            assert not self.errors, self.errors
            if self.token:
                leaked = [url for url in self.urls if self.token in url]
                assert not leaked, f"the session token appeared in a URL: {leaked}"
        finally:
            self.context.close()


@contextmanager
def own_window(browser, service, prefix: str, **person) -> Iterator[tuple[Api, Person]]:
    """An API client of ``service`` and a new person's window (not signed in yet), both closed
    after the test, the window's checks included (``Person.close``)."""
    api = Api(service.url)
    window = Person(browser, service.url, unique_name(prefix), **person)
    try:
        yield api, window
    finally:
        try:
            window.close()
        finally:
            api.http.close()
