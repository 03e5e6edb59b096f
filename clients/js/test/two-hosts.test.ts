// The client against two real hosts, B bootstrapped from A: publish,
// subscribe with resume, reconnects while messages flow, direct messages.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type EventStream, HiveClient, type HiveEvent, type TopicMessage } from "../src/index.js";
import { CuttableProxy, collect, text, topicPeers, twoHosts, until } from "./support.js";

type Hosts = Awaited<ReturnType<typeof twoHosts>>;
let h: Hosts;
let peerA = "";
let peerB = "";

before(async () => {
  h = await twoHosts();
  peerA = (await h.A.status()).peer_id;
  peerB = (await h.B.status()).peer_id;
  await until("A and B connected", async () => (await h.B.peers()).some((p) => p.peer_id === peerA));
});
after(async () => h?.stop());

const isMessage = (topic: string) => (e: HiveEvent): e is TopicMessage => e.type === "message" && e.topic === topic;

/** Subscribes both hosts to `topic` and waits until A sees B in it. */
async function meshed(topic: string): Promise<void> {
  await h.B.subscribe(topic);
  await h.A.subscribe(topic);
  await topicPeers(h.A, topic);
}

async function publishAll(client: HiveClient, topic: string, texts: string[]): Promise<void> {
  for (const t of texts) await client.publish(topic, t);
}

function assertExactly(got: HiveEvent[], want: string[]): void {
  assert.deepEqual(got.map(text).sort(), [...want].sort(), "exactly the published messages");
  const cursors = got.map((e) => (e as TopicMessage).cursor);
  assert.equal(new Set(cursors).size, cursors.length, "no event twice");
}

describe("two hosts", () => {
  test("status, whoami and peers are typed answers of the real host", async () => {
    const st = await h.A.status();
    assert.match(st.peer_id, /^12D3KooW/);
    assert.equal(st.daemon.state, "running");
    assert.ok(st.listen_addrs.every((a) => a.endsWith(`/p2p/${st.peer_id}`)));
    const me = await h.A.whoami();
    assert.deepEqual(me, { token: "default", scopes: ["read", "write", "admin"], required: true });
    const peers = await h.B.peers();
    assert.ok(peers.some((p) => p.peer_id === peerA && p.connections.length > 0));
  });

  test("a binary publish on A arrives at a subscriber on B, byte for byte", async () => {
    const topic = "js-binary";
    await meshed(topic);
    const events = h.B.events();
    try {
      await events.opened();
      const bytes = new Uint8Array(300);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) % 256;
      const { id } = await h.A.publish(topic, bytes);
      await h.A.publish(topic, "héllo from A");
      const [bin, txt] = (await collect(events, 2, isMessage(topic))) as TopicMessage[];
      assert.ok(bin && txt);
      assert.deepEqual(bin.data, bytes);
      assert.equal(bin.text, undefined, "not UTF-8: no text");
      assert.equal(bin.from, peerA);
      assert.equal(bin.id, id, "the id publish answered is the id B sees");
      assert.equal(txt.text, "héllo from A");
      assert.ok(txt.cursor > bin.cursor);
      // The same messages in B's stored history, decoded the same way.
      const page = await h.B.history({ topic, after: bin.cursor - 1 });
      assert.deepEqual(
        page.messages.map((m) => (m as TopicMessage).data),
        [bytes, new TextEncoder().encode("héllo from A")],
      );
      assert.equal(page.cursor, txt.cursor);
    } finally {
      events.close();
    }
  });

  test("a stream closed and reopened with its cursor misses nothing and repeats nothing", async () => {
    const topic = "js-resume";
    await meshed(topic);
    const first = h.B.events();
    await first.opened();
    const batch1 = Array.from({ length: 20 }, (_, i) => `first ${i}`);
    await publishAll(h.A, topic, batch1);
    assertExactly(await collect(first, 20, isMessage(topic)), batch1);
    const cursor = first.cursor;
    assert.ok(cursor !== undefined && cursor > 0);
    first.close();

    // Published while no client is connected.
    const batch2 = Array.from({ length: 30 }, (_, i) => `second ${i}`);
    await publishAll(h.A, topic, batch2);
    await until("B stored the second batch", async () => {
      const page = await h.B.history({ topic, after: cursor, limit: 1000 });
      return page.messages.length >= 30;
    });

    const resumed = h.B.events({ after: cursor });
    try {
      assertExactly(await collect(resumed, 30, isMessage(topic)), batch2);
      await h.A.publish(topic, "live again");
      const [live] = await collect(resumed, 1, isMessage(topic));
      assert.ok(live);
      assert.equal(text(live), "live again");
      assert.equal(resumed.skipped, 0);
      // The stored history, paged through by messagesOf, holds each once.
      const stored: string[] = [];
      for await (const m of h.B.messagesOf(topic)) stored.push(text(m));
      assert.deepEqual(stored.sort(), [...batch1, ...batch2, "live again"].sort());
    } finally {
      resumed.close();
    }
  });

  test("the stream reconnects by itself when the network drops it while messages keep flowing", async () => {
    const topic = "js-flowing";
    await meshed(topic);
    const proxy = await CuttableProxy.start(h.b.api);
    const viaProxy = new HiveClient({ baseUrl: proxy.url, token: h.tokenB });
    const errors: Error[] = [];
    const events: EventStream = viaProxy.events({ onError: (e) => errors.push(e) });
    try {
      await events.opened();
      const want = Array.from({ length: 150 }, (_, i) => `flow ${i}`);
      const receiving = collect(events, want.length, isMessage(topic), 90_000);
      let cuts = 0;
      for (const [i, t] of want.entries()) {
        await h.A.publish(topic, t);
        if (i === 40 || i === 100) {
          // The network drops an open connection: the one the client made
          // after the previous drop, once it is there.
          await until("the stream connected again", async () => events.connections > cuts);
          cuts += proxy.cut() > 0 ? 1 : 0;
        }
      }
      assert.equal(cuts, 2, "the proxy had connections to cut");
      assertExactly(await receiving, want);
      assert.ok(events.connections >= 3, `reconnected after each cut (${events.connections} connections)`);
      assert.ok(errors.some((e) => /closed/.test(e.message)), "the drops were reported");
    } finally {
      events.close();
      await proxy.close();
    }
  });

  test("a consumer that falls behind pauses the socket and catches up from the cursor, nothing lost", async () => {
    const topic = "js-slow";
    await meshed(topic);
    const events = h.B.events({ maxBuffered: 10 });
    try {
      await events.opened();
      const want = Array.from({ length: 60 }, (_, i) => `slow ${i}`);
      await publishAll(h.A, topic, want);
      // Nobody reads the stream until B has stored them all.
      await until("B stored the batch", async () => {
        const page = await h.B.history({ topic, limit: 1000 });
        return page.messages.length >= 60;
      });
      assert.equal(events.live, false, "the stream paused its socket at 10 unread events");
      assertExactly(await collect(events, 60, isMessage(topic)), want);
      assert.ok(events.connections >= 2, `resumed after the pause (${events.connections} connections)`);
    } finally {
      events.close();
    }
  });

  test("a direct message from A reaches B and is acknowledged", async () => {
    const events = h.B.events();
    try {
      await events.opened();
      const payload = new Uint8Array([0, 1, 2, 253, 254, 255]);
      const answer = await h.A.send(peerB, payload, { idempotencyKey: "js-direct-1" });
      assert.deepEqual(answer, { id: "js-direct-1", acknowledged: true });
      const [direct] = await collect(events, 1, (e) => e.type === "direct" && e.id === "js-direct-1");
      assert.ok(direct?.type === "direct");
      assert.equal(direct.from, peerA);
      assert.deepEqual(direct.data, payload);
      const stored = await h.B.directMessages();
      assert.ok(stored.some((d) => d.id === "js-direct-1" && d.cursor === direct.cursor));
      // The same key again is not a second message.
      assert.deepEqual(await h.A.send(peerB, payload, { idempotencyKey: "js-direct-1" }), answer);
    } finally {
      events.close();
    }
  });
});

