"""rlx_assets: Crypto Lake market data into a validated, certified, daily-partitioned lake."""
