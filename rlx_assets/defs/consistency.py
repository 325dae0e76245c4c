"""`<exchange>/<symbol>/consistency`: the day's tables must tell the same story (issue 16).

One small asset per instrument and day that depends on the three tables, so the dependency
is visible in the asset graph and Dagster orders it after them - in a ranged backfill that
selects it too. Its checks are WARN-level: they inform and never block the certificate,
which records their outcome per day. The automation sensor runs it once the day's tables
are materialised and again when one of them is re-materialised. The comparisons themselves
are plain logic (`lib/cross_table.py`, `lib/delta_stream.py`).
"""


import datetime as dt
import tempfile
import warnings
from pathlib import Path

import dagster as dg

from rlx_assets.defs.keys import consistency_key, table_key
from rlx_assets.defs.resources import LakeResource
from rlx_assets.lib.checks import CheckOutcome
from rlx_assets.lib.cross_table import (
    SNAPSHOTS_AGREE,
    TRADES_IN_MARKET,
    snapshots_agree_with_deltas,
    trades_inside_market,
)
from rlx_assets.lib.delta_stream import DELTA_STREAM, delta_stream_complete
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.lake import READY, Lake
from rlx_assets.settings import Settings

CROSS_TABLE_CHECKS = {
    SNAPSHOTS_AGREE: "WARN: each book snapshot level whose price the day's deltas have set "
                     "(since the file began or the last resync) has the size of the last "
                     "delta at that side and price (as-of join by received_time).",
    TRADES_IN_MARKET: "WARN: each trade's price lies within the latest book snapshot's best "
                      "bid and ask at its time, give or take a tick.",
    DELTA_STREAM: "WARN: book_delta_v2's update ids step forward from message to message; "
                  "resyncs (certain gaps) are counted and located, ids going backwards and "
                  "jumps far above the day's usual step (suspected gaps) warn. The file "
                  "carries each message's final id only, so a lost message cannot be proven.",
}
# Once each table of the day is present and none is running, and again whenever one of them
# is re-materialised - for old days too (AutomationCondition.eager() only looks at the latest
# partition). A quarantined day counts as missing, so it is not compared.
AFTER_THE_TABLES = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after the day's tables are materialised or re-materialised")
NEEDS = {SNAPSHOTS_AGREE: ("book", "book_delta_v2"), TRADES_IN_MARKET: ("trades", "book"),
         DELTA_STREAM: ("book_delta_v2",)}
COMPARED = sorted({table for tables in NEEDS.values() for table in tables})

def _local_ready(lake: Lake, table: str, instrument: Instrument, day: dt.date,
                 scratch: Path) -> Path:
    """The day's ready/ file on this machine (downloaded to `scratch` from an s3:// lake)."""
    key = lake.zone_key(READY, table, instrument, day)
    path = lake.store.get(key, scratch / key, -1)
    if path is None:
        raise dg.Failure(description=f"{table} {instrument} {day} is not in ready/ (never "
                                     "materialised, or quarantined): there is nothing to "
                                     "compare; materialise it first.", allow_retries=False)
    return path


def _result(outcome: CheckOutcome, key: dg.AssetKey) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=key, check_name=outcome.name, passed=outcome.passed,
                               severity=dg.AssetCheckSeverity.WARN,
                               description=outcome.description, metadata=outcome.metadata)


def build_consistency_asset(instrument: Instrument, settings: Settings,
                            partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = consistency_key(instrument)
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset(
        key=key,
        deps=[table_key(instrument, t) for t in COMPARED],
        partitions_def=partitions,
        check_specs=[dg.AssetCheckSpec(name, asset=key, blocking=False, description=text,
                                       partitions_def=partitions)
                     for name, text in CROSS_TABLE_CHECKS.items()],
        automation_condition=AFTER_THE_TABLES,
        group_name=instrument.slug,
        kinds={"polars"},
        description=f"Cross-table consistency of {instrument}, one UTC day per partition: "
                    "book snapshots against the deltas, trades against the quoted market, "
                    "the delta stream's update ids. "
                    "WARN checks only: they inform, the certificate records them.",
    )
    def _consistency(context: dg.AssetExecutionContext,
                     lake: LakeResource) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        store = lake.lake()
        with tempfile.TemporaryDirectory(dir=None if store.is_local else _scratch(store)) \
                as scratch:  # where an s3:// lake's files are downloaded
            files = {t: _local_ready(store, t, instrument, day, Path(scratch)) for t in COMPARED}
            outcomes = [
                snapshots_agree_with_deltas(files["book"], files["book_delta_v2"]),
                trades_inside_market(files["trades"], files["book"]),
                delta_stream_complete(files["book_delta_v2"]),
            ]
        for outcome in outcomes:
            context.log.info(f"{instrument} {day} {outcome.name}: "
                             f"{'ok' if outcome.passed else 'WARN'} - {outcome.description}")
        return dg.MaterializeResult(
            metadata={"day": day.isoformat(),
                      "warnings": [o.name for o in outcomes if not o.passed]},
            check_results=[_result(o, key) for o in outcomes],
        )

    return _consistency


def _scratch(lake: Lake) -> str:
    lake.work.mkdir(parents=True, exist_ok=True)
    return str(lake.work)