describe("the README's example", () => {
  test("is examples/quickstart.ts, and runs against a real host as written", async () => {
    const { readFileSync } = await import("node:fs");
    const { spawn } = await import("node:child_process");
    const { createInterface } = await import("node:readline");
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const example = readFileSync(new URL("../../examples/quickstart.ts", import.meta.url), "utf8");
    const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.equal(block, example, "README.md's first ts block is examples/quickstart.ts (which tsc checks)");

    await h.A.subscribe("news");
    const child = spawn(process.execPath, [new URL("../examples/quickstart.js", import.meta.url).pathname], {
      env: { ...process.env, HIVE_API: h.b.api, HIVE_TOKEN: h.tokenB },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<number | null>((r) => child.on("exit", r));
    const lines: string[] = [];
    const ready = new Promise<void>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout });
      rl.on("line", (l) => {
        lines.push(l);
        if (l === "ready") resolve();
      });
      child.on("exit", () => reject(new Error(`the example exited early: ${lines.join("\n")}`)));
    });
    try {
      await ready;
      await topicPeers(h.A, "news");
      await h.A.publish("news", "hello from A");
      assert.equal(await exited, 0);
      assert.equal(lines[0], `peer id: ${peerB}`);
      assert.ok(lines.includes(`${peerA}: hello from A`), lines.join("\n"));
      assert.ok(lines.some((l) => /^resume later with hive.events\(\{ after: \d+ \}\)$/.test(l)), lines.join("\n"));
      await until("A received the example's reply", async () => {
        const page = await h.A.history({ topic: "news" });
        return page.messages.some((m) => text(m) === "thanks!");
      });
    } finally {
      child.kill();
    }
  });
});
