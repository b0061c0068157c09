"""The vectorised backtest engine: target positions in, fills, trades, equity and metrics out.

Execution model (the rules a test's bar-by-bar reference implements independently):

* **Sleeves.** Each symbol trades from its own sleeve of cash, ``starting_cash * weight``
  (equal weights unless given). Sleeves never lend to each other; the portfolio is their
  sum. Per-symbol results are the sleeve's.
* **Timing.** ``targets[t]`` is the position wanted after bar ``t``'s close, decided with
  data up to that close. With ``NEXT_OPEN`` it is traded at bar ``t + 1``'s open (the last
  bar's target is never traded); with ``THIS_CLOSE`` at bar ``t``'s close. The price the
  model trades at is the *reference price* ``p``. A sleeve starts flat and sends an order
  only on a bar where the target it trades to differs from the last one it traded to.
* **Fill price.** A buy fills at ``p * (1 + s)`` (slippage ``s`` in basis points / 1e4) or
  ``p + f * (high - low)`` of the fill bar (a fraction ``f`` of its range); a sell at
  ``p * (1 - s)`` or ``p - f * (high - low)``. A sell price that would not be positive is
  an error.
* **Fees.** Commission in basis points of the traded value, per share, or per order. Fees
  and trades settle in the sleeve's cash.
* **Sizing.** ``FIXED``: the new position is ``target * quantity`` shares. ``ALL_IN``: the
  new position ``q`` is such that, valued at ``p``, it is ``target`` times the sleeve's
  equity after the order's costs (also at ``p``)::

      q * p = target * (cash + q_old * p - fee - |q - q_old| * |fill - p|)

  so an all-in long leaves exactly no cash. If no ``q`` satisfies it on the side of
  ``q_old`` it implies (a per-order fee larger than the rebalance is worth), no order is
  sent. A sleeve whose equity at an order is not positive is ruined: it closes its position
  and sends no further orders.
* **Equity** at bar ``t`` is ``cash + position * close[t]``, after any fill in bar ``t``.

How it stays fast: fills are found with array comparisons; with all-in sizing, whole
targets (-1, 0, 1) and no per-order fee, each order's size is a fixed fraction of the
equity before it (the weight held going into the order is known in closed form: 0 after
flat, exactly 1 after an all-in long, and for a short it follows from the order that opened
it), so equity at successive orders is a cumulative product. Other all-in cases are path
dependent (each size depends on every earlier fill) and take a scalar loop over *orders*,
never over bars. Per-bar equity is then a repeat of each order's cash and position.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from domain.backtest.metrics import Metrics, metrics_for_rows
from domain.backtest.model import (
    Bars,
    CommissionKind,
    ExecutionModel,
    FillTiming,
    FloatArray,
    IndexArray,
    SizingKind,
    SlippageKind,
    TimeArray,
    positive_float,
    to_datetime,
    validate_targets,
)
from domain.errors import ValidationError

# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Fills:
    """Every order as filled, in (symbol, bar) order; one row per order."""

    symbols: tuple[str, ...]
    symbol: IndexArray  # index into ``symbols``
    bar: IndexArray  # the bar the order filled in
    quantity: FloatArray  # signed: + bought, - sold
    price: FloatArray  # fill price, slippage included
    fee: FloatArray
    position: FloatArray  # the position after the fill

    def __len__(self) -> int:
        return len(self.bar)

    def positions(self, bars: int) -> FloatArray:
        """(bars, symbols): the position held after each bar's close."""
        positions = np.zeros((len(self.symbols), bars))
        bounds = np.searchsorted(self.symbol, np.arange(len(self.symbols) + 1))
        for column in range(len(self.symbols)):
            a, b = bounds[column], bounds[column + 1]
            if a < b:
                lengths = np.diff(self.bar[a:b], prepend=0, append=bars)
                positions[column] = np.repeat(np.concatenate(([0.0], self.position[a:b])), lengths)
        return positions.T

    @property
    def notional(self) -> FloatArray:
        notional: FloatArray = np.abs(self.quantity) * self.price
        return notional


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip: from a position opening (from flat, or by a reversal) to its return to
    flat (or its reversal). Entry and exit prices are quantity-weighted averages over the
    fills that grew and shrank it; an open trade is valued at the last close."""

    symbol: str
    direction: int  # +1 long, -1 short
    entry_bar: int
    exit_bar: int
    ts_entry: datetime | None
    ts_exit: datetime | None
    entry_price: float
    exit_price: float
    quantity: float  # shares that entered (and left, when closed)
    pnl: float  # net of fees
    fees: float
    closed: bool

    @property
    def return_on_entry(self) -> float:
        """P&L over the value that entered the trade."""
        return self.pnl / (self.entry_price * self.quantity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "direction": self.direction,
            "entry_bar": self.entry_bar,
            "exit_bar": self.exit_bar,
            "ts_entry": None if self.ts_entry is None else self.ts_entry.isoformat(),
            "ts_exit": None if self.ts_exit is None else self.ts_exit.isoformat(),
            "entry_price": self.entry_price,
            "exit_price": self.exit_price,
            "quantity": self.quantity,
            "pnl": self.pnl,
            "fees": self.fees,
            "closed": self.closed,
        }


@dataclass(frozen=True, slots=True, eq=False)
class Trades:
    """Trades as columns (cheap for hundreds of thousands); iterate for :class:`Trade`s."""

    symbols: tuple[str, ...]
    symbol: IndexArray
    direction: NDArray[np.int8]
    entry_bar: IndexArray
    exit_bar: IndexArray
    entry_price: FloatArray
    exit_price: FloatArray
    quantity: FloatArray
    pnl: FloatArray
    fees: FloatArray
    closed: NDArray[np.bool_]
    ts: TimeArray | None

    def __len__(self) -> int:
        return len(self.entry_bar)

    def __iter__(self) -> Iterator[Trade]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> Trade:
        entry, exit_ = int(self.entry_bar[i]), int(self.exit_bar[i])
        return Trade(
            symbol=self.symbols[int(self.symbol[i])],
            direction=int(self.direction[i]),
            entry_bar=entry,
            exit_bar=exit_,
            ts_entry=None if self.ts is None else to_datetime(self.ts[entry]),
            ts_exit=None if self.ts is None else to_datetime(self.ts[exit_]),
            entry_price=float(self.entry_price[i]),
            exit_price=float(self.exit_price[i]),
            quantity=float(self.quantity[i]),
            pnl=float(self.pnl[i]),
            fees=float(self.fees[i]),
            closed=bool(self.closed[i]),
        )

    def of_symbol(self, column: int) -> FloatArray:
        """P&L of the closed trades of one symbol."""
        pnl: FloatArray = self.pnl[(self.symbol == column) & self.closed]
        return pnl


@dataclass(frozen=True, slots=True, eq=False)
class _MetricInputs:
    """What the metrics need beyond the curves, kept until they are first asked for."""

    cash0: FloatArray
    in_market: FloatArray
    holding: NDArray[np.bool_] | None
    bars_per_year: float
    risk_free_rate: float


@dataclass(frozen=True, slots=True, eq=False)
class BacktestResult:
    """Equity, fills and trades of a backtest. ``metrics`` (the portfolio's) and
    ``symbol_metrics`` are computed when first read: a sweep or a caller that wants only the
    curve or the trades does not pay for them."""

    symbols: tuple[str, ...]
    model: ExecutionModel
    equity: FloatArray  # (bars,) portfolio equity at each close
    symbol_equity: FloatArray  # (bars, symbols) each sleeve's equity
    fills: Fills
    trades: Trades
    ts: TimeArray | None
    _inputs: _MetricInputs = field(repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def positions(self) -> FloatArray:
        """(bars, symbols): shares held after each close (rebuilt from the fills)."""
        return self.fills.positions(len(self.equity))

    @property
    def symbol_metrics(self) -> Mapping[str, Metrics]:
        if "symbols" not in self._cache:
            inputs = self._inputs
            count = len(self.symbols)
            fills = self.fills
            self._cache["symbols"] = dict(
                zip(
                    self.symbols,
                    metrics_for_rows(
                        np.ascontiguousarray(self.symbol_equity.T),
                        inputs.cash0,
                        in_market=inputs.in_market,
                        trade_pnls=[self.trades.of_symbol(c) for c in range(count)],
                        traded=_sum_by(fills.symbol, fills.notional, minlength=count),
                        fees=_sum_by(fills.symbol, fills.fee, minlength=count),
                        bars_per_year=inputs.bars_per_year,
                        risk_free_rate=inputs.risk_free_rate,
                    ),
                    strict=True,
                )
            )
        symbol_metrics: Mapping[str, Metrics] = self._cache["symbols"]
        return symbol_metrics

    @property
    def metrics(self) -> Metrics:
        """The portfolio's metrics (the only symbol's, for one symbol)."""
        if "portfolio" not in self._cache:
            if len(self.symbols) == 1:
                self._cache["portfolio"] = self.symbol_metrics[self.symbols[0]]
            else:
                inputs = self._inputs
                holding = inputs.holding
                assert holding is not None  # kept whenever there is more than one sleeve
                trades = self.trades
                self._cache["portfolio"] = metrics_for_rows(
                    self.equity.reshape(1, -1),
                    np.asarray([inputs.cash0.sum()]),
                    in_market=np.asarray([np.count_nonzero(holding.any(axis=0))], dtype=np.float64),
                    trade_pnls=[trades.pnl[trades.closed]],
                    traded=np.asarray([self.fills.notional.sum()]),
                    fees=np.asarray([self.fills.fee.sum()]),
                    bars_per_year=inputs.bars_per_year,
                    risk_free_rate=inputs.risk_free_rate,
                )[0]
        metrics: Metrics = self._cache["portfolio"]
        return metrics

    def to_dict(self, *, curve: bool = True) -> dict[str, Any]:
        """JSON-safe: metrics, trades and (unless ``curve`` is false) the equity curve."""
        data: dict[str, Any] = {
            "symbols": list(self.symbols),
            "execution": self.model.to_dict(),
            "metrics": self.metrics.to_dict(),
            "symbol_metrics": {s: m.to_dict() for s, m in self.symbol_metrics.items()},
            "trades": [t.to_dict() for t in self.trades],
        }
        if curve:
            data["equity"] = self.equity.tolist()
            if self.ts is not None:
                data["ts"] = [to_datetime(t).isoformat() for t in self.ts]
        return data


# -- prices as the core reads them -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceRows:
    """Bars transposed to one contiguous row per symbol (each row's bars adjacent in memory,
    as the per-sleeve work reads them), with the reference price the model trades at."""

    reference: FloatArray  # (symbols, bars): the open (NEXT_OPEN) or the close (THIS_CLOSE)
    close: FloatArray
    spread: FloatArray | None  # high - low, for range slippage

    @classmethod
    def of(cls, bars: Bars, model: ExecutionModel) -> PriceRows:
        close = np.ascontiguousarray(bars.close.T)
        if model.fill is FillTiming.NEXT_OPEN:
            reference = np.ascontiguousarray(bars.open.T)
        else:
            reference = close
        spread = None
        if model.slippage.kind is SlippageKind.RANGE_FRACTION and model.slippage.amount > 0:
            spread = np.ascontiguousarray((bars.high - bars.low).T)
        return cls(reference, close, spread)


@dataclass(slots=True)
class FillColumns:
    """The core's fills: ``row`` is the simulated sleeve (not the symbol)."""

    row: IndexArray
    bar: IndexArray
    before: FloatArray
    after: FloatArray
    price: FloatArray
    fee: FloatArray
    cash: FloatArray  # the sleeve's cash after the fill

    def take(self, keep: NDArray[np.bool_] | IndexArray) -> FillColumns:
        return FillColumns(
            self.row[keep],
            self.bar[keep],
            self.before[keep],
            self.after[keep],
            self.price[keep],
            self.fee[keep],
            self.cash[keep],
        )

    def row_bounds(self, rows: int) -> IndexArray:
        """``bounds[r]:bounds[r + 1]`` are row ``r``'s fills (fills are sorted by row)."""
        return np.searchsorted(self.row, np.arange(rows + 1)).astype(np.intp)


