// Sign in with Google (Google Identity Services), used only when GET /config names a client
// id. The page's Content-Security-Policy allows Google's script, styles and frame
// (https://accounts.google.com/gsi/) in that case, and only then.
//
// The script is added at run time, once per page; Google's button calls back with an ID
// token, which `onCredential` posts to POST /auth/google (then "choose a username" when the
// answer has none). A refusal is shown under the button.

import {h} from './dom.js';

const GSI_SRC = 'https://accounts.google.com/gsi/client';

let loading = null;

/** Resolves with window.google.accounts.id once Google's script has run; one <script> per page. */
function loadGoogleIdentity() {
  if (window.google?.accounts?.id) return Promise.resolve(window.google.accounts.id);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = h('script', {src: GSI_SRC, async: true});
      script.addEventListener('load', () => {
        if (window.google?.accounts?.id) resolve(window.google.accounts.id);
        else reject(new Error('unexpected script'));
      });
      script.addEventListener('error', () => reject(new Error('not loaded')));
      document.head.append(script);
    });
    loading.catch(() => { loading = null; });  // a later sign-in page may try again
  }
  return loading;
}

/**
 * @param {HTMLElement} container  where the button goes
 * @param {string} clientId        the OAuth client id from GET /config
 * @param {(credential: string) => Promise<void>} onCredential
 */
export function mountGoogleSignIn(container, clientId, onCredential) {
  const slot = h('div', {class: 'google-button'});
  const status = h('p', {class: 'hint', role: 'status'}, 'Loading Sign in with Google…');
  const error = h('p', {class: 'error', id: 'google-signin-error', role: 'alert', hidden: true});
  container.replaceChildren(slot, status, error);

  const showError = (message) => {
    error.textContent = message;
    error.hidden = !message;
  };

  loadGoogleIdentity().then((id) => {
    if (!container.isConnected) return;  // the person moved on meanwhile
    id.initialize({
      client_id: clientId,
      callback: async (response) => {
        showError('');
        try {
          await onCredential(response && response.credential);
        } catch (failure) {
          showError(failure && failure.message ? failure.message : 'Signing in with Google did not work. Try again.');
        }
      },
    });
    status.remove();
    id.renderButton(slot, {type: 'standard', theme: 'outline', size: 'large', text: 'signin_with', shape: 'pill'});
  }, () => {
    status.remove();
    showError('Sign in with Google could not be loaded. Check your connection (or an ad or script blocker) and reload the page.');
  });
}
