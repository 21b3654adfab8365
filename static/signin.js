// Signing in: the dev form (when the server allows it), the hook for Sign in with Google
// (when a client id is configured), and choosing a username on a first Google sign-in.

import {api, saveSession} from './api.js';
import {h} from './dom.js';
import {mountGoogleSignIn} from './google.js';
import {heading, setTitle} from './ui.js';

const USERNAME = '[A-Za-z0-9_]{1,15}';

function field({id, label, hint, ...input}) {
  const describedBy = [hint && `${id}-hint`, `${id}-error`].filter(Boolean).join(' ');
  return [
    h('label', {for: id}, label),
    h('input', {id, 'aria-describedby': describedBy, ...input}),
    hint && h('p', {class: 'hint', id: `${id}-hint`}, hint),
  ];
}

function errorLine(id) {
  return h('p', {class: 'error', id: `${id}-error`, role: 'alert', hidden: true});
}

function showError(line, message) {
  line.textContent = message;
  line.hidden = !message;
}

/** Submit handler plumbing: disable the button, show the error, keep focus sensible. */
function busyForm(form, button, errorLine, work) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = form.querySelector('input');
    showError(errorLine, '');
    input.removeAttribute('aria-invalid');
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      showError(errorLine, error.message);
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
}

/**
 * The sign-in page. `signedIn(session)` continues into the app; `message` explains why we
 * are here (for example a session that ended).
 */
export function signInView(config, signedIn, message) {
  setTitle('Sign in');
  const parts = [];
  if (config.google_client_id) {
    const container = h('div', {class: 'google-signin', id: 'google-signin'});
    parts.push(container);
    mountGoogleSignIn(container, config.google_client_id, async (credential) => {
      signedIn(await completeSignIn(await api('POST', '/auth/google', {credential}, {auth: false})));
    });
  }
  if (config.dev_signin) {
    const error = errorLine('dev-username');
    const button = h('button', {type: 'submit', class: 'button primary'}, 'Sign in');
    const form = h('form', {class: 'stack', 'aria-label': 'Development sign-in', novalidate: true},
      ...field({id: 'dev-username', label: 'Username', name: 'username', autocomplete: 'username', required: true,
                maxlength: 15, pattern: USERNAME, autocapitalize: 'none', spellcheck: 'false',
                hint: 'Development sign-in: letters, digits and _, up to 15. A new name makes a new account.'}),
      error, button);
    busyForm(form, button, error, async () => {
      const username = form.querySelector('input').value.trim();
      if (!new RegExp(`^${USERNAME}$`).test(username)) {
        throw new Error('A username is 1 to 15 letters, digits or _.');
      }
      signedIn(await completeSignIn(await api('POST', '/auth/dev', {username}, {auth: false})));
    });
    parts.push(form);
  }
  if (!parts.length) parts.push(h('p', {}, 'Sign-in is not configured on this server.'));
  return h('section', {class: 'card signin', 'aria-labelledby': 'signin-title'},
    heading('Sign in to Chirp', 'h1', {id: 'signin-title'}),
    h('p', {class: 'lede'}, 'Short posts from the people you follow, the moment they are written.'),
    message && h('p', {class: 'notice', role: 'alert'}, message),
    parts);
}

async function completeSignIn(answer) {
  const session = {token: answer.token, expires_at: answer.expires_at, username: answer.username};
  saveSession(session);
  return session;
}

/** A new Google account picks its username (the only call its session may make). */
export function chooseUsernameView(session, chosen) {
  setTitle('Choose a username');
  const error = errorLine('new-username');
  const button = h('button', {type: 'submit', class: 'button primary'}, 'Continue');
  const form = h('form', {class: 'stack', novalidate: true},
    ...field({id: 'new-username', label: 'Username', required: true, maxlength: 15, pattern: USERNAME,
              autocapitalize: 'none', spellcheck: 'false', hint: 'Letters, digits and _, up to 15. It cannot change later.'}),
    ...field({id: 'new-display-name', label: 'Display name (optional)', maxlength: 50}),
    error, button);
  busyForm(form, button, error, async () => {
    const username = form.querySelector('#new-username').value.trim();
    const displayName = form.querySelector('#new-display-name').value.trim();
    const profile = await api('POST', '/users', displayName ? {username, display_name: displayName} : {username});
    saveSession({...session, username: profile.username});
    chosen();
  });
  return h('section', {class: 'card signin', 'aria-labelledby': 'choose-title'},
    heading('Choose your username', 'h1', {id: 'choose-title'}),
    h('p', {class: 'lede'}, 'This is how people find and mention you.'), form);
}
