from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.errors import ValidationError
from domain.fills import Fill
from domain.model import Side
from domain.risk import (
    EXECUTION_DAYS_KEPT,
    FILL_HANDOVER_WINDOW,
    ExposureLeg,
    ReserveRequest,
    RiskLimits,
    RiskState,
    apply_operation,
    recent_fills,
)

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
ACCOUNT = "acct-1"


def leg(symbol: str, side: str, qty: str, price: str, last: str | None = None) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "side": side,
        "quantity": qty,
        "price": price,
        "last_trade_price": last,
    }


def request(intent: str, *legs: dict[str, Any], at: datetime = T0) -> dict[str, Any]:
    return {"intent_id": intent, "legs": list(legs), "ts_request": at.isoformat()}


def groups(state: dict[str, Any]) -> list[list[Any]]:
    """The applied execution ids by risk day, as the state counts them out."""
    ids, out = state["executions"], []
    for day, count in state["execution_days"]:
        out.append([day, ids[:count]])
        ids = ids[count:]
    return out


class Entity:
    """Drives apply_operation the way the entity does: JSON between every call."""

    def __init__(self, **limits: Any) -> None:
        self.state: dict[str, Any] | None = None
        if limits:
            self.call("set_limits", limits)

    def call(self, operation: str, payload: Any = None) -> dict[str, Any]:
        state, result = apply_operation(self.state, operation, payload, account=ACCOUNT)
        self.state = json.loads(json.dumps(state))
        decoded: dict[str, Any] = json.loads(json.dumps(result))
        return decoded

    def codes(self, payload: dict[str, Any]) -> list[str]:
        result = self.call("reserve", payload)
        return [] if result["approved"] else [r["code"] for r in result["reasons"]]

    def fill(
        self,
        execution: str,
        intent: str,
        side: str,
        qty: str,
        price: str,
        symbol: str = "AAPL",
        *,
        at: datetime = T0,
    ) -> dict[str, Any]:
        return self.call(
            "apply_fill",
            {
                "execution_id": execution,
                "account": ACCOUNT,
                "symbol": symbol,
                "side": side,
                "quantity": qty,
                "price": price,
                "ts_filled": at.isoformat(),
                "client_order_id": f"{intent}:entry",
            },
        )


@pytest.mark.parametrize(
    ("limits", "at_limit", "beyond", "code"),
    [
        (
            {"max_order_quantity": "100"},
            leg("AAPL", "buy", "100", "10"),
            leg("AAPL", "buy", "101", "10"),
            "order_quantity",
        ),
        (
            {"max_order_notional": "1000"},
            leg("AAPL", "buy", "100", "10"),
            leg("AAPL", "buy", "100", "10.01"),
            "order_notional",
        ),
        (
            {"max_position_notional": "1000"},
            leg("AAPL", "sell", "100", "10"),
            leg("AAPL", "sell", "101", "10"),
            "position_notional",
        ),
        (
            {"max_gross_exposure": "1000"},
            leg("AAPL", "buy", "50", "20"),
            leg("AAPL", "buy", "51", "20"),
            "gross_exposure",
        ),
        (
            {"price_band_pct": "5"},
            leg("AAPL", "buy", "1", "105", "100"),
            leg("AAPL", "buy", "1", "105.01", "100"),
            "price_band",
        ),
    ],
)
def test_each_limit_allows_its_boundary_and_denies_beyond(
    limits: dict[str, str], at_limit: dict[str, Any], beyond: dict[str, Any], code: str
) -> None:
    assert Entity(**limits).codes(request("i1", at_limit)) == []
    assert Entity(**limits).codes(request("i1", beyond)) == [code]


def test_symbol_lists() -> None:
    entity = Entity(allowed_symbols=["AAPL", "MSFT"], blocked_symbols=["MSFT"])
    assert entity.codes(request("i1", leg("AAPL", "buy", "1", "1"))) == []
    assert entity.codes(request("i2", leg("MSFT", "buy", "1", "1"))) == ["symbol_blocked"]
    assert entity.codes(request("i3", leg("TSLA", "buy", "1", "1"))) == ["symbol_not_allowed"]


