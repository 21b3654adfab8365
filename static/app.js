// The browser client, top to bottom: read the server's sign-in options, restore the session
// (localStorage), then either the sign-in page or the app: header (search, live indicator,
// sign out, the notifications badge), a hash router (#/, #/notifications, #/u/name,
// #/u/name/mentions, #/tag/name), and the live home timeline and notifications kept current over
// /ws for as long as you are signed in, whatever view shows.

import {ApiError, api, forgetSession, loadSession, pageQuery, whenUnauthorized} from './api.js';
import {h, refreshTimes} from './dom.js';
import {tweetActions} from './actions.js';
import {homeView} from './home.js';
import {LiveConnection, State} from './live.js';
import {Notifications} from './notifications.js';
import {installShortcuts} from './shortcuts.js';
import {UnseenTweets} from './unseen.js';
import {ScreenWatch} from './watch.js';
import {hashtagView, profileView} from './profile.js';
import {SearchBox} from './search.js';
import {chooseUsernameView, signInView} from './signin.js';
import {TweetList} from './tweets.js';
import {announceNewTweets, heading, setTitle, toast} from './ui.js';

const main = document.getElementById('main');
const topbar = document.getElementById('topbar');
const indicator = document.getElementById('live-indicator');

let config = {dev_signin: false, google_client_id: null};
let app = null;  // while signed in: {me, ctx, home, notifications, live, view}

async function start() {
  try {
    config = await api('GET', '/config', undefined, {auth: false});
  } catch (error) {
    toast(`Could not read the server's settings: ${error.message}`, 'error');
  }
  whenUnauthorized(() => signOutHere('Your session has ended. Please sign in again.'));
  window.addEventListener('storage', (event) => {
    if (event.key === 'chirp.session') location.reload();  // signed in or out in another tab
  });
  document.getElementById('sign-out').addEventListener('click', signOut);
  setInterval(() => refreshTimes(main), 30_000);
  const session = loadSession();
  if (!session) return showSignIn();
  if (!session.username) return showChooseUsername(session);
  try {
    const me = await api('GET', '/users/me');
    enter(me.username);
  } catch (error) {
    if (error instanceof ApiError && error.code === 'username_required') return showChooseUsername(session);
    if (error.status === 401) return;  // whenUnauthorized has shown the sign-in page
    enter(session.username);  // offline or busy: start anyway, the live loop keeps trying
  }
}

function showSignIn(message) {
  topbar.hidden = true;
  main.replaceChildren(signInView(config, (session) => {
    if (session.username) enter(session.username);
    else showChooseUsername(session);
  }, message));
  focusView({field: true});
}

function showChooseUsername(session) {
  topbar.hidden = true;
  main.replaceChildren(chooseUsernameView(session, () => location.reload()));
  focusView({field: true});
}

/** Into the app as `me`: header, home timeline, live connection, router. */
async function enter(me) {
  const ctx = tweetActions(me, () => [app.home, app.view && app.view.list].filter(Boolean));
  const home = new TweetList({
    ctx, label: 'Home timeline', oneEntryPerTweet: true,
    emptyText: 'Nothing here yet. Follow people, or post your first tweet.',
    loadPage: (before) => api('GET', `/timelines/home${pageQuery(before)}`),
  });
  const live = new LiveConnection(() => (loadSession() || {}).token, {
    tweet(tweet) {
      if (app.home.addNewest(tweet) && tweet.from.toLowerCase() !== me.toLowerCase()) {
        announceNewTweets();
        app.unseen.add();
      }
    },
    delete(id) {
      for (const list of [app.home, app.view && app.view.list]) if (list) list.remove(id);
      app.notifications.forgetTweet(id);
    },
    notification(note) {
      app.notifications.add(note);
    },
    counts({id, likes, retweets}) {
      for (const list of [app.home, app.view && app.view.list]) {
        if (list) list.patch(id, (tweet) => Object.assign(tweet, {likes, retweets}));
      }
    },
    state: showLiveState,
    unauthorized() {
      signOutHere('Your session has ended. Please sign in again.');
    },
    replaced() {
      toast('Live updates stopped in this window because too many are open. Reload to resume.', 'error');
    },
  });
  const notifications = new Notifications(document.getElementById('nav-notifications'));
  app = {me, ctx, home, notifications, unseen: pageParts().unseen, live, view: null};
  topbar.hidden = false;
  document.getElementById('nav-profile').href = `#/u/${me}`;
  new SearchBox(document.getElementById('search'), (hash) => { location.hash = hash; });
  window.addEventListener('hashchange', route);
  await route();
  try {
    await Promise.all([home.loadFirst(), notifications.load()]);
  } catch { /* shown in the list; the live replay fills in when the server is back */ }
  if (app && app.live === live) live.start(home.newestEntryId());
}

