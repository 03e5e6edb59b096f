// Helpers of the tests: real hosts, a real TCP proxy, and waiting for
// conditions (never for a fixed time).
import net from "node:net";
import { startHost, type RunningHost } from "../scripts/hive-host.mjs";
import { HiveClient, type EventStream, type HiveEvent } from "../src/index.js";

export { startHost };
export type { RunningHost };

/** Polls `check` until it returns something other than undefined/false. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The next `n` events that satisfy `want`, or a clear failure after `timeoutMs`. */
export async function collect(
  stream: EventStream,
  n: number,
  want: (e: HiveEvent) => boolean,
  timeoutMs = 60_000,
): Promise<HiveEvent[]> {
  const got: HiveEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < n) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), Math.max(0, deadline - Date.now()));
    });
    const r = await Promise.race([stream.next(), timeout]);
    clearTimeout(timer);
    if (r === "timeout") throw new Error(`got ${got.length} of ${n} events in time`);
    if (r.done) throw new Error(`the stream ended after ${got.length} of ${n} events`);
    if (want(r.value)) got.push(r.value);
  }
  return got;
}

export const text = (e: HiveEvent): string =>
  e.type === "message" || e.type === "direct" ? new TextDecoder().decode(e.data) : "";

/** Waits until `client`'s node sees `n` peers in `topic`. */
export function topicPeers(client: HiveClient, topic: string, n = 1): Promise<true> {
  return until(`${n} peer(s) in ${topic}`, async () => {
    const topics = await client.topics();
    return topics.some((t) => t.topic === topic && t.peers >= n) || undefined;
  });
}

/**
 * A TCP proxy in front of a host's API, whose connections the test can cut
 * as a network would (both directions closed, no goodbye).
 */
export class CuttableProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  url = "";

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(target: string): Promise<CuttableProxy> {
    const { hostname, port } = new URL(target);
    const server = net.createServer();
    const proxy = new CuttableProxy(server);
    server.on("connection", (client) => {
      const upstream = net.connect(Number(port), hostname);
      for (const s of [client, upstream]) {
        proxy.#sockets.add(s);
        s.on("close", () => proxy.#sockets.delete(s));
        s.on("error", () => {});
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const addr = server.address() as net.AddressInfo;
    proxy.url = `http://127.0.0.1:${addr.port}`;
    return proxy;
  }

  /** Drops every open connection. */
  cut(): number {
    const n = this.#sockets.size;
    for (const s of this.#sockets) s.resetAndDestroy();
    return n;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.#server.close(r));
  }
}

/** Two hosts on loopback, B bootstrapped from A, both requiring a token. */
export async function twoHosts(extraB: string[] = []): Promise<{
  a: RunningHost;
  b: RunningHost;
  A: HiveClient;
  B: HiveClient;
  tokenA: string;
  tokenB: string;
  stop: () => Promise<void>;
}> {
  const tokenA = "token-a-" + Math.random().toString(36).slice(2);
  const tokenB = "token-b-" + Math.random().toString(36).slice(2);
  const a = await startHost({ args: ["--api-token", tokenA] });
  let b: RunningHost | undefined;
  try {
    const A = new HiveClient({ baseUrl: a.api, token: tokenA });
    await until("host A healthy", () => A.healthy());
    const addr = (await A.status()).listen_addrs[0];
    if (!addr) throw new Error("host A has no listen address");
    // B is also reached through a TCP proxy (the reconnect test), whose port
    // is not B's: `--allowed-host` is what a host behind a proxy is given.
    b = await startHost({ args: ["--api-token", tokenB, "--bootstrap", addr, "--allowed-host", "127.0.0.1", ...extraB] });
    const B = new HiveClient({ baseUrl: b.api, token: tokenB });
    await until("host B healthy", () => B.healthy());
    const bb = b;
    return { a, b, A, B, tokenA, tokenB, stop: async () => void (await Promise.all([a.stop(), bb.stop()])) };
  } catch (e) {
    await Promise.all([a.stop(), b?.stop()]);
    throw e;
  }
}
