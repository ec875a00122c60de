"""The synthetic LO2 generator (``lo2-dagster synth``): realistic runs in LO2 v1's or v2's layout
and line format, every byte a function of its config. Outside ``lib/``: the pipeline never
imports it; the tests, the benchmarks and the CLI do. See ``generator`` and docs/generator.md."""

from lo2_dagster.synth.generator import *  # noqa: F403 (the public names, as listed there)
from lo2_dagster.synth.generator import __all__  # noqa: F401
