"""Two instances of examples/fastapi under uvicorn, in separate processes: a
message posted to one's REST endpoint reaches a WebSocket client of the
other's relay. Nothing in either log mentions trio's
"must be called from async context", and no trio is imported."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from conftest import BIN_DIR, REPO

EXAMPLE = REPO / "examples" / "fastapi"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(port: int, log: Path, bootstrap: str = "") -> subprocess.Popen:
    env = dict(
        os.environ,
        HIVE_P2PD=str(BIN_DIR / "hive-p2pd"),
        HIVE_LISTEN="/ip4/127.0.0.1/tcp/0",
        HIVE_BOOTSTRAP=bootstrap,
        HIVE_TOPIC="chat",
        PYTHONPATH=str(EXAMPLE),
    )
    # -X importtime logs every module the process imports to stderr (the
    # log file), so the test can tell that trio was never loaded.
    code = f"import uvicorn; uvicorn.run('app:app', host='127.0.0.1', port={port}, log_level='info')"
    return subprocess.Popen(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=EXAMPLE,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def wait_up(port: int) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/me", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            time.sleep(0.2)
    raise AssertionError(f"example on port {port} did not come up")


def test_two_fastapi_instances_exchange_messages(tmp_path: Path) -> None:
    pa, pb = free_port(), free_port()
    la, lb = tmp_path / "a.log", tmp_path / "b.log"
    a = start(pa, la)
    try:
        me_a = wait_up(pa)
        b = start(pb, lb, bootstrap=me_a["listen_addrs"][0])
        try:
            me_b = wait_up(pb)

            async def scenario() -> dict:
                async with connect(f"ws://127.0.0.1:{pb}/ws") as ws:
                    async with httpx.AsyncClient(timeout=60) as http:
                        # Once, as the README's curl does: a publish right
                        # after start waits for the mesh (wait_for_peers).
                        r = await http.post(f"http://127.0.0.1:{pa}/api/publish", content=b"hello from A")
                        assert r.status_code == 200, r.text
                    return json.loads(await asyncio.wait_for(ws.recv(), 60))

            frame = asyncio.run(scenario())
            assert frame["text"] == "hello from A"
            assert frame["from"] == me_a["peer_id"]
            assert me_b["peer_id"] != me_a["peer_id"]
        finally:
            b.terminate()
            b.wait(timeout=30)
    finally:
        a.terminate()
        a.wait(timeout=30)
    for log in (la, lb):
        text = log.read_text()
        assert "must be called from async context" not in text, text
        imported = [line.rsplit("|", 1)[-1].strip() for line in text.splitlines() if line.startswith("import time:")]
        assert "fastapi" in imported and "hive_p2p" in imported, "import log missing"
        assert not [m for m in imported if m == "trio" or m.startswith("trio.")], "trio was imported"

        assert "Application startup complete" in text, text
