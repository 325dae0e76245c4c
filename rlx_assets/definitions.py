"""The code location: assembles what `rlx_assets.defs` builds from the settings."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from rlx_assets.defs.acceptances import build_accept_job, build_acceptance_sensor
from rlx_assets.defs.alerts import build_alert_sensors, slack_resource
from rlx_assets.defs.assets import build_table_assets
from rlx_assets.defs.catalog import build_catalog_asset
from rlx_assets.defs.certificate import build_automation_sensor, build_certificate_assets
from rlx_assets.defs.consistency import build_consistency_asset
from rlx_assets.defs.inventory import build_inventory_asset
from rlx_assets.defs.new_days import build_new_days_sensor
from rlx_assets.defs.partitions import daily_partitions
from rlx_assets.defs.resources import CryptoLakeResource, LakeResource, credential_env_vars
from rlx_assets.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings)
    return dg.Definitions(
        assets=[
            *build_table_assets(settings, partitions),
            *build_certificate_assets(settings),
            *(build_consistency_asset(i, settings, partitions) for i in settings.instruments),
            build_catalog_asset(settings),
            build_inventory_asset(settings),
        ],
        jobs=[build_accept_job(settings)],
        sensors=[build_automation_sensor(settings), *build_alert_sensors(settings),
                 build_new_days_sensor(settings), build_acceptance_sensor(settings)],
        # One process per run: a partition run is one step, and a second Python process per
        # step would double the start-up cost of every partition in a backfill.
        executor=dg.in_process_executor,
        resources={
            "crypto_lake": CryptoLakeResource(source=str(settings.source),
                                              **credential_env_vars(settings)),
            "lake": LakeResource.from_settings(settings),
            "duckdb": DuckDBResource(database=str(settings.lake().catalog_path)),
            "slack": slack_resource(settings),
        },
    )


defs = build_definitions(Settings.from_env())
