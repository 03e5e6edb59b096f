// The frames of the event stream (`GET /api/events`) and of history pages
// (`GET /api/messages`), checked and decoded. The OpenAPI document does not
// describe them (a WebSocket carries them), so their types are written here,
// after crates/hive-host/src/api/events.rs and docs/IPC.md.

import { fromBase64 } from "./base64.js";
import { HiveProtocolError } from "./errors.js";

/** A gossipsub message on a topic this node subscribed to. */
export interface TopicMessage {
  type: "message";
  topic: string;
  /** Peer id of the author. */
  from: string;
  /** Message id, the same on every receiving node. */
  id: string;
  /** The payload (base64 `data` on the wire). */
  data: Uint8Array;
  /** The payload as text, when it is UTF-8. */
  text?: string;
  /** Position in the host's inbox; resume after it with `after`. */
  cursor: number;
  /** When the host stored it (Unix ms); replayed frames only. */
  received_ms?: number;
  /** The author's sequence number, signature and key (base64), live frames only. */
  seqno?: string;
  signature?: string;
  key?: string;
}

/** A direct message from another peer. */
export interface DirectMessage {
  type: "direct";
  from: string;
  id: string;
  data: Uint8Array;
  text?: string;
  cursor: number;
  received_ms?: number;
}

/** One of this node's messages could not be delivered in its time to live. */
export interface UndeliveredEvent {
  type: "expired" | "failed";
  /** The message id `publish`/`send` answered. */
  id: string;
  /** The topic or peer id it was for. */
  target: string | null;
  /** True for a direct message, false for a publish. */
  direct: boolean;
  reason?: string;
  cursor: number;
  received_ms?: number;
}

/** The host's supervisor: the daemon's state changed (also the first frame). */
export interface DaemonEvent {
  type: "daemon";
  /** `starting`, `running`, `restarting` or `stopped`. */
  state: string;
  pid: number | null;
  restarts: number;
  /** While `restarting`, before the replacement starts: the backoff in ms. */
  restart_delay_ms?: number;
  /** The inbox's last cursor (first frame) or at the time of the change. */
  cursor?: number;
}

export interface PeerConnectedEvent {
  type: "peer_connected";
  peer_id: string;
  addr: string;
  cursor?: number;
}

export interface PeerDisconnectedEvent {
  type: "peer_disconnected";
  peer_id: string;
  cursor?: number;
}

/** Any other kind the host sends (`new_listen_addr`, `topic_peer_joined`, ...). */
export interface OtherEvent {
  type: "other";
  /** The frame's own `type`. */
  kind: string;
  /** The frame as received. */
  frame: Record<string, unknown>;
  cursor?: number;
}

export type HiveEvent =
  | TopicMessage
  | DirectMessage
  | UndeliveredEvent
  | DaemonEvent
  | PeerConnectedEvent
  | PeerDisconnectedEvent
  | OtherEvent;

/** Events stored in the host's inbox: their `cursor` is their own. */
export type StoredEvent = TopicMessage | DirectMessage | UndeliveredEvent;

export function isStored(event: HiveEvent): event is StoredEvent {
  return (
    event.type === "message" || event.type === "direct" || event.type === "expired" || event.type === "failed"
  );
}

type Obj = Record<string, unknown>;

function str(o: Obj, k: string): string {
  const v = o[k];
  if (typeof v !== "string") throw new TypeError(`"${k}" is not a string`);
  return v;
}

function optStr(o: Obj, k: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new TypeError(`"${k}" is not a string`);
  return v;
}

function count(o: Obj, k: string): number {
  const v = o[k];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new TypeError(`"${k}" is not a non-negative integer`);
  }
  return v;
}

function optCount(o: Obj, k: string): number | undefined {
  return o[k] === undefined || o[k] === null ? undefined : count(o, k);
}

/** Copies the optional fields that are present (exactOptionalPropertyTypes). */
function withOptional<T extends object>(base: T, extra: Record<string, unknown>): T {
  for (const [k, v] of Object.entries(extra)) {
    if (v !== undefined) (base as Record<string, unknown>)[k] = v;
  }
  return base;
}

function decode(o: Obj): HiveEvent {
  const type = str(o, "type");
  switch (type) {
    case "message":
      return withOptional<TopicMessage>(
        {
          type,
          topic: str(o, "topic"),
          from: str(o, "from"),
          id: str(o, "id"),
          data: fromBase64(str(o, "data")),
          cursor: count(o, "cursor"),
        },
        {
          text: optStr(o, "text"),
          received_ms: optCount(o, "received_ms"),
          seqno: optStr(o, "seqno"),
          signature: optStr(o, "signature"),
          key: optStr(o, "key"),
        },
      );
    case "direct":
      return withOptional<DirectMessage>(
        {
          type,
          from: str(o, "from"),
          id: str(o, "id"),
          data: fromBase64(str(o, "data")),
          cursor: count(o, "cursor"),
        },
        { text: optStr(o, "text"), received_ms: optCount(o, "received_ms") },
      );
    case "expired":
    case "failed": {
      if (typeof o["direct"] !== "boolean") throw new TypeError(`"direct" is not a boolean`);
      return withOptional<UndeliveredEvent>(
        {
          type,
          id: str(o, "id"),
          target: optStr(o, "target") ?? null,
          direct: o["direct"],
          cursor: count(o, "cursor"),
        },
        { reason: optStr(o, "reason"), received_ms: optCount(o, "received_ms") },
      );
    }
    case "daemon":
      return withOptional<DaemonEvent>(
        { type, state: str(o, "state"), pid: optCount(o, "pid") ?? null, restarts: count(o, "restarts") },
        { cursor: optCount(o, "cursor"), restart_delay_ms: optCount(o, "restart_delay_ms") },
      );
    case "peer_connected":
      return withOptional<PeerConnectedEvent>(
        { type, peer_id: str(o, "peer_id"), addr: str(o, "addr") },
        { cursor: optCount(o, "cursor") },
      );
    case "peer_disconnected":
      return withOptional<PeerDisconnectedEvent>(
        { type, peer_id: str(o, "peer_id") },
        { cursor: optCount(o, "cursor") },
      );
    default:
      return withOptional<OtherEvent>({ type: "other", kind: type, frame: o }, { cursor: optCount(o, "cursor") });
  }
}

/** One frame as the host sends it (already parsed JSON) → a checked event. */
export function decodeFrame(value: unknown): HiveEvent {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HiveProtocolError("an event frame must be a JSON object", safeJson(value));
  }
  try {
    return decode(value as Obj);
  } catch (e) {
    throw new HiveProtocolError(`bad event frame: ${(e as Error).message}`, safeJson(value));
  }
}

/** One WebSocket text frame → a checked event; throws HiveProtocolError. */
export function parseFrame(text: unknown): HiveEvent {
  if (typeof text !== "string") {
    throw new HiveProtocolError("the event stream sends text frames only", String(text));
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HiveProtocolError("an event frame is not JSON", text);
  }
  return decodeFrame(value);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
