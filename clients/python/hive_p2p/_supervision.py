"""How `Daemon` keeps its daemon alive: the host's policy (crates/hive-host,
supervisor), so that a daemon is supervised the same way whoever starts it.

- A daemon that exits is started again after a backoff: 0.25 s, doubled
  after each failure up to 30 s, back to 0.25 s only once a daemon has run
  for a minute (a daemon that dies right after its start does not restart
  four times a second for ever).
- A daemon that stops answering (hung, SIGSTOPped, a wedged loop) is killed
  after three health checks in a row got no answer, and then restarted like
  one that exited.
- Every change of state is observable: ``async for state in d.states()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Awaitable, Callable, List, Optional

from .errors import CallTimeout, HiveError

log = logging.getLogger("hive_p2p")

HEALTH_INTERVAL = 2.0
HEALTH_TIMEOUT = 5.0
HEALTH_FAILURES = 3
BACKOFF_MIN = 0.25
BACKOFF_MAX = 30.0
HEALTHY_RESET = 60.0

# The states, with the host's names (`/api/status` `daemon.state`).
STARTING = "starting"
RUNNING = "running"
RESTARTING = "restarting"
STOPPED = "stopped"


class Backoff:
    """The delay before the next start."""

    def __init__(self) -> None:
        self.delay = BACKOFF_MIN
        self._started: Optional[float] = None

    def started(self) -> None:
        self._started = time.monotonic()

    def exited(self) -> float:
        """A daemon exited: the delay before starting it again."""
        if self._started is not None and time.monotonic() - self._started >= HEALTHY_RESET:
            self.delay = BACKOFF_MIN
        self._started = None
        return self.delay

    def failed(self) -> None:
        """An attempt failed (exited, or did not start): wait longer next time."""
        self.delay = min(self.delay * 2, BACKOFF_MAX)


class States:
    """The current state and everyone watching it."""

    def __init__(self) -> None:
        self.current = STOPPED
        self._watchers: List["asyncio.Queue[str]"] = []

    def set(self, state: str) -> None:
        if state == self.current:
            return
        self.current = state
        for queue in self._watchers:
            queue.put_nowait(state)

    async def stream(self) -> AsyncIterator[str]:
        """The current state, then each change, until ``stopped``."""
        queue: "asyncio.Queue[str]" = asyncio.Queue()
        self._watchers.append(queue)
        try:
            state = self.current
            while True:
                yield state
                if state == STOPPED:
                    return
                state = await queue.get()
        finally:
            self._watchers.remove(queue)


async def watch_health(
    check: Callable[[], Awaitable[object]],
    on_hung: Callable[[], None],
) -> None:
    """Call `check` every HEALTH_INTERVAL; after HEALTH_FAILURES timeouts in
    a row call `on_hung` and stop. Ends quietly when the daemon is gone."""
    failures = 0
    while True:
        await asyncio.sleep(HEALTH_INTERVAL)
        try:
            await asyncio.wait_for(check(), HEALTH_TIMEOUT)
            failures = 0
        except (CallTimeout, asyncio.TimeoutError):
            failures += 1
            log.warning("daemon health check got no answer (%d in a row)", failures)
            if failures >= HEALTH_FAILURES:
                log.error("daemon failed %d health checks in a row; killing it", failures)
                on_hung()
                return
        except HiveError:
            return  # gone: the supervisor sees the exit
