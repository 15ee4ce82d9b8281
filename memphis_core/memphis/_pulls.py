"""Theory of operation: JetStream pulls, the fetches that wait for them, and what a consumer holds.

A pull is one ``$JS.API.CONSUMER.MSG.NEXT`` request on one partition's durable: messages arrive
on its own inbox until the batch is full or the server ends it with a status (docs/protocol.md
§7.6). Pulls and fetches are kept apart:

* a pull puts every message it receives into the consumer's :class:`~._deliveries.Held` store,
  whoever asked for it; a consumer has at most one pull under way per partition;
* a fetch (``Consumer.fetch``, one step of an iteration, one turn of a consume loop) takes from
  that store, and waits while it is empty, starting a pull on each partition it reads that has
  none under way.

So there is one place where unread messages live, and handing out, giving back and ordering are
decided there and nowhere else. Everything that decides *which state a pull is in* lives in this
module, as data: :class:`Pull` asks :func:`transition` where to go, and nothing else sets
``Pull.state``. A pair missing from the table raises ``LocalProtocolError``. The table below is
generated from ``TABLE`` by :func:`render_table` (``python -m memphis_core.memphis._pulls``
prints it), and a test fails when the two differ. Each row is ``state  input  next state``::

    OPEN       message    OPEN
               full       ENDED
               heartbeat  OPEN
               over       ENDED
               gone       FAILED
               refused    FAILED
               retry      RETRYING
               give_up    FAILED
               abandon    ABANDONED
    RETRYING   message    RETRYING
               full       ENDED
               heartbeat  RETRYING
               over       ENDED
               gone       FAILED
               refused    FAILED
               retry      RETRYING
               give_up    FAILED
               abandon    ABANDONED
    ABANDONED  message    ABANDONED
               full       ENDED
               heartbeat  ABANDONED
               over       ENDED
               gone       ENDED
               refused    ENDED

When a fetch ends (docs/protocol.md §7.7):

* at once, when the store holds messages for it (given back first, then resent dead letters,
  then what pulls brought in), unless an earlier fetch still waiting is collecting them: then
  after it, fetches being served in the order they asked;
* an *eager* fetch (the consume loop's, an iteration's) at the end of the first read that
  brought it a message: latency over batch size;
* a plain fetch when its batch is full, or when it holds messages and every pull it waits on
  has received nothing yet or was told by the server that nothing more is waiting (the
  ``pending`` count of the last ack subject is 0), or when all its pulls are over;
* any fetch, at the latest, when its own wait (``batch_max_wait_time``, or its ``timeout``)
  ends, also while a pull it waits on without having sent it (a prefetch, the consume loop's
  next pull) goes on longer on the server (``Pulls.handle_timeout``);
* a fetch whose caller stopped waiting (cancelled, timed out, ``stop_consume``) at once, empty.

However it ends, its pulls still open are not cut short: they run to their own expiry on the
server (a fetch's own pulls expire with its wait) and what they bring goes into the store, for
the next fetch, iteration or consume turn, which waits on them rather than pull again; a read
later than ``max_ack_time`` finds it delivered again by the broker. Dropping a pull's inbox
would make the server deliver again, at once, a message it routed to the pull in that instant,
spending a delivery no user code saw (docs/protocol.md §7.7). A pull on the wire is abandoned
(its inbox dropped) only when no read is coming: when an eager reader leaves (a consume loop
stopped, an iteration left: ``Pulls.end_eager_pull``), since its pulls refill for a whole
``batch_max_wait_time`` nobody asked to wait and would hold the group's messages for nobody
(every pull no fetch waits on ends then, also one a plain fetch left running); and when its
consumer goes away (closed, destroyed, gone, the connection closing), after which what still
arrives is nacked. One not on the wire (a retry waiting out its backoff) ends with its fetch,
and one that a 503 answers once its fetch ended is not sent again: nothing can be on its way to
it.

Once a fetch has taken its messages, the next pull may start at once, while the caller works:
with ``prefetch``, and for an eager fetch that took messages, on each of its partitions that has
no pull under way and holds less than half a batch (nats.go's Consume refills at half).

A fetch without a partition key or number reads every partition at once, so a drain loop
(``while batch := fetch()``) only ends when every partition is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from memphis_core.nats._errors import (
    ConnectionClosedError,
    ConnectionLostError,
    MemphisError,
    NoRespondersError,
    RequestTimeoutError,
)
from memphis_core.nats._frames import Msg
from memphis_core.nats._state import TableEnum, render, step

from ._deliveries import ConsumerState, Delivery, consume_should_stop
from ._dispatch import Dispatcher, ReplyHandler
from ._errors import StationTemporarilyUnavailableError, StationUnreachableError
from ._jetstream import IN_PROGRESS, pull_body, pull_subject
from ._operation import Operation
from ._options import FetchOptions
from ._partitions import choose_partition, stream_name
from ._producers import retry_delay

__all__ = [
    "STATION_UNAVAILABLE",
    "STATION_UNREACHABLE",
    "TABLE",
    "Fetch",
    "Pull",
    "PullInput",
    "PullState",
    "Pulls",
    "Reader",
    "render_table",
    "transition",
]

# The Go SDK's text (docs/protocol.md §7.9, §11.2): applications match on it.
STATION_UNREACHABLE: Final = "station unreachable"
# Worded apart from STATION_UNREACHABLE on purpose: this one heals on its own (a leader election,
# docs/cluster-client.md), that one never does; a consume loop must tell them apart.
STATION_UNAVAILABLE: Final = "memphis: station temporarily unavailable (no JetStream leader)"
# How long past a pull's own expiry we wait for the server's 408 before calling it over.
# docs/protocol.md §7.6: a pull the server never ends is given up ``expires`` + 1 s after it was
# sent. Without a grace the client would give up just before the 408 that would have brought the
# last messages with it.
_PULL_GRACE: Final = 1.0
# 409 texts after which the consumer is gone for good rather than momentarily busy.
# Matched as prefixes of the status description, lower-cased: nats-server words 409s for humans
# ("Consumer Deleted"), and other 409s ("Exceeded MaxWaiting") only mean "busy".
_GONE: Final = ("consumer deleted", "consumer not found", "stream not found")
# Statuses that end a pull normally: 404 no messages, 408 expired, 409 busy/limits.
# docs/protocol.md §7.6. A pull that ends this way is a normal (maybe empty) batch, not an error: an
# idle station answers every pull with a 404 or 408.
_PULL_OVER: Final = frozenset({404, 408, 409})
# A message handed out again is only handed out well before the broker redelivers it (at
# max_ack_time): a tenth of max_ack_time (at most 1 s) of margin covers the time between a fetch
# returning it and the application acknowledging it.
_MAX_DEADLINE_MARGIN: Final = 1.0
# A fetch whose wait has less than this left ends rather than send a pull that would expire on
# its way (the server refuses an ``expires`` below a millisecond).
_MIN_PULL_WAIT: Final = 0.01


def delivery_deadline(max_ack_time: float, now: float) -> float:
    """When a message received (or refreshed) at ``now`` must no longer be handed out: the
    broker's ack timer less a margin, so an ack sent at the last moment still arrives first."""
    return now + max_ack_time - min(max_ack_time / 10, _MAX_DEADLINE_MARGIN)


