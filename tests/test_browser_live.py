"""The browser client in a real browser, each test with windows of its own: a dropped socket
and a tweet deleted while offline (the reconnect with ``since``), notifications live, the
new-tweets pill, and an empty home's suggestions.

Apart from tests/test_browser.py (whose tests share two signed-in people) so that pytest-xdist
runs the two files side by side: one file of them all was the fast pass's longest.
"""

from __future__ import annotations

import json
import re

from .browser_support import own_window, screenshot, unlabelled_controls
from .support import User, wait_until


class SocketSwitch:
    """Every /ws socket of ``context`` goes through the test, which can drop it and keep the
    network down (reconnects are refused) until ``up`` is set again. ``since``, when given,
    replaces what the page asks for in its auth frames."""

    _KEEP = object()

    def __init__(self, context, since=_KEEP) -> None:
        self.up = True
        self.since = since
        self.links: list = []  # (page side, server side) of each socket the page opened
        self.auth_frames: list[dict] = []  # what the page sent first on each socket
        context.route_web_socket(re.compile(r"/ws$"), self._route)

    def _route(self, page_side) -> None:
        if not self.up:
            page_side.close(code=1011, reason="test: network down")
            return
        server_side = page_side.connect_to_server()

        def page_to_server(message):
            frame = json.loads(message)
            if frame.get("type") == "auth":
                self.auth_frames.append(frame)
                if self.since is not self._KEEP:
                    message = json.dumps({**frame, "since": self.since})
            server_side.send(message)

        page_side.on_message(page_to_server)
        self.links.append((page_side, server_side))

    def drop(self) -> None:
        """Close the page's socket and keep the network down."""
        self.up = False
        page_side, _ = self.links[-1]
        page_side.close(code=1001, reason="test: connection dropped")


def test_a_dropped_socket_reconnects_with_since_and_shows_what_was_missed_exactly_once(browser, service,
                                                                                        fanout_idle):
    from playwright.sync_api import expect

    with own_window(browser, service, "carl") as (api, carol):
        author = api.sign_in()
        # Ask the server to replay everything it has: the page must still show each entry once.
        network = SocketSwitch(carol.context, since=None)
        carol.sign_in()
        User(api, carol.username, carol.token).follow(author)
        seen = author.post_tweet("seen live before the drop")
        expect(carol.entry(seen)).to_have_count(1)

        network.drop()
        expect(carol.indicator).not_to_have_attribute("data-state", "live")
        missed = [author.post_tweet(f"posted while carol was offline {n}") for n in range(3)]
        fanout_idle()
        network.up = True

        expect(carol.indicator).to_have_attribute("data-state", "live")
        for entry_id in missed:
            expect(carol.entry(entry_id)).to_have_count(1)
        expect(carol.entry(seen)).to_have_count(1)
        shown = carol.page.eval_on_selector_all("ol.tweets > li", "items => items.map((li) => li.dataset.entryId)")
        assert shown[:4] == [*reversed(missed), seen], shown
        assert len(shown) == len(set(shown)), "an entry shows twice"
        assert network.auth_frames[0]["token"] == carol.token
        assert network.auth_frames[-1]["since"] == seen, "the reconnect must ask for what came after the last entry seen"

        after = author.post_tweet("live again")
        expect(carol.entries.first).to_have_attribute("data-entry-id", after)

        # The session ends elsewhere: the socket closes with 4401 and the page goes back to sign-in.
        assert api.http.post("/auth/signout", headers={"Authorization": f"Bearer {carol.token}"}).status_code == 204
        expect(carol.page.get_by_role("heading", name="Sign in to Chirp")).to_be_visible()
        expect(carol.page.get_by_text("Your session has ended")).to_be_visible()
        assert carol.page.evaluate("localStorage.getItem('chirp.session')") is None


def test_a_tweet_deleted_while_a_window_was_offline_leaves_it_once_it_reconnects(browser, service, fanout_idle):
    from playwright.sync_api import expect

    with own_window(browser, service, "cdel") as (api, carol):
        author = api.sign_in()
        network = SocketSwitch(carol.context)
        carol.sign_in()
        User(api, carol.username, carol.token).follow(author)
        doomed, kept = author.post_tweet("deleted while carol is away"), author.post_tweet("kept")
        expect(carol.entry(doomed)).to_have_count(1)
        expect(carol.entry(kept)).to_have_count(1)

        network.drop()
        expect(carol.indicator).not_to_have_attribute("data-state", "live")
        assert author.request("DELETE", f"/tweets/{doomed}").status_code == 204
        fanout_idle()
        network.up = True

        expect(carol.indicator).to_have_attribute("data-state", "live")
        expect(carol.entry(doomed)).to_have_count(0)  # the replay after since carried the delete
        expect(carol.entry(kept)).to_have_count(1)
        assert network.auth_frames[-1]["since"] == kept


