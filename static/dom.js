// Building the page out of DOM nodes. Text is always a text node: nothing here (or anywhere
// in the client) parses a string as HTML, so what people type is shown, never run.

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'hidden', 'textContent', 'selected']);

/**
 * h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, [more]) -> Element.
 * Strings and numbers become text nodes; null, undefined and false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (PROPERTIES.has(name)) {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes (for icons and the monitor's chart). */
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children) element.append(child);
  return element;
}

const ICONS = {
  like: ['M12 20s-7-4.35-7-10a4 4 0 0 1 7-2.65A4 4 0 0 1 19 10c0 5.65-7 10-7 10z'],
  retweet: ['M4 11V9a3 3 0 0 1 3-3h12', 'M16 3l3 3-3 3', 'M20 13v2a3 3 0 0 1-3 3H5', 'M8 21l-3-3 3-3'],
  trash: ['M4 7h16', 'M9 7V4h6v3', 'M6 7l1 13h10l1-13'],
  search: ['M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14z', 'M20 20l-4-4'],
  bell: ['M6 16v-5a6 6 0 0 1 12 0v5l2 2H4z', 'M10 20a2 2 0 0 0 4 0'],
};

export function icon(name) {
  return svg('svg', {viewBox: '0 0 24 24', width: 18, height: 18, 'aria-hidden': 'true', focusable: 'false',
                     class: 'icon'},
             ...ICONS[name].map((d) => svg('path', {d})));
}

const absolute = new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short'});
const dayMonth = new Intl.DateTimeFormat(undefined, {day: 'numeric', month: 'short'});

/** "now", "5m", "3h", "2d", then "4 Mar": compact, like the rest of the timeline. */
export function ago(seconds) {
  const age = Date.now() / 1000 - seconds;
  if (age < 45) return 'now';
  if (age < 3600) return `${Math.round(age / 60)}m`;
  if (age < 86400) return `${Math.round(age / 3600)}h`;
  if (age < 86400 * 7) return `${Math.round(age / 86400)}d`;
  return dayMonth.format(new Date(seconds * 1000));
}

export function timeElement(seconds) {
  const date = new Date(seconds * 1000);
  return h('time', {datetime: date.toISOString(), title: absolute.format(date), 'data-ts': seconds}, ago(seconds));
}

/** Keep every relative time on the page current. */
export function refreshTimes(root = document) {
  for (const element of root.querySelectorAll('time[data-ts]')) {
    element.textContent = ago(Number(element.dataset.ts));
  }
}

export function formatDate(seconds) {
  return new Intl.DateTimeFormat(undefined, {month: 'long', year: 'numeric'}).format(new Date(seconds * 1000));
}

/** Counts as the server counts: NFC code points after stripping surrounding whitespace. */
export function codePoints(text) {
  return [...text.normalize('NFC').trim()].length;
}

export function debounce(fn, ms) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}
