// A tweet as DOM nodes, and a list of them keyed by entry id (`retweet_id || id`), so that
// the same entry never shows twice however it arrives (first page, replay, live, older page).

import {h, icon, timeElement} from './dom.js';

export const entryId = (tweet) => tweet.retweet_id || tweet.id;

// As the server parses them: '#' or '@' then [A-Za-z0-9_]+, not after a word character
// (Python's \w: any letter or number, or '_'); and web addresses, http and https only.
const TOKEN = /(https?:\/\/[^\s<>"]+)|(?<![\p{L}\p{N}_])([#@])([A-Za-z0-9_]+)/giu;
const URL_TAIL = /[.,;:!?)\]'"]+$/;  // "see https://x.org." ends the sentence, not the address

/** An http(s) link for `text`, or null when it is no such address. */
function webLink(text) {
  let url;
  try { url = new URL(text); } catch { return null; }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  return h('a', {href: url.href, class: 'url', rel: 'noopener noreferrer nofollow', target: '_blank'}, text);
}

/** The content as text nodes, with web addresses, and the #tags and @mentions the server
 * recognised, as links. */
export function contentNodes(tweet) {
  const tags = new Set(tweet.hashtags || []);
  const mentioned = new Map((tweet.mentions || []).map((name) => [name.toLowerCase(), name]));
  const nodes = [];
  let last = 0;
  for (const match of tweet.content.matchAll(TOKEN)) {
    let [text, address, marker, word] = match;
    let link = null;
    if (address) {
      text = address.replace(URL_TAIL, '');
      link = webLink(text);
    } else if (marker === '#' && tags.has('#' + word.toLowerCase())) {
      link = h('a', {href: `#/tag/${word.toLowerCase()}`, class: 'tag'}, text);
    } else if (marker === '@' && mentioned.has(word.toLowerCase())) {
      link = h('a', {href: `#/u/${mentioned.get(word.toLowerCase())}`, class: 'mention'}, text);
    }
    if (!link) continue;
    if (match.index > last) nodes.push(tweet.content.slice(last, match.index));
    nodes.push(link);
    last = match.index + text.length;
  }
  if (last < tweet.content.length) nodes.push(tweet.content.slice(last));
  return nodes;
}

/** A calm colour per name, for the initial-letter avatar. */
function hue(name) {
  let value = 0;
  for (const char of name.toLowerCase()) value = (value * 31 + char.codePointAt(0)) % 360;
  return value;
}

export function avatar(name, size = 'small') {
  const element = h('span', {class: `avatar ${size}`, 'aria-hidden': 'true'}, name.slice(0, 1).toUpperCase());
  element.style.setProperty('--hue', String(hue(name)));  // CSSOM, which the page's CSP allows
  return element;
}

/** "Display Name @handle", a link to the profile (tweets, who to follow). */
export function authorLink(username, displayName) {
  return h('a', {class: 'author', href: `#/u/${username}`},
    h('span', {class: 'display-name', dir: 'auto'}, displayName || username), ' ',
    h('span', {class: 'handle'}, '@' + username));
}

const same = (a, b) => Boolean(a && b) && a.toLowerCase() === b.toLowerCase();
const CONFIRM_MS = 4000;  // how long a first click on Delete waits for the second
const armedUntil = new Map();  // tweet id -> until when its Delete asks for confirmation (ms)

/**
 * One tweet. `ctx`: {me, isLiked(tweet), isRetweeted(tweet), like(tweet), retweet(tweet), remove(tweet)}.
 */
export function renderTweet(tweet, ctx) {
  const liked = ctx.isLiked(tweet);
  const retweeted = ctx.isRetweeted(tweet);
  const mine = same(tweet.from, ctx.me);
  const labelId = `t-${entryId(tweet)}`;
  const actions = [
    h('button', {type: 'button', class: 'action like', 'data-action': 'like', 'aria-pressed': String(liked),
                 'aria-label': `${liked ? 'Unlike' : 'Like'} (${tweet.likes} ${tweet.likes === 1 ? 'like' : 'likes'})`,
                 onclick: () => ctx.like(tweet)},
      icon('like'), h('span', {class: 'count'}, tweet.likes)),
    h('button', {type: 'button', class: 'action retweet', 'data-action': 'retweet', 'aria-pressed': String(retweeted),
                 'aria-label': `${retweeted ? 'Undo retweet' : 'Retweet'} (${tweet.retweets} ${tweet.retweets === 1 ? 'retweet' : 'retweets'})`,
                 onclick: () => ctx.retweet(tweet)},
      icon('retweet'), h('span', {class: 'count'}, tweet.retweets)),
  ];
  if (mine) {
    const remove = h('button', {type: 'button', class: 'action delete', 'data-action': 'delete',
                                'aria-label': 'Delete this tweet'}, icon('trash'), h('span', {class: 'words'}, 'Delete'));
    const setArmed = (on) => {
      remove.classList.toggle('armed', on);
      remove.setAttribute('aria-label', on ? 'Confirm: delete this tweet' : 'Delete this tweet');
      remove.querySelector('.words').textContent = on ? 'Really delete?' : 'Delete';
    };
    const armedFor = () => (armedUntil.get(tweet.id) || 0) - Date.now();
    const disarmLater = () => setTimeout(() => {
      if (armedFor() > 0) return;  // armed again since
      armedUntil.delete(tweet.id);
      setArmed(false);
    }, armedFor());
    if (armedFor() > 0) {  // drawn again (new counts) while it asked: it still asks
      setArmed(true);
      disarmLater();
    }
    remove.addEventListener('click', () => {
      if (armedFor() > 0) {
        armedUntil.delete(tweet.id);
        ctx.remove(tweet);
        return;
      }
      armedUntil.set(tweet.id, Date.now() + CONFIRM_MS);
      setArmed(true);
      disarmLater();
    });
    actions.push(remove);
  }
  // tabindex -1: `j` and `k` move the focus from tweet to tweet (static/shortcuts.js).
  return h('article', {class: 'tweet', tabindex: '-1', 'aria-labelledby': labelId, 'data-tweet-id': tweet.id},
    tweet.retweeted_by && h('p', {class: 'retweet-note'}, icon('retweet'),
      h('a', {href: `#/u/${tweet.retweeted_by}`}, same(tweet.retweeted_by, ctx.me) ? 'You' : '@' + tweet.retweeted_by),
      ' retweeted'),
    h('div', {class: 'tweet-body'},
      avatar(tweet.from),
      h('div', {class: 'tweet-main'},
        h('p', {class: 'tweet-head', id: labelId},
          authorLink(tweet.from, tweet.display_name),
          h('span', {class: 'sep', 'aria-hidden': 'true'}, ' · '),
          timeElement(tweet.timestamp)),
        h('p', {class: 'content', dir: 'auto'}, contentNodes(tweet)),
        h('div', {class: 'actions', role: 'group', 'aria-label': 'Tweet actions'}, actions))));
}

const FRESH_MS = 4000;  // the highlight's length (style.css), also without animations

/**
 * A list of tweets with "load older", which loads by itself as it scrolls into view (the
 * button stays, for keyboards and for a failed load). Entries are unique by entry id;
 * `addNewest` puts an entry at the top (live order), `appendPage` at the bottom (older pages).
 * `oneEntryPerTweet`: a tweet already shown is not shown again by a retweet of it (home).
 */
export class TweetList {
  constructor({ctx, label, emptyText, loadPage, oneEntryPerTweet = false}) {
    this.ctx = ctx;
    this.loadPage = loadPage;
    this.oneEntryPerTweet = oneEntryPerTweet;
    this.entries = new Map(); // entry id -> {tweet, item}
    this.showing = new Map(); // tweet id -> how many entries show it
    this.next = null;
    this.loaded = new Promise((done) => { this.markLoaded = done; });  // the first page, or its failure
    this.list = h('ol', {class: 'tweets', 'aria-label': label});
    this.empty = h('p', {class: 'empty', hidden: true}, emptyText);
    this.error = h('p', {class: 'error', role: 'alert', hidden: true});
    this.more = h('button', {type: 'button', class: 'button secondary load-older', hidden: true,
                             onclick: () => this.loadOlder()}, 'Load older tweets');
    this.element = h('section', {class: 'timeline', 'aria-busy': 'true'}, this.list, this.empty, this.error,
                     h('div', {class: 'more'}, this.more));
    this.nearEnd = new IntersectionObserver((seen) => {
      if (seen.some((entry) => entry.isIntersecting) && !this.more.hidden && !this.more.disabled) this.loadOlder();
    }, {rootMargin: '600px 0px'});
    this.nearEnd.observe(this.more);
  }

  /** Whether an entry for `tweet` is to be added (not there yet, nor its tweet where that counts). */
  admits(tweet) {
    return !this.entries.has(entryId(tweet)) && !(this.oneEntryPerTweet && this.showing.has(tweet.id));
  }

  store(tweet, item) {
    this.entries.set(entryId(tweet), {tweet, item});
    this.showing.set(tweet.id, (this.showing.get(tweet.id) || 0) + 1);
  }

  forget(key, tweet) {
    this.entries.delete(key);
    const left = (this.showing.get(tweet.id) || 1) - 1;
    if (left) this.showing.set(tweet.id, left);
    else this.showing.delete(tweet.id);
  }

  has(id) {
    return this.entries.has(id);
  }

  /** The newest entry id shown (the top of the list). */
  newestEntryId() {
    const first = this.list.firstElementChild;
    return first ? first.dataset.entryId : null;
  }

  item(tweet) {
    return h('li', {class: 'entry', 'data-entry-id': entryId(tweet)}, renderTweet(tweet, this.ctx));
  }

  addNewest(tweet, {highlight = true} = {}) {
    if (!this.admits(tweet)) return false;
    const item = this.item(tweet);
    if (highlight) {
      // Once: taken off when it has run, so that showing the list again does not replay it.
      item.classList.add('fresh');
      setTimeout(() => item.classList.remove('fresh'), FRESH_MS);
    }
    this.store(tweet, item);
    this.list.prepend(item);
    this.updateEmpty();
    return true;
  }

  appendPage(page) {
    for (const tweet of page.tweets) {
      if (!this.admits(tweet)) continue;
      const item = this.item(tweet);
      this.store(tweet, item);
      this.list.append(item);
    }
    this.next = page.next;
    this.more.hidden = !this.next;
    this.element.setAttribute('aria-busy', 'false');
    this.updateEmpty();
  }

  async loadFirst() {
    return this.load(null);
  }

  async loadOlder() {
    if (this.next) await this.load(this.next);
  }

  async load(before) {
    this.error.hidden = true;
    this.more.disabled = true;
    this.more.textContent = 'Loading…';
    try {
      this.appendPage(await this.loadPage(before));
    } catch (error) {
      this.error.textContent = error.message;
      this.error.hidden = false;
      this.more.hidden = before === null;
      this.element.setAttribute('aria-busy', 'false');
      if (before === null) throw error;
    } finally {
      this.more.disabled = false;
      this.more.textContent = 'Load older tweets';
      if (before === null) this.markLoaded();
      // Still in view (a short page, a tall window): observing afresh reports it again.
      this.nearEnd.unobserve(this.more);
      this.nearEnd.observe(this.more);
    }
  }

  /** Remove the entry with this id, and every entry showing this tweet (its retweets). */
  remove(id) {
    this.removeWhere((key, tweet) => key === id || tweet.id === id);
  }

  removeWhere(predicate) {
    for (const [key, {tweet, item}] of this.entries) {
      if (predicate(key, tweet)) {
        item.remove();
        this.forget(key, tweet);
      }
    }
    this.updateEmpty();
  }

  /** Apply `change(tweet)` to every entry showing tweet `id`, and draw them again. */
  patch(id, change) {
    for (const entry of this.entries.values()) {
      if (entry.tweet.id !== id) continue;
      change(entry.tweet);
      this.redraw(entry);
    }
  }

  redraw(entry) {
    const active = document.activeElement;
    const focused = entry.item.contains(active) ? (active.dataset.action || 'tweet') : null;
    entry.item.replaceChildren(renderTweet(entry.tweet, this.ctx));
    if (focused) {
      const again = focused === 'tweet' ? entry.item.firstElementChild
        : entry.item.querySelector(`[data-action="${focused}"]`);
      if (again) again.focus({preventScroll: true});
    }
  }

  redrawAll() {
    for (const entry of this.entries.values()) this.redraw(entry);
  }

  updateEmpty() {
    this.empty.hidden = this.entries.size > 0 || this.element.getAttribute('aria-busy') === 'true';
  }
}