def test_a_mention_a_like_and_a_follow_show_as_notifications_live_with_the_unread_badge(browser, service):
    from playwright.sync_api import expect

    # Tall enough for both of her tweets under the composer and a "Who to follow" card (shown
    # when her home was empty and others have followers): a tweet pushed below the window is
    # not watched, and its counts rightly stop changing.
    with own_window(browser, service, "dana", viewport={"width": 1100, "height": 1500}) as (api, dana):
        dana.sign_in()
        erin, fred = api.sign_in(), api.sign_in()
        own = User(api, dana.username, dana.token).post_tweet("like this one")
        link = dana.page.locator("#nav-notifications")
        badge = link.locator(".badge")
        expect(badge).to_be_hidden()

        dana.wait_for_frame_sent(lambda frame: '"watch"' in frame and own in frame)  # it shows her tweet
        mention = erin.post_tweet(f"hey @{dana.username}, look")
        assert erin.request("PUT", f"/tweets/{own}/like").status_code == 204
        expect(badge).to_have_text("2")  # live, on the home view
        expect(link).to_have_attribute("aria-label", "Notifications, 2 unread")
        # The count on screen changed too: the page watches the tweets it shows.
        expect(dana.page.locator(f'article[data-tweet-id="{own}"] button[data-action=like]')).to_contain_text("1")
        assert fred.request("PUT", f"/tweets/{own}/retweet").status_code == 204
        expect(dana.page.locator(f'article[data-tweet-id="{own}"] button[data-action=retweet]')).to_contain_text("1")

        link.click()
        notes = dana.page.get_by_role("list", name="Notifications").locator("li.note")
        expect(notes).to_have_count(3)  # the retweet's comes from its fan-out job: perhaps live, now
        expect(notes.nth(0)).to_contain_text(f"{fred.username} retweeted your tweet")
        expect(notes.nth(1)).to_contain_text(f"{erin.username} liked your tweet")
        expect(notes.nth(1)).to_contain_text("like this one")
        expect(notes.nth(2)).to_contain_text(f"{erin.username} mentioned you")
        expect(notes.nth(1)).to_have_class(re.compile(r"\bnew\b"))
        expect(badge).to_be_hidden()  # seen: read
        fred.follow(dana.username)
        expect(notes.first).to_contain_text(f"{fred.username} followed you")  # live, while the view shows
        expect(badge).to_be_hidden()
        assert erin.request("DELETE", f"/tweets/{mention}").status_code == 204
        expect(notes.filter(has_text="mentioned you")).to_have_count(0)  # the deleted mention leaves, live
        expect(notes).to_have_count(3)
        screenshot(dana.page, "notifications")

        dana.page.reload()
        expect(dana.indicator).to_have_attribute("data-state", "live")
        expect(badge).to_be_hidden()  # the read mark is the server's
        assert unlabelled_controls(dana.page) == []


def test_new_tweets_while_scrolled_down_show_a_pill_and_a_count_in_the_title(browser, service):
    from playwright.sync_api import expect

    with own_window(browser, service, "pill", viewport={"width": 800, "height": 500}) as (api, reader):
        reader.sign_in()
        author = api.sign_in()
        User(api, reader.username, reader.token).follow(author)
        for n in range(8):  # a page taller than the window
            author.post_tweet(f"filler {n}: a tweet to scroll past")
        expect(reader.entries).to_have_count(8)
        reader.page.mouse.wheel(0, 2000)
        expect(reader.entries.first).not_to_be_in_viewport()
        author.post_tweet("arrived while you read further down")
        pill = reader.page.get_by_role("button", name="↑ 1 new tweet")
        expect(pill).to_be_visible()
        expect(reader.page).to_have_title(re.compile(r"^\(1\) Home"))
        pill.click()
        # Back at the top (not "the first entry in view": a "Who to follow" card, shown when her
        # home was empty and the service has people with followers, may keep it below the window).
        wait_until(lambda: reader.page.evaluate("window.scrollY") == 0, what="the page back at the top")
        expect(pill).to_be_hidden()
        expect(reader.page).to_have_title("Home · Chirp")

        # Back on Home from elsewhere, the live highlight does not play again.
        expect(reader.entries.first).not_to_have_class(re.compile(r"\bfresh\b"), timeout=6000)
        reader.go(f"#/u/{author.username}")
        reader.go("#/")
        expect(reader.entries.first).to_contain_text("arrived while")
        assert reader.page.locator("ol.tweets > li.fresh").count() == 0


