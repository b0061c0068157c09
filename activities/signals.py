"""Turning batches of market events into trade requests.

The processor keeps every configured strategy warm in memory and snapshots its state to the
signal-state store after each batch, so another instance (or this one after a restart)
continues exactly. Events already seen are dropped by partition sequence number, and each
strategy ignores ticks older than the last one it saw. A malformed event is dead-lettered:
audited with the reason and counted, and the rest of the batch goes on.

Order matters for exactly-once: the caller starts the trade orchestrations (idempotent by
intent id) *before* :meth:`SignalProcessor.commit` saves the new state, so a crash between
the two replays the batch into the same intents instead of losing them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import chain
from typing import Annotated, Any

import msgspec
import orjson

from activities import service
from adapters.bootstrap import Services
from domain import audit
from domain.audit import AuditKind
from domain.errors import Conflict, RetryableFault, ValidationError
from domain.execution import BrokerOrder, TradeRequest
from domain.market import ParseError, Tick, feed_trade, parse_market_event, parse_tick
from domain.orders import OrderIntent
from domain.planning import SizingRule, plan_intent
from domain.strategies import AnyStrategy, Signal, build_strategy

# Claims keep each signal's stale-or-fresh decision (``SignalProcessor._stale_age``) for
# as long as a batch can be delivered again: longer than any Event Hub retention.
PLAN_CLAIM_PREFIX = "signal-plan:"
PLAN_CLAIMS_KEPT = timedelta(days=8)

SIZING_KEYS = frozenset({"quantity", "plan", "take_profit_pct", "stop_loss_pct", "unwind_after_s"})
RAW_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class RawEvent:
    partition: str
    seq: int
    body: bytes


def parse_event(body: bytes, now: datetime) -> Tick | ParseError | None:
    """The general path for one event body: a validated trade, why the body is refused, or
    ``None`` for quotes and bars (they do not drive the configured strategies)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return ParseError("body", f"not JSON: {error}")
    if type(data) is dict and data.get("type", "trade") == "trade":
        return parse_tick(data, now=now)  # the common case, without the dispatch
    parsed = parse_market_event(data, now=now)
    if isinstance(parsed, ParseError | Tick):
        return parsed
    return None


# The feed's trade message, decoded and type-checked in one step (most of a tick's cost
# otherwise). Only a fast path: whatever it refuses or cannot vouch for goes through
# ``parse_event``, so both accept exactly the same ticks. An integer id outside int64 is
# left to the general path too: its JSON decoder reads integers beyond 64 bits as floats.
class _TradeMessage(msgspec.Struct, gc=False):
    symbol: str
    price: float
    size: float
    ts: str
    id: str | Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    type: str = "trade"


_decode_trade = msgspec.json.Decoder(_TradeMessage).decode


def read_event(event: RawEvent, now: datetime) -> Tick | ParseError | None:
    """One event of a batch: the typed fast decoder for the feed's trades, the general
    path (``parse_event``) for everything else."""
    try:
        message = _decode_trade(event.body)
    except msgspec.DecodeError:
        message = None
    if message is not None and message.type == "trade":
        tick = feed_trade(message.symbol, message.price, message.size, message.ts, message.id, now)
        if tick is not None:
            return tick
    return parse_event(event.body, now)


@dataclass
class _Slot:
    key: str
    config: dict[str, Any]
    rule: SizingRule
    unwind_after_s: int | None
    strategy: AnyStrategy
    targets: tuple[int, ...]
    version: str | None = None
    reload: bool = False  # the warm state is not to be trusted: rebuild it from the store

    @property
    def long_only(self) -> bool:
        """A one-symbol strategy that never sells short (pairs always hold one leg short)."""
        return len(self.strategy.symbols) == 1 and not self.strategy.allow_short

    def snapshot(self) -> dict[str, Any]:
        return {"v": 1, "strategy": self.strategy.to_dict(), "targets": list(self.targets)}


