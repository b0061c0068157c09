"""Activity functions: the service layer, and the only functions that do I/O."""

from activities.blueprint import bp

__all__ = ["bp"]
