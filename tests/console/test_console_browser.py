"""The console in a real browser: login, a station with a schema, messages, lag and acks, the
dead-letter page's resend, escaping of user data, and figures checked against JetStream.

Every wait is for a condition (Playwright's ``expect`` polls until its timeout); nothing
sleeps. The screenshots are taken here (into docs/screenshots/ with
``MEMPHIS_UPDATE_SCREENSHOTS=1``, see conftest.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import memphis_sync as memphis
from memphis_core.memphis._names import internal_name
from tests.support.console import ConsoleBroker, Screenshot, log_in
from tests.support.names import TOKEN
from tests.support.waits import wait_until

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=20_000)  # a loaded machine: the figures refresh every 3 s

JSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
        "required": ["id"],
    }
)


@pytest.fixture(scope="module")
def conn(console_broker: ConsoleBroker) -> Iterator[memphis.Connection]:
    with memphis.connect(
        "127.0.0.1", "root", connection_token=TOKEN, port=console_broker.nats_port
    ) as c:
        yield c


def _group_cell(page: Any, group: str, column: str) -> Any:
    return page.locator(f'tr[data-group="{group}"] td.{column}')


def _confirmed(page: Any, button: str, question: str, outcome: str) -> None:
    """Submit with ``button``, check the confirmation page asks ``question``, confirm, and wait
    for the ``outcome`` message."""
    page.click(button)
    expect(page.locator("#question")).to_have_text(question)
    page.click("#confirm")
    expect(page.locator("#flash")).to_have_text(outcome)


def _jetstream_group(
    broker: ConsoleBroker, station: str, group: str, partitions: int
) -> dict[str, int]:
    """Lag and unacked of a group as JetStream reports them, summed over the partitions."""

    async def read(js: Any) -> dict[str, int]:
        out = {"lag": 0, "unacked": 0, "stored": 0}
        for p in range(1, partitions + 1):
            stream = f"{internal_name(station)}${p}"
            info = await js.consumer_info(stream, internal_name(group))
            out["lag"] += info.num_pending
            out["unacked"] += info.num_ack_pending
            out["stored"] += (await js.stream_info(stream)).state.messages
        return out

    return broker.jetstream(read)


def _jetstream_delivered(broker: ConsoleBroker, station: str, group: str, partitions: int) -> int:
    """Deliveries to a group as JetStream counts them (``delivered.consumer_seq``, redeliveries
    included), summed over the partitions."""

    async def read(js: Any) -> int:
        total = 0
        for p in range(1, partitions + 1):
            stream = f"{internal_name(station)}${p}"
            total += (await js.consumer_info(stream, internal_name(group))).delivered.consumer_seq
        return total

    return int(broker.jetstream(read))


def _metrics(page: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = page.request.get("/metrics")
    assert resp.status == 200, resp.text()
    out = {}
    for family in text_string_to_metric_families(resp.text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_login_is_required_csrf_is_checked_and_logout_ends_the_session(
    page: Any, screenshot: Screenshot
) -> None:
    page.goto("/stations")
    expect(page).to_have_url(re.compile(r"/login\?next=/stations$"))
    screenshot(page, "login")
    assert page.request.get("/metrics").status == 401  # no session, no credentials
    log_in(page, "wrong-token")
    expect(page.locator("#login-error")).to_have_text("login refused by the broker")
    log_in(page)
    expect(page.locator("#count-stations")).to_be_visible()
    # A logged-in session without the CSRF token cannot change anything.
    refused = page.request.post("/stations", form={"name": "csrf-less", "partitions": "1"})
    assert refused.status == 403
    refused = page.request.post("/logout", form={"csrf": "not-the-token"})
    assert refused.status == 403
    page.goto("/stations")
    expect(page.locator('tr[data-station="csrf-less"]')).to_have_count(0)
    session_cookies = page.context.cookies()
    page.click("#logout")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/stations")
    expect(page).to_have_url(re.compile(r"/login\?next=/stations$"))
    # Logout ends the session on the server too: a copy of the old cookie is worth nothing.
    page.context.add_cookies(session_cookies)
    page.goto("/stations")
    expect(page).to_have_url(re.compile(r"/login\?next=/stations$"))
    assert page.request.get("/metrics").status == 401


def test_an_open_page_goes_to_login_when_its_session_ends(page: Any) -> None:
    log_in(page)
    expect(page.locator("#count-stations")).to_be_visible()
    page.context.clear_cookies()
    # The overview's htmx refresh (every 5 s) is refused and takes the whole page to the login,
    # rather than drawing the login form inside the figures' box.
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    expect(page.locator("#overview-stats")).to_have_count(0)


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example/", "/\t/evil.example/"]
)
def test_login_goes_back_only_to_a_path_of_the_console(page: Any, target: str) -> None:
    page.goto("/login")
    csrf = page.locator('input[name="csrf"]').get_attribute("value")
    resp = page.request.post(
        "/login",
        form={"csrf": csrf, "username": "root", "secret": TOKEN, "next": target},
        max_redirects=0,
    )
    assert resp.status == 303, resp.text()
    assert resp.headers["location"] == "/"


def test_station_with_schema_shows_messages_lag_and_acks_as_jetstream_does(
    page: Any, conn: memphis.Connection, console_broker: ConsoleBroker, screenshot: Screenshot
) -> None:
    station, schema, group = "console-orders", "console-order", "billing"
    log_in(page)
    page.goto("/schemas")
    page.fill("#schema-name", schema)
    page.select_option("#schema-type", "json")
    page.fill("#schema-content", JSON_SCHEMA)
    _confirmed(
        page,
        "#create-schema-submit",
        f"Create schema {schema} (or a new version)?",
        f"schema {schema} saved",
    )

    page.goto("/stations")
    page.fill("#station-name", station)
    page.fill("#station-partitions", "3")
    page.select_option("#station-schema", schema)
    _confirmed(
        page,
        "#create-station-submit",
        f"Create station {station} with 3 partition(s)?",
        f"station {station} created",
    )
    expect(page.locator("#partitions")).to_have_text("3")
    expect(page.locator("#schema")).to_contain_text(schema)

    producer = conn.create_producer(station, "web")
    for i in range(6):
        producer.produce({"id": i, "item": f"item-{i}"}, partition_number=i % 3 + 1)
    consumer = conn.create_consumer(
        station, "billing-1", consumer_group=group, batch_max_wait_time=0.5, max_ack_time=120
    )
    page.goto(f"/stations/{station}")
    expect(page.locator("tr.message")).to_have_count(6)
    expect(page.locator('tr.message[data-partition="3"] pre.payload').first).to_contain_text(
        '"item": "item-5"'
    )
    expect(_group_cell(page, group, "lag")).to_have_text("6")
    expect(_group_cell(page, group, "unacked")).to_have_text("0")
    assert _jetstream_group(console_broker, station, group, 3) == {
        "lag": 6,
        "unacked": 0,
        "stored": 6,
    }

    fetched: list[Any] = []

    def six_fetched() -> bool:
        fetched.extend(consumer.fetch())
        return len(fetched) >= 6

    wait_until(six_fetched, timeout=20, what="6 messages")
    assert len(fetched) == 6
    # The groups table refreshes itself (htmx, every 3 s): wait for the new figures.
    expect(_group_cell(page, group, "lag")).to_have_text("0")
    expect(_group_cell(page, group, "unacked")).to_have_text("6")
    for msg in fetched[:3]:
        msg.ack()
    expect(_group_cell(page, group, "unacked")).to_have_text("3")
    screenshot(page, "station")

    # The same figures three ways: the page, /metrics and JetStream's API.
    js = _jetstream_group(console_broker, station, group, 3)
    assert js == {"lag": 0, "unacked": 3, "stored": 6}
    page.reload()
    assert _group_cell(page, group, "lag").inner_text() == str(js["lag"])
    assert _group_cell(page, group, "unacked").inner_text() == str(js["unacked"])
    assert page.locator("#stored").inner_text() == str(js["stored"])
    metrics = _metrics(page)
    labels = (("group", group), ("station", station))
    assert metrics[("memphis_group_lag", labels)] == js["lag"]
    assert metrics[("memphis_group_unacked", labels)] == js["unacked"]
    assert metrics[("memphis_station_messages", (("station", station),))] == js["stored"]
    assert metrics[("memphis_station_messages_in_total", (("station", station),))] == 6
    # JetStream's own count rather than 6: the console must show what JetStream says, whatever
    # the client did. (The client used to drop the inbox of a pull when its fetch ended, and a
    # message routed to it at that instant was delivered twice; its pulls now run to their
    # expiry, docs/protocol.md §7.7.)
    delivered = _jetstream_delivered(console_broker, station, group, 3)
    assert delivered >= 6
    assert metrics[("memphis_group_delivered_total", labels)] == delivered
    created = (("outcome", "ok"), ("subject", "$memphis_station_creations"))
    assert metrics[("memphis_control_request_seconds_count", created)] >= 1
    for msg in fetched[3:]:
        msg.ack()

    page.goto("/stations")
    expect(page.locator(f'tr[data-station="{station}"]')).to_be_visible()
    screenshot(page, "stations")
    page.goto("/schemas")
    expect(page.locator(f'tr[data-schema="{schema}"] td.attached')).to_have_text(station)
    screenshot(page, "schemas")
    page.goto("/")
    # Two throughput samples (5 s apart) make the first point of the graph.
    # An attribute expectation, not wait_for_function: that one evaluates a string, which the
    # console's Content-Security-Policy (no 'unsafe-eval') refuses whenever it has to poll.
    expect(page.locator("#rates")).to_have_attribute(
        "data-points", re.compile(r"^[1-9][0-9]*$"), timeout=40_000
    )
    expect(page.locator("#count-messages")).not_to_have_text("0")
    screenshot(page, "overview")


def test_poison_message_is_resent_from_the_dead_letter_page(
    page: Any, conn: memphis.Connection, screenshot: Screenshot
) -> None:
    station, group = "console-poison", "worker"
    conn.create_producer(station, "p").produce(b"poison", headers={"k": "v"})
    consumer = conn.create_consumer(
        station, group, max_msg_deliveries=1, max_ack_time=0.3, batch_max_wait_time=0.3
    )
    (first,) = wait_until(consumer.fetch, timeout=15, what="the delivery")  # never acked
    log_in(page)

    def row_listed() -> bool:
        # JetStream reports the exhausted message when it would redeliver it: keep pulling.
        assert consumer.fetch() == [], "a poisoned message was delivered again"
        page.goto(f"/dls/{station}")
        return int(page.locator("tr.dls-row").count()) == 1

    wait_until(row_listed, timeout=30, what="the poison row on the dead-letter page")
    row = page.locator("tr.dls-row")
    expect(row.locator("td.journey")).to_have_text(
        "group worker: delivered 1 time(s), never acknowledged"
    )
    expect(row.locator("pre.payload")).to_have_text("poison")
    screenshot(page, "dead-letters")
    row.locator('input[name="id"]').check()
    _confirmed(
        page,
        "#resend-selected",
        f"Resend 1 dead letter(s) of station {station}?",
        "resend: 1 message(s) to their groups",
    )
    (msg,) = wait_until(consumer.fetch, timeout=15, what="the resent message")
    assert (msg.data, dict(msg.headers)) == (first.data, {"k": "v"})
    msg.ack()  # acknowledged through $memphis_pm_acks: the row goes

    def row_gone() -> bool:
        page.goto(f"/dls/{station}")
        return int(page.locator("tr.dls-row").count()) == 0

    wait_until(row_gone, timeout=15, what="the row to clear after the ack")


def test_payloads_and_headers_are_shown_as_text_and_binary_as_hex(
    page: Any, conn: memphis.Connection
) -> None:
    station = "console-escaping"
    script = "<script>window.__pwned = 1</script>"
    header = '<img src=x onerror="window.__pwned2 = 1">'
    # A header name has no spaces or colons (NATS), but may still be markup.
    header_name = "<img/src=x/onerror=window.__pwned3=1>"
    producer = conn.create_producer(station, "p")
    producer.produce(script.encode(), headers={"note": header, header_name: "v"})
    producer.produce(b"\x00\xffbin")
    log_in(page)
    shown = page.goto(f"/stations/{station}")
    # Defence in depth: even markup that escaped escaping could run no inline script.
    assert "script-src 'self';" in shown.headers["content-security-policy"]
    expect(page.locator("tr.message")).to_have_count(2)
    newest, oldest = page.locator("tr.message").all()
    assert newest.locator("pre.payload").inner_text() == "00 ff 62 69 6e"
    assert newest.locator("span.kind").inner_text().lower() == "hex"
    assert oldest.locator("pre.payload").inner_text() == script
    assert oldest.locator("dd").filter(has_text="onerror").inner_text() == header
    assert oldest.locator("dt").filter(has_text="onerror").inner_text() == header_name
    # Shown as text, never run: no such element exists and neither handler ran.
    assert page.locator("script", has_text="__pwned").count() == 0
    assert page.locator("img[onerror]").count() == 0
    assert page.evaluate(
        "[window.__pwned, window.__pwned2, window.__pwned3].every((v) => v === undefined)"
    )


def test_schema_detach_and_enforce_and_dead_letter_drop(
    page: Any, conn: memphis.Connection, tmp_path: Path
) -> None:
    station, schema = "console-schemaless", "console-detachable"
    (tmp_path / "object.json").write_text('{"type": "object"}', encoding="utf-8")
    conn.create_schema(schema, "json", tmp_path / "object.json")
    conn.create_station(station, schema_name=schema)
    log_in(page)
    page.goto("/schemas")
    page.select_option("#detach-schema select[name=station]", station)
    _confirmed(
        page,
        "#detach-schema button",
        f"Detach the schema of station {station}?",
        f"schema detached from {station}",
    )
    expect(page.locator(f'tr[data-schema="{schema}"] td.attached')).to_have_text("—")
    page.select_option("#enforce-schema select[name=schema]", schema)
    page.select_option("#enforce-schema select[name=station]", station)
    _confirmed(
        page,
        "#enforce-schema button",
        f"Enforce schema {schema} on station {station}?",
        f"schema {schema} enforced on {station}",
    )
    expect(page.locator(f'tr[data-schema="{schema}"] td.attached')).to_have_text(station)

    # A bad station name is refused before any request, with the SDKs' own check.
    page.goto("/stations")
    page.fill("#station-name", "Not A Valid Name!")
    page.click("#create-station-submit")
    expect(page.locator("#flash")).to_contain_text("not created: ")

    consumer = conn.create_consumer(station, "drop-me", batch_max_wait_time=0.3)
    conn.create_producer(station, "p").produce({"n": 1})
    (msg,) = wait_until(consumer.fetch, timeout=15, what="the delivery")
    msg.dead_letter("cannot process")

    def row_listed() -> bool:
        page.goto(f"/dls/{station}")
        return int(page.locator("tr.dls-row").count()) == 1

    wait_until(row_listed, timeout=15, what="the dead letter on the page")
    expect(page.locator("tr.dls-row pre.payload")).to_have_text('{\n  "n": 1\n}')
    _confirmed(page, "#drop-all", f"Drop all dead letters of station {station}?", "drop: 1 row(s)")
    expect(page.locator("tr.dls-row")).to_have_count(0)
