// The search box: suggestions (people and hashtags) as you type, debounced, in an ARIA
// combobox: arrows move, Enter opens, Escape closes (and then clears).

import {api, seg} from './api.js';
import {debounce, h, icon} from './dom.js';

const INPUT = /^[@#]?[A-Za-z0-9_]{1,100}$/;
const DELAY = 150;

export class SearchBox {
  /** @param {(hash: string) => void} go  navigate to a client route */
  constructor(container, go) {
    this.go = go;
    this.options = [];   // [{label, kind, href}]
    this.active = -1;
    this.asked = 0;      // sequence number of the latest question: older answers are dropped
    this.controller = null;
    this.input = h('input', {id: 'search-input', type: 'search', role: 'combobox', autocomplete: 'off',
                             spellcheck: 'false', 'aria-autocomplete': 'list', 'aria-expanded': 'false',
                             'aria-controls': 'search-options', 'aria-describedby': 'search-message',
                             placeholder: 'Search @people and #tags', maxlength: 101});
    this.listbox = h('ul', {id: 'search-options', role: 'listbox', 'aria-label': 'Suggestions'});
    this.message = h('p', {id: 'search-message', class: 'search-message', 'aria-live': 'polite'});
    this.popup = h('div', {class: 'search-popup', hidden: true}, this.listbox, this.message);
    this.form = h('form', {role: 'search', class: 'search-form', onsubmit: (event) => this.submit(event)},
      h('label', {for: 'search-input', class: 'visually-hidden'}, 'Search people and hashtags'),
      icon('search'), this.input, this.popup);
    container.replaceChildren(this.form);
    this.ask = debounce((text) => this.fetch(text), DELAY);
    this.input.addEventListener('input', () => this.typed());
    this.input.addEventListener('keydown', (event) => this.key(event));
    this.form.addEventListener('focusout', (event) => {
      if (!this.form.contains(event.relatedTarget)) this.close();
    });
  }

  typed() {
    const text = this.input.value.trim();
    if (!text || text === '@' || text === '#') return this.close();
    if (!INPUT.test(text)) {
      this.ask.cancel();
      this.asked += 1;
      return this.show([], text.length > 101 ? 'That is longer than any name or tag.'
                                               : 'Names and tags use only letters, digits and _.');
    }
    this.ask(text);
  }

  async fetch(text) {
    const asked = ++this.asked;
    if (this.controller) this.controller.abort();
    this.controller = new AbortController();
    try {
      const answer = await api('GET', `/tweet/search/${seg(text)}?count=1`, undefined,
                               {signal: this.controller.signal});
      if (asked !== this.asked) return;
      const options = [
        ...answer.users.map((name) => ({label: '@' + name, kind: 'Person', href: `#/u/${name}`})),
        ...answer.hashtags.map((tag) => ({label: tag, kind: 'Hashtag', href: `#/tag/${tag.slice(1)}`})),
      ];
      this.show(options, options.length ? `${options.length} suggestion${options.length === 1 ? '' : 's'}, use the arrow keys`
                                        : `Nothing starts with “${text}”.`);
    } catch (error) {
      if (error.name === 'AbortError' || asked !== this.asked) return;
      this.show([], error.message);
    }
  }

  show(options, message) {
    const chosen = this.active >= 0 ? this.options[this.active].label : null;  // kept if still offered
    this.options = options;
    this.active = -1;
    this.listbox.replaceChildren(...options.map((option, index) =>
      h('li', {id: `search-option-${index}`, role: 'option', 'aria-selected': 'false', class: 'option',
               onmousedown: (event) => event.preventDefault(),  // keep focus in the input
               onclick: () => this.choose(index)},
        h('span', {class: 'option-label'}, option.label), h('span', {class: 'option-kind'}, option.kind))));
    this.listbox.hidden = options.length === 0;
    this.message.textContent = message;
    this.popup.hidden = false;
    this.input.setAttribute('aria-expanded', String(options.length > 0));
    this.input.removeAttribute('aria-activedescendant');
    const again = options.findIndex((option) => option.label === chosen);
    if (again >= 0) this.move(again + 1);  // an answer that came while arrowing keeps the choice
  }

  /** Closed, by Escape, a choice, leaving the box or emptying it: no answer still on its way
   * (a question asked while typing, answered late) may open it again. */
  close() {
    this.ask.cancel();
    this.asked += 1;
    this.popup.hidden = true;
    this.options = [];
    this.active = -1;
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
  }

  move(step) {
    if (!this.options.length) return;
    this.active = (this.active + step + this.options.length + 1) % (this.options.length + 1);
    if (this.active === this.options.length) this.active = -1;  // past either end: back to the text
    for (const [index, item] of [...this.listbox.children].entries()) {
      item.setAttribute('aria-selected', String(index === this.active));
    }
    if (this.active >= 0) {
      this.input.setAttribute('aria-activedescendant', `search-option-${this.active}`);
      this.listbox.children[this.active].scrollIntoView({block: 'nearest'});
    } else {
      this.input.removeAttribute('aria-activedescendant');
    }
  }

  key(event) {
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      if (this.popup.hidden && this.input.value.trim()) {
        this.typed();
        return;
      }
      this.move(event.key === 'ArrowDown' ? 1 : -1);
    } else if (event.key === 'Escape') {
      if (!this.popup.hidden) {
        event.preventDefault();
        this.close();
      } else if (this.input.value) {
        event.preventDefault();
        this.input.value = '';
      }
    }
  }

  submit(event) {
    event.preventDefault();
    if (this.active >= 0) return this.choose(this.active);
    const text = this.input.value.trim();
    if (text.startsWith('#') && INPUT.test(text)) return this.leave(`#/tag/${text.slice(1).toLowerCase()}`);
    const exact = this.options.find((option) => option.label.toLowerCase() === (text.startsWith('@') ? text : '@' + text).toLowerCase());
    if (exact) return this.leave(exact.href);
    if (this.options.length) return this.choose(0);
  }

  choose(index) {
    this.leave(this.options[index].href);
  }

  leave(href) {
    this.close();
    this.input.value = '';
    this.go(href);
  }
}
