"""Issue 15, part 2: many instruments are easy to configure. RLX_INSTRUMENTS_FILE, `rlx-assets
instruments` (the vendor's listing: local directory, s3:// folders and lakeapi's contents.json.gz
on moto's S3 server), the doctor's closest names, and the definitions of 20 instruments."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import boto3
import dagster as dg
import pytest

from rlx_assets.cli import main
from rlx_assets.definitions import build_definitions
from rlx_assets.defs.inventory import crypto_lake_from_env
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.vendor_s3 import S3Source
from rlx_assets.settings import ConfigError, Settings
from rlx_assets_tests.conftest import settings_for
from rlx_assets_tests.stand_ins import FAKE_KEY_ID, FAKE_SECRET, VendorBucket

DAY = dt.date(2024, 1, 2)
ROWS = 50
# What the vendor has, per table, in these tests.
VENDOR = {
    "trades": ["BINANCE:BTC-USDT", "BINANCE:BTC-USDC", "BINANCE:ETH-USDT", "KRAKEN:XBT-USD"],
    "book": ["BINANCE:BTC-USDT", "KRAKEN:XBT-USD"],
    "book_delta_v2": ["BINANCE:BTC-USDT"],
}
SOURCES = {"lakeapi": "lakeapi", "s3": "s3://qnt.data/market-data/cryptofeed"}


def parsed(text: str) -> Instrument:
    return Instrument.parse(text)


def instruments_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "instruments.txt"
    path.write_text(text)
    return path


# --- RLX_INSTRUMENTS_FILE ------------------------------------------------------------------

def test_instruments_file_with_comments_blank_lines_and_repeats(tmp_path) -> None:
    path = instruments_file(tmp_path, "# our universe\n\nBINANCE:BTC-USDT\n  KRAKEN:XBT-USD  # fiat"
                                      "\n\nBINANCE:BTC-USDT\n# BINANCE:ETH-USDT (not yet)\n")
    settings = Settings.from_env({"RLX_INSTRUMENTS_FILE": str(path)})
    assert settings.instruments == [parsed("BINANCE:BTC-USDT"), parsed("KRAKEN:XBT-USD")]


@pytest.mark.parametrize(("content", "env", "sentence"), [
    ("BINANCE:BTC-USDT\n", {"RLX_INSTRUMENTS": "BINANCE:BTC-USDT"},
     "RLX_INSTRUMENTS and RLX_INSTRUMENTS_FILE are both set; set only one of them"),
    ("# header\nBINANCE:BTC-USDT\n\nbinance:eth-usdt\n", {},
     "RLX_INSTRUMENTS_FILE={path}, line 4: 'binance:eth-usdt' is not EXCHANGE:SYMBOL"),
    ("BINANCE:BTC-USDT, KRAKEN:XBT-USD\n", {},
     "RLX_INSTRUMENTS_FILE={path}, line 1: 'BINANCE:BTC-USDT, KRAKEN:XBT-USD' is not"),
    ("# nothing yet\n\n", {}, "RLX_INSTRUMENTS_FILE={path} lists no instruments"),
    (None, {}, "RLX_INSTRUMENTS_FILE={path} cannot be read (No such file or directory)"),
    (b"\xff\xfe\x00binary", {}, "RLX_INSTRUMENTS_FILE={path} cannot be read"),
])
def test_a_bad_instruments_file_is_one_sentence_naming_file_and_line(tmp_path, content, env,
                                                                      sentence) -> None:
    path = tmp_path / "instruments.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"RLX_INSTRUMENTS_FILE": str(path), **env})
    message = str(raised.value)
    assert message.startswith(sentence.format(path=path)), message
    assert message.count(". ") == 0 and message.endswith("."), message


# --- what the vendor has -------------------------------------------------------------------

def publish_vendor(bucket: VendorBucket) -> None:
    for table, names in VENDOR.items():
        for name in names:
            bucket.publish(table, DAY, parsed(name), rows=ROWS, listing=False)
    bucket.refresh_listing()


def expected(exchange: str | None = None) -> dict[str, set[Instrument]]:
    return {table: {parsed(n) for n in names if exchange in (None, n.split(":")[0])}
            for table, names in VENDOR.items()}


def test_every_source_lists_the_same_instruments(vendor_bucket: VendorBucket) -> None:
    publish_vendor(vendor_bucket)
    sources = {name: crypto_lake_from_env(settings_for({"CRYPTO_LAKE_SOURCE": where})).vendor()
               for name, where in {**SOURCES, "local": str(vendor_bucket.staging)}.items()}
    for name, source in sources.items():
        for exchange in (None, "KRAKEN", "BITMEX"):
            listed = {t: source.list_instruments(t, exchange) for t in VENDOR}
            assert listed == expected(exchange), (name, exchange)


def test_s3_lists_folders_not_objects(vendor_bucket: VendorBucket) -> None:
    """One delimited listing per table plus one per exchange: no request walks the objects."""
    publish_vendor(vendor_bucket)
    for extra in (3, 4, 5):  # more days do not mean more requests
        vendor_bucket.publish("trades", dt.date(2024, 1, extra), rows=ROWS, listing=False)
    calls: list[dict] = []

    def session() -> boto3.Session:
        made = boto3.Session(aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET,
                             region_name="eu-west-1")
        made.events.register("provide-client-params.s3.ListObjectsV2",
                             lambda params, **_: calls.append(dict(params)))
        return made

    source = S3Source("qnt.data", "market-data/cryptofeed", session)
    assert source.list_instruments("trades") == expected()["trades"]
    assert len(calls) == 3 and all(c.get("Delimiter") == "/" for c in calls), calls  # root, 2 ex
    calls.clear()
    assert source.list_instruments("book", "BINANCE") == expected("BINANCE")["book"]
    assert [c["Prefix"] for c in calls] == ["market-data/cryptofeed/book/exchange=BINANCE/"]


@pytest.mark.parametrize("source", [*SOURCES, "local"])
def test_instruments_command_marks_the_configured_ones(vendor_bucket: VendorBucket, monkeypatch,
                                                       capsys, source) -> None:
    publish_vendor(vendor_bucket)
    where = SOURCES.get(source, str(vendor_bucket.staging))
    monkeypatch.setenv("CRYPTO_LAKE_SOURCE", where)
    monkeypatch.setenv("RLX_INSTRUMENTS", "KRAKEN:XBT-USD,BINANCE:BTC-USDTT")
    assert main(["instruments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"Vendor instruments at {settings_for({}).source} (trades, book, book_delta_v2): 4; "
        "* = in the configuration",
        "  BINANCE:BTC-USDC  trades",
        "  BINANCE:BTC-USDT  trades, book, book_delta_v2",
        "  BINANCE:ETH-USDT  trades",
        "* KRAKEN:XBT-USD    trades, book",
        "Configured but not at the vendor: BINANCE:BTC-USDTT (`rlx-assets doctor` names the "
        "closest).",
    ]
    assert main(["instruments", "--exchange", "binance", "--table", "book"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["  BINANCE:BTC-USDT  book", lines[-1]]
    assert "(BINANCE book): 1;" in lines[0]
    assert lines[-1].startswith("Configured but not at the vendor: BINANCE:BTC-USDTT (")


def test_instruments_command_reports_a_bad_configuration(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RLX_INSTRUMENTS_FILE", str(tmp_path / "missing.txt"))
    assert main(["instruments"]) == 2
    assert capsys.readouterr().out.startswith("RLX_INSTRUMENTS_FILE=")


# --- the doctor names the closest ----------------------------------------------------------

@pytest.mark.parametrize("source", [*SOURCES, "local"])
def test_doctor_names_the_closest_instruments(vendor_bucket: VendorBucket, tmp_path, monkeypatch,
                                              capsys, source) -> None:
    publish_vendor(vendor_bucket)
    home = tmp_path / "dagster_home"
    home.mkdir()
    for name, value in {"CRYPTO_LAKE_SOURCE": SOURCES.get(source, str(vendor_bucket.staging)),
                        "RLX_INSTRUMENTS": "BINANCE:BTC-USDT,BINANCE:BTC-USDTT,OKX:DOGE-EUR",
                        "RLX_START_DATE": "2024-01-01", "RLX_END_DATE": "2024-01-04",
                        "RLX_LAKE_ROOT": str(tmp_path / "lake"), "DAGSTER_HOME": str(home)
                        }.items():
        monkeypatch.setenv(name, value)
    assert main(["doctor"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.startswith("ok ") for line in lines[:3]), lines
    assert lines[3].startswith(
        "FAIL  Discovery: no vendor files for BINANCE:BTC-USDTT, OKX:DOGE-EUR in trades, book, "
        "book_delta_v2 at "), lines[3]
    assert ("; closest to BINANCE:BTC-USDTT: BINANCE:BTC-USDT, BINANCE:BTC-USDC, "
            "BINANCE:ETH-USDT; closest to OKX:DOGE-EUR: none among the vendor's 4; check "
            "RLX_INSTRUMENTS") in lines[3], lines[3]


# --- the definitions of many instruments ---------------------------------------------------

def test_definitions_of_20_instruments_load_quickly(tmp_path) -> None:
    names = [f"BINANCE:COIN{n:02d}-USDT" for n in range(20)]
    path = instruments_file(tmp_path, "# 20 instruments\n" + "\n".join(names) + "\n")
    started = time.perf_counter()
    defs = build_definitions(settings_for({"RLX_INSTRUMENTS_FILE": str(path)}))
    graph = defs.resolve_asset_graph()
    seconds = time.perf_counter() - started
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    slugs = [parsed(n).slug for n in names]
    prefixes = [n.lower().replace(":", "/").replace("-", "_") for n in names]
    tables = {f"{p}/{t}" for p in prefixes for t in VENDOR}
    certificates = {f"{p}/certificate" for p in prefixes}
    assert len(tables) == 60 and tables <= keys
    assert len(certificates) == 20 and certificates <= keys
    groups = {graph.get(dg.AssetKey.from_user_string(k)).group_name for k in tables | certificates}
    assert groups == set(slugs)
    for prefix, slug in zip(prefixes, slugs, strict=True):
        assert {graph.get(dg.AssetKey.from_user_string(f"{prefix}/{t}")).group_name
                for t in [*VENDOR, "certificate"]} == {slug}
    assert seconds < 5, f"loading the definitions of 20 instruments took {seconds:.1f} s"
