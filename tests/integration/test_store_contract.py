"""The store contract: every store adapter must pass these, whatever is behind it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.sqlite_store import SqliteStore
from domain import audit
from domain.audit import AuditKind
from domain.errors import Conflict, TerminalError, ValidationError
from domain.fills import Fill
from domain.model import Side
from domain.orders import Order, OrderStatus
from domain.ports import (
    AuditStore,
    Books,
    FillStore,
    IdempotencyStore,
    OrderStore,
    PositionStore,
    SignalStateStore,
)
from tests.integration.conftest import cosmos_client

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "cosmos"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Books]:
    instance: Books
    if request.param == "sqlite":
        instance = SqliteStore(tmp_path / "books.sqlite")
    else:
        from adapters.cosmos_store import CosmosStore

        endpoint = request.getfixturevalue("cosmos_endpoint")
        database = request.getfixturevalue("cosmos_database")
        instance = CosmosStore(cosmos_client(endpoint), database)
    yield instance
    instance.close()


def run_concurrently(work: Callable[[int], None], workers: int) -> None:
    """``work(0)`` ... ``work(workers - 1)`` on as many threads at once."""
    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def append(store: Books, event_id: str, partition: str = "acct-1") -> audit.AuditRecord:
    return audit.append(
        store,
        partition=partition,
        ts_recorded=T0,
        kind=AuditKind.ORDER_EVENT,
        event_id=event_id,
        correlation={"intent_id": "int-1"},
        payload={"event": event_id},
    )


def test_audit_appends_form_a_verifiable_chain_per_partition(store: Books) -> None:
    for i in range(5):
        append(store, f"e{i}")
    append(store, "other", partition="acct-2")
    records = store.records("acct-1")
    assert [r.seq for r in records] == [0, 1, 2, 3, 4]
    assert audit.verify(records) is None
    head = store.head("acct-1")
    assert head is not None
    assert audit.verify(records, head=head.hash) is None
    assert [r.seq for r in store.records("acct-2")] == [0]
    assert [r.seq for r in store.records("acct-1", from_seq=3, limit=1)] == [3]


def test_appending_the_same_event_twice_writes_it_once(store: Books) -> None:
    first = append(store, "e1")
    again = append(store, "e1")
    assert again == first
    assert len(store.records("acct-1")) == 1


def test_concurrent_appends_keep_one_unbroken_chain(store: Books) -> None:
    def writer(worker: int) -> None:
        for i in range(10):
            append(store, f"w{worker}-{i}")
            append(store, f"w{worker}-{i}")  # a retried call

    run_concurrently(writer, 4)
    records = store.records("acct-1")
    assert len(records) == 40
    assert len({r.event_id for r in records}) == 40
    assert audit.verify(records) is None


def test_append_many_writes_each_new_event_once_even_against_other_writers(
    store: Books,
) -> None:
    def batch(worker: int, size: int = 5) -> list[audit.Entry]:
        return [audit.Entry(AuditKind.SIGNAL, f"b{worker}-{i}") for i in range(size)]

    def writer(worker: int) -> None:
        for _ in range(3):  # a batch retried, and another writer racing for positions
            audit.append_many(store, partition="acct-1", ts_recorded=T0, entries=batch(worker))
            append(store, f"single-{worker}")

    run_concurrently(writer, 4)
    records = store.records("acct-1")
    assert sorted(r.event_id for r in records) == sorted(
        [f"b{w}-{i}" for w in range(4) for i in range(5)] + [f"single-{w}" for w in range(4)]
    )
    assert audit.verify(records) is None
    twice = batch(9, 2) + batch(9, 2)
    assert audit.append_many(store, partition="acct-1", ts_recorded=T0, entries=twice) == 2
    assert audit.Entry.from_dict(twice[0].to_dict()).to_dict() == twice[0].to_dict()


def make_fill(execution_id: str, minutes: int, account: str = "acct-1") -> Fill:
    return Fill(
        execution_id=execution_id,
        account=account,
        symbol="AAPL",
        side=Side.BUY,
        quantity=Decimal("10"),
        price=Decimal("187.25"),
        ts_filled=T0 + timedelta(minutes=minutes),
        client_order_id="int-1:entry",
    )


def test_a_fill_is_recorded_once_by_execution_id(store: Books) -> None:
    assert store.add_fill(make_fill("x-2", 2)) is True
    assert store.add_fill(make_fill("x-1", 1)) is True
    assert store.add_fill(make_fill("x-2", 2)) is False
    store.add_fill(make_fill("x-9", 0, account="acct-2"))
    assert [f.execution_id for f in store.fills("acct-1")] == ["x-1", "x-2"]
    assert store.fills("acct-1", symbol="MSFT") == []
    assert store.fills("acct-1")[0] == make_fill("x-1", 1)


def test_an_idempotency_key_is_claimed_once_and_returns_the_first_value(
    store: Books,
) -> None:
    first = store.claim("POST /orders:abc", {"intent_id": "int-1"}, ts=T0)
    second = store.claim("POST /orders:abc", {"intent_id": "int-2"}, ts=T0)
    assert first.created is True
    assert second.created is False
    assert second.value == {"intent_id": "int-1"}


def test_claims_of_one_kind_made_before_a_time_are_forgotten(store: Books) -> None:
    for minutes, key in (
        (0, "webhook:a"),
        (1, "webhook:b"),
        (5, "webhook:c"),
        (0, "start:a"),
        (0, "webhook"),
        (0, "webhooks:a"),
    ):
        store.claim(key, {"n": minutes}, ts=T0 + timedelta(minutes=minutes))
    assert store.forget_claims("webhook:", before=T0 + timedelta(minutes=1)) == 1
    assert store.forget_claims("webhook:", before=T0 + timedelta(minutes=1)) == 0
    assert store.claim("webhook:a", {"n": 9}, ts=T0).created is True  # claimable again
    assert store.claim("webhook:b", {"n": 9}, ts=T0).value == {"n": 1}
    assert store.claim("webhook:c", {"n": 9}, ts=T0).value == {"n": 5}
    for other_kind in ("start:a", "webhook", "webhooks:a"):
        assert store.claim(other_kind, {"n": 9}, ts=T0).value == {"n": 0}
    with pytest.raises(ValueError):
        store.forget_claims("", before=T0)


def test_concurrent_claims_of_one_key_create_exactly_one(store: Books) -> None:
    results: list[bool] = []

    def claimer(n: int) -> None:
        results.append(store.claim("k", {"n": n}, ts=T0).created)

    run_concurrently(claimer, 8)
    assert sorted(results) == [False] * 7 + [True]


def test_signal_state_round_trips_with_optimistic_versions(store: Books) -> None:
    assert store.load("sma:AAPL") is None
    v1 = store.save("sma:AAPL", {"fast": [1.5, 2.5], "n": 3}, expected_version=None)
    loaded = store.load("sma:AAPL")
    assert loaded is not None and loaded.value == {"fast": [1.5, 2.5], "n": 3}
    assert loaded.version == v1
    v2 = store.save("sma:AAPL", {"n": 4}, expected_version=v1)
    assert v2 != v1
    with pytest.raises(Conflict):
        store.save("sma:AAPL", {"n": 5}, expected_version=v1)
    with pytest.raises(Conflict):
        store.save("sma:AAPL", {"n": 5}, expected_version=None)
    store.save("sma:MSFT", {"n": 1}, expected_version=None)
    many = store.load_many(["sma:AAPL", "sma:MSFT", "sma:NONE"])
    assert {k: v.value for k, v in many.items()} == {"sma:AAPL": {"n": 4}, "sma:MSFT": {"n": 1}}


def test_sqlite_saves_a_batch_of_signal_state_all_or_none(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "books.sqlite")
    try:
        a1, b1 = store.save_many([("a", {"n": 1}, None), ("b", {"n": 1}, None)])
        a2, b2, c1 = store.save_many(
            [("a", {"n": 2}, a1), ("b", {"n": 2}, b1), ("c", {"n": 1}, None)]
        )
        assert len({a1, b1, a2, b2, c1}) == 5
        assert {k: (v.value, v.version) for k, v in store.load_many(["a", "b", "c"]).items()} == {
            "a": ({"n": 2}, a2),
            "b": ({"n": 2}, b2),
            "c": ({"n": 1}, c1),
        }
        stale_update = [("a", {"n": 3}, a2), ("b", {"n": 3}, b1), ("d", {"n": 1}, None)]
        existing_key = [("a", {"n": 3}, a2), ("c", {"n": 9}, None)]
        for batch, key in ((stale_update, "'b'"), (existing_key, "'c'")):
            with pytest.raises(Conflict, match=key):
                store.save_many(batch)
        after = store.load_many(["a", "b", "c", "d"])
        assert {k: (v.value, v.version) for k, v in after.items()} == {
            "a": ({"n": 2}, a2),
            "b": ({"n": 2}, b2),
            "c": ({"n": 1}, c1),
        }
    finally:
        store.close()


def test_sqlite_tampering_with_a_stored_record_is_detected(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "books.sqlite")
    try:
        for i in range(4):
            append(store, f"e{i}")
    finally:
        store.close()
    raw = sqlite3.connect(tmp_path / "books.sqlite")
    raw.execute(
        'UPDATE audit SET body = replace(body, \'"event":"e2"\', \'"event":"forged"\') '
        "WHERE seq = 2"
    )
    raw.commit()
    raw.close()
    reopened = SqliteStore(tmp_path / "books.sqlite")
    try:
        assert audit.verify(reopened.records("acct-1")) == 2
    finally:
        reopened.close()


def test_cosmos_tampering_with_a_stored_record_is_detected(
    cosmos_endpoint: str, cosmos_database: str
) -> None:
    from adapters.cosmos_store import CosmosStore

    client = cosmos_client(cosmos_endpoint)
    store = CosmosStore(client, cosmos_database)
    for i in range(4):
        append(store, f"e{i}")
    # Someone with write access to the container edits a record in place.
    container = client.get_database_client(cosmos_database).get_container_client("audit")
    [doc] = container.query_items(
        "SELECT * FROM c WHERE c.partition = 'acct-1' AND c.type = 'record' AND c.seq = 2",
        enable_cross_partition_query=True,
    )
    doc["body"] = doc["body"].replace('"event":"e2"', '"event":"forged"')
    container.replace_item(doc["id"], doc)
    assert audit.verify(store.records("acct-1")) == 2
    store.close()


def test_cosmos_throttling_and_unavailability_are_worth_retrying() -> None:
    from azure.cosmos.exceptions import CosmosHttpResponseError

    from adapters.cosmos_store import _faults
    from domain.errors import RetryableFault, TerminalError

    def error(status: int) -> CosmosHttpResponseError:
        return CosmosHttpResponseError(status_code=status, message="x")  # type: ignore[no-untyped-call]

    throttled = error(429)
    throttled.headers = {"x-ms-retry-after-ms": "250"}
    fault = _faults(throttled)
    assert isinstance(fault, RetryableFault) and fault.retry_after_s == 0.25
    assert isinstance(_faults(error(503)), RetryableFault)
    assert isinstance(_faults(error(400)), TerminalError)


def test_sqlite_refuses_books_written_by_another_schema_version(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "books.sqlite").close()
    raw = sqlite3.connect(tmp_path / "books.sqlite")
    raw.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(RuntimeError, match="schema 99"):
        SqliteStore(tmp_path / "books.sqlite")


def test_sqlite_store_implements_the_store_ports(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "books.sqlite")
    # mypy checks these assignments structurally against the Protocols.
    ports: tuple[
        AuditStore, FillStore, IdempotencyStore, SignalStateStore, OrderStore, PositionStore
    ] = (store, store, store, store, store, store)
    assert all(port is store for port in ports)
    store.close()


def test_concurrent_fills_on_one_position_lose_no_update(store: Books) -> None:
    fills = [
        Fill(
            execution_id=f"e{n}",
            account="acct-1",
            symbol="AAPL",
            side=Side.BUY if n % 3 else Side.SELL,
            quantity=Decimal(n % 7 + 1),
            price=Decimal("100") + Decimal(n % 5),
            ts_filled=T0 + timedelta(seconds=n),
            client_order_id=f"int-{n}:entry",
        )
        for n in range(48)
    ]

    def writer(part: int) -> None:
        for f in fills[part::4]:
            store.apply_fill_to_position(f)
            store.apply_fill_to_position(f)  # redelivered

    run_concurrently(writer, 4)
    (position,) = store.positions("acct-1")
    assert position.quantity == sum((f.signed_quantity for f in fills), Decimal(0))
    assert len(store.fills("acct-1")) == 48


def test_orders_are_created_once_and_updated_only_from_the_version_read(
    store: Books,
) -> None:
    order = Order("int-1:entry", "int-1", "entry", "AAPL", Side.BUY, Decimal("10"))
    assert store.create_order(order) is True
    assert store.create_order(order) is False
    accepted = order.transition(OrderStatus.NEW, ts=T0)
    store.update_order(accepted, expected_version=order.version)
    assert store.get_order("int-1:entry") == accepted
    with pytest.raises(Conflict):
        store.update_order(accepted.transition(OrderStatus.CANCELED, ts=T0), expected_version=0)
    store.create_order(Order("int-1:tp", "int-1", "tp", "AAPL", Side.SELL, Decimal("10")))
    store.create_order(Order("int-2:entry", "int-2", "entry", "AAPL", Side.BUY, Decimal("1")))
    assert [o.leg for o in store.orders_for_intent("int-1")] == ["entry", "tp"]
    assert store.get_order("missing") is None


def test_open_orders_are_those_not_in_a_final_status(store: Books) -> None:
    resting = Order("int-3:entry", "int-3", "entry", "AAPL", Side.BUY, Decimal("10"))
    done = Order("int-4:entry", "int-4", "entry", "AAPL", Side.BUY, Decimal("10"))
    store.create_order(resting)
    store.create_order(done)
    store.update_order(done.transition(OrderStatus.CANCELED, ts=T0), expected_version=0)
    assert [o.client_order_id for o in store.open_orders()] == ["int-3:entry"]


def test_order_history_pages_an_account_by_creation_time(store: Books) -> None:
    for n in range(7):
        store.create_order(
            Order(
                f"int-{n}:entry", f"int-{n}", "entry", "AAPL", Side.BUY, Decimal(1),
                account="acct-1", ts_created=T0 + timedelta(minutes=n // 2),
            )
        )  # fmt: skip
    store.create_order(
        Order("int-x:entry", "int-x", "entry", "AAPL", Side.BUY, Decimal(1),
              account="acct-2", ts_created=T0)
    )  # fmt: skip
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = store.order_history(
            "acct-1", T0, T0 + timedelta(minutes=3), limit=2, continuation=token
        )
        seen.extend(o.client_order_id for o in page.orders)
        pages += 1
        token = page.continuation
        if token is None:
            break
    # minutes 0, 0, 1, 1, 2, 2 are in range; minute 3 (int-6) is not; acct-2 never.
    assert seen == [f"int-{n}:entry" for n in range(6)]
    assert pages == 3
    with pytest.raises(ValidationError):
        store.order_history("acct-1", T0, T0, limit=2, continuation="not-a-token!")


def test_cosmos_with_data_plane_roles_only_uses_the_containers_as_they_exist() -> None:
    from azure.cosmos.exceptions import CosmosHttpResponseError

    from adapters.cosmos_store import CONTAINERS, INDEXING, CosmosStore

    class Container:
        def __init__(self, name: str, indexed: bool) -> None:
            self.id = name
            self.indexed = indexed

        def read(self) -> dict[str, object]:
            policy = INDEXING.get(self.id, {}) if self.indexed else {}
            return {"id": self.id, "indexingPolicy": policy}

    class DataPlaneOnly:
        """A client whose identity may read and write items, not create containers."""

        def __init__(self, indexed: bool) -> None:
            self.indexed = indexed

        def create_database_if_not_exists(self, name: str) -> None:
            raise CosmosHttpResponseError(status_code=403, message="forbidden")  # type: ignore[no-untyped-call]

        def get_database_client(self, name: str) -> DataPlaneOnly:
            return self

        def get_container_client(self, name: str) -> Container:
            return Container(name, self.indexed)

    store = CosmosStore(DataPlaneOnly(indexed=True), "desk")  # type: ignore[arg-type]
    assert sorted(store._c) == sorted(CONTAINERS)
    with pytest.raises(TerminalError, match="composite index"):
        CosmosStore(DataPlaneOnly(indexed=False), "desk")  # type: ignore[arg-type]


def test_cosmos_gives_an_existing_container_the_index_its_queries_need(
    cosmos_endpoint: str, cosmos_database: str
) -> None:
    from azure.cosmos import PartitionKey

    from adapters.cosmos_store import CosmosStore, _indexed

    client = cosmos_client(cosmos_endpoint)
    db = client.create_database_if_not_exists(cosmos_database)
    plain = db.create_container_if_not_exists("orders", partition_key=PartitionKey("/intent_id"))
    assert not _indexed(plain)  # made before the index existed
    store = CosmosStore(client, cosmos_database)
    assert _indexed(db.get_container_client("orders"))
    store.close()


def test_cosmos_a_fill_recorded_by_a_call_that_died_still_moves_its_position_once(
    cosmos_endpoint: str, cosmos_database: str
) -> None:
    from adapters.cosmos_store import CosmosStore

    store = CosmosStore(cosmos_client(cosmos_endpoint), cosmos_database)
    fill = make_fill("x-1", 0)
    # What a call leaves behind when it dies after recording the fill: no position yet.
    assert store._record_fill(fill, Decimal(0)) is True
    assert store.positions("acct-1") == []
    assert store.apply_fill_to_position(fill, booked_before=Decimal(0)).quantity == Decimal(10)
    assert store.apply_fill_to_position(fill).quantity == Decimal(10)
    [position] = store.positions("acct-1")
    assert position.quantity == Decimal(10)
    assert [f.execution_id for f in store.fills("acct-1")] == ["x-1"]
    other = make_fill("x-2", 1)
    with pytest.raises(Conflict):  # a different fill cannot follow the same running total
        store.apply_fill_to_position(other, booked_before=Decimal(0))
    store.close()