@dataclass
class Batch:
    """What one batch produced. ``requests`` are to be started, ``order_updates`` announced
    to their orchestrations, then the batch committed."""

    requests: list[TradeRequest] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    # Signals that would open a position and are older than ``max_signal_age_s``, with
    # their age in seconds: audited, their opening not traded (a flip's closing half is
    # among ``signals``), their strategy's targets left where the last planned one put them.
    stale: list[tuple[Signal, float]] = field(default_factory=list)
    order_updates: list[BrokerOrder] = field(default_factory=list)
    dead_letters: int = 0
    duplicates: int = 0
    ticks: int = 0
    cursors: dict[str, int] = field(default_factory=dict)
    slots: list[_Slot] = field(default_factory=list)


def _notional(intent: OrderIntent) -> Decimal:
    """What the intent's entries are worth at the signal's prices."""
    return sum(
        (
            leg.quantity * intent.reference_prices.get(leg.symbol, Decimal(0))
            for leg in intent.entry_legs
        ),
        Decimal(0),
    )


def _adds_exposure(before: Sequence[int], after: Sequence[int]) -> bool:
    """Whether moving from ``before`` to ``after`` targets opens or grows a position on
    any symbol (a flip opens one), rather than only closing."""
    return any(abs(new) > abs(old) or new * old < 0 for old, new in zip(before, after, strict=True))


def _closing_part(before: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, ...]:
    """The part of a move from ``before`` to ``after`` that only closes: a flip stops at
    flat, a position opened or grown stays as it was."""
    return tuple(
        0 if new * old < 0 else (old if abs(new) > abs(old) else new)
        for old, new in zip(before, after, strict=True)
    )


def _strategy_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in SIZING_KEYS and k != "state"}


@dataclass
class Counters:
    batches: int = 0
    ticks: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    signals: int = 0
    stale_signals: int = 0
    ts_last_tick: datetime | None = None
    wall_last_batch: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "ticks": self.ticks,
            "dead_letters": self.dead_letters,
            "duplicates": self.duplicates,
            "signals": self.signals,
            "stale_signals": self.stale_signals,
            "ts_last_tick": None if self.ts_last_tick is None else self.ts_last_tick.isoformat(),
            "seconds_since_last_batch": (
                None if self.wall_last_batch is None else time.time() - self.wall_last_batch
            ),
        }


