"""The OpenAPI 3.0 description of the desk's HTTP API, served at ``/api/openapi.json``.

Tests run every route against it, so the document and the routes cannot drift apart.
"""

from __future__ import annotations

from typing import Any

DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "example": "101.25"}
POSITIVE = {
    "oneOf": [
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
        {"type": "number", "exclusiveMinimum": True, "minimum": 0},
    ]
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["field", "reason"],
            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
ACCOUNT_PARAM = {"name": "account", "in": "path", "required": True, "schema": {"type": "string"}}


def _not_found(what: str) -> dict[str, Any]:
    """Ours is JSON; the host answers a path no route takes in plain text."""
    return {
        "description": f"{what}, or no route for the path",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }


NOT_FOUND = _not_found("no such order")
ORDER_ERRORS = {
    "400": _error("the body or a field is invalid"),
    "401": {"description": "a function key is required"},
    "404": NOT_FOUND,
}

ORDER = {
    "type": "object",
    "required": ["symbol", "side", "quantity"],
    "additionalProperties": False,
    "properties": {
        "account": {"type": "string"},
        "symbol": {"type": "string", "example": "AAPL"},
        "side": {"type": "string", "enum": ["buy", "sell"]},
        "quantity": POSITIVE,
        "order_type": {
            "type": "string",
            "enum": ["market", "limit", "stop", "stop_limit", "trailing_stop"],
        },
        "time_in_force": {"type": "string", "enum": ["day", "gtc", "opg", "cls", "ioc", "fok"]},
        "limit_price": POSITIVE,
        "stop_price": POSITIVE,
        "trail_percent": POSITIVE,
        "trail_price": POSITIVE,
        "reference_price": POSITIVE,
        "take_profit": {
            "type": "object",
            "description": "An exit at a profit, placed for what the entry fills; with "
            "stop_loss a bracket (one cancels the other), alone one-triggers-other.",
            "required": ["limit_price"],
            "properties": {"limit_price": POSITIVE},
        },
        "stop_loss": {
            "type": "object",
            "description": "An exit at a loss (stop, stop-limit or trailing stop), placed "
            "for what the entry fills; with take_profit a bracket, alone one-triggers-other.",
            "properties": {
                "stop_price": POSITIVE,
                "limit_price": POSITIVE,
                "trail_percent": POSITIVE,
                "trail_price": POSITIVE,
            },
        },
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Serverless trading desk",
            "version": "1.0.0",
            "description": "Manual orders, status, positions, risk and the kill switch. "
            "Function-level routes take a function key (x-functions-key header or code "
            "query parameter); admin routes take the master key.",
        },
        "components": {
            "schemas": {"Error": ERROR, "Order": ORDER},
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}
            },
        },
        "security": [{"functionKey": []}],
        "paths": {
            "/api/orders": {
                "get": {
                    "summary": "The account's order history, a page at a time",
                    "parameters": [
                        {"name": "from", "in": "query", "schema": {"type": "string"}},
                        {"name": "to", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                        },
                        {"name": "continuation", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json("orders, and a continuation for the next page (or null)"),
                        "400": _error("a parameter is invalid"),
                        "401": {"description": "a function key is required"},
                    },
                },
                "post": {
                    "summary": "Place a manual order (single, or a bracket)",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 100},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Order"}}
                        },
                    },
                    "responses": {
                        "202": _json("accepted; the links follow the orchestration"),
                        "400": _error("the body or a field is invalid"),
                        "401": {"description": "a function key is required"},
                        "404": _not_found("another account"),
                        "422": _error("the Idempotency-Key was used for a different order"),
                    },
                },
            },
            "/api/orders/{id}": {
                "get": {
                    "summary": "An order's orchestration status and its orders in the books",
                    "parameters": [ID_PARAM],
                    "responses": {"200": _json("the order"), **ORDER_ERRORS},
                },
                "delete": {
                    "summary": "Ask the orchestration to cancel what is still open",
                    "parameters": [ID_PARAM],
                    "responses": {
                        "202": _json("cancel requested"),
                        "409": _error("already finished"),
                        **ORDER_ERRORS,
                    },
                },
            },
            "/api/orders/{id}/approval": {
                "post": {
                    "summary": "Approve or reject an order waiting for approval (admin)",
                    "parameters": [ID_PARAM],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["approve"],
                                    "properties": {
                                        "approve": {"type": "boolean"},
                                        "reason": {"type": "string", "maxLength": 500},
                                        "by": {"type": "string", "minLength": 1, "maxLength": 100},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json("decision delivered"),
                        "409": _error("not awaiting approval"),
                        **ORDER_ERRORS,
                    },
                }
            },
            "/api/positions": {
                "get": {
                    "summary": "Positions in the books",
                    "parameters": [
                        {"name": "account", "in": "query", "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json("positions"),
                        "400": _error("an unknown query parameter"),
                        "401": {"description": "a function key is required"},
                        "404": _not_found("another account"),
                    },
                }
            },
            "/api/risk/{account}": {
                "get": {
                    "summary": "The account's risk state: limits, exposure, halt",
                    "parameters": [ACCOUNT_PARAM],
                    "responses": {
                        "200": _json("risk state"),
                        "401": {"description": "a function key is required"},
                        "404": _not_found("another account"),
                    },
                }
            },
            "/api/risk/{account}/limits": {
                "put": {
                    "summary": "Replace the account's risk limits (admin)",
                    "parameters": [ACCOUNT_PARAM],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "202": _json("limits sent to the risk entity"),
                        "400": _error("not a valid set of limits"),
                        "401": {"description": "the master key is required"},
                        "404": _not_found("another account"),
                    },
                }
            },
            "/api/killswitch": {
                "post": {
                    "summary": "Halt (and flatten) or resume the account (admin)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["action", "reason"],
                                    "properties": {
                                        "account": {"type": "string"},
                                        "action": {"type": "string", "enum": ["halt", "resume"]},
                                        "reason": {"type": "string", "minLength": 1},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json("resumed"),
                        "202": _json("halted; the flatten orchestration is running"),
                        "400": _error("invalid request"),
                        "401": {"description": "the master key is required"},
                        "404": _not_found("another account"),
                    },
                }
            },
            "/api/health": {
                "get": {
                    "summary": "Dependencies reachable, and ingestion progress (anonymous)",
                    "security": [],
                    "responses": {"200": _json("healthy"), "503": _json("degraded")},
                }
            },
            "/api/webhooks/trade-updates": {
                "post": {
                    "summary": "One trade update, signed with the webhook secret (HMAC)",
                    "security": [],
                    "parameters": [
                        {"name": "X-Desk-Timestamp", "in": "header", "schema": {"type": "string"}},
                        {"name": "X-Desk-Signature", "in": "header", "schema": {"type": "string"}},
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "202": {"description": "the orchestration owning the order is woken"},
                        "400": _error("not a trade update"),
                        "401": _error("unsigned, badly signed or stale"),
                        "404": _error("the webhook is not enabled"),
                        "409": _error("a replay of a request already taken"),
                        "413": _error("too large"),
                    },
                }
            },
            "/api/backtests": {
                "post": {
                    "summary": "Start a backtest: a parameter grid over one data set",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["data", "grid"],
                                    "properties": {
                                        "data": {
                                            "type": "object",
                                            "required": ["source"],
                                            "properties": {
                                                "source": {
                                                    "type": "string",
                                                    "enum": ["synthetic", "file", "alpaca"],
                                                }
                                            },
                                        },
                                        "grid": {
                                            "type": "object",
                                            "required": ["base"],
                                            "properties": {
                                                "base": {"type": "object"},
                                                "axes": {"type": "object"},
                                            },
                                        },
                                        "execution": {"type": "object"},
                                        "metric": {"type": "string"},
                                        "top": {"type": "integer", "minimum": 1, "maximum": 1000},
                                        "slice_size": {
                                            "type": "integer",
                                            "minimum": 1,
                                            "maximum": 10000,
                                        },
                                        "bars_per_year": {"type": "number", "minimum": 1},
                                        "metrics": {
                                            "type": "array",
                                            "items": {"type": "string"},
                                            "description": "the figures wanted besides "
                                            "metric (default: all); without a curve figure "
                                            "the sweep builds no equity curves",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json("started: the durable status links"),
                        "400": _error("invalid request"),
                        "401": {"description": "a function key is required"},
                    },
                }
            },
            "/api/metrics": {
                "get": {
                    "summary": "This instance's metrics in the Prometheus text format",
                    "responses": {
                        "200": {
                            "description": "counters, histograms and gauges",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": {"description": "a function key is required"},
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document (anonymous)",
                    "security": [],
                    "responses": {"200": _json("the OpenAPI document")},
                }
            },
        },
    }
