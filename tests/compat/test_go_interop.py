"""Wire interop with go-libp2p: hivemind's go daemon (`p2pd` from the
hivemind wheel on PyPI) and hive-p2pd as peers, each driven by p2pclient
through its control socket. Streams and gossipsub cross implementations.

The go binary is fetched by tests/compat/run (HIVE_GO_P2PD names it).
"""

import shutil
import tempfile
from pathlib import Path

import anyio
import pytest
from multiaddr import Multiaddr
from p2pclient.libp2p_stubs.peer.id import ID
from p2pclient.pb import p2pd_pb2 as pb
from p2pclient.utils import raise_if_failed, read_pbmsg_safe, write_pbmsg

from procs import DAEMON, GO_P2PD, Proc
from test_p2pclient import eventually


@pytest.fixture
def pair():
    assert GO_P2PD and Path(GO_P2PD).exists(), (
        "HIVE_GO_P2PD must name the go daemon binary (tests/compat/run fetches it)"
    )
    tmp = Path(tempfile.mkdtemp(prefix="hive-interop-"))
    go = Proc(GO_P2PD, tmp, "go")
    hive = Proc(str(DAEMON), tmp, "hive")
    yield go, hive
    go.stop()
    hive.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def test_go_opens_a_stream_to_a_hive_handler(pair):
    go, hive = pair
    proto = "/interop/echo/1.0.0"

    async def main():
        cg, ch = go.client("hg.sock"), hive.client("hh.sock")
        async with ch.listen():

            async def echo(info, stream):
                data = await stream.receive(1024)
                await stream.send(data[::-1])
                await stream.aclose()

            await ch.stream_handler(proto, echo)
            await cg.connect(ID.from_base58(hive.peer_id), [Multiaddr(hive.addr)])
            info, stream = await cg.stream_open(ID.from_base58(hive.peer_id), [proto])
            await stream.send(b"go->hive")
            assert await stream.receive(1024) == b"evih>-og"
            await stream.aclose()

    anyio.run(main)


async def go_stream_handler(client, proto, handler_cb):
    """STREAM_HANDLER as hivemind's go daemon wants it: with its `balanced`
    field (3), which p2pclient's protobuf lacks (kept as an unknown field)."""
    plain = pb.StreamHandlerRequest(addr=client.control.listen_maddr.to_bytes(), proto=[proto])
    with_balanced = pb.StreamHandlerRequest()
    with_balanced.ParseFromString(plain.SerializeToString() + b"\x18\x00")
    stream = await client.control.daemon_connector.open_connection()
    await write_pbmsg(stream, pb.Request(type=pb.Request.STREAM_HANDLER, streamHandler=with_balanced))
    resp = pb.Response()
    await read_pbmsg_safe(stream, resp)
    await stream.aclose()
    raise_if_failed(resp)
    client.control.handlers[proto] = handler_cb


def test_hive_opens_a_stream_to_a_go_handler(pair):
    """The other direction (audit row 27): hive dials go and opens the
    stream; go's daemon is the handler."""
    go, hive = pair
    proto = "/interop/echo/1.0.0"

    async def main():
        cg, ch = go.client("hg.sock"), hive.client("hh.sock")
        async with cg.listen():

            async def echo(info, stream):
                data = await stream.receive(1024)
                await stream.send(data[::-1])
                await stream.aclose()

            await go_stream_handler(cg, proto, echo)
            await ch.connect(ID.from_base58(go.peer_id), [Multiaddr(go.addr)])
            info, stream = await ch.stream_open(ID.from_base58(go.peer_id), [proto])
            await stream.send(b"hive->go")
            assert await stream.receive(1024) == b"og>-evih"
            await stream.aclose()

    anyio.run(main)


def gossip_both_ways(pair, topic, go_dials):
    """Gossipsub go -> hive and hive -> go on one topic, over a connection
    the one side dialed."""
    go, hive = pair

    async def main():
        cg, ch = go.client("hg.sock"), hive.client("hh.sock")
        if go_dials:
            await cg.connect(ID.from_base58(hive.peer_id), [Multiaddr(hive.addr)])
        else:
            await ch.connect(ID.from_base58(go.peer_id), [Multiaddr(go.addr)])
        sg = await cg.pubsub_subscribe(topic)
        sh = await ch.pubsub_subscribe(topic)

        async def meshed():
            a = await cg.pubsub_list_peers(topic)
            b = await ch.pubsub_list_peers(topic)
            return hive.peer_id in [p.to_base58() for p in a] and go.peer_id in [
                p.to_base58() for p in b
            ]

        await eventually(meshed, "go and hive in each other's topic")

        async def expect(stream, data):
            with anyio.fail_after(30):
                while True:
                    msg = pb.PSMessage()
                    await read_pbmsg_safe(stream, msg)
                    if msg.data == data:
                        return

        await cg.pubsub_publish(topic, b"from go")
        await expect(sh, b"from go")
        await ch.pubsub_publish(topic, b"from hive")
        await expect(sg, b"from hive")
        await sg.aclose()
        await sh.aclose()

    anyio.run(main)


def test_gossipsub_over_a_connection_go_dialed(pair):
    """Gossipsub when go is the dialer (audit row 27: before, only over a
    connection hive dialed)."""
    gossip_both_ways(pair, "interop-go-dialed", go_dials=True)


def test_gossipsub_both_ways_between_go_and_hive(pair):
    gossip_both_ways(pair, "interop-topic", go_dials=False)


def test_pubsub_messages_carry_seqno_signature_and_key_as_go_hands_them(pair):
    """A go daemon publishes; a go and a hive daemon subscribe. Each hands
    its client the message's from, seqno, signature and key: the same
    bytes (clients deduplicate on seqno, some check signatures)."""
    publisher, hive = pair
    go = Proc(GO_P2PD, hive.dir.parent, "go-subscriber")
    topic = "interop-meta"

    async def main():
        cp, cg, ch = publisher.client("mp.sock"), go.client("mg.sock"), hive.client("mh.sock")
        pid = ID.from_base58(publisher.peer_id)
        await cg.connect(pid, [Multiaddr(publisher.addr)])
        await ch.connect(pid, [Multiaddr(publisher.addr)])
        sg = await cg.pubsub_subscribe(topic)
        sh = await ch.pubsub_subscribe(topic)
        await cp.pubsub_subscribe(topic)

        async def meshed():
            peers = [p.to_base58() for p in await cp.pubsub_list_peers(topic)]
            return go.peer_id in peers and hive.peer_id in peers

        await eventually(meshed, "both subscribers in the publisher's topic")

        async def receive(stream):
            with anyio.fail_after(30):
                while True:
                    msg = pb.PSMessage()
                    await read_pbmsg_safe(stream, msg)
                    if msg.data == b"signed by go":
                        return msg

        await cp.pubsub_publish(topic, b"signed by go")
        from_go, from_hive = await receive(sg), await receive(sh)
        assert from_go.seqno and from_go.signature, from_go
        for field in ("from", "seqno", "signature", "key", "topicIDs"):
            assert getattr(from_hive, field) == getattr(from_go, field), field
        await sg.aclose()
        await sh.aclose()

    try:
        anyio.run(main)
    finally:
        go.stop()
