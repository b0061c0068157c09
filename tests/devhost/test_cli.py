"""``python -m devhost`` inspection commands over stores a real engine wrote."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.cli import DURABLE_STORE, EVENT_LOG, main
from devhost.durable import DurableEngine, VirtualClock
from devhost.eventhub import EventLog
from devhost.server import BackgroundServer
from tests.alpaca.streams import FakeAlpacaStreams, trade
from tests.functions import conformance_app

T0_ISO = "2026-03-02T15:00:00+00:00"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    with DurableEngine(
        conformance_app.app, tmp_path / DURABLE_STORE, clock=VirtualClock(), activity_workers=0
    ) as engine:
        engine.start_new("chain", "chain-1", 2)
        engine.start_new("waits_forever", "waiting-1")
        engine.run_until_idle()
    event_log = EventLog(tmp_path / EVENT_LOG)
    event_log.publish("ticks", [("AAPL", b"{}")] * 3, ts_enqueued=datetime.fromisoformat(T0_ISO))
    event_log.close()
    return tmp_path


def test_status_counts_instances_and_reports_hub_lag(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--state-dir", str(state_dir), "status"]) == 0
    out = capsys.readouterr().out
    assert "durable instances: 2" in out
    assert "Completed" in out and "Running" in out
    assert "event hub ticks ($Default): 3 events not yet checkpointed" in out


def test_instances_filters_by_status(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--state-dir", str(state_dir), "instances", "--status", "Running"]) == 0
    out = capsys.readouterr().out
    assert "waiting-1" in out and "chain-1" not in out


def test_history_lists_events_in_order(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--state-dir", str(state_dir), "history", "chain-1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    kinds = [line.split()[2] for line in lines]
    assert kinds[0] == "ORCHESTRATOR_STARTED"
    assert kinds[1] == "EXECUTION_STARTED"
    assert kinds.count("TASK_SCHEDULED") == 3 and kinds.count("TASK_COMPLETED") == 3
    assert kinds[-2:] == ["EXECUTION_COMPLETED", "ORCHESTRATOR_COMPLETED"]
    assert main(["--state-dir", str(state_dir), "history", "chain-1", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-2]["EventType"] == 1


def test_history_of_an_unknown_instance_fails(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--state-dir", str(state_dir), "history", "nope"]) == 1
    assert "no history" in capsys.readouterr().err


def test_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("start", "status", "instances", "history"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["start", "--help"])
    out = capsys.readouterr().out
    assert "--feed" in out and "synthetic" in out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_start_serves_the_real_app_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost",
            "--root",
            str(root),
            "--state-dir",
            str(tmp_path / "state"),
            "start",
            "--port",
            str(port),
            "--plain-logs",
        ],
        cwd=root,
        env={**os.environ, "TRADING_BOOKS_PATH": str(tmp_path / "books.sqlite")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        response = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert response is not None, process.communicate(timeout=5)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0
        assert f"http://127.0.0.1:{port}/api/health" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def run_session(
    tmp_path: Path, strategies: list[dict[str, object]], *extra: str
) -> tuple[int, str]:
    """``start --session`` of the real app on a short synthetic feed; (exit code, stdout)."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "TRADING_BOOKS_PATH": str(tmp_path / "books.sqlite"),
        "TRADING_STRATEGIES": json.dumps(strategies),
        "TRADING_POLL_INTERVAL_S": "1",
        "TRADING_ENTRY_TIMEOUT_S": "5",
    }
    command = [
        sys.executable, "-m", "devhost", "--root", str(root),
        "--state-dir", str(tmp_path / "state"), "start", "--port", str(free_port()),
        "--feed", "synthetic", "--symbols", "AAPL", "--limit", "400", "--seed", "3",
        "--timers-every", "1", "--log-level", "ERROR", "--session",
        "--report", "activities.report:print_session_report", *extra,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout


def test_a_session_runs_the_feed_to_the_end_prints_the_report_and_exits(tmp_path: Path) -> None:
    strategy = {"kind": "sma_cross", "symbol": "AAPL", "fast": 3, "slow": 8, "quantity": 1}
    code, out = run_session(tmp_path, [strategy], "--drain-timeout", "60")
    assert code == 0, out
    assert "session report" in out
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    pinned = f"devhost: threads on core {max(cores)}" if len(cores) > 1 else None
    assert (pinned in out) if pinned else ("threads on core" not in out)
    signals = int(next(line for line in out.splitlines() if "signals" in line).split()[-1])
    assert signals > 0
    assert "verified" in next(line for line in out.splitlines() if "audit chain" in line)


def test_a_session_measures_its_function_executions_for_the_cost_model(tmp_path: Path) -> None:
    strategy = {"kind": "sma_cross", "symbol": "AAPL", "fast": 3, "slow": 8, "quantity": 1}
    code, out = run_session(tmp_path, [strategy], "--drain-timeout", "60", "--all-cores")
    assert code == 0, out
    assert "threads on core" not in out  # left on every core
    path = tmp_path / "state" / "invocations.json"
    assert f"function executions measured: {path}" in out
    measured = json.loads(path.read_text())
    # 400 synthetic prints 100 ms apart: 40 s of a 6.5-hour trading day.
    assert measured["period_days"] == pytest.approx(40 / 23_400)
    assert measured["ticks"] == 400
    functions = measured["functions"]
    assert functions["ticks"]["trigger"] == "eventHub" and functions["ticks"]["count"] >= 1
    assert measured["trades"] > 0  # instances; each is several orchestrator executions
    assert functions["trade"]["count"] > measured["trades"]
    assert functions["trade"]["trigger"] == "orchestration"
    assert functions["submit_order"]["count"] >= measured["trades"]
    assert all(f["total_duration_ms"] > 0 for f in functions.values())
    priced = subprocess.run(
        [sys.executable, "-m", "activities.cost_cli", "--measured", str(path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert priced.returncode == 0, priced.stderr
    assert "measured" in priced.stdout and "verdict" in priced.stdout


def test_a_session_that_cannot_drain_exits_with_a_failure(tmp_path: Path) -> None:
    # Bracket exits far away keep their trades running past the drain timeout.
    strategy = {
        "kind": "sma_cross", "symbol": "AAPL", "fast": 3, "slow": 8, "quantity": 1,
        "plan": "bracket", "take_profit_pct": 50, "stop_loss_pct": 50,
    }  # fmt: skip
    code, out = run_session(tmp_path, [strategy], "--drain-timeout", "2")
    assert code == 1
    assert "session report" in out  # the report still shows what happened


def test_a_session_whose_feed_no_enabled_function_reads_is_refused(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable, "-m", "devhost", "--root", str(root),
        "--state-dir", str(tmp_path / "state"), "start", "--port", str(free_port()),
        "--feed", "synthetic", "--symbols", "AAPL", "--limit", "50", "--no-timers",
        "--log-level", "ERROR", "--session",
    ]  # fmt: skip
    env = {
        **os.environ,
        "TRADING_BOOKS_PATH": str(tmp_path / "books.sqlite"),
        "AzureWebJobs_ticks_Disabled": "true",
    }
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "no enabled function listens to ticks" in done.stderr


@pytest.fixture
def alpaca_streams() -> Iterator[tuple[FakeAlpacaStreams, str]]:
    fake = FakeAlpacaStreams()
    with BackgroundServer(fake.app()) as server:
        yield fake, server.url.replace("http://", "ws://")


def live_feed_env(tmp_path: Path, ws_url: str, key: str) -> dict[str, str]:
    return {
        **os.environ,
        "TRADING_BOOKS_PATH": str(tmp_path / "books.sqlite"),
        "ALPACA_KEY_ID": key,
        "ALPACA_SECRET_KEY": "secret",
        "FEED_STOCK_URL": f"{ws_url}/v2/iex",
        "FEED_TRADING_URL": f"{ws_url}/stream",
        "FEED_RECONNECT_MIN_S": "0.05",
    }


def devhost_start(tmp_path: Path, port: int, *extra: str) -> list[str]:
    root = Path(__file__).resolve().parents[2]
    return [
        sys.executable, "-m", "devhost", "--root", str(root), "--state-dir",
        str(tmp_path / "state"), "start", "--port", str(port), "--feed", "alpaca",
        "--symbols", "AAPL", "--log-level", "ERROR", "--no-timers", *extra,
    ]  # fmt: skip


def test_the_alpaca_feed_streams_prints_into_the_ticks_trigger(
    tmp_path: Path, alpaca_streams: tuple[FakeAlpacaStreams, str]
) -> None:
    fake, url = alpaca_streams
    start = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    fake.market_scripts = [
        [[trade("AAPL", 100.0 + i, 1, start + timedelta(seconds=i), i)] for i in range(3)]
    ]
    port = free_port()
    process = subprocess.Popen(
        devhost_start(tmp_path, port),
        cwd=Path(__file__).resolve().parents[2],
        env=live_feed_env(tmp_path, url, "key"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        ticks = 0
        while time.monotonic() < deadline and process.poll() is None and ticks < 3:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2).json()
                ticks = health["checks"].get("ingest", {}).get("ticks", 0)
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert ticks == 3, process.communicate(timeout=5) if process.poll() is not None else ticks
        assert fake.listens == 1  # trade updates are listened to as well
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_session_on_the_alpaca_feed_fails_when_the_login_is_refused(
    tmp_path: Path, alpaca_streams: tuple[FakeAlpacaStreams, str]
) -> None:
    _fake, url = alpaca_streams
    done = subprocess.run(
        devhost_start(tmp_path, free_port(), "--session"),
        cwd=Path(__file__).resolve().parents[2],
        env=live_feed_env(tmp_path, url, "wrong"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "the live feed stopped (exit status 3)" in done.stderr


def test_the_alpaca_feed_without_keys_says_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    done = subprocess.run(
        devhost_start(tmp_path, free_port()),
        cwd=Path(__file__).resolve().parents[2],
        env={**env, "TRADING_BOOKS_PATH": str(tmp_path / "books.sqlite")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "--feed alpaca: ALPACA_KEY_ID" in done.stderr


def test_a_backtest_fans_out_to_worker_processes_under_devhost(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    port = free_port()
    env = {
        **os.environ,
        "TRADING_BOOKS_PATH": str(tmp_path / "books.sqlite"),
        "DEVHOST_CPU_BOUND_ACTIVITIES": "backtest_slice",
        "DEVHOST_FUNCTION_KEY": "test-function-key",
        "DEVHOST_MASTER_KEY": "test-master-key",
    }
    command = [
        sys.executable, "-m", "devhost", "--root", str(root), "--state-dir",
        str(tmp_path / "state"), "start", "--port", str(port), "--no-timers",
        "--log-level", "ERROR",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                requests.get(f"{base}/health", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        body: dict[str, Any] = {
            "data": {"source": "synthetic", "symbols": ["SPY"], "bars": 20_000, "seed": 3},
            "grid": {
                "base": {"kind": "sma_cross", "symbol": "SPY"},
                "axes": {"fast": [5, 10, 20, 40], "slow": [50, 100, 200]},
            },
            "slice_size": 2,
            "top": 5,
        }
        started = requests.post(
            f"{base}/backtests",
            json=body,
            headers={"x-functions-key": "test-function-key"},
            timeout=10,
        )
        assert started.status_code == 202, started.text
        status_url = started.json()["statusQueryGetUri"]
        status: dict[str, Any] = {}
        while time.monotonic() < deadline and status.get("runtimeStatus") != "Completed":
            status = requests.get(status_url, timeout=5).json()
            time.sleep(0.2)
        assert status.get("runtimeStatus") == "Completed", status
        output = status["output"]
        assert (output["combinations"], output["slices"]) == (12, 6)
        assert len(output["leaderboard"]) == 5
        sharpes = [row["metrics"]["sharpe"] for row in output["leaderboard"]]
        assert sharpes == sorted(sharpes, reverse=True)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