def test_open_orders_count_reserved_legs_until_filled_or_released() -> None:
    entity = Entity(max_open_orders=2)
    assert (
        entity.codes(request("i1", leg("AAPL", "buy", "1", "1"), leg("MSFT", "sell", "1", "1")))
        == []
    )
    assert entity.codes(request("i2", leg("SPY", "buy", "1", "1"))) == ["open_orders"]
    entity.call("release", {"intent_id": "i1"})
    assert entity.codes(request("i2", leg("SPY", "buy", "1", "1"))) == []


def test_order_rate_counts_the_last_minute_only() -> None:
    entity = Entity(max_orders_per_minute=2)
    assert entity.codes(request("i1", leg("AAPL", "buy", "1", "1"), at=T0)) == []
    assert (
        entity.codes(request("i2", leg("AAPL", "buy", "1", "1"), at=T0 + timedelta(seconds=30)))
        == []
    )
    assert entity.codes(
        request("i3", leg("AAPL", "buy", "1", "1"), at=T0 + timedelta(seconds=59))
    ) == ["order_rate"]
    assert (
        entity.codes(request("i4", leg("AAPL", "buy", "1", "1"), at=T0 + timedelta(seconds=61)))
        == []
    )


def test_reservations_count_toward_exposure_so_two_intents_cannot_both_slip_under() -> None:
    entity = Entity(max_position_notional="1000")
    assert entity.codes(request("i1", leg("AAPL", "buy", "60", "10"))) == []
    assert entity.codes(request("i2", leg("AAPL", "buy", "60", "10"))) == ["position_notional"]


def test_every_failing_reason_is_returned_together() -> None:
    entity = Entity(max_order_quantity="10", max_order_notional="50", blocked_symbols=["AAPL"])
    entity.call("halt", {"reason": "manual"})
    codes = entity.codes(request("i1", leg("AAPL", "buy", "20", "10")))
    assert sorted(codes) == ["halted", "order_notional", "order_quantity", "symbol_blocked"]


def test_reserve_denies_when_halted_and_resume_reopens() -> None:
    entity = Entity()
    assert entity.call("halt", {"reason": "kill switch"}) == {
        "halted": True,
        "reason": "kill switch",
    }
    assert entity.codes(request("i1", leg("AAPL", "buy", "1", "1"))) == ["halted"]
    entity.call("resume")
    assert entity.codes(request("i1", leg("AAPL", "buy", "1", "1"))) == []


def test_a_strategy_that_never_sells_short_cannot_sell_what_is_not_held() -> None:
    entity = Entity()

    def sell(intent: str, qty: str) -> dict[str, Any]:
        return {**request(intent, leg("AAPL", "sell", qty, "100")), "no_short": True}

    # Nothing held, nothing on its way (the entry was denied): the exit would go short.
    denied = entity.call("reserve", sell("exit-1", "10"))
    assert denied["approved"] is False
    [reason] = denied["reasons"]
    assert reason["code"] == "short_sale" and "held and on its way: 0" in reason["message"]
    # An entry still filling makes its exit good; and a sell within what is held passes.
    assert entity.codes(request("entry", leg("AAPL", "buy", "10", "100"))) == []
    assert entity.codes(sell("exit-2", "10")) == []
    entity.call("release", {"intent_id": "exit-2"})
    assert entity.fill("x1", "entry", "buy", "4", "100")["applied"] is True
    entity.call("release", {"intent_id": "entry"})
    assert entity.codes(sell("exit-3", "4")) == []
    entity.call("release", {"intent_id": "exit-3"})
    assert entity.codes(sell("exit-4", "5")) == ["short_sale"]
    # Without the flag (an allow-short strategy, a manual order) a sell is not held back.
    assert entity.codes(request("short", leg("AAPL", "sell", "50", "100"))) == []


def test_the_no_short_flag_round_trips_and_is_checked() -> None:
    legs = (ExposureLeg("AAPL", Side.SELL, Decimal(1), Decimal(2)),)
    flagged = ReserveRequest("i1", legs, T0, no_short=True)
    assert ReserveRequest.from_dict(json.loads(json.dumps(flagged.to_dict()))) == flagged
    assert "no_short" not in ReserveRequest("i2", legs, T0).to_dict()
    with pytest.raises(ValidationError):
        ReserveRequest.from_dict({**flagged.to_dict(), "no_short": "yes"})


