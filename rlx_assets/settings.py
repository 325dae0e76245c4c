"""Configuration: the only reader of the environment (and `.env`), checked once, with
one-sentence errors (`config_values.py` parses the values).

Non-secret values are read into `Settings` when the definitions load. Secrets are never
read there: the resources receive them through Dagster's `EnvVar` when a run starts, and
`secret_values` reads them when a command or a sensor tick needs them (to redact them).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rlx_assets.config_values import (
    ConfigError,
    Source,
    date,
    instrument_lines,
    number,
    per_table,
    scoped,
    url,
)
from rlx_assets.lib.incidents import DIGEST_AFTER
from rlx_assets.lib.instruments import Instrument, InstrumentError, parse_instruments
from rlx_assets.lib.lake import Lake, LakeError
from rlx_assets.lib.tables import TABLES, TimeRules
from rlx_assets.lib.vendor import CREDENTIAL_NAMES, credential_variables

__all__ = ["AlertSettings", "ConfigError", "Settings", "Source", "environment", "secret_values"]

DEFAULT_SOURCE = "./demo_lake"
DEFAULT_LAKE_ROOT = "./data"
DEFAULT_INSTRUMENTS = "BINANCE:BTC-USDT"
DEFAULT_START = "2024-01-01"
DEFAULT_DAYS_PER_RUN = 15  # days a backfill run covers; see the README's "Backfills"
AUTOMATION_INTERVAL_SECONDS = 30
ALERT_INTERVAL_SECONDS = 30
ALERT_MAX_AGE_HOURS = 24.0  # older events are not posted; 0: no limit
NEW_DAYS_INTERVAL_SECONDS = 3600
NEW_DAYS_MAX_PER_TICK = 50
SLACK_SECRETS = ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN")


def environment() -> Mapping[str, str]:
    """The process environment after `.env` (in the working directory) is honoured."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)
    return os.environ


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret variables that are set (Slack and vendor credentials), read
    now, for redaction only: never logged, never stored."""
    env = environment() if env is None else env
    names = [*SLACK_SECRETS, *(n for names in CREDENTIAL_NAMES.values() for n in names)]
    return [env[name] for name in names if env.get(name)]


def credential_values(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Vendor credentials read now (for a command run by hand; runs bind `EnvVar`s)."""
    env = environment() if env is None else env
    return {field: env[name] for field, name in credential_variables(env).items()}


@dataclass(frozen=True)
class AlertSettings:
    """Where Slack alerts go and how the `slack_alerts` sensor paces itself. Secrets are
    named (which variable is set), not read."""

    interval_seconds: int = ALERT_INTERVAL_SECONDS
    max_age_hours: float = ALERT_MAX_AGE_HOURS
    digest_after: int = DIGEST_AFTER
    webserver_url: str | None = None
    webhook_set: bool = False
    bot_token_set: bool = False
    channel: str | None = None
    api_base_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlertSettings:
        def value(name: str) -> str | None:
            return env.get(name, "").strip() or None

        if value("SLACK_BOT_TOKEN") and not value("SLACK_WEBHOOK_URL") \
                and not value("SLACK_CHANNEL"):
            raise ConfigError("SLACK_BOT_TOKEN is set but SLACK_CHANNEL is not; set "
                              "SLACK_CHANNEL to the channel alerts go to (e.g. "
                              "#market-data-alerts).")
        return cls(
            interval_seconds=number(env, "RLX_ALERT_INTERVAL_SECONDS", ALERT_INTERVAL_SECONDS,
                                    integer=True, minimum=1),
            max_age_hours=number(env, "RLX_ALERT_MAX_AGE_HOURS", ALERT_MAX_AGE_HOURS),
            digest_after=number(env, "RLX_ALERT_DIGEST_AFTER", DIGEST_AFTER, integer=True),
            webserver_url=url(env, "DAGSTER_WEBSERVER_URL", "the address people open the "
                              "Dagster UI at, e.g. http://dagster:3000"),
            webhook_set=bool(value("SLACK_WEBHOOK_URL")),
            bot_token_set=bool(value("SLACK_BOT_TOKEN")),
            channel=value("SLACK_CHANNEL"),
            api_base_url=value("SLACK_API_BASE_URL"),
        )


def _instruments(env: Mapping[str, str]) -> list[Instrument]:
    """RLX_INSTRUMENTS, or the file RLX_INSTRUMENTS_FILE names (not both)."""
    text = env.get("RLX_INSTRUMENTS", "").strip()
    path = env.get("RLX_INSTRUMENTS_FILE", "").strip()
    if text and path:
        raise ConfigError("RLX_INSTRUMENTS and RLX_INSTRUMENTS_FILE are both set; set only one "
                          "of them (the file suits many instruments).")
    if not path:
        try:
            return parse_instruments(text or DEFAULT_INSTRUMENTS)
        except InstrumentError as exc:
            raise ConfigError(str(exc)) from None
    try:
        content = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"RLX_INSTRUMENTS_FILE={path} cannot be read ({reason}); point it "
                          "at a text file with one EXCHANGE:SYMBOL per line.") from None
    return instrument_lines(content, path)


