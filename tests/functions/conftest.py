from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devhost.durable import DurableEngine, VirtualClock
from tests.functions import conformance_app

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def engine(tmp_path: Path, clock: VirtualClock) -> Iterator[DurableEngine]:
    """The conformance app on a fresh store, a virtual clock, and activities run inline so
    every history is deterministic."""
    with DurableEngine(
        conformance_app.app, tmp_path / "durable.db", clock=clock, activity_workers=0
    ) as running:
        yield running
