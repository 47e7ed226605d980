#!/usr/bin/env node
// Drives headless Chromium running livekit-client (page.html): joins a LiveKit room, publishes a
// WAV as the microphone through Chromium's fake capture device, records captions and the
// microphone's speech starts/ends for --seconds after the mic is published, writes one JSON file.
//
//   node tests/browser/driver.mjs --url ws://127.0.0.1:7880 --token TOKEN --wav speech.wav \
//        --seconds 20 --out result.json [--chromium /usr/bin/chromium]
//
// Exit codes: 0 ok; 2 usage; 3 cannot connect; 4 no microphone / publish failed;
// 5 page error (uncaught exception in the page, page did not load); 6 disconnected during the run;
// 1 anything else. The JSON is written whenever the page got far enough to have results.
import { createServer } from 'node:http';
import { readFile, writeFile, access, open, constants } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import puppeteer from 'puppeteer-core';
import { mintToken } from './token.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const log = (...a) => console.error('[driver]', ...a);
const now = () => performance.timeOrigin + performance.now();
// Page messages name the signal URL: keep tokens out of logs and long lines short.
const redact = (s) =>
  String(s)
    .replace(/(access_token|join_request)=[^&\s'"]+/g, '$1=…')
    .slice(0, 1000);

class Failure extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const USAGE = `usage: node driver.mjs --url ws://HOST:PORT (--token TOKEN | --api-key K --api-secret S --room R [--identity I])
       --wav FILE.wav --seconds N --out result.json
       [--chromium /usr/bin/chromium] [--no-loop] [--connect-timeout 30] [--verbose]
       [--speech-on-db -40] [--speech-off-db -50] [--speech-hangover-ms 150] [--speech-min-on-ms 20]`;

function parse() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      'api-key': { type: 'string' },
      'api-secret': { type: 'string' },
      room: { type: 'string' },
      identity: { type: 'string' },
      wav: { type: 'string' },
      seconds: { type: 'string' },
      out: { type: 'string' },
      chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
      'no-loop': { type: 'boolean', default: false },
      'connect-timeout': { type: 'string', default: '30' },
      'speech-on-db': { type: 'string' },
      'speech-off-db': { type: 'string' },
      'speech-hangover-ms': { type: 'string' },
      'speech-min-on-ms': { type: 'string' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const missing = ['url', 'wav', 'seconds', 'out'].filter((k) => !values[k]);
  if (!values.token && !(values['api-key'] && values['api-secret'] && values.room)) {
    missing.push('token (or api-key + api-secret + room)');
  }
  if (missing.length) throw new Failure(2, `missing --${missing.join(', --')}\n${USAGE}`);
  const seconds = Number(values.seconds);
  if (!(seconds >= 0)) throw new Failure(2, `--seconds must be a number >= 0\n${USAGE}`);
  const speech = {};
  for (const [flag, key] of [
    ['speech-on-db', 'on_db'],
    ['speech-off-db', 'off_db'],
    ['speech-hangover-ms', 'hangover_ms'],
    ['speech-min-on-ms', 'min_on_ms'],
  ]) {
    if (values[flag] !== undefined) speech[key] = Number(values[flag]);
  }
  let token = values.token;
  if (!token) {
    token = mintToken({
      apiKey: values['api-key'],
      apiSecret: values['api-secret'],
      room: values.room,
      identity: values.identity || `browser-${process.pid}`,
    });
  }
  return {
    url: values.url,
    token,
    wav: resolve(values.wav),
    seconds,
    out: resolve(values.out),
    chromium: values.chromium,
    noLoop: values['no-loop'],
    connectTimeoutMs: Number(values['connect-timeout']) * 1000,
    speech,
    verbose: values.verbose,
  };
}

// --- the page's HTTP server (127.0.0.1, random port) --------------------------------------------
const FILES = {
  '/': [join(here, 'page.html'), 'text/html; charset=utf-8'],
  '/page.html': [join(here, 'page.html'), 'text/html; charset=utf-8'],
  '/page.js': [join(here, 'page.js'), 'text/javascript; charset=utf-8'],
  '/rms-worklet.js': [join(here, 'rms-worklet.js'), 'text/javascript; charset=utf-8'],
  '/livekit-client.umd.js': [
    join(here, 'node_modules/livekit-client/dist/livekit-client.umd.js'),
    'text/javascript; charset=utf-8',
  ],
  '/livekit-client.umd.js.map': [
    join(here, 'node_modules/livekit-client/dist/livekit-client.umd.js.map'),
    'application/json',
  ],
};

async function serve() {
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const entry = FILES[path];
    if (path === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (!entry) {
      res.writeHead(404).end('not found');
      return;
    }
    try {
      const body = await readFile(entry[0]);
      res.writeHead(200, { 'content-type': entry[1], 'cache-control': 'no-store' }).end(body);
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  await new Promise((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', ok));
  return server;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, fail) => {
      t = setTimeout(() => fail(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
    }),
  ]);
}

// Chromium plays any unreadable file as silence, so check the header here.
async function readWavHeader(path) {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead < 12 || buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') {
      throw new Failure(2, `--wav ${path} is not a RIFF/WAVE file`);
    }
    for (let off = 12; off + 8 <= bytesRead; ) {
      const id = buf.toString('ascii', off, off + 4);
      const size = buf.readUInt32LE(off + 4);
      if (id === 'fmt ' && off + 24 <= bytesRead) {
        return {
          format_tag: buf.readUInt16LE(off + 8),
          channels: buf.readUInt16LE(off + 10),
          sample_rate: buf.readUInt32LE(off + 12),
          bits_per_sample: buf.readUInt16LE(off + 22),
        };
      }
      off += 8 + size + (size & 1);
    }
    throw new Failure(2, `--wav ${path} has no fmt chunk in its first 4 KiB`);
  } finally {
    await fh.close();
  }
}

function classifyStartError(message) {
  if (/CONNECT_FAILED/.test(message)) return 3;
  if (/MIC_FAILED|PUBLISH_FAILED|ANALYSIS_FAILED/.test(message)) return 4;
  if (/PAGE_ERROR/.test(message)) return 5;
  if (/no answer within/.test(message)) return 3;
  return 1;
}

async function main() {
  const started = now();
  const opts = parse();
  await access(opts.wav, constants.R_OK).catch(() => {
    throw new Failure(2, `cannot read --wav ${opts.wav}`);
  });
  const wavInfo = await readWavHeader(opts.wav);
  await access(opts.chromium, constants.X_OK).catch(() => {
    throw new Failure(2, `no Chromium at ${opts.chromium} (apt-get install -y chromium, or --chromium PATH)`);
  });
  await access(FILES['/livekit-client.umd.js'][0], constants.R_OK).catch(() => {
    throw new Failure(2, `livekit-client is not installed: run npm ci in ${here} (or scripts/browser_setup.sh)`);
  });
  let chromiumVersion = null;
  try {
    chromiumVersion = execFileSync(opts.chromium, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    /* reported by launch below if it matters */
  }

  const server = await serve();
  const pageUrl = `http://127.0.0.1:${server.address().port}/page.html`;
  const args = [
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${opts.wav}${opts.noLoop ? '%noloop' : ''}`,
    '--autoplay-policy=no-user-gesture-required',
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
  ];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');

  let browser = null;
  const killBrowser = () => {
    const p = browser && browser.process();
    if (p && p.exitCode === null && p.pid) {
      try {
        process.kill(-p.pid, 'SIGKILL'); // puppeteer starts Chromium in its own process group
      } catch {
        try {
          p.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  };
  process.on('exit', killBrowser);

  const pageErrors = [];
  let results = null;
  let failure = null;
  let exitCode = 0;
  let startInfo = null;
  try {
    browser = await puppeteer.launch({
      executablePath: opts.chromium,
      headless: true,
      pipe: true,
      args,
      handleSIGINT: true,
      handleSIGTERM: true,
      handleSIGHUP: true,
      protocolTimeout: 60_000,
    });
    const page = await browser.newPage();
    page.on('console', (msg) => {
      const type = msg.type();
      if (type === 'error') console.error(`[page console.error] ${redact(msg.text())}`);
      else if (opts.verbose) console.error(`[page console.${type}] ${redact(msg.text())}`);
    });
    page.on('pageerror', (e) => {
      const m = e && e.message ? e.message : String(e);
      pageErrors.push({ epoch_ms: now(), message: m });
      console.error(`[page error] ${redact(m)}`);
    });
    page.on('requestfailed', (r) => console.error(`[page request failed] ${redact(r.url())} ${r.failure()?.errorText}`));
    page.on('crash', () => console.error('[page crashed]'));

    try {
      await page.goto(pageUrl, { waitUntil: 'load', timeout: 30_000 });
      await page.waitForFunction(() => typeof window.start === 'function' && !!window.LivekitClient, {
        timeout: 10_000,
      });
    } catch (e) {
      throw new Failure(5, `page did not load: ${e.message}`);
    }

    log(`joining ${opts.url}, microphone from ${opts.wav}`);
    try {
      startInfo = await withTimeout(
        page.evaluate((u, t, o) => window.start(u, t, o), opts.url, opts.token, { speech: opts.speech }),
        opts.connectTimeoutMs,
        'connect and publish',
      );
    } catch (e) {
      const m = e.message.replace(/^Error: /, '');
      throw new Failure(classifyStartError(m), m);
    }
    console.log(
      `published ${startInfo.mic_track_sid} as ${startInfo.identity} in room ${startInfo.room} at ${startInfo.published_epoch_ms.toFixed(0)}`,
    );

    const until = now() + opts.seconds * 1000;
    while (now() < until) {
      await sleep(Math.min(500, Math.max(0, until - now())));
      const state = await page.evaluate(() => window.lkRoom() && window.lkRoom().state);
      if (state === 'disconnected') {
        failure = new Failure(6, 'disconnected from the room during the run');
        break;
      }
      if (pageErrors.length && !failure) failure = new Failure(5, `page error: ${pageErrors[0].message}`);
    }
    results = await page.evaluate(() => window.results());
    await withTimeout(page.evaluate(() => window.stop()), 5000, 'disconnect').catch((e) =>
      log(`graceful disconnect failed: ${e.message}`),
    );
    if (failure) throw failure;
  } catch (e) {
    failure = e instanceof Failure ? e : new Failure(1, e && e.stack ? e.stack : String(e));
    exitCode = failure.code;
    if (!results && browser) {
      try {
        const pages = await browser.pages();
        const page = pages[pages.length - 1];
        results = await withTimeout(
          page.evaluate(() => (window.results ? window.results() : null)),
          5000,
          'results',
        );
      } catch {
        /* page unusable */
      }
    }
  } finally {
    if (browser) await withTimeout(browser.close(), 5000, 'close Chromium').catch(() => {});
    killBrowser();
    server.close();
  }

  if (results) {
    const out = {
      ...results,
      mic_published_epoch_ms: results.mic ? results.mic.published_epoch_ms : null,
      page_errors: pageErrors,
      driver: {
        started_epoch_ms: started,
        finished_epoch_ms: now(),
        url: opts.url,
        wav: opts.wav,
        wav_format: wavInfo,
        wav_loops: !opts.noLoop,
        seconds: opts.seconds,
        chromium: opts.chromium,
        chromium_version: chromiumVersion,
        chromium_args: args,
        exit_code: exitCode,
        failure: failure ? failure.message : null,
      },
    };
    if (out.mic && out.envelope && !out.envelope.db.some((d) => d !== null && d > -80)) {
      log('warning: the microphone stayed below -80 dBFS for the whole run (is the WAV silent, or unreadable by Chromium?)');
    }
    await writeFile(opts.out, JSON.stringify(out, null, 1) + '\n');
    log(
      `wrote ${opts.out}: ${out.text_streams.length} caption streams, ${out.transcriptions.length} transcription events, ` +
        `${out.speech.events.length} speech events, agent ${out.agent_identity ?? 'none'}`,
    );
  }
  if (failure) log(`FAILED (${exitCode}): ${failure.message}`);
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    const code = e instanceof Failure ? e.code : 1;
    console.error(`[driver] FAILED (${code}): ${e instanceof Failure ? e.message : e.stack || e}`);
    process.exit(code);
  },
);