let parts = null;

/** What the page keeps from its first sign-in on (a sign-out does not reload): they read
 * `app` when they act, so they serve whoever is signed in then. */
function pageParts() {
  if (parts) return parts;
  const homeShown = () => Boolean(app && app.view && app.view.isHome);
  parts = {unseen: new UnseenTweets(homeShown)};
  new ScreenWatch(main, (ids) => { if (app) app.live.watch(ids); });
  installShortcuts(async () => {
    if (!app || homeShown()) return;
    const shown = new Promise((done) => window.addEventListener('hashchange', () => setTimeout(done), {once: true}));
    location.hash = '#/';
    await shown;
  });
  return parts;
}

async function route() {
  if (!app) return;
  const session = app;
  const path = decodeURIComponent(location.hash.replace(/^#/, '')) || '/';
  let match;
  let view;
  try {
    if ((match = path.match(/^\/u\/([A-Za-z0-9_]{1,15})(?:\/(mentions|followers|following))?$/))) {
      view = await profileView(session, match[1], match[2]);
    } else if ((match = path.match(/^\/tag\/([A-Za-z0-9_]{1,100})$/))) {
      view = await hashtagView(session, match[1].toLowerCase());
    } else if (path === '/notifications') {
      view = {element: session.notifications.view(), list: null, leave: () => session.notifications.leave()};
    } else {
      view = {element: homeView(session, session.home,
                                (tweet) => tweet && session.home.addNewest(tweet, {highlight: false})),
              list: null, isHome: true};
    }
  } catch (error) {
    setTitle('Error');
    view = {element: h('section', {class: 'card'}, heading('Something went wrong'), h('p', {}, error.message)), list: null};
  }
  if (app !== session) return;  // signed out while loading
  if (session.view && session.view.leave && session.view !== view) session.view.leave();
  session.view = view;
  main.replaceChildren(view.element);
  for (const link of document.querySelectorAll('.nav-list a')) {
    const current = link.getAttribute('href') === (path === '/' ? '#/' : '#' + path);
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  window.scrollTo(0, 0);
  session.unseen.check();
  if (document.activeElement === document.body || !main.contains(document.activeElement)) focusView();
}

/** After a navigation: the view's first field where filling it in is the point (sign-in),
 * else its heading, which tells a screen reader where it is (no focus ring: it is no control). */
function focusView({field = false} = {}) {
  const target = (field && main.querySelector('input:not([type=hidden]), textarea')) ||
                 main.querySelector('.view-title, h1');
  if (target) target.focus({preventScroll: true});
}

const LABELS = {
  [State.CONNECTING]: 'Connecting…',
  [State.LIVE]: 'Live',
  [State.WAITING]: 'Offline',
  [State.STOPPED]: 'Offline',
};
let countdown = null;

function showLiveState(state, detail) {
  indicator.dataset.state = state;
  // The label is a status region: it changes only with the state. The countdown beside it
  // is hidden from screen readers, which would otherwise read it out every second.
  indicator.querySelector('.label').textContent = LABELS[state];
  const retry = indicator.querySelector('.retry');
  clearInterval(countdown);
  retry.textContent = '';
  if (state === State.WAITING) {
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
      retry.textContent = seconds > 0 ? ` · retry in ${seconds} s` : ' · trying';
    };
    tick();
    countdown = setInterval(tick, 1000);
  }
  indicator.title = state === State.LIVE ? 'New tweets appear as they are posted.' : 'Not receiving new tweets right now.';
}

async function signOut() {
  try {
    await api('POST', '/auth/signout');
  } catch { /* the token is forgotten here either way */ }
  signOutHere('You are signed out.');
}

function signOutHere(message) {
  if (app) {
    app.live.stop();
    app = null;
  }
  window.removeEventListener('hashchange', route);
  forgetSession();
  history.replaceState(null, '', location.pathname);
  setTitle('Sign in');
  showSignIn(message);
}

start();
