"""Our lake under RLX_LAKE_ROOT: raw/, ready/, quarantine/, certificates/ and the catalog.

Partition files are written to `_staging/` first and moved into their zone with one
rename, so a reader never sees a partial file, and re-materialising a partition replaces
its single file (no duplicate rows).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from rlx_assets.lib.instruments import Instrument

RAW, READY, QUARANTINE = "raw", "ready", "quarantine"
DATA_FILE = "data.parquet"


class LakeError(Exception):
    """The lake root cannot be used; the message names the path."""


@dataclass(frozen=True)
class Lake:
    root: Path

    @classmethod
    def at(cls, uri: str) -> Lake:
        if uri.startswith("s3://"):
            raise LakeError(
                f"RLX_LAKE_ROOT={uri}: s3:// lake roots are not supported yet; use a local "
                "directory (a mounted bucket works)."
            )
        path = uri.removeprefix("file://")
        return cls(Path(path).expanduser().absolute())

    def partition_dir(self, zone: str, table: str, instrument: Instrument, day: dt.date) -> Path:
        return (self.root / zone / table / f"exchange={instrument.exchange}"
                / f"symbol={instrument.symbol}" / f"dt={day.isoformat()}")

    def zone_file(self, zone: str, table: str, instrument: Instrument, day: dt.date) -> Path:
        return self.partition_dir(zone, table, instrument, day) / DATA_FILE

    def raw_file(self, table: str, instrument: Instrument, day: dt.date, filename: str) -> Path:
        return self.partition_dir(RAW, table, instrument, day) / filename

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.duckdb"

    def certificate_path(self, instrument: Instrument, start: dt.date, end: dt.date) -> Path:
        return self.root / "certificates" / f"{instrument.slug}_{start}_{end}.json"

    def _staging_dir(self) -> Path:
        return self.root / "_staging"

    def staging_file(self, table: str, instrument: Instrument, day: dt.date) -> Path:
        """A fresh file name for one attempt; `publish` moves it into its zone."""
        folder = self._staging_dir()
        self._mkdir(folder)
        return folder / f"{table}.{instrument.slug}.{day}.{uuid.uuid4().hex}.parquet"

    def clear_staging(self, table: str, instrument: Instrument, day: dt.date) -> list[Path]:
        """Remove what earlier, crashed attempts at this partition left behind."""
        folder = self._staging_dir()
        if not folder.is_dir():
            return []
        stale = list(folder.glob(f"{table}.{instrument.slug}.{day}.*.parquet"))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def publish(
        self, staged: Path, table: str, instrument: Instrument, day: dt.date, passed: bool
    ) -> Path:
        """Move `staged` into ready/ (checks passed) or quarantine/ (they did not).

        A failing partition is first withdrawn from ready/, so research never reads it.
        """
        target = self.zone_file(READY if passed else QUARANTINE, table, instrument, day)
        other = self.zone_file(QUARANTINE if passed else READY, table, instrument, day)
        if not passed:
            other.unlink(missing_ok=True)
        self._mkdir(target.parent)
        os.replace(staged, target)
        other.unlink(missing_ok=True)
        return target

    def write_json_atomic(self, path: Path, payload: object) -> None:
        self._mkdir(path.parent)
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        part.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        os.replace(part, path)

    def read_json(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _mkdir(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LakeError(
                f"Cannot write to {folder} under the lake root {self.root} ({exc.strerror}); "
                "set RLX_LAKE_ROOT to a writable directory."
            ) from exc

    def check_writable(self) -> None:
        self._mkdir(self.root)
        probe = self.root / f".write-test-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise LakeError(
                f"Cannot write to the lake root {self.root} ({exc.strerror}); set "
                "RLX_LAKE_ROOT to a writable directory."
            ) from exc
