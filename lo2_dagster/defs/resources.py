"""Resources shared by every domain: where LO2 is read from and where assets are stored."""

from pathlib import Path

import dagster as dg

from lo2_dagster import settings
from lo2_dagster.lib.allowlist import Allowlist, AllowlistError, load_allowlist
from lo2_dagster.lib.layout import RunScan, folder_signature, has_logs, run_signature, scan_runs
from lo2_dagster.meta import table
from lo2_dagster.storage import DrainTemplatesStore, ModelStore, Warehouse, WarehouseIOManager


class Lo2Root(dg.ConfigurableResource):
    """The LO2 dataset on disk: ``path``, else ``$LO2_ROOT``, else the committed sample.

    Both layouts are accepted: ``<root>/logs/<run>/...`` (as downloaded) and ``<root>/<run>/...``,
    with LO2 v1 or v2 run folders. Symbolic links leading out of the root are not followed unless
    ``follow_symlinks`` (default: ``$LO2_FOLLOW_SYMLINKS``) says so.
    """

    path: str | None = None
    follow_symlinks: bool | None = None

    def resolve(self) -> Path:
        return settings.lo2_root(self.path)

    def follows_symlinks(self) -> bool:
        return settings.follow_symlinks(self.follow_symlinks)

    def scan(self) -> RunScan:
        """The run folders under the root, folders skipped (with the reason) and other folders."""
        return scan_runs(self.resolve(), self.follows_symlinks())

    def has_logs(self, run: str) -> bool:
        """Whether the run folder already holds service logs (it may be being copied)."""
        return has_logs(self.resolve(), run, self.follows_symlinks())

    def signature(self, run: str) -> str:
        """The cheap signature of a run folder's files (see ``layout.run_signature``)."""
        return run_signature(self.resolve(), run, self.follows_symlinks())

    def folder_signature(self, run: str) -> tuple[str, float]:
        """The cheaper signature of a run's folders, with their newest modification time
        (see ``layout.folder_signature``)."""
        return folder_signature(self.resolve(), run)


class FpAllowlistFile(dg.ConfigurableResource):
    """The false-positive allowlist: ``path``, else ``$LO2_FP_ALLOWLIST``, else
    ``data/fp_allowlist.toml``. A missing file is an empty allowlist."""

    path: str | None = None

    def resolve(self) -> Path:
        return settings.fp_allowlist(self.path)

    def metadata(self, allowlist: Allowlist) -> dict[str, object]:
        """What an observation of the allowlist shows (the UI's Observe, the sensor, the main
        job)."""
        return {
            "path": dg.MetadataValue.path(allowlist.source),
            "event_rules": len(allowlist.events),
            "sequence_rules": len(allowlist.sequences),
            "rules": table(allowlist.rules_table()),
        }

    def load(self) -> Allowlist:
        """The validated rules; an invalid file fails the step with the file and the fix."""
        try:
            return load_allowlist(self.resolve())
        except AllowlistError as e:
            raise dg.Failure(description=str(e)) from e


@dg.definitions
def resources() -> dg.Definitions:
    warehouse = Warehouse()
    return dg.Definitions(
        resources={
            "lo2_root": Lo2Root(),
            "fp_allowlist": FpAllowlistFile(),
            "warehouse": warehouse,
            "io_manager": WarehouseIOManager(warehouse=warehouse),
            "drain_store": DrainTemplatesStore(warehouse=warehouse),
            "model_store": ModelStore(warehouse=warehouse),
        },
    )
