"""Values returned by the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass(frozen=True)
class Message:
    """A pubsub message."""

    topic: str
    sender: str
    id: str
    data: bytes


@dataclass(frozen=True)
class DirectMessage:
    """A direct message from another peer (already acknowledged to it)."""

    sender: str
    id: str
    data: bytes


@dataclass(frozen=True)
class PeerInfo:
    peer_id: str
    addrs: List[str] = field(default_factory=list)
    rtt_ms: Optional[float] = None


@dataclass(frozen=True)
class ChildNode:
    """A node this daemon started with :meth:`Daemon.reproduce`."""

    peer_id: str
    pid: Optional[int]
    data_dir: str
    listen_addrs: List[str] = field(default_factory=list)