def test_reserve_release_and_fill_are_idempotent() -> None:
    entity = Entity(max_open_orders=1)
    first = entity.call("reserve", request("i1", leg("AAPL", "buy", "10", "10")))
    again = entity.call("reserve", request("i1", leg("AAPL", "buy", "10", "10")))
    assert first["approved"] and again["approved"] and again["existing"]
    assert entity.fill("x1", "i1", "buy", "10", "10")["applied"] is True
    state = json.dumps(entity.state)
    assert entity.fill("x1", "i1", "buy", "10", "10")["applied"] is False
    assert json.dumps(entity.state) == state
    assert entity.call("release", {"intent_id": "i1"})["released"] is True
    assert entity.call("release", {"intent_id": "i1"})["released"] is False


def test_applied_execution_ids_keep_their_order_and_survive_other_operations() -> None:
    entity = Entity()
    for execution in ("x3", "x1", "x2"):
        assert entity.fill(execution, "i1", "buy", "1", "10")["applied"] is True
    assert entity.state is not None
    assert groups(entity.state) == [["", ["x3", "x1", "x2"]]]
    entity.call("reserve", request("i2", leg("AAPL", "buy", "1", "10")))
    entity.call("halt", {"reason": "test"})
    assert groups(entity.state) == [["", ["x3", "x1", "x2"]]]
    for execution in ("x1", "x2", "x3"):
        assert entity.fill(execution, "i1", "buy", "1", "10")["applied"] is False
    assert groups(entity.state) == [["", ["x3", "x1", "x2"]]]
    assert entity.call("get")["positions"][0]["quantity"] == "3"


def booked_on(day: str, hour: int = 15) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def forgotten_through(entity: Entity) -> object:
    assert entity.state is not None
    return entity.state["executions_forgotten_through"]


def handed(entity: Entity, through: datetime) -> dict[str, Any]:
    """Reconciliation's word that every fill booked up to ``through`` was handed on."""
    return entity.call("fills_handed", {"through": through.isoformat()})


def test_execution_ids_are_kept_for_the_last_risk_days_with_fills() -> None:
    entity = Entity()
    days = [f"2026-03-{d:02d}" for d in range(2, 3 + EXECUTION_DAYS_KEPT)]
    for day in days:
        entity.call("reset_day", {"day": day})
        entity.call("reset_day", {"day": day})  # the end-of-day timer may say it twice
        for execution, hour in (("x", 16), ("y", 15)):
            result = entity.fill(
                f"{execution}-{day}", "i1", "buy", "1", "10", at=booked_on(day, hour)
            )
            assert result["applied"] is True
    assert entity.state is not None
    # More days than are kept, but nobody has vouched that their fills were all handed
    # on: nothing is forgotten yet.
    assert [day for day, _ in groups(entity.state)] == days
    assert forgotten_through(entity) is None
    # Reconciliation has handed on everything booked until just before the oldest day's
    # last fill: that day may still have a fill to come, and is kept.
    handed(entity, booked_on(days[0], 16) - timedelta(microseconds=1))
    assert [day for day, _ in groups(entity.state)] == days
    assert handed(entity, booked_on(days[0], 16)) == {
        "handed_through": booked_on(days[0], 16).isoformat()
    }
    assert [day for day, _ in groups(entity.state)] == days[1:]
    for day in days[1:]:
        assert (
            entity.fill(f"x-{day}", "i1", "buy", "1", "10", at=booked_on(day))["applied"] is False
        )
    # The oldest day's ids are forgotten, and with them the newest time they were booked:
    # a fill unknown now but booked by then was handed on before, and is refused as stale.
    assert forgotten_through(entity) == booked_on(days[0], 16).isoformat()
    for execution, at in (("x", booked_on(days[0], 16)), ("other", booked_on(days[0], 9))):
        result = entity.fill(f"{execution}-{days[0]}", "i1", "buy", "1", "10", at=at)
        assert result == {
            "applied": False,
            "stale": True,
            "forgotten_through": booked_on(days[0], 16).isoformat(),
            "halted": False,
            "flatten": False,
        }
    assert entity.call("get")["positions"][0]["quantity"] == str(2 * len(days))
    # A fill booked after that time cannot be among the forgotten: it is applied.
    late = booked_on(days[0], 16) + timedelta(microseconds=1)
    assert entity.fill("late", "i1", "buy", "1", "10", at=late)["applied"] is True
    assert groups(entity.state)[-1] == [days[-1], [f"x-{days[-1]}", f"y-{days[-1]}", "late"]]
    # An older word from reconciliation moves nothing back.
    handed(entity, booked_on(days[0], 1))
    assert entity.state["fills_handed_through"] == booked_on(days[0], 16).isoformat()
    # Days without fills do not push older ids out.
    for day in ("2026-04-01", "2026-04-02", "2026-04-03", "2026-04-06", "2026-04-07"):
        entity.call("reset_day", {"day": day})
    handed(entity, booked_on("2026-04-07"))
    assert (
        entity.fill(f"x-{days[1]}", "i1", "buy", "1", "10", at=booked_on(days[1]))["applied"]
        is False
    )
    # A new day with fills pushes the next one out, once it has been vouched for.
    entity.call("reset_day", {"day": "2026-04-08"})
    assert entity.fill("new", "i1", "buy", "1", "10", at=booked_on("2026-04-08"))["applied"]
    assert forgotten_through(entity) == booked_on(days[1], 16).isoformat()


