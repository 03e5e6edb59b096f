"""HostClient against real `hive up` hosts."""

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from hive_p2p import CallError, DaemonError, HostClient, HostError, Message
from conftest import BIN_DIR


def start_host(hive_binary: str, data: Path, bootstrap: str = "") -> tuple:
    args = [
        hive_binary, "up", "--data-dir", str(data), "--http", "127.0.0.1:0",
        "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--daemon-bin", str(BIN_DIR / "hive-p2pd"),
    ]
    if bootstrap:
        args += ["--bootstrap", bootstrap]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    return proc, line["http"]


async def running(c: HostClient) -> dict:
    for _ in range(300):
        try:
            st = await c.status()
            if st["daemon"]["state"] == "running":
                return st
        except Exception:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("host never running")


async def test_host_client_publish_and_events(hive_binary: str, tmp_path: Path) -> None:
    pa, url_a = start_host(hive_binary, tmp_path / "a")
    try:
        async with HostClient(url_a) as a:
            st = await running(a)
            # No peer in the topic yet: the publish is queued durably. A
            # client retrying it with the same Idempotency-Key (say, after a
            # timeout) gets the same id and does not queue it twice.
            first = await a.publish("host-topic", b"via the host API", id="fixed-id-1")
            retry = await a.publish("host-topic", b"via the host API", id="fixed-id-1")
            assert first == retry == "fixed-id-1"
            queued = await a.outbox()
            assert queued["depth"] == 1, queued
            assert [p["id"] for p in queued["pending"]] == ["fixed-id-1"], queued
            pb, url_b = start_host(hive_binary, tmp_path / "b", bootstrap=st["listen_addrs"][0])
            try:
                async with HostClient(url_b) as b:
                    await running(b)
                    await b.subscribe("host-topic")
                    marker = await a.publish("host-topic", b"marker", id="marker-1")

                    async def both_received() -> None:
                        seen: set = set()
                        async for m in b.messages("host-topic", after=0):
                            seen.add(m.id)
                            if {first, marker} <= seen:
                                return

                    # Delivered once the mesh forms (the stream replays from cursor 0).
                    await asyncio.wait_for(both_received(), 60)
                    # A's outbox drains (its daemon acknowledges the publishes,
                    # possibly after B saw them); then B has stored the retried
                    # publish once.
                    async def drained() -> None:
                        while (await a.outbox())["depth"] != 0:
                            await asyncio.sleep(0.1)

                    await asyncio.wait_for(drained(), 60)
                    got = await b.history("host-topic")
                    assert sorted(m.id for m in got) == sorted([first, marker]), got
                    assert [m.data for m in got if m.id == first] == [b"via the host API"]
                    assert all(m.sender == st["peer_id"] for m in got)

                    with pytest.raises(HostError) as e:
                        await a.send("not-a-peer", b"x")
                    assert (e.value.status, e.value.code) == (400, "bad_args")
                    # The same error and message types as Daemon's.
                    assert isinstance(e.value, CallError) and issubclass(DaemonError, CallError)
                    assert all(type(m) is Message for m in got)
                    with pytest.raises(HostError) as e:
                        await a.publish("host-topic", b"x", id="k" * 65)  # keys are 1-64 characters
                    assert (e.value.status, e.value.code) == (400, "bad_args")
            finally:
                pb.terminate()
                pb.wait(timeout=30)
    finally:
        pa.terminate()
        pa.wait(timeout=30)
