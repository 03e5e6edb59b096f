"""The restart policy of `Daemon` (the host's): backoff doubling to 30 s,
back to 0.25 s only after a daemon ran for a minute."""

from typing import List

import pytest

from hive_p2p import _supervision
from hive_p2p._supervision import BACKOFF_MAX, BACKOFF_MIN, HEALTHY_RESET, Backoff


def test_a_crash_loop_backs_off_and_only_a_healthy_minute_resets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_supervision.time, "monotonic", lambda: clock[0])
    backoff = Backoff()
    delays: List[float] = []
    for _ in range(10):
        backoff.started()
        clock[0] += 1.0  # dies a second after it started
        delays.append(backoff.exited())
        backoff.failed()
    assert delays[:4] == [BACKOFF_MIN, 0.5, 1.0, 2.0]
    assert delays[-1] == BACKOFF_MAX
    backoff.started()
    clock[0] += HEALTHY_RESET
    assert backoff.exited() == BACKOFF_MIN, "a minute of running resets the backoff"
