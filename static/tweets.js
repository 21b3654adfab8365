// A tweet as DOM nodes, and a list of them keyed by entry id (`retweet_id || id`), so that
// the same entry never shows twice however it arrives (first page, replay, live, older page).

import {h, icon, timeElement} from './dom.js';

export const entryId = (tweet) => tweet.retweet_id || tweet.id;

// As the server parses them: '#' or '@' then [A-Za-z0-9_]+, not after a word character
// (Python's \w: any letter or number, or '_').
const TOKEN = /(?<![\p{L}\p{N}_])([#@])([A-Za-z0-9_]+)/gu;

/** The content as text nodes, with #tags and @mentions the server recognised as links. */
export function contentNodes(tweet) {
  const tags = new Set(tweet.hashtags || []);
  const mentioned = new Map((tweet.mentions || []).map((name) => [name.toLowerCase(), name]));
  const nodes = [];
  let last = 0;
  for (const match of tweet.content.matchAll(TOKEN)) {
    const [text, marker, word] = match;
    let link = null;
    if (marker === '#' && tags.has('#' + word.toLowerCase())) {
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

const same = (a, b) => Boolean(a && b) && a.toLowerCase() === b.toLowerCase();

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
    let armed = null;
    remove.addEventListener('click', () => {
      if (armed) {
        clearTimeout(armed);
        ctx.remove(tweet);
        return;
      }
      remove.classList.add('armed');
      remove.setAttribute('aria-label', 'Confirm: delete this tweet');
      remove.querySelector('.words').textContent = 'Really delete?';
      armed = setTimeout(() => {
        armed = null;
        remove.classList.remove('armed');
        remove.setAttribute('aria-label', 'Delete this tweet');
        remove.querySelector('.words').textContent = 'Delete';
      }, 4000);
    });
    actions.push(remove);
  }
  return h('article', {class: 'tweet', 'aria-labelledby': labelId, 'data-tweet-id': tweet.id},
    tweet.retweeted_by && h('p', {class: 'retweet-note'}, icon('retweet'),
      h('a', {href: `#/u/${tweet.retweeted_by}`}, same(tweet.retweeted_by, ctx.me) ? 'You' : '@' + tweet.retweeted_by),
      ' retweeted'),
    h('div', {class: 'tweet-body'},
      avatar(tweet.from),
      h('div', {class: 'tweet-main'},
        h('p', {class: 'tweet-head', id: labelId},
          h('a', {class: 'author', href: `#/u/${tweet.from}`},
            h('span', {class: 'display-name', dir: 'auto'}, tweet.display_name || tweet.from), ' ',
            h('span', {class: 'handle'}, '@' + tweet.from)),
          h('span', {class: 'sep', 'aria-hidden': 'true'}, ' · '),
          timeElement(tweet.timestamp)),
        h('p', {class: 'content', dir: 'auto'}, contentNodes(tweet)),
        h('div', {class: 'actions', role: 'group', 'aria-label': 'Tweet actions'}, actions))));
}

/**
 * A list of tweets with "load older". Entries are unique by entry id; `addNewest` puts an
 * entry at the top (live order), `appendPage` at the bottom (older pages).
 */
export class TweetList {
  constructor({ctx, label, emptyText, loadPage}) {
    this.ctx = ctx;
    this.loadPage = loadPage;
    this.entries = new Map(); // entry id -> {tweet, item}
    this.next = null;
    this.list = h('ol', {class: 'tweets', 'aria-label': label});
    this.empty = h('p', {class: 'empty', hidden: true}, emptyText);
    this.error = h('p', {class: 'error', role: 'alert', hidden: true});
    this.more = h('button', {type: 'button', class: 'button secondary load-older', hidden: true,
                             onclick: () => this.loadOlder()}, 'Load older tweets');
    this.element = h('section', {class: 'timeline', 'aria-busy': 'true'}, this.list, this.empty, this.error,
                     h('div', {class: 'more'}, this.more));
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
    const id = entryId(tweet);
    if (this.entries.has(id)) return false;
    const item = this.item(tweet);
    if (highlight) item.classList.add('fresh');
    this.entries.set(id, {tweet, item});
    this.list.prepend(item);
    this.updateEmpty();
    return true;
  }

  appendPage(page) {
    for (const tweet of page.tweets) {
      const id = entryId(tweet);
      if (this.entries.has(id)) continue;
      const item = this.item(tweet);
      this.entries.set(id, {tweet, item});
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
        this.entries.delete(key);
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
    const focused = entry.item.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    entry.item.replaceChildren(renderTweet(entry.tweet, this.ctx));
    if (focused) {
      const again = entry.item.querySelector(`[data-action="${focused}"]`);
      if (again) again.focus();
    }
  }

  redrawAll() {
    for (const entry of this.entries.values()) this.redraw(entry);
  }

  updateEmpty() {
    this.empty.hidden = this.entries.size > 0 || this.element.getAttribute('aria-busy') === 'true';
  }
}
