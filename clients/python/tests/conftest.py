import asyncio
import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN_DIR = Path(os.environ.get("HIVE_BIN_DIR", REPO / "target" / "debug"))
LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


@pytest.fixture
def binary() -> str:
    path = BIN_DIR / "hive-p2pd"
    assert path.exists(), f"{path} is not built: run `cargo build --workspace --bins` first"
    return str(path)


@pytest.fixture
def hive_binary() -> str:
    path = BIN_DIR / "hive"
    assert path.exists(), f"{path} is not built: run `cargo build --workspace --bins` first"
    return str(path)


def stopped(pid: int) -> bool:
    """Whether every thread of `pid` is in the kernel's stopped state."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        states = []
        for tid in tasks:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                # The state follows the command name, which is in parentheses
                # and may itself hold spaces.
                states.append(f.read().rsplit(")", 1)[1].split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return False
    return bool(states) and all(s in ("T", "t") for s in states)


async def sigstop(pid: int, timeout: float = 10.0) -> None:
    """SIGSTOP `pid` and return once it has stopped.

    kill(2) only queues the signal: a process whose signalled thread is in an
    uninterruptible wait (a page fault on a slow disk, an fsync) keeps running
    until that wait ends. A test that means "this peer is hung" starts only
    once the kernel says it is."""
    os.kill(pid, signal.SIGSTOP)
    deadline = asyncio.get_running_loop().time() + timeout
    while not stopped(pid):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"process {pid} did not stop within {timeout} s of SIGSTOP")
        await asyncio.sleep(0.01)
