"""go-daemon flags that change what hive-p2pd does, checked from outside:
-metricsAddr serves Prometheus metrics, -pubsubSign=false publishes
unsigned messages that non-strict daemons take and strict ones refuse
(the control protocol's PSMessage carries no signature, so the refusal
is what shows that the message went out unsigned)."""

import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from multiaddr import Multiaddr
from p2pclient.libp2p_stubs.peer.id import ID
from p2pclient.pb import p2pd_pb2 as pb
from p2pclient.utils import read_pbmsg_safe

from procs import DAEMON, Proc
from test_p2pclient import eventually


@pytest.fixture
def tmp():
    path = Path(tempfile.mkdtemp(prefix="hive-flags-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_addr_serves_the_nodes_metrics(tmp):
    port = free_port()
    d = Proc(str(DAEMON), tmp, "m", extra=(f"-metricsAddr=127.0.0.1:{port}",))
    try:
        for path in ("/metrics", "/debug/metrics/prometheus"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("application/openmetrics-text")
                text = r.read().decode()
            assert "libp2p_swarm" in text, text[:300]
            assert text.rstrip().endswith("# EOF")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
        assert e.value.code == 404
    finally:
        d.stop()


def test_unsigned_pubsub_reaches_lenient_daemons_only(tmp):
    unsigned = ("-pubsubSign=false", "-pubsubSignStrict=false")
    a = Proc(str(DAEMON), tmp, "a", extra=unsigned)
    lenient = Proc(str(DAEMON), tmp, "lenient", extra=("-pubsubSignStrict=false",))
    strict = Proc(str(DAEMON), tmp, "strict")
    topic = "unsigned-topic"
    try:

        async def main():
            ca = a.client("a.sock")
            subs = {}
            for name, d in (("lenient", lenient), ("strict", strict)):
                c = d.client(f"{name}.sock")
                await c.connect(ID.from_base58(a.peer_id), [Multiaddr(a.addr)])
                subs[name] = await c.pubsub_subscribe(topic)
            await ca.pubsub_subscribe(topic)

            async def both_in_topic():
                peers = [p.to_base58() for p in await ca.pubsub_list_peers(topic)]
                return lenient.peer_id in peers and strict.peer_id in peers

            await eventually(both_in_topic, "both daemons in a's topic")
            await ca.pubsub_publish(topic, b"unsigned one")

            msg = pb.PSMessage()
            with anyio.fail_after(20):
                await read_pbmsg_safe(subs["lenient"], msg)
            assert msg.data == b"unsigned one"
            assert ID(getattr(msg, "from")).to_base58() == a.peer_id

            # The strict daemon drops it: a signed message published after
            # it (by the lenient daemon, relayed by a) is the first to arrive.
            cl = lenient.client("lenient2.sock")
            await cl.pubsub_publish(topic, b"signed one")
            got = pb.PSMessage()
            with anyio.fail_after(20):
                await read_pbmsg_safe(subs["strict"], got)
            assert got.data == b"signed one", got.data

        anyio.run(main)
    finally:
        for d in (a, lenient, strict):
            d.stop()
