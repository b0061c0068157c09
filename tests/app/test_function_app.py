"""The app as the Functions host sees it: indexing, configuration files, the health route."""

from __future__ import annotations

import json
import re
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
