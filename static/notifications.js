// Notifications: the unread badge on the header's link, kept current live, and the
// #/notifications view (GET /notifications, newest first), which marks what it shows as read
// (POST /notifications/read). One notification per id, however it arrives (a page, the
// socket's replay, live), as in a TweetList.

import {api, pageQuery} from './api.js';
import {h, icon, timeElement} from './dom.js';
import {avatar, contentNodes} from './tweets.js';
import {heading, setTitle} from './ui.js';

const WHAT = {
  mention: 'mentioned you',
  like: 'liked your tweet',
  retweet: 'retweeted your tweet',
  follow: 'followed you',
};

const newestFirst = (a, b) => Number(b.id) - Number(a.id);

export class Notifications {
  /** `link`: the header's link to #/notifications, which carries the badge. */
  constructor(link) {
    this.link = link;
    this.badge = h('span', {class: 'badge', hidden: true});
    // On a phone the bell stands for the word, which stays for screen readers.
    link.replaceChildren(icon('bell'), h('span', {class: 'words'}, link.textContent), this.badge);
    this.items = new Map();  // id -> notification
    this.unread = 0;
    this.readUpTo = 0;       // ids up to this one are read (the server's mark, as far as we know)
    this.next = null;        // `before` of the next older page, or null
    this.list = null;        // the view's <ol> while the view shows
    this.more = null;
    this.shownAsNew = 0;     // ids above this one are highlighted in the view
    this.setUnread(0);
  }

  async load() {
    const page = await api('GET', `/notifications${pageQuery(null)}`);
    for (const note of page.notifications) this.items.set(note.id, note);
    this.next = page.next;
    this.setUnread(page.unread);
    // Newest first, so the first `unread` are the unread ones: the mark is at the next one.
    const firstRead = page.notifications[page.unread];
    const oldest = page.notifications[page.notifications.length - 1];
    this.readUpTo = firstRead ? Number(firstRead.id) : oldest ? Number(oldest.id) - 1 : 0;
    this.redraw();
  }

  /** One arrived live (or replayed): new ones count as unread until the view shows them. */
  add(note) {
    if (this.items.has(note.id)) return;
    this.items.set(note.id, note);
    if (Number(note.id) > this.readUpTo) this.setUnread(this.unread + 1);
    this.redraw();
    if (this.list && document.visibilityState === 'visible') this.markRead();
  }

  /** A deleted tweet's notifications go with it. */
  forgetTweet(tweetId) {
    let changed = false;
    for (const [id, note] of this.items) {
      if (note.tweet && note.tweet.id === tweetId) {
        this.items.delete(id);
        if (Number(id) > this.readUpTo) this.setUnread(this.unread - 1);
        changed = true;
      }
    }
    if (changed) this.redraw();
  }

  async markRead() {
    const newest = [...this.items.values()].sort(newestFirst)[0];
    if (!newest || Number(newest.id) <= this.readUpTo) return;
    this.readUpTo = Number(newest.id);
    this.setUnread(0);
    try {
      await api('POST', '/notifications/read', {up_to: newest.id});
    } catch { /* shown as read here; the next load asks the server again */ }
  }

  setUnread(count) {
    this.unread = Math.max(0, count);
    this.badge.hidden = this.unread === 0;
    this.badge.textContent = this.unread > 99 ? '99+' : String(this.unread);
    this.link.setAttribute('aria-label', this.unread ? `Notifications, ${this.unread} unread` : 'Notifications');
  }

  /** The view: what was unread when it opened is highlighted, and everything is marked read. */
  view() {
    setTitle('Notifications');
    this.list = h('ol', {class: 'notes', 'aria-label': 'Notifications'});
    this.more = h('button', {type: 'button', class: 'button quiet load-older', onclick: () => this.loadOlder()},
                  'Load older notifications');
    this.shownAsNew = this.readUpTo;
    this.redraw();
    this.markRead();
    return h('div', {class: 'view notifications'},
      heading('Notifications'),
      h('section', {class: 'timeline'}, this.list, h('div', {class: 'more'}, this.more)));
  }

  /** The view is gone (another route shows). */
  leave() {
    this.list = this.more = null;
  }

  async loadOlder() {
    if (!this.next) return;
    this.more.disabled = true;
    try {
      const page = await api('GET', `/notifications${pageQuery(this.next)}`);
      for (const note of page.notifications) this.items.set(note.id, note);
      this.next = page.next;
    } finally {
      if (this.more) this.more.disabled = false;
    }
    this.redraw();
  }

  redraw() {
    if (!this.list) return;
    const notes = [...this.items.values()].sort(newestFirst);
    this.list.replaceChildren(...notes.map((note) => renderNote(note, Number(note.id) > this.shownAsNew)));
    if (!notes.length) this.list.append(h('li', {class: 'empty'}, 'Nothing yet. Mentions, likes, retweets and follows show here.'));
    this.more.hidden = !this.next;
  }
}

function renderNote(note, isNew) {
  const tweet = note.tweet;
  return h('li', {class: `note ${note.type}${isNew ? ' new' : ''}`, 'data-id': note.id, 'data-type': note.type},
    avatar(note.from),
    h('div', {class: 'note-body'},
      h('p', {class: 'note-head'},
        h('a', {href: `#/u/${note.from}`, class: 'author'}, note.from), ` ${WHAT[note.type] || note.type}`,
        h('span', {class: 'sep'}, ' · '), timeElement(note.timestamp)),
      tweet ? h('p', {class: 'note-tweet content'}, ...contentNodes(tweet)) : null));
}
