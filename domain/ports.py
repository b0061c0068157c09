"""The ports: what the domain and the service layer need from the outside world, as
``typing.Protocol``s. Adapters (SQLite, Cosmos DB, Alpaca, the simulated broker) implement
them; tests use the same adapters or hand-written fakes.

Stores are written for at-least-once callers: every write either has a fixed id (a second
identical write is recognised and changes nothing) or is conditional on a version.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from domain.audit import AuditRecord
from domain.execution import BrokerOrder, Execution
from domain.fills import Fill
from domain.market import MarketEvent
from domain.orders import Order, OrderLeg, OrderPage
from domain.portfolio import Position


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class AuditStore(Protocol):
    """Append-only, hash-chained records per partition (see ``domain.audit``)."""

    def head(self, partition: str) -> AuditRecord | None:
        """The last record of the partition's chain."""
        ...

    def insert(self, record: AuditRecord) -> bool:
        """Store a sealed record under its ``record_id``; False when that position of the
        chain is already taken (another writer won the race)."""
        ...

    def insert_many(self, records: Sequence[AuditRecord]) -> bool:
        """Several consecutive records atomically: all, or none when a position is taken."""
        ...

    def find_events(self, partition: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` the partition already holds."""
        ...

    def find_event(self, partition: str, event_id: str) -> AuditRecord | None:
        """The record already written for ``event_id``, if any (makes appends idempotent)."""
        ...

    def records(
        self, partition: str, *, from_seq: int = 0, limit: int | None = None
    ) -> list[AuditRecord]:
        """Records in chain order, starting at ``from_seq``."""
        ...


class FillStore(Protocol):
    def add_fill(self, fill: Fill) -> bool:
        """Record an execution; False when its ``execution_id`` is already recorded."""
        ...

    def fills(self, account: str, *, symbol: str | None = None) -> list[Fill]:
        """The account's fills in the order they were executed."""
        ...

    def fills_for_order(self, client_order_id: str) -> list[Fill]:
        """One order's fills in the order they were executed."""
        ...


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming an idempotency key: ``created`` is False when an earlier call
    claimed it, and ``value`` is then what that call stored."""

    key: str
    created: bool
    value: Mapping[str, Any]


class IdempotencyStore(Protocol):
    def claim(self, key: str, value: Mapping[str, Any], *, ts: datetime) -> Claim:
        """Atomically store ``value`` under ``key`` unless the key exists."""
        ...

    def forget_claims(self, prefix: str, *, before: datetime) -> int:
        """Remove the claims whose key starts with ``prefix`` made before ``before``, for
        keys that stop mattering after a while; returns how many went."""
        ...


@dataclass(frozen=True, slots=True)
class Versioned:
    value: Mapping[str, Any]
    version: str


class SignalStateStore(Protocol):
    """Snapshots of per-symbol strategy state, so another instance or a restart continues
    exactly where the last one stopped."""

    def load(self, key: str) -> Versioned | None: ...

    def save(self, key: str, value: Mapping[str, Any], *, expected_version: str | None) -> str:
        """Write when the stored version is ``expected_version`` (None: the key must not
        exist yet); returns the new version; raises ``domain.errors.Conflict`` otherwise."""
        ...

    def load_many(self, keys: Sequence[str]) -> dict[str, Versioned]: ...

    def versions(self, keys: Sequence[str]) -> dict[str, str]:
        """The current version of each stored key (cheap: no values)."""
        ...

    def save_many(self, items: Sequence[tuple[str, Mapping[str, Any], str | None]]) -> list[str]:
        """``save`` for several keys at once, all or none; returns the new versions."""
        ...


class OrderStore(Protocol):
    def create_order(self, order: Order) -> bool:
        """Store a new order under its client order id; False when it already exists."""
        ...

    def update_order(self, order: Order, *, expected_version: int) -> None:
        """Replace the stored order if its version is still ``expected_version``; raises
        ``domain.errors.Conflict`` otherwise."""
        ...

    def get_order(self, client_order_id: str) -> Order | None: ...

    def orders_for_intent(self, intent_id: str) -> list[Order]: ...

    def open_orders(self) -> list[Order]:
        """Orders not yet in a final status (reconciliation compares them with the broker)."""
        ...

    def order_history(
        self,
        account: str,
        ts_from: datetime,
        ts_to: datetime,
        *,
        limit: int,
        continuation: str | None = None,
    ) -> OrderPage:
        """The account's orders created in [ts_from, ts_to), oldest first, ``limit`` at a
        time; pass the page's ``continuation`` for the next one."""
        ...


class PositionStore(Protocol):
    def apply_fill_to_position(
        self, fill: Fill, *, booked_before: Decimal | None = None
    ) -> Position:
        """Apply a fill to its position exactly once (by execution id), safely against
        concurrent writers; returns the position after it. With ``booked_before``, the
        order's fills so far must add up to it, else ``domain.errors.Conflict``."""
        ...

    def positions(self, account: str) -> list[Position]: ...


class ArchiveStore(Protocol):
    """Write-once files (Blob Storage: immutable in Azure)."""

    def put(self, name: str, data: bytes) -> bool:
        """Store ``data`` as ``name`` unless that name exists (then False: never replaced)."""
        ...

    def get(self, name: str) -> bytes | None: ...


class Books(
    AuditStore,
    FillStore,
    IdempotencyStore,
    SignalStateStore,
    OrderStore,
    PositionStore,
    Protocol,
):
    """Everything the desk keeps: one store (SQLite or Cosmos DB) implements it all."""

    def all_orders(self) -> list[Order]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MarketClock:
    ts_now: datetime
    is_open: bool
    ts_next_open: datetime
    ts_next_close: datetime


class Broker(Protocol):
    """Order entry. ``submit`` is idempotent by client order id: an adapter looks the order
    up before sending it again. Rejections are returned as values by the service layer;
    adapters raise ``RetryableFault`` for what is worth retrying and ``TerminalError`` for
    the rest."""

    def supports_oco(self, take_profit: OrderLeg, stop_loss: OrderLeg) -> bool:
        """True when the broker can link these two exits natively (OCO)."""
        ...

    def submit(self, leg: OrderLeg, client_order_id: str) -> BrokerOrder: ...

    def submit_oco(
        self, take_profit: OrderLeg, stop_loss: OrderLeg, client_order_ids: tuple[str, str]
    ) -> tuple[BrokerOrder, BrokerOrder]:
        """Both exits as one-cancels-other: when one fills the broker cancels the other.
        Idempotent by the take-profit's client order id. Each leg is then found by its own
        client order id, even at a broker that names only the parent: the stop-loss's is
        derived from the take-profit's (``domain.execution.oco_stop_loss_id``)."""
        ...

    def supports_bracket(self, entry: OrderLeg, exits: Sequence[OrderLeg]) -> bool:
        """True when the broker takes ``entry`` and its exits as one order: a bracket with a
        take-profit and a stop-loss, or one-triggers-other with one of them. The exits wait
        until the entry has filled in full, and then cancel each other."""
        ...

    def submit_bracket(
        self, entry: OrderLeg, exits: Sequence[OrderLeg], client_order_ids: Sequence[str]
    ) -> list[BrokerOrder]:
        """``entry`` with its exits as one order (see ``supports_bracket``); the answer is
        the entry's order, then each exit's. Idempotent by the entry's client order id. Each
        exit is then found by its own client order id, even at a broker that names only the
        entry (``domain.execution.bracket_entry_id``)."""
        ...

    def cancel(self, client_order_id: str) -> BrokerOrder | None: ...

    def get_by_client_order_id(self, client_order_id: str) -> BrokerOrder | None: ...

    def open_orders(self) -> list[BrokerOrder]: ...

    def executions(self, since: datetime) -> list[Execution]:
        """Every execution since ``since``, oldest first, each under its order's client order
        id where the broker can tell it (reconciliation books what the books missed)."""
        ...

    def positions(self) -> dict[str, Decimal]:
        """Signed quantity per symbol."""
        ...

    def buying_power(self) -> Decimal: ...

    def last_price(self, symbol: str) -> Decimal | None:
        """The last trade price the broker knows of, if any (sizes manual market orders)."""
        ...

    def clock(self) -> MarketClock: ...

    def calendar(self, start: date, end: date) -> list[tuple[datetime, datetime]]:
        """Trading sessions (open, close) between two dates."""
        ...


class MarketFeed(Protocol):
    def events(self, symbols: Sequence[str]) -> AsyncIterator[MarketEvent]:
        """Trades, quotes and bars for the symbols, as they arrive."""
        ...
