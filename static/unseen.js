// "N new tweets": live tweets that arrived while you were scrolled down, on another view or
// in another tab. A pill under the header while Home shows (it takes you back to the top), and
// the count in the tab's title, until you are at the top of Home again.

import {h} from './dom.js';
import {setTitleCount} from './ui.js';

const AT_TOP = 80;  // px: this close to the top, the newest tweets are in view

export class UnseenTweets {
  /** `homeShown()`: whether the home view is the one on screen. */
  constructor(homeShown) {
    this.homeShown = homeShown;
    this.count = 0;
    this.pill = h('button', {type: 'button', class: 'new-pill', hidden: true, onclick: () => this.toTop()});
    document.body.append(this.pill);
    window.addEventListener('scroll', () => this.check(), {passive: true});
    document.addEventListener('visibilitychange', () => this.check());
  }

  seeing() {
    return this.homeShown() && window.scrollY < AT_TOP && document.visibilityState === 'visible';
  }

  /** A tweet from someone else entered the home timeline. */
  add() {
    if (this.seeing()) return;
    this.count += 1;
    this.draw();
  }

  /** Seen now? Called on scroll, on a tab coming back, and after each route. */
  check() {
    if (this.count && this.seeing()) this.count = 0;
    this.draw();
  }

  toTop() {
    window.scrollTo({top: 0, behavior: 'smooth'});
    this.count = 0;
    this.draw();
  }

  draw() {
    this.pill.hidden = !this.count || !this.homeShown();
    this.pill.textContent = `↑ ${this.count} new tweet${this.count === 1 ? '' : 's'}`;
    setTitleCount(this.count);
  }
}
