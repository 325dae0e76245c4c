"""The code location: assembles what `rlx_assets.defs` builds from the settings."""

from __future__ import annotations

import dagster as dg

from dagster_duckdb import DuckDBResource

from rlx_assets.defs.assets import build_table_assets
from rlx_assets.defs.catalog import build_catalog_asset
from rlx_assets.defs.certificate import build_automation_sensor, build_certificate_assets
from rlx_assets.defs.partitions import daily_partitions
from rlx_assets.defs.resources import CryptoLakeResource, LakeResource, credential_env_vars
from rlx_assets.lib.lake import Lake
from rlx_assets.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings)
    return dg.Definitions(
        assets=[
            *build_table_assets(settings, partitions),
            *build_certificate_assets(settings),
            build_catalog_asset(settings),
        ],
        sensors=[build_automation_sensor(settings)],
        resources={
            "crypto_lake": CryptoLakeResource(source=str(settings.source),
                                              **credential_env_vars()),
            "lake": LakeResource(root=settings.lake_root),
            "duckdb": DuckDBResource(database=str(Lake.at(settings.lake_root).catalog_path)),
        },
    )


defs = build_definitions(Settings.from_env())
