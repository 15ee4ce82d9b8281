"""The Dispatcher: routing session events to the handler that owns each request."""

from __future__ import annotations

from memphis_core.memphis._dispatch import Dispatcher, ReplyHandler
from memphis_core.nats._errors import MemphisError, RequestAbandonedError
from memphis_core.nats._events import ReplyReceived, RequestFailed
from memphis_core.nats._frames import Msg
from memphis_core.nats._session import Session
from tests.support.compiled import pure_only


class _Recorder(ReplyHandler):
    """Finishes on its first reply, as a pull does with its last message."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        self.seen.append("reply")
        return True

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        self.seen.append(f"error {type(error).__name__}")


def _msg() -> Msg:
    return Msg("orders$1.final", 1, None, b"x")


@pure_only
def test_a_handler_finished_by_a_reply_hears_nothing_more_from_the_same_batch() -> None:
    # An abandoned pull's last message and the PONG that ends its abandon can come in one read:
    # the RequestFailed was queued before the reply made the handler finish.
    handler = _Recorder()
    events = [
        ReplyReceived(7, _msg(), handler),
        RequestFailed(7, RequestAbandonedError("request abandoned"), handler),
        ReplyReceived(7, _msg(), handler),
    ]
    assert Dispatcher(Session()).dispatch(events, 0.0) == []
    assert handler.seen == ["reply"]


@pure_only
def test_a_failure_reaches_a_handler_that_is_not_finished() -> None:
    handler = _Recorder()
    events = [RequestFailed(8, RequestAbandonedError("request abandoned"), handler)]
    Dispatcher(Session()).dispatch(events, 0.0)
    assert handler.seen == ["error RequestAbandonedError"]
