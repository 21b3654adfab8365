// Live counts: the tweets on screen are watched over the socket ({"type": "watch", "ids"},
// at most 100, each frame replacing the last), so their like and retweet counts change live.
// What is on screen is an IntersectionObserver's answer over every tweet in `root`; new and
// redrawn tweets are found by a MutationObserver. A change is sent once it has settled.
// A redrawn tweet (new counts) is a new element in the old one's place: it counts as shown
// until its own first report, which a busy browser may deliver after the settle time (the
// tweet was unwatched meanwhile, and a change in that gap never arrived).

const MAX_WATCHED = 100;
const SETTLE_MS = 300;

export class ScreenWatch {
  /** `send(ids)`: tell the server (LiveConnection.watch). */
  constructor(root, send) {
    this.root = root;
    this.send = send;
    this.shown = new Set();      // tweet elements at least partly on screen
    this.observed = new WeakSet();
    this.reported = new WeakSet();  // elements the IntersectionObserver has answered for
    this.last = '';
    this.timer = null;
    this.visibility = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        this.reported.add(entry.target);
        if (entry.isIntersecting) this.shown.add(entry.target);
        else this.shown.delete(entry.target);
      }
      this.settle();
    });
    new MutationObserver(() => { this.observeNew(root); this.settle(); })
      .observe(root, {childList: true, subtree: true});
    this.observeNew(root);
  }

  observeNew(root) {
    for (const element of root.querySelectorAll('article[data-tweet-id]')) {
      if (this.observed.has(element)) continue;
      this.observed.add(element);
      this.visibility.observe(element);
    }
  }

  settle() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), SETTLE_MS);
  }

  flush() {
    for (const element of this.shown) {
      if (element.isConnected) continue;
      this.shown.delete(element);
      this.visibility.unobserve(element);
      for (const twin of this.root.querySelectorAll(`article[data-tweet-id="${element.dataset.tweetId}"]`)) {
        if (!this.reported.has(twin)) this.shown.add(twin);  // its redrawn self, not yet answered for
      }
    }
    const ids = [...new Set([...this.shown].map((element) => element.dataset.tweetId))].slice(0, MAX_WATCHED);
    const key = ids.join(',');
    if (key === this.last) return;
    this.last = key;
    this.send(ids);
  }
}
