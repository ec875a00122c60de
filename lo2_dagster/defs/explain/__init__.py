"""Explanations of predicted anomalies and drift of runs against the training runs."""
