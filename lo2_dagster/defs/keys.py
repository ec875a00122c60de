"""Asset keys and check names, defined once: keys mirror the warehouse layout."""

import dagster as dg

PREFIX = "lo2"

RAW_EVENTS = dg.AssetKey([PREFIX, "raw_events"])
RAW_SEQUENCES = dg.AssetKey([PREFIX, "raw_sequences"])

LINE_ACCOUNTING_CHECK = "every_line_accounted_for"
