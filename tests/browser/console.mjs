#!/usr/bin/env node
// The web console in Debian's Chromium (puppeteer-core): what a person would see and do.
//
//   node tests/browser/console.mjs --url http://127.0.0.1:PORT --key KEY --meeting ID
//     [--other-meeting ID] [--phrase WORD] [--token JWT] [--other-token JWT]
//     [--screenshot PATH] [--delete-recording] [--out result.json] [--chromium PATH]
//
// The console is opened with the key in the URL fragment (`#token=`; the page moves it into
// sessionStorage and out of the address bar). On the meeting page: the video plays
// (currentTime advances), a click and an Enter on transcript lines seek there, a screenshot is
// saved; search finds the phrase; the other meeting shows "not found"; the participant token
// opens its room's meeting and neither the other room's meeting nor, for another room's token,
// this one. The result is JSON (--out); exit 0 when the run got to the end, 1 otherwise.
//
// Bench mode: --bench N loads the meeting page N times and reports navigation start to
// interactive (transcript rendered, a line clickable) for each load.

import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import puppeteer from 'puppeteer-core';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    key: { type: 'string' },
    meeting: { type: 'string' },
    'other-meeting': { type: 'string' },
    phrase: { type: 'string', default: 'budget' },
    token: { type: 'string' },
    'other-token': { type: 'string' },
    'delete-recording': { type: 'boolean', default: false },
    screenshot: { type: 'string' },
    out: { type: 'string' },
    bench: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});
