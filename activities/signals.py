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

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from activities import service
from adapters.bootstrap import Services
from domain.audit import AuditKind
from domain.errors import Conflict, RetryableFault, ValidationError
from domain.execution import BrokerOrder, TradeRequest
from domain.market import ParseError, Tick, parse_market_event
from domain.planning import SizingRule, plan_intent
from domain.strategies import AnyStrategy, Signal, build_strategy

SIZING_KEYS = frozenset({"quantity", "plan", "take_profit_pct", "stop_loss_pct", "unwind_after_s"})
RAW_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class RawEvent:
    partition: str
    seq: int
    body: bytes


@dataclass
class _Slot:
    key: str
    config: dict[str, Any]
    rule: SizingRule
    unwind_after_s: int | None
    strategy: AnyStrategy
    targets: tuple[int, ...]
    version: str | None = None
    dirty: bool = False

    def snapshot(self) -> dict[str, Any]:
        return {"v": 1, "strategy": self.strategy.to_dict(), "targets": list(self.targets)}


@dataclass
class Batch:
    """What one batch produced. ``requests`` are to be started, ``order_updates`` announced
    to their orchestrations, then the batch committed."""

    requests: list[TradeRequest] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    order_updates: list[BrokerOrder] = field(default_factory=list)
    dead_letters: int = 0
    duplicates: int = 0
    ticks: int = 0
    cursors: dict[str, int] = field(default_factory=dict)
    slots: list[_Slot] = field(default_factory=list)


def _strategy_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in SIZING_KEYS and k != "state"}