@dataclass(slots=True)
class Simulation:
    equity: FloatArray  # (rows, bars)
    in_market: FloatArray  # (rows,) bars that end holding a position
    holding: NDArray[np.bool_] | None  # (rows, bars) when asked for
    fills: FillColumns


# -- the core --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Orders:
    """Bars where a sleeve's traded target changes, with both sides' prices and fees per
    share (the side is not always known before sizing)."""

    row: IndexArray
    bar: IndexArray
    old: FloatArray
    new: FloatArray
    reference: FloatArray
    buy_price: FloatArray
    sell_price: FloatArray
    buy_fee: FloatArray  # fee per share on the buy side (without the per-order part)
    sell_fee: FloatArray


def _target_changes(targets: NDArray[Any], lag: int) -> tuple[IndexArray, IndexArray]:
    """(row, bar) of every order: the target traded at bar ``k`` is ``targets[k - lag]``."""
    rows, n = targets.shape
    width = n - lag
    if width <= 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    traded = targets[:, :width]
    changed = np.empty((rows, width), dtype=np.bool_)
    np.not_equal(traded[:, 0], 0, out=changed[:, 0])
    np.not_equal(traded[:, 1:], traded[:, :-1], out=changed[:, 1:])
    flat = np.flatnonzero(changed)
    row = flat // width
    return row.astype(np.intp), (flat - row * width + lag).astype(np.intp)


