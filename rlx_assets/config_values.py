"""Parsers of configuration values: one error style, a sentence naming the variable.

`settings.py` is the only reader of the environment; these turn its text into values.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rlx_assets.lib.instruments import Instrument, InstrumentError
from rlx_assets.lib.tables import TABLES

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


def date(env: Mapping[str, str], name: str, default: str | None) -> dt.date | None:
    text = env.get(name, "").strip() or default
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a date; use YYYY-MM-DD.") from None


def number(env: Mapping[str, str], name: str, default: float, integer: bool = False,
           minimum: float = 0) -> float:
    """`env[name]` as a finite number >= `minimum` (whole if `integer`), else `default`."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
        # nan and inf would pass `value < minimum` and then crash int() or disable a limit.
        if not math.isfinite(value) or value < minimum or (integer and not value.is_integer()):
            raise ValueError
    except ValueError:
        kind = "whole number" if integer else "number"
        kind = f"a non-negative {kind}" if minimum == 0 else f"a {kind} of at least {minimum:g}"
        raise ConfigError(f"{name}={text!r} is not {kind}.") from None
    return int(value) if integer else value


def url(env: Mapping[str, str], name: str, example: str) -> str | None:
    """`env[name]` as an http(s) URL, or None when unset."""
    text = env.get(name, "").strip() or None
    if text and not text.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={text!r} is not an http(s) URL; use {example}.")
    return text


def per_table(env: Mapping[str, str], variable: str, example: str,
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


def instrument_lines(text: str, path: str) -> list[Instrument]:
    """The instruments of an RLX_INSTRUMENTS_FILE: one `EXCHANGE:SYMBOL` a line, `#` starts a
    comment, blank lines are skipped; order kept, repeats dropped."""
    found: list[Instrument] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        entry = line.partition("#")[0].strip()
        if entry:
            try:
                found.append(Instrument.parse(entry, f"RLX_INSTRUMENTS_FILE={path}, line "
                                                     f"{line_no}:"))
            except InstrumentError as exc:
                raise ConfigError(str(exc)) from None
    if not found:
        raise ConfigError(f"RLX_INSTRUMENTS_FILE={path} lists no instruments; put one "
                          "EXCHANGE:SYMBOL per line in it, such as BINANCE:BTC-USDT.")
    return list(dict.fromkeys(found))


def scoped(values: dict[tuple[str, str], float], instrument: Instrument, table: str,
            default: float) -> float:
    for scope in (str(instrument), "*"):
        if (scope, table) in values:
            return values[(scope, table)]
    return default
