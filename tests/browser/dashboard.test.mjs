// End-to-end test of the web dashboard in a real browser against two real
// hosts (target/debug/hive + hive-p2pd) on loopback. No mocks: every
// assertion is about what the page shows after real processes did real work.
//
//   node dashboard.test.mjs        (tests/browser/run installs what it needs)
//
// Environment: CHROMIUM (default /usr/bin/chromium), CARGO_TARGET_DIR,
// HIVE_SCREENSHOTS (default <target>/screenshots), HIVE_KEEP_LOGS=1.
// HIVE_WEB_FROM_DISK=1 (development only) serves web/index.html, app.js and
// style.css from the work tree instead of the copies compiled into `hive`,
// to try page edits without a rebuild; the API is still the real host's.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
const HIVE = path.join(TARGET, 'debug', 'hive');
const DAEMON = path.join(TARGET, 'debug', 'hive-p2pd');
const SHOTS = path.resolve(process.env.HIVE_SCREENSHOTS || path.join(TARGET, 'screenshots'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WEB_FROM_DISK = process.env.HIVE_WEB_FROM_DISK === '1';

// Generous: these bound waiting for real networks and processes; nothing
// asserts how fast anything happens.
const START_TIMEOUT = 60_000;
const DELIVERY_TIMEOUT = 90_000;
const UI_TIMEOUT = 30_000;

const TOPIC = 'e2e-news';
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 375, height: 812 };

const work = mkdtempSync(path.join(tmpdir(), 'hive-browser-'));
const children = new Set();
const t0 = Date.now();

function note(msg) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);
}

