"""The helpers every test suite shares; conftest.py files hold only fixtures.

* waits, names: bounded waits (``wait_until``, async ``poll``); credentials, ``unique()``, data.
* scripted_broker, wire_vectors, state_tables: the core's bytes-in/events-out tests.
* frontends, async_lib, sync_client, probe: one test body on the frontends, and the broker's
  own view of what they did.
* nats_server, launcher, cluster, failover_cluster, driver, control_client, interop: real
  servers and the clients that talk to them.
* chromium, console, cli, public_api, typecheck: the console's browser and broker, what a CLI
  run returns, the frontends' public members, ``mypy --strict`` on a user's program.
"""
