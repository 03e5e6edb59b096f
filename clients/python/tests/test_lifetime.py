"""No hive-p2pd outlives the Python process that started it: normal exit,
exit by exception, and kill -9."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from hive_p2p import Daemon

    async def main(mode):
        d = Daemon(binary=sys.argv[1], listen=["/ip4/127.0.0.1/tcp/0"], mdns=False)
        await d.start()
        print(d.pid, flush=True)
        if mode == "normal":
            await d.aclose()
        elif mode == "exception":
            async with d:
                raise RuntimeError("boom")
        else:
            await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[2]))
    """
)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.parametrize("mode", ["normal", "exception", "kill9"])
def test_daemon_never_outlives_python(binary: str, mode: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, binary, mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    if mode == "kill9":
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), f"hive-p2pd {pid} outlived its Python parent ({mode})"
