// The home view: the composer, and the live home timeline (kept alive while other views show).

import {api} from './api.js';
import {codePoints, h} from './dom.js';
import {followButton} from './profile.js';
import {authorLink, avatar} from './tweets.js';
import {heading, setTitle} from './ui.js';

export const LIMIT = 280;

function composer(onPosted) {
  const text = h('textarea', {id: 'composer-text', name: 'content', rows: 3,
                              'aria-describedby': 'composer-count composer-error',
                              placeholder: 'Say something. #tags and @names become links.'});
  const count = h('span', {id: 'composer-count', class: 'counter'}, `0 of ${LIMIT} characters`);
  const error = h('p', {id: 'composer-error', class: 'error', role: 'alert', hidden: true});
  const button = h('button', {type: 'submit', class: 'button primary', disabled: true}, 'Post');
  const form = h('form', {class: 'card composer', 'aria-label': 'New tweet'},
    h('label', {for: 'composer-text', class: 'composer-label'}, 'What’s happening?'),
    text, h('div', {class: 'composer-foot'}, count, button), error);

  const update = () => {
    const used = codePoints(text.value);
    const over = used - LIMIT;
    count.textContent = over > 0 ? `${over} over the ${LIMIT}-character limit` : `${used} of ${LIMIT} characters`;
    count.classList.toggle('over', over > 0);
    count.classList.toggle('near', over <= 0 && used >= LIMIT - 20);
    button.disabled = used === 0 || over > 0;  // the counter says why, once
  };
  text.addEventListener('input', update);
  text.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    error.hidden = true;
    const sent = text.value;
    try {
      const response = await fetchPost(sent);
      if (text.value === sent) text.value = '';  // keep anything typed while it was sending
      update();
      onPosted(response);  // it shows at the top of the timeline: no toast needed
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
      update();
    }
    text.focus();
  });
  return form;
}

/** POST /tweets answers 201 with only a Location; read the tweet back to show it at once. */
async function fetchPost(content) {
  const {location} = await api('POST', '/tweets', {content});
  try {
    return await api('GET', location);
  } catch {
    return null;  // posted all the same: the live socket brings it
  }
}

/** "Who to follow" while the home timeline is empty: the most followed people you do not follow. */
function whoToFollow(app, home) {
  const card = h('section', {class: 'card who-to-follow', 'aria-labelledby': 'who-title', hidden: true});
  (async () => {
    await home.loaded;
    if (home.entries.size) return;
    let users;
    try {
      ({users} = await api('GET', '/users/me/suggestions?count=5'));
    } catch {
      return;  // a suggestion is a nicety: nothing shown
    }
    if (!users.length) return;
    card.append(h('h2', {id: 'who-title'}, 'Who to follow'),
      h('ul', {class: 'suggestions'}, ...users.map((user) => h('li', {class: 'user-row'},
        avatar(user.username),
        authorLink(user.username, user.display_name),
        h('span', {class: 'followers hint'}, `${user.followers.toLocaleString()} ${user.followers === 1 ? 'follower' : 'followers'}`),
        followButton(app, {username: user.username, you_follow: false})))));
    card.hidden = false;
  })();
  return card;
}

/**
 * The home view around the app's long-lived home TweetList.
 * `onPosted(tweet)` gets the tweet just posted (or null if it could not be read back).
 */
export function homeView(app, home, onPosted) {
  setTitle('Home');
  return h('div', {class: 'view home'},
    heading('Home', 'h1', {class: 'view-title visually-hidden'}),
    composer(onPosted),
    whoToFollow(app, home),
    home.element);
}
