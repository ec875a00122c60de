"""The anomaly model: trained on the enhanced sequences, evaluated on holdout runs."""
