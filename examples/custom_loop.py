"""Drive ``memphis_core.Client`` from a plain ``selectors`` loop: no framework, no threads.

The core is sans-IO: it never touches a socket or a clock. This program owns both. It moves
bytes between the socket and the core, tells the core the time, and waits until the core's
next deadline. That is the whole contract the three bundled frontends rely on, and it is all
another event loop needs:

    client.receive_data(bytes, now)    bytes from the socket (b"" = EOF)
    client.data_to_send()              bytes for the socket
    client.next_deadline()             when to call client.handle_timeout(now)
    client.events()                    transport events: Connected, Disconnected, Closed...
    react(event, engine)               what each event asks: calls the engine's dial(),
                                       drop_transport(), upgrade_tls(), finish(error)...
    op = client.create_station(...)    operations return handles; op.done / op.outcome()

Run it against a broker (``memphis-broker`` starts one on 127.0.0.1:6666; example_setup.py
says how to point it at another)::

    python examples/custom_loop.py
"""

from __future__ import annotations

import selectors
import socket
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from example_setup import broker_args  # the broker's address, from the environment

from memphis_core import (
    Client,
    ClientEvent,
    Connected,
    ConsumerError,
    Disconnected,
    MemphisConnectError,
    MemphisError,
    Operation,
    ReconnectDue,
    connect_options,
    consumer_options,
    produce_options,
    producer_options,
    react,
    station_options,
)

T = TypeVar("T")


class SelectorLoop:
    """One socket, one selector, one sans-IO client: the smallest complete frontend.

    Its ``dial``, ``drop_transport``, ``upgrade_tls``, ``finish`` and ``consumer_error`` are the
    actions ``memphis_core.react`` takes for each event (the ``memphis_core.Engine`` protocol):
    which event asks for which is the core's decision, the same as in the bundled frontends.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.selector = selectors.DefaultSelector()
        self.sock: socket.socket | None = None
        self.outbound = bytearray()  # what the socket did not take yet
        self.closed = False

    def dial(self) -> None:
        # The core's server pool says whom to dial: the first server, then (on every
        # ReconnectDue) the next one of the list and of those the cluster advertised.
        try:
            sock = socket.create_connection(self.client.current_server, self.client.options.timeout)
        except OSError as exc:
            self.client.connection_failed(time.monotonic(), exc)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self.outbound.clear()  # bytes for an old socket never go to a new one
        self.selector.register(sock, selectors.EVENT_READ)
        self.client.connection_made(time.monotonic())

    def drop_transport(self) -> None:
        if self.sock is not None:
            self.selector.unregister(self.sock)
            self.sock.close()
            self.sock = None
        self.outbound.clear()

    def turn(self) -> None:
        """One loop turn: write, wait for the socket or the deadline, read, fire timers."""
        client = self.client
        sock = self.sock
        if sock is not None:
            self.outbound += client.data_to_send()  # one write per turn, however much is queued
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbound else 0)
            self.selector.modify(sock, want)
        deadline = client.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if sock is None:
            # Nothing to watch (waiting to redial): just sleep until the core's deadline.
            time.sleep(timeout or 0.0)
            ready = []
        else:
            ready = self.selector.select(timeout)
        for _key, mask in ready:
            assert sock is not None
            try:
                if mask & selectors.EVENT_WRITE:
                    sent = sock.send(self.outbound)
                    del self.outbound[:sent]
                if mask & selectors.EVENT_READ:
                    client.receive_data(sock.recv(65536), time.monotonic())
            except BlockingIOError:
                pass
            except OSError as exc:
                client.connection_failed(time.monotonic(), exc)
        client.handle_timeout(time.monotonic())  # a no-op unless a deadline passed
        for event in client.events():
            self.dispatch(event)

    def upgrade_tls(self) -> None:
        raise SystemExit("this example speaks plain TCP only")

    def finish(self, error: MemphisError | None) -> None:
        self.drop_transport()
        self.closed = True
        if error is not None:
            raise MemphisConnectError(str(error))

    def consumer_error(self, event: ConsumerError) -> None:
        print(f"consumer {event.consumer.name}: {event.error}")

    def dispatch(self, event: ClientEvent) -> None:
        # What to print is this program's business; what to do is the core's (react).
        if isinstance(event, Connected):
            print(f"connected (reconnected={event.reconnected})")
        elif isinstance(event, Disconnected):
            print(f"disconnected: {event.error}")
        elif isinstance(event, ReconnectDue):
            print(f"reconnecting, attempt {event.attempt}")
        react(event, self)

    def run_until(self, done: Callable[[], bool]) -> None:
        while not done() and not self.closed:
            self.turn()

    def wait(self, op: Operation[T]) -> T:
        self.run_until(lambda: op.done)
        return op.outcome()


def main() -> None:
    broker = broker_args()
    client = Client(connect_options(**broker))
    loop = SelectorLoop(client)
    loop.dial()
    loop.run_until(lambda: client.is_connected)
    if not client.is_connected:
        raise SystemExit(f"could not connect to {broker['host']}:{broker['port']}")

    station = f"custom-loop-{uuid.uuid4().hex[:8]}"
    loop.wait(client.create_station(station_options(station), time.monotonic()))
    print(f"created station {station}")

    producer = loop.wait(
        client.create_producer(producer_options(station, "loop-producer"), time.monotonic())
    )
    # Three produces in flight at once: they leave in one write, their acks come back together.
    ops = [
        client.produce(producer, f"message {i}", produce_options(), time.monotonic())
        for i in range(3)
    ]
    for op in ops:
        ack = loop.wait(op)
        assert ack is not None
        print(f"produced seq={ack.sequence} to stream {ack.stream}")

    consumer = loop.wait(
        client.create_consumer(
            consumer_options(station, "loop-consumer", batch_max_wait_time=1.0),
            time.monotonic(),
        )
    )
    messages = loop.wait(client.fetch(consumer, 10, time.monotonic()))
    for message in messages:
        client.ack(message)
        print(f"fetched and acked seq={message.sequence_number}: {message.data.decode()}")
    loop.wait(client.ping())  # the server has processed the acks

    loop.wait(client.destroy_station(station, time.monotonic()))
    print(f"destroyed station {station}")
    client.close()
    for event in client.events():  # Closed: close the socket
        loop.dispatch(event)
    print("closed")


if __name__ == "__main__":
    main()
