#!/usr/bin/env node
// `bench/run dashboard`: the dashboard's Home page in headless Debian
// Chromium against `hearth demo` (8 simulated devices with their firmware
// running), then with 200 devices (the rest added by hand with
// `hearth devices add`, over ten rooms and every kind).
//
// - Render: a fresh load of `#/home` until every adopted device's tile is in
//   the DOM and the frame showing them has been rendered, read with
//   performance.now() in the page (ms since the navigation started).
//   Reference in the same run: the same DOM as static HTML (the Home page's
//   outerHTML with its scripts removed), served at ORIGIN/__bench_static by
//   Playwright's request interception, loaded to the same tile count. The
//   rounds alternate: hearth, static, and hearth again with the same
//   interception on (what the interception itself costs a page).
// - In-app navigation: from #/security to #/home, from setting the hash to
//   the tiles drawn.
// - Live update: a click on a demo bulb's power toggle until the tile's
//   aria-pressed flips (the device reports back over MQTT, hearth sends a
//   server-sent event, the page applies it). Reference on the same click: the
//   `device` event arriving on a second EventSource the bench opens in the
//   page.
//
// Everything stays on loopback; every wait is bounded; the demo is stopped
// and its data directory deleted at the end, also on failure. Exits
// non-zero if the tiles never appear.
//
// Usage: node bench/dashboard.mjs --hearth target/release/hearth [--rounds N] [--json]
// Environment: HEARTH_CHROMIUM (default /usr/bin/chromium).

import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { CHROMIUM, chromiumArgs, verifiedPeerCertificate, withTimeout } from '../tests/e2e/browser.mjs';
import { Proc } from '../tests/e2e/proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
// playwright-core is the browser tests' dependency (tests/e2e/package.json).
const { chromium } = createRequire(path.join(ROOT, 'tests', 'e2e', 'package.json'))('playwright-core');

const TILES = '[data-testid="device-tile"], [data-testid="device-card"]';
// Devices on Home in the second phase: the demo's, and the rest added by hand.
const TOTAL = 200;
const ROOMS = ['Kitchen', 'Living room', 'Bedroom', 'Study', 'Hall', 'Bathroom', 'Garage', 'Garden', 'Attic', 'Cellar'];
const KINDS = ['bulb', 'plug', 'light_strip', 'motion_sensor', 'contact_sensor', 'climate_sensor', 'water_sensor', 'camera', 'doorbell', 'other'];
const PROFILES = ['generic', 'tasmota', 'shelly', 'esphome'];

// Bounds on every wait.
const WAIT = 30_000;
const START_WAIT = 60_000;
const ADD_BUDGET = 300_000;

const run = promisify(execFile);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseArgs(argv) {
  const out = { hearth: path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'), 'release', 'hearth'), rounds: 10, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--hearth') out.hearth = path.resolve(argv[++i]);
    else if (a === '--rounds') out.rounds = Math.max(1, Math.min(100, Number(argv[++i]) || 10));
    else if (a === '--json') out.json = true;
    else if (a === '--seconds') i++; // bench/run all passes it to every benchmark
    else throw new Error(`unknown argument ${a}`);
  }
  return out;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function stats(xs) {
  return { median: median(xs), max: Math.max(...xs), samples: xs.map((x) => Math.round(x * 10) / 10) };
}

function machine() {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) ?? [])[1] ?? 'unknown CPU';
  return `${cpu.trim()}, ${os.availableParallelism()} cores, ${process.arch}`;
}

async function devicesList(hearth, dataDir) {
  const { stdout } = await run(hearth, ['devices', 'list', '--json', '--data-dir', dataDir], { timeout: 15_000 });
  return JSON.parse(stdout);
}

async function adoptedCount(hearth, dataDir) {
  return (await devicesList(hearth, dataDir)).filter((d) => d.status === 'adopted').length;
}

