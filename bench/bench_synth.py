"""Throughput of the synthetic LO2 generator: MB of logs written per second.

Usage: ``.venv/bin/python bench/bench_synth.py [--runs 2 --token-lines 10000 --out DIR]``.
Without ``--out`` it writes into a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from lo2_dagster.synth import SynthConfig, SynthSummary, generate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: 2 runs of 10,000 token lines per test case)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--token-lines", type=int, default=10_000)
    parser.add_argument("--init-lines", type=int, default=SynthConfig.init_lines)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the output here")
    return parser.parse_args(argv)


def report(summary: SynthSummary) -> str:
    """The figures of one generation, one per line."""
    mb = summary.bytes / 1e6
    return "\n".join(
        [
            f"written:   {mb:,.1f} MB ({summary.bytes:,} bytes)",
            f"seconds:   {summary.seconds:.2f}",
            f"MB/s:      {mb / summary.seconds:,.1f}",
            f"files:     {summary.files:,}",
            f"lines:     {summary.lines:,}",
            f"runs:      {len(summary.runs)}",
            f"cpu_count: {os.cpu_count()}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Generate once and print the figures."""
    args = parse_args(argv)
    config = SynthConfig(
        runs=args.runs, seed=args.seed, token_lines=args.token_lines, init_lines=args.init_lines
    )
    print(f"config:    {config}")
    if args.out is not None:
        print(report(generate(args.out, config)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        print(report(generate(Path(tmp), config)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