class PullState(TableEnum):
    OPEN = "open"  # MSG.NEXT sent (or queued): the server may deliver into its inbox
    RETRYING = "retrying"  # a 503 answered it: the durables were looked up, re-sent after a backoff
    ABANDONED = "abandoned"  # no read is coming: inbox dropped, what is on its way still arrives
    ENDED = "ended"  # over: full, ended by the server, expired, or drained after an abandon
    FAILED = "failed"  # over with an error that the fetches waiting on it hear


class PullInput(TableEnum):
    MESSAGE = "message"  # a delivery that leaves room in the batch
    FULL = "full"  # the delivery that completes the batch: the server ends the pull too
    HEARTBEAT = "heartbeat"  # status 100: idle heartbeat or flow control, the pull goes on
    OVER = "over"  # 404, 408, a busy 409, no answer in time, the connection lost
    GONE = "gone"  # 409 "consumer deleted" and the like: the durable will never deliver again
    REFUSED = "refused"  # any other status or error, nothing received
    RETRY = "retry"  # 503 no responders, nothing received, time left: pull again after a backoff
    GIVE_UP = "give_up"  # 503 with no time left or no fetch waiting, or the durable is gone
    ABANDON = "abandon"  # its eager reader or its consumer went, or a retry has nobody to read it


S, In = PullState, PullInput

_LIVE: Final = {
    In.MESSAGE: None,  # stays in its state
    In.FULL: S.ENDED,
    In.HEARTBEAT: None,
    In.OVER: S.ENDED,
    In.GONE: S.FAILED,
    In.REFUSED: S.FAILED,
    In.RETRY: S.RETRYING,
    In.GIVE_UP: S.FAILED,
    In.ABANDON: S.ABANDONED,
}
_TABLE: dict[tuple[PullState, PullInput], PullState] = {}
for _state in (S.OPEN, S.RETRYING):
    for _input, _target in _LIVE.items():
        _TABLE[(_state, _input)] = _state if _target is None else _target
