export { HiveClient, NodeClient } from "./client.js";
export type {
  HiveClientOptions,
  PublishOptions,
  SendOptions,
  HistoryQuery,
  HistoryPage,
  Status,
  Peer,
  Topic,
  Subscription,
  SendAnswer,
  NodeView,
  Outbox,
  TensionNow,
  WhoAmI,
  ReproduceAnswer,
  ErrorResponse,
} from "./client.js";
export { EventStream } from "./events.js";
export type { EventStreamOptions, SocketLike, WebSocketClass } from "./events.js";
export { parseFrame, decodeFrame, isStored } from "./frames.js";
export type {
  HiveEvent,
  StoredEvent,
  TopicMessage,
  DirectMessage,
  UndeliveredEvent,
  DaemonEvent,
  PeerConnectedEvent,
  PeerDisconnectedEvent,
  OtherEvent,
} from "./frames.js";
export { HiveApiError, HiveConnectionError, HiveProtocolError } from "./errors.js";
export { toBase64, fromBase64 } from "./base64.js";
export type { paths, components, operations } from "./openapi.js";
