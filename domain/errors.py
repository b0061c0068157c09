"""The error tree.

Retryable faults are worth trying again (timeouts, throttling, 5xx); terminal errors are
final (a rejection, a validation failure) and must be reported, never retried. Activities
raise only retryable faults and *return* terminal outcomes, because a durable orchestrator
sees every activity failure as a bare ``Exception``.
"""

from __future__ import annotations


class TradingError(Exception):
    """Root of every error the domain and its adapters raise on purpose."""


class RetryableFault(TradingError):
    """A transient failure: the same call may succeed later.

    ``retry_after_s`` carries a server's hint (Retry-After, rate-limit reset) when it gave one.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TerminalError(TradingError):
    """A final failure: retrying the same call gives the same answer."""


class ValidationError(TerminalError, ValueError):
    """Input that breaks a rule; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class IllegalTransition(TerminalError):
    """An order state change the state machine does not allow."""


class NotFound(TerminalError):
    """A looked-up record does not exist."""


class Conflict(TerminalError):
    """A write lost a race (an id that already exists, a stale ETag)."""
