// The event stream (`GET /api/events`) over a WebSocket, with cursor resume.
//
// The host stores every received message, direct message and delivery
// failure in its inbox under an increasing cursor before it sends the frame,
// and `?after=C` replays what was stored after C before going live, skipping
// live events the replay covered. This stream remembers the last cursor it
// received; when the socket drops (network, host restart, the host closing a
// slow consumer with 4008) it reconnects with `?after=` that cursor, so the
// consumer sees every stored event exactly once. Events that are not stored
// (peer and daemon changes) that happen while it is disconnected are not
// replayed.

import { HiveApiError, HiveProtocolError } from "./errors.js";
import { type HiveEvent, isStored, parseFrame } from "./frames.js";

/** The part of the WebSocket API this client uses (browsers, `ws`, Node 22+). */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class: the browser's, Node 22's global, or `ws`'s. */
export type WebSocketClass = new (url: string) => object;

export interface EventStreamOptions {
  /**
   * Replay every stored event after this cursor first (a cursor from an
   * earlier stream's `cursor`, or 0 for the whole kept history). Without it
   * the stream starts with live events.
   */
  after?: number | undefined;
  /** Reconnect and resume when the socket drops (default true). */
  reconnect?: boolean | undefined;
  /** First delay before a reconnect, doubled up to `maxBackoffMs` (default 100). */
  minBackoffMs?: number | undefined;
  /** Longest delay between reconnect attempts (default 5000). */
  maxBackoffMs?: number | undefined;
  /**
   * Events held for a consumer that does not keep up (default 10000). Past
   * it the socket is closed, and reopened from the cursor once half of them
   * were taken, so that memory stays bounded and nothing stored is lost.
   */
  maxBuffered?: number | undefined;
  /**
   * How long a new socket may take to send its first frame (default 10000).
   * The host sends one at once; a socket that stays silent is dropped and
   * the stream tries again.
   */
  openTimeoutMs?: number | undefined;
  /** Told about frames that were skipped as unreadable and about dropped sockets. */
  onError?: ((error: Error) => void) | undefined;
}

/** What the client hands a stream: where to connect and how to check why it cannot. */
export interface StreamTransport {
  /** The `ws://` URL of the stream, resuming after `after` when given. */
  url(after: number | undefined): string;
  WebSocket(): Promise<WebSocketClass>;
  /** Called when a socket failed to open: throws a HiveApiError if the host refuses us. */
  probe(): Promise<void>;
}

type Waiter = { resolve: (r: IteratorResult<HiveEvent>) => void; reject: (e: Error) => void };

/** Answers of the probe that mean "this will not work by retrying": token, origin, node. */
const REFUSALS = [401, 403, 404];

/** Remembered cursors, to drop a stored event a server sends twice. */
const RECENT = 4096;

/**
 * An async iterable of the host's events. `for await (const ev of stream)`;
 * `stream.cursor` is the resume point after the last event taken; `close()`
 * ends it.
 */
