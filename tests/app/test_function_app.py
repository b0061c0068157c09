"""The app as the Functions host sees it: indexing, configuration files, the health route."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import azure.functions as func

ROOT = Path(__file__).resolve().parents[2]


def test_app_indexes_and_health_is_an_anonymous_get() -> None:
    import function_app
    from devhost.app_index import index_app

    functions = index_app(function_app.app).functions
    trigger = functions["health"].trigger
    assert trigger["type"] == "httpTrigger"
    assert trigger["route"] == "health"
    assert trigger["authLevel"] == func.AuthLevel.ANONYMOUS.value
    assert {"ticks", "trade", "flatten", "RiskEntity", "submit_order"} <= set(functions)


def test_function_app_only_registers_blueprints() -> None:
    source = (ROOT / "function_app.py").read_text(encoding="utf-8")
    statements = [
        line
        for line in source.splitlines()
        if line.strip() and not line.startswith(("#", '"""', "import ", "from "))
    ]
    assert statements[0].startswith("app = df.DFApp(")
    assert all(s.startswith("app.register_functions(") for s in statements[1:])
    assert len(statements) == 4


# What a cold start must not load: modules that only some functions or settings use (they
# are imported when those run) and the heavy libraries behind them. Most were once loaded
# by ``import function_app``; ``bench.imports`` measures what keeping them out is worth.
LOADED_ON_FIRST_USE = (
    "activities.archive",  # the nightly archive timer
    "activities.backtest_data",  # POST /api/backtests and the backtest activities
    "activities.dashboard",  # the dashboard routes
    "activities.operations",  # the warm-up, end-of-day and reconciliation housekeeping
    "activities.report",
    "adapters.sqlite_store",  # the books where SQLite is chosen (Azure uses Cosmos DB)
    "sqlite3",
    "domain.backtest",
    "domain.backtest_jobs",
    "domain.manual",  # POST /api/orders
    "triggers.openapi",  # GET /api/openapi.json
    "numpy",
    "pandas",
    "alpaca",
    "azure.cosmos",
    "azure.identity",
    "azure.storage.blob",
)


def test_importing_the_app_leaves_what_only_some_functions_use_unloaded() -> None:
    probe = "import json, sys, function_app; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert "triggers.ticks" in loaded  # the probe did import the app
    assert sorted(loaded.intersection(LOADED_ON_FIRST_USE)) == []


def test_host_json_pins_the_bundle_and_takes_the_hub_from_a_setting() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    hub = host["extensions"]["durableTask"]["hubName"]
    assert re.fullmatch(r"%[A-Z_]+%", hub)
    batch = host["extensions"]["eventHubs"]
    assert batch["maxEventBatchSize"] >= 1


def test_sample_settings_provide_every_setting_host_json_names() -> None:
    host_text = (ROOT / "host.json").read_text(encoding="utf-8")
    settings = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    values = settings["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    for name in re.findall(r"%([A-Za-z0-9_]+)%", host_text):
        assert name in values, f"host.json uses %{name}% but the sample settings lack it"


def test_runtime_requirements_are_pinned_and_lean() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.]*", line) for line in lines)
    names = {line.split("==")[0].lower() for line in lines}
    assert not names & {"pytest", "hypothesis", "ruff", "mypy"}


def test_funcignore_keeps_local_and_test_files_out_of_the_package() -> None:
    ignored = set((ROOT / ".funcignore").read_text(encoding="utf-8").split())
    for entry in ("tests", "devhost", "bench", ".venv", "local.settings.json", "node_modules"):
        assert entry in ignored
