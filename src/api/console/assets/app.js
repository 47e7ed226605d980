// meeting-agent web console: plain JS, no framework. Every API call carries the credential
// (an operator API key or a participant token) as a bearer; it lives in sessionStorage only.
'use strict';

const KEY = 'meeting-agent-console-credential';
const view = () => document.getElementById('view');
let session = null;
let hls = null;

function credential() { return sessionStorage.getItem(KEY) || ''; }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts = {}) {
  const res = await fetch(path, {
    ...opts,
    headers: { Authorization: 'Bearer ' + credential(), ...(opts.headers || {}) },
  });
  if (!res.ok) {
    let message = res.statusText;
    try { message = (await res.json()).error || message; } catch (_) { /* not JSON */ }
    throw new HttpError(res.status, message);
  }
  return res;
}
const json = async (path) => (await api(path)).json();

function clock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  return (h ? h + ':' + two(m) : m) + ':' + two(sec);
}
const when = (ms) => new Date(ms).toLocaleString();
const duration = (ms) => (ms === null || ms === undefined ? '—' : clock(ms));

function setTitle(text) {
  document.title = text + ' — meeting-agent console';
}

function show(...nodes) {
  if (hls) { hls.destroy(); hls = null; }
  const v = view();
  v.replaceChildren(...nodes);
  const h1 = v.querySelector('h1');
  if (h1) { h1.tabIndex = -1; h1.focus({ preventScroll: true }); }
}

function failure(e, what) {
  const status = e instanceof HttpError ? e.status : 0;
  const text = status === 404 ? `${what} not found (404): it does not exist or is not in your rooms.`
    : status === 401 ? 'The key or token is not valid (401). Sign in again.'
      : status === 403 ? `Not allowed (403): ${e.message}`
        : `${what} could not be loaded: ${e.message}`;
  document.body.dataset.ready = 'error';
  document.body.dataset.status = String(status);
  show(el('h1', { text: status === 404 ? 'Not found' : 'Error' }),
    el('p', { class: 'error', role: 'alert', id: 'error', text }));
  if (status === 401) signOut();
}

// --- Sign in ------------------------------------------------------------------------------
function readFragmentToken() {
  const m = location.hash.match(/^#token=([^&]+)(?:&next=(.*))?$/);
  if (!m) return;
  sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
  const next = m[2] ? decodeURIComponent(m[2]) : '#/meetings';
  // The token leaves the address bar (and history) at once.
  history.replaceState(null, '', location.pathname + next);
}

function signOut() {
  sessionStorage.removeItem(KEY);
  session = null;
  document.getElementById('signout').hidden = true;
  document.getElementById('who').textContent = '';
  document.getElementById('signin').hidden = false;
}

async function start() {
  readFragmentToken();
  document.getElementById('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = document.getElementById('credential');
    sessionStorage.setItem(KEY, input.value.trim());
    input.value = '';
    await connect();
  });
  document.getElementById('signout').addEventListener('click', () => { signOut(); view().replaceChildren(); });
  window.addEventListener('hashchange', route);
  await connect();
}

async function connect() {
  const error = document.getElementById('signin-error');
  if (!credential()) { signOut(); document.body.dataset.ready = 'signin'; return; }
  try {
    session = await json('/v1/console/session');
  } catch (e) {
    signOut();
    error.textContent = e instanceof HttpError && e.status === 401
      ? 'That key or token is not valid (or has expired).' : 'Cannot reach the API: ' + e.message;
    document.body.dataset.ready = 'signin';
    return;
  }
  error.textContent = '';
  document.getElementById('signin').hidden = true;
  document.getElementById('signout').hidden = false;
  const rooms = session.rooms.includes('*') ? 'every room' : 'room ' + session.rooms.join(', ');
  document.getElementById('who').textContent =
    (session.kind === 'participant' ? 'Participant (read-only), ' : 'Operator, ') + rooms;
  await route();
}

