"""hive_p2p: p2p networking for asyncio apps, through the hive-p2pd daemon.

libp2p runs in its own process; this package starts it, talks to it over one
WebSocket and keeps it alive. No trio, no second event loop in your process.
"""

from .daemon import Daemon, DirectInbox, Subscription
from .errors import CallTimeout, DaemonError, DaemonGone, DaemonStartError, HiveError, HostError
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
    "DaemonError",
    "DaemonGone",
    "DaemonStartError",
    "CallTimeout",
    "HostError",
]

__version__ = "0.1.0"
