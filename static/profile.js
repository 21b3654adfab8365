// A profile: name, bio, counts, follow/unfollow (or edit, for your own), then the user's
// tweets or the tweets that mention them. And the hashtag view, which is the same list.

import {api, pageQuery, seg} from './api.js';
import {append, clear, formatDate, h} from './dom.js';
import {TweetList, avatar} from './tweets.js';
import {heading, setTitle, toast} from './ui.js';

const same = (a, b) => a.toLowerCase() === b.toLowerCase();

function counts(profile) {
  const item = (value, label) => h('li', {}, h('strong', {}, value.toLocaleString()), ' ', label);
  return h('ul', {class: 'counts', 'aria-label': 'Counts'},
    item(profile.tweets, profile.tweets === 1 ? 'tweet' : 'tweets'),
    item(profile.followers, profile.followers === 1 ? 'follower' : 'followers'),
    item(profile.following, 'following'));
}

function followButton(app, profile, redraw) {
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

/** `#/u/{name}` and `#/u/{name}/mentions`. Answers {element, list}. */
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
  setTitle(`${profile.display_name} (@${profile.username})`);
  const which = tab === 'mentions' ? 'mentions' : 'tweets';
  const list = new TweetList({
    ctx: app.ctx,
    label: which === 'tweets' ? `Tweets by @${profile.username}` : `Tweets mentioning @${profile.username}`,
    emptyText: which === 'tweets' ? 'No tweets yet.' : 'Nobody has mentioned them yet.',
    loadPage: (before) => api('GET', `/users/${seg(profile.username)}/${which}${pageQuery(before)}`),
  });
  const tabLink = (label, href, current) => h('a', {href, class: 'tab', 'aria-current': current ? 'page' : null}, label);
  const element = h('div', {class: 'view profile-view'},
    profileCard(app, profile),
    h('nav', {class: 'tabs', 'aria-label': 'Profile sections'},
      tabLink('Tweets', `#/u/${profile.username}`, which === 'tweets'),
      tabLink('Mentions', `#/u/${profile.username}/mentions`, which === 'mentions')),
    list.element);
  list.loadFirst().catch((error) => toast(error.message, 'error'));
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
