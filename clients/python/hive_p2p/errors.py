"""Typed exceptions: every failure carries what went wrong, never a hang."""

from __future__ import annotations


class HiveError(Exception):
    """Base class of every error raised by hive_p2p."""


class DaemonStartError(HiveError):
    """The daemon could not be started or did not become ready in time."""


class DaemonGone(HiveError):
    """The daemon exited or its IPC link closed while a call was in flight,
    or a call was made while no daemon is running."""


class CallTimeout(HiveError):
    """The daemon did not answer within the call's timeout."""


class CallError(HiveError):
    """A daemon or a host refused a call, with a stable `code` and a `message`.

    `Daemon` raises `DaemonError` and `HostClient` raises `HostError`; both are
    `CallError`s with the same fields, so code that works with either can
    catch `CallError` and branch on `code` (``bad_args``, ``not_found``, ...).
    """

    def __init__(self, code: str, message: str, text: str = "") -> None:
        super().__init__(text or f"{code}: {message}")
        self.code = code
        self.message = message


class DaemonError(CallError):
    """The daemon answered with a structured error.

    `code` is the daemon's stable error code (see docs/IPC.md), for example
    ``bad_args``, ``not_found``, ``publish_failed``, ``not_connected``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


class HostError(CallError):
    """A `hive` host answered an HTTP error; `status` is the HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message, f"HTTP {status} {code}: {message}")
        self.status = status