# An abandoned pull has no reader to fail or to retry for: whatever ends it only ends it. It has no
# RETRY, GIVE_UP or ABANDON row: it is never re-sent, and abandoned once.
for _input in (In.FULL, In.OVER, In.GONE, In.REFUSED):
    _TABLE[(S.ABANDONED, _input)] = S.ENDED
_TABLE[(S.ABANDONED, In.MESSAGE)] = S.ABANDONED
_TABLE[(S.ABANDONED, In.HEARTBEAT)] = S.ABANDONED
# ENDED and FAILED are terminal: the pull's request is closed, nothing more can arrive for it.
del _state, _input, _target

TABLE: Final = _TABLE
#: States in which the pull is a partition's pull under way (``ConsumerState.pulls``).
LIVE_STATES: Final = frozenset({S.OPEN, S.RETRYING})


def transition(state: PullState, event: PullInput) -> PullState:
    """Return the state after ``event`` in ``state``; raise if the pair is not allowed."""
    return step(TABLE, state, event, "the pull")


def render_table() -> str:
    """The transition table as aligned text: one ``state  input  next`` row per cell, in the
    declaration order of :class:`PullState` and :class:`PullInput`."""
    return render(TABLE, PullState, PullInput)


class Fetch:
    """A fetch waiting for messages: what it reads and when it may end."""

    __slots__ = (
        "batch",
        "deadline",
        "eager",
        "op",
        "partitions",
        "prefetch",
        "pull_batch",
        "started",
    )

    def __init__(
        self,
        partitions: tuple[int | None, ...],
        batch: int,
        pull_batch: int,
        *,
        eager: bool,
        prefetch: bool,
    ) -> None:
        self.op: Operation[list[Delivery]] = Operation("fetch")
        self.partitions = partitions
        self.batch = batch  # most messages it returns
        self.pull_batch = pull_batch  # the batch of the pulls it starts
        self.eager = eager
        self.prefetch = prefetch
        self.deadline = 0.0  # when its wait ends (``batch_max_wait_time`` or its timeout)
        # The partitions it pulled itself. One it waited on without pulling (another fetch's
        # pull, a prefetch) is pulled for it once that pull ends early; one it pulled is not
        # pulled again, so a pull the server ends at once (a busy 409) cannot make a loop.
        self.started: set[int | None] = set()


class Reader:
    """One consumer's pulls under way and fetches waiting (``Pulls.reader``)."""

    __slots__ = ("pulls", "waiters")

    def __init__(self) -> None:
        # The pull under way on each partition: at most one, which bounds what the consumer takes
        # from the group ahead of its readers (docs/protocol.md §7.7).
        self.pulls: dict[int | None, Pull] = {}
        # Fetches waiting for messages, served in the order they asked.
        self.waiters: list[Fetch] = []


