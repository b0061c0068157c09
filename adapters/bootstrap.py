"""The composition root: reads the settings and builds the adapters the functions use.

Functions call :func:`services` and never construct a client themselves. Tests and tools
install their own set with :func:`use_services` (hand-written fakes or real adapters on
temporary files) and restore the default with :func:`reset`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from adapters.alert_webhook import AlertSettings, NullNotifier, build_notifier
from adapters.simulated_broker import SimulatedBroker, SimulatorConfig
from domain.alerts import AlertSink
from domain.errors import ValidationError
from domain.ports import ArchiveStore, Books, Broker, Clock
from domain.risk import RiskLimits
from domain.serde import parse_positive_decimal
from domain.signing import check_secret

T = TypeVar("T")

DEFAULT_STRATEGIES: list[dict[str, Any]] = [
    {"kind": "sma_cross", "symbol": "AAPL", "fast": 20, "slow": 60, "quantity": 10},
    {"kind": "ema_cross", "symbol": "MSFT", "fast": 15, "slow": 50, "quantity": 10},
    {
        "kind": "zscore",
        "symbol": "NVDA",
        "window": 60,
        "entry_z": 2.2,
        "exit_z": 0.4,
        "quantity": 5,
        "plan": "bracket",
        "take_profit_pct": 0.4,
        "stop_loss_pct": 0.3,
    },
    {
        "kind": "pairs",
        "symbol_a": "SPY",
        "symbol_b": "QQQ",
        "hedge_ratio": 1.0,
        "window": 80,
        "entry_z": 2.0,
        "exit_z": 0.5,
        "quantity": 5,
    },
]


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _json_setting(environ: Mapping[str, str], name: str, default: Any) -> Any:
    text = environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValidationError(name, f"is not valid JSON: {error.msg}") from None


def _int_setting(environ: Mapping[str, str], name: str, default: int) -> int:
    value = _optional_int_setting(environ, name)
    return default if value is None else value


def _optional_int_setting(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(name, f"must be a whole number, got {text[:20]!r}") from None
    if value <= 0:
        raise ValidationError(name, "must be greater than zero")
    return value


def _bool_setting(environ: Mapping[str, str], name: str) -> bool:
    text = (environ.get(name) or "").strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise ValidationError(name, f"must be true or false, got {text[:20]!r}")


def _webhook_key(environ: Mapping[str, str], name: str) -> bytes | None:
    secret = (environ.get(name) or "").strip()
    return check_secret(secret, name) if secret else None


def _within(setting: str, parse: Callable[[], T]) -> T:
    """Run ``parse``; a validation error names the setting it came from."""
    try:
        return parse()
    except ValidationError as error:
        raise ValidationError(f"{setting}.{error.field}", error.reason) from None


@dataclass(frozen=True)
class CosmosSettings:
    """Where the Cosmos DB books are. Without a key the app signs in with its identity
    (``DefaultAzureCredential``: the managed identity in Azure); a key comes only from
    settings. ``verify_tls`` is off only for a local emulator's self-signed certificate."""

    endpoint: str
    database: str = "trading-desk"
    key: str | None = field(default=None, repr=False)
    verify_tls: bool = True

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CosmosSettings:
        endpoint = (environ.get("COSMOS_ENDPOINT") or "").strip()
        if not endpoint.startswith("https://"):
            raise ValidationError("COSMOS_ENDPOINT", "must be the account's https:// endpoint")
        database = (environ.get("COSMOS_DATABASE") or "trading-desk").strip()
        if not database or any(c in database for c in "/\\#?"):
            raise ValidationError("COSMOS_DATABASE", "must be a simple name")
        verify = environ.get("COSMOS_VERIFY_TLS")
        return cls(
            endpoint=endpoint,
            database=database,
            key=(environ.get("COSMOS_KEY") or None),
            verify_tls=True if verify is None else _bool_setting(environ, "COSMOS_VERIFY_TLS"),
        )


@dataclass(frozen=True)
class AlpacaSettings:
    """Alpaca credentials (from settings only: Key Vault references in Azure). Paper is the
    default; live trading needs ``ALPACA_LIVE=true`` said explicitly."""

    key_id: str = field(repr=False)
    secret: str = field(repr=False)
    live: bool = False
    url_override: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AlpacaSettings:
        key_id = (environ.get("ALPACA_KEY_ID") or "").strip()
        secret = (environ.get("ALPACA_SECRET_KEY") or "").strip()
        if not key_id or not secret:
            raise ValidationError("ALPACA_KEY_ID", "ALPACA_KEY_ID and ALPACA_SECRET_KEY are needed")
        override = (environ.get("ALPACA_URL_OVERRIDE") or "").strip() or None
        return cls(key_id, secret, _bool_setting(environ, "ALPACA_LIVE"), override)


