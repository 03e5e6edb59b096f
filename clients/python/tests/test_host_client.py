"""HostClient against real `hive up` hosts."""

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from hive_p2p import HostClient, HostError
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
            pb, url_b = start_host(hive_binary, tmp_path / "b", bootstrap=st["listen_addrs"][0])
            try:
                async with HostClient(url_b) as b:
                    await running(b)
                    await b.subscribe("host-topic")
                    got: "asyncio.Future[bytes]" = asyncio.get_running_loop().create_future()

                    async def listen() -> None:
                        async for m in b.messages("host-topic"):
                            got.set_result(m.data)
                            return

                    task = asyncio.ensure_future(listen())
                    await asyncio.sleep(0.5)
                    # Queued durably even before the mesh forms; delivered once it does.
                    mid = await a.publish("host-topic", b"via the host API", id="fixed-id-1")
                    assert mid == "fixed-id-1"
                    assert await asyncio.wait_for(got, 60) == b"via the host API"
                    task.cancel()
                    with pytest.raises(HostError) as e:
                        await a.send("not-a-peer", b"x")
                    assert e.value.status == 400
            finally:
                pb.terminate()
                pb.wait(timeout=30)
    finally:
        pa.terminate()
        pa.wait(timeout=30)
