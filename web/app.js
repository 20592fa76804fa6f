// Entry point: sign-in, the home page (upload + library) and the player page (#/watch/<id>).
// Plain ES modules, no framework; hls.js is a classic script loaded before this one.

import { ApiError, api, auth, mintDevToken } from './js/api.js';
import { Library } from './js/library.js';
import { Player, playerOptions } from './js/player.js';
import { h } from './js/ui.js';
import { UploadPanel } from './js/upload.js';

const view = document.getElementById('view');
const who = document.getElementById('who');
const signOut = document.getElementById('sign-out');
const dev = document.body.dataset.dev === 'true';

let current = [];

function authFailed(error) {
  auth.clear();
  route(`Your token was refused (${error.message}). Sign in again.`);
}

function header() {
  const user = auth.token ? auth.user() : '';
  who.textContent = user ? `signed in as ${user}` : '';
  signOut.hidden = !auth.token;
}

signOut.addEventListener('click', () => {
  auth.clear();
  location.hash = '#/';
  route();
});

function showSignIn(message) {
  const input = h('textarea', {
    id: 'token-input', rows: 3, spellcheck: false,
    placeholder: 'Paste a token (e.g. from `origin token --user alice`)',
  });
  const error = h('p', { id: 'signin-error', class: 'error', hidden: !message }, message || '');
  const fail = (text) => {
    error.textContent = text;
    error.hidden = false;
  };
  const signIn = async (token) => {
    auth.set(token);
    try {
      await api('/api/videos?limit=1');
    } catch (e) {
      auth.clear();
      fail(`That token was refused: ${e.message}`);
      return;
    }
    route();
  };
  const save = h('button', {
    id: 'token-save', type: 'button',
    onclick: () => (input.value.trim() ? signIn(input.value.trim()) : fail('Paste a token first.')),
  }, 'Sign in');
  let devBox = null;
  if (dev) {
    const user = h('input', { id: 'dev-user', type: 'text', value: 'dev', maxLength: 64 });
    const mint = h('button', {
      id: 'dev-mint', type: 'button',
      onclick: async () => {
        mint.disabled = true;
        try {
          await signIn(await mintDevToken(user.value.trim()));
        } catch (e) {
          fail(e instanceof ApiError ? `Could not mint a token: ${e.message}` : String(e));
        } finally {
          mint.disabled = false;
        }
      },
    }, 'Mint a development token');
    devBox = h('div', { class: 'dev-box' },
      h('p', { class: 'small' }, 'Development mode: the origin can mint a (non-admin) token for any user name.'),
      h('div', { class: 'row' }, h('label', { for: 'dev-user' }, 'User'), user, mint));
  }
  view.append(h('section', { id: 'signin', class: 'panel narrow' },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'The API takes a bearer token (a JWT). It is kept in this browser only.'),
    input, h('div', { class: 'row' }, save), devBox, error));
}

function showHome() {
  const library = new Library(authFailed);
  const upload = new UploadPanel(() => library.reload());
  view.append(upload.root, library.root);
  library.reload();
  current = [upload, library];
}

function showWatch(id) {
  const player = new Player(id, playerOptions(), authFailed);
  view.append(
    h('nav', { class: 'crumbs' }, h('a', { href: '#/', id: 'back' }, '← Library')),
    player.root,
  );
  current = [player];
  // For debugging from the console (and the browser test's diagnostics).
  window.hlsEdgePlayer = player;
  player.start();
}

function route(message) {
  for (const c of current) c.destroy();
  current = [];
  view.replaceChildren();
  header();
  if (!auth.token) {
    showSignIn(typeof message === 'string' ? message : '');
    return;
  }
  const watch = /^#\/watch\/([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (watch) showWatch(watch[1]);
  else showHome();
}

window.addEventListener('hashchange', () => route());
route();
