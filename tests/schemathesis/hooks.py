"""Hooks for tests/schemathesis/run (loaded with SCHEMATHESIS_HOOKS=hooks).

- Direct sends are fuzzed with `wait=0`: the request is queued and answered
  at once (202), instead of waiting up to 60 s for an acknowledgement that a
  generated peer id never gives.
- `no_internal_error`: no 5xx anywhere, except the 502 that /api/dial
  documents for a remote that refused; a 500 is a failure everywhere.
"""

import schemathesis

SEND = "/api/peers/{peer_id}/send"


@schemathesis.hook
def map_query(ctx, query):
    operation = getattr(ctx, "operation", None)
    if operation is not None and operation.path == SEND:
        query = dict(query or {})
        query["wait"] = "0"
    return query


@schemathesis.check
def no_internal_error(ctx, response, case):
    status = response.status_code
    if status == 500 or (status >= 500 and not (status == 502 and case.operation.path == "/api/dial")):
        raise AssertionError(f"{case.operation.method.upper()} {case.operation.path}: server error {status}")
