"""Ingest: LO2 log files of one run -> raw events and raw sequences (one partition per run)."""