/**
 * Installed in every document before its scripts run: records, each time
 * the number of tiles changes, when the DOM changed and when the frame after
 * it had been rendered (a message posted from requestAnimationFrame runs
 * after that frame's style, layout and paint).
 */
function tileClock(selector) {
  if (location.protocol !== 'https:') return;
  const log = [];
  let last = -1;
  const check = () => {
    const n = document.querySelectorAll(selector).length;
    if (n === last) return;
    last = n;
    const entry = { n, dom: performance.now(), drawn: null };
    log.push(entry);
    requestAnimationFrame(() => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => {
        entry.drawn = performance.now();
      };
      channel.port2.postMessage(null);
    });
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true });
  window.__hearthBench = {
    // The first time, at or after `since`, that exactly `n` tiles were drawn.
    drawn(n, since = 0) {
      const e = log.find((x) => x.n === n && x.dom >= since);
      return e && e.drawn !== null ? e : null;
    },
    count: () => last,
  };
}

/** Waits for exactly `n` tiles drawn (after `since`), returns their entry. */
async function waitDrawn(page, n, since = 0, what = `${n} tiles`) {
  try {
    const handle = await page.waitForFunction(([n, since]) => window.__hearthBench?.drawn(n, since), [n, since], { timeout: WAIT, polling: 20 });
    return await handle.jsonValue();
  } catch (error) {
    const seen = await page.evaluate((sel) => document.querySelectorAll(sel).length, TILES).catch(() => '?');
    throw new Error(`${what} were not drawn within ${WAIT} ms (the page at ${page.url()} shows ${seen}): ${error.message.split('\n')[0]}`);
  }
}

