"""What the Functions host learns from the app's own metadata: each function, its trigger,
its bindings, and how to call it.

``FunctionApp.get_functions()`` may run only once per app object (a second call finds every
name taken), so the index is built once per app and kept.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from devhost.measure import INVOCATIONS

SUPPORTED_TRIGGERS = frozenset(
    {
        "httpTrigger",
        "timerTrigger",
        "eventHubTrigger",
        "orchestrationTrigger",
        "activityTrigger",
        "entityTrigger",
    }
)
SUPPORTED_BINDINGS = frozenset({"durableClient", "http"})


class UnsupportedApp(Exception):
    """The app asks for something devhost cannot serve; raised at start-up, never later."""


def _plain(value: Any) -> Any:
    """Binding metadata holds enums (AuthLevel, HttpMethod, Cardinality): use their values."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    trigger: Mapping[str, Any]
    bindings: tuple[Mapping[str, Any], ...]
    call: Callable[..., Any]
    retry: Mapping[str, Any] | None = None

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_param(self) -> str:
        return str(self.trigger["name"])

    @property
    def client_param(self) -> str | None:
        for binding in self.bindings:
            if binding["type"] == "durableClient":
                return str(binding["name"])
        return None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.call)

    @functools.cached_property
    def parameter_names(self) -> frozenset[str]:
        """The parameters the function declares (read once: ``inspect.signature`` costs
        more than many a small invocation)."""
        return frozenset(inspect.signature(self.call).parameters)


@dataclass
class AppIndex:
    functions: dict[str, FunctionSpec] = field(default_factory=dict)

    def of_type(self, trigger_type: str) -> list[FunctionSpec]:
        return [f for f in self.functions.values() if f.trigger_type == trigger_type]

    @property
    def http(self) -> list[FunctionSpec]:
        return self.of_type("httpTrigger")

    @property
    def timers(self) -> list[FunctionSpec]:
        return self.of_type("timerTrigger")

    @property
    def event_hubs(self) -> list[FunctionSpec]:
        return self.of_type("eventHubTrigger")

    def durable(self, trigger_type: str) -> dict[str, Callable[..., Any]]:
        return {f.name: f.call for f in self.of_type(trigger_type)}


_indexes: dict[int, tuple[func.FunctionRegister, AppIndex]] = {}
_lock = threading.Lock()


def index_app(app: func.FunctionRegister) -> AppIndex:
    """The app's index, built on first use and shared by everyone after."""
    with _lock:
        cached = _indexes.get(id(app))
        if cached is not None and cached[0] is app:
            return cached[1]
        index = _build(app)
        _indexes[id(app)] = (app, index)
        return index


def _build(app: func.FunctionRegister) -> AppIndex:
    index = AppIndex()
    problems: list[str] = []
    for function in app.get_functions():
        name = str(function.get_function_name())
        raw = _plain(function.get_bindings_dict()["bindings"])
        triggers = [b for b in raw if str(b["type"]).endswith("Trigger")]
        others = tuple(b for b in raw if not str(b["type"]).endswith("Trigger"))
        if len(triggers) != 1:
            problems.append(f"{name}: expected one trigger, found {len(triggers)}")
            continue
        trigger = triggers[0]
        if trigger["type"] not in SUPPORTED_TRIGGERS:
            problems.append(f"{name}: trigger type {trigger['type']!r} is not supported")
        problems.extend(
            f"{name}: binding type {b['type']!r} is not supported"
            for b in others
            if b["type"] not in SUPPORTED_BINDINGS
        )
        retry = function.get_settings_dict("retry_policy")
        call = INVOCATIONS.measured(name, str(trigger["type"]), function.get_user_function())
        index.functions[name] = FunctionSpec(name, trigger, others, call, retry or None)
    if problems:
        raise UnsupportedApp("devhost cannot serve this app:\n  " + "\n  ".join(problems))
    return index


def load_app(module: str = "function_app", attribute: str = "app") -> func.FunctionRegister:
    app = getattr(importlib.import_module(module), attribute)
    # durable_functions.DFApp registers functions like a FunctionApp but does not derive from it.
    if not isinstance(app, func.FunctionRegister):
        raise UnsupportedApp(f"{module}.{attribute} is not an azure.functions.FunctionApp")
    return app
