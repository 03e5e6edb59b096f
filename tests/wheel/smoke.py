"""Run from an installed hive-p2p wheel with PATH = that venv + the system.

Two daemons from `Daemon()` (no binary=, no $HIVE_P2PD) exchange a pub/sub
message, then `hive up` from the same venv serves /healthz. Exits non-zero
on any failure.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import hive_p2p
from hive_p2p import Daemon

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
venv = Path(sys.prefix).resolve()


def check_environment() -> None:
    assert shutil.which("cargo") is None, "cargo is on PATH"
    assert "HIVE_P2PD" not in os.environ
    assert Path(hive_p2p.__file__).resolve().is_relative_to(venv), hive_p2p.__file__
    for name in ("hive-p2pd", "hive"):
        found = shutil.which(name)
        assert found and Path(found).resolve().is_relative_to(venv), (name, found)


async def pubsub() -> None:
    async with Daemon(listen=LOOPBACK, mdns=False) as a:
        assert Path(os.readlink(f"/proc/{a.pid}/exe")).is_relative_to(venv)
        async with Daemon(listen=LOOPBACK, mdns=False, bootstrap=[a.listen_addrs[0]]) as b:
            sub = await b.subscribe("smoke")
            await a.subscribe("smoke")
            while b.peer_id not in await a.topic_peers("smoke"):
                await asyncio.sleep(0.1)
            await a.publish("smoke", b"hello from the wheel")
            msg = await sub.get(timeout=30)
            assert msg.data == b"hello from the wheel" and msg.sender == a.peer_id
    print(f"Daemon(): {a.peer_id} -> {b.peer_id}: {msg.data!r}")


def hive_up() -> None:
    data = tempfile.mkdtemp(prefix="hive-wheel-")
    log = open(os.path.join(data, "hive.log"), "w")
    proc = subprocess.Popen(
        ["hive", "up", "--data-dir", data, "--http", "127.0.0.1:0", "--no-mdns"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        url = f"{line['http']}/healthz"
        # /healthz is 503 until the host's daemon is up: poll it as a
        # readiness probe would, within a deadline.
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    status, body = r.status, r.read().decode()
                    break
            except urllib.error.HTTPError as e:
                if e.code != 503 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        assert status == 200 and body == "ok", (status, body)
        print(f"hive up: GET {url} -> {status} {body}")
    except BaseException:
        print(open(log.name).read(), file=sys.stderr)
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


check_environment()
asyncio.run(asyncio.wait_for(pubsub(), 120))
hive_up()
print(f"hive-p2p {hive_p2p.__version__} from the wheel: ok")