async function route() {
  if (!session) return;
  const hash = location.hash || '#/meetings';
  document.body.dataset.ready = 'loading';
  let m;
  if ((m = hash.match(/^#\/meetings\/([^/?]+)$/))) return meetingPage(decodeURIComponent(m[1]));
  if (hash.startsWith('#/recordings')) return recordingsPage();
  const q = new URLSearchParams(hash.split('?')[1] || '').get('q') || '';
  return meetingsPage(q);
}

// --- Meetings and search --------------------------------------------------------------------
async function search(q) {
  const rooms = session.rooms.includes('*') ? [null] : session.rooms;
  const hits = [];
  for (const room of rooms) {
    const p = new URLSearchParams({ q, limit: '50' });
    if (room) p.set('room', room);
    hits.push(...await json('/v1/search?' + p));
  }
  return hits.sort((a, b) => b.score - a.score);
}

function snippet(text) {
  // Matches come in [brackets]: shown as <mark> with the brackets kept (not colour only).
  const out = [];
  for (const part of text.split(/(\[[^\]]*\])/)) {
    out.push(part.startsWith('[') && part.endsWith(']') ? el('mark', { text: part }) : part);
  }
  return out;
}

async function meetingsPage(q) {
  setTitle('Meetings');
  const form = el('form', { role: 'search', id: 'search-form', onsubmit: (ev) => {
    ev.preventDefault();
    location.hash = '#/meetings?q=' + encodeURIComponent(document.getElementById('q').value);
  } },
  el('label', { for: 'q', text: 'Search what was said ' }),
  el('input', { id: 'q', name: 'q', type: 'search', value: q }),
  ' ', el('button', { type: 'submit', text: 'Search' }));
  let meetings;
  try { meetings = await json('/v1/meetings'); } catch (e) { return failure(e, 'Meetings'); }
  meetings.sort((a, b) => b.started_at_ms - a.started_at_ms);
  const results = el('section', { id: 'results', 'aria-labelledby': 'results-title' });
  if (q) {
    let hits;
    try { hits = await search(q); } catch (e) { return failure(e, 'Search'); }
    results.append(el('h2', { id: 'results-title', text: `${hits.length} result${hits.length === 1 ? '' : 's'} for “${q}”` }),
      el('ol', { class: 'hits' }, hits.map((h) => {
        const at = h.offset_ms !== null && h.offset_ms !== undefined ? `?t=${h.offset_ms}` : '';
        return el('li', { class: 'hit' },
          el('a', { href: `#/meetings/${encodeURIComponent(h.conversation)}${at}` },
            `${h.room || ''} · ${h.offset_ms !== null && h.offset_ms !== undefined ? clock(h.offset_ms) : when(h.at_ms)} · ${h.speaker}`),
          ': ', snippet(h.snippet));
      })));
  }
  const table = el('table', { id: 'meetings' },
    el('caption', { class: 'sr-only', text: 'Meetings, newest first' }),
    el('thead', {}, el('tr', {}, ['Room', 'Started', 'Duration', 'Meeting'].map((t) => el('th', { scope: 'col', text: t })))),
    el('tbody', {}, meetings.map((m) => el('tr', {},
      el('td', { text: m.room }),
      el('td', { text: when(m.started_at_ms) }),
      el('td', { text: m.ended_at_ms ? duration(m.ended_at_ms - m.started_at_ms) : 'in progress' }),
      el('td', {}, el('a', { href: '#/meetings/' + encodeURIComponent(m.id), text: 'Open ' + m.id }))))));
  show(el('h1', { text: 'Meetings' }), form, results,
    meetings.length ? table : el('p', { text: 'No meetings yet.' }));
  document.body.dataset.ready = q ? 'search' : 'meetings';
}

// --- A meeting ------------------------------------------------------------------------------
function recordingOf(meeting, recordings) {
  const end = meeting.ended_at_ms || Number.MAX_SAFE_INTEGER;
  return recordings
    .filter((r) => r.room === meeting.room && r.started_unix_ms >= meeting.started_at_ms - 60000 && r.started_unix_ms <= end)
    .sort((a, b) => a.started_unix_ms - b.started_unix_ms)[0] || null;
}

function shiftVtt(vtt, offsetMs) {
  if (!offsetMs) return vtt;
  const parse = (t) => {
    const p = t.split(':').map(Number);
    return (p.length === 3 ? p[0] * 3600 + p[1] * 60 + p[2] : p[0] * 60 + p[1]) * 1000;
  };
  const fmt = (ms) => {
    ms = Math.max(0, Math.round(ms));
    const h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60, s = Math.floor(ms / 1000) % 60;
    const two = (n) => String(n).padStart(2, '0');
    return `${two(h)}:${two(m)}:${two(s)}.${String(ms % 1000).padStart(3, '0')}`;
  };
  return vtt.replace(/((?:\d+:)?\d{2}:\d{2}\.\d{3}) --> ((?:\d+:)?\d{2}:\d{2}\.\d{3})/g,
    (_, a, b) => `${fmt(parse(a) - offsetMs)} --> ${fmt(parse(b) - offsetMs)}`);
}

let hlsLoading = null;
function loadHls() {
  if (window.Hls) return Promise.resolve(true);
  if (!session.player_installed) return Promise.resolve(false);
  hlsLoading = hlsLoading || new Promise((resolve) => {
    const s = el('script', { src: '/console/hls.min.js' });
    s.onload = () => resolve(!!window.Hls);
    s.onerror = () => resolve(false);
    document.head.append(s);
  });
  return hlsLoading;
}

async function attachPlayer(video, recording, status) {
  if (!(await loadHls())) {
    status.textContent = 'The player assets (hls.js) are not installed in this build: run scripts/console_setup.sh and rebuild.';
    status.className = 'notice';
    video.dataset.player = 'missing';
    return;
  }
  if (!window.Hls.isSupported()) {
    status.textContent = 'This browser cannot play the recording here (no Media Source Extensions).';
    video.dataset.player = 'unsupported';
    return;
  }
  const base = `/v1/recordings/${encodeURIComponent(recording.id)}`;
  // The segmented playlist (live while the meeting runs, VOD after); recordings made before
  // live HLS, or with it off, have only the byte-range one over the single file.
  const sources = [`${base}/live.m3u8?via=api`, `${base}/playlist.m3u8?via=api`];
  const tryNext = () => {
    const src = sources.shift();
    if (!src) { status.textContent = 'The recording cannot be played.'; video.dataset.player = 'failed'; return; }
    if (hls) hls.destroy();
    video.dataset.source = src;
    hls = new window.Hls({
      xhrSetup: (xhr) => xhr.setRequestHeader('Authorization', 'Bearer ' + credential()),
      enableWorker: true,
      // Two 2 s segments behind the live edge: hls_live_latency_s in BENCHMARKS.md.
      liveSyncDurationCount: 2,
    });
    hls.on(window.Hls.Events.ERROR, (_, data) => {
      if (data.fatal) {
        console.warn('player error', data.type, data.details);
        tryNext();
      }
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => { video.dataset.player = 'ready'; status.textContent = ''; });
    hls.loadSource(src);
    hls.attachMedia(video);
  };
  tryNext();
}

async function posterOf(video, recording) {
  try {
    const p = await json(`/v1/recordings/${encodeURIComponent(recording.id)}/poster`);
    if (/^https?:/.test(p.url)) video.poster = p.url;
  } catch (_) { /* no poster */ }
}

function barChart(id, title, rows, unit) {
  // rows: [{label, value, text}] — bars with their values written beside them.
  const max = Math.max(1, ...rows.map((r) => r.value));
  const rowH = 24, labelW = 140, barW = 220, h = rows.length * rowH + 10;
  const chart = svg('svg', { role: 'img', 'aria-labelledby': id + '-t', viewBox: `0 0 ${labelW + barW + 300} ${h}`, width: '100%' },
    svg('title', { id: id + '-t' }, title),
    svg('defs', {}, svg('pattern', { id: 'hatch', width: '6', height: '6', patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
      svg('rect', { width: '2', height: '6', fill: 'currentColor' }))),
    rows.map((r, i) => {
      const y = 5 + i * rowH;
      const w = Math.max(1, Math.round((r.value / max) * barW));
      return svg('g', {},
        svg('text', { x: '0', y: String(y + 15) }, r.label.length > 20 ? r.label.slice(0, 19) + '…' : r.label),
        svg('rect', { class: i % 2 ? 'bar alt' : 'bar', x: String(labelW), y: String(y + 3), width: String(w), height: String(rowH - 8) }),
        svg('text', { x: String(labelW + w + 6), y: String(y + 15) }, r.text));
    }));
  const table = el('table', { class: 'sr-only' },
    el('caption', { text: title }),
    el('tr', {}, el('th', { scope: 'col', text: 'Who' }), el('th', { scope: 'col', text: unit })),
    rows.map((r) => el('tr', {}, el('td', { text: r.label }), el('td', { text: r.text }))));
  return el('figure', { id }, el('figcaption', { text: title }), chart, table);
}

function summaryView(text) {
  if (!text) return el('p', { text: 'No summary yet (the agent writes one when the meeting ends).' });
  return el('div', { class: 'summary', id: 'summary-text', text });
}

function qualityView(report) {
  const tracks = new Map();
  for (const s of report.samples) {
    const key = `${s.participant} ${s.source || s.kind}`;
    const t = tracks.get(key) || { packets: 0, lost: 0, jitter: 0, n: 0, bytes: 0, ms: 0 };
    t.packets += s.packets; t.lost += s.packets_lost; t.jitter += s.jitter_us; t.n += 1;
    t.bytes += s.bytes; t.ms += s.interval_ms;
    tracks.set(key, t);
  }
  if (!tracks.size) return el('p', { text: 'No call-quality samples for this meeting.' });
  const rows = [...tracks.entries()].map(([label, t]) => {
    const loss = t.packets + t.lost ? (100 * t.lost) / (t.packets + t.lost) : 0;
    const kbps = t.ms ? Math.round((t.bytes * 8) / t.ms) : 0;
    return { label, value: kbps, text: `${kbps} kbit/s, ${loss.toFixed(1)} % lost, jitter ${(t.jitter / t.n / 1000).toFixed(1)} ms` };
  });
  const moments = report.moments.length
    ? el('ul', { id: 'moments' }, report.moments.map((m) => el('li', { text: m.text || `${m.participant}: ${m.kind}` })))
    : el('p', { text: 'No bad moments.' });
  return el('div', {}, barChart('quality-chart', 'Received bitrate, loss and jitter by track', rows, 'Quality'),
    el('h3', { text: 'Worst moments' }), moments);
}

async function meetingPage(id) {
  const t0 = performance.now();
  let meetingSummary, segments, vtt;
  try {
    meetingSummary = await json(`/v1/meetings/${encodeURIComponent(id)}/summary`);
    [segments, vtt] = await Promise.all([
      json(`/v1/meetings/${encodeURIComponent(id)}/transcript?format=json`),
      api(`/v1/meetings/${encodeURIComponent(id)}/transcript?format=vtt`).then((r) => r.text()),
    ]);
  } catch (e) { return failure(e, 'Meeting'); }
  const meeting = meetingSummary.meeting;
  setTitle(`Meeting in ${meeting.room}`);
  const status = el('p', { id: 'player-status', role: 'status' });
  const video = el('video', { id: 'player', controls: true, preload: 'metadata', playsinline: true });
  const transcript = el('ol', { id: 'transcript', 'aria-label': 'Transcript: choose a line to play from there' });
  let offsetMs = 0; // recording start relative to the meeting start
  const lines = segments.map((s, i) => {
    const li = el('li', { 'data-start-ms': s.start_ms, 'data-end-ms': s.end_ms, id: 'line-' + i },
      el('button', { type: 'button', onclick: () => seekTo(s.start_ms) },
        el('span', { class: 'marker', 'aria-hidden': 'true' }),
        el('span', { class: 'time', text: clock(s.start_ms) }),
        el('span', { class: 'speaker', text: s.speaker + ':' }),
        el('span', { class: 'text', text: s.text })));
    return li;
  });
  transcript.append(...lines);
  function seekTo(ms) {
    video.currentTime = Math.max(0, (ms - offsetMs) / 1000);
    if (video.paused) video.play().catch(() => {});
  }
  let current = null;
  function highlight() {
    const ms = video.currentTime * 1000 + offsetMs;
    let found = null;
    // Lines are in time order: the last one started at or before now.
    let lo = 0, hi = segments.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (segments[mid].start_ms <= ms) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    if (found !== null && ms > segments[found].end_ms + 2000) found = null;
    if (found === current) return;
    if (current !== null) {
      lines[current].removeAttribute('aria-current');
      lines[current].querySelector('.marker').textContent = '';
    }
    current = found;
    if (current !== null) {
      lines[current].setAttribute('aria-current', 'true');
      lines[current].querySelector('.marker').textContent = '▶';
      lines[current].scrollIntoView({ block: 'nearest' });
    }
  }
  video.addEventListener('timeupdate', highlight);
  video.addEventListener('seeked', highlight);

  const speaking = new Map();
  for (const s of segments) speaking.set(s.speaker, (speaking.get(s.speaker) || 0) + (s.end_ms - s.start_ms));
  const transcriptSection = el('section', { 'aria-labelledby': 'transcript-title' },
    el('h2', { id: 'transcript-title', text: `Transcript (${segments.length} lines)` }),
    segments.length ? transcript : el('p', { text: 'No transcript.' }));
  const playerSection = el('section', { 'aria-labelledby': 'player-title' },
    el('h2', { id: 'player-title', text: 'Recording' }), video, status);
  const details = el('div', { id: 'details' });
  show(el('h1', { text: `Meeting in ${meeting.room}` }),
    el('p', { text: `${when(meeting.started_at_ms)} · ${meeting.ended_at_ms ? duration(meeting.ended_at_ms - meeting.started_at_ms) : 'in progress'} · ${meeting.id}` }),
    el('div', { class: 'meeting' }, playerSection, transcriptSection),
    el('section', { 'aria-labelledby': 'summary-title' }, el('h2', { id: 'summary-title', text: 'Summary' }), summaryView(meetingSummary.summary)),
    details);
  // Interactive: the transcript is there and a line can be chosen.
  document.body.dataset.ready = 'meeting';
  window.consoleTimings = { meetingInteractiveMs: performance.now(), meetingRouteMs: performance.now() - t0 };

  // The rest arrives after: recordings, engagement, quality.
  const [recordings, engagement, quality] = await Promise.all([
    json('/v1/recordings?room=' + encodeURIComponent(meeting.room)).catch(() => []),
    json(`/v1/meetings/${encodeURIComponent(id)}/engagement`).catch(() => []),
    json(`/v1/meetings/${encodeURIComponent(id)}/quality`).catch(() => null),
  ]);
  const recording = recordingOf(meeting, recordings);
  if (recording) {
    offsetMs = recording.started_unix_ms - meeting.started_at_ms;
    video.dataset.recording = recording.id;
    video.dataset.offsetMs = String(offsetMs);
    const track = el('track', { kind: 'captions', srclang: 'en', label: 'Captions (transcript)', default: true,
      src: URL.createObjectURL(new Blob([shiftVtt(vtt, offsetMs)], { type: 'text/vtt' })) });
    video.append(track);
    posterOf(video, recording);
    attachPlayer(video, recording, status);
  } else {
    status.textContent = 'No recording of this meeting.';
    video.dataset.player = 'none';
  }
  const talk = engagement.length
    ? engagement.map((e) => ({ label: e.participant, value: e.speaking_ms, text: clock(e.speaking_ms) }))
    : [...speaking.entries()].map(([label, ms]) => ({ label, value: ms, text: clock(ms) + ' (from the transcript)' }));
  talk.sort((a, b) => b.value - a.value);
  const attendance = engagement.length ? el('table', { id: 'attendance' },
    el('caption', { text: 'Attendance' }),
    el('thead', {}, el('tr', {}, ['Participant', 'First seen', 'Last seen', 'Joins', 'Speaking', 'Camera', 'Screen'].map((t) => el('th', { scope: 'col', text: t })))),
    el('tbody', {}, engagement.map((e) => el('tr', {},
      el('td', { text: e.participant }), el('td', { text: when(e.first_seen_ms) }), el('td', { text: when(e.last_seen_ms) }),
      el('td', { text: e.joins }), el('td', { text: clock(e.speaking_ms) }), el('td', { text: clock(e.camera_ms) }), el('td', { text: clock(e.screen_ms) })))))
    : el('p', { text: 'No attendance recorded.' });
  details.append(
    el('section', { 'aria-labelledby': 'attendance-title' }, el('h2', { id: 'attendance-title', text: 'Attendance and speaking time' }),
      attendance,
      el('div', { class: 'charts' },
        talk.length ? barChart('talk-chart', 'Speaking time by participant', talk, 'Speaking time') : el('p', { text: 'Nobody spoke.' }),
        el('section', { 'aria-labelledby': 'quality-title' }, el('h2', { id: 'quality-title', text: 'Call quality' }),
          quality ? qualityView(quality) : el('p', { text: 'No call-quality data.' })))));
  // A search hit's ?t= link: play from there.
  const t = new URLSearchParams(location.hash.split('?')[1] || '').get('t');
  if (t && recording) video.addEventListener('loadedmetadata', () => seekTo(Number(t)), { once: true });
  document.body.dataset.details = 'ready';
}

// --- Recordings -----------------------------------------------------------------------------
function size(bytes) {
  if (bytes === null || bytes === undefined) return '—';
  return bytes > 1e6 ? (bytes / 1e6).toFixed(1) + ' MB' : Math.round(bytes / 1e3) + ' kB';
}

async function recordingsPage() {
  setTitle('Recordings');
  let list;
  try { list = await json('/v1/recordings'); } catch (e) { return failure(e, 'Recordings'); }
  list.sort((a, b) => b.started_unix_ms - a.started_unix_ms);
  const days = session.recording_retention_days;
  const perRoom = Object.entries(session.room_recording_retention_days || {});
  const retention = el('p', { id: 'retention' },
    days ? `Retention: recordings are deleted ${days} days after they end.` : 'Retention: recordings are kept until deleted.',
    perRoom.length ? ' Per room: ' + perRoom.map(([r, d]) => `${r}: ${d} days`).join(', ') + '.' : '');
  const message = el('p', { id: 'recordings-message', role: 'status' });
  const rows = list.map((r) => {
    const actions = el('td', {});
    if (session.may_delete) {
      actions.append(el('button', { type: 'button', 'aria-label': `Delete recording ${r.id}`, onclick: async () => {
        if (!window.confirm(`Delete recording ${r.id} of ${r.room}? This cannot be undone.`)) return;
        try {
          await api(`/v1/recordings/${encodeURIComponent(r.id)}`, { method: 'DELETE' });
          message.textContent = `Deleted recording ${r.id}.`;
          row.remove();
        } catch (e) { message.textContent = `Could not delete ${r.id}: ${e.message}`; }
      } }, 'Delete'));
    } else actions.textContent = 'read-only';
    const row = el('tr', {},
      el('td', { text: r.room }), el('td', { text: when(r.started_unix_ms) }), el('td', { text: duration(r.duration_ms) }),
      el('td', { text: size(r.size_bytes) }), el('td', { text: r.status }), el('td', { text: r.participants.join(', ') }), actions);
    return row;
  });
  show(el('h1', { text: 'Recordings' }), retention, message,
    list.length ? el('table', { id: 'recordings' },
      el('caption', { class: 'sr-only', text: 'Recordings, newest first' }),
      el('thead', {}, el('tr', {}, ['Room', 'Started', 'Duration', 'Size', 'Status', 'Participants', 'Actions'].map((t) => el('th', { scope: 'col', text: t })))),
      el('tbody', {}, rows)) : el('p', { text: 'No recordings.' }));
  document.body.dataset.ready = 'recordings';
}

document.addEventListener('DOMContentLoaded', start);
