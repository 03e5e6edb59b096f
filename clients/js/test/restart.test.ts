// The event stream across a restart of its host: host B is stopped while A
// keeps publishing, then started again on its data directory and API port.
// The stream reconnects by itself (no call by the test) and delivers every
// message exactly once: those from before the stop, those A's outbox held
// while B was down, and live ones.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { HiveClient, type HiveEvent, type TopicMessage } from "../src/index.js";
import { collect, startHost, text, topicPeers, until, type RunningHost } from "./support.js";

let a: RunningHost;
let b: RunningHost | undefined;
let A: HiveClient;
let B: HiveClient;
let bArgs: string[] = [];

before(async () => {
  a = await startHost();
  A = new HiveClient(a.api);
  await until("host A healthy", () => A.healthy());
  const addr = (await A.status()).listen_addrs[0];
  assert.ok(addr);
  bArgs = ["--bootstrap", addr];
  b = await startHost({ args: bArgs });
  B = new HiveClient(b.api);
  await until("host B healthy", () => B.healthy());
});
after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

test("a stream outlives a restart of its host and misses nothing", async () => {
  const topic = "js-restart";
  const isMine = (e: HiveEvent): e is TopicMessage => e.type === "message" && e.topic === topic;
  await B.subscribe(topic);
  await A.subscribe(topic);
  await topicPeers(A, topic);
  const errors: Error[] = [];
  const events = B.events({ onError: (e) => errors.push(e) });
  try {
    await events.opened();
    const before = Array.from({ length: 10 }, (_, i) => `before ${i}`);
    for (const t of before) await A.publish(topic, t);
    const got = await collect(events, 10, isMine);

    // B goes down; A publishes meanwhile (its outbox keeps them until B is back).
    const old = b;
    assert.ok(old);
    b = undefined;
    await old.stop({ keepData: true });
    const during = Array.from({ length: 10 }, (_, i) => `during ${i}`);
    for (const t of during) await A.publish(topic, t);

    // Same data directory (inbox, cursors, identity, topics), same API port.
    b = await startHost({ args: bArgs, dataDir: old.dataDir, http: new URL(old.api).host });
    assert.equal(b.api, old.api);
    got.push(...(await collect(events, 10, isMine, 90_000)));
    await A.publish(topic, "after");
    got.push(...(await collect(events, 1, isMine)));

    assert.deepEqual(got.map(text).sort(), [...before, ...during, "after"].sort());
    const cursors = got.map((e) => (e as TopicMessage).cursor);
    assert.equal(new Set(cursors).size, cursors.length, "nothing twice");
    assert.ok(events.connections >= 2, "the stream reconnected by itself");
    assert.ok(errors.length > 0, "the drop was reported to onError");
  } finally {
    events.close();
  }
});
