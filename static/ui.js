// Small pieces of feedback every view uses: toasts, screen-reader announcements, titles.

import {h} from './dom.js';

const MAX_TOASTS = 2;  // more would cover the page: the oldest gives way

export function toast(message, kind = 'info') {
  const region = document.getElementById('toasts');
  const item = h('p', {class: `toast ${kind}`}, message);
  region.append(item);
  while (region.children.length > MAX_TOASTS) region.firstElementChild.remove();
  setTimeout(() => item.remove(), 5000);
}

let pending = 0;
let timer = null;

/** "2 new tweets", said once for a burst rather than once per tweet. */
export function announceNewTweets(count = 1) {
  pending += count;
  clearTimeout(timer);
  timer = setTimeout(() => {
    document.getElementById('announcer').textContent = `${pending} new tweet${pending === 1 ? '' : 's'}`;
    pending = 0;
  }, 1500);
}

let titlePart = '';
let titleCount = 0;

export function setTitle(part) {
  titlePart = part;
  drawTitle();
}

/** "(3) Home · Chirp": new tweets not seen yet (0: none). */
export function setTitleCount(count) {
  titleCount = count;
  drawTitle();
}

function drawTitle() {
  const title = titlePart ? `${titlePart} · Chirp` : 'Chirp';
  document.title = titleCount ? `(${titleCount}) ${title}` : title;
}

/** A heading that the router can focus after a navigation. */
export function heading(text, level = 'h1', extra = {}) {
  return h(level, {tabindex: '-1', class: 'view-title', ...extra}, text);
}
