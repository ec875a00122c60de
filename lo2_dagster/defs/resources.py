"""Resources shared by every domain: where LO2 is read from and where assets are stored."""

from pathlib import Path

import dagster as dg

from lo2_dagster import settings
from lo2_dagster.lib.layout import has_logs, scan_runs
from lo2_dagster.storage import WarehouseIOManager


class Lo2Root(dg.ConfigurableResource):
    """The LO2 dataset on disk: ``path``, else ``$LO2_ROOT``, else the committed sample.

    Both layouts are accepted: ``<root>/logs/<run>/...`` (as downloaded) and ``<root>/<run>/...``.
    """

    path: str | None = None

    def resolve(self) -> Path:
        return settings.lo2_root(self.path)

    def scan(self) -> tuple[list[str], list[str]]:
        """Run folder names found under the root (sorted), and folders skipped with the reason."""
        return scan_runs(self.resolve())

    def has_logs(self, run: str) -> bool:
        """Whether the run folder already holds service logs (it may be being copied)."""
        return has_logs(self.resolve(), run)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"lo2_root": Lo2Root(), "io_manager": WarehouseIOManager()},
    )
