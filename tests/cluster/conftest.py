"""Fixtures for the cluster suite: one real 3-node cluster per module (support/failover_cluster.py).

* ``cluster`` — the module's :class:`Cluster`, started once, stopped at the end.
* ``healthy_cluster`` — the same, with every node up before and after the test.
* ``frontend`` / ``memphis`` — the frontend under test, as in tests/conformance.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.failover_cluster import Cluster
from tests.support.frontends import frontend_fixtures


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def healthy_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """The module's cluster with every node up before and after the test."""
    cluster.revive()
    yield cluster
    cluster.revive()


frontend, memphis = frontend_fixtures("module")
