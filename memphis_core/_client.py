"""The Memphis client, sans-IO: every Memphis operation on top of one NATS :class:`Session`.

A frontend drives it exactly like the session (``connection_made``, ``receive_data``,
``data_to_send``, ``next_deadline``, ``handle_timeout``, ``events``) and starts operations that
return :class:`Operation` handles. Everything a Memphis SDK decides lives here or in the pure
modules it calls: request bodies and reply rules (``_requests``), options (``_options``),
partitions (``_partitions``), schemas (``_schemas``), pub-acks and pulls (``_jetstream``).
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from . import _requests as rq
from ._consumer import (
    ConsumerState,
    ReceivedMessage,
    ack_publishes,
    dead_letter_publishes,
    delay_publishes,
    nack_publishes,
)
from ._errors import LocalProtocolError, MemphisError
from ._events import (
    Closed,
    Connected,
    Disconnected,
    FlushCompleted,
    ReconnectDue,
    ReplyReceived,
    RequestFailed,
    ServerError,
    TLSUpgradeRequired,
)
from ._frames import Msg
from ._handlers import (
    PENDING,
    STATION_UNREACHABLE,
    ConsumerInfo,
    Control,
    Flush,
    Handler,
    Produce,
    Pull,
)
from ._jetstream import PubAck, consumer_info_subject, pull_body, pull_subject
from ._names import internal_name, name_error
from ._operation import Operation
from ._options import (
    ConnectOptions,
    ConsumerOptions,
    ProduceOptions,
    ProducerOptions,
    StationOptions,
)
from ._partitions import choose_fetch_partition, stream_name
from ._producer import (
    ProducerState,
    StationState,
    encode_produce_headers,
    schema_failure_publishes,
)
from ._schemas import Schema, SchemaValidationError, parse_schema_update
from ._session import Session

__all__ = ["APP_ID", "Client", "ConsumerError"]

#: One id per process, sent as ``app_id`` in creation requests (client protocol section 1.3).
APP_ID: Final = str(uuid.uuid4())
#: Section 2: 20 s per control request attempt, 5 more attempts on timeout.
CONTROL_TIMEOUT: Final = 20.0
CONTROL_RETRIES: Final = 5
#: Section 8.7: consumers check every 30 s that their durables still exist.
CONSUMER_PING_INTERVAL: Final = 30.0
# How long past a pull's own expiry we wait for the server's 408 before calling it over.
_PULL_GRACE: Final = 1.0

TransportEvent = Connected | Disconnected | ReconnectDue | TLSUpgradeRequired | Closed | ServerError


class ConsumerError:
    """Something went wrong for a consumer outside any call (e.g. its station was destroyed)."""

    __slots__ = ("consumer", "error")

    def __init__(self, consumer: ConsumerState, error: MemphisError) -> None:
        self.consumer = consumer
        self.error = error

    def __repr__(self) -> str:
        return f"ConsumerError({self.consumer.name!r}, {self.error!r})"


def _check(error: str | None) -> None:
    if error is not None:
        raise MemphisError(error)


class Client:
    """A Memphis connection as a state machine. Not thread-safe: frontends serialise calls."""

    def __init__(
        self,
        options: ConnectOptions,
        *,
        connection_id: str | None = None,
        inbox_prefix: str | None = None,
        ping_interval: float = 120.0,
    ) -> None:
        self.options = options
        self.session = Session(
            username=options.username,
            connection_token=options.connection_token,
            password=options.password,
            account_id=options.account_id,
            reconnect=options.reconnect,
            max_reconnect=options.max_reconnect,
            reconnect_interval=options.reconnect_interval,
            timeout=options.timeout,
            ping_interval=ping_interval,
            tls=options.tls is not None,
            connection_id=connection_id,
            inbox_prefix=inbox_prefix,
        )
        self.username = options.username
        self.connection_id = self.session.connection_id
        self.send_notification = False
        self._events: list[TransportEvent | ConsumerError] = []
        self._handlers: dict[int, Handler] = {}
        self._subscriptions: dict[int, Any] = {}  # sid -> StationState | ConsumerState | None
        self._stations: dict[str, StationState] = {}
        self._producers: dict[str, ProducerState] = {}
        self._consumers: dict[str, ConsumerState] = {}
        # Broker pushes for every station (section 1.6): the only subscription made at connect.
        self._subscriptions[self.session.subscribe(rq.SDK_CLIENTS_UPDATES)] = None

    # ------------------------------------------------------------------ transport (delegated)

    @property
    def is_connected(self) -> bool:
        return self.session.is_connected

    def connection_made(self, now: float) -> None:
        self.session.connection_made(now)

    def connection_failed(self, now: float, error: BaseException | str) -> None:
        self.session.connection_failed(now, error)
        self._process(now)

    def tls_established(self) -> None:
        self.session.tls_established()

    def receive_data(self, data: bytes, now: float) -> None:
        self.session.receive_data(data, now)
        self._process(now)

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def next_deadline(self) -> float | None:
        deadline = self.session.next_deadline()
        for consumer in self._consumers.values():
            at = consumer.ping_at
            if at is not None and (deadline is None or at < deadline):
                deadline = at
        return deadline

    def handle_timeout(self, now: float) -> None:
        self.session.handle_timeout(now)
        if self.session.is_connected:
            for consumer in list(self._consumers.values()):
                if consumer.ping_at is not None and now >= consumer.ping_at:
                    consumer.ping_at = now + CONSUMER_PING_INTERVAL
                    self._check_durables(consumer, None, now)
        else:
            # Pings would only queue up while offline; push them past the outage.
            for consumer in self._consumers.values():
                if consumer.ping_at is not None and now >= consumer.ping_at:
                    consumer.ping_at = now + CONSUMER_PING_INTERVAL
        self._process(now)

    def events(self) -> list[TransportEvent | ConsumerError]:
        events = self._events
        self._events = []
        return events

    def close(self) -> None:
        self.session.close()
        self._process(0.0)

    def flush(self) -> Operation[None]:
        """Round trip to the server: done once it has processed everything sent before."""
        op: Operation[None] = Operation("flush")
        self._handlers[self.session.flush()] = Flush(op)
        return op

    # ------------------------------------------------------------------ event dispatch

    def _process(self, now: float) -> None:
        handlers = self._handlers
        for event in self.session.events():
            if isinstance(event, ReplyReceived):  # the hot path: pub-acks and pulled messages
                token = event.token
                handler = handlers.get(token)
                if handler is not None and handler.on_reply(self, token, event.msg, now):
                    handlers.pop(token, None)
            elif isinstance(event, Msg):
                self._on_push(event)
            elif isinstance(event, RequestFailed):
                handler = handlers.pop(event.token, None)
                if handler is not None:
                    handler.on_error(self, event.token, event.error, now)
            elif isinstance(event, FlushCompleted):
                handler = handlers.pop(event.token, None)
                if handler is not None:
                    handler.on_reply(self, event.token, None, now)
            else:
                if isinstance(event, Closed):
                    # Flushes still waiting (requests were failed by the session already).
                    closed = MemphisError("the connection is closed")
                    for token, handler in list(handlers.items()):
                        handler.on_error(self, token, closed, now)
                    handlers.clear()
                self._events.append(event)

    def _on_push(self, msg: Msg) -> None:
        target = self._subscriptions.get(msg.sid, 0)
        if target is None:
            self._on_clients_update(msg.payload)
        elif isinstance(target, StationState):
            update = parse_schema_update(msg.payload)
            if update is not None:
                target.schema = None if update.schema is None else Schema(update.schema)
        elif isinstance(target, ConsumerState):
            target.dls.append(ReceivedMessage(msg, target, None))

    def _on_clients_update(self, payload: bytes) -> None:
        update = rq.parse_clients_update(payload)
        if update is None:
            return
        if update.type == "send_notification":
            self.send_notification = update.update
        elif update.type == "schemaverse_to_dls":
            self._station(update.station_name).schemaverse_to_dls = update.update
        else:  # remove_station: the broker sends the internal name (section 5.1)
            self._station_gone(internal_name(update.station_name))

    def _station_gone(self, internal: str) -> None:
        """The station was destroyed (by us, section 6.3, or by the broker, section 5.1): drop
        its producers, and tell its consumers' error handlers ``station unreachable``."""
        for key, producer in list(self._producers.items()):
            if producer.station.internal == internal:
                self._forget_producer(key, producer)
        for key, consumer in list(self._consumers.items()):
            if consumer.station.internal == internal:
                self.consumer_unreachable(consumer)
                self._forget_consumer(key, consumer, destroyed=False)

    # ------------------------------------------------------------------ control plane

    def send_control(self, handler: Control, now: float) -> None:
        token = self.session.request(
            handler.subject, handler.body, now=now, timeout=handler.timeout
        )
        self._handlers[token] = handler

    def _control(
        self, what: str, subject: str, body: bytes, parse: Any, now: float
    ) -> Operation[Any]:
        op: Operation[Any] = Operation(what)
        self.send_control(Control(op, subject, body, parse, CONTROL_TIMEOUT, CONTROL_RETRIES), now)
        return op

    def _station(self, name: str) -> StationState:
        internal = internal_name(name)
        station = self._stations.get(internal)
        if station is None:
            station = self._stations[internal] = StationState(name, internal)
        return station

    def create_station(self, opts: StationOptions, now: float) -> Operation[None]:
        """``$memphis_station_creations``; an existing station counts as success (section 6)."""
        body = rq.encode_station_create(opts, username=self.username)
        return self._control(
            "create_station",
            rq.STATION_CREATIONS,
            body,
            lambda reply: _check(rq.parse_station_create_reply(reply)),
            now,
        )

    def destroy_station(self, name: str, now: float) -> Operation[None]:
        body = rq.station_destroy_body(name, username=self.username)

        def parse(reply: bytes) -> None:
            _check(rq.parse_destroy_reply(reply))
            self._station_gone(internal_name(name))

        return self._control("destroy_station", rq.STATION_DESTRUCTIONS, body, parse, now)

    def create_schema(
        self, name: str, schema_type: str, content: str, now: float
    ) -> Operation[None]:
        """``$memphis_schema_creations``; the name is checked here first (section 10.1).

        Raises:
            LocalProtocolError: bad name or unsupported type (nothing is sent).
        """
        error = name_error(name, "Schema")
        if error is not None:
            raise LocalProtocolError(error)
        body = rq.schema_create_body(name, schema_type, content, username=self.username)
        return self._control(
            "create_schema",
            rq.SCHEMA_CREATIONS,
            body,
            lambda reply: _check(rq.parse_schema_create_reply(reply)),
            now,
        )

    def enforce_schema(self, name: str, station_name: str, now: float) -> Operation[None]:
        body = rq.schema_attach_body(name, station_name, username=self.username)
        return self._control(
            "enforce_schema",
            rq.SCHEMA_ATTACHMENTS,
            body,
            lambda reply: _check(rq.parse_plain_reply(reply)),
            now,
        )

    def detach_schema(self, station_name: str, now: float) -> Operation[None]:
        body = rq.schema_detach_body(station_name, username=self.username)
        return self._control(
            "detach_schema",
            rq.SCHEMA_DETACHMENTS,
            body,
            lambda reply: _check(rq.parse_plain_reply(reply)),
            now,
        )

    def _attach_station(self, name: str, reply: Any) -> StationState:
        """Apply a creation reply to the station and make sure we follow its schema updates."""
        station = self._station(name)
        station.partitions = tuple(reply.partitions)
        station.schema = None if reply.schema is None else Schema(reply.schema)
        if station.schema_sid is None:
            sid = self.session.subscribe(rq.schema_updates_subject(station.internal))
            station.schema_sid = sid
            self._subscriptions[sid] = station
        station.refcount += 1
        return station

    def _detach_station(self, station: StationState) -> None:
        station.refcount -= 1
        if station.refcount <= 0 and station.schema_sid is not None:
            self.session.unsubscribe(station.schema_sid)
            self._subscriptions.pop(station.schema_sid, None)
            station.schema_sid = None
            station.refcount = 0

    # ------------------------------------------------------------------ producers

    def create_producer(self, opts: ProducerOptions, now: float) -> Operation[ProducerState]:
        """Register a producer (cached per connection by station and name, section 7.1)."""
        key = f"{opts.internal_station}_{opts.name}"
        cached = self._producers.get(key)
        if cached is not None:
            return Operation.completed("create_producer", cached)
        body = rq.producer_create_body(
            opts.station_name,
            opts.name,
            connection_id=self.connection_id,
            username=self.username,
            app_id=APP_ID,
        )

        def parse(payload: bytes) -> ProducerState:
            reply = rq.parse_producer_reply(payload)
            _check(reply.error)
            station = self._attach_station(opts.station_name, reply)
            station.schemaverse_to_dls = reply.schemaverse_to_dls
            station.functions = dict(reply.functions)
            self.send_notification = reply.send_notification
            producer = ProducerState(station, opts.station_name, opts.name, self.connection_id)
            self._producers[key] = producer
            return producer

        return self._control("create_producer", rq.PRODUCER_CREATIONS, body, parse, now)

    def cached_producer(self, opts: ProducerOptions) -> ProducerState | None:
        return self._producers.get(f"{opts.internal_station}_{opts.name}")

    def destroy_producer(self, producer: ProducerState, now: float) -> Operation[None]:
        body = rq.producer_destroy_body(
            producer.station_name,
            producer.name,
            connection_id=self.connection_id,
            username=self.username,
        )

        def parse(reply: bytes) -> None:
            _check(rq.parse_destroy_reply(reply))
            self._forget_producer(f"{producer.station.internal}_{producer.name}", producer)

        return self._control("destroy_producer", rq.PRODUCER_DESTRUCTIONS, body, parse, now)

    def _forget_producer(self, key: str, producer: ProducerState) -> None:
        if not producer.destroyed:
            producer.destroyed = True
            self._producers.pop(key, None)
            self._detach_station(producer.station)

    def produce(
        self, producer: ProducerState, message: object, opts: ProduceOptions, now: float
    ) -> Operation[PubAck | None]:
        """Validate, choose the partition and publish; the operation ends with the PubAck.

        Raises (before anything is sent):
            MemphisSchemaError: the message fails the station's schema (reported to the DLS
                when the station asks for it, section 7.7) or has an unsupported type.
            LocalProtocolError: bad partition choice, message larger than max_payload, or the
                producer was destroyed.
        """
        if producer.destroyed:
            raise LocalProtocolError(f"producer {producer.name} was destroyed")
        try:
            payload = producer.station.serialize(message)
        except SchemaValidationError as exc:
            self._report_schema_failure(producer, exc, opts)
            raise
        subject, _ = producer.subject_for(opts.partition_key, opts.partition_number)
        block = encode_produce_headers(producer.header_prefix, opts.msg_id, opts.headers)
        token = self.session.request(
            subject, payload, headers=block, now=now, timeout=opts.ack_wait
        )
        op: Operation[PubAck | None] = Operation("produce")
        producer.in_flight += 1
        self._handlers[token] = Produce(op, producer, opts.async_produce)
        return op

    def _report_schema_failure(
        self, producer: ProducerState, exc: SchemaValidationError, opts: ProduceOptions
    ) -> None:
        if self.session.is_connected:
            self._publish_all(
                schema_failure_publishes(
                    producer, exc, opts.headers, self.connection_id, self.send_notification
                )
            )

    # ------------------------------------------------------------------ consumers

    def create_consumer(self, opts: ConsumerOptions, now: float) -> Operation[ConsumerState]:
        """Register a consumer, then check its durable exists on every partition (section 8.3)."""
        key = f"{opts.internal_station}_{opts.name.lower()}"
        cached = self._consumers.get(key)
        if cached is not None:
            return Operation.completed("create_consumer", cached)
        body = rq.encode_consumer_create(
            opts, connection_id=self.connection_id, username=self.username, app_id=APP_ID
        )
        op: Operation[ConsumerState] = Operation("create_consumer")

        def parse(payload: bytes) -> object:
            reply = rq.parse_consumer_reply(payload)
            _check(reply.error)
            station = self._attach_station(opts.station_name, reply)
            self._check_durables(ConsumerState(station, opts), op, now)
            return PENDING  # ``consumer_ready`` finishes ``op`` once every durable answered

        handler = Control(op, rq.CONSUMER_CREATIONS, body, parse, CONTROL_TIMEOUT, CONTROL_RETRIES)
        self.send_control(handler, now)
        return op

    def _check_durables(
        self, consumer: ConsumerState, op: Operation[ConsumerState] | None, now: float
    ) -> None:
        partitions = consumer.station.partitions or (None,)
        remaining = [len(partitions)]
        for partition in partitions:
            subject = consumer_info_subject(
                stream_name(consumer.station.internal, partition), consumer.durable
            )
            token = self.session.request(subject, b"", now=now, timeout=CONTROL_TIMEOUT)
            self._handlers[token] = ConsumerInfo(consumer, op, remaining)

    def consumer_ready(self, consumer: ConsumerState, op: Operation[ConsumerState]) -> None:
        """All durables exist: subscribe to DLS resends and hand the consumer out."""
        opts = consumer.options
        key = f"{opts.internal_station}_{opts.name.lower()}"
        if op.done:
            return
        subject = rq.dls_subject(consumer.station.internal, consumer.durable)
        consumer.dls_sid = self.session.subscribe(subject, queue=subject)
        self._subscriptions[consumer.dls_sid] = consumer
        self._consumers[key] = consumer
        op.finish(consumer)

    def consumer_unreachable(self, consumer: ConsumerState) -> None:
        if not consumer.unreachable:
            consumer.unreachable = True
            consumer.ping_at = None
            self._events.append(ConsumerError(consumer, MemphisError(STATION_UNREACHABLE)))

    def start_consumer_pings(self, consumer: ConsumerState, now: float) -> None:
        """Begin the 30 s durable check (section 8.7); frontends call it when consuming starts."""
        if consumer.ping_at is None and not consumer.unreachable:
            consumer.ping_at = now + CONSUMER_PING_INTERVAL

    def cached_consumer(self, opts: ConsumerOptions) -> ConsumerState | None:
        return self._consumers.get(f"{opts.internal_station}_{opts.name.lower()}")

    def destroy_consumer(self, consumer: ConsumerState, now: float) -> Operation[None]:
        opts = consumer.options
        body = rq.consumer_destroy_body(
            opts.station_name, opts.name, connection_id=self.connection_id, username=self.username
        )

        def parse(reply: bytes) -> None:
            _check(rq.parse_destroy_reply(reply))
            self._forget_consumer(f"{opts.internal_station}_{opts.name.lower()}", consumer)

        return self._control("destroy_consumer", rq.CONSUMER_DESTRUCTIONS, body, parse, now)

    def _forget_consumer(
        self, key: str, consumer: ConsumerState, *, destroyed: bool = True
    ) -> None:
        if self._consumers.get(key) is not consumer:
            return  # already forgotten
        consumer.destroyed = destroyed
        consumer.ping_at = None
        del self._consumers[key]
        if consumer.dls_sid is not None:
            self.session.unsubscribe(consumer.dls_sid)
            self._subscriptions.pop(consumer.dls_sid, None)
            consumer.dls_sid = None
        self._detach_station(consumer.station)

    def fetch(
        self,
        consumer: ConsumerState,
        batch_size: int,
        now: float,
        *,
        partition_key: str | None = None,
        partition_number: int | None = None,
        prefetch: bool = False,
    ) -> Operation[list[ReceivedMessage]]:
        """Pull up to ``batch_size`` messages: DLS resends first, then a prefetched batch, then
        a fresh pull that the server holds for ``batch_max_wait_time`` (section 8.6).

        Raises:
            LocalProtocolError: bad batch size or partition choice; the consumer was destroyed.
        """
        if consumer.destroyed:
            raise LocalProtocolError(f"consumer {consumer.name} was destroyed")
        if not 1 <= batch_size <= 5000:
            raise LocalProtocolError("Batch size can not be greater than 5000 or less than 1")
        if consumer.unreachable:
            failed: Operation[list[ReceivedMessage]] = Operation("fetch")
            failed.fail(MemphisError(STATION_UNREACHABLE))
            return failed
        partition = choose_fetch_partition(
            consumer.station.partitions,
            key=partition_key,
            number=partition_number,
            rr=consumer.rr,
            station=consumer.station.internal,
        )
        if consumer.dls:
            result = Operation.completed("fetch", consumer.take_dls(batch_size))
        elif (
            consumer.prefetch is not None
            and consumer.prefetch.done
            and consumer.prefetch.error is None
        ):
            result = consumer.prefetch
            consumer.prefetch = None
        else:
            result = self._pull(consumer, partition, batch_size, now)
        if prefetch and (consumer.prefetch is None or consumer.prefetch.done):
            consumer.prefetch = self._pull(consumer, partition, batch_size, now)
        return result

    def _pull(
        self, consumer: ConsumerState, partition: int | None, batch: int, now: float
    ) -> Operation[list[ReceivedMessage]]:
        wait = consumer.options.batch_max_wait_time
        stream = stream_name(consumer.station.internal, partition)
        token = self.session.request(
            pull_subject(stream, consumer.durable),
            pull_body(batch, wait),
            now=now,
            timeout=wait + _PULL_GRACE,
            multi=True,
        )
        op: Operation[list[ReceivedMessage]] = Operation("fetch")
        self._handlers[token] = Pull(op, consumer, partition, batch)
        return op

    def abandon_fetch(self, op: Operation[list[ReceivedMessage]]) -> None:
        """The caller stopped waiting for ``op`` (cancelled, timed out, stop_consume).

        Its messages will never reach user code, so they are nacked (now if the batch already
        arrived, else on arrival) and redelivered at once instead of after ``max_ack_time``.
        """
        if op.done:
            if op.error is None:
                self.release_messages(op.outcome())
            return
        for handler in self._handlers.values():
            if isinstance(handler, Pull) and handler.op is op:
                handler.abandoned = True
                return

    def release_messages(self, messages: list[ReceivedMessage]) -> None:
        for message in messages:
            self._publish_all(nack_publishes(message))

    # ------------------------------------------------------------------ message actions

    def _publish_all(self, publishes: list[tuple[str, bytes]]) -> None:
        for subject, payload in publishes:
            self.session.publish(subject, payload)

    def ack(self, message: ReceivedMessage) -> None:
        self._publish_all(ack_publishes(message))

    def nack(self, message: ReceivedMessage) -> None:
        self._publish_all(nack_publishes(message))

    def delay(self, message: ReceivedMessage, seconds: float) -> None:
        """Raises MemphisError for a DLS resend, LocalProtocolError for a negative delay."""
        self._publish_all(delay_publishes(message, seconds))

    def dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        self._publish_all(dead_letter_publishes(message, reason))
