"""A daemon started with go-libp2p-daemon's flags (hive-p2pd or go's p2pd),
its start-up lines read, and a p2pclient Client for it."""

import os
import subprocess
from pathlib import Path

from multiaddr import Multiaddr
from p2pclient import Client

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("HIVE_BIN_DIR", REPO / "target" / "debug"))
DAEMON = BIN_DIR / "hive-p2pd"
GO_P2PD = os.environ.get("HIVE_GO_P2PD", "")


class Proc:
    """`listen=False` starts it with -noListenAddrs (it prints no address)."""

    def __init__(
        self,
        binary: str,
        tmp: Path,
        name: str,
        extra=(),
        listen=True,
        pubsub=True,
        log=False,
        exact=None,
    ):
        """`exact`: a go-daemon command line (after `-listen`), passed as it
        is to either binary, with nothing added and no Hive environment."""
        self.dir = tmp / name
        self.dir.mkdir()
        self.sock = self.dir / "p2pd.sock"
        env = dict(os.environ, HIVE_IPC_TOKEN="compat", RUST_LOG="warn")
        if exact is not None:
            args = [binary, f"-listen=/unix{self.sock}", *exact]
            listen = "-noListenAddrs" not in exact
            env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
            env["RUST_LOG"] = "warn"
        else:
            args = [binary, f"-listen=/unix{self.sock}", "-b=false", *extra]
            args.append("-hostAddrs=/ip4/127.0.0.1/tcp/0" if listen else "-noListenAddrs")
            if pubsub:
                args.append("-pubsub")
            if binary == str(DAEMON):
                args += ["--data-dir", str(self.dir / "data")]
        # log=True: hive-node's info lines go to <dir>/stderr.log.
        self.log = self.dir / "stderr.log" if log else None
        stderr = None
        if self.log:
            env["RUST_LOG"] = "warn,hive_node=info"
            stderr = open(self.log, "w")
        # cwd "/" for both binaries: hivemind's go p2pd dials a handler's
        # `/unix/...` address without its leading slash (seen: "dial unix
        # tmp/...: no such file"), i.e. relative to its working directory.
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=stderr, env=env, text=True, cwd="/"
        )
        while True:
            line = self.proc.stdout.readline()
            assert line, f"{binary} exited before its start-up lines"
            if line.startswith("Peer ID:"):
                self.peer_id = line.split(":", 1)[1].strip()
            if line.startswith("Peer Addrs:"):
                break
        self.addr = self.proc.stdout.readline().strip() if listen else None

    def log_text(self) -> str:
        return self.log.read_text() if self.log else ""

    def client(self, listen: str) -> Client:
        return Client(
            control_maddr=Multiaddr(f"/unix{self.sock}"),
            listen_maddr=Multiaddr(f"/unix{self.dir / listen}"),
        )

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
