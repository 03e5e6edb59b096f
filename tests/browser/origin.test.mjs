// A hostile web page against a real host on its defaults (loopback, no
// token), in a real Chromium: the attacks of issue 14's table, each of which
// worked before the Host/Origin checks (crates/hive-host/src/api/guard.rs).
//
//   node origin.test.mjs        (tests/browser/run installs what it needs)
//
// The page comes from a second local HTTP server (another origin). It tries
// a "simple" text/plain fetch POST to publish and to subscribe (no preflight),
// a WebSocket to /api/events, and DNS rebinding (Chromium maps rebind.test to
// 127.0.0.1, so the page's origin is rebind.test:PORT and the API would be
// same-origin with it). Node also sends a forged Host. Every one must be
// refused and nothing published; the dashboard loaded from the host itself
// must still subscribe, publish and stream.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
const HIVE = path.join(TARGET, 'debug', 'hive');
const DAEMON = path.join(TARGET, 'debug', 'hive-p2pd');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 60_000; // a hang guard, not a performance claim
const t0 = Date.now();
const note = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

/** Starts `hive up` on loopback with no token; resolves with its API URL. */
function startHost(dataDir, extra = []) {
  const child = spawn(HIVE, ['up', '--http', '127.0.0.1:0', '--data-dir', dataDir, '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--daemon-bin', DAEMON, ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  const api = new Promise((resolve, reject) => {
    let buf = '';
    let done = false;
    const timer = setTimeout(() => reject(new Error('no listening line from hive')), TIMEOUT);
    child.stdout.on('data', (chunk) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0 || done) return;
      done = true;
      clearTimeout(timer);
      resolve(JSON.parse(buf.slice(0, nl)).http.replace(/\/$/, ''));
    });
    child.on('exit', (code) => reject(new Error(`hive exited early (${code})`)));
  });
  return { child, api };
}

/** GET from node (no Origin), JSON answer. */
async function get(api, p, token) {
  const res = await fetch(api + p, token ? { headers: { Authorization: `Bearer ${token}` } } : {});
  assert.equal(res.status, 200, `GET ${p}: ${res.status}`);
  return res.json();
}

/** A request from node with a forged Host header (what a rebound name sends). */
function forgedHost(api, method, p, host) {
  const url = new URL(api + p);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname: url.hostname, port: url.port, path: url.pathname, method, headers: { Host: host, 'Content-Type': 'text/plain' } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? 'forged' : undefined);
  });
}

async function until(what, fn) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The attacks, run inside the hostile page. */
async function attack(api) {
  const out = {};
  const post = (p, mode) => fetch(api + p, { method: 'POST', mode, headers: { 'Content-Type': 'text/plain' }, body: 'forged by another origin' })
    .then((r) => `resolved ${r.type} ${r.status}`, (e) => `rejected ${e.name}`);
  out.publishNoCors = await post('/api/topics/pwned/publish', 'no-cors');
  out.publishCors = await post('/api/topics/pwned/publish', 'cors');
  out.subscribe = await post('/api/topics/pwned/subscribe', 'no-cors');
  out.ws = await new Promise((resolve) => {
    const ws = new WebSocket(`${api.replace('http', 'ws')}/api/events`);
    const seen = [];
    ws.onopen = () => seen.push('open');
    ws.onmessage = (m) => seen.push(`message ${String(m.data).slice(0, 40)}`);
    ws.onerror = () => seen.push('error');
    ws.onclose = (e) => resolve([...seen, `close ${e.code}`]);
    setTimeout(() => { seen.push('timeout'); ws.close(); }, 10_000);
  });
  return out;
}

/** A read-only token: the dashboard shows everything, its write and admin
 * buttons are disabled and say why, and it never tries them. */
async function readOnlyDashboard(browser, work) {
  const tokens = path.join(work, 'tokens');
  writeFileSync(tokens, 'viewer:read:viewer-secret\nops:read,write,admin:ops-secret\n');
  const host = startHost(path.join(work, 'ro'), ['--api-tokens-file', tokens]);
  try {
    const api = await host.api;
    await until('the daemon running', async () => (await get(api, '/api/status', 'ops-secret')).daemon.state === 'running');
    const page = await (await browser.newContext()).newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(`${api}/?token=viewer-secret`);
    await page.locator('body[data-ready="true"]').waitFor({ timeout: TIMEOUT });
    await page.locator('#ws-status[data-state="live"]').waitFor({ timeout: TIMEOUT });
    const peerId = (await get(api, '/api/status', 'viewer-secret')).peer_id;
    assert.equal((await page.textContent('#node-peer-id')).trim(), peerId, 'a read-only token shows the node');
    await page.locator('[data-testid="node"]').first().waitFor({ timeout: TIMEOUT });
    for (const [id, scope] of [['subscribe-btn', 'write'], ['publish-btn', 'write'], ['dm-send', 'write'], ['dial-btn', 'admin']]) {
      const button = page.locator(`#${id}`);
      assert.ok(await button.isDisabled(), `#${id} enabled for a read-only token`);
      assert.match(await button.getAttribute('title'), new RegExp(`lacks the ${scope} scope`), `#${id} does not say why`);
    }
    const spawnBtn = page.locator('[data-testid="node-spawn"]').first();
    assert.ok(await spawnBtn.isDisabled(), 'spawn enabled for a read-only token');
    assert.match(await spawnBtn.getAttribute('title'), /lacks the admin scope/);
    await page.locator('#scope-note').waitFor({ state: 'visible', timeout: TIMEOUT });
    assert.match(await page.textContent('#scope-note'), /viewer.*lacks the write and admin scopes/);
    assert.deepEqual(errors, [], 'console errors with a read-only token (a refused request?)');
    note('a read-only token: the dashboard shows the node, write and admin buttons disabled with the reason');
  } finally {
    host.child.kill('SIGTERM');
    await new Promise((r) => (host.child.exitCode !== null ? r() : host.child.once('exit', r)));
  }
}