class Pull(ReplyHandler):
    """One JetStream pull on one partition's durable; its messages go to the consumer's store."""

    __slots__ = (
        "batch",
        "consumer",
        "deadline",
        "last",
        "partition",
        "pulls",
        "received",
        "retries",
        "state",
        "token",
    )

    def __init__(
        self, pulls: Pulls, consumer: ConsumerState, partition: int | None, batch: int
    ) -> None:
        self.pulls = pulls
        self.consumer = consumer
        self.partition = partition
        self.batch = batch
        self.state = PullState.OPEN
        self.received = 0  # the server counts these against ``batch``
        self.last: Delivery | None = None  # the latest delivery: its ack subject says what waits
        self.token = 0  # the session request carrying it
        self.deadline = 0.0  # when the server ends it (its ``expires``)
        self.retries = 0  # pulls re-sent after a 503

    def _step(self, event: PullInput) -> PullState:
        before = self.state
        self.state = transition(before, event)
        return before

    @property
    def quiet(self) -> bool:
        """Nothing more to wait for from it: nothing received yet (an empty partition answers
        nothing until it expires), or the server said no message is left after the last."""
        last = self.last
        if last is None:
            return True
        meta = last.metadata
        return meta is None or meta.pending == 0

    def on_reply(self, token: int, msg: Msg | None, now: float) -> bool:
        if msg is None:
            raise AssertionError("a pull completed without a message")
        pulls = self.pulls
        status = msg.status
        if status is None:
            # The local deadline ends a little before the broker's ack wait: a message given back
            # unread is only handed out again while an ack can still reach the broker in time.
            wait = self.consumer.options.max_ack_time
            delivery = Delivery(msg, self.consumer, self.partition, delivery_deadline(wait, now))
            self.received += 1
            full = self.received >= self.batch
            self._step(PullInput.FULL if full else PullInput.MESSAGE)
            self.last = delivery
            pulls.received(delivery)
            if not full:
                return False
            # The batch is full: no more messages can come for this pull (the server counts the
            # batch too), so the request ends without waiting for a status.
            pulls.dispatcher.session.cancel_request(token)
            pulls.ended(self, None, now)
            return True
        # A 100 carries no message; ending the pull on it would return an empty batch while the
        # server still holds the pull open.
        if status == 100:
            self._step(PullInput.HEARTBEAT)
            return False
        # Every other status ends the pull on the server's side (docs/protocol.md §7.6).
        pulls.dispatcher.session.cancel_request(token)
        error: MemphisError | None = None
        if status == 409 and msg.description.lower().startswith(_GONE):
            # The durable was deleted under us: nothing will ever come from it again.
            self._step(PullInput.GONE)
            error = StationUnreachableError(STATION_UNREACHABLE)
        elif status not in _PULL_OVER and not self.received:
            # 400 (bad request) and the like: say so rather than look like "no messages".
            self._step(PullInput.REFUSED)
            error = MemphisError(f"memphis: pull failed: {status} {msg.description}")
        else:
            # 404 no messages, 408 expired, other 409s (too many pulls waiting...): over.
            self._step(PullInput.OVER)
        pulls.ended(self, error, now)
        if isinstance(error, StationUnreachableError):
            # After the pull left its partition: the consumer's other pulls end with it.
            pulls.gone(self.consumer)
        return True

    def on_error(self, token: int, error: MemphisError, now: float) -> None:
        pulls = self.pulls
        if self.state is PullState.ABANDONED:
            # The drain after the abandon is over (or the connection went): nothing more comes.
            self._step(PullInput.OVER)
            pulls.ended(self, None, now)
            return
        if isinstance(error, RequestTimeoutError | ConnectionLostError):
            # Expired without the server's 408, or the transport died: what arrived is real, and
            # its ack subjects stay valid after a reconnect.
            self._step(PullInput.OVER)
            pulls.ended(self, None, now)
            return
        if not isinstance(error, NoRespondersError):
            self._step(PullInput.REFUSED)
            pulls.ended(self, error, now)
            return
        # Transient-error retry (docs/cluster-client.md, "Leader elections"). Nobody serves
        # MSG.NEXT for this durable: it is gone, or its stream is electing a leader. The durables
        # are looked up on the first 503 only (only "not found" makes them unreachable), and the
        # pull is re-sent with backoff until its own deadline.
        consumer = self.consumer
        if self.state is PullState.OPEN:
            pulls.check_durables(consumer, now)
        delay = retry_delay(self.retries)
        if self.received:
            # Messages already delivered are handed out even when the rest of the pull hit a 503:
            # their ack subjects are valid, and holding them back would only make them wait out
            # max_ack_time.
            self._step(PullInput.OVER)
            pulls.ended(self, None, now)
        elif consumer.unreachable:
            self._step(PullInput.GIVE_UP)
            pulls.ended(self, StationUnreachableError(STATION_UNREACHABLE), now)
        elif (
            now + delay < self.deadline
            and consumer.active
            and not pulls.dispatcher.session.closed
            # Only for a fetch waiting on it: a 503 leaves nothing on the wire, so a pull whose
            # fetch ended ends here at no cost, as ``_leave`` ends one already in its backoff,
            # rather than be re-sent to take messages for a store nobody reads.
            and pulls.waited_on(self)
        ):
            self._step(PullInput.RETRY)
            self.retries += 1
            pulls.send(self, now, delay)
        else:
            self._step(PullInput.GIVE_UP)
            unavailable = StationTemporarilyUnavailableError(STATION_UNAVAILABLE)
            unavailable.__cause__ = error
            pulls.ended(self, unavailable, now)

    def abandon(self) -> None:
        """No read is coming for it (its eager reader or its consumer went away, or it waits to
        be re-sent for a fetch that ended): drop its inbox. What is already on its way still
        arrives (``received``) until the PONG that follows the UNSUB; a pull not on the wire
        ends at once."""
        # Stepped before ``abandon_request``, which may end the request at once for a pull never
        # sent (and then calls ``on_error``, which expects the abandoned state).
        self._step(PullInput.ABANDON)
        self.pulls.dispatcher.session.abandon_request(self.token)