def _orders(
    targets: NDArray[Any], prices: PriceRows, price_row: IndexArray, model: ExecutionModel
) -> _Orders:
    lag = 1 if model.fill is FillTiming.NEXT_OPEN else 0
    row, bar = _target_changes(targets, lag)
    column = bar - lag
    new = targets[row, column].astype(np.float64)
    old = np.zeros(len(row))
    later = column > 0
    old[later] = targets[row[later], column[later] - 1]
    prow = price_row[row]
    reference = prices.reference[prow, bar]
    slip = model.slippage
    if slip.kind is SlippageKind.BPS:
        buy_price = reference * (1.0 + slip.amount / 1e4)
        sell_price = reference * (1.0 - slip.amount / 1e4)
    elif prices.spread is None:
        buy_price = sell_price = reference
    else:
        move = slip.amount * prices.spread[prow, bar]
        buy_price, sell_price = reference + move, reference - move
    if len(sell_price) and not sell_price.min() > 0.0:
        at = int(np.argmin(sell_price))
        raise ValidationError(
            "slippage",
            f"takes a sell price to {sell_price[at]!r} or below zero (bar {int(bar[at])})",
        )
    commission = model.commission
    if commission.kind is CommissionKind.BPS:
        buy_fee, sell_fee = (
            buy_price * (commission.amount / 1e4),
            sell_price * (commission.amount / 1e4),
        )
    elif commission.kind is CommissionKind.PER_SHARE:
        buy_fee = sell_fee = np.full(len(row), commission.amount)
    else:
        buy_fee = sell_fee = np.zeros(len(row))
    return _Orders(row, bar, old, new, reference, buy_price, sell_price, buy_fee, sell_fee)