def test_a_fill_never_handed_on_is_applied_however_old_its_day() -> None:
    # A fill booked on the first day but lost on its way (its orchestration failed), while
    # reconciliation was down: trading went on for more days than are kept. Nothing was
    # forgotten meanwhile, so when reconciliation hands the fill on at last, it applies.
    entity = Entity()
    days = [f"2026-03-{d:02d}" for d in range(2, 3 + EXECUTION_DAYS_KEPT)]
    handed(entity, booked_on(days[0], 8))  # the last run before the outage
    for day in days:
        entity.call("reset_day", {"day": day})
        assert entity.fill(f"x-{day}", "i1", "buy", "1", "10", at=booked_on(day, 16))["applied"]
    lost = entity.fill("lost", "i1", "buy", "1", "10", at=booked_on(days[0], 9))
    assert lost["applied"] is True
    assert entity.call("get")["positions"][0]["quantity"] == str(len(days) + 1)
    # The run that handed it on completes: now the first day can be forgotten. The lost
    # fill was applied on the newest day and is still known; the first day's own fill,
    # handed on again, is refused as stale.
    handed(entity, booked_on(days[-1], 17))
    assert entity.state is not None
    assert len(groups(entity.state)) == EXECUTION_DAYS_KEPT
    again = entity.fill("lost", "i1", "buy", "1", "10", at=booked_on(days[0], 9))
    assert again["applied"] is False and "stale" not in again
    first = entity.fill(f"x-{days[0]}", "i1", "buy", "1", "10", at=booked_on(days[0], 16))
    assert first["stale"] is True
    assert entity.call("get")["positions"][0]["quantity"] == str(len(days) + 1)


def test_the_forgotten_time_never_moves_back() -> None:
    # The second risk day's only fill was booked before the first day's last one (a fill
    # handed on late): forgetting that day leaves the time where it was.
    entity = Entity()
    booked = [booked_on("2026-03-02", 16), booked_on("2026-03-02", 10)]
    booked += [booked_on(f"2026-03-{d:02d}") for d in range(4, 4 + EXECUTION_DAYS_KEPT)]
    for index, at in enumerate(booked):
        entity.call("reset_day", {"day": f"2026-03-{index + 2:02d}"})
        assert entity.fill(f"x{index}", "i1", "buy", "1", "10", at=at)["applied"] is True
    handed(entity, booked_on("2026-03-03"))
    assert entity.state is not None
    assert len(groups(entity.state)) == EXECUTION_DAYS_KEPT
    assert forgotten_through(entity) == booked[0].isoformat()
    assert entity.fill("x0", "i1", "buy", "1", "10", at=booked[0])["stale"] is True