// Console errors are failures, except the connection errors a page logs
// while its host or daemon is being restarted on purpose (audit row 38).
const RESTART_STEPS = /^(kill -9 A's daemon|restart host B)/;
const RESTART_NOISE = /Failed to load resource: (net::ERR_CONNECTION_REFUSED|net::ERR_EMPTY_RESPONSE|the server responded with a status of 503)|WebSocket connection to '.*' failed/;
const consoleErrors = [];
let currentStep = '(setup)';

async function step(name, fn) {
  currentStep = name;
  note(`▶ ${name}`);
  const started = Date.now();
  await fn();
  note(`✓ ${name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value; returns that value. */
async function until(what, fn, timeout = UI_TIMEOUT, interval = 200) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout / 1000}s waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await sleep(interval);
  }
}

// ------------------------------------------------------------------ hosts

class Host {
  constructor(name, dataDir, token = null) {
    this.name = name;
    this.dataDir = dataDir;
    this.token = token;
    this.logPath = path.join(work, `${name}.log`);
    this.child = null;
    this.api = null;
  }

  /** Starts `hive up` and waits for its listening line. */
  async start({ http = '127.0.0.1:0', listen = '/ip4/127.0.0.1/tcp/0' } = {}) {
    const log = createWriteStream(this.logPath, { flags: 'a' });
    const child = spawn(HIVE, ['up', '--http', http, '--data-dir', this.dataDir, '--no-mdns', '--listen', listen, '--daemon-bin', DAEMON], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...(this.token ? { HIVE_API_TOKEN: this.token } : {}) },
    });
    this.child = child;
    children.add(child);
    child.on('exit', () => children.delete(child));
    child.stderr.pipe(log);
    this.api = await new Promise((resolve, reject) => {
      let buf = '';
      let done = false;
      const timer = setTimeout(() => fail(new Error(`${this.name}: no listening line within ${START_TIMEOUT / 1000}s; log: ${this.logPath}`)), START_TIMEOUT);
      const fail = (e) => {
        if (!done) {
          done = true;
          clearTimeout(timer);
          reject(e);
        }
      };
      // Keep reading stdout for the life of the process so it never blocks.
      child.stdout.on('data', (chunk) => {
        if (done) return;
        buf += chunk;
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        try {
          const v = JSON.parse(line);
          if (v.event !== 'listening' || !v.http) throw new Error(`unexpected first line ${line}`);
          done = true;
          clearTimeout(timer);
          resolve(v.http.replace(/\/$/, ''));
        } catch (e) {
          fail(new Error(`${this.name}: bad first stdout line ${JSON.stringify(line)}: ${e.message}`));
        }
      });
      child.on('exit', (code, sig) => fail(new Error(`${this.name} exited early (${code ?? sig}); log: ${this.logPath}`)));
      child.on('error', fail);
    });
    await this.waitRunning();
    return this;
  }

  async waitRunning(timeout = START_TIMEOUT) {
    return until(`${this.name}'s daemon running`, async () => {
      const st = await this.get('/api/status');
      return st.daemon && st.daemon.state === 'running' && st.peer_id ? st : null;
    }, timeout, 250);
  }

  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** The dashboard's address (with the token, as a user would open it). */
  get page() {
    return `${this.api}/${this.token ? `?token=${encodeURIComponent(this.token)}` : ''}`;
  }

  async req(method, p, body, headers = {}) {
    if (this.token) headers = { ...headers, Authorization: `Bearer ${this.token}` };
    const res = await fetch(this.api + p, { method, body, headers });
    const text = await res.text();
    if (!res.ok) throw new Error(`${this.name}: ${method} ${p}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  get(p) {
    return this.req('GET', p);
  }

  post(p, body, headers) {
    return this.req('POST', p, body, headers);
  }

  tail(lines = 40) {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

function killAllNow() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}
process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAllNow();
    process.exit(130);
  });
}

// ---------------------------------------------------------------- helpers

function feedItems(page, topic) {
  return page.locator(`[data-testid="feed"][data-topic="${topic}"] [data-testid="feed-item"]`);
}

async function waitText(page, selector, predicate, what, timeout = UI_TIMEOUT) {
  return until(what, async () => {
    const t = await page.locator(selector).first().textContent({ timeout: 1000 });
    return predicate(t) ? t : null;
  }, timeout);
}

async function subscribeInUi(page, topic) {
  await page.fill('#topic-input', topic);
  await page.click('#subscribe-btn');
  await page.locator(`[data-testid="topic-tab"][data-topic="${topic}"][data-subscribed="true"]`).waitFor({ timeout: UI_TIMEOUT });
}

async function publishInUi(page, text) {
  await page.fill('#publish-input', text);
  await page.click('#publish-btn');
  await page.locator('#publish-msg.ok').waitFor({ timeout: UI_TIMEOUT });
}

async function waitForMessage(page, topic, text, timeout = DELIVERY_TIMEOUT) {
  await feedItems(page, topic).filter({ hasText: text }).first().waitFor({ timeout });
}

async function noHorizontalOverflow(page, width) {
  const { scroll, culprits } = await page.evaluate((w) => {
    const out = [];
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      const name = `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${[...el.classList].map((c) => `.${c}`).join('')}`;
      if (r.width && r.right > w + 1) out.push(`${name} right=${Math.round(r.right)}`);
      else if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === 'visible' && el.clientWidth) out.push(`${name} content ${el.scrollWidth}px in ${el.clientWidth}px`);
    }
    return { scroll: document.documentElement.scrollWidth, culprits: out.slice(0, 8) };
  }, width);
  assert.ok(scroll <= width + 1, `page is ${scroll}px wide at a ${width}px viewport (horizontal scrolling): ${culprits.join(', ')}`);
}

// ------------------------------------------------------------------- main

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const a = new Host('host-a', path.join(work, 'a'));
  // B requires an API token: its page gets it as ?token= and must send it.
  const b = new Host('host-b', path.join(work, 'b'), randomBytes(16).toString('hex'));
  let browser;
  let failed = false;
  const pages = {};
  const pageErrors = [];
  try {
    await step('start two hosts', async () => {
      await Promise.all([a.start(), b.start()]);
      note(`  A ${a.api}  B ${b.api} (API token required)`);
      assert.equal((await fetch(`${b.api}/api/status`)).status, 401, 'B refuses requests without its token');
    });

    const stA = await a.get('/api/status');
    let stB = await b.get('/api/status');
    const idA = stA.peer_id;
    const idB = stB.peer_id;

    await step('dial B from A', async () => {
      let addr = stB.listen_addrs.find((x) => x.includes('/tcp/')) || stB.listen_addrs[0];
      if (!addr.includes('/p2p/')) addr += `/p2p/${idB}`;
      const res = await a.post('/api/dial', JSON.stringify({ addr }), { 'Content-Type': 'application/json' });
      assert.equal(res.peer_id, idB);
    });

    await step('open both dashboards', async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync',
          // A document served by route.fulfill() does not count as loopback,
          // so Chromium would block its WebSocket to 127.0.0.1.
          ...(WEB_FROM_DISK ? ['--disable-features=LocalNetworkAccessChecks'] : []),
        ],
      });
      const ctx = await browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1 });
      if (WEB_FROM_DISK) {
        note('  HIVE_WEB_FROM_DISK=1: page files come from web/, not from the binary');
        const types = { '/': 'text/html', '/app.js': 'text/javascript', '/style.css': 'text/css' };
        await ctx.route((url) => url.pathname in types, (route) => {
          const p = new URL(route.request().url()).pathname;
          route.fulfill({ contentType: `${types[p]}; charset=utf-8`, body: readFileSync(path.join(ROOT, 'web', p === '/' ? 'index.html' : p.slice(1))) });
        });
      }
      for (const [name, host] of [['a', a], ['b', b]]) {
        const page = await ctx.newPage();
        page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
        page.on('console', (m) => {
          if (m.type() !== 'error') return;
          const allowed = RESTART_STEPS.test(currentStep) && RESTART_NOISE.test(m.text());
          note(`  console(${name})${allowed ? ' [restart, allowed]' : ''}: ${m.text()}`);
          if (!allowed) consoleErrors.push(`${name} during "${currentStep}": ${m.text()}`);
        });
        await page.goto(host.page);
        await page.locator('body[data-ready="true"]').waitFor({ timeout: UI_TIMEOUT });
        pages[name] = page;
      }
      const { a: pa, b: pb } = pages;
      // Without its token, B's page says what is missing.
      const bare = await ctx.newPage();
      await bare.goto(`${b.api}/`);
      await bare.locator('#auth-banner').waitFor({ timeout: UI_TIMEOUT });
      await bare.close();
      assert.equal((await pa.textContent('#node-peer-id')).trim(), idA);
      assert.equal((await pb.textContent('#node-peer-id')).trim(), idB);
      for (const page of [pa, pb]) {
        await page.locator('#ws-status[data-state="live"]').waitFor({ timeout: UI_TIMEOUT });
        await page.locator('#daemon-state[data-state="running"]').waitFor({ timeout: UI_TIMEOUT });
        assert.ok(await page.locator('#daemon-banner').isHidden(), 'no banner while the daemon runs');
        assert.ok((await page.locator('#node-addrs code').count()) >= 1, 'listen addresses shown');
        assert.match((await page.textContent('#daemon-pid')).trim(), /^\d+$/);
        assert.match((await page.textContent('#host-version')).trim(), /^\d+\.\d+/);
      }
    });

    const { a: pa, b: pb } = pages;

    await step('peers table and graph show the other node', async () => {
      await pa.locator(`[data-testid="peer-row"][data-peer-id="${idB}"]`).waitFor({ timeout: UI_TIMEOUT });
      await pb.locator(`[data-testid="peer-row"][data-peer-id="${idA}"]`).waitFor({ timeout: UI_TIMEOUT });
      await pa.locator(`#peers-graph [data-peer-id="${idB}"]`).waitFor({ timeout: UI_TIMEOUT });
      // Latency comes from libp2p ping; give it a few ping rounds.
      await waitText(pa, `[data-peer-id="${idB}"] [data-testid="peer-rtt"]`, (t) => /ms$/.test(t.trim()), 'a ping latency for B', DELIVERY_TIMEOUT);
    });

    await step('subscribe both pages through the UI', async () => {
      await subscribeInUi(pa, TOPIC);
      await subscribeInUi(pb, TOPIC);
      const topicsB = await b.get('/api/topics');
      assert.ok(topicsB.some((t) => t.topic === TOPIC), 'B subscribed through the page');
      // The tab shows how many remote peers are in the topic: wait until
      // each side sees the other, so that the mesh is there.
      for (const page of [pa, pb]) {
        await waitText(page, `[data-testid="topic-tab"][data-topic="${TOPIC}"] .tab-peers`, (t) => Number(t) >= 1, 'a topic peer', DELIVERY_TIMEOUT);
      }
    });

    const hello = `hello from A, ${new Date().toISOString()}`;
    await step('publish text from A\'s page, see it in B\'s feed', async () => {
      await publishInUi(pa, hello);
      await feedItems(pa, TOPIC).filter({ hasText: hello }).first().waitFor({ timeout: UI_TIMEOUT }); // local echo
      await waitForMessage(pb, TOPIC, hello);
      const item = feedItems(pb, TOPIC).filter({ hasText: hello }).first();
      assert.equal(await item.getAttribute('data-kind'), 'text');
      assert.equal(await item.getAttribute('data-from'), idA);
      assert.equal((await item.locator('[data-testid="msg-body"]').textContent()).trim(), hello);
    });

    await step('publish binary through the API, see hex in B\'s feed', async () => {
      const bytes = Uint8Array.from([0x00, 0x01, 0xfe, 0xff, 0x80, 0x7f, 0xc3, 0x28, 0x0a]);
      await a.post(`/api/topics/${TOPIC}/publish`, bytes, { 'Content-Type': 'application/octet-stream' });
      const hex = '00 01 fe ff 80 7f c3 28 0a';
      const item = feedItems(pb, TOPIC).filter({ hasText: hex }).first();
      await item.waitFor({ timeout: DELIVERY_TIMEOUT });
      assert.equal(await item.getAttribute('data-kind'), 'binary');
      assert.equal((await item.locator('[data-testid="msg-body"]').textContent()).trim(), hex);
      assert.match(await item.textContent(), /9 bytes/);
      // And typed as hex in A's page.
      await pa.check('#publish-hex');
      await publishInUi(pa, 'de ad be ef 00');
      await pa.uncheck('#publish-hex');
      const typed = feedItems(pb, TOPIC).filter({ hasText: 'de ad be ef 00' }).first();
      await typed.waitFor({ timeout: DELIVERY_TIMEOUT });
      assert.equal(await typed.getAttribute('data-kind'), 'binary');
    });

    const dm = `psst, B: ${Math.random().toString(36).slice(2)}`;
    await step('send a direct message from A\'s page, see it on B\'s page', async () => {
      await pa.locator(`#dm-peer option[value="${idB}"]`).waitFor({ state: 'attached', timeout: UI_TIMEOUT });
      await pa.selectOption('#dm-peer', idB);
      await pa.fill('#dm-input', dm);
      await pa.click('#dm-send');
      const out = pa.locator('[data-testid="dm-item"][data-dir="out"]').filter({ hasText: dm }).first();
      await until('the send to be acknowledged', async () => /acknowledged/.test(await out.locator('[data-testid="msg-status"]').textContent()), DELIVERY_TIMEOUT);
      const got = pb.locator('[data-testid="dm-item"][data-dir="in"]').filter({ hasText: dm }).first();
      await got.waitFor({ timeout: DELIVERY_TIMEOUT });
      assert.equal(await got.getAttribute('data-from'), idA);
    });

    await step('tension gauge, history and signals', async () => {
      for (const page of [pa, pb]) {
        await waitText(page, '#tension-value', (t) => /^\d\.\d\d$/.test(t.trim()), 'a tension value');
        assert.ok((await page.locator('#signals .signal').count()) >= 1, 'signals listed');
        const points = Number(await page.getAttribute('#tension-sparkline', 'data-points'));
        assert.ok(points >= 1, 'sparkline has points');
        assert.ok((await page.locator('#tension-sparkline polyline').count()) === 1, 'sparkline drawn');
      }
    });

    await step('nodes section', async () => {
      const res = await fetch(`${a.api}/api/nodes`); // A has no token
      await pa.locator('[data-testid="node"]').first().waitFor({ timeout: UI_TIMEOUT });
      // This host serves /api/nodes: anything but 200 is a failure (audit row 37).
      assert.equal(res.status, 200, `GET /api/nodes: ${res.status}`);
      {
        const nodes = await res.json();
        const count = Array.isArray(nodes) ? nodes.length : 0;
        await until('every node in the tree', async () => (await pa.locator('[data-testid="node"]').count()) === count, UI_TIMEOUT);
        note(`  /api/nodes lists ${count} node(s); spawning two under the first through the page, then stopping one`);
        const root = nodes.find((n) => n.parent === null || n.parent === undefined);
        await pa.fill('#spawn-count', '2');
        await pa.locator(`[data-testid="node"][data-node-id="${root.id}"] [data-testid="node-spawn"]`).first().click();
        const kids = await until('two spawned children in /api/nodes', async () => {
          const now = await a.get('/api/nodes');
          const fresh = now.filter((n) => n.parent === root.id && !nodes.some((o) => o.id === n.id));
          return fresh.length >= 2 ? fresh : null;
        }, DELIVERY_TIMEOUT, 500);
        const item = (id) => pa.locator(`[data-testid="node"][data-node-id="${root.id}"] [data-testid="node"][data-node-id="${id}"]`);
        for (const kid of kids) {
          await item(kid.id).waitFor({ timeout: UI_TIMEOUT });
          await pa.locator(`[data-testid="node"][data-node-id="${kid.id}"][data-state="running"]`).waitFor({ timeout: DELIVERY_TIMEOUT });
        }
        const [gone, kept] = kids;
        await item(gone.id).locator('[data-testid="node-stop"]').first().click();
        await item(gone.id).waitFor({ state: 'detached', timeout: DELIVERY_TIMEOUT });
        const after = await a.get('/api/nodes');
        assert.ok(!after.some((n) => n.id === gone.id), 'the stopped child is gone from /api/nodes');
        assert.ok(after.some((n) => n.id === kept.id), 'its sibling still runs');
        assert.ok(await item(kept.id).isVisible(), 'its sibling is still in the tree');
      }
    });

    await step('kill -9 A\'s daemon: banner appears, then goes away', async () => {
      const before = await a.get('/api/status');
      const pid = before.daemon.pid;
      assert.ok(pid, 'daemon pid known');
      await pa.evaluate(() => {
        const banner = document.getElementById('daemon-banner');
        window.__bannerSeen = !banner.hidden;
        new MutationObserver(() => {
          if (!banner.hidden) window.__bannerSeen = true;
        }).observe(banner, { attributes: true });
      });
      process.kill(pid, 'SIGKILL');
      note(`  killed daemon pid ${pid}`);
      await pa.waitForFunction(() => window.__bannerSeen === true, null, { timeout: UI_TIMEOUT, polling: 50 });
      const text = await pa.textContent('#daemon-banner');
      assert.match(text, /Daemon (restarting|starting)/);
      try {
        if (await pa.locator('#daemon-banner').isVisible()) await pa.screenshot({ path: path.join(SHOTS, 'a-daemon-restarting.png') });
      } catch {
        /* the banner may be gone already: the screenshot is a nicety */
      }
      await pa.locator('#daemon-banner').waitFor({ state: 'hidden', timeout: DELIVERY_TIMEOUT });
      const after = await a.waitRunning();
      assert.notEqual(after.daemon.pid, pid, 'a new daemon');
      await waitText(pa, '#daemon-pid', (t) => t.trim() === String(after.daemon.pid), 'the new pid on the page');
      await waitText(pa, '#daemon-restarts', (t) => Number(t) >= 1, 'the restart count on the page');
      await pa.locator('#daemon-state[data-state="running"]').waitFor({ timeout: UI_TIMEOUT });
      await waitText(pa, '#daemon-uptime', (t) => /^\d+(s|m \d+s)$/.test(t.trim()), 'the new daemon\'s uptime');
    });

    const again = `still here after the restart, ${Date.now()}`;
    await step('publishing works again after the daemon restart', async () => {
      await publishInUi(pa, again);
      await waitForMessage(pb, TOPIC, again);
    });

    await step('restart host B: B\'s page reconnects and resumes without duplicates', async () => {
      const httpAddr = new URL(b.api).host;
      await b.stop();
      await pb.locator('#ws-status:not([data-state="live"])').waitFor({ timeout: UI_TIMEOUT });
      await pb.locator('#host-banner').waitFor({ state: 'visible', timeout: UI_TIMEOUT });
      // On its default random port (tcp/0): the daemon binds the port it had
      // and dials the peers it knew by itself; nobody dials here.
      await b.start({ http: httpAddr });
      stB = await b.get('/api/status');
      assert.equal(stB.peer_id, idB, 'same identity after the host restart');
      await pb.locator('#ws-status[data-state="live"]').waitFor({ timeout: DELIVERY_TIMEOUT });
      await pb.locator('#host-banner').waitFor({ state: 'hidden', timeout: UI_TIMEOUT });
      // The restarted host keeps its subscriptions (the topics table
      // re-subscribes the first daemon before any client asks).
      assert.ok((await b.get('/api/topics')).some((t) => t.topic === TOPIC), `${TOPIC} still subscribed after the host restart`);
      await pb.locator(`[data-testid="topic-tab"][data-topic="${TOPIC}"][data-subscribed="true"]`).waitFor({ timeout: UI_TIMEOUT });
      await waitText(pb, `[data-testid="topic-tab"][data-topic="${TOPIC}"] .tab-peers`, (t) => Number(t) >= 1, 'A back in the topic', DELIVERY_TIMEOUT);
      const third = `after B's host restart, ${Date.now()}`;
      await publishInUi(pa, third);
      await waitForMessage(pb, TOPIC, third);
      for (const text of [hello, again]) {
        assert.equal(await feedItems(pb, TOPIC).filter({ hasText: text }).count(), 1, `"${text}" shown exactly once on B`);
      }
      // Back on its data directory, B's daemon asked A for what it missed
      // (nothing new: the history drops what B had); the page says so.
      await waitText(pb, '#node-sync', (t) => /^up to date · \d+ fetched from [1-9]\d* peers? · last/.test(t.trim()), 'the catch-up on the page', DELIVERY_TIMEOUT);
      // Nothing was dropped between B's daemon and its store: the page says
      // so. (The catch-up's duplicates once used up history numbers, which
      // B's host read as "1 gap seen"; the old /gaps|no gaps/ took anything.)
      assert.equal((await pb.textContent('#node-inbound')).trim(), 'no gaps');
    });

    await step('screenshots at desktop and phone width', async () => {
      // Let one more refresh land so that the pictures are settled.
      await sleep(3000);
      for (const [name, page] of Object.entries(pages)) {
        await page.setViewportSize(DESKTOP);
        await page.evaluate(() => window.scrollTo(0, 0));
        await page.screenshot({ path: path.join(SHOTS, `${name}-desktop.png`), fullPage: true });
        await page.setViewportSize(PHONE);
        await page.evaluate(() => window.scrollTo(0, 0));
        await sleep(300);
        await noHorizontalOverflow(page, PHONE.width);
        await page.screenshot({ path: path.join(SHOTS, `${name}-phone.png`), fullPage: true });
        await page.setViewportSize(DESKTOP);
      }
      await pa.emulateMedia({ colorScheme: 'dark' });
      await pa.evaluate(() => window.scrollTo(0, 0));
      await pa.screenshot({ path: path.join(SHOTS, 'a-desktop-dark.png'), fullPage: true });
      await pa.emulateMedia({ colorScheme: 'light' });
    });

    assert.deepEqual(pageErrors, [], 'no uncaught errors in the pages');
    assert.deepEqual(consoleErrors, [], 'no console errors outside the expected restart noise');
  } catch (e) {
    failed = true;
    for (const [name, page] of Object.entries(pages)) {
      try {
        await page.screenshot({ path: path.join(SHOTS, `${name}-failure.png`), fullPage: true });
      } catch {
        /* browser gone */
      }
    }
    for (const host of [a, b]) console.error(`--- last lines of ${host.name}'s log (${host.logPath})\n${host.tail()}`);
    throw e;
  } finally {
    if (browser) await browser.close().catch(() => {});
    await Promise.all([a.stop(), b.stop()]).catch(() => killAllNow());
    if (failed || process.env.HIVE_KEEP_LOGS) note(`logs kept in ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => {
    note(`PASS (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    process.exit(0);
  },
  (e) => {
    console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