@dataclass(frozen=True)
class Settings:
    """Everything the desk reads from its application settings, validated once."""

    account: str = "paper"
    books_path: Path = Path(".desk/books.sqlite")
    broker: str = "simulated"
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    strategies: tuple[Mapping[str, Any], ...] = tuple(DEFAULT_STRATEGIES)
    risk_limits: RiskLimits | None = None
    approval_notional: Decimal | None = None
    manual_approval: bool = False
    approval_timeout_s: int = 300
    # Signals older than this (from their market time to when the trigger works them out)
    # are not traded: a backlog worked through late does not trade at today's prices.
    max_signal_age_s: int | None = None
    entry_timeout_s: int = 60
    exit_timeout_s: int = 23_400
    poll_interval_s: int = 2
    flatten_before_close_min: int = 5
    store: str = "sqlite"
    cosmos: CosmosSettings | None = None
    alpaca: AlpacaSettings | None = None
    archive_connection: str | None = field(default=None, repr=False)
    archive_url: str | None = None
    archive_container: str = "audit-archive"
    # The key that signs trade updates posted to the app's webhook (unset: no webhook).
    webhook_key: bytes | None = field(default=None, repr=False)
    alerts: AlertSettings = field(default_factory=AlertSettings)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        account = (environ.get("TRADING_ACCOUNT") or "paper").strip()
        if not account or any(c in account for c in "/\\#?: "):
            raise ValidationError("TRADING_ACCOUNT", "must be a simple name")
        broker = (environ.get("TRADING_BROKER") or "simulated").strip()
        if broker not in ("simulated", "alpaca"):
            raise ValidationError("TRADING_BROKER", f"must be simulated or alpaca, got {broker!r}")
        simulator = _json_setting(environ, "TRADING_SIMULATOR", {})
        strategies = _json_setting(environ, "TRADING_STRATEGIES", DEFAULT_STRATEGIES)
        if not isinstance(simulator, Mapping):
            raise ValidationError("TRADING_SIMULATOR", "must be a JSON object")
        if not isinstance(strategies, list) or not all(isinstance(s, Mapping) for s in strategies):
            raise ValidationError("TRADING_STRATEGIES", "must be a JSON list of objects")
        store = (environ.get("TRADING_STORE") or "sqlite").strip()
        if store not in ("sqlite", "cosmos"):
            raise ValidationError("TRADING_STORE", f"must be sqlite or cosmos, got {store!r}")
        limits = _json_setting(environ, "TRADING_RISK_LIMITS", None)
        if limits is not None and not isinstance(limits, Mapping):
            raise ValidationError("TRADING_RISK_LIMITS", "must be a JSON object")
        approval = environ.get("TRADING_APPROVAL_NOTIONAL")
        return cls(
            account=account,
            books_path=Path(environ.get("TRADING_BOOKS_PATH") or ".desk/books.sqlite"),
            broker=broker,
            simulator=_within("TRADING_SIMULATOR", lambda: SimulatorConfig.from_dict(simulator)),
            strategies=tuple(strategies),
            risk_limits=(
                None
                if limits is None
                else _within("TRADING_RISK_LIMITS", lambda: RiskLimits.from_dict(limits))
            ),
            approval_notional=(
                parse_positive_decimal(approval, "TRADING_APPROVAL_NOTIONAL")
                if approval and approval.strip()
                else None
            ),
            manual_approval=_bool_setting(environ, "TRADING_MANUAL_APPROVAL"),
            approval_timeout_s=_int_setting(environ, "TRADING_APPROVAL_TIMEOUT_S", 300),
            max_signal_age_s=_optional_int_setting(environ, "TRADING_MAX_SIGNAL_AGE_S"),
            entry_timeout_s=_int_setting(environ, "TRADING_ENTRY_TIMEOUT_S", 60),
            exit_timeout_s=_int_setting(environ, "TRADING_EXIT_TIMEOUT_S", 23_400),
            poll_interval_s=_int_setting(environ, "TRADING_POLL_INTERVAL_S", 2),
            flatten_before_close_min=_int_setting(environ, "TRADING_FLATTEN_BEFORE_CLOSE_MIN", 5),
            store=store,
            cosmos=CosmosSettings.from_environ(environ) if store == "cosmos" else None,
            alpaca=AlpacaSettings.from_environ(environ) if broker == "alpaca" else None,
            archive_connection=(environ.get("AUDIT_ARCHIVE") or None),
            archive_url=(environ.get("AUDIT_ARCHIVE__serviceUri") or None),
            archive_container=(environ.get("AUDIT_ARCHIVE_CONTAINER") or "audit-archive"),
            webhook_key=_webhook_key(environ, "TRADE_UPDATES_WEBHOOK_SECRET"),
            alerts=AlertSettings.from_environ(environ),
        )


