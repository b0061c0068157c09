"""Activity functions: the service layer, and the only functions that do I/O."""

from activities import backtest as _backtest  # noqa: F401  (registers its functions)
from activities import trading as _trading  # noqa: F401
from activities.blueprint import bp

__all__ = ["bp"]
