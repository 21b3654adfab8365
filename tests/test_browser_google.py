"""Sign in with Google in a real browser, without Google: the service runs in production mode
(GOOGLE_CLIENT_ID set, DEV_SIGNIN off, certificates from tests/google_support.py's local
server), and Playwright answers the page's request for https://accounts.google.com/gsi/client
with a small fake of Google Identity Services whose button hands the page an ID token signed
by our own key. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from .browser_support import ARTIFACTS, Person
from .google_support import CLIENT_ID
from .support import ServiceProcess, unique_name

GSI_CLIENT = "https://accounts.google.com/gsi/client"

# A stand-in for Google's script: the same two calls the page makes, and a button that hands
# the callback the credential the test put in (as Google's does after the person chooses an
# account). No innerHTML, as in the client.
FAKE_GSI = """
(() => {
  const credential = %s;
  let options = null;
  window.google = {accounts: {id: {
    initialize(config) { options = config; window.__gsiInitialized = {client_id: config.client_id}; },
    renderButton(parent, style) {
      const button = document.createElement('button');
      button.type = 'button';
      button.id = 'fake-google-button';
      button.textContent = 'Sign in with Google';
      button.addEventListener('click', () => options.callback({credential, select_by: 'btn'}));
      parent.replaceChildren(button);
    },
  }}};
})();
"""


@pytest.fixture(scope="module")
def google_service(single_redis, google, tmp_path_factory):
    service = ServiceProcess(single_redis.url, google_client_id=CLIENT_ID, google_certs_url=google.server.url)
    del service.env["DEV_SIGNIN"]
    service.start(tmp_path_factory.mktemp("browser-google"))
    yield service
    service.stop()


class GooglePerson(Person):
    """A browser context whose gsi/client request gets the fake script carrying `credential`."""

    def __init__(self, browser, base_url: str, credential: str) -> None:
        super().__init__(browser, base_url, username="")
        self.gsi_requests = 0

        def fulfil(route) -> None:
            self.gsi_requests += 1
            route.fulfill(status=200, content_type="text/javascript; charset=utf-8",
                          body=FAKE_GSI % json.dumps(credential))

        self.page.route(GSI_CLIENT, fulfil)

    def foreign_requests(self) -> list[str]:
        return [url for url in self.urls if urlsplit(url).hostname != "127.0.0.1" and url != GSI_CLIENT]


def test_a_new_google_account_signs_in_chooses_a_username_and_stays_signed_in(browser, google_service, google):
    from playwright.sync_api import expect

    person = GooglePerson(browser, google_service.url, google.token())
    page = person.page
    try:
        page.goto("/")
        button = page.get_by_role("button", name="Sign in with Google")
        expect(button).to_be_visible()
        assert page.evaluate("window.__gsiInitialized") == {"client_id": CLIENT_ID}
        expect(page.locator('form[aria-label="Development sign-in"]')).to_have_count(0)
        expect(page.get_by_label("Username", exact=True)).to_have_count(0)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "signin-google.png"))  # not one of the README's

        button.click()
        expect(page.get_by_role("heading", name="Choose your username")).to_be_visible()
        name = unique_name("goog")
        page.get_by_label("Username", exact=True).fill(name)
        page.get_by_label("Display name (optional)").fill("From Google")
        page.get_by_role("button", name="Continue").click()

        expect(person.indicator).to_have_attribute("data-state", "live")
        expect(page.get_by_label(re.compile("happening"))).to_be_visible()
        session = page.evaluate("JSON.parse(localStorage.getItem('chirp.session'))")
        assert session["username"] == name
        person.token = session["token"]

        page.reload()
        expect(person.indicator).to_have_attribute("data-state", "live")
        expect(page.get_by_label(re.compile("happening"))).to_be_visible()
        expect(page.get_by_role("button", name="Sign in with Google")).to_have_count(0)

        assert person.gsi_requests == 1  # loaded on the sign-in page only
        assert person.foreign_requests() == []
    finally:
        person.close()


def test_a_token_for_another_application_shows_a_readable_error_and_stays_on_sign_in(browser, google_service,
                                                                                      google):
    from playwright.sync_api import expect

    person = GooglePerson(browser, google_service.url, google.token(aud="someone-else.apps.googleusercontent.com"))
    page = person.page
    try:
        page.goto("/")
        page.get_by_role("button", name="Sign in with Google").click()
        error = page.locator("#google-signin-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("another application")
        expect(page.get_by_role("heading", name="Sign in to Chirp")).to_be_visible()
        expect(page.get_by_role("button", name="Sign in with Google")).to_be_visible()
        assert page.evaluate("localStorage.getItem('chirp.session')") is None
        assert person.foreign_requests() == []
    finally:
        person.close()


def test_when_googles_script_cannot_load_the_page_says_so(browser, google_service):
    from playwright.sync_api import expect

    person = Person(browser, google_service.url, username="")
    person.page.route(GSI_CLIENT, lambda route: route.abort("internetdisconnected"))
    try:
        person.page.goto("/")
        error = person.page.locator("#google-signin-error")
        expect(error).to_contain_text("could not be loaded")
        expect(person.page.get_by_label("Username", exact=True)).to_have_count(0)
    finally:
        person.errors.clear()  # Chromium logs the aborted script load; that is the point here
        person.close()