/** A fresh load of `url` until `n` tiles are drawn: { dom, drawn } in ms since navigation start. */
async function load(page, url, n, what) {
  await page.goto('about:blank', { timeout: WAIT });
  await page.goto(url, { waitUntil: 'commit', timeout: WAIT });
  const { dom, drawn } = await waitDrawn(page, n, 0, what);
  // Where the time went: the last script module and the device list
  // answered (resource timing, ms since navigation start).
  const { scripts, devices } = await page.evaluate(() => {
    const entries = performance.getEntriesByType('resource');
    const scriptEnds = entries.filter((e) => e.initiatorType === 'script' || new URL(e.name).pathname.endsWith('.js')).map((e) => e.responseEnd);
    const list = entries.find((e) => new URL(e.name).pathname === '/api/devices');
    return { scripts: scriptEnds.length ? Math.max(...scriptEnds) : null, devices: list ? list.responseEnd : null };
  });
  return { dom, drawn, scripts, devices };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  for (const [file, hint] of [
    [opts.hearth, 'cargo build --release -p hearth (bench/run does)'],
    [CHROMIUM, 'apt-get install chromium (bench/run does)'],
  ]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing; ${hint}`);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-dashboard-'));
  const dataDir = path.join(tmp, 'data');
  let demo = null;
  let browser = null;
  try {
    demo = new Proc('demo', opts.hearth, ['demo', '--data-dir', dataDir], { env: { ...process.env, NO_COLOR: '1' } });
    const [, url] = await demo.waitFor(/^\s*dashboard\s+(https:\/\/\S+)/, { timeout: START_WAIT, what: 'its dashboard line' });
    const [, setupCode] = await demo.waitFor(/^\s*setup code\s+(\S+)/, { timeout: 10_000, what: 'its setup code' });
    const origin = new URL(url).origin;

    // Trust exactly the key of the certificate that chains to the data
    // directory's CA (as tests/e2e/run.mjs does).
    const caPem = fs.readFileSync(path.join(dataDir, 'ca.pem'), 'utf8');
    const { cert } = await verifiedPeerCertificate(url, caPem);
    if (!cert.verify(new X509Certificate(caPem).publicKey)) throw new Error('the dashboard certificate is not signed by the CA in the data directory');

    // The demo prints its dashboard line after adopting what it found. On
    // a machine where another demo announces on loopback too, it finds and
    // adopts more than its own 8: the bench counts what it adopted.
    const demoCount = await adoptedCount(opts.hearth, dataDir);
    if (demoCount < 8) throw new Error(`the demo adopted ${demoCount} devices, not 8`);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs(cert) });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light', locale: 'en-GB' });
    await context.addInitScript(tileClock, TILES);
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    const offOrigin = [];
    page.on('request', (r) => {
      const u = r.url();
      if (/^https?:/.test(u) && new URL(u).origin !== origin) offOrigin.push(u);
    });

    // First-run setup through the API, as web-ui/auth.js sends it; the
    // session cookie stays in the context for every later load.
    await page.goto(`${origin}/`, { timeout: WAIT });
    const password = `bench ${randomBytes(8).toString('hex')} kettle harbour`;
    const setup = await page.evaluate(async ({ code, password }) => {
      const r = await fetch('/api/setup', {
        method: 'POST',
        headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
        body: JSON.stringify({ code, username: 'owner', password }),
        credentials: 'same-origin',
      });
      return { status: r.status, body: await r.text() };
    }, { code: setupCode, password });
    if (setup.status !== 200) throw new Error(`POST /api/setup answered ${setup.status}: ${setup.body}`);

    const home = `${origin}/#/home`;
    const staticUrl = `${origin}/__bench_static`;
    let staticHtml = '';
    const serveStatic = (route) => route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: staticHtml });

    async function renderPhase(n) {
      // Warm-up (not counted), and the DOM the static copy is made of.
      await load(page, home, n, `${n} tiles on Home`);
      staticHtml = await page.evaluate(() => {
        const copy = document.documentElement.cloneNode(true);
        for (const s of copy.querySelectorAll('script')) s.remove();
        return `<!doctype html>\n${copy.outerHTML}`;
      });
      const hearth = [];
      const reference = [];
      const intercepted = [];
      const variants = [
        { into: hearth, url: home, route: false, what: `${n} tiles on Home` },
        { into: reference, url: staticUrl, route: true, what: `${n} tiles in the static copy` },
        { into: intercepted, url: home, route: true, what: `${n} tiles on Home (intercepted)` },
      ];
      // The order turns each round, so that no variant always follows the same one.
      for (let i = 0; i < opts.rounds; i++) {
        for (let j = 0; j < variants.length; j++) {
          const v = variants[(i + j) % variants.length];
          // Playwright intercepts every request of the page (and turns its
          // HTTP cache off) while any route is set.
          if (v.route) await page.route(staticUrl, serveStatic);
          try {
            v.into.push(await load(page, v.url, n, v.what));
          } finally {
            if (v.route) await page.unroute(staticUrl, serveStatic);
          }
        }
      }
      // In-app: from Security back to Home.
      const navigation = [];
      await load(page, home, n, `${n} tiles on Home`);
      for (let i = 0; i < opts.rounds; i++) {
        await page.evaluate(() => {
          location.hash = '#/security';
        });
        await page.locator('main h1', { hasText: 'Security' }).waitFor({ timeout: WAIT });
        await sleep(300); // let Security finish its own requests
        const since = await page.evaluate(() => {
          const t = performance.now();
          location.hash = '#/home';
          return t;
        });
        const entry = await waitDrawn(page, n, since, `${n} tiles after navigating to Home`);
        navigation.push(entry.drawn - since);
      }
      const drawn = (xs) => stats(xs.map((x) => x.drawn));
      const dom = (xs) => stats(xs.map((x) => x.dom));
      return {
        devices: n,
        load: drawn(hearth),
        static: drawn(reference),
        loadIntercepted: drawn(intercepted),
        navigation: stats(navigation),
        // When the last tile entered the DOM, before the frame showing it.
        loadDom: dom(hearth),
        staticDom: dom(reference),
        loadScripts: stats(hearth.map((x) => x.scripts ?? NaN)),
        loadDeviceList: stats(hearth.map((x) => x.devices ?? NaN)),
      };
    }

    async function livePhase(n, bulbs) {
      await load(page, home, n, `${n} tiles on Home`);
      // A bulb whose firmware is connected.
      const id = await withTimeout(
        (async () => {
          for (;;) {
            const online = await page.evaluate(
              ({ sel, ids }) =>
                ids.find((id) => document.querySelector(`:is(${sel})[data-device-id="${CSS.escape(id)}"] [data-testid="device-online"]`)?.dataset.state === 'online'),
              { sel: TILES, ids: bulbs },
            );
            if (online) return online;
            await sleep(250);
          }
        })(),
        WAIT,
        'a demo bulb to show as online',
      );
      await page.evaluate(
        () =>
          new Promise((resolve, reject) => {
            const es = new EventSource('/api/events');
            window.__benchEvents = es;
            es.addEventListener('open', () => resolve(), { once: true });
            setTimeout(() => reject(new Error('the second event stream did not open')), 10_000);
          }),
      );
      const tile = [];
      const event = [];
      const command = [];
      for (let i = 0; i < opts.rounds; i++) {
        const r = await page.evaluate(
          ({ sel, id, timeout }) =>
            new Promise((resolve, reject) => {
              const toggleSel = `:is(${sel})[data-device-id="${CSS.escape(id)}"] [data-testid="power-toggle"]`;
              const toggle = document.querySelector(toggleSel);
              if (!toggle) {
                reject(new Error(`no power toggle for ${id}`));
                return;
              }
              const want = toggle.getAttribute('aria-pressed') !== 'true';
              const es = window.__benchEvents;
              let t0 = 0;
              let tEvent = null;
              let tTile = null;
              const finish = () => {
                if (tEvent === null || tTile === null) return;
                cleanup();
                resolve({ want, event: tEvent - t0, tile: tTile - t0 });
              };
              const onEvent = (e) => {
                let d = null;
                try {
                  d = JSON.parse(e.data);
                } catch {
                  return;
                }
                if (tEvent === null && d.id === id && d.power === want) {
                  tEvent = performance.now();
                  finish();
                }
              };
              const observer = new MutationObserver(() => {
                if (tTile === null && document.querySelector(toggleSel)?.getAttribute('aria-pressed') === String(want)) {
                  tTile = performance.now();
                  finish();
                }
              });
              const timer = setTimeout(() => {
                cleanup();
                reject(new Error(`the toggle did not flip to ${want} within ${timeout} ms (event seen: ${tEvent !== null})`));
              }, timeout);
              function cleanup() {
                clearTimeout(timer);
                observer.disconnect();
                es.removeEventListener('device', onEvent);
              }
              es.addEventListener('device', onEvent);
              observer.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['aria-pressed'] });
              performance.clearResourceTimings();
              t0 = performance.now();
              toggle.click();
            }),
          { sel: TILES, id, timeout: WAIT },
        );
        tile.push(r.tile);
        event.push(r.event);
        await sleep(300);
        // How long the page's own POST …/command took (resource timing).
        const post = await page.evaluate(() => performance.getEntriesByType('resource').find((e) => e.name.endsWith('/command'))?.duration ?? null);
        if (post === null) throw new Error('the click sent no POST …/command');
        command.push(post);
      }
      await page.evaluate(() => window.__benchEvents?.close());
      return { devices: n, tile: stats(tile), event: stats(event), command: stats(command) };
    }

    const list = await devicesList(opts.hearth, dataDir);
    const bulbs = list.filter((d) => d.status === 'adopted' && d.kind === 'bulb').map((d) => d.id);
    if (bulbs.length === 0) throw new Error('the demo adopted no bulb');

    const results = { machine: machine(), date: new Date().toISOString().slice(0, 10), chromium: browser.version(), rounds: opts.rounds, render: [], live: [] };
    console.log(`machine: ${results.machine}; Chromium ${results.chromium}; ${opts.rounds} rounds`);

    results.render.push(await renderPhase(demoCount));
    results.live.push(await livePhase(demoCount, bulbs));

    // The rest of 200 by hand, over ten rooms and every kind; the page is
    // away from Home meanwhile so it does not redraw for each one.
    await page.goto('about:blank');
    const started = Date.now();
    const ADDED = TOTAL - demoCount;
    for (let i = 0; i < ADDED; i++) {
      if (Date.now() - started > ADD_BUDGET) throw new Error(`adding ${ADDED} devices took longer than ${ADD_BUDGET} ms (${i} added)`);
      const kind = KINDS[i % KINDS.length];
      await run(
        opts.hearth,
        [
          'devices', 'add',
          '--profile', PROFILES[i % PROFILES.length],
          '--kind', kind,
          '--nickname', `Bench ${kind.replace('_', ' ')} ${i + 1}`,
          '--room', ROOMS[Math.floor(i / 2) % ROOMS.length],
          '--data-dir', dataDir,
        ],
        { timeout: 15_000 },
      );
    }
    const manyCount = await adoptedCount(opts.hearth, dataDir);
    if (manyCount !== demoCount + ADDED) throw new Error(`${manyCount} adopted devices after adding ${ADDED} to ${demoCount}`);
    console.log(`added ${ADDED} devices in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    results.render.push(await renderPhase(manyCount));
    results.live.push(await livePhase(manyCount, bulbs));
    if (offOrigin.length) throw new Error(`the page sent requests off its origin: ${offOrigin.slice(0, 3).join(', ')}`);

    report(results);
    if (opts.json) console.log(JSON.stringify(results, null, 2));
  } finally {
    await browser?.close().catch(() => {});
    await demo?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function report(r) {
  const ms = (x) => `${x.toFixed(1)} ms`;
  const row = (label, s) => `| ${label} | ${ms(s.median)} | ${ms(s.max)} |`;
  const ratio = (a, b) => `${(a / b).toFixed(2)}×`;
  console.log('\n## dashboard: Home rendered (navigation to every tile drawn), medians and maxima');
  for (const p of r.render) {
    console.log(`\n### ${p.devices} devices`);
    console.log('| | median | max |');
    console.log('|---|---:|---:|');
    console.log(row('hearth: load of #/home to tiles drawn', p.load));
    console.log(row('static copy of the same DOM (reference)', p.static));
    console.log(row('hearth, under the same request interception', p.loadIntercepted));
    console.log(row('in-app: #/security to #/home, tiles drawn', p.navigation));
    console.log(row('hearth: load to the last script module received', p.loadScripts));
    console.log(row('hearth: load to GET /api/devices answered', p.loadDeviceList));
    console.log(row('hearth: load to every tile in the DOM (not yet drawn)', p.loadDom));
    console.log(row('static copy: load to every tile in the DOM', p.staticDom));
    console.log(`| ratio hearth / static | ${ratio(p.load.median, p.static.median)} | ${ratio(p.load.max, p.static.max)} |`);
    console.log(`| ratio hearth intercepted / static | ${ratio(p.loadIntercepted.median, p.static.median)} | ${ratio(p.loadIntercepted.max, p.static.max)} |`);
  }
  console.log('\n## dashboard: live update (click on a demo bulb\'s toggle), medians and maxima');
  console.log('| devices | click to tile updated | click to `device` event (reference) | ratio | the POST …/command alone |');
  console.log('|---:|---:|---:|---:|---:|');
  for (const p of r.live) {
    console.log(
      `| ${p.devices} | ${ms(p.tile.median)} (max ${ms(p.tile.max)}) | ${ms(p.event.median)} (max ${ms(p.event.max)}) | ${ratio(p.tile.median, p.event.median)} | ${ms(p.command.median)} (max ${ms(p.command.max)}) |`,
    );
  }
}

main().catch((error) => {
  console.error(`bench dashboard: FAILED: ${error.stack ?? error}`);
  process.exitCode = 1;
});
