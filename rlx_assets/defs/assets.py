"""Table assets: one per (instrument, table), daily partitions, checks from the same pass."""


import datetime as dt
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from rlx_assets.defs.records import latest_materializations
from rlx_assets.defs.resources import CryptoLakeResource, LakeResource
from rlx_assets.lib.checks import (
    BLOCKING_CHECKS,
    CHECK_DESCRIPTIONS,
    TRAILING_DAYS,
    WARNING_CHECKS,
)
from rlx_assets.lib.ingest import PartitionResult, ingest_partition
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.lake import LakeError
from rlx_assets.lib.scan import UnreadableVendorFile, format_ns
from rlx_assets.lib.tables import TableSpec
from rlx_assets.lib.vendor import VendorError
from rlx_assets.settings import Settings

POOL = "crypto_lake"


def table_key(instrument: Instrument, table: str) -> dg.AssetKey:
    return dg.AssetKey([*instrument.key_prefix, table])


@contextmanager
def vendor_failures() -> Iterator[None]:
    """Turn known failures into `dg.Failure`s: one sentence, retried only where it helps."""
    try:
        yield
    except (VendorError, UnreadableVendorFile) as exc:
        retriable = isinstance(exc, UnreadableVendorFile) or exc.retriable
        text = str(exc)
        if isinstance(exc, UnreadableVendorFile):
            text = (f"The vendor file is unreadable ({exc}); its raw copy was dropped so that "
                    "a retry downloads it again.")
        raise dg.Failure(description=text, allow_retries=retriable) from None
    except LakeError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None


def earlier_days(context: dg.AssetExecutionContext, day: dt.date) -> tuple[int | None, list[int]]:
    """From the metadata of the days before (no re-read of their data): the last origin_time
    (ns) of the day before, and the row counts of the ready days among the trailing ones."""
    wanted = [(day - dt.timedelta(days=i)).isoformat() for i in range(1, TRAILING_DAYS + 1)]
    latest = {p: m.metadata for p, m in
              latest_materializations(context.instance, context.asset_key, wanted).items()}
    previous = latest.get(wanted[0], {}).get("last_origin_time_ns")
    rows = [int(m["dagster/row_count"]) for m in latest.values()
            if m.get("zone") == "ready" and "dagster/row_count" in m]
    return (int(previous) if previous is not None else None), rows


def partition_metadata(result: PartitionResult) -> dict[str, object]:
    scan = result.scan
    return {
        "dagster/row_count": scan.rows,
        "first_origin_time": format_ns(scan.first_time),
        "last_origin_time": format_ns(scan.last_time),
        "first_origin_time_ns": scan.first_time,
        "last_origin_time_ns": scan.last_time,
        "zone": "ready" if result.passed else "quarantine",
        "path": dg.MetadataValue.path(str(result.path)),
        "sha256": result.sha256,
        "bytes": result.size,
        "vendor_object": result.vendor.location,
        "vendor_bytes": result.raw.size,
        "vendor_sha256": result.raw.sha256,
        "vendor_version": result.vendor.version,
        "raw_reused": result.raw.reused,
        "download_attempts": result.raw.attempts,
        "download_mb_per_s": round(result.raw.megabytes_per_second, 2),
        "seconds": round(result.seconds, 3),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, dtype) for name, dtype in scan.columns.items()]
        ),
    }


def check_results(result: PartitionResult) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name=o.name,
            passed=o.passed,
            severity=dg.AssetCheckSeverity.ERROR if o.blocking else dg.AssetCheckSeverity.WARN,
            description=o.description,
            metadata=o.metadata,
        )
        for o in result.outcomes
    ]


class TableConfig(dg.Config):
    from_raw: bool = Field(
        default=False,
        description="Re-run the pass and the checks on the raw copy already in the lake, "
                    "without contacting the vendor (after changing thresholds, say).",
    )


def build_table_asset(
    instrument: Instrument,
    spec: TableSpec,
    partitions: dg.PartitionsDefinition,
    settings: Settings,
) -> dg.AssetsDefinition:
    key = table_key(instrument, spec.name)
    max_gap = settings.max_gap_seconds(instrument, spec.name)
    with warnings.catch_warnings():
        # Partitioned check specs are "preview" in 1.13; we rely on them deliberately (their
        # per-partition results are what the certificate and the UI read).
        warnings.simplefilter("ignore", dg.PreviewWarning)
        check_specs = [
            dg.AssetCheckSpec(name, asset=key, blocking=name in BLOCKING_CHECKS,
                              partitions_def=partitions, description=CHECK_DESCRIPTIONS[name])
            for name in (*BLOCKING_CHECKS, *WARNING_CHECKS[spec.name])
        ]

    @dg.asset(
        key=key,
        partitions_def=partitions,
        check_specs=check_specs,
        pool=POOL,
        retry_policy=dg.RetryPolicy(
            max_retries=settings.step_retries,
            delay=settings.retry_delay_seconds,
            backoff=dg.Backoff.EXPONENTIAL,
            jitter=dg.Jitter.PLUS_MINUS,
        ),
        group_name=instrument.slug,
        kinds={"parquet", "polars"},
        description=f"{spec.description} {instrument}, one UTC day per partition, from Crypto "
                    f"Lake. Max hole {max_gap:,.0f} s.",
        metadata={"instrument": str(instrument), "table": spec.name,
                  "max_gap_seconds": max_gap},
    )
    def _table(
        context: dg.AssetExecutionContext,
        config: TableConfig,
        crypto_lake: CryptoLakeResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        previous_last, trailing_rows = earlier_days(context, day)
        with vendor_failures():
            result = ingest_partition(
                None if config.from_raw else crypto_lake.vendor(), lake.lake(), spec,
                instrument, day, crypto_lake.backoff(), max_gap, previous_last,
                log=context.log.info, from_raw=config.from_raw, trailing_rows=trailing_rows,
            )
        verdict = "passed" if result.passed else "FAILED: " + ", ".join(
            o.name for o in result.outcomes if o.blocking and not o.passed)
        warnings_ = [o.name for o in result.outcomes if not o.blocking and not o.passed]
        if warnings_:
            verdict += f" (warnings: {', '.join(warnings_)})"
        context.log.info(f"{spec.name} {instrument} {day}: {result.scan.rows:,} rows, checks "
                         f"{verdict}; written to {result.path}.")
        return dg.MaterializeResult(metadata=partition_metadata(result),
                                    check_results=check_results(result))

    return _table


def build_table_assets(settings: Settings, partitions: dg.PartitionsDefinition):
    from rlx_assets.lib.tables import TABLES

    return [
        build_table_asset(instrument, spec, partitions, settings)
        for instrument in settings.instruments
        for spec in TABLES.values()
    ]