@dataclass
class Services:
    settings: Settings
    store: Books
    broker: Broker
    clock: Clock = field(default_factory=SystemClock)
    alerts: AlertSink = field(default_factory=NullNotifier)
    # Spike detectors by metric (see activities.alerting), kept for the process's life.
    spikes: dict[str, Any] = field(default_factory=dict)
    _archive: ArchiveStore | None = None

    def archive(self) -> ArchiveStore | None:
        """The audit archive, when one is configured (built on first use)."""
        if self._archive is None:
            self._archive = build_archive(self.settings)
        return self._archive

    @property
    def simulator(self) -> SimulatedBroker | None:
        """The simulated broker, when that is the broker: it needs to see the market."""
        broker = self.broker
        while not isinstance(broker, SimulatedBroker):
            inner = getattr(broker, "inner", None)
            if inner is None:
                return None
            broker = inner
        return broker


def build_store(settings: Settings) -> Books:
    if settings.store == "cosmos" and settings.cosmos is not None:
        # Imported here: the Cosmos and identity SDKs are a cost only their users pay.
        from azure.cosmos import CosmosClient

        from adapters.cosmos_store import CosmosStore

        cosmos = settings.cosmos
        credential: Any = cosmos.key
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        client = CosmosClient(
            cosmos.endpoint, credential=credential, connection_verify=cosmos.verify_tls
        )
        return CosmosStore(client, cosmos.database)
    # Imported here too: Azure keeps the books in Cosmos DB, so sqlite3 and this store are
    # loaded only where SQLite is chosen, by the first call for the services.
    from adapters.sqlite_store import SqliteStore

    settings.books_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.books_path)


def build_archive(settings: Settings) -> ArchiveStore | None:
    """Blob Storage for the audit archive: a connection string (``AUDIT_ARCHIVE``, e.g.
    ``UseDevelopmentStorage=true`` for Azurite) or an account URL signed in with the app's
    identity (``AUDIT_ARCHIVE__serviceUri``); None when neither is set."""
    if not settings.archive_connection and not settings.archive_url:
        return None
    from adapters.blob_archive import BlobArchive

    if settings.archive_connection:
        return BlobArchive.connect(
            settings.archive_container, connection_string=settings.archive_connection
        )
    from azure.identity import DefaultAzureCredential

    return BlobArchive.connect(
        settings.archive_container,
        account_url=settings.archive_url,
        credential=DefaultAzureCredential(),
    )


def build_broker(settings: Settings) -> Broker:
    if settings.broker == "alpaca" and settings.alpaca is not None:
        # Imported here: alpaca-py brings pandas, a cost only its users pay.
        from adapters.alpaca_broker import AlpacaBroker

        alpaca = settings.alpaca
        return AlpacaBroker.connect(
            alpaca.key_id, alpaca.secret, paper=not alpaca.live, url_override=alpaca.url_override
        )
    return SimulatedBroker(settings.simulator)


def build(settings: Settings) -> Services:
    """One set of adapters per process (one Cosmos client, one SQLite connection, one
    broker client)."""
    return Services(
        settings=settings,
        store=build_store(settings),
        broker=build_broker(settings),
        alerts=build_notifier(settings.alerts),
    )


_lock = threading.Lock()
_current: Services | None = None


def services() -> Services:
    global _current
    with _lock:
        if _current is None:
            _current = build(Settings.from_environ(os.environ))
        return _current


def use_services(replacement: Services) -> None:
    global _current
    with _lock:
        _current = replacement


def reset() -> None:
    global _current
    with _lock:
        if _current is not None:
            _current.store.close()
            _current.alerts.close(timeout=2.0)
        _current = None
