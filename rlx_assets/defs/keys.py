"""The asset and check keys of an instrument: the one place they are built.

Per instrument `EXCHANGE:SYMBOL` (contract): `<exchange>/<symbol>/<table>` in lower case
with `-` -> `_`, and the unpartitioned `<exchange>/<symbol>/certificate`.
"""

import dagster as dg

from rlx_assets.lib.instruments import Instrument

# The certificate's own check: passes when a certificate is issued for the window, fails
# when it is refused or withdrawn (a day it covered left ready/), with the reasons.
CERTIFIED = "window_certified"


def table_key(instrument: Instrument, table: str) -> dg.AssetKey:
    return dg.AssetKey([*instrument.key_prefix, table])


def certificate_key(instrument: Instrument) -> dg.AssetKey:
    return dg.AssetKey([*instrument.key_prefix, "certificate"])


def consistency_key(instrument: Instrument) -> dg.AssetKey:
    """The per-day cross-table consistency of the instrument's tables (WARN checks)."""
    return dg.AssetKey([*instrument.key_prefix, "consistency"])
