"""The network heals by itself under ``hive_p2p.Daemon`` (no host): two
daemons on ``/ip4/127.0.0.1/tcp/0``, B bootstrapped from A, mDNS off. After
each fault messages flow again both ways and the test dials nobody: the
restarted daemon binds its old port again (from ``<data-dir>/node-state.json``)
and dials the peers it knew; when the old port is taken it listens on a new
one and dials them itself. Each case prints how long healing took."""

import asyncio
import os
import signal
import socket
import time
from typing import List, Optional

import pytest

from hive_p2p import Daemon, Subscription
from conftest import LOOPBACK

TOPIC = "heal"


async def receive(sub: Subscription, data: bytes) -> None:
    while (await sub.get()).data != data:
        pass


async def flows_both_ways(
    a: Daemon, sa: Subscription, b: Daemon, sb: Subscription, case: str, since: float
) -> None:
    async def one_way(src: Daemon, dst_sub: Subscription, data: bytes) -> None:
        got = asyncio.ensure_future(receive(dst_sub, data))
        try:
            # Published at once: the daemon may still be finding its peers, and
            # publish waits for a topic peer (wait_for_peers).
            await src.publish(TOPIC, data, wait_for_peers=60)
            await got
        finally:
            got.cancel()

    await asyncio.wait_for(
        asyncio.gather(
            one_way(a, sb, f"{case}: a to b".encode()),
            one_way(b, sa, f"{case}: b to a".encode()),
        ),
        90,
    )
    print(f"healing: {case}: messages flow both ways {time.monotonic() - since:.1f} s after the fault")


async def replaced(d: Daemon, old_pid: Optional[int]) -> None:
    async def check() -> None:
        while d.pid == old_pid or d.pid is None:
            await asyncio.sleep(0.05)
        await d.wait_running()

    await asyncio.wait_for(check(), 60)


def tcp_port(addr: str) -> int:
    return int(addr.split("/tcp/")[1].split("/")[0])


async def test_heals_after_kill_9_restart_and_a_taken_port(binary: str, tmp_path) -> None:
    a_dir = str(tmp_path / "a")
    a = Daemon(binary=binary, listen=LOOPBACK, mdns=False, data_dir=a_dir)
    await a.start()
    b = Daemon(binary=binary, listen=LOOPBACK, mdns=False, bootstrap=[a.listen_addrs[0]])
    await b.start()
    try:
        sa, sb = await a.subscribe(TOPIC), await b.subscribe(TOPIC)
        await flows_both_ways(a, sa, b, sb, "start", time.monotonic())

        for victims, case in [
            ((a,), "kill -9 of A's daemon (B's bootstrap)"),
            ((b,), "kill -9 of B's daemon"),
            ((a, b), "kill -9 of both daemons at once"),
        ]:
            pids = [d.pid for d in victims]
            for pid in pids:
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
            since = time.monotonic()
            for d, pid in zip(victims, pids):
                await replaced(d, pid)
            await flows_both_ways(a, sa, b, sb, case, since)

        # A stopped and started again on its data dir: same port, same peers.
        old_port = tcp_port(a.listen_addrs[0])
        await a.aclose()
        since = time.monotonic()
        a = Daemon(binary=binary, listen=LOOPBACK, mdns=False, data_dir=a_dir)
        await a.start()
        assert tcp_port(a.listen_addrs[0]) == old_port
        sa = await a.subscribe(TOPIC)
        await flows_both_ways(a, sa, b, sb, "A stopped and started again", since)

        # The old port taken by another process while A is down.
        await a.aclose()
        since = time.monotonic()
        with socket.socket() as squatter:
            # SO_REUSEADDR, as servers set it: the old connections' TIME_WAIT
            # does not stop the bind, the listening squatter stops A's.
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", old_port))
            squatter.listen()
            a = Daemon(binary=binary, listen=LOOPBACK, mdns=False, data_dir=a_dir)
            await a.start()
            assert tcp_port(a.listen_addrs[0]) != old_port
            sa = await a.subscribe(TOPIC)
            await flows_both_ways(a, sa, b, sb, "A restarted, its old port taken", since)
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_hung_daemon_is_replaced_and_every_state_is_observable(binary: str, tmp_path) -> None:
    a = Daemon(binary=binary, listen=LOOPBACK, mdns=False, data_dir=str(tmp_path / "a"))
    await a.start()
    b = Daemon(binary=binary, listen=LOOPBACK, mdns=False, bootstrap=[a.listen_addrs[0]])
    await b.start()
    seen: List[str] = []

    async def watch() -> None:
        async for state in a.states():
            seen.append(state)

    watcher = asyncio.ensure_future(watch())
    try:
        sa, sb = await a.subscribe(TOPIC), await b.subscribe(TOPIC)
        await flows_both_ways(a, sa, b, sb, "start", time.monotonic())
        # A hung daemon: its process is there, its IPC accepts, it answers
        # nothing. The package finds out by itself and replaces it.
        old = a.pid
        assert old is not None
        os.kill(old, signal.SIGSTOP)
        since = time.monotonic()
        await replaced(a, old)
        await flows_both_ways(a, sa, b, sb, "SIGSTOP of A's daemon (B's bootstrap)", since)
        with pytest.raises(ProcessLookupError):
            os.kill(old, 0)  # the hung one is gone, not left behind
    finally:
        await a.aclose()
        await b.aclose()
    await asyncio.wait_for(watcher, 10)
    assert seen == ["running", "restarting", "running", "stopped"]
