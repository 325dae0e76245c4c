"""Dagster definitions, by domain: resources, table assets, certificate, sensors."""
