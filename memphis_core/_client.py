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
from ._client_consumers import CONSUMER_PING_INTERVAL, ConsumerOps
from ._consumer import ConsumerState, ReceivedMessage
from ._errors import ConnectionClosedError, LocalProtocolError, MemphisError
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
from ._handlers import Control, Flush, Handler, Produce, Pull
from ._jetstream import PubAck
from ._names import internal_name, name_error
from ._operation import Operation
from ._options import ConnectOptions, ProduceOptions, ProducerOptions, StationOptions
from ._producer import (
    ProducerState,
    StationState,
    encode_produce_headers,
    schema_failure_publishes,
)
from ._schemas import Schema, SchemaValidationError, parse_schema_update
from ._session import Session

__all__ = ["APP_ID", "Client", "ConsumerError", "Subscriber", "TransportEvent"]

#: One id per process, sent as ``app_id`` in creation requests (client protocol section 1.3).
APP_ID: Final = str(uuid.uuid4())
#: Section 2: 20 s per control request attempt, 5 more attempts on timeout.
CONTROL_TIMEOUT: Final = 20.0
CONTROL_RETRIES: Final = 5

TransportEvent = Connected | Disconnected | ReconnectDue | TLSUpgradeRequired | Closed | ServerError
# What a subscription feeds: schema updates of a station, DLS resends of a consumer, or (None)
# the connection-wide $memphis_sdk_clients_updates.
Subscriber = StationState | ConsumerState | None


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


class Client(ConsumerOps):
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
        self.app_id = APP_ID
        self.send_notification = False
        self._events: list[TransportEvent | ConsumerError] = []
        self._handlers: dict[int, Handler] = {}
        self._pulls: dict[int, Pull] = {}
        self._subscriptions: dict[int, Subscriber] = {}
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
                    self.check_durables(consumer, now)
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
        """Close for good; every operation still waiting fails with ConnectionClosedError."""
        self.session.close()
        # Only failures follow a close and nothing is retried, so no timer reads ``now``.
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
                    closed = ConnectionClosedError("the connection is closed")
                    for token, handler in list(handlers.items()):
                        handler.on_error(self, token, closed, now)
                    handlers.clear()
                self._events.append(event)

    def _on_push(self, msg: Msg) -> None:
        sid = msg.sid
        if sid not in self._subscriptions:
            return  # unsubscribed while this was in flight
        target = self._subscriptions[sid]
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
            # Broadcast for every station on the broker: only ours matter.
            station = self._stations.get(internal_name(update.station_name))
            if station is not None:
                station.schemaverse_to_dls = update.update
        else:  # remove_station: the broker sends the internal name (section 5.1)
            self._station_gone(internal_name(update.station_name), notify=True)

    def _station_gone(self, internal: str, *, notify: bool) -> None:
        """The station was destroyed: drop its producers and consumers (section 6.3).

        When someone else destroyed it (``notify``), the consumers' error handlers hear
        ``station unreachable``; after our own ``destroy_station`` that would be noise.
        """
        for key, producer in list(self._producers.items()):
            if producer.station.internal == internal:
                self._forget_producer(key, producer)
        for consumer in list(self._consumers.values()):
            if consumer.station.internal == internal:
                self.consumer_unreachable(consumer, notify=notify)

    def _consumer_error(self, consumer: ConsumerState, error: MemphisError) -> None:
        self._events.append(ConsumerError(consumer, error))

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
            self._station_gone(internal_name(name), notify=False)

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

    def _attach_station(
        self, name: str, reply: rq.ProducerCreated | rq.ConsumerCreated
    ) -> StationState:
        """Apply a creation reply to the station and make sure we follow its schema updates."""
        station = self._station(name)
        functions = dict(reply.functions) if isinstance(reply, rq.ProducerCreated) else None
        station.set_routing(
            tuple(reply.partitions), station.functions if functions is None else functions
        )
        station.schema = None if reply.schema is None else Schema(reply.schema)
        if station.schema_sid is None:
            sid = self.session.subscribe(rq.schema_updates_subject(station.internal))
            station.schema_sid = sid
            self._subscriptions[sid] = station
        station.refcount += 1
        return station

    def _detach_station(self, station: StationState) -> None:
        station.refcount -= 1
        if station.refcount > 0:
            return
        if station.schema_sid is not None:
            self.session.unsubscribe(station.schema_sid)
            self._subscriptions.pop(station.schema_sid, None)
            station.schema_sid = None
        station.refcount = 0
        if self._stations.get(station.internal) is station:
            del self._stations[station.internal]  # nothing of ours uses it any more

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
            app_id=self.app_id,
        )

        def parse(payload: bytes) -> ProducerState:
            reply = rq.parse_producer_reply(payload)
            _check(reply.error)
            station = self._attach_station(opts.station_name, reply)
            station.schemaverse_to_dls = reply.schemaverse_to_dls
            self.send_notification = reply.send_notification
            cached = self._producers.get(key)
            if cached is not None:  # created concurrently under the same name: keep the first
                self._detach_station(station)
                return cached
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
        if producer.destroyed:
            return
        producer.destroyed = True
        if self._producers.get(key) is producer:
            del self._producers[key]
        self._detach_station(producer.station)

    def produce(
        self,
        producer: ProducerState,
        message: object,
        opts: ProduceOptions,
        now: float,
        *,
        payload: bytes | None = None,
    ) -> Operation[PubAck | None]:
        """Validate, choose the partition and publish; the operation ends with the PubAck.

        ``payload``: the message already serialised with ``producer.station.serialize`` (a
        frontend does that outside its lock, since validation can be slow); ``message`` is then
        ignored.

        Raises (before anything is sent):
            MemphisSchemaError: the message fails the station's schema (reported to the DLS
                when the station asks for it, section 7.7) or has an unsupported type.
            LocalProtocolError: bad partition choice, message larger than max_payload, or the
                producer was destroyed.
        """
        if producer.destroyed:
            raise LocalProtocolError(f"producer {producer.name} was destroyed")
        if payload is None:
            try:
                payload = producer.station.serialize(message)
            except SchemaValidationError as exc:
                self.report_schema_failure(producer, exc, opts)
                raise
        subject, _ = producer.subject_for(opts.partition_key, opts.partition_number)
        block = encode_produce_headers(producer.header_prefix, opts.msg_id, opts.headers)
        token = self.session.request(
            subject, payload, headers=block, now=now, timeout=opts.ack_wait
        )
        op: Operation[PubAck | None] = Operation("produce")
        size = len(payload)
        producer.in_flight += 1
        producer.in_flight_bytes += size
        self._handlers[token] = Produce(op, producer, opts.async_produce, size)
        return op

    def report_schema_failure(
        self, producer: ProducerState, exc: SchemaValidationError, opts: ProduceOptions
    ) -> None:
        """Send the schemaverse DLS report (and notification) for a message that failed."""
        if self.session.is_connected:
            self._publish_all(
                schema_failure_publishes(
                    producer, exc, opts.headers, self.connection_id, self.send_notification
                )
            )