export class EventStream implements AsyncIterableIterator<HiveEvent> {
  readonly #transport: StreamTransport;
  readonly #opts: {
    reconnect: boolean;
    minBackoffMs: number;
    maxBackoffMs: number;
    maxBuffered: number;
    openTimeoutMs: number;
    onError: ((error: Error) => void) | undefined;
  };
  /** Resume point after the last event handed to the consumer. */
  #taken: number | undefined;
  /** Resume point after the last event received (some may wait in the queue). */
  #received: number | undefined;
  /** The `after` of the current connection: the host skips what is at or below it. */
  #resumedFrom: number | undefined;
  readonly #recent = new Set<number>();
  readonly #recentOrder: number[] = [];
  readonly #queue: HiveEvent[] = [];
  readonly #waiters: Waiter[] = [];
  readonly #openWaiters: Array<() => void> = [];
  #socket: SocketLike | undefined;
  #live = false;
  #paused = false;
  #closed = false;
  #failure: Error | undefined;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Fires when a new socket sends no first frame in time. */
  #silent: ReturnType<typeof setTimeout> | undefined;
  #connections = 0;
  #skipped = 0;

  constructor(transport: StreamTransport, options: EventStreamOptions = {}) {
    this.#transport = transport;
    this.#opts = {
      reconnect: options.reconnect ?? true,
      minBackoffMs: options.minBackoffMs ?? 100,
      maxBackoffMs: options.maxBackoffMs ?? 5000,
      maxBuffered: Math.max(2, options.maxBuffered ?? 10_000),
      openTimeoutMs: options.openTimeoutMs ?? 10_000,
      onError: options.onError,
    };
    if (options.after !== undefined) {
      if (!Number.isSafeInteger(options.after) || options.after < 0) {
        throw new RangeError("after must be a non-negative integer cursor");
      }
      this.#taken = this.#received = options.after;
    }
    void this.#connect();
  }

  /**
   * The cursor to resume after: that of the last stored event taken from
   * this stream (or the inbox's last cursor when the stream started, before
   * any). Pass it as `after` to a new stream to continue where this one left.
   */
  get cursor(): number | undefined {
    return this.#taken;
  }

  /** How many times a socket opened (1 + reconnects). */
  get connections(): number {
    return this.#connections;
  }

  /** Frames skipped: unreadable ones and stored events seen before. */
  get skipped(): number {
    return this.#skipped;
  }

  /** Whether a socket is open and has sent its first frame. */
  get live(): boolean {
    return this.#live;
  }

  /**
   * Resolves once the stream is live (the host sent its first frame). Events
   * that happen after that are not missed; with `after`, neither are stored
   * ones from before.
   */
  opened(): Promise<void> {
    if (this.#live) return Promise.resolve();
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new Error("the event stream is closed"));
    return new Promise((resolve, reject) => {
      this.#openWaiters.push(() => {
        if (this.#live) resolve();
        else reject(this.#failure ?? new Error("the event stream is closed"));
      });
    });
  }

  /** Drop the current socket and resume from the cursor (e.g. after a network change). */
  reconnect(): void {
    this.#socket?.close(4000, "client reconnects");
  }

  /** Stop: close the socket and end the iteration. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#silent);
    this.#socket?.close(1000, "client closed the stream");
    this.#socket = undefined;
    this.#live = false;
    this.#finish();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<HiveEvent>> {
    const event = this.#queue.shift();
    if (event !== undefined) {
      this.#take(event);
      return Promise.resolve({ value: event, done: false });
    }
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<HiveEvent>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  #take(event: HiveEvent): void {
    if (isStored(event)) this.#taken = Math.max(this.#taken ?? 0, event.cursor);
    if (this.#paused && this.#queue.length <= this.#opts.maxBuffered / 2) {
      this.#paused = false;
      void this.#connect();
    }
  }

  async #connect(): Promise<void> {
    if (this.#closed || this.#socket || this.#paused) return;
    let socket: SocketLike;
    try {
      const WebSocket = await this.#transport.WebSocket();
      if (this.#closed) return;
      this.#resumedFrom = this.#received;
      socket = new WebSocket(this.#transport.url(this.#received)) as SocketLike;
    } catch (e) {
      this.#fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    this.#socket = socket;
    let sawFrame = false;
    const dropped = (code: number, why: string) => {
      if (this.#socket !== socket) return;
      clearTimeout(this.#silent);
      this.#socket = undefined;
      this.#live = false;
      if (this.#closed || this.#paused) return;
      this.#report(new Error(`event stream closed (${why})`));
      void this.#afterClose(code, sawFrame);
    };
    clearTimeout(this.#silent);
    this.#silent = setTimeout(() => {
      try {
        socket.close(4000, "no first frame");
      } catch {
        // Already closing: dropping our side is enough.
      }
      dropped(1006, `no first frame within ${this.#opts.openTimeoutMs} ms`);
    }, this.#opts.openTimeoutMs);
    socket.onmessage = (ev) => {
      if (this.#socket !== socket) return;
      if (!sawFrame) {
        sawFrame = true;
        clearTimeout(this.#silent);
        this.#connections += 1;
        this.#attempt = 0;
      }
      this.#onFrame(ev.data);
    };
    socket.onerror = () => {};
    socket.onclose = (ev) => dropped(ev.code, `${ev.code}${ev.reason ? `: ${ev.reason}` : ""}`);
  }

  async #afterClose(code: number, sawFrame: boolean): Promise<void> {
    if (!sawFrame) {
      // Browsers do not show why an upgrade failed: ask over HTTP, and give
      // up if the host refuses us (wrong token, unknown node).
      try {
        await this.#transport.probe();
      } catch (e) {
        if (e instanceof HiveApiError && REFUSALS.includes(e.status)) {
          this.#fail(e);
          return;
        }
      }
    }
    if (!this.#opts.reconnect) {
      this.close();
      return;
    }
    if (this.#closed) return;
    const delay =
      code === 4008 && sawFrame
        ? 0
        : Math.min(this.#opts.maxBackoffMs, this.#opts.minBackoffMs * 2 ** Math.min(this.#attempt, 16));
    this.#attempt += 1;
    this.#timer = setTimeout(() => void this.#connect(), delay);
  }

  #onFrame(data: unknown): void {
    let event: HiveEvent;
    try {
      event = parseFrame(data);
    } catch (e) {
      this.#skipped += 1;
      this.#report(e instanceof HiveProtocolError ? e : new HiveProtocolError(String(e), String(data)));
      return;
    }
    if (!this.#live) {
      this.#live = true;
      // A live-only stream resumes from the inbox's cursor at its start.
      if (this.#received === undefined && event.type === "daemon" && event.cursor !== undefined) {
        this.#received = this.#taken = event.cursor;
      }
      for (const wake of this.#openWaiters.splice(0)) wake();
    }
    if (isStored(event)) {
      if ((this.#resumedFrom !== undefined && event.cursor <= this.#resumedFrom) || this.#recent.has(event.cursor)) {
        this.#skipped += 1;
        return;
      }
      this.#remember(event.cursor);
      this.#received = Math.max(this.#received ?? 0, event.cursor);
    }
    this.#push(event);
  }

  #remember(cursor: number): void {
    this.#recent.add(cursor);
    this.#recentOrder.push(cursor);
    if (this.#recentOrder.length > RECENT) this.#recent.delete(this.#recentOrder.shift() as number);
  }

  #push(event: HiveEvent): void {
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#take(event);
      waiter.resolve({ value: event, done: false });
      return;
    }
    this.#queue.push(event);
    if (this.#queue.length >= this.#opts.maxBuffered && this.#socket) {
      // Stop reading: the host keeps what arrives meanwhile and replays it.
      this.#paused = true;
      const socket = this.#socket;
      this.#socket = undefined;
      this.#live = false;
      socket.close(1000, "client buffer full");
    }
  }

  #report(error: Error): void {
    try {
      this.#opts.onError?.(error);
    } catch {
      // A throwing callback must not stop the stream.
    }
  }

  #fail(error: Error): void {
    if (this.#closed) return;
    this.#failure = error;
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#silent);
    this.#socket?.close(1000);
    this.#socket = undefined;
    this.#finish();
  }

  #finish(): void {
    for (const w of this.#waiters.splice(0)) {
      if (this.#failure) w.reject(this.#failure);
      else w.resolve({ value: undefined, done: true });
    }
    for (const wake of this.#openWaiters.splice(0)) wake();
  }
}
