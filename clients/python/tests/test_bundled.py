"""The installed package carries its binaries and agrees with them.

These tests use the binaries pip installed with hive-p2p (from the wheel's
scripts, see hive_p2p/_binary.py), not target/debug: they fail when the
package was installed without them or when the versions drift apart.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hive_p2p
from hive_p2p import Daemon, DaemonStartError, find_binary
from hive_p2p._binary import bundled_binary

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def _version_of(binary: str) -> str:
    out = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True).stdout
    name, version = out.split()
    assert name == Path(binary).name
    return version


@pytest.mark.parametrize("name", ["hive-p2pd", "hive"])
def test_bundled_binary_lives_in_this_environment(name: str) -> None:
    path = bundled_binary(name)
    assert path is not None, f"hive-p2p was installed without {name}"
    # pip put it into this interpreter's environment, not somewhere on PATH.
    assert Path(sys.prefix).resolve() in path.parents


@pytest.mark.parametrize("name", ["hive-p2pd", "hive"])
def test_versions_agree(name: str) -> None:
    path = bundled_binary(name)
    assert path is not None
    assert hive_p2p.__version__ != "0+unknown"
    assert _version_of(str(path)) == hive_p2p.__version__


async def test_daemon_finds_its_bundled_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    # No binary=, no $HIVE_P2PD, and a PATH with no hive-p2pd on it.
    monkeypatch.delenv("HIVE_P2PD", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert find_binary("hive-p2pd") == str(bundled_binary("hive-p2pd"))
    async with Daemon(listen=LOOPBACK) as node:
        st = await node.status()
        assert st["peer_id"] == node.peer_id
        # The process running is the bundled executable (Linux: /proc/PID/exe).
        assert Path(os.readlink(f"/proc/{node.pid}/exe")) == bundled_binary("hive-p2pd")


async def test_env_and_argument_win_over_the_bundled_binary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, binary: str
) -> None:
    missing = str(tmp_path / "no-such-hive-p2pd")
    monkeypatch.setenv("HIVE_P2PD", missing)
    with pytest.raises(DaemonStartError, match="no-such-hive-p2pd"):
        await Daemon(listen=LOOPBACK).start()
    # binary= wins over $HIVE_P2PD.
    assert find_binary("hive-p2pd", binary) == binary
