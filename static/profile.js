// A profile: name, bio, counts, follow/unfollow (or edit, for your own), then the user's
// tweets, the tweets that mention them, their followers or whom they follow. And the hashtag
// view, which is the same list of tweets.

import {api, pageQuery, seg} from './api.js';
import {append, clear, formatDate, h} from './dom.js';
import {TweetList, avatar} from './tweets.js';
import {heading, setTitle, toast} from './ui.js';

const same = (a, b) => a.toLowerCase() === b.toLowerCase();

function counts(profile) {
  const item = (value, label, href) => {
    const parts = [h('strong', {}, value.toLocaleString()), ' ', label];
    return h('li', {}, href ? h('a', {href, class: 'count-link'}, ...parts) : parts);
  };
  return h('ul', {class: 'counts', 'aria-label': 'Counts'},
    item(profile.tweets, profile.tweets === 1 ? 'tweet' : 'tweets'),
    item(profile.followers, profile.followers === 1 ? 'follower' : 'followers', `#/u/${profile.username}/followers`),
    item(profile.following, 'following', `#/u/${profile.username}/following`));
}

/** Followers or following, a page at a time (`cursor`), each name a link to its profile. */
function userList(label, emptyText, loadPage) {
  const list = h('ol', {class: 'users', 'aria-label': label});
  const empty = h('p', {class: 'empty', hidden: true}, emptyText);
  let cursor = null;
  const more = h('button', {type: 'button', class: 'button secondary load-older', hidden: true}, 'Show more');
  const load = async () => {
    more.disabled = true;
    try {
      const page = await loadPage(cursor);
      for (const name of page.users) {
        list.append(h('li', {class: 'user-row'}, avatar(name), h('a', {href: `#/u/${name}`, class: 'author'}, '@' + name)));
      }
      cursor = page.next;
      more.hidden = !cursor;
      empty.hidden = list.children.length > 0;
    } catch (error) {
      toast(error.message, 'error');
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', load);
  load();
  return h('section', {class: 'timeline'}, list, empty, h('div', {class: 'more'}, more));
}

export function followButton(app, profile, redraw = () => {}) {
  const button = h('button', {type: 'button', class: 'button primary follow', 'aria-pressed': 'false'}, 'Follow');
  let following = profile.you_follow === true;
  const show = () => {
    button.textContent = following ? 'Unfollow' : 'Follow';
    button.className = `button follow ${following ? 'secondary' : 'primary'}`;
    button.setAttribute('aria-pressed', String(following));
    button.setAttribute('aria-label', `${following ? 'Unfollow' : 'Follow'} @${profile.username}`);
  };
  show();
  button.addEventListener('click', async () => {
    const next = !following;
    button.disabled = true;
    try {
      await api(next ? 'PUT' : 'DELETE', `/users/${seg(profile.username)}/follow`);
      following = next;
      show();
      redraw(await api('GET', `/users/${seg(profile.username)}`));
    } catch (error) {
      toast(`Could not ${next ? 'follow' : 'unfollow'}: ${error.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function editForm(profile, done) {
  const name = h('input', {id: 'edit-display-name', maxlength: 50, required: true, value: profile.display_name,
                           'aria-describedby': 'edit-error'});
  const bio = h('textarea', {id: 'edit-bio', maxlength: 160, rows: 3, 'aria-describedby': 'edit-bio-hint edit-error'});
  bio.value = profile.bio || '';
  const error = h('p', {class: 'error', id: 'edit-error', role: 'alert', hidden: true});
  const save = h('button', {type: 'submit', class: 'button primary'}, 'Save');
  const form = h('form', {class: 'stack edit-profile', 'aria-label': 'Edit profile'},
    h('label', {for: 'edit-display-name'}, 'Display name'), name,
    h('label', {for: 'edit-bio'}, 'Bio'), bio, h('p', {class: 'hint', id: 'edit-bio-hint'}, 'Up to 160 characters.'),
    error,
    h('div', {class: 'row'}, save, h('button', {type: 'button', class: 'button secondary', onclick: () => done(null)}, 'Cancel')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    save.disabled = true;
    error.hidden = true;
    try {
      done(await api('PATCH', '/users/me', {display_name: name.value.trim(), bio: bio.value.trim()}));
      toast('Profile saved.');
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
      save.disabled = false;
    }
  });
  setTimeout(() => name.focus());
  return form;
}

function profileCard(app, profile) {
  const card = h('section', {class: 'card profile', 'aria-labelledby': 'profile-name'});
  const draw = (shown) => {
    const mine = same(shown.username, app.me);
    const action = mine
      ? h('button', {type: 'button', class: 'button secondary', onclick: () => {
          card.replaceChildren(editForm(shown, (saved) => { draw(saved || shown); card.querySelector('button').focus(); }));
        }}, 'Edit profile')
      : followButton(app, shown, draw);
    clear(card);
    append(card, [
      h('div', {class: 'profile-head'},
        avatar(shown.username, 'large'),
        h('div', {class: 'profile-names'},
          heading(shown.display_name || shown.username, 'h1', {id: 'profile-name'}),
          h('p', {class: 'handle'}, '@' + shown.username,
            shown.follows_you ? h('span', {class: 'follows-you'}, 'Follows you') : null)),
        h('div', {class: 'profile-action'}, action)),
      shown.bio ? h('p', {class: 'bio', dir: 'auto'}, shown.bio) : null,
      h('p', {class: 'joined'}, `Joined ${formatDate(shown.created_at)}`),
      counts(shown)]);
  };
  draw(profile);
  return card;
}

const TABS = {
  tweets: ['Tweets', ''],
  mentions: ['Mentions', '/mentions'],
  followers: ['Followers', '/followers'],
  following: ['Following', '/following'],
};

/** `#/u/{name}`, and its `/mentions`, `/followers` and `/following`. Answers {element, list}. */
export async function profileView(app, name, tab) {
  let profile;
  try {
    profile = await api('GET', `/users/${seg(name)}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    setTitle('No such user');
    return {element: h('section', {class: 'card'}, heading('No such user'),
                       h('p', {}, `Nobody is called @${name}. `, h('a', {href: '#/'}, 'Back home'))), list: null};
  }
  const which = TABS[tab] ? tab : 'tweets';
  const who = `@${profile.username}`;
  setTitle(`${profile.display_name} (${who})${which === 'tweets' ? '' : ' · ' + TABS[which][0]}`);
  let list = null;
  let content;
  if (which === 'followers' || which === 'following') {
    content = userList(which === 'followers' ? `Followers of ${who}` : `Followed by ${who}`,
                       which === 'followers' ? 'No followers yet.' : 'Follows nobody yet.',
                       (cursor) => api('GET', `/users/${seg(profile.username)}/${which}` +
                                       (cursor ? `?cursor=${seg(cursor)}` : '')));
  } else {
    list = new TweetList({
      ctx: app.ctx,
      label: which === 'tweets' ? `Tweets by ${who}` : `Tweets mentioning ${who}`,
      emptyText: which === 'tweets' ? 'No tweets yet.' : 'Nobody has mentioned them yet.',
      loadPage: (before) => api('GET', `/users/${seg(profile.username)}/${which}${pageQuery(before)}`),
    });
    list.loadFirst().catch((error) => toast(error.message, 'error'));
    content = list.element;
  }
  const tabLink = (name) => h('a', {href: `#/u/${profile.username}${TABS[name][1]}`, class: 'tab',
                                    'aria-current': which === name ? 'page' : null}, TABS[name][0]);
  const element = h('div', {class: 'view profile-view'},
    profileCard(app, profile),
    h('nav', {class: 'tabs', 'aria-label': 'Profile sections'}, ...Object.keys(TABS).map(tabLink)),
    content);
  return {element, list};
}

/** `#/tag/{tag}`. */
export async function hashtagView(app, tag) {
  setTitle('#' + tag);
  const list = new TweetList({
    ctx: app.ctx, label: `Tweets with #${tag}`, emptyText: `No recent tweets with #${tag}.`,
    loadPage: (before) => api('GET', `/hashtags/${seg(tag)}/tweets${pageQuery(before)}`),
  });
  const element = h('div', {class: 'view hashtag-view'},
    h('section', {class: 'card tag-head'}, heading('#' + tag), h('p', {class: 'hint'}, 'Latest tweets with this tag.')),
    list.element);
  list.loadFirst().catch((error) => toast(error.message, 'error'));
  return {element, list};
}
