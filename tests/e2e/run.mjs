#!/usr/bin/env node
// hearth's browser tests: the dashboard in headless Debian Chromium, driven
// by playwright-core, against `hearth demo --leave-pending --no-firmware`
// and a simulated device (`hearth-sim device`) this script runs with the
// provisioning the dashboard shows. One command, after the binaries are
// built:
//
//     cargo build -p hearth -p hearth-tests && node tests/e2e/run.mjs
//
// Trust: Chromium is not told to ignore certificate errors. This script
// reads hearth's CA from the data directory (as an owner would install it),
// verifies the dashboard's certificate against that CA and the address with
// node:tls, and then lets Chromium accept exactly that certificate's public
// key (--ignore-certificate-errors-spki-list with its SHA-256 SPKI hash).
// Any other certificate, from any other key, is still refused.
//
// Environment: HEARTH_BIN_DIR (default $CARGO_TARGET_DIR/debug, or target/debug), HEARTH_CHROMIUM
// (default /usr/bin/chromium), E2E_VERBOSE=1 to echo the children's output.

import { chromium } from 'playwright-core';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { createRequire } from 'node:module';

import { CHROMIUM, chromiumArgs, Failure, verifiedPeerCertificate, withTimeout } from './browser.mjs';
import { Proc } from './proc.mjs';
import { base32Decode, selfCheck, timeStep, totpAt } from './totp.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const BIN = path.resolve(
  process.env.HEARTH_BIN_DIR ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'), 'debug'),
);
const HEARTH = path.join(BIN, 'hearth');
const DNSMASQ = process.env.HEARTH_DNSMASQ ?? '/usr/sbin/dnsmasq';
const DIG = process.env.HEARTH_DIG ?? '/usr/bin/dig';
const SIM = path.join(BIN, 'hearth-sim');
const ARTIFACTS = path.join(HERE, 'artifacts');
const VERBOSE = process.env.E2E_VERBOSE === '1';
// axe-core, Deque's accessibility engine, pinned in package-lock.json; its
// source is evaluated in the page through DevTools, so the page's CSP
// stays as it is.
const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const DESKTOP = { width: 1280, height: 800 };
const MOBILE = { width: 390, height: 844 };
// Bounds on every wait.
const START_TIMEOUT = 90_000; // a debug build of the demo, cold
const STEP_TIMEOUT = 180_000;
const UI_TIMEOUT = 15_000;
const DEVICE_TIMEOUT = 30_000;

const run = promisify(execFile);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const tid = (name) => `[data-testid="${name}"]`;

function assert(condition, message) {
  if (!condition) throw new Failure(message);
}

/** Polls `fn` until it returns a truthy value; fails after `timeout` ms. */
async function until(what, fn, { timeout = UI_TIMEOUT, interval = 200 } = {}) {
  const deadline = Date.now() + timeout;
  let last = null;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Failure(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await sleep(interval);
  }
}

/** fetch() from Node, bounded: a server that never answers fails the step. */
function fetchWithin(url, options = {}) {
  return fetch(url, { ...options, signal: AbortSignal.timeout(UI_TIMEOUT) });
}

// --- steps and the summary line ------------------------------------------

const results = { passed: 0, failed: 0, skipped: 0 };
let stopped = false;
let stepNumber = 0;
let onFailure = null;

