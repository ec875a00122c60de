"""Plain, typed logic that the Dagster assets call. No Dagster imports below this package."""