def test_forgotten_times_survive_the_state_and_bad_ones_are_refused() -> None:
    entity = Entity()
    for day in ("2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06"):
        entity.call("reset_day", {"day": day})
        entity.fill(f"x-{day}", "i1", "buy", "1", "10", at=booked_on(day))
    handed(entity, booked_on("2026-03-02"))
    assert entity.state is not None
    saved = json.loads(json.dumps(entity.state))
    assert saved["execution_newest"] == [
        [day, booked_on(day).isoformat()]
        for day in ("2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06")
    ]
    assert saved["fills_handed_through"] == booked_on("2026-03-02").isoformat()
    assert RiskState.from_dict(saved).to_dict() == saved
    for field, bad in (
        ("execution_newest", [["2026-03-03"]]),
        ("execution_newest", [["2026-03-03", "yesterday"]]),
        ("execution_newest", {"2026-03-03": "2026-03-03T15:00:00+00:00"}),
        ("executions_forgotten_through", "2026-03-02T15:00:00"),
        ("executions_forgotten_through", 7),
        ("fills_handed_through", "soon"),
    ):
        with pytest.raises(ValidationError) as refused:
            RiskState.from_dict({**saved, field: bad})
        assert refused.value.field == field
    refused_op = entity.call("fills_handed", {"through": "2026-03-02"})
    assert refused_op["error"]["field"] == "through"
    # A state written before the times were kept (or by that code since): nothing is
    # stale, its untimed days are forgotten as before, and that moves nothing.
    for key in ("execution_newest", "executions_forgotten_through", "fills_handed_through"):
        del entity.state[key]
    assert entity.fill("old", "i1", "buy", "1", "10", at=booked_on("2026-03-01"))["applied"]
    entity.call("reset_day", {"day": "2026-03-09"})
    entity.fill("x-2026-03-09", "i1", "buy", "1", "10", at=booked_on("2026-03-09"))
    assert len(groups(entity.state)) == EXECUTION_DAYS_KEPT
    assert forgotten_through(entity) is None


def test_a_day_seen_again_becomes_the_newest() -> None:
    entity = Entity()
    for day, execution in (("2026-03-02", "a"), ("2026-03-03", "b"), ("2026-03-02", "c")):
        entity.call("reset_day", {"day": day})
        entity.fill(execution, "i1", "buy", "1", "10")
    assert entity.state is not None
    assert groups(entity.state) == [["2026-03-03", ["b"]], ["2026-03-02", ["a", "c"]]]


def test_state_written_before_ids_were_grouped_by_day_still_dedupes() -> None:
    entity = Entity()
    entity.call("reset_day", {"day": "2026-03-02"})
    assert entity.state is not None
    del entity.state["execution_days"]
    entity.state["executions"] = ["a", "b", 7]  # sorted, as older states were; one not text
    assert entity.fill("7", "i1", "buy", "1", "10")["applied"] is False
    assert entity.fill("b", "i1", "buy", "1", "10")["applied"] is False
    assert entity.fill("c", "i1", "buy", "1", "10")["applied"] is True
    assert groups(entity.state) == [["2026-03-02", ["a", "b", "7", "c"]]]
    for bad in ([["2026-03-02", "4"]], {"2026-03-02": 4}, [["2026-03-02"]], [["2026-03-02", 3]]):
        entity.state["execution_days"] = bad
        with pytest.raises(ValidationError):
            entity.call("get")


def test_a_filled_leg_moves_from_reserved_to_position_exposure() -> None:
    entity = Entity(max_position_notional="1000")
    entity.call("reserve", request("i1", leg("AAPL", "buy", "50", "10")))
    entity.fill("x1", "i1", "buy", "50", "10")
    entity.call("release", {"intent_id": "i1"})
    # 500 held; another 500 reaches the limit exactly, 510 does not fit.
    assert entity.codes(request("i2", leg("AAPL", "buy", "50", "10"))) == []
    assert entity.codes(request("i3", leg("AAPL", "buy", "1", "10"))) == ["position_notional"]


