#!/usr/bin/env node
// Plays a recording's live HLS playlist in Chromium with hls.js, on the control API's own
// origin (the page is served by request interception, so the API needs no CORS), and records
// when each white flash in the picture is shown, on the host clock. For hls_live_latency_s:
// the publisher reports when it captured each flash.
//
//   node tests/browser/hls_live.mjs --api http://127.0.0.1:PORT --key KEY --recording ID \
//        --hls-js path/to/hls.min.js --seconds 60 --out result.json [--chromium /usr/bin/chromium]
//
// Exit codes: 0 ok; 2 usage; 5 page error or nothing played; 1 anything else.
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import puppeteer from 'puppeteer-core';

const log = (...a) => console.error('[hls_live]', ...a);
const { values: args } = parseArgs({
  options: {
    api: { type: 'string' },
    key: { type: 'string' },
    recording: { type: 'string' },
    'hls-js': { type: 'string' },
    seconds: { type: 'string', default: '60' },
    out: { type: 'string' },
    'live-sync-count': { type: 'string', default: '2' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});
for (const required of ['api', 'key', 'recording', 'hls-js', 'out']) {
  if (!args[required]) {
    console.error(`usage: missing --${required}`);
    process.exit(2);
  }
}
const api = args.api.replace(/\/$/, '');
const hlsJs = await readFile(args['hls-js'], 'utf8');
const page_html = '<!doctype html><meta charset="utf-8"><title>live HLS</title><body></body>';

const browser = await puppeteer.launch({
  executablePath: args.chromium,
  headless: true,
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--mute-audio'],
});
let code = 0;
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.setRequestInterception(true);
  page.on('request', (req) => {
    const url = req.url();
    if (url === `${api}/__bench/live.html`) {
      req.respond({ status: 200, contentType: 'text/html', body: page_html });
    } else if (url === `${api}/__bench/hls.min.js`) {
      req.respond({ status: 200, contentType: 'text/javascript', body: hlsJs });
    } else {
      req.continue();
    }
  });
  await page.goto(`${api}/__bench/live.html`);
  await page.addScriptTag({ url: `${api}/__bench/hls.min.js` });
  const seconds = Number(args.seconds);
  const result = await page.evaluate(
    async (key, id, seconds, syncCount) => {
      const now = () => performance.timeOrigin + performance.now();
      const out = { onsets: [], latency: [], waiting: 0, errors: [], frames: 0, hls: Hls.version };
      const video = document.createElement('video');
      video.muted = true;
      video.playsInline = true;
      document.body.append(video);
      const hls = new Hls({
        liveSyncDurationCount: syncCount,
        xhrSetup: (xhr) => xhr.setRequestHeader('Authorization', `Bearer ${key}`),
      });
      hls.on(Hls.Events.ERROR, (_, d) => out.errors.push(`${d.type}/${d.details}${d.fatal ? ' (fatal)' : ''}`));
      video.addEventListener('waiting', () => out.waiting++);
      hls.loadSource(`/v1/recordings/${id}/live.m3u8?via=api`);
      hls.attachMedia(video);
      hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => out.errors.push(String(e))));
      const canvas = document.createElement('canvas');
      canvas.width = 16;
      canvas.height = 9;
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      let lit = false;
      const onFrame = (_, meta) => {
        out.frames++;
        ctx.drawImage(video, 0, 0, 16, 9);
        const px = ctx.getImageData(0, 0, 16, 9).data;
        let sum = 0;
        for (let i = 0; i < px.length; i += 4) sum += px[i] + px[i + 1] + px[i + 2];
        const mean = sum / (px.length / 4) / 3;
        // The flasher's picture is all white or all black; the recording's grid shows it in
        // one tile, so the frame's mean rises by a quarter of white at most.
        const on = mean > 40;
        if (on && !lit) {
          out.onsets.push({ epoch_ms: performance.timeOrigin + meta.expectedDisplayTime, media_s: meta.mediaTime });
        }
        lit = on;
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
      const started = now();
      while (now() - started < seconds * 1000) {
        await new Promise((r) => setTimeout(r, 1000));
        if (hls.latency) out.latency.push(hls.latency);
      }
      out.played_s = video.currentTime;
      hls.destroy();
      return out;
    },
    args.key,
    args.recording,
    seconds,
    Number(args['live-sync-count']),
  );
  await writeFile(args.out, JSON.stringify(result, null, 1));
  log(`hls.js ${result.hls}: ${result.frames} frames, ${result.onsets.length} flashes, ${result.waiting} stalls, errors ${JSON.stringify(result.errors.slice(0, 5))}`);
  if (result.frames === 0) code = 5;
} catch (e) {
  log('failed:', e);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
