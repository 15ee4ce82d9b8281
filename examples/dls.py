"""Dead letters: a message the consumer gives up on, and a poison message that keeps failing.

* ``msg.dead_letter(reason)`` tells the broker "never deliver this again, keep it for a human".
* A message that is never acked is redelivered after ``max_ack_time``; after
  ``max_msg_deliveries`` deliveries it is *poison* and goes to the dead-letter store.

Both land in the station's dead-letter store; with ``dls_station`` set they are also produced
into that station (headers ``station`` and ``type``), so a normal consumer can process them.

The broker: see example_setup.py. Exits non-zero if anything does not behave as expected.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from example_setup import broker_args  # the broker's address, from the environment

import memphis_sync as memphis

STATION = "dls-demo-payments"
DEAD_LETTERS = "dls-demo-dead-letters"
MAX_DELIVERIES = 2


def main() -> None:
    with memphis.connect(**broker_args()) as conn:
        dls = conn.create_station(DEAD_LETTERS)
        station = conn.create_station(STATION, dls_station=DEAD_LETTERS)
        print(f"station {STATION!r} sends its dead letters to {DEAD_LETTERS!r}")
        try:
            producer = station.create_producer("payments")
            for body in (b"payment ok", b"malformed payment", b"payment that crashes us"):
                producer.produce(body)
            print("produced 3 messages")

            consumer = station.create_consumer(
                "processor",
                max_msg_deliveries=MAX_DELIVERIES,
                max_ack_time=1.0,
                batch_max_wait_time=0.5,
            )
            watcher = dls.create_consumer("on-call", batch_max_wait_time=0.5)
            deliveries: Counter[bytes] = Counter()
            dead: list[memphis.Message] = []
            # Each fetch waits at most batch_max_wait_time: the loop polls, it never sleeps.
            deadline = time.monotonic() + 30
            while len(dead) < 2 and time.monotonic() < deadline:
                for msg in consumer.fetch():
                    deliveries[msg.data] += 1
                    if msg.data == b"payment ok":
                        msg.ack()
                        print("processed 'payment ok'")
                    elif msg.data == b"malformed payment":
                        msg.dead_letter("cannot parse the amount")
                        print("dead-lettered 'malformed payment'")
                    else:
                        # Simulate a crash: no ack, so it comes back after max_ack_time.
                        print(f"delivery {deliveries[msg.data]} of {msg.data.decode()!r}: no ack")
                for msg in watcher.fetch():
                    msg.ack()
                    dead.append(msg)
                    print(
                        f"dead-letter station got {msg.data.decode()!r} "
                        f"(from station={msg.headers.get('station')}, "
                        f"type={msg.headers.get('type')})"
                    )
            poison = deliveries[b"payment that crashes us"]
            print(f"poison message was delivered {poison} times (max {MAX_DELIVERIES})")
            got = sorted(m.data for m in dead)
            if got != [b"malformed payment", b"payment that crashes us"] or poison != 2:
                sys.exit(f"unexpected dead letters: {got}")
        finally:
            station.destroy()
            dls.destroy()


if __name__ == "__main__":
    main()
