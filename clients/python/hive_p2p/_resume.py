"""Nothing missed: a `Daemon`'s place in its daemon's history.

The daemon numbers every message and direct message it keeps
(``history_seq``, consecutive; docs/IPC.md, ``history``) and pushes each one
to every IPC connection. The queue between the daemon and this process is
bounded: a client that does not read for a while (a blocked event loop, a
burst from a fast peer) is told ``lagged`` and the events in between are not
pushed. A daemon killed after storing a message but before pushing it leaves
the same kind of hole. Both are repaired here: a skipped number, a
``lagged`` event or a new connection to the same history makes this fetch
what it has not delivered with ``history``, in order, before anything newer.
Events are delivered once each, by number.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Dict, List, Optional

from ._ipc import cancel
from .errors import DaemonError, HiveError

Frame = Dict[str, Any]
Call = Callable[[str, Dict[str, Any]], Awaitable[Any]]
Deliver = Callable[[Frame], None]

# Events per `history` page (the daemon's maximum).
PAGE = 1000


class Resume:
    """Delivers numbered events once each and in order, filling holes."""

    def __init__(self, call: Call, deliver: Deliver) -> None:
        self._call = call
        self._deliver = deliver
        # The last number delivered, in `journal`; None before the first
        # connection told us where the history stands.
        self.last: Optional[int] = None
        self.journal: Optional[str] = None
        # A daemon without `history` (older): events are delivered as pushed.
        self.enabled = True
        # Holes seen, events fetched to fill them, events the daemon had
        # pruned before they could be fetched.
        self.gaps = 0
        self.repaired = 0
        self.lost = 0
        self._held: List[Frame] = []
        self._task: Optional["asyncio.Task[None]"] = None
        self._holding = False

    def hold(self) -> None:
        """A connection is about to open: keep its events until
        :meth:`connected` knows where they belong."""
        self._holding = True

    def connected(self) -> None:
        """The connection is up (subscriptions renewed): find our place in
        its history and fetch what was missed while we were away."""
        self._start()

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel(task)

    def on_event(self, frame: Frame) -> None:
        if frame.get("event") == "lagged":
            self.gaps += 1
            self._start()
            return
        seq = frame.get("history_seq")
        if not self.enabled or not isinstance(seq, int):
            self._deliver(frame)
            return
        if self._holding or self._task is not None:
            self._held.append(frame)
            return
        self._take(frame, seq)

    def _take(self, frame: Frame, seq: int) -> None:
        if self.last is None:
            self.last = seq
            self._deliver(frame)
        elif seq <= self.last:
            return  # delivered already (pushed and fetched both)
        elif seq > self.last + 1:
            self.gaps += 1
            self._held.append(frame)
            self._start()
        else:
            self.last = seq
            self._deliver(frame)

    def _start(self) -> None:
        if not self.enabled or self._task is not None:
            return
        self._holding = True
        self._task = asyncio.ensure_future(self._repair())

    async def _repair(self) -> None:
        try:
            await self._fetch()
        except asyncio.CancelledError:
            raise  # closed: nobody waits for what was held
        except DaemonError as e:
            if e.code in ("unknown_op", "unsupported"):
                self.enabled = False
        except HiveError:
            # The daemon went away: what it kept is fetched after the next
            # connection; what was held is in that history too.
            self._held.clear()
        except (KeyError, TypeError, ValueError):
            # A history page of another shape: deliver as pushed from now on
            # rather than hold events forever.
            self.enabled = False
        self._task = None
        self._holding = False
        held, self._held = self._held, []
        for frame in sorted(held, key=lambda f: int(f.get("history_seq") or 0)):
            seq = frame.get("history_seq")
            if self.enabled and isinstance(seq, int):
                self._take(frame, seq)
            else:
                self._deliver(frame)

    async def _fetch(self) -> None:
        while True:
            page = await self._call("history", {"after": self.last or 0, "limit": PAGE})
            journal = str(page["journal"])
            head = int(page["head"])
            if self.last is None or journal != self.journal:
                # A first connection, or a replaced data directory: start at
                # its head (what it kept from before is not ours to replay),
                # or just before the first event this connection pushed.
                self.journal = journal
                pushed = [int(f["history_seq"]) for f in self._held if isinstance(f.get("history_seq"), int)]
                self.last = min([head] + [seq - 1 for seq in pushed])
                return
            first = int(page["first"])
            if first > self.last + 1:
                self.lost += first - self.last - 1
            progressed = False
            for event in page["events"]:
                seq = event.get("history_seq")
                if isinstance(seq, int) and seq > self.last:
                    self.last = seq
                    self.repaired += 1
                    progressed = True
                    self._deliver(event)
            if not progressed or self.last >= head:
                return
