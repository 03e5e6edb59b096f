"""A py-libp2p node (PyPI `libp2p`) as a wire peer of a real Hive host.

Run by tests/wire/run with the host's API in $HIVE_HTTP. Dials the host's
daemon over TCP + Noise + Yamux and checks, one line per case
(`PASS|FAIL|SKIP py.<case> <detail>`):

  connect, identify, ping, gossip-host-to-peer, gossip-peer-to-host, direct

Exits 1 when any case failed. Nothing here asserts a timing: every wait is a
deadline for something that must happen, never a measurement.
"""

import base64
import json
import os
import secrets
import sys
import urllib.request

import multiaddr
import trio
from trio_websocket import open_websocket_url

from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.host.ping import ID as PING_ID, perform_ping_roundtrip
from libp2p.identity.identify.identify import ID as IDENTIFY_ID, parse_identify_response
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID, Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID, Yamux
from libp2p.tools.anyio_service import background_trio_service

import wire_common as wc

GOSSIPSUB = "/meshsub/1.1.0"
DIRECT = "/hive/direct/1.0.0"

API = os.environ["HIVE_HTTP"].rstrip("/")
results = wc.Results("py")


# --- the host's HTTP API (blocking urllib, run in a thread) -----------------


def _http(method, path, body=None):
    req = urllib.request.Request(API + path, data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


async def http(method, path, body=None):
    return await trio.to_thread.run_sync(_http, method, path, body)


class Events:
    """Every frame of the host's /api/events WebSocket, collected from the start."""

    def __init__(self):
        self.frames = []
        self.changed = trio.Condition()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED):
        url = API.replace("http://", "ws://", 1) + "/api/events"
        async with open_websocket_url(url) as ws:
            task_status.started()
            while True:
                frame = json.loads(await ws.get_message())
                async with self.changed:
                    self.frames.append(frame)
                    self.changed.notify_all()

    async def wait_for(self, pred):
        async with self.changed:
            while True:
                for f in self.frames:
                    if pred(f):
                        return f
                await self.changed.wait()


async def read_to_end(stream):
    chunks = []
    while True:
        try:
            chunk = await stream.read()
        except StreamEOF:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


# --- the cases --------------------------------------------------------------


