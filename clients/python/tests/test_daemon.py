"""Two real hive-p2pd daemons driven from one asyncio loop."""

import asyncio
import os
import signal

import pytest

from hive_p2p import CallTimeout, Daemon, DaemonError, DaemonGone, DaemonStartError
from conftest import LOOPBACK, sigstop


async def wait_topic(d: Daemon, topic: str, peer: str, timeout: float = 30.0) -> None:
    async def check() -> None:
        while peer not in await d.topic_peers(topic):
            await asyncio.sleep(0.1)

    await asyncio.wait_for(check(), timeout)


async def pair(binary: str):
    a = Daemon(binary=binary, listen=LOOPBACK, mdns=False)
    await a.start()
    b = Daemon(binary=binary, listen=LOOPBACK, mdns=False, bootstrap=[a.listen_addrs[0]])
    await b.start()

    # b dials a in the background once it is ready; a learns b's addresses
    # only from that connection, so wait for it before calling across.
    async def connected() -> None:
        while not any(p.peer_id == b.peer_id for p in await a.peers()):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(connected(), 30)
    return a, b


async def test_thousand_messages_none_lost_none_duplicated(binary: str) -> None:
    a, b = await pair(binary)
    try:
        sub = await b.subscribe("py")
        await a.subscribe("py")
        await wait_topic(a, "py", b.peer_id)
        sent = [await a.publish("py", f"m{i}".encode()) for i in range(1000)]
        assert len(set(sent)) == 1000
        got = [await sub.get(timeout=60) for _ in range(1000)]
        assert sorted(m.data for m in got) == sorted(f"m{i}".encode() for i in range(1000))
        assert len({m.id for m in got}) == 1000
        assert all(m.sender == a.peer_id and m.topic == "py" for m in got)
        with pytest.raises(asyncio.TimeoutError):
            await sub.get(timeout=1.0)  # nothing more: no duplicates
    finally:
        await a.aclose()
        await b.aclose()


async def test_direct_messages_exact_bytes_empty_and_one_mib(binary: str) -> None:
    a, b = await pair(binary)
    try:
        inbox = b.direct_messages()
        payloads = [bytes(range(256)), b"", os.urandom(1024 * 1024)]
        for p in payloads:
            mid = await a.send(b.peer_id, p)
            got = await inbox.get(timeout=60)
            assert got.data == p and got.id == mid and got.sender == a.peer_id
    finally:
        await a.aclose()
        await b.aclose()


async def test_two_hundred_concurrent_calls(binary: str) -> None:
    a, b = await pair(binary)
    try:
        results = await asyncio.gather(*(a.status() for _ in range(100)), *(a.peers() for _ in range(100)))
        assert len(results) == 200
        assert all(r["peer_id"] == a.peer_id for r in results[:100])
        assert await a.ping(b.peer_id) >= 0
        await a.put_record(b"k", b"v")
        assert await b.get_record(b"k") == b"v"
        assert a.peer_id in [p.peer_id for p in await b.closest_peers(b"k")]
    finally:
        await a.aclose()
        await b.aclose()


async def test_kill_9_restarts_with_same_identity_and_subscriptions(binary: str) -> None:
    a, b = await pair(binary)
    try:
        sub = await a.subscribe("restart")
        await b.subscribe("restart")
        await wait_topic(b, "restart", a.peer_id)
        peer_id, old_pid = a.peer_id, a.pid
        assert old_pid is not None and b.pid is not None
        # A call in flight at the kill fails at once with DaemonGone: a send
        # to a stopped peer, which cannot finish before the kill.
        await sigstop(b.pid)
        try:
            in_flight = asyncio.ensure_future(a.send(b.peer_id, b"never acknowledged"))
            await asyncio.sleep(0.5)
            assert not in_flight.done()
            os.kill(old_pid, signal.SIGKILL)
            killed = asyncio.get_running_loop().time()
            # Far below the call's own timeout (30 s): it fails when the
            # daemon goes, not when the call times out.
            with pytest.raises(DaemonGone):
                await asyncio.wait_for(in_flight, 10)
            print(f"in-flight call failed {asyncio.get_running_loop().time() - killed:.2f} s after the kill")
        finally:
            os.kill(b.pid, signal.SIGCONT)

        async def restarted() -> None:
            while a.pid == old_pid or a.restarts == 0:
                await asyncio.sleep(0.05)
            await a.wait_running()

        await asyncio.wait_for(restarted(), 60)
        assert a.peer_id == peer_id
        # No dial here: the restarted daemon binds its old port and dials
        # the peers it knew, and B keeps dialing its bootstrap peer.
        await b.publish("restart", b"after the kill", wait_for_peers=60)
        msg = await sub.get(timeout=60)
        assert msg.data == b"after the kill"
    finally:
        await a.aclose()
        await b.aclose()


