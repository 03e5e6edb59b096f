"""Nothing missed by a subscriber whose event loop stalls under a fast peer.

The publisher is another process (its own daemon, driven by its own asyncio
loop) that publishes as fast as its daemon accepts. The subscriber's app
blocks its loop meanwhile (as an app doing blocking work would), so the
daemon's bounded queue towards it overflows and it is told ``lagged``. Every
message must still arrive once, in order of the daemon's numbers, filled from
the daemon's history; the test checks that the hole really happened, so it
cannot pass without the repair.
"""

import asyncio
import subprocess
import sys
import textwrap
from typing import List

from hive_p2p import Daemon
from conftest import LOOPBACK

TOPIC = "resume"
COUNT = 16_000
PAYLOAD = 2048

PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from hive_p2p import Daemon

    async def main(binary, bootstrap, count, size):
        async with Daemon(binary=binary, listen=["/ip4/127.0.0.1/tcp/0"], mdns=False,
                          bootstrap=[bootstrap]) as d:
            await d.subscribe("resume")
            await d.publish("resume", b"first", wait_for_peers=30)
            print("meshed", flush=True)
            sys.stdin.readline()  # the subscriber's loop is blocked from here
            body = b"x" * size
            for start in range(0, count, 500):
                await asyncio.gather(*(d.publish("resume", b"%08d" % i + body)
                                       for i in range(start, min(count, start + 500))))
            print("published", flush=True)
            sys.stdin.readline()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    """
)


async def test_a_stalled_subscriber_gets_every_message_once_after_lagged(binary: str) -> None:
    b = Daemon(binary=binary, listen=LOOPBACK, mdns=False)
    await b.start()
    pub = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, binary, b.listen_addrs[0], str(COUNT), str(PAYLOAD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert pub.stdin is not None and pub.stdout is not None
    try:
        sub = await b.subscribe(TOPIC)
        # Wait (without blocking the loop) until the publisher's first
        # message came through: the mesh is up.
        first = await sub.get(timeout=60)
        assert first.data == b"first"
        line = await asyncio.get_running_loop().run_in_executor(None, pub.stdout.readline)
        assert line.strip() == "meshed"
        # The app blocks its loop while the peer floods.
        pub.stdin.write("go\n")
        pub.stdin.flush()
        assert pub.stdout.readline().strip() == "published"
        got: List[int] = []
        while len(got) < COUNT:
            msg = await sub.get(timeout=60)
            got.append(int(msg.data[:8]))
        assert sorted(got) == list(range(COUNT)), "every message once"
        assert b.gaps >= 1, "the subscriber never fell behind: the test did not test the repair"
        assert b.repaired > 0
        assert b.lost == 0
        assert sub.dropped == 0
        print(f"resume: {COUNT} messages, {b.gaps} holes, {b.repaired} fetched from the history")
    finally:
        pub.stdin.close()
        pub.wait(timeout=30)
        await b.aclose()
