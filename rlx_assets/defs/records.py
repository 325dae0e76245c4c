"""What the Dagster instance recorded per partition: latest materialisations and checks.

One reader for the certificate, the inventory, the new-days sensor, `rlx-assets status`
and the table assets' look at earlier days.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckPartitionInfo


@dataclass(frozen=True)
class Materialized:
    storage_id: int
    metadata: dict[str, object]  # plain values (`MetadataValue.value`)


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, Materialized]:
    """The latest materialisation of each of `partitions` that has one (all pages read)."""
    latest: dict[str, Materialized] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(partitions)),
            limit=1000, cursor=cursor,
        )
        for record in page.records:  # newest first
            event = record.asset_materialization
            if event is not None and event.partition and event.partition not in latest:
                latest[event.partition] = Materialized(
                    record.storage_id, {k: v.value for k, v in event.metadata.items()})
        if not page.has_more:
            return latest
        cursor = page.cursor


def check_infos(
    instance: dg.DagsterInstance, key: dg.AssetKey, checks: Sequence[str],
    partitions: Sequence[str],
) -> dict[str, dict[str, AssetCheckPartitionInfo]]:
    """{partition: {check: the latest evaluation's info}} for the asset's `checks`."""
    out: dict[str, dict[str, AssetCheckPartitionInfo]] = {}
    for info in instance.event_log_storage.get_asset_check_partition_info(
            [dg.AssetCheckKey(key, name) for name in checks], partition_keys=list(partitions)):
        out.setdefault(info.partition_key, {})[info.check_key.name] = info
    return out
