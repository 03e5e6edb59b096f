"""Process handling, measurements and statistics shared by the workloads."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import control, pb

ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Skip(Exception):
    """A workload or an anchor that cannot run here; the reason is reported."""


@dataclass
class Env:
    """Where everything is, and how hard to work."""

    quick: bool
    bin_dir: Path
    hbench: Path
    go_p2pd: Path | None
    go_skip: str
    js_start: Path | None
    js_skip: str
    pylibp2p_python: Path | None
    pylibp2p_skip: str
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hive-bench-")))

    @property
    def p2pd(self) -> Path:
        return self.bin_dir / "hive-p2pd"

    @property
    def hive(self) -> Path:
        return self.bin_dir / "hive"

    def scratch(self, name: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=name + "-", dir=self.tmp))
        return d


# --- statistics -------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[round((len(v) - 1) * q)]


def dist(values: list[float], nd: int = 1) -> dict:
    """median, p99 (nearest rank; equals max below 100 samples), min, max, spread."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), nd),
        "p99": round(pct(values, 0.99), nd),
        "min": round(min(values), nd),
        "max": round(max(values), nd),
    }


# --- /proc ------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """Resident set of a process and its descendants (the js daemon is one process;
    this also covers a daemon that forks)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def rss_split_kb(pid: int) -> dict:
    """RssAnon (heap, stacks) and RssFile (mapped binary and libraries) of one process."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    out = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for c in children:
        out.append(int(c))
        out.extend(descendants(int(c)))
    return out


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except OSError:
        return 0


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


def own_ticks() -> int:
    """CPU of this driver and of every child it has reaped (daemons, hbench, and
    their own reaped children)."""
    t = os.times()
    return round((t.user + t.system + t.children_user + t.children_system) * CLK_TCK)


class LoadMeter:
    """How much of the machine other processes used while a workload ran."""

    def __init__(self):
        self.busy0, self.total0 = machine_busy_ticks()
        self.own0 = own_ticks()
        self.live0 = sum(cpu_ticks(p.pid) for p in LIVE if p.returncode is None)

    def foreign_pct(self) -> float:
        busy, total = machine_busy_ticks()
        live = sum(cpu_ticks(p.pid) for p in LIVE if p.returncode is None)
        own = own_ticks() - self.own0 + live - self.live0
        elapsed = max(1, total - self.total0)
        return round(100.0 * max(0, (busy - self.busy0) - own) / elapsed, 1)


async def quiet_gate(max_wait: float, threshold_pct: float = 15.0) -> tuple[float, float]:
    """Wait (up to max_wait s) until the machine is idle: other people's builds
    on a 2-core machine make every figure meaningless. Returns (waited s, busy %)."""
    t0 = time.monotonic()
    while True:
        b0, t0_ = machine_busy_ticks()
        await asyncio.sleep(0.5)
        b1, t1 = machine_busy_ticks()
        busy = 100.0 * (b1 - b0) / max(1, t1 - t0_)
        waited = time.monotonic() - t0
        if busy <= threshold_pct or waited >= max_wait:
            return round(waited, 1), round(busy, 1)
        if int(waited) % 30 == 0:
            print(f"   waiting for the machine to be quiet (busy {busy:.0f} %)", flush=True)
        await asyncio.sleep(2.0)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- processes ----------------------------------------------------------------


class Proc:
    """A child process whose stdout is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process, started: float, name: str):
        self.proc = proc
        self.started = started
        self.name = name
        self.lines: list[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def readline(self, timeout: float = 30.0) -> str:
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError(f"{self.name} exited (code {self.proc.returncode}) before it was ready")
        line = raw.decode(errors="replace").rstrip("\n")
        self.lines.append(line)
        return line

    async def wait_line(self, prefix: str, timeout: float = 30.0) -> tuple[str, float]:
        """Wait for a line starting with prefix; returns it and ms since start."""
        deadline = time.monotonic() + timeout
        while True:
            line = await self.readline(max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line, (time.perf_counter() - self.started) * 1000

    async def drain_stdout(self):
        """Keep reading stdout so that the child never blocks on a full pipe."""
        try:
            while await self.proc.stdout.readline():
                pass
        except Exception:
            pass

    async def stop(self, sig=signal.SIGTERM, timeout: float = 5.0):
        if self.proc.returncode is not None:
            return
        try:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), timeout)
        except (asyncio.TimeoutError, ProcessLookupError):
            try:
                self.proc.kill()
                await self.proc.wait()
            except ProcessLookupError:
                pass


async def spawn(name: str, argv: list[str], env: dict | None = None, stderr_path: Path | None = None) -> Proc:
    err = open(stderr_path, "ab") if stderr_path else asyncio.subprocess.DEVNULL
    full_env = dict(os.environ, RUST_LOG=os.environ.get("HIVE_BENCH_RUST_LOG", "warn"))
    full_env.update(env or {})
    started = time.perf_counter()
    p = await asyncio.create_subprocess_exec(
        *map(str, argv), stdout=asyncio.subprocess.PIPE, stderr=err, env=full_env, limit=1 << 20
    )
    if stderr_path:
        err.close()
    LIVE.add(p)
    return Proc(p, started, name)


TOKEN = "hive-bench-token"

# Every child still running, so that an interrupted run leaves none behind.
LIVE: set = set()


