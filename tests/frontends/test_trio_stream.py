"""memphis_trio's stream: a cancelled write never tears a frame, and a stuck one is bounded.

Why it matters: with ``cancel_safe_send`` a user task writes its own request (a synchronous
produce, a fetch) instead of waking the connection's pump, and a user task can be cancelled at
any await. Part of a frame left on the wire would corrupt every later command.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from memphis_trio._backend import TrioBackend, _TrioStream


def test_the_trio_backend_lets_user_tasks_write() -> None:
    assert TrioBackend.cancel_safe_send


def test_a_write_cancelled_half_way_still_writes_everything() -> None:
    frame = b"HPUB orders$1.final _INBOX.x.1 0 5\r\nhello\r\n" * 50

    async def main() -> None:
        sender, receiver = trio.testing.lockstep_stream_pair()  # send_all waits for reads
        stream = _TrioStream(sender, write_timeout=60)
        received = bytearray()
        finished = trio.Event()

        async def write(scope: trio.CancelScope) -> None:
            with scope:
                await stream.send_all(frame)
                finished.set()

        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()
            nursery.start_soon(write, scope)
            await trio.testing.wait_all_tasks_blocked()  # the write is under way, blocked
            received += await receiver.receive_some(10)  # part of the frame is out
            scope.cancel()  # the caller gives up mid-frame
            while len(received) < len(frame):
                received += await receiver.receive_some(len(frame))
        assert bytes(received) == frame
        assert finished.is_set()  # the cancel lands after the write, at the next checkpoint

    trio.run(main)


def test_a_write_the_peer_never_reads_fails_after_the_timeout() -> None:
    async def main() -> None:
        sender, _receiver = trio.testing.lockstep_stream_pair()
        stream = _TrioStream(sender, write_timeout=15)
        with pytest.raises(TimeoutError, match="15 s"):
            await stream.send_all(b"PING\r\n")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
