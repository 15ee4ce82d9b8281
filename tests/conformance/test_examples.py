"""Every program in examples/ runs to completion against the session broker (demo.py against
its own; the ``*_async.py`` ones on asyncio and on trio), exits 0 and prints what it claims to
do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from memphis_broker import EmbeddedBroker
from tests.support.names import TOKEN, USER

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED: dict[str, list[str]] = {
    "quickstart.py": [
        r"^connected to 127\.0\.0\.1:\d+ as root$",
        r"^created station 'quickstart-orders'$",
        r"^produced 3 messages$",
        r"^fetched 3 messages$",
        r'^  seq=1 data=\{"id":0,"item":"book"\} headers=.*\'source\': \'quickstart\'',
        r"^acked 3 messages$",
        r"^destroyed station 'quickstart-orders'$",
    ],
    "partitions.py": [
        r"^partition 1: ",
        r"^partition 3: .*pinned",
        r"^key 'alice' -> partition \[\d\]$",
    ],
    "schemas.py": [
        r"^enforced 'order-schema' on station 'schemas-demo'$",
        r"^rejected an invalid order: Schema validation has failed: .*quantity",
        r"^consumed: \{'id': 1, 'item': 'book', 'quantity': 2\}$",
    ],
    "dls.py": [
        r"^dead-lettered 'malformed payment'$",
        r"^dead-letter station got 'malformed payment' \(from station=dls-demo-payments, "
        r"type=unacked\)$",
        r"^dead-letter station got 'payment that crashes us' ",
        r"^poison message was delivered 2 times \(max 2\)$",
    ],
    "async_produce.py": [
        r"^sync produce: 100 messages, [\d,]+ msgs/s$",
        r"^async produce \+ flush: 2000 messages, [\d,]+ msgs/s$",
        r"^stored: 2100 messages$",
    ],
    "consumer_group.py": [
        r"^produced 30 orders over 3 partitions$",
        r"^billing: \d+ \+ \d+ = 30 messages, 0 duplicates$",
        r"^audit: 30 messages$",
    ],
    "tracing.py": [
        r'^\s*"name": "send tracing-orders",$',
        r'^\s*"kind": "SpanKind.CONSUMER",$',
        r"^4 spans: send tracing-orders, receive tracing-orders, ack tracing-orders, "
        r"process tracing-orders$",
        r"^one trace [0-9a-f]{32}: send -> process -> ack$",
    ],
    # Written by the core's author: the sans-IO client driven by a bare selectors loop.
    "custom_loop.py": [
        r"^connected \(reconnected=False\)$",
        r"^produced seq=3 to stream custom-loop-[0-9a-f]+\$1$",
        r"^fetched and acked seq=3: message 2$",
        r"^closed$",
    ],
}


def _async_expectations(lib: str) -> dict[str, list[str]]:
    """The ``*_async.py`` programs run on asyncio or trio (``--lib``) and print the same lines on
    both; the station names carry the library's name."""
    return {
        f"quickstart_async.py --lib {lib}": [
            rf"^created station '{lib}-quickstart-orders'$",
            r"^produced 3 messages, stored as seq=\[1, 2, 3\]$",
            r"^fetched 3 messages$",
            r'^  seq=1 data=\{"id":0,"item":"book"\} headers=.*\'source\': \'quickstart\'',
            r"^acked 3 messages$",
        ],
        f"concurrent_produce_async.py --lib {lib}": [
            r"^1 task: 10 messages, [\d,]+ msgs/s$",
            r"^10 tasks: 100 messages, [\d,]+ msgs/s$",
            r"^1 task, async produce \+ flush: 2000 messages, [\d,]+ msgs/s$",
            r"^stored: 2110 messages$",
        ],
        f"consumer_group_async.py --lib {lib}": [
            r"^produced 30 orders over 3 partitions$",
            r"^billing: \d+ \+ \d+ = 30 messages, 0 duplicates$",
            r"^audit: 30 messages$",
        ],
    }


