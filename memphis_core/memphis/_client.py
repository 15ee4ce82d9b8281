"""The Memphis client, sans-IO: every Memphis operation on top of one NATS :class:`Session`.

A frontend drives it exactly like the session (``connection_made``, ``receive_data``,
``data_to_send``, ``next_deadline``, ``handle_timeout``, ``events``) and starts operations that
return :class:`Operation` handles. The client is a facade over four parts that each own one
concept and never call each other back:

* :class:`~._dispatch.Dispatcher`: requests, push subscriptions and publishes on the session;
* :class:`~._stations.Stations`: partitions, produce subjects and live schemas per station;
* :class:`~._producers.Producers`: registration, produce and PubAcks;
* :class:`~._consumers.Consumers`: registration, pulls, prefetch and settling messages.

What concerns more than one part (a station destroyed under us, say) is decided here.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Final

from memphis_core.nats._errors import ConnectionClosedError, LocalProtocolError, MemphisError
from memphis_core.nats._events import Disconnected, TransportEvent
from memphis_core.nats._frames import Msg
from memphis_core.nats._pool import server_name
from memphis_core.nats._session import Session
from memphis_core.nats._state import ConnState

from . import _control as rq
from ._consumers import ConsumerError, Consumers
from ._deliveries import ConsumerState, Delivery
from ._dispatch import ControlRequest, ControlRetry, Dispatcher
from ._errors import AsyncProduceError, CloseIncompleteError, SchemaValidationError
from ._existing import look_up
from ._introspection import (
    ConsumerInfo,
    Queries,
    SchemaInfo,
    StationInfo,
    consumer_info_plan,
    schemas_plan,
    station_info_plan,
    stations_plan,
)
from ._names import internal_name, name_error
from ._operation import Operation
from ._options import (
    ConnectOptions,
    ConsumerOptions,
    FetchOptions,
    ProduceOptions,
    ProducerOptions,
    StationOptions,
    fetch_options,
)
from ._producers import ProduceOperation, Producers, ProducerState
from ._stations import Stations, StationState

__all__ = ["APP_ID", "DRAIN_TIMEOUT", "Client", "ClientEvent"]

#: One id per process, sent as ``app_id`` in creation requests, as every Memphis SDK does.
# Module-level, not per Client: the broker groups the connections of one application process by this
# id (docs/protocol.md §1.3), so every connection of the process must share it.
APP_ID: Final = str(uuid.uuid4())

#: What :meth:`Client.events` returns: connection events, consumer errors, control retries.
ClientEvent = TransportEvent | ConsumerError | ControlRetry
#: Seconds ``drain`` waits by default for the last acknowledgements.
DRAIN_TIMEOUT: Final = 30.0


class _Drain:
    """A close in progress: waiting for every async produce, then one PING round trip."""

    __slots__ = ("deadline", "lost", "op", "ping", "pinged_settles")

    def __init__(self, op: Operation[None], deadline: float) -> None:
        self.op = op
        self.deadline = deadline
        self.ping: Operation[None] | None = None
        self.pinged_settles = 0  # acks written before the PING in flight
        self.lost = False  # the connection dropped while draining: queued acks may be gone


def _check(error: str | None) -> None:
    if error is not None:
        raise MemphisError(error)


class Client:
    """A Memphis connection as a state machine. Not thread-safe: frontends serialise calls.

    Args:
        options: validated ``connect()`` arguments (``memphis_core.connect_options``).
        connection_id: override the random uuid4 sent in the CONNECT name (tests).
        inbox_prefix: override the random reply-inbox prefix (tests).
        ping_interval: seconds between client keepalive PINGs (default 120, as nats.go).
        rng: the source of the server pool's shuffles (seed it in tests; see ``Session``).
    """

    def __init__(
        self,
        options: ConnectOptions,
        *,
        connection_id: str | None = None,
        inbox_prefix: str | None = None,
        ping_interval: float = 120.0,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options
        self.username = options.username
        self.connection_id = connection_id or str(uuid.uuid4())
        password = options.password
        self.session = Session(
            # The Memphis broker learns our connection id only from the CONNECT ``name``
            # (``<uuid4>::<username>``, docs/protocol.md §1.3): there is no handshake request.
            name=f"{self.connection_id}::{self.username}",
            token=options.connection_token,
            # Password mode: the multi-tenant user ``<username>$<account_id>`` first, and once the
            # bare username for brokers that know the user without its account suffix, as every
            # Memphis SDK does (docs/protocol.md §1.2).
            user=options.nats_user if password is not None else None,
            password=password,
            fallback_user=options.username if password is not None else None,
            reconnect=options.reconnect,
            max_reconnect=options.max_reconnect,
            reconnect_interval=options.reconnect_interval,
            timeout=options.timeout,
            ping_interval=ping_interval,
            tls=options.tls is not None,
            inbox_prefix=inbox_prefix,
            servers=options.servers,
            ignore_discovered_servers=options.ignore_discovered_servers,
            rng=rng,
        )
        self.app_id = APP_ID
        self._events: list[ClientEvent] = []
        identity = rq.Identity(self.username, self.connection_id, self.app_id)
        self._dispatcher = dispatcher = Dispatcher(self.session, self._events.append)
        self._stations = stations = Stations(dispatcher)
        self._producers = Producers(dispatcher, stations, identity)
        self._consumers = Consumers(dispatcher, stations, identity, self._events.append)
        self._pulls = self._consumers.pulls
        self._queries = Queries(dispatcher)
        self._drain: _Drain | None = None
        # Broker pushes for every station: the only subscription made at connect (the
        # ``None`` target marks it).
        # Made before the first connect: the subscription is replayed with every CONNECT, so it is
        # in place before any station is used (docs/protocol.md §1.6).
        dispatcher.subscribe(rq.SDK_CLIENTS_UPDATES, None)

    # ------------------------------------------------------------------ the sans-IO contract

    @property
    def is_connected(self) -> bool:
        """True between the end of a handshake and the loss of that transport."""
        return self.session.is_connected

    @property
    def current_server(self) -> tuple[str, int]:
        """The ``(host, port)`` to dial now (the first connect, and after each
        ``ReconnectDue``), or the server in use: the server pool chooses it."""
        server = self.session.current_server
        assert server is not None  # a Client always gives its session the servers
        return server

    @property
    def server_name(self) -> str:
        """``host:port`` of :attr:`current_server`, as logs and errors name a server."""
        return server_name(self.current_server)

    @property
    def tls_hostname(self) -> str | None:
        """The name to check the current server's certificate against (``server_hostname``):
        the host being dialled, or the first host name given for a discovered IP address."""
        return self.session.tls_hostname

    def connection_made(self, now: float) -> None:
        """A transport is open (the first, or one dialled after ``ReconnectDue``).

        Call it once the TCP connection is established, before feeding any bytes; the client
        then waits for the server's INFO. The handshake (INFO, the optional TLS upgrade,
        CONNECT, the first PONG) must finish within ``ConnectOptions.timeout`` seconds, or a
        ``Disconnected`` event follows. Nothing is returned: keep calling ``data_to_send``,
        ``events`` and ``next_deadline`` as usual (docs/sansio.md §2).

        Args:
            now: the frontend's monotonic clock, in seconds; the handshake timer starts here.

        Raises:
            LocalProtocolError: the client is not waiting for a transport (called twice, or
                after ``Closed``): a bug in the frontend.
        """
        self.session.connection_made(now)

    def connection_failed(self, now: float, error: BaseException | str) -> None:
        """Dialling failed or the transport broke; the reconnect policy decides what follows.

        Call it instead of ``connection_made`` when the dial fails, or at any time when the
        transport raises (``OSError``, a TLS error); an end of file is ``receive_data(b"")``
        instead. The frontend must then read ``events()``: a ``Disconnected`` with the time
        of the next attempt (close the transport, drop what it did not write, and wait for
        ``ReconnectDue``), or ``Disconnected`` then ``Closed`` when the policy gives up
        (``max_reconnect`` attempts, or a first connect that every server refused). Waiting
        operations that cannot be replayed fail; the rest wait for the next transport.

        Args:
            now: the frontend's monotonic clock, in seconds; the reconnect interval counts
                from here.
            error: the exception (or a text) that ended the transport; the error carried by
                the events names the server it concerns.
        """
        self.session.connection_failed(now, error)
        # Session events are turned into operation results at once, so that an operation failed by
        # the reconnect policy is ``done`` when this call returns.
        self._process(now)

    def tls_established(self) -> None:
        """The TLS upgrade asked for by ``TLSUpgradeRequired`` is done."""
        self.session.tls_established()

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the transport; ``b""`` means the server closed it.

        Call it with every chunk read, in order and of any size (a frame may be split across
        calls). Afterwards the frontend must write ``data_to_send()`` (the client answers
        PINGs and may start the next pull), dispatch ``events()`` and re-read
        ``next_deadline()``; operations completed by these bytes have ``done`` set.

        Never raises for what the server sent: a protocol violation becomes a
        ``Disconnected`` event and the reconnect policy applies. Bytes arriving after that,
        on the same poisoned transport, are ignored.

        Args:
            data: the bytes read (``bytes``; ``b""`` for end of file).
            now: the frontend's monotonic clock, in seconds; timers started by replies (the
                next pull, a retry after a 503) count from here.
        """
        self.session.receive_data(data, now)
        self._process(now)
        # After the whole chunk, not per message: an eager fetch gets every message of the read.
        self._pulls.hand_over(now)

    def data_to_send(self) -> bytes:
        """Return and clear every byte to write to the transport (write it all, in order).

        Returns:
            bytes: everything queued since the last call (``b""`` when nothing is), already
            framed as NATS protocol. The frontend must write all of it, in order, before the
            next call's bytes; bytes not written when the transport breaks are dropped, not
            resent by the frontend (the client replays what matters after the reconnect).
            Calling it once per loop turn, rather than after each operation, lets operations
            of the same turn leave in one write (docs/sansio.md §1).
        """
        return self.session.data_to_send()

    def next_deadline(self) -> float | None:
        """The monotonic time at which ``handle_timeout`` must be called next, or None.

        Returns:
            float | None: a time on the frontend's clock, in seconds (the clock whose values
            it passes as ``now``), or None when no timer runs: then wait for the transport
            only. The frontend must wake up at that time even if no bytes arrive, and read
            this value again after every call into the client, since calls start timers
            (a request's timeout, the handshake, a reconnect, the next keepalive PING).
        """
        best = self.session.next_deadline()
        pings = self._consumers.next_deadline()
        if pings is not None and (best is None or pings < best):
            best = pings
        fetches = self._pulls.next_deadline()
        if fetches is not None and (best is None or fetches < best):
            best = fetches
        if self._drain is not None and (best is None or self._drain.deadline < best):
            best = self._drain.deadline
        return best

    def handle_timeout(self, now: float) -> None:
        """Fire every timer due at ``now`` (request timeouts, keepalive, reconnect backoff).

        Safe to call at any time: timers not yet due are left alone, so a frontend may call
        it on every loop turn. Afterwards ``next_deadline()`` is None or later than ``now``.
        The frontend must then write ``data_to_send()`` (keepalive PINGs, delayed retries)
        and dispatch ``events()`` (``ReconnectDue`` means: dial again now).

        Args:
            now: the frontend's monotonic clock, in seconds.
        """
        self.session.handle_timeout(now)
        self._consumers.handle_timeout(now)
        self._pulls.handle_timeout(now)
        self._process(now)

    def events(self) -> list[ClientEvent]:
        """Return and clear the connection events and consumer errors since the last call.

        Operation results are not events: they finish the ``Operation`` handles.

        Returns:
            list[ClientEvent]: oldest first. What the frontend must do with each
            (docs/sansio.md §3): ``TLSUpgradeRequired``: wrap the transport in TLS, then call
            ``tls_established``; ``Connected``: nothing; ``Disconnected``: close the transport
            and wait until its ``reconnect_at`` (None: a ``Closed`` follows);
            ``ReconnectDue``: dial the server it names, then call ``connection_made`` or
            ``connection_failed``; ``Closed``: close the transport, the client is finished;
            ``ServerError``: nothing required (a non-fatal ``-ERR``); ``ConsumerError``: hand
            the error to that consumer's error handler.
        """
        # A copy and a clear rather than a swap: the Consumers part holds ``self._events.append`` as
        # its error callback, so the list object itself must stay the same for the client's life.
        events = self._events[:]
        self._events.clear()
        return events

    def close(self, error: MemphisError | None = None) -> None:
        """Close at once; every operation still waiting fails with ConnectionClosedError.

        Use :meth:`drain` first to deliver what was accepted; ``close`` alone drops it.
        ``error`` says why when it is not the user's wish (the frontend's engine broke): the
        waiting operations' errors then name it.
        """
        # The session fails every waiting request with ConnectionClosedError; ``_process`` then
        # turns those failures into failed operations for the callers.
        self.session.close(error)
        # Only failures follow a close and nothing is retried, so no timer reads ``now``.
        self._process(0.0)

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` was called: new produces and fetches are refused."""
        return self._drain is not None

    def drain(self, now: float, timeout: float = DRAIN_TIMEOUT) -> Operation[None]:
        """Start a graceful close; the operation ends when :meth:`close` may be called.

        From now on produces and fetches are refused. Messages held unread (prefetched, or
        given back by a cancelled fetch) are nacked so the broker redelivers them at once. The
        operation finishes when every async produce has its acknowledgement and one PING round
        trip has proved the broker processed every ack, nack and dead letter written before it.
        It fails with :class:`CloseIncompleteError` when ``timeout`` seconds pass first, when
        async produces failed without a ``flush`` having reported them, or when the connection
        ends first: nothing the caller was told is accepted vanishes without an error.

        Args:
            now: the frontend's monotonic clock, in seconds.
            timeout: seconds to wait for the acknowledgements (default 30).
        """
        # A second drain returns the first one's operation: two close paths racing in a frontend
        # must end in the same result.
        if self._drain is not None:
            return self._drain.op
        op: Operation[None] = Operation("close")
        self._drain = _Drain(op, now + timeout)
        # Messages held unread are nacked at once, before waiting for anything: another member (or
        # the next run of this application) gets them now rather than after max_ack_time.
        self._consumers.release_all()
        self._check_drain(now)
        return op

    def _check_drain(self, now: float) -> None:
        drain = self._drain
        if drain is None or drain.op.done:
            return
        in_flight = self._producers.in_flight()
        ping = drain.ping
        # Without acks, nacks or dead letters written, only the PubAcks of async produces need
        # waiting for: a PING would prove nothing more.
        if not self._consumers.settles:
            pinged = in_flight == 0  # nothing written needs the broker's confirmation
        else:
            # The PING is sent only once every PubAck is in: its PONG then proves that the
            # broker also read every ack written before it, since a server handles a client's
            # commands in order.
            settles = self._consumers.settles
            stale = ping is not None and ping.done and settles > drain.pinged_settles
            if (
                in_flight == 0
                and (ping is None or (stale and ping.error is None))
                and self.session.state is not ConnState.CLOSED
            ):
                # A fresh PING also when acks were written after the last one was sent (another
                # thread acking during close): its PONG would not vouch for them.
                ping = drain.ping = self._dispatcher.ping()
                drain.pinged_settles = settles
            pinged = (
                ping is not None
                and ping.done
                and ping.error is None
                and settles <= drain.pinged_settles
                and not drain.lost
            )
        # A PING that failed (the connection ended under it) also ends the drain: there is no later
        # point at which the acks could still be confirmed.
        closed = self.session.state is ConnState.CLOSED or (
            ping is not None and ping.done and (ping.error is not None or drain.lost)
        )
        if not (pinged or closed or now >= drain.deadline):
            return
        # Async-produce failures nobody collected with ``Producer.flush`` are reported by the drain
        # instead: the caller was told "accepted" for those messages, so losing them silently is
        # not an option.
        failures, count = self._producers.take_failures()
        cause = None if ping is None or pinged else ping.error
        if pinged and not count:
            drain.op.finish(None)
            return
        drain.op.fail(
            CloseIncompleteError(
                unconfirmed=in_flight,
                failures=failures,
                count=count,
                acks_unconfirmed=bool(self._consumers.settles) and (not pinged or drain.lost),
                cause=cause or (failures[0].error if failures else None),
            )
        )

    def ping(self) -> Operation[None]:
        """Round trip to the server (PING/PONG): done once it has processed everything sent
        before. (``Producer.flush`` of the frontends is something else: it waits for PubAcks.)"""
        return self._dispatcher.ping()

    # ------------------------------------------------------------------ event dispatch

    def _process(self, now: float) -> None:
        for event in self._dispatcher.dispatch(self.session.events(), now):
            if isinstance(event, Msg):
                self._on_push(event)
            else:
                if isinstance(event, Disconnected) and self._drain is not None:
                    # Acks queued but not yet written died with the transport: a PING on the
                    # next one cannot vouch for them.
                    self._drain.lost = True
                self._events.append(event)
        if self._drain is not None:
            self._check_drain(now)

    def _on_push(self, msg: Msg) -> None:
        # The subscription's target says what kind of push this is: None for the connection-wide
        # ``$memphis_sdk_clients_updates``, a station for its schema updates, a consumer for its DLS
        # resends (docs/protocol.md §1.6). Subjects are not parsed: sids are unambiguous.
        found, target = self._dispatcher.push_target(msg.sid)
        if not found:
            return  # unsubscribed while this was in flight
        if target is None:
            self._on_clients_update(msg.payload)
        elif isinstance(target, StationState):
            self._stations.on_schema_update(target, msg.payload)
        elif isinstance(target, ConsumerState):
            self._consumers.on_dls_resend(target, msg)

    def _on_clients_update(self, payload: bytes) -> None:
        # A push that does not parse is dropped, not raised: one bad broadcast must not stop the
        # listener for every later push (docs/protocol.md §4.1).
        update = rq.parse_clients_update(payload)
        if update is None:
            return
        if update.type == "send_notification":
            self._producers.send_notification = update.update
        elif update.type == "schemaverse_to_dls":
            # Broadcast for every station on the broker: only ours matter.
            station = self._stations.find(internal_name(update.station_name))
            if station is not None:
                # The real broker sends the station's previous value here (docs/protocol.md §12.2
                # item 6); we store what arrives, which is the new value with memphis_broker.
                station.schemaverse_to_dls = update.update
        else:  # remove_station: the broker sends the internal name
            # ``internal_name`` is idempotent on internal names (lower-case, no dots), so the
            # broker's internal name and a user's external one lead to the same cache key.
            self._station_gone(internal_name(update.station_name), notify=True)

    def _station_gone(self, internal: str, *, notify: bool) -> None:
        """The station was destroyed: drop its producers and consumers.

        When someone else destroyed it (``notify``), the consumers' error handlers hear
        ``station unreachable``; after our own ``destroy_station`` that would be noise.
        """
        self._producers.station_gone(internal)
        self._consumers.station_gone(internal, notify=notify)

    # ------------------------------------------------------------------ stations and schemas

    def create_station(self, opts: StationOptions, now: float) -> Operation[tuple[str, ...]]:
        """``$memphis_station_creations``; an existing station counts as success, unchanged.

        The result lists the options an existing station does not have as asked (``()`` for
        a new station), read from its streams first (``_existing.py``): the broker's reply does
        not tell a creation from a station found (docs/protocol.md §5.3).
        """
        body = rq.encode_station_create(opts, username=self.username)
        op: Operation[tuple[str, ...]] = Operation("create_station")
        dispatcher = self._dispatcher

        def create(differences: tuple[str, ...], now: float) -> None:
            def parse(reply: bytes) -> tuple[str, ...]:
                _check(rq.parse_station_create_reply(reply))
                return differences

            request = ControlRequest(dispatcher, op, rq.STATION_CREATIONS, body, parse)
            try:
                dispatcher.send_control(request, now)
            except MemphisError as exc:
                # Called from the lookups' last reply or failure, inside event dispatch: the
                # connection may have closed meanwhile. The creation fails; nothing may raise
                # out of the dispatch.
                op.fail(exc)

        look_up(self._queries, opts, create, now)
        return op

    def destroy_station(self, name: str, now: float) -> Operation[None]:
        """``$memphis_station_destructions``; our producers and consumers of it are dropped."""
        body = rq.station_destroy_body(name, username=self.username)

        def parse(reply: bytes) -> None:
            _check(rq.parse_destroy_reply(reply))
            # Only after the broker confirmed: a failed destroy must leave our producers and
            # consumers usable. Destroying through an SDK pushes no ``remove_station``
            # (docs/protocol.md §5.7), so the cache is cleaned here.
            self._station_gone(internal_name(name), notify=False)

        return self._dispatcher.control(
            "destroy_station", rq.STATION_DESTRUCTIONS, body, parse, now
        )

    def create_schema(
        self, name: str, schema_type: str, content: str, now: float
    ) -> Operation[None]:
        """``$memphis_schema_creations``; the name is checked here first.

        Raises:
            LocalProtocolError: bad name or unsupported type (nothing is sent).
        """
        # Schema names are checked as given, not lower-cased, as the Go SDK does (docs/protocol.md
        # §5.1); every other name is lower-cased by the broker first.
        error = name_error(name, "Schema")
        if error is not None:
            raise LocalProtocolError(error)
        body = rq.schema_create_body(name, schema_type, content, username=self.username)
        return self._dispatcher.control(
            "create_schema",
            rq.SCHEMA_CREATIONS,
            body,
            lambda reply: _check(rq.parse_schema_create_reply(reply)),
            now,
        )

    def enforce_schema(self, name: str, station_name: str, now: float) -> Operation[None]:
        """``$memphis_schema_attachments``: the station's producers validate against it."""
        body = rq.schema_attach_body(name, station_name, username=self.username)
        return self._dispatcher.control(
            "enforce_schema",
            rq.SCHEMA_ATTACHMENTS,
            body,
            lambda reply: _check(rq.parse_plain_reply(reply)),
            now,
        )

    def detach_schema(self, station_name: str, now: float) -> Operation[None]:
        """``$memphis_schema_detachments``: the station stops enforcing its schema."""
        body = rq.schema_detach_body(station_name, username=self.username)
        return self._dispatcher.control(
            "detach_schema",
            rq.SCHEMA_DETACHMENTS,
            body,
            lambda reply: _check(rq.parse_plain_reply(reply)),
            now,
        )

    # ------------------------------------------------------------------ introspection

    def consumer_info(self, consumer: ConsumerState, now: float) -> Operation[ConsumerInfo]:
        """The group's lag and unacked counts, from ``CONSUMER.INFO`` on every partition."""
        station = consumer.station
        plan = consumer_info_plan(
            station.name,
            station.internal,
            station.partitions,
            consumer.durable,
            consumer.options.consumer_group,
        )
        return self._queries.run("consumer_info", plan, now)

    def station_info(self, name: str, now: float) -> Operation[StationInfo]:
        """One station's partitions, configuration, schema, DLS settings and groups.

        Raises:
            LocalProtocolError: an invalid station name (nothing is sent).
        """
        error = name_error(name.lower(), "Station")
        if error is not None:
            raise LocalProtocolError(error)
        return self._queries.run("station_info", station_info_plan(name), now)

    def stations(self, now: float) -> Operation[list[StationInfo]]:
        """Every station on the broker, by name."""
        return self._queries.run("stations", stations_plan(), now)

    def schemas(self, now: float) -> Operation[list[SchemaInfo] | None]:
        """Every schema in the broker's store (None: the broker does not expose its store)."""
        return self._queries.run("schemas", schemas_plan(), now)

    # ------------------------------------------------------------------ producers

    def create_producer(self, opts: ProducerOptions, now: float) -> Operation[ProducerState]:
        """Register a producer (cached per connection by station and name, as the Go SDK)."""
        return self._producers.create(opts, now)

    def destroy_producer(self, producer: ProducerState, now: float) -> Operation[None]:
        """``$memphis_producer_destructions``; the producer refuses to produce afterwards."""
        return self._producers.destroy(producer, now)

    def serialize(self, producer: ProducerState, message: object) -> bytes | SchemaValidationError:
        """``message`` as the bytes to publish, validated against the station's schema when it
        has one; changes nothing. A frontend calls it outside its lock (validation can be
        slow) and hands the result to :meth:`produce` as ``payload``, which decides.

        Returns:
            the payload, or the validation failure for ``produce`` to report and raise. A
            message type the station cannot serialise raises ``MemphisSchemaError`` at once.
        """
        try:
            return producer.station.serialize(message)
        except SchemaValidationError as exc:
            return exc

    def produce(
        self,
        producer: ProducerState,
        message: object,
        opts: ProduceOptions,
        now: float,
        *,
        payload: bytes | SchemaValidationError | None = None,
    ) -> ProduceOperation:
        """Validate, choose the partition and publish; the operation ends with the PubAck.

        ``payload``: what :meth:`serialize` returned for ``message`` (which is then ignored),
        or None to serialise ``message`` here.

        Raises (before anything is sent):
            MemphisSchemaError: the message fails the station's schema (reported to the DLS
                when the station asks for it) or has an unsupported type.
            LocalProtocolError: bad partition choice, message larger than max_payload, or the
                producer was destroyed.
        """
        # A destroyed producer may still be referenced by user code; producing through it would
        # create records the broker no longer expects (docs/protocol.md §6.8).
        if producer.destroyed:
            raise LocalProtocolError(f"producer {producer.name} was destroyed")
        if self._drain is not None:
            raise ConnectionClosedError("the connection is closing")
        if payload is None:
            payload = self.serialize(producer, message)
        if isinstance(payload, SchemaValidationError):
            # The report goes out before the error is raised (docs/protocol.md §6.4 step 1,
            # §9.2): the caller may not catch it, and the DLS is the only trace of the refused
            # message.
            self._producers.report_schema_failure(producer, payload, opts)
            raise payload
        return self._producers.produce(producer, payload, opts, now)

    @staticmethod
    def backpressure(
        producer: ProducerState, payload: bytes | SchemaValidationError
    ) -> Callable[[], bool] | None:
        """None when an async produce of ``producer`` may go on now; else the condition to
        wait for first (half of the in-flight window free again: waking at one free slot
        would wake per acknowledgement, docs/protocol.md §13.1).

        ``payload`` is what :meth:`serialize` returned: a schema failure takes no slot and
        waits for none, :meth:`produce` refuses it (and reports it) at once.
        """
        if isinstance(payload, SchemaValidationError) or not producer.window_full:
            return None
        return lambda: producer.window_drained

    @staticmethod
    def take_failures(producer: ProducerState) -> AsyncProduceError | None:
        """The async produce failures of ``producer`` since the last call, as one error
        (cleared: each is reported once), or None. ``Producer.flush`` raises it."""
        return producer.take_failures()

    # ------------------------------------------------------------------ consumers

    def create_consumer(self, opts: ConsumerOptions, now: float) -> Operation[ConsumerState]:
        """Register a consumer, then check that its durable exists on every partition."""
        return self._consumers.create(opts, now)

    def destroy_consumer(self, consumer: ConsumerState, now: float) -> Operation[None]:
        """``$memphis_consumer_destructions``; unread prefetched messages are nacked."""
        return self._consumers.destroy(consumer, now)

    def close_consumer(self, consumer: ConsumerState) -> None:
        """Forget ``consumer`` on this side only, as closing the connection does.

        Its unread messages are nacked (redelivered at once), its DLS subscription and periodic
        check end, and fetching from it raises. Nothing is sent to the broker: the group's
        durable and its acked progress stay (the broker deletes them only when the group's last
        member is destroyed, docs/protocol.md §7.12), so a consumer created again goes on where
        the group stopped.
        """
        self._consumers.close(consumer)

    def start_consumer_pings(self, consumer: ConsumerState, now: float) -> None:
        """Begin the 30 s check that the consumer's durables still exist."""
        self._consumers.start_pings(consumer, now)

    def fetch(
        self,
        consumer: ConsumerState,
        batch_size: int,
        now: float,
        *,
        partition_key: str | None = None,
        partition_number: int | None = None,
        prefetch: bool = False,
        timeout: float | None = None,
        eager: bool = False,
    ) -> Operation[list[Delivery]]:
        """Up to ``batch_size`` messages, taken from what the consumer holds: messages given
        back unread first, then DLS resends, then what pulls brought in. When it holds none,
        a pull is started on every partition the fetch reads that has none under way (all of
        them, unless ``partition_key`` or ``partition_number`` chooses one), and the server
        holds it for ``batch_max_wait_time`` (or ``timeout`` seconds, if shorter).

        The operation ends when the batch is full, or when it has messages and the server said
        nothing more is waiting behind them, or when the pulls are over (then maybe empty);
        see ``_pulls.py`` for the rules. With ``prefetch`` the next batch is pulled as soon as
        this one is taken and kept for the next call. With ``eager`` the operation ends as
        soon as fed bytes brought at least one message, and the pulls go on for the next call
        (the consume loop's fetch: latency over batch size).

        Raises:
            LocalProtocolError: bad batch size or partition choice; the consumer was destroyed.
            ConnectionClosedError: the connection is closing.
        """
        return self._consumers.fetch(
            consumer,
            self._fetch_options(
                batch_size, partition_key, partition_number, prefetch, timeout, eager
            ),
            now,
        )

    def next_message(self, consumer: ConsumerState, now: float) -> Operation[list[Delivery]]:
        """One step of an iteration over ``consumer``: its oldest held message, or the first
        that a read brings (a list of one). Pulls ask for the consumer's ``batch_size``; what
        else they bring stays with the consumer, so a reader that stops iterating leaves
        nothing behind in a frontend object and the next fetch returns it first, in order.

        Raises:
            LocalProtocolError: the consumer was destroyed.
            ConnectionClosedError: the connection is closing.
        """
        opts = self._fetch_options(consumer.options.batch_size, None, None, False, None, True)
        return self._consumers.fetch(consumer, opts, now, take=1)

    def _fetch_options(
        self,
        batch_size: int,
        partition_key: str | None,
        partition_number: int | None,
        prefetch: bool,
        timeout: float | None,
        eager: bool,
    ) -> FetchOptions:
        if self._drain is not None:
            raise ConnectionClosedError("the connection is closing")
        # The one validation of fetch arguments, for every frontend: each refuses the same
        # arguments with the same texts.
        return fetch_options(
            batch_size,
            prefetch=prefetch,
            partition_key=partition_key,
            partition_number=partition_number,
            timeout=timeout,
            eager=eager,
        )

    def abandon_fetch(self, op: Operation[list[Delivery]]) -> None:
        """The caller stopped waiting for ``op``: what it brought is kept for the next fetch."""
        self._pulls.abandon_fetch(op)

    def next_pull(
        self,
        consumer: ConsumerState,
        received: int,
        error: MemphisError | None,
        now: float,
        *,
        chosen: bool = False,
    ) -> float | None:
        """The consume loop's policy, the same in every frontend: after a batch of
        ``received`` messages (or ``error``), how long to wait before the next fetch, or None
        to stop. ``chosen``: the loop reads one partition (a key or a number).

        At once after a full batch, while a pull is under way for the consumer (the next fetch
        waits on it), while the server said more messages wait behind the last one it
        delivered, or while the consumer holds messages the next fetch can take: more are
        probably there, and the next fetch costs no request. (memphis-py sleeps after every
        batch, capping a default consumer at 10 msg/s.) Otherwise the station is drained:
        wait ``pull_interval``. An error that cannot heal (the station or durable is gone, the
        connection closed) stops the loop; any other (a timeout, a broker busy with an
        election) is reported and the loop goes on after ``pull_interval``.
        """
        return self._pulls.next_pull(consumer, received, error, now, chosen=chosen)

    def end_eager_pull(self, consumer: ConsumerState) -> None:
        """An eager reader of ``consumer`` (its consume loop, an iteration) is gone: end the
        pulls that went on in the background for it (see ``Pulls.end_eager_pull``)."""
        self._pulls.end_eager_pull(consumer)

    def give_back(self, messages: list[Delivery]) -> None:
        """Messages handed out but never read (a consume loop stopped, a fetch cancelled):
        the next fetch of their consumer returns them first, while their ack deadline holds."""
        self._pulls.give_back(messages)

    def ack(self, message: Delivery) -> None:
        """``+ACK`` (or a ``$memphis_pm_acks`` report for a DLS resend)."""
        self._consumers.ack(message)

    def nack(self, message: Delivery) -> None:
        """``-NAK``: redeliver now."""
        self._consumers.nack(message)

    def delay(self, message: Delivery, seconds: float) -> None:
        """Redeliver after ``seconds``.

        Raises:
            MemphisError: ``cannot delay DLS message`` for a DLS resend.
            LocalProtocolError: a negative or non-finite delay.
        """
        # A delay is a ``-NAK`` with a body (docs/protocol.md §7.8): JetStream does the waiting, the
        # client keeps no timer for it.
        self._consumers.delay(message, seconds)

    def in_progress(self, message: Delivery, now: float) -> None:
        """``+WPI``: the broker restarts the message's ack timer (a whole ``max_ack_time``
        from ``now``); nothing for a dead letter resent by the broker, which has none.

        Raises:
            MessageAlreadySettledError: it was already acked, nacked, delayed or dead-lettered.
        """
        self._consumers.in_progress(message, now)

    def dead_letter(self, message: Delivery, reason: str) -> None:
        """``+TERM`` and a report that makes the broker store the message in the DLS."""
        # ``+TERM`` and the report go out together in the next write: the broker stores the dead
        # letter only from the report, the TERM only stops redelivery (docs/protocol.md §9.3).
        self._consumers.dead_letter(message, reason)
