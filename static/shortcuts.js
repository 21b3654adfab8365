// Keyboard shortcuts, as on the big clients: `/` search, `n` new tweet, `j`/`k` next and
// previous tweet, `l` like the current one, `?` this list. Never while typing in a field, and
// never with Ctrl, Alt or Meta (the browser's own shortcuts stay).

import {h} from './dom.js';

const KEYS = [
  ['/', 'Search people and tags'],
  ['n', 'Write a new tweet'],
  ['j', 'Next tweet'],
  ['k', 'Previous tweet'],
  ['l', 'Like or unlike the current tweet'],
  ['?', 'Show these shortcuts'],
];

function typing(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
}

function helpDialog() {
  const dialog = h('dialog', {class: 'card shortcuts', 'aria-labelledby': 'shortcuts-title'},
    h('h2', {id: 'shortcuts-title'}, 'Keyboard shortcuts'),
    h('dl', {}, ...KEYS.map(([key, what]) => [h('dt', {}, h('kbd', {}, key)), h('dd', {}, what)])),
    h('form', {method: 'dialog'}, h('button', {type: 'submit', class: 'button secondary'}, 'Close')));
  document.body.append(dialog);
  return dialog;
}

/** The tweet holding the focus, or null. */
function currentTweet() {
  const focused = document.activeElement;
  return focused instanceof Element ? focused.closest('article.tweet') : null;
}

function moveTweet(step) {
  const tweets = [...document.querySelectorAll('main article.tweet')];
  if (!tweets.length) return;
  const at = tweets.indexOf(currentTweet());
  const next = tweets[at < 0 ? 0 : Math.min(tweets.length - 1, Math.max(0, at + step))];
  next.focus({preventScroll: true});
  next.scrollIntoView({block: 'nearest'});
}

/** `goHome()`: shows the home view (where the composer is); resolves once it shows. */
export function installShortcuts(goHome) {
  let dialog = null;
  document.addEventListener('keydown', async (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (dialog && dialog.open) return;  // the dialog has the keyboard (Escape closes it)
    const actions = {
      '/': () => document.querySelector('#search input')?.focus(),
      n: async () => {
        await goHome();
        document.getElementById('composer-text')?.focus();
      },
      j: () => moveTweet(1),
      k: () => moveTweet(-1),
      l: () => currentTweet()?.querySelector('button[data-action=like]')?.click(),
      '?': () => (dialog ||= helpDialog()).showModal(),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    await action();
  });
}
