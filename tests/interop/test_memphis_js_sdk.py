"""memphis.js (the official Node SDK, npm ``memphis-dev`` 1.3.2) ↔ our SDK on one station.

The Node side is ``memphis_js_roundtrip.js``, run with the machine's ``node`` against the SDK
that ``make memphis-js`` installs into ``.cache/memphis-js`` (from the npm registry). Without
``node`` or that directory the test skips, saying so; under ``CI=true`` it fails instead, so CI
cannot pass without having run it.

* messages the Node SDK produces (a 2-partition station it creates, a user header, a
  ``msgId``) reach our consumer with their payload and header, each once;
* a new group of the Node SDK's ``fetchMessages`` reads the station from its start, ours and
  its own messages, and acks them: the group's info, read by our SDK, shows none pending and
  none unacked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import memphis_sync
from memphis_broker import EmbeddedBroker
from tests.support.names import TOKEN
from tests.support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("memphis_js_roundtrip.js")
#: Where ``make memphis-js`` installs the Node SDK (``npm install --prefix``).
MODULES = ROOT / ".cache" / "memphis-js" / "node_modules"


def _node() -> str:
    node = shutil.which("node")
    missing = (
        "node is not installed"
        if node is None
        else f"{MODULES / 'memphis-dev'} is missing (make memphis-js)"
        if not (MODULES / "memphis-dev").is_dir()
        else None
    )
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the Node SDK interop test cannot run: {missing}")
        pytest.skip(missing)
    assert node is not None
    return node


def _run_js(broker: EmbeddedBroker, *args: str) -> str:
    done = subprocess.run(
        [_node(), str(SCRIPT), args[0], str(broker.port), TOKEN, *args[1:]],
        env=os.environ | {"NODE_PATH": str(MODULES)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_messages_cross_between_the_node_sdk_and_ours(
    broker: EmbeddedBroker, sdk: memphis_sync.Connection, name: Callable[[str], str]
) -> None:
    station = name("st")
    _run_js(broker, "produce", station, "6")

    consumer = sdk.create_station(station).create_consumer("py", batch_max_wait_time=0.5)
    received: list[tuple[bytes, dict[str, str]]] = []
    for _ in range(40):
        for message in consumer.fetch():
            received.append((message.data, dict(message.headers)))
            message.ack()
        if len(received) >= 6:
            break
    assert sorted(data for data, _ in received) == [f"js-{i}".encode() for i in range(6)]
    assert all(headers.get("origin") == "js" for _, headers in received), received

    producer = sdk.create_station(station).create_producer("py-producer")
    for i in range(5):
        producer.produce(f"py-{i}".encode(), headers={"origin": "py"})
    seen = json.loads(_run_js(broker, "fetch", station, "11"))
    expected = sorted([f"js-{i}" for i in range(6)] + [f"py-{i}" for i in range(5)])
    assert sorted(m["data"] for m in seen) == expected
    assert all(m["headers"].get("origin") == m["data"][:2] for m in seen), seen
    # The Node SDK's acks reached the broker: its group has nothing pending and nothing unacked.
    group = sdk.create_station(station).create_consumer("py-observer", consumer_group="js")

    def settled() -> bool:
        info = group.info()
        return info.num_pending == 0 and info.num_ack_pending == 0

    wait_until(settled, timeout=30, what="the Node SDK's acks")
