"""Just enough protobuf (proto2 wire format) and multiaddr/peer-id encoding for
the go-libp2p-daemon control protocol, written by hand so that the bench needs
no protobuf package and drives every daemon with exactly the same bytes.

Field numbers follow p2pd.proto (go-libp2p-daemon, hivemind's fork):
Request{type=1, connect=2, streamOpen=3, streamHandler=4, dht=5, connManager=6,
disconnect=7, pubsub=8}; Response{type=1, error=2, streamInfo=3, identify=4,
dht=5, peers=6, pubsub=7}.
"""

from __future__ import annotations

import ipaddress

# Request types.
IDENTIFY, CONNECT, STREAM_OPEN, STREAM_HANDLER, DHT, LIST_PEERS = 0, 1, 2, 3, 4, 5
DISCONNECT, PUBSUB = 7, 8
# PSRequest types.
PS_GET_TOPICS, PS_LIST_PEERS, PS_PUBLISH, PS_SUBSCRIBE = 0, 1, 2, 3


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def f_varint(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def f_bytes(field: int, value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    return varint(field << 3 | 2) + varint(len(value)) + value


def decode(buf: bytes) -> dict[int, list]:
    """Field number -> list of values (ints for varints, bytes otherwise)."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(field, []).append(value)
    return fields


def frame(payload: bytes) -> bytes:
    return varint(len(payload)) + payload


# --- requests -------------------------------------------------------------


def identify_req() -> bytes:
    return f_varint(1, IDENTIFY)


def connect_req(peer: bytes, addrs: list[bytes]) -> bytes:
    body = f_bytes(1, peer) + b"".join(f_bytes(2, a) for a in addrs)
    return f_varint(1, CONNECT) + f_bytes(2, body)


def list_peers_req() -> bytes:
    return f_varint(1, LIST_PEERS)


def stream_open_req(peer: bytes, proto: str) -> bytes:
    return f_varint(1, STREAM_OPEN) + f_bytes(3, f_bytes(1, peer) + f_bytes(2, proto))


def stream_handler_req(addr: bytes, proto: str) -> bytes:
    # `balanced` is required by hivemind's fork and optional elsewhere: always sent.
    body = f_bytes(1, addr) + f_bytes(2, proto) + f_varint(3, 0)
    return f_varint(1, STREAM_HANDLER) + f_bytes(4, body)


def pubsub_req(kind: int, topic: str | None = None, data: bytes | None = None) -> bytes:
    body = f_varint(1, kind)
    if topic is not None:
        body += f_bytes(2, topic)
    if data is not None:
        body += f_bytes(3, data)
    return f_varint(1, PUBSUB) + f_bytes(8, body)


# --- responses ------------------------------------------------------------


class DaemonError(Exception):
    pass


def check_response(buf: bytes) -> dict[int, list]:
    r = decode(buf)
    if r.get(1, [0])[0] != 0:
        err = decode(r[2][0]).get(1, [b"?"])[0] if 2 in r else b"?"
        raise DaemonError(err.decode(errors="replace"))
    return r


# --- multiaddrs and peer ids ----------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(s: str) -> bytes:
    n = 0
    for ch in s:
        n = n * 58 + _B58.index(ch)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(s) - len(s.lstrip("1"))
    return b"\0" * pad + raw


def b58encode(b: bytes) -> str:
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    pad = len(b) - len(b.lstrip(b"\0"))
    return "1" * pad + out


def maddr_bytes(text: str) -> bytes:
    """/ip4/A/tcp/P and /unix/PATH to binary (the only forms the bench uses)."""
    if text.startswith("/unix/"):
        path = "/" + text[len("/unix/") :].lstrip("/")
        return varint(400) + varint(len(path)) + path.encode()
    parts = text.strip("/").split("/")
    out = b""
    i = 0
    while i < len(parts):
        proto, val = parts[i], parts[i + 1]
        if proto == "ip4":
            out += varint(4) + ipaddress.IPv4Address(val).packed
        elif proto == "tcp":
            out += varint(6) + int(val).to_bytes(2, "big")
        elif proto == "p2p":
            pid = b58decode(val)
            out += varint(421) + varint(len(pid)) + pid
        else:
            raise ValueError(f"bench cannot encode /{proto} in {text}")
        i += 2
    return out


def maddr_text(buf: bytes) -> str:
    out, pos = "", 0
    while pos < len(buf):
        code, pos = read_varint(buf, pos)
        if code == 4:
            out += "/ip4/" + str(ipaddress.IPv4Address(buf[pos : pos + 4]))
            pos += 4
        elif code == 6:
            out += f"/tcp/{int.from_bytes(buf[pos:pos+2], 'big')}"
            pos += 2
        elif code == 273:
            out += f"/udp/{int.from_bytes(buf[pos:pos+2], 'big')}"
            pos += 2
        elif code == 41:
            out += "/ip6/" + str(ipaddress.IPv6Address(buf[pos : pos + 16]))
            pos += 16
        elif code in (460, 0x01CC):  # quic
            out += "/quic"
        elif code == 0x01CD:
            out += "/quic-v1"
        else:
            return out + f"/<{code}>"
    return out