def _costs_too_high(where: int) -> ValidationError:
    return ValidationError(
        "commission",
        f"fee plus slippage per share reach the price at bar {where}: no order can be sized",
    )


def _fixed(orders: _Orders, cash0: FloatArray, model: ExecutionModel) -> FillColumns:
    quantity = model.sizing.quantity
    before = orders.old * quantity
    after = orders.new * quantity
    delta = after - before
    buy = delta > 0
    price = np.where(buy, orders.buy_price, orders.sell_price)
    fee = np.abs(delta) * np.where(buy, orders.buy_fee, orders.sell_fee)
    fee += model.commission.per_order
    flow = delta * price + fee
    cash = np.empty(len(flow))
    bounds = np.searchsorted(orders.row, np.arange(len(cash0) + 1))
    for r in range(len(cash0)):
        a, b = bounds[r], bounds[r + 1]
        if a < b:
            # Spent so far, subtracted from the starting cash: the same running order of
            # additions as a ledger updated fill by fill.
            np.cumsum(flow[a:b], out=cash[a:b])
            np.subtract(cash0[r], cash[a:b], out=cash[a:b])
    return FillColumns(orders.row, orders.bar, before, after, price, fee, cash)


def _all_in_coefficients(
    new: FloatArray,
    weight: FloatArray,
    reference: FloatArray,
    price: FloatArray,
    fee: FloatArray,
    side: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Position and cash after an all-in order, per unit of the equity before it.

    With ``E`` the equity before the order, ``w`` the weight held going in (position value
    over ``E``), ``k`` the cost per share on the order's side (slippage + fee), solving
    ``q p = t (E - |q - q_old| k)`` on that side gives ``q / E`` below; cash follows."""
    cost = side * (price - reference) + fee
    denominator = reference + new * side * cost
    if len(denominator) and not denominator.min() > 0.0:
        raise _costs_too_high(int(np.argmin(denominator)))
    position = new * (1.0 + side * weight * cost / reference) / denominator
    cash = (1.0 - weight) - (position - weight / reference) * (price + side * fee)
    return position, cash


def _all_in_closed_form(
    orders: _Orders, cash0: FloatArray
) -> tuple[FillColumns, NDArray[np.bool_]]:
    """All-in fills for whole targets without a per-order fee; also the rows that were
    ruined (equity not positive at an order), which the caller re-runs order by order."""
    side = np.sign(orders.new - orders.old)
    buy = side > 0
    price = np.where(buy, orders.buy_price, orders.sell_price)
    fee = np.where(buy, orders.buy_fee, orders.sell_fee)
    reference = orders.reference
    weight = (orders.old == 1.0).astype(np.float64)
    position, cash = _all_in_coefficients(orders.new, weight, reference, price, fee, side)
    rows = len(cash0)
    ruined = np.zeros(rows, dtype=np.bool_)
    with np.errstate(divide="ignore", invalid="ignore"):
        # An order out of a short needs the weight the short drifted to: the short was opened
        # by the row's previous order, which came from flat or from an all-in long (targets
        # change at every order), so its coefficients above are already exact.
        out_of_short = np.flatnonzero(orders.old == -1.0)
        if len(out_of_short):
            previous = out_of_short - 1
            growth = cash[previous] + position[previous] * reference[out_of_short]
            ruined[orders.row[out_of_short[~(growth > 0.0)]]] = True
            weight[out_of_short] = position[previous] * reference[out_of_short] / growth
            position[out_of_short], cash[out_of_short] = _all_in_coefficients(
                orders.new[out_of_short],
                weight[out_of_short],
                reference[out_of_short],
                price[out_of_short],
                fee[out_of_short],
                side[out_of_short],
            )
        # Equity before each order: the row's starting cash, then times the growth of each
        # holding period (cash + position * next reference price, per unit of equity).
        factor = np.empty(len(side))
        factor[1:] = cash[:-1] + position[:-1] * reference[1:]
        bounds = np.searchsorted(orders.row, np.arange(rows + 1))
        equity = np.empty(len(side))
        for r in range(rows):
            a, b = bounds[r], bounds[r + 1]
            if a < b:
                factor[a] = cash0[r]
                np.cumprod(factor[a:b], out=equity[a:b])
                if not equity[a:b].min() > 0.0:
                    ruined[r] = True
    after = equity * position
    before = np.zeros(len(after))
    before[1:] = after[:-1]
    before[bounds[:-1][bounds[:-1] < bounds[1:]]] = 0.0
    fills = FillColumns(
        orders.row,
        orders.bar,
        before,
        after,
        price,
        np.abs(after - before) * fee,
        equity * cash,
    )
    return fills, ruined


def _all_in_orders_loop(
    orders: _Orders, rows: IndexArray, cash0: FloatArray, per_order: float
) -> FillColumns:
    """All-in fills order by order (plain floats) for the given rows: the general case."""
    bounds = np.searchsorted(orders.row, np.arange(len(cash0) + 1))
    keep: list[int] = []
    before_out: list[float] = []
    after_out: list[float] = []
    price_out: list[float] = []
    fee_out: list[float] = []
    cash_out: list[float] = []
    for r in rows.tolist():
        a, b = int(bounds[r]), int(bounds[r + 1])
        columns = zip(
            range(a, b),
            orders.new[a:b].tolist(),
            orders.reference[a:b].tolist(),
            orders.buy_price[a:b].tolist(),
            orders.sell_price[a:b].tolist(),
            orders.buy_fee[a:b].tolist(),
            orders.sell_fee[a:b].tolist(),
            strict=True,
        )
        cash = float(cash0[r])
        position = 0.0
        for index, target, p, buy_price, sell_price, buy_fee, sell_fee in columns:
            equity = cash + position * p
            if not equity > 0.0:
                target = 0.0  # ruined: close out, then trade no more
            buy_cost = (buy_price - p) + buy_fee
            denominator = p + target * buy_cost
            if not denominator > 0.0:
                raise _costs_too_high(int(orders.bar[index]))
            new = target * (equity + position * buy_cost - per_order) / denominator
            if new > position:
                price, fee_per_share = buy_price, buy_fee
            else:
                sell_cost = (p - sell_price) + sell_fee
                denominator = p - target * sell_cost
                if not denominator > 0.0:
                    raise _costs_too_high(int(orders.bar[index]))
                new = target * (equity - position * sell_cost - per_order) / denominator
                if not new < position:
                    continue  # nothing worth trading on either side
                price, fee_per_share = sell_price, sell_fee
            delta = new - position
            fee = abs(delta) * fee_per_share + per_order
            cash -= delta * price + fee
            keep.append(index)
            before_out.append(position)
            after_out.append(new)
            price_out.append(price)
            fee_out.append(fee)
            cash_out.append(cash)
            position = new
            if not equity > 0.0:
                break
    index = np.asarray(keep, dtype=np.intp)
    return FillColumns(
        orders.row[index],
        orders.bar[index],
        np.asarray(before_out, dtype=np.float64),
        np.asarray(after_out, dtype=np.float64),
        np.asarray(price_out, dtype=np.float64),
        np.asarray(fee_out, dtype=np.float64),
        np.asarray(cash_out, dtype=np.float64),
    )


def _concat(parts: Sequence[FillColumns]) -> FillColumns:
    merged = FillColumns(
        *(np.concatenate([getattr(p, name) for p in parts]) for name in FillColumns.__slots__)
    )
    order = np.lexsort((merged.bar, merged.row))
    return merged.take(order)


def simulate_fills(
    targets: NDArray[Any],
    prices: PriceRows,
    price_row: IndexArray,
    cash0: FloatArray,
    model: ExecutionModel,
) -> FillColumns:
    """The fills of sleeves: ``targets`` is (sleeves, bars), already validated and held
    forward; sleeve ``r`` trades price row ``price_row[r]`` from ``cash0[r]``."""
    rows = len(cash0)
    orders = _orders(targets, prices, price_row, model)
    if model.sizing.kind is SizingKind.FIXED:
        return _fixed(orders, cash0, model)
    per_order = model.commission.per_order
    whole = (
        targets.dtype == np.int8
        or not len(orders.new)
        or bool(
            np.isin(orders.new, (-1.0, 0.0, 1.0)).all()
            and np.isin(orders.old, (-1.0, 0.0, 1.0)).all()
        )
    )
    if whole and per_order == 0.0:
        fills, ruined = _all_in_closed_form(orders, cash0)
        if ruined.any():
            kept = fills.take(~ruined[fills.row])
            redone = _all_in_orders_loop(orders, np.flatnonzero(ruined), cash0, per_order)
            fills = _concat([kept, redone])
        return fills
    return _all_in_orders_loop(orders, np.arange(rows), cash0, per_order)


def simulate(
    targets: NDArray[Any],
    prices: PriceRows,
    price_row: IndexArray,
    cash0: FloatArray,
    model: ExecutionModel,
    *,
    holding: bool = False,
    out: FloatArray | None = None,
) -> Simulation:
    """Run sleeves (see ``simulate_fills``) to their per-bar equity. ``holding`` asks for
    the per-bar map of held positions (a portfolio's exposure needs it); ``out`` (at least
    sleeves x bars) receives the equity, so a sweep reuses one buffer for every block."""
    n = targets.shape[1]
    fills = simulate_fills(targets, prices, price_row, cash0, model)
    return Simulation(*_expand(fills, prices, price_row, cash0, n, holding, out), fills)


def final_equity(
    fills: FillColumns, prices: PriceRows, price_row: IndexArray, cash0: FloatArray, n: int
) -> tuple[FloatArray, FloatArray]:
    """Without the per-bar curve: each row's equity at the last close (the same sum, in
    the same order, as the curve's last value), and the number of bars it ends holding a
    position."""
    rows = len(cash0)
    final = np.asarray(cash0, dtype=np.float64).copy()
    if not len(fills.row):
        return final, np.zeros(rows)
    last = np.flatnonzero(np.r_[fills.row[1:] != fills.row[:-1], True])
    row = fills.row[last]
    final[row] = fills.after[last] * prices.close[price_row[row], n - 1]
    final[row] += fills.cash[last]
    following = np.empty(len(fills.bar), dtype=np.intp)
    following[:-1] = fills.bar[1:]
    following[last] = n
    held = fills.after != 0.0
    in_market = _sum_by(fills.row[held], (following - fills.bar)[held].astype(np.float64), rows)
    return final, in_market


def _expand(
    fills: FillColumns,
    prices: PriceRows,
    price_row: IndexArray,
    cash0: FloatArray,
    n: int,
    holding: bool,
    out: FloatArray | None,
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_] | None]:
    """Per-bar equity of each row (cash + position * close, both constant between fills),
    the number of bars each row ends holding a position, and (if asked) which bars."""
    rows = len(cash0)
    equity = None if out is None else out[:rows]
    in_market = np.zeros(rows)
    held = np.zeros((rows, n), dtype=np.bool_) if holding else None
    bounds = fills.row_bounds(rows)
    for r in range(rows):
        a, b = bounds[r], bounds[r + 1]
        if a == b:
            if equity is None:
                equity = np.empty((rows, n))
            equity[r] = cash0[r]
            continue
        lengths = np.diff(fills.bar[a:b], prepend=0, append=n)
        after = np.concatenate(([0.0], fills.after[a:b]))
        in_market[r] = lengths[after != 0.0].sum()
        if held is not None:
            held[r] = np.repeat(after != 0.0, lengths)
        position = np.repeat(after, lengths)
        close = prices.close[price_row[r]]
        if equity is None and rows == 1:
            # One row: the position array becomes the equity, one large array less.
            np.multiply(position, close, out=position)
            equity = position.reshape(1, n)
        else:
            if equity is None:
                equity = np.empty((rows, n))
            np.multiply(position, close, out=equity[r])
        equity[r] += np.repeat(np.concatenate(([cash0[r]], fills.cash[a:b])), lengths)
    assert equity is not None  # there is at least one row
    return equity, in_market, held


# -- trades ----------------------------------------------------------------------------------


def _sum_by(index: IndexArray, weights: FloatArray, minlength: int) -> FloatArray:
    """``weights`` summed per ``index`` (0 .. minlength - 1)."""
    return np.bincount(index, weights, minlength=minlength).astype(np.float64, copy=False)


@dataclass(slots=True)
class TradeColumns:
    row: IndexArray
    direction: NDArray[np.int8]
    entry_bar: IndexArray
    exit_bar: IndexArray
    entry_price: FloatArray
    exit_price: FloatArray
    quantity: FloatArray
    pnl: FloatArray
    fees: FloatArray
    closed: NDArray[np.bool_]


def trades_from_fills(fills: FillColumns, last_close: FloatArray, bars: int) -> TradeColumns:
    """Group fills into round trips. Each fill adds quantity to the trade it opens or grows
    (``entering``) and/or takes it from the trade it shrinks or closes (``leaving``); a
    reversal does both, and its fee is split between the two trades by quantity."""
    before, after = fills.before, fills.after
    held_before, held_after = np.abs(before), np.abs(after)
    same_side = before * after > 0.0
    leaving = np.where(same_side, np.maximum(held_before - held_after, 0.0), held_before)
    entering = np.where(same_side, np.maximum(held_after - held_before, 0.0), held_after)
    opens = ~same_side & (after != 0.0)  # from flat, or a reversal
    trade_after = np.cumsum(opens) - 1  # the trade each fill's entering part belongs to
    trade_before = trade_after - opens  # the trade its leaving part belongs to
    count = int(trade_after[-1]) + 1 if len(trade_after) else 0
    moved = leaving + entering
    leaving_fee = fills.fee * np.divide(leaving, moved, out=np.zeros(len(moved)), where=moved > 0)
    entering_fee = fills.fee - leaving_fee
    into = entering > 0.0
    out = leaving > 0.0
    entered = _sum_by(trade_after[into], entering[into], minlength=count)
    entry_value = _sum_by(trade_after[into], entering[into] * fills.price[into], minlength=count)
    left = _sum_by(trade_before[out], leaving[out], minlength=count)
    exit_value = _sum_by(trade_before[out], leaving[out] * fills.price[out], minlength=count)
    fees = _sum_by(trade_after[into], entering_fee[into], minlength=count)
    fees += _sum_by(trade_before[out], leaving_fee[out], minlength=count)
    starts = np.flatnonzero(opens)
    row = fills.row[starts]
    direction = np.sign(after[starts]).astype(np.int8)
    exit_bar = np.full(count, bars - 1, dtype=np.intp)
    leaves = np.flatnonzero(out)
    if len(leaves):
        owner = trade_before[leaves]
        last = np.ones(len(leaves), dtype=np.bool_)
        last[:-1] = owner[1:] != owner[:-1]
        exit_bar[owner[last]] = fills.bar[leaves[last]]
    # A row that ends holding a position has its last trade still open: value what is left
    # at the last close, without an exit fee.
    closed = np.ones(count, dtype=np.bool_)
    ends = np.flatnonzero(np.r_[fills.row[1:] != fills.row[:-1], True]) if count else starts
    still_open = ends[after[ends] != 0.0]
    if len(still_open):
        trade = trade_after[still_open]
        remaining = np.abs(after[still_open])
        left[trade] += remaining
        exit_value[trade] += remaining * last_close[fills.row[still_open]]
        exit_bar[trade] = bars - 1
        closed[trade] = False
    with np.errstate(invalid="ignore", divide="ignore"):
        entry_price = entry_value / entered
        exit_price = exit_value / left
    pnl = direction * (exit_value - entry_value) - fees
    return TradeColumns(
        row,
        direction,
        fills.bar[starts],
        exit_bar,
        entry_price,
        exit_price,
        entered,
        pnl,
        fees,
        closed,
    )


# -- the public entry points -----------------------------------------------------------------


def sleeve_cash(model: ExecutionModel, symbols: int, weights: Sequence[float] | None) -> FloatArray:
    if weights is None:
        return np.full(symbols, model.starting_cash / symbols)
    values = np.asarray([positive_float(w, "weights") for w in weights], dtype=np.float64)
    if len(values) != symbols:
        raise ValidationError("weights", f"must give one weight per symbol ({symbols})")
    if not math.isclose(float(values.sum()), 1.0, rel_tol=0.0, abs_tol=1e-9):
        raise ValidationError("weights", "must add up to 1")
    return model.starting_cash * values


def backtest(
    bars: Bars,
    targets: ArrayLike,
    model: ExecutionModel | None = None,
    *,
    weights: Sequence[float] | None = None,
    bars_per_year: float = 252.0,
    risk_free_rate: float = 0.0,
) -> BacktestResult:
    """Trade ``targets`` (bars x symbols, or 1-D for one symbol; see
    :func:`domain.backtest.model.validate_targets`) over ``bars`` under ``model`` (the rules
    are in this module's docstring). ``bars_per_year`` annualises the metrics (252 for daily
    bars, 98,280 for regular-hours minutes); ``risk_free_rate`` is annual, for Sharpe and
    Sortino."""
    model = model or ExecutionModel()
    held = validate_targets(targets, bars.n_bars, bars.n_symbols)
    cash0 = sleeve_cash(model, bars.n_symbols, weights)
    prices = PriceRows.of(bars, model)
    rows = np.arange(bars.n_symbols, dtype=np.intp)
    simulation = simulate(
        np.ascontiguousarray(held.T), prices, rows, cash0, model, holding=bars.n_symbols > 1
    )
    return _result(bars, model, simulation, cash0, prices, bars_per_year, risk_free_rate)


def _result(
    bars: Bars,
    model: ExecutionModel,
    simulation: Simulation,
    cash0: FloatArray,
    prices: PriceRows,
    bars_per_year: float,
    risk_free_rate: float,
) -> BacktestResult:
    if not math.isfinite(risk_free_rate):
        raise ValidationError("risk_free_rate", "must be finite")
    fills = simulation.fills
    columns = trades_from_fills(fills, prices.close[:, -1], bars.n_bars)
    trades = Trades(
        bars.symbols,
        columns.row,
        columns.direction,
        columns.entry_bar,
        columns.exit_bar,
        columns.entry_price,
        columns.exit_price,
        columns.quantity,
        columns.pnl,
        columns.fees,
        columns.closed,
        bars.ts,
    )
    equity = simulation.equity[0] if bars.n_symbols == 1 else simulation.equity.sum(axis=0)
    return BacktestResult(
        symbols=bars.symbols,
        model=model,
        equity=equity,
        symbol_equity=simulation.equity.T,
        fills=Fills(
            bars.symbols,
            fills.row,
            fills.bar,
            fills.after - fills.before,
            fills.price,
            fills.fee,
            fills.after,
        ),
        trades=trades,
        ts=bars.ts,
        _inputs=_MetricInputs(
            cash0,
            simulation.in_market,
            simulation.holding,
            positive_float(bars_per_year, "bars_per_year"),
            float(risk_free_rate),
        ),
    )
