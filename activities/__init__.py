"""Activity functions: the service layer, and the only functions that do I/O."""

from activities import trading as _trading  # noqa: F401  (registers its functions)
from activities.blueprint import bp

__all__ = ["bp"]
