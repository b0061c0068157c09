"""App settings the way the Functions host provides them: ``local.settings.json`` values
become environment variables (already-set environment variables win), and ``%NAME%`` in
binding metadata or host.json is replaced by the setting's value."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

_PLACEHOLDER = re.compile(r"%([A-Za-z0-9_.:\-]+)%")


class MissingSetting(Exception):
    def __init__(self, name: str, needed_by: str) -> None:
        super().__init__(f"setting {name!r} is required by {needed_by} but is not set")
        self.name = name


def read_local_settings(root: Path) -> dict[str, str]:
    """``Values`` of local.settings.json, or of the sample when there is no local file."""
    for name in ("local.settings.json", "local.settings.sample.json"):
        path = root / name
        if path.is_file():
            values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
            return {str(k): str(v) for k, v in values.items()}
    return {}


def disabled_functions(names: Iterable[str], environ: Mapping[str, str]) -> frozenset[str]:
    """The functions an ``AzureWebJobs.<name>.Disabled`` setting of ``true`` (or ``1``)
    switches off, as the Functions host reads it: their triggers do not fire, and their
    HTTP routes answer only callers presenting the master key. Like the host, the name is
    matched whatever its case, and ``AzureWebJobs_<name>_Disabled`` (the form Linux
    environments allow) counts too."""
    switches = {key.lower(): value for key, value in environ.items()}
    return frozenset(
        name
        for name in names
        if any(
            switches.get(key.lower(), "").lower() in ("true", "1")
            for key in (f"AzureWebJobs.{name}.Disabled", f"AzureWebJobs_{name}_Disabled")
        )
    )


def apply_settings(values: Mapping[str, str], environ: MutableMapping[str, str]) -> None:
    for key, value in values.items():
        environ.setdefault(key, value)


def resolve(value: Any, environ: Mapping[str, str], needed_by: str) -> Any:
    """Replace ``%NAME%`` placeholders in strings, recursively."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise MissingSetting(name, needed_by)
            return environ[name]

        return _PLACEHOLDER.sub(lookup, value)
    if isinstance(value, list):
        return [resolve(v, environ, needed_by) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, environ, needed_by) for k, v in value.items()}
    return value


def read_host_json(root: Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    path = root / "host.json"
    host: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    resolved = resolve(host, os.environ if environ is None else environ, "host.json")
    assert isinstance(resolved, dict)
    return resolved


def connection_is_configured(name: str, environ: Mapping[str, str]) -> bool:
    """A connection setting is either a connection string under its own name, or an
    identity-based group ``<name>__fullyQualifiedNamespace`` / ``<name>__serviceUri``."""
    if environ.get(name):
        return True
    prefix = f"{name}__"
    return any(key.startswith(prefix) and environ[key] for key in environ)
