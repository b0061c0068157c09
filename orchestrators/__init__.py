"""Orchestrator generators and entity functions: deterministic, no I/O."""

from orchestrators.blueprint import bp

__all__ = ["bp"]