def test_an_empty_home_suggests_who_to_follow(browser, service):
    from playwright.sync_api import expect

    with own_window(browser, service, "newb") as (api, newcomer):
        star, fan = api.sign_in(), api.sign_in()
        fan.follow(star)  # at least one person is followed by someone
        newcomer.sign_in()
        card = newcomer.page.get_by_role("region", name="Who to follow")
        expect(card).to_be_visible()
        first = card.get_by_role("listitem").first
        name = first.locator(".handle").inner_text().removeprefix("@")
        expect(first).to_contain_text(re.compile(r"\d+ followers?"))
        first.get_by_role("button", name=f"Follow @{name}").click()
        expect(first.get_by_role("button", name=f"Unfollow @{name}")).to_be_visible()
        assert User(api, newcomer.username, newcomer.token).get(f"/users/{name}").json()["you_follow"] is True
        assert unlabelled_controls(newcomer.page) == []


#: An IntersectionObserver whose every report comes a second late, as from a busy browser.
LATE_VISIBILITY_JS = """(() => {
  const Native = window.IntersectionObserver;
  window.__lateReports = 0;
  window.IntersectionObserver = class extends Native {
    constructor(callback, options) {
      super((entries, observer) => setTimeout(() => { window.__lateReports += 1; callback(entries, observer); }, 1000),
            options);
    }
  };
})()"""


def test_a_tweet_redrawn_with_new_counts_stays_watched_while_the_browser_reports_it_late(browser, service):
    """New counts redraw the tweet: a new element, whose first visibility report may come after
    the watch's settle time. The page sent a watch of nothing meanwhile, and a retweet in that
    gap never reached it (seen once in the notifications test on a busy machine)."""
    from playwright.sync_api import expect

    with own_window(browser, service, "late") as (api, dana):
        dana.context.add_init_script(LATE_VISIBILITY_JS)
        dana.sign_in()
        fan = api.sign_in()
        own = User(api, dana.username, dana.token).post_tweet("redraw me")
        dana.wait_for_frame_sent(lambda frame: '"watch"' in frame and own in frame)
        reports = dana.page.evaluate("window.__lateReports")
        sent = len(dana.frames_sent)
        assert fan.request("PUT", f"/tweets/{own}/like").status_code == 204
        article = dana.page.locator(f'article[data-tweet-id="{own}"]')
        expect(article.locator("button[data-action=like]")).to_contain_text("1")  # redrawn
        # The redrawn element's report, a second late: the settle time (300 ms) ran out before it.
        wait_until(lambda: dana.page.evaluate("window.__lateReports") > reports, what="the redrawn tweet's late report")
        watches = [json.loads(frame)["ids"] for frame in dana.frames_sent[sent:] if '"watch"' in frame]
        assert watches == [], f"the page unwatched the tweet it shows: {watches}"
        assert fan.request("PUT", f"/tweets/{own}/retweet").status_code == 204
        expect(article.locator("button[data-action=retweet]")).to_contain_text("1")


def test_suggestions_closed_with_escape_stay_closed_when_a_late_answer_arrives(browser, service):
    """A question asked while typing, answered after Escape closed the suggestions, opened them
    again (seen in the keyboard search test on a busy machine)."""
    from playwright.sync_api import expect

    with own_window(browser, service, "esc") as (api, viewer):
        wanted = api.sign_in()
        viewer.sign_in()
        held: list = []
        holding = [False]
        viewer.page.route(re.compile(r"/tweet/search/"), lambda route: held.append(route) if holding[0] else route.continue_())
        search = viewer.page.get_by_role("combobox", name="Search people and hashtags")
        popup = viewer.page.locator(".search-popup")
        search.focus()
        search.press_sequentially(wanted.username[:3])
        expect(viewer.page.get_by_role("option").first).to_be_visible()
        holding[0] = True
        search.press_sequentially(wanted.username[3:])
        wait_until(lambda: viewer.page.evaluate("true") and held, what="the next question to be asked")
        search.press("Escape")
        expect(popup).to_be_hidden()
        with viewer.page.expect_response(lambda answer: "/tweet/search/" in answer.url) as late:
            held.pop().continue_()
        late.value.finished()
        viewer.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        expect(popup).to_be_hidden()
        expect(search).to_have_attribute("aria-expanded", "false")


def test_a_delete_waiting_for_its_confirmation_still_waits_after_new_counts_redraw_the_tweet(browser, service):
    """New counts draw the tweet again; its Delete, clicked once, went back to asking nothing
    (the confirming click then missed: seen in the like-and-delete test on a busy machine)."""
    from playwright.sync_api import expect

    with own_window(browser, service, "arm") as (api, author):
        author.sign_in()
        fan = api.sign_in()
        own = User(api, author.username, author.token).post_tweet("delete me, carefully")
        author.wait_for_frame_sent(lambda frame: '"watch"' in frame and own in frame)
        shown = author.page.locator(f'ol.tweets > li:has(article[data-tweet-id="{own}"])')
        shown.get_by_role("button", name="Delete this tweet").click()
        assert fan.request("PUT", f"/tweets/{own}/like").status_code == 204
        expect(shown.locator("button[data-action=like]")).to_contain_text("1")  # drawn again
        shown.get_by_role("button", name="Confirm: delete this tweet").click()
        expect(shown).to_have_count(0)
