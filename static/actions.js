// Like, retweet and delete: shown at once in every list on screen, then confirmed by the
// server (its counts replace our guess). The API does not say whether *you* liked or
// retweeted a tweet, so this browser remembers what you did, per user, in localStorage.

import {api} from './api.js';
import {toast} from './ui.js';

const REMEMBERED = 2000;  // ids kept per kind; the oldest are forgotten first

class Memory {
  constructor(user, kind) {
    this.key = `chirp.${kind}.${user.toLowerCase()}`;
    try { this.ids = new Set(JSON.parse(localStorage.getItem(this.key)) || []); } catch { this.ids = new Set(); }
  }

  has(id) {
    return this.ids.has(id);
  }

  set(id, on) {
    this.ids.delete(id);
    if (on) this.ids.add(id);
    const kept = [...this.ids].slice(-REMEMBERED);
    this.ids = new Set(kept);
    localStorage.setItem(this.key, JSON.stringify(kept));
  }
}

/**
 * The `ctx` every rendered tweet talks to. `lists()` answers the TweetLists on screen.
 */
export function tweetActions(me, lists) {
  const liked = new Memory(me, 'liked');
  const retweeted = new Memory(me, 'retweeted');
  const same = (a, b) => Boolean(a && b) && a.toLowerCase() === b.toLowerCase();
  const patch = (id, change) => { for (const list of lists()) list.patch(id, change); };
  const removeEverywhere = (id) => { for (const list of lists()) list.remove(id); };

  async function confirmCounts(id) {
    try {
      const fresh = await api('GET', `/tweets/${id}`);
      patch(id, (tweet) => { tweet.likes = fresh.likes; tweet.retweets = fresh.retweets; });
    } catch (error) {
      if (error.status === 404) removeEverywhere(id);
    }
  }

  async function toggle(tweet, memory, path, field, verb) {
    const id = tweet.id;
    const on = !ctx[memory === liked ? 'isLiked' : 'isRetweeted'](tweet);
    memory.set(id, on);
    patch(id, (shown) => { shown[field] = Math.max(0, shown[field] + (on ? 1 : -1)); });
    try {
      await api(on ? 'PUT' : 'DELETE', `/tweets/${id}/${path}`);
    } catch (error) {
      memory.set(id, !on);
      patch(id, (shown) => { shown[field] = Math.max(0, shown[field] + (on ? -1 : 1)); });
      if (error.status === 404) {
        removeEverywhere(id);
        toast('That tweet has been deleted.');
      } else {
        toast(`Could not ${verb}: ${error.message}`, 'error');
      }
      return;
    }
    if (memory === retweeted && !on) {  // your retweet leaves your timeline (the live delete says so too)
      for (const list of lists()) list.removeWhere((key, shown) => shown.id === id && same(shown.retweeted_by, me));
    }
    await confirmCounts(id);
  }

  const ctx = {
    me,
    isLiked: (id) => liked.has(id),
    isRetweeted: (tweet) => retweeted.has(tweet.id) || same(tweet.retweeted_by, me),
    like: (tweet) => toggle(tweet, liked, 'like', 'likes', 'like it'),
    retweet: (tweet) => toggle(tweet, retweeted, 'retweet', 'retweets', 'retweet it'),
    async remove(tweet) {
      const items = document.querySelectorAll(`article[data-tweet-id="${tweet.id}"]`);
      items.forEach((item) => item.classList.add('removing'));
      try {
        await api('DELETE', `/tweets/${tweet.id}`);
      } catch (error) {
        items.forEach((item) => item.classList.remove('removing'));
        if (error.status !== 404) return toast(`Could not delete: ${error.message}`, 'error');
      }
      removeEverywhere(tweet.id);
      liked.set(tweet.id, false);
      toast('Tweet deleted.');
    },
  };
  return ctx;
}
