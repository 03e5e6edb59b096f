// The client in a real browser (Debian's Chromium, driven by playwright-core):
// the built package (dist/) loaded as an ES module by a page on another
// origin, which the host allows with --allowed-origin. The page subscribes on
// host B, receives a binary message published on host A over the event
// stream, publishes back, and gets the API's refusals as HiveApiError.
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { text, topicPeers, twoHosts, until } from "./support.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const pkg = new URL("../../", import.meta.url);

let server: http.Server;
let origin = "";
let h: Awaited<ReturnType<typeof twoHosts>>;
let browser: Browser;
let page: Page;

/** Serves the page and dist/ from another origin than the hosts'. */
function serve(): Promise<void> {
  server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<!doctype html><title>loading</title><script type="module">
        import * as hive from "/dist/index.js";
        window.hive = hive;
        document.title = "loaded";
      </script>`);
      return;
    }
    const file = new URL(`.${path}`, pkg);
    if (!path.startsWith("/dist/") || path.includes("..") || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/javascript" });
    res.end(readFileSync(file));
  });
  return new Promise((r) => server.listen(0, "127.0.0.1", r));
}

before(async () => {
  await serve();
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  h = await twoHosts(["--allowed-origin", origin]);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => document.title === "loaded");
});
after(async () => {
  await browser?.close();
  await h?.stop();
  await new Promise((r) => server?.close(r));
});

test("in a browser: subscribe, receive bytes over the event stream, publish, typed errors", async () => {
  const topic = "js-browser";
  const peerA = (await h.A.status()).peer_id;
  await h.A.subscribe(topic);
  // In the page: a client of host B, subscribed, with its event stream open.
  await page.evaluate(
    async ({ api, token, topic }) => {
      const { HiveClient } = (window as any).hive;
      const client = new HiveClient({ baseUrl: api, token });
      await client.subscribe(topic);
      const events = client.events();
      await events.opened();
      Object.assign(window, { client, events });
    },
    { api: h.b.api, token: h.tokenB, topic },
  );
  await topicPeers(h.A, topic);
  const bytes = [0, 1, 2, 127, 128, 254, 255];
  await h.A.publish(topic, new Uint8Array(bytes));

  const got = await page.evaluate(async (topic) => {
    const { events } = window as any;
    for (;;) {
      const { value } = await events.next();
      if (value.type === "message" && value.topic === topic) {
        return { from: value.from, data: Array.from(value.data as Uint8Array), isBytes: value.data instanceof Uint8Array, cursor: events.cursor };
      }
    }
  }, topic);
  assert.deepEqual(got.data, bytes);
  assert.equal(got.isBytes, true);
  assert.equal(got.from, peerA);
  assert.ok(got.cursor > 0);

  // The page publishes back; A receives it.
  await page.evaluate((topic) => (window as any).client.publish(topic, "from the browser"), topic);
  await until("A received the browser's message", async () => {
    const page = await h.A.history({ topic });
    return page.messages.some((m) => text(m) === "from the browser");
  });

  // Refusals are HiveApiError in the browser too (CORS lets the page read them).
  const errors = await page.evaluate(async (api) => {
    const { HiveClient, HiveApiError } = (window as any).hive;
    const out: unknown[] = [];
    for (const call of [
      () => new HiveClient({ baseUrl: api, token: "wrong" }).status(),
      () => (window as any).client.node("n404").status(),
      () => (window as any).client.dial("nonsense"),
    ]) {
      try {
        await call();
        out.push("no error");
      } catch (e: any) {
        // The request id is readable across origins (exposed by CORS).
        const id = typeof e.requestId === "string" && e.requestId.length > 0;
        out.push({ api: e instanceof HiveApiError, status: e.status, code: e.code, id });
      }
    }
    (window as any).events.close();
    return out;
  }, h.b.api);
  assert.deepEqual(errors, [
    { api: true, status: 401, code: "unauthorized", id: true },
    { api: true, status: 404, code: "not_found", id: true },
    { api: true, status: 400, code: "bad_args", id: true },
  ]);
});
