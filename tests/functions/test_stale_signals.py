"""A signal's staleness is decided once: whoever works a batch out again (a redelivery
after a failure, a second instance racing for the partition, a clock that disagrees) plans
what the first decision planned."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from activities.signals import PLAN_CLAIM_PREFIX, PLAN_CLAIMS_KEPT, RawEvent, SignalProcessor
from adapters.bootstrap import Services, Settings
from adapters.simulated_broker import SimulatedBroker
from adapters.sqlite_store import SqliteStore
from tests.functions.desk import T0, make_desk, trade

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}
RISING = [100.0, 100.0, 100.0, 101.0]  # one crossover, at the last tick
LIMIT_S = 30


def batch(prices: list[float] = RISING, first_seq: int = 0) -> list[RawEvent]:
    return [
        RawEvent("0", seq, trade("AAPL", price, T0 + timedelta(seconds=seq)))
        for seq, price in enumerate(prices, start=first_seq)
    ]


def make_processor(tmp_path: Path, strategy: dict[str, object]) -> SignalProcessor:
    settings = Settings(
        books_path=tmp_path / "books.sqlite", strategies=(strategy,), max_signal_age_s=LIMIT_S
    )
    return SignalProcessor(Services(settings, SqliteStore(settings.books_path), SimulatedBroker()))


@pytest.fixture
def processor(tmp_path: Path) -> Iterator[SignalProcessor]:
    made = make_processor(tmp_path, SMA)
    try:
        yield made
    finally:
        made.svc.store.close()


SIGNAL_TS = T0 + timedelta(seconds=len(RISING) - 1)


def test_a_fresh_signal_stays_planned_when_its_batch_comes_back_too_late(
    processor: SignalProcessor,
) -> None:
    first = processor.ingest(batch(), now=SIGNAL_TS + timedelta(seconds=10))
    [request] = first.requests
    processor.audit_signals(first, now=SIGNAL_TS)
    # Its trade was started; then the batch failed before its commit and is redelivered
    # after a backoff that takes the signal past the limit.
    processor.abandon(first)
    again = processor.ingest(batch(), now=SIGNAL_TS + timedelta(seconds=LIMIT_S + 60))
    assert [r.intent.intent_id for r in again.requests] == [request.intent.intent_id]
    assert again.stale == []


def test_a_signal_found_stale_stays_stale(processor: SignalProcessor) -> None:
    late = SIGNAL_TS + timedelta(seconds=LIMIT_S + 1)
    first = processor.ingest(batch(), now=late)
    assert first.requests == [] and len(first.stale) == 1
    processor.audit_signals(first, now=late)
    processor.abandon(first)
    again = processor.ingest(batch(), now=late + timedelta(minutes=5))
    assert again.requests == [] and len(again.stale) == 1


def test_at_the_limit_a_signal_is_fresh(processor: SignalProcessor) -> None:
    result = processor.ingest(batch(), now=SIGNAL_TS + timedelta(seconds=LIMIT_S))
    assert len(result.requests) == 1 and result.stale == []


FALLING = [99.0, 98.0]  # after RISING: the fast average crosses back below


def test_a_late_signal_that_only_closes_is_traded(processor: SignalProcessor) -> None:
    entry = processor.ingest(batch(), now=SIGNAL_TS + timedelta(seconds=1))
    processor.commit(entry)
    late = processor.ingest(batch(FALLING, len(RISING)), now=SIGNAL_TS + timedelta(minutes=10))
    [exit_request] = late.requests
    [leg] = exit_request.intent.legs
    assert (leg.side.value, leg.quantity) == ("sell", Decimal(10))
    assert late.stale == []


def test_a_late_flip_only_closes_and_the_next_signal_is_sized_from_flat(
    tmp_path: Path,
) -> None:
    processor = make_processor(tmp_path, {**SMA, "allow_short": True})
    try:
        entry = processor.ingest(batch(), now=SIGNAL_TS + timedelta(seconds=1))
        processor.commit(entry)
        late_now = SIGNAL_TS + timedelta(minutes=10)
        late = processor.ingest(batch(FALLING, len(RISING)), now=late_now)
        [(flip, _)] = late.stale
        assert flip.targets == (-1,)
        [close] = late.requests  # the long closed, no short opened
        [leg] = close.intent.legs
        assert (leg.side.value, leg.quantity) == ("sell", Decimal(10))
        assert [s.targets for s in late.signals] == [(0,)]
        processor.audit_signals(late, now=late_now)
        processor.commit(late)
        # Back up, promptly: the strategy's next signal buys its size from flat.
        seq = len(RISING) + len(FALLING)
        prompt = SIGNAL_TS + timedelta(seconds=len(FALLING) + 3)
        again = processor.ingest(batch([101.0, 103.0], seq), now=prompt)
        [reopen] = again.requests
        [leg] = reopen.intent.legs
        assert (leg.side.value, leg.quantity) == ("buy", Decimal(10))
    finally:
        processor.svc.store.close()


def test_a_stale_decision_holds_for_a_redelivery_whose_clock_says_fresh(
    processor: SignalProcessor,
) -> None:
    first = processor.ingest(batch(), now=SIGNAL_TS + timedelta(seconds=LIMIT_S + 15))
    assert first.requests == [] and len(first.stale) == 1
    processor.abandon(first)  # failed before its audit: nothing of it was written
    behind = processor.ingest(batch(), now=SIGNAL_TS + timedelta(seconds=LIMIT_S - 5))
    assert behind.requests == [] and len(behind.stale) == 1


def test_two_instances_working_one_batch_out_decide_alike(
    tmp_path: Path, processor: SignalProcessor
) -> None:
    # A second instance takes the partition over while the first is still on the batch:
    # the first calls the signal fresh (and will start its trade), the second, two seconds
    # later on its clock, would have called it stale.
    other = SignalProcessor(processor.svc)
    fresh = processor.ingest(batch(), now=SIGNAL_TS + timedelta(seconds=LIMIT_S - 1))
    late = other.ingest(batch(), now=SIGNAL_TS + timedelta(seconds=LIMIT_S + 1))
    assert [r.intent for r in late.requests] == [r.intent for r in fresh.requests]
    assert len(fresh.requests) == 1 and late.stale == []


def test_decisions_are_forgotten_once_no_batch_could_come_back(tmp_path: Path) -> None:
    desk = make_desk(tmp_path, strategies=[SMA], max_signal_age_s=LIMIT_S)
    try:
        old = datetime.now(UTC) - PLAN_CLAIMS_KEPT - timedelta(minutes=1)
        desk.store.claim(f"{PLAN_CLAIM_PREFIX}sig-old", {"stale": True, "age_s": 99}, ts=old)
        recent = datetime.now(UTC)
        desk.store.claim(f"{PLAN_CLAIM_PREFIX}sig-new", {"stale": True, "age_s": 99}, ts=recent)
        desk.fire("forget_signal_decisions")
        assert desk.store.claim(f"{PLAN_CLAIM_PREFIX}sig-old", {}, ts=recent).created is True
        assert desk.store.claim(f"{PLAN_CLAIM_PREFIX}sig-new", {}, ts=recent).created is False
    finally:
        desk.close()
