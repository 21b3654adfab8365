// Like, retweet and delete: shown at once in every list on screen, then confirmed by the
// server (its counts replace our guess). Whether *you* liked or retweeted a tweet is the
// server's `liked`/`retweeted` on every tweet it answers over HTTP (live events leave them
// out: a tweet that just arrived is one you have not touched yet).

import {api} from './api.js';
import {toast} from './ui.js';

/**
 * The `ctx` every rendered tweet talks to. `lists()` answers the TweetLists on screen.
 */
export function tweetActions(me, lists) {
  const same = (a, b) => Boolean(a && b) && a.toLowerCase() === b.toLowerCase();
  const patch = (id, change) => { for (const list of lists()) list.patch(id, change); };
  const removeEverywhere = (id) => { for (const list of lists()) list.remove(id); };

  async function confirmCounts(id) {
    try {
      const fresh = await api('GET', `/tweets/${id}`);
      patch(id, (tweet) => {
        Object.assign(tweet, {likes: fresh.likes, retweets: fresh.retweets, liked: fresh.liked,
                              retweeted: fresh.retweeted});
      });
    } catch (error) {
      if (error.status === 404) removeEverywhere(id);
    }
  }

  function show(id, flag, field, on) {
    patch(id, (shown) => {
      if (Boolean(shown[flag]) !== on) shown[field] = Math.max(0, shown[field] + (on ? 1 : -1));
      shown[flag] = on;
    });
  }

  async function toggle(tweet, flag, path, field, verb) {
    const id = tweet.id;
    const on = !(flag === 'liked' ? ctx.isLiked(tweet) : ctx.isRetweeted(tweet));
    show(id, flag, field, on);
    try {
      await api(on ? 'PUT' : 'DELETE', `/tweets/${id}/${path}`);
    } catch (error) {
      show(id, flag, field, !on);
      if (error.status === 404) {
        removeEverywhere(id);
        toast('That tweet has been deleted.');
      } else {
        toast(`Could not ${verb}: ${error.message}`, 'error');
      }
      return;
    }
    if (flag === 'retweeted' && !on) {  // your retweet leaves your timeline (the live delete says so too)
      for (const list of lists()) list.removeWhere((key, shown) => shown.id === id && same(shown.retweeted_by, me));
    }
    await confirmCounts(id);
  }

  const ctx = {
    me,
    isLiked: (tweet) => tweet.liked === true,
    isRetweeted: (tweet) => tweet.retweeted === true || same(tweet.retweeted_by, me),
    like: (tweet) => toggle(tweet, 'liked', 'like', 'likes', 'like it'),
    retweet: (tweet) => toggle(tweet, 'retweeted', 'retweet', 'retweets', 'retweet it'),
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
      toast('Tweet deleted.');
    },
  };
  return ctx;
}
