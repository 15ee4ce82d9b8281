"""Placement errors while a cluster's peers come back are retried like elections.

Right after a node restarts, the JetStream meta leader cannot place replicas on it until it has
reported in again: a create answers "no suitable peers for placement, peer offline" (10005) or
"insufficient resources" (10023). The control plane retries those within the request's budget
(docs/cluster.md, "Placement while a node restarts"); the bare 10005, a cluster smaller than
the replica count, is final and answered at once.
"""

from __future__ import annotations

import asyncio

import nats.js.errors
import pytest

from memphis_broker._jsapi import JSApiError, deadline, retrying, transient

OFFLINE = "no suitable peers for placement, peer offline"
NOT_REPORTED = "no suitable peers for placement, miscellaneous issue"
TOO_SMALL = "no suitable peers for placement"


@pytest.mark.parametrize(
    ("err_code", "description", "expected"),
    [
        (10005, OFFLINE, True),
        (10005, NOT_REPORTED, True),
        (10023, "insufficient resources", True),
        (10005, TOO_SMALL, False),
        (10058, "stream name already in use with a different configuration", False),
    ],
)
def test_placement_errors_are_transient_only_while_a_peer_is_missing(
    err_code: int, description: str, expected: bool
) -> None:
    assert transient(JSApiError(500, err_code, description)) is expected
    api_error = nats.js.errors.APIError(code=500, err_code=err_code, description=description)
    assert transient(api_error) is expected


def test_a_create_retries_peer_offline_until_the_peer_is_back() -> None:
    attempts: list[float] = []

    async def create(timeout: float) -> str:
        attempts.append(timeout)
        if len(attempts) < 3:  # the peer reports in after two refusals
            raise JSApiError(500, 10005, OFFLINE)
        return "created"

    async def main() -> str:
        with deadline(5.0):
            return await retrying(create, "STREAM.CREATE.orders$1")

    assert asyncio.run(main()) == "created"
    assert len(attempts) == 3


def test_a_cluster_too_small_for_the_replicas_is_answered_at_once() -> None:
    attempts = 0

    async def create(timeout: float) -> str:
        nonlocal attempts
        attempts += 1
        raise JSApiError(500, 10005, TOO_SMALL)

    async def main() -> None:
        with deadline(5.0):
            await retrying(create, "STREAM.CREATE.orders$1")

    with pytest.raises(JSApiError, match=r"placement \(10005\)"):
        asyncio.run(main())
    assert attempts == 1
