"""The facts a :class:`~._client.Client` reports to an observer (tracing, metrics).

The core stays sans-IO and stdlib-only: it does not know OpenTelemetry. A frontend that wants
spans sets ``Client.observer`` to an object of this shape (``_memphis_io``'s instrumentation,
docs/tracing.md); the client then reports each fact below at the moment it happens, under the
frontend's serialisation of core calls. With no observer (the default) every hook costs one
``is None`` test.

The facts the client itself sees: a produce accepted (before its bytes are encoded, so the
observer can add trace-context headers), its operation finishing (a PubAck or a failure,
noticed after each batch of events), and a settle. The facts only a frontend sees (messages
handed to a caller by a fetch, an iteration or a consume turn; a handler call's start and end)
are reported by the frontends' shared public classes on the same object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._deliveries import ConsumerState, Delivery
    from ._options import ProduceOptions
    from ._producers import ProduceOperation, ProducerState

__all__ = ["Observer", "ProduceWatch"]

#: What :meth:`Observer.producing` returns beside the options: called once with the produce's
#: operation (done later, or already failed), or with the error that refused it before any
#: byte was queued.
ProduceWatch = Callable[["ProduceOperation | None", "BaseException | None"], None]


class Observer(Protocol):
    """Receives the client's facts. Every method is called with the core's lock held (in
    memphis_sync) or on the event loop (the async frontends): it must not block."""

    def producing(
        self, producer: ProducerState, opts: ProduceOptions
    ) -> tuple[ProduceOptions, ProduceWatch]:
        """A produce was accepted for sending. Returns the options to send (the observer may
        add headers, such as W3C trace context) and the watch to call with its outcome."""
        ...

    def progress(self) -> None:
        """Events were processed: produce operations given to a watch may have finished."""
        ...

    def settling(self, delivery: Delivery, how: str) -> AbstractContextManager[None]:
        """``how`` (``ack``, ``nack``, ``delay``, ``dead_letter``) is queued for ``delivery``
        inside the returned context; an exception leaving it means the settle was refused."""
        ...

    def received(
        self,
        consumer: ConsumerState,
        deliveries: Sequence[Delivery],
        started: int,
        error: BaseException | None = None,
        *,
        batch: bool = True,
    ) -> None:
        """A fetch, an iteration step or a consume turn handed ``deliveries`` to its caller
        (or failed with ``error``); it started at ``started`` (``time.time_ns()``). Not called
        for messages that stay with the consumer (a cancelled fetch, prefetch). ``batch`` is
        False for an iteration step, which hands over one message by design."""
        ...

    def processing(
        self, consumer: ConsumerState, deliveries: Sequence[Delivery]
    ) -> AbstractContextManager[None]:
        """One ``consume()`` handler call on ``deliveries`` runs inside the returned context
        (the handler's exception, if any, passes through it)."""
        ...
