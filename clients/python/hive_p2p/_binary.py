"""Where the `hive-p2pd` and `hive` executables are found.

The hive-p2p wheel carries both binaries: pip installs them into the
environment's scripts directory (`<venv>/bin`), listed in the distribution's
RECORD. Finding them through that RECORD (not through `PATH`) means an
installed package starts its own binaries even when the virtualenv is not
activated, and never a different `hive-p2pd` that happens to be on `PATH`.

Order, first match wins: the explicit argument, `$HIVE_P2PD` (for the
daemon), the binary bundled with this package, `PATH`.
"""

from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Optional

from .errors import DaemonStartError

DISTRIBUTION = "hive-p2p"

_ENV = {"hive-p2pd": "HIVE_P2PD"}


def bundled_binary(name: str) -> Optional[Path]:
    """The executable `name` installed with this distribution, if any."""
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        # Scripts are recorded relative to site-packages (`../../../bin/x`).
        if f.name == name and f.parent.name in ("bin", "Scripts"):
            path = Path(str(f.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def find_binary(name: str, explicit: Optional[str] = None) -> str:
    """Path of the executable `name` (`hive-p2pd` or `hive`), or DaemonStartError."""
    env = _ENV.get(name)
    candidate = explicit or (os.environ.get(env) if env else None)
    if not candidate:
        bundled = bundled_binary(name)
        candidate = str(bundled) if bundled else shutil.which(name)
    if not candidate:
        raise DaemonStartError(
            f"{name} not found: this installation of hive-p2p carries no {name} "
            f"(was it installed from a wheel or `pip install ./clients/python`?); "
            f"pass binary={', set ' + env if env else ''}, or put {name} on PATH"
        )
    path = Path(candidate)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise DaemonStartError(f"{name} binary {candidate!r} does not exist or is not executable")
    return str(path)
