"""A consumer's life (active, unreachable, destroyed): every cell of its table, and what each
state means for its error handler, bytes in and events out."""

from __future__ import annotations

import pytest

from memphis_core.memphis._consumers import ConsumerError
from memphis_core.memphis._deliveries import LIFE_TABLE, ConsumerLife, LifeInput
from tests.support.scripted_broker import connected, consumer, pulls


@pytest.mark.parametrize("life", list(ConsumerLife), ids=lambda s: s.name)
@pytest.mark.parametrize("event", list(LifeInput), ids=lambda i: i.name)
def test_every_cell(life: ConsumerLife, event: LifeInput) -> None:
    # Every pair is allowed; only ACTIVE can become UNREACHABLE, and DESTROYED is terminal.
    target = LIFE_TABLE[(life, event)]
    if life is ConsumerLife.DESTROYED:
        assert target is ConsumerLife.DESTROYED
    if target is ConsumerLife.UNREACHABLE:
        assert life is not ConsumerLife.DESTROYED
    assert len(LIFE_TABLE) == len(ConsumerLife) * len(LifeInput)


def test_a_pull_hearing_consumer_deleted_after_our_own_destroy_reports_nothing() -> None:
    # The broker deletes the group's durable when its last member is destroyed, and a pull of
    # ours still open hears "consumer deleted": that is the destroy the caller asked for, not a
    # station gone, so the error handler hears nothing.
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    client = script.client
    op = client.fetch(state, 10, script.now, partition_number=1)
    (pull,) = pulls(script)
    destroyed = client.destroy_consumer(state, script.now)
    script.reply(script.one("PUB", "$memphis_consumer_destructions"), b"")
    assert destroyed.outcome() is None
    assert op.outcome() == []
    script.events()
    script.status(pull, 409, "Consumer Deleted")
    assert not [e for e in script.events() if isinstance(e, ConsumerError)]
    assert state.life is ConsumerLife.DESTROYED


def test_a_durable_gone_under_an_active_consumer_is_reported_once() -> None:
    script = connected()
    state = consumer(script, batch_size=10, batch_max_wait_time=5.0)
    client = script.client
    client.fetch(state, 10, script.now)
    p1, p2 = sorted(pulls(script), key=lambda s: s.subject)
    script.status(p1, 409, "Consumer Deleted")
    script.status(p2, 409, "Consumer Deleted")
    assert len([e for e in script.events() if isinstance(e, ConsumerError)]) == 1
    assert state.life is ConsumerLife.UNREACHABLE
