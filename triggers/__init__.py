"""Event Hub, HTTP and timer functions: parse the input, call one handler, return."""

from triggers import backtest_api as _backtest_api  # noqa: F401  (registers its functions)
from triggers import dashboard_api as _dashboard_api  # noqa: F401
from triggers import http_api as _http_api  # noqa: F401
from triggers import ticks as _ticks  # noqa: F401
from triggers import timers as _timers  # noqa: F401
from triggers import trade_updates as _trade_updates  # noqa: F401
from triggers.blueprint import bp

__all__ = ["bp"]