def test_breaching_the_daily_loss_limit_halts_and_asks_for_a_flatten() -> None:
    entity = Entity(daily_loss_limit="100")
    entity.fill("x1", "i1", "buy", "10", "50")
    result = entity.fill("x2", "i1", "sell", "10", "40")  # -100: exactly at the limit
    assert result == {"applied": True, "halted": False, "flatten": False}
    assert entity.codes(request("i8", leg("AAPL", "buy", "1", "1"))) == []
    entity.fill("x3", "i2", "buy", "10", "50")
    result = entity.fill("x4", "i2", "sell", "10", "49.99")  # -0.10 more: beyond it
    assert result == {"applied": True, "halted": True, "flatten": True}
    codes = entity.codes(request("i9", leg("AAPL", "buy", "1", "1")))
    assert sorted(codes) == ["daily_loss", "halted"]
    assert "daily loss" in entity.call("get")["halt_reason"]


def test_reset_day_clears_the_days_pnl_but_keeps_the_halt() -> None:
    entity = Entity(daily_loss_limit="10")
    entity.fill("x1", "i1", "buy", "1", "50")
    entity.fill("x2", "i1", "sell", "1", "30")
    assert entity.call("reset_day", {"day": "2026-03-03"}) == {"day": "2026-03-03", "halted": True}
    state = entity.call("get")
    assert state["realized_today"] == "0" and state["halted"] is True
    entity.call("resume")
    assert entity.codes(request("i2", leg("AAPL", "buy", "1", "1"))) == []


def test_set_limits_replaces_them() -> None:
    entity = Entity(max_order_quantity="1")
    assert entity.codes(request("i1", leg("AAPL", "buy", "2", "1"))) == ["order_quantity"]
    entity.call("set_limits", {"max_order_quantity": "5"})
    assert entity.codes(request("i1", leg("AAPL", "buy", "2", "1"))) == []


@pytest.mark.parametrize(
    ("operation", "payload", "field"),
    [
        ("explode", {}, "operation"),
        ("reserve", {"intent_id": "i1", "legs": [], "ts_request": T0.isoformat()}, "legs"),
        ("reserve", request("i1", leg("AAPL", "hold", "1", "1")), "side"),
        ("reserve", request("i1", leg("AAPL", "buy", "-1", "1")), "quantity"),
        ("reserve", {"intent_id": "i1", "legs": [leg("AAPL", "buy", "1", "1")]}, "ts_request"),
        ("set_limits", {"max_order_quantity": "-3"}, "max_order_quantity"),
        ("set_limits", {"max_leverage": "3"}, "max_leverage"),
        ("halt", {}, "reason"),
        ("apply_fill", {"execution_id": "x"}, "side"),
    ],
)
def test_unknown_operations_and_bad_payloads_leave_the_state_unchanged(
    operation: str, payload: dict[str, Any], field: str
) -> None:
    entity = Entity(max_order_quantity="10")
    entity.call("reserve", request("i0", leg("AAPL", "buy", "1", "1")))
    before = json.dumps(entity.state)
    result = entity.call(operation, payload)
    assert result["error"]["field"] == field
    assert json.dumps(entity.state) == before


def test_state_round_trips_through_json() -> None:
    state = RiskState(ACCOUNT, limits=RiskLimits(max_order_quantity=Decimal("5")))
    state.reserve(
        ReserveRequest("i1", (ExposureLeg("AAPL", Side.BUY, Decimal("1"), Decimal("2")),), T0)
    )
    assert RiskState.from_dict(json.loads(json.dumps(state.to_dict()))).to_dict() == state.to_dict()


def test_initial_limits_apply_only_to_an_account_never_given_limits() -> None:
    request = {
        "intent_id": "int-9",
        "legs": [{"symbol": "AAPL", "side": "buy", "quantity": "10", "price": "100"}],
        "ts_request": "2026-03-02T15:00:00+00:00",
        "initial_limits": {"max_order_quantity": "5"},
    }
    state, result = apply_operation(None, "reserve", request, account="acct-1")
    assert result["approved"] is False
    assert state["limits"]["max_order_quantity"] == "5"
    cleared, _ = apply_operation(state, "set_limits", {}, account="acct-1")
    _, again = apply_operation(cleared, "reserve", request, account="acct-1")
    assert again["approved"] is True  # an operator's limits win over the configured ones
    _, refused = apply_operation(
        None, "reserve", {**request, "initial_limits": ["x"]}, account="acct-1"
    )
    assert refused["error"]["field"] == "initial_limits"