class SignalProcessor:
    def __init__(self, svc: Services, *, hub: str = "ticks") -> None:
        self.svc = svc
        self.hub = hub
        self.counters = Counters()
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._by_symbol: dict[str, list[_Slot]] = {}
        self._cursors: dict[str, tuple[int, str | None]] = {}
        for index, config in enumerate(svc.settings.strategies):
            slot = self._fresh_slot(config, index)
            if slot.key in self._slots:
                raise ValidationError(
                    f"TRADING_STRATEGIES[{index}]", f"repeats the strategy {slot.key!r}"
                )
            self._slots[slot.key] = slot
            for symbol in slot.strategy.symbols:
                self._by_symbol.setdefault(symbol, []).append(slot)

    def _fresh_slot(self, config: Mapping[str, Any], index: int) -> _Slot:
        try:
            strategy = build_strategy(_strategy_config(config))
            rule = SizingRule.from_config(config)
        except ValidationError as error:
            raise ValidationError(
                f"TRADING_STRATEGIES[{index}].{error.field}", error.reason
            ) from None
        unwind = config.get("unwind_after_s")
        if unwind is not None and (not isinstance(unwind, int) or unwind <= 0):
            raise ValidationError(
                f"TRADING_STRATEGIES[{index}].unwind_after_s", "must be a positive whole number"
            )
        return _Slot(
            key=f"strategy:{strategy.strategy_id}",
            config=_strategy_config(config),
            rule=rule,
            unwind_after_s=unwind,
            strategy=strategy,
            targets=(0,) * len(strategy.symbols),
        )

    # -- warm state ------------------------------------------------------------------------

    def _refresh(self, slots: Sequence[_Slot], partitions: Sequence[str]) -> None:
        """Make the warm state match the store: another instance may have moved on. Only
        versions are read unless one differs."""
        cursor_keys = [self._cursor_key(p) for p in partitions]
        current = self.svc.store.versions([s.key for s in slots] + cursor_keys)
        stale_slots = [
            s for s in slots if s.reload or (s.key in current and current[s.key] != s.version)
        ]
        stale_cursors = [
            (partition, key)
            for partition, key in zip(partitions, cursor_keys, strict=True)
            if key in current and (self._cursors.get(partition) or (0, None))[1] != current[key]
        ]
        if not stale_slots and not stale_cursors:
            return
        stored = self.svc.store.load_many(
            [s.key for s in stale_slots if s.key in current] + [key for _, key in stale_cursors]
        )
        for slot in stale_slots:
            found = stored.get(slot.key)
            if found is None:  # never saved: start again from the configuration
                slot.strategy = build_strategy(slot.config)
                slot.targets = (0,) * len(slot.strategy.symbols)
                slot.version = None
            else:
                snapshot = found.value
                config = {**slot.config, "state": snapshot["strategy"].get("state")}
                slot.strategy = build_strategy(config)
                slot.targets = tuple(int(t) for t in snapshot["targets"])
                slot.version = found.version
            slot.reload = False
        for partition, key in stale_cursors:
            found = stored.get(key)
            if found is not None:
                self._cursors[partition] = (int(found.value["seq"]), found.version)

    def _cursor_key(self, partition: str) -> str:
        return f"cursor:{self.hub}:{partition}"

    # -- a batch ---------------------------------------------------------------------------

    def _dead_letters(self, refused: list[tuple[RawEvent, ParseError]], now: datetime) -> None:
        entries = [
            audit.Entry(
                AuditKind.DEAD_LETTER,
                f"{self.hub}:{event.partition}:{event.seq}",
                payload={
                    **error.to_dict(),
                    "raw": event.body[:RAW_LIMIT].decode("utf-8", errors="replace"),
                    "partition": event.partition,
                },
            )
            for event, error in refused
        ]
        audit.append_many(
            self.svc.store,
            partition=service.DEAD_LETTER_PARTITION,
            ts_recorded=now,
            entries=entries,
        )

    def ingest(self, events: Sequence[RawEvent], *, now: datetime) -> Batch:
        with self._lock:
            return self._ingest(events, now)

    def _ingest(self, events: Sequence[RawEvent], now: datetime) -> Batch:
        batch = Batch()
        ticks: list[Tick] = []
        refused: list[tuple[RawEvent, ParseError]] = []
        partitions = sorted({e.partition for e in events})
        self._refresh(list(self._slots.values()), partitions)
        seen = {p: self._cursors.get(p, (-1, None))[0] for p in partitions}
        highest = dict(seen)
        parse = read_event
        for event in events:
            if event.seq <= seen[event.partition]:
                batch.duplicates += 1
                continue
            if event.seq > highest[event.partition]:
                highest[event.partition] = event.seq
            parsed = parse(event, now)
            if type(parsed) is Tick:
                ticks.append(parsed)
            elif isinstance(parsed, ParseError):
                refused.append((event, parsed))
        batch.cursors = {p: seq for p, seq in highest.items() if seq > seen[p]}
        if refused:
            self._dead_letters(refused, now)
            batch.dead_letters = len(refused)
        batch.ticks = len(ticks)
        simulator = self.svc.simulator
        if simulator is not None:
            batch.order_updates = simulator.on_trades(ticks)
        touched: dict[str, _Slot] = {}
        by_symbol = self._by_symbol
        for tick in ticks:
            for slot in by_symbol.get(tick.symbol, ()):
                touched[slot.key] = slot
                signal = slot.strategy.on_tick(tick)
                if signal is not None:
                    self._on_signal(slot, signal, batch, now)
        batch.slots = list(touched.values())
        self._count(batch, ticks)
        return batch

    def _count(self, batch: Batch, ticks: Sequence[Tick]) -> None:
        counters = self.counters
        counters.batches += 1
        counters.ticks += batch.ticks
        counters.dead_letters += batch.dead_letters
        counters.duplicates += batch.duplicates
        counters.signals += len(batch.signals)
        counters.stale_signals += len(batch.stale)
        counters.wall_last_batch = time.time()
        if ticks:
            counters.ts_last_tick = ticks[-1].ts_event

    def _on_signal(self, slot: _Slot, signal: Signal, batch: Batch, now: datetime) -> None:
        settings = self.svc.settings
        max_age = settings.max_signal_age_s
        if max_age is not None and _adds_exposure(slot.targets, signal.targets):
            age = self._stale_age(signal, max_age, now)
            if age is not None:
                # What it would open is not planned, so the targets stay where the last
                # planned signal put them: the next signal is sized from them. What it
                # closes (the first half of a flip) is traded however late, as a signal of
                # its own: flat is what the strategy wants now too.
                batch.stale.append((signal, age))
                closing = _closing_part(slot.targets, signal.targets)
                if closing == slot.targets:
                    return
                signal = Signal(
                    signal.strategy_id, signal.symbols, closing, signal.prices, signal.ts_signal
                )
        batch.signals.append(signal)
        intent = plan_intent(
            signal,
            slot.targets,
            slot.rule,
            account=settings.account,
            unwind_after_s=slot.unwind_after_s,
        )
        slot.targets = signal.targets
        if intent is None:
            return
        threshold = settings.approval_notional
        batch.requests.append(
            TradeRequest(
                intent=intent,
                requires_approval=threshold is not None and _notional(intent) > threshold,
                approval_timeout_s=settings.approval_timeout_s,
                entry_timeout_s=settings.entry_timeout_s,
                exit_timeout_s=settings.exit_timeout_s,
                poll_interval_s=settings.poll_interval_s,
                ts_wall_created=time.time(),
                initial_limits=settings.risk_limits,
                long_only=slot.long_only,
            )
        )

    def _stale_age(self, signal: Signal, max_age: int, now: datetime) -> float | None:
        """The signal's age when it is too old to open a position, else None. Decided once
        and kept as a claim: the first delivery to get here decides, and a later one (a
        batch delivered again after a failure, a second instance racing for the
        partition, a clock that disagrees) follows it. Otherwise a redelivery could plan
        differently from a delivery whose trades already started, and the saved targets
        would disagree with what the books will hold."""
        age = (now - signal.ts_signal).total_seconds()
        decided = self.svc.store.claim(
            f"{PLAN_CLAIM_PREFIX}{signal.signal_id}",
            {"stale": age > max_age, "age_s": round(age, 3)},
            ts=now,
        )
        return float(decided.value["age_s"]) if decided.value.get("stale") else None

    def audit_signals(self, batch: Batch, *, now: datetime) -> None:
        limit = self.svc.settings.max_signal_age_s
        stale = [
            {**signal.to_dict(), "stale": {"age_s": round(age, 3), "max_signal_age_s": limit}}
            for signal, age in batch.stale
        ]
        audit.append_many(
            self.svc.store,
            partition=self.svc.settings.account,
            ts_recorded=now,
            entries=[
                audit.Entry(
                    AuditKind.SIGNAL,
                    data["signal_id"],
                    correlation={"strategy_id": data["strategy_id"]},
                    payload=data,
                )
                for data in chain((signal.to_dict() for signal in batch.signals), stale)
            ],
        )

    def abandon(self, batch: Batch) -> None:
        """The batch failed before its commit: drop the warm state it touched, so its
        redelivery replays from the stored snapshots and produces the same intents."""
        with self._lock:
            for slot in batch.slots:
                slot.reload = True

    def abandon_all(self) -> None:
        """Forget all warm state (as a fresh process would start)."""
        with self._lock:
            for slot in self._slots.values():
                slot.reload = True
            self._cursors.clear()

    def commit(self, batch: Batch) -> None:
        """Save what the batch changed: strategy snapshots and partition cursors."""
        with self._lock:
            store = self.svc.store
            slots = batch.slots
            cursors = list(batch.cursors.items())
            items: list[tuple[str, Mapping[str, Any], str | None]] = [
                (slot.key, slot.snapshot(), slot.version) for slot in slots
            ]
            for partition, seq in cursors:
                known = self._cursors.get(partition)
                items.append(
                    (self._cursor_key(partition), {"seq": seq}, None if known is None else known[1])
                )
            try:
                versions = store.save_many(items)
                for slot, version in zip(slots, versions, strict=False):
                    slot.version = version
                for (partition, seq), version in zip(cursors, versions[len(slots) :], strict=True):
                    self._cursors[partition] = (seq, version)
            except Conflict as error:
                # Another instance saved first: forget the warm state, and let the host
                # redeliver the batch against what that instance stored.
                for slot in batch.slots:
                    slot.reload = True
                self._cursors.clear()
                raise RetryableFault(f"signal state moved on elsewhere: {error}") from error
