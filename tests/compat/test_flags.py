"""go-daemon flags that change what hive-p2pd does, checked from outside:
-connManager with -connLo/-connHi/-connGrace trims connections (on TRIM and
past the high watermark) and spares tagged peers, -metricsAddr serves
Prometheus metrics, -pubsubSign=false publishes
unsigned messages that non-strict daemons take and strict ones refuse
(the refusal is what shows that the message went out unsigned), and
-idleTimeout ends the process only while no persistent connection is
open."""

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
from p2pclient.utils import read_pbmsg_safe, write_pbmsg

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


def _peers_connecting_to(tmp, hub, names):
    """Start a daemon per name and connect each to `hub`."""
    procs = [Proc(str(DAEMON), tmp, n) for n in names]

    async def connect_all():
        for p in procs:
            await p.client(f"{p.dir.name}.sock").connect(
                ID.from_base58(hub.peer_id), [Multiaddr(hub.addr)]
            )

    anyio.run(connect_all)
    return procs


def test_conn_manager_trim_spares_the_tagged_peer(tmp):
    hub = Proc(
        str(DAEMON),
        tmp,
        "hub",
        extra=("-connManager", "-connLo=1", "-connHi=100", "-connGrace=0s"),
    )
    peers = _peers_connecting_to(tmp, hub, ["p1", "p2", "p3"])
    try:

        async def main():
            ch = hub.client("hub.sock")

            async def all_three():
                return len(await ch.list_peers()) == 3

            await eventually(all_three, "three peers connected to the hub")
            keep = peers[1]
            await ch.connmgr_tag_peer(ID.from_base58(keep.peer_id), "keep", 100)
            stream = await anyio.connect_unix(str(hub.sock))
            await write_pbmsg(
                stream,
                pb.Request(
                    type=pb.Request.CONNMANAGER,
                    connManager=pb.ConnManagerRequest(type=pb.ConnManagerRequest.TRIM),
                ),
            )
            response = pb.Response()
            await read_pbmsg_safe(stream, response)
            await stream.aclose()
            assert response.type == pb.Response.OK, response

            async def only_the_tagged_one():
                left = [p.peer_id.to_base58() for p in await ch.list_peers()]
                return left == [keep.peer_id]

            await eventually(only_the_tagged_one, "TRIM down to -connLo=1, the tagged peer kept")

        anyio.run(main)
    finally:
        for d in (hub, *peers):
            d.stop()


def test_conn_manager_trims_past_the_high_watermark_by_itself(tmp):
    hub = Proc(
        str(DAEMON),
        tmp,
        "hub",
        extra=("-connManager", "-connLo=1", "-connHi=2", "-connGrace=0s"),
    )
    peers = _peers_connecting_to(tmp, hub, ["q1", "q2", "q3"])
    try:

        async def main():
            ch = hub.client("hub.sock")
            kept = []

            async def exactly_low():
                left = [p.peer_id.to_base58() for p in await ch.list_peers()]
                kept[:] = left
                return len(left) == 1

            await eventually(exactly_low, "trimmed down to -connLo without a TRIM", timeout=45)
            # Trimmed to the low watermark, not past it: the peer left stays
            # through several more trim rounds. The trimmed ones dial the hub
            # again (a daemon re-dials the peers it remembers while it has
            # fewer than its target), as peers of a real hub do; each time
            # the hub is past -connHi it closes the newest, never the one kept.
            for _ in range(10):
                await anyio.sleep(0.3)
                left = [p.peer_id.to_base58() for p in await ch.list_peers()]
                assert kept[0] in left, f"the peer kept at -connLo was trimmed: {left}"

        anyio.run(main)
    finally:
        for d in (hub, *peers):
            d.stop()


def test_idle_timeout_ends_the_process_but_not_while_a_persistent_connection_is_open(tmp):
    """go's -idleTimeout: the daemon exits once no client has held a
    persistent connection (hivemind's PERSISTENT_CONN_UPGRADE) for that
    long; while one is open it stays."""
    idle = Proc(str(DAEMON), tmp, "idle", extra=("-idleTimeout=2s",), pubsub=False)
    assert idle.proc.wait(timeout=30) == 0

    held = Proc(str(DAEMON), tmp, "held", extra=("-idleTimeout=2s",), pubsub=False)
    try:

        async def main():
            stream = await anyio.connect_unix(str(held.sock))
            # Request{type: PERSISTENT_CONN_UPGRADE (9)}, no other field.
            await stream.send(b"\x02\x08\x09")
            response = pb.Response()
            await read_pbmsg_safe(stream, response)
            assert response.type == pb.Response.OK, response
            # Three idle periods with the connection open: still running.
            await anyio.sleep(6)
            assert held.proc.poll() is None, "exited with a persistent connection open"
            await stream.aclose()

        anyio.run(main)
        assert held.proc.wait(timeout=30) == 0
    finally:
        held.stop()
