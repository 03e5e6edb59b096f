// A hostile server on the other end of the event stream: garbage frames must
// be skipped and reported, never crash the client or stop the stream, and a
// stored event sent twice is delivered once.
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { WebSocket, WebSocketServer } from "ws";
import { HiveClient, HiveProtocolError, type HiveEvent } from "../src/index.js";
import { collect } from "./support.js";

const msg = (cursor: number, data = "aGk=") =>
  JSON.stringify({ type: "message", topic: "t", from: "12D3KooWX", id: `m${cursor}`, data, text: "hi", cursor });

const garbage: Array<string | Buffer> = [
  "not json",
  "[]",
  "null",
  "42",
  '"a string"',
  "{}",
  '{"type": 5}',
  '{"type": "message"}',
  JSON.stringify({ type: "message", topic: "t", from: "x", id: "1", data: "!!!not base64", cursor: 9 }),
  JSON.stringify({ type: "message", topic: "t", from: "x", id: "1", data: "aGk=", cursor: -1 }),
  JSON.stringify({ type: "message", topic: "t", from: "x", id: "1", data: "aGk=", cursor: "3" }),
  JSON.stringify({ type: "message", topic: "t", from: "x", id: "1", data: "aGk=", cursor: 1e300 }),
  JSON.stringify({ type: "direct", from: ["x"], id: "1", data: "aGk=", cursor: 4 }),
  JSON.stringify({ type: "expired", id: "1", target: "t", direct: "yes", cursor: 5 }),
  JSON.stringify({ type: "daemon", state: "running", pid: null, restarts: -2 }),
  JSON.stringify({ type: "peer_connected", peer_id: 7 }),
  "[".repeat(100_000),
  Buffer.from([0xff, 0x00, 0x13]),
];

test("garbage frames are skipped and reported; valid ones still arrive, once; then it resumes", async () => {
  const urls: string[] = [];
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  server.on("connection", (socket: WebSocket, req: IncomingMessage) => {
    urls.push(req.url ?? "");
    if (urls.length === 1) {
      socket.send(JSON.stringify({ type: "daemon", state: "running", pid: 1, restarts: 0, cursor: 0 }));
      socket.send(msg(1));
      for (const g of garbage) socket.send(g);
      socket.send(msg(2));
      socket.send(msg(2)); // sent twice
      socket.send(msg(1)); // and an old one again
      socket.send(JSON.stringify({ type: "topic_peer_joined", topic: "t", peer_id: "P" }));
      socket.send(msg(3));
      // Then the server drops the connection without a close frame.
      setTimeout(() => socket.terminate(), 50);
    } else {
      socket.send(JSON.stringify({ type: "daemon", state: "running", pid: 1, restarts: 0, cursor: 4 }));
      socket.send(msg(3)); // the host would not: the client skips it anyway
      socket.send(msg(4));
    }
  });
  await new Promise((r) => server.once("listening", r));
  const { port } = server.address() as AddressInfo;
  const errors: Error[] = [];
  // The `ws` class passed in explicitly (the other tests find it by themselves).
  const client = new HiveClient({ baseUrl: `http://127.0.0.1:${port}`, token: "t0k", WebSocket });
  const events = client.events({ onError: (e) => errors.push(e), minBackoffMs: 10 });
  try {
    const got: HiveEvent[] = await collect(events, 6, () => true, 20_000);
    assert.deepEqual(
      got.map((e) => (e.type === "other" ? e.kind : `${e.type}${"cursor" in e && e.type === "message" ? e.cursor : ""}`)),
      ["daemon", "message1", "message2", "topic_peer_joined", "message3", "daemon"],
    );
    const [fourth] = await collect(events, 1, () => true, 20_000);
    assert.ok(fourth?.type === "message" && fourth.cursor === 4, "resumed with the next one, not message 3 again");
    const protocolErrors = errors.filter((e) => e instanceof HiveProtocolError);
    assert.equal(protocolErrors.length, garbage.length, protocolErrors.map((e) => e.message).join("\n"));
    assert.equal(events.skipped, garbage.length + 3, "garbage plus three repeats");
    assert.equal(events.cursor, 4);
    assert.equal(urls.length, 2);
    assert.match(urls[0] ?? "", /^\/api\/events\?token=t0k$/);
    assert.match(urls[1] ?? "", /^\/api\/events\?after=3&token=t0k$/, "reconnected with the cursor of the last event");
  } finally {
    events.close();
    await new Promise((r) => server.close(r));
  }
});

test("a server that accepts the socket and stays silent is dropped and tried again", async () => {
  let connections = 0;
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  server.on("connection", (socket: WebSocket) => {
    connections += 1;
    if (connections === 1) return; // says nothing, keeps the socket open
    socket.send(JSON.stringify({ type: "daemon", state: "running", pid: 1, restarts: 0, cursor: 0 }));
    socket.send(msg(1));
  });
  await new Promise((r) => server.once("listening", r));
  const { port } = server.address() as AddressInfo;
  const errors: Error[] = [];
  const events = new HiveClient({ baseUrl: `http://127.0.0.1:${port}`, WebSocket }).events({
    openTimeoutMs: 300,
    minBackoffMs: 10,
    onError: (e) => errors.push(e),
  });
  try {
    const got = await collect(events, 2, () => true, 20_000);
    assert.deepEqual(got.map((e) => e.type), ["daemon", "message"]);
    assert.equal(connections, 2);
    assert.ok(errors.some((e) => /no first frame within 300 ms/.test(e.message)), errors.join("\n"));
  } finally {
    events.close();
    for (const c of server.clients) c.terminate();
    await new Promise((r) => server.close(r));
  }
});