def test_state_saved_before_the_configured_flag_keeps_its_limits() -> None:
    state, _ = apply_operation(None, "set_limits", {"max_order_quantity": "50"}, account="a")
    legacy = {k: v for k, v in state.items() if k != "limits_configured"}
    request = {
        "intent_id": "int-9",
        "legs": [{"symbol": "AAPL", "side": "buy", "quantity": "10", "price": "100"}],
        "ts_request": "2026-03-02T15:00:00+00:00",
        "initial_limits": {"max_order_quantity": "5"},
    }
    after, result = apply_operation(legacy, "reserve", request, account="a")
    assert result["approved"] is True
    assert after["limits"]["max_order_quantity"] == "50"


def test_utilisation_says_how_much_of_each_configured_limit_is_in_use() -> None:
    entity = Entity(
        max_gross_exposure="10000",
        max_position_notional="4000",
        max_open_orders=4,
        max_orders_per_minute=10,
        daily_loss_limit="1000",
    )
    assert entity.codes(request("int-1", leg("AAPL", "buy", "10", "100"))) == []
    entity.fill("x-1", "int-1", "buy", "10", "100")
    assert entity.codes(request("int-2", leg("MSFT", "buy", "5", "400"))) == []  # still open
    entity.fill("x-2", "int-1", "sell", "10", "90")  # a realised loss of 100
    assert entity.state is not None
    used = RiskState.from_dict(entity.state).utilisation(T0 + timedelta(seconds=30))
    assert used == {
        "max_position_notional": Decimal("0.5"),  # MSFT 2,000 reserved of 4,000
        "max_gross_exposure": Decimal("0.2"),
        "max_open_orders": Decimal("0.25"),
        "max_orders_per_minute": Decimal("0.2"),
        "daily_loss_limit": Decimal("0.1"),
    }
    later = RiskState.from_dict(entity.state).utilisation(T0 + timedelta(minutes=5))
    assert later["max_orders_per_minute"] == 0
    assert RiskState(ACCOUNT).utilisation(T0) == {}  # no limits, nothing to measure


def test_the_order_rate_window_round_trips_and_rejects_what_is_not_a_time() -> None:
    times = [T0 + timedelta(seconds=s, microseconds=7) for s in (1, 2, 2, 30)]
    state = RiskState(ACCOUNT, order_times=list(times))
    for _ in range(2):  # the second pass reads and writes the same texts again
        data = json.loads(json.dumps(state.to_dict()))
        assert data["order_times"][0] == "2026-03-02T14:30:01.000007+00:00"
        state = RiskState.from_dict(data)
        assert state.order_times == times
        assert all(t.tzinfo is not None for t in state.order_times)
    for bad in ("yesterday", {"ts": "2026-03-02"}, 17):
        with pytest.raises(ValidationError):
            RiskState.from_dict({**RiskState(ACCOUNT).to_dict(), "order_times": [bad]})


def test_recent_fills_are_those_booked_within_the_handover_window() -> None:
    def booked(at: datetime) -> Fill:
        return Fill(
            f"x@{at.isoformat()}", ACCOUNT, "AAPL", Side.BUY, Decimal(1), Decimal(1), at, "i:entry"
        )

    edge = T0 - FILL_HANDOVER_WINDOW
    fills = [booked(edge - timedelta(microseconds=1)), booked(edge), booked(T0)]
    assert recent_fills(fills, T0) == fills[1:]


def test_every_remembered_id_is_listed_where_code_before_the_grouping_reads_them() -> None:
    entity = Entity()
    for day, execution in (("2026-03-02", "a"), ("2026-03-03", "b"), ("2026-03-04", "c")):
        entity.call("reset_day", {"day": day})
        entity.fill(execution, "i1", "buy", "1", "10")
    assert entity.state is not None and entity.state["executions"] == ["a", "b", "c"]
    # That code writes the ids back without their days: all of them still count once.
    del entity.state["execution_days"]
    for execution in ("a", "b", "c"):
        assert entity.fill(execution, "i1", "buy", "1", "10")["applied"] is False
    assert groups(entity.state) == [["2026-03-04", ["a", "b", "c"]]]