async function main() {
  const work = mkdtempSync(path.join(tmpdir(), 'hive-origin-'));
  const host = startHost(path.join(work, 'host'));
  const evil = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>an ordinary web page</title><p>nothing to see</p>');
  });
  let browser;
  try {
    const api = await host.api;
    const port = new URL(api).port;
    await until('the daemon running', async () => (await get(api, '/api/status')).daemon.state === 'running');
    await new Promise((r) => evil.listen(0, '127.0.0.1', r));
    const evilUrl = `http://127.0.0.1:${evil.address().port}/`;
    note(`host ${api}, hostile page ${evilUrl}`);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP rebind.test 127.0.0.1'],
    });
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(m.text()));
    await page.goto(evilUrl);
    const got = await page.evaluate(attack, api);
    note(`cross-origin attacks: ${JSON.stringify(got)}`);
    assert.ok(!got.ws.includes('open'), `the hostile page opened the event stream: ${got.ws}`);
    assert.ok(!got.ws.some((s) => s.startsWith('message')), 'the hostile page read events');
    assert.ok(consoleLines.some((l) => /WebSocket.*\b403\b/.test(l)), `the WS handshake was not refused with 403: ${consoleLines.join(' | ')}`);

    // DNS rebinding, as the browser sees it: the page's own origin is the
    // attacker's name on the API's port.
    const rebound = await ctx.newPage();
    const res = await rebound.goto(`http://rebind.test:${port}/`);
    assert.equal(res.status(), 403, 'the dashboard loaded under a rebound name');
    const same = await rebound.evaluate(async () => {
      const status = await fetch('/api/status').then((r) => r.status);
      const publish = await fetch('/api/topics/pwned/publish', { method: 'POST', body: 'rebound' }).then((r) => r.status);
      const body = await fetch('/api/peers').then((r) => r.json());
      return { status, publish, code: body.error && body.error.code };
    });
    note(`rebinding from the page: ${JSON.stringify(same)}`);
    assert.deepEqual(same, { status: 403, publish: 403, code: 'forbidden' });
    for (const [method, p] of [['GET', '/api/status'], ['POST', '/api/topics/pwned/publish']]) {
      const r = await forgedHost(api, method, p, `evil.example:${port}`);
      assert.equal(r.status, 403, `${method} ${p} with a forged Host: ${r.status} ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'forbidden');
    }

    const outbox = await get(api, '/api/outbox');
    assert.equal(outbox.depth, 0, `the attacks queued messages: ${JSON.stringify(outbox)}`);
    const topics = await get(api, '/api/topics');
    assert.ok(!topics.some((t) => t.topic === 'pwned'), `the attacks subscribed: ${JSON.stringify(topics)}`);
    note('every attack refused, nothing published or subscribed');

    // The dashboard from the host itself keeps working.
    const dash = await ctx.newPage();
    const errors = [];
    dash.on('pageerror', (e) => errors.push(e.message));
    dash.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await dash.goto(`${api}/`);
    await dash.locator('body[data-ready="true"]').waitFor({ timeout: TIMEOUT });
    await dash.locator('#ws-status[data-state="live"]').waitFor({ timeout: TIMEOUT });
    await dash.fill('#topic-input', 'own-origin');
    await dash.click('#subscribe-btn');
    await dash.locator('[data-testid="topic-tab"][data-topic="own-origin"][data-subscribed="true"]').waitFor({ timeout: TIMEOUT });
    await dash.fill('#publish-input', 'from the dashboard');
    await dash.click('#publish-btn');
    await dash.locator('#publish-msg.ok').waitFor({ timeout: TIMEOUT });
    await dash.locator('[data-testid="feed"][data-topic="own-origin"] [data-testid="feed-item"]').filter({ hasText: 'from the dashboard' }).first().waitFor({ timeout: TIMEOUT });
    assert.equal((await get(api, '/api/outbox')).depth, 1, 'the dashboard\'s publish is queued');
    assert.ok((await get(api, '/api/topics')).some((t) => t.topic === 'own-origin'), 'the dashboard subscribed');
    assert.deepEqual(errors, [], 'console errors on the dashboard');
    note('the dashboard from the host subscribes, publishes and streams');

    await readOnlyDashboard(browser, work);
  } finally {
    if (browser) await browser.close().catch(() => {});
    evil.close();
    host.child.kill('SIGTERM');
    await new Promise((r) => (host.child.exitCode !== null ? r() : host.child.once('exit', r)));
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => {
    note('PASS');
    process.exit(0);
  },
  (e) => {
    console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