def _path(env: Mapping[str, str], name: str) -> Path | None:
    text = env.get(name, "").strip()
    return Path(text).expanduser().absolute() if text else None


@dataclass(frozen=True)
class Settings:
    source: Source
    lake_root: str
    instruments: list[Instrument]
    start_date: dt.date
    end_date: dt.date | None
    max_gaps: dict[tuple[str, str], float] = field(default_factory=dict)
    boundaries: dict[tuple[str, str], float] = field(default_factory=dict)
    step_retries: int = 3
    retry_delay_seconds: float = 10.0
    automation_interval_seconds: int = AUTOMATION_INTERVAL_SECONDS
    backfill_days_per_run: int = DEFAULT_DAYS_PER_RUN
    scratch_dir: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "rlx_assets_scratch")
    catalog_path: Path | None = None
    lake_endpoint_url: str | None = None
    new_days_interval_seconds: int = NEW_DAYS_INTERVAL_SECONDS
    new_days_max_per_tick: int = NEW_DAYS_MAX_PER_TICK
    alerts: AlertSettings = field(default_factory=AlertSettings)
    # vendor credential field -> the variable that holds it (its value is not read here)
    credential_variables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = environment() if env is None else env
        source = Source.parse(env.get("CRYPTO_LAKE_SOURCE", "").strip() or DEFAULT_SOURCE)
        instruments = _instruments(env)
        start = date(env, "RLX_START_DATE", DEFAULT_START)
        end = date(env, "RLX_END_DATE", None)
        if end is not None and end < start:
            raise ConfigError(f"RLX_END_DATE={end} is before RLX_START_DATE={start}; the window "
                              "must end on or after its start.")
        lake_root = env.get("RLX_LAKE_ROOT", "").strip() or DEFAULT_LAKE_ROOT
        try:
            Lake.at(lake_root)  # checks the form only: nothing is touched
        except LakeError as exc:
            raise ConfigError(str(exc)) from None
        scratch = _path(env, "RLX_SCRATCH_DIR")
        return cls(
            source, lake_root, instruments, start, end,
            per_table(env, "RLX_MAX_GAP_SECONDS", "book=120"),
            per_table(env, "RLX_DAY_BOUNDARY_SECONDS", "trades=2", allow_zero=True),
            step_retries=number(env, "RLX_STEP_RETRIES", 3, integer=True),
            retry_delay_seconds=number(env, "RLX_RETRY_DELAY_SECONDS", 10.0),
            automation_interval_seconds=number(
                env, "RLX_AUTOMATION_INTERVAL_SECONDS", AUTOMATION_INTERVAL_SECONDS, integer=True),
            backfill_days_per_run=number(env, "RLX_BACKFILL_DAYS_PER_RUN", DEFAULT_DAYS_PER_RUN,
                                         integer=True, minimum=1),
            **({"scratch_dir": scratch} if scratch else {}),
            catalog_path=_path(env, "RLX_CATALOG_PATH"),
            lake_endpoint_url=(env.get("RLX_LAKE_ENDPOINT_URL", "").strip()
                               or env.get("AWS_ENDPOINT_URL", "").strip() or None),
            new_days_interval_seconds=number(
                env, "RLX_NEW_DAYS_INTERVAL_SECONDS", NEW_DAYS_INTERVAL_SECONDS, integer=True,
                minimum=1),
            new_days_max_per_tick=number(env, "RLX_NEW_DAYS_MAX_PER_TICK", NEW_DAYS_MAX_PER_TICK,
                                         integer=True, minimum=1),
            alerts=AlertSettings.from_env(env),
            credential_variables=credential_variables(env),
        )

    def lake(self) -> Lake:
        """Our lake (RLX_LAKE_ROOT) with its work directory, endpoint and catalog file."""
        return Lake.at(self.lake_root, self.scratch_dir, self.lake_endpoint_url,
                       self.catalog_path)

    def max_gap_seconds(self, instrument: Instrument, table: str) -> float:
        return scoped(self.max_gaps, instrument, table, TABLES[table].default_max_gap_seconds)

    def time_rules(self, instrument: Instrument, table: str) -> TimeRules:
        """The hole threshold and the day-boundary tolerance of (instrument, table)."""
        return TimeRules(self.max_gap_seconds(instrument, table),
                         scoped(self.boundaries, instrument, table,
                                TABLES[table].default_boundary_seconds))

    def window_end(self, today: dt.date | None = None) -> dt.date:
        """Last day of the window: RLX_END_DATE, else the last complete UTC day."""
        today = today or dt.datetime.now(dt.UTC).date()
        return self.end_date or today - dt.timedelta(days=1)