@dataclass
class ControlDaemon:
    """A daemon that speaks the go-daemon control protocol on a unix socket."""

    kind: str  # "hive", "go", "js"
    proc: Proc
    sock: str
    peer_id: str
    addrs: list[str]
    ready_ms: float
    dir: Path
    first_answer_ms: float | None = None

    @property
    def client(self) -> control.ControlClient:
        return control.ControlClient(self.sock)

    @property
    def peer_bytes(self) -> bytes:
        return pb.b58decode(self.peer_id)

    async def stop(self):
        await self.proc.stop()


async def _first_identify(sock: str, started: float) -> float:
    """ms from process start to the first IDENTIFY answered (retried while the
    socket is not there yet)."""
    c = control.ControlClient(sock)
    deadline = time.monotonic() + 30
    while True:
        try:
            await c.identify()
            return (time.perf_counter() - started) * 1000
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.001)


async def start_control_daemon(env: Env, kind: str, extra: list[str] | None = None) -> ControlDaemon:
    """hive-p2pd with go flags, the go p2pd, or the js daemon; ready = `Peer ID:` line."""
    d = env.scratch(kind)
    sock = str(d / "p2pd.sock")
    go_flags = [f"-listen=/unix{sock}", "-hostAddrs=/ip4/127.0.0.1/tcp/0", "-pubsub", "-b=false"]
    if kind == "hive":
        argv = [env.p2pd, *go_flags, "--data-dir", d / "data", "--no-mdns", *(extra or [])]
    elif kind == "go":
        if not env.go_p2pd:
            raise Skip(env.go_skip)
        argv = [env.go_p2pd, *go_flags, *(extra or [])]
    elif kind == "js":
        if not env.js_start:
            raise Skip(env.js_skip)
        argv = ["node", env.js_start, f"-listen=/unix{sock}", "-hostAddrs=/ip4/127.0.0.1/tcp/0"]
    else:
        raise ValueError(kind)
    p = await spawn(kind, argv, env={"HIVE_IPC_TOKEN": TOKEN}, stderr_path=d / "stderr.log")
    try:
        line, ready_ms = await p.wait_line("Peer ID:", timeout=60)
        peer_id = line.split(":", 1)[1].strip()
        first_ms = await _first_identify(sock, p.started)
        await p.wait_line("Peer Addrs:", timeout=10)
        addrs = []
        # The address lines follow at once; read what is there.
        while True:
            try:
                a = await p.readline(timeout=0.3)
            except asyncio.TimeoutError:
                break
            if a.startswith("/"):
                addrs.append(a.strip())
    except Exception:
        await p.stop()
        tail = (d / "stderr.log").read_text(errors="replace")[-2000:] if (d / "stderr.log").exists() else ""
        raise RuntimeError(f"{kind} daemon did not start: {tail}")
    asyncio.ensure_future(p.drain_stdout())
    return ControlDaemon(kind, p, sock, peer_id, addrs, ready_ms, d, first_ms)


@dataclass
class HiveDaemon:
    """hive-p2pd in its own mode: the JSON ready line, the WebSocket IPC."""

    proc: Proc
    ready: dict
    ready_ms: float
    dir: Path

    @property
    def ipc(self) -> str:
        return self.ready["ipc"]

    @property
    def addr(self) -> str:
        tcp = [a for a in self.ready["listen_addrs"] if "/tcp/" in a]
        return (tcp or self.ready["listen_addrs"])[0]

    async def stop(self):
        await self.proc.stop()


async def start_hive_daemon(env: Env, extra: list[str] | None = None, name: str = "hive-ipc") -> HiveDaemon:
    d = env.scratch(name)
    argv = [
        env.p2pd,
        "--data-dir",
        d / "data",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        *(extra or []),
    ]
    p = await spawn(name, argv, env={"HIVE_IPC_TOKEN": TOKEN}, stderr_path=d / "stderr.log")
    try:
        line, ready_ms = await p.wait_line("{", timeout=60)
    except Exception:
        await p.stop()
        raise RuntimeError("hive-p2pd did not start: " + (d / "stderr.log").read_text(errors="replace")[-2000:])
    asyncio.ensure_future(p.drain_stdout())
    return HiveDaemon(p, json.loads(line), ready_ms, d)


async def run_json(argv: list, timeout: float, env: dict | None = None, log: Path | None = None) -> dict:
    """Run a load generator that prints one JSON object as its last stdout line."""
    p = await asyncio.create_subprocess_exec(
        *map(str, argv),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, **(env or {})),
    )
    try:
        out, err = await asyncio.wait_for(p.communicate(), timeout)
    except asyncio.TimeoutError:
        p.kill()
        await p.wait()
        raise RuntimeError(f"{Path(str(argv[0])).name} timed out after {timeout:.0f}s")
    text = err.decode(errors="replace")
    if log:
        with open(log, "a") as f:
            f.write(text)
    for line in text.splitlines():
        if line.startswith("  rate"):
            print("   " + line.strip(), flush=True)
    objs = [l for l in out.decode(errors="replace").splitlines() if l.startswith("{")]
    if p.returncode != 0 or not objs:
        raise RuntimeError(f"{Path(str(argv[0])).name} failed ({p.returncode}): {text[-1500:]}")
    return json.loads(objs[-1])


def cleanup(env: Env):
    for p in list(LIVE):
        if p.returncode is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    LIVE.clear()
    shutil.rmtree(env.tmp, ignore_errors=True)