EXPECTED.update(_async_expectations("asyncio"))
EXPECTED.update(_async_expectations("trio"))


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script, *args = command.split()
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _assert_lines(result: subprocess.CompletedProcess[str], patterns: list[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for pattern in patterns:
        assert any(re.search(pattern, line) for line in lines), (pattern, result.stdout)


@pytest.mark.parametrize("command", list(EXPECTED))
def test_example(broker: EmbeddedBroker, command: str) -> None:
    env = dict(
        os.environ,
        MEMPHIS_HOST=broker.host,
        MEMPHIS_PORT=str(broker.port),
        MEMPHIS_CONNECTION_TOKEN=TOKEN,
        MEMPHIS_USERNAME=USER,
        MESSAGES="2000",
    )
    _assert_lines(_run(command, env), EXPECTED[command])


def test_example_fails_cleanly_without_a_broker() -> None:
    env = dict(
        os.environ, MEMPHIS_HOST="127.0.0.1", MEMPHIS_PORT="1", MEMPHIS_CONNECTION_TOKEN=TOKEN
    )
    result = _run("quickstart.py", env)
    assert result.returncode != 0
    assert "MemphisConnectError" in result.stderr


def test_demo_runs_its_own_broker() -> None:
    # A free port: a developer's broker (or another run's demo) may hold 6666.
    result = _run("demo.py", dict(os.environ, MEMPHIS_DEMO_PORT="0"))
    _assert_lines(
        result,
        [
            r"^broker up on 127\.0\.0\.1:\d+ ",
            r"^broker stopped$",
            r"^demo: OK$",
        ],
    )


def test_demo_takes_its_ports_from_make_variables() -> None:
    from tests.support.nats_server import free_port

    port, monitor = free_port(), free_port()
    # `make demo PORT=N MONITOR_PORT=M` hands them to demo.py (README, "make demo")...
    dry = subprocess.run(
        ["make", "-n", "demo", f"PORT={port}", f"MONITOR_PORT={monitor}"],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert f"MEMPHIS_DEMO_PORT={port}" in dry.stdout
    assert f"MEMPHIS_DEMO_MONITOR_PORT={monitor}" in dry.stdout
    # A PORT in the environment (set by many shells and platforms for their own use) is not
    # taken for the demo's.
    unrelated = subprocess.run(
        ["make", "-n", "demo"],
        cwd=EXAMPLES.parent,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMPHIS_DEMO_")},
            "PORT": "3000",
            "MONITOR_PORT": "3001",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "MEMPHIS_DEMO_PORT= " in unrelated.stdout
    assert "MEMPHIS_DEMO_MONITOR_PORT= " in unrelated.stdout
    # ...which uses exactly those ports.
    env = dict(os.environ, MEMPHIS_DEMO_PORT=str(port), MEMPHIS_DEMO_MONITOR_PORT=str(monitor))
    _assert_lines(_run("demo.py", env), [rf"^broker up on 127\.0\.0\.1:{port} ", r"^demo: OK$"])
    bad = _run("demo.py", dict(os.environ, MEMPHIS_DEMO_PORT="http"))
    assert bad.returncode != 0
    assert "MEMPHIS_DEMO_PORT='http' is not a port number" in bad.stderr


def test_an_async_example_refuses_an_unknown_library() -> None:
    result = _run("quickstart_async.py --lib curio", dict(os.environ))
    assert result.returncode == 2
    assert "invalid choice: 'curio'" in result.stderr


def test_every_example_is_covered() -> None:
    """Every program runs here (the async ones on both libraries); example_setup.py is the
    set-up they share, not a program."""
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"demo.py", "example_setup.py"}
    assert scripts == {command.split()[0] for command in EXPECTED}
    for script in scripts:
        if script.endswith("_async.py"):
            assert {f"{script} --lib asyncio", f"{script} --lib trio"} <= set(EXPECTED)
    assert not [p for p in EXAMPLES.rglob("*.py") if p.parent != EXAMPLES]
