// What the client throws. Every failure of an API call is one of these, so
// that a caller can tell "the host said no" (HiveApiError, with the HTTP
// status and the API's stable error code) from "the host could not be
// reached" (HiveConnectionError) and "the host sent something this client
// cannot read" (HiveProtocolError).

/** The host answered with an error: `{"error": {"code", "message"}}`. */
export class HiveApiError extends Error {
  override readonly name = "HiveApiError";
  /** The HTTP status, e.g. 400, 401, 404, 503. */
  readonly status: number;
  /**
   * The API's stable error code (`bad_args`, `unauthorized`, `missing_scope`,
   * `forbidden`, `not_found`, `conflict`, `payload_too_large`, `overloaded`,
   * `daemon_unavailable`, `dial_failed`, `timeout`, ...), or `http_<status>`
   * when the body carried none.
   */
  readonly code: string;
  /** The method and path of the request, e.g. `POST /api/dial`. */
  readonly request: string;
  /** The host's `X-Request-Id` for this request, to find it in its logs. */
  readonly requestId: string | undefined;
  /** Seconds to wait before retrying (`Retry-After`), when the host said. */
  readonly retryAfter: number | undefined;
  /** The host's own message (`error.message`), without request and status. */
  readonly detail: string;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    request: string;
    requestId?: string | undefined;
    retryAfter?: number | undefined;
  }) {
    super(`${init.request}: ${init.status} ${init.code}: ${init.message}`);
    this.status = init.status;
    this.code = init.code;
    this.request = init.request;
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
    this.detail = init.message;
  }
}

/** The host could not be reached (refused, reset, DNS, aborted). */
export class HiveConnectionError extends Error {
  override readonly name = "HiveConnectionError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The host sent a frame or body this client cannot read. */
export class HiveProtocolError extends Error {
  override readonly name = "HiveProtocolError";
  /** The offending text (cut to 200 characters). */
  readonly raw: string;
  constructor(message: string, raw: string) {
    super(message);
    this.raw = raw.length > 200 ? `${raw.slice(0, 200)}…` : raw;
  }
}
