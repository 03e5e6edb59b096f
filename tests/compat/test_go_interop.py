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
from p2pclient.utils import read_pbmsg_safe

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


def test_gossipsub_both_ways_between_go_and_hive(pair):
    go, hive = pair
    topic = "interop-topic"

    async def main():
        cg, ch = go.client("hg.sock"), hive.client("hh.sock")
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
