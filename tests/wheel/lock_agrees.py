"""Every crate in the packaging crate's Cargo.lock (clients/python) has the
version the workspace's Cargo.lock pins, so the wheel's binaries are built
from the same dependencies as the ones the tests run."""

import sys
import tomllib

workspace, packaging = (tomllib.load(open(p, "rb"))["package"] for p in sys.argv[1:3])
pinned = {(p["name"], p["version"]) for p in workspace}
drift = sorted(
    f"{p['name']} {p['version']}"
    for p in packaging
    if p.get("source") and (p["name"], p["version"]) not in pinned
)
if drift:
    sys.exit(
        "clients/python/Cargo.lock differs from Cargo.lock in: " + ", ".join(drift)
        + "\nfix: cp Cargo.lock clients/python/Cargo.lock && (cd clients/python && cargo metadata --format-version 1 >/dev/null)"
    )
print(f"{sum(1 for p in packaging if p.get('source'))} crates, same versions as Cargo.lock")
