"""The books follow the broker exactly once per execution, whatever dies or races between
reading the broker and writing the books."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from activities import service
from adapters.bootstrap import Services, Settings
from adapters.simulated_broker import SimulatedBroker
from adapters.sqlite_store import SqliteStore
from domain.errors import Conflict
from domain.execution import BrokerOrder
from domain.fills import Fill
from domain.model import Side
from domain.orders import Order

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CID = "int-1:entry"
D = Decimal


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(books_path=tmp_path / "books.sqlite", strategies=())
    made = Services(settings, SqliteStore(settings.books_path), SimulatedBroker())
    made.store.create_order(Order(CID, "int-1", "entry", "AAPL", Side.BUY, D(10)))
    yield made
    made.store.close()


def at(filled: int, average: str) -> BrokerOrder:
    status = "filled" if filled == 10 else "partially_filled"
    return BrokerOrder("b-1", CID, status, D(filled), D(average))


def position(svc: Services) -> Decimal:
    [held] = svc.store.positions("paper")
    return held.quantity


def booked_without_the_order(svc: Services, cumulative: int, quantity: int) -> None:
    """What a call leaves behind when it dies between booking a fill and updating the
    order: the fill and the position moved, the order row as it was."""
    fill = Fill(f"{CID}@{cumulative}", "paper", "AAPL", Side.BUY, D(quantity), D(100), T0, CID)
    svc.store.apply_fill_to_position(fill, booked_before=D(cumulative - quantity))


def test_a_call_that_died_after_booking_a_fill_is_caught_up_not_booked_twice(
    svc: Services,
) -> None:
    first = service.apply_snapshot(svc, at(5, "100"), ts=T0)
    assert [f.execution_id for f in first] == [f"{CID}@5"]
    booked_without_the_order(svc, 8, 3)
    # The order row still says 5; the fills say 8. The broker has moved on to 10.
    after = service.apply_snapshot(svc, at(10, "100"), ts=T0)
    assert position(svc) == D(10)
    assert [f.quantity for f in after] == [D(5), D(3), D(2)]
    final = svc.store.get_order(CID)
    assert final is not None and final.filled_qty == D(10) and final.status.value == "filled"


def test_every_call_reports_every_fill_the_books_hold(svc: Services) -> None:
    service.apply_snapshot(svc, at(4, "100"), ts=T0)
    again = service.apply_snapshot(svc, at(4, "100"), ts=T0)
    assert [f.execution_id for f in again] == [f"{CID}@4"]


def test_writers_that_saw_the_broker_at_different_moments_book_the_difference_once(
    svc: Services,
) -> None:
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(filled: int) -> None:
        try:
            barrier.wait()
            service.apply_snapshot(svc, at(filled, "100"), ts=T0)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (6, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert position(svc) == D(10)
    assert sum(f.quantity for f in svc.store.fills_for_order(CID)) == D(10)


def test_booking_against_a_stale_total_is_refused(svc: Services) -> None:
    service.apply_snapshot(svc, at(5, "100"), ts=T0)
    late = Fill(f"{CID}@7", "paper", "AAPL", Side.BUY, D(7), D(100), T0, CID)
    with pytest.raises(Conflict):
        svc.store.apply_fill_to_position(late, booked_before=D(0))
    assert position(svc) == D(5)


def test_an_oco_leg_the_broker_lost_is_reported_missing_not_mistaken(svc: Services) -> None:
    from domain.model import OrderType
    from domain.orders import OrderLeg

    tp = OrderLeg("tp", "AAPL", Side.SELL, D(5), OrderType.LIMIT, limit_price=D(110))
    sl = OrderLeg("sl", "AAPL", Side.SELL, D(5), OrderType.STOP, stop_price=D(90))
    # An earlier attempt booked both legs and sent them; only the take-profit reached the
    # broker. The retry finds the orders in the books, so it asks the broker.
    service._book_order(svc, "int-2", tp, T0)
    service._book_order(svc, "int-2", sl, T0)
    svc.broker.submit(tp, "int-2:tp")
    outcomes = service.submit_oco(svc, "int-2", tp, sl, ts=T0)
    assert [(o.client_order_id, o.status) for o in outcomes] == [
        ("int-2:tp", "new"),
        ("int-2:sl", "missing"),
    ]


def test_a_new_order_is_sent_without_asking_and_a_retry_asks_before_sending(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domain.model import OrderType
    from domain.orders import OrderLeg

    broker = svc.broker
    calls: list[str] = []
    lookup, submit = broker.get_by_client_order_id, broker.submit

    def looked_up(cid: str) -> BrokerOrder | None:
        calls.append("lookup")
        return lookup(cid)

    def sent(leg: OrderLeg, cid: str) -> BrokerOrder:
        calls.append("submit")
        return submit(leg, cid)

    monkeypatch.setattr(broker, "get_by_client_order_id", looked_up)
    monkeypatch.setattr(broker, "submit", sent)
    entry = OrderLeg("entry", "AAPL", Side.BUY, D(5), OrderType.LIMIT, limit_price=D(90))
    first = service.submit_order(svc, "int-9", entry, ts=T0)
    assert calls == ["submit"], "booked just now, so never sent: nothing to ask first"
    # The activity runs again (its answer was lost): the books hold the order, so the
    # broker is asked, finds it, and nothing is sent twice.
    calls.clear()
    again = service.submit_order(svc, "int-9", entry, ts=T0)
    assert calls == ["lookup"]
    assert again.client_order_id == first.client_order_id == "int-9:entry"
    assert again.status == first.status == "new"
    assert len(broker.open_orders()) == 1
    # Booked by an attempt that died before sending: asked, not found, sent once.
    calls.clear()
    exit_leg = OrderLeg("tp", "AAPL", Side.SELL, D(5), OrderType.LIMIT, limit_price=D(110))
    service._book_order(svc, "int-9", exit_leg, T0)
    resent = service.submit_order(svc, "int-9", exit_leg, ts=T0)
    assert calls == ["lookup", "submit"] and resent.status == "new"
    assert len(broker.open_orders()) == 2
