import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN_DIR = Path(os.environ.get("HIVE_BIN_DIR", REPO / "target" / "debug"))
LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


@pytest.fixture
def binary() -> str:
    path = BIN_DIR / "hive-p2pd"
    assert path.exists(), f"{path} is not built: run `cargo build --workspace --bins` first"
    return str(path)


@pytest.fixture
def hive_binary() -> str:
    path = BIN_DIR / "hive"
    assert path.exists(), f"{path} is not built: run `cargo build --workspace --bins` first"
    return str(path)