if (!opts.url || !opts.key || !opts.meeting) {
  console.error('usage: console.mjs --url URL --key KEY --meeting ID [...]');
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const result = { schema: 1, steps: [] };
const step = (name) => { result.steps.push(name); console.error(`console.mjs: ${name}`); };

function consoleUrl(credential, next) {
  return `${opts.url}/console#token=${encodeURIComponent(credential)}&next=${encodeURIComponent(next)}`;
}

async function open(page, credential, next, ready) {
  await page.goto('about:blank');
  await page.goto(consoleUrl(credential, next), { waitUntil: 'domcontentloaded' });
  await page.waitForFunction((r) => r.includes(document.body.dataset.ready), { timeout: 30_000 }, ready);
  return page.evaluate(() => ({
    ready: document.body.dataset.ready,
    status: document.body.dataset.status || null,
    text: (document.getElementById('error') || {}).textContent || '',
    who: document.getElementById('who').textContent,
    lines: document.querySelectorAll('#transcript li').length,
    address: location.href,
  }));
}

const args = ['--autoplay-policy=no-user-gesture-required', '--mute-audio', '--disable-dev-shm-usage',
  '--no-first-run', '--no-default-browser-check', '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows'];
if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');

let browser;
let ok = false;
try {
  browser = await puppeteer.launch({
    executablePath: opts.chromium, headless: true, pipe: true, args, protocolTimeout: 60_000,
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1000 });
  page.on('console', (msg) => { if (msg.type() === 'error' || msg.type() === 'warn') console.error(`[page ${msg.type()}] ${msg.text()}`); });
  page.on('pageerror', (e) => { console.error(`[page error] ${e.message}`); (result.page_errors ||= []).push(e.message); });

  if (opts.bench) {
    const n = Number(opts.bench);
    const loads = [];
    for (let i = 0; i < n + 1; i++) {
      await page.goto('about:blank');
      await page.goto(consoleUrl(opts.key, `#/meetings/${encodeURIComponent(opts.meeting)}`), { waitUntil: 'domcontentloaded' });
      await page.waitForFunction(() => document.body.dataset.ready === 'meeting'
        && document.querySelector('#transcript li button'), { timeout: 60_000, polling: 'raf' });
      const ms = await page.evaluate(() => window.consoleTimings.meetingInteractiveMs);
      const lines = await page.evaluate(() => document.querySelectorAll('#transcript li').length);
      if (i > 0) loads.push({ ms, lines }); // the first load warms the cache of the scripts
    }
    result.bench = loads;
    ok = true;
  } else {
    // The meeting page with the operator's key.
    step('meeting page');
    result.meeting = await open(page, opts.key, `#/meetings/${encodeURIComponent(opts.meeting)}`, ['meeting', 'error']);
    result.meeting.address_has_token = result.meeting.address.includes('token=');
    await page.waitForFunction(() => ['ready', 'missing', 'failed', 'none', 'unsupported'].includes(document.getElementById('player').dataset.player), { timeout: 30_000 });
    result.meeting.player = await page.$eval('#player', (v) => v.dataset.player);
    result.meeting.source = await page.$eval('#player', (v) => v.dataset.source || null);
    step('playback');
    await page.$eval('#player', (v) => { v.muted = true; return v.play(); });
    await page.waitForFunction(() => document.getElementById('player').currentTime > 0.2, { timeout: 30_000 });
    const t0 = await page.$eval('#player', (v) => v.currentTime);
    await sleep(2000);
    const t1 = await page.$eval('#player', (v) => v.currentTime);
    result.playback = { t0, t1, tracks: await page.$eval('#player', (v) => v.textTracks.length) };
    // The byte-range playlist over the single file plays in hls.js too (the console falls back
    // to it for recordings without live HLS).
    step('byte-range playback');
    result.byte_range = await page.evaluate(async (key) => {
      const src = document.getElementById('player').dataset.source.replace('/live.m3u8?', '/playlist.m3u8?');
      const video = document.createElement('video');
      video.muted = true;
      document.body.append(video);
      const hls = new window.Hls({ xhrSetup: (xhr) => xhr.setRequestHeader('Authorization', 'Bearer ' + key) });
      const errors = [];
      hls.on(window.Hls.Events.ERROR, (_, d) => errors.push(d.details));
      hls.loadSource(src);
      hls.attachMedia(video);
      await new Promise((r) => hls.on(window.Hls.Events.MANIFEST_PARSED, r));
      await video.play();
      const until = Date.now() + 20000;
      while (video.currentTime < 1.5 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      const out = { src, current_time: video.currentTime, errors };
      hls.destroy();
      video.remove();
      return out;
    }, opts.key);

    // Seek by a click on one line, and by Enter on another.
    const lines = await page.$$eval('#transcript li', (lis) => lis.map((li) => ({
      id: li.id, start: Number(li.dataset.startMs), text: li.textContent,
    })));
    const offset = Number(await page.$eval('#player', (v) => v.dataset.offsetMs || 0));
    const duration = await page.$eval('#player', (v) => v.duration);
    const seekable = lines.filter((l) => l.start - offset > 1000 && (l.start - offset) / 1000 < duration - 2);
    result.seek = {};
    for (const [how, line] of [['click', seekable[seekable.length - 1]], ['enter', seekable[0]]]) {
      step(`seek by ${how}`);
      if (!line) { result.seek[how] = { error: 'no line inside the recording', lines, offset, duration }; continue; }
      if (how === 'click') await page.click(`#${line.id} button`);
      else { await page.focus(`#${line.id} button`); await page.keyboard.press('Enter'); }
      await page.waitForFunction((id) => document.getElementById(id).getAttribute('aria-current') === 'true',
        { timeout: 10_000 }, line.id).catch(() => {});
      const at = await page.$eval('#player', (v) => v.currentTime);
      const current = await page.$eval(`#${line.id}`, (li) => li.getAttribute('aria-current') === 'true'
        && li.querySelector('.marker').textContent === '▶');
      result.seek[how] = { line: line.text, want: (line.start - offset) / 1000, at, current };
    }
    await page.waitForFunction(() => document.body.dataset.details === 'ready', { timeout: 20_000 }).catch(() => {});
    if (opts.screenshot) {
      await page.screenshot({ path: opts.screenshot, fullPage: true });
      result.screenshot = opts.screenshot;
      step(`screenshot ${opts.screenshot}`);
    }

    step('search');
    await page.goto(`${opts.url}/console#/meetings?q=${encodeURIComponent(opts.phrase)}`);
    await page.waitForFunction(() => document.body.dataset.ready === 'search', { timeout: 30_000 });
    result.search = {
      heading: await page.$eval('#results h2', (h) => h.textContent),
      hits: await page.$$eval('.hit', (hs) => hs.map((h) => ({ text: h.textContent, href: h.querySelector('a').getAttribute('href') }))),
    };
    // The search form by keyboard too: type and Enter.
    await page.focus('#q');
    await page.$eval('#q', (q) => { q.value = ''; });
    await page.keyboard.type(opts.phrase);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.body.dataset.ready === 'search', { timeout: 30_000 });

    if (opts['other-meeting']) {
      step('another room\'s meeting');
      result.other = await open(page, opts.key, `#/meetings/${encodeURIComponent(opts['other-meeting'])}`, ['error', 'meeting']);
    }
    if (opts.token) {
      step('participant token');
      result.participant = {};
      result.participant.own = await open(page, opts.token, `#/meetings/${encodeURIComponent(opts.meeting)}`, ['meeting', 'error']);
      result.participant.who = result.participant.own.who;
      // Its player plays the live-HLS playlist's segments with the participant's token.
      await page.waitForFunction(() => ['ready', 'missing', 'failed', 'none', 'unsupported'].includes(document.getElementById('player')?.dataset.player), { timeout: 30_000 });
      await page.$eval('#player', (v) => { v.muted = true; return v.play().catch(() => {}); });
      await page.waitForFunction(() => document.getElementById('player').currentTime > 0.2, { timeout: 30_000 }).catch(() => {});
      result.participant.source = await page.$eval('#player', (v) => v.dataset.source || null);
      result.participant.played_s = await page.$eval('#player', (v) => v.currentTime);
      if (opts['other-meeting']) {
        result.participant.other_meeting = await open(page, opts.token, `#/meetings/${encodeURIComponent(opts['other-meeting'])}`, ['error', 'meeting']);
      }
      if (opts['other-token']) {
        result.participant.other_token = await open(page, opts['other-token'], `#/meetings/${encodeURIComponent(opts.meeting)}`, ['error', 'meeting']);
      }
      result.participant.recordings = await open(page, opts.token, '#/recordings', ['recordings', 'error']);
      result.participant.delete_buttons = await page.$$eval('#recordings button', (b) => b.length).catch(() => 0);
    }
    if (opts['delete-recording']) {
      // Recordings management, last (it deletes the recording): the operator confirms.
      step('delete the recording');
      page.once('dialog', (d) => { result.delete_dialog = d.message(); d.accept(); });
      const before = await open(page, opts.key, '#/recordings', ['recordings', 'error']);
      result.recordings = { before: await page.$$eval('#recordings tbody tr', (r) => r.length), retention: await page.$eval('#retention', (p) => p.textContent), ready: before.ready };
      await page.click('#recordings tbody tr button');
      await page.waitForFunction(() => /Deleted recording/.test(document.getElementById('recordings-message').textContent), { timeout: 20_000 });
      result.recordings.message = await page.$eval('#recordings-message', (p) => p.textContent);
      await open(page, opts.key, '#/recordings', ['recordings', 'error']);
      result.recordings.after = await page.$$eval('#recordings tbody tr', (r) => r.length).catch(() => 0);
    }
    ok = true;
  }
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
  console.error(`console.mjs: ${result.error}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (opts.out) await writeFile(opts.out, JSON.stringify(result, null, 2));
  else console.log(JSON.stringify(result));
}
process.exit(ok ? 0 : 1);
