"""Reply handlers: what the client does when a reply (or a failure) arrives for a token.

Each request the client sends is registered with one handler object. ``on_reply`` gets every
reply on the shared inbox for that token; ``on_error`` gets the session's ``RequestFailed``
(timeout, no responders, connection lost or closed). A handler returns True when it is finished
so the client can forget it (multi-reply pulls stay registered until then).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._consumer import ConsumerState, ReceivedMessage
from ._errors import (
    ConnectionLostError,
    MemphisError,
    NoRespondersError,
    RemoteProtocolError,
    RequestTimeoutError,
    StationUnreachableError,
)
from ._frames import Msg
from ._jetstream import PubAck, parse_pub_ack
from ._operation import Operation
from ._producer import ProducerState

if TYPE_CHECKING:
    from ._client import Client

__all__ = [
    "PENDING",
    "STATION_UNREACHABLE",
    "ConsumerInfo",
    "Control",
    "Countdown",
    "Flush",
    "Handler",
    "Produce",
    "Pull",
]

STATION_UNREACHABLE: Final = "station unreachable"
#: Returned by a Control ``parse`` whose operation is finished later by follow-up requests.
PENDING: Final = object()
# 409 texts after which the consumer is gone for good rather than momentarily busy.
_GONE: Final = ("consumer deleted", "consumer not found", "stream not found")
# Statuses that end a pull normally: 404 no messages, 408 expired, 409 busy/limits.
_PULL_OVER: Final = frozenset({404, 408, 409})


class Handler:
    __slots__ = ()

    def on_reply(self, client: Client, token: int, msg: Msg | None, now: float) -> bool:
        raise NotImplementedError

    def on_error(self, client: Client, token: int, error: MemphisError, now: float) -> None:
        raise NotImplementedError


class Control(Handler):
    """A ``$memphis_*`` control request: parse the reply; retry on timeout (section 2)."""

    __slots__ = ("body", "op", "parse", "retries", "subject", "timeout")

    def __init__(
        self,
        op: Operation[Any],
        subject: str,
        body: bytes,
        parse: Callable[[bytes], Any],
        timeout: float,
        retries: int,
    ) -> None:
        self.op = op
        self.subject = subject
        self.body = body
        self.parse = parse
        self.timeout = timeout
        self.retries = retries

    def on_reply(self, client: Client, token: int, msg: Msg | None, now: float) -> bool:
        assert msg is not None
        try:
            result = self.parse(msg.payload)
        except MemphisError as exc:
            self.op.fail(exc)
            return True
        if result is not PENDING:
            self.op.finish(result)
        return True

    def on_error(self, client: Client, token: int, error: MemphisError, now: float) -> None:
        if isinstance(error, RequestTimeoutError) and self.retries > 0 and not self.op.done:
            # The Go SDK retries control requests only on timeout, 5 times (section 2).
            self.retries -= 1
            client.send_control(self, now)
            return
        self.op.fail(error)


class Produce(Handler):
    """Waits for one PubAck; keeps the producer's in-flight count and first async failure."""

    __slots__ = ("is_async", "op", "producer", "size")

    def __init__(
        self, op: Operation[PubAck | None], producer: ProducerState, is_async: bool, size: int
    ) -> None:
        self.op = op
        self.producer = producer
        self.is_async = is_async
        self.size = size

    def on_reply(self, client: Client, token: int, msg: Msg | None, now: float) -> bool:
        assert msg is not None
        producer = self.producer
        producer.in_flight -= 1
        producer.in_flight_bytes -= self.size
        payload = msg.payload
        if self.is_async and b'"error"' not in payload:
            # Hot path: nobody reads an async produce's PubAck, only whether it failed.
            self.op.finish(None)
            return True
        try:
            self.op.finish(parse_pub_ack(payload))
        except (MemphisError, RemoteProtocolError) as exc:
            self._failed(exc)
        return True

    def on_error(self, client: Client, token: int, error: MemphisError, now: float) -> None:
        self.producer.in_flight -= 1
        self.producer.in_flight_bytes -= self.size
        self._failed(error)

    def _failed(self, error: MemphisError) -> None:
        self.op.fail(error)
        if self.is_async and self.producer.first_error is None:
            self.producer.first_error = error


