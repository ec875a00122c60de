"""Predictions per run from the persisted anomaly model."""
