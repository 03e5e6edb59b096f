"""What py_peer.py needs besides py-libp2p: verdict lines, the few CBOR items
of Hive's direct protocol, and the reading of Hive's pubsub envelope.

The direct protocol is rust-libp2p's request-response `cbor` codec: the
request is one CBOR item written then the write side closed, the response one
CBOR item read to the end of the stream. Hive's request is the map
`{"id": text, "data": bytes}`, its answer `{"id": text}`.
"""

import contextlib
import traceback

# --- verdicts ---------------------------------------------------------------


class Case:
    def __init__(self, results, name):
        self.results, self.name, self.done = results, name, False

    def ok(self, detail=""):
        self.results.record("PASS", self.name, detail)
        self.done = True

    def fail(self, detail):
        self.results.record("FAIL", self.name, detail)
        self.done = True

    def skip(self, detail):
        self.results.record("SKIP", self.name, detail)
        self.done = True

    def check_payload(self, got, sent, source, expected_source, proto):
        """A gossipsub message that must carry exactly `sent`, authored by `expected_source`."""
        if source != expected_source:
            return self.fail(f"message authored by {source}, expected the host {expected_source}")
        if got == sent:
            return self.ok(f"{len(sent)} bytes exactly, authored by the host, over {proto}")
        env = unwrap_envelope(got)
        if env is not None and env[1] == sent:
            return self.fail(
                f"got {len(got)} bytes, not the {len(sent)} published: Hive's pubsub envelope "
                f"(00 'hive' 01, id length, id {env[0]!r}) precedes the payload; "
                "the host was asked for a plain publish (?envelope=false) but wrapped it anyway"
            )
        return self.fail(f"got {got!r}, expected {sent!r}")


class Results:
    def __init__(self, prefix):
        self.prefix = prefix
        self.lines = []
        self.failed = 0

    def record(self, verdict, name, detail=""):
        line = f"{verdict} {self.prefix}.{name} {detail}".rstrip()
        self.lines.append(line)
        if verdict == "FAIL":
            self.failed += 1
        print(line, flush=True)

    @contextlib.contextmanager
    def case(self, name):
        c = Case(self, name)
        try:
            yield c
        except Exception as e:  # noqa: BLE001 - a verdict line for anything
            detail = f"{type(e).__name__}: {e}".strip()
            if detail.endswith(":"):
                detail += " " + traceback.format_exc(limit=-1).strip().splitlines()[-1]
            c.fail(detail)
        if not c.done:
            c.fail("case ended without a verdict")


# --- Hive's pubsub envelope ---------------------------------------------------

MAGIC = b"\x00hive\x01"


def unwrap_envelope(data):
    """(id, payload) if `data` is Hive's envelope, else None."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 1:
        return None
    n = data[len(MAGIC)]
    rest = data[len(MAGIC) + 1 :]
    if n == 0 or len(rest) < n:
        return None
    return rest[:n].decode("ascii", "replace"), rest[n:]


# --- CBOR (RFC 8949): unsigned ints, byte and text strings, maps, arrays ------


def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | extra]) + n.to_bytes(size, "big")
    raise ValueError("too long")


def cbor_encode(value):
    if isinstance(value, bool) or value is None:
        raise TypeError("not needed")
    if isinstance(value, int) and value >= 0:
        return _head(0, value)
    if isinstance(value, (bytes, bytearray)):
        return _head(2, len(value)) + bytes(value)
    if isinstance(value, str):
        raw = value.encode()
        return _head(3, len(raw)) + raw
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(cbor_encode(v) for v in value)
    if isinstance(value, dict):
        return _head(5, len(value)) + b"".join(cbor_encode(k) + cbor_encode(v) for k, v in value.items())
    raise TypeError(f"cannot encode {type(value).__name__}")


def cbor_decode(data):
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} trailing bytes after the CBOR item")
    return value


def _decode(data, i):
    first = data[i]
    major, info = first >> 5, first & 31
    i += 1
    if info < 24:
        n = info
    elif 24 <= info <= 27:
        size = 1 << (info - 24)
        n = int.from_bytes(data[i : i + size], "big")
        i += size
    else:
        raise ValueError(f"unsupported CBOR head {first:#x}")
    if major == 0:
        return n, i
    if major in (2, 3):
        raw = data[i : i + n]
        if len(raw) != n:
            raise ValueError("truncated CBOR string")
        return (bytes(raw) if major == 2 else raw.decode()), i + n
    if major == 4:
        out = []
        for _ in range(n):
            v, i = _decode(data, i)
            out.append(v)
        return out, i
    if major == 5:
        out = {}
        for _ in range(n):
            k, i = _decode(data, i)
            v, i = _decode(data, i)
            out[k] = v
        return out, i
    raise ValueError(f"unsupported CBOR major type {major}")