@dataclass
class Counters:
    batches: int = 0
    ticks: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    signals: int = 0
    ts_last_tick: datetime | None = None
    wall_last_batch: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "ticks": self.ticks,
            "dead_letters": self.dead_letters,
            "duplicates": self.duplicates,
            "signals": self.signals,
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
        return _Slot(
            key=f"strategy:{strategy.strategy_id}",
            config=_strategy_config(config),
            rule=rule,
            unwind_after_s=int(unwind) if unwind is not None else None,
            strategy=strategy,
            targets=(0,) * len(strategy.symbols),
        )

    # -- warm state ------------------------------------------------------------------------

    def _refresh(self, slots: Sequence[_Slot], partitions: Sequence[str]) -> None:
        """Make the warm state match the store: another instance may have moved on."""
        cursor_keys = [self._cursor_key(p) for p in partitions]
        stored = self.svc.store.load_many([s.key for s in slots] + cursor_keys)
        for slot in slots:
            found = stored.get(slot.key)
            if found is None or found.version == slot.version:
                continue
            snapshot = found.value
            config = {**slot.config, "state": snapshot["strategy"].get("state")}
            slot.strategy = build_strategy(config)
            slot.targets = tuple(int(t) for t in snapshot["targets"])
            slot.version = found.version
        for partition, key in zip(partitions, cursor_keys, strict=True):
            found = stored.get(key)
            known = self._cursors.get(partition)
            if found is not None and (known is None or known[1] != found.version):
                self._cursors[partition] = (int(found.value["seq"]), found.version)

    def _cursor_key(self, partition: str) -> str:
        return f"cursor:{self.hub}:{partition}"

    # -- a batch ---------------------------------------------------------------------------

    def _dead_letter(self, event: RawEvent, error: ParseError, now: datetime) -> None:
        raw = event.body[:RAW_LIMIT].decode("utf-8", errors="replace")
        service.record(
            self.svc,
            AuditKind.DEAD_LETTER,
            f"{self.hub}:{event.partition}:{event.seq}",
            ts=now,
            partition=service.DEAD_LETTER_PARTITION,
            payload={**error.to_dict(), "raw": raw, "partition": event.partition},
        )

    def _parse(self, event: RawEvent, now: datetime) -> Tick | ParseError | None:
        try:
            data = json.loads(event.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return ParseError("body", f"not JSON: {error}")
        parsed = parse_market_event(data, now=now)
        if isinstance(parsed, ParseError | Tick):
            return parsed
        return None  # quotes and bars do not drive the configured strategies

    def ingest(self, events: Sequence[RawEvent], *, now: datetime) -> Batch:
        with self._lock:
            return self._ingest(events, now)

    def _ingest(self, events: Sequence[RawEvent], now: datetime) -> Batch:
        batch = Batch()
        ticks: list[Tick] = []
        partitions = sorted({e.partition for e in events})
        self._refresh(list(self._slots.values()), partitions)
        for event in events:
            seen = self._cursors.get(event.partition)
            if seen is not None and event.seq <= seen[0]:
                batch.duplicates += 1
                continue
            current = batch.cursors.get(event.partition, -1)
            batch.cursors[event.partition] = max(current, event.seq)
            parsed = self._parse(event, now)
            if isinstance(parsed, ParseError):
                self._dead_letter(event, parsed, now)
                batch.dead_letters += 1
            elif parsed is not None:
                ticks.append(parsed)
        batch.ticks = len(ticks)
        simulator = self.svc.simulator
        touched: dict[str, _Slot] = {}
        for tick in ticks:
            if simulator is not None:
                batch.order_updates.extend(
                    simulator.on_trades(((tick.symbol, tick.price, tick.ts_event),))
                )
            for slot in self._by_symbol.get(tick.symbol, ()):
                touched[slot.key] = slot
                signal = slot.strategy.on_tick(tick)
                if signal is not None:
                    self._on_signal(slot, signal, batch)
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
        counters.wall_last_batch = time.time()
        if ticks:
            counters.ts_last_tick = ticks[-1].ts_event

    def _on_signal(self, slot: _Slot, signal: Signal, batch: Batch) -> None:
        settings = self.svc.settings
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
        notional = sum(
            (leg.quantity * intent.reference_prices.get(leg.symbol, Decimal(0)))
            for leg in intent.entry_legs
        )
        threshold = settings.approval_notional
        batch.requests.append(
            TradeRequest(
                intent=intent,
                requires_approval=threshold is not None and notional > threshold,
                approval_timeout_s=settings.approval_timeout_s,
                entry_timeout_s=settings.entry_timeout_s,
                exit_timeout_s=settings.exit_timeout_s,
                poll_interval_s=settings.poll_interval_s,
                ts_wall_created=time.time(),
            )
        )

    def audit_signals(self, batch: Batch, *, now: datetime) -> None:
        for signal in batch.signals:
            service.record(
                self.svc,
                AuditKind.SIGNAL,
                signal.signal_id,
                ts=now,
                correlation={"strategy_id": signal.strategy_id},
                payload=signal.to_dict(),
            )

    def abandon(self, batch: Batch) -> None:
        """The batch failed before its commit: drop the warm state it touched, so its
        redelivery replays from the stored snapshots and produces the same intents."""
        with self._lock:
            for slot in batch.slots:
                slot.version = "stale"

    def abandon_all(self) -> None:
        """Forget all warm state (as a fresh process would start)."""
        with self._lock:
            for slot in self._slots.values():
                slot.version = "stale"
            self._cursors.clear()

    def commit(self, batch: Batch) -> None:
        """Save what the batch changed: strategy snapshots and partition cursors."""
        with self._lock:
            store = self.svc.store
            try:
                for slot in batch.slots:
                    slot.version = store.save(
                        slot.key, slot.snapshot(), expected_version=slot.version
                    )
                for partition, seq in batch.cursors.items():
                    known = self._cursors.get(partition)
                    version = store.save(
                        self._cursor_key(partition),
                        {"seq": seq},
                        expected_version=None if known is None else known[1],
                    )
                    self._cursors[partition] = (seq, version)
            except Conflict as error:
                # Another instance saved first: forget the warm state, and let the host
                # redeliver the batch against what that instance stored.
                for slot in batch.slots:
                    slot.version = "stale"
                self._cursors.clear()
                raise RetryableFault(f"signal state moved on elsewhere: {error}") from error
