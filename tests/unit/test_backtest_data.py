"""Where backtest bars come from: the synthetic market (seeded, the same bars every time),
CSV and Parquet files in long and wide form, and every way a reference or a file can be
wrong, refused with the field, the line and the column named."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from activities.backtest_data import (
    MAX_SYNTHETIC_CELLS,
    FileSource,
    SyntheticSource,
    bars_per_year,
    load_bars,
    parse_source,
)
from domain.errors import ValidationError

HEADER = "timestamp,symbol,open,high,low,close,volume\n"
LONG = (
    HEADER + "2026-01-02T14:30:00Z,SPY,10,11,9,10.5,100\n"
    "2026-01-02T14:30:00Z,QQQ,20,21,19,20.5,200\n"
    "2026-01-02T14:31:00Z,SPY,10.5,11,10,10.8,50\n"
    "2026-01-02T14:31:00Z,QQQ,20.5,21,20,20.7,70\n"
    "2026-01-02T14:32:00Z,QQQ,20.7,21,19,20.1,100\n"
    "2026-01-02T14:32:00Z,SPY,10.8,11,10,10.9,60\n"
)


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def refused(source: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        load_bars(source)
    return caught.value


def minute(m: int) -> datetime:
    return datetime(2026, 1, 2, 14, 30 + m, tzinfo=UTC)


# -- synthetic -------------------------------------------------------------------------------


def test_synthetic_bars_are_the_same_for_a_seed_and_differ_for_another() -> None:
    source = {"source": "synthetic", "symbols": ["AAPL", "MSFT"], "bars": 5000, "seed": 7}
    first, again = load_bars(source), load_bars(source)
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    other = load_bars({**source, "seed": 8})
    assert not np.array_equal(first.close, other.close)
    assert first.symbols == ("AAPL", "MSFT") and first.close.shape == (5000, 2)
    assert not np.array_equal(first.close[:, 0], first.close[:, 1])


def test_a_symbols_synthetic_bars_do_not_depend_on_the_others_asked_for() -> None:
    alone = load_bars({"source": "synthetic", "symbols": ["MSFT"], "bars": 1000, "seed": 3})
    among = load_bars(
        {"source": "synthetic", "symbols": ["AAPL", "MSFT", "NVDA"], "bars": 1000, "seed": 3}
    )
    np.testing.assert_array_equal(alone.close[:, 0], among.close[:, 1])
    np.testing.assert_array_equal(alone.high[:, 0], among.high[:, 1])


def test_synthetic_bars_have_the_times_prices_and_volatility_asked_for() -> None:
    bars = load_bars(
        {
            "source": "synthetic",
            "symbols": ["SPY"],
            "bars": 200_000,
            "seed": 11,
            "start": "2026-03-02T09:30:00-05:00",
            "minutes": 5,
            "price": 50.0,
            "volatility": 0.3,
        }
    )
    assert bars.timestamp(0) == datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert bars.timestamp(1) == datetime(2026, 3, 2, 14, 35, tzinfo=UTC)
    assert bars.ts is not None
    assert (np.diff(bars.ts) == np.timedelta64(5, "m")).all()
    assert bars.open[0, 0] == pytest.approx(50.0, rel=1e-2)
    assert (bars.high >= np.maximum(bars.open, bars.close)).all()
    assert (bars.low <= np.minimum(bars.open, bars.close)).all()
    assert bars.volume is not None and (bars.volume > 0).all()
    # Close-to-close log returns: the annual volatility over 5-minute steps of a
    # 252 x 390-minute year.
    returns = np.diff(np.log(bars.close[:, 0]))
    assert returns.std() == pytest.approx(0.3 * math.sqrt(5 / (252 * 390)), rel=0.02)
    assert bars_per_year(bars) == pytest.approx(252 * 390 / 5)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"bars": True}, "bars", "whole number"),
        ({"bars": 1}, "bars", "at least 2"),
        ({"bars": MAX_SYNTHETIC_CELLS}, "bars", "at most"),
        ({"bars": 10.5}, "bars", "whole number"),
        ({"seed": -1}, "seed", "at least 0"),
        ({"start": "2026-01-02T14:30:00"}, "start", "zone"),
        ({"start": "yesterday"}, "start", "ISO 8601"),
        ({"minutes": 0}, "minutes", "at least 1"),
        ({"volatility": 0}, "volatility", "greater than zero"),
        ({"price": "100"}, "price", "number"),
        ({"symbols": "SPY"}, "symbols", "list"),
        ({"symbols": []}, "symbols", "at least one"),
        ({"symbols": ["SPY", "spy"]}, "symbols[1]", "not a valid symbol"),
        ({"symbols": ["SPY", "SPY"]}, "symbols", "repeat"),
        ({"seeds": 7}, "seeds", "not a field of a synthetic source"),
    ],
)
def test_a_bad_synthetic_reference_names_the_field(
    change: dict[str, Any], field: str, reason: str
) -> None:
    source = {"source": "synthetic", "symbols": ["SPY", "QQQ"], "bars": 100, **change}
    error = refused(source)
    assert error.field == field
    assert reason in error.reason


def test_the_kind_of_source_is_checked_first() -> None:
    assert refused({"symbols": ["SPY"]}).field == "source"
    unknown = refused({"source": "ftp", "path": "x"})
    assert unknown.field == "source" and "synthetic, file, alpaca" in unknown.reason
    with pytest.raises(ValidationError) as not_a_mapping:
        parse_source(["synthetic"])  # type: ignore[arg-type]
    assert not_a_mapping.value.field == "source"
    assert refused({"source": "synthetic", "symbols": ["SPY"]}).field == "bars"
    assert refused({"source": "file"}).field == "path"
    assert refused({"source": "file", "path": "x.csv", "missing": "skip"}).field == "missing"
    assert refused({"source": "alpaca", "symbols": ["SPY"], "start": "x"}).field == "end"
    late = {
        "source": "alpaca",
        "symbols": ["SPY"],
        "start": "2026-01-03T00:00:00Z",
        "end": "2026-01-02T00:00:00Z",
    }
    assert refused(late).field == "end"
    assert refused({**late, "end": "2026-01-04T00:00:00Z", "feed": "nasdaq"}).field == "feed"


def test_references_survive_their_json_round_trip(tmp_path: Path) -> None:
    synthetic = parse_source({"source": "synthetic", "symbols": ["SPY"], "bars": 10})
    assert isinstance(synthetic, SyntheticSource)
    assert parse_source(synthetic.to_dict()) == synthetic
    assert synthetic.to_dict()["start"] == "2026-01-02T14:30:00Z"
    file = parse_source({"source": "file", "path": "a/b.parquet", "symbols": ["SPY"]})
    assert isinstance(file, FileSource) and parse_source(file.to_dict()) == file
    alpaca = parse_source(
        {
            "source": "alpaca",
            "symbols": ["SPY"],
            "start": "2026-01-02T09:30:00-05:00",
            "end": "2026-01-03T00:00:00Z",
            "timeframe": "1Day",
        }
    )
    assert parse_source(alpaca.to_dict()) == alpaca
    assert alpaca.to_dict()["start"] == "2026-01-02T14:30:00Z"


# -- CSV, long -------------------------------------------------------------------------------


def test_a_long_csv_becomes_bars_by_symbols(tmp_path: Path) -> None:
    bars = load_bars({"source": "file", "path": write(tmp_path, LONG)})
    assert bars.symbols == ("SPY", "QQQ")  # in the order they first appear
    assert [bars.timestamp(i) for i in range(3)] == [minute(0), minute(1), minute(2)]
    np.testing.assert_array_equal(bars.close, [[10.5, 20.5], [10.8, 20.7], [10.9, 20.1]])
    np.testing.assert_array_equal(bars.open, [[10, 20], [10.5, 20.5], [10.8, 20.7]])
    np.testing.assert_array_equal(bars.high[:, 0], [11, 11, 11])
    np.testing.assert_array_equal(bars.low[:, 1], [19, 20, 19])
    assert bars.volume is not None
    np.testing.assert_array_equal(bars.volume, [[100, 200], [50, 70], [60, 100]])


def test_symbols_filter_and_order_a_long_file(tmp_path: Path) -> None:
    path = write(tmp_path, LONG)
    bars = load_bars({"source": "file", "path": path, "symbols": ["QQQ", "SPY"]})
    assert bars.symbols == ("QQQ", "SPY")
    np.testing.assert_array_equal(bars.close[:, 0], [20.5, 20.7, 20.1])
    only = load_bars({"source": "file", "path": path, "symbols": ["QQQ"]})
    assert only.symbols == ("QQQ",) and only.n_bars == 3
    error = refused({"source": "file", "path": path, "symbols": ["QQQ", "IWM"]})
    assert error.field == "symbols" and "IWM is not in bars.csv (SPY, QQQ)" in error.reason


def test_a_file_of_one_symbol_needs_no_symbol_column(tmp_path: Path) -> None:
    text = (
        "ts,open,high,low,close,volume\n"
        "2026-01-02,100,101,99,100.5,1000\n"
        "2026-01-05,100.5,102,100,101.5,1200\n"
    )
    bars = load_bars({"source": "file", "path": write(tmp_path, text, "spy.csv")})
    assert bars.symbols == ("SPY",)  # from the file's name
    assert bars.timestamp(1) == datetime(2026, 1, 5, tzinfo=UTC)  # no zone: UTC
    assert bars_per_year(bars) == 252.0
    named = load_bars({"source": "file", "path": write(tmp_path, text), "symbols": ["IVV"]})
    assert named.symbols == ("IVV",)
    np.testing.assert_array_equal(named.close[:, 0], [100.5, 101.5])
    nameless = refused({"source": "file", "path": write(tmp_path, text, "my bars.csv")})
    assert nameless.field == "symbols" and "no symbol column" in nameless.reason
    two = refused({"source": "file", "path": write(tmp_path, text), "symbols": ["A", "B"]})
    assert two.field == "symbols"


def test_close_only_files_and_offsets(tmp_path: Path) -> None:
    text = "time,close\n2026-01-02T09:30:00-05:00,10\n2026-01-02T09:31:00-05:00,11\n"
    bars = load_bars({"source": "file", "path": write(tmp_path, text), "symbols": ["SPY"]})
    assert bars.timestamp(0) == minute(0)
    np.testing.assert_array_equal(bars.open[:, 0], [10, 11])  # a close-only series
    assert bars.volume is None


GAPPY = (
    HEADER + "2026-01-02T14:29:00Z,QQQ,20,20,20,20,1\n"  # before SPY's first bar
    "2026-01-02T14:30:00Z,SPY,10,11,9,10.5,100\n"
    "2026-01-02T14:30:00Z,QQQ,20,21,19,20.5,200\n"
    "2026-01-02T14:31:00Z,SPY,10.5,11,10,10.8,50\n"
    "2026-01-02T14:32:00Z,QQQ,20.7,21,19,20.1,100\n"
    "2026-01-02T14:32:00Z,SPY,10.8,11,10,10.9,60\n"
)


def test_a_time_one_symbol_lacks_is_filled_dropped_or_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GAPPY)
    filled = load_bars({"source": "file", "path": path})
    # From the first time both have a bar; QQQ's missing 14:31 is its last close, no volume.
    assert filled.symbols == ("QQQ", "SPY")
    assert filled.timestamp(0) == minute(0) and filled.n_bars == 3
    assert filled.volume is not None
    for prices in (filled.open, filled.high, filled.low, filled.close):
        assert prices[1, 0] == 20.5
    assert filled.volume[1, 0] == 0.0
    np.testing.assert_array_equal(filled.close[:, 0], [20.5, 20.5, 20.1])
    np.testing.assert_array_equal(filled.close[:, 1], [10.5, 10.8, 10.9])

    dropped = load_bars({"source": "file", "path": path, "missing": "drop"})
    assert [dropped.timestamp(i) for i in range(dropped.n_bars)] == [minute(0), minute(2)]

    error = refused({"source": "file", "path": path, "missing": "error"})
    assert error.field == "missing"
    assert "SPY has no bar at 2026-01-02T14:29:00Z" in error.reason


# -- CSV, wide -------------------------------------------------------------------------------


def test_a_wide_csv_of_closes(tmp_path: Path) -> None:
    text = "date,SPY,QQQ\n2026-01-02,470.1,400.2\n2026-01-05,471.5,\n2026-01-06,469.0,401.0\n"
    bars = load_bars({"source": "file", "path": write(tmp_path, text)})
    assert bars.symbols == ("SPY", "QQQ")
    np.testing.assert_array_equal(bars.close, [[470.1, 400.2], [471.5, 400.2], [469.0, 401.0]])
    qqq = load_bars({"source": "file", "path": write(tmp_path, text), "symbols": ["QQQ"]})
    np.testing.assert_array_equal(qqq.close[:, 0], [400.2, 401.0])  # its empty cell: no bar


def test_a_wide_csv_of_ohlcv_columns(tmp_path: Path) -> None:
    text = (
        "ts,SPY.open,SPY.high,SPY.low,SPY.close,SPY.volume,BRK.B_open,BRK.B_high,BRK.B_low,"
        "BRK.B_close,BRK.B_volume\n"
        "2026-01-02T14:30:00Z,10,11,9,10.5,5,400,402,399,401,7\n"
        "2026-01-02T14:31:00Z,10.5,11,10,10.7,6,401,403,400,402,8\n"
    )
    bars = load_bars({"source": "file", "path": write(tmp_path, text)})
    assert bars.symbols == ("SPY", "BRK.B")
    np.testing.assert_array_equal(bars.high, [[11, 402], [11, 403]])
    assert bars.volume is not None
    np.testing.assert_array_equal(bars.volume, [[5, 7], [6, 8]])
    bad = write(tmp_path, "ts,SPY,notes here\n2026-01-02,1,x\n2026-01-03,2,y\n")
    error = refused({"source": "file", "path": bad})
    assert error.field == "notes here" and "neither a column of a long file" in error.reason
    unordered = write(tmp_path, "ts,SPY\n2026-01-03,1\n2026-01-02,2\n")
    error = refused({"source": "file", "path": unordered})
    assert error.field == "ts" and error.reason.startswith("line 3: 2026-01-02T00:00:00Z is before")


# -- what a file can get wrong ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("symbol,close\nSPY,1\n", "ts", "no time column"),
        ("ts,symbol,open\n2026-01-02,SPY,1\n", "close", "no close column"),
        (HEADER + "2026-01-02T14:30:00Z,SPY,10,11,9,0,100\n", "close", "line 2: must be a pos"),
        (
            HEADER
            + "2026-01-02T14:30:00Z,SPY,10,11,9,10,1\n2026-01-02T14:31:00Z,SPY,10,11,9,-3,1\n",
            "close",
            "line 3: must be a positive price, got -3",
        ),
        (HEADER + "2026-01-02T14:30:00Z,SPY,abc,11,9,10,100\n", "open", "line 2: must be a pos"),
        (HEADER + "2026-01-02T14:30:00Z,SPY,10,11,9,,100\n", "close", "got 'nothing'"),
        (HEADER + "2026-01-02T14:30:00Z,SPY,10,11,9,10,-5\n", "volume", "line 2: must be a vol"),
        (HEADER + "2026-01-02T14:30:00Z,SPY,10,10.2,9,10.5,1\n", "high", "line 2: 10.2 must be"),
        (HEADER + "2026-01-02T14:30:00Z,SPY,10,11,10.1,10.5,1\n", "low", "line 2: 10.1 must be"),
        (HEADER + "not a time,SPY,10,11,9,10,1\n", "timestamp", "line 2: 'not a time' is not"),
        (HEADER + ",SPY,10,11,9,10,1\n", "timestamp", "line 2: has no time"),
        (HEADER + "2026-01-02T14:30:00Z,,10,11,9,10,1\n", "symbol", "line 2: has no symbol"),
        (HEADER + "2026-01-02T14:30:00Z,spy!,10,11,9,10,1\n", "symbol", "line 2: not a valid"),
        ("ts,close\n1767364200,10\n1767364260,11\n", "ts", "not numbers"),
        ("ts,timestamp,close\n2026-01-02,2026-01-02,10\n", "timestamp", "two ts columns"),
    ],
)
def test_a_bad_file_is_refused_naming_the_line_and_column(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    error = refused({"source": "file", "path": write(tmp_path, text, "spy.csv")})
    assert error.field == field
    assert reason in error.reason


def test_each_symbols_rows_must_be_in_time_order_without_repeats(tmp_path: Path) -> None:
    unsorted = (
        HEADER + "2026-01-02T14:31:00Z,SPY,10,11,9,10.5,1\n"
        "2026-01-02T14:30:00Z,QQQ,20,21,19,20.5,1\n"  # another symbol may come earlier
        "2026-01-02T14:30:00Z,SPY,10,11,9,10.5,1\n"
    )
    error = refused({"source": "file", "path": write(tmp_path, unsorted)})
    assert error.field == "timestamp"
    assert error.reason.startswith("line 4: SPY at 2026-01-02T14:30:00Z is before line 2")
    repeated = (
        HEADER + "2026-01-02T14:30:00Z,SPY,10,11,9,10.5,1\n"
        "2026-01-02T14:31:00Z,SPY,10,11,9,10.5,1\n"
        "2026-01-02T14:31:00Z,SPY,10,11,9,10.6,1\n"
    )
    error = refused({"source": "file", "path": write(tmp_path, repeated)})
    assert error.reason == "line 4: SPY at 2026-01-02T14:31:00Z repeats line 3"
    # Sorted by symbol, then time, is as good as sorted by time.
    by_symbol = (
        HEADER + "2026-01-02T14:30:00Z,QQQ,20,21,19,20.5,1\n"
        "2026-01-02T14:31:00Z,QQQ,20,21,19,20.6,1\n"
        "2026-01-02T14:30:00Z,SPY,10,11,9,10.5,1\n"
        "2026-01-02T14:31:00Z,SPY,10,11,9,10.6,1\n"
    )
    bars = load_bars({"source": "file", "path": write(tmp_path, by_symbol)})
    np.testing.assert_array_equal(bars.close, [[20.5, 10.5], [20.6, 10.6]])


def test_files_that_cannot_be_read_say_why(tmp_path: Path) -> None:
    missing = refused({"source": "file", "path": str(tmp_path / "none.csv")})
    assert missing.field == "path" and "no such file" in missing.reason
    empty = refused({"source": "file", "path": write(tmp_path, "")})
    assert empty.field == "path" and "empty" in empty.reason
    header_only = refused({"source": "file", "path": write(tmp_path, HEADER)})
    assert header_only.field == "path" and "no rows" in header_only.reason
    suffix = refused({"source": "file", "path": write(tmp_path, LONG, "bars.dat")})
    assert suffix.field == "path" and "format csv or parquet" in suffix.reason
    told = load_bars({"source": "file", "path": write(tmp_path, LONG, "bars.dat"), "format": "csv"})
    assert told.n_bars == 3
    one_bar = write(tmp_path, HEADER + "2026-01-02T14:30:00Z,SPY,10,11,9,10.5,1\n")
    assert refused({"source": "file", "path": one_bar}).field == "bars"
    not_parquet = refused({"source": "file", "path": write(tmp_path, LONG, "b.parquet")})
    assert not_parquet.field == "path" and "not a Parquet file" in not_parquet.reason


# -- Parquet ---------------------------------------------------------------------------------


def test_a_parquet_file_reads_as_its_csv_does(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    csv = write(tmp_path, LONG)
    frame = pd.read_csv(csv)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    parquet = tmp_path / "bars.parquet"
    frame.to_parquet(parquet)
    from_csv = load_bars({"source": "file", "path": csv})
    from_parquet = load_bars({"source": "file", "path": str(parquet)})
    assert from_parquet.symbols == from_csv.symbols
    assert from_parquet.ts is not None and from_csv.ts is not None
    np.testing.assert_array_equal(from_parquet.ts, from_csv.ts)
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(from_parquet, name), getattr(from_csv, name))
    # Parquet rows are counted from 0, as its readers count them.
    frame.loc[3, "close"] = -1.0
    frame.to_parquet(parquet)
    error = refused({"source": "file", "path": str(parquet)})
    assert error.field == "close" and error.reason.startswith("row 3: must be a positive price")


def test_without_a_parquet_engine_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bars.parquet"
    path.write_bytes(b"PAR1")
    # A module set to None in sys.modules cannot be imported: as if it were not installed.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    error = refused({"source": "file", "path": str(path)})
    assert error.field == "path"
    assert "reading Parquet needs pyarrow (pip install pyarrow)" in error.reason
