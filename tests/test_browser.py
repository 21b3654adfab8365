"""The browser client and the monitor page in a real browser: Debian's Chromium, driven by
Playwright, against the real service (uvicorn on a free port, our own redis-server).

One browser for the module; each person is a browser context of their own. The monitor
page opens first and stays open, so its chart has the whole run in it by the end.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from .browser_support import (DESKTOP, PHONE, Person, require_chromium, screenshot,
                              unlabelled_controls)
from .support import LOCAL_TLS, Api, unique_name, wait_until

def test_debians_chromium_is_installed():
    """Fails, never skips, on a machine without it: the other tests here need it too."""
    require_chromium()


@pytest.fixture(scope="module")
def monitor(browser, service):
    context = browser.new_context(base_url=service.url, viewport=DESKTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/monitor")
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def alice(browser, service, monitor):
    person = Person(browser, service.url, unique_name("alic")).sign_in()
    yield person
    person.close()


@pytest.fixture(scope="module")
def bob(browser, service, monitor):
    person = Person(browser, service.url, unique_name("bob")).sign_in()
    yield person
    person.close()


@pytest.fixture(scope="module")
def tag() -> str:
    return unique_name("tag").lower()


def test_pages_and_the_client_config_are_served_with_a_strict_content_security_policy(service):
    for path in ("/", "/monitor"):
        page = httpx.get(service.url + path, verify=LOCAL_TLS)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, policy
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), "the page loads something from elsewhere"
    assert httpx.get(service.url + "/config", verify=LOCAL_TLS).json() == {"dev_signin": True, "google_client_id": None}
    module = httpx.get(service.url + "/static/app.js", verify=LOCAL_TLS)
    assert module.status_code == 200 and "javascript" in module.headers["content-type"]
    assert httpx.get(service.url + "/static/app.js", headers={"If-None-Match": module.headers["etag"]}, verify=LOCAL_TLS).status_code == 304


def test_the_client_never_turns_a_string_into_html():
    """Every text goes in as a text node; this keeps anyone from adding a shortcut later."""
    from .support import ROOT

    for path in sorted((ROOT / "static").glob("*.js")):
        source = path.read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function",
                             source), path.name


def test_a_follower_sees_a_tweet_posted_in_another_window_live(alice, bob, tag):
    """Live, with no reload. How fast is bench.live_load's to measure; the time is printed only
    (on a busy machine it passed a second)."""
    from playwright.sync_api import expect

    bob.go(f"#/u/{alice.username}")
    bob.page.get_by_role("button", name=f"Follow @{alice.username}").click()
    expect(bob.page.get_by_role("button", name=f"Unfollow @{alice.username}")).to_be_visible()
    expect(bob.page.locator(".counts")).to_contain_text("1 follower")
    bob.page.get_by_role("link", name="Home", exact=True).click()
    expect(bob.page.get_by_label(re.compile("happening"))).to_be_visible()
    bob.page.evaluate("window.__sameDocument = true")

    text = f"Hello @{bob.username}, this is #{tag} from the other window"
    started = time.monotonic()
    alice.post(text)
    newest = bob.entries.first
    expect(newest).to_contain_text(text)
    elapsed = time.monotonic() - started
    print(f"the follower saw it {elapsed:.3f}s after the Post click")
    expect(newest).to_have_class(re.compile(r"\bfresh\b"))  # the quiet highlight
    assert bob.page.evaluate("window.__sameDocument") is True, "the page reloaded"
    # The links: the tag to its timeline, the mention to the profile.
    expect(newest.get_by_role("link", name=f"#{tag}")).to_have_attribute("href", f"#/tag/{tag}")
    expect(newest.get_by_role("link", name=f"@{bob.username}")).to_have_attribute("href", f"#/u/{bob.username}")
    expect(alice.entries.first).to_contain_text(text)  # the author's own timeline shows it at once too
    assert unlabelled_controls(bob.page) == []


def test_a_tweet_that_looks_like_html_is_shown_as_those_characters_and_runs_nothing(alice, bob):
    from playwright.sync_api import expect

    xss = "<img src=x onerror=window.__xss=1>"
    alice.post(xss)
    for person in (alice, bob):
        content = person.entries.first.locator(".content")
        expect(content).to_have_text(xss)
        assert content.locator("img").count() == 0
        assert person.page.evaluate("typeof window.__xss") == "undefined"


def test_like_retweet_and_delete_show_at_once_and_are_still_right_after_a_reload(browser, service, alice, bob, tag):
    from playwright.sync_api import expect

    first = bob.entries.first  # alice's html-looking tweet, newest in bob's timeline
    tweet_id = first.locator("article").get_attribute("data-tweet-id")
    like = first.locator("button[data-action=like]")
    with bob.page.expect_response(lambda answer: answer.url.endswith("/like")):  # before the reload below
        like.click()
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like).to_contain_text("1")
    bob.page.reload()
    expect(bob.indicator).to_have_attribute("data-state", "live")
    like = bob.page.locator(f'article[data-tweet-id="{tweet_id}"] button[data-action=like]').first
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like).to_contain_text("1")

    # What bob did is the server's to say (liked, you_follow): his second device shows it too,
    # with alice's display name on her tweets.
    device = Person(browser, service.url, bob.username).sign_in()
    try:
        there = device.page.locator(f'article[data-tweet-id="{tweet_id}"]').first
        expect(there.locator("button[data-action=like]")).to_have_attribute("aria-pressed", "true")
        expect(there.locator(".author .display-name")).to_have_text(alice.username)  # none chosen: the username
        device.go(f"#/u/{alice.username}")
        expect(device.page.get_by_role("button", name=f"Unfollow @{alice.username}")).to_be_visible()
    finally:
        device.close()

    # A retweet by bob enters his own home timeline (live), where the tweet shows already: it
    # stays one entry, counted and pressed; undone, still one entry. On his profile, the
    # retweet is an entry of its own.
    shown = bob.page.locator(f'ol.tweets > li:has(article[data-tweet-id="{tweet_id}"])')
    retweet = shown.locator("button[data-action=retweet]")
    with bob.page.expect_response(lambda answer: answer.url.endswith("/retweet")):  # shown at once; done when answered
        retweet.click()
    expect(retweet).to_have_attribute("aria-pressed", "true")
    expect(retweet).to_contain_text("1")
    bob.go(f"#/u/{bob.username}")
    expect(bob.page.locator("ol.tweets > li", has=bob.page.locator(".retweet-note"))).to_have_count(1)
    bob.go("#/")
    expect(shown).to_have_count(1)
    with bob.page.expect_response(lambda answer: answer.url.endswith("/retweet")):
        shown.locator("button[data-action=retweet]").click()
    expect(shown.locator("button[data-action=retweet]")).to_have_attribute("aria-pressed", "false")
    expect(shown).to_have_count(1)

    # Alice deletes it: gone at once for her, and live for bob.
    own = alice.page.locator(f'ol.tweets > li:has(article[data-tweet-id="{tweet_id}"])')
    own.locator("button[data-action=delete]").click()
    own.get_by_role("button", name="Confirm: delete this tweet").click()
    expect(own).to_have_count(0)
    expect(bob.page.locator(f'article[data-tweet-id="{tweet_id}"]')).to_have_count(0)
    alice.page.reload()
    expect(alice.indicator).to_have_attribute("data-state", "live")
    expect(alice.page.locator(f'article[data-tweet-id="{tweet_id}"]')).to_have_count(0)


def test_the_composer_counts_code_points_after_nfc_as_the_server_does(alice):
    from playwright.sync_api import expect

    composer = alice.page.get_by_label(re.compile("happening"))
    post = alice.page.get_by_role("button", name="Post", exact=True)
    composer.fill("e\u0301" * 280)  # 560 code points as typed, 280 once composed
    expect(alice.page.locator("#composer-count")).to_have_text("280 of 280 characters")
    expect(post).to_be_enabled()
    composer.press("End")
    composer.press_sequentially("!")
    expect(alice.page.locator("#composer-count")).to_have_text("1 over the 280-character limit")
    expect(post).to_be_disabled()
    expect(alice.page.get_by_text(re.compile("over the|at most 280"))).to_have_count(1)  # said once
    composer.fill("")
    expect(post).to_be_disabled()
    expect(alice.page.get_by_role("alert")).to_be_hidden()


def test_you_edit_your_own_profile_and_it_stays_after_a_reload(alice):
    from playwright.sync_api import expect

    alice.page.get_by_role("link", name="Profile", exact=True).click()
    alice.page.get_by_role("button", name="Edit profile").click()
    alice.page.get_by_label("Display name").fill("Alice Liddell")
    alice.page.get_by_label("Bio").fill("Writes the live timeline. Coffee first, then <b>bold</b> ideas.")
    alice.page.get_by_role("button", name="Save").click()
    expect(alice.page.get_by_role("heading", level=1)).to_have_text("Alice Liddell")
    alice.page.reload()
    expect(alice.page.get_by_role("heading", level=1)).to_have_text("Alice Liddell")
    expect(alice.page.locator(".bio")).to_have_text("Writes the live timeline. Coffee first, then <b>bold</b> ideas.")
    expect(alice.page.locator("article .author .display-name").first).to_have_text("Alice Liddell")  # her tweets too
    alice.page.get_by_role("link", name="Home", exact=True).click()


def test_load_older_pages_back_with_before_and_never_repeats_an_entry(bob, service):
    from playwright.sync_api import expect

    api = Api(service.url)
    try:
        author = api.sign_in()
        posted = [author.post_tweet(f"number {n}") for n in range(23)]
    finally:
        api.http.close()
    bob.go(f"#/u/{author.username}")
    listed = bob.page.get_by_role("list", name=f"Tweets by @{author.username}").locator("li")
    expect(listed).to_have_count(20)
    assert bob.page.get_by_role("button", name="Load older tweets").is_visible()  # for keyboards, and after a failure
    bob.page.get_by_role("button", name="Load older tweets").scroll_into_view_if_needed()  # scrolling loads by itself
    expect(listed).to_have_count(23)
    expect(bob.page.get_by_role("button", name="Load older tweets")).to_be_hidden()
    shown = [item.get_attribute("data-entry-id") for item in listed.all()]
    assert shown == list(reversed(posted))
    bob.go("#/")


def test_search_suggestions_appear_and_are_keyboard_navigable(alice, bob, tag):
    from playwright.sync_api import expect

    search = bob.page.get_by_role("combobox", name="Search people and hashtags")
    search.focus()
    search.press_sequentially(alice.username[:-1], delay=20)
    option = bob.page.get_by_role("option", name=re.compile(f"@{alice.username}"))
    expect(option).to_be_visible()
    search.press("ArrowDown")
    expect(bob.page.locator("[role=option][aria-selected=true]")).to_have_count(1)
    expect(search).to_have_attribute("aria-activedescendant", re.compile(r"search-option-\d+"))
    search.press("Escape")
    expect(option).to_be_hidden()
    search.press("ArrowDown")  # opens the suggestions again
    expect(option).to_be_visible()
    search.press("ArrowDown")
    expect(option).to_have_attribute("aria-selected", "true")
    search.press("Enter")
    expect(bob.page).to_have_url(re.compile(f"#/u/{alice.username}$"))
    expect(bob.page.locator(".profile .handle")).to_have_text(f"@{alice.username}")
    expect(bob.page.get_by_role("list", name=f"Tweets by @{alice.username}")).to_contain_text(f"#{tag}")

    search.focus()
    search.press_sequentially("#" + tag[:-1], delay=20)
    expect(bob.page.get_by_role("option", name=re.compile(f"#{tag}"))).to_be_visible()
    search.press("ArrowDown")
    search.press("Enter")
    expect(bob.page).to_have_url(re.compile(f"#/tag/{tag}$"))
    expect(bob.page.get_by_role("heading", level=1)).to_have_text(f"#{tag}")
    expect(bob.page.get_by_role("list", name=f"Tweets with #{tag}")).to_contain_text("from the other window")
    assert unlabelled_controls(bob.page) == []


def test_screenshots_of_the_home_page_and_a_profile(alice, bob, tag):
    """For the README (docs/screenshots/) and as artifacts of every run: desktop and 360 px."""
    from playwright.sync_api import expect

    alice.post(f"Morning! Coffee, then shipping the live timeline. #{tag}")
    alice.post(f"Tip for @{bob.username}: the search box takes @people and #tags; arrows and Enter work.")
    bob.go("#/")
    expect(bob.entries.first).to_contain_text("search box")
    bob.page.locator("body").click(position={"x": 5, "y": 700})  # no focus ring on the composer
    screenshot(bob.page, "home")
    bob.page.emulate_media(color_scheme="dark")
    screenshot(bob.page, "home-dark")
    bob.page.emulate_media(color_scheme="light")
    bob.go(f"#/u/{alice.username}")
    tweets = bob.page.get_by_role("list", name=f"Tweets by @{alice.username}")
    expect(tweets.locator("li").filter(has_text="Morning! Coffee")).to_have_count(1)  # whatever ran before
    expect(tweets.locator("li").filter(has_text="the search box takes")).to_have_count(1)
    screenshot(bob.page, "profile")
    bob.page.set_viewport_size(PHONE)
    screenshot(bob.page, "profile-360")
    bob.go("#/")
    expect(bob.entries.first).to_be_visible()
    bob.page.emulate_media(color_scheme="dark")
    screenshot(bob.page, "home-360-dark")
    bob.page.emulate_media(color_scheme="light")
    bob.page.set_viewport_size(DESKTOP)
    assert unlabelled_controls(bob.page) == []


def test_the_monitor_page_counts_a_third_browser_that_connects(browser, service, monitor, alice, bob):
    from playwright.sync_api import expect

    connections = monitor.locator("#connections")
    expect(connections).to_have_text(re.compile(r"^\d+$"))

    def steady() -> list[int] | None:
        """The figure once it has stayed the same for 1.5 s (a closed socket takes a beat to leave)."""
        value = connections.text_content()
        monitor.wait_for_timeout(1500)
        return [int(value)] if connections.text_content() == value else None

    [before] = wait_until(steady, what="the monitor's count to hold still")
    erin = Person(browser, service.url, unique_name("erin")).sign_in()
    try:
        wait_until(lambda: int(connections.text_content()) > before, what="the monitor to count the new socket")
        expect(monitor.locator("#process-rows tr")).not_to_have_count(0)
        assert monitor.locator("#chart path.series.connections").get_attribute("d").startswith("M")
        assert unlabelled_controls(monitor) == []
        screenshot(monitor, "monitor")
        monitor.set_viewport_size(PHONE)
        expect(monitor.get_by_text("Live monitor")).to_be_in_viewport()  # the page keeps its title on a phone
        assert monitor.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "wider than the phone"
        screenshot(monitor, "monitor-360")
        monitor.set_viewport_size(DESKTOP)
    finally:
        erin.close()


def test_web_addresses_are_safe_links_and_follower_counts_open_the_lists(alice, bob):
    from playwright.sync_api import expect

    alice.post("Read https://example.org/a?b=1. Not javascript:alert(1) nor ftp://x.org")
    content = bob.entries.first.locator(".content")
    expect(content).to_contain_text("https://example.org/a?b=1.")
    links = content.locator("a.url")
    expect(links).to_have_count(1)
    expect(links).to_have_text("https://example.org/a?b=1")  # the sentence's full stop is no part of it
    assert links.get_attribute("href") == "https://example.org/a?b=1"
    assert links.get_attribute("rel") == "noopener noreferrer nofollow"

    bob.go(f"#/u/{alice.username}")
    bob.page.locator(".counts").get_by_role("link", name=re.compile("follower")).click()
    followers = bob.page.get_by_role("list", name=f"Followers of @{alice.username}")
    expect(followers.get_by_role("link", name=f"@{bob.username}")).to_be_visible()
    followers.get_by_role("link", name=f"@{bob.username}").click()
    expect(bob.page.locator("#profile-name")).to_have_text(bob.username)
    bob.page.locator(".counts").get_by_role("link", name=re.compile("following")).click()
    expect(bob.page.get_by_role("list", name=f"Followed by @{bob.username}")
           .get_by_role("link", name=f"@{alice.username}")).to_be_visible()
    bob.go("#/")


def test_keyboard_shortcuts_and_the_first_field_focused_on_sign_in(browser, service, alice, bob):
    from playwright.sync_api import expect

    page = bob.page
    bob.go("#/")
    expect(bob.entries.first).to_be_visible()
    page.locator("body").click(position={"x": 5, "y": 700})
    page.keyboard.press("j")
    first = bob.entries.nth(0).locator("article")
    expect(first).to_be_focused()
    page.keyboard.press("j")
    expect(bob.entries.nth(1).locator("article")).to_be_focused()
    page.keyboard.press("k")
    expect(first).to_be_focused()
    like = first.locator("button[data-action=like]")
    before = like.get_attribute("aria-pressed")
    with page.expect_response(lambda answer: answer.url.endswith("/like")):
        page.keyboard.press("l")
    expect(like).not_to_have_attribute("aria-pressed", before)
    with page.expect_response(lambda answer: answer.url.endswith("/like")):
        page.keyboard.press("l")  # and back, as it was
    expect(like).to_have_attribute("aria-pressed", before)
    page.keyboard.press("/")
    expect(page.get_by_role("combobox")).to_be_focused()
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 700})
    bob.go(f"#/u/{alice.username}")
    expect(page.locator("#profile-name")).to_be_visible()
    page.keyboard.press("n")
    expect(page.get_by_label(re.compile("happening"))).to_be_focused()
    page.keyboard.type("jkl")  # typed into the composer, not taken as shortcuts
    expect(page.get_by_label(re.compile("happening"))).to_have_value("jkl")
    page.get_by_label(re.compile("happening")).fill("")
    page.locator("body").click(position={"x": 5, "y": 700})
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Next tweet")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    newcomer = Person(browser, service.url, unique_name("focus"))
    try:
        newcomer.page.goto("/")
        expect(newcomer.page.get_by_label("Username")).to_be_focused()
    finally:
        newcomer.close()


def test_toasts_never_pile_up_and_a_post_shows_none(alice):
    from playwright.sync_api import expect

    alice.post("no toast for this")
    expect(alice.page.locator("#toasts .toast")).to_have_count(0)
    alice.page.evaluate("""async () => {
        const {toast} = await import('/static/ui.js');
        for (let n = 0; n < 6; n++) toast(`message ${n}`);
    }""")
    expect(alice.page.locator("#toasts .toast")).to_have_count(2)
    expect(alice.page.locator("#toasts .toast").last).to_have_text("message 5")