async def main():
    status = await http("GET", "/api/status")
    host_id_str = status["peer_id"]
    addr = next(a for a in status["listen_addrs"] if "/tcp/" in a)
    if "/p2p/" not in addr:
        addr += "/p2p/" + host_id_str
    hive = info_from_p2p_addr(multiaddr.Multiaddr(addr))

    key = create_new_key_pair()
    # Noise only and Yamux only (no TLS, secio, plaintext or mplex fallback):
    # what passes is exactly the stack Hive speaks.
    host = new_host(
        key_pair=key,
        sec_opt={NOISE_ID: NoiseTransport(key, noise_privkey=create_x25519_key_pair().private_key)},
        muxer_opt={YAMUX_ID: Yamux},
    )
    me = host.get_id().to_base58()
    gs = GossipSub(
        protocols=[GOSSIPSUB],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
    )
    pubsub = Pubsub(host, gs)
    events = Events()
    topic = "wire-py-" + secrets.token_hex(4)

    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with host.run(listen_addrs=listen), trio.open_nursery() as nursery:
        await nursery.start(events.run)
        async with background_trio_service(pubsub), background_trio_service(gs):
            await pubsub.wait_until_ready()

            # (1) connect
            connected = False
            with results.case("connect") as c:
                with trio.fail_after(15):
                    await host.connect(hive)
                conns = host.get_network().get_connections(hive.peer_id)
                if not conns:
                    c.fail("connect() returned but no connection to the host is open")
                else:
                    connected = True
                    muxer = type(conns[0].muxed_conn).__name__
                    c.ok(f"{me} -> {addr} (tcp, {NOISE_ID}, {YAMUX_ID} [{muxer}])")

            if not connected:
                for name in ("identify", "ping", "gossip-host-to-peer", "gossip-peer-to-host", "direct"):
                    results.record("FAIL", name, "no connection to the host")
                return

            # (2) identify, both ways
            with results.case("identify") as c:
                with trio.fail_after(15):
                    stream = await host.new_stream(hive.peer_id, [IDENTIFY_ID])
                    raw = await read_to_end(stream)
                ident = parse_identify_response(raw)
                protocols = list(ident.protocols)
                agent = ident.agent_version
                problems = []
                if not agent.startswith("hive-p2pd/"):
                    problems.append(f"agent version {agent!r} does not start with hive-p2pd/")
                for p in ("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", GOSSIPSUB, DIRECT):
                    if p not in protocols:
                        problems.append(f"{p} not in the protocols {protocols}")
                seen = False
                with trio.move_on_after(15):
                    while not seen:
                        peers = await http("GET", "/api/peers")
                        seen = any(p["peer_id"] == me for p in peers)
                        if not seen:
                            await trio.sleep(0.2)
                if not seen:
                    problems.append("GET /api/peers never listed this peer")
                if problems:
                    c.fail("; ".join(problems))
                else:
                    c.ok(f"agent {agent}, {len(protocols)} protocols, listed by GET /api/peers")

            # (3) ping
            with results.case("ping") as c:
                with trio.fail_after(15):
                    stream = await host.new_stream(hive.peer_id, [PING_ID])
                    rtt = await perform_ping_roundtrip(stream)
                    await stream.close()
                c.ok(f"32-byte round trip on {PING_ID} ({rtt} ms)")

            # Both sides subscribe; wait until each sees the other in the topic.
            await http("POST", f"/api/topics/{topic}/subscribe")
            sub = await pubsub.subscribe(topic)
            meshed = await wait_topic_peers(pubsub, hive.peer_id, topic)

            # (4) gossipsub host -> peer: exact bytes
            with results.case("gossip-host-to-peer") as c:
                if not meshed:
                    c.fail(meshed.why)
                else:
                    sent = b"hive->py \x00\x01\xfe\xff " + secrets.token_hex(8).encode()
                    await http("POST", f"/api/topics/{topic}/publish?envelope=false", sent)
                    with trio.fail_after(30):
                        msg = await sub.get()
                    src = peer_id_text(msg.from_id)
                    c.check_payload(msg.data, sent, src, host_id_str, gs.peer_protocol.get(hive.peer_id, "?"))

            # (5) gossipsub peer -> host: seen on /api/events
            with results.case("gossip-peer-to-host") as c:
                sent = b"py->hive \x00\x01\xfe\xff " + secrets.token_hex(8).encode()
                b64 = base64.b64encode(sent).decode()

                def is_ours(f):
                    return f.get("type") == "message" and f.get("topic") == topic and f.get("data") == b64

                # One publish, as an application would make it once both
                # sides have seen each other's subscription: it must arrive,
                # and arrive once.
                frame = None
                await pubsub.publish(topic, sent)
                with trio.move_on_after(30):
                    frame = await events.wait_for(is_ours)
                copies = sum(1 for f in events.frames if is_ours(f))
                if frame is None:
                    c.fail("the one publish made after the subscriptions were exchanged did not reach /api/events within 30 s")
                elif copies != 1:
                    c.fail(f"the message arrived {copies} times")
                elif frame.get("from") != me:
                    c.fail(f"frame from {frame.get('from')!r}, expected {me}")
                else:
                    proto = gs.peer_protocol.get(hive.peer_id, "?")
                    c.ok(f"{len(sent)} bytes, from = this peer, over {proto}")

            # (6) direct stream on /hive/direct/1.0.0
            with results.case("direct") as c:
                msg_id = "py-" + secrets.token_hex(6)
                data = b"direct from py \x00\xff " + secrets.token_hex(4).encode()
                with trio.fail_after(20):
                    stream = await host.new_stream(hive.peer_id, [DIRECT])
                    await stream.write(wc.cbor_encode({"id": msg_id, "data": data}))
                    await stream.close_write()
                    raw = await read_to_end(stream)
                ack = wc.cbor_decode(raw) if raw else None
                b64 = base64.b64encode(data).decode()
                frame = None
                with trio.move_on_after(15):
                    frame = await events.wait_for(
                        lambda f: f.get("type") == "direct" and f.get("id") == msg_id
                    )
                if ack != {"id": msg_id}:
                    c.fail(f"ack {ack!r} (raw {raw.hex()}), expected {{'id': {msg_id!r}}}")
                elif frame is None:
                    c.fail("acknowledged, but no direct event on /api/events within 15 s")
                elif frame.get("data") != b64 or frame.get("from") != me:
                    c.fail(f"direct event {frame!r} does not carry the bytes sent from {me}")
                else:
                    c.ok(f"ack {ack}, direct event with the {len(data)} bytes, from = this peer")

        nursery.cancel_scope.cancel()


class Verdict:
    def __init__(self, ok, why=""):
        self.ok, self.why = ok, why

    def __bool__(self):
        return self.ok


async def wait_topic_peers(pubsub, hive_id, topic):
    """Until the host lists a peer on the topic and this node knows the host subscribed."""
    host_sees = peer_sees = False
    with trio.move_on_after(20):
        while not (host_sees and peer_sees):
            topics = await http("GET", "/api/topics")
            host_sees = any(t["topic"] == topic and t["peers"] >= 1 for t in topics)
            peer_sees = hive_id in pubsub.peer_topics.get(topic, set())
            if not (host_sees and peer_sees):
                await trio.sleep(0.2)
    if host_sees and peer_sees:
        return Verdict(True)
    return Verdict(
        False,
        f"subscriptions not exchanged within 20 s (host sees a peer on {topic}: {host_sees}, "
        f"this peer sees the host on it: {peer_sees})",
    )


def peer_id_text(from_id):
    return ID(from_id).to_base58()


if __name__ == "__main__":
    try:
        trio.run(main)
    except BaseException as e:  # noqa: BLE001 - the harness must still print its verdicts
        if not isinstance(e, KeyboardInterrupt):
            results.record("FAIL", "harness", f"{type(e).__name__}: {e}")
    sys.stdout.flush()
    # py-libp2p may leave non-daemon threads behind; do not wait for them.
    os._exit(1 if results.failed else 0)
