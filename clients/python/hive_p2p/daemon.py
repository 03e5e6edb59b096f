"""`Daemon`: start hive-p2pd from asyncio and drive it over its IPC.

This is the architecture the project began with: the libp2p node lives in its
own process (so libp2p's event loop never meets the app's), started with
`asyncio.create_subprocess_exec`, reached over one WebSocket, supervised, and
never left behind: the daemon is started with `HIVE_EXIT_WITH_PARENT=1`, so it
exits when this Python process dies, even by `kill -9`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Set

from ._binary import find_binary
from ._ipc import IpcConnection, b64, cancel, unb64
from ._resume import Resume
from ._supervision import RESTARTING, RUNNING, STARTING, STOPPED, Backoff, States, watch_health
from .errors import DaemonError, DaemonGone, DaemonStartError
from .types import ChildNode, DirectMessage, Message, PeerInfo

# Queue bound per subscriber: a consumer this far behind loses the oldest
# messages (counted in `dropped`) rather than growing memory without limit.
SUBSCRIBER_QUEUE = 10_000


def _put_dropping_oldest(queue: "asyncio.Queue[Any]", item: Any) -> bool:
    """Put `item`; when `queue` is full, make room by dropping the oldest
    entry (a reader that catches up sees what is recent). True if one was
    dropped. The end-of-stream marker (None) is never the one dropped."""
    dropped = False
    while True:
        try:
            queue.put_nowait(item)
            return dropped
        except asyncio.QueueFull:
            oldest = queue.get_nowait()
            if oldest is None:
                # Closed already: nothing more is delivered after the end.
                queue.put_nowait(None)
                return dropped
            dropped = True
# How long `Daemon.publish` waits for a first topic peer by default (seconds).
PUBLISH_WAIT_FOR_PEERS = 10.0


class Subscription:
    """An async iterator of one topic's messages."""

    def __init__(self, daemon: "Daemon", topic: str) -> None:
        self.topic = topic
        self.dropped = 0
        self._daemon = daemon
        self._queue: "asyncio.Queue[Optional[Message]]" = asyncio.Queue(SUBSCRIBER_QUEUE)

    def _put(self, msg: Optional[Message]) -> None:
        if _put_dropping_oldest(self._queue, msg):
            self.dropped += 1

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Message:
        msg = await self._queue.get()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def get(self, timeout: Optional[float] = None) -> Message:
        """The next message, waiting at most `timeout` seconds."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def aclose(self) -> None:
        await self._daemon._drop_subscription(self)


class DirectInbox:
    """An async iterator of direct messages."""

    def __init__(self, daemon: "Daemon") -> None:
        self._daemon = daemon
        self.dropped = 0
        self._queue: "asyncio.Queue[Optional[DirectMessage]]" = asyncio.Queue(SUBSCRIBER_QUEUE)

    def _put(self, msg: Optional[DirectMessage]) -> None:
        if _put_dropping_oldest(self._queue, msg):
            self.dropped += 1

    def __aiter__(self) -> "DirectInbox":
        return self

    async def __anext__(self) -> DirectMessage:
        msg = await self._queue.get()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def get(self, timeout: Optional[float] = None) -> DirectMessage:
        return await asyncio.wait_for(self.__anext__(), timeout)

    def close(self) -> None:
        self._daemon._inboxes.discard(self)
        self._put(None)


def _find_binary(binary: Optional[str]) -> str:
    return find_binary("hive-p2pd", binary)


class Daemon:
    """A supervised hive-p2pd and its IPC connection.

    Use as ``async with Daemon(...) as d:``; leaving the block (or
    ``await d.aclose()``) stops the daemon. All methods are coroutines that
    are safe to call concurrently from any task of the running loop.
    """

    def __init__(
        self,
        *,
        binary: Optional[str] = None,
        data_dir: Optional[str] = None,
        listen: Optional[Sequence[str]] = None,
        bootstrap: Optional[Sequence[str]] = None,
        mdns: bool = True,
        restart: bool = True,
        ready_timeout: float = 30.0,
        call_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._binary = binary
        self._tmp: Optional[tempfile.TemporaryDirectory[str]] = None
        self._data_dir = data_dir
        self._listen = list(listen or [])
        self._bootstrap = list(bootstrap or [])
        self._mdns = mdns
        self._restart = restart
        self._ready_timeout = ready_timeout
        self.call_timeout = call_timeout
        self._extra = list(extra_args)
        self._token = secrets.token_hex(32)
        self._proc: Optional[asyncio.subprocess.Process] = None
        self._ipc: Optional[IpcConnection] = None
        self._ready: Dict[str, Any] = {}
        self._subs: Dict[str, Set[Subscription]] = {}
        self._inboxes: Set[DirectInbox] = set()
        self._closing = False
        self._supervisor: Optional["asyncio.Task[None]"] = None
        self._running = asyncio.Event() if _has_loop() else None
        self.restarts = 0
        # Where this client is in the daemon's history: holes (a `lagged`
        # event, a restart) are filled from it, nothing is delivered twice.
        self._resume = Resume(self._call, self._dispatch)
        self._states = States()
        self._backoff = Backoff()
        self._health: Optional["asyncio.Task[None]"] = None

    # ----- life cycle -------------------------------------------------

    async def __aenter__(self) -> "Daemon":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the daemon and wait until its IPC is connected."""
        if self._running is None:
            self._running = asyncio.Event()
        binary = _find_binary(self._binary)
        if self._data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hive-p2p-")
            self._data_dir = self._tmp.name
        self._states.set(STARTING)
        try:
            await self._spawn(binary)
        except BaseException:
            self._states.set(STOPPED)
            raise
        self._supervisor = asyncio.ensure_future(self._supervise(binary))

    async def _spawn(self, binary: str) -> None:
        args = [binary, "--data-dir", str(self._data_dir), "--ipc", "127.0.0.1:0"]
        for addr in self._listen:
            args += ["--listen", addr]
        for addr in self._bootstrap:
            args += ["--bootstrap", addr]
        if not self._mdns:
            args.append("--no-mdns")
        args += self._extra
        env = dict(os.environ)
        # The token goes in the environment, never on the command line.
        env["HIVE_IPC_TOKEN"] = self._token
        env["HIVE_EXIT_WITH_PARENT"] = "1"
        env.setdefault("RUST_LOG", "warn")
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
            )
        except OSError as e:
            raise DaemonStartError(f"cannot start {binary}: {e}") from e
        self._proc = proc
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self._ready_timeout)
        except asyncio.TimeoutError:
            await self._kill(proc)
            raise DaemonStartError(
                f"{binary} did not become ready within {self._ready_timeout} s"
            ) from None
        if not line:
            code = await proc.wait()
            raise DaemonStartError(f"{binary} exited with status {code} before it was ready")
        try:
            ready = json.loads(line)
        except ValueError:
            await self._kill(proc)
            raise DaemonStartError(f"{binary} printed no ready line: {line[:200]!r}") from None
        self._ready = ready
        self._resume.hold()
        self._ipc = await IpcConnection.open(str(ready["ipc"]), self._token, self._resume.on_event)
        # Subscriptions outlive daemons: a restarted daemon gets them back.
        for topic in list(self._subs):
            await self._ipc.call("subscribe", {"topic": topic}, self.call_timeout)
        self._resume.connected()
        self._backoff.started()
        self._health = asyncio.ensure_future(
            watch_health(lambda: self._call("status", None, None), lambda: self._hung(proc))
        )
        assert self._running is not None
        self._running.set()
        self._states.set(RUNNING)

    def _hung(self, proc: asyncio.subprocess.Process) -> None:
        # Killed, it exits: the supervisor restarts it like any other exit.
        if proc.returncode is None:
            proc.kill()

    async def _supervise(self, binary: str) -> None:
        while not self._closing:
            proc = self._proc
            if proc is None:
                return
            await proc.wait()
            if self._closing:
                return
            assert self._running is not None
            self._running.clear()
            await self._stop_watching()
            if self._ipc is not None:
                await self._ipc.close()
            if not self._restart:
                for subs in self._subs.values():
                    for sub in subs:
                        sub._put(None)
                self._states.set(STOPPED)
                return
            self._states.set(RESTARTING)
            delay = self._backoff.exited()
            while not self._closing:
                await asyncio.sleep(delay)
                self._backoff.failed()
                try:
                    await self._spawn(binary)
                    self.restarts += 1
                    break
                except DaemonStartError:
                    delay = self._backoff.delay

    async def _stop_watching(self) -> None:
        task, self._health = self._health, None
        await cancel(task)

    @property
    def state(self) -> str:
        """``starting``, ``running``, ``restarting`` or ``stopped`` (the
        host's names for the same states)."""
        return self._states.current

    def states(self) -> AsyncIterator[str]:
        """The current state, then every change (a restart shows as
        ``restarting`` then ``running``), ending with ``stopped``."""
        return self._states.stream()

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def aclose(self) -> None:
        """Stop the daemon (politely, then by force) and close everything."""
        self._closing = True
        if self._ipc is not None and not self._ipc.closed:
            try:
                await self._ipc.call("shutdown", None, 5.0)
            except Exception:
                pass
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except asyncio.TimeoutError:
                await self._kill(proc)
        if self._ipc is not None:
            await self._ipc.close()
        await self._resume.close()
        await self._stop_watching()
        await cancel(self._supervisor)
        for subs in self._subs.values():
            for sub in subs:
                sub._put(None)
        for inbox in list(self._inboxes):
            inbox.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        self._states.set(STOPPED)

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    async def wait_running(self, timeout: float = 60.0) -> None:
        """Wait until a daemon is running (after a restart, for example)."""
        assert self._running is not None
        await asyncio.wait_for(self._running.wait(), timeout)

    # ----- events -----------------------------------------------------

    @property
    def gaps(self) -> int:
        """Holes seen in the daemon's pushed events (a `lagged` event, a
        skipped number); each is filled from its history."""
        return self._resume.gaps

    @property
    def repaired(self) -> int:
        """Events fetched from the daemon's history to fill holes."""
        return self._resume.repaired

    @property
    def lost(self) -> int:
        """Events the daemon pruned from its history before they could be
        fetched (see ``--history-hours``): the only way one is missed."""
        return self._resume.lost

    def _dispatch(self, frame: Dict[str, Any]) -> None:
        kind = frame.get("event")
        if kind == "message":
            msg = Message(
                topic=str(frame["topic"]),
                sender=str(frame["from"]),
                id=str(frame["id"]),
                data=unb64(str(frame["data"])),
            )
            for sub in self._subs.get(msg.topic, ()):
                sub._put(msg)
        elif kind == "direct":
            direct = DirectMessage(
                sender=str(frame["from"]), id=str(frame["id"]), data=unb64(str(frame["data"]))
            )
            for inbox in self._inboxes:
                inbox._put(direct)

    # ----- calls ------------------------------------------------------

    async def _call(self, op: str, args: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        ipc = self._ipc
        if ipc is None or ipc.closed:
            raise DaemonGone("the daemon is not running (restarting or stopped)")
        return await ipc.call(op, args, timeout if timeout is not None else self.call_timeout)

    @property
    def peer_id(self) -> str:
        return str(self._ready.get("peer_id", ""))

    @property
    def listen_addrs(self) -> List[str]:
        return [str(a) for a in self._ready.get("listen_addrs", [])]

    async def status(self) -> Dict[str, Any]:
        result: Dict[str, Any] = await self._call("status")
        return result

    async def peers(self) -> List[PeerInfo]:
        result = await self._call("peers")
        return [
            PeerInfo(peer_id=p["peer_id"], addrs=list(p.get("addrs", [])), rtt_ms=p.get("rtt_ms"))
            for p in result["peers"]
        ]

    async def dial(self, addr: str) -> str:
        result = await self._call("dial", {"addr": addr})
        return str(result["peer_id"])

    async def publish(
        self,
        topic: str,
        data: bytes,
        id: Optional[str] = None,
        wait_for_peers: float = PUBLISH_WAIT_FOR_PEERS,
    ) -> str:
        """Publish `data`; returns the message id receivers will see. A retry
        with the same `id` is dropped as a duplicate by receivers.

        A node that has no peer in the topic yet (just started, or its peers
        are restarting) cannot send: the publish then waits up to
        `wait_for_peers` seconds for a topic peer to appear and is sent then,
        else it raises ``DaemonError(publish_failed)``. ``wait_for_peers=0``
        fails at once. Nothing is sent twice: a publish that failed this way
        was not sent."""
        args: Dict[str, Any] = {"topic": topic, "data": b64(data)}
        if id is not None:
            args["id"] = id
        deadline = asyncio.get_running_loop().time() + wait_for_peers
        while True:
            try:
                result = await self._call("publish", args)
                return str(result["id"])
            except DaemonError as e:
                left = deadline - asyncio.get_running_loop().time()
                if e.code != "publish_failed" or "no peers" not in e.message or left <= 0:
                    raise
            # Gossipsub forms its mesh within a heartbeat or two of a peer
            # subscribing; asking again this often costs one local call.
            await asyncio.sleep(min(0.1, max(left, 0.0)))

    async def subscribe(self, topic: str) -> Subscription:
        """Subscribe; the returned object is an async iterator of messages."""
        sub = Subscription(self, topic)
        first = topic not in self._subs
        self._subs.setdefault(topic, set()).add(sub)
        if first:
            try:
                await self._call("subscribe", {"topic": topic})
            except BaseException:
                self._subs[topic].discard(sub)
                if not self._subs[topic]:
                    del self._subs[topic]
                raise
        return sub

    async def _drop_subscription(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.topic)
        if subs is None:
            return
        subs.discard(sub)
        sub._put(None)
        if not subs:
            await self.unsubscribe(sub.topic)

    async def unsubscribe(self, topic: str) -> None:
        for sub in self._subs.pop(topic, set()):
            sub._put(None)
        await self._call("unsubscribe", {"topic": topic})

    async def topic_peers(self, topic: str) -> List[str]:
        result = await self._call("topic_peers", {"topic": topic})
        return [str(p) for p in result["peers"]]

    async def send(self, peer_id: str, data: bytes, id: Optional[str] = None) -> str:
        """Send a direct message; returns once the remote daemon acknowledged it."""
        args: Dict[str, Any] = {"peer_id": peer_id, "data": b64(data)}
        if id is not None:
            args["id"] = id
        result = await self._call("send", args)
        return str(result["id"])

    def direct_messages(self) -> DirectInbox:
        """An async iterator of direct messages arriving from now on."""
        inbox = DirectInbox(self)
        self._inboxes.add(inbox)
        return inbox

    async def ping(self, peer_id: str) -> float:
        """Round trip to a peer over libp2p, in milliseconds."""
        result = await self._call("ping", {"peer_id": peer_id})
        return float(result["rtt_ms"])

    async def find_peer(self, peer_id: str) -> PeerInfo:
        result = await self._call("find_peer", {"peer_id": peer_id})
        return PeerInfo(peer_id=result["peer_id"], addrs=list(result["addrs"]))

    async def provide(self, key: bytes) -> None:
        await self._call("provide", {"key": b64(key)})

    async def find_providers(self, key: bytes) -> List[PeerInfo]:
        result = await self._call("find_providers", {"key": b64(key)})
        return [PeerInfo(peer_id=p["peer_id"], addrs=list(p["addrs"])) for p in result["providers"]]

    async def closest_peers(self, key: bytes) -> List[PeerInfo]:
        """The peers closest to ``key`` in the DHT (a peer's id bytes for
        the peers closest to that peer), closest first."""
        result = await self._call("closest_peers", {"key": b64(key)})
        return [PeerInfo(peer_id=p["peer_id"], addrs=list(p["addrs"])) for p in result["peers"]]

    async def put_record(self, key: bytes, value: bytes) -> None:
        await self._call("put_record", {"key": b64(key), "value": b64(value)})

    async def get_record(self, key: bytes) -> bytes:
        result = await self._call("get_record", {"key": b64(key)})
        return unb64(str(result["value"]))

    async def reproduce(self, count: int = 1, timeout: float = 60.0) -> List[ChildNode]:
        """Start ``count`` child nodes that join this node's network.

        The daemon starts and supervises them itself (each with its own
        identity under ``<data_dir>/children/<n>``); they stop when it stops
        and never outlive it. Returns once every child is running.
        """
        result = await self._call("reproduce", {"count": count}, timeout=timeout)
        return [
            ChildNode(
                peer_id=str(c["peer_id"]),
                pid=c.get("pid"),
                data_dir=str(c["data_dir"]),
                listen_addrs=[str(a) for a in c["listen_addrs"]],
            )
            for c in result["children"]
        ]

    async def metrics(self) -> str:
        """The node's libp2p metrics as OpenMetrics text."""
        result = await self._call("metrics")
        return str(result["text"])


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


__all__ = ["Daemon", "Subscription", "DirectInbox", "DaemonError"]
