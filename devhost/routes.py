"""Azure Functions route templates (``orders/{id}``, ``{id:int}``, ``{id?}``, ``{*rest}``)
matched against request paths, with the host's route prefix (``api`` by default)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The constraints Azure's routing knows that matter for matching; anything else matches a
# path segment and is left to the function to validate.
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?(\?)?\}")


class BadRoute(ValueError):
    pass


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]
    literal_segments: int

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path.strip("/"))
        if found is None:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}


def compile_route(template: str, prefix: str = "api") -> RouteTemplate:
    parts = [p for p in (prefix.strip("/"), template.strip("/")) if p]
    full = "/".join(parts)
    regex = ""
    literal_segments = 0
    for index, segment in enumerate(full.split("/")):
        separator = "/" if index else ""
        param = _PARAM.fullmatch(segment)
        if param is None:
            if "{" in segment or "}" in segment:
                raise BadRoute(f"route {template!r}: unsupported segment {segment!r}")
            regex += re.escape(separator + segment)
            literal_segments += 1
            continue
        catch_all, name, constraint, optional = param.groups()
        if catch_all:
            body = r".*"
        elif constraint:
            if constraint not in _CONSTRAINTS:
                raise BadRoute(f"route {template!r}: unknown constraint {constraint!r}")
            body = _CONSTRAINTS[constraint]
        else:
            body = r"[^/]+"
        group = f"(?P<{name}>{body})"
        if optional or catch_all:
            regex += f"(?:{re.escape(separator)}{group})?"
        else:
            regex += re.escape(separator) + group
    return RouteTemplate(template, re.compile(regex), literal_segments)
