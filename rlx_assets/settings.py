"""Configuration from the environment (and `.env`), checked once, with one-sentence errors.

Only non-secret values are read here. Credentials are never read at import time: the
resources receive them through Dagster's `EnvVar` when a run starts.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rlx_assets.lib.continuity import TimeRules
from rlx_assets.lib.instruments import Instrument, InstrumentError, parse_instruments
from rlx_assets.lib.lake import Lake, LakeError
from rlx_assets.lib.tables import TABLES

DEFAULT_SOURCE = "./demo_lake"
DEFAULT_LAKE_ROOT = "./data"
DEFAULT_INSTRUMENTS = "BINANCE:BTC-USDT"
DEFAULT_START = "2024-01-01"
DEFAULT_DAYS_PER_RUN = 15  # days a backfill run covers; see the README's "Backfills"
SOURCE_KINDS = ("lakeapi", "sample", "s3://bucket/prefix", "a local directory or file:// URL")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the variable."""


@dataclass(frozen=True)
class Source:
    kind: str  # "lakeapi" | "sample" | "s3" | "local"
    bucket: str = ""
    prefix: str = ""
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> Source:
        value = text.strip()
        if value == "lakeapi":
            return cls("lakeapi", "qnt.data", "market-data/cryptofeed")
        if value == "sample":
            return cls("sample", "sample.crypto.lake", "")
        if value.startswith("s3://"):
            bucket, _, prefix = value[5:].partition("/")
            if not bucket:
                raise ConfigError(f"CRYPTO_LAKE_SOURCE={value!r} names no bucket; use "
                                  "s3://bucket/prefix.")
            return cls("s3", bucket, prefix.strip("/"))
        if value.startswith("file://"):
            value = value[7:]
        if "://" in value or not value:
            raise ConfigError(
                f"CRYPTO_LAKE_SOURCE={text!r} is not a known source; use one of "
                f"{', '.join(SOURCE_KINDS)}."
            )
        return cls("local", path=Path(value).expanduser().absolute())

    @property
    def needs_credentials(self) -> bool:
        return self.kind == "lakeapi"

    def __str__(self) -> str:
        if self.kind == "local":
            return str(self.path)
        return self.kind if self.kind in ("lakeapi", "sample") else \
            f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def _date(env: Mapping[str, str], name: str, default: str | None) -> dt.date | None:
    text = env.get(name, "").strip() or default
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a date; use YYYY-MM-DD.") from None


def _number(env: Mapping[str, str], name: str, default: float, integer: bool = False) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
        # nan and inf would pass `value < 0` and then crash int() or disable a limit.
        if not math.isfinite(value) or value < 0 or (integer and not value.is_integer()):
            raise ValueError
    except ValueError:
        kind = "a non-negative whole number" if integer else "a non-negative number"
        raise ConfigError(f"{name}={text!r} is not {kind}.") from None
    return value


def _days_per_run(env: Mapping[str, str]) -> int:
    days = int(_number(env, "RLX_BACKFILL_DAYS_PER_RUN", DEFAULT_DAYS_PER_RUN, integer=True))
    if days < 1:
        raise ConfigError(f"RLX_BACKFILL_DAYS_PER_RUN={days} must be at least 1 (one day per "
                          "backfill run).")
    return days


def _per_table(env: Mapping[str, str], variable: str, example: str,
               allow_zero: bool = False) -> dict[tuple[str, str], float]:
    """`book=120,BINANCE:ETH-USDT/trades=1800` -> {(instrument or '*', table): seconds}."""
    values: dict[tuple[str, str], float] = {}
    for item in filter(None, (p.strip() for p in env.get(variable, "").split(","))):
        target, _, seconds = item.partition("=")
        scope, _, table = target.rpartition("/")
        try:
            value = float(seconds)
            if table not in TABLES or not math.isfinite(value) or value < 0 or \
                    (value == 0 and not allow_zero):
                raise ValueError
            instrument = str(Instrument.parse(scope)) if scope else "*"
        except (ValueError, InstrumentError):
            kind = "non-negative" if allow_zero else "positive"
            raise ConfigError(
                f"{variable} entry {item!r} is not [EXCHANGE:SYMBOL/]TABLE=SECONDS with a "
                f"table among {sorted(TABLES)} and {kind} seconds, e.g. {example}."
            ) from None
        values[(instrument, table)] = value
    return values


def _scoped(values: dict[tuple[str, str], float], instrument: Instrument, table: str,
            default: float) -> float:
    for scope in (str(instrument), "*"):
        if (scope, table) in values:
            return values[(scope, table)]
    return default


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
    automation_interval_seconds: int = 30
    backfill_days_per_run: int = DEFAULT_DAYS_PER_RUN

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        if env is None:
            from dotenv import load_dotenv

            load_dotenv(Path.cwd() / ".env", override=False)
            env = os.environ
        source = Source.parse(env.get("CRYPTO_LAKE_SOURCE", "").strip() or DEFAULT_SOURCE)
        try:
            instruments = parse_instruments(env.get("RLX_INSTRUMENTS", "") or DEFAULT_INSTRUMENTS)
        except InstrumentError as exc:
            raise ConfigError(str(exc)) from None
        start = _date(env, "RLX_START_DATE", DEFAULT_START)
        end = _date(env, "RLX_END_DATE", None)
        if end is not None and end < start:
            raise ConfigError(f"RLX_END_DATE={end} is before RLX_START_DATE={start}; the window "
                              "must end on or after its start.")
        lake_root = env.get("RLX_LAKE_ROOT", "").strip() or DEFAULT_LAKE_ROOT
        try:
            Lake.at(lake_root)  # checks the form only: nothing is touched
        except LakeError as exc:
            raise ConfigError(str(exc)) from None
        return cls(source, lake_root, instruments, start, end,
                   _per_table(env, "RLX_MAX_GAP_SECONDS", "book=120"),
                   _per_table(env, "RLX_DAY_BOUNDARY_SECONDS", "trades=2", allow_zero=True),
                   step_retries=int(_number(env, "RLX_STEP_RETRIES", 3, integer=True)),
                   retry_delay_seconds=_number(env, "RLX_RETRY_DELAY_SECONDS", 10.0),
                   automation_interval_seconds=int(
                       _number(env, "RLX_AUTOMATION_INTERVAL_SECONDS", 30, integer=True)),
                   backfill_days_per_run=_days_per_run(env))

    def max_gap_seconds(self, instrument: Instrument, table: str) -> float:
        return _scoped(self.max_gaps, instrument, table,
                       TABLES[table].default_max_gap_seconds)

    def time_rules(self, instrument: Instrument, table: str) -> TimeRules:
        """The hole threshold and the day-boundary tolerance of (instrument, table)."""
        return TimeRules(self.max_gap_seconds(instrument, table),
                         _scoped(self.boundaries, instrument, table,
                                 TABLES[table].default_boundary_seconds))

    def window_end(self, today: dt.date | None = None) -> dt.date:
        """Last day of the window: RLX_END_DATE, else the last complete UTC day."""
        today = today or dt.datetime.now(dt.UTC).date()
        return self.end_date or today - dt.timedelta(days=1)
