from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from domain import indicators
from domain.errors import ValidationError


def run_incremental(
    indicator: indicators.SMA | indicators.EMA | indicators.ZScore, xs: list[float]
) -> np.ndarray:
    out = []
    for x in xs:
        value = indicator.update(x)
        out.append(np.nan if value is None else value)
    return np.asarray(out)


prices = st.lists(
    st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)


@given(xs=prices, window=st.integers(min_value=1, max_value=40))
def test_incremental_and_vectorised_sma_agree(xs: list[float], window: int) -> None:
    incremental = run_incremental(indicators.SMA(window), xs)
    vectorised = indicators.sma(xs, window)
    assert np.array_equal(np.isnan(incremental), np.isnan(vectorised))
    # Both are within a few ulps of the exact mean of the window's values.
    scale = max(abs(x) for x in xs)
    np.testing.assert_allclose(incremental, vectorised, rtol=0, atol=scale * 1e-13)


@given(xs=prices, span=st.integers(min_value=1, max_value=40))
def test_incremental_and_vectorised_ema_are_identical(xs: list[float], span: int) -> None:
    assert np.array_equal(
        run_incremental(indicators.EMA(span), xs), indicators.ema(xs, span), equal_nan=True
    )


@given(
    xs=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
        max_size=120,
    ),
    window=st.integers(min_value=2, max_value=30),
)
@example(xs=[5.0, 5.0, 5.0, 5.0], window=2)  # no spread at all: 0.0
def test_the_zscores_written_out_update_is_its_windows_arithmetic_bit_for_bit(
    xs: list[float], window: int
) -> None:
    z = indicators.ZScore(window)
    reference = indicators.RollingWindow(window, squares=True)
    for x in xs:
        reference.push(x)
        std = reference.std()
        expected = (
            None if not reference.full else 0.0 if std == 0.0 else (x - reference.mean()) / std
        )
        assert z.update(x) == expected
        assert z.buffer == reference  # the same state, so the same snapshot


@given(xs=prices, window=st.integers(min_value=2, max_value=40))
@example(xs=[741457.0, 1.890625, 0.25], window=2)
def test_incremental_and_vectorised_zscore_agree(xs: list[float], window: int) -> None:
    incremental = run_incremental(indicators.ZScore(window), xs)
    vectorised = indicators.zscore(xs, window)
    assert np.array_equal(np.isnan(incremental), np.isnan(vectorised))
    _, std = indicators.rolling_mean_std(xs, window)
    scale = max(abs(x) for x in xs)
    # The z-score is ill-conditioned when a window barely moves relative to its level:
    # compare where the spread is well above rounding noise. The incremental form sums
    # squares about a fixed shift (its first value, at most ``scale`` away), so its variance
    # carries an error of about eps * scale**2: for z within 1e-6 the spread must exceed
    # about scale * 1e-5 (a window of [1.89, 0.25] after a first price of 741457 does not).
    well_conditioned = ~np.isnan(std) & (std > scale * 1e-4)
    np.testing.assert_allclose(
        incremental[well_conditioned], vectorised[well_conditioned], rtol=1e-6, atol=1e-6
    )


def test_long_series_stays_exact_where_a_cumsum_drifts() -> None:
    rng = np.random.default_rng(42)
    xs = 1e4 + np.cumsum(rng.normal(0.0, 0.5, 1_000_000))
    window = 50
    incremental = run_incremental(indicators.SMA(window), xs.tolist())
    vectorised = indicators.sma(xs, window)
    exact_last = math.fsum(xs[-window:].tolist()) / window
    cumsum = np.cumsum(xs)
    cumsum_last = (cumsum[-1] - cumsum[-window - 1]) / window
    ours = max(abs(incremental[-1] - exact_last), abs(vectorised[-1] - exact_last))
    assert ours < 1e-11
    assert abs(cumsum_last - exact_last) > 100 * ours  # the naive method's drift is real
    assert np.nanmax(np.abs(incremental - vectorised)) < 1e-10


def test_crossover_signs_agree_on_a_long_series() -> None:
    rng = np.random.default_rng(7)
    xs = 1e4 + np.cumsum(rng.normal(0.0, 0.5, 300_000))
    fast_inc = run_incremental(indicators.SMA(10), xs.tolist())
    slow_inc = run_incremental(indicators.SMA(50), xs.tolist())
    fast_vec, slow_vec = indicators.sma(xs, 10), indicators.sma(xs, 50)
    warm = ~np.isnan(slow_vec)
    assert np.array_equal(np.sign(fast_inc - slow_inc)[warm], np.sign(fast_vec - slow_vec)[warm])


@pytest.mark.parametrize(
    "make", [lambda: indicators.SMA(7), lambda: indicators.EMA(7), lambda: indicators.ZScore(7)]
)
def test_state_snapshot_continues_bit_for_bit(make: object) -> None:
    rng = np.random.default_rng(3)
    xs = (500 + np.cumsum(rng.normal(0, 1, 200))).tolist()
    live = make()  # type: ignore[operator]
    for x in xs[:100]:
        live.update(x)
    restored = type(live).from_dict(json.loads(json.dumps(live.to_dict())))
    assert [live.update(x) for x in xs[100:]] == [restored.update(x) for x in xs[100:]]


def test_values_before_warm_up_are_none_then_numbers() -> None:
    sma = indicators.SMA(3)
    assert [sma.update(x) for x in (1.0, 2.0, 3.0, 4.0)] == [None, None, 2.0, 3.0]
    z = indicators.ZScore(2)
    assert z.update(5.0) is None
    assert z.update(5.0) == 0.0  # no spread: zero, not a division by zero
    assert z.update(7.0) == pytest.approx(1.0)


@pytest.mark.parametrize("window", [0, -1, 2.5, True, "3"])
def test_bad_windows_are_refused(window: object) -> None:
    with pytest.raises(ValidationError):
        indicators.SMA(window)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        indicators.sma([1.0, 2.0], window)  # type: ignore[arg-type]


def test_zscore_needs_two_values() -> None:
    with pytest.raises(ValidationError):
        indicators.ZScore(1)
