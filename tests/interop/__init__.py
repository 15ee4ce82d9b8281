"""Interop: our SDK, memphis-py 1.3.1 and nats-py on one memphis_broker ."""
