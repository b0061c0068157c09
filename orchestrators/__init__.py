"""Orchestrator generators and entity functions: deterministic, no I/O."""

from orchestrators import backtest as _backtest  # noqa: F401  (registers its functions)
from orchestrators import flatten as _flatten  # noqa: F401
from orchestrators import reconcile as _reconcile  # noqa: F401
from orchestrators import risk_entity as _risk_entity  # noqa: F401
from orchestrators import trade as _trade  # noqa: F401
from orchestrators.blueprint import bp

__all__ = ["bp"]
