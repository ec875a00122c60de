"""Declarative automation, named once: what makes each asset run without a click.

- Per-run assets follow their inputs' *data* (``on_new_or_changed_data``): a new run partition,
  or an input whose data version changed (a run's files, the allowlist, the templates, the
  model). A re-materialization that produced the same data version triggers nothing, unlike
  ``AutomationCondition.eager()``, which fires on any new upstream materialization.
- The training-set fingerprint follows every run (``on_any_run_changed``): it is cheap, and it
  is how the model's staleness stays visible past Dagster's 100-partition limit.
- Retraining (Drain templates, model, exports) waits for the retrain cron
  (``$LO2_RETRAIN_CRON``, default Sundays 03:00 UTC), not for every new run; the model also
  retrains after the templates changed, once the runs' enhanced tables were rebuilt with them.

The automation sensor ``lo2_automation`` evaluates these every 30 s and runs by default
(``LO2_AUTOMATION=off``: stopped until started in the UI).
"""

import dagster as dg

from lo2_dagster import settings
from lo2_dagster.defs.keys import ANOMALY_MODEL, DRAIN_TEMPLATES

AUTOMATION_SENSOR = "lo2_automation"

AC = dg.AutomationCondition

#: The label every retraining condition starts with (``on_retrain_cron...``).
RETRAIN_LABEL = "on_retrain_cron"


def automation_status() -> dg.DefaultSensorStatus:
    """The automation sensor runs by default; ``LO2_AUTOMATION=off`` starts it stopped (e.g. to
    run a controlled backfill first; it can be started in the UI at any time)."""
    return (dg.DefaultSensorStatus.RUNNING if settings.automation_on()
            else dg.DefaultSensorStatus.STOPPED)


retrain_cron = settings.retrain_cron


def _waits() -> dg.AutomationCondition:
    """Nothing it reads is being written, and it is not running already."""
    return ~AC.any_deps_in_progress() & ~AC.in_progress()


def on_new_or_changed_data() -> dg.AutomationCondition:
    """A missing partition (a new run), or an input partition whose data version changed; waits
    until its inputs exist and are not being written."""
    return (
        (AC.newly_missing() | AC.any_deps_match(AC.data_version_changed())).since_last_handled()
        & ~AC.any_deps_missing()
        & _waits()
    ).with_label("on_new_or_changed_data")


def on_any_run_changed() -> dg.AutomationCondition:
    """For an asset over every run: missing, or any run's input data version changed. Runs
    that are missing an input do not block it (it reads the runs that exist)."""
    return (
        (AC.newly_missing() | AC.any_deps_match(AC.data_version_changed())).since_last_handled()
        & _waits()
    ).with_label("on_any_run_changed")


def on_retrain_cron() -> dg.AutomationCondition:
    """Whole-dataset training (templates, exports): at each tick of the retrain cron, or when
    missing once its inputs were written (the first runs of a new deployment)."""
    return _retrain(f"{RETRAIN_LABEL}({retrain_cron()})")


def on_retrain_cron_or_new_templates() -> dg.AutomationCondition:
    """The model: as ``on_retrain_cron``, and after the Drain templates changed (their ids index
    its features), once the enhanced tables were rebuilt with them: it waits while anything it
    reads is running or about to run."""
    templates_changed = AC.any_deps_match(AC.data_version_changed()).allow(
        dg.AssetSelection.assets(DRAIN_TEMPLATES))
    return _retrain(f"{RETRAIN_LABEL}({retrain_cron()})_or_new_templates", templates_changed)


def on_new_model() -> dg.AutomationCondition:
    """The model report: once the model exists, and each time its data version changes (a
    retrain); not when runs change (the report reads the model's holdout evaluation)."""
    model = dg.AssetSelection.assets(ANOMALY_MODEL)
    return (
        (AC.newly_missing() | AC.any_deps_match(AC.data_version_changed()).allow(model))
        .since_last_handled()
        & ~AC.any_deps_match(AC.missing() | AC.will_be_requested()).allow(model)
        & _waits()
    ).with_label("on_new_model")


def retrains_on_cron(condition: dg.AutomationCondition | None) -> bool:
    """Whether ``condition`` is one of the retraining conditions above (what the retrain cron
    triggers: ``lo2-dagster run --retrain`` runs these as at a tick)."""
    return condition is not None and (condition.get_label() or "").startswith(RETRAIN_LABEL)


def _retrain(label: str, *triggers: dg.AutomationCondition) -> dg.AutomationCondition:
    trigger = AC.cron_tick_passed(retrain_cron()) | (AC.missing() & AC.any_deps_updated())
    for extra in triggers:
        trigger = trigger | extra
    return (
        trigger.since_last_handled() & ~AC.any_deps_match(AC.will_be_requested()) & _waits()
    ).with_label(label)


@dg.definitions
def automation() -> dg.Definitions:
    return dg.Definitions(sensors=[dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        default_status=automation_status(),
        minimum_interval_seconds=30,
        description="Evaluates every asset's automation condition (lo2_dagster.defs.automation)"
                    ": new and changed runs flow to predictions, a new model rescores every "
                    "run, retraining follows the retrain cron.",
    )])
