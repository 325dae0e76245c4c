"""Configuration: bad values fail fast naming the variable; defaults; what the definitions
expose."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.definitions import build_definitions
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.demo_data import write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.tables import TABLES
from rlx_assets.settings import DEFAULT_LAKE_ROOT, ConfigError, Settings
from rlx_assets_tests.conftest import materialize_day
from rlx_assets_tests.run_inspection import (
    failure_text,
    materialization_metadata,
    step_attempts,
    zone_files,
)
from rlx_assets_tests.stand_ins import BTC

ETH = Instrument("BINANCE", "ETH-USDT")
REPO = Path(__file__).resolve().parents[1]
CONTRACT_TABLE_KEYS = {"binance/btc_usdt/trades", "binance/btc_usdt/book",
                       "binance/btc_usdt/book_delta_v2"}

BAD_VALUES = [
    # unknown source schemes and sources that name nothing
    ("CRYPTO_LAKE_SOURCE", "ftp://vendor.example/data"),
    ("CRYPTO_LAKE_SOURCE", "gs://bucket/prefix"),
    ("CRYPTO_LAKE_SOURCE", "https://data.crypto-lake.com/market-data"),
    ("CRYPTO_LAKE_SOURCE", "S3://bucket/prefix"),
    ("CRYPTO_LAKE_SOURCE", "s3://"),
    ("CRYPTO_LAKE_SOURCE", "s3:///prefix"),
    ("CRYPTO_LAKE_SOURCE", "file://"),
    # lake roots: only local directories and s3://bucket/prefix
    ("RLX_LAKE_ROOT", "s3://"),
    ("RLX_LAKE_ROOT", "s3:///prefix"),
    ("RLX_LAKE_ROOT", "gs://bucket/lake"),
    ("RLX_BACKFILL_DAYS_PER_RUN", "0"),
    # instruments: path separators, parent directories, spaces, lower case, no colon
    ("RLX_INSTRUMENTS", "BINANCE:BTC/USDT"),
    ("RLX_INSTRUMENTS", "BINANCE:BTC\\USDT"),
    ("RLX_INSTRUMENTS", "BIN/ANCE:BTC-USDT"),
    ("RLX_INSTRUMENTS", "BINANCE:.."),
    ("RLX_INSTRUMENTS", "..:BTC-USDT"),
    ("RLX_INSTRUMENTS", "BINANCE:../../etc/passwd"),
    ("RLX_INSTRUMENTS", "BINANCE:BTC-USDT/.."),
    ("RLX_INSTRUMENTS", "BINANCE:BTC USDT"),
    ("RLX_INSTRUMENTS", "BIN ANCE:BTC-USDT"),
    ("RLX_INSTRUMENTS", "BINANCE:BTC-USDT,KRAKEN :XBT-USD"),
    ("RLX_INSTRUMENTS", "binance:btc-usdt"),
    ("RLX_INSTRUMENTS", "BINANCE:btc-usdt"),
    ("RLX_INSTRUMENTS", "BINANCE:BTC-USDT,junk"),
    ("RLX_INSTRUMENTS", "BINANCEBTC-USDT"),
    ("RLX_INSTRUMENTS", "BINANCE:"),
    ("RLX_INSTRUMENTS", ":BTC-USDT"),
    ("RLX_INSTRUMENTS", "BINANCE:BTC--USDT"),
    ("RLX_INSTRUMENTS", "BINANCE:BTC-USDT:PERP"),
    ("RLX_INSTRUMENTS", "BINANCE:BTC-USDT;rm -rf"),
    ("RLX_INSTRUMENTS", ", ,"),
    # dates
    ("RLX_START_DATE", "2024-13-01"),
    ("RLX_START_DATE", "yesterday"),
    ("RLX_START_DATE", "2024/01/01"),
    ("RLX_END_DATE", "2024-02-30"),
    ("RLX_END_DATE", "01-02-2024"),
    # hole thresholds
    ("RLX_MAX_GAP_SECONDS", "book"),
    ("RLX_MAX_GAP_SECONDS", "book="),
    ("RLX_MAX_GAP_SECONDS", "book=soon"),
    ("RLX_MAX_GAP_SECONDS", "book=0"),
    ("RLX_MAX_GAP_SECONDS", "book=-60"),
    ("RLX_MAX_GAP_SECONDS", "book=nan"),
    ("RLX_MAX_GAP_SECONDS", "book=inf"),
    ("RLX_MAX_GAP_SECONDS", "candles=60"),
    ("RLX_MAX_GAP_SECONDS", "=60"),
    ("RLX_MAX_GAP_SECONDS", "binance:btc-usdt/book=60"),
    ("RLX_MAX_GAP_SECONDS", "BINANCE:../book=60"),
    ("RLX_MAX_GAP_SECONDS", "trades=600,book=x"),
    # retries
    ("RLX_STEP_RETRIES", "-1"),
    ("RLX_STEP_RETRIES", "three"),
    ("RLX_STEP_RETRIES", "nan"),
    ("RLX_STEP_RETRIES", "inf"),
    ("RLX_STEP_RETRIES", "1.5"),
    ("RLX_RETRY_DELAY_SECONDS", "-0.5"),
    ("RLX_RETRY_DELAY_SECONDS", "nan"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_bad_value_fails_fast_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({variable: value})
    message = str(raised.value)
    assert variable in message
    assert "\n" not in message and message.endswith("."), message  # one sentence


def test_end_before_start_names_both_dates() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"RLX_START_DATE": "2024-02-01", "RLX_END_DATE": "2024-01-31"})
    message = str(raised.value)
    assert "RLX_END_DATE" in message and "RLX_START_DATE" in message
    assert "2024-01-31" in message and "2024-02-01" in message


def test_a_bad_value_stops_the_definitions_from_loading() -> None:
    with pytest.raises(ConfigError, match="RLX_INSTRUMENTS"):
        build_definitions(Settings.from_env({"RLX_INSTRUMENTS": "BINANCE:../x"}))


def test_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    assert settings.source.kind == "local"
    assert settings.source.path == tmp_path / "demo_lake"  # the documented demo lake
    assert settings.lake_root == DEFAULT_LAKE_ROOT == "./data"
    assert settings.instruments == [BTC]
    assert settings.start_date == dt.date(2024, 1, 1)
    assert settings.end_date is None
    assert settings.window_end(dt.date(2024, 3, 1)) == dt.date(2024, 2, 29)
    assert {t: settings.max_gap_seconds(BTC, t) for t in TABLES} == {
        t: spec.default_max_gap_seconds for t, spec in TABLES.items()}
    assert settings.step_retries >= 1 and settings.retry_delay_seconds > 0


def test_blank_values_mean_the_default() -> None:
    blank = Settings.from_env({"CRYPTO_LAKE_SOURCE": " ", "RLX_INSTRUMENTS": "",
                               "RLX_START_DATE": "", "RLX_END_DATE": " ", "RLX_LAKE_ROOT": ""})
    assert blank == Settings.from_env({})


@pytest.mark.parametrize(("text", "kind", "bucket", "prefix"), [
    ("lakeapi", "lakeapi", "qnt.data", "market-data/cryptofeed"),
    (" sample ", "sample", "sample.crypto.lake", ""),
    ("s3://mirror/market-data/cryptofeed/", "s3", "mirror", "market-data/cryptofeed"),
    ("s3://mirror", "s3", "mirror", ""),
])
def test_source_kinds(text: str, kind: str, bucket: str, prefix: str) -> None:
    source = Settings.from_env({"CRYPTO_LAKE_SOURCE": text}).source
    assert (source.kind, source.bucket, source.prefix) == (kind, bucket, prefix)
    assert source.needs_credentials == (kind == "lakeapi")


def test_local_sources(tmp_path: Path) -> None:
    for text in (str(tmp_path / "mirror"), f"file://{tmp_path}/mirror", "./mirror"):
        source = Settings.from_env({"CRYPTO_LAKE_SOURCE": text}).source
        assert (source.kind, source.path) == ("local", tmp_path / "mirror")


def test_instruments_keep_order_drop_repeats_and_surrounding_spaces() -> None:
    settings = Settings.from_env({
        "RLX_INSTRUMENTS": " BINANCE:ETH-USDT , BINANCE:BTC-USDT,BINANCE:ETH-USDT,"
                           "BINANCE_FUTURES:BTC-USDT-PERP,"})
    assert [str(i) for i in settings.instruments] == [
        "BINANCE:ETH-USDT", "BINANCE:BTC-USDT", "BINANCE_FUTURES:BTC-USDT-PERP"]
    assert settings.instruments[2].key_prefix == ["binance_futures", "btc_usdt_perp"]


def test_max_gap_override_per_table_and_per_instrument() -> None:
    settings = Settings.from_env({
        "RLX_INSTRUMENTS": "BINANCE:BTC-USDT,BINANCE:ETH-USDT",
        "RLX_MAX_GAP_SECONDS": "book=120, BINANCE:ETH-USDT/book=60,BINANCE:ETH-USDT/trades=1800",
    })
    assert settings.max_gap_seconds(BTC, "book") == 120  # table-wide override
    assert settings.max_gap_seconds(ETH, "book") == 60  # the instrument's own wins
    assert settings.max_gap_seconds(ETH, "trades") == 1800
    assert settings.max_gap_seconds(BTC, "trades") == TABLES["trades"].default_max_gap_seconds
    assert settings.max_gap_seconds(ETH, "book_delta_v2") == \
        TABLES["book_delta_v2"].default_max_gap_seconds
    defs = build_definitions(settings)
    for key, expected in (("binance/eth_usdt/book", 60), ("binance/btc_usdt/book", 120),
                          ("binance/eth_usdt/trades", 1800)):
        asset_key = dg.AssetKey.from_user_string(key)
        metadata = defs.get_assets_def(asset_key).specs_by_key[asset_key].metadata
        assert metadata["max_gap_seconds"] == expected


def test_max_gap_override_decides_temporal_continuity(tmp_path: Path) -> None:
    """A three-hour hole fails the default 15 min threshold and passes a 4 h override."""
    vendor, day = tmp_path / "vendor", dt.date(2024, 1, 2)
    write_day(vendor, "trades", BTC, day, fault=Fault.HOLE)
    env = {"CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(tmp_path / "lake")}
    default = materialize_day(env, "trades", day)
    assert not default.success
    assert zone_files(tmp_path / "lake", "quarantine", "trades", day)
    relaxed = materialize_day({**env, "RLX_MAX_GAP_SECONDS": "trades=14400"}, "trades", day)
    assert relaxed.success
    assert zone_files(tmp_path / "lake", "ready", "trades", day)
    assert not zone_files(tmp_path / "lake", "quarantine", "trades", day)


def test_lakeapi_without_credentials_fails_naming_the_variables(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = materialize_day({"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(lake)},
                             "trades", dt.date(2024, 1, 2))
    assert not result.success
    text = failure_text(result)
    assert "aws_access_key_id" in text and "AWS_ACCESS_KEY_ID" in text, text
    assert "CRYPTO_LAKE_SOURCE=lakeapi" in text
    assert step_attempts(result) == 1  # retrying cannot help: no retry
    assert not (lake / "ready").exists()


def _table_keys(defs: dg.Definitions) -> set[str]:
    graph = defs.resolve_asset_graph()
    return {key.to_user_string() for key in graph.get_all_asset_keys()
            if graph.get(key).is_partitioned and key.path[-1] in TABLES}


def test_definitions_load_with_nothing_set_and_expose_the_contract() -> None:
    defs = build_definitions(Settings.from_env({}))
    dg.Definitions.validate_loadable(defs)
    assert _table_keys(defs) == CONTRACT_TABLE_KEYS
    all_keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "binance/btc_usdt/certificate" in all_keys
    for user_key in CONTRACT_TABLE_KEYS:
        key = dg.AssetKey.from_user_string(user_key)
        assets_def = defs.get_assets_def(key)
        specs = {spec.name: spec for spec in assets_def.check_specs}
        assert set(BLOCKING_CHECKS) <= set(specs)
        assert all(specs[name].blocking for name in BLOCKING_CHECKS)
        partitions = assets_def.partitions_def
        assert isinstance(partitions, dg.DailyPartitionsDefinition)
        assert partitions.timezone == "UTC"
        assert partitions.get_first_partition_key() == "2024-01-01"
        assert partitions.get_partition_keys()[1] == "2024-01-02"


def test_the_module_loads_with_nothing_set_and_honours_dotenv(tmp_path: Path) -> None:
    """In a fresh process: no variables and no .env; then a .env; then a bad value in .env."""
    plain, dotenv, bad = (tmp_path / name for name in ("plain", "dotenv", "bad"))
    for folder in (plain, dotenv, bad):
        folder.mkdir()
    (dotenv / ".env").write_text("RLX_INSTRUMENTS=BINANCE:ETH-USDT\n"
                                 "aws_access_key_id=AKIAFROMDOTENV\n")
    (bad / ".env").write_text("RLX_INSTRUMENTS=binance:eth/usdt\n")
    script = textwrap.dedent(f"""
        import importlib, json, os, sys
        import dagster as dg
        from rlx_assets.settings import ConfigError

        def keys(module):
            dg.Definitions.validate_loadable(module.defs)
            graph = module.defs.resolve_asset_graph()
            return sorted(k.to_user_string() for k in graph.get_all_asset_keys()
                          if graph.get(k).is_partitioned
                          and k.path[-1] in ("trades", "book", "book_delta_v2"))

        out = {{}}
        os.chdir({str(plain)!r})
        import rlx_assets.definitions as module
        out["plain"] = keys(module)
        os.chdir({str(dotenv)!r})
        module = importlib.reload(module)
        out["dotenv"] = keys(module)
        credentials = module.defs.resources["crypto_lake"].aws_access_key_id
        out["credential_from_env_var"] = isinstance(credentials, dg.EnvVar)
        del os.environ["RLX_INSTRUMENTS"]
        os.chdir({str(bad)!r})
        try:
            importlib.reload(module)
        except ConfigError as exc:
            out["bad"] = str(exc)
        json.dump(out, sys.stdout)
    """)
    clean_env = {k: v for k, v in os.environ.items()
                 if not k.startswith(("RLX_", "CRYPTO_LAKE", "aws_", "AWS_ACCESS", "AWS_SECRET"))}
    done = subprocess.run([sys.executable, "-c", script], cwd=plain, capture_output=True,
                          text=True, timeout=120, env={**clean_env, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(out["plain"]) == CONTRACT_TABLE_KEYS
    assert set(out["dotenv"]) == {k.replace("btc_usdt", "eth_usdt") for k in CONTRACT_TABLE_KEYS}
    assert out["credential_from_env_var"] is True  # read at run time, not at load time
    assert "RLX_INSTRUMENTS" in out["bad"] and "binance:eth/usdt" in out["bad"]


def test_two_instruments_make_six_table_assets() -> None:
    defs = build_definitions(Settings.from_env(
        {"RLX_INSTRUMENTS": "BINANCE:BTC-USDT,BINANCE:ETH-USDT"}))
    expected = CONTRACT_TABLE_KEYS | {k.replace("btc_usdt", "eth_usdt")
                                      for k in CONTRACT_TABLE_KEYS}
    assert _table_keys(defs) == expected and len(expected) == 6
    for user_key in expected:
        checks = {s.name for s in defs.get_assets_def(
            dg.AssetKey.from_user_string(user_key)).check_specs}
        assert set(BLOCKING_CHECKS) <= checks


def test_the_window_bounds_the_partitions() -> None:
    defs = build_definitions(Settings.from_env(
        {"RLX_START_DATE": "2024-03-01", "RLX_END_DATE": "2024-03-05"}))
    partitions = defs.get_assets_def(
        dg.AssetKey.from_user_string("binance/btc_usdt/trades")).partitions_def
    assert partitions.get_partition_keys() == [f"2024-03-0{d}" for d in range(1, 6)]


def test_defaults_reach_a_materialisation(tmp_path: Path) -> None:
    """A demo-lake day in the default places materialises with no variable set at all."""
    day = dt.date(2024, 1, 2)
    write_day(tmp_path / "demo_lake", "book_delta_v2", BTC, day)
    defs = build_definitions(Settings.from_env({}))
    key = dg.AssetKey.from_user_string("binance/btc_usdt/book_delta_v2")
    result = dg.materialize([defs.get_assets_def(key)], partition_key=day.isoformat(),
                            resources=defs.resources, instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    assert result.success, failure_text(result)
    assert zone_files(tmp_path / "data", "ready", "book_delta_v2", day)
    assert materialization_metadata(result)["dagster/row_count"] > 0
