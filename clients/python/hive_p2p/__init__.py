"""hive_p2p: p2p networking for asyncio apps, through the hive-p2pd daemon.

libp2p runs in its own process; this package starts it, talks to it over one
WebSocket and keeps it alive. No trio, no second event loop in your process.
"""

from importlib import metadata as _metadata

from ._binary import find_binary
from .daemon import Daemon, DirectInbox, Subscription
from .errors import CallError, CallTimeout, DaemonError, DaemonGone, DaemonStartError, HiveError, HostError
from .host import HostClient
from .types import ChildNode, DirectMessage, Message, PeerInfo

__all__ = [
    "ChildNode",
    "Daemon",
    "HostClient",
    "Subscription",
    "DirectInbox",
    "Message",
    "DirectMessage",
    "PeerInfo",
    "HiveError",
    "CallError",
    "DaemonError",
    "DaemonGone",
    "DaemonStartError",
    "CallTimeout",
    "HostError",
    "find_binary",
]

try:
    # One version for the package and the binaries in its wheel: maturin takes
    # it from Cargo.toml (tests/test_version.py checks both binaries agree).
    __version__ = _metadata.version("hive-p2p")
except _metadata.PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "0+unknown"
