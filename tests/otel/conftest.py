"""The OpenTelemetry instrumentation (docs/tracing.md) against the real broker, on the three
frontends: the same fixtures as the conformance suite (one broker per session, the blocking
proxy over the async frontends), plus an SDK tracer and meter provider that keep what they
record in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from memphis_broker import EmbeddedBroker
from tests.conformance import conftest as conformance
from tests.support.frontends import frontend_fixtures
from tests.support.names import TOKEN, USER, unique
from tests.support.probe import connections


class Recorded:
    """The providers to pass to ``connect`` and what they recorded."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """The ended spans, oldest first; only those called ``name`` when given."""
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Metric name → [(attributes, point)] of what was recorded so far."""
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = out.setdefault(metric.name, [])
                    points.extend((dict(p.attributes or {}), p) for p in metric.data.data_points)
        return out


# The conformance suite's session fixtures: a token-mode broker and its read-only probe.
broker = conformance.broker
probe = conformance.probe
frontend, memphis = frontend_fixtures("session")


@pytest.fixture
def otel() -> Recorded:
    return Recorded()


@pytest.fixture
def connect(memphis: Any, broker: EmbeddedBroker, otel: Recorded) -> Iterator[Callable[..., Any]]:
    """``connect(**overrides)``: instrumented with the ``otel`` providers unless overridden."""
    with connections(
        memphis,
        broker,
        USER,
        connection_token=TOKEN,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    ) as connect:
        yield connect


@pytest.fixture
def conn(connect: Callable[..., Any]) -> Any:
    return connect()


@pytest.fixture
def station(request: pytest.FixtureRequest) -> str:
    """A station name of the test's own."""
    return unique(request.node.name.split("[")[0].removeprefix("test_")[:40])