class Pulls:
    """Every consumer's pulls and waiting fetches on this connection."""

    __slots__ = (
        "_arrived",
        "_fetches",
        "_readers",
        "check_durables",
        "closing",
        "dispatcher",
        "gone",
        "release",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        check_durables: Callable[[ConsumerState, float], None],
        gone: Callable[[ConsumerState], None],
        release: Callable[[list[Delivery]], None],
    ) -> None:
        self.dispatcher = dispatcher
        #: Look the durables up now (after a 503 on a pull).
        self.check_durables = check_durables
        #: The durable is gone: the consumer is unreachable from now on.
        self.gone = gone
        #: Nack messages nobody will read.
        self.release = release
        # Consumers whose pulls received messages in the bytes being fed: their fetches are
        # served once the whole chunk is parsed (``hand_over``).
        self._arrived: dict[ConsumerState, None] = {}
        # Waiting fetches by their operation, to find one its caller abandons.
        self._fetches: dict[Operation[list[Delivery]], tuple[ConsumerState, Fetch]] = {}
        self._readers: dict[ConsumerState, Reader] = {}
        self.closing = False

    def reader(self, consumer: ConsumerState) -> Reader:
        """``consumer``'s pulls under way and waiting fetches."""
        reader = self._readers.get(consumer)
        if reader is None:
            reader = self._readers[consumer] = Reader()
        return reader

    # ---------------------------------------------------------------- fetching

    def fetch(
        self, consumer: ConsumerState, opts: FetchOptions, now: float, *, take: int | None = None
    ) -> Operation[list[Delivery]]:
        """Messages for ``consumer`` (see ``Client.fetch``); ``take``: hand out at most this
        many although the pulls ask for ``opts.batch_size`` (an iteration's one at a time)."""
        station = consumer.station
        partitions: tuple[int | None, ...]
        if opts.partition_key is not None or opts.partition_number is not None:
            partitions = (
                choose_partition(
                    station.partitions,
                    key=opts.partition_key,
                    number=opts.partition_number,
                    rr=consumer.rr,
                    station=station.internal,
                    fetch=True,
                ),
            )
        else:
            # Every partition, not one per call: a fetch that read only one would return nothing
            # while another holds messages, and end a drain loop early. A legacy station has one
            # stream without a ``$<p>`` suffix, which ``stream_name`` builds from None (§5.8).
            partitions = tuple(station.partitions) or (None,)
        size = opts.batch_size if take is None else take
        fetch = Fetch(partitions, size, opts.batch_size, eager=opts.eager, prefetch=opts.prefetch)
        if consumer.held.count(partitions, now) and not self._behind(consumer, partitions):
            self._finish(consumer, fetch, now, waited=False)
            return fetch.op
        # The fetch's own timeout shortens the pull on the server: it then ends with a 408 and
        # whatever arrived, instead of being cancelled with messages on their way.
        wait = consumer.options.batch_max_wait_time
        if opts.timeout is not None:
            wait = min(wait, opts.timeout)
        fetch.deadline = now + wait
        self._pull_for(consumer, fetch, now)
        self.reader(consumer).waiters.append(fetch)
        self._fetches[fetch.op] = (consumer, fetch)
        return fetch.op

    def _behind(self, consumer: ConsumerState, partitions: tuple[int | None, ...]) -> bool:
        """Whether a new fetch over ``partitions`` queues behind a waiting one that collects
        one of them (or the resent dead letters, which every fetch reads), rather than take
        at once the messages that one waits with (see ``serve``)."""
        reader = self._readers.get(consumer)
        if reader is None or not reader.waiters:
            return False
        held = consumer.held
        waited = {p for fetch in reader.waiters for p in fetch.partitions}
        return bool(held.dls) or any(p in waited for p in held.holding(partitions))

    def _pull_for(self, consumer: ConsumerState, fetch: Fetch, now: float) -> bool:
        """Start a pull for ``fetch`` on each of its partitions that has none under way and
        that it did not pull already; whether it started any."""
        under_way = self.reader(consumer).pulls
        started = False
        for partition in fetch.partitions:
            # A partition with a pull under way is waited on, not pulled again: a second pull
            # would take more of the group's messages than anyone asked for, and hold them
            # while other members could have them.
            if partition not in under_way and partition not in fetch.started:
                fetch.started.add(partition)
                self._start(consumer, partition, fetch.pull_batch, now, fetch.deadline - now)
                started = True
        return started

    def _start(
        self, consumer: ConsumerState, partition: int | None, batch: int, now: float, wait: float
    ) -> None:
        pull = Pull(self, consumer, partition, batch)
        pull.deadline = now + wait
        self.reader(consumer).pulls[partition] = pull
        self.send(pull, now, 0.0)

    def send(self, pull: Pull, now: float, delay: float) -> None:
        """(Re)send ``pull``'s request for what is left of its batch and of its wait."""
        consumer = pull.consumer
        stream = stream_name(consumer.station.internal, pull.partition)
        wait = pull.deadline - now - delay
        # Never replayed after a reconnect: the server would deliver a second batch into an inbox
        # nobody reads any more.
        pull.token = self.dispatcher.session.request(
            pull_subject(stream, consumer.durable),
            pull_body(pull.batch - pull.received, wait),
            now=now,
            timeout=wait + delay + _PULL_GRACE,
            multi=True,
            replay=False,
            delay=delay,
        )
        self.dispatcher.register(pull.token, pull)

    def received(self, message: Delivery) -> None:
        """A pull's message: into the store, served to fetches once the chunk is parsed."""
        consumer = message.consumer
        if not consumer.active or self.closing:
            # No next fetch will come: nack now so another member gets it at once, instead of
            # after ``max_ack_time`` (docs/protocol.md §7.7).
            self.release([message])
            return
        consumer.held.add(message)
        self._arrived[consumer] = None

    def resent(self, message: Delivery) -> None:
        """A dead letter the broker resent (core NATS, §7.10): kept before everything else."""
        consumer = message.consumer
        consumer.held.dls.append(message)
        self._arrived[consumer] = None

    def ended(self, pull: Pull, error: MemphisError | None, now: float) -> None:
        """``pull`` is over (its state says how): free its partition and serve its fetches."""
        consumer = pull.consumer
        reader = self._readers.get(consumer)
        if reader is None or reader.pulls.get(pull.partition) is not pull:
            return  # abandoned before (or its consumer dropped): its partition has moved on
        del reader.pulls[pull.partition]
        last = pull.last
        meta = None if last is None else last.metadata
        consumer.held.backlog[pull.partition] = 0 if meta is None else meta.pending
        if error is not None:
            # Those waiting on this partition with nothing else to take hear the error; what was
            # received stays held for the next fetch.
            for fetch in list(self.reader(consumer).waiters):
                if pull.partition in fetch.partitions and not consumer.held.count(
                    fetch.partitions, now
                ):
                    self._unwait(consumer, fetch)
                    fetch.op.fail(error)
        self.serve(consumer, now)

    def hand_over(self, now: float) -> None:
        """The bytes fed so far are parsed: serve the fetches of consumers that received.

        Once per chunk rather than per message: batches are as large as the reads, and an
        eager fetch gets every message of the read it ends with.
        """
        if not self._arrived:
            return  # the common case, on every chunk read: no new dict, no loop
        arrived, self._arrived = self._arrived, {}
        for consumer in arrived:
            self.serve(consumer, now)

    def serve(self, consumer: ConsumerState, now: float) -> None:
        """End the waiting fetches that may end now, in the order they asked.

        A fetch that must go on waiting holds back the later ones that read a partition in
        which it holds messages (or would share the resent dead letters with it): they must
        not take the messages it is collecting. A later fetch of other partitions is served
        all the same, rather than wait for the end of a pull it does not read.
        """
        held = consumer.held
        reader = self._readers.get(consumer)
        if reader is None:
            return  # dropped (destroyed, gone) in the chunk that brought its messages
        waiting = False  # an earlier fetch goes on waiting
        # The partitions holding messages that an earlier fetch, still waiting, is collecting.
        collecting: set[int | None] = set()
        for fetch in list(reader.waiters):
            if waiting and (held.dls or not collecting.isdisjoint(fetch.partitions)):
                collecting.update(held.holding(fetch.partitions))
                continue
            available = held.count(fetch.partitions, now)
            live = [reader.pulls[p] for p in fetch.partitions if p in reader.pulls]
            if available < fetch.batch and (
                (live and not (available and (fetch.eager or all(p.quiet for p in live))))
                # Its pulls are over but it has time left and never pulled some partition
                # itself (it waited on another fetch's pull): pull it now.
                or (
                    not live
                    and not available
                    and fetch.deadline - now >= _MIN_PULL_WAIT
                    and not self.closing
                    and self._pull_for(consumer, fetch, now)
                )
            ):
                waiting = True
                collecting.update(held.holding(fetch.partitions))
                continue
            self._unwait(consumer, fetch)
            self._finish(consumer, fetch, now, waited=True)

    def next_deadline(self) -> float | None:
        """When a waiting fetch's own wait (``batch_max_wait_time`` or its ``timeout``) ends
        while a pull it waits on goes on longer (a prefetch, the consume loop's next pull,
        another fetch's): the server's end of that pull would come too late for it."""
        best: float | None = None
        for consumer, fetch in self._fetches.values():
            if (best is None or fetch.deadline < best) and self._outlasted(consumer, fetch):
                best = fetch.deadline
        return best

    def handle_timeout(self, now: float) -> None:
        """End, with what the store holds for them, the fetches whose wait is over although a
        pull they wait on goes on (see ``next_deadline``)."""
        for consumer, fetch in list(self._fetches.values()):
            if fetch.deadline <= now and self._outlasted(consumer, fetch):
                self._unwait(consumer, fetch)
                self._finish(consumer, fetch, now, waited=True)

    def _outlasted(self, consumer: ConsumerState, fetch: Fetch) -> bool:
        # A fetch's own pulls expire with its wait: the server's 408 ends it in time.
        under_way = self.reader(consumer).pulls
        return any(
            p in under_way and under_way[p].deadline > fetch.deadline for p in fetch.partitions
        )

    def _unwait(self, consumer: ConsumerState, fetch: Fetch) -> None:
        self.reader(consumer).waiters.remove(fetch)
        del self._fetches[fetch.op]

    def _finish(self, consumer: ConsumerState, fetch: Fetch, now: float, *, waited: bool) -> None:
        """End ``fetch`` with what the store holds for it; start the next pulls (prefetch)."""
        messages = consumer.held.take(fetch.partitions, fetch.batch, now)
        self._refresh(messages, now)
        fetch.op.finish(messages)
        if waited and not fetch.eager:
            # A plain fetch took what it waited for: its pulls still open run on into the store
            # (``_leave``). An eager one's go on for the next turn of its loop anyway, and one
            # served from the store at once waited on no pull.
            self._leave(consumer, fetch.partitions)
        # The next pull starts now, while the caller works on this batch, not when it asks again
        # (docs/protocol.md §7.7): with ``prefetch``, and for the consume loop and an iteration
        # (eager), as soon as a partition holds less than half a batch, as nats.go's Consume
        # refills its buffer at half. Only where no pull is under way: the held messages are
        # bounded by one batch per partition, and their ack time is restored when they are
        # handed out (``_refresh``). Never while closing, nor for a consumer gone: a new pull
        # would bring in a batch nobody will read.
        # An eager fetch that returned nothing found the station drained: the loop's own pause
        # (``next_pull``) comes first.
        if (fetch.prefetch or (fetch.eager and messages)) and not (
            self.closing or not consumer.active
        ):
            wait = consumer.options.batch_max_wait_time
            low = max(1, fetch.pull_batch // 2)
            under_way = self.reader(consumer).pulls
            for partition in fetch.partitions:
                if partition not in under_way and consumer.held.count((partition,), now) < low:
                    self._start(consumer, partition, fetch.pull_batch, now, wait)

    def _leave(self, consumer: ConsumerState, partitions: Iterable[int | None]) -> None:
        """A fetch over ``partitions`` ended (served, cancelled, timed out): its pulls that
        nobody waits on any more go on to their own expiry, into the store.

        They are not cut short by dropping their inbox, although nobody reads them now: a
        message the server routes to a pull in the instant its UNSUB arrives finds no interest
        and is delivered again at once, which spends one of ``max_msg_deliveries`` on a delivery
        no user code saw (docs/protocol.md §7.7). Left alone, the pull ends at its ``expires``
        (a fetch's own pulls expire with its wait, which its caller chose) and what it brings
        is handed out first by the next fetch, iteration or consume turn. What that holds back
        is bounded: one pull per partition, one batch each, and each message gets its ack time
        back when handed out late (``_refresh``). Only a pull not on the wire (a retry after a
        503 waiting out its backoff, or one made while offline) ends here: nothing can be on
        its way to it, so ending it costs nothing, and re-sending it would only take messages
        nobody asked for.
        """
        self._end_unwaited(consumer, partitions, on_the_wire=False)

    def _end_unwaited(
        self, consumer: ConsumerState, partitions: Iterable[int | None], *, on_the_wire: bool
    ) -> None:
        """Abandon the pulls of ``partitions`` that no waiting fetch reads: every one when
        ``on_the_wire``, else only those whose request is not written yet."""
        reader = self.reader(consumer)
        waited = {p for fetch in reader.waiters for p in fetch.partitions}
        session = self.dispatcher.session
        for partition in partitions:
            pull = reader.pulls.get(partition)
            if pull is None or partition in waited:
                continue
            if not on_the_wire:
                request = session.pending(pull.token)
                if request is not None and request.sent:
                    continue
            del reader.pulls[partition]
            pull.abandon()

    def waited_on(self, pull: Pull) -> bool:
        """Whether a waiting fetch reads ``pull``'s partition."""
        reader = self._readers.get(pull.consumer)
        return reader is not None and any(pull.partition in f.partitions for f in reader.waiters)

    def _refresh(self, messages: list[Delivery], now: float) -> None:
        """Messages that waited in the store (a slow handler, a fetch given back) have used up
        part of ``max_ack_time`` on the broker before anyone saw them. Those with less than
        half of it left are refreshed: ``+WPI`` restarts the broker's ack timer and their
        deadline moves, so the application gets the whole budget instead of acking after the
        broker has redelivered."""
        for message in messages:
            if message.deadline - now < message.consumer.options.max_ack_time / 2:
                self.in_progress(message, now)

    def in_progress(self, message: Delivery, now: float) -> None:
        """``+WPI``: still being worked on. The broker restarts the message's ack timer, so
        it is redelivered ``max_ack_time`` from now rather than from its delivery; nothing is
        sent for a DLS resend, which has no ack timer (docs/protocol.md §7.8)."""
        reply = message.msg.reply
        if reply is None:
            return
        wait = message.consumer.options.max_ack_time
        message.deadline = delivery_deadline(wait, now)
        self.dispatcher.publish([(reply, IN_PROGRESS)])

    # ---------------------------------------------------------------- readers leaving

    def abandon_fetch(self, op: Operation[list[Delivery]]) -> None:
        """The caller stopped waiting for ``op`` (cancelled, timed out, stop_consume).

        Its messages stay with the consumer: the next fetch returns them first (while their ack
        deadline holds), so a cancelled fetch costs no delivery attempt. Its pulls go on to
        their expiry and what they bring is kept the same way (``_leave``).
        """
        if op.done:
            if op.error is None:
                # A fetch that finished before the caller gave up: its messages were delivered to
                # the operation but never reached user code, so they count as unread.
                self.give_back(op.outcome())
            return
        found = self._fetches.get(op)
        if found is None:
            return
        consumer, fetch = found
        self._unwait(consumer, fetch)
        op.finish([])
        self._leave(consumer, fetch.partitions)

    def end_eager_pull(self, consumer: ConsumerState) -> None:
        """An eager reader left (a consume loop stopped, an iteration was left): end the pulls
        that went on for it, unless a fetch waits on them.

        Unlike a fetch's (``_leave``), these are cut short, race and all (docs/protocol.md
        §7.7): the client started them on its own, to refill while the reader worked, for a
        whole ``batch_max_wait_time`` that no caller asked to wait; and the reader said it is
        done. Left running, they would take messages from the durable into a store nobody
        reads, while other members of the group could have them, until ``max_ack_time``.
        What they already brought stays in the store for the next fetch.
        """
        # ``_readers.get``: a loop that ends after its consumer was dropped must not bring its
        # reader back (one per consumer ever created would then stay in memory).
        reader = self._readers.get(consumer)
        if reader is not None:
            self._end_unwaited(consumer, list(reader.pulls), on_the_wire=True)

    def give_back(self, messages: list[Delivery]) -> None:
        """Keep unread messages for the next fetch of their consumer, before what arrived
        since; when there will be none (the consumer is gone, the connection is closing) they
        are nacked, so the broker hands them to another member at once."""
        consumers: dict[ConsumerState, list[Delivery]] = {}
        for message in messages:
            if message.settled is None:
                consumers.setdefault(message.consumer, []).append(message)
        for consumer, unread in consumers.items():
            if not consumer.active or self.closing:
                self.release(unread)
            else:
                consumer.held.give_back(unread)

    def drop(self, consumer: ConsumerState, error: MemphisError | None) -> None:
        """``consumer`` goes away: its fetches end (with ``error``, or empty), its pulls end,
        and what it holds is nacked for redelivery to another member."""
        for fetch in list(self.reader(consumer).waiters):
            self._unwait(consumer, fetch)
            if error is None:
                fetch.op.finish([])
            else:
                fetch.op.fail(error)
        # Cut short, all of them: no read of this consumer will come, so what its pulls bring
        # could only be nacked, and dropping their inboxes now makes that as little as the round
        # trip of the UNSUB (docs/protocol.md §7.7).
        self._end_unwaited(consumer, list(self.reader(consumer).pulls), on_the_wire=True)
        self.release(consumer.held.clear())
        self._readers.pop(consumer, None)

    def close(self, consumers: Iterable[ConsumerState]) -> None:
        """The connection is closing: every fetch fails, every pull ends, and what is held or
        still arrives is nacked."""
        self.closing = True
        for consumer in consumers:
            self.drop(consumer, ConnectionClosedError("the connection is closing"))

    # ---------------------------------------------------------------- the consume policy

    def next_pull(
        self,
        consumer: ConsumerState,
        received: int,
        error: MemphisError | None,
        now: float,
        *,
        chosen: bool = False,
    ) -> float | None:
        """See ``Client.next_pull``."""
        if consume_should_stop(error):
            return None
        if error is not None:
            return consumer.options.pull_interval
        held = consumer.held
        # Held messages count only for a loop that reads every partition: those of another
        # partition would skip the pause for ever on a chosen one.
        partitions = tuple(consumer.station.partitions) or (None,)
        reader = self._readers.get(consumer)
        if (
            received >= consumer.options.batch_size
            or (reader is not None and reader.pulls)
            or any(held.backlog.get(p, 0) > 0 for p in partitions)
            or (not chosen and held.count(partitions, now))
        ):
            return 0.0
        return consumer.options.pull_interval


if __name__ == "__main__":
    print(render_table())
