// The operator's page: polls GET /stats every second, shows the totals and each server
// process, and draws an SVG chart of what it has seen, from the last minute up to the last
// five (no chart library, nothing from beyond this origin). The history survives a reload
// of the tab (sessionStorage).

import {h, svg} from './dom.js';

const EVERY = 1000;
const WINDOW = 5 * 60 * 1000;
const HISTORY_KEY = 'chirp.monitor.history';
const HEIGHT = 220;
const PAD = {top: 12, right: 12, bottom: 26, left: 40};

const chart = document.getElementById('chart');
const state = document.getElementById('poll-state');
let history = loadHistory();  // [{t (ms), connections, users}] or {t, gap: true} for a failed poll

function loadHistory() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(HISTORY_KEY)) || [];
    return kept.filter((point) => point.t > Date.now() - WINDOW);
  } catch {
    return [];
  }
}

function remember(point) {
  history.push(point);
  const cutoff = Date.now() - WINDOW;
  while (history.length && history[0].t < cutoff) history.shift();
  sessionStorage.setItem(HISTORY_KEY, JSON.stringify(history));
}

async function poll() {
  const started = Date.now();
  try {
    const response = await fetch('/stats', {cache: 'no-store', headers: {Accept: 'application/json'}});
    if (!response.ok) throw new Error(`/stats answered ${response.status}`);
    const stats = await response.json();
    remember({t: Date.now(), connections: stats.connections, users: stats.users_online});
    showTotals(stats);
    showProcesses(stats.processes);
    setState('live', `Updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    remember({t: Date.now(), gap: true});
    setState('waiting', `Cannot reach /stats (${error.message}); retrying`);
  }
  draw();
  setTimeout(poll, Math.max(0, EVERY - (Date.now() - started)));
}

function setState(name, text) {
  state.dataset.state = name;
  state.querySelector('.label').textContent = text;
}

function showTotals(stats) {
  document.getElementById('connections').textContent = stats.connections.toLocaleString();
  document.getElementById('users-online').textContent = stats.users_online.toLocaleString();
  document.getElementById('process-count').textContent = stats.processes.length.toLocaleString();
}

function uptime(startedAt) {
  const seconds = Math.max(0, Math.round(Date.now() / 1000 - startedAt));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d ${Math.floor((seconds % 86400) / 3600)} h`;
}

function showProcesses(processes) {
  const rows = [...processes].sort((a, b) => a.id.localeCompare(b.id)).map((process) =>
    h('tr', {},
      h('th', {scope: 'row', class: 'process-id'}, process.id),
      h('td', {}, process.connections.toLocaleString()),
      h('td', {}, process.users_online.toLocaleString()),
      h('td', {}, uptime(process.started_at))));
  if (!rows.length) rows.push(h('tr', {}, h('td', {colspan: 4, class: 'empty'}, 'No server process is reporting.')));
  document.getElementById('process-rows').replaceChildren(...rows);
}

/** A round upper bound for the y axis: 4, 8, 10, 20, 40, 50, 100, ... */
function niceMax(value) {
  if (value <= 4) return 4;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 4, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

function linePath(points, x, y, field) {
  let d = '';
  let pen = false;
  for (const point of points) {
    if (point.gap) {
      pen = false;
      continue;
    }
    d += `${pen ? 'L' : 'M'}${x(point.t).toFixed(1)} ${y(point[field]).toFixed(1)}`;
    pen = true;
  }
  return d;
}

/** The chart spans what we have, from one minute up to five, in whole minutes. */
function span(now) {
  const first = history.length ? history[0].t : now;
  return Math.min(WINDOW, Math.max(60_000, Math.ceil((now - first) / 60_000) * 60_000));
}

function draw() {
  const width = Math.max(280, chart.clientWidth);
  const now = Date.now();
  const shown = span(now);
  const minutes = shown / 60_000;
  document.getElementById('chart-title').textContent = minutes === 1 ? 'The last minute' : `The last ${minutes} minutes`;
  const values = history.filter((point) => !point.gap);
  const top = niceMax(Math.max(0, ...values.map((point) => Math.max(point.connections, point.users))));
  const x = (t) => PAD.left + (width - PAD.left - PAD.right) * (1 - (now - t) / shown);
  const y = (v) => PAD.top + (HEIGHT - PAD.top - PAD.bottom) * (1 - v / top);
  const parts = [];
  for (let i = 0; i <= 4; i += 1) {
    const value = (top * i) / 4;
    parts.push(svg('line', {x1: PAD.left, x2: width - PAD.right, y1: y(value), y2: y(value), class: 'grid'}));
    parts.push(svg('text', {x: PAD.left - 8, y: y(value) + 4, 'text-anchor': 'end', class: 'axis'},
                   document.createTextNode(Number.isInteger(value) ? String(value) : value.toFixed(1))));
  }
  const step = minutes === 1 ? 15_000 : 60_000;
  for (let ago = shown; ago >= 0; ago -= step) {
    const label = ago === 0 ? 'now' : step < 60_000 ? `−${ago / 1000} s` : `−${ago / 60_000} min`;
    parts.push(svg('text', {x: x(now - ago), y: HEIGHT - 6, class: 'axis',
                            'text-anchor': ago === shown ? 'start' : ago === 0 ? 'end' : 'middle'},
                   document.createTextNode(label)));
  }
  parts.push(svg('path', {d: linePath(history, x, y, 'connections'), class: 'series connections'}));
  parts.push(svg('path', {d: linePath(history, x, y, 'users'), class: 'series users'}));  // dashed, on top
  const last = values[values.length - 1];
  const peak = Math.max(0, ...values.map((point) => point.connections));
  const summary = last
    ? `Live connections over the last ${minutes === 1 ? 'minute' : minutes + ' minutes'}: now ${last.connections}, highest ${peak}; users online now ${last.users}.`
    : 'No figures yet.';
  chart.replaceChildren(svg('svg', {viewBox: `0 0 ${width} ${HEIGHT}`, height: HEIGHT, role: 'img',
                                    'aria-label': summary}, ...parts));
}

window.addEventListener('resize', draw);
poll();