class Pull(Handler):
    """One JetStream pull: collect messages until the batch is full or the server ends it.

    The batch goes to the caller's operation; an abandoned pull (nobody waits any more) nacks
    it instead, and a prefetch pull's batch is stored on the consumer by ``pull_finished``.
    """

    __slots__ = (
        "abandoned",
        "batch",
        "consumer",
        "messages",
        "op",
        "partition",
        "prefetch_next",
        "token",
    )

    def __init__(
        self,
        op: Operation[list[ReceivedMessage]],
        consumer: ConsumerState,
        partition: int | None,
        batch: int,
    ) -> None:
        self.op = op
        self.consumer = consumer
        self.partition = partition
        self.batch = batch
        self.messages: list[ReceivedMessage] = []
        self.abandoned = False  # nobody will read the result: give the messages back
        self.prefetch_next = False  # start the prefetch pull once this one is over
        self.token = 0  # the session request carrying it

    def _finish(self, client: Client, now: float) -> None:
        client.pull_finished(self, now)
        self.op.finish(self.messages)
        if self.abandoned:
            client.release_messages(self.messages)

    def on_reply(self, client: Client, token: int, msg: Msg | None, now: float) -> bool:
        assert msg is not None
        status = msg.status
        if self.abandoned and status is None:
            client.release_messages([ReceivedMessage(msg, self.consumer, self.partition)])
            return False
        if status is None:
            self.messages.append(ReceivedMessage(msg, self.consumer, self.partition))
            if len(self.messages) < self.batch:
                return False
        elif status == 100:
            return False  # idle heartbeat / flow control: the pull goes on
        elif status == 409 and msg.description.lower().startswith(_GONE):
            # The durable was deleted under us: nothing will ever come from it again.
            client.session.cancel_request(token)
            client.consumer_unreachable(self.consumer)
            self._fail(client, StationUnreachableError(STATION_UNREACHABLE), now)
            return True
        elif status not in _PULL_OVER and not self.messages:
            # 400 (bad request) and the like: say so rather than look like "no messages".
            client.session.cancel_request(token)
            self._fail(
                client, MemphisError(f"memphis: pull failed: {status} {msg.description}"), now
            )
            return True
        # 404 no messages, 408 expired, other 409s (too many pulls waiting...): the pull is over.
        client.session.cancel_request(token)
        self._finish(client, now)
        return True

    def on_error(self, client: Client, token: int, error: MemphisError, now: float) -> None:
        if self.abandoned:
            return  # the drain is over; the caller's operation finished long ago
        if isinstance(error, RequestTimeoutError | ConnectionLostError):
            # Expired without the server's 408, or the transport died: what arrived is real,
            # its ack subjects stay valid after a reconnect. (Pulls are never replayed: the
            # server would deliver a second batch into an inbox nobody reads.)
            self._finish(client, now)
        elif isinstance(error, NoRespondersError):
            # Nobody serves MSG.NEXT for this durable: gone, or briefly without a leader.
            # Check the durable now; only "consumer not found" makes it permanent.
            client.check_durables(self.consumer, now)
            self._fail(client, StationUnreachableError(STATION_UNREACHABLE), now)
        else:
            self._fail(client, error, now)

    def _fail(self, client: Client, error: MemphisError, now: float) -> None:
        client.pull_finished(self, now, failed=error)
        client.release_messages(self.messages)  # never handed out: let them be redelivered
        self.op.fail(error)


class Countdown:
    """Shared by the CONSUMER.INFO requests of one round: how many have still to answer."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


class ConsumerInfo(Handler):
    """``$JS.API.CONSUMER.INFO`` for one partition: at creation (all must exist) and as a ping."""

    __slots__ = ("consumer", "op", "remaining")

    def __init__(
        self, consumer: ConsumerState, op: Operation[ConsumerState] | None, remaining: Countdown
    ) -> None:
        self.consumer = consumer
        self.op = op  # None for the periodic ping
        self.remaining = remaining

    def on_reply(self, client: Client, token: int, msg: Msg | None, now: float) -> bool:
        assert msg is not None
        error = _js_api_error(msg.payload)
        if error is not None:
            self._failed(client, MemphisError(f"memphis: {error}"), error)
            return True
        self.remaining.left -= 1
        if self.remaining.left == 0 and self.op is not None:
            client.consumer_ready(self.consumer, self.op)
        return True

    def on_error(self, client: Client, token: int, error: MemphisError, now: float) -> None:
        self._failed(client, error, str(error))

    def _failed(self, client: Client, error: MemphisError, text: str) -> None:
        if self.op is not None:
            if not self.op.done:
                client.consumer_failed(self.consumer)
            self.op.fail(error)
        elif "consumer not found" in text or "stream not found" in text:
            # Section 8.7: the station (or the group's durable) was destroyed under us.
            client.consumer_unreachable(self.consumer)


class Flush(Handler):
    __slots__ = ("op",)

    def __init__(self, op: Operation[None]) -> None:
        self.op = op

    def on_reply(self, client: Client, token: int, msg: Msg | None, now: float) -> bool:
        self.op.finish(None)
        return True

    def on_error(self, client: Client, token: int, error: MemphisError, now: float) -> None:
        self.op.fail(error)


def _js_api_error(payload: bytes) -> str | None:
    """The ``error.description`` of a JetStream API reply, or None on success."""
    try:
        body = json.loads(payload)
    except ValueError:
        return f"malformed JetStream reply: {payload[:80]!r}"
    if not isinstance(body, dict):
        return f"malformed JetStream reply: {payload[:80]!r}"
    error = body.get("error")
    if error is None:
        return None
    if isinstance(error, dict):
        return str(error.get("description", error))
    return str(error)
