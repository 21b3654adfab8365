// The hook for Sign in with Google (Google Identity Services), used only when GET /config
// names a client id. The page's Content-Security-Policy already allows Google's script,
// styles and frame (https://accounts.google.com/gsi/) in that case.
//
// To do (the Google sign-in issue): load https://accounts.google.com/gsi/client, call
// google.accounts.id.initialize({client_id: clientId, callback: (r) => onCredential(r.credential)})
// and google.accounts.id.renderButton(container, {...}). `onCredential` posts the ID token to
// POST /auth/google and continues (to "choose a username" when the answer has none).

import {h} from './dom.js';

/**
 * @param {HTMLElement} container  where the button goes
 * @param {string} clientId        the OAuth client id from GET /config
 * @param {(credential: string) => Promise<void>} onCredential
 */
export function mountGoogleSignIn(container, clientId, onCredential) {
  container.replaceChildren(h('p', {class: 'hint'}, 'Sign in with Google is not available in this version of the page.'));
  return {clientId, onCredential};
}
