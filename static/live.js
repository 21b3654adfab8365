// The live home timeline over GET /ws (protocol: docs/API.md and docs/design.md, "Live timeline").
//
// One named reconnect loop: connect, send the auth frame with `since` = the last entry id we
// were sent (`retweet_id || id`), take the replay and `ready`, then live events. On any close
// but 4401/4400/4409 wait 0.5 s doubling to 30 s, with jitter, and go again. 4401 means the session
// is over (sign in again); 4400 means this client sent something the server cannot read,
// which retrying would only repeat.

export const State = Object.freeze({
  CONNECTING: 'connecting', // socket opening or replaying
  LIVE: 'live',             // `ready` received; events arrive as they happen
  WAITING: 'waiting',       // dropped; the next attempt is scheduled
  STOPPED: 'stopped',       // closed on purpose, or given up (4401 / 4400)
});

const BACKOFF_FIRST = 500;
const BACKOFF_MAX = 30_000;
const PING_EVERY = 25_000;  // a frame every so often shows a dead path even when the server is quiet
const PONG_WITHIN = 10_000;

export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_MALFORMED = 4400;
export const CLOSE_REPLACED = 4409;  // too many windows of this user: this one was the oldest

export class LiveConnection {
  /**
   * @param {() => string|null} token   the current session token
   * @param {object} handlers  {tweet(tweet), delete(id), notification(note), counts(frame), state(state, detail),
   *                            unauthorized(), replaced(), ready(frame)}
   */
  constructor(token, handlers) {
    this.token = token;
    this.handlers = handlers;
    this.since = null;
    this.watching = [];      // the tweet ids whose counts we want (sent again on each connection)
    this.state = State.STOPPED;
    this.attempts = 0;       // failed attempts since the last `ready`: the backoff exponent
    this.running = false;
    this.socket = null;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.retryAt = null;
    this.onOnline = () => { if (this.state === State.WAITING) this.connectNow(); };
    this.onOffline = () => { if (this.socket) this.drop(this.socket, 'browser offline'); };
  }

  /** Start from `since` (the newest entry already shown, or null). */
  start(since) {
    this.since = since;
    this.running = true;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    this.connectNow();
  }

  stop() {
    this.running = false;
    this.setState(State.STOPPED);
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    clearTimeout(this.retryTimer);
    this.stopPinging();
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, 'signed out');
    }
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    if (!this.running) return;
    this.retryAt = null;
    const token = this.token();
    if (!token) return this.giveUp(CLOSE_UNAUTHORIZED);
    const url = new URL('/ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.setState(State.CONNECTING);
    const socket = new WebSocket(url);  // the token goes in the first frame, never in the URL
    this.socket = socket;
    socket.addEventListener('open', () => {
      if (socket === this.socket) socket.send(JSON.stringify({type: 'auth', token, since: this.since}));
    });
    socket.addEventListener('message', (event) => this.receive(socket, event.data));
    socket.addEventListener('close', (event) => this.closed(socket, event.code));
  }

  receive(socket, data) {
    if (socket !== this.socket) return;
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    this.sawTraffic();
    if (frame.type === 'tweet' && frame.tweet) {
      this.since = frame.tweet.retweet_id || frame.tweet.id;
      this.handlers.tweet(frame.tweet);
    } else if (frame.type === 'delete') {
      this.handlers.delete(frame.id);
    } else if (frame.type === 'notification' && frame.notification) {
      this.handlers.notification(frame.notification);  // its id is no tweet's: `since` stays
    } else if (frame.type === 'counts') {
      this.handlers.counts(frame);
    } else if (frame.type === 'ready') {
      this.attempts = 0;
      this.setState(State.LIVE);
      this.startPinging(socket);
      if (this.watching.length) this.sendWatch(socket);
      if (this.handlers.ready) this.handlers.ready(frame);
    }
  }

  /** Watch these tweets' counts (at most 100), now and on every connection from now on. */
  watch(ids) {
    this.watching = ids;
    if (this.state === State.LIVE && this.socket) this.sendWatch(this.socket);
  }

  sendWatch(socket) {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({type: 'watch', ids: this.watching}));
  }

  closed(socket, code) {
    if (socket !== this.socket) return;  // an old socket we already left
    this.socket = null;
    this.stopPinging();
    if (!this.running) return;
    if (code === CLOSE_UNAUTHORIZED || code === CLOSE_MALFORMED || code === CLOSE_REPLACED) return this.giveUp(code);
    this.attempts += 1;
    const ceiling = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (this.attempts - 1));
    const delay = ceiling / 2 + Math.random() * ceiling / 2;  // "equal jitter": spread, never zero
    this.retryAt = Date.now() + delay;
    this.setState(State.WAITING, {retryAt: this.retryAt, code});
    this.retryTimer = setTimeout(() => this.connectNow(), delay);
  }

  /** Leave a socket we believe dead now, rather than when its close handshake gives up. */
  drop(socket, reason) {
    socket.close(4000, reason);
    this.closed(socket, 4000);
  }

  giveUp(code) {
    this.running = false;
    this.setState(State.STOPPED, {code});
    if (code === CLOSE_UNAUTHORIZED) this.handlers.unauthorized();
    if (code === CLOSE_REPLACED) this.handlers.replaced();
  }

  startPinging(socket) {
    this.stopPinging();
    this.pingTimer = setInterval(() => {
      if (socket.readyState !== WebSocket.OPEN) return;
      socket.send('{"type":"ping"}');
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.drop(socket, 'no answer to ping'), PONG_WITHIN);
    }, PING_EVERY);
  }

  sawTraffic() {
    clearTimeout(this.pongTimer);
  }

  stopPinging() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  setState(state, detail = {}) {
    this.state = state;
    this.handlers.state(state, detail);
  }
}