async function step(name, fn, { timeout = STEP_TIMEOUT } = {}) {
  stepNumber += 1;
  if (stopped) {
    results.skipped += 1;
    console.log(`skip ${stepNumber} - ${name} (an earlier step failed)`);
    return;
  }
  const started = Date.now();
  try {
    await withTimeout(Promise.resolve().then(fn), timeout, name);
    results.passed += 1;
    console.log(`ok ${stepNumber} - ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (error) {
    results.failed += 1;
    stopped = true;
    console.log(`not ok ${stepNumber} - ${name}`);
    console.log(String(error instanceof Failure ? error.message : error.stack ?? error).replace(/^/gm, '    '));
    await onFailure?.(name);
  }
}

// --- hearth helpers --------------------------------------------------------

/** A UDP port free a moment ago, for Matter (which refuses port 0). */
async function freeUdpPort() {
  const socket = dgram.createSocket({ type: 'udp6' });
  await new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '::', resolve);
  });
  const { port } = socket.address();
  await new Promise((resolve) => socket.close(resolve));
  return port;
}

/** `hearth ARGS --json --data-dir DIR`, parsed. */
async function hearthJson(args, dataDir) {
  const { stdout } = await run(HEARTH, [...args, '--json', '--data-dir', dataDir], { timeout: 15_000 });
  return JSON.parse(stdout);
}

async function devicesList(dataDir) {
  const { stdout } = await run(HEARTH, ['devices', 'list', '--json', '--data-dir', dataDir], { timeout: 15_000 });
  return JSON.parse(stdout);
}

function httpsGet(url, ca) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const request = https.get(url, { ca, rejectUnauthorized: true }, (response) => {
        const chunks = [];
        response.on('data', (c) => chunks.push(c));
        response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }));
      });
      request.on('error', reject);
    }),
    10_000,
    `GET ${url}`,
  );
}

/** Every regular file under `dir`, recursively (sockets and links skipped). */
function filesUnder(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(full));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

// --- page helpers -------------------------------------------------------------

/**
 * Fails if a visible form control has no label, a button or link no name,
 * or the page shows a value that leaked from a script ("null",
 * "undefined", "[object …]", "NaN").
 */
async function checkLabels(page, where) {
  const problems = await page.evaluate(() => {
    const visible = (el) => el.getClientRects().length > 0;
    const out = [];
    const text = document.body.innerText;
    const leaked = text.match(/(^|\s)(null|undefined|NaN)(\s|$)|\[object \w+\]/m);
    if (leaked) out.push(`script value shown as text: "${leaked[0].trim()}"`);
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden' || !visible(el)) continue;
      if (!el.labels?.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) out.push(`unlabelled: ${el.outerHTML.slice(0, 120)}`);
    }
    for (const el of document.querySelectorAll('button, a[href]')) {
      if (!visible(el)) continue;
      if (!el.textContent.trim() && !el.getAttribute('aria-label') && !el.querySelector('img[alt]:not([alt=""])')) out.push(`no accessible name: ${el.outerHTML.slice(0, 120)}`);
    }
    return out;
  });
  assert(problems.length === 0, `${where}: ${problems.join('; ')}`);
}

/**
 * Screenshots at 1280×800 and 390×844 into artifacts/, checking on the way
 * that nothing is wider than a phone's screen and every control is labelled.
 */
/**
 * axe-core on the page as it is: fails on any serious or critical
 * violation, and on `landmark-unique` (two landmarks of one role with one
 * name), which is only moderate but makes a screen reader's list of
 * regions useless.
 */
async function checkAxe(page, where) {
  const found = await page.evaluate(async (source) => {
    if (!window.axe) (0, eval)(source);
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  }, AXE_SOURCE);
  const bad = found.filter((v) => v.impact === 'serious' || v.impact === 'critical' || v.id === 'landmark-unique');
  assert(bad.length === 0, `${where}: axe-core: ${bad.map((v) => `${v.id} (${v.impact}) at ${v.nodes.join(', ')}`).join('; ')}`);
}

/**
 * Fails if a word inside a table cell (or a tile's name) is broken across
 * two lines: each word's glyph boxes, from a DOM Range, must share one
 * line. A break after a hyphen or a slash is not a broken word.
 */
async function checkWords(page, where) {
  const broken = await page.evaluate(() => {
    const out = [];
    for (const box of document.querySelectorAll('td, th, .tile-name')) {
      if (!box.getClientRects().length) continue;
      const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (const m of node.data.matchAll(/[^\s\-\u2010-\u2014/]+/g)) {
          const range = document.createRange();
          range.setStart(node, m.index);
          range.setEnd(node, m.index + m[0].length);
          const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.bottom)));
          if (lines.size > 1) out.push(m[0]);
        }
      }
    }
    return out;
  });
  assert(broken.length === 0, `${where}: words broken across lines: ${broken.slice(0, 5).map((w) => JSON.stringify(w)).join(', ')}`);
}

async function shoot(page, name, { dark = false } = {}) {
  const before = page.viewportSize();
  if (dark) await page.emulateMedia({ colorScheme: 'dark' });
  try {
    for (const [label, size] of [
      ['desktop', DESKTOP],
      ['mobile', MOBILE],
    ]) {
      await page.setViewportSize(size);
      await sleep(250); // let the toggles' transitions finish
      if (label === 'mobile') {
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
        assert(overflow <= 1, `${name}: the page is ${overflow} px wider than a 390 px screen`);
      }
      await checkWords(page, `${name} at ${size.width}×${size.height}`);
      await checkAxe(page, `${name}${dark ? " (dark)" : ""} at ${size.width}×${size.height}`);
      await page.screenshot({ path: path.join(ARTIFACTS, `${name}${dark ? '-dark' : ''}-${label}.png`), fullPage: true });
    }
    await checkLabels(page, name);
  } finally {
    if (dark) await page.emulateMedia({ colorScheme: 'light' });
    if (before) await page.setViewportSize(before);
  }
}

async function textOf(page, selector) {
  return ((await page.locator(selector).first().textContent({ timeout: UI_TIMEOUT })) ?? '').trim();
}

async function goto(page, route, heading) {
  await page.evaluate((hash) => {
    location.hash = hash;
  }, route);
  await page.locator('main h1').filter({ hasText: heading }).waitFor({ timeout: UI_TIMEOUT });
}

/** Clicks submit and returns the response of POST /api/login or /api/setup. */
async function submitFor(page, button, apiPath) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === apiPath && r.request().method() === 'POST', { timeout: UI_TIMEOUT }),
    page.locator(button).click({ timeout: UI_TIMEOUT }),
  ]);
  return response;
}

// --- the test -------------------------------------------------------------------

async function main() {
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  if (nodeMajor < 20) {
    console.error(`e2e: Node.js ${process.versions.node} is too old; playwright-core needs 20 or later`);
    console.log('e2e: 0 passed, 1 failed');
    process.exit(1);
  }
  for (const [file, hint] of [
    [HEARTH, 'cargo build -p hearth'],
    [SIM, 'cargo build -p hearth-tests'],
    [CHROMIUM, 'apt-get install chromium (scripts/test-all does)'],
    [DNSMASQ, 'apt-get install dnsmasq-base (scripts/test-all does)'],
    [DIG, 'apt-get install bind9-dnsutils (scripts/test-all does)'],
  ]) {
    if (!fs.existsSync(file)) {
      console.error(`e2e: ${file} is missing; ${hint}`);
      console.log('e2e: 0 passed, 1 failed');
      process.exit(1);
    }
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const old of fs.readdirSync(ARTIFACTS)) {
    if (/\.(png|log|html)$/.test(old)) fs.rmSync(path.join(ARTIFACTS, old));
  }

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-e2e-'));
  const dataDir = path.join(tmp, 'data');
  const username = 'owner';
  // Changed once, when a new password is required at the next login.
  let password = `hearth e2e ${randomBytes(6).toString('hex')} lantern`;
  const canary = `Canary-Lamp-${randomBytes(6).toString('hex')}`;

  let demo = null;
  let full = null;
  let fullContext = null;
  let sim = null;
  let context = null;
  let page = null;
  let dashboard = null;
  let origin = null;
  let caPem = null;
  let setupCode = null;
  let totpKey = null;
  let oldTotpKey = null;
  let lastTotpStep = -1;
  let bulbId = null;
  let matterPort = null;
  let dnsPort = null;
  let upstreamPort = null;
  let upstream = null;
  const browserProblems = [];
  /** Notes a CSP refusal, a script error or a request off `origin`. */
  const watchProblems = (tab, origin, prefix) => {
    tab.on('console', (message) => {
      const text = message.text();
      if (/Content Security Policy|Refused to|Uncaught/i.test(text)) browserProblems.push(`${prefix}console: ${text}`);
    });
    tab.on('pageerror', (error) => browserProblems.push(`${prefix}script error: ${error.message}`));
    tab.on('request', (request) => {
      const url = request.url();
      if (!url.startsWith('data:') && !url.startsWith('blob:') && new URL(url).origin !== origin) browserProblems.push(`${prefix}off-origin request: ${url}`);
    });
  };

  onFailure = async (name) => {
    if (!page) return;
    const slug = name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40);
    try {
      await page.screenshot({ path: path.join(ARTIFACTS, `failure-${slug}.png`), fullPage: true, timeout: 5000 });
      fs.writeFileSync(path.join(ARTIFACTS, `failure-${slug}.html`), await page.content());
      console.log(`    page at failure: ${page.url()} (screenshot and HTML in ${path.relative(ROOT, ARTIFACTS)}/)`);
    } catch {
      // The page may be gone.
    }
  };

  /** Waits out the 30 s step of the last accepted code: hearth refuses replays. */
  async function freshTotp() {
    for (;;) {
      const now = Date.now() / 1000;
      const s = timeStep(now);
      const left = (s + 1) * 30 - now;
      if (s > lastTotpStep && left > 2) return { code: totpAt(totpKey, s), step: s };
      await sleep(Math.ceil(left * 1000) + 200);
    }
  }

  try {
    await step('the TOTP helper matches RFC 6238 and RFC 4226', () => selfCheck());

    await step('hearth demo serves the dashboard over HTTPS, under its own CA and a strict CSP', async () => {
      matterPort = await freeUdpPort();
      // The DNS resolver, forwarding to a dnsmasq on loopback that knows
      // two names (and nothing else: it forwards nowhere).
      dnsPort = await freeUdpPort();
      upstreamPort = await freeUdpPort();
      upstream = new Proc(
        'dnsmasq',
        DNSMASQ,
        ['--no-daemon', `--port=${upstreamPort}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts', '--pid-file=', '--address=/shelly.cloud/203.0.113.7', '--address=/example.org/198.51.100.9'],
        { logFile: path.join(ARTIFACTS, 'dnsmasq.log'), echo: VERBOSE },
      );
      await upstream.waitFor(/dnsmasq: started/, { timeout: 10_000, what: 'that it started' });
      demo = new Proc('demo', HEARTH, ['demo', '--leave-pending', '--no-firmware', '--matter-port', String(matterPort), '--dns-port', String(dnsPort), '--dns-upstream', `127.0.0.1:${upstreamPort}`, '--data-dir', dataDir], {
        logFile: path.join(ARTIFACTS, 'demo.log'),
        env: { ...process.env, NO_COLOR: '1' },
        echo: VERBOSE,
      });
      const [, url] = await demo.waitFor(/^\s*dashboard\s+(https:\/\/\S+)/, { timeout: START_TIMEOUT, what: 'its dashboard line' });
      dashboard = url.endsWith('/') ? url : `${url}/`;
      origin = new URL(dashboard).origin;
      const [, printed] = await demo.waitFor(/^\s*setup code\s+(\S+)/, { timeout: 10_000, what: 'its setup code' });
      setupCode = printed;
      const codeFile = path.join(dataDir, 'setup-code');
      if (fs.existsSync(codeFile)) {
        assert(fs.readFileSync(codeFile, 'utf8').trim() === setupCode, 'the printed setup code differs from <data-dir>/setup-code');
        assert((fs.statSync(codeFile).mode & 0o077) === 0, '<data-dir>/setup-code is readable by group or others');
      }

      caPem = fs.readFileSync(path.join(dataDir, 'ca.pem'), 'utf8');
      const ca = new X509Certificate(caPem);
      const { cert, protocol } = await verifiedPeerCertificate(dashboard, caPem);
      assert(cert.verify(ca.publicKey), 'the dashboard certificate is not signed by the CA in the data directory');
      assert(['TLSv1.2', 'TLSv1.3'].includes(protocol), `negotiated ${protocol}`);

      const served = await httpsGet(new URL('/ca.pem', origin).href, caPem);
      assert(served.status === 200, `GET /ca.pem answered ${served.status}`);
      assert(new X509Certificate(served.body).fingerprint256 === ca.fingerprint256, '/ca.pem is not the CA in the data directory');
      const index = await httpsGet(dashboard, caPem);
      assert(index.status === 200, `GET / answered ${index.status}`);
      const csp = String(index.headers['content-security-policy'] ?? '');
      for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) {
        assert(csp.includes(directive), `GET / lacks "${directive}" in its Content-Security-Policy (got: ${csp || 'none'})`);
      }

      const profile = path.join(tmp, 'chromium-profile');
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: chromiumArgs(cert),
        viewport: DESKTOP,
        colorScheme: 'light',
        locale: 'en-GB',
        acceptDownloads: true,
      });
      page = context.pages()[0] ?? (await context.newPage());
      page.setDefaultTimeout(UI_TIMEOUT);
      watchProblems(page, origin, '');
      const response = await page.goto(dashboard, { timeout: UI_TIMEOUT });
      const security = await response.securityDetails();
      assert(security, 'Chromium reports no TLS details for the dashboard');
      assert(ca.subject.includes(security.issuer), `Chromium saw a certificate issued by "${security.issuer}", not by hearth's CA (${ca.subject})`);
    });

    await step('first-run setup refuses a wrong one-time code, then creates the owner', async () => {
      await page.locator(tid('setup-form')).waitFor();
      await shoot(page, 'setup');
      const wrong = setupCode.replace(/[A-Za-z0-9]/g, (c) => (c === 'A' ? 'B' : c === '7' ? '8' : /\d/.test(c) ? '7' : 'A'));
      assert(wrong !== setupCode, 'could not make a wrong code');
      await page.fill(tid('setup-code'), wrong);
      await page.fill(tid('setup-username'), username);
      await page.fill(tid('setup-password'), password);
      await page.fill(tid('setup-confirm'), password);
      const refused = await submitFor(page, tid('setup-submit'), '/api/setup');
      assert(refused.status() === 403, `a wrong setup code got HTTP ${refused.status()}, not 403`);
      await until('the setup error message', async () => (await textOf(page, tid('setup-error'))).length > 0);
      assert(await page.locator(tid('setup-form')).isVisible(), 'the setup form went away after a wrong code');

      await page.fill(tid('setup-code'), setupCode);
      const accepted = await submitFor(page, tid('setup-submit'), '/api/setup');
      assert(accepted.status() === 200, `the right setup code got HTTP ${accepted.status()}: ${await accepted.text()}`);
      await page.locator('main h1', { hasText: 'Home' }).waitFor();
      assert((await textOf(page, tid('who'))) === username, 'the top bar does not show the owner');
      assert(!fs.existsSync(path.join(dataDir, 'setup-code')), '<data-dir>/setup-code is still there after setup');
    });

    await step('two-factor enrolment with a code computed from the page, then 10 recovery codes', async () => {
      await page.click(tid('nav-security'));
      await page.locator('main h1', { hasText: 'Security' }).waitFor();
      await page.click(tid('totp-enroll'));
      const secretText = await textOf(page, tid('totp-secret'));
      totpKey = base32Decode(secretText);
      assert(totpKey.length >= 10, `the secret is only ${totpKey.length} bytes`);
      await until('the QR code image to load', () => page.locator(tid('totp-qr')).evaluate((img) => img.complete && img.naturalWidth > 0));
      assert(((await page.getAttribute(tid('totp-qr'), 'alt')) ?? '').length > 10, 'the QR code has no useful alt text');
      await shoot(page, 'security-enrol');
      const { code, step: used } = await freshTotp();
      await page.fill(tid('totp-code'), code);
      await page.click(tid('totp-confirm'));
      await page.locator(tid('recovery-codes')).waitFor();
      lastTotpStep = used;
      const codes = await page.locator(`${tid('recovery-codes')} li`).allTextContents();
      assert(codes.length === 10, `${codes.length} recovery codes shown, not 10`);
      assert(new Set(codes).size === 10, 'the recovery codes repeat');
      await shoot(page, 'recovery-codes');
      await page.click(tid('recovery-done'));
      await page.locator(`${tid('totp-status')}[data-state="on"]`).waitFor();
    });

    await step('log out; a wrong password is refused without saying why; throttling is shown and lifts', async () => {
      await page.click(tid('logout'));
      await page.locator(tid('login-form')).waitFor();
      await shoot(page, 'login');
      let throttled = false;
      for (let attempt = 1; attempt <= 10 && !throttled; attempt++) {
        await page.fill(tid('login-username'), username);
        await page.fill(tid('login-password'), `not the password ${attempt}`);
        const response = await submitFor(page, tid('login-submit'), '/api/login');
        if (response.status() === 429) {
          throttled = true;
          await until('the throttling message', async () => /too many attempts/i.test(await textOf(page, tid('login-error'))));
          assert(await page.locator(tid('login-wait')).isVisible(), 'no countdown is shown while throttled');
          assert(await page.locator(tid('login-submit')).isDisabled(), 'the log-in button stays enabled while throttled');
          await shoot(page, 'login-throttled');
          await until('the log-in button to be enabled again', () => page.locator(tid('login-submit')).isEnabled(), { timeout: 70_000 });
        } else {
          assert(response.status() === 401, `a wrong password got HTTP ${response.status()}`);
          await until('the refusal message', async () => /not right/.test(await textOf(page, tid('login-error'))));
          assert(await page.locator(tid('login-code')).isHidden(), 'a wrong password revealed the code field');
        }
      }
      assert(throttled, 'ten wrong passwords in a row were never throttled');
    });

    await step('log in with username, password and a freshly computed TOTP code', async () => {
      await page.fill(tid('login-username'), username);
      await page.fill(tid('login-password'), password);
      // Throttling may still apply for a moment after the wrong passwords.
      for (let attempt = 0; ; attempt++) {
        assert(attempt < 6, 'logging in never got past throttling');
        const visibleCode = await page.locator(tid('login-code')).isVisible();
        let used = null;
        if (visibleCode) {
          const fresh = await freshTotp();
          used = fresh.step;
          await page.fill(tid('login-code'), fresh.code);
        }
        const response = await submitFor(page, tid('login-submit'), '/api/login');
        if (response.status() === 200) {
          if (used !== null) lastTotpStep = used;
          break;
        }
        if (response.status() === 429) {
          await until('the log-in button to be enabled again', () => page.locator(tid('login-submit')).isEnabled(), { timeout: 70_000 });
          continue;
        }
        const body = await response.json().catch(() => ({}));
        assert(response.status() === 401 && body.totp_required, `logging in got HTTP ${response.status()} ${JSON.stringify(body)}`);
        if (used !== null) lastTotpStep = Math.max(lastTotpStep, used);
        await page.locator(tid('login-code')).waitFor();
        if (!visibleCode) await shoot(page, 'login-totp');
      }
      await page.locator('main h1', { hasText: 'Home' }).waitFor();
      assert(await page.locator(tid('totp-nag')).count() === 0, 'Home still asks to turn on two-factor authentication');
    });

    await step('adopt the simulated Tasmota bulb from Discovered; the simulator connects with the provisioning shown once', async () => {
      const pending = await until(
        'a pending Tasmota bulb in `hearth devices list`',
        async () => (await devicesList(dataDir)).find((d) => d.status === 'pending' && d.kind === 'bulb' && d.profile === 'tasmota'),
        { timeout: DEVICE_TIMEOUT, interval: 500 },
      );
      bulbId = pending.id;
      await page.click(tid('nav-discovered'));
      await page.locator('main h1', { hasText: 'Discovered' }).waitFor();
      const card = page.locator(`${tid('pending-device')}[data-device-id="${bulbId}"]`);
      await card.waitFor({ timeout: DEVICE_TIMEOUT });
      assert((await card.getAttribute('data-kind')) === 'bulb', 'the card does not say bulb');
      // What tells it from another bulb like it: who made it, where it is and
      // the name it announced, as `devices list --json` has them; no id.
      assert(pending.vendor === 'Tasmota', `devices list --json says vendor ${pending.vendor}`);
      assert(pending.advertised_name && pending.addresses?.length > 0, `devices list --json lacks the advertised name or addresses: ${JSON.stringify(pending)}`);
      const fact = async (testid) => ((await card.locator(tid(testid)).textContent({ timeout: UI_TIMEOUT })) ?? '').trim();
      assert((await fact('pending-vendor')) === 'Tasmota', `the card's vendor is ${await fact('pending-vendor')}`);
      assert((await fact('pending-address')).includes(pending.addresses[0]), `the card's address is ${await fact('pending-address')}, not ${pending.addresses[0]}`);
      assert((await fact('pending-advertised')) === pending.advertised_name, `the card says it was advertised as ${await fact('pending-advertised')}`);
      assert((await textOf(page, `${tid('pending-device')}[data-device-id="${bulbId}"] h2`)) === pending.advertised_name, 'the card is not titled by its advertised name');
      const cardText = (await card.textContent()) ?? '';
      assert(!/\b[0-9a-f]{32}\b/.test(cardText), `the card shows a 32-hex id: ${cardText}`);
      // An ESPHome node shows its MAC, and its board is not its model.
      const node = page.locator(`${tid('pending-device')}[data-profile="esphome"]`).first();
      await node.waitFor({ timeout: DEVICE_TIMEOUT });
      assert(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(((await node.locator(tid('pending-mac')).textContent()) ?? '').trim()), 'the ESPHome card shows no MAC');
      assert(((await node.locator(tid('pending-model')).textContent()) ?? '').trim() !== 'esp32dev', 'the ESPHome card shows its board as its model');
      await shoot(page, 'discovered');
      await card.locator(tid('adopt-open')).click();
      await card.locator(tid('adopt-nickname')).fill('Desk lamp');
      await card.locator(tid('adopt-room')).fill('Study');
      // What it is: preset to what discovery found, labelled, changeable.
      const kind = card.locator(tid('adopt-kind'));
      assert((await kind.inputValue()) === 'bulb', `the kind is preset to ${await kind.inputValue()}`);
      assert(await page.locator(`label[for="${await kind.getAttribute('id')}"]`).count() === 1, 'the kind has no label');
      await shoot(page, 'adopt-form');
      await card.locator(tid('adopt-submit')).click();
      const pre = page.locator(tid('provisioning-json'));
      await pre.waitFor();
      const json = (await pre.textContent()) ?? '';
      const provisioning = JSON.parse(json);
      assert(provisioning.id === bulbId, 'the provisioning is for another device');
      assert(provisioning.mqtt?.password && provisioning.mqtt?.username && provisioning.mqtt?.port, 'the provisioning lacks MQTT credentials');
      assert(Array.isArray(provisioning.topics) && provisioning.topics.length > 0, 'the provisioning has no topics');
      assert(String(provisioning.ca_pem).includes('-----BEGIN CERTIFICATE-----'), 'the provisioning has no CA PEM');
      assert(/shown once/i.test(await textOf(page, tid('provisioning-once'))), 'no "shown once" note');
      assert((await page.getAttribute(tid('ca-download'), 'href')) === '/ca.pem', 'no download link to /ca.pem');
      await shoot(page, 'provisioning');

      const file = path.join(tmp, 'provisioning.json');
      fs.writeFileSync(file, json, { mode: 0o600 });
      sim = new Proc('sim', SIM, ['device', '--provisioning', file], { logFile: path.join(ARTIFACTS, 'sim.log'), echo: VERBOSE });
      await sim.waitFor(/^connected$/, { timeout: DEVICE_TIMEOUT, what: '"connected"' });
      await page.click(tid('provisioning-done'));
      await page.locator(tid('provisioning')).waitFor({ state: 'detached' });
    });

    await step('power and brightness set on Home reach the device, and its live state comes back', async () => {
      await page.click(tid('nav-home'));
      const card = page.locator(`${tid('device-tile')}[data-device-id="${bulbId}"]`);
      await card.waitFor();
      await until('the bulb to show as Online', async () => (await card.locator(tid('device-online')).textContent()) === 'Online', { timeout: DEVICE_TIMEOUT });
      const toggle = card.locator(tid('power-toggle'));

      let from = sim.mark();
      await toggle.click();
      await sim.waitFor(/^state ON$/, { from, what: '"state ON"' });
      await until('the toggle to show on (aria-pressed=true)', async () => (await toggle.getAttribute('aria-pressed')) === 'true');
      await shoot(page, 'home');
      await shoot(page, 'home', { dark: true });

      // Off again from the keyboard: the toggle is a real button.
      from = sim.mark();
      await toggle.focus();
      await page.keyboard.press('Space');
      await sim.waitFor(/^state OFF$/, { from, what: '"state OFF"' });
      await until('the toggle to show off (aria-pressed=false)', async () => (await toggle.getAttribute('aria-pressed')) === 'false');

      from = sim.mark();
      await card.locator(tid('brightness')).fill('37');
      await sim.waitFor(/^brightness 37$/, { from, what: '"brightness 37"' });
      await until('the slider to read 37%', async () => (await card.locator(tid('brightness-value')).textContent()) === '37%');
    });

    await step('a new nickname is stored sealed: it is in no file under the data directory (UTF-8 or UTF-16LE)', async () => {
      await page.locator(`${tid('device-tile')}[data-device-id="${bulbId}"] ${tid('device-link')}`).click();
      await page.locator(tid('device-title')).waitFor();
      assert(!(await page.isChecked(tid('device-expose-ha'))), 'a new device is exposed to Home Assistant by default');
      assert(!(await page.isChecked(tid('device-expose-voice'))), 'a new device is exposed to voice assistants by default');
      await shoot(page, 'device');
      await page.fill(tid('device-nickname'), canary);
      await page.click(tid('device-save'));
      await until('the page title to show the new nickname', async () => (await textOf(page, tid('device-title'))) === canary);
      await until('`hearth devices list` to show the new nickname', async () => (await devicesList(dataDir)).some((d) => d.id === bulbId && d.nickname === canary), { timeout: 10_000 });
      const needles = [Buffer.from(canary, 'utf8'), Buffer.from(canary, 'utf16le')];
      const files = filesUnder(dataDir);
      assert(files.some((f) => path.basename(f) === 'hearth.db'), `no hearth.db under ${dataDir}`);
      let sawSqlite = false;
      const found = [];
      for (const file of files) {
        const bytes = fs.readFileSync(file);
        if (bytes.includes(Buffer.from('SQLite format 3\0'))) sawSqlite = true;
        needles.forEach((needle, i) => {
          if (bytes.includes(needle)) found.push(`${path.relative(dataDir, file)} (${i ? 'UTF-16LE' : 'UTF-8'})`);
        });
      }
      // The scan can see plaintext: the database's own header is found.
      assert(sawSqlite, 'the scan did not even find the SQLite header; it reads nothing');
      assert(found.length === 0, `the nickname is readable in: ${found.join(', ')}`);
      const logged = demo.lines.filter((l) => l.includes(canary));
      assert(logged.length === 0, `hearth's output carries the nickname: ${logged[0]}`);
      console.log(`    scanned ${files.length} files: ${files.map((f) => path.relative(dataDir, f)).join(', ')}`);
    });

    await step('rotating the credential cuts the old one off and shows a new one once, which connects', async () => {
      const oldPassword = JSON.parse(fs.readFileSync(path.join(tmp, 'provisioning.json'), 'utf8')).mqtt.password;
      await page.click(tid('rotate'));
      await page.locator(tid('rotate-dialog')).waitFor();
      const from = sim.mark();
      await page.click(tid('rotate-dialog-confirm'));
      const pre = page.locator(tid('provisioning-json'));
      await pre.waitFor();
      const json = (await pre.textContent()) ?? '';
      const provisioning = JSON.parse(json);
      assert(provisioning.id === bulbId, 'the new provisioning is for another device');
      assert(provisioning.mqtt?.password && provisioning.mqtt.password !== oldPassword, 'rotation did not change the password');
      await sim.waitFor(/^(disconnected|refused)$/, { from, timeout: DEVICE_TIMEOUT, what: '"disconnected" or "refused" after rotation' });
      await sim.stop();
      const file = path.join(tmp, 'provisioning.json');
      fs.writeFileSync(file, json, { mode: 0o600 });
      sim = new Proc('sim', SIM, ['device', '--provisioning', file], { logFile: path.join(ARTIFACTS, 'sim-rotated.log'), echo: VERBOSE });
      await sim.waitFor(/^connected$/, { timeout: DEVICE_TIMEOUT, what: '"connected" with the rotated credential' });
      await page.click(tid('provisioning-done'));
      await page.locator(tid('provisioning')).waitFor({ state: 'detached' });
    });

    await step('Voice: an assistant linked with password, TOTP and PKCE sees only the bulb, by its voice name; revoking stops it at once', async () => {
      const REDIRECT = 'https://assistant.invalid/cb';
      // The bulb gets a voice name and is exposed to voice assistants.
      await page.fill(tid('device-voice-name'), 'porch light');
      await page.check(tid('device-expose-voice'));
      await page.click(tid('device-save'));
      await until('the bulb to be exposed to voice', async () => {
        const d = (await devicesList(dataDir)).find((x) => x.id === bulbId);
        return d?.expose_voice === true && d?.voice_name === 'porch light';
      });

      // Enable the relay and register an assistant; its secret is shown once.
      await goto(page, '#/integrations', 'Integrations');
      // hearth demo leaves the relay off; the owner, with two-factor on by
      // now, turns it on here.
      await page.locator(`${tid('relay-status')}[data-state="off"]`).waitFor({ timeout: UI_TIMEOUT });
      await page.click(tid('relay-enable'));
      await page.locator(`${tid('relay-status')}[data-state="on"]`).waitFor({ timeout: UI_TIMEOUT });
      const listening = (await textOf(page, tid('relay-status'))).match(/Listening on (127\.0\.0\.1:\d+)/)?.[1];
      assert(listening, 'the Voice section does not say where the relay listens');
      const relay = `http://${listening}`;
      await page.fill(tid('relay-client-name'), 'Test assistant');
      await page.selectOption(tid('relay-client-assistant'), 'google');
      await page.fill(tid('relay-client-uris'), REDIRECT);
      await page.click(tid('relay-client-register'));
      await page.locator(tid('relay-client-secret-panel')).waitFor({ timeout: UI_TIMEOUT });
      const clientId = await textOf(page, tid('relay-client-id'));
      const clientSecret = await textOf(page, tid('relay-client-secret'));
      assert(/^[0-9a-f]{32}$/.test(clientId) && /^[0-9a-f]{64}$/.test(clientSecret), 'the client id or secret is malformed');
      await shoot(page, 'voice');
      await page.click(tid('relay-secret-done'));
      await until('the secret to be gone from the page', async () => !(await page.content()).includes(clientSecret));

      // The assistant's side: the consent pages in a tab of their own.
      const verifier = randomBytes(32).toString('base64url');
      const challenge = createHash('sha256').update(verifier).digest('base64url');
      const state = randomBytes(8).toString('hex');
      const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, state, code_challenge: challenge, code_challenge_method: 'S256' });
      const tab = await context.newPage();
      let redirected = null;
      // Nothing leaves the machine: the redirect is recorded and aborted.
      await tab.route('https://assistant.invalid/**', (route) => {
        redirected = route.request().url();
        return route.abort();
      });
      try {
        await tab.goto(`${relay}/oauth/authorize?${query}`, { timeout: UI_TIMEOUT });
        await tab.fill(tid('relay-username'), username);
        await tab.fill(tid('relay-password'), password);
        const fresh = await freshTotp();
        await tab.fill(tid('relay-code'), fresh.code);
        await tab.click(tid('relay-login'));
        await tab.locator(tid('relay-allow')).waitFor({ timeout: UI_TIMEOUT });
        lastTotpStep = fresh.step;
        const offered = (await tab.locator('label').filter({ has: tab.locator(tid('relay-device')) }).allTextContents()).map((t) => t.trim());
        assert(offered.length === 1 && offered[0] === 'porch light', `the consent page offers ${JSON.stringify(offered)}`);
        const consentHtml = await tab.content();
        assert(!consentHtml.includes(canary), 'the consent page shows the nickname');
        await tab.screenshot({ path: path.join(ARTIFACTS, 'relay-consent.png'), fullPage: true });
        await tab.check(`${tid('relay-device')}[value="${bulbId}"]`);
        await tab.click(tid('relay-allow')).catch(() => {});
        await until('the redirect to the assistant', async () => redirected !== null);
      } finally {
        await tab.close();
      }
      const back = new URL(redirected);
      assert(back.origin + back.pathname === REDIRECT, `redirected to ${back.origin}${back.pathname}`);
      assert(back.searchParams.get('state') === state, 'the state did not come back');
      const code = back.searchParams.get('code');
      assert(code, 'no code in the redirect');

      const basic = `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`;
      const token = await fetchWithin(`${relay}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
        body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }),
      });
      assert(token.status === 200, `the token endpoint answered ${token.status}`);
      const { access_token: access } = await token.json();
      const sync = async () =>
        fetchWithin(`${relay}/google`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${access}` },
          body: JSON.stringify({ requestId: 'e2e', inputs: [{ intent: 'action.devices.SYNC' }] }),
        });
      const synced = await sync();
      const text = await synced.text();
      assert(synced.status === 200, `SYNC answered ${synced.status}`);
      const devices = JSON.parse(text).payload?.devices ?? [];
      assert(devices.length === 1 && devices[0].id === bulbId && devices[0].name?.name === 'porch light', `SYNC gave ${text}`);
      for (const secret of [canary, 'Tasmota', 'tasmota', username]) assert(!text.includes(secret), `SYNC carries "${secret}"`);

      // The dashboard lists the link, Privacy counts its calls, and
      // revoking it stops the token at once.
      await goto(page, '#/privacy', 'Privacy');
      await page.locator(tid('privacy-voice-link')).filter({ hasText: 'Test assistant' }).waitFor({ timeout: UI_TIMEOUT });
      await goto(page, '#/integrations', 'Integrations');
      const link = page.locator(tid('relay-link')).filter({ hasText: 'porch light' });
      await link.waitFor({ timeout: UI_TIMEOUT });
      await link.locator(tid('relay-link-revoke')).click();
      await page.locator(tid('relay-link-revoke-dialog')).waitFor({ timeout: UI_TIMEOUT });
      assert(/stop working at once/.test(await textOf(page, tid('relay-link-revoke-dialog'))), 'the revoke dialog does not say what happens');
      await page.click(tid('relay-link-revoke-dialog-confirm'));
      await page.locator(tid('relay-no-links')).waitFor({ timeout: UI_TIMEOUT });
      assert((await sync()).status === 401, 'a revoked link still answers');

      // Disabled: nothing listens.
      await page.click(tid('relay-disable'));
      await page.locator(`${tid('relay-status')}[data-state="off"]`).waitFor({ timeout: UI_TIMEOUT });
      const refused = await fetchWithin(`${relay}/health`).then(
        () => false,
        () => true,
      );
      assert(refused, 'the disabled relay still answers');

      // The settings watcher: enabling the relay and exposing the bulb
      // stand as warnings until acknowledged: one line on every page says
      // how many, and leads to the list on Security.
      const rawId = /\b[0-9a-f]{32}\b/;
      const summary = page.locator(tid('warnings-summary'));
      const counted = async () => ((await summary.count()) ? Number(await summary.getAttribute('data-count')) : 0);
      await page.reload();
      await page.locator('main h1', { hasText: 'Integrations' }).waitFor();
      await summary.waitFor({ timeout: UI_TIMEOUT });
      const standing = await counted();
      assert(standing >= 2, `the summary counts ${standing} warnings, not the relay's and the exposure's`);
      const said = (await summary.textContent()).replace(/\s+/g, ' ').trim();
      assert(new RegExp(`^!?${standing} changes lowered protection — Review$`).test(said), `the summary says: ${said}`);
      await shoot(page, 'warnings');
      await page.setViewportSize(MOBILE);
      const line = await summary.boundingBox();
      assert(line && line.height <= 60, `the summary is ${line?.height} px tall on a 390 px screen`);
      const cut = await summary.evaluate((el) => [...el.querySelectorAll('*')].some((e) => e.scrollWidth > e.clientWidth + 1));
      assert(!cut, 'the summary is cut short on a 390 px screen');
      await page.setViewportSize(DESKTOP);
      // By keyboard: the link leads to the list, which takes the focus.
      await summary.locator('a').focus();
      await page.keyboard.press('Enter');
      await page.locator('main h1', { hasText: 'Security' }).waitFor();
      const list = page.locator(tid('warnings-list'));
      await list.locator(tid('warning')).first().waitFor({ timeout: UI_TIMEOUT });
      await until('the warnings to have the focus', async () => (await page.evaluate(() => document.activeElement?.id)) === 'warnings-section');
      assert((await list.locator(tid('warning')).count()) === standing, 'the list and the summary count differently');
      const relayGroup = list.locator(`${tid('warnings-group')}[data-group="relay"]`);
      assert(/voice relay was enabled/.test(await relayGroup.textContent()), `no warning for the relay: ${await list.textContent()}`);
      const voiceGroup = list.locator(`${tid('warnings-group')}[data-group="exposed_voice"]`);
      const voiceText = await voiceGroup.textContent();
      assert(voiceText.includes(`\u201c${canary}\u201d was exposed to voice assistants`), `the exposure does not name the bulb: ${voiceText}`);
      assert(/Devices exposed to voice assistants \(1\)/.test(voiceText), `the group has no heading with its count: ${voiceText}`);
      await until('audit events', async () => (await page.locator(tid('audit-event')).count()) > 0);
      for (const which of ['warnings-list', 'audit']) {
        const shown = await textOf(page, tid(which));
        assert(!rawId.test(shown), `${which} shows a raw id: ${shown.match(rawId)?.[0]}`);
      }
      await shoot(page, 'warnings-list');
      // One acknowledged alone; the line on top counts one fewer.
      await relayGroup.locator(tid('warning-ack')).click();
      await until('the relay warning to go', async () => (await list.locator(`${tid('warnings-group')}[data-group="relay"]`).count()) === 0);
      await until('the summary to count one fewer', async () => (await counted()) === standing - 1);
      // The rest at once, in one request that says what it did.
      await page.click(tid('warnings-ack-all'));
      await page.locator(tid('warnings-status')).filter({ hasText: `Acknowledged ${standing - 1} warning` }).waitFor({ timeout: UI_TIMEOUT });
      await list.locator(tid('warnings-none')).waitFor({ timeout: UI_TIMEOUT });
      assert((await list.locator(tid('warning')).count()) === 0, 'warnings remain after Acknowledge all');
      await until('the summary to go', async () => (await summary.count()) === 0);
      await goto(page, '#/home', 'Home');
      await page.reload();
      await page.locator('main h1', { hasText: 'Home' }).waitFor();
      await sleep(500);
      assert((await summary.count()) === 0, 'acknowledged warnings came back');
      await goto(page, `#/device/${bulbId}`, canary);
    });

    await step('forgetting the device, after a dialog that says what it revokes, removes it and cuts its session', async () => {
      await page.click(tid('forget'));
      const dialog = page.locator(tid('forget-dialog'));
      await dialog.waitFor();
      const said = (await dialog.textContent()) ?? '';
      for (const word of ['credential', 'MQTT session', 'Home Assistant', 'voice', 'sealed data']) {
        assert(said.includes(word), `the forget dialog does not mention "${word}"`);
      }
      await shoot(page, 'forget-dialog');
      const from = sim.mark();
      await page.click(tid('forget-dialog-confirm'));
      await page.locator('main h1', { hasText: 'Home' }).waitFor();
      await until('the device to disappear from Home', async () => (await page.locator(`[data-device-id="${bulbId}"]`).count()) === 0);
      await sim.waitFor(/^(disconnected|refused)$/, { from, timeout: DEVICE_TIMEOUT, what: '"disconnected" or "refused"' });
      await until('`hearth devices list` to drop the device', async () => !(await devicesList(dataDir)).some((d) => d.id === bulbId), { timeout: 10_000 });
    });

    await step('Security and Privacy pages render (sessions, audit, what is stored and what leaves); keyboard reaches them', async () => {
      // A reload keeps the session (the page fetches its CSRF token again).
      // From the top of the page, the first Tab stop is the skip link, then
      // the navigation; Enter on a link follows it.
      await page.reload();
      await page.locator('main h1', { hasText: 'Home' }).waitFor();
      await page.keyboard.press('Tab');
      assert((await page.evaluate(() => document.activeElement?.id)) === 'skip-link', 'the first Tab stop is not the skip link');
      let reached = false;
      for (let i = 0; i < 8 && !reached; i++) {
        await page.keyboard.press('Tab');
        reached = (await page.evaluate(() => document.activeElement?.dataset?.testid)) === 'nav-security';
      }
      assert(reached, 'Tab did not reach the Security link');
      await page.keyboard.press('Enter');
      await page.locator('main h1', { hasText: 'Security' }).waitFor();
      await page.locator(`${tid('session')}[data-current="true"]`).waitFor();
      await until('audit events', async () => (await page.locator(tid('audit-event')).count()) > 0);
      await page.locator(`${tid('audit-chain')}[data-state="verified"]`).waitFor({ timeout: UI_TIMEOUT });
      // Every warning was acknowledged: the list says so, no summary
      // stands, and no raw id shows, the forgotten bulb's neither.
      await page.locator(tid('warnings-none')).waitFor({ timeout: UI_TIMEOUT });
      assert((await page.locator(tid('warnings-summary')).count()) === 0, 'a summary with nothing standing');
      for (const which of ['warnings-list', 'audit']) {
        const shown = await textOf(page, tid(which));
        assert(!/\b[0-9a-f]{32}\b/.test(shown), `${which} shows a raw id: ${shown}`);
      }
      assert(/a device hearth no longer has/.test(await textOf(page, tid('audit'))), 'the forgotten bulb is not described in the audit log');
      // Log everyone out: this session stays, and says what was revoked.
      await page.click(tid('lockdown'));
      await page.locator(tid('lockdown-dialog')).waitFor({ timeout: UI_TIMEOUT });
      assert(/Devices stay connected/.test(await textOf(page, tid('lockdown-dialog'))), 'the lockdown dialog does not say devices stay connected');
      await page.click(tid('lockdown-dialog-confirm'));
      await page.locator(tid('lockdown-summary')).waitFor({ timeout: UI_TIMEOUT });
      assert(/0 other sessions ended/.test(await textOf(page, tid('lockdown-summary'))), await textOf(page, tid('lockdown-summary')));
      await until('audit events after the lockdown', async () => {
        await page.reload();
        await page.locator('main h1', { hasText: 'Security' }).waitFor();
        return (await page.locator(`${tid('audit-event')}[data-event="lockdown"]`).count()) > 0;
      }, { timeout: 10_000 });
      await page.locator(`${tid('audit-chain')}[data-state="verified"]`).waitFor({ timeout: UI_TIMEOUT });
      // Rotate the data key: the progress ends with one key, and the audit
      // log records it.
      await page.locator(`${tid('keys-status')}[data-state="idle"]`).waitFor({ timeout: UI_TIMEOUT });
      await page.click(tid('keys-rotate'));
      await page.locator(tid('keys-dialog')).waitFor({ timeout: UI_TIMEOUT });
      await page.click(tid('keys-dialog-confirm'));
      const rotations = () => page.evaluate(async () => (await fetch('/api/audit?event=keys_rotated')).json());
      await until('the rotation to finish', async () => (await rotations()).length === 1 && (await page.locator(`${tid('keys-status')}[data-state="idle"]`).count()) > 0, { timeout: 30_000 });
      await until('the page to show it', async () => /sealed under one data key/.test(await textOf(page, tid('keys-status'))) && !(await page.locator(tid('keys-rotate')).isDisabled()));
      assert((await rotations())[0].actor.startsWith('session '), 'the rotation is not audited with its session');
      // A backup, downloaded with password and a fresh code, opens with
      // hearth's own restore and nothing else.
      const backupPass = `backup ${randomBytes(6).toString('hex')} passphrase`;
      await page.fill(tid('backup-passphrase'), backupPass);
      await page.fill(tid('backup-passphrase-again'), backupPass);
      await page.fill(tid('backup-password'), password);
      const fresh = await freshTotp();
      await page.fill(tid('backup-code'), fresh.code);
      const [backupFile] = await Promise.all([page.waitForEvent('download'), page.click(tid('backup-download'))]);
      lastTotpStep = fresh.step;
      await page.locator(tid('backup-done')).filter({ hasText: 'Backup downloaded' }).waitFor({ timeout: UI_TIMEOUT });
      const sealed = await fs.promises.readFile(await backupFile.path());
      assert(sealed.subarray(0, 8).toString() === 'HEARTHBK', 'the download is not a hearth backup');
      assert(!sealed.includes('SQLite format') && !sealed.includes(password), 'the backup shows plaintext');
      const restoreDir = path.join(tmp, 'restored');
      const passFile = path.join(tmp, 'backup-pass');
      fs.writeFileSync(passFile, `${backupPass}\n`, { mode: 0o600 });
      const backupPath = path.join(tmp, 'dashboard.hearthbackup');
      fs.writeFileSync(backupPath, sealed);
      await run(HEARTH, ['backup', 'restore', backupPath, '--passphrase-file', passFile, '--data-dir', restoreDir], { timeout: 60_000 });
      const { stdout: verified } = await run(HEARTH, ['audit', 'verify', '--json', '--data-dir', restoreDir], { timeout: 30_000 });
      assert(JSON.parse(verified).problem === null, `the restored store's audit log does not verify: ${verified}`);
      // Filter by type: only lockdowns, each with who did it and how it ended.
      await page.selectOption(tid('audit-filter-event'), 'lockdown');
      await page.click(tid('audit-filter-apply'));
      await until('only lockdown events', async () => {
        const kinds = await page.locator(tid('audit-event')).evaluateAll((els) => els.map((e) => e.dataset.event));
        return kinds.length > 0 && kinds.every((k) => k === 'lockdown');
      });
      const row = await textOf(page, `${tid('audit-event')}[data-event="lockdown"]`);
      assert(/you, in this browser/.test(row) && /Done/.test(row), `a lockdown row does not name its session and outcome: ${row}`);
      assert(/Lockdown: everyone logged out/.test(row), `a lockdown row does not say what happened in words: ${row}`);
      // A time window in the future matches nothing.
      await page.selectOption(tid('audit-filter-event'), '');
      await page.fill(tid('audit-filter-since'), '2099-01-01T00:00');
      await page.click(tid('audit-filter-apply'));
      await until('an empty window', async () => /No event matches/.test(await textOf(page, tid('audit'))));
      await page.fill(tid('audit-filter-since'), '');
      await page.click(tid('audit-filter-apply'));
      await until('every event again', async () => (await page.locator(`${tid('audit-event')}[data-event="login"]`).count()) > 0);
      // Export: a JSON file of every kept event, oldest first.
      const [download] = await Promise.all([page.waitForEvent('download'), page.click(tid('audit-export'))]);
      const exported = JSON.parse(await fs.promises.readFile(await download.path(), 'utf8'));
      assert(Array.isArray(exported) && exported.length > 2, 'the export is not a list of events');
      assert(exported[0].seq < exported[exported.length - 1].seq, 'the export is not oldest first');
      assert(exported.some((e) => e.event === 'lockdown' && e.actor.startsWith('session ') && e.outcome === 'ok'), 'the export lacks the lockdown with its actor');
      // Times are unix seconds: every one shown must be within a day of now.
      const times = await page.locator(`${tid('sessions')} time, ${tid('audit')} time`).evaluateAll((els) => els.map((e) => e.getAttribute('datetime')));
      assert(times.length > 0, 'no times shown for sessions and audit events');
      for (const t of times) {
        const off = Math.abs(Date.parse(t) - Date.now());
        assert(off < 86_400_000, `a session or audit time is ${t}, not near now: the API should give unix seconds`);
      }
      await shoot(page, 'security');
      await shoot(page, 'security', { dark: true });
      await page.click(tid('nav-privacy'));
      await until('the privacy page to load', async () => (await page.locator(`${tid('privacy-row')}, ${tid('privacy-stored')} p`).count()) > 0 && !/Loading/.test(await textOf(page, tid('privacy-stored'))));
      await until('the counts of what is held', async () => (await page.locator(tid('privacy-held')).count()) > 5);
      assert((await page.locator(tid('privacy-retention')).count()) >= 5, 'no retention list on Privacy');
      await shoot(page, 'privacy');
      await shoot(page, 'privacy', { dark: true });
    });

    await step('Integrations: the Home Assistant password is shown once, rotated and revoked behind dialogs; sharing details shows on Privacy', async () => {
      await goto(page, '#/integrations', 'Integrations');
      await page.locator(`${tid('ha-status')}[data-state="off"]`).waitFor({ timeout: UI_TIMEOUT });
      assert(/0 devices exposed/.test(await textOf(page, tid('ha-exposed'))), 'a device is exposed to Home Assistant by default');
      assert(!(await page.locator(tid('ha-share-details')).isChecked()), 'device details are shared by default');
      await page.click(tid('ha-enable'));
      await page.locator(tid('ha-connection')).waitFor({ timeout: UI_TIMEOUT });
      const username = await textOf(page, tid('ha-username'));
      const password = await textOf(page, tid('ha-password'));
      const port = await textOf(page, tid('ha-port'));
      assert(username === 'homeassistant', `username ${username}`);
      assert(/^[0-9a-f]{32}$/.test(password), `password ${password}`);
      assert(/^\d+$/.test(port) && Number(port) > 0, `port ${port}`);
      assert((await textOf(page, tid('ha-prefix'))) === 'homeassistant', 'discovery prefix');
      assert((await page.locator(tid('ha-ca')).getAttribute('href')) === '/ca.pem', 'CA link');
      await shoot(page, 'integrations');
      await shoot(page, 'integrations', { dark: true });
      await page.click(tid('ha-connection-done'));
      await page.locator(`${tid('ha-status')}[data-state="on"]`).waitFor({ timeout: UI_TIMEOUT });
      await until('the password to be gone from the page', async () => (await page.locator(tid('ha-connection')).count()) === 0);
      assert(!(await page.content()).includes(password), 'the password is still on the page');

      // Rotating asks first, and says what it does.
      await page.click(tid('ha-rotate'));
      await page.locator(tid('ha-rotate-dialog')).waitFor({ timeout: UI_TIMEOUT });
      assert(/disconnected until/i.test(await textOf(page, tid('ha-rotate-dialog'))), 'the rotate dialog does not say what happens');
      await page.click(tid('ha-rotate-dialog-cancel'));
      await until('the dialog to close', async () => (await page.locator(tid('ha-rotate-dialog')).count()) === 0);
      assert((await page.locator(tid('ha-connection')).count()) === 0, 'cancel rotated anyway');
      await page.click(tid('ha-rotate'));
      await page.click(tid('ha-rotate-dialog-confirm'));
      await page.locator(tid('ha-connection')).waitFor({ timeout: UI_TIMEOUT });
      const rotated = await textOf(page, tid('ha-password'));
      assert(/^[0-9a-f]{32}$/.test(rotated) && rotated !== password, 'rotation gave no new password');
      await page.click(tid('ha-connection-done'));

      // Sharing details is a choice that the Privacy page reflects.
      await page.check(tid('ha-share-details'));
      await until('the setting to be saved', async () => /Saved/.test(await textOf(page, tid('status'))));
      await goto(page, '#/privacy', 'Privacy');
      await page.locator(`${tid('privacy-shared-item')}[data-enabled="true"][data-share-details="true"]`).waitFor({ timeout: UI_TIMEOUT });
      assert(/firmware too/.test(await textOf(page, tid('privacy-shared-item'))), 'Privacy does not say details are shared');

      // Disconnecting says that every device leaves Home Assistant.
      await goto(page, '#/integrations', 'Integrations');
      await page.click(tid('ha-disable'));
      await page.locator(tid('ha-disable-dialog')).waitFor({ timeout: UI_TIMEOUT });
      assert(/disappears from Home Assistant/.test(await textOf(page, tid('ha-disable-dialog'))), 'the disconnect dialog does not say what happens');
      await page.click(tid('ha-disable-dialog-confirm'));
      await page.locator(`${tid('ha-status')}[data-state="off"]`).waitFor({ timeout: UI_TIMEOUT });
    });

    await step('Matter: pairing opened on Integrations shows a QR code that loads and fits a phone, the manual code the CLI reports, a countdown; Stop pairing closes it', async () => {
      await goto(page, '#/integrations', 'Integrations');
      const state = page.locator(tid('matter-status'));
      await page.locator(`${tid('matter-status')}[data-state="on"]`).waitFor({ timeout: UI_TIMEOUT });
      assert(new RegExp(`UDP port ${matterPort}\\b`).test(await textOf(page, tid('matter-status'))), `the status does not name port ${matterPort}: ${await state.textContent()}`);
      assert((await page.locator(tid('matter-code')).count()) === 0, 'a setup code shows while pairing is closed');
      assert((await hearthJson(['matter', 'status'], dataDir)).pairing_open === false, 'pairing was open before the owner opened it');
      const qrUrl = new URL('/api/matter/qr.svg', origin).href;
      const closedQr = await page.evaluate(async (url) => (await fetch(url)).status, qrUrl);
      assert(closedQr === 404, `the QR code answered ${closedQr} while pairing is closed`);

      await page.click(tid('matter-pair'));
      await page.locator(tid('matter-pairing')).waitFor({ timeout: UI_TIMEOUT });
      const qr = page.locator(tid('matter-qr'));
      await until('the QR code image to load', () => qr.evaluate((img) => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0));
      assert(((await qr.getAttribute('alt')) ?? '').length > 10, 'the QR code has no useful alt text');
      const shown = await textOf(page, tid('matter-code'));
      assert(/^\d{4}-\d{3}-\d{4}$/.test(shown), `the manual code reads ${JSON.stringify(shown)}, not XXXX-XXX-XXXX`);
      const digits = shown.replaceAll('-', '');
      assert(digits.length === 11, `the manual code has ${digits.length} digits`);
      assert((await hearthJson(['matter', 'status'], dataDir)).pairing_open === true, 'hearth matter status says pairing is closed');
      // Asking again while open leaves the window as it is and answers the codes.
      const cli = await hearthJson(['matter', 'pair'], dataDir);
      assert(cli.manual_code === digits && cli.manual_code_pretty === shown, 'the page and `hearth matter pair` show different codes');
      const first = await textOf(page, tid('matter-countdown'));
      assert(/^1[45]:\d\d$/.test(first), `the countdown reads ${JSON.stringify(first)}`);
      await until('the countdown to move', async () => (await textOf(page, tid('matter-countdown'))) !== first, { timeout: 5000 });
      const noSession = await httpsGet(qrUrl, caPem);
      assert(noSession.status === 401, `the QR code answered ${noSession.status} without a session`);
      const served = await page.evaluate(async (url) => {
        const r = await fetch(url);
        return { status: r.status, type: r.headers.get('content-type'), cache: r.headers.get('cache-control') };
      }, qrUrl);
      assert(served.status === 200 && served.type === 'image/svg+xml' && served.cache === 'no-store', `the QR code was served as ${JSON.stringify(served)}`);
      await shoot(page, 'matter-pairing');
      await page.setViewportSize(MOBILE);
      await sleep(250);
      const box = await qr.boundingBox();
      assert(box && box.width >= 150 && box.x >= 0 && box.x + box.width <= MOBILE.width, `the QR code does not fit a phone: ${JSON.stringify(box)}`);
      await page.setViewportSize(DESKTOP);
      await shoot(page, 'matter-pairing', { dark: true });

      await page.click(tid('matter-stop'));
      await page.locator(`${tid('matter-status')}[data-state="on"]`).waitFor({ timeout: UI_TIMEOUT });
      assert((await page.locator(tid('matter-pairing')).count()) === 0, 'the pairing panel stayed after Stop pairing');
      assert(!(await page.content()).includes(shown), 'the setup code is still on the page');
      const api = await page.evaluate(async () => (await fetch('/api/matter')).json());
      assert(api.pairing?.open === false && api.pairing.manual_code === undefined, `GET /api/matter after Stop: ${JSON.stringify(api.pairing)}`);
      assert((await hearthJson(['matter', 'status'], dataDir)).pairing_open === false, 'hearth matter status says pairing is still open');
      const stoppedQr = await page.evaluate(async (url) => (await fetch(url)).status, qrUrl);
      assert(stoppedQr === 404, `the QR code answered ${stoppedQr} after Stop pairing`);
      await page.locator(tid('matter-no-controllers')).waitFor({ timeout: UI_TIMEOUT });
      assert(/No controller has joined/.test(await textOf(page, tid('matter-no-controllers'))), 'no empty state for the controllers');
      await shoot(page, 'matter-closed');

      // Closed from elsewhere while the page shows it open: the page's poll
      // notices, takes the code away and says why.
      await page.click(tid('matter-pair'));
      await page.locator(tid('matter-code')).waitFor({ timeout: UI_TIMEOUT });
      const closedByCli = await hearthJson(['matter', 'pair', '--close'], dataDir);
      assert(closedByCli.was_open === true, `hearth matter pair --close answered ${JSON.stringify(closedByCli)}`);
      await until('the page to notice pairing closed', async () => (await page.locator(tid('matter-pairing')).count()) === 0, { timeout: 10_000 });
      assert(/closed elsewhere/.test(await textOf(page, tid('matter-notice'))), `the notice says: ${await textOf(page, tid('matter-notice'))}`);
      assert((await page.locator(tid('matter-code')).count()) === 0, 'the code stayed after pairing closed');
      const log = fs.readFileSync(path.join(ARTIFACTS, 'demo.log'), 'utf8');
      assert(log.includes('matter pairing opened by the owner'), 'the demo log does not show pairing opened');
      assert(!log.includes(digits) && !log.includes(shown) && !log.includes(cli.qr), 'a setup code reached the log');
    });

    await step('DNS: a device\'s "Reaches out to" lists what it looked up, the Shelly cloud marked; Block known clouds answers NXDOMAIN and shows it blocked; the warning names the device; owner cloud domains are added and removed', async () => {
      // A device added by hand, with the address its lookups come from.
      const added = await hearthJson(['devices', 'add', '--profile', 'shelly', '--kind', 'plug', '--nickname', 'Kettle plug', '--address', '127.0.0.23'], dataDir);
      const plugId = added.id;
      assert(/^[0-9a-f]{32}$/.test(plugId ?? ''), `hearth devices add gave no id: ${JSON.stringify(added).slice(0, 200)}`);
      const dig = async (name) => {
        const { stdout } = await run(DIG, ['-b', '127.0.0.23', '@127.0.0.1', '-p', String(dnsPort), '+tries=1', '+time=3', name], { timeout: 10_000 });
        return stdout.match(/status: ([A-Z]+)/)?.[1] ?? stdout;
      };
      const LONG = 'telemetry-firmware-updates-and-diagnostics-eu-central-cluster7.example.org';
      assert((await dig('shelly.cloud')) === 'NOERROR', 'shelly.cloud did not resolve through hearth');
      assert((await dig(LONG)) === 'NOERROR', 'the long name did not resolve through hearth');
      assert((await dig('example.org')) === 'NOERROR', 'example.org did not resolve through hearth');

      // Names in the page only: watch the console while the page shows them.
      const consoleTexts = [];
      const onConsole = (m) => consoleTexts.push(m.text());
      page.on('console', onConsole);
      await goto(page, '#/home', 'Home');
      await page.reload();
      await page.locator('main h1', { hasText: 'Home' }).waitFor();
      await goto(page, `#/device/${plugId}`, 'Kettle plug');
      const section = page.locator(tid('dns-device'));
      const row = (name) => section.locator(tid('dns-name')).filter({ has: page.locator(tid('dns-name-text'), { hasText: new RegExp(`^${name.replace(/\./g, '\\.')}$`) }) });
      await until('shelly.cloud and example.org in "Reaches out to"', async () => (await row('shelly.cloud').count()) === 1 && (await row('example.org').count()) === 1, { timeout: DEVICE_TIMEOUT });
      const names = (await section.locator(tid('dns-name-text')).allTextContents()).map((t) => t.trim());
      assert(names[0] === 'example.org', `the most recent lookup is not first: ${names.join(', ')}`);
      assert(/Shelly cloud/.test(await row('shelly.cloud').locator(tid('dns-cloud-badge')).textContent()), 'shelly.cloud has no Shelly cloud badge');
      assert((await row('example.org').locator(tid('dns-cloud-badge')).count()) === 0, 'example.org is marked as a cloud');
      assert(await page.isChecked(tid('dns-policy-observe')), 'a new device does not start at Observe');

      // Layout: the policy is three tappable choices, and a long name stays
      // inside its card, on a phone and a desktop.
      for (const size of [MOBILE, DESKTOP]) {
        await page.setViewportSize(size);
        await sleep(250);
        const facts = await page.evaluate(() => {
          const card = document.querySelector('[data-testid="dns-device"]').getBoundingClientRect();
          const options = [...document.querySelectorAll('[data-testid="dns-policy"] label')].map((l) => l.getBoundingClientRect());
          const names = [...document.querySelectorAll('[data-testid="dns-name-text"]')].map((n) => n.getBoundingClientRect());
          return {
            overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
            options: options.map((r) => ({ h: r.height, left: r.left, right: r.right })),
            card: { left: card.left, right: card.right },
            namesOut: names.filter((r) => r.left < card.left - 0.5 || r.right > card.right + 0.5).length,
          };
        });
        assert(facts.overflow <= 1, `the device page is ${facts.overflow} px wider than ${size.width} px`);
        assert(facts.options.length === 3, `${facts.options.length} policy choices, not 3`);
        for (const o of facts.options) {
          assert(o.h >= 44, `a policy choice is ${o.h} px tall at ${size.width} px`);
          assert(o.left >= 0 && o.right <= size.width, `a policy choice is cut off at ${size.width} px`);
        }
        assert(facts.namesOut === 0, `${facts.namesOut} names stick out of their card at ${size.width} px`);
      }
      await page.setViewportSize(DESKTOP);
      await section.scrollIntoViewIfNeeded();
      await shoot(page, 'dns-device');

      // Block known clouds: the next lookup of shelly.cloud gets NXDOMAIN,
      // and the list counts it blocked.
      const [put] = await Promise.all([
        page.waitForResponse((r) => new URL(r.url()).pathname === `/api/devices/${plugId}/dns` && r.request().method() === 'PUT'),
        page.locator(`label[for="${await page.getAttribute(tid('dns-policy-block_cloud'), 'id')}"]`).click(),
      ]);
      assert(put.status() === 200, `setting the policy got HTTP ${put.status()}`);
      assert(await page.isChecked(tid('dns-policy-block_cloud')), 'Block known clouds is not shown as chosen');
      assert((await dig('shelly.cloud')) === 'NXDOMAIN', 'shelly.cloud still resolves for a device set to Block known clouds');
      assert((await dig('example.org')) === 'NOERROR', 'example.org no longer resolves for a device set to Block known clouds');
      await until('shelly.cloud shown blocked', async () => /1 blocked/.test((await row('shelly.cloud').locator(tid('dns-blocked')).textContent({ timeout: 1000 })) ?? ''), { timeout: DEVICE_TIMEOUT });
      assert((await row('example.org').locator(tid('dns-blocked')).count()) === 0, 'example.org is shown blocked');
      await shoot(page, 'dns-device-blocked');
      await shoot(page, 'dns-device-blocked', { dark: true });

      // The standing warning names the device by its nickname.
      await until('a dns_cloud warning from the API', async () => (await page.evaluate(async () => (await fetch('/api/warnings')).json())).some((w) => w.group === 'dns_cloud'), { timeout: DEVICE_TIMEOUT });
      await goto(page, '#/security', 'Security');
      const warning = page.locator(`${tid('warnings-group')}[data-group="dns_cloud"] ${tid('warning')}`).filter({ hasText: 'started looking up shelly.cloud' });
      await warning.first().waitFor({ timeout: UI_TIMEOUT });
      const text = (await warning.first().textContent()) ?? '';
      assert(/Kettle plug/.test(text), `the warning does not name the device: ${text}`);
      assert(!/\b[0-9a-f]{32}\b/.test(text) && !text.includes(plugId.slice(0, 8)), `the warning shows the device's id: ${text}`);
      assert(/Devices reaching a cloud/.test(await textOf(page, `${tid('warnings-group')}[data-group="dns_cloud"] h3`)), 'the dns_cloud group has no heading of its own');

      // Privacy: the resolver's counts, and the owner's cloud domains.
      await goto(page, '#/privacy', 'Privacy');
      await page.locator(`${tid('dns-status')}[data-state="on"]`).waitFor({ timeout: UI_TIMEOUT });
      assert(Number(await textOf(page, tid('dns-count-devices'))) >= 5, `the page counts ${await textOf(page, tid('dns-count-devices'))} lookups from devices`);
      assert(Number(await textOf(page, tid('dns-count-blocked'))) >= 1, 'the page counts no blocked lookup');
      assert(/Kettle plug/.test(await textOf(page, tid('dns-reaching'))), 'the plug is not listed as reaching a cloud');
      assert((await page.locator(`${tid('dns-shipped')}[open]`).count()) === 0, 'the shipped list is open by default');
      assert((await page.locator(tid('dns-vendor')).filter({ hasText: 'Shelly' }).count()) === 1, 'the shipped list has no Shelly');
      await page.fill(tid('dns-owner-input'), 'Cloud.Example.NET');
      await page.click(tid('dns-owner-add'));
      const mine = page.locator(tid('dns-owner-domain')).filter({ hasText: 'cloud.example.net' });
      await mine.waitFor({ timeout: UI_TIMEOUT });
      await page.locator(tid('dns-shipped')).locator('summary').click();
      await shoot(page, 'dns-privacy');
      await mine.locator(tid('dns-owner-remove')).click();
      await page.click(tid('dns-owner-remove-dialog-confirm'));
      await mine.waitFor({ state: 'detached', timeout: UI_TIMEOUT });
      await page.locator(tid('dns-owner-none')).waitFor({ timeout: UI_TIMEOUT });

      // The names stayed in the page: not in the URL, storage or console.
      page.off('console', onConsole);
      const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
      for (const name of ['shelly.cloud', 'example.org', 'cloud.example.net']) {
        assert(!page.url().includes(name), `the URL carries ${name}`);
        assert(!stored.includes(name), `browser storage carries ${name}`);
        assert(!consoleTexts.some((t) => t.includes(name)), `the console carries ${name}`);
      }
    });

    await step('two-factor moves to a new phone only with the password; the old phone works until the new one is confirmed', async () => {
      await goto(page, '#/security', 'Security');
      await page.locator(`${tid('totp-status')}[data-state="on"]`).waitFor({ timeout: UI_TIMEOUT });
      await page.fill(tid('totp-reenroll-password'), `${password} but wrong`);
      const refused = await submitFor(page, tid('totp-reenroll'), '/api/totp/reenroll');
      assert(refused.status() === 403, `a wrong password got HTTP ${refused.status()}`);
      await until('the refusal', async () => /not your password/.test(await textOf(page, tid('totp-reenroll-error'))));
      await page.fill(tid('totp-reenroll-password'), password);
      await page.click(tid('totp-reenroll'));
      const newKey = base32Decode(await textOf(page, tid('totp-secret')));
      assert(newKey.length >= 10 && !newKey.equals(totpKey), 'the new phone got no new secret');
      await until('the QR code image to load', () => page.locator(tid('totp-qr')).evaluate((img) => img.complete && img.naturalWidth > 0));
      // A code from the old phone does not confirm the new one.
      oldTotpKey = totpKey;
      const stale = await freshTotp();
      await page.fill(tid('totp-code'), stale.code);
      const wrongPhone = await submitFor(page, tid('totp-confirm'), '/api/totp/confirm');
      assert(wrongPhone.status() >= 400, `the old phone's code confirmed the new one (HTTP ${wrongPhone.status()})`);
      totpKey = newKey;
      const fresh = await freshTotp();
      await page.fill(tid('totp-code'), fresh.code);
      await page.click(tid('totp-confirm'));
      await page.locator(tid('recovery-codes')).waitFor({ timeout: UI_TIMEOUT });
      lastTotpStep = fresh.step;
      const codes = await page.locator(`${tid('recovery-codes')} li`).allTextContents();
      assert(codes.length === 10 && new Set(codes).size === 10, `${codes.length} recovery codes after re-enrolment`);
      await page.click(tid('recovery-done'));
      await page.locator(`${tid('totp-status')}[data-state="on"]`).waitFor({ timeout: UI_TIMEOUT });
      const resets = await page.evaluate(async () => (await fetch('/api/audit?event=totp_reset')).json());
      assert(resets.some((e) => e.outcome === 'refused'), 'the wrong password is not in the audit log');
      assert(resets.some((e) => e.outcome === 'ok' && e.actor.startsWith('session ')), 'the re-enrolment is not in the audit log');
    });

    await step('a new password can be required at the next login: the login then opens only the password form until it is changed', async () => {
      await page.click(tid('password-require'));
      await page.locator(tid('password-require-dialog')).waitFor({ timeout: UI_TIMEOUT });
      assert(/Every other session ends/.test(await textOf(page, tid('password-require-dialog'))), 'the dialog does not say what it does');
      await page.click(tid('password-require-dialog-confirm'));
      await until('the confirmation', async () => /Required at the next login/.test(await textOf(page, tid('password-required'))));
      // This session goes on: the whole dashboard still answers.
      await goto(page, '#/home', 'Home');
      await page.click(tid('logout'));
      await page.locator(tid('login-form')).waitFor({ timeout: UI_TIMEOUT });
      await page.fill(tid('login-username'), username);
      await page.fill(tid('login-password'), password);
      const first = await submitFor(page, tid('login-submit'), '/api/login');
      assert(first.status() === 401 && (await first.json()).totp_required, `the password alone got HTTP ${first.status()}`);
      await page.locator(tid('login-code')).waitFor({ timeout: UI_TIMEOUT });
      // The old phone is refused now that the new one is confirmed.
      const old = await freshTotp();
      await page.fill(tid('login-code'), totpAt(oldTotpKey, old.step));
      const oldPhone = await submitFor(page, tid('login-submit'), '/api/login');
      assert(oldPhone.status() === 401, `the old phone's code got HTTP ${oldPhone.status()}`);
      const fresh = await freshTotp();
      await page.fill(tid('login-code'), fresh.code);
      const ok = await submitFor(page, tid('login-submit'), '/api/login');
      assert(ok.status() === 200, `logging in with the new phone got HTTP ${ok.status()}`);
      lastTotpStep = fresh.step;
      await page.locator(tid('must-change-password')).waitFor({ timeout: UI_TIMEOUT });
      await page.locator('main h1', { hasText: 'Security' }).waitFor({ timeout: UI_TIMEOUT });
      assert((await page.locator(tid('totp-section')).count()) === 0 && (await page.locator(tid('sessions')).count()) === 0, 'more than the password form is shown');
      assert(await page.locator('#nav').isHidden(), 'the navigation is offered before the password is changed');
      assert(!/Could not/.test(await textOf(page, tid('status'))), `the page asked for what it may not have: ${await textOf(page, tid('status'))}`);
      // Every other page and route is closed until the password changes.
      await page.evaluate(() => {
        location.hash = '#/home';
      });
      await page.locator(tid('must-change-password')).waitFor({ timeout: UI_TIMEOUT });
      const blocked = await page.evaluate(async () => (await fetch('/api/devices')).status);
      assert(blocked === 403, `/api/devices answered HTTP ${blocked} before the password was changed`);
      await shoot(page, 'must-change-password');
      const newPassword = `hearth e2e ${randomBytes(6).toString('hex')} ember`;
      await page.fill(tid('password-current'), password);
      await page.fill(tid('password-new'), newPassword);
      await page.fill(tid('password-again'), newPassword);
      const changed = await submitFor(page, tid('password-submit'), '/api/password');
      assert(changed.status() === 204, `changing the password got HTTP ${changed.status()}`);
      password = newPassword;
      await page.locator('main h1', { hasText: 'Home' }).waitFor({ timeout: UI_TIMEOUT });
      assert((await page.locator(tid('must-change-password')).count()) === 0, 'the notice stays after the change');
      const open = await page.evaluate(async () => (await fetch('/api/devices')).status);
      assert(open === 200, `/api/devices answered HTTP ${open} after the password was changed`);
      assert(await page.locator('#nav').isVisible(), 'the navigation is still hidden after the change');
      await page.locator(`${tid('live-status')}[data-state="live"]`).waitFor({ timeout: UI_TIMEOUT });
    });

    await step('erase everything needs the words, the password and a fresh code; then hearth stops and its data directory is empty', async () => {
      await goto(page, '#/security', 'Security');
      assert(fs.existsSync(path.join(dataDir, 'master.key')), 'no master.key before the erase: the check below would prove nothing');
      const before = filesUnder(dataDir).length;
      await page.fill(tid('erase-confirm'), 'erase');
      await page.click(tid('erase'));
      await until('the request for the words', async () => /erase everything/.test(await textOf(page, tid('erase-error'))));
      await page.fill(tid('erase-confirm'), 'erase everything');
      await page.fill(tid('erase-password'), `${password} but wrong`);
      await page.fill(tid('erase-code'), '000000');
      const refused = await submitFor(page, tid('erase'), '/api/erase');
      assert(refused.status() === 403, `a wrong password got HTTP ${refused.status()}`);
      // A failed re-entry says so, and is not taken for a logout.
      await until('the refusal', async () => /password is wrong/.test(await textOf(page, tid('erase-error'))));
      assert((await page.locator(tid('logout')).count()) === 1, 'a wrong password at erase logged the dashboard out');
      assert(demo.exit === null && filesUnder(dataDir).length >= before, 'a refused erase changed something');
      await page.fill(tid('erase-password'), password);
      const fresh = await freshTotp();
      await page.fill(tid('erase-code'), fresh.code);
      const erased = await submitFor(page, tid('erase'), '/api/erase');
      assert(erased.status() < 300, `erasing got HTTP ${erased.status()}`);
      await until('the page to say so', async () => /Erased/.test(await textOf(page, tid('erase-done'))));
      await shoot(page, 'erased');
      const exit = await Promise.race([demo.exited, sleep(30_000).then(() => null)]);
      assert(exit, 'hearth did not stop after the erase');
      assert(exit.code === 0, `hearth stopped with ${JSON.stringify(exit)} after the erase`);
      const left = filesUnder(dataDir);
      assert(left.length === 0, `files left after the erase: ${left.map((f) => path.relative(dataDir, f)).join(', ')}`);
    });

    await step('the full demo: Home is a grid of tiles, dense on a desktop, with the first tiles in a phone\'s first screen; errors show at their control; Matter, off, says how to turn it on', async () => {
      // `hearth demo` as the README runs it: eight simulated devices,
      // adopted, with their firmware running.
      const fullDir = path.join(tmp, 'full-demo');
      full = new Proc('full-demo', HEARTH, ['demo', '--data-dir', fullDir], {
        logFile: path.join(ARTIFACTS, 'full-demo.log'),
        env: { ...process.env, NO_COLOR: '1' },
        echo: VERBOSE,
      });
      const [, url] = await full.waitFor(/^\s*dashboard\s+(https:\/\/\S+)/, { timeout: START_TIMEOUT, what: 'its dashboard line' });
      const [, code] = await full.waitFor(/^\s*setup code\s+(\S+)/, { timeout: 10_000, what: 'its setup code' });
      await full.waitFor(/^hearth demo is running/, { timeout: START_TIMEOUT, what: 'the demo to finish adopting' });
      const ca = fs.readFileSync(path.join(fullDir, 'ca.pem'), 'utf8');
      const { cert } = await verifiedPeerCertificate(url, ca);
      fullContext = await chromium.launchPersistentContext(path.join(tmp, 'chromium-full'), {
        executablePath: CHROMIUM,
        headless: true,
        args: chromiumArgs(cert),
        viewport: MOBILE,
        colorScheme: 'light',
        locale: 'en-GB',
      });
      const p = fullContext.pages()[0] ?? (await fullContext.newPage());
      p.setDefaultTimeout(UI_TIMEOUT);
      watchProblems(p, new URL(url).origin, 'full demo: ');
      await p.goto(url);
      await p.fill(tid('setup-code'), code);
      await p.fill(tid('setup-username'), 'owner');
      await p.fill(tid('setup-password'), password);
      await p.fill(tid('setup-confirm'), password);
      await p.click(tid('setup-submit'));
      // Everything announced on loopback is adopted: the demo's eight, and
      // any other simulated home running on this machine.
      const adopted = (await devicesList(fullDir)).filter((d) => d.status === 'adopted');
      const n = adopted.length;
      for (const name of ['Living room lamp', 'Porch light', 'Bedroom bulb', 'Kitchen bulb', 'Hall camera', 'Garden camera', 'Coffee machine', 'Front door']) {
        assert(adopted.some((d) => d.nickname === name), `the demo did not adopt its ${name}`);
      }
      const tiles = p.locator(tid('device-tile'));
      await until(`${n} tiles on Home`, async () => (await tiles.count()) === n);

      // A message belongs to its page: the welcome, said for Home, is gone
      // on the next page.
      assert(/Welcome/.test(await textOf(p, tid('status'))), 'no welcome on Home after setup');
      await goto(p, '#/privacy', 'Privacy');
      assert((await textOf(p, tid('status'))) === '', `a message from Home stayed on Privacy: ${await textOf(p, tid('status'))}`);
      // This demo runs no Matter bridge: the section says how to turn it on.
      await goto(p, '#/integrations', 'Integrations');
      await p.locator(`${tid('matter-status')}[data-state="off"]`).waitFor({ timeout: UI_TIMEOUT });
      assert(/enabled = true under \[matter\]/.test(await textOf(p, tid('matter-how'))), `Matter, off, says: ${await textOf(p, tid('matter-how'))}`);
      assert((await p.locator(`${tid('matter-pair')}, ${tid('matter-controllers-box')} h3`).count()) === 0, 'Matter, off, offers pairing or a controllers list');
      await shoot(p, 'matter-off');
      await goto(p, '#/home', 'Home');
      await until('every tile again', async () => (await tiles.count()) === n);

      // The phone's first screen, as it opens: a compact header, and the
      // first devices.
      await p.reload();
      await until('every tile after a reload', async () => (await tiles.count()) === n);
      const phone = await p.evaluate(() => {
        const first = document.querySelector('[data-testid="device-tile"]').getBoundingClientRect();
        const second = document.querySelectorAll('[data-testid="device-tile"]')[1].getBoundingClientRect();
        return {
          header: document.querySelector('.topbar').getBoundingClientRect().height,
          first: first.bottom,
          secondLeft: second.left,
          firstLeft: first.left,
          overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
          scrollY: window.scrollY,
        };
      });
      assert(phone.scrollY === 0, 'the page did not open at its top');
      assert(phone.header <= 110, `the header is ${phone.header} px tall on a phone`);
      assert(phone.first <= MOBILE.height, `the first tile ends at ${phone.first} px, below a ${MOBILE.height} px screen`);
      assert(phone.overflow <= 1, `Home is ${phone.overflow} px wider than a phone`);
      // What the demo lowered (every device shown to Home Assistant, the
      // lights to voice assistants) is one line, not a list of ids.
      const summary = p.locator(tid('warnings-summary'));
      const count = Number(await summary.getAttribute('data-count'));
      assert(count >= 8, `the summary counts ${count} changes; the demo made at least 8`);
      const box = await summary.boundingBox();
      assert(box && box.height <= 60, `the warnings summary is ${box?.height} px tall on a phone`);
      assert(!/\b[0-9a-f]{32}\b/.test(await p.locator('main').innerText()), 'Home shows a device id');
      // The header stays reachable when the page scrolls.
      await p.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
      await until('the header to stay at the top', async () => (await p.evaluate(() => Math.round(document.querySelector('.topbar').getBoundingClientRect().top))) === 0);
      assert(await p.locator(tid('nav-security')).isVisible(), 'the navigation is out of reach after scrolling');
      await p.evaluate(() => window.scrollTo(0, 0));
      await shoot(p, 'full-home');
      await shoot(p, 'full-home', { dark: true });

      // A desktop: the rooms sit side by side, and eight devices fit in
      // one screen.
      await p.setViewportSize(DESKTOP);
      const desk = await p.evaluate(() => {
        const rects = [...document.querySelectorAll('[data-testid="device-tile"]')].slice(0, 8).map((t) => t.getBoundingClientRect());
        return { columns: new Set(rects.map((r) => Math.round(r.left))).size, bottom: Math.max(...rects.map((r) => r.bottom)) };
      });
      assert(desk.columns >= 4, `tiles in ${desk.columns} columns on a desktop`);
      assert(desk.bottom <= DESKTOP.height, `the 8th tile ends at ${desk.bottom} px, below a ${DESKTOP.height} px screen`);

      // Filter by room: the kitchen alone.
      const kitchen = adopted.filter((d) => d.room === 'Kitchen').length;
      await p.locator(tid('room-chip'), { hasText: /^Kitchen / }).click();
      await until('only the kitchen', async () => (await tiles.count()) === kitchen);
      assert((await p.locator(`${tid('room-chip')}[aria-pressed="true"]`).textContent()).startsWith('Kitchen'), 'the Kitchen chip is not shown as chosen');
      await p.locator(tid('room-chip'), { hasText: /^All / }).click();
      await until('every room again', async () => (await tiles.count()) === n);

      // One tap: the kitchen bulb's firmware confirms, and its tile follows.
      const bulb = adopted.find((d) => d.nickname === 'Kitchen bulb');
      const tile = p.locator(`${tid('device-tile')}[data-device-id="${bulb.id}"]`);
      await until('the kitchen bulb online', async () => (await tile.locator(tid('device-online')).textContent()) === 'Online', { timeout: DEVICE_TIMEOUT });
      const toggle = tile.locator(tid('power-toggle'));
      const want = (await toggle.getAttribute('aria-pressed')) !== 'true';
      await toggle.click();
      await until('the tile to show the confirmed state', async () => (await toggle.getAttribute('aria-pressed')) === String(want), { timeout: DEVICE_TIMEOUT });
      await until('devices list to agree', async () => (await devicesList(fullDir)).find((d) => d.id === bulb.id)?.power === want);

      // A refused command: its error is on that tile, not at the top.
      const commandPath = `**/api/devices/${bulb.id}/command`;
      await p.route(commandPath, (r) => r.fulfill({ status: 409, contentType: 'application/json', body: JSON.stringify({ error: 'the device is busy' }) }));
      await toggle.click();
      await until('the error at the tile', async () => /device is busy/i.test((await tile.locator(tid('control-error')).textContent()) ?? ''));
      assert((await textOf(p, tid('status'))) === '', 'the error went to the page-wide status as well');
      // A command the device never confirms (here it is never sent on):
      // the tile says so after its wait, and shows the state it has.
      await p.unroute(commandPath);
      await p.route(commandPath, (r) => r.fulfill({ status: 202, body: '' }));
      await toggle.click();
      await until('the unconfirmed note at the tile', async () => /has not confirmed/.test((await tile.locator(tid('control-error')).textContent()) ?? ''), { timeout: 15_000 });
      assert((await toggle.getAttribute('aria-pressed')) === String(want), 'the toggle shows a state the device never confirmed');
      await p.unroute(commandPath);
      await shoot(p, 'full-home-error');
      await fullContext.close();
      fullContext = null;
      await full.stop();
      full = null;
    });

    await step('no CSP violation, script error or off-origin request happened in the browser', () => {
      assert(browserProblems.length === 0, browserProblems.join('\n'));
    });
  } finally {
    await context?.close().catch(() => {});
    await fullContext?.close().catch(() => {});
    await full?.stop();
    await sim?.stop();
    await demo?.stop();
    await upstream?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`screenshots and logs: ${path.relative(process.cwd(), ARTIFACTS) || '.'}/`);
  console.log(`e2e: ${results.passed} passed, ${results.failed} failed${results.skipped ? `, ${results.skipped} skipped` : ''}`);
  process.exitCode = results.failed ? 1 : 0;
}

main().catch((error) => {
  console.error(`e2e: ${error.stack ?? error}`);
  console.log(`e2e: ${results.passed} passed, ${results.failed + 1} failed`);
  process.exit(1);
});
