"""Schemaverse: enforce a JSON schema on a station; a bad message is refused before sending.

Validation happens in the producer, so an invalid message never reaches the station; the broker
records it in the station's dead-letter store. Consumers get decoded values back with
``data_deserialized()``.

The broker: see example_setup.py. Exits non-zero if anything does not behave as expected.
"""

from __future__ import annotations

import sys
from pathlib import Path

from example_setup import broker_args  # the broker's address, from the environment

import memphis_sync as memphis

STATION = "schemas-demo"
SCHEMA = "order-schema"
SCHEMA_FILE = Path(__file__).with_name("order.schema.json")


def main() -> None:
    with memphis.connect(**broker_args()) as conn:
        conn.create_schema(SCHEMA, memphis.SchemaType.JSON, str(SCHEMA_FILE))
        print(f"created JSON schema {SCHEMA!r} from {SCHEMA_FILE.name}")
        station = conn.create_station(STATION)
        try:
            conn.enforce_schema(SCHEMA, STATION)
            print(f"enforced {SCHEMA!r} on station {STATION!r}")
            producer = station.create_producer("shop")
            producer.produce({"id": 1, "item": "book", "quantity": 2})
            print("produced a valid order")
            try:
                producer.produce({"id": 2, "item": "pen"})  # no quantity
            except memphis.MemphisSchemaError as err:
                print(f"rejected an invalid order: {err}")
            else:
                sys.exit("an invalid order was accepted")

            consumer = station.create_consumer("fulfilment", batch_max_wait_time=0.5)
            messages = consumer.fetch()
            for msg in messages:
                print(f"consumed: {msg.data_deserialized()}")
                msg.ack()
            if [m.data_deserialized() for m in messages] != [
                {"id": 1, "item": "book", "quantity": 2}
            ]:
                sys.exit(f"unexpected messages: {[m.data for m in messages]}")

            conn.detach_schema(STATION)
            print(f"detached the schema from {STATION!r}")
        finally:
            station.destroy()


if __name__ == "__main__":
    main()
