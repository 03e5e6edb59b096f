// Nodes and errors against one real host: the hive's nodes API, and every
// refusal as a typed exception carrying the HTTP status and the API's code.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { HiveApiError, HiveClient, HiveConnectionError } from "../src/index.js";
import { collect, startHost, topicPeers, until, type RunningHost } from "./support.js";

// Shaped like `openssl rand -base64`: `+`, `/` and `=` must survive the
// event stream's `?token=` as well as the header.
const token = "one+host/" + Math.random().toString(36).slice(2) + "==";
const viewerToken = "viewer-" + Math.random().toString(36).slice(2);
let host: RunningHost;
let hive: HiveClient;
let tokensDir = "";

before(async () => {
  tokensDir = mkdtempSync(join(tmpdir(), "hive-js-tokens-"));
  const tokens = join(tokensDir, "tokens");
  writeFileSync(tokens, `viewer:read:${viewerToken}\n`, { mode: 0o600 });
  host = await startHost({ args: ["--api-token", token, "--api-tokens-file", tokens] });
  hive = new HiveClient({ baseUrl: host.api, token });
  await until("host healthy", () => hive.healthy());
});
after(async () => {
  await host?.stop();
  rmSync(tokensDir, { recursive: true, force: true });
});

/** Runs `call`, expecting a HiveApiError with this status and code. */
async function refused(call: () => Promise<unknown>, status: number, code: string): Promise<HiveApiError> {
  const err = await call().then(
    () => assert.fail(`expected ${status} ${code}, got success`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof HiveApiError, `a HiveApiError, not ${String(err)}`);
  assert.equal(err.status, status, err.message);
  assert.equal(err.code, code, err.message);
  assert.ok(err.detail.length > 0);
  return err;
}

describe("nodes", () => {
  test("list, spawn, address, stop", async () => {
    const [first, ...rest] = await hive.nodes();
    assert.ok(first);
    assert.equal(rest.length, 0);
    assert.equal(first.id, "n0");
    assert.equal(first.parent ?? null, null);
    const spawned = await hive.spawnNodes({ count: 1 });
    assert.equal(spawned.length, 1);
    const child = spawned[0];
    assert.ok(child);
    assert.equal(child.parent, "n0");
    assert.equal(child.generation, 1);
    assert.equal(child.state, "running");
    // Node-level routes under /api/nodes/{id}/...
    const st = await hive.node(child.id).status();
    assert.equal(st.peer_id, child.peer_id);
    assert.notEqual(st.peer_id, first.peer_id);
    assert.deepEqual(await hive.node(child.id).subscribe("js-nodes"), {
      topic: "js-nodes",
      subscribed: true,
      changed: true,
    });
    assert.ok((await hive.node(child.id).topics()).some((t) => t.topic === "js-nodes"));
    // The child's own event stream gets what the first node publishes.
    const childEvents = hive.node(child.id).events();
    try {
      await childEvents.opened();
      await hive.subscribe("js-nodes");
      await topicPeers(hive, "js-nodes");
      const { id } = await hive.publish("js-nodes", "to my child");
      const [got] = await collect(childEvents, 1, (e) => e.type === "message" && e.topic === "js-nodes");
      assert.ok(got?.type === "message");
      assert.equal(got.id, id);
      assert.equal(got.from, first.peer_id);
      assert.equal(got.text, "to my child");
    } finally {
      childEvents.close();
    }
    assert.equal((await hive.getNode(child.id)).id, child.id);
    assert.deepEqual(await hive.stopNode(child.id), { stopped: [child.id] });
    await refused(() => hive.getNode(child.id), 404, "not_found");
    assert.deepEqual((await hive.nodes()).map((n) => n.id), ["n0"]);
  });
});

describe("read endpoints", () => {
  test("tension, outbox, topics and metrics answer in their documented shapes", async () => {
    const t = await hive.tension();
    assert.ok(t.value >= 0 && t.value <= 1);
    assert.ok(Array.isArray(t.history) && typeof t.signals === "object");
    const out = await hive.outbox(10);
    assert.equal(typeof out.depth, "number");
    assert.ok(Array.isArray(out.pending));
    assert.ok(Array.isArray(await hive.topics()));
    const metrics = await hive.metrics();
    assert.match(metrics, /^hive_tension /m);
    assert.match(metrics, /# EOF\n$/);
    assert.equal(await hive.node("n0").metrics().then((m) => /# EOF\n$/.test(m)), true);
  });
});

describe("errors are typed exceptions", () => {
  test("no token and a wrong token: 401 unauthorized", async () => {
    await refused(() => new HiveClient(host.api).status(), 401, "unauthorized");
    const wrong = await refused(() => new HiveClient({ baseUrl: host.api, token: "wrong" }).peers(), 401, "unauthorized");
    assert.equal(wrong.request, "GET /api/peers");
    assert.ok(wrong.requestId, "the host's X-Request-Id is kept");
  });

  test("a token without the needed scope: 403 missing_scope", async () => {
    const viewer = new HiveClient({ baseUrl: host.api, token: viewerToken });
    assert.deepEqual(await viewer.whoami(), { token: "viewer", scopes: ["read"], required: true });
    await viewer.status();
    await refused(() => viewer.publish("t", "x"), 403, "missing_scope");
    await refused(() => viewer.spawnNodes(), 403, "missing_scope");
  });

  test("an unknown node: 404 not_found, for its routes and for the nodes API", async () => {
    await refused(() => hive.node("n404").status(), 404, "not_found");
    await refused(() => hive.node("n404").publish("t", "x"), 404, "not_found");
    await refused(() => hive.stopNode("n404"), 404, "not_found");
  });

  test("bad input: 400 bad_args", async () => {
    await refused(() => hive.dial("not-a-multiaddr"), 400, "bad_args");
    await refused(() => hive.send("not-a-peer-id", "x"), 400, "bad_args");
    await refused(() => hive.publish("bad\u0001topic", "x"), 400, "bad_args");
    await refused(() => hive.publish("t".repeat(300), "x"), 400, "bad_args");
    await refused(() => hive.spawnNodes({ count: 0 }), 400, "bad_args");
    await refused(() => hive.publish("t", "x", { idempotencyKey: "" }), 400, "bad_args");
    await refused(() => hive.history({ kind: "nonsense" as "message" }), 400, "bad_args");
    // The first node cannot be stopped.
    await refused(() => hive.stopNode("n0"), 409, "conflict");
    // And the host is still serving.
    assert.equal(await hive.healthy(), true);
  });

  test("the event stream takes a base64-like token", async () => {
    const events = hive.events();
    try {
      const [first] = await collect(events, 1, () => true, 30_000);
      assert.equal(first?.type, "daemon");
    } finally {
      events.close();
    }
  });

  test("the event stream with a wrong token or an unknown node fails with the API's error", async () => {
    const wrong = new HiveClient({ baseUrl: host.api, token: "wrong" }).events();
    await assert.rejects(wrong.next(), (e: unknown) => e instanceof HiveApiError && e.status === 401 && e.code === "unauthorized");
    const unknown = hive.node("n404").events();
    await assert.rejects(unknown.opened(), (e: unknown) => e instanceof HiveApiError && e.status === 404);
  });

  test("a host that is not there: HiveConnectionError", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    await assert.rejects(new HiveClient(`http://127.0.0.1:${port}`).status(), HiveConnectionError);
    assert.throws(() => new HiveClient("not a url"), TypeError);
    assert.throws(() => new HiveClient("ftp://127.0.0.1"), TypeError);
  });
});
