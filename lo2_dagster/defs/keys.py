"""Asset keys, check names, owners and pools, defined once: keys mirror the warehouse layout."""

import dagster as dg

PREFIX = "lo2"
OWNERS = ["team:lo2"]

#: Asset groups, one per domain folder.
INGEST_GROUP = "ingest"
FEATURES_GROUP = "features"
MODEL_GROUP = "model"
DETECT_GROUP = "detect"
EXPLAIN_GROUP = "explain"

RUN_LOGS = dg.AssetKey([PREFIX, "run_logs"])
RAW_EVENTS = dg.AssetKey([PREFIX, "raw_events"])
RAW_SEQUENCES = dg.AssetKey([PREFIX, "raw_sequences"])

FP_ALLOWLIST = dg.AssetKey([PREFIX, "fp_allowlist"])
MESSAGE_COUNTS = dg.AssetKey([PREFIX, "message_counts"])
DRAIN_TEMPLATES = dg.AssetKey([PREFIX, "drain_templates"])
EVENTS_ENHANCED = dg.AssetKey([PREFIX, "events_enhanced"])
SEQUENCES_ENHANCED = dg.AssetKey([PREFIX, "sequences_enhanced"])
ENHANCED_EXPORTS = dg.AssetKey([PREFIX, "enhanced_exports"])

TRAINING_SET = dg.AssetKey([PREFIX, "training_set"])
ANOMALY_MODEL = dg.AssetKey([PREFIX, "anomaly_model"])
PREDICTIONS = dg.AssetKey([PREFIX, "predictions"])
MODEL_REPORT = dg.AssetKey([PREFIX, "model_report"])
EXPLANATIONS = dg.AssetKey([PREFIX, "explanations"])
SCORE_DRIFT = dg.AssetKey([PREFIX, "score_drift"])

LINE_ACCOUNTING_CHECK = "every_line_accounted_for"
SCHEMA_CHECK = "schema_matches_contract"
ROWS_KEPT_CHECK = "no_row_lost"
SEQ_ID_CHECK = "seq_id_not_null"
DRAIN_IDS_CHECK = "drain_ids_known"
MODEL_GATE_CHECK = "holdout_test_case_roc_auc_above_floor"
DRIFT_CHECK = "drift_below_warning_level"
LEAK_CHECK = "no_signal_gives_labels_away"

#: Concurrency pool of the assets that train on every run (dagster.yaml: one at a time).
TRAINING_POOL = "lo2_training"
