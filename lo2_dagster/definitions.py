"""The code location: every domain under ``lo2_dagster/defs``, run in-process (the beta and
preview features it uses are listed, and their warnings silenced, in ``lo2_dagster.defs``).

In-process execution is a deliberate policy: per-run assets are sequential steps, and the
multiprocess executor costs 11-16 s of start-up per run on a 2-core machine.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=dg.in_process_executor),
    )