async def test_bad_input_raises_clear_errors_and_the_loop_stays_healthy(binary: str, tmp_path) -> None:
    with pytest.raises(DaemonStartError, match="does not exist"):
        await Daemon(binary=str(tmp_path / "nope")).start()

    never_ready = tmp_path / "never-ready"
    never_ready.write_text("#!/bin/sh\nsleep 30\n")
    never_ready.chmod(0o755)
    with pytest.raises(DaemonStartError, match="did not become ready"):
        await Daemon(binary=str(never_ready), ready_timeout=1.0).start()

    async with Daemon(binary=binary, listen=LOOPBACK, mdns=False) as d:
        with pytest.raises(DaemonError) as e:
            await d.publish("", b"x")
        assert e.value.code == "bad_args"
        # Too large, on a daemon with no peers: the size is what is refused
        # (bad_args, as for a direct message), not the empty topic.
        with pytest.raises(DaemonError) as e:
            await d.publish("t", b"x" * (1024 * 1024 + 1), wait_for_peers=0)
        assert e.value.code == "bad_args"
        assert "exceeds the limit" in e.value.message
        with pytest.raises(DaemonError) as e:
            await d.send("not-a-peer", b"x")
        assert e.value.code == "bad_args"
        # Still healthy after all that.
        assert (await d.status())["peer_id"] == d.peer_id
    # The loop is fine too.
    await asyncio.sleep(0)


async def test_reproduce_starts_children_that_join_and_die_with_the_daemon(binary: str, tmp_path) -> None:
    """A daemon under Python (no host) reproduces by itself: its children
    join its network, and none outlives it."""
    async with Daemon(binary=binary, listen=LOOPBACK, mdns=False, data_dir=str(tmp_path / "d")) as d:
        children = await d.reproduce(2)
        assert len(children) == 2
        assert all(c.data_dir.startswith(str(tmp_path)) for c in children)
        assert len({c.peer_id for c in children} | {d.peer_id}) == 3

        async def joined() -> None:
            while len(await d.peers()) < 2:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(joined(), 30)
        assert "libp2p_swarm_connections" in await d.metrics()
        pids = [c.pid for c in children if c.pid]
        assert len(pids) == 2

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")

    for _ in range(100):
        if not any(alive(pid) for pid in pids):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"children {pids} outlived their daemon")


async def test_a_subscription_nobody_reads_keeps_the_newest_and_counts_the_rest(binary: str) -> None:
    a, b = await pair(binary)
    try:
        sub = await b.subscribe("unread")
        await a.subscribe("unread")
        await wait_topic(a, "unread", b.peer_id)
        total, extra = 10_000 + 50, 50
        for start in range(0, total, 500):
            await asyncio.gather(
                *(a.publish("unread", b"%05d" % i) for i in range(start, min(total, start + 500)))
            )

        async def all_arrived() -> None:
            while sub.dropped < extra:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(all_arrived(), 120)
        assert sub.dropped == extra
        kept = [int((await sub.get(timeout=5)).data) for _ in range(10_000)]
        # Gossip from one publisher over one link keeps its order; the oldest
        # went, the newest stayed.
        assert sorted(kept) == list(range(extra, total))
        with pytest.raises(asyncio.TimeoutError):
            await sub.get(timeout=1.0)
    finally:
        await a.aclose()
        await b.aclose()
