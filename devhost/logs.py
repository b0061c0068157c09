"""Structured logs: one JSON object per line, saying which function and instance a line
belongs to (``extra={"function": ..., "instance_id": ...}``) and carrying the correlation
ids the app set (see ``adapters.observability``)."""

from __future__ import annotations

from adapters.observability import JsonLogFormatter, log_to_stderr

JsonFormatter = JsonLogFormatter


def configure(level: str = "INFO", *, json_lines: bool = True) -> None:
    log_to_stderr(level, json_lines=json_lines)
