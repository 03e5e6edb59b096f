"""Circuit relay v2 with the go daemon's flags: a hive-p2pd that nobody can
dial (-noListenAddrs) keeps a slot on a relay by itself (-autoRelay with
-trustedRelays), announces the relayed address, and a third daemon reaches
it through the relay and talks to its stream handler. The relay is
hive-p2pd or go's p2pd (from the hivemind wheel), started as the interop
suite starts relays: -relay and no other relay flag (go's p2pd serves HOP
with it alone, whatever its reachability).

Then DCUtR: two listening daemons that first meet through a relay make a
direct connection from the relayed one, and the relayed one is then closed
(on loopback the "hole punch" is an ordinary dial, but the protocol runs end
to end; tests/tests/relay.rs punches through two real NATs).
"""

import shutil
import tempfile
from pathlib import Path

import anyio
import pytest
from multiaddr import Multiaddr
from p2pclient.libp2p_stubs.peer.id import ID

from procs import DAEMON, GO_P2PD, Proc
from test_p2pclient import eventually


@pytest.fixture
def tmp():
    path = Path(tempfile.mkdtemp(prefix="hive-relay-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("relay_impl", ["hive", "go"])
def test_auto_relay_slot_is_announced_and_dialed_through(tmp, relay_impl):
    if relay_impl == "go":
        assert GO_P2PD and Path(GO_P2PD).exists(), "HIVE_GO_P2PD must name the go daemon"
    relay_bin = GO_P2PD if relay_impl == "go" else str(DAEMON)
    procs = []
    try:
        relay = Proc(relay_bin, tmp, "relay", extra=("-relay",))
        procs.append(relay)
        relay_addr = f"{relay.addr}/p2p/{relay.peer_id}"
        hidden = Proc(
            str(DAEMON),
            tmp,
            "hidden",
            extra=("-autoRelay", f"-trustedRelays={relay_addr}"),
            listen=False,
        )
        procs.append(hidden)
        caller = Proc(str(DAEMON), tmp, "caller")
        procs.append(caller)

        async def main():
            ch, cc = hidden.client("h.sock"), caller.client("c.sock")

            async def relayed_addr():
                _, addrs = await ch.identify()
                circuits = [a for a in addrs if "/p2p-circuit" in str(a)]
                return circuits[0] if circuits else None

            addr = await eventually(relayed_addr, "the hidden daemon announces a relayed address")
            assert str(addr).startswith(relay_addr + "/p2p-circuit"), addr

            async with ch.listen():

                async def echo(info, stream):
                    data = await stream.receive(1024)
                    await stream.send(data)
                    await stream.aclose()

                await ch.stream_handler("/echo/1.0.0", echo)
                await cc.connect(ID.from_base58(hidden.peer_id), [addr])
                _, stream = await cc.stream_open(ID.from_base58(hidden.peer_id), ["/echo/1.0.0"])
                await stream.send(b"through the relay")
                got = await stream.receive(1024)
                assert got == b"through the relay"
                await stream.aclose()

        anyio.run(main)
    finally:
        for p in procs:
            p.stop()


def test_dcutr_turns_a_relayed_connection_into_a_direct_one(tmp):
    procs = []
    try:
        relay = Proc(str(DAEMON), tmp, "relay", extra=("-relay",))
        procs.append(relay)
        relay_addr = f"{relay.addr}/p2p/{relay.peer_id}"
        # Listening, but with a slot on the relay, so the caller meets it
        # there first.
        target = Proc(
            str(DAEMON), tmp, "target", extra=("-autoRelay", f"-trustedRelays={relay_addr}"), log=True
        )
        procs.append(target)
        caller = Proc(str(DAEMON), tmp, "caller", log=True)
        procs.append(caller)

        async def main():
            ct, cc = target.client("t.sock"), caller.client("c.sock")

            async def relayed_addr():
                _, addrs = await ct.identify()
                return next((a for a in addrs if "/p2p-circuit" in str(a)), None)

            addr = await eventually(relayed_addr, "the target's relayed address")
            await cc.connect(ID.from_base58(target.peer_id), [addr])

            async def upgraded():
                return any(
                    "direct connection made from a relayed one" in p.log_text()
                    for p in (target, caller)
                )

            await eventually(upgraded, "a DCUtR upgrade in either daemon's log")

            # The connections themselves (LIST_PEERS lists one entry per
            # connection, as go's daemon does): a direct one to the target
            # now exists beside the relayed one it came from.
            async def conns_to_target():
                return [
                    str(a)
                    for p in await cc.list_peers()
                    if p.peer_id.to_base58() == target.peer_id
                    for a in p.addrs
                ]

            async def direct_only():
                conns = await conns_to_target()
                return conns if conns and all("/p2p-circuit" not in c for c in conns) else None

            # The direct connection replaces the relayed one: the circuit is
            # closed once the direct connection has stood for a grace
            # period, so streams and gossip no longer go through the relay.
            conns = await eventually(
                direct_only, "only direct connections from the caller to the target", timeout=60
            )
            print(f"caller's connections to the target after DCUtR: {conns}")
            async with ct.listen():

                async def echo(info, stream):
                    await stream.send(await stream.receive(1024))
                    await stream.aclose()

                await ct.stream_handler("/echo/1.0.0", echo)
                _, stream = await cc.stream_open(ID.from_base58(target.peer_id), ["/echo/1.0.0"])
                await stream.send(b"direct")
                assert await stream.receive(1024) == b"direct"
                await stream.aclose()
            assert all("/p2p-circuit" not in c for c in await conns_to_target())

        anyio.run(main)
    finally:
        for p in procs:
            p.stop()


def test_circuit_to_a_peer_without_a_slot_names_the_relays_refusal(tmp):
    """The relay's status code reaches the caller (the interop suite matches
    NO_RESERVATION in the error)."""
    procs = []
    try:
        relay = Proc(str(DAEMON), tmp, "relay", extra=("-relay",))
        procs.append(relay)
        target = Proc(str(DAEMON), tmp, "target", listen=False)
        procs.append(target)
        caller = Proc(str(DAEMON), tmp, "caller")
        procs.append(caller)

        async def main():
            ct, cc = target.client("t.sock"), caller.client("c.sock")
            await ct.connect(ID.from_base58(relay.peer_id), [Multiaddr(relay.addr)])
            addr = Multiaddr(f"{relay.addr}/p2p/{relay.peer_id}/p2p-circuit")
            with pytest.raises(Exception, match="NO_RESERVATION"):
                await cc.connect(ID.from_base58(target.peer_id), [addr])

        anyio.run(main)
    finally:
        for p in procs:
            p.stop()
