"""Instruments (`EXCHANGE:SYMBOL`) and the names derived from them, including the hive
layout `<table>/exchange=<EX>/symbol=<SYM>/dt=<day>/` shared by the vendor and our lake."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_EXCHANGE = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")
_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}(-[A-Z0-9]{1,20}){0,3}$")


class InstrumentError(ValueError):
    """An instrument string that is not `EXCHANGE:SYMBOL`."""


@dataclass(frozen=True, order=True)
class Instrument:
    exchange: str
    symbol: str

    @classmethod
    def parse(cls, text: str, where: str = "RLX_INSTRUMENTS entry") -> Instrument:
        """Parse `BINANCE:BTC-USDT`; reject anything that could escape a path or is malformed.
        `where` begins the error sentence (the variable, or a file and line)."""
        exchange, sep, symbol = text.strip().partition(":")
        if not sep or not _EXCHANGE.match(exchange) or not _SYMBOL.match(symbol):
            raise InstrumentError(
                f"{where} {text!r} is not EXCHANGE:SYMBOL in upper case "
                "(letters, digits, '_' in the exchange, '-' between symbol parts), "
                "for example BINANCE:BTC-USDT."
            )
        return cls(exchange, symbol)

    @property
    def key_prefix(self) -> list[str]:
        """Asset key prefix: lower case with '-' turned into '_' (binance/btc_usdt)."""
        return [self.exchange.lower(), self.symbol.lower().replace("-", "_")]

    @property
    def slug(self) -> str:
        return "_".join(self.key_prefix)

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol}"


def parse_instruments(text: str) -> list[Instrument]:
    """Parse a comma-separated list, keeping order and dropping repeats."""
    items = [part for part in (p.strip() for p in text.split(",")) if part]
    if not items:
        raise InstrumentError(
            "RLX_INSTRUMENTS is empty; set it to a comma-separated list such as BINANCE:BTC-USDT."
        )
    return list(dict.fromkeys(Instrument.parse(item) for item in items))


def listed_instrument(path: str) -> Instrument | None:
    """The instrument of a vendor key, folder or path (`.../exchange=EX/symbol=SYM/...`) as
    the vendor spells it (not validated: a listing may hold names we would reject), if any."""
    parts = dict(p.split("=", 1) for p in path.split("/") if "=" in p)
    if parts.get("exchange") and parts.get("symbol"):
        return Instrument(parts["exchange"], parts["symbol"])
    return None


def instrument_prefix(table: str, instrument: Instrument) -> str:
    return f"{table}/exchange={instrument.exchange}/symbol={instrument.symbol}/"


def day_prefix(table: str, instrument: Instrument, day: dt.date) -> str:
    return f"{instrument_prefix(table, instrument)}dt={day.isoformat()}/"
