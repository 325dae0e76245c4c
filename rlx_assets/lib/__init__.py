"""Plain logic with no Dagster decorators: testable as pure functions."""
